import { createHash, randomUUID } from 'node:crypto';
import {
  BadRequestException,
  ConflictException,
  Inject,
  Injectable,
  NotFoundException,
  UnprocessableEntityException,
} from '@nestjs/common';
import { CONFIG, type Config } from '@lavida/config';
import { IdempotencyRepository, type IdempotencyRecord } from '../repositories/idempotency.repository.js';
import type { JobDto } from '../dtos/job.dto.js';

/** Longest Idempotency-Key (Stripe's limit). */
export const IDEMPOTENCY_KEY_MAX = 255;
/** A reservation whose request died before creating its job frees the key after this. */
const RESERVATION_TTL_SECONDS = 60;
/** How long a request waits for a concurrent one with the same key to create its job. */
const CONCURRENT_WAIT_MS = 10_000;

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

/** JSON with object keys sorted at every level: equal bodies hash equal whatever their key order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const object = value as Record<string, unknown>;
    return `{${Object.keys(object)
      .sort()
      .filter((key) => object[key] !== undefined)
      .map((key) => `${JSON.stringify(key)}:${canonicalJson(object[key])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** Validates an `Idempotency-Key` header; undefined when absent. */
export function idempotencyKey(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (header.length === 0 || header.length > IDEMPOTENCY_KEY_MAX) {
    throw new BadRequestException({
      code: 'invalid_request',
      field: 'Idempotency-Key',
      message: `Idempotency-Key: expected 1 to ${IDEMPOTENCY_KEY_MAX} characters`,
    });
  }
  return header;
}

/**
 * `Idempotency-Key` on `POST /v1/jobs` (as Stripe): the first request with a key (per API key, or
 * `open`) reserves it with SET NX and creates the job; a later one with the same body answers that job
 * (replayed), with another body 422 `idempotency_key_reused`. Concurrent first requests create one
 * job: the others wait for it. Keys are kept for RESULT_TTL_SECONDS.
 */
@Injectable()
export class IdempotencyService {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    private readonly records: IdempotencyRepository,
  ) {}

  async run(
    scope: string,
    key: string,
    body: unknown,
    create: (jobId: string) => Promise<JobDto>,
    replay: (jobId: string) => Promise<JobDto>,
  ): Promise<{ job: JobDto; replayed: boolean }> {
    const redisKey = this.records.key(scope, sha256(key));
    const bodyHash = sha256(canonicalJson(body));
    const deadline = Date.now() + CONCURRENT_WAIT_MS;
    for (;;) {
      const record: IdempotencyRecord = { bodyHash, jobId: randomUUID(), state: 'pending', createdAt: new Date().toISOString() };
      if (await this.records.reserve(redisKey, record, RESERVATION_TTL_SECONDS)) {
        let job: JobDto;
        try {
          job = await create(record.jobId);
        } catch (error) {
          // Not created (a 400, Redis away): the key is free again for a corrected retry.
          await this.records.release(redisKey, record.jobId).catch(() => undefined);
          throw error;
        }
        await this.records.complete(redisKey, { ...record, state: 'created' }, this.config.RESULT_TTL_SECONDS);
        return { job, replayed: false };
      }
      const existing = await this.records.get(redisKey);
      if (existing) {
        if (existing.bodyHash !== bodyHash) {
          throw new UnprocessableEntityException({
            code: 'idempotency_key_reused',
            field: 'Idempotency-Key',
            message: 'Idempotency-Key was already used with another request body: use a new key for a new request',
          });
        }
        if (existing.state === 'created') return { job: await replay(existing.jobId), replayed: true };
        // Pending: another request is creating the job; answer it once it exists.
        try {
          return { job: await replay(existing.jobId), replayed: true };
        } catch (error) {
          if (!(error instanceof NotFoundException)) throw error;
        }
      }
      // Gone (that request failed and released it): try to reserve it again.
      if (Date.now() >= deadline) {
        throw new ConflictException({
          code: 'idempotency_key_in_use',
          field: 'Idempotency-Key',
          message: 'another request with this Idempotency-Key is in progress: retry later',
        });
      }
      if (existing) await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
}
