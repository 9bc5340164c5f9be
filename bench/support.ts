import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { basename } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '@lavida/config';
import type { TransportOptions } from '@lavida/wire';

/** Loopback only: the bench never listens beyond this host. */
export const HOST = '127.0.0.1';

/** The project's default transport settings (1 MiB chunks, 16 MiB message limit). */
export function defaultTransport(): TransportOptions {
  const config = loadConfig({});
  return { chunkBytes: config.TENSOR_CHUNK_BYTES, maxMessageBytes: config.GRPC_MAX_MESSAGE_BYTES };
}

/** A started child process and the JSON line it printed once it was listening. */
export interface Child<R> {
  readonly name: string;
  readonly ready: R;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();

/** Kills every child still running; synchronous so that it also works from an 'exit' handler. */
export function killAllChildren(): void {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
}

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (!alive(child)) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  // A child stuck in native code may ignore SIGTERM: give it a moment, then force it.
  await Promise.race([exited, sleep(2000)]);
  if (alive(child)) child.kill('SIGKILL');
  running.delete(child);
}

/**
 * Forks a bench child (with an IPC channel, so that it notices when this process dies) and waits
 * for the first line of its stdout, which it prints as JSON once it is ready.
 */
export async function startChild<R>(script: string, args: string[], timeoutMs: number): Promise<Child<R>> {
  const name = basename(script, '.js');
  const child = fork(script, args, { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  running.add(child);
  child.once('exit', () => running.delete(child));
  const lines = createInterface({ input: child.stdout! });
  try {
    const ready = await new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} was not ready within ${timeoutMs} ms`)), timeoutMs);
      const settle = (fn: () => void) => {
        clearTimeout(timer);
        fn();
      };
      lines.once('line', (line) =>
        settle(() => {
          try {
            resolve(JSON.parse(line) as R);
          } catch {
            reject(new Error(`${name} printed ${JSON.stringify(line)} instead of its ready line`));
          }
        }),
      );
      child.once('error', (error) => settle(() => reject(error)));
      child.once('exit', (code, signal) => settle(() => reject(new Error(`${name} exited (${signal ?? code}) before it was ready`))));
    });
    // Later output goes to stderr so that it cannot interleave with the printed table.
    lines.on('line', (line) => process.stderr.write(`[${name}] ${line}\n`));
    return { name, ready, stop: () => stopChild(child) };
  } catch (error) {
    await stopChild(child);
    throw error;
  }
}

/** In a child: prints the ready line and shuts down when the parent goes away or asks it to. */
export function serveUntilParentLeaves(ready: object, shutdown: () => void): void {
  const leave = () => {
    shutdown();
    process.exit(0);
  };
  process.once('disconnect', leave);
  process.once('SIGTERM', leave);
  process.once('SIGINT', leave);
  // Forked with IPC: the parent may already be gone (channel closed) before we got here.
  if (process.send && !process.connected) leave();
  process.stdout.write(`${JSON.stringify(ready)}\n`);
}

/** Values in arrival order, handed to whoever awaits them; a failure rejects every waiter. */
export class Mailbox<T> {
  private readonly items: T[] = [];
  private readonly waiters: { resolve: (item: T) => void; reject: (error: Error) => void }[] = [];
  private error?: Error;

  put(item: T): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve(item);
    else this.items.push(item);
  }

  fail(error: Error): void {
    this.error ??= error;
    for (const waiter of this.waiters.splice(0)) waiter.reject(this.error);
  }

  take(): Promise<T> {
    if (this.items.length > 0) return Promise.resolve(this.items.shift()!);
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
}

/** Nearest-rank percentile of unsorted samples. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** Median, averaging the two middle samples of an even count. */
export function median(samples: readonly number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export interface Summary {
  count: number;
  minMs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
}

export function summarize(samples: readonly number[]): Summary {
  return {
    count: samples.length,
    minMs: Math.min(...samples),
    p50Ms: percentile(samples, 50),
    p90Ms: percentile(samples, 90),
    p99Ms: percentile(samples, 99),
    maxMs: Math.max(...samples),
    meanMs: samples.reduce((a, b) => a + b, 0) / samples.length,
  };
}

/** Rounds for the report: JSON keeps every number, but not 17 significant digits of noise. */
export function round(value: number, digits = 3): number {
  return Number(value.toFixed(digits));
}

/** A split runtime against one process. */
export type Mode = 'single' | 'split';

/** Timed runs of both modes: raw milliseconds, medians and split / single (rounded). */
export interface ModeTiming {
  runsMs: Record<Mode, number[]>;
  medianMs: Record<Mode, number>;
  splitOverSingle: number;
}

/**
 * `runs` timed runs of each mode, alternating which mode goes first so that neither always runs on
 * a just-warmed cache; `runOnce` returns one run's milliseconds.
 */
export async function timeAlternating(runOnce: (mode: Mode) => Promise<number>, runs: number): Promise<ModeTiming> {
  const runsMs: Record<Mode, number[]> = { single: [], split: [] };
  for (let i = 0; i < runs; i++) {
    const order: Mode[] = i % 2 === 0 ? ['single', 'split'] : ['split', 'single'];
    for (const mode of order) runsMs[mode].push(await runOnce(mode));
  }
  const medianMs = { single: median(runsMs.single), split: median(runsMs.split) };
  return {
    runsMs: { single: runsMs.single.map((ms) => round(ms)), split: runsMs.split.map((ms) => round(ms)) },
    medianMs: { single: round(medianMs.single), split: round(medianMs.split) },
    splitOverSingle: round(medianMs.split / medianMs.single),
  };
}
