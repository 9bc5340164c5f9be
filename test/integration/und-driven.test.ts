import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { PeerUnavailableError } from '@lavida/contracts';
import { Side, type ExchangeRequest } from '@lavida/proto';
import {
  int64Tensor,
  LocalImagePeer,
  LocalJointPeer,
  ModelPackage,
  positionsTensor,
  Tensor,
  imageRequestIds,
  textToImage,
  textToImageFromText,
  type ImagePeer,
  type ImageRequest,
  type TextToImageResult,
} from '@lavida/model';
import { encodeTensor, GrpcImagePeer, GrpcJointPeer } from '@lavida/wire';
import { startApp, type AppProcess } from '../support/processes.js';
import { FIXTURE_MODEL, MINI_MODEL } from '../support/paths.js';
import { exchangeClient, rawExchange, request, servingAddress, type ExchangeOutcome } from '../support/peer-client.js';
import { waitFor } from '../support/wait.js';

type Kind = 'open' | 'step' | 'projections' | 'close';

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function same(a: TextToImageResult, b: TextToImageResult, what: string): void {
  assert.equal(a.tokens.length, 64, what);
  assert.deepEqual(a.tokens, b.tokens, `${what}: tokens`);
  assert.ok(Buffer.from(a.pixels).equals(Buffer.from(b.pixels)), `${what}: pixels differ`);
  assert.ok(Buffer.from(a.png).equals(Buffer.from(b.png)), `${what}: png differs`);
}

/**
 * Both directions of the joint exchange between real processes, for one model: the text side
 * drives (this process, the understanding branch) and a real gen-worker serves the image side
 * (serve_side SIDE_IMAGE); the image side drives (this process, the generation branch) and a real
 * und-worker serves the text side; and one process. The same tokens, pixels and PNG.
 */
