/**
 * The contract of an event stream: the public `SseStream` that every `res.sse` is (a response's own stream, or a
 * resumable run's), why a stream closes and what it reports, and the narrow `FrameSink` interface through which
 * features (resumable runs, channels) write frames they encoded once to a response.
 *
 * Types and two small helpers only: it knows no class that implements them.
 */
import type { Readable } from 'node:stream';
import type { PushOptions } from './encode.js';
import type { ErrorEventInfo } from './event-shapes.js';

/**
 * Why a stream closed: the client went away, it fell more than `maxBuffer` behind (`'overflow'`), it accepted no
 * byte for `stallTimeout` ms while data waited for it (`'stalled'`; its connection is dropped), the route closed it, or
 * `closeAllStreams()` did (a server shutting down). A resumable run (`sseStream({ resume })`) also ends when
 * `abortRun()` stops it or its lease is lost (`'aborted'`), or when it outlives its `ttl` (`'expired'`).
 */
export type CloseReason = 'disconnect' | 'overflow' | 'stalled' | 'close' | 'shutdown' | 'aborted' | 'expired';

/** What `res.sse.pipe()` reads from. */
export type PipeSource<T = unknown> = AsyncIterable<T> | ReadableStream<T> | Readable;

/** Options of `res.sse.pipe()`: the push options of every event, and a mapping of each item. */
export interface PipeOptions<T = unknown> extends PushOptions {
  /**
   * Turns one item of the source into the data of its event; `undefined` skips the item. Bytes (`Uint8Array`,
   * `Buffer`) are decoded as UTF-8 text before they reach it. Default: the item itself.
   */
  map?: (item: T) => unknown;
}

/** What one stream did, reported to `sseStream({ onClose })` when it has closed. */
export interface StreamSummary {
  /** Why it closed. */
  reason: CloseReason;
  /** Milliseconds from opening to closing. */
  duration: number;
  /** Events pushed (`push()`/`send()` calls that returned true; heartbeats and comments are not events). */
  events: number;
  /** Bytes written to the response: events, comments, heartbeats and the `done` terminator, before any compression. */
  bytes: number;
}

/** The event stream of one response, available as `res.sse` behind `sseStream()`. */
export interface SseStream {
  /**
   * Queues one event. A string is sent as it is (a multi-line string becomes several `data:` lines); any other value
   * is serialised (JSON by default). Returns `false`, and sends nothing, once the stream is closed.
   *
   * @throws TypeError for `undefined` data, data that cannot be serialised, an `event` or `id` holding CR, LF or NUL,
   * or a `retry` that is not a non-negative integer. Nothing is sent and the stream stays open.
   */
  push(data: unknown, options?: PushOptions): boolean;
  /**
   * Like `push()`, then waits while more than `highWaterMark` bytes are waiting for the client. Resolves `true` when
   * the producer may go on, `false` when the stream is closed. Await it in a loop to keep memory bounded without
   * losing events: `for (const x of items) if (!(await res.sse.send(x))) break;`
   */
  send(data: unknown, options?: PushOptions): Promise<boolean>;
  /**
   * Sends every item of `source` as one event (through `send()`, so a slow client slows the source down), e.g. an
   * LLM's token stream: `await res.sse.pipe(result.toUIMessageStream())`. Takes an async iterable, a web
   * `ReadableStream` or a Node `Readable` (object mode, or bytes decoded as UTF-8 text). When the stream closes
   * first (the client left, a resumable run was aborted) the source is cancelled: `reader.cancel()`, `destroy()`
   * or `return()`, so the work behind it can stop. Resolves `true` when the source was sent whole, `false` when the
   * stream closed first. Does not close the stream.
   *
   * @throws (as a rejection) what the source or `map` threw, so Express 5 routes it to `sseErrorHandler()`; a
   * TypeError for a source that is none of the above, or an unknown option.
   */
  pipe<T>(source: PipeSource<T>, options?: PipeOptions<T>): Promise<boolean>;
  /** Sends a comment (`: text`), which clients ignore; a multi-line text becomes one comment line per line. */
  comment(text: string): void;
  /**
   * Sends what is still queued, then the `done` data if configured, then ends the response. Resolves once the
   * response has finished (or the client went away). Calling it again returns the same promise.
   */
  close(): Promise<void>;
  /**
   * Aborted when the client goes away or the stream closes, with a `DOMException` named `AbortError` as its reason.
   * Pass it to the work that feeds the stream (`fetch(url, { signal })`, `signal.throwIfAborted()`).
   */
  readonly signal: AbortSignal;
  /** `true` once the stream has closed for any reason; `push()` then returns `false`. */
  readonly closed: boolean;
  /** Why the stream closed, or `undefined` while it is open. */
  readonly closeReason: CloseReason | undefined;
  /** The request's `Last-Event-ID` header, or `undefined` when it is absent or empty. */
  readonly lastEventId: string | undefined;
  /**
   * Makes this response follow a broadcast channel (`sseChannel()`): from then on it gets every event pushed to the
   * channel, and the ones it missed when it comes back with a `Last-Event-ID` within the channel's `history`.
   * Resolves when the subscription ends: the client left, or the channel was closed (the stream then ends).
   *
   * @throws TypeError (as a rejection) for something that is not a channel, an NDJSON stream (channels send SSE
   * frames), a stream that already follows a channel, or a resumable run's stream.
   */
  subscribe(channel: Subscribable): Promise<void>;
}

