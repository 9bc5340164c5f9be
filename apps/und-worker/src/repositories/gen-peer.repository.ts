import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { CONFIG, JsonLogger, peerTlsFiles, type Config } from '@lavida/config';
import { ModelPackage, type ImageLink, type ImageOpenRequest, type ImagePeer } from '@lavida/model';
import { GrpcImagePeer, logPeerHealth, peerDriverChannel, type PeerSnapshot } from '@lavida/wire';

/**
 * The generation workers this understanding worker drives when an answer is an image (`[exp]`):
 * they serve the image side of text-to-image, chosen by health, with failover across them.
 */
@Injectable()
export class GenPeerRepository implements ImagePeer, OnApplicationShutdown {
  private readonly logger = new JsonLogger('und-worker', GenPeerRepository.name);
  private readonly peer: GrpcImagePeer;

  constructor(@Inject(CONFIG) config: Config, pkg: ModelPackage) {
    const tls = peerTlsFiles(config, 'gen-peers');
    this.peer = new GrpcImagePeer({
      addresses: config.GEN_PEERS,
      modelName: pkg.manifest.name,
      modelVersion: pkg.manifest.version,
      timeoutMs: config.EXCHANGE_TIMEOUT_MS,
      chunkBytes: config.TENSOR_CHUNK_BYTES,
      maxMessageBytes: config.GRPC_MAX_MESSAGE_BYTES,
      // Mutual TLS when GRPC_TLS_* name the files (the gen-workers' certificates checked against
      // GRPC_TLS_GEN_SERVER_NAME, else the host in GEN_PEERS; never the und-workers' name), GRPC_LB_POLICY.
      ...peerDriverChannel(tls, config.GRPC_LB_POLICY),
      onHealthChange: logPeerHealth(this.logger, 'gen peer health'),
    });
  }

  open(request: ImageOpenRequest, signal?: AbortSignal): Promise<ImageLink> {
    return this.peer.open(request, signal);
  }

  /** Each generation peer as seen now: health, sessions in flight, last error. */
  peers(): PeerSnapshot[] {
    return this.peer.peers();
  }

  // After the drain (beforeApplicationShutdown): a running respond stage still exchanges with its peer until it ends.
  onApplicationShutdown(): void {
    this.peer.close();
  }
}
