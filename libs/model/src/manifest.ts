import { CfgIntervalSchema } from '@lavida/contracts';
import { z } from 'zod';

/** Element types a segment may use. */
export const DTYPES = ['float32', 'float16', 'int64', 'int32', 'uint8', 'bool'] as const;
export type DType = (typeof DTYPES)[number];

const tensorSpec = z
  .object({
    name: z.string().min(1),
    dtype: z.enum(DTYPES),
    shape: z.array(z.number().int().min(-1)),
  })
  .strict();
export type TensorSpec = z.infer<typeof tensorSpec>;

const segmentSpec = z.object({
  file: z.string().min(1),
  branch: z.enum(['und', 'gen']),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'expected a lower-case hex sha256'),
  inputs: z.array(tensorSpec).min(1),
  outputs: z.array(tensorSpec).min(1),
});
export type SegmentSpec = z.infer<typeof segmentSpec>;

const positive = z.number().int().min(1);

/** The manifest of a model package (`lavida-model-package/v1`), see docs/model-package.md. */
export const ManifestSchema = z.object({
  format: z.literal('lavida-model-package/v1'),
  name: z.string().min(1),
  version: z.string().min(1),
  description: z.string().optional(),
  architecture: z.object({
    family: z.literal('elastic-mot'),
    num_layers: positive,
    joint_layers: positive,
    und_hidden: positive,
    gen_hidden: positive,
    und_ffn: positive,
    gen_ffn: positive,
    heads: positive,
    head_dim: positive,
    rope_theta: z.number().positive(),
    norm_eps: z.number().positive(),
    max_text_len: positive,
    image_locality_slopes: z.array(z.number()).optional(),
    /**
     * Informational: `gen_embed` adds a grid-cell table to token i by cell i mod (rows * cols). The runtime
     * needs nothing for it beyond sending whole grids (docs/model-package.md, "gen_embed").
     */
    image_position_table: z.boolean().optional(),
  }),
  text: z.object({
    tokenizer: z.literal('word-v1'),
    vocab: z.array(z.string()).min(1),
    special_tokens: z.object({
      pad: z.number().int().min(0),
      mask: z.number().int().min(0),
      exp: z.number().int().min(0),
      eos: z.number().int().min(0),
      unk: z.number().int().min(0),
      box_begin: z.number().int().min(0),
      box_end: z.number().int().min(0),
      loc_begin: z.number().int().min(0),
      loc_end: z.number().int().min(0),
    }),
    loc_bins: z.object({ first_id: z.number().int().min(0), count: positive }),
  }),
  image: z.object({
    width: positive,
    height: positive,
    channels: z.literal(3),
    grid: z.tuple([positive, positive]),
    patch: positive,
    codebook_size: positive,
    mask_id: z.number().int().min(0),
    vocab_size: positive,
    /**
     * Editing: image-embedding id of condition code 0 (K + 1). Condition code c is fed to the
     * generation branch as c + condition_offset; present only when vocab_size is 2K + 1.
     */
    condition_offset: z.number().int().min(0).optional(),
  }),
  sampling: z.object({
    steps: positive,
    guidance: z.number().min(0),
    shift: z.number().positive(),
    temperature: z.number().min(0),
    order_seed: z.number().int().min(0),
    /**
     * Guidance of an image drawn with a plan, and of one regenerated from a critique, where they differ
     * from plain text-to-image's (absent: guidance). A plan conditions far more strongly than a prompt,
     * so the guidance that suits a prompt overshoots with one (model/README "Guidance with a plan").
     */
    plan_guidance: z.number().min(0).optional(),
    feedback_guidance: z.number().min(0).optional(),
    /**
     * Correction sweeps after the last diffusion step (absent: 0). A sweep visits the grid's parity
     * classes (cells of equal row % 2 and column % 2: no two of them neighbours) in turn, masks one
     * class, predicts it from every other cell with the image's rows and guidance, and puts each cell's
     * argmax code there (`correctionClasses`). Every image of the model, edits included, takes them.
     */
    correction_sweeps: z.number().int().min(0).max(16).optional(),
    /**
     * Guidance of the correction steps where it is not the image's (absent: the image's rows combined
     * as its steps are): g > 0 combines the first two rows as (1+g) row0 − g row1; 0 takes the first
     * row alone (the full condition).
     */
    correction_guidance: z.number().min(0).optional(),
    /**
     * The published code's `cfg_interval` [lo, hi] (absent: [0, 1], every step guided): step i of the
     * schedule's S combines the image's rows only where lo <= i / S < hi, and samples from the first row
     * (the full condition) elsewhere. Plain and planned text-to-image only: an edit and a regeneration
     * from a critique guide every step. Correction steps keep `correction_guidance`.
     */
    cfg_interval: CfgIntervalSchema.optional(),
    /** Editing defaults where they differ from text-to-image's (absent: guidance / temperature). */
    edit_guidance: z.number().min(0).optional(),
    edit_temperature: z.number().min(0).optional(),
  }),
  /** The text templates and answer lengths the model was trained with (documentation for the runtime). */
  tasks: z.record(z.string(), z.unknown()).optional(),
  segments: z.record(z.string(), segmentSpec),
});
export type Manifest = z.infer<typeof ManifestSchema>;

