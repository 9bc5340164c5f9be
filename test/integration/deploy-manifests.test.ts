/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-return -- manifests and compose files are untyped YAML */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT } from '../support/paths.js';

type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> }; spec?: any };
interface Files {
  exists(path: string): boolean;
  isDir(path: string): boolean;
  read(path: string): string;
}
/** scripts/validate-deploy.mjs, the check CI runs (npm run deploy:check). */
interface DeployCheck {
  validateAll(root?: string): Promise<{ problems: string[]; checked: string[] }>;
  readYamlDocuments(text: string, source?: string): any[];
  composeSchemaErrors(doc: unknown): string[];
  composeProblems(main: unknown, gpu?: unknown): string[];
  dockerfileProblems(dockerfile: string, dockerignore: string, exists: (path: string) => boolean): string[];
  kustomizeBuild(dir: string, files?: Files): K8sObject[];
  objectSchemaErrors(o: unknown): string[];
  crossProblems(objects: K8sObject[], config: unknown, expect?: { gpu?: boolean; tls?: boolean }): string[];
  loadAppConfig(): Promise<unknown>;
}

const check = (await import(pathToFileURL(join(ROOT, 'scripts/validate-deploy.mjs')).href)) as DeployCheck;
const config = await check.loadAppConfig();
const composeText = readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8');
const compose = () => check.readYamlDocuments(composeText)[0];
const gpuCompose = () => check.readYamlDocuments(readFileSync(join(ROOT, 'docker-compose.gpu.yml'), 'utf8'))[0];

/** The file system with some files replaced: broken variants of the manifests, in memory. */
function filesWith(overrides: Record<string, string>): Files {
  const content = (path: string) => (path in overrides ? overrides[path] : undefined);
  return {
    exists: (path) => content(path) !== undefined || existsSync(path),
    isDir: (path) => content(path) === undefined && existsSync(path) && statSync(path).isDirectory(),
    read: (path) => content(path) ?? readFileSync(path, 'utf8'),
  };
}

const base = join(ROOT, 'deploy/k8s/base');
const gpu = join(ROOT, 'deploy/k8s/overlays/gpu');
const build = (dir = base, files?: Files) => check.kustomizeBuild(dir, files);
const deployment = (objects: K8sObject[], name: string) => objects.find((o) => o.kind === 'Deployment' && o.metadata.name === name)!;
const container = (objects: K8sObject[], name: string) => deployment(objects, name).spec.template.spec.containers[0];

