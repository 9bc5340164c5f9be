import type { Provider } from '@nestjs/common';
import { CONFIG, deviceOf, peerHealth, peerLinkStats, WorkerRegistry, type Config } from '@lavida/config';
import { QueueName } from '@lavida/contracts';
import { ModelPackage } from '@lavida/model';
import { PeerRepository } from '../repositories/peer.repository.js';

/**
 * The generation worker's heartbeat: device, model, the stage it runs, the gRPC address it serves
 * (understanding workers' GEN_PEERS name it), and every understanding peer with its health and
 * exchange latency (the dashboard's peer links). Degraded while no peer serves.
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
      health: () => peerHealth(peers.peers(), 'understanding peer'),
      extra: () => ({
        // The address understanding workers name in GEN_PEERS (the dashboard matches their links by it); unknown for port 0.
        ...(config.GEN_GRPC_PORT ? { grpc: { host: config.GRPC_HOST, port: config.GEN_GRPC_PORT } } : {}),
        peers: peerLinkStats(peers.peers()),
      }),
    }),
};
