import { Controller, Get, Inject, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { CONFIG, type Config } from '@lavida/config';
import { metricsAuthorized, writeMetrics } from '@lavida/telemetry';
import { Public } from '../auth/principal.js';

/**
 * Prometheus metrics of the api process (`GET /metrics`): no API key and no rate limit (Prometheus
 * scrapes it); with METRICS_TOKEN set it needs `Authorization: Bearer <METRICS_TOKEN>`.
 */
@Controller()
@Public()
export class MetricsController {
  constructor(@Inject(CONFIG) private readonly config: Config) {}

  @Get('metrics')
  async metrics(@Req() req: Request, @Res() res: Response): Promise<void> {
    if (!metricsAuthorized(req.headers.authorization, this.config.METRICS_TOKEN)) {
      res
        .status(401)
        .setHeader('WWW-Authenticate', 'Bearer')
        .json({ error: { status: 401, code: 'unauthorized', message: 'metrics need Authorization: Bearer <METRICS_TOKEN>' } });
      return;
    }
    await writeMetrics(res);
  }
}
