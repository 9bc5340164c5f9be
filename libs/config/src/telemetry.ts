import { initMetrics, initTracing, shutdownTracing, startMetricsServer, type MetricsServer } from '@lavida/telemetry';
import type { Config } from './index.js';
import type { JsonLogger } from './logger.js';

export type AppName = 'api' | 'orchestrator' | 'und-worker' | 'gen-worker';

/** Default METRICS_PORT of the apps that serve metrics on a port of their own (the api uses API_PORT). */
export const DEFAULT_METRICS_PORTS: Record<Exclude<AppName, 'api'>, number> = {
  orchestrator: 9464,
  'und-worker': 9465,
  'gen-worker': 9466,
};

let server: MetricsServer | undefined;

/**
 * Metrics and tracing for this process, before anything else starts: every series gets
 * `app=<app>`; tracing starts when the OpenTelemetry environment names an exporter.
 */
export async function startTelemetry(app: AppName): Promise<{ tracing: boolean }> {
  initMetrics(app);
  return { tracing: await initTracing(app) };
}

/**
 * Serves `/metrics` and `/healthz` on METRICS_PORT (default per app; 0 = off). A METRICS_PORT that
 * was set and cannot be bound stops the app; the default port taken by another process (several
 * apps on one host) is only a warning.
 */
export async function serveMetrics(
  config: Pick<Config, 'METRICS_PORT' | 'METRICS_HOST' | 'METRICS_TOKEN'>,
  app: Exclude<AppName, 'api'>,
  logger: JsonLogger,
): Promise<number | undefined> {
  const port = config.METRICS_PORT ?? DEFAULT_METRICS_PORTS[app];
  if (port === 0) return undefined;
  try {
    server = await startMetricsServer({ host: config.METRICS_HOST, port, token: config.METRICS_TOKEN });
  } catch (error) {
    if (config.METRICS_PORT !== undefined || (error as NodeJS.ErrnoException).code !== 'EADDRINUSE') {
      throw new Error(`metrics cannot listen on ${config.METRICS_HOST}:${port}: ${(error as Error).message}`);
    }
    logger.warn('metrics not served: the default port is taken (set METRICS_PORT)', { port });
    return undefined;
  }
  logger.log('serving metrics', { metricsPort: server.port, auth: config.METRICS_TOKEN ? 'bearer' : 'none' });
  return server.port;
}

/** A provider of every app: at shutdown, sends the spans still buffered and closes the metrics server. */
export class TelemetryShutdown {
  async onApplicationShutdown(): Promise<void> {
    await server?.close();
    server = undefined;
    await shutdownTracing();
  }
}
