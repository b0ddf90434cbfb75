/**
 * `sseStream()`: the Express middleware that opens the event stream, negotiates its format and binds it to the
 * request's async context. It composes the core stream with the features its options ask for (`resume`).
 */
import { validateHeaderName, validateHeaderValue } from 'node:http';
import type { OutgoingHttpHeaders } from 'node:http';
import type { Request, RequestHandler } from 'express';
import { runWithStream } from './context.js';
import { NDJSON, SSE, type Serializer, type WireFormat } from './encode.js';
import type { ErrorEventMapper, EventShapes, LogEventMapper } from './event-shapes.js';
import { checkOptions, describe, MAX_TIMER_MS, nonNegativeInteger, optionalFunction, optionNames, timerDelay } from './options.js';
import type { SseStream, StreamSummary } from './sse-stream.js';
import { ResponseStream, timerPlan, type StreamSettings } from './stream.js';
import { openRun, resolveResume, serveRun, type ResumeOptions } from './resume/serve.js';

declare global {
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
  /** Browser reconnection delay in milliseconds, sent as `retry:` before any event (SSE only). Default: none (browsers use about 3 s). */
  retry?: number;
  /**
   * Milliseconds between heartbeats that keep proxies from closing an idle stream (`: ping` in SSE, an empty line in
   * NDJSON); `0` turns them off; at most 2147483647. Default: 15000.
   */
  heartbeat?: number;
  /**
   * Milliseconds a client may accept no byte while data waits for it (its socket is full) before it is dropped: its
   * connection is destroyed, the stream closes with `closeReason` `'stalled'` and its signal aborts. This holds for
   * every stream (plain, a resumable run's follower, a channel's subscriber), and after `close()` for what is still
   * to be sent. Checked on the heartbeat's tick (a fraction of it when `stallTimeout` is shorter), so a client is
   * dropped between `stallTimeout` and `stallTimeout` plus one tick after it stopped reading. A client that reads
   * slowly but steadily shows progress only when a whole write (at most 64 KiB) has reached the kernel: see
   * docs/guarantees.md for the smallest safe value. `0`: never. At most 2147483647. Default: two heartbeat periods
   * (30000 with the default heartbeat), or 30000 when `heartbeat` is 0.
   */
  stallTimeout?: number;
  /**
   * `'sse'` (`text/event-stream`), `'ndjson'` (`application/x-ndjson`, one JSON value per line), or `'auto'`: NDJSON
   * when the request's `Accept` header prefers `application/x-ndjson`, SSE otherwise (and `Vary: Accept`).
   * Default: `'sse'`.
   */
  format?: 'sse' | 'ndjson' | 'auto';
  /** Data sent as the last event when the stream is closed with `close()`, e.g. `'[DONE]'`. Default: none. */
  done?: string;
  /**
   * How much encoded text (in characters, which are bytes for ASCII) may wait for the client before `send()` waits.
   * Below the socket's own buffer (its `writableHighWaterMark`: 16 KiB up to Node 20, 64 KiB since Node 22) it acts
   * like that buffer. Default: 65536 (64 KiB).
   */
  highWaterMark?: number;
  /**
   * How much encoded text (in characters) a stream may hold for a slow or stalled client, or build up in one
   * synchronous burst of `push()` calls; past it the stream closes with `closeReason` `'overflow'` and the connection
   * is dropped. At least `highWaterMark`. Default: 4194304 (4 MiB), or `highWaterMark` when that is larger.
   */
  maxBuffer?: number;
  /** Extra response headers, set after the defaults (so they can override them). Default: none. */
  headers?: OutgoingHttpHeaders;
  /** Turns pushed values that are not strings (in NDJSON, every value) into text. Default: `JSON.stringify`. */
  serialize?: (value: unknown) => string;
  /**
   * Called once per stream when it has closed, with why, how long it lived, and the events and bytes it sent: for
   * metrics and disconnect logs. An exception it throws becomes a process warning. Default: none.
   */
  onClose?: (summary: StreamSummary, req: Request) => void;
  /**
   * Makes the route's run outlive its connection: its events are numbered and kept in a store, a client that
   * reconnects (with or without `Last-Event-ID`) follows the run instead of starting it again, and any number of
   * clients may follow one key. SSE format only. Default: none (each request runs the route).
   */
  resume?: ResumeOptions;
  /**
   * What this route's log events look like, for the client that reads it: `false` sends none (the OpenAI SDK
   * would take a log event for a chunk), or a function of the `{ type: "log", level, message, ...fields }` record
   * that returns the data to send, or `undefined` to drop the record. A function that throws drops its record.
   * Used by `SseTransport` (and `sseDestination()` for pino). Default: the record as it is.
   */
  logEvent?: false | LogEventMapper;
  /**
   * What this route's error events look like: a function of `{ message, status }` (the safe message, and the HTTP
   * status the error stands for) and the error itself, returning the data to send. Used by `sseErrorHandler()`
   * (and so for errors `pipe()` rejects with), for the error events a resumable run stores, and for the ones the
   * library writes itself (a run that expired or was lost, a store that failed). A function that throws, or returns
   * `undefined`, gets the default. Default: `{ type: "error", message }`.
   */
  errorEvent?: ErrorEventMapper;
}

