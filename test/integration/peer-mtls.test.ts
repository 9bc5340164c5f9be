import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, makeGenericClientConstructor, status, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { loadConfig, peerTlsFiles } from '@lavida/config';
import { PeerUnavailableError } from '@lavida/contracts';
import { ModelPackage, textToImage, textToImageFromText, type Manifest } from '@lavida/model';
import { GrpcImagePeer, GrpcJointPeer, peerChannelCredentials, peerTlsChannelOptions, type PeerTls } from '@lavida/wire';
import { freshPrefix, startRedis, type TestRedis } from '../support/redis.js';
import { TestSystem } from '../support/system.js';
import { postJob, waitForJob } from '../support/http.js';
import { startApp } from '../support/processes.js';
import { FIXTURE_MODEL } from '../support/paths.js';
import { waitFor } from '../support/wait.js';

const manifest = JSON.parse(readFileSync(join(FIXTURE_MODEL, 'manifest.json'), 'utf8')) as Manifest;
const Health = makeGenericClientConstructor(healthService, 'Health');

/**
 * A CA and a peer certificate (server and client use) for 127.0.0.1 and und-worker-peer, made with
 * the openssl CLI; the gen-worker's own certificate of that CA, naming gen-worker-peer only (no
 * address: an und-worker dialling 127.0.0.1 must check it against GRPC_TLS_GEN_SERVER_NAME); and a
 * second, unrelated CA with a certificate of its own, that peers must refuse.
 */
