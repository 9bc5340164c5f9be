#!/usr/bin/env node
/**
 * Scores model outputs with the Shapes-world library (the quality table of lavida-o-mini).
 *
 *   node libs/world/dist/cli/score.js --results FILE.jsonl --images FILE.u8 [--baseline-samples 2000]
 *                                     [--baseline-seed 0] [--per-line OUT.jsonl]
 *
 * `--images` is raw uint8 RGB, N x 64 x 64 x 3 (no header); an `image` field is an index into it.
 * One JSON object per results line, by `task`:
 *   t2i       { mode, category, prompt, image, rounds? }   prompt = the text the model got, micro-conditioning included
 *   plan      { category, prompt, layout: [{ colour, shape, box }] | null }
 *   ground    { steps, ref, box: [x1, y1, x2, y2] | null, truth }
 *   answer    { kind, question, predicted, expected }
 *   edit      { kind, instruction, before: Scene, image }
 *   reflect   { set, prompt, predicted, image }         truth = reflect(prompt, readImage(image))
 *   readback  { image, scene }                           decoded image vs the true scene
 * Prints one JSON object: per mode / category / kind means, clean-scene share, objects per image,
 * counts, and the prompt-blind baseline.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CANVAS } from '../scene.js';
import { Scorer, type ResultLine } from '../scoring.js';

const usage =
  'usage: node libs/world/dist/cli/score.js --results FILE.jsonl --images FILE.u8 [--baseline-samples N] [--baseline-seed S] [--per-line OUT.jsonl]';
const IMAGE_BYTES = CANVAS * CANVAS * 3;

function main(): void {
  const { values } = parseArgs({
    options: {
      results: { type: 'string' },
      images: { type: 'string' },
      'baseline-samples': { type: 'string' },
      'baseline-seed': { type: 'string' },
      'per-line': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help === true) {
    console.log(usage);
    return;
  }
  if (values.results === undefined || values.images === undefined) throw new Error(usage);
  const images = readFileSync(values.images);
  if (images.length % IMAGE_BYTES !== 0) throw new Error(`${values.images}: size is not a multiple of ${IMAGE_BYTES}`);
  const imageCount = images.length / IMAGE_BYTES;
  const scorer = new Scorer(
    Array.from({ length: imageCount }, (_, i) => new Uint8Array(images.buffer, images.byteOffset + i * IMAGE_BYTES, IMAGE_BYTES)),
  );
  const perLine: unknown[] = [];
  const lines = readFileSync(values.results, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
  for (const [n, line] of lines.entries()) {
    const r = JSON.parse(line) as ResultLine;
    const score = scorer.add(r, n);
    if (values['per-line'] !== undefined) perLine.push({ line: n, task: r.task, ...score });
  }

  const out = scorer.scores(Number(values['baseline-samples'] ?? 2000), Number(values['baseline-seed'] ?? 0));
  if (values['per-line'] !== undefined) writeFileSync(values['per-line'], perLine.map((p) => JSON.stringify(p)).join('\n') + '\n');
  console.log(JSON.stringify(out));
}

try {
  main();
} catch (err) {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
}
