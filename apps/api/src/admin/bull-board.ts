import { Injectable, type OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { Express } from 'express';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { adminMiddleware } from './auth/admin.guard.js';
import { AdminSessions } from './auth/admin-session.js';
import { AdminQueueRepository } from './repositories/admin-queue.repository.js';

/** Where Bull Board is mounted. */
export const BULL_BOARD_PATH = '/admin/queues';

/**
 * Bull Board (the raw queue view: every job, its data, logs and stack traces) at /admin/queues,
 * behind the dashboard's login. Mounted on the Express instance before Nest's not-found handler
 * (onModuleInit runs after the routes are registered and before that handler).
 */
@Injectable()
export class BullBoardMount implements OnModuleInit {
  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly sessions: AdminSessions,
    private readonly repo: AdminQueueRepository,
  ) {}

  onModuleInit(): void {
    const adapter = this.adapterHost.httpAdapter;
    if (!adapter) return;
    const serverAdapter = new ExpressAdapter().setBasePath(BULL_BOARD_PATH);
    createBullBoard({
      queues: this.repo.all().map((queue) => new BullMQAdapter(queue)),
      serverAdapter,
      options: { uiConfig: { boardTitle: 'Lavida queues', miscLinks: [{ text: 'Dashboard', url: '/admin' }] } },
    });
    const router = serverAdapter.getRouter() as Express;
    router.disable('x-powered-by');
    adapter.getInstance<Express>().use(BULL_BOARD_PATH, adminMiddleware(this.sessions), router);
  }
}
