import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { CONFIG, JsonLogger, type Config } from '@lavida/config';
import { jointAttentionService, WorkerServer } from '@lavida/wire';
import { ModelPackage } from '@lavida/model';

/** Serves the text side of joint attention, model metadata and health over gRPC. */
@Injectable()
export class PeerServerService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new JsonLogger('und-worker', PeerServerService.name);
  private server?: WorkerServer;

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    private readonly pkg: ModelPackage,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const pkg = this.pkg;
    const transport = { chunkBytes: this.config.TENSOR_CHUNK_BYTES, maxMessageBytes: this.config.GRPC_MAX_MESSAGE_BYTES };
    this.server = new WorkerServer({
      ...transport,
      host: this.config.GRPC_HOST,
      port: this.config.UND_GRPC_PORT,
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
      provider: pkg.executionProvider,
    });
  }

  async onApplicationShutdown(): Promise<void> {
    await this.server?.stop();
    await this.pkg.release();
  }
}