/** Which branch a process serves: one of the two, or both in one process. */
export type Branch = 'und' | 'gen' | 'all';

/**
 * Optional segments: loaded by their branch when the manifest has them. `und_image_embed` (pixels ->
 * the understanding side's semantic image tokens) comes with models that read images on the text side;
 * `gen_text_partial_l` (l = 0..M-2, see `textPartialSegment`) lets a split driver send a joint layer's
 * partial before running the rest of that layer.
 */
export const OPTIONAL_SEGMENTS = { und: ['und_image_embed'], gen: [] } as const satisfies Record<'und' | 'gen', readonly string[]>;

/**
 * The image side's segment of joint layer `l` that computes only the text queries' partial attention
 * over the image keys (`text_out`, `text_lse`: the same numbers as `gen_joint_l`'s).
 */
export function textPartialSegment(l: number): string {
  return `gen_text_partial_${l}`;
}

/** Segment names each branch loads, derived from the architecture (plus the optional ones present). */
export function requiredSegments(manifest: Manifest, branch: 'und' | 'gen'): string[] {
  const joint = Array.from({ length: manifest.architecture.joint_layers }, (_, l) => l);
  const optional: string[] = OPTIONAL_SEGMENTS[branch].filter((name) => manifest.segments[name] !== undefined);
  if (branch === 'und') {
    return ['und_embed', ...joint.flatMap((l) => [`und_joint_qkv_${l}`, `und_joint_out_${l}`]), ...textTailSegments(manifest), ...optional];
  }
  const partials = joint
    .slice(0, -1)
    .map(textPartialSegment)
    .filter((name) => manifest.segments[name] !== undefined);
  return ['gen_embed', ...joint.map((l) => `gen_joint_${l}`), ...partials, 'gen_tail', 'vq_decode', 'vq_encode', ...optional];
}

/**
 * The text side after the joint layers: one `und_tail`, or per layer (`und_layer_qkv_l`,
 * `und_layer_out_l` for l = M..N-1, the same form as the joint layers' text pieces) and `und_head`.
 * The per-layer form lets a runtime keep a prompt's keys and values (prompt cache).
 */
export function textTailSegments(manifest: Manifest): string[] {
  if (manifest.segments.und_tail || !manifest.segments.und_head) return ['und_tail'];
  const { joint_layers: m, num_layers: n } = manifest.architecture;
  const layers = Array.from({ length: n - m }, (_, i) => m + i);
  return [...layers.flatMap((l) => [`und_layer_qkv_${l}`, `und_layer_out_${l}`]), 'und_head'];
}

/**
 * Checks that the manifest is consistent with itself: layer counts, special tokens, the image grid,
 * and the fixed dimensions of the segments that carry the architecture's sizes.
 */
