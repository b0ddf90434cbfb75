/**
 * `SseTransport`: a winston transport that sends each log record to the stream of the request that logged it.
 */
import type { Writable } from 'node:stream';
import TransportStream from 'winston-transport';
import { currentStream } from './context.js';
import { fieldValue, type PushOptions } from './encode.js';
import { shapesOf, type LogEvent, type LogEventMapper } from './event-shapes.js';
import type { SseStream } from './sse-stream.js';

/** Options of `SseTransport`. */
export interface SseTransportOptions {
  /**
   * The least severe level sent to browsers. Default: the logger's level, but never below `info`, so `debug`
   * records stay on the server unless you lower this on purpose.
   */
  level?: string;
  /**
   * A winston format applied to each record before it is sent: the place to redact fields, or to drop a record
   * (return `false`). Default: none (every field of the record is sent).
   */
  format?: TransportStream.TransportStreamOptions['format'];
  /** Sends nothing while `true`. Default: `false`. */
  silent?: boolean;
  /** SSE event name of the log events (browsers listen with `addEventListener(name, ...)`). Default: none, a plain message event. */
  event?: string;
}

/** A winston record as it reaches a transport: enumerable fields plus winston's symbol-keyed internals. */
export type LogRecord = Record<string | symbol, unknown>;

/** The stream that was current when the record was logged; see `stampOnWrite`. */
const STREAM = Symbol('express-sse-context.stream');
/** winston's level before any `colorize()` format painted `info.level`. */
const RAW_LEVEL = Symbol.for('level');
const MAX_DEPTH = 64;
const stampedLoggers = new WeakSet<Writable>();

/**
 * Forwards every log record made while a `sseStream()` route's work runs to that request's stream as
 * `{ "type": "log", "level", "message", ...fields }`. Outside a request it does nothing.
 *
 * It never throws and never emits `'error'`: a record that cannot be serialised as it is (circular references,
 * BigInt, throwing getters) is sent with those values rendered safely, and a closed stream is skipped.
 *
 * @example
 * const logger = winston.createLogger({ transports: [new winston.transports.Console(), new SseTransport()] });
 */
export class SseTransport extends TransportStream {
  readonly #pushOptions: PushOptions | undefined;
  /** The stream of the record being written: a `format` may return a new object that lacks the stamp. */
  #routing: SseStream | undefined;

  /** @throws TypeError for an `event` name holding CR, LF or NUL. */
  constructor(options: SseTransportOptions = {}) {
    super(options);
    const { event } = options;
    this.#pushOptions = event === undefined ? undefined : { event: fieldValue('event', event) };
    this.on('pipe', stampOnWrite);
  }

  /**
   * Drops records logged outside any open stream before winston-transport formats and level-checks them.
   * @internal
   */
  override _write(info: LogRecord, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const stream = info[STREAM] as SseStream | undefined;
    if (stream === undefined || stream.closed || shapesOf(stream).log === false || this.#belowDefaultLevel(info)) {
      callback();
      return;
    }
    this.#routing = stream;
    try {
      super._write(info, encoding, callback);
    } catch {
      // winston-transport rethrows a failing `format` after calling back; it must not reach `logger.info()`.
    } finally {
      this.#routing = undefined;
    }
  }

  /**
   * Without a `level` of its own, the transport follows the logger's level but never goes below `info`: debug
   * records stay on the server unless the app lowers the transport's level on purpose.
   */
  #belowDefaultLevel(info: LogRecord): boolean {
    if (this.level !== undefined) return false;
    const levels = (this as { levels?: Record<string, number> }).levels;
    const ceiling = levels?.info;
    const severity = levels?.[info[RAW_LEVEL] as string];
    return ceiling !== undefined && severity !== undefined && severity > ceiling;
  }

  /**
   * Records that queued up behind a slow sibling transport take the same guarded path, one by one.
   * @internal
   */
  override _writev(chunks: Array<{ chunk: LogRecord; encoding: BufferEncoding }>, callback: (error?: Error | null) => void): void {
    for (const { chunk, encoding } of chunks) this._write(chunk, encoding, ignore);
    callback();
  }

  /** Called by winston for each record; sends it to the stream it was logged from, if that one is still open. */
  override log(info: LogRecord, next: () => void): void {
    const stream = this.#routing ?? (info[STREAM] as SseStream | undefined);
    if (stream !== undefined && !stream.closed) forward(stream, info, this.#pushOptions);
    next();
  }
}

function ignore(): void {}

