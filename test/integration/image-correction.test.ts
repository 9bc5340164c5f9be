import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { correctionClasses, diffusionSteps, LocalJointPeer, ModelPackage, textToImage, unmaskSchedule } from '@lavida/model';
import { MINI_MODEL } from '../support/paths.js';

/**
 * Correction sweeps (manifest `sampling.correction_sweeps`): after the schedule's steps, each sweep
 * masks one parity class of the grid at a time and puts every cell's argmax code there. The exact
 * tokens are checked against the PyTorch sampler by tasks-golden.test.ts; this checks the mechanics
 * on the trained model with the sweeps switched on and off.
 */
describe('image correction sweeps', () => {
  let pkg: ModelPackage;
  let peer: LocalJointPeer;

  before(async () => {
    pkg = await ModelPackage.load(MINI_MODEL, { branch: 'all' });
    peer = new LocalJointPeer(pkg);
  });
  after(async () => {
    await pkg?.release();
  });

  it('visits every cell once a sweep, never two neighbours at once', () => {
    const classes = correctionClasses(8, 8);
    assert.equal(classes.length, 4);
    const seen = classes.flat().sort((a, b) => a - b);
    assert.deepEqual(
      seen,
      Array.from({ length: 64 }, (_, i) => i),
    );
    for (const cells of classes) {
      for (const a of cells) {
        for (const b of cells) {
          if (a === b) continue;
          const near = Math.abs(Math.floor(a / 8) - Math.floor(b / 8)) <= 1 && Math.abs((a % 8) - (b % 8)) <= 1;
          assert.ok(!near, `cells ${a} and ${b} are neighbours in one class`);
        }
      }
    }
    // A grid one row high has two classes; one cell, one.
    assert.deepEqual(correctionClasses(1, 3), [[0, 2], [1]]);
    assert.deepEqual(correctionClasses(1, 1), [[0]]);
  });

  it('adds four steps a sweep after the schedule, and changes the image only through them', async () => {
    const { sampling } = pkg.manifest;
    const request = { prompt: 'a red circle left of a blue square', seed: 7 };
    const run = async (correctionSweeps?: number) => {
      const progress: number[] = [];
      const result = await textToImage(
        pkg,
        peer,
        { ...request, correctionSweeps },
        {
          sessionId: `correction-${correctionSweeps}`,
          onStep: (step) => void progress.push(step),
        },
      );
      return { result, progress };
    };
    const schedule = unmaskSchedule(64, sampling.steps, sampling.shift).length;
    const plain = await run(0);
    const one = await run(1);
    const two = await run(2);
    const byDefault = await run(undefined);
    assert.equal(diffusionSteps(pkg, sampling.steps, 2), schedule + 8);
    assert.equal(plain.result.steps, schedule);
    assert.equal(one.result.steps, schedule + 4);
    assert.equal(two.result.steps, schedule + 8);
    assert.equal(two.progress.length, schedule + 8);
    // Unset: the model's own sweeps.
    const own = sampling.correction_sweeps ?? 0;
    assert.equal(byDefault.result.steps, schedule + 4 * own);
    assert.deepEqual(byDefault.result.tokens, (await run(own)).result.tokens);
    // The corrections rework the schedule's image: some cells change, not all of them.
    const changed = (a: number[], b: number[]) => a.filter((t, i) => t !== b[i]).length;
    for (const corrected of [one, two]) {
      const n = changed(plain.result.tokens, corrected.result.tokens);
      assert.ok(n > 0 && n < 64, `${n} of 64 cells changed by the corrections`);
    }
  });

  it('rejects a number of sweeps outside 0..16', async () => {
    for (const correctionSweeps of [-1, 17, 1.5]) {
      await assert.rejects(
        textToImage(pkg, peer, { prompt: 'a red circle', seed: 1, correctionSweeps }, { sessionId: `bad-${correctionSweeps}` }),
        (e: Error & { code?: string }) => e.code === 'INVALID_INPUT' && /correction_sweeps must be an integer 0\.\.16/.test(e.message),
      );
    }
  });
});
