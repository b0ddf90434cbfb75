/**
 * `express-sse-context/client`: the consumer side. Reads a `text/event-stream` or `application/x-ndjson` response as
 * an async iterator of complete events, over `fetch` (any method, headers and body, unlike `EventSource`), with
 * cancellation and optional reconnection with `Last-Event-ID`.
 *
 * This module runs in browsers as well as in Node 20+: it uses only web platform globals (`fetch`, `Response`,
 * `ReadableStream`, `TextDecoder`, `AbortController`, `setTimeout`) and `eventsource-parser`, and nothing from `node:*`.
 *
 * @module
 */
import { createParser, type EventSourceMessage } from 'eventsource-parser';

/** One complete event read from the stream. */
export interface ServerEvent<T = unknown> {
  /**
   * The event's data as text: in SSE, its `data:` lines joined with `\n`; in NDJSON, the line itself (without the
   * line break).
   */
  readonly data: string;
  /** The SSE `event:` name, or `undefined` when the server sent none (`EventSource` calls that a `message`). Always `undefined` in NDJSON. */
  readonly event: string | undefined;
  /** The SSE `id:` of this event, or `undefined` when it had none. Always `undefined` in NDJSON. */
  readonly id: string | undefined;
  /**
   * The reconnection delay in milliseconds the server last set with `retry:` on this stream (it carries over
   * reconnections), or `undefined` when it set none. Always `undefined` in NDJSON.
   */
  readonly retry: number | undefined;
  /**
   * The data parsed: with the `parse` option, `parse(data)`; otherwise `JSON.parse(data)`. Parsed on the first call and
   * cached. In NDJSON every line is parsed as it arrives (so a malformed line fails the loop, with its line number),
   * and this returns that value.
   *
   * @throws SyntaxError when the data of an SSE event is not JSON (and no `parse` option was given).
   */
  json(): T;
}

/** How `readEvents()` reconnects after a dropped connection. */
export interface ReconnectOptions {
  /**
   * Attempts in a row that may fail (a network error, a 5xx answer, a connection that dropped before delivering an
   * event) before `readEvents()` gives up with an `SseConnectionError`. A connection that delivers an event resets
   * the count. A non-negative integer. Default: 5.
   */
  retries?: number;
  /**
   * Milliseconds to wait before the first attempt after a failure, doubled for each further failure in a row. A
   * `retry:` the server sent replaces it. A non-negative integer. Default: 1000.
   */
  delay?: number;
  /** The longest wait between attempts, in milliseconds; a non-negative integer. Default: 30000. */
  maxDelay?: number;
}

/** What `readEvents()` accepts besides `fetch`'s own `RequestInit` (method, headers, body, signal, credentials, ...). */
export interface ReadEventsInit<T = unknown> extends RequestInit {
  /**
   * Data that marks the end of the stream, e.g. `'[DONE]'` (`sseStream({ done })` sends it as the last event; in
   * NDJSON as a JSON string line, `"[DONE]"`). The terminator is not yielded: the loop ends and the connection is
   * closed. When given, a stream that ends without it counts as dropped: it is reconnected when `reconnect` is on,
   * and throws an `SseConnectionError` otherwise. Default: none (the stream ends when the response ends).
   */
  done?: string;
  /** Turns an event's data into the value `json()` returns. Default: `JSON.parse`. */
  parse?: (data: string) => T;
  /**
   * Reconnect after a dropped connection, resuming with `Last-Event-ID` set to the last event id received (see
   * {@link ReconnectOptions}). `true` uses the defaults. SSE only: an NDJSON stream carries no ids to resume from,
   * so a drop after it began throws. Needs a URL as `input` and a body that can be sent again (not a
   * `ReadableStream`). Default: `false`.
   */
  reconnect?: boolean | ReconnectOptions;
  /**
   * A `Last-Event-ID` to send with the first request, to resume a stream read earlier. Must not contain CR, LF or
   * NUL. Default: none.
   */
  lastEventId?: string;
  /** The `fetch` to use (a wrapper that adds auth, a mock in tests). Default: the global `fetch`. */
  fetch?: (input: string | URL, init?: RequestInit) => Promise<Response>;
}

