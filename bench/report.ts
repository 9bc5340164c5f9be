import type { ThroughputResult } from './throughput.js';
import type { SplitResult } from './split.js';

export interface BenchResults {
  timestamp: string;
  node: string;
  cpu: string;
  cores: number;
  platform: string;
  transport: { chunkBytes: number; maxMessageBytes: number };
  model: { dir: string; name: string; version: string; prompt: string; seed: number };
  durationSeconds: number;
  throughput: ThroughputResult[];
  /** gRPC MB/s over TCP MB/s, per tensor size in bytes. */
  grpcOverTcp: Record<string, number>;
  split: SplitResult;
}

const MIB = 1024 * 1024;

function size(bytes: number): string {
  if (bytes >= MIB && bytes % MIB === 0) return `${bytes / MIB} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

function table(header: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export function markdown(r: BenchResults): string {
  const s = r.split;
  const x = s.exchanges;
  const throughputRows = r.throughput.map((t) => [
    size(t.tensorBytes),
    t.transport === 'grpc' ? 'gRPC (codec, 1 MiB chunks)' : 'TCP socket',
    t.reps,
    t.mbPerSecond,
    `${t.roundMbPerSecond.min}–${t.roundMbPerSecond.max}`,
    t.p50MsPerTensor,
    t.p99MsPerTensor,
  ]);
  const ratioRows = Object.entries(r.grpcOverTcp).map(([bytes, ratio]) => [size(Number(bytes)), ratio]);
  const exchangeRow = (label: string, e: { count: number; p50Ms: number; p99Ms: number }, bytes: number | string) => [
    label,
    e.count,
    e.p50Ms,
    e.p99Ms,
    bytes,
  ];
  return [
    '# Lavida Serve bench',
    '',
    `${r.timestamp} · Node ${r.node} · ${r.cpu} (${r.cores} cores) · ${r.platform} · took ${r.durationSeconds} s`,
    `Processes on 127.0.0.1; chunk ${size(r.transport.chunkBytes)}, max message ${size(r.transport.maxMessageBytes)}. MB = 10^6 bytes.`,
    '',
    '## Tensor throughput (float32, each tensor acked before the next)',
    '',
    table(['tensor', 'transport', 'reps', 'MB/s', 'MB/s per round', 'p50 ms', 'p99 ms'], throughputRows),
    '',
    table(['tensor', 'gRPC / TCP'], ratioRows),
    '',
    `## Joint-layer exchange round trip (${r.model.name}, T=${s.textTokens} text tokens, ${s.rows} rows)`,
    '',
    table(
      ['exchange', 'count', 'p50 ms', 'p99 ms', 'payload bytes'],
      [
        exchangeRow('step (BeginStep → layer-0 q,k,v)', x.step, x.step.bytes),
        exchangeRow('partial (out,lse → next q,k,v)', x.partial, x.partial.bytes),
        exchangeRow('open', x.open, x.open.bytes),
        exchangeRow('close', x.close, x.close.bytes),
        exchangeRow('bare gRPC ping (health Check)', s.healthPing, '–'),
      ],
    ),
    '',
    `## Text-to-image, ${s.steps} steps, seed ${r.model.seed} (tokens identical: ${s.tokensIdentical ? 'yes' : 'NO'})`,
    '',
    table(
      ['runtime', 'runs', 'median ms'],
      [
        ['single process (LocalJointPeer, branch all)', s.runsMs.single.length, s.medianMs.single],
        ['split (GrpcJointPeer → und child)', s.runsMs.split.length, s.medianMs.split],
        ['ratio split / single', '', s.splitOverSingle],
      ],
    ),
    '',
    '## Traffic per image',
    '',
    table(
      ['what', 'bytes'],
      [
        [`partial-attention protocol, measured (${s.exchangesPerImage} exchanges)`, s.bytesPerImage],
        [`image-side K,V instead, per joint layer per step (2·${s.rows}·H·${s.imageTokens}·D·4)`, s.imageKvBytesPerLayerStep],
        [`image-side K,V instead, per image (× ${s.jointLayers} layers × ${s.steps} steps)`, s.imageKvBytesPerImage],
      ],
    ),
    '',
  ].join('\n');
}
