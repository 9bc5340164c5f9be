import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { CONFIG, runApp, startTelemetry, type Config } from '@lavida/config';
import { AppModule } from './app.module.js';
import { ErrorFilter } from './controllers/error.filter.js';
import { setPublicUrl } from './controllers/base-url.js';
import { httpTelemetry, httpTraceContext } from './controllers/http-telemetry.js';

await runApp('api', async (logger) => {
  // Metrics and (when configured) tracing before anything else starts.
  await startTelemetry('api');
  const app = await NestFactory.create<NestExpressApplication>(AppModule, { logger, abortOnError: false, bodyParser: false });
  const config = app.get<Config>(CONFIG);
  // Request metrics and spans around everything (the body parser too), the span active in the handlers.
  app.use(httpTelemetry);
  app.useBodyParser('json', { limit: config.API_BODY_LIMIT });
  app.use(httpTraceContext);
  app.useGlobalFilters(new ErrorFilter());
  app.disable('x-powered-by');
  app.enableShutdownHooks();
  setPublicUrl(config.PUBLIC_URL);
  await app.listen(config.API_PORT, config.API_HOST);
  logger.log('listening', { url: await app.getUrl() });
});
