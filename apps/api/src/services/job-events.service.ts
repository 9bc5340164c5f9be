import { Injectable, NotFoundException, type OnModuleDestroy } from '@nestjs/common';
import type { Request, Response } from 'express';
import { JsonLogger } from '@lavida/config';
import type { JobDto, StageDto } from '../dtos/job.dto.js';
import { JobService } from './job.service.js';

/** How often a stream reads the job (server-side polling: one read per stream per interval). */
export const EVENTS_POLL_MS = 150;
/** A comment line this often keeps proxies from closing an idle stream. */
export const EVENTS_HEARTBEAT_MS = 15_000;

const FINAL = new Set(['succeeded', 'failed', 'canceled']);

/** What a stream compares between reads: the public status, each stage's status, the running stage's progress. */
interface Snapshot {
  status: string;
  stages: string[];
  progress: string;
}

const stageKey = (s: StageDto) => `${s.stage}:${s.round ?? ''}:${s.status}:${s.attempts}`;
const snapshot = (job: JobDto): Snapshot => ({
  status: job.status,
  stages: job.timeline.map(stageKey),
  progress: JSON.stringify(job.progress ?? null),
});

/**
 * `GET /v1/jobs/{id}/events`: a job's progress as server-sent events. Each stream polls the job view
 * every EVENTS_POLL_MS and writes only what changed: `status` (the whole job, also the first event),
 * `stage` (a stage queued or changed state: its timeline entry), `progress` (the running stage's
 * step), and `done` (the whole job) once it is final, which ends the stream. A heartbeat comment
 * every EVENTS_HEARTBEAT_MS. A client that disconnects stops its stream at once.
 */
@Injectable()
export class JobEventsService implements OnModuleDestroy {
  private readonly logger = new JsonLogger('api', JobEventsService.name);
  private readonly streams = new Set<() => void>();

  constructor(private readonly jobs: JobService) {}

  /** Streams a job's events; a 404 (thrown before any byte is written) for an unknown job. */
  async stream(id: string, baseUrl: string, req: Request, res: Response): Promise<void> {
    let job = await this.jobs.get(id, baseUrl);
    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Cache-Control', 'no-cache, no-transform');
    res.setHeader('Connection', 'keep-alive');
    res.setHeader('X-Accel-Buffering', 'no');
    res.flushHeaders();

    let open = true;
    let wake: (() => void) | undefined;
    const stop = () => {
      open = false;
      wake?.();
    };
    this.streams.add(stop);
    req.on('close', stop);
    res.on('close', stop);
    const heartbeat = setInterval(() => {
      if (open) res.write(': heartbeat\n\n');
    }, EVENTS_HEARTBEAT_MS);
    const send = (event: string, data: unknown) => {
      if (open) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    const sleep = (ms: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });

    try {
      // The client reconnects after this long if the stream breaks (EventSource).
      res.write('retry: 1000\n\n');
      send('status', job);
      let last = snapshot(job);
      while (open && !FINAL.has(job.status)) {
        await sleep(EVENTS_POLL_MS);
        if (!open) break;
        try {
          job = await this.jobs.get(id, baseUrl);
        } catch (error) {
          // Expired (or removed) while streaming: nothing more will come.
          if (error instanceof NotFoundException) {
            send('done', { id, status: 'expired' });
            return;
          }
          throw error;
        }
        const now = snapshot(job);
        if (now.status !== last.status && !FINAL.has(job.status)) send('status', job);
        job.timeline.forEach((stage, i) => {
          if (now.stages[i] !== last.stages[i]) send('stage', { id, index: i, ...stage });
        });
        // A stage's progress is the worker's step report ({ stage, step, steps }); BullMQ's initial 0 of a stage
        // job that has not reported yet is not one, and would arrive as a step-less event before the first.
        if (now.progress !== last.progress && typeof job.progress === 'object' && job.progress !== null) {
          const running = job.timeline.filter((s) => s.status === 'processing').at(-1) ?? job.timeline.at(-1);
          send('progress', {
            id,
            stage: running?.stage,
            ...(running?.round === undefined ? {} : { round: running.round }),
            progress: job.progress,
          });
        }
        last = now;
      }
      if (FINAL.has(job.status)) send('done', job);
    } catch (error) {
      if (open) {
        this.logger.warn('event stream failed', { jobId: id, error: (error as Error).message });
        send('error', { message: 'the job could not be read' });
      }
    } finally {
      clearInterval(heartbeat);
      this.streams.delete(stop);
      req.off('close', stop);
      res.off('close', stop);
      open = false;
      if (!res.writableEnded) res.end();
    }
  }

  /** Ends every open stream, so that the server can close. */
  onModuleDestroy(): void {
    for (const stop of this.streams) stop();
  }
}
