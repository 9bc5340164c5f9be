/**
 * `npm run bench`: tensor throughput (gRPC vs TCP), joint-exchange round trips and split vs
 * single-process text-to-image on the fixture model, between real processes on loopback, and the
 * orchestrator's overhead per stage hop with no-op stages.
 * Writes bench/results.json and bench/results.md and prints the table.
 */
import { writeFile } from 'node:fs/promises';
import { cpus, platform, release } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { REPO_ROOT } from '@lavida/config';
import { ModelPackage } from '@lavida/model';
import { markdown, orchestrationSection, type BenchResults } from './report.js';
import { measureSplit } from './split.js';
import { defaultTransport, killAllChildren, round, startChild, type Child } from './support.js';
import { measureThroughput } from './throughput.js';
import { measureTasks } from './tasks.js';
import { measureWorkerMemory } from './workers.js';
import { measureUndDriven } from './und-driven.js';
import { measureOrchestration } from './orchestration.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const BENCH_DIR = resolve(HERE, '..');
const MODEL_DIR = join(REPO_ROOT, 'models/fixture');
const MINI_DIR = join(REPO_ROOT, 'models/lavida-o-mini');
const MIB = 1024 * 1024;
/** Hard ceiling for the whole bench; a hang anywhere ends it with an error instead of waiting. */
const WATCHDOG_MS = 900_000;
const READY_TIMEOUT_MS = 30_000;

const started = performance.now();
const children: Child<unknown>[] = [];

async function stopChildren(): Promise<void> {
  await Promise.all(children.splice(0).map((child) => child.stop()));
}

// Children never outlive the bench: on normal exit, error, signal or watchdog.
process.on('exit', killAllChildren);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killAllChildren();
    process.exit(130);
  });
}
setTimeout(() => {
  console.error(`bench: still running after ${WATCHDOG_MS / 1000} s, giving up`);
  killAllChildren();
  process.exit(2);
}, WATCHDOG_MS).unref();

/** Options of the orchestration section (the whole bench and BENCH_ONLY=orchestration run the same). */
const ORCHESTRATION = { pipelines: 400, concurrency: 50, warmup: 20, unloaded: 50, requestCount: 100, openLoop: { rate: 200, seconds: 5 } };

/**
 * BENCH_ONLY=orchestration: that section alone, printed (its markdown, then its JSON on stderr);
 * bench/results.{json,md} are left as they are.
 */
async function orchestrationOnly(): Promise<void> {
  console.error('bench: orchestration overhead per stage hop, no-op stages (BENCH_ONLY=orchestration) …');
  const orchestration = await measureOrchestration(ORCHESTRATION);
  if (!orchestration) throw new Error('no REDIS_URL and no redis-server: nothing measured');
  console.error(JSON.stringify(orchestration, null, 2));
  console.log(orchestrationSection(orchestration).join('\n'));
}

async function main(): Promise<void> {
  if (process.env.BENCH_ONLY) {
    if (process.env.BENCH_ONLY !== 'orchestration') throw new Error(`BENCH_ONLY=${process.env.BENCH_ONLY}: only "orchestration" is known`);
    return orchestrationOnly();
  }
  const transport = defaultTransport();

  console.error('bench: tensor throughput, gRPC vs TCP …');
  const sink = await startChild<{ grpcPort: number; tcpPort: number }>(join(HERE, 'sink-server.js'), [], READY_TIMEOUT_MS);
  children.push(sink);
  const throughput = await measureThroughput(sink.ready, transport, {
    sizes: [MIB, 8 * MIB],
    warmupSeconds: 0.5,
    rounds: 4,
    blockSeconds: 0.75,
  });
  // The sink would only compete for the two cores with what follows.
  await stopChildren();

  console.error('bench: joint exchanges and split vs single-process text-to-image …');
  const peer = await startChild<{ port: number }>(join(HERE, 'peer-server.js'), [MODEL_DIR], READY_TIMEOUT_MS);
  children.push(peer);
  const gen = await ModelPackage.load(MODEL_DIR, { branch: 'gen' });
  const all = await ModelPackage.load(MODEL_DIR, { branch: 'all' });
  const request = { prompt: 'a red circle left of a blue square', seed: 7 };
  const split = await measureSplit(peer.ready.port, gen, all, transport, {
    request,
    warmupRuns: 3,
    runs: 20,
    pings: 1000,
    pingWarmup: 100,
  });
  await stopChildren();
  await Promise.all([gen.release(), all.release()]);

  console.error('bench: the trained model (lavida-o-mini): text-to-image, editing, feedback, answers, grounding …');
  const miniPeer = await startChild<{ port: number }>(join(HERE, 'peer-server.js'), [MINI_DIR], READY_TIMEOUT_MS);
  children.push(miniPeer);
  const [miniUnd, miniGen, miniAll] = await Promise.all(
    (['und', 'gen', 'all'] as const).map((branch) => ModelPackage.load(MINI_DIR, { branch })),
  );
  const miniRequest = { prompt: 'a red circle left of a blue square', seed: 7 };
  const miniSplit = await measureSplit(miniPeer.ready.port, miniGen, miniAll, transport, {
    request: miniRequest,
    warmupRuns: 2,
    runs: 10,
    pings: 200,
    pingWarmup: 20,
  });
  const tasks = await measureTasks(miniPeer.ready.port, miniUnd, miniGen, miniAll, transport, 10);
  await stopChildren();
  // The reverse role: the text side drives (this process), a gen child serves the image side.
  const genPeer = await startChild<{ port: number }>(join(HERE, 'peer-server.js'), [MINI_DIR, 'gen'], READY_TIMEOUT_MS);
  children.push(genPeer);
  const undDriven = await measureUndDriven(genPeer.ready.port, miniUnd, miniAll, transport, {
    request: { ...miniRequest, steps: 16 },
    warmupRuns: 2,
    runs: 10,
  });
  await stopChildren();
  const mini = { name: miniGen.manifest.name, version: miniGen.manifest.version, ...miniRequest, split: miniSplit, tasks, undDriven };
  await Promise.all([miniUnd.release(), miniGen.release(), miniAll.release()]);

  console.error('bench: worker memory under a mix of every task …');
  const memory = await measureWorkerMemory(MINI_DIR);

  console.error('bench: orchestration overhead per stage hop, no-op stages …');
  const orchestration = await measureOrchestration(ORCHESTRATION);

  const grpcOverTcp: Record<string, number> = {};
  for (const grpc of throughput.filter((t) => t.transport === 'grpc')) {
    const tcp = throughput.find((t) => t.transport === 'tcp' && t.tensorBytes === grpc.tensorBytes)!;
    grpcOverTcp[String(grpc.tensorBytes)] = round(grpc.mbPerSecond / tcp.mbPerSecond);
  }
  const results: BenchResults = {
    timestamp: new Date().toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    platform: `${platform()} ${release()}`,
    transport,
    model: { dir: relative(REPO_ROOT, MODEL_DIR), name: gen.manifest.name, version: gen.manifest.version, ...request },
    durationSeconds: round((performance.now() - started) / 1000, 1),
    throughput,
    grpcOverTcp,
    split,
    mini,
    memory,
    orchestration,
  };
  const table = markdown(results);
  await writeFile(join(BENCH_DIR, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  await writeFile(join(BENCH_DIR, 'results.md'), table);
  console.log(table);
}

try {
  await main();
} catch (error) {
  console.error('bench failed:', error);
  process.exitCode = 1;
} finally {
  await stopChildren();
  // Nothing left to wait for; do not let a lingering handle keep the bench alive.
  process.exit();
}
