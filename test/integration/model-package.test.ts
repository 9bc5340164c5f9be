import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModelPackageError } from '@lavida/contracts';
import { ModelPackage, textToImageSpec, type Branch, type ImageRequest, type Manifest } from '@lavida/model';
import { startApp } from '../support/processes.js';
import { FIXTURE_MODEL, MINI_MODEL } from '../support/paths.js';

const UND = ['und_embed', 'und_joint_qkv_0', 'und_joint_out_0', 'und_joint_qkv_1', 'und_joint_out_1', 'und_tail'];
const GEN = ['gen_embed', 'gen_joint_0', 'gen_joint_1', 'gen_text_partial_0', 'gen_tail', 'vq_decode', 'vq_encode'];

const temps: string[] = [];

/** A copy of a package (the fixture unless named; without its golden files), broken by `breakIt`. */
function brokenCopy(breakIt: (dir: string) => void, from = FIXTURE_MODEL): string {
  const dir = mkdtempSync(join(tmpdir(), 'lavida-pkg-'));
  temps.push(dir);
  cpSync(from, dir, { recursive: true, filter: (src) => !src.endsWith('golden.json') });
  breakIt(dir);
  return dir;
}

function editManifest(edit: (manifest: Manifest) => void): (dir: string) => void {
  return (dir) => {
    const path = join(dir, 'manifest.json');
    const manifest = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
    edit(manifest);
    writeFileSync(path, JSON.stringify(manifest, null, 2));
  };
}

async function assertRefused(dir: string, branch: Branch, ...problems: RegExp[]): Promise<void> {
  await assert.rejects(ModelPackage.load(dir, { branch }), (error: Error) => {
    assert.ok(error instanceof ModelPackageError, `expected ModelPackageError, got ${String(error)}`);
    assert.ok(error.message.startsWith(`model package ${dir}: `), error.message);
    for (const problem of problems) assert.match(error.message, problem);
    return true;
  });
}

