import type { ThroughputResult } from './throughput.js';
import type { SplitResult } from './split.js';
import type { UndDrivenResult } from './und-driven.js';
import type { TaskBench } from './tasks.js';
import type { WorkerMemory } from './workers.js';
import type { HopStats, OrchestrationBench } from './orchestration.js';

export interface BenchResults {
  timestamp: string;
  node: string;
  cpu: string;
  cores: number;
  platform: string;
  transport: { chunkBytes: number; maxMessageBytes: number };
  model: { dir: string; name: string; version: string; prompt: string; seed: number };
  durationSeconds: number;
  throughput: ThroughputResult[];
  /** gRPC MB/s over TCP MB/s, per tensor size in bytes. */
  grpcOverTcp: Record<string, number>;
  split: SplitResult;
  /** The trained model's tasks. */
  mini: { name: string; version: string; prompt: string; seed: number; split: SplitResult; tasks: TaskBench; undDriven?: UndDrivenResult };
  /** Peak RSS of the real workers; undefined without a Redis. */
  memory?: WorkerMemory;
  /** Orchestration overhead with no-op stages; undefined without a Redis. */
  orchestration?: OrchestrationBench;
}

const MIB = 1024 * 1024;

function size(bytes: number): string {
  if (bytes >= MIB && bytes % MIB === 0) return `${bytes / MIB} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

function table(header: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export function markdown(r: BenchResults): string {
  const s = r.split;
  const x = s.exchanges;
  const throughputRows = r.throughput.map((t) => [
    size(t.tensorBytes),
    t.transport === 'grpc' ? 'gRPC (codec, 1 MiB chunks)' : 'TCP socket',
    t.reps,
    t.mbPerSecond,
    `${t.roundMbPerSecond.min}–${t.roundMbPerSecond.max}`,
    t.p50MsPerTensor,
    t.p99MsPerTensor,
  ]);
  const ratioRows = Object.entries(r.grpcOverTcp).map(([bytes, ratio]) => [size(Number(bytes)), ratio]);
  const exchangeRow = (label: string, e: { count: number; p50Ms: number; p99Ms: number }, bytes: number | string) => [
    label,
    e.count,
    e.p50Ms,
    e.p99Ms,
    bytes,
  ];
  return [
    '# Lavida Serve bench',
    '',
    `${r.timestamp} · Node ${r.node} · ${r.cpu} (${r.cores} cores) · ${r.platform} · took ${r.durationSeconds} s`,
    `Processes on 127.0.0.1; chunk ${size(r.transport.chunkBytes)}, max message ${size(r.transport.maxMessageBytes)}. MB = 10^6 bytes.`,
    '',
    '## Tensor throughput (float32, each tensor acked before the next)',
    '',
    table(['tensor', 'transport', 'reps', 'MB/s', 'MB/s per round', 'p50 ms', 'p99 ms'], throughputRows),
    '',
    table(['tensor', 'gRPC / TCP'], ratioRows),
    '',
    `## Joint-layer exchange round trip (${r.model.name}, T=${s.textTokens} text tokens, ${s.rows} rows)`,
    '',
    table(
      ['exchange', 'count', 'p50 ms', 'p99 ms', 'payload bytes'],
      [
        exchangeRow('step (BeginStep, sent behind open → layer-0 q,k,v)', x.step, x.step.bytes),
        exchangeRow('partial (out,lse → next layer k,v; q unless it is the last)', x.partial, x.partial.bytes),
        exchangeRow('open', x.open, x.open.bytes),
        exchangeRow('close (not waited for)', x.close, x.close.bytes),
        exchangeRow('bare gRPC ping (health Check)', s.healthPing, '–'),
      ],
    ),
    '',
    `## Text-to-image, ${s.steps} steps, seed ${r.model.seed} (tokens identical: ${s.tokensIdentical ? 'yes' : 'NO'})`,
    '',
    table(
      ['runtime', 'runs', 'median ms'],
      [
        ['single process (LocalJointPeer, branch all)', s.runsMs.single.length, s.medianMs.single],
        ['split (GrpcJointPeer → und child)', s.runsMs.split.length, s.medianMs.split],
        ['ratio split / single', '', s.splitOverSingle],
      ],
    ),
    '',
    '## Traffic per image',
    '',
    table(
      ['what', 'bytes'],
      [
        [`partial-attention protocol, measured (${s.exchangesPerImage} exchanges besides close)`, s.bytesPerImage],
        [`image-side K,V instead, per joint layer per step (2·${s.rows}·H·${s.imageTokens}·D·4)`, s.imageKvBytesPerLayerStep],
        [`image-side K,V instead, per image (× ${s.jointLayers} layers × ${s.steps} steps)`, s.imageKvBytesPerImage],
      ],
    ),
    '',
    ...miniSection(r),
    ...orchestrationSection(r.orchestration),
  ].join('\n');
}

