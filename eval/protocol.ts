/**
 * The protocol of model/lavida_mini/evaluate.py, run through the serving stack's stage jobs: the same
 * prompts, samples, seeds and task texts; the outputs become the same result lines (the format of
 * libs/world/src/cli/score.ts), in the same order, whatever order the jobs finished in.
 */
import type { GenerateJobData, ImageRef, PlanItem } from '@lavida/contracts';
import { conditioningText, decodePng, decodeTokens, encodeImage, encodePng, stripMicro, type ModelPackage } from '@lavida/model';
import { CATEGORIES, COLOURS, SHAPES, type Box, type SampleRecord } from '@lavida/world';
import type { StageClient } from './stack.js';

export const PARTS = ['t2i', 'ground', 'answer', 'edit', 'reflect', 'readback'] as const;
export type Part = (typeof PARTS)[number];

export interface ProtocolSettings {
  prompts: number;
  imagesPerPrompt: number;
  samples: number;
  rounds: number;
  steps: number;
  guidance: number;
  /** Guidance of the image drawn with a plan, and of those regenerated from a critique. */
  planGuidance: number;
  feedbackGuidance: number;
  editGuidance: number;
  editTemperature: number;
  temperature: number;
  feedbackWithPlan: boolean;
  parts: Set<Part>;
}

/** One line of results.jsonl (see libs/world/src/cli/score.ts). */
export interface ResultLine {
  task: 't2i' | 'plan' | 'ground' | 'answer' | 'edit' | 'reflect' | 'readback';
  [field: string]: unknown;
}

/** Output images (64 x 64 x 3) and result lines, as evaluate.py's Store. */
export class Store {
  readonly images: Uint8Array[] = [];
  readonly lines: ResultLine[] = [];

  image(rgb: Uint8Array): number {
    if (rgb.length !== 64 * 64 * 3) throw new Error(`expected a 64 x 64 RGB image, got ${rgb.length} bytes`);
    this.images.push(rgb);
    return this.images.length - 1;
  }

  add(line: ResultLine): void {
    this.lines.push(line);
  }
}

export interface ProtocolInfo {
  t2i?: { prompts: number; images_per_prompt: number; reflect_rounds_images: number };
  /** Plans with items the PyTorch parser would drop (label not exactly `colour shape`); they still go to Generate as served. */
  plan_items_not_colour_shape?: number;
  /** Plans that parsed to no item: the planned image is generated without a plan, as evaluate.py does. */
  empty_plans?: number;
  /** Generate requests whose {prompt, luminance} (the API's form) did not give the sample's t2i.text, so the text went as the prompt (expected 0). */
  t2i_text_as_prompt?: number;
  /** Regenerations the stack refused (e.g. an empty verdict); the unit keeps its last image. */
  refused_regenerations?: string[];
  readback_in_process?: boolean;
}

interface Unit {
  r: SampleRecord;
  j: number;
  seed: number;
  index: number;
}

/** The request fields of a t2i text: prompt + luminance when that reproduces `t2i.text`, else the text itself. */
function t2iRequest(r: SampleRecord, info: ProtocolInfo): Pick<GenerateJobData, 'prompt' | 'luminance'> {
  const luminance = r.t2i.luminance ?? undefined;
  if (conditioningText({ prompt: r.t2i.prompt, luminance }) === r.t2i.text) return { prompt: r.t2i.prompt, luminance };
  info.t2i_text_as_prompt = (info.t2i_text_as_prompt ?? 0) + 1;
  return { prompt: r.t2i.text };
}

/** evaluate.py's layout_line after sample.py's parse_layout: items whose label is exactly `colour shape`. */
function layoutLine(items: PlanItem[], manifestLocMax: number): { colour: string; shape: string; box: number[] }[] {
  const out: { colour: string; shape: string; box: number[] }[] = [];
  for (const it of items) {
    const words = it.label.split(' ');
    if (words.length !== 2 || !(COLOURS as readonly string[]).includes(words[0]) || !(SHAPES as readonly string[]).includes(words[1]))
      continue;
    const box = it.box ?? (it.bins.map((b) => (b / manifestLocMax) * 64) as [number, number, number, number]);
    out.push({ colour: words[0], shape: words[1], box: box.map(Number) });
  }
  return out;
}

