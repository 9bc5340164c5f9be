/**
 * Bench child: the understanding ('und') side of the fixture model behind the joint-attention gRPC
 * service, plus the standard health service for a bare round trip. Prints `{"port":…}` once bound.
 * Usage: node bench/dist/peer-server.js <model-dir>
 */
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { ModelPackage } from '@lavida/model';
import { grpcServiceDefinition, JointAttentionService } from '@lavida/proto';
import { channelOptions, jointAttentionService } from '@lavida/wire';
import { defaultTransport, HOST, serveUntilParentLeaves } from './support.js';

const modelDir = process.argv[2];
if (!modelDir) throw new Error('usage: peer-server.js <model-dir>');

const transport = defaultTransport();
const pkg = await ModelPackage.load(modelDir, { branch: 'und' });
const server = new Server(channelOptions(transport));
server.addService(
  grpcServiceDefinition(JointAttentionService),
  jointAttentionService(pkg, { ...transport, workerId: `bench-und-${process.pid}` }),
);
new HealthImplementation({ '': 'SERVING' }).addToServer(server);
const port = await new Promise<number>((resolve, reject) => {
  server.bindAsync(`${HOST}:0`, ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound)));
});

serveUntilParentLeaves({ port, loadMs: pkg.loadMs }, () => server.forceShutdown());
