import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { jointForward, ModelPackage, Tensor } from '@lavida/model';
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

  it('gen_embed adds its grid-cell table by cell i mod I over two grids in a row, as PyTorch does', async () => {
    assert.equal(pkg.manifest.architecture.image_position_table, true, 'the fixture is exported with a grid-cell table');
    const c = cases.find((c) => c.name === 'gen_embed_two_grids');
    assert.ok(c, 'golden.json has no gen_embed_two_grids case');
    const [rows, len] = c.inputs.image_ids.dims;
    const [gridRows, gridCols] = pkg.manifest.image.grid;
    assert.equal(len, 2 * gridRows * gridCols);
    const out = await pkg.run('gen_embed', c.inputs);
    const diff = maxAbsDiff(out.hidden, c.outputs.hidden);
    assert.ok(diff <= TOLERANCE, `gen_embed on two grids differs by ${diff}`);

    // One code in every cell of two grids: the rows differ from cell to cell (the table is there) and
    // repeat exactly from the first grid to the second (cell i mod I, not i).
    const cells = gridRows * gridCols;
    const code = 3n;
    const ids = new Tensor('int64', new BigInt64Array(rows * len).fill(code), [rows, len]);
    const h = (await pkg.run('gen_embed', { image_ids: ids })).hidden;
    const width = h.dims[2];
    const data = h.data as Float32Array;
    const row = (b: number, i: number) => Array.from(data.subarray((b * len + i) * width, (b * len + i + 1) * width));
    assert.notDeepEqual(row(0, 0), row(0, 1), 'cells 0 and 1 embed one code alike: no position table');
    for (let i = 0; i < cells; i++) assert.deepEqual(row(0, cells + i), row(0, i), `cell ${i} of the second grid`);
  });

  it('detects a perturbed output (the comparison can fail)', async () => {
    const c = cases.find((c) => c.name === 'segment:gen_tail')!;
    const out = await pkg.run('gen_tail', c.inputs);
    const data = out.logits.data as Float32Array;
    data[0] += 1e-3;
    assert.ok(maxAbsDiff(out.logits, c.outputs.logits) > TOLERANCE);
  });
});
