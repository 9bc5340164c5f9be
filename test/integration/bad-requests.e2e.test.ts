import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { PNG } from 'pngjs';
import { freshPrefix, startRedis, type TestRedis } from '../support/redis.js';
import { TestSystem } from '../support/system.js';
import { waitFor } from '../support/wait.js';

interface ErrorBody {
  error: { status: number; code: string; message: string; field?: string };
}

/** Which bearer a case sends: the admin key (default), none, or one made for the corpus. */
type Auth = 'admin' | 'none' | 'unknown' | 'revoked' | 'jobs' | { header: string };

interface BadRequest {
  name: string;
  method?: 'GET' | 'POST' | 'DELETE';
  /** Default `/v1/jobs`. */
  path?: string;
  /** An object is sent as JSON; a string as is. */
  body?: unknown;
  /** Default application/json when there is a body; null sends none. */
  contentType?: string | null;
  headers?: Record<string, string>;
  auth?: Auth;
  status: number;
  code?: string;
  /** The error's field, when the api names one. */
  field?: string;
  /** Matched against the error's message. */
  message: RegExp;
}

const newKey = () => `lv_${randomBytes(32).toString('base64url')}`;

/** An RGB PNG of this size, base64. */
function png(width: number, height: number): string {
  const image = new PNG({ width, height });
  image.data.fill(128);
  return PNG.sync.write(image).toString('base64');
}

const t2i = (input: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  task: 'text-to-image',
  input: { prompt: 'a red circle', seed: 1, steps: 2, ...input },
  ...extra,
});

/** The fixture model's size (models/fixture: 64x64). */
const GOOD = png(64, 64);
const edit = (input: Record<string, unknown>) => ({ task: 'edit', input: { instruction: 'make it blue', image: GOOD, ...input } });
const ground = (input: Record<string, unknown>) => ({ task: 'ground', input: { image: GOOD, refs: ['the red circle'], ...input } });
const understand = (input: Record<string, unknown>) => ({ task: 'understand', input: { image: GOOD, question: 'what is it?', ...input } });
const respond = (input: Record<string, unknown>) => ({ task: 'respond', input: { prompt: 'a blue circle', ...input } });

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const CORRUPT_PNG = Buffer.concat([PNG_SIGNATURE, randomBytes(64)]).toString('base64');
// A PNG whose IDAT is cut short: the signature and IHDR are right, the data is not.
const TRUNCATED_PNG = Buffer.from(GOOD, 'base64').subarray(0, 60).toString('base64');
const JPEG = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, ...randomBytes(32)]).toString('base64');
const UNKNOWN_JOB = randomUUID();
/** Sent with its first body before the corpus, then with another one (422). */
const IDEMPOTENCY_KEY = `bad-requests-${randomUUID()}`;

/** Over the api's body limit (API_BODY_LIMIT=64kb below). */
const HUGE_IMAGE = randomBytes(96 * 1024).toString('base64');

