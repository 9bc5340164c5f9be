/**
 * The quality table of lavida-o-mini, scored with the Shapes-world library: one result line at a time
 * (read-back of every image, the clean-scene rule, checkPlan, IoU >= 0.5 grounding, exact-match
 * answers, checkEdit, reflection verdicts), then per mode / category / kind means, clean-scene share,
 * objects per image, counts, and the prompt-blind baseline. Used by cli/score.ts (the path
 * evaluate.py takes) and by the served evaluation.
 */
import { checkEdit, parseEdit } from './edits.js';
import { scoreGrounding } from './grounding.js';
import { checkEditPlan, checkPlan, type Layout } from './plans.js';
import { CATEGORIES, checkLuminance, parseMicroConditioning, parsePrompt, promptBlindBaseline, scorePrompt } from './prompts.js';
import { scoreAnswer } from './questions.js';
import { readImage, type ReadResult } from './read.js';
import { parseVerdict, reasonAgreement, reflect, reflectionAgreement } from './reflection.js';
import { Rng } from './rng.js';
import { sameScene, type Box, type Scene } from './scene.js';

/** The edit modes of result lines and the keys they are scored under. */
const EDIT_MODES = { plain: 'edit', plan: 'edit_plan', oracle_plan: 'edit_oracle_plan' } as const;
const EDIT_KEYS = Object.values(EDIT_MODES);

function editKey(mode: string | undefined, n: number): string {
  const key = EDIT_MODES[(mode ?? 'plain') as keyof typeof EDIT_MODES];
  if (key === undefined) throw new Error(`line ${n + 1}: unknown edit mode ${String(mode)} (modes: ${Object.keys(EDIT_MODES).join(', ')})`);
  return key;
}

/** Running means keyed by group. */
class Means {
  private readonly sums = new Map<string, [number, number]>();
  add(key: string, value: number | boolean): void {
    const v = typeof value === 'boolean' ? (value ? 1 : 0) : value;
    const s = this.sums.get(key) ?? [0, 0];
    this.sums.set(key, [s[0] + v, s[1] + 1]);
  }
  mean(key: string): number | null {
    const s = this.sums.get(key);
    return s === undefined || s[1] === 0 ? null : round(s[0] / s[1]);
  }
  count(key: string): number {
    return this.sums.get(key)?.[1] ?? 0;
  }
  keys(prefix: string): string[] {
    return [...this.sums.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
  }
}

/**
 * One results line, by `task`:
 *   t2i       { mode, category, prompt, image, rounds? }   prompt = the text the model got, micro-conditioning included
 *   plan      { category, prompt, layout: [{ colour, shape, box }] | null }
 *   ground    { steps, ref, box: [x1, y1, x2, y2] | null, truth }
 *   answer    { kind, question, predicted, expected }
 *   edit      { kind, instruction, before: Scene, image, mode? }   mode: plain (default), plan (the model's own
 *             edit plan), oracle_plan (the true region); scored as `edit`, `edit_plan`, `edit_oracle_plan`
 *   plan_edit { kind, instruction, before: Scene, layout: [{ colour, shape, box }] | null }   checkEditPlan
 *   reflect   { set, prompt, predicted, image }         truth = reflect(prompt, readImage(image))
 *   readback  { image, scene }                           decoded image vs the true scene
 * `image` is an index into the images.
 */
export interface ResultLine {
  task: string;
  mode?: string;
  category?: string;
  prompt?: string;
  image?: number;
  rounds?: number;
  layout?: Layout | null;
  steps?: number;
  ref?: string;
  box?: Box | null;
  truth?: Box;
  kind?: string;
  question?: string;
  predicted?: string | null;
  expected?: string;
  instruction?: string;
  before?: Scene;
  set?: string;
  scene?: Scene;
}

/** The scores object (score.ts's printed JSON). */
export type Scores = Record<string, unknown>;

function need<T>(value: T | undefined, name: string, line: number): T {
  if (value === undefined) throw new Error(`line ${line}: missing ${name}`);
  return value;
}

function round(x: number): number {
  return Math.round(x * 10000) / 10000;
}

/** Mean of the defined per-group means (categories / kinds count equally). */
function meanOf(values: (number | null)[]): number | null {
  const v = values.filter((x): x is number => x !== null);
  return v.length === 0 ? null : round(v.reduce((a, b) => a + b, 0) / v.length);
}

/** Scores result lines one at a time against the output images (64 x 64 RGB each), then aggregates them. */
export class Scorer {
  private readonly m = new Means();
  private readonly counts: Record<string, number> = {};
  private readonly cache = new Map<number, ReadResult>();

  constructor(private readonly images: readonly Uint8Array[]) {}

