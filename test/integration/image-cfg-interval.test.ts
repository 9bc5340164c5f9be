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
 * row alone elsewhere; edits and regenerations from a critique guide every step. A request's `cfgInterval`
 * overrides the manifest's. The package's own interval is checked token for token against the PyTorch sampler
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

  const REQUEST = { prompt: 'a red circle left of a blue square', seed: 11, guidance: 3, correctionSweeps: 0 };

  /**
   * The image's tokens with the manifest's interval set to `manifest` (undefined: none) and the request's
   * to `request` (undefined: the manifest's), no corrections.
   */
  const drawWith = async (manifest: [number, number] | undefined, request?: [number, number]) => {
    sampling().cfg_interval = manifest;
    try {
      const session = `cfg-${JSON.stringify(manifest)}-${JSON.stringify(request)}`;
      return (await textToImage(pkg, peer, { ...REQUEST, cfgInterval: request }, { sessionId: session })).tokens;
    } finally {
      sampling().cfg_interval = own;
    }
  };
  /** The image's tokens with the manifest's interval set to `interval` (undefined: none). */
  const draw = (interval: [number, number] | undefined) => drawWith(interval);

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

  it("takes a request's interval as the manifest's, over the manifest's", async () => {
    for (const interval of [
      [0.5, 1],
      [0, 0.5],
      [0.25, 0.75],
    ] as [number, number][]) {
      // The package's own interval in the manifest, the request's in the request: as if the manifest had it.
      const asked = await drawWith(own, interval);
      assert.deepEqual(asked, await draw(interval), `request ${JSON.stringify(interval)}`);
      // The request wins over any manifest interval.
      assert.deepEqual(await drawWith([1, 1], interval), asked, `request ${JSON.stringify(interval)} over a manifest's [1, 1]`);
    }
    // Unset is the manifest's; and the interval asked for changes the image (the comparisons can fail).
    assert.deepEqual(await drawWith([0.5, 1], undefined), await draw([0.5, 1]));
    assert.notDeepEqual(await drawWith(own, [0.5, 1]), await drawWith(own, [0, 1]));
    assert.notDeepEqual(await drawWith(own, [0, 0.5]), await drawWith(own, [0.5, 1]));
  });

  it('leaves edits guided at every step', async () => {
    const source = await decodeTokens(pkg, await draw([0, 1]));
    const edit = async (interval: [number, number] | undefined, guidance = 3) => {
      sampling().cfg_interval = interval;
      try {
        const request = { instruction: 'remove the circle', pixels: source, seed: 3, guidance, temperature: 0.7, correctionSweeps: 0 };
        return (await editImage(pkg, peer, request, { sessionId: `cfg-edit-${JSON.stringify(interval)}-${guidance}` })).tokens;
      } finally {
        sampling().cfg_interval = own;
      }
    };
    const guided = await edit(undefined);
    assert.deepEqual(await edit([1, 1]), guided);
    // What a step without guidance would draw differs (the comparison can fail). An edit request takes no
    // interval of its own: the api refuses cfg_interval on an edit (bad-requests.e2e.test.ts).
    assert.notDeepEqual(await edit(undefined, 0), guided);
  });

  it("leaves regenerations from a critique guided at every step, whatever the manifest's or the request's interval", async () => {
    const earlier = await decodeTokens(pkg, await draw([0, 1]));
    const feedback = { pixels: earlier, verdict: 'incorrect : there is no blue square' };
    const regenerate = async (interval: [number, number] | undefined, request?: [number, number], withFeedback = true) => {
      sampling().cfg_interval = interval;
      try {
        const image = {
          prompt: 'a red circle left of a blue square',
          seed: 5,
          guidance: 1,
          correctionSweeps: 0,
          cfgInterval: request,
          feedback: withFeedback ? feedback : undefined,
        };
        const session = `cfg-feedback-${JSON.stringify(interval)}-${JSON.stringify(request)}-${withFeedback}`;
        return (await textToImage(pkg, peer, image, { sessionId: session })).tokens;
      } finally {
        sampling().cfg_interval = own;
      }
    };
    const everyStep = await regenerate(undefined);
    assert.deepEqual(await regenerate([1, 1]), everyStep);
    assert.deepEqual(await regenerate(undefined, [1, 1]), everyStep);
    assert.deepEqual(await regenerate(undefined, [0.5, 1]), everyStep);
    // The same request without the critique is a plain image: there the interval acts (the comparison can fail).
    assert.notDeepEqual(await regenerate(undefined, [1, 1], false), await regenerate(undefined, [0, 1], false));
  });

  it("rejects a request's interval outside 0 <= lo <= hi <= 1, for a regeneration too", async () => {
    const bad: number[][] = [[0.6, 0.2], [0, 1.5], [-0.1, 1], [Number.NaN, 1], [0, Number.POSITIVE_INFINITY], [0.5], [0.1, 0.2, 0.3]];
    const { width, height, channels } = pkg.manifest.image;
    for (const [i, interval] of bad.entries()) {
      const cfgInterval = interval as [number, number];
      for (const feedback of [undefined, { pixels: new Uint8Array(width * height * channels), verdict: 'wrong' }]) {
        await assert.rejects(
          textToImage(pkg, peer, { ...REQUEST, cfgInterval, feedback }, { sessionId: `cfg-bad-${i}-${feedback ? 'feedback' : 'plain'}` }),
          (e: Error & { code?: string }) =>
            e.code === 'INVALID_INPUT' && /^cfg_interval must be \[lo, hi\] with 0 <= lo <= hi <= 1, got /.test(e.message),
          `${interval.join(', ')}${feedback ? ' (regeneration)' : ''}`,
        );
      }
    }
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
