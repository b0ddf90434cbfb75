/**
 * The wire encoders: one pushed value in, one complete frame out.
 *
 * Pure functions with no knowledge of Express, streams or winston, and the one place where frames are built: events,
 * comments, heartbeats, `retry:` hints, the `done` terminator, the `id:` line of stored events and the
 * `{ type: "error" | "missed" }` events the library writes itself. Every SSE event they return ends with exactly one
 * blank line, and nothing else does: comments, heartbeats and `retry:` hints are lines of their own with no blank line
 * after them, because several widely used clients (`@microsoft/fetch-event-source`, `extended-eventsource`, Python's
 * `httpx-sse`) dispatch a message on every blank line, even one with no `data:` before it; a spec parser reads the
 * same events either way. No input can make a frame carry a field it was not given (CR, LF and NUL are refused where
 * the EventSource spec would read them as a field or event boundary).
 */
import type { ErrorEventInfo } from './event-shapes.js';
import { describe, nonNegativeInteger } from './options.js';

/** Options of a single event; NDJSON streams ignore them. */
export interface PushOptions {
  /**
   * Event name, sent as the `event:` field; browsers listen with `addEventListener(name, ...)`. Must not contain CR,
   * LF or NUL. Default: none (a `message` event).
   */
  event?: string;
  /**
   * Event id, sent as the `id:` field; the browser sends the last one back as `Last-Event-ID` when it reconnects.
   * A string without CR, LF or NUL, or a finite number. Default: none.
   */
  id?: string | number;
  /** Reconnection delay for the browser in milliseconds (a non-negative integer), sent as `retry:`. Default: none. */
  retry?: number;
}

/**
 * Turns a pushed value that is not a string into text.
 * @internal
 */
export type Serializer = (value: unknown) => string;

/**
 * How one wire format writes each kind of frame; a stream picks one when it opens.
 * @internal
 */
export interface WireFormat {
  /** One pushed value. */
  event(data: unknown, options: PushOptions | undefined, serialize: Serializer): string;
  /** One event whose data is JSON text already (a log line pino wrote), sent as that JSON in either format. */
  json(text: string, options: PushOptions | undefined): string;
  /** A comment (lines only, never a blank line: see the module comment), or `''` where the format has none. */
  comment(text: string): string;
  /** What the heartbeat writes. */
  heartbeat: string;
  /** The `done` terminator. */
  done(data: string): string;
  /**
   * The line that sets the browser's reconnection delay (with no blank line: it takes effect on its own, and joins
   * the next event as one of its fields), or `''` where the format has none.
   */
  retry(milliseconds: number): string;
}

const LINE_BREAK = /\r\n|\r|\n/;
const LINE_BREAKS = /\r\n|\r|\n/g;
const FORBIDDEN_IN_FIELD = /[\r\n\0]/;
const UNICODE_LINE_BREAK = /[\u2028\u2029\u0085]/;
const UNICODE_LINE_BREAKS = /[\u2028\u2029\u0085]/g;
const UNICODE_ESCAPES: Record<string, string> = { '\u2028': '\\u2028', '\u2029': '\\u2029', '\u0085': '\\u0085' };

/**
 * `text/event-stream`, as the EventSource spec reads it.
 * @internal
 */
export const SSE: WireFormat = {
  event: encodeEvent,
  json: (text, options) => encodeEvent(text, options, JSON.stringify),
  comment: (text) => `: ${checkedText(text).replace(LINE_BREAKS, '\n: ')}\n`,
  heartbeat: ': ping\n',
  done: dataLines,
  retry: (milliseconds) => `retry: ${nonNegativeInteger(milliseconds, 'retry')}\n`,
};

/**
 * `application/x-ndjson`: one JSON value per line; event names, ids, retry and comments do not exist in it.
 * @internal
 */
export const NDJSON: WireFormat = {
  event: (data, _options, serialize) => encodeNdjsonLine(data, serialize),
  comment: (text) => {
    checkedText(text);
    return '';
  },
  json: (text) => `${ndjsonSafe(text)}\n`,
  heartbeat: '\n',
  done: (data) => `${ndjsonSafe(JSON.stringify(data))}\n`,
  retry: () => '',
};

/**
 * Encodes one SSE event: `event:`, `id:`, `retry:` when given, then one `data:` line per line of the data, then the
 * blank line that ends the event. A string is sent as it is; any other value goes through `serialize`.
 *
 * @throws TypeError naming the field for `undefined` data, data `serialize` cannot encode, `options` that are not an
 * object, an `event` or `id` holding CR, LF or NUL, or a `retry` that is not a non-negative safe integer.
 * @internal
 */