describe('model package loading', () => {
  after(() => {
    for (const dir of temps) rmSync(dir, { recursive: true, force: true });
  });

  it('the fixture loads for und, gen and all with the expected segments', async () => {
    for (const [branch, names] of [
      ['und', UND],
      ['gen', GEN],
      ['all', [...UND, ...GEN]],
    ] as const) {
      const pkg = await ModelPackage.load(FIXTURE_MODEL, { branch });
      try {
        assert.equal(pkg.branch, branch);
        assert.equal(pkg.manifest.name, 'lavida-o-fixture');
        assert.deepEqual(pkg.segmentNames, names);
        assert.equal(pkg.executionProvider, 'cpu');
      } finally {
        await pkg.release();
      }
    }
  });

  it('refuses a package with a segment file missing', async () => {
    const dir = brokenCopy((d) => rmSync(join(d, 'und_joint_out_1.onnx')));
    await assertRefused(dir, 'und', /segment und_joint_out_1: file und_joint_out_1\.onnx is missing/);
    await assertRefused(dir, 'all', /segment und_joint_out_1: file und_joint_out_1\.onnx is missing/);
    // The generation branch never reads that file.
    const gen = await ModelPackage.load(dir, { branch: 'gen' });
    await gen.release();
  });

  it('refuses a segment file whose bytes changed (sha256), naming the file', async () => {
    const dir = brokenCopy((d) => {
      const path = join(d, 'gen_tail.onnx');
      const bytes = readFileSync(path);
      bytes[bytes.length - 1] ^= 0x01;
      writeFileSync(path, bytes);
    });
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;
    await assertRefused(
      dir,
      'gen',
      new RegExp(`segment gen_tail: gen_tail\\.onnx has sha256 [0-9a-f]{64}, the manifest says ${manifest.segments.gen_tail.sha256}`),
    );
  });

  it('refuses a manifest whose fixed output dim disagrees with the graph, naming segment, output and dim', async () => {
    const dir = brokenCopy(
      editManifest((m) => {
        m.segments.und_joint_qkv_0.outputs.find((o) => o.name === 'q')!.shape[1] = 3;
      }),
    );
    await assertRefused(dir, 'und', /segment und_joint_qkv_0: output q dim 1 is 2 in the graph, 3 in the manifest/);
  });

  it('refuses a manifest declaring an input the graph lacks', async () => {
    const dir = brokenCopy(
      editManifest((m) => {
        m.segments.und_embed.inputs[0].name = 'token_ids';
      }),
    );
    await assertRefused(
      dir,
      'und',
      /segment und_embed: input token_ids is declared but the graph has \[text_ids\]/,
      /segment und_embed: graph input text_ids is not in the manifest/,
    );
  });

  it('refuses a manifest that is not JSON', async () => {
    const dir = brokenCopy((d) => writeFileSync(join(d, 'manifest.json'), '{ "format": "lavida-model-package/v1", '));
    await assertRefused(dir, 'und', /manifest\.json is not JSON/);
  });

  it('refuses a manifest missing a segment the branch needs', async () => {
    const dir = brokenCopy(
      editManifest((m) => {
        delete m.segments.gen_joint_1;
      }),
    );
    await assertRefused(dir, 'gen', /segment gen_joint_1 is missing from the manifest/);
    await assertRefused(dir, 'all', /segment gen_joint_1 is missing from the manifest/);
  });

  it('image guidance defaults: plan_guidance with a plan, feedback_guidance with a critique, else guidance; a negative one is refused', async () => {
    const plan = [{ label: 'red circle', bins: [0, 0, 512, 512] as [number, number, number, number] }];
    const guidanceOf = (pkg: ModelPackage, request: Partial<ImageRequest>) =>
      textToImageSpec(pkg, { prompt: 'a red circle', seed: 1, ...request }).sampler.guidance;
    // lavida-o-mini sets both (model/README "Guidance with a plan"); a copy without them falls back to guidance.
    const mini = await ModelPackage.load(MINI_MODEL, { branch: 'gen' });
    const bare = brokenCopy(
      editManifest((m) => {
        delete m.sampling.plan_guidance;
        delete m.sampling.feedback_guidance;
      }),
      MINI_MODEL,
    );
    const plain = await ModelPackage.load(bare, { branch: 'gen' });
    try {
      const { guidance, plan_guidance, feedback_guidance } = mini.manifest.sampling;
      assert.ok(plan_guidance !== undefined && feedback_guidance !== undefined);
      const feedback = { verdict: 'wrong', pixels: new Uint8Array(mini.manifest.image.width * mini.manifest.image.height * 3) };
      assert.equal(guidanceOf(mini, {}), guidance);
      assert.equal(guidanceOf(mini, { plan }), plan_guidance);
      assert.equal(guidanceOf(mini, { feedback }), feedback_guidance);
      assert.equal(guidanceOf(mini, { plan: [], feedback }), feedback_guidance, 'an empty plan is no plan');
      assert.equal(guidanceOf(mini, { plan, guidance: 2 }), 2, 'a request names its own');
      assert.equal(guidanceOf(plain, { plan }), guidance, 'without plan_guidance a plan gets guidance');
      assert.equal(guidanceOf(plain, { feedback }), guidance);
    } finally {
      await mini.release();
      await plain.release();
    }
    const negative = brokenCopy(
      editManifest((m) => {
        m.sampling.plan_guidance = -1;
      }),
    );
    await assertRefused(negative, 'gen', /plan_guidance/);
  });

  it('refuses gen_hidden above und_hidden', async () => {
    const dir = brokenCopy(
      editManifest((m) => {
        m.architecture.gen_hidden = 64;
      }),
    );
    await assertRefused(dir, 'und', /architecture\.gen_hidden 64 exceeds und_hidden 32/);
  });

  describe('workers started on a broken package', () => {
    function refusal(output: string): string | undefined {
      return output.split('\n').find((line) => line.includes('refusing to start'));
    }

    it('the und-worker exits 1 naming the problem', async () => {
      const dir = brokenCopy((d) => rmSync(join(d, 'und_tail.onnx')));
      const und = startApp('und-worker', { MODEL_DIR: dir, UND_GRPC_PORT: 0, GRPC_HOST: '127.0.0.1' });
      await und.waitForExit();
      assert.equal(und.exitCode, 1, und.output());
      const line = refusal(und.output());
      assert.ok(line, und.output());
      assert.match(line, /segment und_tail: file und_tail\.onnx is missing/);
      assert.ok(!und.lines.some((l) => l.msg === 'serving'), und.output());
    });

    it('the gen-worker exits 1 naming the problem, before touching Redis', async () => {
      const dir = brokenCopy(
        editManifest((m) => {
          m.segments.gen_joint_0.outputs.find((o) => o.name === 'text_lse')!.dtype = 'int64';
        }),
      );
      const gen = startApp('gen-worker', { MODEL_DIR: dir, REDIS_URL: 'redis://127.0.0.1:1', GEN_GRPC_PORT: 0, GRPC_HOST: '127.0.0.1' });
      await gen.waitForExit();
      assert.equal(gen.exitCode, 1, gen.output());
      const line = refusal(gen.output());
      assert.ok(line, gen.output());
      assert.match(line, /segment gen_joint_0: output text_lse is float32 in the graph, int64 in the manifest/);
      assert.doesNotMatch(gen.output(), /ECONNREFUSED|127\.0\.0\.1:1\b|consuming/);
    });
  });
});