function parity(model: string, dir: string, chunk: number, cases: ImageRequest[]): void {
  describe(`${model}: text side drives (gen-worker serves the image side) = image side drives = one process`, () => {
    let genApp: AppProcess;
    let undApp: AppProcess;
    let und: ModelPackage;
    let gen: ModelPackage;
    let all: ModelPackage;
    let imagePeer: GrpcImagePeer;
    let jointPeer: GrpcJointPeer;
    let genAddress: string;
    let exchanges: { kind: Kind; bytes: number }[] = [];

    before(async () => {
      const env = { GRPC_HOST: '127.0.0.1', TENSOR_CHUNK_BYTES: chunk, MODEL_DIR: dir };
      genApp = startApp('gen-worker', { ...env, GEN_GRPC_PORT: 0 });
      undApp = startApp('und-worker', { ...env, UND_GRPC_PORT: 0 });
      let undAddress: string;
      [genAddress, undAddress, und, gen, all] = await Promise.all([
        servingAddress(genApp),
        servingAddress(undApp),
        ModelPackage.load(dir, { branch: 'und' }),
        ModelPackage.load(dir, { branch: 'gen' }),
        ModelPackage.load(dir, { branch: 'all' }),
      ]);
      const common = {
        modelName: und.manifest.name,
        modelVersion: und.manifest.version,
        timeoutMs: 20_000,
        chunkBytes: chunk,
        maxMessageBytes: 16 << 20,
      };
      imagePeer = new GrpcImagePeer({
        ...common,
        addresses: [genAddress],
        onExchange: (kind, _ms, bytes) => exchanges.push({ kind, bytes }),
      });
      jointPeer = new GrpcJointPeer({ ...common, addresses: [undAddress] });
    });
    after(async () => {
      imagePeer?.close();
      jointPeer?.close();
      await Promise.all([genApp?.stop('SIGKILL'), undApp?.stop('SIGKILL')]);
      await Promise.all([und?.release(), gen?.release(), all?.release()]);
    });

    let session = 0;
    for (const c of cases) {
      const what = `seed ${c.seed}, steps ${c.steps ?? 'default'}, guidance ${c.guidance ?? 'default'}, temperature ${c.temperature ?? 'default'}, luminance ${c.luminance ?? 'none'}${c.cfgInterval ? `, cfg_interval ${c.cfgInterval.join('..')}` : ''}${c.feedback ? ', feedback' : ''}`;
      it(`identical tokens, pixels and PNG: ${what}`, async () => {
        exchanges = [];
        const request = c.feedback
          ? {
              ...c,
              feedback: {
                ...c.feedback,
                pixels: (await textToImage(all, new LocalJointPeer(all), { prompt: 'a red circle', seed: 11 }, { sessionId: 'source' }))
                  .pixels,
              },
            }
          : c;
        const undDriven = await textToImageFromText(und, imagePeer, request, { sessionId: `und-driven/${++session}` });
        const genDriven = await textToImage(gen, jointPeer, request, { sessionId: `gen-driven/${session}` });
        const single = await textToImage(all, new LocalJointPeer(all), request, { sessionId: `single/${session}` });
        const local = await textToImageFromText(all, new LocalImagePeer(all), request, { sessionId: `und-driven-local/${session}` });
        assert.equal(undDriven.peer, genAddress);
        same(undDriven, single, `und-driven vs single process (${what})`);
        same(genDriven, single, `gen-driven vs single process (${what})`);
        same(local, single, `und-driven in one process vs single process (${what})`);
        assert.equal(undDriven.text, single.text);

        // One round trip a step (M = 2): layer 0's projections once, with open; the image side
        // begins a later step on its own and sends its layer-0 partial with the step before's
        // tokens, so the driver's only request per step is layer 1's projections.
        await waitFor(() => exchanges.some((e) => e.kind === 'close'), 5000, 'the answer to close');
        const steps = undDriven.steps;
        assert.equal(und.manifest.architecture.joint_layers, 2);
        assert.deepEqual(
          exchanges.map((e) => e.kind),
          ['open', 'projections', ...Array.from({ length: steps }, () => 'projections'), 'close'],
        );
        // What travels per step does not grow with the image: text-side tensors only, and the step's few tokens.
        const { heads, head_dim: headDim } = und.manifest.architecture;
        const rows = (c.guidance ?? und.manifest.sampling.guidance) > 0 ? 2 : 1;
        const t = sideLength(und, request);
        const qkv = rows * heads * t * headDim * 4;
        const partial = qkv + rows * heads * t * 4;
        const [, first, ...lasts] = exchanges.slice(0, -1);
        assert.equal(first.bytes, 3 * qkv + partial, 'layer 0: q, k, v out; out and lse back');
        for (const [step, last] of lasts.entries()) {
          // The last step's answer carries the pixels instead of a next partial.
          const { width, height, channels } = und.manifest.image;
          const back = step + 1 < steps ? partial : width * height * channels;
          assert.ok(
            last.bytes >= 2 * qkv + back && last.bytes < 2 * qkv + back + 4096,
            `step ${step}'s last layer: k, v out, the step's tokens and ${step + 1 < steps ? "the next step's partial" : 'the pixels'} back (${last.bytes})`,
          );
        }
      });
    }

    it('a different seed gives different tokens (the comparison can fail)', async () => {
      const base = cases[0];
      const a = await textToImageFromText(und, imagePeer, base, { sessionId: `und-driven/${++session}` });
      const b = await textToImageFromText(und, imagePeer, { ...base, seed: base.seed + 100 }, { sessionId: `und-driven/${++session}` });
      assert.notDeepEqual(a.tokens, b.tokens);
    });
  });
}

/** Text-side tokens of a request (an image prefix and the text). */
function sideLength(pkg: ModelPackage, request: ImageRequest): number {
  const [rows, cols] = pkg.manifest.image.grid;
  return (request.feedback ? rows * cols : 0) + imageRequestIds(pkg, request).length;
}

parity('fixture', FIXTURE_MODEL, 1024, [
  {
    prompt: 'a red circle above a blue square on a white background with a thin green line below them',
    seed: 1,
    guidance: 2,
    steps: 4,
    temperature: 1,
  },
  { prompt: 'two green triangles side by side', seed: 2, guidance: 0, steps: 3, temperature: 1, luminance: 0.5 },
  { prompt: 'one small yellow circle in the middle of a dark picture', seed: 3, guidance: 3.5, steps: 5, temperature: 0, luminance: 0.125 },
]);

parity('lavida-o-mini', MINI_MODEL, 4096, [
  { prompt: 'a red circle', seed: 1 },
  { prompt: 'two green triangles', seed: 3, guidance: 0, steps: 8 },
  { prompt: 'a yellow square', seed: 5, luminance: 0.4, steps: 16, temperature: 0.7 },
  // The request's guidance interval (ImageSampling.cfg_interval), not the package's [0.25, 1].
  { prompt: 'a yellow square', seed: 5, steps: 16, cfgInterval: [0.5, 1] },
  {
    prompt: 'a red circle and a blue square',
    seed: 12,
    steps: 6,
    feedback: { verdict: 'the blue square is missing', pixels: new Uint8Array(0) },
  },
]);

