import { Controller, Get, ServiceUnavailableException } from '@nestjs/common';
import { JobQueueRepository } from '../repositories/job-queue.repository.js';
import { Public } from '../auth/principal.js';

/** Open to anyone (probes): no API key, no rate limit. */
@Controller()
@Public()
export class HealthController {
  constructor(private readonly jobs: JobQueueRepository) {}

  /** Liveness: the process answers. */
  @Get('healthz')
  live(): { status: 'ok' } {
    return { status: 'ok' };
  }

  /** Readiness: Redis answers. */
  @Get('readyz')
  async ready(): Promise<{ status: 'ok' }> {
    const ok = await this.jobs.ping().catch(() => false);
    if (!ok) throw new ServiceUnavailableException('redis is not reachable');
    return { status: 'ok' };
  }
}
