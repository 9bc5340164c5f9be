import { once } from 'node:events';
import type { Writable } from 'node:stream';
import type { ExchangeRequest, ExchangeResponse, Tensor as WireTensor, TensorChunk } from '@lavida/proto';

/** Tensors of a driver frame, in the order their chunks follow it. */
export function requestTensors(frame: ExchangeRequest): (WireTensor | undefined)[] {
  switch (frame.frame.case) {
    case 'open':
      return [frame.frame.value.textIds, frame.frame.value.textPositions];
    case 'projections':
      return [frame.frame.value.q, frame.frame.value.k, frame.frame.value.v];
    case 'partial':
      return [frame.frame.value.out, frame.frame.value.lse];
    default:
      return [];
  }
}

/** Tensors of a serving-side frame, in the order their chunks follow it. */
export function responseTensors(frame: ExchangeResponse): (WireTensor | undefined)[] {
  switch (frame.frame.case) {
    case 'projections':
      return [frame.frame.value.q, frame.frame.value.k, frame.frame.value.v];
    case 'partial':
      return [frame.frame.value.out, frame.frame.value.lse];
    default:
      return [];
  }
}

export function chunkOf(frame: ExchangeRequest | ExchangeResponse): TensorChunk | undefined {
  return frame.frame.case === 'chunk' ? frame.frame.value : undefined;
}

/** Writes messages, waiting for 'drain' whenever the stream asks the writer to back off. */
export async function writeAll(stream: Writable, messages: readonly unknown[]): Promise<void> {
  for (const message of messages) {
    if (!stream.write(message)) await once(stream, 'drain');
  }
}
