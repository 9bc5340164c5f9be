import type { JobProgress, JobView, StageView } from './types.js';

/** One event of `GET /v1/jobs/{id}/events`. */
export type JobEvent =
  /** The whole job: the first event of a stream, then whenever its status changes. */
  | { event: 'status'; data: JobView }
  /** A stage was queued or changed state: its timeline entry and its index in the timeline. */
  | { event: 'stage'; data: StageView & { id: string; index: number } }
  /** The running stage's step. */
  | { event: 'progress'; data: { id: string; stage?: string; round?: number; progress: JobProgress | number } }
  /** The job is final (the whole job; `{ id, status: 'expired' }` when it expired while streaming). The stream ends. */
  | { event: 'done'; data: JobView | { id: string; status: 'expired' } }
  /** The api could not read the job; the stream ends. */
  | { event: 'error'; data: { message: string } };

/** One raw server-sent event (https://html.spec.whatwg.org/multipage/server-sent-events.html). */
export interface ServerSentEvent {
  event: string;
  data: string;
  id?: string;
  retry?: number;
}

/**
 * Parses a text/event-stream from its chunks: fields `event`, `data` (several lines joined by "\n"),
 * `id`, `retry`; comments (`: …`) are skipped; an event is dispatched at a blank line, and one with no
 * data is dropped, as the specification says. CR, LF and CRLF line ends.
 */
export async function* parseServerSentEvents(chunks: AsyncIterable<Uint8Array | string>): AsyncGenerator<ServerSentEvent> {
  const decoder = new TextDecoder();
  let buffer = '';
  let event = '';
  let data: string[] = [];
  let id: string | undefined;
  let retry: number | undefined;
  const line = (text: string): ServerSentEvent | undefined => {
    if (text === '') {
      const out =
        data.length > 0
          ? {
              event: event || 'message',
              data: data.join('\n'),
              ...(id === undefined ? {} : { id }),
              ...(retry === undefined ? {} : { retry }),
            }
          : undefined;
      event = '';
      data = [];
      return out;
    }
    if (text.startsWith(':')) return undefined;
    const colon = text.indexOf(':');
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
    else if (field === 'id' && !value.includes('\0')) id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) retry = Number(value);
    return undefined;
  };
  for await (const chunk of chunks) {
    buffer += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    for (;;) {
      const end = buffer.search(/\r\n|\r|\n/);
      // A lone CR at the end may be the first half of a CRLF: wait for the next chunk.
      if (end < 0 || (buffer[end] === '\r' && end === buffer.length - 1)) break;
      const text = buffer.slice(0, end);
      buffer = buffer.slice(end + (buffer.startsWith('\r\n', end) ? 2 : 1));
      const out = line(text);
      if (out) yield out;
    }
  }
  buffer += decoder.decode();
  // A stream that ends without a blank line drops its unfinished event (as EventSource does).
}
