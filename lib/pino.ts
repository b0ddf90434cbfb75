/**
 * `sseDestination()`: a pino destination stream that sends each log line to the stream of the request that logged it.
 *
 * pino serialises a record and calls its destination's `write(line)` synchronously inside `logger.info()`, in the
 * caller's async context, so `currentStream()` there is the stream of the request that logged. (A `pino.transport()`
 * runs in a worker thread, which cannot see the request's context: this is a destination on the main thread instead.)
 *
 * Nothing here imports pino: the destination only implements `write(line)` and reads what pino's metadata protocol
 * (`Symbol.for('pino.metadata')`) sets on it before each write.
 */
import { currentStream } from './context.js';
import { shapesOf, type LogEvent, type LogEventMapper } from './event-shapes.js';
import { fieldValue, type PushOptions } from './encode.js';
import type { SseStream } from './sse-stream.js';

/** Options of `sseDestination()`. */
export interface SseDestinationOptions {
  /**
   * The least severe level sent to browsers: a level name of the logger (`'info'`, `'warn'`, a custom level's name)
   * or its number (pino's `info` is 30). Default: `'info'`, so `debug` and `trace` records stay on the server
   * unless you lower this on purpose. `pino.multistream()` filters by its entry's own level first (see `level` on
   * the destination): a lower level here needs a lower entry level too.
   */
  level?: string | number;
  /** SSE event name of the log events (browsers listen with `addEventListener(name, ...)`). Default: none, a plain message event. */
  event?: string;
}

/**
 * A pino destination (`pino(options, destination)`, or an entry of `pino.multistream([...])`). Create it with
 * `sseDestination()`.
 */
export interface SseDestination {
  /**
   * Called by pino with each serialised line. Sends it to the current request's stream, if there is one and it is
   * open, as one `{"type":"log","level":...,"message":...,...fields}` event. Never throws.
   */
  write(line: string): void;
  /** Called by `multistream.end()`; there is nothing to flush or close. */
  end(): void;
  /**
   * The `level` option when it is a number or one of pino's standard level names, else `undefined`. A bare
   * destination in `pino.multistream([...])` gets this as its entry level (a custom level name is left out: a
   * multistream without that level in its `levels` would mis-sort every entry).
   */
  readonly level: string | number | undefined;
}

/** pino's own levels, for records whose logger is not known (`write()` called without pino's metadata). */
const STANDARD_VALUES: Readonly<Record<string, number>> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };
const STANDARD_LABELS: Readonly<Record<number, string>> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
/** Set on a destination, it makes pino (and `pino.multistream()`) hand over the record's level and logger before each write. */
const METADATA = Symbol.for('pino.metadata');
/** pino's public symbol for the logger's hooks; a `streamWrite` hook may rewrite the line into anything. */
const HOOKS = Symbol.for('pino.hooks');
/** pino keeps the `messageKey` option under a private symbol, `Symbol('pino.messageKey')`; found once, by its description. */
const MESSAGE_KEY_DESCRIPTION = 'pino.messageKey';
let messageKeySymbol: symbol | undefined;

/** The keys of the event itself: the record's own members of these names are not copied. */
const RESERVED = ['type', 'level', 'message'];

/** What pino's metadata protocol writes on the destination before each `write()`; read, then cleared. */
interface Metadata {
  lastLevel?: unknown;
  lastLogger?: unknown;
  lastObj?: unknown;
  lastMsg?: unknown;
  lastTime?: unknown;
}

/** What this module reads of a pino logger; every read is guarded. */
interface PinoLike {
  levels?: { labels?: Record<number, string>; values?: Record<string, number> };
}

/**
 * A pino destination that forwards every record logged while a `sseStream()` route's work runs to that request's
 * stream, as the same event `SseTransport` sends: `{"type":"log","level":"info","message":"...", ...fields}`, with
 * pino's numeric level as its name (the logger's own names, custom levels too) and its `msg` as `message`. The event
 * is made from the line pino wrote, so `redact`, `serializers`, `formatters` and child-logger bindings are honoured
 * as they are on every other destination. Outside a request it does nothing.
 *
 * It never throws: a closed stream, a record larger than the stream's `maxBuffer`, or a line that is not a JSON
 * object drops that record only.
 *
 * @example
 * const logger = pino({ level: 'debug' }, pino.multistream([
 *   { stream: process.stdout, level: 'debug' },
 *   sseDestination(), // level 'info': what reaches the browser
 * ]));
 *
 * @throws TypeError for an `event` name holding CR, LF or NUL, or a `level` that is neither a non-empty string nor
 * a finite number.
 */