function makeCertificates(dir: string): void {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const usage = 'extendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n';
  writeFileSync(join(dir, 'peer.ext'), `subjectAltName=DNS:und-worker-peer,IP:127.0.0.1\n${usage}`);
  writeFileSync(join(dir, 'gen.ext'), `subjectAltName=DNS:gen-worker-peer\n${usage}`);
  for (const ca of ['ca', 'rogue-ca']) {
    openssl('req', '-x509', ...ec, '-keyout', `${ca}.key`, '-out', `${ca}.crt`, '-days', '2', '-subj', `/CN=${ca}`);
  }
  for (const [name, ca, ext] of [
    ['peer', 'ca', 'peer.ext'],
    ['gen', 'ca', 'gen.ext'],
    ['rogue', 'rogue-ca', 'peer.ext'],
  ]) {
    openssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${ca}.crt`,
      '-CAkey',
      `${ca}.key`,
      '-CAcreateserial',
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      '-extfile',
      ext,
    );
  }
}

/** grpc.health.v1 Check with these credentials: the status, or the gRPC error. */
function check(address: string, creds: ChannelCredentials, service = ''): Promise<string> {
  const client = new Health(address, creds);
  return new Promise((resolve, reject) => {
    (client as unknown as { check: (r: unknown, o: unknown, cb: (e: ServiceError | null, r: { status: string }) => void) => void }).check(
      { service },
      { deadline: Date.now() + 5000 },
      (error, response) => {
        client.close();
        if (error) reject(error);
        else resolve(response.status);
      },
    );
  });
}

/**
 * Mutual TLS on the peer links: with GRPC_TLS_CA/CERT/KEY the und-worker serves only clients that
 * present a certificate of the CA, the gen-worker presents its own and checks the und-worker's; a
 * real pipeline job runs its joint-attention exchanges over TLS between the two worker processes.
 * The other direction too: the und-worker dials the gen-worker (an `[exp]` image), checking the
 * gen-worker's certificate against GRPC_TLS_GEN_SERVER_NAME while GRPC_TLS_SERVER_NAME names the
 * und-workers.
 */
describe('peer links with mutual TLS (certificates made with openssl)', () => {
  const prefix = freshPrefix();
  let dir: string;
  let redis: TestRedis;
  let system: TestSystem;
  let tls: PeerTls;
  let address: string;
  let genAddress: string;
  /** The workers' TLS settings (every app gets them; the gen-worker presents its own certificate). */
  let tlsEnv: Record<string, string>;

  before(async () => {
    assert.equal(
      spawnSync('openssl', ['version']).status,
      0,
      'this test makes its certificates with the openssl CLI (apt-get install openssl)',
    );
    dir = mkdtempSync(join(tmpdir(), 'lavida-mtls-'));
    makeCertificates(dir);
    tls = { ca: readFileSync(join(dir, 'ca.crt')), cert: readFileSync(join(dir, 'peer.crt')), key: readFileSync(join(dir, 'peer.key')) };
    redis = await startRedis();
    tlsEnv = {
      GRPC_TLS_CA: join(dir, 'ca.crt'),
      GRPC_TLS_CERT: join(dir, 'peer.crt'),
      GRPC_TLS_KEY: join(dir, 'peer.key'),
      // Per direction: the gen-worker checks the und-worker's certificate against this name…
      GRPC_TLS_SERVER_NAME: 'und-worker-peer',
      // …and the und-worker the gen-worker's against this one (gen.crt names nothing else).
      GRPC_TLS_GEN_SERVER_NAME: 'gen-worker-peer',
    };
    system = await new TestSystem({
      redisUrl: redis.url,
      prefix,
      // Every app gets them; the workers use them (the api and the orchestrator have no peer links).
      env: { ...tlsEnv, GRPC_HEALTH_PORT: 0 },
      genEnv: { GRPC_TLS_CERT: join(dir, 'gen.crt'), GRPC_TLS_KEY: join(dir, 'gen.key') },
    }).start();
    address = `127.0.0.1:${system.undPort}`;
    genAddress = `127.0.0.1:${system.genPort}`;
  });
  after(async () => {
    await system?.stop();
    await redis?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('runs a text-to-image job whose joint-attention exchanges go over TLS between the worker processes', async () => {
    const serving = await system.und.waitForLog('serving');
    assert.equal(serving.tls, true, 'the und-worker serves with TLS');
    assert.equal((await system.gen.waitForLog('serving')).tls, true, 'the gen-worker too');
    const created = await postJob(system.apiUrl, { task: 'text-to-image', input: { prompt: 'a red circle', seed: 3, steps: 4 } });
    assert.equal(created.status, 202, JSON.stringify(created.json));
    const done = await waitForJob(system.apiUrl, String(created.json.id), 30_000);
    assert.equal(done.status, 'succeeded', `${JSON.stringify(done)}\n${system.dump()}`);
    const session = system.und.lines.find((l) => l.msg === 'session ended' && l.jobId === created.json.id);
    assert.equal(session?.outcome, 'closed', 'the und-worker served the session');
    assert.equal(session?.steps, 4);
  });

  it('a client with a certificate of the CA exchanges with the und-worker', async () => {
    const gen = await ModelPackage.load(FIXTURE_MODEL, { branch: 'gen' });
    const peer = new GrpcJointPeer({
      addresses: [address],
      modelName: manifest.name,
      modelVersion: manifest.version,
      timeoutMs: 10_000,
      chunkBytes: 1 << 20,
      maxMessageBytes: 16 << 20,
      credentials: peerChannelCredentials(tls),
      watchHealth: false,
    });
    try {
      const result = await textToImage(gen, peer, { prompt: 'a blue square', seed: 1, steps: 2 }, { sessionId: 'mtls-test/1' });
      assert.equal(result.steps, 2);
      assert.equal(result.peer, address);
    } finally {
      peer.close();
      await gen.release();
    }
    assert.equal(await check(address, peerChannelCredentials(tls)), 'SERVING');
  });

  it('refuses a client without a client certificate (the handshake fails)', async () => {
    const noCert = credentials.createSsl(tls.ca);
    await assert.rejects(check(address, noCert), (error: ServiceError) => {
      assert.equal(error.code, status.UNAVAILABLE, `${status[error.code]}: ${error.details}`);
      return true;
    });
    // The peer client reports it as an unavailable peer: the generation job would fail over, never run in plaintext.
    const peer = new GrpcJointPeer({
      addresses: [address],
      modelName: manifest.name,
      modelVersion: manifest.version,
      timeoutMs: 5000,
      chunkBytes: 1 << 20,
      maxMessageBytes: 16 << 20,
      credentials: noCert,
      watchHealth: false,
    });
    const gen = await ModelPackage.load(FIXTURE_MODEL, { branch: 'gen' });
    try {
      await assert.rejects(
        textToImage(gen, peer, { prompt: 'a blue square', seed: 1, steps: 2 }, { sessionId: 'mtls-test/2' }),
        PeerUnavailableError,
      );
    } finally {
      peer.close();
      await gen.release();
    }
  });

  it('refuses a client whose certificate another CA signed, and a plaintext client', async () => {
    const rogue = credentials.createSsl(tls.ca, readFileSync(join(dir, 'rogue.key')), readFileSync(join(dir, 'rogue.crt')));
    await assert.rejects(check(address, rogue), (error: ServiceError) => error.code === status.UNAVAILABLE);
    await assert.rejects(check(address, credentials.createInsecure()), (error: ServiceError) => error.code === status.UNAVAILABLE);
  });

  it('a client that does not trust the server certificate refuses it', async () => {
    const otherCa = credentials.createSsl(readFileSync(join(dir, 'rogue-ca.crt')), tls.key, tls.cert);
    await assert.rejects(check(address, otherCa), (error: ServiceError) => error.code === status.UNAVAILABLE);
  });

  /** An und-worker's client of the gen-workers, with the TLS files and name its configuration gives for that direction. */
  function genPeerClient(env: Record<string, string>): GrpcImagePeer {
    const config = loadConfig({ ...env, GEN_PEERS: genAddress });
    const files = peerTlsFiles(config, 'gen-peers');
    return new GrpcImagePeer({
      addresses: config.GEN_PEERS,
      modelName: manifest.name,
      modelVersion: manifest.version,
      timeoutMs: 5000,
      chunkBytes: 1 << 20,
      maxMessageBytes: 16 << 20,
      credentials: peerChannelCredentials(files),
      channelOptions: peerTlsChannelOptions(files),
      watchHealth: false,
    });
  }

  it('und→gen: the und-worker reaches the gen-worker over TLS under GRPC_TLS_GEN_SERVER_NAME, and an image is drawn that way', async () => {
    assert.equal((await system.gen.waitForLog('serving')).grpcPort, system.genPort);
    // The und-worker process's own client of its GEN_PEERS: its health watch gets through the handshake.
    const serving = await waitFor(
      () => system.und.lines.find((l) => l.msg === 'gen peer health' && l.peer === genAddress && l.health === 'SERVING'),
      20_000,
      `the und-worker to see ${genAddress} SERVING over TLS\n${system.dump()}`,
    );
    assert.equal(serving.health, 'SERVING');
    // The same configuration drives text-to-image with the gen-worker process serving the image side, over TLS.
    const config = loadConfig({ ...tlsEnv, GEN_PEERS: genAddress });
    assert.equal(peerTlsFiles(config, 'gen-peers')?.serverName, 'gen-worker-peer');
    assert.equal(peerTlsFiles(config, 'und-peers')?.serverName, 'und-worker-peer');
    assert.equal(peerTlsFiles(config, 'server')?.serverName, undefined);
    const und = await ModelPackage.load(FIXTURE_MODEL, { branch: 'und' });
    const peer = genPeerClient(tlsEnv);
    try {
      const result = await textToImageFromText(und, peer, { prompt: 'a blue square', seed: 1, steps: 2 }, { sessionId: 'mtls-und/1' });
      assert.equal(result.steps, 2);
      assert.equal(result.peer, genAddress);
    } finally {
      peer.close();
      await und.release();
    }
    const session = await waitFor(
      () => system.gen.lines.find((l) => l.msg === 'session ended' && l.sessionId === 'mtls-und/1'),
      10_000,
      'the gen-worker to end the session it served',
    );
    assert.equal(session.outcome, 'closed');
    assert.equal(session.steps, 2);
  });

  it('und→gen: refused under a wrong name: the und-workers’ name, or the dialled address when the setting is unset', async () => {
    const und = await ModelPackage.load(FIXTURE_MODEL, { branch: 'und' });
    try {
      // GRPC_TLS_SERVER_NAME alone does not apply to this direction: the dialled host (127.0.0.1) is checked, which gen.crt does not name.
      const unset = Object.fromEntries(Object.entries(tlsEnv).filter(([key]) => key !== 'GRPC_TLS_GEN_SERVER_NAME'));
      assert.equal(peerTlsFiles(loadConfig(unset), 'gen-peers')?.serverName, undefined);
      for (const [what, env] of [
        ['the dialled address', unset],
        ['the und-workers’ name', { ...tlsEnv, GRPC_TLS_GEN_SERVER_NAME: 'und-worker-peer' }],
      ] as const) {
        const peer = genPeerClient(env);
        try {
          await assert.rejects(
            textToImageFromText(und, peer, { prompt: 'a blue square', seed: 1, steps: 2 }, { sessionId: 'mtls-und/2' }),
            (error: Error) => {
              assert.ok(error instanceof PeerUnavailableError, `${what}: ${error.name}: ${error.message}`);
              assert.match(error.message, /altnames|certificate|subject/i, what);
              return true;
            },
          );
        } finally {
          peer.close();
        }
      }
    } finally {
      await und.release();
    }
    // An und-worker process configured with the wrong name sees the gen-worker as not serving, and says why.
    const wrong = startApp('und-worker', {
      ...tlsEnv,
      GRPC_TLS_GEN_SERVER_NAME: 'und-worker-peer',
      REDIS_URL: redis.url,
      QUEUE_PREFIX: freshPrefix(),
      MODEL_DIR: FIXTURE_MODEL,
      GRPC_HOST: '127.0.0.1',
      UND_GRPC_PORT: 0,
      UND_PEERS: address,
      GEN_PEERS: genAddress,
    });
    try {
      const refused = await waitFor(
        () => wrong.lines.find((l) => l.msg === 'gen peer health' && l.health === 'NOT_SERVING'),
        20_000,
        `the misconfigured und-worker to report ${genAddress} NOT_SERVING\n${wrong.output()}`,
      );
      assert.match(String(refused.lastError), /UNAVAILABLE/);
      assert.ok(!wrong.lines.some((l) => l.msg === 'gen peer health' && l.health === 'SERVING'), wrong.output());
    } finally {
      await wrong.stop('SIGKILL');
    }
  });

  it('serves health in plaintext on GRPC_HEALTH_PORT for probes: ready and alive', async () => {
    const { healthPort } = await system.und.waitForLog('serving');
    assert.ok(Number(healthPort) > 0, 'a health port was opened');
    assert.equal(await check(`127.0.0.1:${String(healthPort)}`, credentials.createInsecure()), 'SERVING');
    assert.equal(await check(`127.0.0.1:${String(healthPort)}`, credentials.createInsecure(), 'liveness'), 'SERVING');
  });

  it('refuses to start with only some of GRPC_TLS_CA, GRPC_TLS_CERT and GRPC_TLS_KEY', async () => {
    const und = startApp('und-worker', {
      UND_GRPC_PORT: 0,
      GRPC_HOST: '127.0.0.1',
      GRPC_TLS_CA: join(dir, 'ca.crt'),
      GRPC_TLS_CERT: join(dir, 'peer.crt'),
    });
    await und.waitForExit();
    assert.equal(und.exitCode, 1);
    assert.match(und.output(), /refusing to start: mutual TLS needs GRPC_TLS_CA, GRPC_TLS_CERT and GRPC_TLS_KEY: GRPC_TLS_KEY not set/);
  });
});
