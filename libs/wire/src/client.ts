import {
  credentials as grpcCredentials,
  makeGenericClientConstructor,
  type ChannelCredentials,
  type Client,
  type ClientDuplexStream,
  type ServiceError,
} from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import {
  ExchangeRequestSchema,
  grpcServiceDefinition,
  JointAttentionService,
  Side,
  type ExchangeRequest,
  type ExchangeResponse,
} from '@lavida/proto';
import { CanceledError, LavidaError, PeerProtocolError, PeerUnavailableError } from '@lavida/contracts';
import type { JointLink, JointPeer, OpenRequest, PartialAttention, Projections } from '@lavida/model';
import { chunksOf, decodeTensor, encodeTensor, FrameAssembler } from './codec.js';
import { chunkOf, responseTensors, writeAll } from './frames.js';
import { fromServiceError } from './status.js';
import { channelOptions, type TransportOptions } from './channel.js';

export interface GrpcJointPeerOptions extends TransportOptions {
  /** host:port of each understanding worker, tried in order, healthy ones first. */
  addresses: string[];
  modelName: string;
  modelVersion: string;
  /** Deadline of each exchange (open, one layer, close). */
  timeoutMs: number;
  credentials?: ChannelCredentials;
  /** Called after every exchange with its round trip, for metrics and benchmarks. */
  onExchange?: (kind: 'open' | 'step' | 'partial' | 'close', ms: number, bytes: number) => void;
}

type Exchange = ClientDuplexStream<ExchangeRequest, ExchangeResponse>;
const ExchangeClient = makeGenericClientConstructor(grpcServiceDefinition(JointAttentionService), 'JointAttentionService');

/**
 * Joint-attention peers reached over gRPC. `open` tries the addresses in order, skipping those
 * that failed recently, and fails over to the next when one cannot be reached.
 */
export class GrpcJointPeer implements JointPeer {
  private readonly clients = new Map<string, Client>();
  private readonly failedAt = new Map<string, number>();

  constructor(private readonly options: GrpcJointPeerOptions) {}

  async open(request: OpenRequest, signal?: AbortSignal): Promise<JointLink> {
    const now = Date.now();
    const ordered = [...this.options.addresses].sort((a, b) => (this.failedAt.get(a) ?? 0) - (this.failedAt.get(b) ?? 0));
    const failures: string[] = [];
    for (const address of ordered) {
      if (signal?.aborted) throw new CanceledError('canceled');
      try {
        const link = await GrpcLink.open(this.client(address), address, request, this.options, signal);
        this.failedAt.delete(address);
        return link;
      } catch (error) {
        if (!(error instanceof PeerUnavailableError)) throw error;
        this.failedAt.set(address, now);
        failures.push(error.message);
      }
    }
    throw new PeerUnavailableError(`no understanding peer answered: ${failures.join('; ')}`);
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }

  private client(address: string): Client {
    let client = this.clients.get(address);
    if (!client) {
      client = new ExchangeClient(address, this.options.credentials ?? grpcCredentials.createInsecure(), channelOptions(this.options));
      this.clients.set(address, client);
    }
    return client;
  }
}

/** One session over one bidirectional stream: request, then wait for the matching answer. */
class GrpcLink implements JointLink {
  private readonly inbox: ExchangeResponse[] = [];
  private waiter?: { resolve: (frame: ExchangeResponse) => void; reject: (error: Error) => void };
  private failure?: LavidaError;
  private ended = false;

  private constructor(
    private readonly call: Exchange,
    readonly peer: string,
    private readonly options: GrpcJointPeerOptions,
  ) {
    const assembler = new FrameAssembler<ExchangeResponse>(responseTensors, chunkOf, options.maxMessageBytes * 64);
    call.on('data', (message: ExchangeResponse) => {
      let frame: ExchangeResponse | undefined;
      try {
        frame = assembler.push(message);
      } catch (error) {
        this.fail(new PeerProtocolError(`peer ${peer}: ${(error as Error).message}`));
        call.cancel();
        return;
      }
      if (!frame) return;
      if (this.waiter) {
        const waiter = this.waiter;
        this.waiter = undefined;
        waiter.resolve(frame);
      } else {
        this.inbox.push(frame);
      }
    });
    call.on('error', (error: ServiceError) => this.fail(fromServiceError(error, peer)));
    call.on('end', () => {
      this.ended = true;
      this.fail(new PeerUnavailableError(`peer ${peer} ended the session`));
    });
  }