export function encodeEvent(data: unknown, options: PushOptions | undefined, serialize: Serializer): string {
  let frame = '';
  if (options !== undefined) {
    if (options === null || typeof options !== 'object') throw new TypeError(`options: expected an object, got ${describe(options)}`);
    if (options.event !== undefined) frame += `event: ${fieldValue('event', options.event)}\n`;
    if (options.id !== undefined) frame += `id: ${idValue(options.id)}\n`;
    if (options.retry !== undefined) frame += `retry: ${nonNegativeInteger(options.retry, 'retry')}\n`;
  }
  if (typeof data === 'string') return frame + dataLines(data);
  const text = serialized(data, serialize);
  // JSON.stringify without indentation escapes every line break, so its output needs no scan.
  return serialize === JSON.stringify ? `${frame}data: ${text}\n\n` : frame + dataLines(text);
}

/** One `data:` line per line of `text` (split on CRLF, CR and LF), then the blank line that ends the event. */
function dataLines(text: string): string {
  return `data: ${text.replace(LINE_BREAKS, '\ndata: ')}\n\n`;
}

/**
 * Encodes one NDJSON line: the serialised value and `\n`. Strings are serialised too, so every line parses as JSON.
 *
 * @throws TypeError for `undefined` data, data `serialize` cannot encode, or a serialisation holding a line break.
 */
function encodeNdjsonLine(data: unknown, serialize: Serializer): string {
  const text = serialized(data, serialize);
  if (serialize === JSON.stringify) return `${ndjsonSafe(text)}\n`;
  if (LINE_BREAK.test(text)) {
    throw new TypeError('data: the serializer returned a line break, which would split one NDJSON value into two lines');
  }
  return `${text}\n`;
}

/**
 * JSON.stringify leaves U+2028, U+2029 and U+0085 as they are, and line readers that follow Unicode (Python's
 * `str.splitlines()`, which `httpx`'s `iter_lines()` uses) end a line at each: one NDJSON value would arrive as two
 * broken lines. JSON.stringify's output holds them only inside strings, where `\u2028`, `\u2029` and `\u0085` are
 * the same value. One test, and a replace only for the text that holds one.
 */
function ndjsonSafe(json: string): string {
  return UNICODE_LINE_BREAK.test(json) ? json.replace(UNICODE_LINE_BREAKS, (char) => UNICODE_ESCAPES[char]) : json;
}

function checkedText(text: unknown): string {
  if (typeof text !== 'string') throw new TypeError(`comment: expected a string, got ${describe(text)}`);
  return text;
}

function serialized(data: unknown, serialize: Serializer): string {
  if (data === undefined) throw new TypeError('data: undefined cannot be sent; push null or a value instead');
  let text: unknown;
  try {
    text = serialize(data);
  } catch (error) {
    throw new TypeError(`data: could not be serialised (${error instanceof Error ? error.message : String(error)})`, {
      cause: error,
    });
  }
  if (typeof text !== 'string') {
    throw new TypeError(`data: could not be serialised (the serializer returned ${describe(text)} for ${describe(data)})`);
  }
  return text;
}

/**
 * Checks an `event` or `id` string: CR, LF or NUL would let it inject fields or events.
 * @internal
 */
export function fieldValue(field: 'event' | 'id', value: unknown): string {
  if (typeof value !== 'string') throw new TypeError(`${field}: expected a string, got ${describe(value)}`);
  if (FORBIDDEN_IN_FIELD.test(value)) throw new TypeError(`${field}: must not contain CR, LF or NUL`);
  return value;
}

function idValue(id: unknown): string {
  if (typeof id === 'number') {
    if (!Number.isFinite(id)) throw new TypeError(`id: expected a finite number, got ${id}`);
    return String(id);
  }
  return fieldValue('id', id);
}

/**
 * The errors the library reports to a client itself, as the route's error event (`sseStream({ errorEvent })`), by
 * why a stream stops.
 * @internal
 */
export const LIBRARY_ERRORS = {
  /** The store failed: the client should come back later. */
  unavailable: { message: 'The stream is temporarily unavailable', status: 503 },
  /** The run is over or was replaced (a channel that was opened again). */
  gone: { message: 'The stream is no longer available', status: 410 },
  /** The run outlived its `ttl`. */
  expired: { message: 'The run took longer than its time limit and was stopped', status: 504 },
  /** The run's producer vanished (its lease lapsed). */
  lost: { message: 'The run stopped unexpectedly', status: 500 },
} as const satisfies Record<string, ErrorEventInfo>;

/**
 * A plain message event `{ "type": "missed", count }`: events a follower can no longer get.
 * @internal
 */
export function missedFrame(count: number): string {
  return `data: {"type":"missed","count":${count}}\n\n`;
}

/**
 * What separates a run's id from an event's position in the `id:` of a stored event (`<runId>.<seq>`).
 * @internal
 */
export const EVENT_ID_SEPARATOR = '.';

/**
 * The `id:` value of the event at `seq` of run `runId`: what a browser sends back as `Last-Event-ID`.
 * @internal
 */
export function eventId(runId: string, seq: number): string {
  return `${runId}${EVENT_ID_SEPARATOR}${seq}`;
}

/**
 * A stored event's frame: its `id:` line, then the encoded event body (an event frame without an `id:`).
 * @internal
 */
export function storedFrame(runId: string, seq: number, body: string): string {
  return `id: ${eventId(runId, seq)}\n${body}`;
}
