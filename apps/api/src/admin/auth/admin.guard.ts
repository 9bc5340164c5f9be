import { ForbiddenException, Injectable, UnauthorizedException, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import { AdminSessions } from './admin-session.js';

/** The header the dashboard sends with every change it asks for (a cross-site form cannot set it). */
export const ADMIN_CSRF_HEADER = 'x-lavida-admin';

/**
 * The admin JSON api (`/admin/api/*`): the session cookie or `Authorization: Bearer <ADMIN_API_KEY>`
 * (401 otherwise); 403 `auth_disabled` when ADMIN_API_KEY is not set. With the cookie, a change
 * (anything but GET) also needs the `x-lavida-admin` header, besides SameSite=Strict.
 */
@Injectable()
export class AdminGuard implements CanActivate {
  constructor(private readonly sessions: AdminSessions) {}

  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest<Request>();
    assertAdmin(this.sessions, req);
    return true;
  }
}

function assertAdmin(sessions: AdminSessions, req: Request): void {
  if (!sessions.enabled) {
    throw new ForbiddenException({ code: 'auth_disabled', message: 'the admin dashboard is off: set ADMIN_API_KEY to use it' });
  }
  const proof = sessions.proof(req);
  if (!proof) {
    throw new UnauthorizedException({
      code: 'unauthorized',
      message: 'log in at /admin/login, or send Authorization: Bearer <ADMIN_API_KEY>',
    });
  }
  if (proof === 'cookie' && req.method !== 'GET' && req.method !== 'HEAD' && !req.get(ADMIN_CSRF_HEADER)) {
    throw new ForbiddenException({ code: 'csrf', message: `changes from the dashboard carry the ${ADMIN_CSRF_HEADER} header` });
  }
}

/**
 * The same check as Express middleware, for what is mounted outside Nest's routing (Bull Board): a
 * page request without a session goes to the login page, anything else answers the error as JSON.
 */
export function adminMiddleware(sessions: AdminSessions) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (sessions.enabled && sessions.proof(req)) return next();
    if (sessions.enabled && req.method === 'GET' && (req.get('accept') ?? '').includes('text/html')) {
      res.redirect(303, `/admin/login?next=${encodeURIComponent(req.originalUrl)}`);
      return;
    }
    const status = sessions.enabled ? 401 : 403;
    const code = sessions.enabled ? 'unauthorized' : 'auth_disabled';
    const message = sessions.enabled ? 'log in at /admin/login' : 'the admin dashboard is off: set ADMIN_API_KEY to use it';
    res.status(status).json({ error: { status, code, message } });
  };
}
