/**
 * Base class of the project's typed errors. `code` is stable and machine-readable;
 * `retryable` says whether running the same work again may succeed.
 */
export abstract class LavidaError extends Error {
  abstract readonly code: string;
  abstract readonly retryable: boolean;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = this.constructor.name;
  }
}

/** The caller's input is wrong; retrying the same input cannot help. */
export class InvalidInputError extends LavidaError {
  readonly code = 'INVALID_INPUT';
  readonly retryable = false;
}

/** A model package is missing, corrupt or does not match its manifest. */
export class ModelPackageError extends LavidaError {
  readonly code = 'MODEL_PACKAGE_INVALID';
  readonly retryable = false;
}

/** A joint-attention peer could not be reached, died, or missed its deadline. */
export class PeerUnavailableError extends LavidaError {
  readonly code = 'PEER_UNAVAILABLE';
  readonly retryable = true;
}

/** A joint-attention peer broke the protocol (wrong tensor, wrong frame order). */
export class PeerProtocolError extends LavidaError {
  readonly code = 'PEER_PROTOCOL';
  readonly retryable = false;
}

/** The two workers serve different models. */
export class ModelMismatchError extends LavidaError {
  readonly code = 'MODEL_MISMATCH';
  readonly retryable = false;
}

/** The work was canceled by its owner. */
export class CanceledError extends LavidaError {
  readonly code = 'CANCELED';
  readonly retryable = false;
}

/** The job's deadline (`deadline_seconds`) passed before it finished. */
export class DeadlineExceededError extends LavidaError {
  readonly code = 'DEADLINE_EXCEEDED';
  readonly retryable = false;
}

/** True when an error is worth retrying. Unknown errors are treated as retryable. */
export function isRetryable(error: unknown): boolean {
  return error instanceof LavidaError ? error.retryable : true;
}

/** The stable code of an error, `INTERNAL` for errors of unknown kind. */
export function errorCode(error: unknown): string {
  return error instanceof LavidaError ? error.code : 'INTERNAL';
}
