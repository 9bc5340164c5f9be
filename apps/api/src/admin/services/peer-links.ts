import type { WorkerHeartbeat, WorkerKind } from '@lavida/config';

type PeerWorkerKind = Extract<WorkerKind, 'und-worker' | 'gen-worker'>;

/**
 * A worker's link to one joint-attention peer, as its heartbeat tells it: a generation worker
 * driving text-to-image and editing with understanding peers (UND_PEERS), or an understanding worker
 * driving an `[exp]` answer's image with generation peers (GEN_PEERS).
 */
export interface PeerLinkView {
  /** The worker that drives the sessions. */
  from: string;
  fromKind: PeerWorkerKind;
  /** The peer's address (UND_PEERS or GEN_PEERS). */
  address: string;
  /** The worker serving that address, when its heartbeat names it. */
  to: string | null;
  toKind: PeerWorkerKind;
  health: string;
  inFlight: number;
  exchanges: number;
  /** Moving average and latest round trip of a joint-layer exchange, ms. */
  exchangeMs: number | null;
  lastExchangeMs: number | null;
  lastExchangeAt: string | null;
  openMs: number | null;
  openFailures: number;
  lastError: string | null;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);
const ANY = new Set(['0.0.0.0', '::', '[::]']);
/** Who serves the peers each kind of worker drives. */
const SERVED_BY: Record<PeerWorkerKind, PeerWorkerKind> = { 'gen-worker': 'und-worker', 'und-worker': 'gen-worker' };

/**
 * Every (driving worker, peer) pair with the exchange latency the driving worker measured, both
 * ways (generation workers' links first), each matched to the worker of the other kind whose gRPC
 * address it names: the same host and port, or the port on a worker bound to every address of the
 * host named (or, for a loopback address, of the driving worker's own host).
 */
export function peerLinks(workers: readonly WorkerHeartbeat[]): PeerLinkView[] {
  const links: PeerLinkView[] = [];
  for (const fromKind of ['gen-worker', 'und-worker'] as const) {
    const toKind = SERVED_BY[fromKind];
    const servers = workers.filter((w) => w.kind === toKind && w.grpc);
    for (const from of workers.filter((w) => w.kind === fromKind)) {
      for (const peer of from.peers ?? []) {
        const colon = peer.address.lastIndexOf(':');
        const host = peer.address.slice(0, colon);
        const port = Number(peer.address.slice(colon + 1));
        const target = servers.find((s) => {
          if (s.grpc!.port !== port) return false;
          if (s.grpc!.host === host) return true;
          const local = LOOPBACK.has(host) ? from.host === s.host : host === s.host;
          return local && (ANY.has(s.grpc!.host) || LOOPBACK.has(s.grpc!.host) === LOOPBACK.has(host));
        });
        links.push({
          from: from.id,
          fromKind,
          address: peer.address,
          to: target?.id ?? null,
          toKind,
          health: peer.health,
          inFlight: peer.inFlight,
          exchanges: peer.exchanges ?? 0,
          exchangeMs: peer.exchangeMs ?? null,
          lastExchangeMs: peer.lastExchangeMs ?? null,
          lastExchangeAt: peer.lastExchangeAt ?? null,
          openMs: peer.openMs ?? null,
          openFailures: peer.openFailures,
          lastError: peer.lastError ?? null,
        });
      }
    }
  }
  return links;
}
