import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { addressAllowed, addressKind, CreateJobSchema, literalHostKind, webhookId } from './index.js';

describe('webhook address rules (SSRF)', () => {
  it('classifies IPv4 and IPv6 addresses, mapped and NAT64 ones as their IPv4 address', () => {
    const cases: [string, string][] = [
      ['8.8.8.8', 'public'],
      ['93.184.216.34', 'public'],
      ['127.0.0.1', 'loopback'],
      ['127.255.0.9', 'loopback'],
      ['10.1.2.3', 'private'],
      ['172.16.0.1', 'private'],
      ['172.31.255.255', 'private'],
      ['172.32.0.1', 'public'],
      ['192.168.1.1', 'private'],
      ['100.64.0.1', 'private'],
      ['169.254.169.254', 'link-local'],
      ['0.0.0.0', 'unspecified'],
      ['224.0.0.1', 'multicast'],
      ['255.255.255.255', 'reserved'],
      ['::', 'unspecified'],
      ['::1', 'loopback'],
      ['[::1]', 'loopback'],
      ['fc00::1', 'private'],
      ['fd12:3456::1', 'private'],
      ['fe80::1%eth0', 'link-local'],
      ['febf::1', 'link-local'],
      ['ff02::1', 'multicast'],
      ['::ffff:127.0.0.1', 'loopback'],
      ['::ffff:7f00:1', 'loopback'],
      ['::ffff:a9fe:a9fe', 'link-local'],
      ['::ffff:8.8.8.8', 'public'],
      ['64:ff9b::10.0.0.1', 'private'],
      ['2606:4700:4700::1111', 'public'],
    ];
    for (const [ip, kind] of cases) assert.equal(addressKind(ip), kind, ip);
    assert.throws(() => addressKind('example.com'), /not an IP address/);
  });

  it('allows public addresses; private and loopback ones only when allowed; link-local, unspecified, multicast never', () => {
    assert.equal(addressAllowed('public', false), true);
    for (const kind of ['loopback', 'private'] as const) {
      assert.equal(addressAllowed(kind, false), false, kind);
      assert.equal(addressAllowed(kind, true), true, kind);
    }
    for (const kind of ['link-local', 'unspecified', 'multicast', 'reserved'] as const)
      assert.equal(addressAllowed(kind, true), false, kind);
  });

  it('knows literal hosts and localhost without resolving; other names are left to resolution', () => {
    assert.equal(literalHostKind('localhost'), 'loopback');
    assert.equal(literalHostKind('LOCALHOST.'), 'loopback');
    assert.equal(literalHostKind('api.localhost'), 'loopback');
    assert.equal(literalHostKind('[::1]'), 'loopback');
    assert.equal(literalHostKind(new URL('http://2130706433/').hostname), 'loopback'); // the URL parser normalises 127.0.0.1
    assert.equal(literalHostKind(new URL('http://[::ffff:127.0.0.1]/').hostname), 'loopback');
    assert.equal(literalHostKind('example.com'), undefined);
    assert.equal(literalHostKind('localhost.example.com'), undefined);
  });
});

describe('webhook request fields', () => {
  const base = { task: 'text-to-image', input: { prompt: 'a circle' } };
  const field = (body: object) => {
    const result = CreateJobSchema.safeParse(body);
    return result.success ? undefined : result.error.issues[0].path.join('.');
  };

  it('accepts an absolute http(s) URL and a filter on every task', () => {
    assert.equal(field({ ...base, webhook: 'https://example.com/hook?x=1', webhook_events_filter: ['completed'] }), undefined);
    assert.equal(field({ task: 'understand', input: { image: 'x', question: 'q' }, webhook: 'http://example.com' }), undefined);
    assert.equal(field({ task: 'edit', input: { image: 'x', instruction: 'i' }, webhook: 'http://example.com' }), undefined);
    assert.equal(field({ task: 'ground', input: { image: 'x', refs: ['r'] }, webhook: 'http://example.com' }), undefined);
  });

  it('names the field of a bad URL or filter', () => {
    assert.equal(field({ ...base, webhook: 'ftp://example.com/hook' }), 'webhook');
    assert.equal(field({ ...base, webhook: '/relative' }), 'webhook');
    assert.equal(field({ ...base, webhook: 'https://user:pw@example.com/' }), 'webhook');
    assert.equal(field({ ...base, webhook: `https://example.com/${'a'.repeat(2048)}` }), 'webhook');
    assert.equal(field({ ...base, webhook: 42 }), 'webhook');
    assert.equal(field({ ...base, webhook: 'https://example.com', webhook_events_filter: ['done'] }), 'webhook_events_filter.0');
    assert.equal(field({ ...base, webhook: 'https://example.com', webhook_events_filter: [] }), 'webhook_events_filter');
  });

  it('webhook ids are fixed by the job, the event and the stage job', () => {
    const id = '8c1f0a52-0000-4000-8000-000000000000';
    assert.equal(webhookId(id, 'start'), `msg_${id}_start`);
    assert.equal(webhookId(id, 'stage', `${id}-generate-2`), `msg_${id}_stage_generate-2`);
    assert.equal(webhookId(id, 'completed'), `msg_${id}_completed`);
  });
});
