import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { FIXTURE_MODEL, ROOT } from './paths.js';
import { waitFor } from './wait.js';

export type AppName = 'api' | 'orchestrator' | 'und-worker' | 'gen-worker';

/** A real app process with its JSON log lines collected. */
export class AppProcess {
  readonly lines: Record<string, unknown>[] = [];
  readonly stderr: string[] = [];
  exitCode: number | null = null;
  signal: NodeJS.Signals | null = null;
  private readonly exited: Promise<void>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    let buffer = '';
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString();
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        try {
          this.lines.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          this.stderr.push(line);
        }
        if (process.env.TEST_VERBOSE) process.stderr.write(`[${name}] ${line}\n`);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exitCode = code;
        this.signal = signal;
        resolve();
      }),
    );
  }

  get running(): boolean {
    return this.exitCode === null && this.signal === null;
  }

  /** The first log line with this message, once it appears. */
  async waitForLog(msg: string, timeoutMs = 20_000): Promise<Record<string, unknown>> {
    return waitFor(
      () => {
        const line = this.lines.find((l) => l.msg === msg);
        if (line) return line;
        if (!this.running)
          throw new Error(`${this.name} exited (${this.exitCode ?? this.signal}) before logging "${msg}": ${this.output()}`);
        return undefined;
      },
      timeoutMs,
      `${this.name} to log "${msg}"`,
    );
  }

  output(): string {
    return [...this.lines.map((l) => JSON.stringify(l)), ...this.stderr].join('\n');
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.running) this.child.kill(signal);
    await this.exited;
  }

  waitForExit(): Promise<void> {
    return this.exited;
  }
}

/** Starts an app's compiled entry point with extra environment (the fixture model unless MODEL_DIR is given). */
export function startApp(name: AppName, env: Record<string, string | number>): AppProcess {
  const child = spawn(process.execPath, [join(ROOT, 'apps', name, 'dist', 'main.js')], {
    cwd: ROOT,
    env: {
      ...process.env,
      LOG_LEVEL: 'log',
      MODEL_DIR: FIXTURE_MODEL,
      // No metrics port unless a test asks for one (the defaults would collide between test processes).
      METRICS_PORT: '0',
      ...Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)])),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new AppProcess(name, child);
}
