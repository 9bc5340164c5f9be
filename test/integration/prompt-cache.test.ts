import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TextSideRunner, ModelPackage, UnderstandingEngine, WordTokenizer, hasLayeredTextTail } from '@lavida/model';
import { generateScene, render, Rng, sampleQuestion } from '@lavida/world';
import { FIXTURE_MODEL, MINI_MODEL } from '../support/paths.js';

/**
 * The prompt cache of text decoding (lavida-o-mini is exported with the per-layer text tail): the
 * prompt's keys and values from the first forward, later forwards over the answer slots only.
 */
describe('prompt cache of answer decoding', () => {
  let pkg: ModelPackage;
  before(async () => {
    pkg = await ModelPackage.load(MINI_MODEL, { branch: 'und' });
  });
  after(async () => {
    await pkg?.release();
  });

  it('with the slots unchanged, the cached forward gives the full forward’s logits (the mechanism is exact)', async () => {
    const runner = new TextSideRunner(pkg);
    const tok = new WordTokenizer(pkg.manifest.text);
    const scene = generateScene(new Rng(5));
    const prefix = await runner.imageTokens(render(scene), 1);
    const head = tok.encode('question : how many circles are there?');
    const slots = [tok.special.mask, tok.encode('two')[0], ...Array.from({ length: 10 }, () => tok.special.mask)];
    const full = await runner.logitsFillingCache([[...head, ...slots]], prefix.dims[1] + head.length, prefix);
    const cached = await runner.logitsWithCache([slots], prefix.dims[1] + head.length, full.cache);
    assert.equal(cached.length, slots.length, 'the cached forward runs the slots only');
    const v = full.vocab;
    let max = 0;
    for (let i = 0; i < slots.length; i++) {
      for (let j = 0; j < v; j++) {
        max = Math.max(max, Math.abs(cached.data[i * v + j] - full.data[(prefix.dims[1] + head.length + i) * v + j]));
      }
    }
    assert.ok(max < 1e-4, `logits differ by ${max}`);
    // ... and a different slot content gives different logits (the comparison can fail).
    const other = await runner.logitsWithCache([[tok.encode('three')[0], ...slots.slice(1)]], prefix.dims[1] + head.length, full.cache);
    assert.ok(other.data.some((x, i) => Math.abs(x - cached.data[i]) > 1e-3));
  });

  it('answers with the cache run fewer tokens per forward and mostly agree with exact decoding', async () => {
    const engine = new UnderstandingEngine(pkg);
    const rng = new Rng(11);
    let same = 0;
    const n = 12;
    for (let i = 0; i < n; i++) {
      const scene = generateScene(rng);
      const q = sampleQuestion(rng, scene);
      const pixels = render(scene);
      const [a, b] = [await engine.understand(pixels, q.text), await engine.understand(pixels, q.text, { promptCache: true })];
      assert.equal(a.forwards, b.forwards);
      if (a.text === b.text) same += 1;
    }
    // Measured 51 of 60 eval questions identical (bench: npm run bench); a broken cache agrees on few.
    assert.ok(same >= n / 2, `${same} of ${n} answers agree`);
  });

  it('a package with one und_tail has no prompt cache, and says so', async () => {
    const fixture = await ModelPackage.load(FIXTURE_MODEL, { branch: 'und' });
    try {
      assert.equal(hasLayeredTextTail(fixture), false);
      assert.equal(hasLayeredTextTail(pkg), true);
    } finally {
      await fixture.release();
    }
  });
});
