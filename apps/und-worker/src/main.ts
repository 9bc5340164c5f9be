import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { CONFIG, runApp, serveMetrics, startTelemetry, type Config } from '@lavida/config';
import { AppModule } from './app.module.js';

await runApp('und-worker', async (logger) => {
  // Metrics and (when configured) tracing before anything else starts.
  await startTelemetry('und-worker');
  const app = await NestFactory.createApplicationContext(AppModule, { logger, abortOnError: false });
  // SIGTERM drains (running jobs finish or are handed back), then the process exits 0.
  app.enableShutdownHooks([], { useProcessExit: true });
  await serveMetrics(app.get<Config>(CONFIG), 'und-worker', logger);
});
