"""Model configuration."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, Tuple


@dataclass(frozen=True)
class ModelConfig:
    name: str
    num_layers: int             # N
    joint_layers: int           # M: layers 0..M-1 joint, M..N-1 split
    und_hidden: int             # d_u, understanding (text) branch
    gen_hidden: int             # d_g, generation (image) branch
    und_ffn: int
    gen_ffn: int
    heads: int                  # H (shared attention space H x head_dim)
    head_dim: int               # D
    rope_theta: float
    norm_eps: float
    max_text_len: int
    image_locality_slopes: Tuple[float, ...]   # one per head
    image_width: int
    image_height: int
    grid_rows: int
    grid_cols: int
    patch: int                  # pixels per token side
    codebook_size: int          # K; image mask id = K
    image_channels: int = 3
    tokenizer: str = "word-v1"
    # Editing: VQ-condition tokens on the generation branch use ids K+1 .. 2K (their own embeddings).
    edit_conditions: bool = False
    # An absolute grid-cell table on the generation branch's image tokens (ElasticMoT.image_pos): token i of a
    # run of whole grids gets row i % (grid_rows * grid_cols) added to its embedding, inside gen_embed.
    image_position_table: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.joint_layers <= self.num_layers:
            raise ValueError("need 0 < joint_layers <= num_layers")
        if len(self.image_locality_slopes) != self.heads:
            raise ValueError("image_locality_slopes needs one slope per head")
        if self.head_dim % 2:
            raise ValueError("head_dim must be even (rotate-half RoPE)")
        if self.grid_cols * self.patch != self.image_width or self.grid_rows * self.patch != self.image_height:
            raise ValueError("grid x patch must equal the image size")

    @classmethod
    def from_dict(cls, conf: dict) -> "ModelConfig":
        """The config a checkpoint stores (`asdict`, the slopes as a list after a round trip)."""
        return cls(**{**conf, "image_locality_slopes": tuple(conf["image_locality_slopes"])})

    @property
    def attn_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def mask_id(self) -> int:
        return self.codebook_size

    @property
    def image_vocab_size(self) -> int:
        return self.codebook_size + 1 + (self.codebook_size if self.edit_conditions else 0)

    @property
    def condition_offset(self) -> int:
        """Image-embedding id of condition code 0 (editing)."""
        return self.codebook_size + 1

    @property
    def num_image_tokens(self) -> int:
        return self.grid_rows * self.grid_cols

    @property
    def text_vocab_size(self) -> int:
        from .tokenizer import build_vocab
        return len(build_vocab())


FIXTURE = ModelConfig(
    name="fixture",
    num_layers=3,
    joint_layers=2,
    und_hidden=32,
    gen_hidden=16,
    und_ffn=64,
    gen_ffn=32,
    heads=2,
    head_dim=8,
    rope_theta=10000.0,
    norm_eps=1e-5,
    max_text_len=64,
    image_locality_slopes=(0.0, 0.5),
    image_width=64,
    image_height=64,
    grid_rows=8,
    grid_cols=8,
    patch=8,
    codebook_size=64,
    image_position_table=True,   # so every fixture-served test runs through a gen_embed with cell positions
)

# lavida-o-mini: the model trained on the Shapes world. codebook_size is set from the label codebook.
MINI = ModelConfig(
    name="mini",
    num_layers=4,
    joint_layers=2,
    und_hidden=192,
    gen_hidden=128,
    und_ffn=512,
    gen_ffn=384,
    heads=4,
    head_dim=32,
    rope_theta=10000.0,
    norm_eps=1e-5,
    max_text_len=160,
    image_locality_slopes=(0.0, 0.5, 1.0, 2.0),
    image_width=64,
    image_height=64,
    grid_rows=8,
    grid_cols=8,
    patch=8,
    codebook_size=8192,
    edit_conditions=True,
)

# lavida-o-mini grown deeper (grow.py): the mini's widths and joint layers, four more split layers.
MINI_DEEP = replace(MINI, name="mini-deep", num_layers=8)

CONFIGS: Dict[str, ModelConfig] = {"fixture": FIXTURE, "mini": MINI, "mini-deep": MINI_DEEP}
