import { createHmac } from 'node:crypto';
import type { LookupAddress } from 'node:dns';
import { lookup } from 'node:dns/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import { addressAllowed, addressKind, literalHostKind } from '@lavida/contracts';

/** A webhook host this server must not connect to (SSRF rules); retrying cannot help. */
export class WebhookRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = this.constructor.name;
  }
}

/**
 * The Standard Webhooks signature: `v1,` and the base64 HMAC-SHA256 of `<id>.<timestamp>.<body>`
 * keyed with the secret's bytes (base64 after `whsec_`).
 */
export function webhookSignature(secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

export type Resolver = (hostname: string) => Promise<LookupAddress[]>;
const systemResolver: Resolver = (hostname) => lookup(hostname, { all: true, verbatim: true });

/**
 * Resolves a webhook URL's host (every address) and checks each against the SSRF rules: loopback
 * and private addresses only when `allowPrivate`, link-local, unspecified, multicast and reserved
 * ones never. Answers the addresses to connect to (the delivery is pinned to them, so the name
 * cannot resolve elsewhere between the check and the connection), or throws WebhookRefusedError.
 */
export async function resolveWebhookHost(url: URL, allowPrivate: boolean, resolve: Resolver = systemResolver): Promise<LookupAddress[]> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const literal = literalHostKind(host);
  if (literal && !addressAllowed(literal, allowPrivate)) throw new WebhookRefusedError(`host ${host} is a ${literal} address`);
  const addresses = await resolve(host);
  if (addresses.length === 0) throw new Error(`host ${host} has no address`);
  for (const { address } of addresses) {
    const kind = addressKind(address);
    if (!addressAllowed(kind, allowPrivate)) throw new WebhookRefusedError(`host ${host} resolves to ${address}, a ${kind} address`);
  }
  return addresses;
}

/** The most of an answer's body read (and thrown away); the status is all that counts. */
const MAX_BODY_BYTES = 64 * 1024;

/**
 * POSTs a body to a URL, connecting to the given (checked) addresses only, and answers the HTTP
 * status. Redirects are not followed (a 3xx is just a status). Rejects when there is no answer
 * within `timeoutMs`.
 */
export function postWebhook(
  url: URL,
  addresses: LookupAddress[],
  headers: Record<string, string>,
  body: string,
  timeoutMs: number,
): Promise<number> {
  const pinned: LookupFunction = (_hostname, options, callback) => {
    if (options.all) callback(null, addresses);
    else callback(null, addresses[0].address, addresses[0].family);
  };
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        lookup: pinned,
        agent: false,
      },
      (res) => {
        resolve(res.statusCode ?? 0);
        let read = 0;
        res.on('data', (chunk: Buffer) => {
          read += chunk.length;
          if (read > MAX_BODY_BYTES) res.destroy();
        });
        res.on('error', () => undefined);
        res.on('end', () => req.destroy());
      },
    );
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', reject);
    req.on('close', () => clearTimeout(timer));
    req.end(body);
  });
}