const CASES: BadRequest[] = [
  // The body as a whole.
  {
    name: 'malformed JSON',
    body: '{"task": "text-to-image", "input": {',
    status: 400,
    code: 'invalid_json',
    message: /JSON|Unexpected|expected/i,
  },
  {
    name: 'JSON with a trailing comma',
    body: '{"task": "text-to-image",}',
    status: 400,
    code: 'invalid_json',
    message: /JSON|Unexpected|expected/i,
  },
  { name: 'a bare JSON string', body: '"text-to-image"', status: 400, message: /JSON|Unexpected|expected|object/i },
  { name: 'JSON array body', body: [], status: 400, code: 'invalid_request', field: 'body', message: /expected object|Invalid input/i },
  { name: 'empty object', body: {}, status: 400, code: 'invalid_request', field: 'task', message: /^task: /i },
  {
    name: 'text/plain content type',
    body: JSON.stringify(t2i({})),
    contentType: 'text/plain',
    status: 400,
    field: 'body',
    message: /^body: /i,
  },
  {
    name: 'form content type',
    body: 'task=text-to-image',
    contentType: 'application/x-www-form-urlencoded',
    status: 400,
    field: 'body',
    message: /^body: /,
  },
  { name: 'no content type', body: JSON.stringify(t2i({})), contentType: null, status: 400, field: 'body', message: /^body: / },
  { name: 'body over API_BODY_LIMIT', body: edit({ image: HUGE_IMAGE }), status: 413, code: 'payload_too_large', message: /too large/i },
  // Tasks and types.
  { name: 'task is a number', body: { task: 42, input: { prompt: 'x' } }, status: 400, field: 'task', message: /^task: / },
  { name: 'unknown task', body: { task: 'image-to-video', input: { prompt: 'x' } }, status: 400, field: 'task', message: /^task: / },
  { name: 'no input', body: { task: 'text-to-image' }, status: 400, field: 'input', message: /^input: / },
  { name: 'input is a string', body: { task: 'text-to-image', input: 'a red circle' }, status: 400, field: 'input', message: /^input: / },
  { name: 'unknown top-level field', body: t2i({}, { priority: 'high' }), status: 400, field: 'body', message: /priority/ },
  { name: 'unknown input field', body: t2i({ negative_prompt: 'blue' }), status: 400, field: 'input', message: /negative_prompt/ },
  // text-to-image options out of range.
  { name: 'prompt is a number', body: t2i({ prompt: 123 }), status: 400, field: 'input.prompt', message: /^input\.prompt: .*string/i },
  { name: 'prompt is blank', body: t2i({ prompt: '   ' }), status: 400, field: 'input.prompt', message: /must not be empty/ },
  { name: 'prompt over 2000 chars', body: t2i({ prompt: 'a'.repeat(2001) }), status: 400, field: 'input.prompt', message: /2000/ },
  { name: 'seed negative', body: t2i({ seed: -1 }), status: 400, field: 'input.seed', message: /^input\.seed: / },
  { name: 'seed over 2^32-1', body: t2i({ seed: 2 ** 32 }), status: 400, field: 'input.seed', message: /4294967295/ },
  { name: 'seed not an integer', body: t2i({ seed: 1.5 }), status: 400, field: 'input.seed', message: /int/i },
  { name: 'steps 0', body: t2i({ steps: 0 }), status: 400, field: 'input.steps', message: /^input\.steps: / },
  { name: 'steps 1025', body: t2i({ steps: 1025 }), status: 400, field: 'input.steps', message: /1024/ },
  { name: 'steps as a string', body: t2i({ steps: '8' }), status: 400, field: 'input.steps', message: /number/i },
  { name: 'guidance 21', body: t2i({ guidance: 21 }), status: 400, field: 'input.guidance', message: /20/ },
  { name: 'temperature negative', body: t2i({ temperature: -0.1 }), status: 400, field: 'input.temperature', message: /0/ },
  { name: 'correction_sweeps 17', body: t2i({ correction_sweeps: 17 }), status: 400, field: 'input.correction_sweeps', message: /16/ },
  {
    name: 'correction_sweeps 1.5',
    body: t2i({ correction_sweeps: 1.5 }),
    status: 400,
    field: 'input.correction_sweeps',
    message: /expected int/,
  },
  {
    name: 'cfg_interval with lo > hi',
    body: t2i({ cfg_interval: [0.6, 0.2] }),
    status: 400,
    field: 'input.cfg_interval',
    message: /^input\.cfg_interval: must be \[lo, hi\] with lo <= hi$/,
  },
  {
    name: 'cfg_interval hi over 1',
    body: t2i({ cfg_interval: [0, 1.5] }),
    status: 400,
    field: 'input.cfg_interval.1',
    message: /^input\.cfg_interval\.1: hi must be a number 0\.\.1$/,
  },
  {
    name: 'cfg_interval a string',
    body: t2i({ cfg_interval: 'x' }),
    status: 400,
    field: 'input.cfg_interval',
    message: /^input\.cfg_interval: must be \[lo, hi\]: two numbers 0\.\.1$/,
  },
  {
    name: 'cfg_interval one number',
    body: t2i({ cfg_interval: [0.5] }),
    status: 400,
    field: 'input.cfg_interval',
    message: /^input\.cfg_interval: must be \[lo, hi\]: two numbers 0\.\.1$/,
  },
  { name: 'luminance 1.5', body: t2i({ luminance: 1.5 }), status: 400, field: 'input.luminance', message: /1/ },
  { name: 'rounds 0', body: t2i({ reflect: true, rounds: 0 }), status: 400, field: 'input.rounds', message: /1/ },
  { name: 'rounds 9', body: t2i({ reflect: true, rounds: 9 }), status: 400, field: 'input.rounds', message: /8/ },
  { name: 'priority 0', body: t2i({ priority: 0 }), status: 400, field: 'input.priority', message: /1/ },
  { name: 'priority 11', body: t2i({ priority: 11 }), status: 400, field: 'input.priority', message: /10/ },
  { name: 'priority not an integer', body: t2i({ priority: 2.5 }), status: 400, field: 'input.priority', message: /int/i },
  { name: 'deadline_seconds 0', body: t2i({ deadline_seconds: 0 }), status: 400, field: 'input.deadline_seconds', message: /1/ },
  {
    name: 'deadline_seconds over an hour',
    body: t2i({ deadline_seconds: 3601 }),
    status: 400,
    field: 'input.deadline_seconds',
    message: /3600/,
  },
  { name: 'plan is a string', body: t2i({ plan: 'yes' }), status: 400, field: 'input.plan', message: /boolean/i },
  { name: 'guidance is NaN-ish (null)', body: t2i({ guidance: null }), status: 400, field: 'input.guidance', message: /number/i },
  // edit, ground, understand options.
  {
    name: 'edit without instruction',
    body: { task: 'edit', input: { image: GOOD } },
    status: 400,
    field: 'input.instruction',
    message: /instruction/,
  },
  { name: 'edit image_guidance 21', body: edit({ image_guidance: 21 }), status: 400, field: 'input.image_guidance', message: /20/ },
  { name: 'edit steps 2000', body: edit({ steps: 2000 }), status: 400, field: 'input.steps', message: /1024/ },
  { name: 'edit correction_sweeps -1', body: edit({ correction_sweeps: -1 }), status: 400, field: 'input.correction_sweeps', message: /0/ },
  // An edit guides every step: a guidance interval is not an edit's field.
  { name: 'edit with cfg_interval', body: edit({ cfg_interval: [0, 1] }), status: 400, field: 'input', message: /cfg_interval/ },
  { name: 'edit with a prompt (text-to-image field)', body: edit({ prompt: 'x' }), status: 400, field: 'input', message: /prompt/ },
  { name: 'ground without refs', body: { task: 'ground', input: { image: GOOD } }, status: 400, field: 'input.refs', message: /refs/ },
  { name: 'ground empty refs', body: ground({ refs: [] }), status: 400, field: 'input.refs', message: /at least one/ },
  {
    name: 'ground an empty ref',
    body: ground({ refs: ['the circle', ' '] }),
    status: 400,
    field: 'input.refs.1',
    message: /must not be empty/,
  },
  {
    name: 'ground 17 refs',
    body: ground({ refs: Array.from({ length: 17 }, (_, i) => `ref ${i}`) }),
    status: 400,
    field: 'input.refs',
    message: /16/,
  },
  { name: 'ground refs is a string', body: ground({ refs: 'the circle' }), status: 400, field: 'input.refs', message: /array/i },
  { name: 'ground steps 5', body: ground({ steps: 5 }), status: 400, field: 'input.steps', message: /4/ },
  {
    name: 'understand without question',
    body: { task: 'understand', input: { image: GOOD } },
    status: 400,
    field: 'input.question',
    message: /question/,
  },
  {
    name: 'understand prompt_cache "true"',
    body: understand({ prompt_cache: 'true' }),
    status: 400,
    field: 'input.prompt_cache',
    message: /boolean/i,
  },
  // respond: text-to-image's prompt and sampler fields, nothing else.
  { name: 'respond without prompt', body: { task: 'respond', input: {} }, status: 400, field: 'input.prompt', message: /^input\.prompt: / },
  { name: 'respond without input', body: { task: 'respond' }, status: 400, field: 'input', message: /^input: / },
  { name: 'respond input is an array', body: { task: 'respond', input: ['x'] }, status: 400, field: 'input', message: /object/i },
  { name: 'respond prompt is a number', body: respond({ prompt: 42 }), status: 400, field: 'input.prompt', message: /string/i },
  { name: 'respond prompt is blank', body: respond({ prompt: ' ' }), status: 400, field: 'input.prompt', message: /must not be empty/ },
  {
    name: 'respond prompt over 2000 chars',
    body: respond({ prompt: 'a'.repeat(2001) }),
    status: 400,
    field: 'input.prompt',
    message: /2000/,
  },
  { name: 'respond seed as a string', body: respond({ seed: '1' }), status: 400, field: 'input.seed', message: /number/i },
  { name: 'respond seed over 2^32-1', body: respond({ seed: 2 ** 32 }), status: 400, field: 'input.seed', message: /4294967295/ },
  { name: 'respond steps 0', body: respond({ steps: 0 }), status: 400, field: 'input.steps', message: /1/ },
  { name: 'respond steps 1025', body: respond({ steps: 1025 }), status: 400, field: 'input.steps', message: /1024/ },
  { name: 'respond steps not an integer', body: respond({ steps: 2.5 }), status: 400, field: 'input.steps', message: /int/i },
  { name: 'respond guidance 20.5', body: respond({ guidance: 20.5 }), status: 400, field: 'input.guidance', message: /20/ },
  { name: 'respond guidance negative', body: respond({ guidance: -1 }), status: 400, field: 'input.guidance', message: /0/ },
  { name: 'respond guidance as a string', body: respond({ guidance: '2' }), status: 400, field: 'input.guidance', message: /number/i },
  { name: 'respond temperature 11', body: respond({ temperature: 11 }), status: 400, field: 'input.temperature', message: /10/ },
  {
    name: 'respond cfg_interval lo negative',
    body: respond({ cfg_interval: [-0.1, 1] }),
    status: 400,
    field: 'input.cfg_interval.0',
    message: /lo must be a number 0\.\.1/,
  },
  {
    name: 'respond cfg_interval lo a string',
    body: respond({ cfg_interval: ['0', 1] }),
    status: 400,
    field: 'input.cfg_interval.0',
    message: /lo must be a number/,
  },
  { name: 'respond luminance negative', body: respond({ luminance: -0.5 }), status: 400, field: 'input.luminance', message: /0/ },
  { name: 'respond priority 11', body: respond({ priority: 11 }), status: 400, field: 'input.priority', message: /10/ },
  {
    name: 'respond deadline_seconds 0',
    body: respond({ deadline_seconds: 0 }),
    status: 400,
    field: 'input.deadline_seconds',
    message: /1/,
  },
  { name: 'respond with plan (text-to-image only)', body: respond({ plan: true }), status: 400, field: 'input', message: /plan/ },
  { name: 'respond with an image', body: respond({ image: GOOD }), status: 400, field: 'input', message: /image/ },
  { name: 'respond with a question', body: respond({ question: 'what?' }), status: 400, field: 'input', message: /question/ },
  // Images.
  {
    name: 'image missing',
    body: { task: 'understand', input: { question: 'what?' } },
    status: 400,
    field: 'input.image',
    message: /image/,
  },
  { name: 'image empty', body: understand({ image: '' }), status: 400, field: 'input.image', message: /must not be empty/ },
  { name: 'image is a number', body: understand({ image: 12 }), status: 400, field: 'input.image', message: /string/i },
  {
    name: 'image not base64',
    body: understand({ image: '!!not*base64!!' }),
    status: 400,
    code: 'invalid_image',
    field: 'input.image',
    message: /is not base64/,
  },
  {
    name: 'image base64 of bad length',
    body: understand({ image: 'iVBORw0KG' }),
    status: 400,
    code: 'invalid_image',
    field: 'input.image',
    message: /is not base64/,
  },
  { name: 'image a JPEG', body: edit({ image: JPEG }), status: 400, code: 'invalid_image', field: 'input.image', message: /is not a PNG/ },
  {
    name: 'image too short to be a PNG',
    body: ground({ image: 'iVBO' }),
    status: 400,
    code: 'invalid_image',
    field: 'input.image',
    message: /is not a PNG/,
  },
  {
    name: 'image a corrupt PNG',
    body: edit({ image: CORRUPT_PNG }),
    status: 400,
    code: 'invalid_image',
    field: 'input.image',
    message: /corrupt PNG/,
  },
  {
    name: 'image a truncated PNG',
    body: ground({ image: TRUNCATED_PNG }),
    status: 400,
    code: 'invalid_image',
    field: 'input.image',
    message: /corrupt PNG/,
  },
  {
    name: 'image of the wrong size',
    body: understand({ image: png(32, 32) }),
    status: 400,
    code: 'invalid_image',
    field: 'input.image',
    message: /32x32.*64x64/,
  },
  {
    name: 'image wider than the model',
    body: edit({ image: png(128, 64) }),
    status: 400,
    code: 'invalid_image',
    field: 'input.image',
    message: /128x64/,
  },
  {
    name: 'data URL of a JPEG',
    body: understand({ image: `data:image/jpeg;base64,${JPEG}` }),
    status: 400,
    code: 'invalid_image',
    message: /must be a PNG \(got a image\/jpeg data URL\)/,
  },
  {
    name: 'data URL not base64',
    body: understand({ image: `data:image/png,${GOOD}` }),
    status: 400,
    code: 'invalid_image',
    message: /data URL must be base64/,
  },
  {
    name: 'data URL of text',
    body: understand({ image: 'data:,hello' }),
    status: 400,
    code: 'invalid_image',
    message: /got a text data URL/,
  },
  {
    name: 'data URL with a corrupt PNG',
    body: edit({ image: `data:image/png;base64,${CORRUPT_PNG}` }),
    status: 400,
    code: 'invalid_image',
    message: /corrupt PNG/,
  },
  // Webhooks.
  { name: 'webhook not a URL', body: t2i({}, { webhook: 'not a url' }), status: 400, field: 'webhook', message: /absolute http\(s\) URL/ },
  {
    name: 'webhook relative',
    body: t2i({}, { webhook: '/hooks/lavida' }),
    status: 400,
    field: 'webhook',
    message: /absolute http\(s\) URL/,
  },
  {
    name: 'webhook ftp',
    body: t2i({}, { webhook: 'ftp://hooks.example.com/x' }),
    status: 400,
    field: 'webhook',
    message: /absolute http\(s\) URL/,
  },
  {
    name: 'webhook with credentials',
    body: t2i({}, { webhook: 'https://user:pw@hooks.example.com/x' }),
    status: 400,
    field: 'webhook',
    message: /credentials/,
  },
  {
    name: 'webhook over 2048 chars',
    body: t2i({}, { webhook: `https://hooks.example.com/${'a'.repeat(2048)}` }),
    status: 400,
    field: 'webhook',
    message: /2048/,
  },
  { name: 'webhook loopback', body: t2i({}, { webhook: 'http://127.0.0.1:9/x' }), status: 400, field: 'webhook', message: /loopback/ },
  {
    name: 'webhook localhost',
    body: t2i({}, { webhook: 'http://localhost/x' }),
    status: 400,
    field: 'webhook',
    message: /localhost|loopback/,
  },
  { name: 'webhook private', body: t2i({}, { webhook: 'http://10.1.2.3/x' }), status: 400, field: 'webhook', message: /private/ },
  {
    name: 'webhook link-local (metadata)',
    body: t2i({}, { webhook: 'http://169.254.169.254/latest' }),
    status: 400,
    field: 'webhook',
    message: /link-local/,
  },
  { name: 'webhook IPv6 loopback', body: t2i({}, { webhook: 'http://[::1]:8080/x' }), status: 400, field: 'webhook', message: /loopback/ },
  { name: 'webhook is a number', body: t2i({}, { webhook: 7 }), status: 400, field: 'webhook', message: /string/i },
  {
    name: 'filter without webhook',
    body: t2i({}, { webhook_events_filter: ['completed'] }),
    status: 400,
    field: 'webhook_events_filter',
    message: /needs a webhook/,
  },
  {
    name: 'filter unknown event',
    body: t2i({}, { webhook: 'https://hooks.example.com/x', webhook_events_filter: ['finished'] }),
    status: 400,
    field: 'webhook_events_filter.0',
    message: /start|stage|completed/,
  },
  {
    name: 'filter empty',
    body: t2i({}, { webhook: 'https://hooks.example.com/x', webhook_events_filter: [] }),
    status: 400,
    field: 'webhook_events_filter',
    message: /at least one event/,
  },
  {
    name: 'filter a string',
    body: t2i({}, { webhook: 'https://hooks.example.com/x', webhook_events_filter: 'completed' }),
    status: 400,
    field: 'webhook_events_filter',
    message: /array/i,
  },
  // Listing.
  { name: 'list limit 0', method: 'GET', path: '/v1/jobs?limit=0', status: 400, field: 'limit', message: /^limit: / },
  { name: 'list limit 101', method: 'GET', path: '/v1/jobs?limit=101', status: 400, field: 'limit', message: /100/ },
  { name: 'list limit not a number', method: 'GET', path: '/v1/jobs?limit=ten', status: 400, field: 'limit', message: /number/i },
  { name: 'list unknown status', method: 'GET', path: '/v1/jobs?status=done', status: 400, field: 'status', message: /succeeded/ },
  { name: 'list unknown task', method: 'GET', path: '/v1/jobs?task=video', status: 400, field: 'task', message: /text-to-image/ },
  { name: 'list unknown parameter', method: 'GET', path: '/v1/jobs?order=asc', status: 400, message: /order/ },
  {
    name: 'list garbage cursor',
    method: 'GET',
    path: '/v1/jobs?cursor=garbage',
    status: 400,
    field: 'cursor',
    message: /not a cursor of this api/,
  },
  {
    name: 'list cursor without an id',
    method: 'GET',
    path: `/v1/jobs?cursor=${Buffer.from('123/').toString('base64url')}`,
    status: 400,
    field: 'cursor',
    message: /not a cursor/,
  },
  { name: 'list cursor too long', method: 'GET', path: `/v1/jobs?cursor=${'a'.repeat(201)}`, status: 400, field: 'cursor', message: /200/ },
  // Unknown ids.
  { name: 'unknown job', method: 'GET', path: `/v1/jobs/${UNKNOWN_JOB}`, status: 404, code: 'not_found', message: /not found/ },
  {
    name: 'cancel an unknown job',
    method: 'POST',
    path: `/v1/jobs/${UNKNOWN_JOB}/cancel`,
    status: 404,
    code: 'not_found',
    message: /not found/,
  },
  {
    name: 'file of an unknown job',
    method: 'GET',
    path: `/v1/jobs/${UNKNOWN_JOB}/files/image.png`,
    status: 404,
    code: 'not_found',
    message: /not found/,
  },
  {
    name: 'revoke an unknown key',
    method: 'DELETE',
    path: '/v1/keys/key_000000000000000000000000',
    status: 404,
    code: 'not_found',
    message: /not found/,
  },
  // Keys.
  { name: 'no Authorization', body: t2i({}), auth: 'none', status: 401, code: 'unauthorized', message: /API key is required/ },
  {
    name: 'Basic auth',
    method: 'GET',
    auth: { header: 'Basic dXNlcjpwYXNz' },
    status: 401,
    code: 'unauthorized',
    message: /API key is required/,
  },
  { name: 'empty Bearer', method: 'GET', auth: { header: 'Bearer ' }, status: 401, code: 'unauthorized', message: /API key is required/ },
  { name: 'two tokens', method: 'GET', auth: { header: 'Bearer a b' }, status: 401, code: 'unauthorized', message: /API key is required/ },
  { name: 'unknown key', body: t2i({}), auth: 'unknown', status: 401, code: 'unauthorized', message: /not valid/ },
  { name: 'revoked key', method: 'GET', auth: 'revoked', status: 401, code: 'unauthorized', message: /not valid \(unknown or revoked\)/ },
  { name: 'jobs key lists keys', method: 'GET', path: '/v1/keys', auth: 'jobs', status: 403, code: 'forbidden', message: /admin scope/ },
  {
    name: 'jobs key creates a key',
    method: 'POST',
    path: '/v1/keys',
    body: { name: 'x', scopes: ['admin'] },
    auth: 'jobs',
    status: 403,
    code: 'forbidden',
    message: /admin scope/,
  },
  {
    name: 'revoke the configured admin key',
    method: 'DELETE',
    path: '/v1/keys/key_admin',
    status: 409,
    code: 'configured_key',
    message: /ADMIN_API_KEY/,
  },
  {
    name: 'key with an unknown scope',
    method: 'POST',
    path: '/v1/keys',
    body: { name: 'x', scopes: ['root'] },
    status: 400,
    field: 'scopes.0',
    message: /jobs|admin/,
  },
  {
    name: 'key without a name',
    method: 'POST',
    path: '/v1/keys',
    body: { scopes: ['jobs'] },
    status: 400,
    field: 'name',
    message: /^name: /,
  },
  {
    name: 'key with a rate limit 0',
    method: 'POST',
    path: '/v1/keys',
    body: { name: 'x', rate_limit_per_minute: 0 },
    status: 400,
    field: 'rate_limit_per_minute',
    message: /1/,
  },
  // Idempotency.
  {
    name: 'Idempotency-Key reused with another body',
    body: t2i({ prompt: 'a blue square' }),
    headers: { 'idempotency-key': IDEMPOTENCY_KEY },
    status: 422,
    code: 'idempotency_key_reused',
    field: 'Idempotency-Key',
    message: /another request body/,
  },
  {
    name: 'Idempotency-Key over 255 chars',
    body: t2i({}),
    headers: { 'idempotency-key': 'k'.repeat(256) },
    status: 400,
    field: 'Idempotency-Key',
    message: /255/,
  },
];

