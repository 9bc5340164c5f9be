import { progressOf, type JobView } from '@lavida/client';

/** What the progress line shows of a job. */
export interface ProgressState {
  status: string;
  /** The running (else the last) stage, with its round: `generate #2`. */
  stage?: string;
  step?: number;
  steps?: number;
}

export function progressState(job: JobView): ProgressState {
  const running = job.timeline.filter((s) => s.status === 'processing').at(-1) ?? job.timeline.at(-1);
  const progress = progressOf(running?.progress ?? null) ?? progressOf(job.progress);
  const name = running?.stage ?? progress?.stage;
  return {
    status: job.status,
    stage: name === undefined ? undefined : running?.round === undefined ? name : `${name} #${running.round}`,
    step: progress?.step,
    steps: progress?.steps,
  };
}

/** A text bar: `[#########---------]`. */
export function bar(step: number, steps: number, width = 24): string {
  const filled = steps > 0 ? Math.max(0, Math.min(width, Math.round((step / steps) * width))) : 0;
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
}

/** One progress line; `tty` adds the bar and shortens the id (the full one is printed on submission and in the result). */
export function formatProgress(id: string, state: ProgressState, elapsedMs: number, tty: boolean): string {
  const parts = [`job ${tty ? id.slice(0, 8) : id}`, state.status];
  if (state.stage) parts.push(state.stage);
  if (state.step !== undefined && state.steps) {
    const percent = Math.round((state.step / state.steps) * 100);
    parts.push(tty ? `${bar(state.step, state.steps)} ${state.step}/${state.steps}` : `${state.step}/${state.steps} (${percent}%)`);
  }
  parts.push(`${(elapsedMs / 1000).toFixed(1)}s`);
  return parts.join('  ');
}

/**
 * Shows a job's progress on a stream: one line redrawn in place on a TTY, else a plain line per
 * change of status or stage and at most one a second for steps.
 */
export class ProgressView {
  private readonly started = Date.now();
  private drawn = false;
  private last?: ProgressState;
  private lastLineAt = 0;

  constructor(
    private readonly stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number },
    private readonly tty = stream.isTTY === true,
  ) {}

  update(job: JobView): void {
    const state = progressState(job);
    const line = formatProgress(job.id, state, Date.now() - this.started, this.tty);
    if (this.tty) {
      const columns = this.stream.columns || 100;
      this.stream.write(`\r\x1b[2K${line.slice(0, Math.max(20, columns - 1))}`);
      this.drawn = true;
    } else {
      const previous = this.last;
      const changed = !previous || previous.status !== state.status || previous.stage !== state.stage;
      const stepped = previous?.step !== state.step && (state.step === state.steps || Date.now() - this.lastLineAt >= 1000);
      if (changed || stepped) {
        this.stream.write(`${line}\n`);
        this.lastLineAt = Date.now();
      }
    }
    this.last = state;
  }

  /** Ends the redrawn line. */
  done(): void {
    if (this.drawn) this.stream.write('\n');
    this.drawn = false;
  }
}
