import { z } from 'zod';
import { ModelPackageError } from '@lavida/contracts';
import type { Manifest } from './manifest.js';
import type { WordTokenizer } from './tokenizer.js';
import { BoxPriorSchema } from './box-prior.js';

/**
 * The text templates a model was trained with (`manifest.tasks`, docs/model-package.md "Task
 * templates"). Placeholders in braces are substituted, then the text is tokenized with word-v1.
 */
export const TaskTemplatesSchema = z.object({
  text_to_image: z.string(),
  text_to_image_plan: z.string(),
  feedback: z.string(),
  plan: z.string(),
  understand: z.string(),
  ground: z.string(),
  edit: z.string(),
  reflect: z.string(),
  /**
   * Editing with a plan (both or neither): `plan_edit` asks for the edit's region, with the source image as the
   * prefix (`{instruction}`; answered as a layout, `answer_len.plan_edit` slots), `edit_plan` edits given it
   * (`{instruction}`, `{layout}`). A model without them edits without a plan only.
   */
  plan_edit: z.string().optional(),
  edit_plan: z.string().optional(),
  answer_len: z.object({
    und: z.number().int().positive(),
    reflect: z.number().int().positive(),
    plan: z.number().int().positive(),
    plan_edit: z.number().int().positive().optional(),
  }),
  /** Slots revealed per forward when the caller names none (absent: und 2, reflect 2, plan 4, plan_edit 1). */
  per_step: z
    .object({
      und: z.number().int().positive(),
      reflect: z.number().int().positive(),
      plan: z.number().int().positive(),
      plan_edit: z.number().int().positive(),
    })
    .partial()
    .optional(),
  /**
   * Added to the `[eos]` logit of an answer slot (absent: 0). -log w for a model trained with its
   * `[eos]` targets weighted w, which otherwise ends answers and plans too late.
   */
  eos_bias: z.object({ und: z.number(), reflect: z.number(), plan: z.number(), plan_edit: z.number() }).partial().optional(),
  /**
   * Grounding in one step decoded jointly under the training targets' box sizes (absent: each coordinate
   * slot's own argmax). See box-prior.ts.
   */
  box_prior: BoxPriorSchema.optional(),
  /** One layout item of `{layout}`; its `{name}` placeholders between `<box>` and `</box>` are the label's words. */
  layout_item: z.string().optional(),
  /**
   * The words each label placeholder of `layout_item` may take (absent: any words). A decoded item whose label
   * has another number of words, or a word not in its slot's list, is malformed and skipped, as the reference
   * sampler's parser does.
   */
  layout_words: z.record(z.string(), z.array(z.string()).min(1)).optional(),
});
export type TaskTemplates = z.infer<typeof TaskTemplatesSchema>;

/** The editing-with-a-plan templates of a model, or undefined when it has none (both must be there). */
export function editPlanTemplates(t: TaskTemplates): { planEdit: string; editPlan: string; answerLen: number } | undefined {
  if (t.plan_edit === undefined || t.edit_plan === undefined || t.answer_len.plan_edit === undefined) return undefined;
  return { planEdit: t.plan_edit, editPlan: t.edit_plan, answerLen: t.answer_len.plan_edit };
}

