import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { CONFIG, loadConfigOrExit, TelemetryShutdown } from '@lavida/config';
import { HealthController } from './controllers/health.controller.js';
import { JobController } from './controllers/job.controller.js';
import { JobQueueRepository } from './repositories/job-queue.repository.js';
import { JobService } from './services/job.service.js';
import { WebhookRepository } from './repositories/webhook.repository.js';
import { KeyController } from './controllers/key.controller.js';
import { ApiKeyGuard } from './auth/api-key.guard.js';
import { RateLimitGuard } from './auth/rate-limit.guard.js';
import { RedisConnection } from './repositories/redis-connection.js';
import { ApiKeyRepository } from './repositories/api-key.repository.js';
import { RateLimitRepository } from './repositories/rate-limit.repository.js';
import { IdempotencyRepository } from './repositories/idempotency.repository.js';
import { ApiKeyService } from './services/api-key.service.js';
import { IdempotencyService } from './services/idempotency.service.js';
import { JobEventsService } from './services/job-events.service.js';
import { MetricsController } from './controllers/metrics.controller.js';
import { AdminModule } from './admin/admin.module.js';

@Module({
  imports: [AdminModule],
  controllers: [JobController, KeyController, HealthController, MetricsController],
  providers: [
    { provide: CONFIG, useFactory: () => loadConfigOrExit() },
    JobQueueRepository,
    JobService,
    WebhookRepository,
    RedisConnection,
    ApiKeyRepository,
    RateLimitRepository,
    IdempotencyRepository,
    ApiKeyService,
    IdempotencyService,
    JobEventsService,
    TelemetryShutdown,
    // Global guards run in this order: who is asking (401/403), then their rate limit (429).
    { provide: APP_GUARD, useClass: ApiKeyGuard },
    { provide: APP_GUARD, useClass: RateLimitGuard },
  ],
})
export class AppModule {}
