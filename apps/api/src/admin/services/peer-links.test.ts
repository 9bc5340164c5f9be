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
      links.map((l) => [l.gen, l.address, l.und, l.exchanges, l.exchangeMs]),
      [
        ['gen-1', '127.0.0.1:50051', 'und-a', 40, 2.5],
        ['gen-1', '127.0.0.1:50061', 'und-b', 0, null],
        ['gen-1', 'elsewhere:50051', null, 0, null],
      ],
    );
    assert.equal(links[2].lastError, 'UNAVAILABLE');
  });
});