/**
 * Records the current stream on each record as the user logs it. Winston pipes a logger into all its transports, so
 * when a sibling transport is slow, records reach `log()` later, from another request's async context: reading
 * `currentStream()` there would send them to the wrong client. Child loggers write through their parent's `write`.
 */
function stampOnWrite(logger: Writable): void {
  if (stampedLoggers.has(logger)) return;
  stampedLoggers.add(logger);
  const write = logger.write as (this: Writable, chunk: unknown, ...rest: unknown[]) => boolean;
  logger.write = function stampedWrite(this: Writable, chunk: unknown, ...rest: unknown[]): boolean {
    if (chunk !== null && typeof chunk === 'object') (chunk as LogRecord)[STREAM] = currentStream();
    return write.call(this, chunk, ...rest);
  } as Writable['write'];
}

/**
 * Pushes one event per record, shaped by the route's `logEvent`; a log call must never fail because of what it
 * logged, so nothing is thrown.
 */
function forward(stream: SseStream, info: LogRecord, options: PushOptions | undefined): void {
  const { log } = shapesOf(stream);
  if (log === false) return;
  let event: LogEvent | undefined;
  try {
    event = logEvent(info);
    pushShaped(stream, log, event, options);
  } catch {
    try {
      // The record itself is an ancestor too: `record.self = record` must read "[Circular]", not a copy of it.
      pushShaped(stream, log, jsonSafe(event ?? { type: 'log', message: '[Unreadable log record]' }, [info], 0) as LogEvent, options);
    } catch {
      // A custom serializer that rejects plain JSON values, or a `logEvent` that throws: the record is dropped.
    }
  }
}

function pushShaped(stream: SseStream, log: LogEventMapper | undefined, event: LogEvent, options: PushOptions | undefined): void {
  const data = log === undefined ? event : log(event);
  if (data !== undefined) stream.push(data, options);
}

/**
 * `{ type: 'log', level, message, ...fields }`, reading each field once and surviving getters that throw. Function
 * values are left out (JSON would drop them anyway), so a record's own `toJSON` cannot replace the event.
 */
function logEvent(info: LogRecord): LogEvent {
  // `message` is read even when not enumerable: `logger.error(new Error('x'))` makes the Error itself the record.
  const event: LogEvent = { type: 'log', level: info[RAW_LEVEL] ?? read(info, 'level'), message: read(info, 'message') };
  for (const key of Object.keys(info)) {
    if (key === 'type' || key === 'level' || key === 'message') continue;
    const value = read(info, key);
    if (typeof value !== 'function') setField(event, key, value);
  }
  if (event.message === undefined) delete event.message;
  return event;
}

/** `object[key] = value`, except that an own `__proto__` key (JSON.parse makes them) stays a field. */
function setField(object: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
  else object[key] = value;
}

function read(record: Record<string, unknown>, key: string): unknown {
  try {
    return record[key];
  } catch (error) {
    return thrown(error);
  }
}

/** A plain JSON value that `JSON.stringify` cannot fail on: cycles, BigInt, throwing getters and `toJSON` rendered as text. */
function jsonSafe(value: unknown, ancestors: object[], depth: number): unknown {
  if (typeof value === 'bigint') return value.toString();
  // JSON leaves functions and symbols out; kept in the copy, one returned by a `toJSON` would become its `toJSON`.
  if (typeof value === 'function' || typeof value === 'symbol') return undefined;
  if (value === null || typeof value !== 'object') return value;
  if (ancestors.includes(value)) return '[Circular]';
  if (depth >= MAX_DEPTH) return '[Too deep]';
  let source: unknown = value;
  try {
    const { toJSON } = value as { toJSON?: unknown };
    if (typeof toJSON === 'function') source = toJSON.call(value);
  } catch (error) {
    return thrown(error);
  }
  if (source !== value) return jsonSafe(source, ancestors, depth + 1);
  ancestors.push(value);
  try {
    // Array.isArray and Object.keys throw on a revoked Proxy; the marker then stands for the whole value.
    if (Array.isArray(value)) {
      return value.map((_, index) => jsonSafe(read(value as unknown as Record<string, unknown>, String(index)), ancestors, depth + 1));
    }
    const copy: Record<string, unknown> = {};
    for (const key of Object.keys(value)) setField(copy, key, jsonSafe(read(value as Record<string, unknown>, key), ancestors, depth + 1));
    return copy;
  } catch (error) {
    return thrown(error);
  } finally {
    ancestors.pop();
  }
}

function thrown(error: unknown): string {
  try {
    return `[Thrown: ${error instanceof Error ? error.message : String(error)}]`;
  } catch {
    return '[Thrown]';
  }
}
