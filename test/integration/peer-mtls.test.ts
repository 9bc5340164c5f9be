import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, makeGenericClientConstructor, status, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { PeerUnavailableError } from '@lavida/contracts';
import { ModelPackage, textToImage, type Manifest } from '@lavida/model';
import { GrpcJointPeer, peerChannelCredentials, type PeerTls } from '@lavida/wire';
import { freshPrefix, startRedis, type TestRedis } from '../support/redis.js';
import { TestSystem } from '../support/system.js';
import { postJob, waitForJob } from '../support/http.js';
import { startApp } from '../support/processes.js';
import { FIXTURE_MODEL } from '../support/paths.js';

const manifest = JSON.parse(readFileSync(join(FIXTURE_MODEL, 'manifest.json'), 'utf8')) as Manifest;
const Health = makeGenericClientConstructor(healthService, 'Health');

/**
 * A CA and a peer certificate (server and client use) for 127.0.0.1 and und-worker-peer, made with
 * the openssl CLI; and a second, unrelated CA with a certificate of its own, that peers must refuse.
 */
function makeCertificates(dir: string): void {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  writeFileSync(
    join(dir, 'peer.ext'),
    'subjectAltName=DNS:und-worker-peer,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n',
  );
  for (const ca of ['ca', 'rogue-ca']) {
    openssl('req', '-x509', ...ec, '-keyout', `${ca}.key`, '-out', `${ca}.crt`, '-days', '2', '-subj', `/CN=${ca}`);
  }
  for (const [name, ca] of [
    ['peer', 'ca'],
    ['rogue', 'rogue-ca'],
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
      'peer.ext',
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
 */
describe('peer links with mutual TLS (certificates made with openssl)', () => {
  const prefix = freshPrefix();
  let dir: string;
  let redis: TestRedis;
  let system: TestSystem;
  let tls: PeerTls;
  let address: string;

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
    system = await new TestSystem({
      redisUrl: redis.url,
      prefix,
      // Every app gets them; the workers use them (the api and the orchestrator have no peer links).
      env: {
        GRPC_TLS_CA: join(dir, 'ca.crt'),
        GRPC_TLS_CERT: join(dir, 'peer.crt'),
        GRPC_TLS_KEY: join(dir, 'peer.key'),
        GRPC_HEALTH_PORT: 0,
      },
    }).start();
    address = `127.0.0.1:${system.undPort}`;
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