/**
 * A driver against an image side that does not begin the next step on its own (an older
 * gen-worker: its steps come without the next step's layer-0 partial) asks for that step's layer 0
 * with begin_step, one round trip more a step, and draws the same image.
 */
describe('fixture: an image side whose steps come without the next partial', () => {
  let und: ModelPackage;
  let all: ModelPackage;
  before(async () => {
    [und, all] = await Promise.all([
      ModelPackage.load(FIXTURE_MODEL, { branch: 'und' }),
      ModelPackage.load(FIXTURE_MODEL, { branch: 'all' }),
    ]);
  });
  after(async () => {
    await Promise.all([und?.release(), all?.release()]);
  });

  it('the driver begins each later step itself (begin_step) and gets the same tokens', async () => {
    const local = new LocalImagePeer(all);
    const asked: string[] = [];
    const older: ImagePeer = {
      open: async (request) => {
        const link = await local.open(request);
        return {
          peer: 'older',
          layer: async (step, layer, qkv) => {
            asked.push(`${step}/${layer}`);
            const answer = await link.layer(step, layer, qkv);
            if (!('positions' in answer)) return answer;
            const withoutNext = { ...answer };
            delete withoutNext.next;
            return withoutNext;
          },
          close: () => link.close(),
        };
      },
    };
    const request = { prompt: 'a red circle above a blue square', seed: 4, steps: 5, guidance: 2 };
    const fallback = await textToImageFromText(und, older, request, { sessionId: 'older/1' });
    const single = await textToImage(all, new LocalJointPeer(all), request, { sessionId: 'older/single' });
    same(fallback, single, 'begin_step fallback vs single process');
    assert.deepEqual(asked, [
      '0/0',
      ...Array.from({ length: fallback.steps }, (_, s) => (s === 0 ? ['0/1'] : [`${s}/0`, `${s}/1`])).flat(),
    ]);
  });
});

/**
 * Bad input at the image side's boundary ends that call only, with a clear status; a serving
 * gen-worker that dies mid-stream fails that attempt retryably, and the next open fails over.
 */
