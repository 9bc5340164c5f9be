import { endianness } from 'node:os';
import { create } from '@bufbuild/protobuf';
import { DataType, TensorChunkSchema, TensorSchema, type Tensor as WireTensor, type TensorChunk } from '@lavida/proto';
import { Tensor } from '@lavida/model';
import { LavidaError } from '@lavida/contracts';

if (endianness() !== 'LE') throw new Error('the tensor wire format is little-endian; this host is big-endian');

/** A frame broke the wire format: unknown dtype, shape and byte length disagree, chunk out of order. */
export class WireFormatError extends LavidaError {
  readonly code = 'WIRE_FORMAT';
  readonly retryable = false;
}

type OrtType = 'float32' | 'float16' | 'int64' | 'int32' | 'uint8';

const BY_WIRE: Partial<Record<DataType, { type: OrtType; bytes: number }>> = {
  [DataType.FLOAT32]: { type: 'float32', bytes: 4 },
  [DataType.FLOAT16]: { type: 'float16', bytes: 2 },
  [DataType.INT64]: { type: 'int64', bytes: 8 },
  [DataType.INT32]: { type: 'int32', bytes: 4 },
  [DataType.UINT8]: { type: 'uint8', bytes: 1 },
};
const BY_ORT: Record<string, DataType> = {
  float32: DataType.FLOAT32,
  float16: DataType.FLOAT16,
  int64: DataType.INT64,
  int32: DataType.INT32,
  uint8: DataType.UINT8,
};

function elementBytes(dtype: DataType): number {
  const entry = BY_WIRE[dtype];
  if (!entry) throw new WireFormatError(`tensor dtype ${DataType[dtype] ?? dtype} is not supported`);
  return entry.bytes;
}

/** A tensor encoded for the wire: the message field and the continuation chunks that follow. */
export interface EncodedTensor {
  tensor: WireTensor;
  rest: Uint8Array[];
}

/** Encodes a tensor; above `chunkBytes` its bytes are split into pieces. */
export function encodeTensor(tensor: Tensor, chunkBytes: number): EncodedTensor {
  const dtype = BY_ORT[tensor.type];
  if (dtype === undefined) throw new WireFormatError(`tensor type ${tensor.type} cannot travel`);
  const source = tensor.data as ArrayBufferView;
  const bytes = new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
  const pieces: Uint8Array[] = [];
  for (let offset = 0; offset < bytes.length || pieces.length === 0; offset += chunkBytes) {
    pieces.push(bytes.subarray(offset, Math.min(offset + chunkBytes, bytes.length)));
  }
  return {
    tensor: create(TensorSchema, {
      dtype,
      shape: [...tensor.dims],
      data: pieces[0],
      chunkCount: pieces.length,
      byteLength: bytes.length,
    }),
    rest: pieces.slice(1),
  };
}

/** The continuation chunks of a frame's tensors, in the order the receiver expects them. */
export function chunksOf(encoded: readonly EncodedTensor[]): TensorChunk[] {
  const chunks: TensorChunk[] = [];
  encoded
    .filter((e) => e.rest.length > 0)
    .forEach((e, tensorIndex) => {
      let offset = e.tensor.data.length;
      for (const data of e.rest) {
        chunks.push(create(TensorChunkSchema, { tensorIndex, offset, data }));
        offset += data.length;
      }
    });
  return chunks;
}

/**
 * Decodes a complete wire tensor into an onnxruntime tensor. The bytes are copied first:
 * protobuf-es hands out unaligned views into the receive buffer.
 */
export function decodeTensor(wire: WireTensor, name: string): Tensor {
  const size = elementBytes(wire.dtype);
  const count = wire.shape.reduce((a, b) => a * b, 1);
  if (wire.data.length !== count * size) {
    throw new WireFormatError(
      `tensor ${name} has ${wire.data.length} bytes, but shape [${wire.shape.join(',')}] of ${DataType[wire.dtype]} needs ${count * size}`,
    );
  }
  const copy = new Uint8Array(wire.data.length);
  copy.set(wire.data);
  const type = BY_WIRE[wire.dtype]!.type;
  switch (type) {
    case 'float32':
      return new Tensor('float32', new Float32Array(copy.buffer), [...wire.shape]);
    case 'float16':
      return new Tensor('float16', new Uint16Array(copy.buffer), [...wire.shape]);
    case 'int64':
      return new Tensor('int64', new BigInt64Array(copy.buffer), [...wire.shape]);
    case 'int32':
      return new Tensor('int32', new Int32Array(copy.buffer), [...wire.shape]);
    case 'uint8':
      return new Tensor('uint8', copy, [...wire.shape]);
  }
}

