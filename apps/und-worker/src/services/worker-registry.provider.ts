import type { Provider } from '@nestjs/common';
import { CONFIG, deviceOf, peerHealth, peerLinkStats, WorkerRegistry, type Config } from '@lavida/config';
import { QueueName } from '@lavida/contracts';
import { ModelPackage } from '@lavida/model';
import { GenPeerRepository } from '../repositories/gen-peer.repository.js';

/**
 * The understanding worker's heartbeat: device, model, the stage it runs, the gRPC address it serves,
 * and every generation peer (GEN_PEERS) with its health and exchange latency (the dashboard's peer
 * links, as a generation worker reports its understanding peers). Degraded while no generation peer
 * serves: its other stages run, but an `[exp]` answer's image cannot be drawn.
 */
export const workerRegistryProvider: Provider = {
  provide: WorkerRegistry,
  inject: [CONFIG, ModelPackage, GenPeerRepository],
  useFactory: (config: Config, pkg: ModelPackage, genPeers: GenPeerRepository) =>
    new WorkerRegistry(config, {
      kind: 'und-worker',
      device: deviceOf(config),
      model: { name: pkg.manifest.name, version: pkg.manifest.version },
      queue: QueueName.Understanding,
      concurrency: config.UND_CONCURRENCY,
      health: () => peerHealth(genPeers.peers(), 'generation peer'),
      extra: () => ({
        // The address generation workers name in UND_PEERS (the dashboard matches peer links by it); unknown for port 0.
        ...(config.UND_GRPC_PORT ? { grpc: { host: config.GRPC_HOST, port: config.UND_GRPC_PORT } } : {}),
        peers: peerLinkStats(genPeers.peers()),
      }),
    }),
};
