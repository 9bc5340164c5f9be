import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { credentials, makeGenericClientConstructor, type ClientDuplexStream } from '@grpc/grpc-js';
import type { UInt32Value } from '@bufbuild/protobuf/wkt';
import { Tensor } from '@lavida/model';
import { channelOptions, chunksOf, encodeTensor, writeAll, type TransportOptions } from '@lavida/wire';
import { lengthHeader, LengthPrefixedReader, SinkService, type SinkFrame } from './sink.js';
import { HOST, Mailbox, percentile, round } from './support.js';

export type Transport = 'grpc' | 'tcp';

export interface ThroughputPlan {
  sizes: number[];
  warmupSeconds: number;
  /** Rounds alternate the two transports so that drift on a busy machine hits both alike. */
  rounds: number;
  blockSeconds: number;
}

export interface ThroughputResult {
  transport: Transport;
  tensorBytes: number;
  reps: number;
  seconds: number;
  /** 10^6 bytes per second of tensor payload, each tensor sent and acked before the next. */
  mbPerSecond: number;
  /** Slowest and fastest round, to show the spread. */
  roundMbPerSecond: { min: number; max: number };
  p50MsPerTensor: number;
  p99MsPerTensor: number;
}

/** Sends one tensor and resolves once the sink acked its byte length. */
type Sender = { send(tensor: Tensor): Promise<void>; close(): void };

function checkAck(transport: Transport, got: number, sent: number): void {
  if (got !== sent) throw new Error(`${transport} sink acked ${got} bytes, ${sent} were sent`);
}

function grpcSender(port: number, options: TransportOptions): Sender {
  const Client = makeGenericClientConstructor(SinkService, 'SinkService');
  const client = new Client(`${HOST}:${port}`, credentials.createInsecure(), channelOptions(options));
  const call = (client as unknown as { push(): ClientDuplexStream<SinkFrame, UInt32Value> }).push();
  const acks = new Mailbox<number>();
  call.on('data', (ack: UInt32Value) => acks.put(ack.value));
  call.on('error', (error: Error) => acks.fail(error));
  call.on('end', () => acks.fail(new Error('gRPC sink ended the stream')));
  return {
    async send(tensor) {
      const encoded = encodeTensor(tensor, options.chunkBytes);
      // Await the ack together with the writes, so a failure while waiting for 'drain' is not unhandled.
      const [got] = await Promise.all([acks.take(), writeAll(call, [encoded.tensor, ...chunksOf([encoded])])]);
      checkAck('grpc', got, encoded.tensor.byteLength);
    },
    close() {
      call.cancel();
      client.close();
    },
  };
}

async function tcpSender(port: number): Promise<Sender> {
  const socket: Socket = connect({ host: HOST, port });
  await once(socket, 'connect');
  socket.setNoDelay(true);
  const reader = new LengthPrefixedReader();
  const acks = new Mailbox<number>();
  socket.on('data', (chunk: Buffer) => {
    for (const ack of reader.push(chunk)) acks.put(Buffer.from(ack.buffer, ack.byteOffset, ack.byteLength).readUInt32LE(0));
  });
  socket.on('error', (error) => acks.fail(error));
  socket.on('close', () => acks.fail(new Error('TCP sink closed the connection')));
  return {
    async send(tensor) {
      const data = tensor.data as Float32Array;
      const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      const write = async () => {
        socket.write(lengthHeader(bytes.length));
        if (!socket.write(bytes)) await once(socket, 'drain');
      };
      const [got] = await Promise.all([acks.take(), write()]);
      checkAck('tcp', got, bytes.length);
    },
    close() {
      socket.destroy();
    },
  };
}

/** Sends tensors back to back for `seconds` (at least `minReps`), returning each round trip in ms. */
async function sendFor(sender: Sender, tensor: Tensor, seconds: number, minReps = 3): Promise<number[]> {
  const times: number[] = [];
  const until = performance.now() + seconds * 1000;
  while (times.length < minReps || performance.now() < until) {
    const started = performance.now();
    await sender.send(tensor);
    times.push(performance.now() - started);
  }
  return times;
}

function randomTensor(bytes: number): Tensor {
  const data = new Float32Array(bytes / 4);
  for (let i = 0; i < data.length; i++) data[i] = Math.random() * 2 - 1;
  return new Tensor('float32', data, [data.length]);
}

/** gRPC (project codec, 1 MiB chunks) versus a plain TCP socket, same process pair, same bytes. */
export async function measureThroughput(
  ports: { grpcPort: number; tcpPort: number },
  options: TransportOptions,
  plan: ThroughputPlan,
): Promise<ThroughputResult[]> {
  const senders: Record<Transport, Sender> = {
    grpc: grpcSender(ports.grpcPort, options),
    tcp: await tcpSender(ports.tcpPort),
  };
  const results: ThroughputResult[] = [];
  try {
    for (const size of plan.sizes) {
      const tensor = randomTensor(size);
      const samples: Record<Transport, number[][]> = { grpc: [], tcp: [] };
      for (const transport of ['grpc', 'tcp'] as const) await sendFor(senders[transport], tensor, plan.warmupSeconds);
      for (let round = 0; round < plan.rounds; round++) {
        const order: Transport[] = round % 2 === 0 ? ['grpc', 'tcp'] : ['tcp', 'grpc'];
        for (const transport of order) samples[transport].push(await sendFor(senders[transport], tensor, plan.blockSeconds));
      }
      for (const transport of ['grpc', 'tcp'] as const) {
        const all = samples[transport].flat();
        const seconds = all.reduce((a, b) => a + b, 0) / 1000;
        const perRound = samples[transport].map((times) => (times.length * size) / (times.reduce((a, b) => a + b, 0) / 1000) / 1e6);
        results.push({
          transport,
          tensorBytes: size,
          reps: all.length,
          seconds: round(seconds),
          mbPerSecond: round((all.length * size) / seconds / 1e6, 1),
          roundMbPerSecond: { min: round(Math.min(...perRound), 1), max: round(Math.max(...perRound), 1) },
          p50MsPerTensor: round(percentile(all, 50)),
          p99MsPerTensor: round(percentile(all, 99)),
        });
      }
    }
  } finally {
    senders.grpc.close();
    senders.tcp.close();
  }
  return results;
}
