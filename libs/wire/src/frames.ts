import { once } from 'node:events';
import type { Writable } from 'node:stream';
import type { ExchangeRequest, ExchangeResponse, Tensor as WireTensor, TensorChunk } from '@lavida/proto';

/** Tensors of a frame in either direction, in the order their chunks follow it. */
export function frameTensors(frame: ExchangeRequest | ExchangeResponse): (WireTensor | undefined)[] {
  const { frame: f } = frame;
  switch (f.case) {
    case 'open':
      return [f.value.textIds, f.value.textPositions, f.value.prefixPixels];
    case 'projections':
      return [f.value.q, f.value.k, f.value.v];
    case 'partial':
      return [f.value.out, f.value.lse];
    case 'step':
      return [f.value.pixels, f.value.nextPartial?.out, f.value.nextPartial?.lse];
    default:
      return [];
  }
}

/** Tensors of a driver frame. */
export const requestTensors: (frame: ExchangeRequest) => (WireTensor | undefined)[] = frameTensors;
/** Tensors of a serving-side frame. */
export const responseTensors: (frame: ExchangeResponse) => (WireTensor | undefined)[] = frameTensors;

export function chunkOf(frame: ExchangeRequest | ExchangeResponse): TensorChunk | undefined {
  return frame.frame.case === 'chunk' ? frame.frame.value : undefined;
}

/** Writes messages, waiting for 'drain' whenever the stream asks the writer to back off. */
export async function writeAll(stream: Writable, messages: readonly unknown[]): Promise<void> {
  for (const message of messages) {
    if (!stream.write(message)) await once(stream, 'drain');
  }
}
