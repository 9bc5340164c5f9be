import { canceledKey, type Config } from '@lavida/config';
import type { Job } from 'bullmq';

/** ioredis command name of STEP_READ_LUA on the orchestrator's connection. */
export const STEP_READ_COMMAND = 'lavidaStepRead';

/**
 * What a pipeline step reads, in one request: whether the pipeline was canceled by request
 * (KEYS[1], its cancel mark) and its finished stages' results (KEYS[2], the pipeline's `processed`
 * hash, where BullMQ keeps each child's return value, as Job.getChildrenValues reads it). On Redis
 * Cluster the hash tag of QUEUE_PREFIX puts both keys in one slot.
 */
export const STEP_READ_LUA = `return {redis.call('EXISTS', KEYS[1]), redis.call('HGETALL', KEYS[2])}`;

/** The script as a method of the connection it was defined on. */
export type StepReadCommand = Record<typeof STEP_READ_COMMAND, (canceled: string, processed: string) => Promise<unknown>>;

export interface StepRead {
  canceled: boolean;
  /** Finished stages' return values by stage job id. */
  results: Map<string, unknown>;
}

/** The script's keys for a pipeline job. */
export function stepReadKeys(config: Pick<Config, 'QUEUE_PREFIX'>, job: Job<{ id: string }>): { canceled: string; processed: string } {
  // The job's keys are `<prefix>:<queue>:<job id>:<suffix>` (BullMQ's QueueKeys.toKey).
  return { canceled: canceledKey(config, job.data.id), processed: `${job.queueQualifiedName}:${job.id}:processed` };
}

/** The script's reply: [0 or 1, [field, value, …]] with fields `<prefix>:<queue>:<stage job id>` and JSON values. */
export function parseStepRead(reply: unknown): StepRead {
  if (!Array.isArray(reply) || reply.length !== 2 || !Array.isArray(reply[1]))
    throw new Error(`step read: unexpected reply ${JSON.stringify(reply)}`);
  const [exists, fields] = reply as [number, string[]];
  const results = new Map<string, unknown>();
  for (let i = 0; i + 1 < fields.length; i += 2) results.set(fields[i].slice(fields[i].lastIndexOf(':') + 1), JSON.parse(fields[i + 1]));
  return { canceled: exists === 1, results };
}
