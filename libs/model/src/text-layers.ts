import type { ModelPackage, Tensor } from './package.js';
import { Tensor as OrtTensor } from './package.js';
import { emptyPartial } from './tensor-ops.js';

/** Keys and values of one layer, float32 [rows, heads, tokens, head_dim]. */
export interface LayerKV {
  k: Tensor;
  v: Tensor;
}

/** The text side's segment pair of layer `l` (joint layers and, in the per-layer form, the split ones). */
function layerSegments(pkg: ModelPackage, l: number): [string, string] {
  return l < pkg.manifest.architecture.joint_layers ? [`und_joint_qkv_${l}`, `und_joint_out_${l}`] : [`und_layer_qkv_${l}`, `und_layer_out_${l}`];
}

/** Whether the package has the per-layer text tail that a prompt cache needs. */
export function hasLayeredTextTail(pkg: ModelPackage): boolean {
  const { joint_layers: m, num_layers: n } = pkg.manifest.architecture;
  if (!pkg.has('und_head')) return false;
  for (let l = m; l < n; l++) if (!pkg.has(`und_layer_qkv_${l}`) || !pkg.has(`und_layer_out_${l}`)) return false;
  return true;
}

/**
 * The text side after the joint layers, from hidden states entering layer M: `und_tail`, or the
 * per-layer segments (attending within the text side: an empty remote partial) and `und_head`.
 */
export async function textTail(pkg: ModelPackage, hidden: Tensor, positions: Tensor): Promise<Tensor> {
  if (pkg.has('und_tail')) return (await pkg.run('und_tail', { hidden, positions })).logits;
  const { joint_layers: m, num_layers: n, heads, head_dim: headDim } = pkg.manifest.architecture;
  const empty = emptyPartial(hidden.dims[0], heads, hidden.dims[1], headDim);
  for (let l = m; l < n; l++) {
    const [qkvName, outName] = layerSegments(pkg, l);
    const { q, k, v } = await pkg.run(qkvName, { hidden, positions });
    hidden = (await pkg.run(outName, { hidden, q, k, v, remote_out: empty.out, remote_lse: empty.lse })).hidden_out;
  }
  return (await pkg.run('und_head', { hidden })).logits;
}

/**
 * Every text layer's keys and values of a prompt, kept between decoding steps. Each layer's buffer
 * is float32 [B, H, keep + A, D]: the prompt's `keep` tokens, then room for the A active tokens of
 * a cached forward, whose own keys and values are written there in place every step (no new
 * buffer, no copy of the prompt's part).
 */
export class PromptCache {
  /** Float32 [B, H] zeros and -inf of the active tokens: the empty remote partial, kept for the next step. */
  private empty?: { tokens: number; out: Tensor; lse: Tensor };

  /** @param layers each layer's keys and values of a whole forward whose first `keep` tokens are the prompt. */
  constructor(
    readonly keep: number,
    private readonly layers: readonly LayerKV[],
  ) {}

  get numLayers(): number {
    return this.layers.length;
  }

  /**
   * Layer `l`'s [prompt; own] keys and values, for active tokens' own k and v (float32
   * [B, H, A, D]). The buffers are reused: valid until the next call for the same layer.
   */
  keysAndValues(l: number, own: LayerKV): LayerKV {
    const { k, v } = this.layers[l];
    const active = own.k.dims[2];
    if (k.dims[2] !== this.keep + active || k.dims[0] !== own.k.dims[0]) {
      return { k: catTokens(firstTokens(k, this.keep), own.k), v: catTokens(firstTokens(v, this.keep), own.v) };
    }
    writeTokens(k, own.k, this.keep);
    writeTokens(v, own.v, this.keep);
    return { k, v };
  }

  /** The empty remote partial (out = 0, lse = -inf) of `tokens` active tokens, allocated once. */
  emptyPartial(rows: number, heads: number, tokens: number, headDim: number): { out: Tensor; lse: Tensor } {
    if (this.empty?.tokens !== tokens || this.empty.out.dims[0] !== rows) this.empty = { tokens, ...emptyPartial(rows, heads, tokens, headDim) };
    return this.empty;
  }
}