describe('deployment files: offline validation (npm run deploy:check)', () => {
  it('passes on the committed compose files and every kustomization, and the CLI exits 0', async () => {
    const { problems, checked } = await check.validateAll();
    assert.deepEqual(problems, []);
    for (const what of [
      'Dockerfile',
      'docker-compose.yml',
      'docker-compose.gpu.yml',
      'deploy/k8s/base',
      'deploy/k8s/overlays/gpu',
      'deploy/k8s/overlays/production',
    ]) {
      assert.ok(
        checked.some((c) => c.startsWith(what)),
        `${what} was checked: ${checked.join('; ')}`,
      );
    }
    const cli = spawnSync(process.execPath, [join(ROOT, 'scripts/validate-deploy.mjs')], { encoding: 'utf8' });
    assert.equal(cli.status, 0, cli.stderr);
  });

  it('the builds hold what the issue asks for', () => {
    const objects = build();
    const kinds = (kind: string) =>
      objects
        .filter((o) => o.kind === kind)
        .map((o) => o.metadata.name)
        .sort();
    assert.deepEqual(kinds('Deployment'), ['api', 'gen-worker', 'orchestrator', 'und-worker']);
    assert.deepEqual(kinds('StatefulSet'), ['redis']);
    assert.deepEqual(kinds('ScaledObject'), ['gen-worker', 'und-worker']);
    assert.deepEqual(kinds('PodDisruptionBudget'), ['api', 'gen-worker', 'orchestrator', 'und-worker']);
    for (const worker of ['und-worker', 'gen-worker']) {
      const c = container(objects, worker);
      assert.deepEqual(c.livenessProbe.grpc, { port: 50060, service: 'liveness' });
      assert.deepEqual(c.readinessProbe.grpc, { port: 50060 });
      assert.ok(c.startupProbe.grpc && c.startupProbe.failureThreshold * c.startupProbe.periodSeconds >= 300, 'minutes to load the model');
      assert.ok(deployment(objects, worker).spec.template.spec.terminationGracePeriodSeconds >= 300);
      assert.equal(c.resources.limits['nvidia.com/gpu'], undefined, 'no GPU in the base');
    }
    // The peer links both ways: each worker's *_PEERS names the other's headless peer Service, which
    // forwards to the port that worker serves.
    const service = (name: string) => objects.find((o) => o.kind === 'Service' && o.metadata.name === name)!;
    const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'lavida-config') as unknown as {
      data: Record<string, string>;
    };
    for (const [variable, name, worker, port] of [
      ['UND_PEERS', 'und-worker-peer', 'und-worker', 50051],
      ['GEN_PEERS', 'gen-worker-peer', 'gen-worker', 50052],
    ] as const) {
      assert.equal(configMap.data[variable], `${name}:${port}`);
      const peer = service(name);
      assert.ok(peer, `Service ${name}`);
      assert.equal(peer.spec.clusterIP, 'None', `${name} is headless (round_robin over every ready pod)`);
      assert.deepEqual(peer.spec.selector, deployment(objects, worker).spec.selector.matchLabels);
      assert.deepEqual(peer.spec.ports, [{ name: 'grpc', port, targetPort: 'grpc', appProtocol: 'grpc' }]);
      const c = container(objects, worker);
      assert.equal(c.ports.find((p: { name: string }) => p.name === 'grpc').containerPort, port);
    }
    assert.equal(container(objects, 'api').readinessProbe.httpGet.path, '/readyz');
    const scaled = objects.find((o) => o.kind === 'ScaledObject' && o.metadata.name === 'gen-worker')!;
    assert.match(scaled.spec.triggers[0].metadata.query, /lavida_queue_depth\{queue="generation"\}/);

    const gpuObjects = build(gpu);
    for (const worker of ['und-worker', 'gen-worker']) {
      const spec = deployment(gpuObjects, worker).spec.template.spec;
      assert.equal(spec.containers[0].resources.limits['nvidia.com/gpu'], 1);
      assert.equal(spec.nodeSelector['nvidia.com/gpu.present'], 'true');
      assert.ok(spec.tolerations.some((t: { key: string }) => t.key === 'nvidia.com/gpu'));
      // The patch merged into the base container (by name), it did not replace it.
      assert.ok(spec.containers[0].readinessProbe, 'probes kept');
      assert.equal(spec.containers.length, 1);
    }
    const production = build(join(ROOT, 'deploy/k8s/overlays/production'));
    assert.ok(!production.some((o) => o.metadata.name === 'redis'), 'external Redis: no StatefulSet');
    assert.equal(
      production.find((o) => o.kind === 'ConfigMap')?.metadata && (production.find((o) => o.kind === 'ConfigMap') as any).data.QUEUE_PREFIX,
      '{lavida}',
    );
    assert.ok(production.every((o) => (o.metadata as { namespace?: string }).namespace === 'lavida'));
  });

  it('fails a compose file that breaks the compose schema or what the project needs of it', () => {
    const unknownKey = compose();
    unknownKey.services.api.healthcheck.tset = ['CMD', 'true'];
    assert.ok(check.composeSchemaErrors(unknownKey).some((e) => /healthcheck.*additional properties \(tset\)/.test(e)));

    const badType = compose();
    badType.services.redis.restart = 5;
    badType.services.redis.healthcheck.retries = { times: 10 };
    assert.deepEqual(check.composeSchemaErrors(badType), [
      '/services/redis/healthcheck/retries must be number,string',
      '/services/redis/restart must be string',
    ]);

    const evicting = compose();
    evicting.services.redis.command = ['redis-server', '--appendonly', 'yes', '--maxmemory-policy', 'allkeys-lru'];
    assert.deepEqual(check.composeProblems(evicting, gpuCompose()), ['redis: --maxmemory-policy is not noeviction']);

    const unhealthy = compose();
    delete unhealthy.services['und-worker'].healthcheck;
    unhealthy.services['gen-worker'].stop_grace_period = '30s';
    unhealthy.services.api.environment.WEBHOOK_SECRET = 'whsec_default';
    const problems = check.composeProblems(unhealthy, gpuCompose());
    assert.ok(problems.includes('und-worker: no healthcheck'), problems.join('\n'));
    assert.ok(problems.includes('gen-worker: waits for und-worker to be healthy, which has no healthcheck'));
    assert.ok(problems.some((p) => /gen-worker: stop_grace_period 30s does not exceed DRAIN_TIMEOUT_MS/.test(p)));
    assert.ok(problems.some((p) => /api: WEBHOOK_SECRET must be/.test(p)));

    // The workers' peer links, both ways: each names the other's service and the port it serves on.
    assert.deepEqual(check.composeProblems(compose(), gpuCompose()), []);
    const misrouted = compose();
    misrouted.services['und-worker'].environment.GEN_PEERS = 'und-worker:50052';
    misrouted.services['gen-worker'].environment.GEN_GRPC_PORT = '50062';
    assert.deepEqual(check.composeProblems(misrouted, gpuCompose()), [
      'und-worker: GEN_PEERS entry und-worker:50052 does not name the gen-worker service',
    ]);
    misrouted.services['und-worker'].environment.GEN_PEERS = 'gen-worker:50052';
    assert.deepEqual(check.composeProblems(misrouted, gpuCompose()), [
      'und-worker: GEN_PEERS entry gen-worker:50052: gen-worker serves on 50062',
    ]);
    const gpuUnset = gpuCompose();
    gpuUnset.services['und-worker'].environment.GEN_PEERS = '';
    assert.deepEqual(check.composeProblems(compose(), gpuUnset), [
      'und-worker: GEN_PEERS not set (its default is a loopback address, not gen-worker)',
    ]);

    const noGpu = gpuCompose();
    delete noGpu.services['gen-worker'].deploy;
    assert.deepEqual(check.composeProblems(compose(), noGpu), [
      'gpu override: gen-worker reserves no nvidia device with capabilities [gpu]',
    ]);
  });

  it('fails a Dockerfile that copies what .dockerignore excludes, names no stage, or ends as root', () => {
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8');
    const exists = (path: string) => existsSync(join(ROOT, path));
    assert.deepEqual(check.dockerfileProblems(dockerfile, ignore, exists), []);
    assert.deepEqual(check.dockerfileProblems(dockerfile, `${ignore}models\n`, exists), ['COPY models: excluded by .dockerignore']);
    assert.deepEqual(check.dockerfileProblems(dockerfile.replace('--from=build /out/', '--from=builder /out/'), ignore, exists), [
      'COPY --from=builder: no such stage before it',
    ]);
    assert.deepEqual(check.dockerfileProblems(dockerfile.replace(/^USER .*$/m, ''), ignore, exists), [
      'the final stage runs as root (no USER)',
    ]);
    assert.deepEqual(check.dockerfileProblems(dockerfile.replace(/^USER .*$/m, 'USER node'), ignore, exists), [
      "USER node: use a numeric uid so that Kubernetes' runAsNonRoot can check it",
    ]);
  });

  it('fails Kubernetes objects that break their schema (kubernetes-models) or KEDA’s', () => {
    const objects = build();
    const bad = structuredClone(deployment(objects, 'gen-worker'));
    bad.spec.template.spec.containers[0].ports[0].containerPort = 'fifty';
    bad.spec.replicas = -1;
    const errors = check.objectSchemaErrors(bad);
    assert.ok(
      errors.some((e) => /containerPort must be integer/.test(e)),
      errors.join('\n'),
    );

    const scaled = structuredClone(objects.find((o) => o.kind === 'ScaledObject')!);
    delete scaled.spec.triggers[0].metadata.query;
    scaled.spec.triggers[0].metadata.threshold = 'many';
    scaled.spec.maxReplicas = 3;
    const kedaErrors = check.objectSchemaErrors(scaled);
    assert.ok(
      kedaErrors.some((e) => /must have required property 'query'/.test(e)),
      kedaErrors.join('\n'),
    );
    assert.ok(kedaErrors.some((e) => /threshold must match pattern/.test(e)));
    assert.ok(kedaErrors.some((e) => /additional properties \(maxReplicas\)/.test(e)));

    assert.deepEqual(check.objectSchemaErrors({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' } }), [
      'kind v1/Pod is not one this check knows (add it to MODELS)',
    ]);
  });

  it('fails manifests that disagree with each other or with the apps’ configuration', () => {
    const objects = structuredClone(build());
    const gen = container(objects, 'gen-worker');
    gen.env.push({ name: 'DRAIN_TIMEOUT', value: '1000' }, { name: 'GRPC_LB_POLICY', value: 'random' });
    gen.readinessProbe = { httpGet: { path: '/readyz', port: 'http' } };
    deployment(objects, 'und-worker').spec.template.spec.terminationGracePeriodSeconds = 30;
    deployment(objects, 'api').spec.selector.matchLabels['app.kubernetes.io/component'] = 'web';
    objects.find((o) => o.kind === 'Service' && o.metadata.name === 'und-worker-peer')!.spec.ports[0].targetPort = 'peer';
    objects.find((o) => o.kind === 'ScaledObject' && o.metadata.name === 'gen-worker')!.spec.scaleTargetRef.name = 'generator';
    const problems = check.crossProblems(objects, config);
    const expected = [
      /gen-worker: DRAIN_TIMEOUT is not a variable the apps read/,
      /gen-worker: Invalid environment variables: GRPC_LB_POLICY=random/,
      /gen-worker: readinessProbe is not a native gRPC probe/,
      /gen-worker: readinessProbe port http is not a port of the container/,
      /und-worker: terminationGracePeriodSeconds 30 leaves under 10 s after DRAIN_TIMEOUT_MS 300000/,
      /Deployment api: selector does not match its pod labels/,
      /Service und-worker-peer: targetPort peer is not a port of und-worker/,
      /ScaledObject gen-worker: target Deployment generator is not in the build/,
      /Deployment gen-worker: no ScaledObject/,
    ];
    for (const pattern of expected)
      assert.ok(
        problems.some((p) => pattern.test(p)),
        `${pattern}\n${problems.join('\n')}`,
      );
    assert.equal(problems.length, expected.length, problems.join('\n'));
  });

  it('fails peer links that do not meet: GEN_PEERS and UND_PEERS must name the other worker’s peer Service on the port it serves', () => {
    const pristine = build();
    assert.deepEqual(check.crossProblems(pristine, config), []);
    const configMap = (objects: K8sObject[]) =>
      objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'lavida-config') as unknown as { data: Record<string, string> };
    const peerService = (objects: K8sObject[], name: string) => objects.find((o) => o.kind === 'Service' && o.metadata.name === name)!;
    const und = 'Deployment und-worker container und-worker';

    // The und-worker without GEN_PEERS would dial its own loopback default.
    const unset = structuredClone(pristine);
    delete configMap(unset).data.GEN_PEERS;
    assert.deepEqual(check.crossProblems(unset, config), [
      `${und}: GEN_PEERS not set (its default is a loopback address, no gen-worker pod)`,
    ]);

    // Without the gen-worker's peer Service (the state before it was added), GEN_PEERS names nothing.
    const noService = structuredClone(pristine).filter((o) => !(o.kind === 'Service' && o.metadata.name === 'gen-worker-peer'));
    assert.deepEqual(check.crossProblems(noService, config), [
      `${und}: GEN_PEERS entry gen-worker-peer:50052 names no Service of the build`,
    ]);

    // GEN_PEERS naming the und-worker's own Service, a wrong port, a Service forwarding elsewhere, not headless.
    const crossed = structuredClone(pristine);
    configMap(crossed).data.GEN_PEERS = 'und-worker-peer:50051,gen-worker-peer:50051,gen-worker-peer.lavida.svc.cluster.local:50052';
    const gen = peerService(crossed, 'gen-worker-peer');
    gen.spec.ports[0].targetPort = 9466;
    delete gen.spec.clusterIP;
    assert.deepEqual(check.crossProblems(crossed, config), [
      `${und}: GEN_PEERS entry und-worker-peer:50051: Service und-worker-peer does not select the gen-worker pods`,
      `${und}: GEN_PEERS entry gen-worker-peer:50051: Service gen-worker-peer has no port 50051`,
      `${und}: GEN_PEERS entry gen-worker-peer.lavida.svc.cluster.local:50052: Service gen-worker-peer forwards to port 9466, gen-worker serves GEN_GRPC_PORT=50052`,
      `${und}: GEN_PEERS entry gen-worker-peer.lavida.svc.cluster.local:50052: GRPC_LB_POLICY=round_robin needs Service gen-worker-peer headless (clusterIP: None) to see every pod`,
    ]);

    // The other direction, the same checks: a gen-worker serving on another port than the Service forwards to.
    const moved = structuredClone(pristine);
    container(moved, 'und-worker').env.find((e: { name: string }) => e.name === 'UND_GRPC_PORT').value = '50061';
    assert.deepEqual(check.crossProblems(moved, config), [
      'Deployment gen-worker container gen-worker: UND_PEERS entry und-worker-peer:50051: Service und-worker-peer forwards to port 50051, und-worker serves UND_GRPC_PORT=50061',
    ]);
  });

  it('fails a GPU overlay without the toleration, and kustomizations this builder cannot build faithfully', () => {
    const patch = readFileSync(join(gpu, 'gpu-workers.yaml'), 'utf8').replace(/ {6}tolerations:\n( {8}.*\n)+?(?= {6}containers:)/g, '');
    const objects = build(gpu, filesWith({ [join(gpu, 'gpu-workers.yaml')]: patch }));
    const problems = check.crossProblems(objects, config, { gpu: true });
    assert.deepEqual(
      problems.filter((p) => /toleration/.test(p)),
      [
        'Deployment und-worker container und-worker: no toleration of nvidia.com/gpu',
        'Deployment gen-worker container gen-worker: no toleration of nvidia.com/gpu',
      ],
    );
    // The base's workers ask for no GPU: outside the GPU overlay one is an error.
    const base = structuredClone(build());
    container(base, 'gen-worker').resources.limits['nvidia.com/gpu'] = 1;
    assert.ok(check.crossProblems(base, config).some((p) => /asks for a GPU outside the GPU overlay/.test(p)));

    const kustomization = join(gpu, 'kustomization.yaml');
    const original = readFileSync(kustomization, 'utf8');
    assert.throws(
      () => build(gpu, filesWith({ [kustomization]: `${original}configMapGenerator:\n  - name: x\n    literals: [A=1]\n` })),
      /field configMapGenerator is not supported/,
    );
    const stray = `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: gpu-worker\nspec:\n  replicas: 2\n`;
    assert.throws(() => build(gpu, filesWith({ [join(gpu, 'gpu-workers.yaml')]: stray })), /Deployment gpu-worker matches no object/);
    assert.throws(
      () => build(gpu, filesWith({ [kustomization]: original.replace('../../base', '../../bsae') })),
      /resource \.\.\/\.\.\/bsae does not exist/,
    );
  });

  it('the CLI exits 1 and names the problem on a broken copy of the deployment files', () => {
    const root = mkdtempSync(join(tmpdir(), 'lavida-deploy-'));
    try {
      for (const file of ['docker-compose.yml', 'docker-compose.gpu.yml', 'deploy'])
        cpSync(join(ROOT, file), join(root, file), { recursive: true });
      const workerFile = join(root, 'deploy/k8s/base/gen-worker.yaml');
      writeFileSync(
        workerFile,
        readFileSync(workerFile, 'utf8').replace('terminationGracePeriodSeconds: 330', 'terminationGracePeriodSeconds: 30'),
      );
      const script = `const c = await import(${JSON.stringify(pathToFileURL(join(ROOT, 'scripts/validate-deploy.mjs')).href)});
        const { problems } = await c.validateAll(${JSON.stringify(root)});
        for (const p of problems) console.error(p);
        process.exit(problems.length ? 1 : 0);`;
      const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
      assert.equal(run.status, 1, run.stderr);
      assert.match(run.stderr, /deploy\/k8s\/base: Deployment gen-worker container gen-worker: terminationGracePeriodSeconds 30/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
