import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { status, type Client } from '@grpc/grpc-js';
import { Side, type ExchangeRequest } from '@lavida/proto';
import { int64Tensor, ModelPackage, positionsTensor, Tensor, textToImage, type Manifest } from '@lavida/model';
import { encodeTensor, GrpcJointPeer } from '@lavida/wire';
import { startApp, type AppProcess } from '../support/processes.js';
import { FIXTURE_MODEL } from '../support/paths.js';
import { waitFor } from '../support/wait.js';
import {
  exchangeClient,
  healthCheck,
  modelMetadata,
  rawExchange,
  request,
  servingAddress,
  type ExchangeOutcome,
} from '../support/peer-client.js';

const manifest = JSON.parse(readFileSync(join(FIXTURE_MODEL, 'manifest.json'), 'utf8')) as Manifest;
const { heads, head_dim: headDim, joint_layers: jointLayers } = manifest.architecture;
const CHUNK = 1 << 20;
const ROWS = 2;
const TEXT_LEN = 5;

function openFrame(fields: {
  textIds?: Tensor;
  textPositions?: Tensor;
  stopAfterLayer?: number;
  modelVersion?: string;
  rawIds?: ReturnType<typeof encodeTensor>['tensor'];
}): ExchangeRequest {
  const ids =
    fields.textIds ??
    int64Tensor(
      Array.from({ length: ROWS * TEXT_LEN }, (_, i) => 10 + i),
      [ROWS, TEXT_LEN],
    );
  return request({
    case: 'open',
    value: {
      $typeName: 'lavida.peer.v1.OpenSession',
      sessionId: 'protocol-test/1',
      modelName: manifest.name,
      modelVersion: fields.modelVersion ?? manifest.version,
      serveSide: Side.TEXT,
      textIds: fields.rawIds ?? encodeTensor(ids, CHUNK).tensor,
      textPositions: encodeTensor(fields.textPositions ?? positionsTensor(0, TEXT_LEN), CHUNK).tensor,
      stopAfterLayer: fields.stopAfterLayer ?? jointLayers - 1,
      chunkSize: CHUNK,
    },
  });
}

const beginStep = (step: number) => request({ case: 'beginStep', value: { $typeName: 'lavida.peer.v1.BeginStep', step } });

function partialFrame(out: Tensor, lse: Tensor): ExchangeRequest {
  return request({
    case: 'partial',
    value: {
      $typeName: 'lavida.peer.v1.PartialAttention',
      step: 0,
      layer: 0,
      out: encodeTensor(out, CHUNK).tensor,
      lse: encodeTensor(lse, CHUNK).tensor,
    },
  });
}

const zeros = (dims: number[]) => new Tensor('float32', new Float32Array(dims.reduce((a, b) => a * b, 1)), dims);

function assertEnded(outcome: ExchangeOutcome, code: status, details: RegExp, frames: string[] = []): void {
  assert.equal(outcome.code, code, `status ${status[outcome.code]} (${outcome.details}), expected ${status[code]}`);
  assert.match(outcome.details, details);
  assert.deepEqual(
    outcome.responses.map((r) => r.frame.case),
    frames,
  );
}