function miniSection(r: BenchResults): string[] {
  const m = r.mini.split;
  const t = r.mini.tasks;
  const u = r.mini.undDriven;
  const pair = (label: string, p: { runs: number; medianMs: Record<string, number>; ratio: number }, a: string, b: string) => [
    label,
    p.runs,
    p.medianMs[a],
    p.medianMs[b],
    p.ratio,
  ];
  const lines = [
    `## The trained model (${r.mini.name}@${r.mini.version}): split / single process per task`,
    '',
    'Split: the generation branch in this process, the text side in the `und` child over gRPC (text-to-image, editing, feedback),',
    'or the understanding branch alone, as the und-worker runs it (answers, grounding: no exchange, elastic activation). Tokens identical in every split run.',
    '',
    table(
      ['task', 'runs', 'single ms', 'split ms', 'split / single'],
      [
        [
          `text-to-image (${m.steps} steps, ${m.rows} rows)`,
          m.runsMs.single.length,
          m.medianMs.single,
          m.medianMs.split,
          m.splitOverSingle,
        ],
        pair('editing (condition grid, 2 rows)', t.edit, 'single', 'split'),
        pair('regeneration with feedback (earlier image on the text side)', t.feedback, 'single', 'split'),
        pair('answer (24 slots, 2 a step)', t.understand, 'single', 'split'),
        pair('grounding (1 box, 1 step)', t.ground, 'single', 'split'),
        ...(u
          ? [
              [
                `text-to-image driven by the text side (${u.steps} steps, ${u.rows} rows; the image side in the \`gen\` child)`,
                u.runsMs.single.length,
                u.medianMs.single,
                u.medianMs.split,
                u.splitOverSingle,
              ],
            ]
          : []),
      ],
    ),
    '',
    ...(u
      ? [
          `Driven by the text side (an und-worker drawing an \`[exp]\` answer with a gen-worker): ${u.exchangesPerImage} round trips and ` +
            `${u.bytesPerImage} bytes per image (image side driving: ${m.exchangesPerImage} and ${m.bytesPerImage}). Tokens identical in every run.`,
          '',
        ]
      : []),
    table(
      ['text-to-image in one process', 'runs', 'no corrections ms', "with the model's ms", 'ratio'],
      [
        [
          `${t.corrections.sweeps} correction sweeps (${t.corrections.steps.model} steps) against none (${t.corrections.steps.none})`,
          t.corrections.runs,
          t.corrections.medianMs.none,
          t.corrections.medianMs.model,
          t.corrections.ratio,
        ],
      ],
    ),
    '',
    table(
      ['traffic per image', 'bytes'],
      [
        [`text-to-image, partial-attention protocol (${m.exchangesPerImage} exchanges besides close, T=${m.textTokens})`, m.bytesPerImage],
        ['text-to-image, image-side K,V instead', m.imageKvBytesPerImage],
        ['editing, partial-attention protocol', t.edit.bytesPerImage],
        ['regeneration with feedback, partial-attention protocol (64 image + text tokens on the text side)', t.feedback.bytesPerImage],
      ],
    ),
    '',
    table(
      ['grounding (image encoded every call unless cached)', 'runs', 'slower ms', 'faster ms', 'speed-up'],
      [
        [
          `1 step (${t.groundOneStepSpeedup.forwards.oneStep} forward) vs one coordinate a step (${t.groundOneStepSpeedup.forwards.oneTokenAStep})`,
          t.groundOneStepSpeedup.runs,
          t.groundOneStepSpeedup.medianMs.oneTokenAStep,
          t.groundOneStepSpeedup.medianMs.oneStep,
          t.groundOneStepSpeedup.ratio,
        ],
        [
          '1 step vs one coordinate a step, image tokens cached (decoding only)',
          t.groundOneStepSpeedupCached.runs,
          t.groundOneStepSpeedupCached.medianMs.oneTokenAStep,
          t.groundOneStepSpeedupCached.medianMs.oneStep,
          t.groundOneStepSpeedupCached.ratio,
        ],
        [
          'two references as rows of one forward vs one after the other',
          t.groundTwoRefs.runs,
          t.groundTwoRefs.medianMs.sequential,
          t.groundTwoRefs.medianMs.parallel,
          round(1 / t.groundTwoRefs.ratio),
        ],
      ],
    ),
    '',
    `Same box in 1 and 4 steps: ${t.groundOneStepSpeedup.sameBoxShare} of the references tried.`,
    '',
    ...(t.boxPrior
      ? [
          table(
            ["the package's box prior (tasks.box_prior), image tokens cached", 'runs', 'without ms', 'with ms', 'ratio'],
            [
              [
                'grounding, 1 step: joint box vs each slot’s argmax',
                t.boxPrior.ground.runs,
                t.boxPrior.ground.medianMs.none,
                t.boxPrior.ground.medianMs.prior,
                t.boxPrior.ground.ratio,
              ],
              [
                `plan with its ${t.boxPrior.plan.boxes} boxes re-decoded (${t.boxPrior.plan.forwards.prior} forwards) vs as decoded (${t.boxPrior.plan.forwards.none})`,
                t.boxPrior.plan.runs,
                t.boxPrior.plan.medianMs.none,
                t.boxPrior.plan.medianMs.prior,
                t.boxPrior.plan.ratio,
              ],
            ],
          ),
          '',
        ]
      : []),
    table(
      [
        'grounding every object of a world scene, image tokens cached',
        'runs',
        'one coordinate a forward ms (forwards)',
        '1 step ms (forwards)',
        'speed-up',
        'target ≥ 4',
      ],
      t.groundByBoxes.map((g) => [
        `${g.boxes} box${g.boxes > 1 ? 'es' : ''} (${4 * g.boxes} coordinate tokens)`,
        g.runs,
        `${g.medianMs.oneTokenAStep} (${g.forwards.oneTokenAStep})`,
        `${g.medianMs.oneStep} (${g.forwards.oneStep})`,
        g.ratio,
        g.ratio >= 4 ? 'met' : 'NOT met',
      ]),
    ),
    '',
    'The slower decoder stands for an autoregressive one: one coordinate token per forward over the whole output, references one after the other.',
    'One step decodes every reference as a row of one forward (references of one token length share a forward). With one box there are only 4 tokens, so 4x is its ceiling.',
    '',

    table(
      ['answers (24 slots, 2 a step; image tokens cached)', 'runs', 'no cache ms', 'prompt cache ms', 'speed-up'],
      [['answer a world question', t.promptCache.runs, t.promptCache.medianMs.noCache, t.promptCache.medianMs.cache, t.promptCache.ratio]],
    ),
    '',
    `Prompt cache: the same answer as without it for ${t.promptCache.sameAnswerShare} of ${t.promptCache.questions} world questions; ` +
      `exact-match accuracy ${t.promptCache.sameAnswerCorrect.cache} with the cache, ${t.promptCache.sameAnswerCorrect.noCache} without.`,
    '',
  ];
  if (r.memory) {
    lines.push(
      '## Worker memory',
      '',
      `Real worker processes on ${r.mini.name}, jobs through BullMQ (${Object.entries(r.memory.jobs)
        .map(([k, v]) => `${v} ${k}`)
        .join(', ')}), ${r.memory.seconds} s.`,
      '',
      table(['worker', 'peak RSS (VmHWM) MiB'], Object.entries(r.memory.peakRssMiB)),
      '',
    );
  } else {
    lines.push('## Worker memory', '', 'Not measured: no REDIS_URL and no redis-server on this machine.', '');
  }
  return lines;
}

