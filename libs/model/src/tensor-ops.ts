import { Tensor } from './package.js';

/** Concatenates float32 [B, S_i, D] tensors along dimension 1 (the token axis). */
export function concatTokens(parts: readonly Tensor[]): Tensor {
  const [rows, , width] = parts[0].dims;
  const total = parts.reduce((n, p) => n + p.dims[1], 0);
  const out = new Float32Array(rows * total * width);
  let offset = 0;
  for (const part of parts) {
    const data = part.data as Float32Array;
    const len = part.dims[1];
    for (let b = 0; b < rows; b++) out.set(data.subarray(b * len * width, (b + 1) * len * width), (b * total + offset) * width);
    offset += len;
  }
  return new Tensor('float32', out, [rows, total, width]);
}

/** Repeats one packed image (H x W x C bytes) as uint8 [rows, H, W, C]. */
export function repeatImage(pixels: Uint8Array, rows: number, height: number, width: number, channels = 3): Tensor {
  const out = new Uint8Array(rows * pixels.length);
  for (let r = 0; r < rows; r++) out.set(pixels, r * pixels.length);
  return new Tensor('uint8', out, [rows, height, width, channels]);
}

/** The empty remote partial of the merge (out = 0, lse = -inf): the local partial is kept exactly. */
export function emptyPartial(rows: number, heads: number, tokens: number, headDim: number): { out: Tensor; lse: Tensor } {
  return {
    out: new Tensor('float32', new Float32Array(rows * heads * tokens * headDim), [rows, heads, tokens, headDim]),
    lse: new Tensor('float32', new Float32Array(rows * heads * tokens).fill(-Infinity), [rows, heads, tokens]),
  };
}
