import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

/**
 * The dashboard's static files (HTML, CSS, vanilla JS: no bundler), kept beside the sources in
 * apps/api/src/admin/ui and read once at start-up (the image ships apps/ whole). From
 * apps/api/dist/admin/services/ that folder is ../../../src/admin/ui.
 */
export const UI_DIR = fileURLToPath(new URL('../../../src/admin/ui/', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** Files served under /admin/assets/ (a fixed list: nothing else of the folder is reachable). */
export const ASSET_FILES = ['admin.css', 'admin.js', 'favicon.svg'] as const;

export interface Asset {
  type: string;
  body: Buffer;
}

/** The dashboard's pages and assets, read once. */
export class AdminAssets {
  private readonly files = new Map<string, Asset>();

  constructor(dir: string = UI_DIR) {
    for (const name of [...ASSET_FILES, 'index.html', 'login.html']) {
      this.files.set(name, { type: TYPES[name.slice(name.lastIndexOf('.'))], body: readFileSync(join(dir, name)) });
    }
  }

  asset(name: string): Asset | undefined {
    return (ASSET_FILES as readonly string[]).includes(name) ? this.files.get(name) : undefined;
  }

  page(name: 'index.html' | 'login.html'): Asset {
    return this.files.get(name)!;
  }
}

/** Headers of every dashboard page: no framing, scripts and styles from /admin only, never cached. */
export const PAGE_HEADERS: Record<string, string> = {
  'Content-Security-Policy':
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'X-Frame-Options': 'DENY',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'same-origin',
  'Cache-Control': 'no-store',
};
