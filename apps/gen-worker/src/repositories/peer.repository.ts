import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { CONFIG, JsonLogger, peerTlsFiles, type Config } from '@lavida/config';
import { ModelPackage, type JointLink, type JointPeer, type OpenRequest } from '@lavida/model';
import { GrpcJointPeer, logPeerHealth, peerDriverChannel, type PeerSnapshot } from '@lavida/wire';

/** The understanding workers this generation worker drives, chosen by health, with failover across them. */
@Injectable()
export class PeerRepository implements JointPeer, OnApplicationShutdown {
  private readonly logger = new JsonLogger('gen-worker', PeerRepository.name);
  private readonly peer: GrpcJointPeer;

  constructor(@Inject(CONFIG) config: Config, pkg: ModelPackage) {
    const tls = peerTlsFiles(config, 'und-peers');
    this.peer = new GrpcJointPeer({
      addresses: config.UND_PEERS,
      modelName: pkg.manifest.name,
      modelVersion: pkg.manifest.version,
      timeoutMs: config.EXCHANGE_TIMEOUT_MS,
      chunkBytes: config.TENSOR_CHUNK_BYTES,
      maxMessageBytes: config.GRPC_MAX_MESSAGE_BYTES,
      // Mutual TLS when GRPC_TLS_* name the files (the und-workers' certificates checked against
      // GRPC_TLS_SERVER_NAME, else the host in UND_PEERS), GRPC_LB_POLICY.
      ...peerDriverChannel(tls, config.GRPC_LB_POLICY),
      onHealthChange: logPeerHealth(this.logger, 'peer health'),
    });
  }

  open(request: OpenRequest, signal?: AbortSignal): Promise<JointLink> {
    return this.peer.open(request, signal);
  }

  /** Each understanding peer as seen now: health, sessions in flight, last error. */
  peers(): PeerSnapshot[] {
    return this.peer.peers();
  }

  // After the drain (beforeApplicationShutdown): the running job still exchanges with its peer until it ends.
  onApplicationShutdown(): void {
    this.peer.close();
  }
}