  static async open(
    client: Client,
    address: string,
    request: OpenRequest,
    options: GrpcJointPeerOptions,
    signal?: AbortSignal,
  ): Promise<GrpcLink> {
    const call = (client as unknown as { exchange: () => Exchange }).exchange();
    const link = new GrpcLink(call, address, options);
    signal?.addEventListener('abort', () => {
      link.fail(new CanceledError('canceled'));
      call.cancel();
    });
    const ids = encodeTensor(request.textIds, options.chunkBytes);
    const positions = encodeTensor(request.textPositions, options.chunkBytes);
    const prefix = request.prefixPixels ? encodeTensor(request.prefixPixels, options.chunkBytes) : undefined;
    const open = create(ExchangeRequestSchema, {
      frame: {
        case: 'open',
        value: {
          sessionId: request.sessionId,
          modelName: options.modelName,
          modelVersion: options.modelVersion,
          serveSide: Side.TEXT,
          textIds: ids.tensor,
          textPositions: positions.tensor,
          stopAfterLayer: request.stopAfterLayer,
          chunkSize: options.chunkBytes,
          prefixPixels: prefix?.tensor,
        },
      },
    });
    try {
      const answer = await link.exchange('open', [open, ...link.chunkFrames(prefix ? [ids, positions, prefix] : [ids, positions])]);
      if (answer.frame.case !== 'opened') throw new PeerProtocolError(`peer ${address} answered open with ${answer.frame.case}`);
    } catch (error) {
      call.cancel();
      throw error;
    }
    return link;
  }

  async beginStep(step: number): Promise<Projections> {
    const frame = create(ExchangeRequestSchema, { frame: { case: 'beginStep', value: { step } } });
    return this.projections(await this.exchange('step', [frame]), step, 0);
  }

  async partial(step: number, layer: number, partial: PartialAttention): Promise<Projections> {
    const out = encodeTensor(partial.out, this.options.chunkBytes);
    const lse = encodeTensor(partial.lse, this.options.chunkBytes);
    const frame = create(ExchangeRequestSchema, {
      frame: { case: 'partial', value: { step, layer, out: out.tensor, lse: lse.tensor } },
    });
    return this.projections(await this.exchange('partial', [frame, ...this.chunkFrames([out, lse])]), step, layer + 1);
  }

  async close(): Promise<void> {
    if (this.failure || this.ended) {
      this.call.cancel();
      return;
    }
    try {
      await this.exchange('close', [create(ExchangeRequestSchema, { frame: { case: 'close', value: { reason: 'done' } } })]);
      this.call.end();
    } catch {
      this.call.cancel();
    }
  }

  private chunkFrames(encoded: Parameters<typeof chunksOf>[0]): ExchangeRequest[] {
    return chunksOf(encoded).map((value) => create(ExchangeRequestSchema, { frame: { case: 'chunk', value } }));
  }

  private projections(frame: ExchangeResponse, step: number, layer: number): Projections {
    if (frame.frame.case !== 'projections')
      throw new PeerProtocolError(`peer ${this.peer} answered with ${frame.frame.case}, expected projections`);
    const p = frame.frame.value;
    if (p.step !== step || p.layer !== layer) {
      throw new PeerProtocolError(
        `peer ${this.peer} sent projections for step ${p.step} layer ${p.layer}, expected step ${step} layer ${layer}`,
      );
    }
    if (!p.q || !p.k || !p.v) throw new PeerProtocolError(`peer ${this.peer} sent projections without q, k and v`);
    return { q: decodeTensor(p.q, 'q'), k: decodeTensor(p.k, 'k'), v: decodeTensor(p.v, 'v') };
  }

  /** Sends frames and waits for the next complete answer, within the deadline. */
  private async exchange(kind: 'open' | 'step' | 'partial' | 'close', frames: ExchangeRequest[]): Promise<ExchangeResponse> {
    if (this.failure) throw this.failure;
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = new PeerUnavailableError(`peer ${this.peer} did not answer ${kind} within ${this.options.timeoutMs} ms`);
        this.fail(error);
        this.call.cancel();
        reject(error);
      }, this.options.timeoutMs);
    });
    try {
      const answer = await Promise.race([writeAll(this.call, frames).then(() => this.next()), deadline]);
      const bytes = frames.reduce((sum, f) => sum + frameBytes(f), 0) + frameBytes(answer);
      this.options.onExchange?.(kind, performance.now() - started, bytes);
      return answer;
    } finally {
      clearTimeout(timer);
    }
  }

  private next(): Promise<ExchangeResponse> {
    const frame = this.inbox.shift();
    if (frame) return Promise.resolve(frame);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  private fail(error: LavidaError): void {
    this.failure ??= error;
    if (this.waiter) {
      const waiter = this.waiter;
      this.waiter = undefined;
      waiter.reject(this.failure);
    }
  }
}

function frameBytes(frame: ExchangeRequest | ExchangeResponse): number {
  const value = frame.frame.value as Record<string, unknown> | undefined;
  if (!value) return 0;
  let bytes = 0;
  for (const field of Object.values(value)) {
    if (field && typeof field === 'object' && 'data' in field && field.data instanceof Uint8Array) bytes += field.data.length;
    else if (field instanceof Uint8Array) bytes += field.length;
  }
  return bytes;
}
