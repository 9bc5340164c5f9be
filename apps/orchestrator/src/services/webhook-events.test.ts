import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { QueueName, type PipelineJobData, type WebhookPayload } from '@lavida/contracts';
import { completedMessage, jobUrl, stageMessage, startMessage } from './webhook-events.js';

describe('webhook events (payloads)', () => {
  const now = new Date('2026-01-02T03:04:05.000Z');
  const data = (events: PipelineJobData['webhook']): PipelineJobData => ({
    id: 'j',
    task: 'text-to-image',
    input: { task: 'text-to-image', prompt: 'a circle', seed: 1, reflect: true },
    createdAt: '',
    webhook: events,
  });
  const all = data({ url: 'https://hooks.example/x', events: ['start', 'stage', 'completed'] });
  const body = (m: { body: string } | undefined) => JSON.parse(m!.body) as WebhookPayload;
  const model = { name: 'm', version: '1' };

  it('nothing for jobs without a webhook or for events the filter leaves out', () => {
    assert.equal(startMessage(data(undefined), now), undefined);
    assert.equal(startMessage(data({ url: 'https://hooks.example/x', events: ['completed'] }), now), undefined);
    assert.deepEqual(startMessage(all, now), {
      id: 'msg_j_start',
      event: 'start',
      url: 'https://hooks.example/x',
      body: JSON.stringify({
        type: 'job.start',
        timestamp: now.toISOString(),
        data: { id: 'j', task: 'text-to-image', status: 'processing' },
      }),
    });
  });

  it('job.stage carries what the stage produced; job.completed the output or the error', () => {
    const url = jobUrl('https://lavida.example/', 'j');
    assert.equal(url, 'https://lavida.example/v1/jobs/j');
    assert.equal(jobUrl(undefined, 'j'), '/v1/jobs/j');
    const ref = { stage: 'reflect' as const, queue: QueueName.Understanding, jobId: 'j-reflect-2', round: 2 };
    const stage = stageMessage(all, ref, { task: 'reflect', text: 'correct', model: { name: 'm', version: '1' } }, url, now);
    assert.equal(stage!.id, 'msg_j_stage_reflect-2');
    assert.equal(stage!.stage, 'j-reflect-2');
    assert.deepEqual(body(stage).data.stage, { name: 'reflect', round: 2, job_id: 'j-reflect-2', verdict: 'correct' });

    const artifact = { name: 'attempt-1.png', contentType: 'image/png', bytes: 1 };
    const result = {
      task: 'text-to-image' as const,
      image: { artifact, tokens: [1, 2] },
      attempts: [{ round: 1, artifact, tokens: [1, 2], verdict: 'correct' }],
      accepted: true,
      model: { name: 'm', version: '1' },
    };
    assert.deepEqual(body(completedMessage(all, { status: 'succeeded', result }, url, now)).data, {
      id: 'j',
      task: 'text-to-image',
      status: 'succeeded',
      output: {
        image: `${url}/files/attempt-1.png`,
        tokens: [1, 2],
        attempts: [{ round: 1, image: `${url}/files/attempt-1.png`, verdict: 'correct' }],
        accepted: true,
        model: 'm@1',
      },
    });
    // respond: the stage's image answer (an artefact inside `image`) or its text; the output names the modality.
    const respond = { ...all, task: 'respond' as const, input: { task: 'respond' as const, prompt: 'a circle', seed: 1 } };
    const respondRef = { stage: 'respond' as const, queue: QueueName.Understanding, jobId: 'j-respond' };
    const drawn = { task: 'respond', modality: 'image', image: { artifact: { ...artifact, name: 'image.png' }, tokens: [3] }, model };
    assert.deepEqual(body(stageMessage(respond, respondRef, drawn, url, now)).data.stage, {
      name: 'respond',
      job_id: 'j-respond',
      image: `${url}/files/image.png`,
    });
    const said = { task: 'respond', modality: 'text', text: 'circle', model };
    assert.deepEqual(body(stageMessage(respond, respondRef, said, url, now)).data.stage, {
      name: 'respond',
      job_id: 'j-respond',
      text: 'circle',
    });
    const answered = { task: 'respond' as const, modality: 'text' as const, text: 'circle', model: { name: 'm', version: '1' } };
    assert.deepEqual(body(completedMessage(respond, { status: 'succeeded', result: answered }, url, now)).data.output, {
      text: 'circle',
      modality: 'text',
      model: 'm@1',
    });

    const canceled = completedMessage(all, { status: 'canceled', error: 'canceled by request' }, url, now);
    assert.equal(canceled!.id, 'msg_j_completed');
    assert.deepEqual(body(canceled).data, { id: 'j', task: 'text-to-image', status: 'canceled', error: 'canceled by request' });
  });
});
