import {
  credentials as grpcCredentials,
  makeGenericClientConstructor,
  Metadata,
  type ChannelCredentials,
  type ChannelOptions,
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
import {
  Tensor,
  type ImageLink,
  type ImageOpenRequest,
  type ImagePeer,
  type ImageStepResult,
  type JointLink,
  type JointPeer,
  type OpenRequest,
  type PartialAttention,
  type Projections,
} from '@lavida/model';
import { chunksOf, decodeTensor, encodeTensor, FrameAssembler } from './codec.js';
import { chunkOf, responseTensors, writeAll } from './frames.js';
import { fromServiceError } from './status.js';
import { channelOptions, type TransportOptions } from './channel.js';
import { exchangeSessions, SpanStatusCode } from '@lavida/telemetry';
import { clientSession, recordExchange, type ExchangeKind } from './telemetry.js';
import { HealthClient, HealthWatch, type HealthWatchOptions, type PeerHealth, type PeerSnapshot } from './peer-health.js';

/** How a driver reaches its serving peers: addresses, model, deadlines, health watching, TLS. */
export interface GrpcPeerOptions extends TransportOptions {
  /** host:port of each serving worker; chosen by health and load, in this order on ties. */
  addresses: string[];
  modelName: string;
  modelVersion: string;
  /** Deadline of each exchange (open, one layer, close). */
  timeoutMs: number;
  credentials?: ChannelCredentials;
  /** More channel options (TLS target name, load-balancing policy), over the transport's. */
  channelOptions?: ChannelOptions;
  /** Follow each peer's standard health service (grpc.health.v1.Health/Watch). @defaultValue true */
  watchHealth?: boolean;
  /** Backoff of re-watching a peer's health after the stream ended or failed. @defaultValue 200 to 2000 ms */
  healthBackoff?: Partial<HealthWatchOptions>;
  /** How long a peer whose open failed stays last in the order, unless its health says SERVING again. @defaultValue 5000 */
  failureCooldownMs?: number;
  /** Called when a peer's health changes, with its snapshot after the change. */
  onHealthChange?: (peer: PeerSnapshot, previous: PeerHealth) => void;
}

/** Options of a generation worker driving understanding workers (they serve the text side). */
export interface GrpcJointPeerOptions extends GrpcPeerOptions {
  /** Called after every exchange with its round trip, for metrics and benchmarks. */
  onExchange?: (kind: 'open' | 'step' | 'partial' | 'close', ms: number, bytes: number) => void;
}

/** Options of an understanding worker driving generation workers (they serve the image side of text-to-image). */
export interface GrpcImagePeerOptions extends GrpcPeerOptions {
  /**
   * Called after every exchange with its round trip (`projections`: a layer's; `step`: a later step's
   * layer 0 asked for with begin_step, only with one joint layer or of a peer whose step came
   * without the next step's partial).
   */
  onExchange?: (kind: 'open' | 'step' | 'projections' | 'close', ms: number, bytes: number) => void;
}

/** What a session reports per exchange. */
interface SessionOptions extends GrpcPeerOptions {
  onExchange?: (kind: ExchangeKind, ms: number, bytes: number) => void;
}

type Exchange = ClientDuplexStream<ExchangeRequest, ExchangeResponse>;
const ExchangeClient = makeGenericClientConstructor(grpcServiceDefinition(JointAttentionService), 'JointAttentionService');

/** What this client knows of one address. */
class PeerState {
  client?: Client;
  watch?: HealthWatch;
  inFlight = 0;
  failedAt?: number;
  openFailures = 0;
  openError?: { message: string; at: number };
  openMs?: number;
  exchanges = 0;
  exchangeMs?: number;
  lastExchangeMs?: number;
  lastExchangeAt?: number;

  constructor(
    readonly address: string,
    readonly index: number,
  ) {}

  get health(): PeerHealth {
    return this.watch?.health ?? 'UNKNOWN';
  }

  /** A joint-layer exchange answered: its round trip into the moving average. */
  recordExchange(ms: number): void {
    this.exchanges++;
    this.exchangeMs = this.exchangeMs === undefined ? ms : 0.9 * this.exchangeMs + 0.1 * ms;
    this.lastExchangeMs = ms;
    this.lastExchangeAt = Date.now();
  }

  snapshot(): PeerSnapshot {
    const watchError = this.watch?.lastError;
    // The latest of the two: a watch error has no time, so an open error wins only while it is newer than the last health change.
    const lastError =
      this.openError && (!watchError || this.openError.at >= (this.watch?.changedAt ?? 0)) ? this.openError.message : watchError;
    return {
      address: this.address,
      health: this.health,
      inFlight: this.inFlight,
      ...(lastError !== undefined ? { lastError } : {}),
      openFailures: this.openFailures,
      ...(this.openMs !== undefined ? { openMs: Math.round(this.openMs * 10) / 10 } : {}),
      exchanges: this.exchanges,
      ...(this.exchangeMs !== undefined ? { exchangeMs: Math.round(this.exchangeMs * 100) / 100 } : {}),
      ...(this.lastExchangeMs !== undefined ? { lastExchangeMs: Math.round(this.lastExchangeMs * 100) / 100 } : {}),
      ...(this.lastExchangeAt !== undefined ? { lastExchangeAt: this.lastExchangeAt } : {}),
    };
  }
}

const RANK: Record<PeerHealth, number> = { SERVING: 0, UNKNOWN: 1, NOT_SERVING: 2 };

/**
 * Serving peers reached over gRPC, chosen by health. Each address's standard health service is
 * watched; a session's open tries SERVING peers first (fewest sessions in flight, then lowest
 * recent open latency, then config order), then peers of unknown health, then the rest as a last
 * resort (a single peer is always tried). An address whose open fails as unavailable is put last
 * for a while and the next one is tried.
 */
abstract class GrpcPeerPool {
  private readonly peerStates: PeerState[];
  private readonly cooldownMs: number;

  constructor(
    protected readonly options: GrpcPeerOptions & { onExchange?: (kind: never, ms: number, bytes: number) => void },
    /** Which branch the peers serve, for messages. */
    private readonly branch: string,
  ) {
    this.cooldownMs = options.failureCooldownMs ?? 5000;
    this.peerStates = options.addresses.map((address, index) => new PeerState(address, index));
    if (options.watchHealth ?? true) {
      const backoff = { initialBackoffMs: 200, maxBackoffMs: 2000, ...options.healthBackoff };
      for (const peer of this.peerStates) {
        const exchange = this.client(peer);
        // The health client shares the exchange client's channel: one connection per peer, kept warm by the watch.
        const health = new HealthClient(peer.address, this.credentials(), { channelOverride: exchange.getChannel() });
        peer.watch = new HealthWatch(health, peer.address, backoff, (_health, previous) =>
          this.options.onHealthChange?.(peer.snapshot(), previous),
        );
        peer.watch.start();
      }
    }
  }

  /** Each address as this client sees it now, in config order. */
  peers(): PeerSnapshot[] {
    return this.peerStates.map((peer) => peer.snapshot());
  }

  /** Opens a session on the best peer that answers, with `start` (which writes the open frame). */
  protected async connect<L>(
    start: (client: Client, address: string, options: SessionOptions, release: () => void) => Promise<L>,
    signal?: AbortSignal,
  ): Promise<L> {
    const failures: string[] = [];
    const tried = new Set<PeerState>();
    for (let peer = this.next(tried); peer; peer = this.next(tried)) {
      if (signal?.aborted) throw new CanceledError('canceled');
      tried.add(peer);
      peer.inFlight++;
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        peer.inFlight--;
      };
      const started = performance.now();
      try {
        // Per-peer exchange latency (the admin dashboard's peer links), then the caller's own hook.
        const onExchange: SessionOptions['onExchange'] = (kind, ms, bytes) => {
          if (kind === 'step' || kind === 'partial' || kind === 'projections') peer.recordExchange(ms);
          (this.options.onExchange as SessionOptions['onExchange'])?.(kind, ms, bytes);
        };
        const link = await start(this.client(peer), peer.address, { ...this.options, onExchange }, release);
        const ms = performance.now() - started;
        peer.openMs = peer.openMs === undefined ? ms : 0.7 * peer.openMs + 0.3 * ms;
        peer.failedAt = undefined;
        return link;
      } catch (error) {
        release();
        if (!(error instanceof PeerUnavailableError)) throw error;
        peer.failedAt = Date.now();
        peer.openFailures++;
        peer.openError = { message: error.message, at: peer.failedAt };
        failures.push(error.message);
      }
    }
    throw new PeerUnavailableError(`no ${this.branch} peer answered: ${failures.join('; ')}`);
  }

  /** Stops the health watches and closes every channel; idempotent. */
  close(): void {
    for (const peer of this.peerStates) {
      peer.watch?.stop();
      peer.client?.close();
      peer.client = undefined;
    }
  }

  /** The best untried peer, ranked on what is known now (health may change between tries). */
  private next(tried: Set<PeerState>): PeerState | undefined {
    const now = Date.now();
    const rank = (peer: PeerState) => {
      const failed = peer.failedAt !== undefined && now - peer.failedAt < this.cooldownMs;
      // A recent open failure counts as down until the cooldown ends or the health watch reports SERVING afresh.
      if (failed && !(peer.health === 'SERVING' && (peer.watch?.changedAt ?? 0) > peer.failedAt!)) return RANK.NOT_SERVING;
      return RANK[peer.health];
    };
    let best: PeerState | undefined;
    let bestRank = Infinity;
    for (const peer of this.peerStates) {
      if (tried.has(peer)) continue;
      const r = rank(peer);
      if (!best || r < bestRank || (r === bestRank && before(peer, best))) {
        best = peer;
        bestRank = r;
      }
    }
    return best;
  }

  private client(peer: PeerState): Client {
    peer.client ??= new ExchangeClient(peer.address, this.credentials(), {
      ...channelOptions(this.options),
      ...this.options.channelOptions,
    });
    return peer.client;
  }

  private credentials(): ChannelCredentials {
    return this.options.credentials ?? grpcCredentials.createInsecure();
  }
}

