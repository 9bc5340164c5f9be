import { makeGenericClientConstructor, status, type Client, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';

/**
 * What a peer's standard health service last said of the whole server (service ''): UNKNOWN until
 * the first answer; NOT_SERVING also when it cannot be reached or its watch stream failed.
 */
export type PeerHealth = 'SERVING' | 'NOT_SERVING' | 'UNKNOWN';

/** A read-only view of one peer, for logs and metrics. */
export interface PeerSnapshot {
  readonly address: string;
  readonly health: PeerHealth;
  /** Sessions open (or opening) on this peer from this client. */
  readonly inFlight: number;
  /** The latest watch or open failure. */
  readonly lastError?: string;
  /** Opens on this peer that failed as unavailable, since start. */
  readonly openFailures: number;
  /** Moving average of the open round trip, once one succeeded. */
  readonly openMs?: number;
  /** Joint-layer exchanges (a step's first layer, each partial) this peer answered, since start. */
  readonly exchanges: number;
  /** Moving average (EWMA, 0.1) of an exchange's round trip, once one was answered. */
  readonly exchangeMs?: number;
  /** The latest exchange's round trip and when it ended (ms since the epoch). */
  readonly lastExchangeMs?: number;
  readonly lastExchangeAt?: number;
}

export interface HealthWatchOptions {
  /** First delay before re-watching after the stream ended or failed; doubles up to `maxBackoffMs`. */
  initialBackoffMs: number;
  maxBackoffMs: number;
}

export const HealthClient = makeGenericClientConstructor(healthService, 'Health');

type WatchCall = ClientReadableStream<{ status?: string }>;

/**
 * Follows grpc.health.v1.Health/Watch of one peer's overall health. The stream is re-established
 * with backoff whenever it ends or fails. A NOT_SERVING answer also ends it (and it is watched again
 * later), so that a draining peer is not held up by this stream.
 */
export class HealthWatch {
  health: PeerHealth = 'UNKNOWN';
  lastError?: string;
  /** When the health last changed (ms since the epoch). */
  changedAt = 0;
  private call?: WatchCall;
  private timer?: NodeJS.Timeout;
  private backoffMs: number;
  private stopped = false;

  constructor(
    private readonly client: Client,
    readonly address: string,
    private readonly options: HealthWatchOptions,
    private readonly onChange: (health: PeerHealth, previous: PeerHealth) => void,
  ) {
    this.backoffMs = options.initialBackoffMs;
  }

  start(): void {
    this.stopped = false;
    if (!this.call && !this.timer) this.watch();
  }

  /** Cancels the stream and any pending re-watch; nothing of it keeps the process alive. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    const call = this.call;
    this.call = undefined;
    call?.cancel();
  }

  private watch(): void {
    this.timer = undefined;
    if (this.stopped) return;
    const call = (this.client as unknown as { watch: (request: { service: string }) => WatchCall }).watch({ service: '' });
    this.call = call;
    call.on('data', (message: { status?: string }) => {
      if (this.call !== call) return;
      if (message.status === 'SERVING') {
        this.backoffMs = this.options.initialBackoffMs;
        this.set('SERVING');
      } else {
        // NOT_SERVING (stopping), UNKNOWN or SERVICE_UNKNOWN: not serving; ask again later.
        this.retry(call, 'NOT_SERVING', `health ${message.status ?? 'empty'}`);
      }
    });
    call.on('error', (error: ServiceError) => {
      if (this.call !== call) return;
      const reason = `${status[error.code] ?? error.code}: ${error.details || error.message}`;
      // A peer without the health service is reachable: its health is unknown, not bad.
      this.retry(call, error.code === status.UNIMPLEMENTED ? 'UNKNOWN' : 'NOT_SERVING', reason);
    });
    call.on('status', () => {
      // Ended without an error: the server closed the watch; watch again (health unchanged).
      if (this.call === call) this.retry(call, this.health);
    });
  }

  private retry(call: WatchCall, health: PeerHealth, error?: string): void {
    this.call = undefined;
    call.cancel();
    if (error) this.lastError = error;
    this.set(health);
    if (this.stopped) return;
    const delay = Math.min(this.backoffMs, this.options.maxBackoffMs) * (0.8 + 0.4 * Math.random());
    this.backoffMs = Math.min(this.backoffMs * 2, this.options.maxBackoffMs);
    this.timer = setTimeout(() => this.watch(), delay);
    this.timer.unref();
  }

  private set(health: PeerHealth): void {
    const previous = this.health;
    if (previous === health) return;
    this.health = health;
    this.changedAt = Date.now();
    this.onChange(health, previous);
  }
}

/** An `onHealthChange` that logs each change of a peer's health: SERVING as info, anything else as a warning with the last error. */
export function logPeerHealth(
  logger: { log(message: string, fields: object): void; warn(message: string, fields: object): void },
  message: string,
): (peer: PeerSnapshot, previous: PeerHealth) => void {
  return (peer, previous) => {
    const fields = { peer: peer.address, health: peer.health, previous, inFlight: peer.inFlight };
    if (peer.health === 'SERVING') logger.log(message, fields);
    else logger.warn(message, { ...fields, lastError: peer.lastError });
  };
}
