import { Controller, Delete, Get, Header, HttpCode, Param, Post, Query, Res, UseGuards } from '@nestjs/common';
import type { Response } from 'express';
import { z } from 'zod';
import { ListJobsQuerySchema, type ListJobsQuery } from '@lavida/contracts';
import { Public } from '../../auth/principal.js';
import { ZodValidationPipe } from '../../controllers/validation.pipe.js';
import { AdminGuard } from '../auth/admin.guard.js';
import { AdminService } from '../services/admin.service.js';
import type {
  AdminJobDetailDto,
  AdminJobSummaryDto,
  AdminQueueDto,
  AdminQueueJobDto,
  AdminWebhookLogDto,
  AdminWorkersDto,
} from '../dtos/admin.dto.js';

const QueueJobsQuerySchema = z
  .object({ state: z.string().default('failed'), limit: z.coerce.number().int().min(1).max(200).default(50) })
  .strict();
const WebhookLogQuerySchema = z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) }).strict();

/**
 * The admin dashboard's JSON api: the session cookie or `Authorization: Bearer <ADMIN_API_KEY>`
 * (AdminGuard), outside the /v1 keys and rate limits. Not part of the public OpenAPI document.
 */
@Controller('admin/api')
@Public()
@UseGuards(AdminGuard)
export class AdminApiController {
  constructor(private readonly admin: AdminService) {}

  @Get('queues')
  queues(): Promise<AdminQueueDto[]> {
    return this.admin.queues();
  }

  @Post('queues/:name/pause')
  @HttpCode(200)
  pause(@Param('name') name: string): Promise<{ name: string; paused: boolean }> {
    return this.admin.pause(name);
  }

  @Post('queues/:name/resume')
  @HttpCode(200)
  resume(@Param('name') name: string): Promise<{ name: string; paused: boolean }> {
    return this.admin.resume(name);
  }

  /** Retries every failed job of the queue. */
  @Post('queues/:name/retry')
  @HttpCode(200)
  retryFailed(@Param('name') name: string): Promise<{ name: string; retried: number }> {
    return this.admin.retryFailed(name);
  }

  @Get('queues/:name/jobs')
  queueJobs(
    @Param('name') name: string,
    @Query(new ZodValidationPipe(QueueJobsQuerySchema)) query: z.infer<typeof QueueJobsQuerySchema>,
  ): Promise<AdminQueueJobDto[]> {
    return this.admin.queueJobs(name, query.state, query.limit);
  }

  @Post('queues/:name/jobs/:id/retry')
  @HttpCode(200)
  retryJob(@Param('name') name: string, @Param('id') id: string): Promise<AdminQueueJobDto> {
    return this.admin.retryJob(name, id);
  }

  @Delete('queues/:name/jobs/:id')
  @HttpCode(204)
  removeJob(@Param('name') name: string, @Param('id') id: string): Promise<void> {
    return this.admin.removeJob(name, id);
  }

  @Get('workers')
  workers(): Promise<AdminWorkersDto> {
    return this.admin.workers();
  }

  @Get('jobs')
  jobs(@Query(new ZodValidationPipe(ListJobsQuerySchema)) query: ListJobsQuery): Promise<AdminJobSummaryDto[]> {
    return this.admin.recentJobs(query);
  }

  @Get('jobs/:id')
  job(@Param('id') id: string): Promise<AdminJobDetailDto> {
    return this.admin.jobDetail(id);
  }

  @Get('jobs/:id/files/:name')
  @Header('Cache-Control', 'private, max-age=3600')
  async file(@Param('id') id: string, @Param('name') name: string, @Res() res: Response): Promise<void> {
    const bytes = await this.admin.file(id, name);
    res.type(name.endsWith('.png') ? 'image/png' : 'application/octet-stream').send(bytes);
  }

  @Get('webhooks')
  webhooks(@Query(new ZodValidationPipe(WebhookLogQuerySchema)) query: z.infer<typeof WebhookLogQuerySchema>): Promise<AdminWebhookLogDto> {
    return this.admin.webhookLog(query.limit);
  }
}
