import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { postWebhook, resolveWebhookHost, WebhookRefusedError, webhookSignature } from './webhook-client.js';

describe('webhook client', () => {
  let server: Server;
  let port = 0;
  const seen: { path: string; host: string; headers: IncomingMessage['headers']; body: string }[] = [];
  before(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        seen.push({ path: req.url!, host: req.headers.host!, headers: req.headers, body });
        if (req.url === '/redirect') res.writeHead(307, { location: '/elsewhere' }).end();
        else if (req.url === '/slow') setTimeout(() => res.writeHead(200).end(), 2000).unref();
        else res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('signs as Standard Webhooks verifies', () => {
    const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
    const timestamp = Math.floor(Date.now() / 1000);
    const body = '{"type":"job.start"}';
    const headers = {
      'webhook-id': 'msg_1',
      'webhook-timestamp': String(timestamp),
      'webhook-signature': webhookSignature(secret, 'msg_1', timestamp, body),
    };
    assert.deepEqual(new Webhook(secret).verify(body, headers), { type: 'job.start' });
    assert.throws(() => new Webhook(secret).verify(`${body} `, headers), /No matching signature/);
  });

  it('refuses hosts that are or resolve to forbidden addresses, unless private ones are allowed', async () => {
    const resolver = (addresses: string[]) => async () => addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
    const resolve = (url: string, allow: boolean, addresses: string[]) => resolveWebhookHost(new URL(url), allow, resolver(addresses));
    await assert.rejects(resolve('http://127.0.0.1/', false, ['127.0.0.1']), WebhookRefusedError);
    await assert.rejects(resolve('http://localhost/', false, ['127.0.0.1']), /host localhost is a loopback address/);
    await assert.rejects(
      resolve('http://hooks.example/', false, ['93.184.216.34', '10.0.0.7']),
      /resolves to 10\.0\.0\.7, a private address/,
    );
    await assert.rejects(resolve('http://hooks.example/', true, ['169.254.169.254']), /link-local/);
    await assert.rejects(resolve('http://hooks.example/', true, ['::ffff:169.254.169.254']), /link-local/);
    await assert.rejects(resolve('http://[fe80::1]/', true, ['fe80::1']), /link-local/);
    await assert.rejects(resolve('http://0.0.0.0/', true, ['0.0.0.0']), /unspecified/);
    assert.equal((await resolve('http://hooks.example/', false, ['93.184.216.34']))[0].address, '93.184.216.34');
    assert.equal((await resolve('http://hooks.example/', true, ['10.0.0.7']))[0].address, '10.0.0.7');
    assert.deepEqual(
      (await resolve('http://localhost/', true, ['::1', '127.0.0.1'])).map((a) => a.address),
      ['::1', '127.0.0.1'],
    );
  });

  it('connects to the checked address only (the name is not resolved again), keeping the Host header', async () => {
    const status = await postWebhook(new URL(`http://hooks.invalid:${port}/pinned`), [{ address: '127.0.0.1', family: 4 }], {}, '{}', 2000);
    assert.equal(status, 204);
    const request = seen.find((r) => r.path === '/pinned')!;
    assert.equal(request.host, `hooks.invalid:${port}`);
    assert.equal(request.body, '{}');
    assert.equal(request.headers['content-length'], '2');
  });

  it('does not follow redirects, and gives up after the timeout', async () => {
    const address = [{ address: '127.0.0.1', family: 4 }];
    assert.equal(await postWebhook(new URL(`http://127.0.0.1:${port}/redirect`), address, {}, '{}', 2000), 307);
    assert.equal(seen.filter((r) => r.path === '/elsewhere').length, 0);
    const started = Date.now();
    await assert.rejects(postWebhook(new URL(`http://127.0.0.1:${port}/slow`), address, {}, '{}', 200), /no answer within 200 ms/);
    assert.ok(Date.now() - started < 1500);
  });
});
