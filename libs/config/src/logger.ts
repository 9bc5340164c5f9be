import { logFields, traceFields } from '@lavida/telemetry';

/** Log levels, most severe first. */
const LEVELS = ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'] as const;
type Level = (typeof LEVELS)[number];

/**
 * Structured JSON logs, one object a line, usable as a NestJS LoggerService. Fields passed as the
 * last argument object (for example `{ jobId }`) are merged into the line, and so are the fields of
 * the job being processed (`withLogFields`: every line written while a job runs carries its jobId)
 * and, with tracing on, `trace_id` and `span_id`.
 */
export class JsonLogger {
  constructor(
    private readonly app: string,
    private readonly context?: string,
    private readonly base: Record<string, unknown> = {},
  ) {}

  /** A logger with more fixed fields, for example the job id. */
  child(fields: Record<string, unknown>, context = this.context): JsonLogger {
    return new JsonLogger(this.app, context, { ...this.base, ...fields });
  }

  log(message: unknown, ...rest: unknown[]): void {
    this.write('log', message, rest);
  }
  error(message: unknown, ...rest: unknown[]): void {
    this.write('error', message, rest);
  }
  warn(message: unknown, ...rest: unknown[]): void {
    this.write('warn', message, rest);
  }
  debug(message: unknown, ...rest: unknown[]): void {
    this.write('debug', message, rest);
  }
  verbose(message: unknown, ...rest: unknown[]): void {
    this.write('verbose', message, rest);
  }
  fatal(message: unknown, ...rest: unknown[]): void {
    this.write('fatal', message, rest);
  }

  private write(level: Level, message: unknown, rest: unknown[]): void {
    if (LEVELS.indexOf(level) > LEVELS.indexOf(currentLevel())) return;
    const fields: Record<string, unknown> = {};
    let context = this.context;
    for (const item of rest) {
      if (typeof item === 'string') context = item;
      else if (item instanceof Error) fields.error = item.message;
      else if (item && typeof item === 'object') Object.assign(fields, item);
    }
    const line = {
      time: new Date().toISOString(),
      level,
      app: this.app,
      ...(context ? { context } : {}),
      // The running job's fields (its jobId: see withLogFields) and, with tracing on, its trace.
      ...logFields(),
      ...traceFields(),
      ...this.base,
      ...fields,
      msg: message instanceof Error ? message.message : message,
    };
    (level === 'error' || level === 'fatal' ? process.stderr : process.stdout).write(`${JSON.stringify(line)}\n`);
  }
}

function currentLevel(): Level {
  const value = process.env.LOG_LEVEL as Level | undefined;
  return value && LEVELS.includes(value) ? value : 'log';
}
