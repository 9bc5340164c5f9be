#!/usr/bin/env node
/**
 * The served model's quality table: the protocol of model/lavida_mini/evaluate.py (mini-GenEval plain /
 * plan / plan + reflection, LUMINANCE, plans, grounding in 1 and 4 steps, answers per question kind,
 * edits per kind, reflection agreement on eval and own images, tokenizer read-back) run through the
 * real serving stack (a Redis, the und-worker and gen-worker processes, BullMQ stage jobs, images as
 * artefacts in Redis), scored in-process by the world library, and compared number by number with
 * the PyTorch evaluator's model/quality.json.
 *
 *   npm run eval:served -- [--prompts 50] [--samples 400] [--out eval/served-quality.json] [--model models/lavida-o-mini]
 *
 * More options: --shard DIR (/tmp/shards/eval, built when missing), --reference FILE (model/quality.json),
 * --parts t2i,ground,answer,edit,reflect,readback, --in-flight 4 (stage jobs in flight, split between
 * the two queues), --workdir DIR (results.jsonl + images.u8 for score.js), --check-scorer (also run
 * libs/world/dist/cli/score.js on them and require the same scores), --torch-workdir DIR (an
 * evaluate.py --workdir of the same settings: share of outputs identical to PyTorch's), --timeout-min 240 (watchdog),
 * --stall-min 15 (abort when no job finishes for this long), --verbose (worker logs to stderr); sampler
 * overrides --steps, --guidance (every image), --plan-guidance, --feedback-guidance, --temperature,
 * --edit-guidance, --edit-temperature (default: the package's manifest).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { isDeepStrictEqual, parseArgs } from 'node:util';
import { REPO_ROOT } from '@lavida/config';
import { ModelPackage, modelGuidance } from '@lavida/model';
import { EVAL_SEED_START, readShard, writeShard, type SampleRecord } from '@lavida/world';
import { compareWithTorch } from './lines.js';
import { compare, markdown } from './report.js';
import { PARTS, runProtocol, type Part, type ProtocolSettings } from './protocol.js';
import { scoreLines, type Scores } from './scoring.js';
import { killAll, StageClient, startRedis, startWorkers, type RedisHandle, type Stack } from './stack.js';

const usage =
  'usage: npm run eval:served -- [--prompts 50] [--samples 400] [--out eval/served-quality.json] [--model models/lavida-o-mini] (see eval/served.ts)';

const T2I_PARTS = ['t2i_plain', 'plan', 't2i_plan', 't2i_reflect'];

function options() {
  const { values } = parseArgs({
    options: {
      prompts: { type: 'string', default: '50' },
      samples: { type: 'string', default: '400' },
      out: { type: 'string', default: 'eval/served-quality.json' },
      model: { type: 'string', default: 'models/lavida-o-mini' },
      shard: { type: 'string', default: '/tmp/shards/eval' },
      reference: { type: 'string', default: 'model/quality.json' },
      parts: { type: 'string', default: PARTS.join(',') },
      'images-per-prompt': { type: 'string', default: '4' },
      rounds: { type: 'string', default: '3' },
      steps: { type: 'string' },
      guidance: { type: 'string' },
      'plan-guidance': { type: 'string' },
      'feedback-guidance': { type: 'string' },
      'edit-guidance': { type: 'string' },
      'edit-temperature': { type: 'string' },
      temperature: { type: 'string' },
      'feedback-with-plan': { type: 'boolean', default: false },
      'in-flight': { type: 'string', default: '4' },
      'baseline-samples': { type: 'string', default: '2000' },
      workdir: { type: 'string', default: '/tmp/lavida-eval-served' },
      'check-scorer': { type: 'boolean', default: false },
      'torch-workdir': { type: 'string' },
      'timeout-min': { type: 'string', default: '240' },
      'stall-min': { type: 'string', default: '15' },
      'job-timeout-s': { type: 'string', default: '900' },
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  const int = (name: keyof typeof values, min: number) => {
    const v = Number(values[name]);
    if (!Number.isInteger(v) || v < min) throw new Error(`--${name} must be an integer >= ${min}, got ${String(values[name])}`);
    return v;
  };
  const parts = new Set(values.parts.split(',').map((p) => p.trim()) as Part[]);
  for (const p of parts) if (!(PARTS as readonly string[]).includes(p)) throw new Error(`unknown part ${p} (parts: ${PARTS.join(', ')})`);
  const abs = (p: string) => resolve(process.cwd(), p);
  return {
    prompts: int('prompts', 1),
    samples: int('samples', 1),
    out: abs(values.out),
    model: abs(values.model),
    shard: abs(values.shard),
    reference: abs(values.reference),
    parts,
    imagesPerPrompt: int('images-per-prompt', 1),
    rounds: int('rounds', 1),
    steps: values.steps === undefined ? undefined : int('steps', 1),
    guidance: values.guidance === undefined ? undefined : Number(values.guidance),
    planGuidance: values['plan-guidance'] === undefined ? undefined : Number(values['plan-guidance']),
    feedbackGuidance: values['feedback-guidance'] === undefined ? undefined : Number(values['feedback-guidance']),
    editGuidance: values['edit-guidance'] === undefined ? undefined : Number(values['edit-guidance']),
    editTemperature: values['edit-temperature'] === undefined ? undefined : Number(values['edit-temperature']),
    temperature: values.temperature === undefined ? undefined : Number(values.temperature),
    feedbackWithPlan: values['feedback-with-plan'],
    inFlight: int('in-flight', 2),
    baselineSamples: int('baseline-samples', 0),
    workdir: abs(values.workdir),
    checkScorer: values['check-scorer'],
    torchWorkdir: values['torch-workdir'] === undefined ? undefined : abs(values['torch-workdir']),
    timeoutMs: int('timeout-min', 1) * 60_000,
    stallMs: int('stall-min', 1) * 60_000,
    jobTimeoutMs: int('job-timeout-s', 10) * 1000,
    verbose: values.verbose,
  };
}

/** The commit and the uncommitted files of the runtime and the model (what the served numbers depend on). */
function gitState(): { commit: string; dirty: string[] } | null {
  const git = (...args: string[]) => spawnSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8' });
  const head = git('rev-parse', 'HEAD');
  if (head.status !== 0) return null;
  const status = git('status', '--porcelain', '--', 'libs', 'apps', 'models');
  return { commit: head.stdout.trim(), dirty: status.stdout.split('\n').filter((l) => l.trim() !== '') };
}

