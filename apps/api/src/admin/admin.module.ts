import { Module } from '@nestjs/common';
import { CONFIG, loadConfigOrExit } from '@lavida/config';
import { JobQueueRepository } from '../repositories/job-queue.repository.js';
import { WebhookRepository } from '../repositories/webhook.repository.js';
import { JobService } from '../services/job.service.js';
import { AdminSessions } from './auth/admin-session.js';
import { AdminGuard } from './auth/admin.guard.js';
import { BullBoardMount } from './bull-board.js';
import { AdminApiController } from './controllers/admin-api.controller.js';
import { AdminPageController } from './controllers/admin-page.controller.js';
import { AdminQueueRepository } from './repositories/admin-queue.repository.js';
import { AdminAssets } from './services/admin-assets.js';
import { AdminLoginService } from './services/admin-login.service.js';
import { AdminService } from './services/admin.service.js';

/**
 * The admin dashboard under /admin: login with ADMIN_API_KEY (a session cookie), the JSON api under
 * /admin/api, the single-page UI, and Bull Board at /admin/queues. Jobs are read with the api's own
 * JobService (its own instance: this module stands alone, the root module's providers are not
 * exported to it).
 */
@Module({
  controllers: [AdminPageController, AdminApiController],
  providers: [
    { provide: CONFIG, useFactory: () => loadConfigOrExit() },
    { provide: AdminAssets, useFactory: () => new AdminAssets() },
    JobQueueRepository,
    WebhookRepository,
    JobService,
    AdminSessions,
    AdminGuard,
    AdminQueueRepository,
    AdminService,
    AdminLoginService,
    BullBoardMount,
  ],
})
export class AdminModule {}
