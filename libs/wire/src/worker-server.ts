import {
  Server,
  ServerCredentials,
  status,
  type sendUnaryData,
  type ServerUnaryCall,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { HealthImplementation } from 'grpc-health-check';
import {
  GetModelMetadataResponseSchema,
  grpcServiceDefinition,
  JointAttentionService,
  ModelService,
  type GetModelMetadataRequest,
  type GetModelMetadataResponse,
} from '@lavida/proto';
import type { ModelPackage } from '@lavida/model';
import { channelOptions, type TransportOptions } from './channel.js';

/** The model metadata service: the loaded manifest and the segments this worker runs. */
export function modelMetadataService(pkg: ModelPackage): UntypedServiceImplementation {
  const response = create(GetModelMetadataResponseSchema, {
    name: pkg.manifest.name,
    version: pkg.manifest.version,
    branch: pkg.branch,
    manifestJson: pkg.manifestJson,
    executionProvider: pkg.executionProvider,
    segments: pkg.segmentNames.map((name) => {
      const spec = pkg.spec(name);
      return {
        name,
        inputs: spec.inputs.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })),
        outputs: spec.outputs.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })),
      };
    }),
  });
  return {
    getModelMetadata: (
      _call: ServerUnaryCall<GetModelMetadataRequest, GetModelMetadataResponse>,
      callback: sendUnaryData<GetModelMetadataResponse>,
    ) => {
      callback(null, response);
    },
  };
}

export interface WorkerServerOptions extends TransportOptions {
  host: string;
  port: number;
  pkg: ModelPackage;
  /** The joint-attention peer service, when this worker serves one. */
  jointAttention?: UntypedServiceImplementation;
  /** The port's credentials (see peerServerCredentials); plaintext when unset. */
  credentials?: ServerCredentials;
  /**
   * A second, plaintext port that serves only grpc.health.v1 (the kubelet's gRPC probes cannot
   * present a client certificate); 0 picks a free one. Unset: no second port.
   */
  healthPort?: number;
}

/** The health service name that stays SERVING while the worker drains: liveness, not readiness (service ''). */
export const LIVENESS_SERVICE = 'liveness';

/** A worker's gRPC server: model metadata, the standard health service, and the peer service. */
export class WorkerServer {
  readonly health = new HealthImplementation({ '': 'NOT_SERVING' });
  private readonly server: Server;
  private readonly healthServer?: Server;
  port = 0;
  /** The plaintext health-only port, once started (0 without one). */
  healthPort = 0;

  constructor(private readonly options: WorkerServerOptions) {
    this.server = new Server(channelOptions(options));
    this.server.addService(grpcServiceDefinition(ModelService), modelMetadataService(options.pkg));
    const jointName = JointAttentionService.typeName;
    if (options.jointAttention) {
      this.server.addService(grpcServiceDefinition(JointAttentionService), options.jointAttention);
    } else {
      // A peer that does not serve the text side answers UNIMPLEMENTED, never hangs.
      this.server.addService(grpcServiceDefinition(JointAttentionService), {
        exchange: (call: { emit: (event: string, error: unknown) => void }) => {
          call.emit('error', { code: status.UNIMPLEMENTED, details: 'this worker does not serve the text side' });
        },
      });
    }
    this.health.setStatus(jointName, options.jointAttention ? 'SERVING' : 'NOT_SERVING');
    this.health.setStatus(ModelService.typeName, 'SERVING');
    this.health.setStatus(LIVENESS_SERVICE, 'NOT_SERVING');
    this.health.addToServer(this.server);
    if (options.healthPort !== undefined) {
      this.healthServer = new Server();
      this.health.addToServer(this.healthServer);
    }
  }

  async start(): Promise<number> {
    this.port = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(
        `${this.options.host}:${this.options.port}`,
        this.options.credentials ?? ServerCredentials.createInsecure(),
        (error, port) => (error ? reject(error) : resolve(port)),
      );
    });
    if (this.healthServer) {
      this.healthPort = await new Promise<number>((resolve, reject) => {
        this.healthServer!.bindAsync(
          `${this.options.host}:${this.options.healthPort}`,
          ServerCredentials.createInsecure(),
          (error, port) => (error ? reject(error) : resolve(port)),
        );
      });
    }
    this.health.setStatus(LIVENESS_SERVICE, 'SERVING');
    this.health.setStatus('', 'SERVING');
    return this.port;
  }

  /** Not ready any more (service '' NOT_SERVING: peers and readiness probes look elsewhere), still alive; calls go on. */
  drain(): void {
    this.health.setStatus('', 'NOT_SERVING');
  }

  /** Stops taking calls, lets running ones finish for up to `graceMs`, then forces. */
  async stop(graceMs = 5000): Promise<void> {
    this.health.setStatus('', 'NOT_SERVING');
    const servers = this.healthServer ? [this.server, this.healthServer] : [this.server];
    await Promise.all(
      servers.map(
        (server) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => {
              server.forceShutdown();
              resolve();
            }, graceMs);
            server.tryShutdown(() => {
              clearTimeout(timer);
              resolve();
            });
          }),
      ),
    );
  }
}
