import type { Provider } from '@nestjs/common';
import { CONFIG, deviceOf, WorkerRegistry, type Config } from '@lavida/config';
import { QueueName } from '@lavida/contracts';
import { ModelPackage } from '@lavida/model';
import { PeerRepository } from '../repositories/peer.repository.js';

/**
 * The generation worker's heartbeat: device, model, the stage it runs, and every understanding peer
 * with its health and exchange latency (the dashboard's peer links). Degraded while no peer serves.
 */
export const workerRegistryProvider: Provider = {
  provide: WorkerRegistry,
  inject: [CONFIG, ModelPackage, PeerRepository],
  useFactory: (config: Config, pkg: ModelPackage, peers: PeerRepository) =>
    new WorkerRegistry(config, {
      kind: 'gen-worker',
      device: deviceOf(config),
      model: { name: pkg.manifest.name, version: pkg.manifest.version },
      queue: QueueName.Generation,
      concurrency: config.GEN_CONCURRENCY,
      health: () =>
        peers.peers().some((p) => p.health === 'SERVING')
          ? { health: 'ok' }
          : { health: 'degraded', reason: 'no understanding peer is SERVING' },
      extra: () => ({
        peers: peers.peers().map(({ lastExchangeAt, ...peer }) => ({
          ...peer,
          ...(lastExchangeAt === undefined ? {} : { lastExchangeAt: new Date(lastExchangeAt).toISOString() }),
        })),
      }),
    }),
};