describe('the image side a gen-worker serves: bad input, and a peer that dies mid-stream', () => {
  let genApp: AppProcess;
  let slowApp: AppProcess;
  let address: string;
  let slowAddress: string;
  let und: ModelPackage;
  const CHUNK = 1 << 20;
  const ROWS = 2;
  const TEXT_LEN = 5;

  before(async () => {
    const env = { GRPC_HOST: '127.0.0.1', GEN_GRPC_PORT: 0, MODEL_DIR: FIXTURE_MODEL };
    genApp = startApp('gen-worker', env);
    // Slow answers, so that the session is surely mid-way when the peer is killed.
    slowApp = startApp('gen-worker', { ...env, FAULT_EXCHANGE_DELAY_MS: 40 });
    [address, slowAddress, und] = await Promise.all([
      servingAddress(genApp),
      servingAddress(slowApp),
      ModelPackage.load(FIXTURE_MODEL, { branch: 'und' }),
    ]);
  });
  after(async () => {
    await Promise.all([genApp?.stop('SIGKILL'), slowApp?.stop('SIGKILL')]);
    await und?.release();
  });

  const architecture = () => und.manifest.architecture;

  function open(
    fields: { modelVersion?: string; sampling?: boolean; side?: Side; rows?: number; cfgInterval?: { lo: number; hi: number } } = {},
  ): ExchangeRequest {
    const rows = fields.rows ?? ROWS;
    return request({
      case: 'open',
      value: {
        $typeName: 'lavida.peer.v1.OpenSession',
        sessionId: 'image-side-test/1',
        modelName: und.manifest.name,
        modelVersion: fields.modelVersion ?? und.manifest.version,
        serveSide: fields.side ?? Side.IMAGE,
        textIds: encodeTensor(
          int64Tensor(
            Array.from({ length: rows * TEXT_LEN }, (_, i) => 10 + i),
            [rows, TEXT_LEN],
          ),
          CHUNK,
        ).tensor,
        textPositions: encodeTensor(positionsTensor(0, TEXT_LEN), CHUNK).tensor,
        stopAfterLayer: architecture().joint_layers - 1,
        chunkSize: CHUNK,
        imageSampling:
          fields.sampling === false
            ? undefined
            : {
                $typeName: 'lavida.peer.v1.ImageSampling',
                seed: 1,
                steps: 4,
                guidance: 2,
                temperature: 1,
                cfgInterval: fields.cfgInterval && { $typeName: 'lavida.peer.v1.GuidanceInterval', ...fields.cfgInterval },
              },
      },
    });
  }

  /** The shape of well-formed q/k/v projections: [rows, heads, text_len, head_dim]. */
  const goodShape = () => [ROWS, architecture().heads, TEXT_LEN, architecture().head_dim];
  const close = () => request({ case: 'close', value: { $typeName: 'lavida.peer.v1.CloseSession', reason: 'test' } });

  const zeros = (dims: number[]) => new Tensor('float32', new Float32Array(dims.reduce((a, b) => a * b, 1)), dims);
  function projections(step: number, layer: number, dims: number[], withQ = true): ExchangeRequest {
    const t = encodeTensor(zeros(dims), CHUNK).tensor;
    return request({
      case: 'projections',
      value: { $typeName: 'lavida.peer.v1.Projections', step, layer, q: withQ ? t : undefined, k: t, v: t },
    });
  }

  function assertEnded(outcome: ExchangeOutcome, code: status, details: RegExp, frames: string[] = []): void {
    assert.equal(outcome.code, code, `status ${status[outcome.code]} (${outcome.details}), expected ${status[code]}`);
    assert.match(outcome.details, details);
    assert.deepEqual(
      outcome.responses.map((r) => r.frame.case),
      frames,
    );
  }

  async function raw(frames: ExchangeRequest[]): Promise<ExchangeOutcome> {
    const client = exchangeClient(address);
    try {
      return await rawExchange(client, frames);
    } finally {
      client.close();
    }
  }

  type StepFrame = { step: number; steps: number; positions: number[]; tokens: number[]; nextPartial?: { step: number; layer: number } };

  it("a well-formed session: opened, the partial of layer 0, each step's tokens with the next step's layer-0 partial, closed", async () => {
    const good = goodShape();
    const outcome = await raw([
      open(),
      projections(0, 0, good),
      projections(0, 1, good, false),
      // Step 1 begins on the image side: the driver's next request is its layer 1.
      projections(1, 1, good, false),
      close(),
    ]);
    assertEnded(outcome, status.OK, /.*/, ['opened', 'partial', 'step', 'step', 'closed']);
    for (const [i, response] of outcome.responses.slice(2, 4).entries()) {
      const step = response.frame.value as StepFrame;
      assert.deepEqual([step.step, step.steps], [i, 4]);
      assert.ok(step.positions.length > 0 && step.positions.length === step.tokens.length);
      assert.deepEqual([step.nextPartial?.step, step.nextPartial?.layer], [i + 1, 0], "the next step's layer-0 partial");
    }
  });

  it("a driver that does not read the step's next partial may still begin the next step: begin_step gets that partial again", async () => {
    const good = goodShape();
    const outcome = await raw([
      open(),
      projections(0, 0, good),
      projections(0, 1, good, false),
      request({ case: 'beginStep', value: { $typeName: 'lavida.peer.v1.BeginStep', step: 1 } }),
      projections(1, 1, good, false),
      close(),
    ]);
    assertEnded(outcome, status.OK, /.*/, ['opened', 'partial', 'step', 'partial', 'step', 'closed']);
    const sent = (outcome.responses[2].frame.value as { nextPartial?: { out?: { data: Uint8Array } } }).nextPartial?.out?.data;
    const again = outcome.responses[3].frame.value as { step: number; layer: number; out?: { data: Uint8Array } };
    assert.deepEqual([again.step, again.layer], [1, 0]);
    assert.ok(sent && again.out && Buffer.from(again.out.data).equals(Buffer.from(sent)), 'the same partial');
  });

  it('a guidance interval outside 0 <= lo <= hi <= 1 is INVALID_ARGUMENT naming cfg_interval; a good one opens', async () => {
    for (const [lo, hi] of [
      [0.6, 0.2],
      [0, 1.5],
      [-0.5, 0.5],
      [Number.NaN, 1],
    ]) {
      assertEnded(
        await raw([open({ cfgInterval: { lo, hi } })]),
        status.INVALID_ARGUMENT,
        new RegExp(escapeRegExp(`cfg_interval must be [lo, hi] with 0 <= lo <= hi <= 1, got [${lo}, ${hi}]`)),
      );
    }
    // The same frames with a good interval: opened, and the session runs.
    const good = goodShape();
    const outcome = await raw([
      open({ cfgInterval: { lo: 0.5, hi: 1 } }),
      projections(0, 0, good),
      projections(0, 1, good, false),
      close(),
    ]);
    assertEnded(outcome, status.OK, /.*/, ['opened', 'partial', 'step', 'closed']);
  });

  it('wrong-shape projections end the call with INVALID_ARGUMENT naming the tensor', async () => {
    const { heads, head_dim: headDim } = architecture();
    const outcome = await raw([open(), projections(0, 0, [ROWS, heads, TEXT_LEN + 1, headDim])]);
    assertEnded(outcome, status.INVALID_ARGUMENT, /projections\.q has shape \[2,2,6,8\], expected \[2,2,5,8\]/, ['opened']);
    const missingK = await raw([
      open(),
      request({
        case: 'projections',
        value: {
          $typeName: 'lavida.peer.v1.Projections',
          step: 0,
          layer: 0,
          q: encodeTensor(zeros([ROWS, heads, TEXT_LEN, headDim]), CHUNK).tensor,
        },
      }),
    ]);
    assertEnded(missingK, status.INVALID_ARGUMENT, /projections of layer 0 need q, k and v, k is missing/, ['opened']);
  });

  it('an unknown model version is FAILED_PRECONDITION; a missing sampler, wrong rows, the wrong side or frame order are INVALID_ARGUMENT', async () => {
    assertEnded(await raw([open({ modelVersion: '9.9.9' })]), status.FAILED_PRECONDITION, /driver runs .*@9\.9\.9, this peer serves/);
    assertEnded(await raw([open({ sampling: false })]), status.INVALID_ARGUMENT, /needs image_sampling/);
    assertEnded(await raw([open({ rows: 1 })]), status.INVALID_ARGUMENT, /text_ids must be int64 \[2, text_len\]/);
    assertEnded(await raw([open({ side: Side.TEXT })]), status.INVALID_ARGUMENT, /this peer serves the image side, asked for TEXT/);
    const good = goodShape();
    assertEnded(
      await raw([open(), projections(0, 1, good, false)]),
      status.INVALID_ARGUMENT,
      /projections for step 0 layer 1, expected step 0 layer 0/,
      ['opened'],
    );
    assertEnded(
      await raw([open(), request({ case: 'beginStep', value: { $typeName: 'lavida.peer.v1.BeginStep', step: 0 } })]),
      status.INVALID_ARGUMENT,
      /step 0 layer 0 came without projections/,
      ['opened'],
    );
    // The image side began step 1 with step 0's answer: layer 0's projections again are out of order.
    assertEnded(
      await raw([open(), projections(0, 0, good), projections(0, 1, good, false), projections(1, 0, good)]),
      status.INVALID_ARGUMENT,
      /projections for step 1 layer 0, expected step 1 layer 1/,
      ['opened', 'partial', 'step'],
    );
  });

  it('a gen-worker killed mid-stream fails the attempt retryably (PEER_UNAVAILABLE); the next open fails over to a live one', async () => {
    const peer = new GrpcImagePeer({
      addresses: [slowAddress, address],
      modelName: und.manifest.name,
      modelVersion: und.manifest.version,
      timeoutMs: 5000,
      chunkBytes: CHUNK,
      maxMessageBytes: 16 << 20,
    });
    try {
      await waitFor(() => peer.peers().every((p) => p.health === 'SERVING'), 5000, 'both peers SERVING');
      // Equal health and load: config order picks the slow one.
      const killedAt: number[] = [];
      const run = textToImageFromText(
        und,
        peer,
        { prompt: 'two circles', seed: 3, steps: 16 },
        {
          sessionId: 'dies/1',
          onStep: (step) => {
            if (step === 3) {
              killedAt.push(Date.now());
              slowApp.child.kill('SIGKILL');
            }
          },
        },
      );
      await assert.rejects(run, (error: unknown) => {
        assert.ok(error instanceof PeerUnavailableError, String(error));
        assert.equal(error.retryable, true);
        assert.match(error.message, new RegExp(`peer ${slowAddress.replace(/\./g, '\\.')}`));
        return true;
      });
      assert.ok(Date.now() - killedAt[0] < 5000, 'noticed before the exchange deadline');
      // The attempt that BullMQ would retry: the dead peer is put last, the live one draws the image.
      const retry = await textToImageFromText(und, peer, { prompt: 'two circles', seed: 3, steps: 16 }, { sessionId: 'dies/2' });
      assert.equal(retry.peer, address);
      assert.equal(retry.tokens.length, 64);
    } finally {
      peer.close();
    }
  });
});
