import { status, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { InvalidInputError, LavidaError, ModelMismatchError, PeerProtocolError, PeerUnavailableError } from '@lavida/contracts';
import { WireFormatError } from './codec.js';

/** The gRPC status a server answers for an error (INVALID_ARGUMENT for bad tensors and frames). */
export function toStatus(error: unknown): Partial<StatusObject> {
  const details = error instanceof Error ? error.message : String(error);
  if (error instanceof InvalidInputError || error instanceof WireFormatError || error instanceof PeerProtocolError) {
    return { code: status.INVALID_ARGUMENT, details };
  }
  if (error instanceof ModelMismatchError) return { code: status.FAILED_PRECONDITION, details };
  if (error instanceof LavidaError && error.retryable) return { code: status.UNAVAILABLE, details };
  return { code: status.INTERNAL, details };
}

/**
 * The typed error for a gRPC failure seen by a client. UNAVAILABLE, DEADLINE_EXCEEDED,
 * RESOURCE_EXHAUSTED, CANCELLED and INTERNAL (a peer that died mid-call) are retryable.
 */
export function fromServiceError(error: ServiceError, peer: string): LavidaError {
  const message = `peer ${peer}: ${status[error.code] ?? error.code}: ${error.details || error.message}`;
  switch (error.code) {
    case status.INVALID_ARGUMENT:
      return new PeerProtocolError(message, { cause: error });
    case status.FAILED_PRECONDITION:
      return new ModelMismatchError(message, { cause: error });
    default:
      return new PeerUnavailableError(message, { cause: error });
  }
}
