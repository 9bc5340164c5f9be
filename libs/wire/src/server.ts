import { setTimeout as sleep } from 'node:timers/promises';
import type { ServerDuplexStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import {
  ExchangeResponseSchema,
  Side,
  type ExchangeRequest,
  type ExchangeResponse,
  type OpenSession,
  type Tensor as WireTensor,
} from '@lavida/proto';
import { InvalidInputError, ModelMismatchError, PeerProtocolError } from '@lavida/contracts';
import {
  ImageSideSession,
  modelCfgInterval,
  TextSideSession,
  type ImageSideAnswer,
  type ModelPackage,
  type Projections,
  type Tensor,
} from '@lavida/model';
import { chunksOf, decodeTensor, encodeTensor, FrameAssembler } from './codec.js';
import { chunkOf, requestTensors, writeAll } from './frames.js';
import { toStatus } from './status.js';
import type { TransportOptions } from './channel.js';
import { exchangeSessions, SpanStatusCode, withContext, withLogFields } from '@lavida/telemetry';
import { recordExchange, serverSession, type ExchangeKind } from './telemetry.js';

/** What the serving side reports per session, for logs and metrics. */
export interface SessionReport {
  sessionId: string;
  steps: number;
  outcome: 'closed' | 'failed' | 'canceled';
  error?: string;
}

export interface JointServiceOptions extends TransportOptions {
  workerId: string;
  /** Fault injection for tests: wait this long before every answer. */
  faultDelayMs?: number;
  onSession?: (report: SessionReport) => void;
}

type Call = ServerDuplexStream<ExchangeRequest, ExchangeResponse>;

/**
 * The joint-attention peer service. A worker serves the side(s) its package loads: the text side
 * (understanding branch, serve_side SIDE_TEXT) to a driving generation worker, the image side of
 * text-to-image (generation branch, serve_side SIDE_IMAGE) to a driving understanding worker.
 * Frames are handled one at a time in arrival order; any bad frame ends the call with
 * INVALID_ARGUMENT and harms no other session.
 */
export function jointAttentionService(pkg: ModelPackage, options: JointServiceOptions): UntypedServiceImplementation {
  const serves = {
    [Side.TEXT]: pkg.branch !== 'gen',
    [Side.IMAGE]: pkg.branch !== 'und',
  };
  const servedSides = pkg.branch === 'und' ? 'text' : pkg.branch === 'gen' ? 'image' : 'text and the image';
  return {
    exchange: (call: Call) => {
      const assembler = new FrameAssembler<ExchangeRequest>(requestTensors, chunkOf, options.maxMessageBytes * 64);
      let session: TextSideSession | undefined;
      let image: ImageSideSession | undefined;
      let sessionId = '';
      let done = false;
      let queue: Promise<void> = Promise.resolve();
      // A server span continuing the driver's trace (traceparent in the metadata); every log line
      // of the session carries the job id the driver sent.
      const trace = serverSession(call.metadata);
      let exchanges = 0;
      let bytesSent = 0;
      let bytesReceived = 0;
      const stepsRun = () => session?.stepsRun ?? image?.stepsRun ?? 0;

      const finish = (outcome: SessionReport['outcome'], error?: unknown) => {
        if (done) return;
        done = true;
        trace.span.setAttributes({
          'lavida.session_id': sessionId,
          'lavida.steps': stepsRun(),
          'lavida.exchanges': exchanges,
          'lavida.bytes_sent': bytesSent,
          'lavida.bytes_received': bytesReceived,
          'lavida.outcome': outcome,
        });
        if (outcome === 'failed')
          trace.span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
        trace.span.end();
        exchangeSessions.inc({ side: 'server', outcome });
        options.onSession?.({
          sessionId,
          steps: stepsRun(),
          outcome,
          error: error instanceof Error ? error.message : undefined,
        });
        if (outcome === 'failed') call.emit('error', toStatus(error));
        else if (outcome === 'closed') call.end();
      };

      /** Writes an answer frame; its tensors are encoded, handed to `place` for the frame, and their chunks follow it. */
      const send = async (frame: ExchangeResponse['frame'], tensors: readonly Tensor[] = [], place?: (wire: WireTensor[]) => void) => {
        if (options.faultDelayMs) await sleep(options.faultDelayMs);
        if (done) return;
        if (tensors.length === 0) {
          await writeAll(call, [create(ExchangeResponseSchema, { frame })]);
          return;
        }
        const encoded = tensors.map((t) => encodeTensor(t, options.chunkBytes));
        for (const e of encoded) bytesSent += e.tensor.data.length + e.rest.reduce((sum, piece) => sum + piece.length, 0);
        place?.(encoded.map((e) => e.tensor));
        const chunks = chunksOf(encoded).map((value) => create(ExchangeResponseSchema, { frame: { case: 'chunk', value } }));
        await writeAll(call, [create(ExchangeResponseSchema, { frame }), ...chunks]);
      };

      // Text side: the projections of a layer. The last layer goes without q: the driver computes no partial for it.
      const projections = (step: number, layer: number, qkv: Projections) => {
        const value = { $typeName: 'lavida.peer.v1.Projections' as const, step, layer } as Extract<
          ExchangeResponse['frame'],
          { case: 'projections' }
        >['value'];
        const withQ = layer !== session?.stopAfterLayer;
        return send({ case: 'projections', value }, withQ ? [qkv.q, qkv.k, qkv.v] : [qkv.k, qkv.v], (wire) => {
          const [k, v] = wire.slice(-2);
          value.q = withQ ? wire[0] : undefined;
          value.k = k;
          value.v = v;
        });
      };

      // Image side: a layer's partial, or the step's tokens with the next step's layer-0 partial;
      // either is sent before the rest of that partial's layer runs.
      const imageAnswer = async (step: number, layer: number, answer: ImageSideAnswer) => {
        if (answer.kind === 'partial') {
          const value = partialValue(step, layer);
          await send({ case: 'partial', value }, [answer.partial.out, answer.partial.lse], ([out, lse]) => {
            value.out = out;
            value.lse = lse;
          });
        } else {
          const r = answer.result;
          const value = {
            $typeName: 'lavida.peer.v1.ImageStep' as const,
            step: r.step,
            steps: r.steps,
            positions: r.positions,
            tokens: r.tokens,
            imageTokens: r.imageTokens ?? [],
          } as Extract<ExchangeResponse['frame'], { case: 'step' }>['value'];
          const next = r.next && partialValue(r.step + 1, 0);
          // Chunks in the receiver's order: pixels, then the next partial's out and lse.
          const tensors = [...(r.pixels ? [r.pixels] : []), ...(r.next ? [r.next.out, r.next.lse] : [])];
          await send({ case: 'step', value }, tensors, (wire) => {
            if (r.pixels) value.pixels = wire.shift();
            if (next) {
              [next.out, next.lse] = wire;
              value.nextPartial = next;
            }
          });
        }
        // The layer's own work while the answer travels and the driver merges the partial, before the next frame is handled.
        await answer.rest();
      };

      const open = async (frame: OpenSession) => {
        if (session || image) throw new PeerProtocolError('session already open');
        sessionId = frame.sessionId;
        const { name, version } = pkg.manifest;
        if (frame.modelName !== name || frame.modelVersion !== version) {
          throw new ModelMismatchError(`driver runs ${frame.modelName}@${frame.modelVersion}, this peer serves ${name}@${version}`);
        }
        if (!(serves as Partial<Record<Side, boolean>>)[frame.serveSide]) {
          throw new InvalidInputError(`this peer serves the ${servedSides} side, asked for ${Side[frame.serveSide] ?? frame.serveSide}`);
        }
        if (!frame.textIds || !frame.textPositions) throw new InvalidInputError('open needs text_ids and text_positions');
        if (frame.serveSide === Side.TEXT) {
          session = TextSideSession.open(pkg, {
            sessionId: frame.sessionId,
            textIds: decodeTensor(frame.textIds, 'text_ids'),
            textPositions: decodeTensor(frame.textPositions, 'text_positions'),
            stopAfterLayer: frame.stopAfterLayer,
            prefixPixels: frame.prefixPixels ? decodeTensor(frame.prefixPixels, 'prefix_pixels') : undefined,
          });
        } else {
          const sampling = frame.imageSampling;
          if (!sampling) throw new InvalidInputError('open with serve_side SIDE_IMAGE needs image_sampling');
          if (frame.prefixPixels) throw new InvalidInputError("prefix_pixels is the text side's: leave it out with serve_side SIDE_IMAGE");
          image = ImageSideSession.open(
            pkg,
            {
              sessionId: frame.sessionId,
              textIds: decodeTensor(frame.textIds, 'text_ids'),
              textPositions: decodeTensor(frame.textPositions, 'text_positions'),
              stopAfterLayer: frame.stopAfterLayer,
              sampler: {
                seed: sampling.seed,
                steps: sampling.steps,
                guidance: sampling.guidance,
                temperature: sampling.temperature,
                correctionSweeps: sampling.correctionSweeps ?? pkg.manifest.sampling.correction_sweeps ?? 0,
                // Checked by the image side (InvalidInputError: INVALID_ARGUMENT).
                cfgInterval: sampling.cfgInterval
                  ? [sampling.cfgInterval.lo, sampling.cfgInterval.hi]
                  : modelCfgInterval(pkg.manifest.sampling),
              },
            },
            // The driver is another process: it merges a layer's partial while this side runs the rest of the layer.
            { partialFirst: true },
          );
        }
        await send({ case: 'opened', value: { $typeName: 'lavida.peer.v1.SessionOpened', sessionId, workerId: options.workerId } });
      };

      const handle = async (request: ExchangeRequest) => {
        if (done) return;
        const frame = request.frame;
        if (frame.case === 'open') return open(frame.value);
        if (!session && !image) throw new PeerProtocolError(`first frame must be open, got ${frame.case ?? 'empty'}`);
        switch (frame.case) {
          case 'beginStep': {
            const step = frame.value.step;
            if (image) return imageAnswer(step, 0, await image.layer(step, 0, undefined));
            await projections(step, 0, await session!.beginStep(step));
            return;
          }
          case 'partial': {
            if (image) throw new PeerProtocolError('this image-side session does not accept partials: it sends them');
            const { step, layer, out, lse } = frame.value;
            if (!out || !lse) throw new InvalidInputError('partial needs out and lse');
            const next = await session!.partial(step, layer, {
              out: decodeTensor(out, 'partial.out'),
              lse: decodeTensor(lse, 'partial.lse'),
            });
            await projections(step, layer + 1, next);
            return;
          }
          case 'projections': {
            if (!image) throw new PeerProtocolError('this text-side peer does not accept image-side projections');
            const { step, layer, q, k, v } = frame.value;
            const qkv = {
              q: q ? decodeTensor(q, 'projections.q') : undefined,
              k: k ? decodeTensor(k, 'projections.k') : undefined,
              v: v ? decodeTensor(v, 'projections.v') : undefined,
            };
            return imageAnswer(step, layer, await image.layer(step, layer, qkv));
          }
          case 'close':
            await send({ case: 'closed', value: { $typeName: 'lavida.peer.v1.SessionClosed', steps: stepsRun() } });
            finish('closed');
            return;
          case 'error':
            finish('canceled', new Error(`${frame.value.code}: ${frame.value.message}`));
            call.end();
            return;
          case 'chunk':
          case undefined:
            throw new PeerProtocolError(`unexpected frame ${frame.case ?? 'empty'}`);
        }
      };

      call.on('data', (request: ExchangeRequest) => {
        if (done) return;
        let complete: ExchangeRequest | undefined;
        try {
          complete = assembler.push(request);
        } catch (error) {
          finish('failed', error);
          return;
        }
        if (complete) {
          const frame = complete;
          const received = payloadBytes(frame);
          bytesReceived += received;
          queue = queue
            .then(() =>
              withContext(trace.context, () =>
                withLogFields(trace.jobId ? { jobId: trace.jobId } : {}, async () => {
                  const sentBefore = bytesSent;
                  const started = performance.now();
                  await handle(frame);
                  const kind = EXCHANGE_KINDS[frame.frame.case ?? ''];
                  if (kind) {
                    exchanges++;
                    recordExchange('server', kind, performance.now() - started, bytesSent - sentBefore, received);
                  }
                }),
              ),
            )
            .catch((error: unknown) => finish('failed', error));
        }
      });
      call.on('end', () => {
        void queue.then(() => finish('closed'));
      });
      call.on('error', () => finish('canceled'));
      call.on('cancelled', () => finish('canceled'));
    },
  };
}

/** An empty PartialAttention message for step `step`, layer `layer` (its tensors are placed once encoded). */
function partialValue(step: number, layer: number): Extract<ExchangeResponse['frame'], { case: 'partial' }>['value'] {
  return { $typeName: 'lavida.peer.v1.PartialAttention', step, layer };
}

/** The exchange a request frame starts, by its case. */
const EXCHANGE_KINDS: Partial<Record<string, ExchangeKind>> = {
  open: 'open',
  beginStep: 'step',
  partial: 'partial',
  projections: 'projections',
  close: 'close',
};

/** Tensor payload bytes of a request frame (as the driver counts them). */
function payloadBytes(request: ExchangeRequest): number {
  const value = request.frame.value as Record<string, unknown> | undefined;
  if (!value) return 0;
  let bytes = 0;
  for (const field of Object.values(value)) {
    if (field && typeof field === 'object' && 'data' in field && field.data instanceof Uint8Array) bytes += field.data.length;
  }
  return bytes;
}
