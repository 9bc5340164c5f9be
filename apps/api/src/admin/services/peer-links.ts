import type { WorkerHeartbeat } from '@lavida/config';

/** A generation worker's link to one understanding peer, as its heartbeat tells it. */
export interface PeerLinkView {
  /** The generation worker. */
  gen: string;
  /** The peer's address (UND_PEERS). */
  address: string;
  /** The understanding worker serving that address, when its heartbeat names it. */
  und: string | null;
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

/**
 * Every (generation worker, understanding peer) pair with the exchange latency the generation
 * worker measured, each matched to the understanding worker whose gRPC address it names: the same
 * host and port, or the port on a worker bound to every address of the host named (or, for a
 * loopback address, of the generation worker's own host).
 */
export function peerLinks(workers: readonly WorkerHeartbeat[]): PeerLinkView[] {
  const und = workers.filter((w) => w.kind === 'und-worker' && w.grpc);
  const links: PeerLinkView[] = [];
  for (const gen of workers.filter((w) => w.kind === 'gen-worker')) {
    for (const peer of gen.peers ?? []) {
      const colon = peer.address.lastIndexOf(':');
      const host = peer.address.slice(0, colon);
      const port = Number(peer.address.slice(colon + 1));
      const target = und.find((u) => {
        if (u.grpc!.port !== port) return false;
        if (u.grpc!.host === host) return true;
        const local = LOOPBACK.has(host) ? gen.host === u.host : host === u.host;
        return local && (ANY.has(u.grpc!.host) || LOOPBACK.has(u.grpc!.host) === LOOPBACK.has(host));
      });
      links.push({
        gen: gen.id,
        address: peer.address,
        und: target?.id ?? null,
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
  return links;
}