/** Understanding workers serving the text side, for a driving generation worker (see GrpcPeerPool for the choice of peer). */
export class GrpcJointPeer extends GrpcPeerPool implements JointPeer {
  constructor(options: GrpcJointPeerOptions) {
    super(options, 'understanding');
  }

  open(request: OpenRequest, signal?: AbortSignal): Promise<JointLink> {
    return this.connect((client, address, options, release) => GrpcLink.open(client, address, request, options, release, signal), signal);
  }
}

/** Generation workers serving the image side of text-to-image, for a driving understanding worker. */
export class GrpcImagePeer extends GrpcPeerPool implements ImagePeer {
  constructor(options: GrpcImagePeerOptions) {
    super(options, 'generation');
  }

  open(request: ImageOpenRequest, signal?: AbortSignal): Promise<ImageLink> {
    return this.connect(
      (client, address, options, release) => GrpcImageLink.open(client, address, request, options, release, signal),
      signal,
    );
  }
}

/** Order within one health rank: fewest in flight, least recently failed, lowest open latency (unmeasured first), config order. */
function before(a: PeerState, b: PeerState): boolean {
  return (a.inFlight - b.inFlight || (a.failedAt ?? 0) - (b.failedAt ?? 0) || (a.openMs ?? -1) - (b.openMs ?? -1) || a.index - b.index) < 0;
}

