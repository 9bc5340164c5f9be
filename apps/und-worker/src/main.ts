import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { JsonLogger } from '@lavida/config';
import { AppModule } from './app.module.js';

const logger = new JsonLogger('und-worker');
try {
  const app = await NestFactory.createApplicationContext(AppModule, { logger, abortOnError: false });
  app.enableShutdownHooks();
} catch (error) {
  logger.fatal(`refusing to start: ${(error as Error).message}`);
  process.exit(1);
}