/** Writes float32 [B, H, A, D] `own` over tokens at..at+A-1 of float32 [B, H, S, D] `into`. */
function writeTokens(into: Tensor, own: Tensor, at: number): void {
  const [b, h, s, d] = into.dims;
  const a = own.dims[2];
  const dst = into.data as Float32Array;
  const src = own.data as Float32Array;
  for (let i = 0; i < b * h; i++) dst.set(src.subarray(i * a * d, (i + 1) * a * d), (i * s + at) * d);
}

/** Tokens 0..count-1 of float32 [B, H, S, D] (or [B, H, S]). */
function firstTokens(t: Tensor, count: number): Tensor {
  const [b, h, s] = t.dims;
  const d = t.dims.length === 4 ? t.dims[3] : 1;
  const data = t.data as Float32Array;
  const out = new Float32Array(b * h * count * d);
  for (let i = 0; i < b * h; i++) out.set(data.subarray(i * s * d, i * s * d + count * d), i * count * d);
  return new OrtTensor('float32', out, t.dims.length === 4 ? [b, h, count, d] : [b, h, count]);
}

/** [cached; own] along the token axis of float32 [B, H, S, D] tensors. */
function catTokens(cached: Tensor, own: Tensor): Tensor {
  const [b, h, p, d] = cached.dims;
  const a = own.dims[2];
  const c = cached.data as Float32Array;
  const o = own.data as Float32Array;
  const out = new Float32Array(b * h * (p + a) * d);
  for (let i = 0; i < b * h; i++) {
    out.set(c.subarray(i * p * d, (i + 1) * p * d), i * (p + a) * d);
    out.set(o.subarray(i * a * d, (i + 1) * a * d), i * (p + a) * d + p * d);
  }
  return new OrtTensor('float32', out, [b, h, p + a, d]);
}

/**
 * All text layers over a whole sequence (empty remote partial), keeping every layer's keys and
 * values: the prompt cache of its first `keep` tokens. Returns the logits and the cache.
 */
export async function forwardFillingCache(pkg: ModelPackage, hidden: Tensor, positions: Tensor, keep: number): Promise<{ logits: Tensor; cache: PromptCache }> {
  const { num_layers: n, heads, head_dim: headDim } = pkg.manifest.architecture;
  const empty = emptyPartial(hidden.dims[0], heads, hidden.dims[1], headDim);
  const layers: LayerKV[] = [];
  for (let l = 0; l < n; l++) {
    const [qkvName, outName] = layerSegments(pkg, l);
    const { q, k, v } = await pkg.run(qkvName, { hidden, positions });
    // The whole k and v are kept: their first `keep` tokens are the prompt's, the rest is the room
    // where later forwards write the active tokens' own.
    layers.push({ k, v });
    hidden = (await pkg.run(outName, { hidden, q, k, v, remote_out: empty.out, remote_lse: empty.lse })).hidden_out;
  }
  return { logits: (await pkg.run('und_head', { hidden })).logits, cache: new PromptCache(keep, layers) };
}

/**
 * All text layers over the active tokens only (answer slots and what follows them), each layer
 * attending over the cached prompt keys and values plus the active tokens' own: the prompt is not
 * recomputed. The prompt's states are those of the step that filled the cache (as in Fast-dLLM's
 * prefix cache): exact for the active tokens' view of the prompt only when the prompt does not
 * attend to them, so answers may differ slightly from uncached decoding (measured by the bench).
 */
export async function forwardWithCache(pkg: ModelPackage, hidden: Tensor, positions: Tensor, cache: PromptCache): Promise<Tensor> {
  const { num_layers: n, heads, head_dim: headDim } = pkg.manifest.architecture;
  const empty = cache.emptyPartial(hidden.dims[0], heads, hidden.dims[1], headDim);
  for (let l = 0; l < n; l++) {
    const [qkvName, outName] = layerSegments(pkg, l);
    const { q, k, v } = await pkg.run(qkvName, { hidden, positions });
    // The local partial of `und_*_out` runs over [cached prompt keys; the active tokens' own keys].
    const kv = cache.keysAndValues(l, { k, v });
    hidden = (await pkg.run(outName, { hidden, q, k: kv.k, v: kv.v, remote_out: empty.out, remote_lse: empty.lse })).hidden_out;
  }
  return (await pkg.run('und_head', { hidden })).logits;
}
