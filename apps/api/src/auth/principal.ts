import { Reflector } from '@nestjs/core';
import type { Request } from 'express';

/** `jobs`: create, read and cancel jobs; `admin`: that and managing API keys. */
export const SCOPES = ['jobs', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

/** An API key as stored (under the SHA-256 of the key; the key itself is never stored). */
export interface ApiKeyRecord {
  id: string;
  name: string;
  scopes: Scope[];
  createdAt: string;
  /** Its own limit; otherwise RATE_LIMIT_PER_MINUTE. */
  rateLimitPerMinute?: number;
}

/** Who makes a request: an API key, or anyone when the api runs open. */
export interface Principal {
  /** The key's id, or `open` when ADMIN_API_KEY is not set. */
  id: string;
  scopes: readonly Scope[];
  rateLimitPerMinute?: number;
  /** What the rate limit counts by: `key:<id>`, or `ip:<address>` when open. */
  rateLimitSubject: string;
}

/** Whether `granted` allows a route that needs `needed` (admin includes jobs). */
export function allows(granted: readonly Scope[], needed: Scope): boolean {
  return granted.includes('admin') || granted.includes(needed);
}

/** Marks a controller or route as open to anyone (health checks): no key, no rate limit. */
export const Public = Reflector.createDecorator<boolean>({ key: 'lavida:public', transform: () => true });

/** The scope a controller or route needs; `jobs` when not marked. */
export const RequireScope = Reflector.createDecorator<Scope>({ key: 'lavida:scope' });

const principals = new WeakMap<Request, Principal>();

export function setPrincipal(req: Request, principal: Principal): void {
  principals.set(req, principal);
}

/** The request's principal, set by the ApiKeyGuard. */
export function principalOf(req: Request): Principal | undefined {
  return principals.get(req);
}