export function sseDestination(options: SseDestinationOptions = {}): SseDestination {
  if (options === null || typeof options !== 'object') throw new TypeError('options: expected an object');
  const { event, level = 'info' } = options;
  const pushOptions: PushOptions | undefined = event === undefined ? undefined : { event: fieldValue('event', event) };
  if (!((typeof level === 'string' && level !== '') || (typeof level === 'number' && Number.isFinite(level)))) {
    throw new TypeError(`level: expected a level name or number, got ${typeof level === 'string' ? 'an empty string' : String(level)}`);
  }
  const exposed = typeof level === 'number' || Object.hasOwn(STANDARD_VALUES, level) ? level : undefined;

  const destination = {
    [METADATA]: true,
    level: exposed,
    write(this: Metadata, line: string): void {
      const { lastLevel, lastLogger } = this;
      // Nothing is kept from one record to the next: the logged object or a request's child logger would otherwise
      // stay reachable until the next write.
      this.lastLogger = this.lastObj = this.lastMsg = undefined;
      try {
        const stream = currentStream();
        if (stream === undefined || stream.closed || typeof line !== 'string') return;
        const { log } = shapesOf(stream);
        if (log !== false) forward(stream, line, lastLevel, lastLogger, level, pushOptions, log);
      } catch {
        // A log call must never fail because of what it logged.
      }
    },
    end(): void {},
  };
  return destination;
}

/** Sends one line to `stream` as a log event, if its level is at least `threshold`. */
function forward(
  stream: SseStream,
  line: string,
  lastLevel: unknown,
  lastLogger: unknown,
  threshold: string | number,
  options: PushOptions | undefined,
  log: LogEventMapper | undefined,
): void {
  const logger = lastLogger !== null && typeof lastLogger === 'object' ? (lastLogger as PinoLike) : undefined;
  const levels = logger?.levels;
  const minimum = typeof threshold === 'number' ? threshold : (levels?.values?.[threshold] ?? STANDARD_VALUES[threshold]);
  if (minimum === undefined) return;
  const messageKey = logger === undefined ? 'msg' : messageKeyOf(logger);
  // A streamWrite hook may have made the line anything: it takes the path that checks the JSON first.
  const hooked = logger !== undefined && typeof (logger as Record<symbol, { streamWrite?: unknown } | undefined>)[HOOKS]?.streamWrite === 'function';
  let json: string | undefined;
  if (typeof lastLevel === 'number') {
    if (lastLevel < minimum) return;
    const label = levels?.labels?.[lastLevel] ?? STANDARD_LABELS[lastLevel];
    const name = label === undefined ? lastLevel : label;
    json = (hooked ? undefined : spliced(line, name, messageKey)) ?? rebuilt(line, name, messageKey);
  } else {
    // Without pino's metadata (write() called by other code): the level is the one in the line.
    json = rebuilt(line, undefined, messageKey, (found) => {
      const value = typeof found === 'number' ? found : (levels?.values?.[found] ?? STANDARD_VALUES[found]);
      if (value === undefined || value < minimum) return undefined;
      return typeof found === 'number' ? (levels?.labels?.[found] ?? STANDARD_LABELS[found] ?? found) : found;
    });
  }
  if (json === undefined) return;
  if (log !== undefined) {
    // The route shapes its log events (`sseStream({ logEvent })`): it gets the record as an object.
    const data = log(JSON.parse(json) as LogEvent);
    if (data !== undefined) stream.push(data, options);
    return;
  }
  const pushJson = (stream as JsonPushable).pushJson;
  // A resumable run has no pushJson(); it is always SSE, where a string is sent as it is.
  if (typeof pushJson === 'function') pushJson.call(stream, json, options);
  else stream.push(json, options);
}

