import type { Request } from 'express';

let configured: string | undefined;

/** Sets the public base URL (PUBLIC_URL); otherwise URLs are built from the request. */
export function setPublicUrl(url: string | undefined): void {
  configured = url?.replace(/\/$/, '');
}

export function baseUrl(req: Request): string {
  return configured ?? `${req.protocol}://${req.get('host') ?? 'localhost'}`;
}
