import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { InvalidInputError, ModelPackageError } from '@lavida/contracts';
import { modelLoad } from '@lavida/telemetry';
import {
  ManifestSchema,
  manifestProblems,
  requiredSegments,
  type Branch,
  type Manifest,
  type SegmentSpec,
  type TensorSpec,
} from './manifest.js';

export type Tensor = ort.Tensor;
export const Tensor = ort.Tensor;
export type Feeds = Record<string, ort.Tensor>;

/** How a package's segments are run. */
export interface RuntimeOptions {
  /** Which branch's segments to load. */
  branch: Branch;
  /** @defaultValue 'cpu' */
  executionProvider?: 'cpu' | 'cuda';
  /** @defaultValue 0 */
  deviceId?: number;
  /** @defaultValue 1 */
  intraOpThreads?: number;
}

interface LoadedSegment {
  name: string;
  spec: SegmentSpec;
  session: ort.InferenceSession;
}

/**
 * A loaded model package: the manifest and one onnxruntime session per segment of the branch.
 * Loading checks every segment against the manifest and fails with a message listing every
 * problem found.
 */
export class ModelPackage {
  private constructor(
    readonly dir: string,
    readonly manifest: Manifest,
    readonly manifestJson: string,
    readonly branch: Branch,
    readonly executionProvider: string,
    private readonly segments: Map<string, LoadedSegment>,
    /** Milliseconds spent loading. */
    readonly loadMs: number,
  ) {}

  static async load(dir: string, options: RuntimeOptions): Promise<ModelPackage> {
    const started = performance.now();
    const manifestPath = join(dir, 'manifest.json');
    let manifestJson: string;
    try {
      manifestJson = await readFile(manifestPath, 'utf8');
    } catch (error) {
      throw new ModelPackageError(`model package ${dir}: cannot read manifest.json (${(error as Error).message})`);
    }
    let raw: unknown;
    try {
      raw = JSON.parse(manifestJson);
    } catch (error) {
      throw new ModelPackageError(`model package ${dir}: manifest.json is not JSON (${(error as Error).message})`);
    }
    const parsed = ManifestSchema.safeParse(raw);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
      throw new ModelPackageError(`model package ${dir}: manifest.json is invalid: ${problems.join('; ')}`);
    }
    const manifest = parsed.data;
    const problems = manifestProblems(manifest);
    const branches: ('und' | 'gen')[] = options.branch === 'all' ? ['und', 'gen'] : [options.branch];
    const names = branches.flatMap((b) => requiredSegments(manifest, b));
    for (const name of names) {
      if (!manifest.segments[name]) problems.push(`segment ${name} is missing from the manifest`);
    }
    if (problems.length > 0) {
      throw new ModelPackageError(`model package ${dir}: ${problems.join('; ')}`);
    }

    const provider = options.executionProvider ?? 'cpu';
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: provider === 'cuda' ? [{ name: 'cuda', deviceId: options.deviceId ?? 0 }] : ['cpu'],
      intraOpNumThreads: options.intraOpThreads ?? 1,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
    };
    const segments = new Map<string, LoadedSegment>();
    for (const name of names) {
      const spec = manifest.segments[name];
      const path = join(dir, spec.file);
      let bytes: Buffer;
      try {
        bytes = await readFile(path);
      } catch {
        problems.push(`segment ${name}: file ${spec.file} is missing`);
        continue;
      }
      const digest = createHash('sha256').update(bytes).digest('hex');
      if (digest !== spec.sha256) {
        problems.push(`segment ${name}: ${spec.file} has sha256 ${digest}, the manifest says ${spec.sha256}`);
        continue;
      }
      let session: ort.InferenceSession;
      try {
        session = await ort.InferenceSession.create(bytes, sessionOptions);
      } catch (error) {
        problems.push(`segment ${name}: onnxruntime cannot load ${spec.file} (${(error as Error).message.split('\n')[0]})`);
        continue;
      }
      problems.push(...sessionProblems(name, spec, session));
      segments.set(name, { name, spec, session });
    }
    if (problems.length > 0) {
      await Promise.all([...segments.values()].map((s) => s.session.release()));
      throw new ModelPackageError(`model package ${dir}: ${problems.join('; ')}`);
    }
    return new ModelPackage(dir, manifest, manifestJson, options.branch, provider, segments, performance.now() - started);
  }

  /** Names of the loaded segments. */
  get segmentNames(): string[] {
    return [...this.segments.keys()];
  }

  spec(name: string): SegmentSpec {
    return this.segment(name).spec;
  }

  has(name: string): boolean {
    return this.segments.has(name);
  }

  /**
   * Runs one segment. Feeds are checked against the manifest first, so that a tensor of the wrong
   * type or shape fails with a message naming it rather than deep inside onnxruntime.
   */
  async run(name: string, feeds: Feeds): Promise<Feeds> {
    const segment = this.segment(name);
    for (const input of segment.spec.inputs) {
      const tensor = feeds[input.name];
      if (!tensor) throw new InvalidInputError(`segment ${name}: input ${input.name} is missing`);
      const problem = tensorMismatch(input, tensor.type, tensor.dims);
      if (problem) throw new InvalidInputError(`segment ${name}: input ${problem}`);
    }
    return segment.session.run(feeds);
  }

  async release(): Promise<void> {
    await Promise.all([...this.segments.values()].map((s) => s.session.release()));
    this.segments.clear();
  }

  private segment(name: string): LoadedSegment {
    const segment = this.segments.get(name);
    if (!segment) throw new ModelPackageError(`segment ${name} is not loaded by this ${this.branch} runtime`);
    return segment;
  }
}

