/*
 * WARNING: the string values below are stored in Redis with every queued job. Never change a
 * value once released; add a new member instead.
 */

/** Queues, one per kind of worker. */
export enum QueueName {
  /** Pipelines: one job per user request, run by the orchestrator. */
  Pipeline = 'pipeline',
  /** Stages for generation-branch workers (text-to-image, editing). */
  Generation = 'generation',
  /** Stages for understanding-branch workers (planning, reflection, answers, grounding). */
  Understanding = 'understanding',
  /** Webhook deliveries, one job per event, run by the orchestrator. */
  Webhooks = 'webhooks',
}

/** Job names. */
export enum JobName {
  /** A whole user request, on QueueName.Pipeline. */
  Pipeline = 'pipeline',
  /** Text-to-image generation, on QueueName.Generation. */
  Generate = 'generate',
  /** Image editing, on QueueName.Generation. */
  Edit = 'edit',
  /** Answer a question about an image or describe it, on QueueName.Understanding. */
  Understand = 'understand',
  /** Boxes for referring expressions, on QueueName.Understanding. */
  Ground = 'ground',
  /** A layout plan for a prompt, on QueueName.Understanding. */
  Plan = 'plan',
  /** The region an edit changes, as a layout (editing with a plan), on QueueName.Understanding. */
  PlanEdit = 'plan_edit',
  /** A verdict on an image for its prompt, on QueueName.Understanding. */
  Reflect = 'reflect',
  /** Which modality answers a prompt (`[exp]` = an image), on QueueName.Understanding. */
  Respond = 'respond',
  /** Deliver one webhook event, on QueueName.Webhooks. */
  Deliver = 'deliver',
}