/** JSON in the repository's prettier style (so `npm run format:check` passes on the output), or as is without prettier. */
async function formatJson(path: string, text: string): Promise<string> {
  try {
    const prettier = await import('prettier');
    return await prettier.format(text, { ...((await prettier.resolveConfig(path)) ?? {}), filepath: path });
  } catch {
    return text;
  }
}

const log = (msg: string) => process.stderr.write(`[eval ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const secs = (ms: number) => Math.round(ms / 100) / 10;
/** A path relative to the repository when inside it, else absolute. */
const shown = (p: string) => (p.startsWith(REPO_ROOT + '/') ? relative(REPO_ROOT, p) : p);

async function main(): Promise<number> {
  const o = options();
  const t0 = performance.now();
  const timings: Record<string, number> = {};
  // The code and model state the workers load, taken before they start.
  const git = gitState();

  // Watchdog: the whole run, stalls, and worker processes that die.
  let fail: (error: Error) => void = () => undefined;
  const watchdog = new Promise<never>((_, reject) => (fail = reject));
  watchdog.catch(() => undefined);
  const overall = setTimeout(() => fail(new Error(`watchdog: the run exceeded --timeout-min ${o.timeoutMs / 60_000}`)), o.timeoutMs);
  overall.unref();

  // Eval data: the shard (built when missing), held out.
  if (!existsSync(join(o.shard, 'samples.jsonl'))) {
    log(`building the eval shard at ${o.shard} (2000 samples, seeds from ${EVAL_SEED_START})`);
    writeShard({ out: o.shard, split: 'eval', count: 2000 });
  }
  const shard = readShard(o.shard);
  const samples: SampleRecord[] = shard.samples;
  if (Math.min(...samples.map((r) => r.seed)) < EVAL_SEED_START) throw new Error('eval data must be held out (seeds >= 1e9)');
  const reference = existsSync(o.reference) ? (JSON.parse(readFileSync(o.reference, 'utf8')) as Record<string, unknown>) : undefined;

  // The package in-process for the tokenizer read-back (and its manifest for the settings).
  const pkg = await ModelPackage.load(o.model, { branch: 'gen' });
  const { manifest } = pkg;
  const settings: ProtocolSettings = {
    prompts: o.prompts,
    imagesPerPrompt: o.imagesPerPrompt,
    samples: Math.min(o.samples, samples.length),
    rounds: o.rounds,
    steps: o.steps ?? manifest.sampling.steps,
    guidance: o.guidance ?? manifest.sampling.guidance,
    planGuidance: o.planGuidance ?? o.guidance ?? modelGuidance(manifest.sampling, 'plan'),
    feedbackGuidance: o.feedbackGuidance ?? o.guidance ?? modelGuidance(manifest.sampling, 'feedback'),
    editGuidance: o.editGuidance ?? manifest.sampling.edit_guidance ?? manifest.sampling.guidance,
    editTemperature: o.editTemperature ?? manifest.sampling.edit_temperature ?? manifest.sampling.temperature,
    temperature: o.temperature ?? manifest.sampling.temperature,
    feedbackWithPlan: o.feedbackWithPlan,
    parts: o.parts,
  };

  let redis: RedisHandle | undefined;
  let stack: Stack | undefined;
  let client: StageClient | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    log(`${signal}: stopping`);
    killAll();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  let result: Awaited<ReturnType<typeof runProtocol>>;
  const inProcessMs: Record<string, number> = {};
  let jobsWallMs = 0;
  try {
    redis = await startRedis();
    log(`redis ${redis.url} (${redis.source}); starting und-worker and gen-worker on ${shown(o.model)}`);
    stack = await startWorkers({ modelDir: o.model, redisUrl: redis.url, verbose: o.verbose });
    for (const w of stack.workers) w.child.once('exit', () => fail(new Error(`${w.name} died (${w.exit ?? '?'}):\n${w.tail.join('\n')}`)));
    const inFlight = { generation: Math.ceil(o.inFlight / 2), understanding: Math.floor(o.inFlight / 2) };
    client = new StageClient(redis.url, stack.prefix, inFlight, o.jobTimeoutMs);
    await client.ready();
    timings.setup = performance.now() - t0;
    log(
      `workers consuming (prefix ${stack.prefix}); ${settings.prompts} prompts/category x ${settings.imagesPerPrompt}, ${settings.samples} samples, parts ${[...o.parts].join(',')}`,
    );

    const c = client;
    const started = performance.now();
    const ticker = setInterval(() => {
      const idle = Date.now() - c.lastProgress;
      if (idle > o.stallMs) fail(new Error(`watchdog: no stage job finished for ${Math.round(idle / 60_000)} min`));
      const parts = [...c.parts.entries()].map(([k, s]) => `${k} ${s.jobs}`).join(', ');
      log(`${secs(performance.now() - started)} s: ${c.finished} jobs done (${parts}); load ${loadavg()[0].toFixed(1)}`);
    }, 60_000);
    ticker.unref();
    try {
      result = await Promise.race([
        runProtocol({ client, samples, shardImage: shard.image, settings, pkg, locMax: manifest.text.loc_bins.count - 1, inProcessMs }),
        watchdog,
      ]);
    } finally {
      clearInterval(ticker);
    }
    jobsWallMs = performance.now() - started;
    log(`all jobs done in ${secs(jobsWallMs)} s (${client.finished} stage jobs, ${client.retried} retried)`);
  } finally {
    clearTimeout(overall);
    await client?.close(true).catch(() => undefined);
    await stack?.stop().catch(() => undefined);
    await redis?.stop().catch(() => undefined);
    await pkg.release().catch(() => undefined);
    killAll();
  }

  // Score in-process, keep the lines and images for score.js.
  const { store, info } = result;
  if (info.refused_regenerations?.length)
    log(`warning: ${info.refused_regenerations.length} regenerations refused (see info.refused_regenerations)`);
  if (info.t2i_text_as_prompt)
    log(`warning: ${info.t2i_text_as_prompt} t2i texts sent as the prompt (their {prompt, luminance} did not give the text)`);
  const s0 = performance.now();
  const scores = scoreLines(store.lines, store.images, o.baselineSamples);
  timings.score = performance.now() - s0;
  mkdirSync(o.workdir, { recursive: true });
  const resultsPath = join(o.workdir, 'results.jsonl');
  const imagesPath = join(o.workdir, 'images.u8');
  writeFileSync(resultsPath, store.lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  writeFileSync(imagesPath, Buffer.concat(store.images.map((im) => Buffer.from(im.buffer, im.byteOffset, im.byteLength))));
  let scorerCheck: string | undefined;
  if (o.checkScorer) {
    const cli = join(REPO_ROOT, 'libs', 'world', 'dist', 'cli', 'score.js');
    const run = spawnSync(
      process.execPath,
      [cli, '--results', resultsPath, '--images', imagesPath, '--baseline-samples', String(o.baselineSamples)],
      {
        encoding: 'utf8',
        maxBuffer: 64 * 1024 * 1024,
      },
    );
    if (run.status !== 0) throw new Error(`score.js failed: ${run.stderr}`);
    const cliScores = JSON.parse(run.stdout) as Scores;
    if (!isDeepStrictEqual(cliScores, JSON.parse(JSON.stringify(scores)))) {
      writeFileSync(join(o.workdir, 'score-cli.json'), JSON.stringify(cliScores, null, 1));
      throw new Error(`in-process scores differ from score.js's (see ${join(o.workdir, 'score-cli.json')})`);
    }
    scorerCheck = 'equal to libs/world/dist/cli/score.js on the same lines and images';
    log(`scorer check: ${scorerCheck}`);
  }
  const lineAgreement = o.torchWorkdir ? compareWithTorch(o.torchWorkdir, store) : undefined;
  timings.jobs_wall = jobsWallMs;
  timings.total = performance.now() - t0;

  // Per-part statistics and the full-run estimate (worker time scaled to 50 prompts / 400 samples).
  const partTimings: Record<string, { jobs: number; worker_s: number; span_s: number }> = {};
  let workerMs = 0;
  let scaledMs = 0;
  const ranPrompts = info.t2i?.prompts ?? 0;
  const promptScale = ranPrompts > 0 ? (50 * 6) / ranPrompts : 1;
  const sampleScale = 400 / settings.samples;
  for (const [part, s] of client.parts) {
    partTimings[part] = { jobs: s.jobs, worker_s: secs(s.workerMs), span_s: secs(s.lastFinish - s.firstSubmit) };
    workerMs += s.workerMs;
    scaledMs += s.workerMs * (T2I_PARTS.includes(part) ? promptScale : sampleScale);
  }
  for (const [part, ms] of Object.entries(inProcessMs)) partTimings[part] = { jobs: 0, worker_s: secs(ms), span_s: secs(ms) };
  const estimateMs =
    timings.setup + (workerMs > 0 ? (jobsWallMs * scaledMs) / workerMs : 0) + timings.score * Math.max(promptScale, sampleScale);

  const rows = compare(reference?.scores as Scores | undefined, scores, store.lines);
  const step = /checkpoint step (\d+)/.exec(manifest.description ?? '')?.[1];
  const refSettings = reference?.settings as Record<string, unknown> | undefined;
  const ref = (key: string) => {
    const v = refSettings?.[key];
    return typeof v === 'number' ? String(v) : '?';
  };
  const header =
    `### Served ${manifest.name}@${manifest.version} vs PyTorch evaluator (${settings.prompts} prompts/category x ${settings.imagesPerPrompt} images, ` +
    `${settings.samples} samples/task; PyTorch: ${ref('prompts')} x ${ref('images_per_prompt')}, ${ref('samples')} samples)`;
  const table = markdown(rows, header);
  const q = {
    model: manifest.name,
    model_version: manifest.version,
    model_dir: shown(o.model),
    checkpoint_step: step === undefined ? null : Number(step),
    served: true,
    settings: {
      prompts: settings.prompts,
      images_per_prompt: settings.imagesPerPrompt,
      samples: settings.samples,
      rounds: settings.rounds,
      steps: settings.steps,
      guidance: settings.guidance,
      plan_guidance: settings.planGuidance,
      feedback_guidance: settings.feedbackGuidance,
      temperature: settings.temperature,
      shift: manifest.sampling.shift,
      edit_guidance: settings.editGuidance,
      edit_temperature: settings.editTemperature,
      text_per_step: 2,
      plan_per_step: 4,
      order_seed: manifest.sampling.order_seed,
      parts: [...o.parts].join(','),
      feedback_with_plan: settings.feedbackWithPlan,
      in_flight: Math.ceil(o.inFlight / 2) + Math.floor(o.inFlight / 2),
      stack: `redis (${redis.source}) + apps/und-worker + apps/gen-worker (1 job each, gRPC joint peer), BullMQ stage jobs`,
      shard: o.shard,
      cpus: cpus().length,
      node: process.version,
      git,
    },
    info: {
      ...info,
      stage_jobs: client.finished,
      retried_jobs: client.retried,
      retry_reasons: client.retryReasons,
      scorer_check: scorerCheck ?? 'not run (--check-scorer)',
      ...(lineAgreement ? { line_agreement: { torch_workdir: o.torchWorkdir, ...lineAgreement } } : {}),
    },
    scores,
    timings_s: Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, secs(v)])),
    part_timings_s: partTimings,
    estimate_full_run_s: secs(estimateMs),
    estimate_full: { prompts: 50, samples: 400 },
    reference: reference ? { file: shown(o.reference), checkpoint_step: reference.checkpoint_step, settings: refSettings } : null,
    comparison: { rows, flagged: rows.filter((r) => r.flagged).length, compared: rows.filter((r) => r.diff !== null).length },
    workdir: o.workdir,
  };
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(o.out, await formatJson(o.out, JSON.stringify(q, null, 1) + '\n'));
  console.log(table);
  console.log('');
  console.log(
    `Timings (s): setup ${secs(timings.setup)}, jobs ${secs(jobsWallMs)} wall (${client.finished} stage jobs), score ${secs(timings.score)}, total ${secs(timings.total)}; ` +
      `estimated full run (--prompts 50 --samples 400): ${(estimateMs / 60_000).toFixed(1)} min`,
  );
  if (lineAgreement) {
    const groups = Object.entries(lineAgreement.groups).map(
      ([k, g]) =>
        `${k} ${g.identical}/${g.compared}${g.differingBlocksMean === undefined ? '' : ` (${g.differingBlocksMean} of 64 blocks differ where different)`}`,
    );
    console.log(
      `Identical outputs vs the PyTorch workdir ${o.torchWorkdir}: ${groups.join(', ')}${lineAgreement.unmatched ? `; ${lineAgreement.unmatched} lines unmatched` : ''}`,
    );
  }
  console.log(
    `Worker time (s) per part: ${Object.entries(partTimings)
      .map(([k, v]) => `${k} ${v.worker_s} (${v.jobs} jobs)`)
      .join(', ')}`,
  );
  log(`wrote ${shown(o.out)}`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    killAll();
    process.stderr.write(`eval:served failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