/** ADMIN_API_KEY set, a small body limit: every case answers its status with a useful error, and the service goes on. */
describe('a corpus of bad requests', () => {
  const admin = newKey();
  let redis: TestRedis;
  let system: TestSystem;
  let api = '';
  const keys: Record<'revoked' | 'jobs', string> = { revoked: '', jobs: '' };

  const send = async (c: Pick<BadRequest, 'method' | 'path' | 'body' | 'contentType' | 'headers' | 'auth'>) => {
    const auth = c.auth ?? 'admin';
    const bearer =
      typeof auth === 'object'
        ? auth.header
        : auth === 'none'
          ? undefined
          : `Bearer ${auth === 'admin' ? admin : auth === 'unknown' ? newKey() : keys[auth]}`;
    const headers: Record<string, string> = { ...(bearer ? { authorization: bearer } : {}), ...c.headers };
    let body: string | undefined;
    if (c.body !== undefined) {
      body = typeof c.body === 'string' ? c.body : JSON.stringify(c.body);
      if (c.contentType !== null) headers['content-type'] = c.contentType ?? 'application/json';
    }
    const response = await fetch(`${api}${c.path ?? '/v1/jobs'}`, {
      method: c.method ?? (body === undefined ? 'GET' : 'POST'),
      headers,
      ...(body === undefined ? {} : { body: c.contentType === null ? Buffer.from(body) : body }),
    });
    const text = await response.text();
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = text;
    }
    return { status: response.status, headers: response.headers, json };
  };

  before(async () => {
    redis = await startRedis();
    system = await new TestSystem({
      redisUrl: redis.url,
      prefix: freshPrefix(),
      env: { ADMIN_API_KEY: admin, API_BODY_LIMIT: '64kb', RATE_LIMIT_PER_MINUTE: 10_000 },
    }).start();
    api = system.apiUrl;
    for (const name of ['revoked', 'jobs'] as const) {
      const created = await send({ method: 'POST', path: '/v1/keys', body: { name, scopes: ['jobs'] } });
      assert.equal(created.status, 201, JSON.stringify(created.json));
      keys[name] = (created.json as { key: string }).key;
    }
    const revokedId = ((await send({ path: '/v1/keys' })).json as { results: { id: string; name: string }[] }).results.find(
      (k) => k.name === 'revoked',
    )!.id;
    assert.equal((await send({ method: 'DELETE', path: `/v1/keys/${revokedId}` })).status, 204);
    const first = await send({ body: t2i({ prompt: 'a red circle' }), headers: { 'idempotency-key': IDEMPOTENCY_KEY } });
    assert.equal(first.status, 202, JSON.stringify(first.json));
  });
  after(async () => {
    await system?.stop();
    await redis?.stop();
  });

  it(`answers each of ${CASES.length} bad requests with its status and a useful error`, async () => {
    assert.ok(CASES.length >= 40);
    assert.equal(new Set(CASES.map((c) => c.name)).size, CASES.length, 'case names are unique');
    const failures: string[] = [];
    for (const c of CASES) {
      const answer = await send(c);
      const error = (answer.json as Partial<ErrorBody> | null)?.error;
      const problems: string[] = [];
      if (answer.status !== c.status) problems.push(`status ${answer.status}, expected ${c.status}`);
      if (!error || typeof error.message !== 'string') problems.push('no {"error": {…}} body');
      else {
        if (error.status !== answer.status) problems.push(`error.status ${error.status} ≠ ${answer.status}`);
        if (c.code !== undefined && error.code !== c.code) problems.push(`code ${error.code}, expected ${c.code}`);
        if (c.field !== undefined && error.field !== c.field) problems.push(`field ${error.field}, expected ${c.field}`);
        if (!c.message.test(error.message)) problems.push(`message ${JSON.stringify(error.message)} does not match ${c.message}`);
        // Nothing leaks: no stack traces, no internals.
        if (/\bat .*\.js:\d+|node_modules/.test(error.message)) problems.push('message leaks a stack trace');
      }
      if (answer.status === 401 && !/^Bearer realm="lavida"/.test(answer.headers.get('www-authenticate') ?? ''))
        problems.push('401 without WWW-Authenticate: Bearer');
      if (problems.length) failures.push(`${c.name}: ${problems.join('; ')} (${JSON.stringify(answer.json).slice(0, 300)})`);
    }
    assert.deepEqual(failures, [], `\n${failures.join('\n')}`);
  });

  it('still serves after the corpus: /readyz 200, a valid job succeeds, the api never crashed or logged a 5xx', async () => {
    assert.equal((await fetch(`${api}/readyz`)).status, 200);
    assert.equal((await fetch(`${api}/healthz`)).status, 200);
    const created = await send({ body: t2i({ prompt: 'a red circle left of a blue square' }) });
    assert.equal(created.status, 202, JSON.stringify(created.json));
    const id = (created.json as { id: string }).id;
    const done = await waitFor(
      async () => {
        const job = (await send({ path: `/v1/jobs/${id}` })).json as { status: string; output: { image?: string } | null };
        return ['succeeded', 'failed', 'canceled'].includes(job.status) ? job : undefined;
      },
      30_000,
      `job ${id}`,
      100,
    );
    assert.equal(done.status, 'succeeded', JSON.stringify(done));
    const image = await fetch(done.output!.image!, { headers: { authorization: `Bearer ${admin}` } });
    assert.equal(image.status, 200);
    assert.ok(system.api.running, `the api exited: ${system.api.exitCode ?? system.api.signal}`);
    const serverErrors = system.api.lines.filter((l) => l.msg === 'request failed');
    assert.deepEqual(serverErrors, [], 'no request answered 5xx');
  });
});
