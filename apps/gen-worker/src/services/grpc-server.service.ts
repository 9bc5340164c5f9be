import {
  Inject,
  Injectable,
  type BeforeApplicationShutdown,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { CONFIG, JsonLogger, peerTlsFiles, type Config } from '@lavida/config';
import { ModelPackage } from '@lavida/model';
import { jointAttentionService, peerServerCredentials, WorkerServer } from '@lavida/wire';

/**
 * The generation worker's gRPC server: model metadata, health, and the image side of joint
 * attention (serve_side SIDE_IMAGE) for understanding workers that drive text-to-image (an
 * `[exp]` answer expanded into an image).
 */
@Injectable()
export class GrpcServerService implements OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new JsonLogger('gen-worker', GrpcServerService.name);
  private server?: WorkerServer;

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    private readonly pkg: ModelPackage,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const tls = peerTlsFiles(this.config, 'server');
    const transport = { chunkBytes: this.config.TENSOR_CHUNK_BYTES, maxMessageBytes: this.config.GRPC_MAX_MESSAGE_BYTES };
    this.server = new WorkerServer({
      ...transport,
      host: this.config.GRPC_HOST,
      port: this.config.GEN_GRPC_PORT,
      healthPort: this.config.GRPC_HEALTH_PORT,
      // Mutual TLS when GRPC_TLS_* name the files: an understanding worker without a client certificate is refused.
      credentials: peerServerCredentials(tls),
      pkg: this.pkg,
      jointAttention: jointAttentionService(this.pkg, {
        ...transport,
        workerId: this.config.WORKER_ID,
        faultDelayMs: this.config.FAULT_EXCHANGE_DELAY_MS,
        onSession: (report) => this.logger.log('session ended', { ...report, jobId: report.sessionId.split('/')[0] }),
      }),
    });
    const port = await this.server.start();
    this.logger.log('serving', {
      model: `${this.pkg.manifest.name}@${this.pkg.manifest.version}`,
      segments: this.pkg.segmentNames.length,
      loadMs: Math.round(this.pkg.loadMs),
      grpcPort: port,
      ...(this.server.healthPort ? { healthPort: this.server.healthPort } : {}),
      tls: tls !== undefined,
      provider: this.pkg.executionProvider,
      peers: this.config.UND_PEERS,
    });
  }

  // Draining (the running job and served sessions go on): not ready any more, still alive.
  beforeApplicationShutdown(): void {
    this.server?.drain();
  }

  async onApplicationShutdown(): Promise<void> {
    // Image-side sessions still running get the drain's time to finish, then are cut (the driver retries elsewhere).
    await this.server?.stop(this.config.DRAIN_TIMEOUT_MS);
    await this.pkg.release();
  }
}
