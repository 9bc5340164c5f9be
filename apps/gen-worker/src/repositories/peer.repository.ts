import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { CONFIG, JsonLogger, type Config } from '@lavida/config';
import { ModelPackage, type JointLink, type JointPeer, type OpenRequest } from '@lavida/model';
import { GrpcJointPeer, type PeerSnapshot } from '@lavida/wire';

/** The understanding workers this generation worker drives, chosen by health, with failover across them. */
@Injectable()
export class PeerRepository implements JointPeer, OnModuleDestroy {
  private readonly logger = new JsonLogger('gen-worker', PeerRepository.name);
  private readonly peer: GrpcJointPeer;

  constructor(@Inject(CONFIG) config: Config, pkg: ModelPackage) {
    this.peer = new GrpcJointPeer({
      addresses: config.UND_PEERS,
      modelName: pkg.manifest.name,
      modelVersion: pkg.manifest.version,
      timeoutMs: config.EXCHANGE_TIMEOUT_MS,
      chunkBytes: config.TENSOR_CHUNK_BYTES,
      maxMessageBytes: config.GRPC_MAX_MESSAGE_BYTES,
      onHealthChange: (peer, previous) => {
        const fields = { peer: peer.address, health: peer.health, previous, inFlight: peer.inFlight };
        if (peer.health === 'SERVING') this.logger.log('peer health', fields);
        else this.logger.warn('peer health', { ...fields, lastError: peer.lastError });
      },
    });
  }

  open(request: OpenRequest, signal?: AbortSignal): Promise<JointLink> {
    return this.peer.open(request, signal);
  }

  /** Each understanding peer as seen now: health, sessions in flight, last error. */
  peers(): PeerSnapshot[] {
    return this.peer.peers();
  }

  onModuleDestroy(): void {
    this.peer.close();
  }
}
