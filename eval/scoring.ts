/**
 * Scores result lines in-process with the world library's scorer, the one libs/world/src/cli/score.ts
 * runs (the path evaluate.py takes): read-back of every image, the clean-scene rule, checkPlan,
 * IoU >= 0.5 grounding, exact-match answers, checkEdit, reflection verdicts, the prompt-blind
 * baseline. The output object has score.ts's shape, so it compares key for key with
 * model/quality.json's `scores`.
 */
import { scoreLines as scoreWorldLines, type Scores } from '@lavida/world';
import type { ResultLine } from './protocol.js';

export type { Scores };

/** score.ts's output for these lines and images (`baselineSamples` 0 leaves the baseline out). */
export function scoreLines(lines: readonly ResultLine[], images: readonly Uint8Array[], baselineSamples = 2000, baselineSeed = 0): Scores {
  return scoreWorldLines(lines, images, baselineSamples, baselineSeed);
}