const DEFAULTS = {
  heartbeat: 15_000,
  /** `stallTimeout` when heartbeats are off; otherwise two heartbeat periods. */
  stallTimeout: 30_000,
  highWaterMark: 64 * 1024,
  maxBuffer: 4 * 1024 * 1024,
} as const;

const KNOWN_OPTIONS = optionNames<SseStreamOptions>({
  retry: true,
  heartbeat: true,
  stallTimeout: true,
  format: true,
  done: true,
  highWaterMark: true,
  maxBuffer: true,
  headers: true,
  serialize: true,
  onClose: true,
  resume: true,
  logEvent: true,
  errorEvent: true,
});

/** One wire format, ready to serve: its content type and the stream settings built for it once. */
interface Served {
  contentType: string;
  settings: StreamSettings;
}

/**
 * Express middleware that turns the response into an event stream.
 *
 * It sends status 200 and the stream's headers at once (`Content-Type`, `Cache-Control: no-cache, no-transform`,
 * `X-Accel-Buffering: no`, and `Connection: keep-alive` on a persistent HTTP/1.1 connection), sets `res.sse`, and runs the rest of the
 * route inside the stream's async context, so `currentStream()` and `SseTransport` find this stream from any
 * await, timer or callback of the route's work. When the client goes away, `res.sse.signal` aborts.
 *
 * With `resume`, the run is opened in the store first and the headers go out only once it is: `mode: 'follow'`
 * without a live run answers 204; a store that is full (`StoreFullError`) sends the request to `next(err)` with
 * `Retry-After` set, so Express answers 503; a store that fails gets the client an event stream with an error event
 * and no `done`, so `EventSource` comes back.
 *
 * @throws TypeError naming the option when an option is invalid.
 */
export function sseStream(options: SseStreamOptions = {}): RequestHandler {
  const { format, headers, sse, ndjson, onClose, resume } = resolveOptions(options);
  return function sseStreamMiddleware(req, res, next) {
    let key: string | undefined;
    if (resume !== undefined) {
      try {
        key = resume.keyOf(req);
      } catch (error) {
        next(error);
        return;
      }
    }
    const served =
      format === 'sse' ||
      (format === 'auto' && req.accepts(['text/event-stream', 'application/x-ndjson']) !== 'application/x-ndjson')
        ? sse
        : ndjson;
    const lastEventId = req.get('Last-Event-ID') || undefined;
    /** Sends the stream's headers and makes `res.sse`: for a resumable request, once its run is open. */
    const open = (): ResponseStream => {
      res.statusCode = 200;
      res.setHeader('Content-Type', served.contentType);
      // no-transform also tells compression() to leave the stream alone, so no event waits in a gzip buffer.
      res.setHeader('Cache-Control', 'no-cache, no-transform');
      res.setHeader('X-Accel-Buffering', 'no');
      // HTTP/2 forbids the header; a client that asked for `Connection: close` (or an HTTP/1.0 one) gets its way.
      if (req.httpVersionMajor < 2 && res.shouldKeepAlive) res.setHeader('Connection', 'keep-alive');
      if (format === 'auto') res.setHeader('Vary', 'Accept');
      for (const [name, value] of headers) res.setHeader(name, value as string | number | readonly string[]);
      res.flushHeaders();
      const stream = new ResponseStream(res, served.settings, lastEventId);
      res.sse = stream;
      // Registered after the stream's own 'close' listener, so the summary is complete when it runs.
      if (onClose !== undefined) res.once('close', () => report(onClose, stream.summary(), req));
      return stream;
    };
    if (key === undefined) {
      runWithStream(open(), next);
      return;
    }
    const runKey = key;
    void openRun(resume!, runKey).then((opening) => {
      if (opening.kind === 'none') {
        // `resume.mode: 'follow'` and no live run: nothing to follow, and EventSource stops at a 204.
        res.statusCode = 204;
        res.end();
        return;
      }
      if (opening.kind === 'full') {
        // Refused before any stream header, with Retry-After: a 503 invites no retry storm, as an event stream would.
        if (!res.headersSent) res.setHeader('Retry-After', String(opening.error.retryAfter));
        next(opening.error);
        return;
      }
      return serveRun(resume!, runKey, opening, open(), lastEventId, (run) => {
        res.sse = run;
        runWithStream(run, next);
      });
    });
  };
}

