import { HttpException, HttpStatus, Inject, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request, Response } from 'express';
import { CONFIG, type Config } from '@lavida/config';
import { RateLimitRepository } from '../repositories/rate-limit.repository.js';
import { principalOf, Public } from './principal.js';

const WINDOW_MS = 60_000;

/**
 * Requests per minute per API key (per client IP when open), counted in Redis after the ApiKeyGuard:
 * the key's own limit, else RATE_LIMIT_PER_MINUTE (0: none). Every limited response carries
 * `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds; IETF httpapi draft); over
 * the limit answers 429 with `Retry-After`.
 */
@Injectable()
export class RateLimitGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    @Inject(CONFIG) private readonly config: Config,
    private readonly limits: RateLimitRepository,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (context.getType() !== 'http') return true;
    if (this.reflector.getAllAndOverride(Public, [context.getHandler(), context.getClass()])) return true;
    const req = context.switchToHttp().getRequest<Request>();
    const res = context.switchToHttp().getResponse<Response>();
    const principal = principalOf(req);
    if (!principal) return true;
    const limit = principal.rateLimitPerMinute ?? this.config.RATE_LIMIT_PER_MINUTE;
    if (limit <= 0) return true;

    const { count, resetMs } = await this.limits.consume(principal.rateLimitSubject, WINDOW_MS);
    const reset = Math.max(1, Math.ceil(resetMs / 1000));
    res.setHeader('RateLimit-Policy', `${limit};w=${WINDOW_MS / 1000}`);
    res.setHeader('RateLimit-Limit', String(limit));
    res.setHeader('RateLimit-Remaining', String(Math.max(0, limit - count)));
    res.setHeader('RateLimit-Reset', String(reset));
    if (count > limit) {
      res.setHeader('Retry-After', String(reset));
      throw new HttpException(
        { code: 'rate_limited', message: `rate limit of ${limit} requests per minute exceeded: retry in ${reset} s` },
        HttpStatus.TOO_MANY_REQUESTS,
      );
    }
    return true;
  }
}
