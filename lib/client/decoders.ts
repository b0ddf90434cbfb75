/**
 * The two decoders of `readEvents()`: SSE (through `eventsource-parser`, as the EventSource spec reads it) and
 * NDJSON (one JSON value per line), each fed decoded text and putting complete events in a `Sink`.
 */
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { shorten, NdjsonParseError } from './errors.js';
import type { ServerEvent } from './types.js';

/** What a decoder needs of `readEvents()`'s options. */
export interface DecodeOptions<T> {
  done: string | undefined;
  parse: ((data: string) => T) | undefined;
}

/** State that carries over reconnections. */
export interface Progress {
  lastEventId: string | undefined;
  retry: number | undefined;
  /** Events yielded by the current connection. */
  received: number;
}


/** Where a decoder puts what it found in one chunk. */
export class Sink<T> {
  events: Array<ServerEvent<T>> = [];
  /** The `done` terminator arrived: nothing after it is read. */
  finished = false;
  /** A malformed line; thrown once the events before it were yielded. */
  error: Error | undefined;

  get closed(): boolean {
    return this.finished || this.error !== undefined;
  }

  take(): Array<ServerEvent<T>> {
    const events = this.events;
    this.events = [];
    return events;
  }
}

export interface Decoder {
  feed(text: string): void;
  end(): void;
}

export function sseDecoder<T>(plan: DecodeOptions<T>, progress: Progress, sink: Sink<T>): Decoder {
  const parser = createParser({
    onRetry: (milliseconds) => {
      progress.retry = milliseconds;
    },
    onEvent: (message) => {
      if (sink.closed) return;
      // eventsource-parser reports each event's own id; the last one seen is what a reconnection resumes from.
      if (message.id !== undefined) progress.lastEventId = message.id;
      if (message.data === plan.done) sink.finished = true;
      else sink.events.push(sseEvent(message, progress.retry, plan.parse));
    },
  });
  // At the end, an event without its closing blank line is dropped, as the EventSource spec says.
  return { feed: (text) => parser.feed(text), end: ignore };
}

export function ndjsonDecoder<T>(plan: DecodeOptions<T>, sink: Sink<T>): Decoder {
  const doneLines = plan.done === undefined ? [] : [JSON.stringify(plan.done), plan.done];
  let pending = '';
  let lineNumber = 0;
  const line = (raw: string): void => {
    lineNumber += 1;
    const text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    // Empty lines are the heartbeat.
    if (sink.closed || text.trim() === '') return;
    if (doneLines.includes(text)) {
      sink.finished = true;
      return;
    }
    let value: T;
    try {
      value = plan.parse === undefined ? (JSON.parse(text) as T) : plan.parse(text);
    } catch (error) {
      sink.error = new NdjsonParseError(lineNumber, text, error);
      return;
    }
    sink.events.push(ndjsonEvent(text, value));
  };
  return {
    feed(text) {
      // Only the new text can hold the next line break: a long line split over many chunks is scanned once.
      let searchFrom = pending.length;
      pending += text;
      let start = 0;
      for (let end = pending.indexOf('\n', searchFrom); end !== -1 && !sink.closed; end = pending.indexOf('\n', searchFrom)) {
        line(pending.slice(start, end));
        start = end + 1;
        searchFrom = start;
      }
      pending = pending.slice(start);
    },
    end() {
      // The last line may lack its line break.
      if (pending !== '') line(pending);
      pending = '';
    },
  };
}

function sseEvent<T>(message: EventSourceMessage, retry: number | undefined, parse: DecodeOptions<T>['parse']): ServerEvent<T> {
  const { data } = message;
  let parsed: { value: T } | undefined;
  return {
    data,
    event: message.event,
    id: message.id,
    retry,
    json() {
      parsed ??= { value: parse === undefined ? parseJson<T>(data) : parse(data) };
      return parsed.value;
    },
  };
}

function ndjsonEvent<T>(data: string, value: T): ServerEvent<T> {
  return { data, event: undefined, id: undefined, retry: undefined, json: () => value };
}

function parseJson<T>(data: string): T {
  try {
    return JSON.parse(data) as T;
  } catch (error) {
    // The cause has JSON.parse's own words (V8 quotes the whole input there, line breaks and all).
    throw new SyntaxError(`json(): the event's data is not JSON: ${JSON.stringify(shorten(data, 80))}`, { cause: error });
  }
}

function ignore(): void {}
