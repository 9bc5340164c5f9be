import { parseArgs } from 'node:util';
import type { JobStatus, Task } from '@lavida/client';

export const DEFAULT_URL = 'http://127.0.0.1:8080';

export const USAGE = `Usage: lavida <command> [options]

Commands:
  submit <task> [input options] [--wait [--out dir] [--timeout s]]
                          submit a job (task: text-to-image, edit, ground, understand, respond)
  get <id>                print a job as JSON
  wait <id> [--out dir] [--timeout s]
                          wait for a job with a progress bar on stderr, print its result
  cancel <id>             cancel a job, print it (a finished job is answered unchanged)
  list [--status s] [--task t] [--limit n]
                          print the newest jobs (default 20) as JSON

Input options:
  text-to-image  --prompt text (required) [--seed n] [--steps n] [--guidance x] [--temperature x]
                 [--correction-sweeps n] [--cfg-interval lo,hi] [--luminance x] [--plan] [--reflect] [--rounds n]
  edit           --image file.png --instruction text (required) [--seed n] [--steps n] [--guidance x]
                 [--image-guidance x] [--temperature x] [--correction-sweeps n]
  ground         --image file.png --ref text (required, repeatable) [--steps n]
  understand     --image file.png [--question text (default "describe the image.")] [--prompt-cache]
  respond        --prompt text (required) [--seed n] [--steps n] [--guidance x] [--temperature x]
                 [--correction-sweeps n] [--cfg-interval lo,hi] [--luminance x]: the model answers with text or an
                 image (drawn with these options)
  every task     [--priority n (1 highest .. 10, default 5)] [--deadline s (fail after s seconds)]

Options:
  --wait          wait for the job (submit), with a progress bar on stderr
  --out dir       write the output image(s) as PNG files (text-to-image: every attempt too; respond:
                  the image when the answer is one, else nothing: the text is in the JSON)
  --timeout s     stop waiting after s seconds
  --url url       the api (default $LAVIDA_URL or ${DEFAULT_URL}); $LAVIDA_API_KEY is sent as a bearer token
  -h, --help      this help

Output: JSON on stdout (results without tokens, with the written files under "files"); progress and
errors on stderr. Exit codes: 0 success, 1 job failed or canceled, 2 usage error, 3 api or network error.`;

/** A wrong command line: exit 2 with the usage. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export type Command =
  | { kind: 'help' }
  | { kind: 'submit'; task: Task; input: Record<string, unknown>; imagePath?: string; wait: boolean; out?: string; timeoutMs?: number }
  | { kind: 'get'; id: string }
  | { kind: 'wait'; id: string; out?: string; timeoutMs?: number }
  | { kind: 'cancel'; id: string }
  | { kind: 'list'; status?: JobStatus; task?: Task; limit: number };

export interface Parsed {
  command: Command;
  /** --url, when given. */
  url?: string;
}

