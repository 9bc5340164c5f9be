import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { JobView } from '@lavida/client';
import { parseCommandLine, resolveUrl, UsageError } from './args.js';
import { bar, formatProgress, progressState } from './progress.js';

describe('lavida command line', () => {
  it('builds each task input, numbers as numbers, repeatable --ref', () => {
    assert.deepEqual(
      parseCommandLine([
        'submit',
        'text-to-image',
        '--prompt',
        'a red circle',
        '--seed',
        '1',
        '--steps',
        '2',
        '--guidance',
        '2.5',
        '--plan',
        '--wait',
      ]).command,
      {
        kind: 'submit',
        task: 'text-to-image',
        input: { prompt: 'a red circle', seed: 1, steps: 2, guidance: 2.5, plan: true },
        imagePath: undefined,
        wait: true,
        out: undefined,
        timeoutMs: undefined,
      },
    );
    const ground = parseCommandLine(['submit', 'ground', '--image', 'x.png', '--ref', 'a', '--ref', 'b']).command;
    assert.ok(ground.kind === 'submit');
    assert.deepEqual(ground.input, { refs: ['a', 'b'] });
    assert.equal(ground.imagePath, 'x.png');
    const understand = parseCommandLine(['submit', 'understand', '--image', 'x.png', '--prompt-cache']).command;
    assert.ok(understand.kind === 'submit');
    assert.deepEqual(understand.input, { question: 'describe the image.', prompt_cache: true });
    const edit = parseCommandLine([
      'submit',
      'edit',
      '--image',
      'x.png',
      '--instruction',
      'make it blue',
      '--image-guidance',
      '1.5',
      '--correction-sweeps',
      '0',
    ]).command;
    assert.ok(edit.kind === 'submit');
    assert.deepEqual(edit.input, { instruction: 'make it blue', image_guidance: 1.5, correction_sweeps: 0 });
    const respond = parseCommandLine([
      'submit',
      'respond',
      '--prompt',
      'a blue circle',
      '--seed',
      '3',
      '--luminance',
      '0.5',
      '--cfg-interval',
      '0.25, 1',
      '--wait',
    ]).command;
    assert.ok(respond.kind === 'submit');
    assert.equal(respond.task, 'respond');
    assert.deepEqual(respond.input, { prompt: 'a blue circle', seed: 3, luminance: 0.5, cfg_interval: [0.25, 1] });
    assert.equal(respond.imagePath, undefined);
    // Ranges are the api's to check (it names the field): --steps 0 passes.
    const zero = parseCommandLine(['submit', 'text-to-image', '--prompt', 'x', '--steps', '0']).command;
    assert.ok(zero.kind === 'submit');
    assert.equal(zero.input.steps, 0);
    // Scheduling options on every task: --priority and --deadline (seconds) as the api's fields.
    const scheduled = parseCommandLine(['submit', 'understand', '--image', 'x.png', '--priority', '1', '--deadline', '30']).command;
    assert.ok(scheduled.kind === 'submit');
    assert.deepEqual(scheduled.input, { question: 'describe the image.', priority: 1, deadline_seconds: 30 });
    assert.throws(
      () => parseCommandLine(['submit', 'text-to-image', '--prompt', 'x', '--priority', 'high']),
      /--priority must be a number/,
    );
    assert.throws(() => parseCommandLine(['get', 'abc', '--priority', '1']), /get does not take --priority/);
  });

  it('parses get, wait, cancel, list and --url', () => {
    assert.deepEqual(parseCommandLine(['get', 'abc', '--url', 'http://h:1']), { command: { kind: 'get', id: 'abc' }, url: 'http://h:1' });
    assert.deepEqual(parseCommandLine(['wait', 'abc', '--out', 'o', '--timeout', '1.5']).command, {
      kind: 'wait',
      id: 'abc',
      out: 'o',
      timeoutMs: 1500,
    });
    assert.deepEqual(parseCommandLine(['cancel', 'abc']).command, { kind: 'cancel', id: 'abc' });
    assert.deepEqual(parseCommandLine(['list', '--status', 'failed', '--limit', '5']).command, {
      kind: 'list',
      status: 'failed',
      task: undefined,
      limit: 5,
    });
    assert.deepEqual(parseCommandLine(['--help']).command, { kind: 'help' });
  });

  it('refuses wrong command lines with a UsageError', () => {
    const wrong = [
      [],
      ['frobnicate'],
      ['submit'],
      ['submit', 'paint', '--prompt', 'x'],
      ['submit', 'text-to-image'],
      ['submit', 'text-to-image', '--prompt', 'x', '--ref', 'a'],
      ['submit', 'text-to-image', '--prompt', 'x', '--seed', 'one'],
      ['submit', 'text-to-image', '--prompt', 'x', '--out', 'o'],
      ['submit', 'text-to-image', '--prompt', 'x', '--cfg-interval', '0.5'],
      ['submit', 'text-to-image', '--prompt', 'x', '--cfg-interval', '0,0.5,1'],
      ['submit', 'text-to-image', '--prompt', 'x', '--cfg-interval', 'late,1'],
      // An edit guides every step: it takes no interval.
      ['submit', 'edit', '--image', 'x.png', '--instruction', 'x', '--cfg-interval', '0.25,1'],
      ['submit', 'edit', '--instruction', 'x'],
      ['submit', 'ground', '--image', 'x.png'],
      ['submit', 'respond'],
      ['submit', 'respond', '--prompt', 'x', '--image', 'x.png'],
      ['submit', 'respond', '--prompt', 'x', '--plan'],
      ['get'],
      ['get', 'a', 'b'],
      ['cancel', 'a', '--wait'],
      ['list', '--limit', '0'],
      ['list', '--bogus'],
      ['wait', 'a', '--timeout', '-1'],
    ];
    for (const argv of wrong) assert.throws(() => parseCommandLine(argv), UsageError, argv.join(' '));
  });

  it('takes the url from --url, else LAVIDA_URL, else the default', () => {
    assert.equal(resolveUrl('http://a:1', { LAVIDA_URL: 'http://b:2' }), 'http://a:1');
    assert.equal(resolveUrl(undefined, { LAVIDA_URL: 'http://b:2' }), 'http://b:2');
    assert.equal(resolveUrl(undefined, {}), 'http://127.0.0.1:8080');
    assert.throws(() => resolveUrl('ftp://x', {}), UsageError);
  });

  it('shows the running stage with its round, step/steps and a bar', () => {
    const job = {
      id: 'j1',
      status: 'processing',
      progress: { stage: 'generate', step: 6, steps: 12 },
      timeline: [
        { stage: 'generate', round: 1, status: 'succeeded', progress: { stage: 'generate', step: 12, steps: 12 } },
        { stage: 'reflect', round: 1, status: 'succeeded', progress: 0 },
        { stage: 'generate', round: 2, status: 'processing', progress: { stage: 'generate', step: 6, steps: 12 } },
      ],
    } as unknown as JobView;
    const state = progressState(job);
    assert.deepEqual(state, { status: 'processing', stage: 'generate #2', step: 6, steps: 12 });
    assert.equal(bar(6, 12, 10), '[#####-----]');
    const id = '845df30c-d327-4adf-984a-9d66cc3ed6f8';
    assert.equal(formatProgress(id, state, 1500, true), `job 845df30c  processing  generate #2  ${bar(6, 12)} 6/12  1.5s`);
    assert.equal(formatProgress(id, state, 1500, false), `job ${id}  processing  generate #2  6/12 (50%)  1.5s`);
    assert.equal(formatProgress('j1', { status: 'queued' }, 0, false), 'job j1  queued  0.0s');
  });
});
