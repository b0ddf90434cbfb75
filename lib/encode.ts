/**
 * The wire encoders: one pushed value in, one complete frame out.
 *
 * Pure functions with no knowledge of Express, streams or winston. Every SSE frame they return ends with a blank
 * line, and no input can make a frame carry a field it was not given (CR, LF and NUL are refused where the
 * EventSource spec would read them as a field or event boundary).
 */

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

/** Turns a pushed value that is not a string into text. */
export type Serializer = (value: unknown) => string;

/** How one wire format writes each kind of frame; a stream picks one when it opens. */
export interface WireFormat {
  /** One pushed value. */
  event(data: unknown, options: PushOptions | undefined, serialize: Serializer): string;
  /** A comment, or `''` where the format has none. */
  comment(text: string): string;
  /** What the heartbeat writes. */
  heartbeat: string;
  /** The `done` terminator. */
  done(data: string): string;
  /** The frame that sets the browser's reconnection delay, or `''` where the format has none. */
  retry(milliseconds: number): string;
}

const LINE_BREAK = /\r\n|\r|\n/;
const LINE_BREAKS = /\r\n|\r|\n/g;
const FORBIDDEN_IN_FIELD = /[\r\n\0]/;

/** `text/event-stream`, as the EventSource spec reads it. */
export const SSE: WireFormat = {
  event: encodeEvent,
  comment: (text) => `: ${checkedText(text).replace(LINE_BREAKS, '\n: ')}\n\n`,
  heartbeat: ': ping\n\n',
  done: dataLines,
  retry: (milliseconds) => `retry: ${nonNegativeInteger(milliseconds, 'retry')}\n\n`,
};

/** `application/x-ndjson`: one JSON value per line; event names, ids, retry and comments do not exist in it. */
export const NDJSON: WireFormat = {
  event: (data, _options, serialize) => encodeNdjsonLine(data, serialize),
  comment: (text) => {
    checkedText(text);
    return '';
  },
  heartbeat: '\n',
  done: (data) => `${JSON.stringify(data)}\n`,
  retry: () => '',
};

/**
 * Encodes one SSE event: `event:`, `id:`, `retry:` when given, then one `data:` line per line of the data, then the
 * blank line that ends the event. A string is sent as it is; any other value goes through `serialize`.
 *
 * @throws TypeError naming the field for `undefined` data, data `serialize` cannot encode, `options` that are not an
 * object, an `event` or `id` holding CR, LF or NUL, or a `retry` that is not a non-negative safe integer.
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
  if (serialize !== JSON.stringify && LINE_BREAK.test(text)) {
    throw new TypeError('data: the serializer returned a line break, which would split one NDJSON value into two lines');
  }
  return `${text}\n`;
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

/** Checks an `event` or `id` string: CR, LF or NUL would let it inject fields or events. */
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

/** Checks a count (milliseconds, bytes) that must be a non-negative safe integer; `name` is where it came from. */
export function nonNegativeInteger(value: unknown, name: string): number {
  if (!Number.isSafeInteger(value) || (value as number) < 0) {
    throw new TypeError(`${name}: expected a non-negative integer, got ${describe(value)}`);
  }
  return value as number;
}

/** A short, safe description of a bad value for an error message. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  if (typeof value === 'number' || typeof value === 'boolean') return `${typeof value} ${String(value)}`;
  if (typeof value === 'bigint') return `bigint ${value}n`;
  return typeof value;
}
