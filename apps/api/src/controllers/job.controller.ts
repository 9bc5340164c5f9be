import { Body, Controller, Get, Header, HttpCode, Param, Post, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { CreateJobSchema, ListJobsQuerySchema, type CreateJob, type ListJobsQuery } from '@lavida/contracts';
import { JobService } from '../services/job.service.js';
import { ZodValidationPipe } from './validation.pipe.js';
import type { JobDto } from '../dtos/job.dto.js';
import { baseUrl } from './base-url.js';
import { principalOf } from '../auth/principal.js';
import { IdempotencyService, idempotencyKey } from '../services/idempotency.service.js';
import { JobEventsService } from '../services/job-events.service.js';

@Controller('v1/jobs')
export class JobController {
  constructor(
    private readonly jobs: JobService,
    private readonly idempotency: IdempotencyService,
    private readonly jobEvents: JobEventsService,
  ) {}

  @Post()
  @HttpCode(202)
  async create(
    @Body(new ZodValidationPipe(CreateJobSchema)) body: CreateJob,
    @Req() req: Request,
    @Res({ passthrough: true }) res: Response,
  ): Promise<JobDto> {
    const base = baseUrl(req);
    const key = idempotencyKey(req.get('idempotency-key'));
    const { job, replayed } = key
      ? await this.idempotency.run(
          principalOf(req)?.id ?? 'open',
          key,
          req.body,
          (id) => this.jobs.create(body, base, id),
          (id) => this.jobs.get(id, base),
        )
      : { job: await this.jobs.create(body, base), replayed: false };
    res.setHeader('Location', job.urls.get);
    if (replayed) res.setHeader('Idempotent-Replayed', 'true');
    // Prefer: wait=N (RFC 7240): answer when the job is done, if within N seconds (at most 60).
    const wait = /(?:^|[,;\s])wait=(\d+)/.exec(String(req.headers.prefer ?? ''));
    if (wait) {
      const seconds = Math.min(60, Number(wait[1]));
      res.setHeader('Preference-Applied', `wait=${seconds}`);
      if (await this.jobs.waitFor(job.id, seconds)) {
        res.status(201);
        return this.jobs.get(job.id, baseUrl(req));
      }
    }
    return job;
  }

  @Get()
  list(
    @Query(new ZodValidationPipe(ListJobsQuerySchema)) query: ListJobsQuery,
    @Req() req: Request,
  ): Promise<{ results: JobDto[]; next: string | null }> {
    return this.jobs.list(query, baseUrl(req));
  }

  @Get(':id')
  get(@Param('id') id: string, @Req() req: Request): Promise<JobDto> {
    return this.jobs.get(id, baseUrl(req));
  }

  /** Server-sent events of the job's progress until it is final (404 before the stream for an unknown job). */
  @Get(':id/events')
  events(@Param('id') id: string, @Req() req: Request, @Res() res: Response): Promise<void> {
    return this.jobEvents.stream(id, baseUrl(req), req, res);
  }

  @Post(':id/cancel')
  @HttpCode(200)
  cancel(@Param('id') id: string, @Req() req: Request): Promise<JobDto> {
    return this.jobs.cancel(id, baseUrl(req));
  }

  @Get(':id/files/:name')
  @Header('Cache-Control', 'private, max-age=3600')
  async file(@Param('id') id: string, @Param('name') name: string, @Res() res: Response): Promise<void> {
    const bytes = await this.jobs.file(id, name);
    res.type(name.endsWith('.png') ? 'image/png' : 'application/octet-stream').send(bytes);
  }
}