/** A response `readEvents()` will not read: a status other than 2xx, or a content type that is neither SSE nor NDJSON. */
export class SseResponseError extends Error {
  /** The response's HTTP status, e.g. 401. */
  readonly status: number;
  /** The response's `Content-Type` header, or `null` when it had none. */
  readonly contentType: string | null;
  /** The first bytes of the response body (up to 512), decoded as UTF-8: usually the server's error message. */
  readonly body: string;
  /** The URL of the response, or `''` when unknown. */
  readonly url: string;

  /** Made by `readEvents()`; exported for `instanceof` checks. */
  constructor(message: string, details: { status: number; contentType: string | null; body: string; url: string }) {
    super(message);
    this.name = 'SseResponseError';
    this.status = details.status;
    this.contentType = details.contentType;
    this.body = details.body;
    this.url = details.url;
  }
}

/** A line of an NDJSON stream that is not JSON (or that the `parse` option refused). */
export class NdjsonParseError extends SyntaxError {
  /** The 1-based number of the line in the response body, counting empty lines. */
  readonly lineNumber: number;
  /** The line's text (at most its first 200 characters). */
  readonly line: string;

  /** Made by `readEvents()`; exported for `instanceof` checks. */
  constructor(lineNumber: number, line: string, cause: unknown) {
    const text = line.length > 200 ? `${line.slice(0, 200)}…` : line;
    // JSON.parse's own words are in `cause`; V8 repeats the whole line in them.
    super(`NDJSON line ${lineNumber} could not be parsed: ${JSON.stringify(text)}`, { cause });
    this.name = 'NdjsonParseError';
    this.lineNumber = lineNumber;
    this.line = text;
  }
}

/**
 * The connection dropped (a network error, or the stream ended before its `done` terminator) and was not, or could
 * no longer be, reconnected. `cause` holds the underlying error.
 */
export class SseConnectionError extends Error {
  /** Connection attempts made in a row that failed, including the first one. */
  readonly attempts: number;

  /** Made by `readEvents()`; exported for `instanceof` checks. */
  constructor(message: string, attempts: number, cause: unknown) {
    super(message, { cause });
    this.name = 'SseConnectionError';
    this.attempts = attempts;
  }
}

const ACCEPT = 'text/event-stream, application/x-ndjson;q=0.9';
const BODY_PREVIEW_BYTES = 512;
/** How long an error waits for the first bytes of a body that stays open (a login page that streams, a proxy). */
const BODY_PREVIEW_MS = 500;
const DEFAULT_RECONNECT: Required<ReconnectOptions> = { retries: 5, delay: 1000, maxDelay: 30_000 };
/** The longest delay `setTimeout` honours; a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const FORBIDDEN_IN_HEADER = /[\r\n\0]/;

type Format = 'sse' | 'ndjson';

/** Everything `readEvents()` checked and resolved before the first request. */
interface Plan<T> {
  input: string | URL | Response;
  request: RequestInit;
  headers: Headers;
  signal: AbortSignal | undefined;
  done: string | undefined;
  parse: ((data: string) => T) | undefined;
  reconnect: Required<ReconnectOptions> | undefined;
  lastEventId: string | undefined;
  fetch: (input: string | URL, init?: RequestInit) => Promise<Response>;
}

/** State that carries over reconnections. */
interface Progress {
  lastEventId: string | undefined;
  retry: number | undefined;
  /** Events yielded by the current connection. */
  received: number;
}

/** How one connection ended, when it did not throw. */
type Ending = 'done' | 'ended';

/**
 * Reads a stream of events: `for await (const event of readEvents(url, init)) { ... }`.
 *
 * `input` is a URL, fetched with `init` (any method, headers and body; `Accept` defaults to SSE, then NDJSON), or a
 * `Response` already fetched. The response must be 2xx with `Content-Type: text/event-stream` (parsed with
 * `eventsource-parser`, as the EventSource spec reads it) or `application/x-ndjson` (one JSON value per line); a
 * `204 No Content` is an empty stream. Text is decoded as UTF-8 across chunk boundaries.
 *
 * Leaving the loop (`break`, `return`, an exception) or aborting `init.signal` closes the connection, so the server's
 * `res.sse.signal` aborts. Aborting makes the loop throw the signal's reason.
 *
 * The request is sent when the loop starts, not when `readEvents()` is called; the options are checked at the call.
 *
 * @throws TypeError naming the option, at the call, for an invalid `input` or option.
 * @throws SseResponseError (from the loop) for a non-2xx status or a wrong content type.
 * @throws NdjsonParseError (from the loop) for an NDJSON line that is not JSON.
 * @throws SseConnectionError (from the loop) when the connection dropped and was not, or could no longer be, reconnected.
 */
