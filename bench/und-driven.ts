/**
 * Text-to-image driven by the text side: the understanding branch in this process drives, the
 * image side (generation branch) serves in a `gen` child over gRPC (serve_side SIDE_IMAGE), as an
 * und-worker draws the image of an `[exp]` answer with a gen-worker. Against the single-process
 * run (both branches here), interleaved; the tokens must be identical in every run.
 *
 * Alone: `npm run build && node bench/dist/und-driven.js` (lavida-o-mini, 16 steps) prints the row as JSON.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { REPO_ROOT } from '@lavida/config';
import { LocalJointPeer, ModelPackage, textToImage, textToImageFromText, type TextToImageRequest } from '@lavida/model';
import { GrpcImagePeer, type TransportOptions } from '@lavida/wire';
import { defaultTransport, HOST, killAllChildren, startChild, timeAlternating, type Mode, type ModeTiming } from './support.js';

export interface UndDrivenPlan {
  request: TextToImageRequest;
  warmupRuns: number;
  runs: number;
}

export interface UndDrivenResult extends ModeTiming {
  steps: number;
  rows: number;
  /** Round trips per image (open, each step, not close: it is not waited for). */
  exchangesPerImage: number;
  /** Tensor and token payload bytes per image, both directions (as GrpcImagePeer's onExchange counts them). */
  bytesPerImage: number;
  tokensIdentical: true;
}

export async function measureUndDriven(
  port: number,
  und: ModelPackage,
  all: ModelPackage,
  options: TransportOptions,
  plan: UndDrivenPlan,
): Promise<UndDrivenResult> {
  const { name, version, sampling } = und.manifest;
  let bytes = 0;
  let exchanges = 0;
  const remote = new GrpcImagePeer({
    ...options,
    addresses: [`${HOST}:${port}`],
    modelName: name,
    modelVersion: version,
    timeoutMs: 10_000,
    onExchange: (kind, _ms, n) => {
      // Close carries nothing and is answered in the background, possibly during the next run.
      if (kind === 'close') return;
      bytes += n;
      exchanges += 1;
    },
  });
  const local = new LocalJointPeer(all);
  let reference: number[] | undefined;
  let perImage: { bytes: number; exchanges: number } | undefined;
  let steps = 0;
  let session = 0;
  const runOnce = async (mode: Mode): Promise<number> => {
    bytes = 0;
    exchanges = 0;
    const options = { sessionId: `bench-und-driven-${mode}-${session++}` };
    const started = performance.now();
    const result =
      mode === 'split'
        ? await textToImageFromText(und, remote, plan.request, options)
        : await textToImage(all, local, plan.request, options);
    const ms = performance.now() - started;
    steps = result.steps;
    // Exact or nothing: a token that differs fails the bench.
    reference ??= result.tokens;
    if (result.tokens.join() !== reference.join())
      throw new Error(`und-driven and single-process tokens differ for seed ${plan.request.seed} (${mode} run)`);
    if (mode === 'split') {
      if (perImage && (perImage.bytes !== bytes || perImage.exchanges !== exchanges)) {
        throw new Error(`bytes per image changed between runs: ${perImage.bytes} then ${bytes}`);
      }
      perImage = { bytes, exchanges };
    }
    return ms;
  };
  try {
    for (let i = 0; i < plan.warmupRuns; i++) {
      await runOnce('single');
      await runOnce('split');
    }
    const timing = await timeAlternating(runOnce, plan.runs);
    return {
      steps,
      rows: (plan.request.guidance ?? sampling.guidance) > 0 ? 2 : 1,
      exchangesPerImage: perImage!.exchanges,
      bytesPerImage: perImage!.bytes,
      ...timing,
      tokensIdentical: true,
    };
  } finally {
    remote.close();
  }
}

/** The row on its own: lavida-o-mini, 16 steps, the gen child serving the image side. */
async function main(): Promise<void> {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const dir = join(REPO_ROOT, 'models/lavida-o-mini');
  const child = await startChild<{ port: number }>(join(here, 'peer-server.js'), [dir, 'gen'], 30_000);
  const [und, all] = await Promise.all((['und', 'all'] as const).map((branch) => ModelPackage.load(dir, { branch })));
  try {
    const result = await measureUndDriven(child.ready.port, und, all, defaultTransport(), {
      request: { prompt: 'a red circle left of a blue square', seed: 7, steps: 16 },
      warmupRuns: 2,
      runs: 10,
    });
    console.log(JSON.stringify(result, null, 2));
  } finally {
    await child.stop();
    await Promise.all([und.release(), all.release()]);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.on('exit', killAllChildren);
  await main();
}
