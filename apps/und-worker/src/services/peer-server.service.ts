import {
  Inject,
  Injectable,
  type BeforeApplicationShutdown,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { CONFIG, JsonLogger, peerTlsFiles, type Config } from '@lavida/config';
import { jointAttentionService, peerServerCredentials, WorkerServer } from '@lavida/wire';
import { ModelPackage } from '@lavida/model';

/** Serves the text side of joint attention, model metadata and health over gRPC. */
@Injectable()
export class PeerServerService implements OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new JsonLogger('und-worker', PeerServerService.name);
  private server?: WorkerServer;

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    private readonly pkg: ModelPackage,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const pkg = this.pkg;
    const tls = peerTlsFiles(this.config, 'server');
    const transport = { chunkBytes: this.config.TENSOR_CHUNK_BYTES, maxMessageBytes: this.config.GRPC_MAX_MESSAGE_BYTES };
    this.server = new WorkerServer({
      ...transport,
      host: this.config.GRPC_HOST,
      port: this.config.UND_GRPC_PORT,
      healthPort: this.config.GRPC_HEALTH_PORT,
      // Mutual TLS when GRPC_TLS_* name the files: a generation worker without a client certificate is refused.
      credentials: peerServerCredentials(tls),
      pkg,
      jointAttention: jointAttentionService(pkg, {
        ...transport,
        workerId: this.config.WORKER_ID,
        faultDelayMs: this.config.FAULT_EXCHANGE_DELAY_MS,
        onSession: (report) => this.logger.log('session ended', { ...report, jobId: report.sessionId.split('/')[0] }),
      }),
    });
    const port = await this.server.start();
    this.logger.log('serving', {
      model: `${pkg.manifest.name}@${pkg.manifest.version}`,
      segments: pkg.segmentNames.length,
      loadMs: Math.round(pkg.loadMs),
      grpcPort: port,
      ...(this.server.healthPort ? { healthPort: this.server.healthPort } : {}),
      tls: tls !== undefined,
      provider: pkg.executionProvider,
    });
  }

  // Draining: generation workers open new sessions elsewhere, running sessions go on.
  beforeApplicationShutdown(): void {
    this.server?.drain();
  }

  async onApplicationShutdown(): Promise<void> {
    // Sessions still running get the drain's time to finish, then are cut (the driver retries elsewhere).
    await this.server?.stop(this.config.DRAIN_TIMEOUT_MS);
    await this.pkg.release();
  }
}