  private read(i: unknown): ReadResult {
    if (typeof i !== 'number' || !Number.isInteger(i) || i < 0 || i >= this.images.length)
      throw new Error(`image ${String(i)} not in [0, ${this.images.length})`);
    let r = this.cache.get(i);
    if (r === undefined) {
      r = readImage(this.images[i]);
      this.cache.set(i, r);
    }
    return r;
  }

  /** Scores line `n` (0-based; errors name it 1-based) and returns its per-line score. */
  add(r: ResultLine, n: number): Record<string, unknown> {
    const m = this.m;
    const task = r.task;
    this.counts[task] = (this.counts[task] ?? 0) + 1;
    switch (task) {
      case 't2i': {
        const spec = parsePrompt(need(r.prompt, 'prompt', n + 1));
        if (spec === undefined) throw new Error(`line ${n + 1}: not a prompt: ${r.prompt ?? ''}`);
        const got = this.read(r.image);
        const pass = scorePrompt(spec, got);
        const mode = r.mode ?? 'plain';
        const category = r.category ?? spec.category;
        m.add(`t2i/${mode}/cat/${category}`, pass);
        m.add(`t2i/${mode}/clean`, got.clean);
        m.add(`t2i/${mode}/objects`, got.scene.objects.length);
        if (typeof r.rounds === 'number') m.add(`t2i/${mode}/rounds`, r.rounds);
        const { luminance } = parseMicroConditioning(need(r.prompt, 'prompt', n + 1));
        let lum: boolean | undefined;
        if (luminance !== undefined) {
          lum = checkLuminance(luminance, got.background);
          m.add(`t2i/${mode}/luminance`, lum);
          m.add(`t2i/luminance`, lum);
        }
        return { pass, clean: got.clean, objects: got.scene.objects.length, background: got.background, luminance: lum };
      }
      case 'plan': {
        const spec = parsePrompt(need(r.prompt, 'prompt', n + 1));
        if (spec === undefined) throw new Error(`line ${n + 1}: not a prompt: ${r.prompt ?? ''}`);
        const layout = r.layout ?? null;
        const pass = Array.isArray(layout) && layout.length > 0 && checkPlan(spec, layout);
        m.add(`plan/cat/${r.category ?? spec.category}`, pass);
        m.add(`plan/parsed`, Array.isArray(layout) && layout.length > 0);
        return { pass };
      }
      case 'ground': {
        const box = r.box ?? null;
        const pass =
          Array.isArray(box) && box.length === 4 && box.every(Number.isFinite) && scoreGrounding(box, need(r.truth, 'truth', n + 1));
        m.add(`ground/steps/${need(r.steps, 'steps', n + 1)}`, pass);
        return { pass };
      }
      case 'answer': {
        const pass = scoreAnswer(r.predicted ?? '', need(r.expected, 'expected', n + 1));
        m.add(`answer/kind/${need(r.kind, 'kind', n + 1)}`, pass);
        return { pass };
      }
      case 'edit': {
        const spec = parseEdit(need(r.instruction, 'instruction', n + 1));
        if (spec === undefined) throw new Error(`line ${n + 1}: not an edit: ${r.instruction ?? ''}`);
        const got = this.read(r.image);
        const pass = checkEdit(need(r.before, 'before', n + 1), spec, got);
        const key = editKey(r.mode, n);
        m.add(`${key}/kind/${r.kind ?? spec.kind}`, pass);
        m.add(`${key}/clean`, got.clean);
        return { pass, clean: got.clean };
      }
      case 'plan_edit': {
        const spec = parseEdit(need(r.instruction, 'instruction', n + 1));
        if (spec === undefined) throw new Error(`line ${n + 1}: not an edit: ${r.instruction ?? ''}`);
        const layout = r.layout ?? null;
        const pass = Array.isArray(layout) && layout.length > 0 && checkEditPlan(need(r.before, 'before', n + 1), spec, layout);
        m.add(`plan_edit/kind/${r.kind ?? spec.kind}`, pass);
        m.add(`plan_edit/parsed`, Array.isArray(layout) && layout.length > 0);
        return { pass };
      }
      case 'reflect': {
        const spec = parsePrompt(need(r.prompt, 'prompt', n + 1));
        if (spec === undefined) throw new Error(`line ${n + 1}: not a prompt: ${r.prompt ?? ''}`);
        const truth = reflect(spec, this.read(r.image));
        const predicted = parseVerdict(r.predicted ?? '');
        const set = r.set ?? 'eval';
        const agree = predicted !== undefined && reflectionAgreement(predicted, truth);
        m.add(`reflect/${set}/agreement`, agree);
        m.add(`reflect/${set}/reason`, predicted !== undefined && reasonAgreement(predicted, truth));
        m.add(`reflect/${set}/parsed`, predicted !== undefined);
        m.add(`reflect/${set}/truth_matches`, truth.matches);
        return { agree, truth: truth.matches ? 'correct' : `incorrect because ${truth.reason}` };
      }
      case 'readback': {
        const got = this.read(r.image);
        const exact = got.clean && sameScene(got.scene, need(r.scene, 'scene', n + 1));
        m.add(`readback/exact`, exact);
        m.add(`readback/clean`, got.clean);
        return { exact, clean: got.clean };
      }
      default:
        throw new Error(`line ${n + 1}: unknown task ${String(task)}`);
    }
  }

