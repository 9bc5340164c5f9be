/**
 * Scores result lines in-process with the world library, exactly as libs/world/src/cli/score.ts
 * (the path evaluate.py takes): read-back of every image, the clean-scene rule, checkPlan,
 * IoU >= 0.5 grounding, exact-match answers, checkEdit, reflection verdicts, the prompt-blind
 * baseline. The output object has score.ts's shape, so it compares key for key with
 * model/quality.json's `scores`.
 */
import {
  CATEGORIES,
  checkEdit,
  checkLuminance,
  checkPlan,
  parseEdit,
  parseMicroConditioning,
  parsePrompt,
  parseVerdict,
  promptBlindBaseline,
  readImage,
  reasonAgreement,
  reflect,
  reflectionAgreement,
  Rng,
  sameScene,
  scoreAnswer,
  scoreGrounding,
  scorePrompt,
  type Box,
  type Layout,
  type ReadResult,
  type Scene,
} from '@lavida/world';
import type { ResultLine } from './protocol.js';

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

function round(x: number): number {
  return Math.round(x * 10000) / 10000;
}

function meanOf(values: (number | null)[]): number | null {
  const v = values.filter((x): x is number => x !== null);
  return v.length === 0 ? null : round(v.reduce((a, b) => a + b, 0) / v.length);
}

function need<T>(value: T | undefined, name: string, line: number): T {
  if (value === undefined) throw new Error(`line ${line}: missing ${name}`);
  return value;
}

export type Scores = Record<string, unknown>;

/** score.ts's output for these lines and images (`baselineSamples` 0 leaves the baseline out). */
export function scoreLines(lines: readonly ResultLine[], images: readonly Uint8Array[], baselineSamples = 2000, baselineSeed = 0): Scores {
  const cache = new Map<number, ReadResult>();
  const read = (i: unknown): ReadResult => {
    if (typeof i !== 'number' || !Number.isInteger(i) || i < 0 || i >= images.length)
      throw new Error(`image ${String(i)} not in [0, ${images.length})`);
    let r = cache.get(i);
    if (r === undefined) {
      r = readImage(images[i]);
      cache.set(i, r);
    }
    return r;
  };
  const m = new Means();
  const counts: Record<string, number> = {};
  for (const [n, r] of lines.entries()) {
    const task = r.task;
    counts[task] = (counts[task] ?? 0) + 1;
    const str = (k: string) => r[k] as string | undefined;
    switch (task) {
      case 't2i': {
        const prompt = need(str('prompt'), 'prompt', n + 1);
        const spec = parsePrompt(prompt);
        if (spec === undefined) throw new Error(`line ${n + 1}: not a prompt: ${prompt}`);
        const got = read(r.image);
        const mode = str('mode') ?? 'plain';
        m.add(`t2i/${mode}/cat/${str('category') ?? spec.category}`, scorePrompt(spec, got));
        m.add(`t2i/${mode}/clean`, got.clean);
        m.add(`t2i/${mode}/objects`, got.scene.objects.length);
        if (typeof r.rounds === 'number') m.add(`t2i/${mode}/rounds`, r.rounds);
        const { luminance } = parseMicroConditioning(prompt);
        if (luminance !== undefined) {
          const lum = checkLuminance(luminance, got.background);
          m.add(`t2i/${mode}/luminance`, lum);
          m.add(`t2i/luminance`, lum);
        }
        break;
      }
      case 'plan': {
        const prompt = need(str('prompt'), 'prompt', n + 1);
        const spec = parsePrompt(prompt);
        if (spec === undefined) throw new Error(`line ${n + 1}: not a prompt: ${prompt}`);
        const layout = (r.layout as Layout | null | undefined) ?? null;
        m.add(`plan/cat/${str('category') ?? spec.category}`, Array.isArray(layout) && layout.length > 0 && checkPlan(spec, layout));
        m.add(`plan/parsed`, Array.isArray(layout) && layout.length > 0);
        break;
      }
      case 'ground': {
        const box = (r.box as Box | null | undefined) ?? null;
        const pass =
          Array.isArray(box) &&
          box.length === 4 &&
          box.every(Number.isFinite) &&
          scoreGrounding(box, need(r.truth as Box | undefined, 'truth', n + 1));
        m.add(`ground/steps/${need(r.steps as number | undefined, 'steps', n + 1)}`, pass);
        break;
      }
      case 'answer': {
        m.add(
          `answer/kind/${need(str('kind'), 'kind', n + 1)}`,
          scoreAnswer(str('predicted') ?? '', need(str('expected'), 'expected', n + 1)),
        );
        break;
      }
      case 'edit': {
        const instruction = need(str('instruction'), 'instruction', n + 1);
        const spec = parseEdit(instruction);
        if (spec === undefined) throw new Error(`line ${n + 1}: not an edit: ${instruction}`);
        const got = read(r.image);
        m.add(`edit/kind/${str('kind') ?? spec.kind}`, checkEdit(need(r.before as Scene | undefined, 'before', n + 1), spec, got));
        m.add(`edit/clean`, got.clean);
        break;
      }
      case 'reflect': {
        const prompt = need(str('prompt'), 'prompt', n + 1);
        const spec = parsePrompt(prompt);
        if (spec === undefined) throw new Error(`line ${n + 1}: not a prompt: ${prompt}`);
        const truth = reflect(spec, read(r.image));
        const predicted = parseVerdict(str('predicted') ?? '');
        const set = str('set') ?? 'eval';
        m.add(`reflect/${set}/agreement`, predicted !== undefined && reflectionAgreement(predicted, truth));
        m.add(`reflect/${set}/reason`, predicted !== undefined && reasonAgreement(predicted, truth));
        m.add(`reflect/${set}/parsed`, predicted !== undefined);
        m.add(`reflect/${set}/truth_matches`, truth.matches);
        break;
      }
      case 'readback': {
        const got = read(r.image);
        m.add(`readback/exact`, got.clean && sameScene(got.scene, need(r.scene as Scene | undefined, 'scene', n + 1)));
        m.add(`readback/clean`, got.clean);
        break;
      }
      default:
        throw new Error(`line ${n + 1}: unknown task ${String(task)}`);
    }
  }

  const out: Scores = { counts, images: images.length };
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
  for (const task of ['answer', 'edit'] as const) {
    if (!counts[task]) continue;
    const perKind: Record<string, number | null> = {};
    const n: Record<string, number> = {};
    for (const k of m.keys(`${task}/kind/`).sort()) {
      perKind[k] = m.mean(`${task}/kind/${k}`);
      n[k] = m.count(`${task}/kind/${k}`);
    }
    out[task] = { perKind, n, overall: meanOf(Object.values(perKind)), ...(task === 'edit' ? { clean: m.mean('edit/clean') } : {}) };
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
