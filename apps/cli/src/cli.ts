import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  encodeImage,
  LavidaApiError,
  LavidaClient,
  LavidaError,
  LavidaNetworkError,
  LavidaTimeoutError,
  type CreateJob,
  type JobView,
} from '@lavida/client';
import { parseCommandLine, resolveUrl, USAGE, UsageError, type Command } from './args.js';
import { ProgressView } from './progress.js';

export const EXIT = { ok: 0, jobFailed: 1, usage: 2, api: 3, interrupted: 130 } as const;

export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  env: NodeJS.ProcessEnv;
  /** Aborts a wait (Ctrl-C). */
  signal?: AbortSignal;
  /** Time between polls while waiting; default 250 ms. */
  intervalMs?: number;
}

/** Runs one command line; answers the exit code. */
export async function run(argv: string[], io: Io): Promise<number> {
  let command: Command;
  let client: LavidaClient;
  try {
    const parsed = parseCommandLine(argv);
    command = parsed.command;
    if (command.kind === 'help') {
      io.stdout.write(`${USAGE}\n`);
      return EXIT.ok;
    }
    client = new LavidaClient({ baseUrl: resolveUrl(parsed.url, io.env), apiKey: io.env.LAVIDA_API_KEY || undefined });
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.stderr.write(`lavida: ${error.message}\n\n${USAGE}\n`);
    return EXIT.usage;
  }
  try {
    return await execute(command, client, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`lavida: ${error.message}\n`);
      return EXIT.usage;
    }
    if (io.signal?.aborted) return EXIT.interrupted;
    io.stderr.write(`lavida: ${describe(error)}\n`);
    return EXIT.api;
  }
}

async function execute(command: Exclude<Command, { kind: 'help' }>, client: LavidaClient, io: Io): Promise<number> {
  const print = (value: unknown) => io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  switch (command.kind) {
    case 'submit': {
      const input = { ...command.input };
      if (command.imagePath !== undefined) input.image = encodeImage(await readInput(command.imagePath));
      // Fail on an unwritable --out before the job costs anything.
      if (command.out !== undefined) await prepareOut(command.out);
      const job = await client.createJob({ task: command.task, input } as CreateJob, { signal: io.signal });
      if (!command.wait) {
        print(job);
        return EXIT.ok;
      }
      io.stderr.write(`job ${job.id} submitted\n`);
      return finish(await waitWithProgress(client, job.id, command.timeoutMs, io), command.out, client, io);
    }
    case 'wait':
      if (command.out !== undefined) await prepareOut(command.out);
      return finish(await waitWithProgress(client, command.id, command.timeoutMs, io), command.out, client, io);
    case 'get':
      print(await client.getJob(command.id, { signal: io.signal }));
      return EXIT.ok;
    case 'cancel': {
      const job = await client.cancelJob(command.id, { signal: io.signal });
      print(job);
      io.stderr.write(`job ${job.id}: ${job.status}\n`);
      return EXIT.ok;
    }
    case 'list': {
      const jobs: unknown[] = [];
      const query = { status: command.status, task: command.task, limit: Math.min(100, command.limit) };
      for await (const job of client.jobs(query, { signal: io.signal })) {
        jobs.push({
          id: job.id,
          task: job.task,
          status: job.status,
          created_at: job.created_at,
          completed_at: job.completed_at,
          error: job.error,
        });
        if (jobs.length >= command.limit) break;
      }
      print(jobs);
      return EXIT.ok;
    }
  }
}

async function waitWithProgress(client: LavidaClient, id: string, timeoutMs: number | undefined, io: Io): Promise<JobView> {
  const view = new ProgressView(io.stderr);
  try {
    return await client.waitForJob(id, {
      timeoutMs,
      intervalMs: io.intervalMs ?? 250,
      signal: io.signal,
      onProgress: (job) => view.update(job),
    });
  } finally {
    view.done();
    if (io.signal?.aborted) io.stderr.write(`lavida: stopped waiting; job ${id} goes on (lavida cancel ${id} cancels it)\n`);
  }
}

/** Prints a finished job's result (writing its images under `out`); answers the exit code. */
async function finish(job: JobView, out: string | undefined, client: LavidaClient, io: Io): Promise<number> {
  const files = job.status === 'succeeded' && out !== undefined ? await saveImages(job, out, client, io.signal) : undefined;
  io.stdout.write(`${JSON.stringify(result(job, files), null, 2)}\n`);
  if (job.status === 'succeeded') return EXIT.ok;
  io.stderr.write(`lavida: job ${job.id} ${job.status}: ${job.error ?? 'no reason given'}\n`);
  return EXIT.jobFailed;
}

/** A finished job as the CLI prints it: the output without its tokens, the written files. */
export function result(job: JobView, files?: string[]): Record<string, unknown> {
  let output: Record<string, unknown> | null = null;
  if (job.output) {
    output = { ...job.output };
    delete output.tokens;
  }
  return { id: job.id, task: job.task, status: job.status, error: job.error, output, ...(files ? { files } : {}) };
}

/** Writes `<id>.png` (the output image) and, for text-to-image, `<id>-attempt-<round>.png`; answers the paths. */
async function saveImages(job: JobView, out: string, client: LavidaClient, signal?: AbortSignal): Promise<string[]> {
  const wanted: [string, string][] = [];
  if (job.output?.image) wanted.push([job.output.image, `${job.id}.png`]);
  for (const attempt of job.output?.attempts ?? []) wanted.push([attempt.image, `${job.id}-attempt-${attempt.round}.png`]);
  const downloads = new Map<string, Promise<Buffer>>();
  const paths: string[] = [];
  for (const [url, name] of wanted) {
    if (!downloads.has(url)) downloads.set(url, client.downloadFile(url, undefined, { signal }));
    const path = join(out, name);
    await writeFile(path, await downloads.get(url)!);
    paths.push(path);
  }
  return paths;
}

async function prepareOut(out: string): Promise<void> {
  try {
    await mkdir(out, { recursive: true });
  } catch (error) {
    throw new UsageError(`--out ${out}: ${(error as Error).message}`);
  }
}

async function readInput(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw new UsageError(`--image ${path}: ${(error as Error).message}`);
  }
}

function describe(error: unknown): string {
  if (error instanceof LavidaApiError) {
    const field = error.field && !error.message.includes(error.field) ? ` (field ${error.field})` : '';
    return `${error.method} ${error.url}: ${error.status} ${error.code}: ${error.message}${field}`;
  }
  if (error instanceof LavidaNetworkError) return `cannot reach the api: ${error.message}`;
  if (error instanceof LavidaTimeoutError || error instanceof LavidaError) return error.message;
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}
