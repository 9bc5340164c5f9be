import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { concatTokens, jointForward, ModelPackage, positionsTensor, Tensor, textTail } from '@lavida/model';
import { generateScene, render, Rng } from '@lavida/world';
import { maxAbsDiff, readGolden, type GoldenCase } from '../support/golden.js';
import { ROOT } from '../support/paths.js';

/**
 * The trained lavida-o-mini package (models/lavida-o-mini, written by
 * `cd model && python3 -m lavida_mini.export --checkpoint CKPT --codebook CODEBOOK.npz --out ../models/lavida-o-mini`).
 */
const MINI_MODEL = resolve(ROOT, 'models/lavida-o-mini');

/**
 * Float32 rounding differences between PyTorch and onnxruntime (other matmul / softmax summation
 * orders) grow with the weights and logits as training goes on, so the trained model gets a wider
 * bound than the fixture's 1e-4. Measured (max |diff| over all golden cases, logged after the run):
 * 4.3e-6 at checkpoint step 511 (|logits| <= 10), 7.2e-6 at step 1154 (|logits| <= 11.4; worst:
 * full_forward, understand_forward, segment:gen_tail 6.7e-6). 1e-3 keeps a margin of over 100x for the
 * growth still to come while failing on a 2e-3 perturbation (last test). Integer outputs (vq_*)
 * must match exactly.
 */
const TOLERANCE = 1e-3;

const skip = existsSync(join(MINI_MODEL, 'manifest.json'))
  ? false
  : `${MINI_MODEL} does not exist: export it with cd model && python3 -m lavida_mini.export --checkpoint CKPT --codebook CODEBOOK.npz --out ../models/lavida-o-mini --name lavida-o-mini`;

/** Slices float32 [B, S, D] to tokens start..S-1. */
function tokensFrom(t: Tensor, start: number): Tensor {
  const [rows, len, width] = t.dims;
  const data = t.data as Float32Array;
  const out = new Float32Array(rows * (len - start) * width);
  for (let b = 0; b < rows; b++) out.set(data.subarray((b * len + start) * width, (b + 1) * len * width), b * (len - start) * width);
  return new Tensor('float32', out, [rows, len - start, width]);
}

/** Per token of float32 [B, S, K]: top logit, its index and the gap to the runner-up. */
function topOf(t: Tensor): { max: number[]; argmax: number[]; margin: number[] } {
  const width = t.dims[2];
  const data = t.data as Float32Array;
  const max: number[] = [];
  const argmax: number[] = [];
  const margin: number[] = [];
  for (let i = 0; i < data.length / width; i++) {
    let best = -Infinity;
    let second = -Infinity;
    let index = 0;
    for (let k = 0; k < width; k++) {
      const x = data[i * width + k];
      if (x > best) {
        second = best;
        best = x;
        index = k;
      } else if (x > second) second = x;
    }
    max.push(best);
    argmax.push(index);
    margin.push(best - second);
  }
  return { max, argmax, margin };
}

