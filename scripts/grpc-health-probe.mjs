#!/usr/bin/env node
// grpc.health.v1 Check of a worker, for container health checks (docker-compose): exits 0 when the
// service answers SERVING within the timeout, 1 otherwise (printing why).
//   node scripts/grpc-health-probe.mjs [host:port] [service]
// Defaults: 127.0.0.1:$GRPC_HEALTH_PORT (the plaintext health-only port; else the worker's own port
// from UND_GRPC_PORT or GEN_GRPC_PORT as PROBE_PORT_ENV names), service '' (ready). Use the
// service `liveness` to ask whether the process is alive (it stays SERVING while the worker drains).
import { credentials, makeGenericClientConstructor } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';

const port = process.env.GRPC_HEALTH_PORT || process.env[process.env.PROBE_PORT_ENV ?? ''] || '50051';
const address = process.argv[2] || `127.0.0.1:${port}`;
const serviceName = process.argv[3] ?? '';
const timeoutMs = Number(process.env.PROBE_TIMEOUT_MS ?? 3000);

const Health = makeGenericClientConstructor(healthService, 'Health');
const client = new Health(address, credentials.createInsecure());
client.check({ service: serviceName }, { deadline: Date.now() + timeoutMs }, (error, response) => {
  client.close();
  if (error) {
    console.error(`${address} ${serviceName || "''"}: ${error.message}`);
    process.exit(1);
  }
  if (response.status !== 'SERVING') {
    console.error(`${address} ${serviceName || "''"}: ${response.status}`);
    process.exit(1);
  }
  process.exit(0);
});