describe('the understanding worker against hand-built peer frames', () => {
  let und: AppProcess;
  let address: string;
  let client: Client;
  before(async () => {
    und = startApp('und-worker', { UND_GRPC_PORT: 0, GRPC_HOST: '127.0.0.1' });
    address = await servingAddress(und);
    client = exchangeClient(address);
  });
  after(async () => {
    client?.close();
    await und?.stop('SIGKILL');
  });

  it('INVALID_ARGUMENT for text_ids of dtype FLOAT32', async () => {
    const floats = new Tensor('float32', new Float32Array(ROWS * TEXT_LEN).fill(10), [ROWS, TEXT_LEN]);
    const outcome = await rawExchange(client, [openFrame({ textIds: floats })]);
    assertEnded(outcome, status.INVALID_ARGUMENT, /text_ids must be int64 \[rows, text_len\], got float32 \[2,5\]/);
  });

  it('INVALID_ARGUMENT for text_ids whose bytes do not match the shape', async () => {
    const ids = encodeTensor(int64Tensor([10, 11, 12], [1, 3]), CHUNK).tensor;
    ids.shape = [1, 4];
    ids.byteLength = 0; // only data disagrees with shape
    const short = await rawExchange(client, [openFrame({ rawIds: ids, textPositions: positionsTensor(0, 4) })]);
    assertEnded(short, status.INVALID_ARGUMENT, /has 24 bytes, but shape \[1,4\] of INT64 needs 32/);

    const declared = encodeTensor(int64Tensor([10, 11, 12], [1, 3]), CHUNK).tensor;
    declared.byteLength = 32;
    const lying = await rawExchange(client, [openFrame({ rawIds: declared, textPositions: positionsTensor(0, 3) })]);
    assertEnded(lying, status.INVALID_ARGUMENT, /declares 32 bytes, but shape \[1,3\] of INT64 needs 24/);
  });

  it('INVALID_ARGUMENT for stop_after_layer beyond the joint layers', async () => {
    const outcome = await rawExchange(client, [openFrame({ stopAfterLayer: jointLayers })]);
    assertEnded(
      outcome,
      status.INVALID_ARGUMENT,
      new RegExp(`stop_after_layer ${jointLayers} is not a joint layer \\(0\\.\\.${jointLayers - 1}\\)`),
    );
  });

  it('INVALID_ARGUMENT for a partial whose out has the wrong text length, after a good open and step', async () => {
    const out = zeros([ROWS, heads, TEXT_LEN + 1, headDim]);
    const lse = zeros([ROWS, heads, TEXT_LEN]);
    const outcome = await rawExchange(client, [openFrame({}), beginStep(0), partialFrame(out, lse)]);
    assertEnded(
      outcome,
      status.INVALID_ARGUMENT,
      new RegExp(
        `partial\\.out has shape \\[${ROWS},${heads},${TEXT_LEN + 1},${headDim}\\], expected \\[${ROWS},${heads},${TEXT_LEN},${headDim}\\]`,
      ),
      ['opened', 'projections'],
    );
  });

  it('INVALID_ARGUMENT for a partial whose out is INT64', async () => {
    const dims = [ROWS, heads, TEXT_LEN, headDim];
    const out = new Tensor('int64', new BigInt64Array(dims.reduce((a, b) => a * b, 1)), dims);
    const lse = zeros([ROWS, heads, TEXT_LEN]);
    const outcome = await rawExchange(client, [openFrame({}), beginStep(0), partialFrame(out, lse)]);
    assertEnded(outcome, status.INVALID_ARGUMENT, /partial\.out has dtype int64, expected float32/, ['opened', 'projections']);
  });

  it('INVALID_ARGUMENT for a frame before open', async () => {
    const outcome = await rawExchange(client, [beginStep(0)]);
    assertEnded(outcome, status.INVALID_ARGUMENT, /first frame must be open, got beginStep/);
  });

  it('INVALID_ARGUMENT for a tensor chunk with nothing pending', async () => {
    const chunk = request({
      case: 'chunk',
      value: { $typeName: 'lavida.tensor.v1.TensorChunk', tensorIndex: 0, offset: 0, data: new Uint8Array(8) },
    });
    const first = await rawExchange(client, [chunk]);
    assertEnded(first, status.INVALID_ARGUMENT, /a tensor chunk arrived with no chunked tensor pending/);
    const afterOpen = await rawExchange(client, [openFrame({}), chunk]);
    assert.equal(afterOpen.code, status.INVALID_ARGUMENT, afterOpen.details);
    assert.match(afterOpen.details, /a tensor chunk arrived with no chunked tensor pending/);
  });

  it('FAILED_PRECONDITION for a different model version', async () => {
    const outcome = await rawExchange(client, [openFrame({ modelVersion: '9.9.9' })]);
    assertEnded(
      outcome,
      status.FAILED_PRECONDITION,
      new RegExp(`driver runs ${manifest.name}@9\\.9\\.9, this peer serves ${manifest.name}@${manifest.version.replace(/\./g, '\\.')}`),
    );
  });

  it('still serves a whole text-to-image session afterwards', async () => {
    assert.ok(und.running, und.output());
    const gen = await ModelPackage.load(FIXTURE_MODEL, { branch: 'gen' });
    const peer = new GrpcJointPeer({
      addresses: [address],
      modelName: manifest.name,
      modelVersion: manifest.version,
      timeoutMs: 10_000,
      chunkBytes: CHUNK,
      maxMessageBytes: 16 << 20,
    });
    try {
      const result = await textToImage(gen, peer, { prompt: 'a red circle', seed: 7, steps: 4 }, { sessionId: 'protocol-test/good' });
      assert.equal(result.peer, address);
      assert.equal(result.steps, 4);
      assert.equal(result.tokens.length, manifest.image.grid[0] * manifest.image.grid[1]);
      assert.ok(
        result.tokens.every((t) => Number.isInteger(t) && t >= 0 && t < manifest.image.codebook_size),
        'every token unmasked',
      );
      assert.equal(result.pixels.length, manifest.image.width * manifest.image.height * 3);
    } finally {
      peer.close();
      await gen.release();
    }
    const good = await waitFor(
      () => und.lines.find((l) => l.msg === 'session ended' && l.sessionId === 'protocol-test/good'),
      5000,
      'the good session to be logged',
    );
    assert.equal(good.outcome, 'closed', und.output());
    assert.equal(good.steps, 4);
    const failed = und.lines.filter((l) => l.msg === 'session ended' && l.outcome === 'failed');
    assert.equal(failed.length, 10, und.output());
  });

  it('answers the standard health service', async () => {
    assert.equal(await healthCheck(address, ''), 'SERVING');
    assert.equal(await healthCheck(address, 'lavida.peer.v1.JointAttentionService'), 'SERVING');
    await assert.rejects(healthCheck(address, 'no.such.Service'), (error: { code?: number }) => error.code === status.NOT_FOUND);
  });

  it('describes the loaded und branch through ModelService', async () => {
    const metadata = await modelMetadata(address);
    assert.equal(metadata.name, 'lavida-o-fixture');
    assert.equal(metadata.version, manifest.version);
    assert.equal(metadata.branch, 'und');
    assert.equal(metadata.executionProvider, 'cpu');
    assert.deepEqual(JSON.parse(metadata.manifestJson), manifest);
    const expected = [
      'und_embed',
      ...Array.from({ length: jointLayers }, (_, l) => [`und_joint_qkv_${l}`, `und_joint_out_${l}`]).flat(),
      'und_tail',
    ];
    assert.deepEqual(
      metadata.segments.map((s) => s.name),
      expected,
    );
    for (const segment of metadata.segments) {
      const spec = manifest.segments[segment.name];
      assert.equal(spec.branch, 'und');
      const plain = (list: typeof segment.inputs) => list.map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape] }));
      assert.deepEqual(plain(segment.inputs), spec.inputs, `${segment.name} inputs`);
      assert.deepEqual(plain(segment.outputs), spec.outputs, `${segment.name} outputs`);
    }
    const qkv = metadata.segments.find((s) => s.name === 'und_joint_qkv_0')!;
    assert.deepEqual(
      qkv.outputs.map((t) => [t.name, t.dtype, [...t.shape]]),
      ['q', 'k', 'v'].map((n) => [n, 'float32', [-1, heads, -1, headDim]]),
    );
    assert.deepEqual([...metadata.segments.find((s) => s.name === 'und_tail')!.outputs[0].shape], [-1, -1, manifest.text.vocab.length]);
  });
});
