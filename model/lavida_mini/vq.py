"""Image tokenizer. The fixture uses a seeded random codebook of K flat-coloured, lightly textured
patches; decode looks patches up, encode picks the nearest patch by squared distance."""
from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig


class PatchVQ(nn.Module):
    """A codebook of K patches [K, p, p, 3] (uint8). Tokens are the grid cells in raster order."""

    def __init__(self, cfg: ModelConfig, codebook: torch.Tensor) -> None:
        super().__init__()
        p, c = cfg.patch, cfg.image_channels
        if codebook.dtype != torch.uint8 or tuple(codebook.shape) != (cfg.codebook_size, p, p, c):
            raise ValueError("codebook must be uint8 [K, patch, patch, channels]")
        self.rows, self.cols, self.patch, self.channels = cfg.grid_rows, cfg.grid_cols, p, c
        self.register_buffer("codebook", codebook.clone(), persistent=False)
        # Centred at 128, so every product and sum below is an integer under 2^24: float32 distances
        # are exact whatever the summation order, and argmin is the same on every runtime.
        flat = codebook.reshape(cfg.codebook_size, -1).to(torch.float32) - 128.0
        self.register_buffer("codebook_t2", (-2.0 * flat).t().contiguous(), persistent=False)  # [P, K]
        self.register_buffer("codebook_sq", (flat * flat).sum(-1), persistent=False)            # [K]

    @classmethod
    def fixture(cls, cfg: ModelConfig, seed: int) -> "PatchVQ":
        g = torch.Generator().manual_seed(seed + 0x5EED)
        k, p, c = cfg.codebook_size, cfg.patch, cfg.image_channels
        colour = torch.randint(16, 240, (k, 1, 1, c), generator=g)
        texture = torch.randint(-10, 11, (k, p, p, c), generator=g)
        codebook = (colour + texture).clamp(0, 255).to(torch.uint8)
        flat = codebook.reshape(k, -1).to(torch.float32)
        d = torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist")
        if (d + torch.eye(k) * 1e9).min() <= 0:
            raise AssertionError("fixture codebook has duplicate patches")
        return cls(cfg, codebook)

    def decode(self, image_ids: torch.Tensor) -> torch.Tensor:
        """image_ids int64 [B, rows, cols] -> pixels uint8 [B, rows*p, cols*p, 3]."""
        b = image_ids.shape[0]
        p, c = self.patch, self.channels
        patches = torch.index_select(self.codebook, 0, image_ids.reshape(-1))      # [B*r*c, p, p, C]
        patches = patches.view(b, self.rows, self.cols, p, p, c).permute(0, 1, 3, 2, 4, 5)
        return patches.reshape(b, self.rows * p, self.cols * p, c)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels uint8 [B, H, W, 3] -> image_ids int64 [B, rows, cols] (nearest patch, first on ties)."""
        b = pixels.shape[0]
        p, c = self.patch, self.channels
        x = pixels.to(torch.float32) - 128.0
        x = x.view(b, self.rows, p, self.cols, p, c).permute(0, 1, 3, 2, 4, 5)
        x = x.reshape(b, self.rows * self.cols, p * p * c)
        # |x - c|^2 - |x|^2 = |c|^2 - 2 x.c
        dist = torch.matmul(x, self.codebook_t2) + self.codebook_sq
        return torch.argmin(dist, dim=-1).view(b, self.rows, self.cols)
