import { credentials, makeGenericClientConstructor, type Client, type ServiceError } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import {
  conditioningText,
  diffusionSteps,
  LocalJointPeer,
  textToImage,
  WordTokenizer,
  type JointPeer,
  type ModelPackage,
  type TextToImageRequest,
} from '@lavida/model';
import { channelOptions, GrpcJointPeer, type TransportOptions } from '@lavida/wire';
import { HOST, percentile, round, summarize, timeAlternating, type Mode, type ModeTiming, type Summary } from './support.js';

type ExchangeKind = 'open' | 'step' | 'partial' | 'close';

export interface SplitPlan {
  request: TextToImageRequest;
  warmupRuns: number;
  runs: number;
  pings: number;
  pingWarmup: number;
}

export interface ExchangeStats extends Summary {
  /** Tensor payload bytes of one exchange, both directions (as GrpcJointPeer's onExchange counts them). */
  bytes: number;
}

export interface SplitResult extends ModeTiming {
  textTokens: number;
  rows: number;
  steps: number;
  jointLayers: number;
  imageTokens: number;
  exchanges: Record<ExchangeKind, ExchangeStats>;
  healthPing: Summary;
  exchangesPerImage: number;
  bytesPerImage: number;
  /** What shipping the image side's K and V would cost instead: 2 * rows * heads * I * head_dim * 4. */
  imageKvBytesPerLayerStep: number;
  imageKvBytesPerImage: number;
  tokensIdentical: true;
}

interface HealthClient extends Client {
  check(request: { service: string }, callback: (error: ServiceError | null, response?: { status: string }) => void): void;
}

/** Unary health checks back to back: the bare gRPC round trip on this machine. */
async function pingHealth(address: string, options: TransportOptions, warmup: number, count: number): Promise<number[]> {
  const Health = makeGenericClientConstructor(healthService, 'Health');
  // Generic clients type their methods as Function; name the one we call.
  const client = new Health(address, credentials.createInsecure(), channelOptions(options)) as unknown as HealthClient;
  const check = () =>
    new Promise<void>((resolve, reject) =>
      client.check({ service: '' }, (error, response) => {
        if (error) reject(error);
        else if (response?.status !== 'SERVING') reject(new Error(`health check answered ${response?.status}`));
        else resolve();
      }),
    );
  try {
    const times: number[] = [];
    for (let i = 0; i < warmup + count; i++) {
      const started = performance.now();
      await check();
      if (i >= warmup) times.push(performance.now() - started);
    }
    return times;
  } finally {
    client.close();
  }
}

function firstDifference(a: readonly number[], b: readonly number[]): string {
  const index = a.findIndex((token, i) => token !== b[i]);
  return index < 0 ? `lengths ${a.length} and ${b.length}` : `index ${index}: ${a[index]} vs ${b[index]}`;
}

/**
 * Text-to-image on the fixture, single process (LocalJointPeer on the 'all' branch) against split
 * (GrpcJointPeer to the 'und' child), interleaved; also collects every joint exchange's round trip.
 */
export async function measureSplit(
  port: number,
  gen: ModelPackage,
  all: ModelPackage,
  options: TransportOptions,
  plan: SplitPlan,
): Promise<SplitResult> {
  const address = `${HOST}:${port}`;
  const { architecture, image, sampling, name, version } = gen.manifest;
  const samples: Record<ExchangeKind, { ms: number[]; bytes: number[] }> = {
    open: { ms: [], bytes: [] },
    step: { ms: [], bytes: [] },
    partial: { ms: [], bytes: [] },
    close: { ms: [], bytes: [] },
  };
  let recording = false;
  let imageBytes = 0;
  let imageExchanges = 0;
  const remote = new GrpcJointPeer({
    ...options,
    addresses: [address],
    modelName: name,
    modelVersion: version,
    timeoutMs: 10_000,
    onExchange: (kind, ms, bytes) => {
      // Close carries no tensors and is answered in the background, possibly during the next run.
      if (kind !== 'close') {
        imageBytes += bytes;
        imageExchanges += 1;
      }
      if (!recording) return;
      samples[kind].ms.push(ms);
      samples[kind].bytes.push(bytes);
    },
  });
  const local = new LocalJointPeer(all);
  const modes: Record<Mode, { pkg: ModelPackage; peer: JointPeer }> = {
    single: { pkg: all, peer: local },
    split: { pkg: gen, peer: remote },
  };

  let reference: number[] | undefined;
  let perImage: { bytes: number; exchanges: number } | undefined;
  let session = 0;
  const runOnce = async (mode: Mode): Promise<number> => {
    imageBytes = 0;
    imageExchanges = 0;
    const started = performance.now();
    const result = await textToImage(modes[mode].pkg, modes[mode].peer, plan.request, { sessionId: `bench-${mode}-${session++}` });
    const ms = performance.now() - started;
    // The split runtime must be exact: any token that differs fails the whole bench.
    reference ??= result.tokens;
    if (result.tokens.join() !== reference.join()) {
      throw new Error(
        `split and single-process tokens differ for seed ${plan.request.seed} (${mode} run, ${firstDifference(reference, result.tokens)})`,
      );
    }
    if (mode === 'split') {
      if (perImage && (perImage.bytes !== imageBytes || perImage.exchanges !== imageExchanges)) {
        throw new Error(`bytes per image changed between runs: ${perImage.bytes} then ${imageBytes}`);
      }
      perImage = { bytes: imageBytes, exchanges: imageExchanges };
    }
    return ms;
  };

  try {
    for (let i = 0; i < plan.warmupRuns; i++) {
      await runOnce('single');
      await runOnce('split');
    }
    const healthPing = await pingHealth(address, options, plan.pingWarmup, plan.pings);
    recording = true;
    const timing = await timeAlternating(runOnce, plan.runs);
    recording = false;

    const rows = (plan.request.guidance ?? sampling.guidance) > 0 ? 2 : 1;
    const imageTokens = image.grid[0] * image.grid[1];
    // Every step of the image: the schedule's and the correction steps after it.
    const steps = diffusionSteps(
      gen,
      plan.request.steps ?? sampling.steps,
      plan.request.correctionSweeps ?? sampling.correction_sweeps ?? 0,
    );
    const kvPerLayerStep = 2 * rows * architecture.heads * imageTokens * architecture.head_dim * 4;
    const exchange = (kind: ExchangeKind): ExchangeStats => ({
      ...roundSummary(summarize(samples[kind].ms)),
      bytes: percentile(samples[kind].bytes, 50),
    });
    return {
      textTokens: new WordTokenizer(gen.manifest.text).encode(conditioningText(plan.request)).length,
      rows,
      steps,
      jointLayers: architecture.joint_layers,
      imageTokens,
      exchanges: { open: exchange('open'), step: exchange('step'), partial: exchange('partial'), close: exchange('close') },
      healthPing: roundSummary(summarize(healthPing)),
      exchangesPerImage: perImage!.exchanges,
      bytesPerImage: perImage!.bytes,
      imageKvBytesPerLayerStep: kvPerLayerStep,
      imageKvBytesPerImage: kvPerLayerStep * architecture.joint_layers * steps,
      ...timing,
      tokensIdentical: true,
    };
  } finally {
    remote.close();
  }
}

function roundSummary(summary: Summary): Summary {
  return {
    count: summary.count,
    minMs: round(summary.minMs),
    p50Ms: round(summary.p50Ms),
    p90Ms: round(summary.p90Ms),
    p99Ms: round(summary.p99Ms),
    maxMs: round(summary.maxMs),
    meanMs: round(summary.meanMs),
  };
}