export function orchestrationSection(o: OrchestrationBench | undefined): string[] {
  if (!o) return ['## Orchestration overhead', '', 'Not measured: no REDIS_URL and no redis-server on this machine.', ''];
  const row = (label: string, h: HopStats) => [label, h.count, h.p50Ms, h.p90Ms, h.p99Ms, h.maxMs, h.meanMs];
  const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');
  const open = o.openLoop;
  return [
    '## Orchestration overhead (no-op stages)',
    '',
    `The real orchestrator process, BullMQ workers in the bench process that answer at once, Redis (${o.redis}); ${o.pipeline}:`,
    `${o.pipelines} pipelines, ${o.concurrency} in flight (after ${o.warmup} warm-up). Job timestamps, 1 ms resolution.`,
    '',
    table(
      ['hop', 'count', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'mean ms'],
      [
        row('stage finished → next stage created (per hop)', o.hopCreated),
        row('stage finished → next stage started (per hop)', o.hopStarted),
        row('pipeline created → first stage created', o.firstStage),
        row('last stage finished → pipeline finished', o.lastStage),
        row('… of which: last stage finished → pipeline taken by the orchestrator', o.lastPickUp),
        row('pipeline created → finished (3 stages)', o.endToEnd),
        row(`one pipeline at a time (${o.unloaded.pipelines}): stage finished → next created`, o.unloaded.hopCreated),
        row('one pipeline at a time: stage finished → next started', o.unloaded.hopStarted),
        row('one pipeline at a time: pipeline created → finished', o.unloaded.endToEnd),
        row(`open loop, ${open.offeredPerSecond} pipelines/s offered (${open.pipelines}): stage finished → next created`, open.hopCreated),
        row('open loop: stage finished → next started', open.hopStarted),
        row('open loop: pipeline created → first stage created', open.firstStage),
        row('open loop: last stage finished → pipeline finished', open.lastStage),
        row('open loop: pipeline created → finished (3 stages)', open.endToEnd),
      ],
    ),
    '',
    `Open loop: ${open.pipelines} pipelines submitted at ${open.offeredPerSecond}/s offered, Poisson arrivals (exponential gaps, seeded), ` +
      `${open.submittedPerSecond}/s as submitted, none waiting for another; ${open.completedPerSecond}/s finished (first submission to last finish), ` +
      `at most ${open.maxInFlight} in flight; CPU ms per pipeline: orchestrator ${open.cpuMsPerPipeline.orchestrator}, ` +
      `bench ${open.cpuMsPerPipeline.benchWorkers}, Redis ${open.cpuMsPerPipeline.redis}.`,
    '',
    table(
      ['throughput', 'value', 'target', ''],
      [
        [
          `pipelines / s (closed loop, ${o.concurrency} in flight)`,
          o.pipelinesPerSecond,
          `≥ ${o.targets.pipelinesPerSecond}`,
          verdict(o.pipelinesPerSecond >= o.targets.pipelinesPerSecond),
        ],
        ['stage jobs / s', o.stagesPerSecond, '', ''],
        ['pipelines / s, one at a time', o.unloaded.pipelinesPerSecond, '', ''],
        ['orchestrator CPU ms per pipeline', o.cpuMsPerPipeline.orchestrator, '', ''],
        ['bench process (no-op workers, submits) CPU ms per pipeline', o.cpuMsPerPipeline.benchWorkers, '', ''],
        ['Redis CPU ms per pipeline', o.cpuMsPerPipeline.redis, '', ''],
        [
          `pipelines / s that CPU time allows: ${o.cpuCeilingPipelinesPerSecond.cores} cores doing nothing else / the orchestrator's thread`,
          `${o.cpuCeilingPipelinesPerSecond.allCores} / ${o.cpuCeilingPipelinesPerSecond.orchestratorThread}`,
          '',
          '',
        ],
        [
          'ms per pipeline waiting for a CPU (orchestrator / bench / Redis main threads)',
          `${o.runQueueMsPerPipeline.orchestrator} / ${o.runQueueMsPerPipeline.benchWorkers} / ${o.runQueueMsPerPipeline.redis}`,
          '',
          '',
        ],
        ...(['loaded', 'unloaded'] as const).map((k) => {
          const q = o.redisRequests[k];
          const how = k === 'loaded' ? `${o.concurrency} in flight` : 'one at a time';
          return [
            `Redis requests of the orchestrator per pipeline / per step, ${how}`,
            `${q.orchestratorPerPipeline} / ${q.orchestratorPerStep}`,
            '',
            Object.entries(q.orchestratorByCommand)
              .map(([name, n]) => `${name} ${n}`)
              .join(', '),
          ];
        }),
        ...(['loaded', 'unloaded'] as const).map((k) => [
          `Redis requests of the no-op workers and submissions per pipeline, ${k === 'loaded' ? `${o.concurrency} in flight` : 'one at a time'}`,
          o.redisRequests[k].benchPerPipeline,
          '',
          `${o.redisRequests[k].scriptCommandsPerPipeline} commands inside scripts per pipeline (all clients)`,
        ]),
        [
          `p50 per hop at ${open.offeredPerSecond} pipelines/s offered (open loop, Poisson; finished → next created), ms`,
          open.hopCreated.p50Ms,
          `≤ ${o.targets.hopP50Ms}`,
          verdict(open.hopCreated.p50Ms <= o.targets.hopP50Ms),
        ],
        [`p99 per hop at ${open.offeredPerSecond} pipelines/s offered (open loop), ms`, open.hopCreated.p99Ms, '', ''],
        [
          `p50 per hop at ${o.concurrency} in flight (closed loop, saturated; finished → next created), ms`,
          o.hopCreated.p50Ms,
          `≤ ${o.targets.hopP50Ms}`,
          verdict(o.hopCreated.p50Ms <= o.targets.hopP50Ms),
        ],
        [
          'p50 per hop, one at a time (finished → next created), ms',
          o.unloaded.hopCreated.p50Ms,
          `≤ ${o.targets.hopP50Ms}`,
          verdict(o.unloaded.hopCreated.p50Ms <= o.targets.hopP50Ms),
        ],
      ],
    ),
    '',
  ];
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}