function rgbOfPng(png: Buffer): Uint8Array {
  const { width, height, rgb } = decodePng(png);
  if (width !== 64 || height !== 64) throw new Error(`expected a 64 x 64 output, got ${width} x ${height}`);
  return rgb;
}

export interface ProtocolContext {
  client: StageClient;
  samples: SampleRecord[];
  /** Image i of the eval shard. */
  shardImage: (i: number) => Uint8Array;
  settings: ProtocolSettings;
  /** The model package loaded in-process for the tokenizer read-back (vq_encode / vq_decode), when that part runs. */
  pkg?: ModelPackage;
  locMax: number;
  /** Time spent per in-process part (ms). */
  inProcessMs: Record<string, number>;
}

/** Runs every part concurrently (both workers stay busy) and assembles the store in evaluate.py's order. */
export async function runProtocol(ctx: ProtocolContext): Promise<{ store: Store; info: ProtocolInfo }> {
  const { client, samples, settings: s } = ctx;
  const info: ProtocolInfo = {};
  const sub = samples.slice(0, s.samples);
  const sampleOpts = { steps: s.steps, guidance: s.guidance, temperature: s.temperature };

  // ---- t2i (plain, plan, plan + reflect) -------------------------------------------------------
  const prompts: SampleRecord[] = [];
  for (const c of CATEGORIES) prompts.push(...samples.filter((r) => r.t2i.category === c).slice(0, s.prompts));
  const K = s.imagesPerPrompt;
  const units: Unit[] = prompts.flatMap((r, p) => Array.from({ length: K }, (_, j) => ({ r, j, seed: r.seed * K + j, index: p * K + j })));
  const plain: Uint8Array[] = new Array<Uint8Array>(units.length);
  const planned: Uint8Array[] = new Array<Uint8Array>(units.length);
  const finalImage: Uint8Array[] = new Array<Uint8Array>(units.length);
  const verdicts: string[][] = units.map(() => []);
  const judged: Uint8Array[][] = units.map(() => []);
  const layouts: PlanItem[][] = new Array<PlanItem[]>(prompts.length);

  // Work is awaited all together at the end; a noop handler keeps an early failure from counting as
  // an unhandled rejection in the meantime (Promise.all still sees it).
  const t2iWork: Promise<unknown>[] = [];
  const sampleWork: Promise<unknown>[] = [];
  const later = (list: Promise<unknown>[], p: Promise<unknown>) => {
    p.catch(() => undefined);
    list.push(p);
  };
  if (s.parts.has('t2i')) {
    info.t2i = { prompts: prompts.length, images_per_prompt: K, reflect_rounds_images: 0 };
    info.plan_items_not_colour_shape = 0;
    info.empty_plans = 0;
    const generate = async (unit: Unit, extra: Partial<GenerateJobData>, output: string, part: string) => {
      const data: GenerateJobData = {
        jobId: `t${unit.index}`,
        ...t2iRequest(unit.r, info),
        seed: unit.seed,
        ...sampleOpts,
        output,
        ...extra,
      };
      const result = await client.generate(data, part);
      const ref: ImageRef = { jobId: data.jobId, name: result.artifact.name };
      return { ref, rgb: rgbOfPng(await client.getImage(ref)) };
    };
    for (const u of units) {
      later(
        t2iWork,
        generate(u, {}, 'plain.png', 't2i_plain').then(({ rgb }) => (plain[u.index] = rgb)),
      );
    }
    prompts.forEach((r, p) => {
      const chain = client.understanding({ jobId: `p${p}`, task: 'plan', prompt: r.t2i.text }, 'plan').then(async (result) => {
        const layout = result.layout ?? [];
        layouts[p] = layout;
        if (layoutLine(layout, ctx.locMax).length !== layout.length) info.plan_items_not_colour_shape! += 1;
        if (layout.length === 0) info.empty_plans! += 1;
        const plan = layout.length > 0 ? layout.map((it) => ({ label: it.label, bins: it.bins })) : undefined;
        await Promise.all(
          units
            .filter((u) => u.r === r)
            .map(async (u) => {
              const first = await generate(u, plan ? { plan, guidance: s.planGuidance } : {}, 'round1.png', 't2i_plan');
              planned[u.index] = first.rgb;
              let current = first;
              for (let rnd = 0; rnd < s.rounds; rnd++) {
                const reflected = await client.understanding(
                  { jobId: `t${u.index}`, task: 'reflect', image: current.ref, prompt: r.t2i.text },
                  't2i_reflect',
                );
                const verdict = reflected.text ?? '';
                verdicts[u.index].push(verdict);
                judged[u.index].push(current.rgb);
                if (verdict.trim() === 'correct' || rnd === s.rounds - 1) break;
                const extra: Partial<GenerateJobData> = {
                  seed: u.seed + (rnd + 1) * 2 ** 32,
                  feedback: { verdict, image: current.ref },
                  guidance: s.feedbackGuidance,
                  ...(s.feedbackWithPlan && plan ? { plan, guidance: s.planGuidance } : {}),
                };
                try {
                  current = await generate(u, extra, `round${rnd + 2}.png`, 't2i_reflect');
                } catch (error) {
                  // Only an input the stack refuses (e.g. an empty verdict, which sample.py would still
                  // run); anything else is a failure of the run.
                  if (!(error as Error).message.includes('INVALID_INPUT')) throw error;
                  (info.refused_regenerations ??= []).push(`unit ${u.index} round ${rnd + 2}: ${(error as Error).message}`);
                  break;
                }
              }
              finalImage[u.index] = current.rgb;
            }),
        );
      });
      later(t2iWork, chain);
    });
  }

  // ---- per-sample parts -----------------------------------------------------------------------
  const needScene = ['ground', 'answer', 'edit'].some((p) => s.parts.has(p as Part));
  const sceneRefs: ImageRef[] = new Array<ImageRef>(sub.length);
  const reflectRefs: ImageRef[] = new Array<ImageRef>(sub.length);
  await Promise.all(
    sub.map(async (r, i) => {
      if (needScene) sceneRefs[i] = await client.putImage(`s${r.id}`, 'scene.png', encodePng(ctx.shardImage(r.image), 64, 64));
      if (s.parts.has('reflect')) {
        reflectRefs[i] =
          r.reflection.image === r.image && sceneRefs[i]
            ? sceneRefs[i]
            : await client.putImage(`s${r.id}`, 'reflect.png', encodePng(ctx.shardImage(r.reflection.image), 64, 64));
      }
    }),
  );
  const grounds: Record<1 | 4, Box[]> = { 1: new Array<Box>(sub.length), 4: new Array<Box>(sub.length) };
  const answers: string[] = new Array<string>(sub.length);
  const edits: Uint8Array[] = new Array<Uint8Array>(sub.length);
  const reflections: string[] = new Array<string>(sub.length);
  for (const steps of [1, 4] as const) {
    if (!s.parts.has('ground')) break;
    sub.forEach((r, i) =>
      later(
        sampleWork,
        client
          .understanding({ jobId: `s${r.id}`, task: 'ground', image: sceneRefs[i], refs: [r.grounding.ref], steps }, `ground_${steps}`)
          .then((res) => (grounds[steps][i] = (res.boxes ?? [])[0])),
      ),
    );
  }
  if (s.parts.has('answer')) {
    sub.forEach((r, i) =>
      later(
        sampleWork,
        client
          .understanding({ jobId: `s${r.id}`, task: 'understand', image: sceneRefs[i], question: r.question.text }, 'answer')
          .then((res) => (answers[i] = res.text ?? '')),
      ),
    );
  }
  if (s.parts.has('edit')) {
    sub.forEach((r, i) =>
      later(
        sampleWork,
        client
          .edit(
            {
              jobId: `s${r.id}`,
              instruction: r.edit.text,
              image: sceneRefs[i],
              seed: r.seed,
              steps: s.steps,
              guidance: s.editGuidance,
              temperature: s.editTemperature,
              output: 'edit.png',
            },
            'edit',
          )
          .then(async (res) => (edits[i] = rgbOfPng(await client.getImage({ jobId: `s${r.id}`, name: res.artifact.name })))),
      ),
    );
  }
  if (s.parts.has('reflect')) {
    sub.forEach((r, i) =>
      later(
        sampleWork,
        client
          .understanding({ jobId: `s${r.id}`, task: 'reflect', image: reflectRefs[i], prompt: r.reflection.prompt }, 'reflect')
          .then((res) => (reflections[i] = res.text ?? '')),
      ),
    );
  }

  // The tokenizer read-back has no stage job: it runs the package's vq_encode / vq_decode (the
  // segments the gen-worker runs) in-process, while the workers are busy with the rest.
  const readback: Uint8Array[] = new Array<Uint8Array>(sub.length);
  if (s.parts.has('readback')) {
    if (!ctx.pkg) throw new Error('readback needs the model package');
    info.readback_in_process = true;
    const t0 = performance.now();
    for (const [i, r] of sub.entries()) readback[i] = await decodeTokens(ctx.pkg, await encodeImage(ctx.pkg, ctx.shardImage(r.image)));
    ctx.inProcessMs.readback = performance.now() - t0;
  }

  await Promise.all([...t2iWork, ...sampleWork]);

  // ---- assemble, in evaluate.py's order --------------------------------------------------------
  const store = new Store();
  if (s.parts.has('t2i')) {
    for (const u of units) {
      store.add({
        task: 't2i',
        mode: 'plain',
        category: u.r.t2i.category,
        prompt: u.r.t2i.text,
        image: store.image(plain[u.index]),
        seed: u.seed,
      });
    }
    prompts.forEach((r, p) => {
      const line = layoutLine(layouts[p], ctx.locMax);
      store.add({ task: 'plan', category: r.t2i.category, prompt: r.plan.prompt, layout: line.length > 0 ? line : null });
    });
    for (const u of units) {
      store.add({
        task: 't2i',
        mode: 'plan',
        category: u.r.t2i.category,
        prompt: u.r.t2i.text,
        image: store.image(planned[u.index]),
        seed: u.seed,
        rounds: 1,
      });
    }
    for (let rnd = 0; rnd < s.rounds; rnd++) {
      for (const u of units) {
        if (verdicts[u.index].length <= rnd) continue;
        store.add({
          task: 'reflect',
          set: 'own',
          prompt: stripMicro(u.r.t2i.text),
          predicted: verdicts[u.index][rnd],
          image: store.image(judged[u.index][rnd]),
          round: rnd + 1,
        });
      }
    }
    let images = 0;
    for (const u of units) {
      // Every image of the loop is judged (the last round too), so the images made are the verdicts.
      const rounds = verdicts[u.index].length;
      images += rounds;
      store.add({
        task: 't2i',
        mode: 'plan+reflect',
        category: u.r.t2i.category,
        prompt: u.r.t2i.text,
        image: store.image(finalImage[u.index]),
        seed: u.seed,
        rounds,
        verdicts: verdicts[u.index],
      });
    }
    info.t2i!.reflect_rounds_images = images;
  }
  if (s.parts.has('ground')) {
    for (const steps of [1, 4] as const) {
      sub.forEach((r, i) =>
        store.add({ task: 'ground', steps, ref: r.grounding.ref, box: grounds[steps][i]?.map(Number) ?? null, truth: r.grounding.box }),
      );
    }
  }
  if (s.parts.has('answer')) {
    sub.forEach((r, i) =>
      store.add({ task: 'answer', kind: r.question.kind, question: r.question.text, predicted: answers[i], expected: r.question.answer }),
    );
  }
  if (s.parts.has('edit')) {
    sub.forEach((r, i) =>
      store.add({ task: 'edit', kind: r.edit.kind, instruction: r.edit.text, before: r.scene, image: store.image(edits[i]) }),
    );
  }
  if (s.parts.has('reflect')) {
    sub.forEach((r, i) =>
      store.add({
        task: 'reflect',
        set: 'eval',
        prompt: r.reflection.prompt,
        predicted: reflections[i],
        image: store.image(ctx.shardImage(r.reflection.image)),
      }),
    );
  }
  if (s.parts.has('readback')) {
    sub.forEach((r, i) => store.add({ task: 'readback', image: store.image(readback[i]), scene: r.scene }));
  }
  return { store, info };
}
