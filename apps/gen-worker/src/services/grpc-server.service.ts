import {
  Inject,
  Injectable,
  type BeforeApplicationShutdown,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { CONFIG, JsonLogger, peerTlsFiles, type Config } from '@lavida/config';
import { ModelPackage } from '@lavida/model';
import { peerServerCredentials, WorkerServer } from '@lavida/wire';

/** Model metadata and health over gRPC for the generation worker. */
@Injectable()
export class GrpcServerService implements OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new JsonLogger('gen-worker', GrpcServerService.name);
  private server?: WorkerServer;

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    private readonly pkg: ModelPackage,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const tls = peerTlsFiles(this.config);
    this.server = new WorkerServer({
      host: this.config.GRPC_HOST,
      port: this.config.GEN_GRPC_PORT,
      healthPort: this.config.GRPC_HEALTH_PORT,
      credentials: peerServerCredentials(tls),
      pkg: this.pkg,
      chunkBytes: this.config.TENSOR_CHUNK_BYTES,
      maxMessageBytes: this.config.GRPC_MAX_MESSAGE_BYTES,
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

  // Draining (the running job goes on): not ready any more, still alive.
  beforeApplicationShutdown(): void {
    this.server?.drain();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.server?.stop();
    await this.pkg.release();
  }
}