/**
 * A source of events a stream can follow with `res.sse.subscribe()`: a broadcast channel made by `sseChannel()`.
 */
export interface Subscribable {
  /** The channel's name. */
  readonly name: string;
  /**
   * Makes `sink` follow this source until the client leaves or the source is closed.
   * @internal
   */
  follow(sink: FrameSink): Promise<void>;
}

/**
 * What a follower writes to: a response's stream as the feed of a resumable run or a channel sees it. Frames come
 * encoded once for every follower (their `id:` line included), so they bypass `push()`.
 * @internal
 */
export interface FrameSink {
  readonly signal: AbortSignal;
  readonly closed: boolean;
  readonly lastEventId: string | undefined;
  /**
   * Queues a complete frame. Returns `true` while the client keeps up, `false` once more than `highWaterMark`
   * characters wait for it (then await `writable()` before writing more) or the stream is closed.
   */
  writeFrame(frame: string): boolean;
  /**
   * Resolves `true` once at most `highWaterMark` characters wait for the client, `false` if the stream closed (the
   * client left, or was dropped as `'stalled'` or `'overflow'`): it never waits longer than the stall rule allows.
   */
  writable(): Promise<boolean>;
  /**
   * Tells the stream that its follower holds `chars` characters of frames it has not written to it yet (it fell
   * behind). When those and what the stream holds exceed `maxBuffer`, the stream closes as `'overflow'`, its
   * connection is dropped, and this returns `false`.
   */
  lag(chars: number): boolean;
  /** Queues the route's error event (`sseStream({ errorEvent })`) for an error of the library's own. */
  writeError(info: ErrorEventInfo): boolean;
  /** Ends the response with the stream's `done` terminator. */
  close(): Promise<void>;
  /**
   * Ends the response like `close()`, but without the `done` terminator, so the browser's `EventSource` comes back
   * (after its `retry` delay) and resumes: for a store that failed, or a channel opened again.
   */
  closeForReconnect(): Promise<void>;
}

const NOT_SENT = Promise.resolve(false);

const ABORT_MESSAGES: Record<CloseReason, string> = {
  disconnect: 'The client disconnected',
  overflow: 'The client fell more than maxBuffer behind',
  stalled: 'The client accepted no data for stallTimeout milliseconds and was dropped',
  close: 'The stream was closed',
  shutdown: 'The server is shutting down',
  aborted: 'The run was aborted',
  expired: 'The run took longer than its ttl',
};

/**
 * What every stream's `send()` does: `push()` (its `TypeError` as a rejection), then `wait()` for the event to be on
 * its way, or `false` at once when the stream is closed.
 * @internal
 */
export function sendThen(push: () => boolean, wait: () => Promise<boolean>): Promise<boolean> {
  let pushed: boolean;
  try {
    pushed = push();
  } catch (error) {
    return Promise.reject(error);
  }
  return pushed ? wait() : NOT_SENT;
}

/**
 * The reason a stream's signal aborts with: an `AbortError`, as `fetch()` and `signal.throwIfAborted()` expect.
 * @internal
 */
export function abortReason(reason: CloseReason): DOMException {
  return new DOMException(ABORT_MESSAGES[reason], 'AbortError');
}