/** A request written to the stream whose answer has not arrived yet. */
interface Pending {
  kind: ExchangeKind;
  started: number;
  sent: number;
  timer: NodeJS.Timeout;
  resolve: (frame: ExchangeResponse) => void;
  reject: (error: Error) => void;
}

/**
 * One session over one bidirectional stream, whichever side the peer serves. Requests may be
 * pipelined: each request frame gets exactly one answer frame and the serving side answers in
 * order, so answers are matched to requests first in, first out. Close does not wait for its answer.
 */
abstract class GrpcSession {
  /** Requests written and not answered yet, oldest first. */
  private readonly pending: Pending[] = [];
  protected failure?: LavidaError;
  /** Exchanges answered and their payload bytes, for the session's span. */
  exchanges = 0;
  bytesSent = 0;
  bytesReceived = 0;
  private ended = false;
  private closed = false;
  /** Writes in order: a write that waits for 'drain' holds back the ones after it. */
  private writing: Promise<void> = Promise.resolve();

  protected constructor(
    protected readonly call: Exchange,
    readonly peer: string,
    protected readonly options: SessionOptions,
    private readonly release: () => void,
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
      if (frame) this.answer(frame);
    });
    call.on('error', (error: ServiceError) => this.fail(fromServiceError(error, peer)));
    call.on('end', () => {
      this.ended = true;
      this.fail(new PeerUnavailableError(`peer ${peer} ended the session`));
    });
    // The call is over however it ended (closed, canceled, failed): the session no longer counts as in flight.
    call.on('status', release);
  }

  /**
   * Starts the call for a session: a client span per session (a child of the running stage's
   * span) whose trace context and the job id travel in the call's metadata to the serving side,
   * and the abort signal wired to cancel it.
   */
  protected static start<L extends GrpcSession>(
    client: Client,
    address: string,
    sessionId: string,
    release: () => void,
    signal: AbortSignal | undefined,
    make: (call: Exchange, release: () => void) => L,
  ): L {
    const metadata = new Metadata();
    const span = clientSession(metadata, address, sessionId);
    const call = (client as unknown as { exchange: (metadata: Metadata) => Exchange }).exchange(metadata);
    call.on('status', (status: { code: number; details: string }) => {
      span.setAttributes({
        'rpc.grpc.status_code': status.code,
        'lavida.exchanges': link.exchanges,
        'lavida.bytes_sent': link.bytesSent,
        'lavida.bytes_received': link.bytesReceived,
      });
      // CANCELLED (1) is how a session that failed or was aborted on this side ends.
      if (status.code !== 0) span.setStatus({ code: SpanStatusCode.ERROR, message: link.failure?.message ?? status.details });
      span.end();
      const outcome = status.code === 0 ? 'closed' : link.failure instanceof CanceledError ? 'canceled' : 'failed';
      exchangeSessions.inc({ side: 'client', outcome });
    });
    const onAbort = () => {
      link.fail(new CanceledError('canceled'));
      call.cancel();
    };
    const link = make(call, () => {
      signal?.removeEventListener('abort', onAbort);
      release();
    });
    signal?.addEventListener('abort', onAbort);
    return link;
  }

  /** Writes the open frame (and what goes right behind it) and waits for `opened`; a failure cancels the call. */
  protected async opening(open: ExchangeRequest, tensors: Parameters<typeof chunksOf>[0], behind: () => void): Promise<void> {
    try {
      const opened = this.request('open', [open, ...this.chunkFrames(tensors)]);
      behind();
      const answer = await opened;
      if (answer.frame.case !== 'opened') throw new PeerProtocolError(`peer ${this.peer} answered open with ${answer.frame.case}`);
    } catch (error) {
      this.call.cancel();
      throw error;
    }
  }

  /**
   * Ends the session without waiting: the close frame and the end of the stream are written, the
   * serving side's answer is awaited in the background (a late or missing one cancels the call).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.failure || this.ended) {
        this.call.cancel();
        return;
      }
      const closing = this.request('close', [create(ExchangeRequestSchema, { frame: { case: 'close', value: { reason: 'done' } } })]);
      void this.writing.then(() => this.call.end());
      closing.catch(() => this.call.cancel());
    } finally {
      // Closed as far as the caller is concerned, even before the call's status arrives.
      this.release();
    }
  }

  protected chunkFrames(encoded: Parameters<typeof chunksOf>[0]): ExchangeRequest[] {
    return chunksOf(encoded).map((value) => create(ExchangeRequestSchema, { frame: { case: 'chunk', value } }));
  }

  /** Writes a request's frames (after any earlier request's) and resolves with its answer, within the deadline. */
  protected request(kind: ExchangeKind, frames: ExchangeRequest[]): Promise<ExchangeResponse> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<ExchangeResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        const error = new PeerUnavailableError(`peer ${this.peer} did not answer ${kind} within ${this.options.timeoutMs} ms`);
        this.fail(error);
        this.call.cancel();
      }, this.options.timeoutMs);
      this.pending.push({
        kind,
        started: performance.now(),
        sent: frames.reduce((sum, f) => sum + frameBytes(f), 0),
        timer,
        resolve,
        reject,
      });
      const write = this.writing.then(() => writeAll(this.call, frames));
      this.writing = write.catch((error: unknown) => {
        this.fail(new PeerUnavailableError(`peer ${this.peer}: ${(error as Error).message}`));
      });
    });
  }

  /** A complete answer frame: the oldest pending request's. */
  private answer(frame: ExchangeResponse): void {
    const request = this.pending.shift();
    if (!request) {
      this.fail(new PeerProtocolError(`peer ${this.peer} sent ${frame.frame.case ?? 'an empty frame'} that answers no request`));
      this.call.cancel();
      return;
    }
    clearTimeout(request.timer);
    const ms = performance.now() - request.started;
    const received = frameBytes(frame);
    this.exchanges++;
    this.bytesSent += request.sent;
    this.bytesReceived += received;
    recordExchange('client', request.kind, ms, request.sent, received);
    this.options.onExchange?.(request.kind, ms, request.sent + received);
    request.resolve(frame);
  }

  protected fail(error: LavidaError): void {
    this.failure ??= error;
    for (const request of this.pending.splice(0)) {
      clearTimeout(request.timer);
      request.reject(this.failure);
    }
  }
}

