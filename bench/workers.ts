import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { freePort, hasRedisServer, REPO_ROOT, startLocalRedis } from '@lavida/config';
import { JobName, QueueName } from '@lavida/contracts';
import { HOST } from './support.js';

export interface WorkerMemory {
  jobs: Record<string, number>;
  /** Peak resident set (VmHWM) after the jobs, MiB. */
  peakRssMiB: Record<'und-worker' | 'gen-worker', number>;
  seconds: number;
}

function vmHwmMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1]);
  return Math.round((kb / 1024) * 10) / 10;
}

function startWorker(name: string, env: Record<string, string>, children: ChildProcess[], ready: string[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, [join(REPO_ROOT, 'apps', name, 'dist', 'main.js')], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const lines = createInterface({ input: child.stdout });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not log ${ready.join(' and ')} within 60 s`)), 60_000);
    const waiting = new Set(ready);
    lines.on('line', (line) => {
      for (const msg of waiting) if (line.includes(`"msg":"${msg}"`)) waiting.delete(msg);
      if (waiting.size === 0) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code}`)));
  });
}

/**
 * Each worker's peak RSS while it serves the trained model: the real und-worker and gen-worker
 * processes, a Redis (REDIS_URL, else a redis-server started here), and a mix of every task's jobs
 * through BullMQ. Undefined when no Redis can be had.
 */
export async function measureWorkerMemory(modelDir: string): Promise<WorkerMemory | undefined> {
  const started = performance.now();
  const children: ChildProcess[] = [];
  let redisUrl = process.env.REDIS_URL;
  if (!redisUrl) {
    if (!hasRedisServer()) return undefined;
    const local = await startLocalRedis(HOST);
    children.push(local.child);
    redisUrl = local.url;
  }
  const prefix = `bench-${process.pid}`;
  const undPort = await freePort(HOST);
  const env = {
    REDIS_URL: redisUrl,
    QUEUE_PREFIX: prefix,
    MODEL_DIR: modelDir,
    GRPC_HOST: HOST,
    UND_GRPC_PORT: String(undPort),
    GEN_GRPC_PORT: '0',
    UND_PEERS: `${HOST}:${undPort}`,
  };
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const { hostname, port } = new URL(redisUrl);
  const eventsConnection = { host: hostname, port: Number(port), maxRetriesPerRequest: null };
  const queues = {
    generation: new Queue(QueueName.Generation, { connection, prefix }),
    understanding: new Queue(QueueName.Understanding, { connection, prefix }),
  };
  const events = {
    generation: new QueueEvents(QueueName.Generation, { connection: eventsConnection, prefix }),
    understanding: new QueueEvents(QueueName.Understanding, { connection: eventsConnection, prefix }),
  };
  try {
    const und = await startWorker('und-worker', env, children, ['consuming', 'serving']);
    const gen = await startWorker('gen-worker', env, children, ['consuming']);
    const jobs: Record<string, number> = {};
    const wait = async (queue: 'generation' | 'understanding', name: string, data: object) => {
      jobs[name] = (jobs[name] ?? 0) + 1;
      await (await queues[queue].add(name, data)).waitUntilFinished(events[queue], 120_000);
    };
    await wait('generation', JobName.Generate, { jobId: 'mem', prompt: 'a red circle left of a blue square', seed: 1, output: 'a.png' });
    const image = { jobId: 'mem', name: 'a.png' };
    for (let i = 0; i < 4; i++) {
      await Promise.all([
        wait('generation', JobName.Generate, { jobId: `mem${i}`, prompt: 'two green triangles', seed: i }),
        wait('understanding', JobName.Understand, { jobId: `mem${i}`, task: 'understand', image, question: 'how many circles are there?' }),
      ]);
      await Promise.all([
        wait('generation', JobName.Edit, { jobId: `mem${i}`, instruction: 'remove the red circle', image, seed: i, imageGuidance: 1 }),
        wait('understanding', JobName.Ground, {
          jobId: `mem${i}`,
          task: 'ground',
          image,
          refs: ['the red circle', 'the blue square'],
          steps: 4,
        }),
      ]);
      await wait('generation', JobName.Generate, {
        jobId: `mem${i}`,
        prompt: 'a red circle',
        seed: i,
        feedback: { verdict: 'the circle is missing', image },
      });
      await wait('understanding', JobName.Plan, { jobId: `mem${i}`, task: 'plan', prompt: 'a red circle above a blue square' });
      await wait('understanding', JobName.Reflect, { jobId: `mem${i}`, task: 'reflect', image, prompt: 'a red circle' });
    }
    return {
      jobs,
      peakRssMiB: { 'und-worker': vmHwmMiB(und.pid!), 'gen-worker': vmHwmMiB(gen.pid!) },
      seconds: Math.round((performance.now() - started) / 100) / 10,
    };
  } finally {
    await Promise.all([events.generation.close(), events.understanding.close(), queues.generation.close(), queues.understanding.close()]);
    await connection.quit().catch(() => undefined);
    for (const child of children) child.kill('SIGKILL');
  }
}
