import { BadRequestException } from '@nestjs/common';
import { addressAllowed, literalHostKind, WEBHOOK_EVENTS, type CreateJob, type PipelineWebhook } from '@lavida/contracts';

const invalid = (field: string, message: string) =>
  new BadRequestException({ code: 'invalid_request', field, message: `${field}: ${message}` });

/**
 * The webhook of a request (`webhook`, `webhook_events_filter`; all events by default), checked
 * beyond the schema: a filter needs a URL, and a host that is a literal loopback, private,
 * link-local, unspecified or multicast address (or `localhost`) is refused unless
 * WEBHOOK_ALLOW_PRIVATE allows private and loopback ones. Names are resolved and checked again
 * before every delivery.
 */
export function webhookInput(
  body: Pick<CreateJob, 'webhook' | 'webhook_events_filter'>,
  allowPrivate: boolean,
): PipelineWebhook | undefined {
  if (body.webhook === undefined) {
    if (body.webhook_events_filter !== undefined) throw invalid('webhook_events_filter', 'needs a webhook');
    return undefined;
  }
  const host = new URL(body.webhook).hostname;
  const kind = literalHostKind(host);
  if (kind && !addressAllowed(kind, allowPrivate)) throw invalid('webhook', `host ${host} is a ${kind} address, not allowed for webhooks`);
  const filter = body.webhook_events_filter;
  return { url: body.webhook, events: WEBHOOK_EVENTS.filter((event) => !filter || filter.includes(event)) };
}
