import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { runApp } from '@lavida/config';
import { AppModule } from './app.module.js';

await runApp('gen-worker', async (logger) => {
  const app = await NestFactory.createApplicationContext(AppModule, { logger, abortOnError: false });
  // SIGTERM drains (running jobs finish or are handed back), then the process exits 0.
  app.enableShutdownHooks([], { useProcessExit: true });
});
