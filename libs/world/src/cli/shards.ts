#!/usr/bin/env node
/**
 * Writes a training shard of Shapes world samples (format: libs/world/README.md).
 *
 *   node libs/world/dist/cli/shards.js --out DIR [--seed S] --count N [--split train|eval] [--luminance-p P]
 *
 * Train seeds lie in [0, 1e9) and eval seeds in [1e9, ...); --seed defaults to the start of --split.
 */
import { parseArgs } from 'node:util';
import { writeShard } from '../shards.js';

const usage = 'usage: node libs/world/dist/cli/shards.js --out DIR [--seed S] --count N [--split train|eval] [--luminance-p P]';

function integer(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${value}`);
  return n;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      seed: { type: 'string' },
      count: { type: 'string' },
      split: { type: 'string' },
      'luminance-p': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help === true) {
    console.log(usage);
    return;
  }
  const count = integer('count', values.count);
  if (values.out === undefined || count === undefined) throw new Error(usage);
  if (values.split !== undefined && values.split !== 'train' && values.split !== 'eval') throw new Error(`--split must be train or eval`);
  const luminanceP = values['luminance-p'] === undefined ? undefined : Number(values['luminance-p']);
  if (luminanceP !== undefined && !(luminanceP >= 0 && luminanceP <= 1)) throw new Error('--luminance-p must be in [0, 1]');
  const started = Date.now();
  const meta = writeShard({
    out: values.out,
    seed: integer('seed', values.seed),
    count,
    split: values.split,
    luminanceP,
  });
  console.log(JSON.stringify({ ...meta, out: values.out, seconds: (Date.now() - started) / 1000 }));
}

try {
  main();
} catch (err) {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
}
