import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { CONFIG, type Config } from '@lavida/config';
import { ModelPackage, type JointLink, type JointPeer, type OpenRequest } from '@lavida/model';
import { GrpcJointPeer } from '@lavida/wire';

/** The understanding workers this generation worker drives, with failover across them. */
@Injectable()
export class PeerRepository implements JointPeer, OnModuleDestroy {
  private readonly peer: GrpcJointPeer;

  constructor(@Inject(CONFIG) config: Config, pkg: ModelPackage) {
    this.peer = new GrpcJointPeer({
      addresses: config.UND_PEERS,
      modelName: pkg.manifest.name,
      modelVersion: pkg.manifest.version,
      timeoutMs: config.EXCHANGE_TIMEOUT_MS,
      chunkBytes: config.TENSOR_CHUNK_BYTES,
      maxMessageBytes: config.GRPC_MAX_MESSAGE_BYTES,
    });
  }

  open(request: OpenRequest, signal?: AbortSignal): Promise<JointLink> {
    return this.peer.open(request, signal);
  }

  onModuleDestroy(): void {
    this.peer.close();
  }
}
