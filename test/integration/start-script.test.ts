import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import { AppProcess } from '../support/processes.js';
import { postJob, waitForJob } from '../support/http.js';
import { freePort, waitFor } from '../support/wait.js';
import { ROOT } from '../support/paths.js';

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

const hasRedisServer = spawnSync('redis-server', ['--version']).status === 0;

describe('npm start (scripts/start.mjs)', () => {
  let launcher: AppProcess | undefined;
  after(async () => {
    await launcher?.stop('SIGKILL');
  });

  it(
    'starts a local Redis when none answers, runs a job end to end, and stops everything on SIGTERM',
    { skip: !hasRedisServer && 'redis-server is not installed' },
    async () => {
      const [redisPort, apiPort, undPort, genPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
      const child = spawn(process.execPath, [join(ROOT, 'scripts', 'start.mjs')], {
        cwd: ROOT,
        env: {
          ...process.env,
          REDIS_URL: `redis://127.0.0.1:${redisPort}`,
          API_HOST: '127.0.0.1',
          API_PORT: String(apiPort),
          GRPC_HOST: '127.0.0.1',
          UND_GRPC_PORT: String(undPort),
          GEN_GRPC_PORT: String(genPort),
          UND_PEERS: `127.0.0.1:${undPort}`,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      launcher = new AppProcess('start', child);
      await launcher.waitForLog(`no Redis at redis://127.0.0.1:${redisPort}; starting a local redis-server on port ${redisPort}`);
      await launcher.waitForLog('listening', 30_000);
      // Every queue has its consumer: pipelines (orchestrator), generation (gen-worker), understanding (und-worker).
      const consuming = () => new Set(launcher!.lines.filter((l) => l.msg === 'consuming').map((l) => String(l.queue)));
      await waitFor(() => ['pipeline', 'generation', 'understanding'].every((q) => consuming().has(q)), 20_000, 'every queue consumer');

      const apiUrl = `http://127.0.0.1:${apiPort}`;
      const created = await postJob(apiUrl, { task: 'text-to-image', input: { prompt: 'a yellow triangle', seed: 5 } });
      assert.equal(created.status, 202);
      const job = await waitForJob(apiUrl, String(created.json.id));
      assert.equal(job.status, 'succeeded', launcher.output());
      assert.equal((await fetch(job.output!.image)).status, 200);

      await launcher.stop('SIGTERM');
      assert.equal(launcher.exitCode, 0, launcher.output());
      await waitFor(
        async () => !(await answers(redisPort)) && !(await answers(apiPort)) && !(await answers(undPort)),
        10_000,
        'every port to close',
      );
    },
  );
});
