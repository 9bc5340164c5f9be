#!/usr/bin/env node
// Offline validation of the deployment files (npm run deploy:check; CI runs it after the build):
//  - docker-compose.yml and docker-compose.gpu.yml against the Compose Specification's JSON schema
//    (the copy dclint ships: node_modules/dclint/schemas/compose.schema.json), then what this project
//    needs of them (health checks, Redis AOF and noeviction, GPU reservations, secrets without defaults);
//  - every kustomization under deploy/k8s (base, overlays) built the way `kustomize build` does for the
//    features these use (resources, components, patches: strategic merge and JSON 6902, images, labels,
//    namespace; any other field is an error, not ignored), every object validated with
//    kubernetes-models (the Kubernetes OpenAPI schemas) or, for KEDA's ScaledObject, with a schema of
//    our own, then checked against each other (selectors, ports, probes, secrets, drain time) and the
//    apps' own configuration schema (libs/config: every variable known, every value valid).
// Exits 1 naming every problem. Usable as a module: the deploy-manifests test feeds it broken files.
/* global structuredClone */
import { Buffer } from 'node:buffer';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';
import YAML from 'yaml';
import Ajv from 'ajv';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { ConfigMap, Namespace, Secret, Service } from 'kubernetes-models/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

// ---------------------------------------------------------------------------------------------------
// YAML