export function readEvents<T = unknown>(
  input: string | URL | Response,
  init: ReadEventsInit<T> = {},
): AsyncGenerator<ServerEvent<T>, void, undefined> {
  return run(plan(input, init));
}

function plan<T>(input: string | URL | Response, init: ReadEventsInit<T>): Plan<T> {
  const isResponse = isResponseLike(input);
  if (!isResponse && typeof input !== 'string' && !(input instanceof URL)) {
    throw new TypeError(`input: expected a URL (a string or URL) or a Response, got ${describe(input)}`);
  }
  if (isResponse && input.bodyUsed) throw new TypeError('input: the body of this Response was already read');
  if (init === null || typeof init !== 'object') throw new TypeError(`init: expected an object, got ${describe(init)}`);
  const { done, parse, reconnect, lastEventId, fetch: fetchOption, headers, signal, ...request } = init;
  if (done !== undefined && typeof done !== 'string') throw new TypeError(`done: expected a string, got ${describe(done)}`);
  if (parse !== undefined && typeof parse !== 'function') throw new TypeError(`parse: expected a function, got ${describe(parse)}`);
  if (fetchOption !== undefined && typeof fetchOption !== 'function') {
    throw new TypeError(`fetch: expected a function, got ${describe(fetchOption)}`);
  }
  if (lastEventId !== undefined && (typeof lastEventId !== 'string' || FORBIDDEN_IN_HEADER.test(lastEventId))) {
    throw new TypeError(`lastEventId: expected a string without CR, LF or NUL, got ${describe(lastEventId)}`);
  }
  if (signal != null && !(typeof signal === 'object' && typeof signal.addEventListener === 'function')) {
    throw new TypeError(`signal: expected an AbortSignal, got ${describe(signal)}`);
  }
  const retrying = reconnectOptions(reconnect);
  if (retrying !== undefined && isResponse) {
    throw new TypeError('reconnect: needs a URL to reconnect to; a Response cannot be fetched again');
  }
  if (retrying !== undefined && isReadableStream(request.body)) {
    throw new TypeError('reconnect: a ReadableStream body cannot be sent again; pass a string, Blob, FormData or buffer');
  }
  let headerList: Headers;
  try {
    headerList = new Headers(headers);
  } catch (error) {
    throw new TypeError(`headers: ${errorMessage(error)}`, { cause: error });
  }
  if (!headerList.has('accept')) headerList.set('accept', ACCEPT);
  return {
    input,
    request,
    headers: headerList,
    signal: signal ?? undefined,
    done,
    parse,
    reconnect: retrying,
    lastEventId: lastEventId === '' ? undefined : lastEventId,
    // Called through globalThis at request time: a detached `fetch` throws "Illegal invocation" in browsers, and a
    // test may replace the global after this module loaded.
    fetch: fetchOption ?? ((url, options) => globalThis.fetch(url, options)),
  };
}

function reconnectOptions(value: unknown): Required<ReconnectOptions> | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return DEFAULT_RECONNECT;
  if (value === null || typeof value !== 'object') {
    throw new TypeError(`reconnect: expected a boolean or { retries, delay, maxDelay }, got ${describe(value)}`);
  }
  for (const key of Object.keys(value)) {
    if (!(key in DEFAULT_RECONNECT)) throw new TypeError(`reconnect.${key}: not an option of reconnect`);
  }
  const options = value as ReconnectOptions;
  const resolved: Required<ReconnectOptions> = {
    retries: count(options.retries ?? DEFAULT_RECONNECT.retries, 'reconnect.retries'),
    delay: count(options.delay ?? DEFAULT_RECONNECT.delay, 'reconnect.delay'),
    maxDelay: count(options.maxDelay ?? DEFAULT_RECONNECT.maxDelay, 'reconnect.maxDelay'),
  };
  if (resolved.maxDelay > MAX_TIMER_MS) throw new TypeError(`reconnect.maxDelay: at most ${MAX_TIMER_MS} milliseconds, got ${resolved.maxDelay}`);
  return resolved;
}

