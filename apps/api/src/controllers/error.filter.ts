import { Catch, HttpException, HttpStatus, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import type { Response } from 'express';
import { JsonLogger } from '@lavida/config';

interface ErrorBody {
  status: number;
  code: string;
  message: string;
  field?: string;
}

/** Every error answers `{ "error": { status, code, message, field? } }`; 5xx details stay in the logs. */
@Catch()
export class ErrorFilter implements ExceptionFilter {
  private readonly logger = new JsonLogger('api', ErrorFilter.name);

  catch(exception: unknown, host: ArgumentsHost): void {
    const response = host.switchToHttp().getResponse<Response>();
    const body = this.body(exception);
    if (body.status >= 500) this.logger.error('request failed', exception instanceof Error ? exception : { error: String(exception) });
    response.status(body.status).json({ error: body });
  }

  private body(exception: unknown): ErrorBody {
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      const payload = exception.getResponse();
      if (typeof payload === 'object' && payload && 'code' in payload) return { status, ...(payload as Omit<ErrorBody, 'status'>) };
      const detail = (payload as { message?: unknown }).message;
      const message =
        typeof payload === 'string'
          ? payload
          : Array.isArray(detail)
            ? detail.join('; ')
            : typeof detail === 'string'
              ? detail
              : exception.message;
      // Nest wraps body-parser's parse failure (type entity.parse.failed) in a 400 of its own.
      const cause = exception.cause as { type?: string } | undefined;
      if (status === 400 && (cause?.type === 'entity.parse.failed' || /\bJSON\b/.test(message)))
        return { status, code: 'invalid_json', message };
      return { status, code: HttpStatus[status]?.toLowerCase() ?? 'error', message };
    }
    // body-parser errors (malformed JSON, body too large) carry their own 4xx status.
    const http = exception as { status?: number; type?: string; message?: string };
    if (typeof http.status === 'number' && http.status >= 400 && http.status < 500) {
      const code = http.type === 'entity.too.large' ? 'payload_too_large' : 'invalid_json';
      return { status: http.status, code, message: http.message ?? 'bad request' };
    }
    return { status: 500, code: 'internal', message: 'internal error' };
  }
}
