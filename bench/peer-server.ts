/**
 * Bench child: one branch of a model behind the joint-attention gRPC service (`und`, the default:
 * the text side, as an und-worker serves it; `gen`: the image side of text-to-image, as a
 * gen-worker serves it), plus the standard health service for a bare round trip. Prints
 * `{"port":…}` once bound.
 * Usage: node bench/dist/peer-server.js <model-dir> [und|gen]
 */
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { ModelPackage } from '@lavida/model';
import { grpcServiceDefinition, JointAttentionService } from '@lavida/proto';
import { channelOptions, jointAttentionService } from '@lavida/wire';
import { defaultTransport, HOST, serveUntilParentLeaves } from './support.js';

const [modelDir, branch = 'und'] = process.argv.slice(2);
if (!modelDir || (branch !== 'und' && branch !== 'gen')) throw new Error('usage: peer-server.js <model-dir> [und|gen]');

const transport = defaultTransport();
const pkg = await ModelPackage.load(modelDir, { branch });
const server = new Server(channelOptions(transport));
server.addService(
  grpcServiceDefinition(JointAttentionService),
  jointAttentionService(pkg, { ...transport, workerId: `bench-${branch}-${process.pid}` }),
);
new HealthImplementation({ '': 'SERVING' }).addToServer(server);
const port = await new Promise<number>((resolve, reject) => {
  server.bindAsync(`${HOST}:0`, ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound)));
});

serveUntilParentLeaves({ port, loadMs: pkg.loadMs }, () => server.forceShutdown());
