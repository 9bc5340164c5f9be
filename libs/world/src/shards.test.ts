import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkEdit } from './edits.js';
import { dequantiseBox, scoreGrounding } from './grounding.js';
import { checkPlan } from './plans.js';
import { checkLuminance, checkPrompt, parsePrompt } from './prompts.js';
import { answerQuestion, parseQuestion } from './questions.js';
import { readImage } from './read.js';
import { parseVerdict, reflect } from './reflection.js';
import { render } from './render.js';
import { sameScene } from './scene.js';
import { EVAL_SEED_START, IMAGE_BYTES, makeSample, readShard, writeShard } from './shards.js';

const dir = mkdtempSync(join(tmpdir(), 'world-shards-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('shards', () => {
  it('writes 20 samples and reads them back consistently', () => {
    const out = join(dir, 'train');
    const meta = writeShard({ out, seed: 500, count: 20 });
    assert.equal(meta.split, 'train');
    const shard = readShard(out);
    assert.deepEqual(shard.meta, meta);
    assert.equal(shard.samples.length, 20);
    assert.equal(statSync(join(out, 'images.u8')).size, meta.images * IMAGE_BYTES);
    let withLuminance = 0;
    let perturbed = 0;
    for (const [i, r] of shard.samples.entries()) {
      assert.equal(r.id, i);
      assert.equal(r.seed, 500 + i);
      // Images are the scenes' renders.
      assert.deepEqual(shard.image(r.image), render(r.scene));
      assert.deepEqual(shard.image(r.edit.target_image), render(r.edit.target_scene));
      // Every task record agrees with the scorers on the stored images.
      const read = readImage(shard.image(r.image));
      assert.ok(read.clean && sameScene(read.scene, r.scene));
      assert.deepEqual(parsePrompt(r.t2i.text), r.t2i.spec);
      assert.ok(checkPrompt(r.t2i.spec, read.scene));
      if (r.t2i.luminance !== null) {
        withLuminance++;
        assert.ok(r.t2i.text.endsWith(`LUMINANCE : ${r.t2i.luminance.toFixed(3)};`));
        assert.ok(checkLuminance(r.t2i.luminance, read.background));
      }
      assert.deepEqual(parseQuestion(r.question.text), r.question.spec);
      assert.equal(answerQuestion(r.question.spec, read.scene), r.question.answer);
      assert.ok(scoreGrounding(dequantiseBox(r.grounding.bins), r.grounding.box));
      assert.ok(checkEdit(r.scene, r.edit.spec, readImage(shard.image(r.edit.target_image))));
      assert.ok(checkPlan(r.t2i.spec, r.plan.layout));
      const truth = reflect(r.reflection.spec, readImage(shard.image(r.reflection.image)));
      assert.deepEqual(parseVerdict(r.reflection.text), truth);
      assert.equal(r.reflection.matches, truth.matches);
      if (r.reflection.perturbation !== 'none') perturbed++;
    }
    assert.ok(withLuminance > 0 && withLuminance < 20);
    assert.ok(perturbed > 0 && perturbed < 20);
  });

  it('is reproducible per sample seed', () => {
    const shard = readShard(join(dir, 'train'));
    const stored = shard.samples[7];
    const again = makeSample(507);
    // Local image indices start at 0 for the scene; the writer offsets them by the sample's first image.
    const base = stored.image;
    assert.deepEqual(
      {
        ...again.record,
        id: 7,
        image: base,
        edit: { ...again.record.edit, target_image: base + again.record.edit.target_image },
        reflection: { ...again.record.reflection, image: base + again.record.reflection.image },
      },
      stored,
    );
    again.images.forEach((rgb, k) => assert.deepEqual(shard.image(base + k), rgb));
  });

  it('keeps train and eval seeds apart', () => {
    assert.throws(() => writeShard({ out: join(dir, 'x'), seed: EVAL_SEED_START - 5, count: 10 }));
    assert.throws(() => writeShard({ out: join(dir, 'x'), seed: 0, count: 10, split: 'eval' }));
    const meta = writeShard({ out: join(dir, 'eval'), count: 3, split: 'eval' });
    assert.equal(meta.seed, EVAL_SEED_START);
    assert.ok(readShard(join(dir, 'eval')).samples.every((s) => s.split === 'eval' && s.seed >= EVAL_SEED_START));
  });

  it('the CLI writes a shard', () => {
    const cli = fileURLToPath(new URL('./cli/shards.js', import.meta.url));
    const out = join(dir, 'cli');
    const result = spawnSync(process.execPath, [cli, '--out', out, '--seed', '42', '--count', '5'], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(readShard(out).meta.count, 5);
    const bad = spawnSync(process.execPath, [cli, '--out', out], { encoding: 'utf8' });
    assert.notEqual(bad.status, 0);
  });
});