function count(value: unknown, name: string): number {
  if (!Number.isSafeInteger(value) || (value as number) < 0) {
    throw new TypeError(`${name}: expected a non-negative integer, got ${describe(value)}`);
  }
  return value as number;
}

async function* run<T>(plan: Plan<T>): AsyncGenerator<ServerEvent<T>, void, undefined> {
  const progress: Progress = { lastEventId: plan.lastEventId, retry: undefined, received: 0 };
  let failures = 0;
  for (;;) {
    plan.signal?.throwIfAborted();
    /** Why this connection failed, when a new one might fix it. */
    let dropped: unknown;
    let format: Format | undefined;
    progress.received = 0;
    const connection = new AbortController();
    const unlink = link(plan.signal, connection);
    try {
      const response = await open(plan, progress, connection.signal);
      // No Content: the server has nothing (more) to send; EventSource also stops here.
      if (response.status === 204) return;
      format = await accept(response);
      const ending = yield* read(response, format, plan, progress, connection.signal);
      if (ending === 'done' || plan.done === undefined) return;
      dropped = new Error(`the stream ended before its done terminator ${JSON.stringify(plan.done)}`);
    } catch (error) {
      if (plan.signal?.aborted) throw plan.signal.reason;
      if (error instanceof NdjsonParseError) throw error;
      if (error instanceof SseResponseError && !(plan.reconnect !== undefined && error.status >= 500)) throw error;
      dropped = error;
    } finally {
      // Closes the connection however the loop left it: `break` in the consumer, an error, or the end of the stream.
      connection.abort();
      unlink();
    }
    failures = progress.received > 0 ? 1 : failures + 1;
    if (plan.reconnect === undefined) {
      throw new SseConnectionError(`the connection failed (${errorMessage(dropped)})`, failures, dropped);
    }
    if (format === 'ndjson') {
      throw new SseConnectionError(
        `the connection failed (${errorMessage(dropped)}); an NDJSON stream has no event ids to resume from, so it is not reconnected`,
        failures,
        dropped,
      );
    }
    if (failures > plan.reconnect.retries) {
      throw new SseConnectionError(
        `gave up after ${failures} failed connection attempts in a row (last: ${errorMessage(dropped)})`,
        failures,
        dropped,
      );
    }
    const base = progress.retry ?? plan.reconnect.delay;
    await sleep(Math.min(plan.reconnect.maxDelay, base * 2 ** (failures - 1)), plan.signal);
  }
}

/** Sends the request (or takes the given Response). */
function open<T>(plan: Plan<T>, progress: Progress, signal: AbortSignal): Promise<Response> {
  if (isResponseLike(plan.input)) return Promise.resolve(plan.input);
  const headers = new Headers(plan.headers);
  if (progress.lastEventId !== undefined && progress.lastEventId !== '') headers.set('last-event-id', progress.lastEventId);
  return plan.fetch(plan.input, { ...plan.request, headers, signal });
}

/** The wire format of a 2xx response with a content type this module reads. */
async function accept(response: Response): Promise<Format> {
  const contentType = response.headers.get('content-type');
  if (!response.ok) {
    const body = await preview(response);
    throw new SseResponseError(
      `${response.url || 'the server'} answered ${response.status}${response.statusText ? ` ${response.statusText}` : ''}` +
        (body === '' ? '' : `: ${shorten(body, 120)}`),
      { status: response.status, contentType, body, url: response.url },
    );
  }
  const type = (contentType ?? '').split(';')[0].trim().toLowerCase();
  if (type === 'text/event-stream') return 'sse';
  if (type === 'application/x-ndjson' || type === 'application/ndjson') return 'ndjson';
  const body = await preview(response);
  throw new SseResponseError(
    `expected text/event-stream or application/x-ndjson from ${response.url || 'the server'}, got ` +
      `${contentType === null ? 'no Content-Type' : JSON.stringify(contentType)}` +
      (body === '' ? '' : `: ${shorten(body, 120)}`),
    { status: response.status, contentType, body, url: response.url },
  );
}

