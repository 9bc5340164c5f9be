import { AppProcess, startApp } from './processes.js';
import { freePort } from './wait.js';
import { FIXTURE_MODEL } from './paths.js';

export interface SystemOptions {
  redisUrl: string;
  prefix: string;
  /** Extra environment for every app. */
  env?: Record<string, string | number>;
  /** Extra environment for the understanding worker only. */
  undEnv?: Record<string, string | number>;
  /** Extra environment for the generation worker only. */
  genEnv?: Record<string, string | number>;
  /** Serve /metrics on a free port from the orchestrator and the workers (see `metricsPorts`). */
  metrics?: boolean;
}

/** The four apps as real processes on free ports, one Redis, one queue prefix. */
export class TestSystem {
  und!: AppProcess;
  gen!: AppProcess;
  orchestrator!: AppProcess;
  api!: AppProcess;
  apiUrl = '';
  undPort = 0;
  genPort = 0;
  /** METRICS_PORT of each app with `metrics` (the api serves /metrics on its own port). */
  metricsPorts: Partial<Record<'orchestrator' | 'und-worker' | 'gen-worker', number>> = {};
  private env: Record<string, string | number> = {};

  constructor(private readonly options: SystemOptions) {}

  async start(): Promise<this> {
    this.undPort = await freePort();
    do this.genPort = await freePort();
    while (this.genPort === this.undPort);
    this.env = {
      REDIS_URL: this.options.redisUrl,
      QUEUE_PREFIX: this.options.prefix,
      GRPC_HOST: '127.0.0.1',
      API_HOST: '127.0.0.1',
      API_PORT: 0,
      UND_GRPC_PORT: this.undPort,
      GEN_GRPC_PORT: this.genPort,
      // Each worker serves the other: the und-worker drives an [exp] answer's image with the gen-worker.
      UND_PEERS: `127.0.0.1:${this.undPort}`,
      GEN_PEERS: `127.0.0.1:${this.genPort}`,
      // The fast seeded-random fixture unless a test asks for another model.
      MODEL_DIR: FIXTURE_MODEL,
      ...this.options.env,
    };
    if (this.options.metrics) {
      for (const app of ['orchestrator', 'und-worker', 'gen-worker'] as const) this.metricsPorts[app] = await freePort();
    }
    this.und = await this.startUnd();
    this.gen = startApp('gen-worker', { ...this.env, ...this.metricsEnv('gen-worker'), ...this.options.genEnv });
    this.orchestrator = startApp('orchestrator', { ...this.env, ...this.metricsEnv('orchestrator') });
    this.api = startApp('api', this.env);
    await Promise.all([this.gen.waitForLog('consuming'), this.orchestrator.waitForLog('consuming')]);
    const listening = await this.api.waitForLog('listening');
    this.apiUrl = String(listening.url).replace('[::1]', '127.0.0.1');
    return this;
  }

  /** (Re)starts the understanding worker on its fixed port. */
  async startUnd(): Promise<AppProcess> {
    this.und = startApp('und-worker', { ...this.env, ...this.metricsEnv('und-worker'), ...this.options.undEnv });
    await this.und.waitForLog('serving');
    return this.und;
  }

  private metricsEnv(app: keyof TestSystem['metricsPorts']): Record<string, number> {
    const port = this.metricsPorts[app];
    return port === undefined ? {} : { METRICS_PORT: port };
  }

  async stop(): Promise<void> {
    await Promise.all([this.api, this.orchestrator, this.gen, this.und].filter(Boolean).map((app) => app.stop('SIGKILL')));
  }

  dump(): string {
    return [this.und, this.gen, this.orchestrator, this.api]
      .filter(Boolean)
      .map((app) => `--- ${app.name}\n${app.output()}`)
      .join('\n');
  }
}