/**
 * A session with a text side (serve_side SIDE_TEXT): open and the first step travel together (one
 * round trip).
 */
class GrpcLink extends GrpcSession implements JointLink {
  /** Layer 0's projections, from the first step (asked for with open). */
  private first?: Promise<Projections>;
  /** The text side's last layer: its projections come without q (no partial of it is needed). */
  private readonly stopAfterLayer: number;
  /** Zeros in place of the last layer's q, float32 [rows, heads, tokens, head_dim] (its shape is k's). */
  private zeroQ?: Tensor;
  /**
   * The text side is another process, working while this one does, on a partial it has whole: one
   * that fits the serving side's HTTP/2 receive window (grpc-js servers keep the default 64 KiB,
   * less framing), whose rest would otherwise wait for a WINDOW_UPDATE this process reads only
   * after its own work.
   */
  readonly concurrentPartialBytes = 60 * 1024;

  private constructor(call: Exchange, peer: string, options: SessionOptions, release: () => void, stopAfterLayer: number) {
    super(call, peer, options, release);
    this.stopAfterLayer = stopAfterLayer;
  }

  static async open(
    client: Client,
    address: string,
    request: OpenRequest,
    options: SessionOptions,
    release: () => void,
    signal?: AbortSignal,
  ): Promise<GrpcLink> {
    const link = GrpcSession.start(
      client,
      address,
      request.sessionId,
      release,
      signal,
      (call, release) => new GrpcLink(call, address, options, release, request.stopAfterLayer),
    );
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
    await link.opening(open, prefix ? [ids, positions, prefix] : [ids, positions], () => {
      // Layer 0's projections depend on the session's fixed text only: asked for right behind open,
      // so that they arrive in the same round trip.
      const begin = create(ExchangeRequestSchema, { frame: { case: 'beginStep', value: { step: 0 } } });
      link.first = link.request('step', [begin]).then((frame) => link.projections(frame, 0, 0));
      link.first.catch(() => undefined); // a failed open reports the failure; beginStep reports it again
    });
    return link;
  }

