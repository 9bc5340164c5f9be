import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { WorkerHeartbeat } from '@lavida/config';
import { peerLinks } from './peer-links.js';

const beat = (fields: Partial<WorkerHeartbeat> & Pick<WorkerHeartbeat, 'kind' | 'id'>): WorkerHeartbeat => ({
  host: 'box',
  pid: 1,
  health: 'ok',
  current: [],
  processed: 0,
  failed: 0,
  startedAt: '',
  lastSeen: '',
  ...fields,
});

describe('peerLinks', () => {
  it('matches each peer address to the understanding worker serving it, with the measured latency', () => {
    const links = peerLinks([
      beat({ kind: 'und-worker', id: 'und-a', grpc: { host: '0.0.0.0', port: 50051 } }),
      beat({ kind: 'und-worker', id: 'und-b', grpc: { host: '127.0.0.1', port: 50061 } }),
      beat({
        kind: 'gen-worker',
        id: 'gen-1',
        peers: [
          {
            address: '127.0.0.1:50051',
            health: 'SERVING',
            inFlight: 1,
            openFailures: 0,
            exchanges: 40,
            exchangeMs: 2.5,
            lastExchangeMs: 3,
          },
          { address: '127.0.0.1:50061', health: 'SERVING', inFlight: 0, openFailures: 0, exchanges: 0 },
          { address: 'elsewhere:50051', health: 'NOT_SERVING', inFlight: 0, openFailures: 2, lastError: 'UNAVAILABLE' },
        ],
      }),
    ]);
    assert.deepEqual(
      links.map((l) => [l.from, l.fromKind, l.address, l.to, l.toKind, l.exchanges, l.exchangeMs]),
      [
        ['gen-1', 'gen-worker', '127.0.0.1:50051', 'und-a', 'und-worker', 40, 2.5],
        ['gen-1', 'gen-worker', '127.0.0.1:50061', 'und-b', 'und-worker', 0, null],
        ['gen-1', 'gen-worker', 'elsewhere:50051', null, 'und-worker', 0, null],
      ],
    );
    assert.equal(links[2].lastError, 'UNAVAILABLE');
  });

  it('matches each und-worker’s generation peers (GEN_PEERS) to the gen-worker serving them, never to an und-worker', () => {
    const links = peerLinks([
      beat({ kind: 'gen-worker', id: 'gen-a', host: 'gpu-1', grpc: { host: '0.0.0.0', port: 50052 } }),
      beat({ kind: 'gen-worker', id: 'gen-b', host: 'gpu-2', grpc: { host: '0.0.0.0', port: 50052 } }),
      // An und-worker on the same port and host as gen-a: the address is a gen peer, so it is not the match.
      beat({ kind: 'und-worker', id: 'und-x', host: 'gpu-1', grpc: { host: '0.0.0.0', port: 50052 } }),
      beat({
        kind: 'und-worker',
        id: 'und-1',
        host: 'gpu-1',
        peers: [
          {
            address: '127.0.0.1:50052',
            health: 'SERVING',
            inFlight: 1,
            openFailures: 0,
            exchanges: 16,
            exchangeMs: 4.25,
            lastExchangeMs: 4,
          },
          { address: 'gpu-2:50052', health: 'SERVING', inFlight: 0, openFailures: 0, exchanges: 0 },
          { address: 'gen-worker-peer:50052', health: 'NOT_SERVING', inFlight: 0, openFailures: 1, lastError: 'UNAVAILABLE: tls' },
        ],
      }),
      beat({
        kind: 'gen-worker',
        id: 'gen-c',
        host: 'gpu-3',
        peers: [{ address: 'gpu-1:50052', health: 'SERVING', inFlight: 0, openFailures: 0, exchanges: 2 }],
      }),
    ]);
    assert.deepEqual(
      links.map((l) => [l.from, l.fromKind, l.address, l.to, l.toKind, l.exchanges, l.exchangeMs]),
      [
        // A gen-worker's und peer on gpu-1:50052 is the und-worker there, not gen-a.
        ['gen-c', 'gen-worker', 'gpu-1:50052', 'und-x', 'und-worker', 2, null],
        ['und-1', 'und-worker', '127.0.0.1:50052', 'gen-a', 'gen-worker', 16, 4.25],
        ['und-1', 'und-worker', 'gpu-2:50052', 'gen-b', 'gen-worker', 0, null],
        ['und-1', 'und-worker', 'gen-worker-peer:50052', null, 'gen-worker', 0, null],
      ],
    );
    assert.equal(links[3].lastError, 'UNAVAILABLE: tls');
  });
});
