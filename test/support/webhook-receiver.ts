import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

/** A webhook's body, as the system sends it. */
export interface WebhookPayload {
  type: string;
  timestamp: string;
  data: {
    id: string;
    status: string;
    task: string;
    stage?: { name: string; round?: number; job_id: string; image?: string; verdict?: string };
    output?: { image?: string; tokens?: number[]; model?: string };
    error?: string;
  };
}

/** One verified delivery. */
export interface WebhookDelivery {
  path: string;
  id: string;
  headers: IncomingHttpHeaders;
  body: string;
  payload: WebhookPayload;
}

/**
 * A webhook receiver that verifies every request with the standardwebhooks package (not our own code):
 * verified deliveries in `deliveries`, the others in `rejected`. It answers per path from `script` (a
 * list of statuses, then 200).
 */
export class WebhookReceiver {
  readonly deliveries: WebhookDelivery[] = [];
  readonly rejected: string[] = [];
  readonly script = new Map<string, number[]>();
  private readonly verifier: Webhook;
  private server?: Server;
  url = '';

  constructor(secret: string) {
    this.verifier = new Webhook(secret);
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        try {
          assert.equal(req.method, 'POST');
          assert.equal(req.headers['content-type'], 'application/json');
          const payload = this.verifier.verify(body, req.headers as Record<string, string>) as WebhookPayload;
          this.deliveries.push({ path: req.url!, id: String(req.headers['webhook-id']), headers: req.headers, body, payload });
        } catch (error) {
          this.rejected.push(`${req.url}: ${(error as Error).message}`);
        }
        res.writeHead(this.script.get(req.url!)?.shift() ?? 200).end();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** The verified deliveries of one job. */
  for(jobId: string): WebhookDelivery[] {
    return this.deliveries.filter((d) => d.payload.data.id === jobId);
  }

  /** The verified deliveries of one job, grouped by webhook-id. */
  byId(jobId: string): Map<string, WebhookDelivery[]> {
    const out = new Map<string, WebhookDelivery[]>();
    for (const d of this.for(jobId)) out.set(d.id, [...(out.get(d.id) ?? []), d]);
    return out;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => (this.server ? this.server.close(resolve) : resolve(undefined)));
  }
}