/** `ResponseStream.pushJson()`: JSON text sent as it is in SSE and NDJSON alike, skipped when larger than `maxBuffer`. */
type JsonPushable = SseStream & { pushJson?: (json: string, options?: PushOptions) => boolean };

/** The logger's `messageKey` (children inherit it from their root); `'msg'`, pino's default, when it cannot be read. */
function messageKeyOf(logger: object): string {
  if (messageKeySymbol !== undefined) {
    const key = (logger as Record<symbol, unknown>)[messageKeySymbol];
    if (typeof key === 'string') return key;
  }
  for (let object: object | null = logger; object !== null && object !== Object.prototype; object = Object.getPrototypeOf(object) as object | null) {
    for (const symbol of Object.getOwnPropertySymbols(object)) {
      if (symbol.description !== MESSAGE_KEY_DESCRIPTION) continue;
      const key = (object as Record<symbol, unknown>)[symbol];
      if (typeof key !== 'string') continue;
      messageKeySymbol = symbol;
      return key;
    }
  }
  return 'msg';
}

const QUOTE = 34;
const BACKSLASH = 92;
const CLOSE_BRACE = 125;
const COMMA = 44;

/**
 * The fast path, for the line pino writes by default: `{"level":30,...fields,"msg":"text"}` and a line break. The
 * event is cut and joined from the line's own text, so every value keeps the digits pino wrote (a BigInt's too).
 * `undefined` when the line has another shape, or holds a member the event would have to drop (`type`, `level`,
 * `message`, a second message key) anywhere: the slower, exact path then takes it.
 */
function spliced(line: string, level: string | number, messageKey: string): string | undefined {
  const end = objectEnd(line);
  // The level's value: pino's number, or the name a `formatters.level` returned.
  const head = end < 0 ? null : LEVEL_HEAD.exec(line);
  if (head === null) return undefined;
  const rest = head[0].length;
  // pino writes the message last: `,"msg":"..."}`.
  const text = messageKeyText(messageKey);
  const at = line.lastIndexOf(text.member, end);
  let message = '';
  let fieldsEnd = end;
  if (at >= rest && isLastString(line, at + text.member.length, end)) {
    message = `,"message":${line.slice(at + text.member.length, end)}`;
    fieldsEnd = at;
  }
  const fields = line.slice(rest, fieldsEnd);
  // Anywhere, even nested: a rare false alarm only costs the exact path.
  if (text.reserved.test(fields)) return undefined;
  return `${eventStart(level)}${message}${fields}}`;
}

