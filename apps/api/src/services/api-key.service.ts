import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ConflictException, Inject, Injectable, NotFoundException, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { CONFIG, JsonLogger, type Config } from '@lavida/config';
import { ApiKeyRepository } from '../repositories/api-key.repository.js';
import type { ApiKeyRecord, Principal, Scope } from '../auth/principal.js';

/** Id of the key that ADMIN_API_KEY configures. */
export const CONFIGURED_ADMIN_KEY_ID = 'key_admin';

const sha256 = (key: string): Buffer => createHash('sha256').update(key, 'utf8').digest();

/**
 * API keys: `lv_` and 32 random bytes (base64url), shown once at creation; only their SHA-256 is
 * stored. Off (the api runs open) unless ADMIN_API_KEY is set.
 */
@Injectable()
export class ApiKeyService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new JsonLogger('api', ApiKeyService.name);
  private readonly adminHash?: Buffer;
  private retry?: NodeJS.Timeout;

  constructor(
    @Inject(CONFIG) config: Config,
    private readonly keys: ApiKeyRepository,
  ) {
    if (config.ADMIN_API_KEY) this.adminHash = sha256(config.ADMIN_API_KEY);
  }

  /** Whether requests need an API key (ADMIN_API_KEY is set). */
  get enabled(): boolean {
    return this.adminHash !== undefined;
  }

  async onModuleInit(): Promise<void> {
    if (!this.adminHash) {
      this.logger.warn('ADMIN_API_KEY is not set: the api is open, every request is allowed without an API key (set it in production)');
      return;
    }
    this.logger.log('api keys required', { admin_key: CONFIGURED_ADMIN_KEY_ID });
    await this.ensureAdmin();
  }

  onModuleDestroy(): void {
    clearTimeout(this.retry);
  }

  /**
   * Stores the configured admin key's hash (listed, and replacing the one of an earlier ADMIN_API_KEY).
   * The configured key works without it (compared in memory), so a Redis that is not up yet only
   * delays this: it is retried, never blocks the start.
   */
  private async ensureAdmin(): Promise<void> {
    const record: ApiKeyRecord = {
      id: CONFIGURED_ADMIN_KEY_ID,
      name: 'ADMIN_API_KEY',
      scopes: ['admin'],
      createdAt: new Date().toISOString(),
    };
    try {
      await this.keys.ensure(record, this.adminHash!.toString('hex'));
    } catch (error) {
      this.logger.warn('could not store the admin key hash yet, retrying', error);
      this.retry = setTimeout(() => void this.ensureAdmin(), 5000);
      this.retry.unref();
    }
  }

  /** The principal of a presented key, or undefined when it is unknown or revoked. */
  async authenticate(key: string): Promise<Principal | undefined> {
    const hash = sha256(key);
    // The configured admin key: compared in constant time, without a Redis round trip.
    if (this.adminHash && timingSafeEqual(hash, this.adminHash)) {
      return { id: CONFIGURED_ADMIN_KEY_ID, scopes: ['admin'], rateLimitSubject: `key:${CONFIGURED_ADMIN_KEY_ID}` };
    }
    // Other keys are looked up by their hash: what an attacker controls is the key, never the hash
    // compared, so the lookup's timing tells nothing about a stored key.
    const record = await this.keys.findByHash(hash.toString('hex'));
    if (!record) return undefined;
    return {
      id: record.id,
      scopes: record.scopes,
      ...(record.rateLimitPerMinute === undefined ? {} : { rateLimitPerMinute: record.rateLimitPerMinute }),
      rateLimitSubject: `key:${record.id}`,
    };
  }

  /** Creates a key: answers its record and the key itself (the only time it is shown). */
  async create(input: { name: string; scopes: Scope[]; rateLimitPerMinute?: number }): Promise<{ record: ApiKeyRecord; key: string }> {
    const key = `lv_${randomBytes(32).toString('base64url')}`;
    const record: ApiKeyRecord = {
      id: `key_${randomBytes(12).toString('hex')}`,
      name: input.name,
      scopes: [...new Set(input.scopes)],
      createdAt: new Date().toISOString(),
      ...(input.rateLimitPerMinute === undefined ? {} : { rateLimitPerMinute: input.rateLimitPerMinute }),
    };
    await this.keys.create(record, sha256(key).toString('hex'));
    return { record, key };
  }

  list(): Promise<ApiKeyRecord[]> {
    return this.keys.list();
  }

  /** Revokes a key: its requests answer 401 from now on. */
  async revoke(id: string): Promise<void> {
    if (id === CONFIGURED_ADMIN_KEY_ID && this.enabled) {
      throw new ConflictException({
        code: 'configured_key',
        message: `${id} is ADMIN_API_KEY: change or unset ADMIN_API_KEY instead`,
      });
    }
    if (!(await this.keys.revoke(id))) throw new NotFoundException({ code: 'not_found', message: `API key ${id} not found` });
  }
}
