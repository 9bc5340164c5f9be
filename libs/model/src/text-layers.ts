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

/** Tokens 0..count-1 of float32 [B, H, S, D] (or [B, H, S]). */
function firstTokens(t: Tensor, count: number): Tensor {
  const [b, h, s] = t.dims;
  const d = t.dims.length === 4 ? t.dims[3] : 1;
  const data = t.data as Float32Array;
  const out = new Float32Array(b * h * count * d);
  for (let i = 0; i < b * h; i++) out.set(data.subarray(i * s * d, i * s * d + count * d), i * count * d);
  return new OrtTensor('float32', out, t.dims.length === 4 ? [b, h, count, d] : [b, h, count]);
}

/**
 * Attention of queries over cached keys only: out [B,H,A,D] (softmax-weighted values) and lse
 * [B,H,A] (log-sum-exp of the scaled scores), the partial that `und_*_out` merges exactly with its
 * local one. Computed here: the cache is small (prompt tokens x head_dim per head).
 */
export function partialOverCache(q: Tensor, kv: LayerKV): { out: Tensor; lse: Tensor } {
  const [b, h, a, d] = q.dims;
  const p = kv.k.dims[2];
  const qd = q.data as Float32Array;
  const kd = kv.k.data as Float32Array;
  const vd = kv.v.data as Float32Array;
  const out = new Float32Array(b * h * a * d);
  const lse = new Float32Array(b * h * a);
  const scale = 1 / Math.sqrt(d);
  const scores = new Float64Array(p);
  for (let bh = 0; bh < b * h; bh++) {
    const kBase = bh * p * d;
    for (let i = 0; i < a; i++) {
      const qBase = (bh * a + i) * d;
      let max = -Infinity;
      for (let j = 0; j < p; j++) {
        let dot = 0;
        for (let x = 0; x < d; x++) dot += qd[qBase + x] * kd[kBase + j * d + x];
        scores[j] = dot * scale;
        if (scores[j] > max) max = scores[j];
      }
      let sum = 0;
      for (let j = 0; j < p; j++) {
        scores[j] = Math.exp(scores[j] - max);
        sum += scores[j];
      }
      const oBase = (bh * a + i) * d;
      for (let j = 0; j < p; j++) {
        const w = scores[j] / sum;
        for (let x = 0; x < d; x++) out[oBase + x] += w * vd[kBase + j * d + x];
      }
      lse[bh * a + i] = max + Math.log(sum);
    }
  }
  return { out: new OrtTensor('float32', out, [b, h, a, d]), lse: new OrtTensor('float32', lse, [b, h, a]) };
}

/**
 * All text layers over a whole sequence (empty remote partial), keeping every layer's keys and
 * values of its first `keep` tokens: the prompt cache. Returns the logits and the cache.
 */
export async function forwardFillingCache(pkg: ModelPackage, hidden: Tensor, positions: Tensor, keep: number): Promise<{ logits: Tensor; cache: LayerKV[] }> {
  const { num_layers: n, heads, head_dim: headDim } = pkg.manifest.architecture;
  const empty = emptyPartial(hidden.dims[0], heads, hidden.dims[1], headDim);
  const cache: LayerKV[] = [];
  for (let l = 0; l < n; l++) {
    const [qkvName, outName] = layerSegments(pkg, l);
    const { q, k, v } = await pkg.run(qkvName, { hidden, positions });
    cache.push({ k: firstTokens(k, keep), v: firstTokens(v, keep) });
    hidden = (await pkg.run(outName, { hidden, q, k, v, remote_out: empty.out, remote_lse: empty.lse })).hidden_out;
  }
  return { logits: (await pkg.run('und_head', { hidden })).logits, cache };
}

/**
 * All text layers over the active tokens only (answer slots and what follows them), each layer
 * attending over the cached prompt keys and values plus the active tokens' own: the prompt is not
 * recomputed. The prompt's states are those of the step that filled the cache (as in Fast-dLLM's
 * prefix cache): exact for the active tokens' view of the prompt only when the prompt does not
 * attend to them, so answers may differ slightly from uncached decoding (measured by the bench).
 */
export async function forwardWithCache(pkg: ModelPackage, hidden: Tensor, positions: Tensor, cache: readonly LayerKV[]): Promise<Tensor> {
  const n = pkg.manifest.architecture.num_layers;
  for (let l = 0; l < n; l++) {
    const [qkvName, outName] = layerSegments(pkg, l);
    const { q, k, v } = await pkg.run(qkvName, { hidden, positions });
    const remote = partialOverCache(q, cache[l]);
    hidden = (await pkg.run(outName, { hidden, q, k, v, remote_out: remote.out, remote_lse: remote.lse })).hidden_out;
  }
  return (await pkg.run('und_head', { hidden })).logits;
}