/** `{"level":30` or `{"level":"info"`, followed by `,` or `}`. */
const LEVEL_HEAD = /^\{"level":(?:-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|"[^"\\]*")(?=[,}])/;

interface KeyText {
  key: string;
  /** `,"msg":`, as pino writes the message member. */
  member: string;
  /** Finds a member named `type`, `level`, `message` or the message key. */
  reserved: RegExp;
}

/** The message key as it appears in a line; the last one asked for is kept. */
let keyText: KeyText = textOf('msg');
function messageKeyText(key: string): KeyText {
  if (keyText.key !== key) keyText = textOf(key);
  return keyText;
}

function textOf(key: string): KeyText {
  const quoted = JSON.stringify(key);
  const names = [...RESERVED, quoted.slice(1, -1)].map((name) => name.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&'));
  return { key, member: `,${quoted}:`, reserved: new RegExp(`"(?:${names.join('|')})":`) };
}

/** `{"type":"log","level":"info"`, made once per level. */
const eventStarts = new Map<string | number, string>();
function eventStart(level: string | number): string {
  let start = eventStarts.get(level);
  if (start === undefined) {
    start = `{"type":"log","level":${JSON.stringify(level)}`;
    if (eventStarts.size < 256) eventStarts.set(level, start);
  }
  return start;
}

/** Where the closing brace of a line that ends with `}` and any line break is, or -1. */
function objectEnd(line: string): number {
  let end = line.length - 1;
  while (end >= 0 && (line.charCodeAt(end) === 10 || line.charCodeAt(end) === 13)) end -= 1;
  return end >= 0 && line.charCodeAt(end) === CLOSE_BRACE ? end : -1;
}

/** True when `line[open..end)` is exactly one JSON string: a quote at `open`, the next unescaped quote right before `end`. */
function isLastString(line: string, open: number, end: number): boolean {
  if (line.charCodeAt(open) !== QUOTE || line.charCodeAt(end - 1) !== QUOTE || end - 1 <= open) return false;
  let quote = line.indexOf('"', open + 1);
  while (quote >= 0 && quote < end - 1) {
    if (!escaped(line, quote)) return false;
    quote = line.indexOf('"', quote + 1);
  }
  return quote === end - 1 && !escaped(line, quote);
}

/** True when the character at `index` follows an odd number of backslashes. */
function escaped(text: string, index: number): boolean {
  let count = 0;
  for (let at = index - 1; at >= 0 && text.charCodeAt(at) === BACKSLASH; at -= 1) count += 1;
  return count % 2 === 1;
}

/**
 * The exact path: checks that the line is one JSON object, then copies its top-level members as text, in order,
 * except `type`, `level`, `message` and the message key; the message is the last message-key member (the one
 * `JSON.parse` would keep). Without a known `level`, the level is the line's last `level` member as `accept` names
 * it, or `undefined` to send nothing. `undefined` for a line that is not a JSON object, or a level not accepted.
 */
function rebuilt(
  line: string,
  level: string | number | undefined,
  messageKey: string,
  accept?: (found: string | number) => string | number | undefined,
): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return undefined;
  let message: string | undefined;
  let found: unknown;
  let fields = '';
  forEachMember(line, (rawKey, key, value) => {
    if (key === messageKey) message = value;
    else if (key === 'level') found = JSON.parse(value);
    else if (!RESERVED.includes(key)) fields += `,${rawKey}:${value}`;
  });
  if (level === undefined) {
    if ((typeof found !== 'string' && typeof found !== 'number') || accept === undefined) return undefined;
    level = accept(found);
    if (level === undefined) return undefined;
  }
  return `${eventStart(level)}${message === undefined ? '' : `,"message":${message}`}${fields}}`;
}

const WHITESPACE = /\s/;

/** Calls `visit(rawKey, key, rawValue)` for each top-level member of `text`, a JSON object already known to parse. */
function forEachMember(text: string, visit: (rawKey: string, key: string, value: string) => void): void {
  let at = skipSpace(text, text.indexOf('{') + 1);
  while (at < text.length && text.charCodeAt(at) === QUOTE) {
    const keyEnd = stringEnd(text, at);
    const rawKey = text.slice(at, keyEnd);
    at = skipSpace(text, skipSpace(text, keyEnd) + 1); // past the colon
    const valueEnd = valueEndAt(text, at);
    visit(rawKey, JSON.parse(rawKey) as string, text.slice(at, valueEnd));
    at = skipSpace(text, valueEnd);
    if (text.charCodeAt(at) !== COMMA) return;
    at = skipSpace(text, at + 1);
  }
}

function skipSpace(text: string, at: number): number {
  while (at < text.length && WHITESPACE.test(text[at])) at += 1;
  return at;
}

/** The index just past the JSON string that opens at `open`. */
function stringEnd(text: string, open: number): number {
  let quote = text.indexOf('"', open + 1);
  while (quote >= 0 && escaped(text, quote)) quote = text.indexOf('"', quote + 1);
  return quote + 1;
}

/** The index just past the JSON value that starts at `at` (the text is known to be valid JSON). */
function valueEndAt(text: string, at: number): number {
  const first = text.charCodeAt(at);
  if (first === QUOTE) return stringEnd(text, at);
  if (first !== 123 && first !== 91) {
    // A number or a literal: up to the next delimiter.
    let end = at;
    while (end < text.length && !',}] \t\r\n'.includes(text[end])) end += 1;
    return end;
  }
  let depth = 0;
  for (let index = at; index < text.length; index += 1) {
    const code = text.charCodeAt(index);
    if (code === QUOTE) index = stringEnd(text, index) - 1;
    else if (code === 123 || code === 91) depth += 1;
    else if (code === CLOSE_BRACE || code === 93) {
      depth -= 1;
      if (depth === 0) return index + 1;
    }
  }
  return text.length;
}