/** The first bytes of a body, for an error message, as many as arrive within `BODY_PREVIEW_MS`; never throws. */
async function preview(response: Response): Promise<string> {
  const reader = response.body?.getReader();
  if (reader === undefined) return '';
  const chunks: Uint8Array[] = [];
  let length = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeUp = new Promise<undefined>((resolve) => (timer = setTimeout(resolve, BODY_PREVIEW_MS, undefined)));
  try {
    while (length < BODY_PREVIEW_BYTES) {
      const result = await Promise.race([reader.read(), timeUp]);
      if (result === undefined || result.done) break;
      chunks.push(result.value);
      length += result.value.byteLength;
    }
  } catch {
    // A body that fails midway still has its first bytes to show.
  } finally {
    clearTimeout(timer);
    reader.cancel().catch(ignore);
  }
  const bytes = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  // `stream: true` leaves out a character cut in half at the limit rather than showing U+FFFD for it.
  return new TextDecoder().decode(bytes.subarray(0, BODY_PREVIEW_BYTES), { stream: true });
}

/** Reads one response to its end (or its `done` terminator), yielding each complete event. */
async function* read<T>(
  response: Response,
  format: Format,
  plan: Plan<T>,
  progress: Progress,
  signal: AbortSignal,
): AsyncGenerator<ServerEvent<T>, Ending, undefined> {
  const body = response.body;
  if (body === null) return 'ended';
  const reader = body.getReader();
  // A given Response is not tied to the connection's controller; cancelling its reader is how it stops.
  const cancel = (): void => void reader.cancel(signal.reason).catch(ignore);
  signal.addEventListener('abort', cancel, { once: true });
  const decoder = new TextDecoder();
  const sink = new Sink<T>();
  const decode = format === 'sse' ? sseDecoder(plan, progress, sink) : ndjsonDecoder(plan, sink);
  try {
    for (;;) {
      const chunk = await reader.read();
      signal.throwIfAborted();
      // `stream: true` keeps a multi-byte character split across chunks until its last byte arrives.
      const text = chunk.done ? decoder.decode() : decoder.decode(chunk.value, { stream: true });
      if (text !== '') decode.feed(text);
      if (chunk.done) decode.end();
      for (const event of sink.take()) {
        progress.received += 1;
        yield event;
      }
      if (sink.error !== undefined) throw sink.error;
      if (sink.finished) return 'done';
      if (chunk.done) return 'ended';
    }
  } finally {
    signal.removeEventListener('abort', cancel);
    reader.cancel().catch(ignore);
  }
}

/** Where a decoder puts what it found in one chunk. */
class Sink<T> {
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

interface Decoder {
  feed(text: string): void;
  end(): void;
}

function sseDecoder<T>(plan: Plan<T>, progress: Progress, sink: Sink<T>): Decoder {
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

function ndjsonDecoder<T>(plan: Plan<T>, sink: Sink<T>): Decoder {
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

function sseEvent<T>(message: EventSourceMessage, retry: number | undefined, parse: Plan<T>['parse']): ServerEvent<T> {
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

/** Aborts `controller` when `signal` aborts; returns the function that undoes the link. */
function link(signal: AbortSignal | undefined, controller: AbortController): () => void {
  if (signal === undefined) return ignore;
  if (signal.aborted) {
    controller.abort(signal.reason);
    return ignore;
  }
  const abort = (): void => controller.abort(signal.reason);
  signal.addEventListener('abort', abort, { once: true });
  return () => signal.removeEventListener('abort', abort);
}

/** Waits `milliseconds`, or rejects with the signal's reason as soon as it aborts. */
function sleep(milliseconds: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, milliseconds);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function isResponseLike(value: unknown): value is Response {
  if (value === null || typeof value !== 'object') return false;
  const candidate = value as Partial<Response>;
  return typeof candidate.status === 'number' && typeof candidate.headers?.get === 'function' && 'body' in candidate;
}

function isReadableStream(body: unknown): boolean {
  if (body === null || typeof body !== 'object') return false;
  return typeof (body as { getReader?: unknown }).getReader === 'function' || Symbol.asyncIterator in body;
}

function ignore(): void {}

function shorten(text: string, length: number): string {
  return text.length > length ? `${text.slice(0, length)}…` : text;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A short, safe description of a bad value for an error message. */
function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return `the string ${JSON.stringify(shorten(value, 40))}`;
  if (typeof value === 'number' || typeof value === 'boolean') return `${typeof value} ${String(value)}`;
  if (typeof value === 'bigint') return `bigint ${value}n`;
  return typeof value;
}
