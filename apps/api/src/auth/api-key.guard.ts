import { ForbiddenException, Injectable, UnauthorizedException, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request, Response } from 'express';
import { ApiKeyService } from '../services/api-key.service.js';
import { allows, Public, RequireScope, setPrincipal } from './principal.js';

const REALM = 'lavida';

/**
 * `Authorization: Bearer <key>` on every route not marked @Public(): 401 without a valid key (with
 * `WWW-Authenticate: Bearer`), 403 when the key lacks the route's scope. When ADMIN_API_KEY is not
 * set everyone may use the jobs routes (the principal `open`) and key management is off.
 */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly keys: ApiKeyService,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (context.getType() !== 'http') return true;
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride(Public, targets)) return true;
    const needed = this.reflector.getAllAndOverride(RequireScope, targets) ?? 'jobs';
    const req = context.switchToHttp().getRequest<Request>();
    const res = context.switchToHttp().getResponse<Response>();

    if (!this.keys.enabled) {
      if (needed === 'admin') {
        throw new ForbiddenException({ code: 'auth_disabled', message: 'API keys are off: set ADMIN_API_KEY to require and manage them' });
      }
      setPrincipal(req, { id: 'open', scopes: ['jobs'], rateLimitSubject: `ip:${req.ip ?? req.socket.remoteAddress ?? 'unknown'}` });
      return true;
    }

    const presented = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.get('authorization') ?? '')?.[1];
    if (!presented) {
      res.setHeader('WWW-Authenticate', `Bearer realm="${REALM}"`);
      throw new UnauthorizedException({ code: 'unauthorized', message: 'an API key is required: send Authorization: Bearer <key>' });
    }
    const principal = await this.keys.authenticate(presented);
    if (!principal) {
      res.setHeader('WWW-Authenticate', `Bearer realm="${REALM}", error="invalid_token"`);
      throw new UnauthorizedException({ code: 'unauthorized', message: 'the API key is not valid (unknown or revoked)' });
    }
    if (!allows(principal.scopes, needed)) {
      throw new ForbiddenException({ code: 'forbidden', message: `this API key lacks the ${needed} scope` });
    }
    setPrincipal(req, principal);
    return true;
  }
}
