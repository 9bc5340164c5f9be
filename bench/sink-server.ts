/**
 * Bench child: a gRPC sink and a plain TCP sink on loopback. Both reassemble each tensor and ack it.
 * Prints `{"grpcPort":…,"tcpPort":…}` once both listen.
 */
import { createServer, type Socket } from 'node:net';
import { Server, ServerCredentials, status, type ServerDuplexStream } from '@grpc/grpc-js';
import { create, fromBinary, TensorChunkSchema, TensorSchema } from '@lavida/proto';
import { UInt32ValueSchema, type UInt32Value } from '@bufbuild/protobuf/wkt';
import { channelOptions, decodeTensor, FrameAssembler } from '@lavida/wire';
import { isTensor, lengthHeader, LengthPrefixedReader, SinkService, type SinkFrame } from './sink.js';
import { defaultTransport, HOST, serveUntilParentLeaves } from './support.js';

const transport = defaultTransport();

function grpcSink(call: ServerDuplexStream<Buffer, UInt32Value>): void {
  const assembler = new FrameAssembler<SinkFrame>(
    (frame) => (isTensor(frame) ? [frame] : []),
    (frame) => (isTensor(frame) ? undefined : frame),
    transport.maxMessageBytes * 64,
  );
  let chunksLeft = 0;
  call.on('data', (bytes: Buffer) => {
    try {
      // No wrapper message: a chunked tensor's continuation pieces follow it directly.
      const frame: SinkFrame = chunksLeft > 0 ? fromBinary(TensorChunkSchema, bytes) : fromBinary(TensorSchema, bytes);
      chunksLeft = isTensor(frame) ? Math.max(1, frame.chunkCount) - 1 : chunksLeft - 1;
      const whole = assembler.push(frame);
      if (!whole || !isTensor(whole)) return;
      const tensor = decodeTensor(whole, 'sink');
      // One tiny ack per tensor, and the client waits for it: writes cannot pile up here.
      call.write(create(UInt32ValueSchema, { value: (tensor.data as Float32Array).byteLength }));
    } catch (error) {
      call.emit('error', { code: status.INVALID_ARGUMENT, details: (error as Error).message });
    }
  });
  call.on('end', () => call.end());
  call.on('error', () => undefined);
}

function tcpSink(socket: Socket): void {
  socket.setNoDelay(true);
  const reader = new LengthPrefixedReader();
  socket.on('data', (chunk: Buffer) => {
    for (const message of reader.push(chunk)) {
      const floats = new Float32Array(message.buffer, message.byteOffset, message.byteLength / 4);
      const ack = lengthHeader(floats.byteLength);
      socket.write(Buffer.concat([lengthHeader(ack.length), ack]));
    }
  });
  socket.on('error', () => socket.destroy());
}

const grpcServer = new Server(channelOptions(transport));
grpcServer.addService(SinkService, { push: grpcSink });
const grpcPort = await new Promise<number>((resolve, reject) => {
  grpcServer.bindAsync(`${HOST}:0`, ServerCredentials.createInsecure(), (error, port) => (error ? reject(error) : resolve(port)));
});

const tcpServer = createServer(tcpSink);
await new Promise<void>((resolve, reject) => {
  tcpServer.once('error', reject);
  tcpServer.listen(0, HOST, resolve);
});
const address = tcpServer.address();
if (!address || typeof address === 'string') throw new Error('TCP sink has no port');

serveUntilParentLeaves({ grpcPort, tcpPort: address.port }, () => {
  grpcServer.forceShutdown();
  tcpServer.close();
});