  /**
   * Layer 0's projections: the same every step (the serving side begins a later step when its
   * layer-0 partial arrives), fetched once with open.
   */
  async beginStep(_step: number): Promise<Projections> {
    if (this.failure) throw this.failure;
    return this.first!;
  }

  async partial(step: number, layer: number, partial: PartialAttention): Promise<Projections> {
    const out = encodeTensor(partial.out, this.options.chunkBytes);
    const lse = encodeTensor(partial.lse, this.options.chunkBytes);
    const frame = create(ExchangeRequestSchema, {
      frame: { case: 'partial', value: { step, layer, out: out.tensor, lse: lse.tensor } },
    });
    return this.projections(await this.request('partial', [frame, ...this.chunkFrames([out, lse])]), step, layer + 1);
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
    // The last layer's q is left out: the driver computes no partial for it.
    if ((!p.q && layer !== this.stopAfterLayer) || !p.k || !p.v) {
      throw new PeerProtocolError(`peer ${this.peer} sent projections without q, k and v`);
    }
    const k = decodeTensor(p.k, 'k');
    const v = decodeTensor(p.v, 'v');
    return { q: p.q ? decodeTensor(p.q, 'q') : this.zeros(k), k, v };
  }

  private zeros(like: Tensor): Tensor {
    if (!this.zeroQ || this.zeroQ.dims.some((d, i) => d !== like.dims[i])) {
      this.zeroQ = new Tensor('float32', new Float32Array(like.dims.reduce((a, b) => a * b, 1)), [...like.dims]);
    }
    return this.zeroQ;
  }
}

