import { BadRequestException, type PipeTransform } from '@nestjs/common';
import type { ZodType } from 'zod';

/** Validates a body with a zod schema; a 400 names the first wrong field. */
export class ZodValidationPipe<T> implements PipeTransform<unknown, T> {
  constructor(private readonly schema: ZodType<T>) {}

  transform(value: unknown): T {
    const result = this.schema.safeParse(value);
    if (result.success) return result.data;
    const issue = result.error.issues[0];
    const field = issue.path.join('.') || 'body';
    throw new BadRequestException({ code: 'invalid_request', field, message: `${field}: ${issue.message}` });
  }
}
