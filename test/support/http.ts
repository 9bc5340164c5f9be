import { waitFor } from './wait.js';

export interface JobView {
  id: string;
  status: string;
  error: string | null;
  output: {
    image: string;
    tokens: number[];
    model: string;
    attempts?: { round: number; image: string; verdict?: string }[];
    accepted?: boolean;
    plan?: { label: string; bins: number[]; box?: number[] }[];
    text?: string;
    boxes?: number[][];
    /** respond: `image` or `text`. */
    modality?: string;
  } | null;
  progress: { stage?: string; step?: number; steps?: number } | null;
  timeline: {
    stage: string;
    round?: number;
    status: string;
    attempts: number;
    logs: string[];
    error: string | null;
    started_at: string | null;
    completed_at: string | null;
    progress?: unknown;
    peer?: string;
    image?: string;
    verdict?: string;
    plan?: unknown[];
    text?: string;
    boxes?: number[][];
  }[];
  input?: Record<string, unknown>;
  urls: { get: string };
}

export async function postJob(
  apiUrl: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(`${apiUrl}/v1/jobs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

export async function getJob(apiUrl: string, id: string): Promise<JobView> {
  const response = await fetch(`${apiUrl}/v1/jobs/${id}`);
  if (response.status !== 200) throw new Error(`GET job ${id}: ${response.status}`);
  return (await response.json()) as JobView;
}

/** Polls a job until it reaches a final state. */
export function waitForJob(apiUrl: string, id: string, timeoutMs = 30_000): Promise<JobView> {
  return waitFor(
    async () => {
      const job = await getJob(apiUrl, id);
      return ['succeeded', 'failed', 'canceled'].includes(job.status) ? job : undefined;
    },
    timeoutMs,
    `job ${id} to finish`,
    100,
  );
}