/** Describes how a tensor differs from its spec, or returns undefined when it fits. */
export function tensorMismatch(spec: TensorSpec, dtype: string, dims: readonly number[]): string | undefined {
  if (dtype !== spec.dtype) return `${spec.name} has dtype ${dtype}, expected ${spec.dtype}`;
  if (dims.length !== spec.shape.length) {
    return `${spec.name} has shape [${dims.join(',')}], expected rank ${spec.shape.length} [${spec.shape.join(',')}]`;
  }
  for (let i = 0; i < dims.length; i++) {
    if (spec.shape[i] !== -1 && spec.shape[i] !== dims[i]) {
      return `${spec.name} has shape [${dims.join(',')}], expected [${spec.shape.join(',')}]`;
    }
  }
  return undefined;
}

function sessionProblems(name: string, spec: SegmentSpec, session: ort.InferenceSession): string[] {
  const problems: string[] = [];
  const check = (kind: 'input' | 'output', declared: TensorSpec[], actual: readonly ort.InferenceSession.ValueMetadata[]) => {
    const byName = new Map(actual.map((m) => [m.name, m]));
    for (const want of declared) {
      const got = byName.get(want.name);
      if (!got) {
        problems.push(`segment ${name}: ${kind} ${want.name} is declared but the graph has [${[...byName.keys()].join(', ')}]`);
        continue;
      }
      byName.delete(want.name);
      if (!got.isTensor) {
        problems.push(`segment ${name}: ${kind} ${want.name} is not a tensor`);
        continue;
      }
      if (got.type !== want.dtype) problems.push(`segment ${name}: ${kind} ${want.name} is ${got.type} in the graph, ${want.dtype} in the manifest`);
      if (got.shape.length !== want.shape.length) {
        problems.push(`segment ${name}: ${kind} ${want.name} has rank ${got.shape.length} in the graph, ${want.shape.length} in the manifest`);
      } else {
        got.shape.forEach((dim, i) => {
          const declaredDim = want.shape[i];
          const graphFixed = typeof dim === 'number' && dim >= 0;
          if (declaredDim !== -1 && graphFixed && dim !== declaredDim) {
            problems.push(`segment ${name}: ${kind} ${want.name} dim ${i} is ${dim} in the graph, ${declaredDim} in the manifest`);
          }
          if (declaredDim === -1 && graphFixed) {
            problems.push(`segment ${name}: ${kind} ${want.name} dim ${i} is fixed at ${dim} in the graph but variable in the manifest`);
          }
        });
      }
    }
    for (const extra of byName.keys()) problems.push(`segment ${name}: graph ${kind} ${extra} is not in the manifest`);
  };
  check('input', spec.inputs, session.inputMetadata);
  check('output', spec.outputs, session.outputMetadata);
  return problems;
}

/** Loads the configured model package for a branch, with the configured execution provider (its load time: lavida_model_load_seconds). */
export async function loadModelFromConfig(
  config: Pick<import('@lavida/config').Config, 'MODEL_DIR' | 'ORT_EXECUTION_PROVIDER' | 'ORT_DEVICE_ID' | 'ORT_INTRA_OP_THREADS'>,
  branch: Branch,
): Promise<ModelPackage> {
  const pkg = await ModelPackage.load(config.MODEL_DIR, {
    branch,
    executionProvider: config.ORT_EXECUTION_PROVIDER,
    deviceId: config.ORT_DEVICE_ID,
    intraOpThreads: config.ORT_INTRA_OP_THREADS,
  });
  modelLoad.set({ model: pkg.manifest.name, version: pkg.manifest.version, branch }, pkg.loadMs / 1000);
  return pkg;
}