interface Pending {
  tensor: WireTensor;
  buffer: Uint8Array;
  filled: number;
  piecesLeft: number;
}

/**
 * Reassembles frames whose tensors arrive in chunks. `push` returns a frame once all of its
 * tensors are whole, and throws WireFormatError for anything out of order or inconsistent.
 */
export class FrameAssembler<F> {
  private frame?: F;
  private pending: Pending[] = [];

  constructor(
    private readonly tensorsOf: (frame: F) => (WireTensor | undefined)[],
    private readonly chunkOf: (frame: F) => TensorChunk | undefined,
    private readonly maxTensorBytes: number,
  ) {}

  push(frame: F): F | undefined {
    const chunk = this.chunkOf(frame);
    if (chunk) return this.pushChunk(chunk);
    if (this.frame) throw new WireFormatError('a new frame arrived before the chunks of the previous one');
    this.pending = [];
    for (const tensor of this.tensorsOf(frame)) {
      if (!tensor) continue;
      const size = elementBytes(tensor.dtype);
      const expected = tensor.shape.reduce((a, b) => a * b, 1) * size;
      if (expected > this.maxTensorBytes)
        throw new WireFormatError(`tensor of ${expected} bytes exceeds the limit of ${this.maxTensorBytes}`);
      const pieces = Math.max(1, tensor.chunkCount);
      if (tensor.byteLength !== expected && !(pieces === 1 && tensor.byteLength === 0)) {
        throw new WireFormatError(
          `tensor declares ${tensor.byteLength} bytes, but shape [${tensor.shape.join(',')}] of ${DataType[tensor.dtype]} needs ${expected}`,
        );
      }
      if (pieces === 1) {
        if (tensor.data.length !== expected) {
          throw new WireFormatError(
            `tensor has ${tensor.data.length} bytes, but shape [${tensor.shape.join(',')}] of ${DataType[tensor.dtype]} needs ${expected}`,
          );
        }
        continue;
      }
      if (tensor.data.length >= expected) throw new WireFormatError(`tensor in ${pieces} chunks already holds all its bytes in the first`);
      const buffer = new Uint8Array(expected);
      buffer.set(tensor.data);
      this.pending.push({ tensor, buffer, filled: tensor.data.length, piecesLeft: pieces - 1 });
    }
    if (this.pending.length === 0) return frame;
    this.frame = frame;
    return undefined;
  }

  private pushChunk(chunk: TensorChunk): F | undefined {
    if (!this.frame) throw new WireFormatError('a tensor chunk arrived with no chunked tensor pending');
    const target = this.pending[chunk.tensorIndex];
    if (!target) throw new WireFormatError(`chunk for tensor ${chunk.tensorIndex}, but only ${this.pending.length} are chunked`);
    const previous = this.pending.slice(0, chunk.tensorIndex);
    if (previous.some((p) => p.piecesLeft > 0))
      throw new WireFormatError(`chunk for tensor ${chunk.tensorIndex} before tensor ${chunk.tensorIndex - 1} was complete`);
    if (chunk.offset !== target.filled) throw new WireFormatError(`chunk at offset ${chunk.offset}, expected ${target.filled}`);
    if (target.piecesLeft === 0 || target.filled + chunk.data.length > target.buffer.length) {
      throw new WireFormatError(`chunks of tensor ${chunk.tensorIndex} overrun its ${target.buffer.length} bytes`);
    }
    target.buffer.set(chunk.data, target.filled);
    target.filled += chunk.data.length;
    target.piecesLeft -= 1;
    if (target.piecesLeft === 0 && target.filled !== target.buffer.length) {
      throw new WireFormatError(`tensor ${chunk.tensorIndex} ended at ${target.filled} of ${target.buffer.length} bytes`);
    }
    if (this.pending.some((p) => p.piecesLeft > 0)) return undefined;
    for (const p of this.pending) {
      p.tensor.data = p.buffer;
      p.tensor.chunkCount = 1;
    }
    const frame = this.frame;
    this.frame = undefined;
    this.pending = [];
    return frame;
  }
}