/**
 * A session with an image side (serve_side SIDE_IMAGE), driven by this text side: open and step
 * 0's layer-0 projections travel together; the answer to a step's last layer carries the next
 * step's layer-0 partial (the image side begins that step on its own), so a step costs M-1 round
 * trips. A later step's layer 0 (begin_step: the image side holds those projections) is asked for
 * with one joint layer only, or of a peer whose step came without that partial.
 */
class GrpcImageLink extends GrpcSession implements ImageLink {
  /** The answer to step 0's layer-0 projections (sent with open). */
  private first?: Promise<PartialAttention | ImageStepResult>;

  private constructor(
    call: Exchange,
    peer: string,
    options: SessionOptions,
    release: () => void,
    private readonly stopAfterLayer: number,
  ) {
    super(call, peer, options, release);
  }

  static async open(
    client: Client,
    address: string,
    request: ImageOpenRequest,
    options: SessionOptions,
    release: () => void,
    signal?: AbortSignal,
  ): Promise<GrpcImageLink> {
    const link = GrpcSession.start(
      client,
      address,
      request.sessionId,
      release,
      signal,
      (call, release) => new GrpcImageLink(call, address, options, release, request.stopAfterLayer),
    );
    const ids = encodeTensor(request.textIds, options.chunkBytes);
    const positions = encodeTensor(request.textPositions, options.chunkBytes);
    const { seed, steps, guidance, temperature, correctionSweeps, cfgInterval } = request.sampler;
    const open = create(ExchangeRequestSchema, {
      frame: {
        case: 'open',
        value: {
          sessionId: request.sessionId,
          modelName: options.modelName,
          modelVersion: options.modelVersion,
          serveSide: Side.IMAGE,
          textIds: ids.tensor,
          textPositions: positions.tensor,
          stopAfterLayer: request.stopAfterLayer,
          chunkSize: options.chunkBytes,
          imageSampling: { seed, steps, guidance, temperature, correctionSweeps, cfgInterval: { lo: cfgInterval[0], hi: cfgInterval[1] } },
        },
      },
    });
    await link.opening(open, [ids, positions], () => {
      link.first = link.projections(0, 0, request.first);
      link.first.catch(() => undefined); // a failed open reports the failure; layer(0, 0) reports it again
    });
    return link;
  }

