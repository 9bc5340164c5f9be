import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { jointForward, ModelPackage } from '@lavida/model';
import { maxAbsDiff, readGolden, type GoldenCase } from '../support/golden.js';
import { FIXTURE_MODEL } from '../support/paths.js';

const TOLERANCE = 1e-4;

describe('fixture model against the PyTorch golden vectors', () => {
  let pkg: ModelPackage;
  let cases: GoldenCase[];
  before(async () => {
    pkg = await ModelPackage.load(FIXTURE_MODEL, { branch: 'all' });
    cases = readGolden(FIXTURE_MODEL);
  });
  after(() => pkg.release());

  it('covers every loaded segment', () => {
    const covered = new Set(cases.map((c) => c.name.replace(/^segment:/, '')));
    for (const name of pkg.segmentNames) assert.ok(covered.has(name), `no golden case for segment ${name}`);
  });

  it('every segment matches PyTorch within 1e-4', async () => {
    for (const c of cases.filter((c) => c.name.startsWith('segment:'))) {
      const out = await pkg.run(c.name.slice('segment:'.length), c.inputs);
      for (const [name, expected] of Object.entries(c.outputs)) {
        const diff = maxAbsDiff(out[name], expected);
        assert.ok(diff <= TOLERANCE, `${c.name} output ${name} differs by ${diff}`);
      }
    }
  });

  it('segments composed with the partial-attention merge match the framework forward', async () => {
    const c = cases.find((c) => c.name === 'full_forward')!;
    const { textLogits, imageLogits } = await jointForward(pkg, c.inputs.text_ids, c.inputs.image_ids);
    assert.ok(maxAbsDiff(textLogits, c.outputs.text_logits) <= TOLERANCE, 'text logits');
    assert.ok(maxAbsDiff(imageLogits, c.outputs.image_logits) <= TOLERANCE, 'image logits');
  });

  it("gen_text_partial_0 gives gen_joint_0's text_out and text_lse bit for bit (a split driver sends it ahead)", async () => {
    const { inputs } = cases.find((c) => c.name === 'segment:gen_joint_0')!;
    const joint = await pkg.run('gen_joint_0', inputs);
    const partial = await pkg.run('gen_text_partial_0', { hidden: inputs.hidden, positions: inputs.positions, text_q: inputs.text_q });
    for (const name of ['text_out', 'text_lse']) {
      const [a, b] = [partial[name].data as Float32Array, joint[name].data as Float32Array];
      assert.ok(Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength)), name);
    }
  });

  it('detects a perturbed output (the comparison can fail)', async () => {
    const c = cases.find((c) => c.name === 'segment:gen_tail')!;
    const out = await pkg.run('gen_tail', c.inputs);
    const data = out.logits.data as Float32Array;
    data[0] += 1e-3;
    assert.ok(maxAbsDiff(out.logits, c.outputs.logits) > TOLERANCE);
  });
});
