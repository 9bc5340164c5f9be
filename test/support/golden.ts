import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor } from '@lavida/model';

interface JsonTensor {
  dtype: 'float32' | 'int64' | 'uint8';
  shape: number[];
  data: string;
}

export interface GoldenCase {
  name: string;
  inputs: Record<string, Tensor>;
  outputs: Record<string, Tensor>;
}

function toTensor(t: JsonTensor): Tensor {
  const bytes = Buffer.from(t.data, 'base64');
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  switch (t.dtype) {
    case 'float32':
      return new Tensor('float32', new Float32Array(copy.buffer), t.shape);
    case 'int64':
      return new Tensor('int64', new BigInt64Array(copy.buffer), t.shape);
    case 'uint8':
      return new Tensor('uint8', copy, t.shape);
  }
}

/** Reads a package's golden.json (written by the PyTorch exporter). */
export function readGolden(modelDir: string): GoldenCase[] {
  const raw = JSON.parse(readFileSync(join(modelDir, 'golden.json'), 'utf8')) as {
    cases: { name: string; inputs: Record<string, JsonTensor>; outputs: Record<string, JsonTensor> }[];
  };
  const map = (o: Record<string, JsonTensor>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, toTensor(v)]));
  return raw.cases.map((c) => ({ name: c.name, inputs: map(c.inputs), outputs: map(c.outputs) }));
}

/** Largest absolute difference between two tensors of the same shape. */
export function maxAbsDiff(a: Tensor, b: Tensor): number {
  if (a.dims.join() !== b.dims.join()) throw new Error(`shape [${a.dims.join(',')}] vs [${b.dims.join(',')}]`);
  const x = a.data as ArrayLike<number | bigint>;
  const y = b.data as ArrayLike<number | bigint>;
  let max = 0;
  for (let i = 0; i < x.length; i++) max = Math.max(max, Math.abs(Number(x[i]) - Number(y[i])));
  return max;
}