  async layer(step: number, layer: number, qkv: Projections): Promise<PartialAttention | ImageStepResult> {
    if (this.failure) throw this.failure;
    if (layer > 0) return this.projections(step, layer, qkv);
    if (step === 0) return this.first!;
    const begin = create(ExchangeRequestSchema, { frame: { case: 'beginStep', value: { step } } });
    return this.answerOf(await this.request('step', [begin]), step, 0);
  }

  /** Sends one layer's projections (the last one's without q: no partial of it is needed). */
  private async projections(step: number, layer: number, qkv: Projections): Promise<PartialAttention | ImageStepResult> {
    const last = layer === this.stopAfterLayer;
    const encoded = (last ? [qkv.k, qkv.v] : [qkv.q, qkv.k, qkv.v]).map((t) => encodeTensor(t, this.options.chunkBytes));
    const [k, v] = encoded.slice(-2);
    const frame = create(ExchangeRequestSchema, {
      frame: { case: 'projections', value: { step, layer, q: last ? undefined : encoded[0].tensor, k: k.tensor, v: v.tensor } },
    });
    return this.answerOf(await this.request('projections', [frame, ...this.chunkFrames(encoded)]), step, layer);
  }

  /** A layer's answer: the partial before the last layer, the step's tokens for the last. */
  private answerOf(frame: ExchangeResponse, step: number, layer: number): PartialAttention | ImageStepResult {
    const f = frame.frame;
    if (layer < this.stopAfterLayer) {
      if (f.case !== 'partial')
        throw new PeerProtocolError(`peer ${this.peer} answered step ${step} layer ${layer} with ${f.case}, expected partial`);
      if (f.value.step !== step || f.value.layer !== layer) {
        throw new PeerProtocolError(
          `peer ${this.peer} sent the partial of step ${f.value.step} layer ${f.value.layer}, expected step ${step} layer ${layer}`,
        );
      }
      if (!f.value.out || !f.value.lse) throw new PeerProtocolError(`peer ${this.peer} sent a partial without out and lse`);
      return { out: decodeTensor(f.value.out, 'partial.out'), lse: decodeTensor(f.value.lse, 'partial.lse') };
    }
    if (f.case !== 'step')
      throw new PeerProtocolError(`peer ${this.peer} answered step ${step}'s last layer with ${f.case}, expected step`);
    if (f.value.step !== step) throw new PeerProtocolError(`peer ${this.peer} sent step ${f.value.step}, expected step ${step}`);
    const { steps, positions, tokens, imageTokens, pixels, nextPartial: next } = f.value;
    if (next && (next.step !== step + 1 || next.layer !== 0 || !next.out || !next.lse)) {
      throw new PeerProtocolError(
        `peer ${this.peer} sent with step ${step} the partial of step ${next.step} layer ${next.layer}${next.out && next.lse ? '' : ' without out and lse'}, expected step ${step + 1} layer 0`,
      );
    }
    return {
      step,
      steps,
      positions,
      tokens,
      ...(imageTokens.length ? { imageTokens } : {}),
      ...(pixels ? { pixels: decodeTensor(pixels, 'pixels') } : {}),
      ...(next ? { next: { out: decodeTensor(next.out!, 'next_partial.out'), lse: decodeTensor(next.lse!, 'next_partial.lse') } } : {}),
    };
  }
}

function frameBytes(frame: ExchangeRequest | ExchangeResponse): number {
  return payload(frame.frame.value);
}

/** Tensor payload bytes of a message, its nested messages' included (a step's next partial). */
function payload(value: unknown): number {
  if (!value || typeof value !== 'object') return 0;
  let bytes = 0;
  for (const field of Object.values(value as Record<string, unknown>)) {
    if (field && typeof field === 'object' && 'data' in field && field.data instanceof Uint8Array) bytes += field.data.length;
    else if (field instanceof Uint8Array) bytes += field.length;
    else if (field && typeof field === 'object' && '$typeName' in field) bytes += payload(field);
  }
  return bytes;
}
