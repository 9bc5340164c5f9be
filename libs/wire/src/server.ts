import { setTimeout as sleep } from 'node:timers/promises';
import type { ServerDuplexStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { ExchangeResponseSchema, Side, type ExchangeRequest, type ExchangeResponse } from '@lavida/proto';
import { InvalidInputError, ModelMismatchError, PeerProtocolError } from '@lavida/contracts';
import { TextSideSession, type ModelPackage, type Projections } from '@lavida/model';
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
 * The joint-attention peer service, text side: serves the understanding branch's joint layers to a
 * driving generation worker. Frames are handled one at a time in arrival order; any bad frame ends
 * the call with INVALID_ARGUMENT and harms no other session.
 */
export function jointAttentionService(pkg: ModelPackage, options: JointServiceOptions): UntypedServiceImplementation {
  return {
    exchange: (call: Call) => {
      const assembler = new FrameAssembler<ExchangeRequest>(requestTensors, chunkOf, options.maxMessageBytes * 64);
      let session: TextSideSession | undefined;
      let sessionId = '';
      let done = false;
      let queue: Promise<void> = Promise.resolve();
      // A server span continuing the driver's trace (traceparent in the metadata); every log line
      // of the session carries the job id the driver sent.
      const trace = serverSession(call.metadata);
      let exchanges = 0;
      let bytesSent = 0;
      let bytesReceived = 0;

      const finish = (outcome: SessionReport['outcome'], error?: unknown) => {
        if (done) return;
        done = true;
        trace.span.setAttributes({
          'lavida.session_id': sessionId,
          'lavida.steps': session?.stepsRun ?? 0,
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
          steps: session?.stepsRun ?? 0,
          outcome,
          error: error instanceof Error ? error.message : undefined,
        });
        if (outcome === 'failed') call.emit('error', toStatus(error));
        else if (outcome === 'closed') call.end();
      };

      const send = async (frame: ExchangeResponse['frame'], tensors: Projections | undefined) => {
        if (options.faultDelayMs) await sleep(options.faultDelayMs);
        if (done) return;
        if (!tensors) {
          await writeAll(call, [create(ExchangeResponseSchema, { frame })]);
          return;
        }
        // The text side's last layer goes without q: the driver computes no partial for it.
        const withQ = frame.case !== 'projections' || frame.value.layer !== session?.stopAfterLayer;
        const encoded = (withQ ? [tensors.q, tensors.k, tensors.v] : [tensors.k, tensors.v]).map((t) =>
          encodeTensor(t, options.chunkBytes),
        );
        for (const e of encoded) bytesSent += e.tensor.data.length + e.rest.reduce((sum, piece) => sum + piece.length, 0);
        if (frame.case === 'projections') {
          const [k, v] = encoded.slice(-2);
          frame.value.q = withQ ? encoded[0].tensor : undefined;
          frame.value.k = k.tensor;
          frame.value.v = v.tensor;
        }
        const chunks = chunksOf(encoded).map((value) => create(ExchangeResponseSchema, { frame: { case: 'chunk', value } }));
        await writeAll(call, [create(ExchangeResponseSchema, { frame }), ...chunks]);
      };

      const projections = (step: number, layer: number, qkv: Projections) =>
        send({ case: 'projections', value: { $typeName: 'lavida.peer.v1.Projections', step, layer } }, qkv);

      const handle = async (request: ExchangeRequest) => {
        if (done) return;
        const frame = request.frame;
        if (frame.case !== 'open' && !session) throw new PeerProtocolError(`first frame must be open, got ${frame.case ?? 'empty'}`);
        switch (frame.case) {
          case 'open': {
            if (session) throw new PeerProtocolError('session already open');
            const open = frame.value;
            sessionId = open.sessionId;
            const { name, version } = pkg.manifest;
            if (open.modelName !== name || open.modelVersion !== version) {
              throw new ModelMismatchError(`driver runs ${open.modelName}@${open.modelVersion}, this peer serves ${name}@${version}`);
            }
            if (open.serveSide !== Side.TEXT)
              throw new InvalidInputError(`this peer serves the text side, asked for ${Side[open.serveSide]}`);
            if (!open.textIds || !open.textPositions) throw new InvalidInputError('open needs text_ids and text_positions');
            session = TextSideSession.open(pkg, {
              sessionId: open.sessionId,
              textIds: decodeTensor(open.textIds, 'text_ids'),
              textPositions: decodeTensor(open.textPositions, 'text_positions'),
              stopAfterLayer: open.stopAfterLayer,
              prefixPixels: open.prefixPixels ? decodeTensor(open.prefixPixels, 'prefix_pixels') : undefined,
            });
            await send(
              { case: 'opened', value: { $typeName: 'lavida.peer.v1.SessionOpened', sessionId, workerId: options.workerId } },
              undefined,
            );
            return;
          }
          case 'beginStep': {
            const step = frame.value.step;
            await projections(step, 0, await session!.beginStep(step));
            return;
          }
          case 'partial': {
            const { step, layer, out, lse } = frame.value;
            if (!out || !lse) throw new InvalidInputError('partial needs out and lse');
            const next = await session!.partial(step, layer, {
              out: decodeTensor(out, 'partial.out'),
              lse: decodeTensor(lse, 'partial.lse'),
            });
            await projections(step, layer + 1, next);
            return;
          }
          case 'close':
            await send({ case: 'closed', value: { $typeName: 'lavida.peer.v1.SessionClosed', steps: session!.stepsRun } }, undefined);
            finish('closed');
            return;
          case 'error':
            finish('canceled', new Error(`${frame.value.code}: ${frame.value.message}`));
            call.end();
            return;
          case 'projections':
            throw new PeerProtocolError('this text-side peer does not accept image-side projections');
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

/** The exchange a request frame starts, by its case. */
const EXCHANGE_KINDS: Partial<Record<string, ExchangeKind>> = { open: 'open', beginStep: 'step', partial: 'partial', close: 'close' };

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
