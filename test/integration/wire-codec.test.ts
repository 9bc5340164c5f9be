import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  create,
  DataType,
  ExchangeResponseSchema,
  fromBinary,
  TensorSchema,
  toBinary,
  type ExchangeResponse,
  type Tensor as WireTensor,
} from '@lavida/proto';
import { Tensor } from '@lavida/model';
import {
  chunkOf,
  chunksOf,
  decodeTensor,
  encodeTensor,
  FrameAssembler,
  responseTensors,
  WireFormatError,
  type EncodedTensor,
} from '@lavida/wire';

const MAX = 1 << 20;

/** The raw bytes behind a tensor, for bit-for-bit comparison. */
function bytesOf(tensor: Tensor): Buffer {
  const data = tensor.data as ArrayBufferView;
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Float32 values whose bits would not survive a numeric round trip: NaN payloads, -0, denormals. */
function float32(dims: number[], seed: number): Tensor {
  const count = dims.reduce((a, b) => a * b, 1);
  const bits = new Uint32Array(count);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bits[i] = x >>> 0;
  }
  bits[0] = 0x7fc0_1234; // NaN with a payload
  bits[1] = 0x8000_0000; // -0
  bits[2] = 0x0000_0001; // smallest denormal
  bits[3] = 0xff80_0000; // -Infinity
  return new Tensor('float32', new Float32Array(bits.buffer), dims);
}

function int64(dims: number[]): Tensor {
  const count = dims.reduce((a, b) => a * b, 1);
  const values = BigInt64Array.from({ length: count }, (_, i) => BigInt(i) * 0x1_0000_0001n - 7n);
  values[0] = -(2n ** 63n);
  values[count - 1] = 2n ** 63n - 1n;
  return new Tensor('int64', values, dims);
}

function uint8(dims: number[]): Tensor {
  const count = dims.reduce((a, b) => a * b, 1);
  return new Tensor(
    'uint8',
    Uint8Array.from({ length: count }, (_, i) => (i * 37 + 11) & 0xff),
    dims,
  );
}

/** Through protobuf bytes and back: what the receiver really gets (views into one receive buffer). */
function overTheWire(frame: ExchangeResponse): ExchangeResponse {
  const bytes = toBinary(ExchangeResponseSchema, frame);
  // Odd offset, so the decoded `data` views are unaligned for float32 and int64.
  const padded = new Uint8Array(bytes.length + 1);
  padded.set(bytes, 1);
  return fromBinary(ExchangeResponseSchema, padded.subarray(1));
}

/** Sends a projections frame of q, k, v through encode → chunks → wire → assembler; returns the decoded tensors. */
function roundTrip(q: Tensor, k: Tensor, v: Tensor, chunkBytes: number): { tensors: Tensor[]; messages: number; encoded: EncodedTensor[] } {
  const encoded = [q, k, v].map((t) => encodeTensor(t, chunkBytes));
  const frame = create(ExchangeResponseSchema, {
    frame: { case: 'projections', value: { step: 3, layer: 1, q: encoded[0].tensor, k: encoded[1].tensor, v: encoded[2].tensor } },
  });
  const messages = [frame, ...chunksOf(encoded).map((value) => create(ExchangeResponseSchema, { frame: { case: 'chunk', value } }))];
  const assembler = new FrameAssembler<ExchangeResponse>(responseTensors, chunkOf, MAX);
  let complete: ExchangeResponse | undefined;
  messages.forEach((message, i) => {
    const result = assembler.push(overTheWire(message));
    if (i < messages.length - 1) assert.equal(result, undefined, `frame complete after message ${i + 1} of ${messages.length}`);
    else complete = result;
  });
  assert.ok(complete, 'the last message completes the frame');
  assert.equal(complete.frame.case, 'projections');
  const p = complete.frame.value;
  assert.equal(p.step, 3);
  assert.equal(p.layer, 1);
  return { tensors: [decodeTensor(p.q!, 'q'), decodeTensor(p.k!, 'k'), decodeTensor(p.v!, 'v')], messages: messages.length, encoded };
}

function assertSame(actual: Tensor, expected: Tensor, what: string): void {
  assert.equal(actual.type, expected.type, `${what} type`);
  assert.deepEqual([...actual.dims], [...expected.dims], `${what} dims`);
  assert.ok(bytesOf(actual).equals(bytesOf(expected)), `${what} bytes differ`);
}

function wire(fields: Partial<Pick<WireTensor, 'dtype' | 'shape' | 'data' | 'chunkCount' | 'byteLength'>>): WireTensor {
  return create(TensorSchema, fields);
}

function projectionsFrame(q: WireTensor, k?: WireTensor, v?: WireTensor): ExchangeResponse {
  return create(ExchangeResponseSchema, { frame: { case: 'projections', value: { step: 0, layer: 0, q, k, v } } });
}

function chunkFrame(tensorIndex: number, offset: number, data: Uint8Array): ExchangeResponse {
  return create(ExchangeResponseSchema, { frame: { case: 'chunk', value: { tensorIndex, offset, data } } });
}

