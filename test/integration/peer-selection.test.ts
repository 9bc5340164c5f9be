import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ModelPackage, textToImage, type TextToImageResult } from '@lavida/model';
import { GrpcJointPeer, type PeerHealth, type PeerSnapshot } from '@lavida/wire';
import { startApp, type AppProcess } from '../support/processes.js';
import { FIXTURE_MODEL } from '../support/paths.js';
import { servingAddress } from '../support/peer-client.js';
import { freePort, waitFor } from '../support/wait.js';

/** Open TCP sockets of this process (the gRPC channels; child processes talk over pipes). */
const tcpSockets = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;

describe('understanding peers chosen by health, with failover across several', () => {
  let und1: AppProcess;
  let und2: AppProcess;
  let live1: string;
  let live2: string;
  let dead: string;
  let gen: ModelPackage;
  let peer: GrpcJointPeer;
  let socketsBefore = 0;
  const changes: { address: string; health: PeerHealth; previous: PeerHealth; at: number }[] = [];

  const startUnd = (port = 0) => startApp('und-worker', { UND_GRPC_PORT: port, GRPC_HOST: '127.0.0.1' });

  before(async () => {
    und1 = startUnd();
    und2 = startUnd();
    [live1, live2, gen] = await Promise.all([
      servingAddress(und1),
      servingAddress(und2),
      ModelPackage.load(FIXTURE_MODEL, { branch: 'gen' }),
    ]);
    dead = `127.0.0.1:${await freePort()}`;
    socketsBefore = tcpSockets();
    peer = new GrpcJointPeer({
      addresses: [dead, live1, live2],
      modelName: gen.manifest.name,
      modelVersion: gen.manifest.version,
      timeoutMs: 5000,
      chunkBytes: 64 * 1024,
      maxMessageBytes: 16 << 20,
      onHealthChange: (p, previous) => changes.push({ address: p.address, health: p.health, previous, at: Date.now() }),
    });
  });
  after(async () => {
    peer?.close();
    await Promise.all([und1?.stop('SIGKILL'), und2?.stop('SIGKILL')]);
    await gen?.release();
  });

  let session = 0;
  const run = (seed: number): Promise<TextToImageResult> =>
    textToImage(gen, peer, { prompt: 'a red circle above a blue square', seed, steps: 2 }, { sessionId: `selection/${++session}` });
  const state = (address: string): PeerSnapshot => peer.peers().find((p) => p.address === address)!;
  const count = (results: TextToImageResult[], address: string) => results.filter((r) => r.peer === address).length;

  it('reports a dead address not serving, and never tries it while others serve', async () => {
    await waitFor(
      () => state(dead).health === 'NOT_SERVING' && state(live1).health === 'SERVING' && state(live2).health === 'SERVING',
      5000,
      `health of every peer: ${JSON.stringify(peer.peers())}`,
    );
    assert.match(state(dead).lastError ?? '', /UNAVAILABLE/);
    assert.ok(
      changes.some((c) => c.address === dead && c.health === 'NOT_SERVING' && c.previous === 'UNKNOWN'),
      JSON.stringify(changes),
    );

    const results: TextToImageResult[] = [];
    for (let seed = 1; seed <= 3; seed++) results.push(await run(seed));
    for (const r of results) assert.ok([live1, live2].includes(r.peer), `session went to ${r.peer}`);
    // First in the list, but known not to serve: never opened.
    assert.equal(state(dead).openFailures, 0);
    assert.equal(state(live1).openFailures + state(live2).openFailures, 0);
    assert.deepEqual(
      peer.peers().map((p) => p.inFlight),
      [0, 0, 0],
    );
  });

  it('fails over past an address whose open fails, and puts it last for a while', async () => {
    // Without health watching, the dead address is first in line and must be tried.
    const blind = new GrpcJointPeer({
      addresses: [dead, live2],
      modelName: gen.manifest.name,
      modelVersion: gen.manifest.version,
      timeoutMs: 5000,
      chunkBytes: 64 * 1024,
      maxMessageBytes: 16 << 20,
      watchHealth: false,
    });
    try {
      const options = (n: number) => ({ sessionId: `selection/blind/${n}` });
      const a = await textToImage(gen, blind, { prompt: 'a red circle', seed: 5, steps: 2 }, options(1));
      assert.equal(a.peer, live2);
      const [d] = blind.peers();
      assert.equal(d.health, 'UNKNOWN');
      assert.equal(d.openFailures, 1);
      assert.match(d.lastError ?? '', /UNAVAILABLE/);
      const b = await textToImage(gen, blind, { prompt: 'a red circle', seed: 6, steps: 2 }, options(2));
      assert.equal(b.peer, live2);
      assert.equal(blind.peers()[0].openFailures, 1, 'a recently failed address is tried last, not first');
    } finally {
      blind.close();
    }
  });

  it('spreads concurrent sessions across the healthy peers by sessions in flight', async () => {
    let most = [0, 0];
    const sampler = setInterval(() => {
      most = [Math.max(most[0], state(live1).inFlight), Math.max(most[1], state(live2).inFlight)];
    }, 5);
    try {
      const results = await Promise.all([10, 11, 12, 13].map(run));
      // All four open before any ends (nothing is awaited before the open), so the split is exact.
      assert.deepEqual([count(results, live1), count(results, live2)], [2, 2], results.map((r) => r.peer).join(', '));
    } finally {
      clearInterval(sampler);
    }
    assert.ok(most[0] >= 1 && most[1] >= 1, `in flight seen: ${most.join(', ')}`);
    assert.deepEqual(
      peer.peers().map((p) => p.inFlight),
      [0, 0, 0],
      'every session released',
    );
  });

  it('after kill -9 of one peer, new sessions go to the other without failing, and it shows not serving', async () => {
    const killedAt = Date.now();
    await und1.stop('SIGKILL');
    const results = await Promise.all([20, 21, 22].map(run));
    assert.equal(count(results, live2), 3, results.map((r) => r.peer).join(', '));
    await waitFor(() => state(live1).health === 'NOT_SERVING', 3000, `${live1} not serving: ${JSON.stringify(state(live1))}`);
    const noticed = changes.find((c) => c.address === live1 && c.health === 'NOT_SERVING' && c.at >= killedAt);
    assert.ok(noticed, JSON.stringify(changes));
    console.log(`# killed peer shown NOT_SERVING after ${noticed.at - killedAt} ms`);
    assert.equal(state(live2).health, 'SERVING');
  });

  it('a peer restarted on the same port is SERVING again and is used again', async () => {
    const restartedAt = Date.now();
    und1 = startUnd(Number(live1.split(':')[1]));
    assert.equal(await servingAddress(und1), live1);
    await waitFor(() => state(live1).health === 'SERVING', 10_000, `${live1} serving again: ${JSON.stringify(state(live1))}`);
    console.log(`# restarted peer SERVING ${Date.now() - restartedAt} ms after its start (process start included)`);
    const results = await Promise.all([30, 31].map(run));
    assert.deepEqual([count(results, live1), count(results, live2)], [1, 1], results.map((r) => r.peer).join(', '));
    const history = changes.filter((c) => c.address === live1).map((c) => c.health);
    assert.deepEqual(history, ['SERVING', 'NOT_SERVING', 'SERVING']);
  });

  it('close() cancels the health watches and closes every connection', async () => {
    assert.ok(tcpSockets() > socketsBefore, 'the watches hold connections open');
    peer.close();
    await waitFor(() => tcpSockets() <= socketsBefore, 3000, `sockets to close (${tcpSockets()} open, ${socketsBefore} before)`);
    const after = changes.length;
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(changes.length, after, 'no health watched after close');
  });
});
