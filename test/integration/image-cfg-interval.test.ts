import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeTokens,
  editImage,
  LocalJointPeer,
  ManifestSchema,
  ModelPackage,
  stratifiedOrder,
  textToImage,
  unmaskSchedule,
} from '@lavida/model';
import { MINI_MODEL } from '../support/paths.js';

/**
 * The guidance interval (manifest `sampling.cfg_interval` [lo, hi], the published code's `cfg_interval`):
 * step i of the schedule's S combines the rows where lo <= i / S < hi and samples from the conditional
 * row alone elsewhere; edits and regenerations from a critique guide every step. The package's own interval is checked token for token against the PyTorch sampler
 * by tasks-golden.test.ts; this checks the mechanics on the trained model with other intervals.
 */
describe('image guidance interval', () => {
  let pkg: ModelPackage;
  let peer: LocalJointPeer;
  let own: [number, number] | undefined;
  const sampling = () => pkg.manifest.sampling as { cfg_interval?: [number, number] };

  before(async () => {
    pkg = await ModelPackage.load(MINI_MODEL, { branch: 'all' });
    peer = new LocalJointPeer(pkg);
    own = sampling().cfg_interval;
  });
  after(async () => {
    if (pkg) sampling().cfg_interval = own;
    await pkg?.release();
  });

  /** The image's tokens with the manifest's interval set to `interval` (undefined: none), no corrections. */
  const draw = async (interval: [number, number] | undefined) => {
    sampling().cfg_interval = interval;
    try {
      const request = { prompt: 'a red circle left of a blue square', seed: 11, guidance: 3, correctionSweeps: 0 };
      return (await textToImage(pkg, peer, request, { sessionId: `cfg-${JSON.stringify(interval)}` })).tokens;
    } finally {
      sampling().cfg_interval = own;
    }
  };

  it('guides the steps inside the interval and no other', async () => {
    const { steps, shift, order_seed: orderSeed } = pkg.manifest.sampling;
    const schedule = unmaskSchedule(64, steps, shift);
    const order = stratifiedOrder(8, 8, orderSeed);
    const half = Math.ceil(schedule.length / 2);
    const firstHalf = order.slice(
      0,
      schedule.slice(0, half).reduce((a, b) => a + b, 0),
    );
    const at = (tokens: number[], cells: number[]) => cells.map((c) => tokens[c]);

    const always = await draw([0, 1]);
    const absent = await draw(undefined);
    const never = await draw([1, 1]);
    const late = await draw([0.5, 1]);
    const early = await draw([0, 0.5]);
    // Absent is every step guided.
    assert.deepEqual(absent, always);
    // Steps 0..half-1 are unguided in both `late` and `never`, guided in both `early` and `always`: with
    // the same generator, the cells they reveal agree pairwise.
    assert.deepEqual(at(late, firstHalf), at(never, firstHalf));
    assert.deepEqual(at(early, firstHalf), at(always, firstHalf));
    // And guidance changes what those steps draw.
    assert.notDeepEqual(at(late, firstHalf), at(always, firstHalf));
    assert.notDeepEqual(never, always);
  });

  it('leaves edits guided at every step', async () => {
    const source = await decodeTokens(pkg, await draw([0, 1]));
    const edit = async (interval: [number, number] | undefined) => {
      sampling().cfg_interval = interval;
      try {
        const request = { instruction: 'remove the circle', pixels: source, seed: 3, guidance: 3, temperature: 0.7, correctionSweeps: 0 };
        return (await editImage(pkg, peer, request, { sessionId: `cfg-edit-${JSON.stringify(interval)}` })).tokens;
      } finally {
        sampling().cfg_interval = own;
      }
    };
    assert.deepEqual(await edit([1, 1]), await edit(undefined));
  });

  it('leaves regenerations from a critique guided at every step', async () => {
    const earlier = await decodeTokens(pkg, await draw([0, 1]));
    const regenerate = async (interval: [number, number] | undefined) => {
      sampling().cfg_interval = interval;
      try {
        const request = {
          prompt: 'a red circle left of a blue square',
          seed: 5,
          guidance: 1,
          correctionSweeps: 0,
          feedback: { pixels: earlier, verdict: 'incorrect : there is no blue square' },
        };
        return (await textToImage(pkg, peer, request, { sessionId: `cfg-feedback-${JSON.stringify(interval)}` })).tokens;
      } finally {
        sampling().cfg_interval = own;
      }
    };
    assert.deepEqual(await regenerate([1, 1]), await regenerate(undefined));
  });

  it('is checked when the package loads', () => {
    const manifest = JSON.parse(pkg.manifestJson) as { sampling: Record<string, unknown> };
    const parse = (cfgInterval: unknown) =>
      ManifestSchema.safeParse({ ...manifest, sampling: { ...manifest.sampling, cfg_interval: cfgInterval } });
    for (const bad of [[0.6, 0.2], [-0.1, 1], [0, 1.5], [0.5]]) {
      const parsed = parse(bad);
      assert.ok(!parsed.success, JSON.stringify(bad));
      assert.ok(
        parsed.error.issues.some((i) => i.path.join('.').startsWith('sampling.cfg_interval')),
        `${JSON.stringify(bad)}: ${parsed.error.issues.map((i) => i.path.join('.')).join('; ')}`,
      );
    }
    assert.ok(parse([0.25, 1]).success);
  });
});
