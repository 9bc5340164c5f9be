import type { Provider } from '@nestjs/common';
import { CONFIG, WorkerRegistry, type Config } from '@lavida/config';
import { QueueName } from '@lavida/contracts';

/** The orchestrator's heartbeat in the worker registry (no model, no device: it sequences pipelines). */
export const workerRegistryProvider: Provider = {
  provide: WorkerRegistry,
  inject: [CONFIG],
  useFactory: (config: Config) => new WorkerRegistry(config, { kind: 'orchestrator', queue: QueueName.Pipeline }),
};