export function manifestProblems(manifest: Manifest): string[] {
  const problems: string[] = [];
  const a = manifest.architecture;
  const { text, image } = manifest;
  if (a.joint_layers > a.num_layers) {
    problems.push(`architecture.joint_layers ${a.joint_layers} exceeds num_layers ${a.num_layers}`);
  }
  if (a.gen_hidden > a.und_hidden) {
    problems.push(`architecture.gen_hidden ${a.gen_hidden} exceeds und_hidden ${a.und_hidden}`);
  }
  for (const [key, id] of Object.entries(text.special_tokens)) {
    if (id >= text.vocab.length) problems.push(`text.special_tokens.${key} ${id} is outside the vocabulary of ${text.vocab.length}`);
  }
  if (text.loc_bins.first_id + text.loc_bins.count > text.vocab.length) {
    problems.push(`text.loc_bins run past the vocabulary of ${text.vocab.length}`);
  }
  if (image.grid[0] * image.patch !== image.height || image.grid[1] * image.patch !== image.width) {
    problems.push(`image.grid ${image.grid.join('x')} x patch ${image.patch} does not make ${image.height}x${image.width}`);
  }
  if (image.condition_offset === undefined) {
    if (image.mask_id !== image.codebook_size || image.vocab_size !== image.codebook_size + 1) {
      problems.push('image.mask_id must equal codebook_size and vocab_size must be codebook_size + 1');
    }
  } else if (
    image.mask_id !== image.codebook_size ||
    image.vocab_size !== 2 * image.codebook_size + 1 ||
    image.condition_offset !== image.codebook_size + 1
  ) {
    problems.push(
      'with image.condition_offset, mask_id must equal codebook_size, vocab_size must be 2 x codebook_size + 1 and condition_offset codebook_size + 1',
    );
  }
  const expectLast = (segment: string, output: string, size: number, what: string) => {
    const spec = manifest.segments[segment]?.outputs.find((o) => o.name === output);
    const last = spec?.shape[spec.shape.length - 1];
    if (spec && last !== size) problems.push(`segment ${segment} output ${output} ends in ${last}, expected ${what} ${size}`);
  };
  expectLast('und_embed', 'hidden', a.und_hidden, 'und_hidden');
  expectLast('gen_embed', 'hidden', a.gen_hidden, 'gen_hidden');
  expectLast('und_tail', 'logits', text.vocab.length, 'text vocabulary size');
  expectLast('und_head', 'logits', text.vocab.length, 'text vocabulary size');
  expectLast('gen_tail', 'logits', image.codebook_size, 'codebook_size');
  const imageEmbed = manifest.segments.und_image_embed;
  if (imageEmbed) {
    if (imageEmbed.branch !== 'und') problems.push(`segment und_image_embed has branch ${imageEmbed.branch}, expected und`);
    const pixels = imageEmbed.inputs.find((i) => i.name === 'pixels');
    const want = [-1, image.height, image.width, image.channels];
    if (imageEmbed.inputs.length !== 1 || !pixels || pixels.dtype !== 'uint8' || pixels.shape.join() !== want.join()) {
      problems.push(`segment und_image_embed must take one input pixels uint8 [${want.join(',')}]`);
    }
    const hidden = imageEmbed.outputs.find((o) => o.name === 'hidden');
    const tokens = image.grid[0] * image.grid[1];
    if (imageEmbed.outputs.length !== 1 || !hidden || hidden.dtype !== 'float32' || hidden.shape.length !== 3) {
      problems.push('segment und_image_embed must give one output hidden float32 [B, image tokens, und_hidden]');
    } else if (hidden.shape[1] !== tokens && hidden.shape[1] !== -1) {
      problems.push(`segment und_image_embed output hidden has ${hidden.shape[1]} tokens, expected the grid's ${tokens}`);
    }
    expectLast('und_image_embed', 'hidden', a.und_hidden, 'und_hidden');
  }
  return problems;
}