describe('lavida-o-mini package against its PyTorch golden vectors', { skip }, () => {
  let pkg: ModelPackage;
  let cases: GoldenCase[];
  const diffs = new Map<string, number>();
  const golden = (name: string) => {
    const c = cases.find((c) => c.name === name);
    assert.ok(c, `golden.json has no case ${name}`);
    return c;
  };

  before(async () => {
    pkg = await ModelPackage.load(MINI_MODEL, { branch: 'all' });
    cases = readGolden(MINI_MODEL);
  });
  after(async () => {
    await pkg?.release();
    if (diffs.size > 0) console.log(`lavida-o-mini max |diff| per golden case: ${JSON.stringify(Object.fromEntries(diffs))}`);
  });

  it('loads for all, with und_image_embed, editing condition ids and the training task templates', () => {
    const { image, tasks, architecture } = pkg.manifest;
    assert.ok(pkg.has('und_image_embed'), 'und_image_embed is loaded by the und branch');
    assert.equal(image.vocab_size, 2 * image.codebook_size + 1);
    assert.equal(image.condition_offset, image.codebook_size + 1);
    assert.equal(pkg.spec('und_image_embed').outputs[0].shape.at(-1), architecture.und_hidden);
    assert.equal(tasks?.understand, 'question : {question}');
    assert.match(pkg.manifest.description ?? '', /checkpoint step \d+/);
  });

  it('covers every loaded segment', () => {
    const covered = new Set(cases.map((c) => c.name.replace(/^segment:/, '')));
    for (const name of pkg.segmentNames) assert.ok(covered.has(name), `no golden case for segment ${name}`);
  });

  it(`every segment matches PyTorch within ${TOLERANCE} (integer outputs exactly)`, async () => {
    for (const c of cases.filter((c) => c.name.startsWith('segment:'))) {
      const out = await pkg.run(c.name.slice('segment:'.length), c.inputs);
      let worst = 0;
      for (const [name, expected] of Object.entries(c.outputs)) {
        const diff = maxAbsDiff(out[name], expected);
        worst = Math.max(worst, diff);
        const limit = expected.type === 'float32' ? TOLERANCE : 0;
        assert.ok(diff <= limit, `${c.name} output ${name} differs by ${diff}`);
      }
      diffs.set(c.name, worst);
    }
  });

  it("gen_text_partial_0 gives gen_joint_0's text_out and text_lse bit for bit (a split driver sends it ahead)", async () => {
    const { inputs } = golden('segment:gen_joint_0');
    const joint = await pkg.run('gen_joint_0', inputs);
    const partial = await pkg.run('gen_text_partial_0', { hidden: inputs.hidden, positions: inputs.positions, text_q: inputs.text_q });
    for (const name of ['text_out', 'text_lse']) {
      const [a, b] = [partial[name].data as Float32Array, joint[name].data as Float32Array];
      assert.ok(Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength)), name);
    }
  });

  it('segments composed with the partial-attention merge match the framework forward', async () => {
    const c = golden('full_forward');
    const { textLogits, imageLogits } = await jointForward(pkg, c.inputs.text_ids, c.inputs.image_ids);
    const dt = maxAbsDiff(textLogits, c.outputs.text_logits);
    const di = maxAbsDiff(imageLogits, c.outputs.image_logits);
    diffs.set('full_forward', Math.max(dt, di));
    assert.ok(dt <= TOLERANCE, `text logits differ by ${dt}`);
    assert.ok(di <= TOLERANCE, `image logits differ by ${di}`);
  });

  it('understanding: semantic image tokens prepended to the text side, text-only joint layers', async () => {
    const c = golden('understand_forward');
    const image = (await pkg.run('und_image_embed', { pixels: c.inputs.pixels })).hidden;
    const text = (await pkg.run('und_embed', { text_ids: c.inputs.text_ids })).hidden;
    let hidden = concatTokens([image, text]);
    const [rows, len] = hidden.dims;
    const positions = positionsTensor(0, len);
    const { heads, head_dim } = pkg.manifest.architecture;
    // no image side: its partial is empty (out 0, log-sum-exp -inf), so the merge keeps the text partial
    const remoteOut = new Tensor('float32', new Float32Array(rows * heads * len * head_dim), [rows, heads, len, head_dim]);
    const remoteLse = new Tensor('float32', new Float32Array(rows * heads * len).fill(-Infinity), [rows, heads, len]);
    for (let l = 0; l < pkg.manifest.architecture.joint_layers; l++) {
      const { q, k, v } = await pkg.run(`und_joint_qkv_${l}`, { hidden, positions });
      hidden = (await pkg.run(`und_joint_out_${l}`, { hidden, q, k, v, remote_out: remoteOut, remote_lse: remoteLse })).hidden_out;
    }
    const logits = await textTail(pkg, hidden, positions);
    const diff = maxAbsDiff(tokensFrom(logits, image.dims[1]), c.outputs.text_logits);
    diffs.set('understand_forward', diff);
    assert.ok(diff <= TOLERANCE, `understanding text logits differ by ${diff}`);
  });

  it('editing: [condition grid; output grid] on the generation branch (2 x grid tokens)', async () => {
    const c = golden('edit_forward');
    assert.equal(c.inputs.image_ids.dims[1], 2 * pkg.manifest.image.grid[0] * pkg.manifest.image.grid[1]);
    const { imageLogits } = await jointForward(pkg, c.inputs.text_ids, c.inputs.image_ids);
    const top = topOf(imageLogits);
    const wantMax = c.outputs.image_logits_max.data as Float32Array;
    const wantArg = c.outputs.image_argmax.data as BigInt64Array;
    let diff = 0;
    for (let i = 0; i < top.max.length; i++) {
      diff = Math.max(diff, Math.abs(top.max[i] - wantMax[i]));
      if (top.margin[i] > 2 * TOLERANCE) assert.equal(top.argmax[i], Number(wantArg[i]), `token ${i}: argmax`);
    }
    diffs.set('edit_forward', diff);
    assert.ok(diff <= TOLERANCE, `edit top logits differ by ${diff}`);
  });

  it('vq_encode then vq_decode gives a Shapes-world image back exactly', async () => {
    const { width, height, channels } = pkg.manifest.image;
    for (const seed of [1, 2, 3]) {
      const scene = generateScene(new Rng(seed));
      const rgb = render(scene);
      const pixels = new Tensor('uint8', rgb, [1, height, width, channels]);
      const ids = (await pkg.run('vq_encode', { pixels })).image_ids;
      assert.deepEqual(ids.dims, [1, ...pkg.manifest.image.grid]);
      const back = (await pkg.run('vq_decode', { image_ids: ids })).pixels;
      const got = back.data as Uint8Array;
      let wrong = 0;
      for (let i = 0; i < rgb.length; i++) if (got[i] !== rgb[i]) wrong++;
      assert.equal(wrong, 0, `seed ${seed}: ${wrong} of ${rgb.length} bytes differ after the round trip`);
    }
  });

  it('detects a perturbed output (the comparison can fail)', async () => {
    const c = golden('segment:gen_tail');
    const out = await pkg.run('gen_tail', c.inputs);
    (out.logits.data as Float32Array)[0] += 2 * TOLERANCE;
    assert.ok(maxAbsDiff(out.logits, c.outputs.logits) > TOLERANCE);
  });
});