function resolveOptions(options: SseStreamOptions) {
  checkOptions(options, 'sseStream(options)', KNOWN_OPTIONS, '', 'sseStream()');
  const { retry, format = 'sse', done, serialize = JSON.stringify as Serializer, headers = {}, onClose } = options;
  if (!(['sse', 'ndjson', 'auto'] as unknown[]).includes(format)) {
    throw new TypeError(`format: expected one of 'sse', 'ndjson', 'auto', got ${describe(format)}`);
  }
  const heartbeat = timerDelay(options.heartbeat ?? DEFAULTS.heartbeat, 'heartbeat');
  const stallTimeout = timerDelay(
    options.stallTimeout ?? (heartbeat === 0 ? DEFAULTS.stallTimeout : Math.min(2 * heartbeat, MAX_TIMER_MS)),
    'stallTimeout',
  );
  const highWaterMark = nonNegativeInteger(options.highWaterMark ?? DEFAULTS.highWaterMark, 'highWaterMark');
  const maxBuffer = nonNegativeInteger(options.maxBuffer ?? Math.max(DEFAULTS.maxBuffer, highWaterMark), 'maxBuffer');
  if (maxBuffer < highWaterMark) {
    throw new TypeError(`maxBuffer: must be at least highWaterMark (${highWaterMark}), got ${maxBuffer}`);
  }
  if (retry !== undefined) nonNegativeInteger(retry, 'retry');
  if (done !== undefined && typeof done !== 'string') throw new TypeError(`done: expected a string, got ${describe(done)}`);
  if (typeof serialize !== 'function') throw new TypeError(`serialize: expected a function, got ${describe(serialize)}`);
  optionalFunction(onClose, 'onClose');
  const shapes = eventShapes(options);
  const resume = options.resume === undefined ? undefined : resolveResume(options.resume, serialize, shapes);
  if (resume !== undefined && format !== 'sse') {
    throw new TypeError(`resume: needs format 'sse' (NDJSON has no event ids to resume from), got format ${describe(format)}`);
  }

  const served = (wire: WireFormat, contentType: string): Served => ({
    contentType,
    settings: {
      wire,
      serialize,
      shapes,
      timer: timerPlan(heartbeat, stallTimeout),
      highWaterMark,
      maxBuffer,
      opening: retry === undefined ? '' : wire.retry(retry),
      closing: done === undefined ? '' : wire.done(done),
    },
  });
  return {
    format,
    onClose,
    resume,
    headers: headerEntries(headers),
    sse: served(SSE, 'text/event-stream; charset=utf-8'),
    ndjson: served(NDJSON, 'application/x-ndjson; charset=utf-8'),
  };
}

function eventShapes({ logEvent, errorEvent }: SseStreamOptions): EventShapes {
  if (logEvent !== undefined && logEvent !== false && typeof logEvent !== 'function') {
    throw new TypeError(`logEvent: expected false or a function of the log record, got ${describe(logEvent)}`);
  }
  optionalFunction(errorEvent, 'errorEvent');
  return { log: logEvent, error: errorEvent };
}

function report(onClose: NonNullable<SseStreamOptions['onClose']>, summary: StreamSummary, req: Request): void {
  try {
    onClose(summary, req);
  } catch (error) {
    // A metrics hook must not take the server down from inside a socket's 'close' event.
    process.emitWarning(`sseStream({ onClose }) threw: ${(error as Error)?.message ?? String(error)}`, 'SseOnCloseWarning');
  }
}

function headerEntries(headers: unknown): Array<[string, OutgoingHttpHeaders[string]]> {
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
