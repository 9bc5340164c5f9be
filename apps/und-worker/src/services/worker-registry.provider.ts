import type { Provider } from '@nestjs/common';
import { CONFIG, deviceOf, WorkerRegistry, type Config } from '@lavida/config';
import { QueueName } from '@lavida/contracts';
import { ModelPackage } from '@lavida/model';

/** The understanding worker's heartbeat: device, model, the stage it runs, the gRPC address it serves. */
export const workerRegistryProvider: Provider = {
  provide: WorkerRegistry,
  inject: [CONFIG, ModelPackage],
  useFactory: (config: Config, pkg: ModelPackage) =>
    new WorkerRegistry(config, {
      kind: 'und-worker',
      device: deviceOf(config),
      model: { name: pkg.manifest.name, version: pkg.manifest.version },
      queue: QueueName.Understanding,
      concurrency: config.UND_CONCURRENCY,
      // The address generation workers name in UND_PEERS (the dashboard matches peer links by it); unknown for port 0.
      ...(config.UND_GRPC_PORT ? { extra: () => ({ grpc: { host: config.GRPC_HOST, port: config.UND_GRPC_PORT } }) } : {}),
    }),
};