const OPTIONS = {
  url: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  prompt: { type: 'string' },
  image: { type: 'string' },
  question: { type: 'string' },
  ref: { type: 'string', multiple: true },
  instruction: { type: 'string' },
  seed: { type: 'string' },
  steps: { type: 'string' },
  guidance: { type: 'string' },
  'image-guidance': { type: 'string' },
  temperature: { type: 'string' },
  'correction-sweeps': { type: 'string' },
  'cfg-interval': { type: 'string' },
  luminance: { type: 'string' },
  rounds: { type: 'string' },
  plan: { type: 'boolean' },
  reflect: { type: 'boolean' },
  'prompt-cache': { type: 'boolean' },
  wait: { type: 'boolean' },
  out: { type: 'string' },
  timeout: { type: 'string' },
  status: { type: 'string' },
  task: { type: 'string' },
  limit: { type: 'string' },
  priority: { type: 'string' },
  deadline: { type: 'string' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];
type Option = keyof typeof OPTIONS;

/** `pair`: two numbers written `a,b`, sent as [a, b]. */
type Field = [Option, string, 'string' | 'number' | 'pair' | 'boolean' | 'list'];

/** Scheduling options every task takes. */
const SCHEDULING: Field[] = [
  ['priority', 'priority', 'number'],
  ['deadline', 'deadline_seconds', 'number'],
];

/** Input options of each task: [option, api field, kind]. */
const TASKS: Record<Task, Field[]> = {
  'text-to-image': [
    ['prompt', 'prompt', 'string'],
    ['seed', 'seed', 'number'],
    ['steps', 'steps', 'number'],
    ['guidance', 'guidance', 'number'],
    ['temperature', 'temperature', 'number'],
    ['correction-sweeps', 'correction_sweeps', 'number'],
    ['cfg-interval', 'cfg_interval', 'pair'],
    ['luminance', 'luminance', 'number'],
    ['plan', 'plan', 'boolean'],
    ['reflect', 'reflect', 'boolean'],
    ['rounds', 'rounds', 'number'],
  ],
  edit: [
    ['instruction', 'instruction', 'string'],
    ['seed', 'seed', 'number'],
    ['steps', 'steps', 'number'],
    ['guidance', 'guidance', 'number'],
    ['image-guidance', 'image_guidance', 'number'],
    ['temperature', 'temperature', 'number'],
    ['correction-sweeps', 'correction_sweeps', 'number'],
    ['plan', 'plan', 'boolean'],
  ],
  ground: [
    ['ref', 'refs', 'list'],
    ['steps', 'steps', 'number'],
  ],
  understand: [
    ['question', 'question', 'string'],
    ['prompt-cache', 'prompt_cache', 'boolean'],
  ],
  respond: [
    ['prompt', 'prompt', 'string'],
    ['seed', 'seed', 'number'],
    ['steps', 'steps', 'number'],
    ['guidance', 'guidance', 'number'],
    ['temperature', 'temperature', 'number'],
    ['correction-sweeps', 'correction_sweeps', 'number'],
    ['cfg-interval', 'cfg_interval', 'pair'],
    ['luminance', 'luminance', 'number'],
  ],
};
const REQUIRED: Record<Task, Option[]> = {
  'text-to-image': ['prompt'],
  edit: ['image', 'instruction'],
  ground: ['image', 'ref'],
  understand: ['image'],
  respond: ['prompt'],
};
const GLOBAL: Option[] = ['url', 'help'];
const TASK_NAMES = Object.keys(TASKS).join(', ');

/** Parses a command line (without `node main.js`); throws UsageError. */
export function parseCommandLine(argv: string[]): Parsed {
  let values: Values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const url = values.url;
  if (values.help || positionals[0] === 'help') return { command: { kind: 'help' }, url };
  const [name, ...rest] = positionals;
  if (!name) throw new UsageError('no command given');
  const allow = (options: Option[], count: number, what: string) => {
    const given = (Object.keys(values) as Option[]).filter((key) => values[key] !== undefined);
    const extra = given.filter((key) => !GLOBAL.includes(key) && !options.includes(key));
    if (extra.length > 0) throw new UsageError(`${what} does not take ${extra.map((key) => `--${key}`).join(', ')}`);
    if (rest.length !== count) {
      throw new UsageError(
        rest.length > count
          ? `${what}: unexpected argument ${JSON.stringify(rest[count])}`
          : `${what}: missing ${count === 1 ? 'argument' : 'arguments'}`,
      );
    }
  };
  switch (name) {
    case 'submit': {
      const task = rest[0] as Task | undefined;
      if (!task) throw new UsageError(`submit: missing the task (${TASK_NAMES})`);
      if (!(task in TASKS)) throw new UsageError(`submit: unknown task ${JSON.stringify(task)} (${TASK_NAMES})`);
      const fields = [...TASKS[task], ...SCHEDULING];
      // Only the tasks about an input image take --image.
      const image: Option[] = REQUIRED[task].includes('image') ? ['image'] : [];
      allow([...fields.map(([option]) => option), ...image, 'wait', 'out', 'timeout'], 1, `submit ${task}`);
      for (const option of REQUIRED[task]) if (values[option] === undefined) throw new UsageError(`submit ${task} needs --${option}`);
      if (!values.wait && (values.out !== undefined || values.timeout !== undefined))
        throw new UsageError('--out and --timeout need --wait');
      const input: Record<string, unknown> = {};
      for (const [option, field, kind] of fields) {
        const value = values[option];
        if (value === undefined) continue;
        input[field] = kind === 'number' ? number(option, value as string) : kind === 'pair' ? pair(option, value as string) : value;
      }
      if (task === 'understand' && input.question === undefined) input.question = 'describe the image.';
      return {
        command: {
          kind: 'submit',
          task,
          input,
          imagePath: values.image,
          wait: values.wait ?? false,
          out: values.out,
          timeoutMs: timeout(values.timeout),
        },
        url,
      };
    }
    case 'get':
    case 'cancel':
      allow([], 1, name);
      return { command: { kind: name, id: rest[0] }, url };
    case 'wait':
      allow(['out', 'timeout'], 1, name);
      return { command: { kind: 'wait', id: rest[0], out: values.out, timeoutMs: timeout(values.timeout) }, url };
    case 'list': {
      allow(['status', 'task', 'limit'], 0, name);
      const limit = values.limit === undefined ? 20 : number('limit', values.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit must be a whole number ≥ 1');
      return {
        command: { kind: 'list', status: values.status as JobStatus | undefined, task: values.task as Task | undefined, limit },
        url,
      };
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(name)}`);
  }
}

/** A number option: any finite number (the api checks ranges and integers and names the field). */
function number(option: string, value: string): number {
  const parsed = Number(value);
  if (value.trim() === '' || !Number.isFinite(parsed)) throw new UsageError(`--${option} must be a number, got ${JSON.stringify(value)}`);
  return parsed;
}

/** Two numbers written `a,b` (e.g. --cfg-interval 0.25,1): the api checks their ranges. */
function pair(option: string, value: string): [number, number] {
  const parts = value.split(',');
  if (parts.length !== 2) throw new UsageError(`--${option} must be two numbers a,b, got ${JSON.stringify(value)}`);
  return [number(option, parts[0]), number(option, parts[1])];
}

function timeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const seconds = number('timeout', value);
  if (seconds <= 0) throw new UsageError('--timeout must be a number of seconds > 0');
  return seconds * 1000;
}

/** The api's base URL: --url, else LAVIDA_URL, else the default; throws UsageError when it is not an http(s) URL. */
export function resolveUrl(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  const url = flag ?? (env.LAVIDA_URL || DEFAULT_URL);
  if (!URL.canParse(url) || !['http:', 'https:'].includes(new URL(url).protocol)) {
    throw new UsageError(`${flag === undefined ? 'LAVIDA_URL' : '--url'} is not an http(s) URL: ${JSON.stringify(url)}`);
  }
  return url;
}