function assembler(max = MAX): FrameAssembler<ExchangeResponse> {
  return new FrameAssembler<ExchangeResponse>(responseTensors, chunkOf, max);
}

/** A 2-piece float32 [2,2] tensor (16 bytes): the first message holds 8 bytes. */
function twoPieceTensor(): { first: WireTensor; bytes: Uint8Array } {
  const bytes = Uint8Array.from({ length: 16 }, (_, i) => i);
  return { first: wire({ dtype: DataType.FLOAT32, shape: [2, 2], data: bytes.slice(0, 8), chunkCount: 2, byteLength: 16 }), bytes };
}

describe('tensor wire codec', () => {
  it('round-trips float32, int64 and uint8 tensors chunked over several messages, bit for bit', () => {
    const q = float32([2, 2, 16, 8], 1); // 2048 bytes
    const k = int64([2, 2, 16, 8]); // 4096 bytes
    const v = uint8([3, 333]); // 999 bytes
    const { tensors, messages, encoded } = roundTrip(q, k, v, 300);
    assert.deepEqual(
      encoded.map((e) => [e.tensor.chunkCount, e.tensor.byteLength, e.tensor.data.length, e.rest.length]),
      [
        [7, 2048, 300, 6],
        [14, 4096, 300, 13],
        [4, 999, 300, 3],
      ],
    );
    assert.equal(messages, 1 + 6 + 13 + 3);
    assertSame(tensors[0], q, 'q');
    assertSame(tensors[1], k, 'k');
    assertSame(tensors[2], v, 'v');
    assert.ok(Number.isNaN((tensors[0].data as Float32Array)[0]));
    assert.ok(Object.is((tensors[0].data as Float32Array)[1], -0));
    assert.equal((tensors[1].data as BigInt64Array)[0], -(2n ** 63n));
  });

  it('sends a tensor no bigger than the chunk size in one piece', () => {
    const q = float32([1, 2, 4, 8], 2); // 256 bytes
    const k = int64([1, 2, 4, 8]); // 512 bytes: exactly the chunk size
    const v = uint8([5]);
    const { tensors, messages, encoded } = roundTrip(q, k, v, 512);
    assert.equal(messages, 1);
    assert.deepEqual(
      encoded.map((e) => [e.tensor.chunkCount, e.rest.length]),
      [
        [1, 0],
        [1, 0],
        [1, 0],
      ],
    );
    assertSame(tensors[0], q, 'q');
    assertSame(tensors[1], k, 'k');
    assertSame(tensors[2], v, 'v');
  });

  it('numbers chunks among the chunked tensors of a frame only', () => {
    const q = uint8([10]); // one piece
    const k = float32([64], 3); // 256 bytes: 3 pieces of 100
    const v = int64([20]); // 160 bytes: 2 pieces
    const encoded = [q, k, v].map((t) => encodeTensor(t, 100));
    const chunks = chunksOf(encoded);
    assert.deepEqual(
      chunks.map((c) => [c.tensorIndex, c.offset, c.data.length]),
      [
        [0, 100, 100],
        [0, 200, 56],
        [1, 100, 60],
      ],
    );
    const { tensors } = roundTrip(q, k, v, 100);
    assertSame(tensors[0], q, 'q');
    assertSame(tensors[1], k, 'k');
    assertSame(tensors[2], v, 'v');
  });

  it('decodes from an unaligned view, copying the bytes', () => {
    const original = float32([3, 5], 9);
    const raw = bytesOf(original);
    const backing = new Uint8Array(raw.length + 3);
    backing.set(raw, 3);
    const view = backing.subarray(3);
    assert.notEqual(view.byteOffset % 4, 0);
    const decoded = decodeTensor(wire({ dtype: DataType.FLOAT32, shape: [3, 5], data: view, byteLength: raw.length }), 'x');
    assertSame(decoded, original, 'x');
    backing.fill(0);
    assertSame(decoded, original, 'x after the source buffer changed');

    const ids = int64([2, 3]);
    const idBytes = bytesOf(ids);
    const idBacking = new Uint8Array(idBytes.length + 5);
    idBacking.set(idBytes, 5);
    assertSame(decodeTensor(wire({ dtype: DataType.INT64, shape: [2, 3], data: idBacking.subarray(5) }), 'ids'), ids, 'ids');
  });

  describe('rejects with WireFormatError', () => {
    it('data whose length does not match shape × dtype', () => {
      const data = new Uint8Array(12);
      assert.throws(
        () => decodeTensor(wire({ dtype: DataType.FLOAT32, shape: [2, 2], data }), 'partial.out'),
        (error: Error) => {
          assert.ok(error instanceof WireFormatError, String(error));
          assert.match(error.message, /tensor partial\.out has 12 bytes, but shape \[2,2\] of FLOAT32 needs 16/);
          return true;
        },
      );
      assert.throws(
        () => assembler().push(projectionsFrame(wire({ dtype: DataType.INT64, shape: [3], data: new Uint8Array(16) }))),
        (error: Error) => {
          assert.ok(error instanceof WireFormatError, String(error));
          assert.match(error.message, /has 16 bytes, but shape \[3\] of INT64 needs 24/);
          return true;
        },
      );
    });

    it('byte_length disagreeing with the shape', () => {
      const frame = projectionsFrame(wire({ dtype: DataType.FLOAT32, shape: [2, 2], data: new Uint8Array(16), byteLength: 20 }));
      assert.throws(
        () => assembler().push(frame),
        (error: Error) => {
          assert.ok(error instanceof WireFormatError, String(error));
          assert.match(error.message, /declares 20 bytes, but shape \[2,2\] of FLOAT32 needs 16/);
          return true;
        },
      );
      const chunked = projectionsFrame(
        wire({ dtype: DataType.UINT8, shape: [100], data: new Uint8Array(50), chunkCount: 2, byteLength: 120 }),
      );
      assert.throws(() => assembler().push(chunked), /declares 120 bytes, but shape \[100\] of UINT8 needs 100/);
    });

    it('DATA_TYPE_UNSPECIFIED (and BFLOAT16, which the codec does not carry)', () => {
      for (const dtype of [DataType.UNSPECIFIED, DataType.BFLOAT16]) {
        const tensor = wire({ dtype, shape: [2], data: new Uint8Array(4) });
        assert.throws(
          () => decodeTensor(tensor, 't'),
          (error: Error) => {
            assert.ok(error instanceof WireFormatError, String(error));
            assert.match(error.message, new RegExp(`dtype ${DataType[dtype]} is not supported`));
            return true;
          },
        );
        assert.throws(
          () => assembler().push(projectionsFrame(tensor)),
          (error: Error) => error instanceof WireFormatError && /not supported/.test(error.message),
        );
      }
    });

    it('a chunk with no chunked tensor pending', () => {
      assert.throws(
        () => assembler().push(chunkFrame(0, 0, new Uint8Array(4))),
        (error: Error) => {
          assert.ok(error instanceof WireFormatError, String(error));
          assert.match(error.message, /a tensor chunk arrived with no chunked tensor pending/);
          return true;
        },
      );
      // Also after a frame that was whole in one message.
      const a = assembler();
      assert.ok(a.push(projectionsFrame(wire({ dtype: DataType.UINT8, shape: [4], data: new Uint8Array(4) }))));
      assert.throws(() => a.push(chunkFrame(0, 4, new Uint8Array(4))), /no chunked tensor pending/);
    });

    it('a chunk at the wrong offset', () => {
      const { first, bytes } = twoPieceTensor();
      const a = assembler();
      assert.equal(a.push(projectionsFrame(first)), undefined);
      assert.throws(
        () => a.push(chunkFrame(0, 4, bytes.slice(8))),
        (error: Error) => {
          assert.ok(error instanceof WireFormatError, String(error));
          assert.match(error.message, /chunk at offset 4, expected 8/);
          return true;
        },
      );
    });

    it('a chunk for a tensor that is not chunked, or out of tensor order', () => {
      const { first, bytes } = twoPieceTensor();
      const a = assembler();
      assert.equal(a.push(projectionsFrame(first)), undefined);
      assert.throws(() => a.push(chunkFrame(1, 8, bytes.slice(8))), /chunk for tensor 1, but only 1 are chunked/);

      const b = assembler();
      assert.equal(b.push(projectionsFrame(twoPieceTensor().first, twoPieceTensor().first)), undefined);
      assert.throws(() => b.push(chunkFrame(1, 8, bytes.slice(8))), /chunk for tensor 1 before tensor 0 was complete/);
    });

    it('a new frame before the chunks of the previous one are done', () => {
      const { first } = twoPieceTensor();
      const a = assembler();
      assert.equal(a.push(projectionsFrame(first)), undefined);
      assert.throws(
        () => a.push(projectionsFrame(wire({ dtype: DataType.UINT8, shape: [1], data: new Uint8Array(1) }))),
        (error: Error) => {
          assert.ok(error instanceof WireFormatError, String(error));
          assert.match(error.message, /a new frame arrived before the chunks of the previous one/);
          return true;
        },
      );
    });

    it('a tensor above the maximum size, before any of it is buffered', () => {
      const frame = projectionsFrame(
        wire({ dtype: DataType.FLOAT32, shape: [1024, 1024], data: new Uint8Array(16), chunkCount: 9999, byteLength: 4 * 1024 * 1024 }),
      );
      assert.throws(
        () => assembler(1024 * 1024).push(frame),
        (error: Error) => {
          assert.ok(error instanceof WireFormatError, String(error));
          assert.match(error.message, /tensor of 4194304 bytes exceeds the limit of 1048576/);
          return true;
        },
      );
      // The limit itself is allowed.
      const atLimit = encodeTensor(uint8([1024]), 4096);
      assert.ok(assembler(1024).push(projectionsFrame(atLimit.tensor)));
    });

    it('a tensor type the wire cannot carry', () => {
      assert.throws(
        () => encodeTensor(new Tensor('bool', new Uint8Array(2), [2]), 1024),
        (error: Error) => {
          assert.ok(error instanceof WireFormatError, String(error));
          assert.match(error.message, /tensor type bool cannot travel/);
          return true;
        },
      );
    });
  });
});