  /** The scores of the lines added so far (`baselineSamples` 0 leaves the prompt-blind baseline out). */
  scores(baselineSamples = 2000, baselineSeed = 0): Scores {
    const { m, counts } = this;
    const out: Scores = { counts, images: this.images.length };
    const t2i: Record<string, unknown> = {};
    const modes = new Set(
      m
        .keys('t2i/')
        .map((k) => k.split('/')[0])
        .filter((k) => k !== 'luminance'),
    );
    for (const mode of modes) {
      const perCategory: Record<string, number | null> = {};
      for (const c of CATEGORIES) if (m.count(`t2i/${mode}/cat/${c}`) > 0) perCategory[c] = m.mean(`t2i/${mode}/cat/${c}`);
      t2i[mode] = {
        perCategory,
        overall: meanOf(Object.values(perCategory)),
        images: m.count(`t2i/${mode}/clean`),
        clean: m.mean(`t2i/${mode}/clean`),
        objectsPerImage: m.mean(`t2i/${mode}/objects`),
        luminance: { n: m.count(`t2i/${mode}/luminance`), adherence: m.mean(`t2i/${mode}/luminance`) },
        ...(m.count(`t2i/${mode}/rounds`) > 0 ? { meanRounds: m.mean(`t2i/${mode}/rounds`) } : {}),
      };
    }
    out.t2i = t2i;
    out.luminance = { n: m.count('t2i/luminance'), adherence: m.mean('t2i/luminance') };
    if (counts.plan) {
      const perCategory: Record<string, number | null> = {};
      for (const c of CATEGORIES) if (m.count(`plan/cat/${c}`) > 0) perCategory[c] = m.mean(`plan/cat/${c}`);
      out.plan = { perCategory, overall: meanOf(Object.values(perCategory)), parsed: m.mean('plan/parsed'), n: counts.plan };
    }
    if (counts.ground) {
      const steps: Record<string, unknown> = {};
      for (const s of m.keys('ground/steps/')) steps[s] = { acc: m.mean(`ground/steps/${s}`), n: m.count(`ground/steps/${s}`) };
      out.ground = steps;
    }
    for (const task of ['answer', ...EDIT_KEYS, 'plan_edit'] as const) {
      const perKind: Record<string, number | null> = {};
      const n: Record<string, number> = {};
      for (const k of m.keys(`${task}/kind/`).sort()) {
        perKind[k] = m.mean(`${task}/kind/${k}`);
        n[k] = m.count(`${task}/kind/${k}`);
      }
      if (Object.keys(n).length === 0) continue;
      const extra =
        task === 'plan_edit' ? { parsed: m.mean('plan_edit/parsed') } : task === 'answer' ? {} : { clean: m.mean(`${task}/clean`) };
      out[task] = { perKind, n, overall: meanOf(Object.values(perKind)), ...extra };
    }
    if (counts.reflect) {
      const sets: Record<string, unknown> = {};
      for (const s of new Set(m.keys('reflect/').map((k) => k.split('/')[0]))) {
        sets[s] = {
          agreement: m.mean(`reflect/${s}/agreement`),
          reasonAgreement: m.mean(`reflect/${s}/reason`),
          parsed: m.mean(`reflect/${s}/parsed`),
          truthMatches: m.mean(`reflect/${s}/truth_matches`),
          n: m.count(`reflect/${s}/agreement`),
        };
      }
      out.reflect = sets;
    }
    if (counts.readback) out.readback = { exact: m.mean('readback/exact'), clean: m.mean('readback/clean'), n: counts.readback };
    if (baselineSamples > 0) {
      const b = promptBlindBaseline(new Rng(baselineSeed), baselineSamples);
      const perCategory: Record<string, number> = {};
      for (const c of CATEGORIES) perCategory[c] = round(b.perCategory[c]);
      out.baseline = { perCategory, overall: round(b.overall), samples: baselineSamples };
    }
    return out;
  }
}

/** The scores of these lines and images (`baselineSamples` 0 leaves the prompt-blind baseline out). */
export function scoreLines(lines: readonly ResultLine[], images: readonly Uint8Array[], baselineSamples = 2000, baselineSeed = 0): Scores {
  const scorer = new Scorer(images);
  for (const [n, r] of lines.entries()) scorer.add(r, n);
  return scorer.scores(baselineSamples, baselineSeed);
}
