/**
 * `sseStream()`: the Express middleware that opens the event stream, negotiates its format and binds it to the
 * request's async context.
 */
import { validateHeaderName, validateHeaderValue } from 'node:http';
import type { OutgoingHttpHeaders } from 'node:http';
import type { RequestHandler } from 'express';
import { runWithStream } from './context';
import { describe, retryValue, type Serializer } from './encode';
import { ResponseStream, type SseStream, type StreamFormat, type StreamSettings } from './stream';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Response {
      /**
       * The event stream of this response. Set by `sseStream()` before the route runs; typed as always present, as
       * `req.session` is by express-session, so use it only in routes behind `sseStream()`.
       */
      sse: SseStream;
    }
  }
}

/** Options of `sseStream()`. Every one is optional; a bad value throws a `TypeError` when `sseStream()` is called. */
export interface SseStreamOptions {
  /** Browser reconnection delay in milliseconds, sent as `retry:` before any event. Default: none (browsers use ~3 s). */
  retry?: number;
  /** Milliseconds between heartbeat comments that keep proxies from closing an idle stream; `0` turns them off. Default: 15000. */
  heartbeat?: number;
  /**
   * `'sse'` (`text/event-stream`), `'ndjson'` (`application/x-ndjson`, one JSON value per line), or `'auto'`: ndjson
   * when the request's `Accept` header prefers `application/x-ndjson`, SSE otherwise. Default: `'sse'`.
   */
  format?: 'sse' | 'ndjson' | 'auto';
  /** Data sent as the last event when the stream is closed with `close()`, e.g. `'[DONE]'`. Default: none. */
  done?: string;
  /** Bytes waiting for the client above which `send()` waits for it to catch up. Default: 65536 (64 KiB). */
  highWaterMark?: number;
  /**
   * Bytes a slow or stalled client may keep waiting; past it the stream closes with `closeReason` `'overflow'` and the
   * connection is dropped. Must be at least `highWaterMark`. Default: 4194304 (4 MiB).
   */
  maxBuffer?: number;
  /** Extra response headers, set after the defaults (so they can override them). Default: none. */
  headers?: OutgoingHttpHeaders;
  /** Turns pushed values that are not strings (in NDJSON, every value) into text. Default: `JSON.stringify`. */
  serialize?: (value: unknown) => string;
}

const DEFAULTS = {
  heartbeat: 15_000,
  highWaterMark: 64 * 1024,
  maxBuffer: 4 * 1024 * 1024,
} as const;

const FORMATS = ['sse', 'ndjson', 'auto'] as const;
const KNOWN_OPTIONS = new Set(['retry', 'heartbeat', 'format', 'done', 'highWaterMark', 'maxBuffer', 'headers', 'serialize']);
/** The longest delay `setInterval` honours; a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

const CONTENT_TYPES: Record<StreamFormat, string> = {
  sse: 'text/event-stream; charset=utf-8',
  ndjson: 'application/x-ndjson; charset=utf-8',
};

type Config = Omit<StreamSettings, 'format' | 'lastEventId'> & {
  format: NonNullable<SseStreamOptions['format']>;
  headers: Array<[string, OutgoingHttpHeaders[string]]>;
};

/**
 * Express middleware that turns the response into an event stream.
 *
 * It sends status 200 and the stream's headers at once (`Content-Type`, `Cache-Control: no-cache, no-transform`,
 * `X-Accel-Buffering: no`, and `Connection: keep-alive` on HTTP/1.x), sets `res.sse`, and runs the rest of the
 * route inside the stream's async context, so `currentStream()` and `SseTransport` find this stream from any
 * await, timer or callback of the route's work. When the client goes away, `res.sse.signal` aborts.
 *
 * @throws TypeError naming the option when an option is invalid.
 */
export function sseStream(options: SseStreamOptions = {}): RequestHandler {
  const config = resolveOptions(options);
  return function sseStreamMiddleware(req, res, next) {
    const format: StreamFormat =
      config.format === 'auto'
        ? req.accepts(['text/event-stream', 'application/x-ndjson']) === 'application/x-ndjson'
          ? 'ndjson'
          : 'sse'
        : config.format;
    res.statusCode = 200;
    res.setHeader('Content-Type', CONTENT_TYPES[format]);
    // no-transform also tells compression() to leave the stream alone, so no event waits in a gzip buffer.
    res.setHeader('Cache-Control', 'no-cache, no-transform');
    res.setHeader('X-Accel-Buffering', 'no');
    if (req.httpVersionMajor < 2) res.setHeader('Connection', 'keep-alive');
    for (const [name, value] of config.headers) res.setHeader(name, value as string | number | readonly string[]);
    res.flushHeaders();

    const lastEventId = req.get('Last-Event-ID');
    const stream = new ResponseStream(res, { ...config, format, lastEventId: lastEventId || undefined });
    res.sse = stream;
    runWithStream(stream, next);
  };
}

function resolveOptions(options: SseStreamOptions): Config {
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`sseStream(options): expected an object, got ${describe(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(key)) throw new TypeError(`${key}: not an option of sseStream()`);
  }
  const { retry, format = 'sse', done, serialize = JSON.stringify as Serializer, headers = {} } = options;
  const heartbeat = milliseconds(options.heartbeat ?? DEFAULTS.heartbeat, 'heartbeat');
  const highWaterMark = byteCount(options.highWaterMark ?? DEFAULTS.highWaterMark, 'highWaterMark');
  const maxBuffer = byteCount(options.maxBuffer ?? DEFAULTS.maxBuffer, 'maxBuffer');
  if (maxBuffer < highWaterMark) {
    throw new TypeError(`maxBuffer: must be at least highWaterMark (${highWaterMark}), got ${maxBuffer}`);
  }
  if (!(FORMATS as readonly unknown[]).includes(format)) {
    throw new TypeError(`format: expected one of 'sse', 'ndjson', 'auto', got ${describe(format)}`);
  }
  if (done !== undefined && typeof done !== 'string') throw new TypeError(`done: expected a string, got ${describe(done)}`);
  if (typeof serialize !== 'function') throw new TypeError(`serialize: expected a function, got ${describe(serialize)}`);
  return {
    retry: retry === undefined ? undefined : retryValue(retry, 'retry'),
    heartbeat,
    highWaterMark,
    maxBuffer,
    format,
    done,
    serialize,
    headers: headerEntries(headers),
  };
}

function milliseconds(value: unknown, name: string): number {
  const ms = byteCount(value, name);
  if (ms > MAX_TIMER_MS) throw new TypeError(`${name}: at most ${MAX_TIMER_MS} milliseconds, got ${ms}`);
  return ms;
}

function byteCount(value: unknown, name: string): number {
  if (!Number.isSafeInteger(value) || (value as number) < 0) {
    throw new TypeError(`${name}: expected a non-negative integer, got ${describe(value)}`);
  }
  return value as number;
}

function headerEntries(headers: unknown): Config['headers'] {
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) {
    throw new TypeError(`headers: expected an object of header names to values, got ${describe(headers)}`);
  }
  return Object.entries(headers as OutgoingHttpHeaders).map(([name, value]) => {
    try {
      validateHeaderName(name);
      validateHeaderValue(name, value as string);
    } catch (error) {
      throw new TypeError(`headers: ${(error as Error).message}`, { cause: error });
    }
    return [name, value];
  });
}
