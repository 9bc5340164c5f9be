import type { ServiceDefinition } from '@grpc/grpc-js';
import { UInt32ValueSchema, type UInt32Value } from '@bufbuild/protobuf/wkt';
import { fromBinary, toBinary, TensorChunkSchema, TensorSchema, type Tensor as WireTensor, type TensorChunk } from '@lavida/proto';

/** What the bench client streams: a tensor, then its continuation chunks, as in the peer protocol. */
export type SinkFrame = WireTensor | TensorChunk;

export function isTensor(frame: SinkFrame): frame is WireTensor {
  return frame.$typeName === 'lavida.tensor.v1.Tensor';
}

function view(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * A bench-only service, `rpc Push(stream Tensor|TensorChunk) returns (stream UInt32Value)`, built by
 * hand rather than from a .proto. The request stream has no wrapper message, so the server gets raw
 * bytes and parses each as Tensor or TensorChunk from its place in the stream; each ack carries the
 * byte length of one reassembled tensor.
 */
export const SinkService = {
  push: {
    path: '/lavida.bench.v1.SinkService/Push',
    originalName: 'Push',
    requestStream: true,
    responseStream: true,
    requestSerialize: (frame: SinkFrame): Buffer =>
      view(isTensor(frame) ? toBinary(TensorSchema, frame) : toBinary(TensorChunkSchema, frame)),
    requestDeserialize: (bytes: Buffer): Buffer => bytes,
    responseSerialize: (ack: UInt32Value): Buffer => view(toBinary(UInt32ValueSchema, ack)),
    responseDeserialize: (bytes: Buffer): UInt32Value => fromBinary(UInt32ValueSchema, bytes),
  },
} satisfies ServiceDefinition;

/** TCP baseline framing: a little-endian u32 byte length, then the bytes. */
export const LENGTH_BYTES = 4;

export function lengthHeader(length: number): Buffer {
  const header = Buffer.allocUnsafe(LENGTH_BYTES);
  header.writeUInt32LE(length, 0);
  return header;
}

/**
 * Splits a byte stream into length-prefixed messages. Each message is copied once into its own
 * aligned buffer, the counterpart of the gRPC side's reassembly and decode.
 */
export class LengthPrefixedReader {
  private readonly parts: Buffer[] = [];
  private size = 0;
  private need?: number;

  push(chunk: Buffer): Uint8Array[] {
    this.parts.push(chunk);
    this.size += chunk.length;
    const messages: Uint8Array[] = [];
    for (;;) {
      if (this.need === undefined) {
        if (this.size < LENGTH_BYTES) break;
        this.need = Buffer.from(this.take(LENGTH_BYTES)).readUInt32LE(0);
      }
      if (this.size < this.need) break;
      messages.push(this.take(this.need));
      this.need = undefined;
    }
    return messages;
  }

  private take(count: number): Uint8Array {
    const out = new Uint8Array(count);
    let filled = 0;
    while (filled < count) {
      const part = this.parts[0];
      const used = Math.min(part.length, count - filled);
      out.set(part.subarray(0, used), filled);
      filled += used;
      if (used === part.length) this.parts.shift();
      else this.parts[0] = part.subarray(used);
    }
    this.size -= count;
    return out;
  }
}
