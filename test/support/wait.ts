import { setTimeout as sleep } from 'node:timers/promises';

/** A TCP port nothing listens on right now (the libs' helper, kept here for the tests' imports). */
export { freePort } from '@lavida/config';

/** Polls until `check` returns a truthy value, or throws after `timeoutMs` naming what it waited for. */
export async function waitFor<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs: number,
  what: string,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}
