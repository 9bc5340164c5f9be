import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';

/** Repository root (test/dist/support → ../../..). */
export const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
export const FIXTURE_MODEL = resolve(ROOT, 'models/fixture');
export const MINI_MODEL = resolve(ROOT, 'models/lavida-o-mini');
