#!/usr/bin/env node
// Runs the whole system on one machine: Redis (started locally when none answers at REDIS_URL and
// redis-server is installed), then the understanding worker, the generation worker, the
// orchestrator and the api. Ctrl-C stops everything.
import { spawn, spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const redisUrl = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const children = [];
let stopping = false;

function log(msg) {
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), level: 'log', app: 'start', msg })}\n`);
}

function reachable(host, port) {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => {
      socket.write('PING\r\n');
      socket.once('data', (data) => done(data.toString().startsWith('+PONG') || data.toString().startsWith('-NOAUTH')));
    });
  });
}

function run(name, command, args, env = {}) {
  const child = spawn(command, args, {
    cwd: root,
    env: { ...process.env, REDIS_URL: redisUrl.toString(), ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  children.push({ name, child });
  child.on('exit', (code, signal) => {
    if (stopping) return;
    log(`${name} exited (${signal ?? code}); stopping everything`);
    stop(1);
  });
  return child;
}

function stop(code) {
  if (stopping) return;
  stopping = true;
  // Apps first (they drain their jobs), Redis last.
  const apps = children.filter((c) => c.name !== 'redis-server');
  const redis = children.find((c) => c.name === 'redis-server');
  let left = apps.length;
  const finish = () => {
    redis?.child.kill('SIGTERM');
    process.exit(code);
  };
  if (left === 0) finish();
  for (const { child } of apps) {
    child.once('exit', () => --left === 0 && finish());
    child.kill('SIGTERM');
  }
  setTimeout(finish, 15000).unref();
}

process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));

const host = redisUrl.hostname || '127.0.0.1';
const port = Number(redisUrl.port || 6379);
if (!(await reachable(host, port))) {
  const local = ['127.0.0.1', 'localhost', '::1', '[::1]'].includes(host);
  const installed = spawnSync('redis-server', ['--version']).status === 0;
  if (!local || !installed) {
    console.error(
      `No Redis answers at ${redisUrl}. ${local ? 'redis-server is not installed: install it (Debian/Ubuntu: apt-get install -y redis-server; macOS: brew install redis)' : 'Start it'} or point REDIS_URL at a running Redis.`,
    );
    process.exit(1);
  }
  log(`no Redis at ${redisUrl}; starting a local redis-server on port ${port}`);
  run('redis-server', 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  for (let i = 0; i < 50 && !(await reachable(host, port)); i++) await new Promise((r) => setTimeout(r, 100));
}

run('und-worker', process.execPath, ['apps/und-worker/dist/main.js']);
run('gen-worker', process.execPath, ['apps/gen-worker/dist/main.js']);
run('orchestrator', process.execPath, ['apps/orchestrator/dist/main.js']);
run('api', process.execPath, ['apps/api/dist/main.js']);
log(`starting; the api listens on port ${process.env.API_PORT ?? 8080} (POST /v1/jobs)`);
