import { Module } from '@nestjs/common';
import { CONFIG, loadConfigOrExit } from '@lavida/config';
import { HealthController } from './controllers/health.controller.js';
import { JobController } from './controllers/job.controller.js';
import { JobQueueRepository } from './repositories/job-queue.repository.js';
import { JobService } from './services/job.service.js';
import { WebhookRepository } from './repositories/webhook.repository.js';

@Module({
  controllers: [JobController, HealthController],
  providers: [{ provide: CONFIG, useFactory: () => loadConfigOrExit() }, JobQueueRepository, JobService, WebhookRepository],
})
export class AppModule {}