/** The model's task templates, or a ModelPackageError naming what the manifest lacks. */
export function taskTemplates(manifest: Manifest): TaskTemplates {
  const parsed = TaskTemplatesSchema.safeParse(manifest.tasks);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'tasks'}: ${i.message}`).join('; ');
    throw new ModelPackageError(`model ${manifest.name}@${manifest.version} has no usable task templates (${problems})`);
  }
  return parsed.data;
}

/** Substitutes `{name}` placeholders. */
export function fill(template: string, values: Record<string, string>): string {
  return template.replace(/\{([a-z_]+)\}/g, (whole, key: string) => values[key] ?? whole);
}

/** The prompt without trailing `KEY : value;` micro-conditioning (the plan and reflection tasks see the bare prompt). */
export function stripMicro(text: string): string {
  let prompt = text.trim();
  const pattern = /\s*([A-Za-z_]+)\s*:\s*([^;]*?)\s*;\s*$/;
  for (let m = pattern.exec(prompt); m; m = pattern.exec(prompt)) prompt = prompt.slice(0, m.index).trim();
  return prompt;
}

/** Word tokens to text: spaces between words, none before `, ; ?`, nor before a `.` that ends a word, nor inside numbers. */
export function detokenize(words: readonly string[]): string {
  let out = '';
  const digit = (c: string) => c >= '0' && c <= '9';
  for (const w of words) {
    const last = out.at(-1) ?? '';
    if (!out) out = w;
    else if (w === ',' || w === ';' || w === '?' || (w === '.' && !digit(last))) out += w;
    else if ((/^[0-9]+$/.test(w) || w === '.') && (digit(last) || last === '.')) out += w;
    else out += ` ${w}`;
  }
  return out;
}

/** Answer-slot ids up to the first end token, as vocabulary words. */
export function answerWords(tokenizer: WordTokenizer, ids: readonly number[]): string[] {
  const words: string[] = [];
  for (const id of ids) {
    if (id === tokenizer.special.eos) break;
    words.push(tokenizer.vocab[id] ?? '[?]');
  }
  return words;
}

/** One box of a layout plan: what (the words inside `<box> … </box>`) and where. */
export interface LayoutItem {
  label: string;
  /** x1, y1, x2, y2 as coordinate bins 0..count-1. */
  bins: [number, number, number, number];
  /** x1, y1, x2, y2 in pixels of the model's image. */
  box: [number, number, number, number];
}

/** Coordinate bins to pixels: x by the image width, y by its height. */
export function binsToBox(bins: readonly number[], manifest: Manifest): [number, number, number, number] {
  const max = manifest.text.loc_bins.count - 1;
  const { width, height } = manifest.image;
  return [(bins[0] / max) * width, (bins[1] / max) * height, (bins[2] / max) * width, (bins[3] / max) * height];
}

/** Pixels to coordinate bins (rounded, clamped). */
export function boxToBins(box: readonly number[], manifest: Manifest): [number, number, number, number] {
  const max = manifest.text.loc_bins.count - 1;
  const { width, height } = manifest.image;
  const q = (v: number, size: number) => Math.min(max, Math.max(0, Math.round((v / size) * max)));
  return [q(box[0], width), q(box[1], height), q(box[2], width), q(box[3], height)];
}

/** `<box> label </box> <loc> x1 y1 x2 y2 </loc>` per item: the layout text of the planning templates. */
export function layoutIds(tokenizer: WordTokenizer, items: readonly Pick<LayoutItem, 'label' | 'bins'>[]): number[] {
  const sp = tokenizer.special;
  const ids: number[] = [];
  for (const item of items) {
    ids.push(sp.box_begin, ...tokenizer.encode(item.label), sp.box_end, sp.loc_begin, ...item.bins.map((b) => tokenizer.locId(b)), sp.loc_end);
  }
  return ids;
}

/**
 * The words each label slot of a layout item may take, in the slots' order (`tasks.layout_words` by the
 * placeholders of `tasks.layout_item`), or undefined when the manifest names none (any words).
 */
export function layoutLabelSlots(manifest: Manifest): ReadonlySet<string>[] | undefined {
  const tasks = manifest.tasks as { layout_item?: unknown; layout_words?: unknown } | undefined;
  const words = tasks?.layout_words;
  if (words === undefined) return undefined;
  const parsed = TaskTemplatesSchema.shape.layout_words.safeParse(words);
  if (!parsed.success || parsed.data === undefined) {
    throw new ModelPackageError(`model ${manifest.name}@${manifest.version}: tasks.layout_words must map slot names to lists of words`);
  }
  const item = typeof tasks?.layout_item === 'string' ? tasks.layout_item : '';
  const label = /<box>(.*)<\/box>/.exec(item)?.[1] ?? '';
  const names = [...label.matchAll(/\{([a-z_]+)\}/g)].map((m) => m[1]);
  const order = names.length > 0 ? names : Object.keys(parsed.data);
  return order.map((name) => {
    const list = parsed.data?.[name];
    if (!list) throw new ModelPackageError(`model ${manifest.name}@${manifest.version}: tasks.layout_words has no words for {${name}}`);
    return new Set(list);
  });
}

/**
 * Items of a decoded plan (up to the first end token). An item is `<box>`, one or more words,
 * `</box>`, `<loc>`, four coordinate tokens, `</loc>`; malformed items are skipped. Where the manifest
 * names each label slot's words (`tasks.layout_words`), a label must have one word a slot, each in its list.
 */
export function parseLayout(tokenizer: WordTokenizer, ids: readonly number[], manifest: Manifest): LayoutItem[] {
  const slots = layoutLabelSlots(manifest);
  const labelOk = (words: readonly number[]) =>
    !slots || (words.length === slots.length && words.every((w, n) => slots[n].has(tokenizer.vocab[w] ?? '')));
  const sp = tokenizer.special;
  const { first_id: first, count } = tokenizer.locBins;
  const end = ids.indexOf(sp.eos);
  const seq = end >= 0 ? ids.slice(0, end) : ids.slice();
  const isSpecial = new Set(Object.values(sp));
  const isLoc = (id: number) => id >= first && id < first + count;
  const items: LayoutItem[] = [];
  let i = 0;
  while (i < seq.length) {
    if (seq[i] !== sp.box_begin) {
      i += 1;
      continue;
    }
    const j = seq.indexOf(sp.box_end, i);
    if (j < 0) break;
    const words = seq.slice(i + 1, j);
    const k = j + 1;
    const ok =
      words.length > 0 &&
      words.every((w) => !isSpecial.has(w) && !isLoc(w)) &&
      labelOk(words) &&
      k + 5 < seq.length + 0 &&
      seq[k] === sp.loc_begin &&
      seq[k + 5] === sp.loc_end &&
      seq.slice(k + 1, k + 5).every(isLoc);
    if (ok) {
      const bins = seq.slice(k + 1, k + 5).map((t) => t - first) as [number, number, number, number];
      items.push({ label: words.map((w) => tokenizer.vocab[w]).join(' '), bins, box: binsToBox(bins, manifest) });
      i = k + 6;
    } else {
      i = j + 1;
    }
  }
  return items;
}

/**
 * Tokenizes a template whose placeholders are text (tokenized with word-v1) or ready ids (e.g. a
 * layout with special tokens). Templates separate placeholders by spaces, so this equals the
 * tokenization of the filled text wherever all values are text.
 */
export function encodeTemplate(tokenizer: WordTokenizer, template: string, values: Record<string, string | readonly number[]>): number[] {
  const ids: number[] = [];
  let last = 0;
  for (const m of template.matchAll(/\{([a-z_]+)\}/g)) {
    const value = values[m[1]];
    if (value === undefined) throw new ModelPackageError(`task template "${template}" needs {${m[1]}}`);
    ids.push(...tokenizer.encode(template.slice(last, m.index)));
    ids.push(...(typeof value === 'string' ? tokenizer.encode(value) : value));
    last = m.index + m[0].length;
  }
  ids.push(...tokenizer.encode(template.slice(last)));
  return ids;
}