/** Every document of a YAML file (merge keys `<<` resolved, as compose and kubectl read them). */
export function readYamlDocuments(text, source = '<inline>') {
  const docs = YAML.parseAllDocuments(text, { merge: true });
  const out = [];
  for (const doc of docs) {
    if (doc.errors.length) throw new Error(`${source}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value = doc.toJS({ maxAliasCount: 1000 });
    if (value !== null && value !== undefined) out.push(value);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Compose

let composeValidator;
function composeSchema() {
  if (!composeValidator) {
    const schema = JSON.parse(readFileSync(join(dirname(require.resolve('dclint/package.json')), 'schemas/compose.schema.json'), 'utf8'));
    // A draft-07 schema (ajv's default draft); its $schema URL spelling is not one ajv registers.
    delete schema.$schema;
    composeValidator = new Ajv({ allErrors: true, strict: false }).compile(schema);
  }
  return composeValidator;
}

const ajvErrors = (errors) =>
  (errors ?? []).map(
    (e) => `${e.instancePath || '/'} ${e.message}${e.params?.additionalProperty ? ` (${e.params.additionalProperty})` : ''}`,
  );

/** Schema errors of one compose file's content. */
export function composeSchemaErrors(doc) {
  const validate = composeSchema();
  return validate(doc) ? [] : ajvErrors(validate.errors);
}

/** What this project needs of docker-compose.yml (and, for GPUs, of the override merged over it). */
export function composeProblems(main, gpu) {
  const problems = [];
  const services = main?.services ?? {};
  for (const name of ['redis', 'api', 'orchestrator', 'und-worker', 'gen-worker']) {
    if (!services[name]) problems.push(`service ${name} missing`);
  }
  for (const [name, service] of Object.entries(services)) {
    if (!service.healthcheck?.test) problems.push(`${name}: no healthcheck`);
    for (const [dependency, condition] of Object.entries(service.depends_on ?? {})) {
      if (!services[dependency]) problems.push(`${name}: depends on unknown service ${dependency}`);
      else if (condition?.condition === 'service_healthy' && !services[dependency].healthcheck) {
        problems.push(`${name}: waits for ${dependency} to be healthy, which has no healthcheck`);
      }
    }
  }
  const redisCommand = [services.redis?.command ?? []].flat().join(' ');
  if (!/--appendonly yes/.test(redisCommand)) problems.push('redis: AOF is not on (--appendonly yes)');
  if (!/--maxmemory-policy noeviction/.test(redisCommand)) problems.push('redis: --maxmemory-policy is not noeviction');
  if (!services.redis?.volumes?.length) problems.push('redis: no volume for its data');
  for (const name of ['api', 'orchestrator', 'und-worker', 'gen-worker']) {
    const service = services[name];
    if (!service) continue;
    if (service.depends_on?.redis?.condition !== 'service_healthy') problems.push(`${name}: does not wait for a healthy redis`);
    const env = service.environment ?? {};
    for (const secret of ['ADMIN_API_KEY', 'WEBHOOK_SECRET']) {
      // Required from the environment (${VAR:?message}): never a default in the file.
      if (!/^\$\{[A-Z_]+:\?.+\}$/.test(String(env[secret] ?? '')))
        problems.push(`${name}: ${secret} must be \${${secret}:?…} (required, no default)`);
    }
  }
  for (const name of ['und-worker', 'gen-worker']) {
    const env = services[name]?.environment ?? {};
    const drainMs = Number(env.DRAIN_TIMEOUT_MS ?? 25_000);
    const grace = durationSeconds(services[name]?.stop_grace_period ?? '10s');
    if (grace * 1000 <= drainMs) problems.push(`${name}: stop_grace_period ${grace}s does not exceed DRAIN_TIMEOUT_MS ${drainMs}`);
  }
  // The peer links both ways, with the GPU override's environment merged over the main file's (as compose merges files).
  const envOf = (name) => ({ ...(services[name]?.environment ?? {}), ...(gpu?.services?.[name]?.environment ?? {}) });
  for (const link of PEER_LINKS) {
    if (!services[link.client] || !services[link.server]) continue;
    const entries = peerEntries(envOf(link.client)[link.variable]);
    if (entries.length === 0)
      problems.push(`${link.client}: ${link.variable} not set (its default is a loopback address, not ${link.server})`);
    const servedPort = Number(envOf(link.server)[link.portVariable] ?? link.defaultPort);
    for (const { entry, host, port } of entries) {
      if (host !== link.server) problems.push(`${link.client}: ${link.variable} entry ${entry} does not name the ${link.server} service`);
      else if (port !== servedPort)
        problems.push(`${link.client}: ${link.variable} entry ${entry}: ${link.server} serves on ${servedPort}`);
    }
  }
  if (gpu) {
    for (const name of ['und-worker', 'gen-worker']) {
      const devices = gpu.services?.[name]?.deploy?.resources?.reservations?.devices ?? [];
      const nvidia = devices.find((d) => d.driver === 'nvidia' && (d.capabilities ?? []).includes('gpu'));
      if (!nvidia) problems.push(`gpu override: ${name} reserves no nvidia device with capabilities [gpu]`);
      if (gpu.services?.[name]?.environment?.ORT_EXECUTION_PROVIDER !== 'cuda')
        problems.push(`gpu override: ${name} does not set ORT_EXECUTION_PROVIDER=cuda`);
    }
  }
  return problems;
}

function durationSeconds(value) {
  let seconds = 0;
  for (const [, n, unit] of String(value).matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us)/g)) {
    seconds += Number(n) * { h: 3600, m: 60, s: 1, ms: 0.001, us: 0.000001 }[unit];
  }
  return seconds;
}

// ---------------------------------------------------------------------------------------------------
// Dockerfile (no engine here: what can be checked without building)

/** A glob of .dockerignore as a RegExp over a path relative to the context (`**`, `*`, `?`). */
function ignoreRegExp(pattern) {
  const body = pattern
    .replace(/^\/+|\/+$/g, '')
    .split(/(\*\*\/?|\*|\?)/)
    .map((part) =>
      part.startsWith('**') ? '(?:.*/)?' : part === '*' ? '[^/]*' : part === '?' ? '[^/]' : part.replace(/[.+^${}()|[\]\\]/g, '\\$&'),
    )
    .join('');
  return new RegExp(`^${body}(?:/.*)?$`);
}

/**
 * The Dockerfile's stages refer to stages that exist, the image ends as a non-root user, and what it
 * copies from the build context exists and is not excluded by .dockerignore.
 */
export function dockerfileProblems(dockerfile, dockerignore, exists) {
  const problems = [];
  const lines = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const ignored = dockerignore
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#') && !l.startsWith('!'))
    .map(ignoreRegExp);
  const stages = [];
  let user;
  for (const line of lines) {
    const [instruction, ...rest] = line.split(/\s+/);
    const args = rest.join(' ');
    switch (instruction.toUpperCase()) {
      case 'FROM': {
        const as = /\sAS\s+(\S+)$/i.exec(args);
        stages.push(as ? as[1] : String(stages.length));
        user = undefined;
        break;
      }
      case 'USER':
        user = args;
        break;
      case 'COPY': {
        const from = /--from=(\S+)/.exec(args)?.[1];
        const paths = rest.filter((a) => !a.startsWith('--'));
        if (from) {
          if (!stages.includes(from) && !from.includes(':') && !from.includes('/'))
            problems.push(`COPY --from=${from}: no such stage before it`);
        } else {
          for (const source of paths.slice(0, -1)) {
            if (!exists(source)) problems.push(`COPY ${source}: not in the build context`);
            else if (ignored.some((re) => re.test(source))) problems.push(`COPY ${source}: excluded by .dockerignore`);
          }
        }
        break;
      }
      default:
    }
  }
  if (!user || /^(root|0)(:|$)/.test(user)) problems.push(`the final stage runs as ${user ?? 'root (no USER)'}`);
  else if (!/^\d+(:\d+)?$/.test(user)) problems.push(`USER ${user}: use a numeric uid so that Kubernetes' runAsNonRoot can check it`);
  return problems;
}

// ---------------------------------------------------------------------------------------------------
// Kustomize, the features these manifests use

const KUSTOMIZATION_FIELDS = new Set(['apiVersion', 'kind', 'resources', 'components', 'patches', 'images', 'labels', 'namespace']);
const CLUSTER_SCOPED = new Set([
  'Namespace',
  'ClusterRole',
  'ClusterRoleBinding',
  'CustomResourceDefinition',
  'StorageClass',
  'PersistentVolume',
]);
/** Strategic-merge keys of the lists these manifests patch (the Kubernetes API's patchMergeKey). */
const MERGE_KEYS = {
  containers: 'name',
  initContainers: 'name',
  env: 'name',
  envFrom: null,
  volumes: 'name',
  volumeMounts: 'mountPath',
  ports: 'containerPort',
  imagePullSecrets: 'name',
};

/** Reads a kustomization file of a folder, in the names kustomize accepts. */
export function readKustomization(dir, files = fsFiles) {
  for (const name of ['kustomization.yaml', 'kustomization.yml', 'Kustomization']) {
    const path = join(dir, name);
    if (files.exists(path)) {
      const [doc] = readYamlDocuments(files.read(path), path);
      return { path, doc: doc ?? {} };
    }
  }
  throw new Error(`${dir}: no kustomization.yaml`);
}

const fsFiles = {
  exists: (path) => existsSync(path),
  isDir: (path) => existsSync(path) && statSync(path).isDirectory(),
  read: (path) => readFileSync(path, 'utf8'),
};

/**
 * `kustomize build <dir>`: the objects it would print, for the fields these manifests use. `files`
 * may stand in for the file system (the tests build broken variants in memory).
 */
export function kustomizeBuild(dir, files = fsFiles, expectKind = 'Kustomization') {
  const { path, doc } = readKustomization(dir, files);
  const kind = doc.kind ?? 'Kustomization';
  if (kind !== expectKind) throw new Error(`${path}: kind ${kind}, expected ${expectKind}`);
  for (const field of Object.keys(doc)) {
    if (!KUSTOMIZATION_FIELDS.has(field)) throw new Error(`${path}: field ${field} is not supported by scripts/validate-deploy.mjs`);
  }
  let objects = [];
  for (const entry of doc.resources ?? []) {
    const target = join(dir, entry);
    if (files.isDir(target)) objects.push(...kustomizeBuild(target, files));
    else if (files.exists(target)) objects.push(...readYamlDocuments(files.read(target), target).map((o) => tag(o, target)));
    else throw new Error(`${path}: resource ${entry} does not exist`);
  }
  for (const entry of doc.components ?? []) objects = applyComponent(join(dir, entry), objects, files);
  // A component's own transformations apply where it is used (applyComponent), to everything so far.
  if (kind === 'Component') return objects;
  objects = transform(doc, dir, path, objects, files);
  checkUnique(objects, path);
  return objects;
}

/** A component: its resources join what was built so far, then its transformations apply to all of it. */
function applyComponent(dir, objects, files) {
  const { path, doc } = readKustomization(dir, files);
  if (doc.kind !== 'Component') throw new Error(`${path}: a component must be kind Component`);
  const own = kustomizeBuild(dir, files, 'Component');
  const all = [...objects, ...own];
  checkUnique(all, path);
  return transform(doc, dir, path, all, files);
}

function transform(doc, dir, path, objects, files) {
  let out = objects;
  for (const [i, patch] of (doc.patches ?? []).entries()) out = applyPatch(patch, dir, `${path} patches[${i}]`, out, files);
  for (const image of doc.images ?? []) out = out.map((o) => setImage(o, image));
  for (const label of doc.labels ?? []) out = out.map((o) => addLabels(o, label));
  if (doc.namespace)
    out = out.map((o) => (CLUSTER_SCOPED.has(o.kind) ? o : { ...o, metadata: { ...o.metadata, namespace: doc.namespace } }));
  return out;
}

function tag(object, source) {
  Object.defineProperty(object, '__source', { value: source, enumerable: false });
  return object;
}

const id = (o) => `${o.apiVersion}/${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;

function checkUnique(objects, path) {
  const seen = new Set();
  for (const o of objects) {
    if (seen.has(id(o))) throw new Error(`${path}: ${o.kind} ${o.metadata?.name} defined twice`);
    seen.add(id(o));
  }
}

function matchesTarget(object, target) {
  if (!target) return true;
  if (target.kind && target.kind !== object.kind) return false;
  if (target.name && !new RegExp(`^(?:${target.name})$`).test(object.metadata?.name ?? '')) return false;
  if (target.group !== undefined || target.version !== undefined) {
    const [group, version] = object.apiVersion.includes('/') ? object.apiVersion.split('/') : ['', object.apiVersion];
    if (target.group !== undefined && target.group !== group) return false;
    if (target.version !== undefined && target.version !== version) return false;
  }
  if (target.labelSelector) {
    for (const pair of target.labelSelector.split(',')) {
      const [key, value] = pair.split('=');
      if (object.metadata?.labels?.[key.trim()] !== value?.trim()) return false;
    }
  }
  return true;
}

function applyPatch(patch, dir, where, objects, files) {
  for (const field of Object.keys(patch)) {
    if (!['path', 'patch', 'target'].includes(field)) throw new Error(`${where}: field ${field} is not supported`);
  }
  const text = patch.path ? files.read(join(dir, patch.path)) : patch.patch;
  if (typeof text !== 'string') throw new Error(`${where}: needs path or patch`);
  const docs = readYamlDocuments(text, where);
  if (docs.length === 1 && Array.isArray(docs[0])) {
    // JSON 6902: a list of operations, on the objects the target selects.
    if (!patch.target) throw new Error(`${where}: a JSON 6902 patch needs a target`);
    const selected = objects.filter((o) => matchesTarget(o, patch.target));
    if (selected.length === 0) throw new Error(`${where}: the target selects no object`);
    return objects.map((o) => (selected.includes(o) ? tag(json6902(structuredClone(o), docs[0], where), o.__source) : o));
  }
  let out = objects;
  for (const smp of docs) {
    const selected = out.filter((o) =>
      patch.target ? matchesTarget(o, patch.target) : o.kind === smp.kind && o.metadata?.name === smp.metadata?.name,
    );
    if (selected.length === 0) throw new Error(`${where}: ${smp.kind} ${smp.metadata?.name} matches no object`);
    if (smp.$patch === 'delete') {
      out = out.filter((o) => !selected.includes(o));
      continue;
    }
    out = out.map((o) => {
      if (!selected.includes(o)) return o;
      const { metadata, ...rest } = smp;
      // With a target, the patch's own name does not rename the objects it selects.
      const body = patch.target ? { ...rest, metadata: { ...metadata, name: o.metadata.name } } : smp;
      return tag(strategicMerge(structuredClone(o), body, ''), o.__source);
    });
  }
  return out;
}

/** Strategic merge patch: maps merge, lists of objects with a merge key merge by it, other lists are replaced. */
export function strategicMerge(target, patch, field) {
  if (Array.isArray(patch)) {
    const key = MERGE_KEYS[field];
    if (!key || !Array.isArray(target) || patch.some((p) => typeof p !== 'object' || p === null)) {
      return patch.filter((p) => !(p && p.$patch === 'delete'));
    }
    const out = [...target];
    for (const item of patch) {
      const at = out.findIndex((t) => t?.[key] === item[key]);
      if (item.$patch === 'delete') {
        if (at >= 0) out.splice(at, 1);
      } else if (at >= 0) {
        out[at] = strategicMerge(out[at], item, '');
      } else {
        out.push(strategicMerge({}, item, ''));
      }
    }
    return out;
  }
  if (patch && typeof patch === 'object') {
    if (patch.$patch === 'replace') {
      const rest = { ...patch };
      delete rest.$patch;
      return rest;
    }
    const out = target && typeof target === 'object' && !Array.isArray(target) ? target : {};
    for (const [key, value] of Object.entries(patch)) {
      if (key === '$patch') continue;
      if (value === null) delete out[key];
      else out[key] = strategicMerge(out[key], value, key);
    }
    return out;
  }
  return patch;
}

function json6902(object, ops, where) {
  for (const op of ops) {
    const parts = op.path
      .split('/')
      .slice(1)
      .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    const last = parts.pop();
    let parent = object;
    for (const part of parts) {
      if (parent[part] === undefined && op.op === 'add') parent[part] = {};
      parent = parent[part];
      if (parent === undefined) throw new Error(`${where}: ${op.op} ${op.path}: no such path`);
    }
    if (op.op === 'add') {
      if (Array.isArray(parent)) parent.splice(last === '-' ? parent.length : Number(last), 0, op.value);
      else parent[last] = op.value;
    } else if (op.op === 'replace') {
      if (parent[last] === undefined) throw new Error(`${where}: replace ${op.path}: no such path`);
      parent[last] = op.value;
    } else if (op.op === 'remove') {
      if (parent[last] === undefined) throw new Error(`${where}: remove ${op.path}: no such path`);
      if (Array.isArray(parent)) parent.splice(Number(last), 1);
      else delete parent[last];
    } else {
      throw new Error(`${where}: op ${op.op} is not supported`);
    }
  }
  return object;
}

function podSpecOf(o) {
  return o.spec?.template?.spec ?? o.spec?.jobTemplate?.spec?.template?.spec;
}

function setImage(o, image) {
  const spec = podSpecOf(o);
  if (!spec) return o;
  for (const c of [...(spec.containers ?? []), ...(spec.initContainers ?? [])]) {
    const name = c.image.replace(/@.*$/, '').replace(/:[^/:]*$/, '');
    if (name !== image.name) continue;
    c.image = `${image.newName ?? name}${image.digest ? `@${image.digest}` : `:${image.newTag ?? 'latest'}`}`;
  }
  return o;
}

function addLabels(o, { pairs = {}, includeSelectors = false, includeTemplates = false }) {
  o.metadata = { ...o.metadata, labels: { ...o.metadata?.labels, ...pairs } };
  if ((includeSelectors || includeTemplates) && o.spec?.template?.metadata) {
    o.spec.template.metadata.labels = { ...o.spec.template.metadata.labels, ...pairs };
  }
  if (includeSelectors && o.spec?.selector?.matchLabels) o.spec.selector.matchLabels = { ...o.spec.selector.matchLabels, ...pairs };
  return o;
}

// ---------------------------------------------------------------------------------------------------
// Object validation

const MODELS = {
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Namespace': Namespace,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};

/** KEDA's ScaledObject (keda.sh/v1alpha1), the fields this project uses and KEDA's rules for them. */
const SCALED_OBJECT_SCHEMA = {
  type: 'object',
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: {
    apiVersion: { const: 'keda.sh/v1alpha1' },
    kind: { const: 'ScaledObject' },
    metadata: { type: 'object', required: ['name'], properties: { name: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' } } },
    spec: {
      type: 'object',
      additionalProperties: false,
      required: ['scaleTargetRef', 'triggers'],
      properties: {
        scaleTargetRef: {
          type: 'object',
          additionalProperties: false,
          required: ['name'],
          properties: {
            name: { type: 'string', minLength: 1 },
            kind: { type: 'string' },
            apiVersion: { type: 'string' },
            envSourceContainerName: { type: 'string' },
          },
        },
        pollingInterval: { type: 'integer', minimum: 1 },
        cooldownPeriod: { type: 'integer', minimum: 0 },
        initialCooldownPeriod: { type: 'integer', minimum: 0 },
        idleReplicaCount: { type: 'integer', minimum: 0 },
        minReplicaCount: { type: 'integer', minimum: 0 },
        maxReplicaCount: { type: 'integer', minimum: 1 },
        fallback: { type: 'object' },
        advanced: { type: 'object' },
        triggers: {
          type: 'array',
          minItems: 1,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['type', 'metadata'],
            properties: {
              type: { type: 'string' },
              name: { type: 'string' },
              metricType: { enum: ['AverageValue', 'Value', 'Utilization'] },
              useCachedMetrics: { type: 'boolean' },
              authenticationRef: { type: 'object', required: ['name'] },
              metadata: { type: 'object', additionalProperties: { type: 'string' } },
            },
            if: { properties: { type: { const: 'prometheus' } } },
            then: {
              properties: {
                metadata: {
                  required: ['serverAddress', 'query', 'threshold'],
                  properties: {
                    serverAddress: { type: 'string', pattern: '^https?://[^\\s]+$' },
                    query: { type: 'string', minLength: 1 },
                    threshold: { type: 'string', pattern: '^\\d+(\\.\\d+)?$' },
                    activationThreshold: { type: 'string', pattern: '^\\d+(\\.\\d+)?$' },
                  },
                },
              },
            },
          },
        },
      },
    },
  },
};
let scaledObjectValidator;

/** Schema errors of one object: kubernetes-models for Kubernetes kinds, our own schema for KEDA's. */
export function objectSchemaErrors(o) {
  const key = `${o.apiVersion}/${o.kind}`;
  if (key === 'keda.sh/v1alpha1/ScaledObject') {
    scaledObjectValidator ??= new Ajv({ allErrors: true, strict: false }).compile(SCALED_OBJECT_SCHEMA);
    return scaledObjectValidator(o) ? [] : ajvErrors(scaledObjectValidator.errors);
  }
  const Model = MODELS[key];
  if (!Model) return [`kind ${key} is not one this check knows (add it to MODELS)`];
  try {
    new Model(o).validate();
    return [];
  } catch (error) {
    const details = error.errors ? ajvErrors(error.errors) : [error.message];
    return details;
  }
}

/** Secrets the manifests refer to but that each installation creates itself (never committed). */
export const EXTERNAL_SECRETS = new Set(['lavida-secrets', 'lavida-peer-tls', 'lavida-redis']);
/** Environment variables the apps read besides libs/config's. */
const OTHER_ENV = /^(NODE_ENV|LOG_LEVEL|OTEL_[A-Z_]+|NODE_OPTIONS)$/;
const WORKERS = ['und-worker', 'gen-worker'];

/**
 * Checks of a built set of objects against each other and against the apps' configuration schema.
 * `config` is libs/config's module (loadConfig, CONFIG_KEYS); `expect.gpu` asks for the GPU overlay's
 * requests, node selector and tolerations on every worker.
 */
export function crossProblems(objects, config, expect = {}) {
  const problems = [];
  const byKind = (kind) => objects.filter((o) => o.kind === kind);
  const workloads = [...byKind('Deployment'), ...byKind('StatefulSet')];
  const configMaps = new Map(byKind('ConfigMap').map((o) => [o.metadata.name, o]));
  const secrets = new Set(byKind('Secret').map((o) => o.metadata.name));
  const selects = (selector, labels) => selector && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

  for (const w of workloads) {
    const name = `${w.kind} ${w.metadata.name}`;
    const spec = w.spec.template?.spec ?? {};
    if (!selects(w.spec.selector?.matchLabels, w.spec.template?.metadata?.labels))
      problems.push(`${name}: selector does not match its pod labels`);
    const podNonRoot = spec.securityContext?.runAsNonRoot === true;
    for (const c of spec.containers ?? []) {
      const where = `${name} container ${c.name}`;
      if (!podNonRoot && c.securityContext?.runAsNonRoot !== true) problems.push(`${where}: not runAsNonRoot`);
      if (c.securityContext?.allowPrivilegeEscalation !== false) problems.push(`${where}: allowPrivilegeEscalation is not false`);
      if (!c.resources?.requests) problems.push(`${where}: no resource requests`);
      if (!/:[^/:]+$|@sha256:/.test(c.image) || /:latest$/.test(c.image)) problems.push(`${where}: image ${c.image} has no fixed tag`);
      const ports = new Map((c.ports ?? []).map((p) => [p.name, p.containerPort]));
      const portNumbers = new Set(ports.values());
      for (const kind of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
        const probe = c[kind];
        if (!probe) continue;
        const port = probe.grpc?.port ?? probe.httpGet?.port ?? probe.tcpSocket?.port;
        if (port !== undefined && !(typeof port === 'string' ? ports.has(port) : portNumbers.has(port))) {
          problems.push(`${where}: ${kind} port ${port} is not a port of the container`);
        }
      }
      for (const ref of [
        ...(c.envFrom ?? []).map((e) => e.configMapRef?.name),
        ...(c.env ?? []).map((e) => e.valueFrom?.configMapKeyRef?.name),
      ]) {
        if (ref && !configMaps.has(ref)) problems.push(`${where}: ConfigMap ${ref} is not in the build`);
      }
      for (const ref of [
        ...(c.envFrom ?? []).map((e) => e.secretRef?.name),
        ...(c.env ?? []).map((e) => e.valueFrom?.secretKeyRef?.name),
      ]) {
        if (ref && !secrets.has(ref) && !EXTERNAL_SECRETS.has(ref))
          problems.push(`${where}: Secret ${ref} is neither in the build nor a documented external one`);
      }
      for (const mount of c.volumeMounts ?? []) {
        if (
          !(spec.volumes ?? []).some((v) => v.name === mount.name) &&
          !(w.spec.volumeClaimTemplates ?? []).some((v) => v.metadata?.name === mount.name)
        ) {
          problems.push(`${where}: volume ${mount.name} is not defined`);
        }
      }
      for (const v of spec.volumes ?? []) {
        if (v.secret && !secrets.has(v.secret.secretName) && !EXTERNAL_SECRETS.has(v.secret.secretName)) {
          problems.push(`${name}: volume ${v.name}: Secret ${v.secret.secretName} is neither in the build nor a documented external one`);
        }
      }
      if (w.metadata.labels?.['app.kubernetes.io/name'] === 'lavida-serve')
        problems.push(...appContainerProblems(w, c, configMaps, config, expect));
    }
  }

  for (const s of byKind('Service')) {
    const target = workloads.find((w) => selects(s.spec.selector, w.spec.template?.metadata?.labels));
    if (!target) {
      problems.push(`Service ${s.metadata.name}: selects no workload`);
      continue;
    }
    const names = new Set((target.spec.template.spec.containers ?? []).flatMap((c) => (c.ports ?? []).map((p) => p.name)));
    for (const p of s.spec.ports ?? []) {
      if (typeof p.targetPort === 'string' && !names.has(p.targetPort))
        problems.push(`Service ${s.metadata.name}: targetPort ${p.targetPort} is not a port of ${target.metadata.name}`);
    }
  }
  for (const pdb of byKind('PodDisruptionBudget')) {
    if (!workloads.some((w) => selects(pdb.spec.selector?.matchLabels, w.spec.template?.metadata?.labels))) {
      problems.push(`PodDisruptionBudget ${pdb.metadata.name}: selects no workload`);
    }
  }
  for (const so of byKind('ScaledObject')) {
    const kind = so.spec.scaleTargetRef?.kind ?? 'Deployment';
    if (!objects.some((o) => o.kind === kind && o.metadata.name === so.spec.scaleTargetRef?.name)) {
      problems.push(`ScaledObject ${so.metadata.name}: target ${kind} ${so.spec.scaleTargetRef?.name} is not in the build`);
    }
    if ((so.spec.minReplicaCount ?? 0) > (so.spec.maxReplicaCount ?? 100))
      problems.push(`ScaledObject ${so.metadata.name}: minReplicaCount above maxReplicaCount`);
    for (const t of so.spec.triggers ?? []) {
      if (t.type === 'prometheus' && !/lavida_queue_depth\{queue="[a-z]+"\}/.test(t.metadata?.query ?? '')) {
        problems.push(`ScaledObject ${so.metadata.name}: the prometheus query does not read lavida_queue_depth{queue="…"}`);
      }
    }
  }
  for (const worker of WORKERS) {
    const deployment = byKind('Deployment').find((d) => d.metadata.name === worker);
    if (!deployment) {
      problems.push(`Deployment ${worker} missing`);
      continue;
    }
    if (!byKind('PodDisruptionBudget').some((p) => selects(p.spec.selector?.matchLabels, deployment.spec.template.metadata.labels))) {
      problems.push(`Deployment ${worker}: no PodDisruptionBudget`);
    }
    if (!byKind('ScaledObject').some((s) => s.spec.scaleTargetRef?.name === worker)) problems.push(`Deployment ${worker}: no ScaledObject`);
  }
  problems.push(...peerLinkProblems(objects, configMaps));
  return problems;
}

/** The apps' containers: their environment validates with libs/config, and workers and api are probed and drained as designed. */
function appContainerProblems(w, c, configMaps, config, expect) {
  const problems = [];
  const where = `${w.kind} ${w.metadata.name} container ${c.name}`;
  const spec = w.spec.template.spec;
  const env = containerEnv(c, configMaps);
  if (config) {
    const known = new Set(config.CONFIG_KEYS);
    for (const name of Object.keys(env)) {
      if (!known.has(name) && !OTHER_ENV.test(name)) problems.push(`${where}: ${name} is not a variable the apps read (libs/config)`);
    }
    // The values as the apps validate them at start-up (TLS files are read later, from the mounted Secret).
    try {
      config.loadConfig(env);
    } catch (error) {
      problems.push(`${where}: ${error.message}`);
    }
  }
  const component = w.metadata.labels?.['app.kubernetes.io/component'];
  if (WORKERS.includes(component)) {
    for (const kind of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
      if (!c[kind]?.grpc) problems.push(`${where}: ${kind} is not a native gRPC probe`);
      else if (String(c[kind].grpc.port) !== String(env.GRPC_HEALTH_PORT))
        problems.push(`${where}: ${kind} probes port ${c[kind].grpc.port}, GRPC_HEALTH_PORT is ${env.GRPC_HEALTH_PORT}`);
    }
    if (c.livenessProbe?.grpc && c.livenessProbe.grpc.service !== 'liveness')
      problems.push(`${where}: liveness must probe the liveness service (SERVING while draining)`);
    if (c.readinessProbe?.grpc?.service) problems.push(`${where}: readiness must probe service '' (NOT_SERVING while draining)`);
    const drainMs = Number(env.DRAIN_TIMEOUT_MS ?? 25_000);
    const grace = spec.terminationGracePeriodSeconds ?? 30;
    if (grace * 1000 < drainMs + 10_000)
      problems.push(`${where}: terminationGracePeriodSeconds ${grace} leaves under 10 s after DRAIN_TIMEOUT_MS ${drainMs}`);
    const gpu = c.resources?.limits?.['nvidia.com/gpu'];
    if (expect.gpu) {
      if (!gpu) problems.push(`${where}: no nvidia.com/gpu limit`);
      if (env.ORT_EXECUTION_PROVIDER !== 'cuda') problems.push(`${where}: ORT_EXECUTION_PROVIDER is not cuda`);
      if (!spec.nodeSelector || Object.keys(spec.nodeSelector).length === 0) problems.push(`${where}: no nodeSelector for GPU nodes`);
      if (!(spec.tolerations ?? []).some((t) => t.key === 'nvidia.com/gpu')) problems.push(`${where}: no toleration of nvidia.com/gpu`);
    } else if (gpu) {
      problems.push(`${where}: asks for a GPU outside the GPU overlay`);
    }
    if (expect.tls) {
      for (const key of ['GRPC_TLS_CA', 'GRPC_TLS_CERT', 'GRPC_TLS_KEY']) {
        const path = env[key];
        if (!path) problems.push(`${where}: ${key} not set`);
        else if (!(c.volumeMounts ?? []).some((m) => path.startsWith(`${m.mountPath.replace(/\/$/, '')}/`)))
          problems.push(`${where}: ${key}=${path} is on no mounted volume`);
      }
    }
  }
  if (component === 'api') {
    if (!c.readinessProbe?.httpGet || !c.livenessProbe?.httpGet)
      problems.push(`${where}: the api needs HTTP liveness and readiness probes`);
  }
  return problems;
}

/** A container's environment as the app sees it: its ConfigMaps, then its own env (stand-ins for Secrets and the downward API). */
function containerEnv(c, configMaps) {
  const env = {};
  for (const from of c.envFrom ?? []) {
    if (from.configMapRef) Object.assign(env, configMaps.get(from.configMapRef.name)?.data ?? {});
  }
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom?.configMapKeyRef)
      env[e.name] = configMaps.get(e.valueFrom.configMapKeyRef.name)?.data?.[e.valueFrom.configMapKeyRef.key];
    else env[e.name] = placeholder(e.name);
  }
  return env;
}

/**
 * The joint-attention peer links, both ways: the worker that drives a session names the other's
 * peer Service in a `*_PEERS` variable, and that worker serves on the port the variable names.
 */
export const PEER_LINKS = [
  { client: 'gen-worker', variable: 'UND_PEERS', server: 'und-worker', portVariable: 'UND_GRPC_PORT', defaultPort: 50051 },
  { client: 'und-worker', variable: 'GEN_PEERS', server: 'gen-worker', portVariable: 'GEN_GRPC_PORT', defaultPort: 50052 },
];

/** `host:port` entries of a `*_PEERS` value (libs/config's parsing: comma-separated, trimmed). */
function peerEntries(value) {
  return String(value ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)
    .map((entry) => {
      const colon = entry.lastIndexOf(':');
      return { entry, host: entry.slice(0, colon), port: Number(entry.slice(colon + 1)) };
    });
}

/**
 * Each peer link of a build: the client's `*_PEERS` names, by every entry, a Service of the build
 * (`name`, or `name.<namespace>[.svc[.cluster.local]]`) on the entry's port, selecting the serving
 * worker's pods, whose target port is the port that worker serves; round_robin needs it headless.
 */
function peerLinkProblems(objects, configMaps) {
  const problems = [];
  const services = objects.filter((o) => o.kind === 'Service');
  const deployments = objects.filter((o) => o.kind === 'Deployment');
  const selects = (selector, labels) => selector && Object.entries(selector).every(([k, v]) => labels?.[k] === v);
  for (const link of PEER_LINKS) {
    const client = deployments.find((d) => d.metadata.name === link.client);
    const server = deployments.find((d) => d.metadata.name === link.server);
    if (!client || !server) continue;
    const clientContainer = client.spec.template.spec.containers?.[0];
    const serverContainer = server.spec.template.spec.containers?.[0];
    if (!clientContainer || !serverContainer) continue;
    const where = `Deployment ${link.client} container ${clientContainer.name}`;
    const env = containerEnv(clientContainer, configMaps);
    const entries = peerEntries(env[link.variable]);
    if (entries.length === 0) {
      problems.push(`${where}: ${link.variable} not set (its default is a loopback address, no ${link.server} pod)`);
      continue;
    }
    const servedPort = Number(containerEnv(serverContainer, configMaps)[link.portVariable] ?? link.defaultPort);
    for (const { entry, host, port } of entries) {
      const [name, namespace, ...rest] = host.split('.');
      const service = services.find((s) => s.metadata.name === name);
      const suffixOk = rest.length === 0 || ['svc', 'svc.cluster.local'].includes(rest.join('.'));
      if (!service || !suffixOk || (namespace && service.metadata.namespace && namespace !== service.metadata.namespace)) {
        problems.push(`${where}: ${link.variable} entry ${entry} names no Service of the build`);
        continue;
      }
      const at = `${where}: ${link.variable} entry ${entry}`;
      if (!selects(service.spec.selector, server.spec.template.metadata?.labels)) {
        problems.push(`${at}: Service ${name} does not select the ${link.server} pods`);
        continue;
      }
      const servicePort = (service.spec.ports ?? []).find((p) => p.port === port);
      if (!servicePort) {
        problems.push(`${at}: Service ${name} has no port ${port}`);
        continue;
      }
      const target = servicePort.targetPort ?? servicePort.port;
      const containerPort =
        typeof target === 'string' ? (serverContainer.ports ?? []).find((p) => p.name === target)?.containerPort : target;
      // A named target port that is no container port is reported with the Service's own checks.
      if (containerPort !== undefined && containerPort !== servedPort)
        problems.push(`${at}: Service ${name} forwards to port ${containerPort}, ${link.server} serves ${link.portVariable}=${servedPort}`);
      if (env.GRPC_LB_POLICY === 'round_robin' && service.spec.clusterIP !== 'None')
        problems.push(`${at}: GRPC_LB_POLICY=round_robin needs Service ${name} headless (clusterIP: None) to see every pod`);
    }
  }
  return problems;
}

/** A valid stand-in for a value the cluster provides (a Secret, the pod name). */
function placeholder(name) {
  switch (name) {
    case 'WEBHOOK_SECRET':
      return `whsec_${Buffer.alloc(32, 1).toString('base64')}`;
    case 'ADMIN_API_KEY':
      return 'placeholder-admin-key-0123456789';
    case 'REDIS_URL':
      return 'redis://redis.example:6379';
    default:
      return 'placeholder';
  }
}

// ---------------------------------------------------------------------------------------------------
// The whole check

/** Every folder under deploy/k8s with a kustomization, and what it must contain. */
export function kustomizations(root = ROOT) {
  const base = join(root, 'deploy/k8s');
  const out = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (!statSync(path).isDirectory()) continue;
      if (existsSync(join(path, 'kustomization.yaml'))) {
        const { doc } = readKustomization(path);
        if ((doc.kind ?? 'Kustomization') === 'Kustomization') out.push(path);
      }
      walk(path);
    }
  };
  walk(base);
  return out.sort();
}

/** What a build is expected to have, from its folder's name (overlays/gpu and overlays built on it have GPUs). */
export function expectationsOf(dir, files = fsFiles) {
  const expect = { gpu: false, tls: false };
  const visit = (d) => {
    if (/overlays\/gpu$/.test(d)) expect.gpu = true;
    if (/components\/peer-mtls$/.test(d)) expect.tls = true;
    const { doc } = readKustomization(d, files);
    for (const entry of [...(doc.resources ?? []), ...(doc.components ?? [])]) {
      const target = join(d, entry);
      if (files.isDir(target)) visit(target);
    }
  };
  visit(dir);
  return expect;
}

export async function loadAppConfig(root = ROOT) {
  const path = join(root, 'libs/config/dist/index.js');
  if (!existsSync(path)) throw new Error('libs/config is not built: run npm run build first');
  return import(pathToFileURL(path).href);
}

/**
 * Runs every check on the deployment files under `root` (the compose files at its top, deploy/k8s);
 * returns the problems found (empty: all valid) and what was checked.
 */
export async function validateAll(root = ROOT) {
  const problems = [];
  const checked = [];
  // The apps' configuration module of this checkout (root may be a copy of the deployment files only).
  const config = await loadAppConfig();

  const compose = {};
  for (const file of ['docker-compose.yml', 'docker-compose.gpu.yml']) {
    const path = join(root, file);
    try {
      const docs = readYamlDocuments(readFileSync(path, 'utf8'), file);
      compose[file] = docs[0];
      for (const error of composeSchemaErrors(docs[0])) problems.push(`${file}: ${error}`);
      checked.push(`${file}: compose schema`);
    } catch (error) {
      problems.push(`${file}: ${error.message}`);
    }
  }
  for (const p of composeProblems(compose['docker-compose.yml'], compose['docker-compose.gpu.yml'])) problems.push(`docker-compose: ${p}`);
  const dockerfile = join(root, 'Dockerfile');
  if (existsSync(dockerfile)) {
    const ignore = existsSync(join(root, '.dockerignore')) ? readFileSync(join(root, '.dockerignore'), 'utf8') : '';
    for (const p of dockerfileProblems(readFileSync(dockerfile, 'utf8'), ignore, (path) => existsSync(join(root, path))))
      problems.push(`Dockerfile: ${p}`);
    checked.push('Dockerfile: stages, user, build context');
  }

  for (const dir of kustomizations(root)) {
    const name = relative(root, dir);
    let objects;
    try {
      objects = kustomizeBuild(dir);
    } catch (error) {
      problems.push(`${name}: ${error.message}`);
      continue;
    }
    for (const o of objects) {
      for (const error of objectSchemaErrors(o)) problems.push(`${name}: ${o.kind} ${o.metadata?.name}: ${error}`);
    }
    for (const p of crossProblems(objects, config, expectationsOf(dir))) problems.push(`${name}: ${p}`);
    checked.push(`${name}: ${objects.length} objects (${[...new Set(objects.map((o) => o.kind))].join(', ')})`);
  }
  // Files that are no resource of any build (examples) still have to be valid objects.
  for (const file of ['deploy/k8s/base/secret.example.yaml']) {
    for (const o of readYamlDocuments(readFileSync(join(root, file), 'utf8'), file)) {
      for (const error of objectSchemaErrors(o)) problems.push(`${file}: ${error}`);
    }
    checked.push(`${file}: schema`);
  }
  return { problems, checked };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { problems, checked } = await validateAll();
  for (const line of checked) console.log(`checked ${line}`);
  if (problems.length) {
    for (const p of problems) console.error(`  ✗ ${p}`);
    console.error(`deploy check: ${problems.length} problem(s)`);
    process.exit(1);
  }
  console.log('deploy check: compose files and every kustomization valid');
}
