import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import type { Request, Response } from 'express';
import { CONFIG, type Config } from '@lavida/config';

/** The session cookie of the admin dashboard. */
export const SESSION_COOKIE = 'lavida_admin';
/** A session lasts this long, then the admin logs in again. */
export const SESSION_SECONDS = 12 * 3600;

const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();
const equal = (a: Buffer, b: Buffer): boolean => a.length === b.length && timingSafeEqual(a, b);

/** How a request proved it is the admin: the session cookie, or `Authorization: Bearer <ADMIN_API_KEY>`. */
export type AdminProof = 'cookie' | 'bearer';

/**
 * Who may use the admin dashboard: whoever knows ADMIN_API_KEY. Logging in sets an HttpOnly,
 * SameSite=Strict cookie `v1.<expiry>.<nonce>.<mac>`, the mac an HMAC-SHA256 keyed with
 * ADMIN_API_KEY: the cookie never holds the key, and changing the key ends every session. Scripts
 * may send the key as a Bearer token instead. Without ADMIN_API_KEY (the api runs open) the
 * dashboard is off, as key management is: admin actions need an admin.
 */
@Injectable()
export class AdminSessions {
  private readonly key?: Buffer;
  private readonly keyHash?: Buffer;

  constructor(@Inject(CONFIG) config: Config) {
    if (config.ADMIN_API_KEY) {
      this.key = Buffer.from(config.ADMIN_API_KEY, 'utf8');
      this.keyHash = sha256(config.ADMIN_API_KEY);
    }
  }

  /** Whether the dashboard is on (ADMIN_API_KEY is set). */
  get enabled(): boolean {
    return this.key !== undefined;
  }

  /** Whether `presented` is ADMIN_API_KEY (compared in constant time, as hashes). */
  isAdminKey(presented: string | undefined): boolean {
    return !!this.keyHash && typeof presented === 'string' && equal(sha256(presented), this.keyHash);
  }

  /** A new session's cookie value, valid for SESSION_SECONDS from `now` (ms). */
  issue(now = Date.now()): string {
    const expires = Math.floor(now / 1000) + SESSION_SECONDS;
    const nonce = randomBytes(16).toString('base64url');
    return `v1.${expires}.${nonce}.${this.mac(expires, nonce)}`;
  }

  /** Whether a cookie value is a session this key issued that has not expired. */
  verify(value: string | undefined, now = Date.now()): boolean {
    if (!this.key || !value) return false;
    const [version, expiresText, nonce, mac, ...rest] = value.split('.');
    if (version !== 'v1' || rest.length || !nonce || !mac || !/^\d{1,12}$/.test(expiresText ?? '')) return false;
    const expires = Number(expiresText);
    if (expires * 1000 <= now) return false;
    return equal(Buffer.from(mac), Buffer.from(this.mac(expires, nonce)));
  }

  /** How the request proves it is the admin, if it does. */
  proof(req: Request): AdminProof | undefined {
    if (!this.enabled) return undefined;
    if (this.verify(readCookie(req, SESSION_COOKIE))) return 'cookie';
    const bearer = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.get('authorization') ?? '')?.[1];
    return this.isAdminKey(bearer) ? 'bearer' : undefined;
  }

  /** Sets the session cookie on a successful login. */
  setCookie(req: Request, res: Response): void {
    res.append('Set-Cookie', cookie(this.issue(), SESSION_SECONDS, req.secure));
  }

  /** Clears the session cookie (logout). */
  clearCookie(req: Request, res: Response): void {
    res.append('Set-Cookie', cookie('', 0, req.secure));
  }

  private mac(expires: number, nonce: string): string {
    return createHmac('sha256', this.key!).update(`lavida-admin-session.v1.${expires}.${nonce}`).digest('base64url');
  }
}

function cookie(value: string, maxAge: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${value}; Path=/admin; Max-Age=${maxAge}; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

/** One cookie of the request (no cookie-parser in this app). */
export function readCookie(req: Request, name: string): string | undefined {
  for (const part of (req.get('cookie') ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
