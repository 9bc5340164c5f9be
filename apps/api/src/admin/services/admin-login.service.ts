import { Injectable } from '@nestjs/common';
import type { Request } from 'express';
import { AdminSessions } from '../auth/admin-session.js';
import { AdminQueueRepository } from '../repositories/admin-queue.repository.js';
import { AdminAssets } from './admin-assets.js';

/** Failed logins one address may make in a minute before it is told to wait (429). */
export const LOGIN_FAILURES_PER_MINUTE = 10;

/** The largest login body read (a key is at most 512 characters). */
const MAX_FORM_BYTES = 8 * 1024;

export type LoginResult = { ok: true; next: string } | { ok: false; status: number; html: string; retryAfter?: number };

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** Where to go after logging in: a path under /admin, else the dashboard. */
export function safeNext(next: unknown): string {
  return typeof next === 'string' && /^\/admin(?:[/?#]|$)/.test(next) && !/[\\]|\/\//.test(next) ? next : '/admin';
}

/** The login form and its submission: ADMIN_API_KEY in, a session cookie out. */
@Injectable()
export class AdminLoginService {
  constructor(
    private readonly sessions: AdminSessions,
    private readonly repo: AdminQueueRepository,
    private readonly assets: AdminAssets,
  ) {}

  /** The login page, with an error message when a login failed; 403 while the dashboard is off. */
  page(options: { next?: unknown; error?: string; status?: number }): { status: number; html: string } {
    const off = !this.sessions.enabled;
    const message = off ? 'The admin dashboard is off: set ADMIN_API_KEY (the api runs open without it).' : options.error;
    const html = this.assets
      .page('login.html')
      .body.toString('utf8')
      .replace('<!--message-->', message ? `<p class="error" role="alert" id="login-error">${escapeHtml(message)}</p>` : '')
      .replace('__NEXT__', escapeHtml(safeNext(options.next)))
      .replace('__DISABLED__', off ? 'disabled' : '');
    return { status: off ? 403 : (options.status ?? 200), html };
  }

  async submit(req: Request): Promise<LoginResult> {
    const form = await readForm(req);
    const fail = (status: number, error: string, retryAfter?: number): LoginResult => ({
      ok: false,
      ...this.page({ next: form.next, error, status }),
      ...(retryAfter ? { retryAfter } : {}),
    });
    if (!this.sessions.enabled) return fail(403, '');
    const address = req.ip ?? req.socket.remoteAddress ?? 'unknown';
    if ((await this.repo.loginFailures(address, false)) >= LOGIN_FAILURES_PER_MINUTE) {
      return fail(429, 'Too many failed logins: wait a minute.', 60);
    }
    if (!this.sessions.isAdminKey(form.key)) {
      await this.repo.loginFailures(address, true);
      return fail(401, 'Wrong key: the admin key is ADMIN_API_KEY.');
    }
    return { ok: true, next: safeNext(form.next) };
  }
}

/** The login form's fields: a urlencoded form (the page) or JSON (scripts). */
async function readForm(req: Request): Promise<{ key?: string; next?: string }> {
  const body = req.body as unknown;
  if (body && typeof body === 'object' && !Buffer.isBuffer(body)) {
    const { key, next } = body as Record<string, unknown>;
    return { ...(typeof key === 'string' ? { key } : {}), ...(typeof next === 'string' ? { next } : {}) };
  }
  if (!req.readable) return {};
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) return {};
    chunks.push(chunk);
  }
  const params = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
  return { key: params.get('key') ?? undefined, next: params.get('next') ?? undefined };
}
