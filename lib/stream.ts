/**
 * One response's event stream: push -> encode -> buffer -> socket, with backpressure, a memory bound, a heartbeat,
 * an orderly close and an AbortSignal for the work that feeds it.
 */
import type { ServerResponse } from 'node:http';
import { encodeComment, encodeEvent, encodeNdjsonLine, encodeRetry, type PushOptions, type Serializer } from './encode';

/** Why a stream closed: the client went away, it fell more than `maxBuffer` bytes behind, or the server closed it. */
export type CloseReason = 'disconnect' | 'overflow' | 'close';

/** The wire format of a stream. */
export type StreamFormat = 'sse' | 'ndjson';

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
}

/** What a stream needs to know of its configuration; resolved and validated by `sseStream()`. */
export interface StreamSettings {
  format: StreamFormat;
  heartbeat: number;
  highWaterMark: number;
  maxBuffer: number;
  retry: number | undefined;
  done: string | undefined;
  serialize: Serializer;
  lastEventId: string | undefined;
}

/** A response that `compression()` has given a `flush()`; calling it pushes buffered gzip output to the socket. */
type FlushableResponse = ServerResponse & { flush?: () => void };

const SSE_HEARTBEAT = ': ping\n\n';
const NDJSON_HEARTBEAT = '\n';
const SENT = Promise.resolve(true);
const NOT_SENT = Promise.resolve(false);

const ABORT_MESSAGES: Record<CloseReason, string> = {
  disconnect: 'The client disconnected',
  overflow: 'The client fell more than maxBuffer bytes behind',
  close: 'The stream was closed',
};

/** The `SseStream` behind `res.sse`; created by `sseStream()`, never by users. */
export class ResponseStream implements SseStream {
  readonly lastEventId: string | undefined;
  readonly #response: FlushableResponse;
  readonly #settings: StreamSettings;
  readonly #abort = new AbortController();
  readonly #flush: (() => void) | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #closeReason: CloseReason | undefined;
  #closing: Promise<void> | undefined;
  #finished: (() => void) | undefined;
  /** Frames waiting for `'drain'` because the response's own buffer is full. */
  #queue: string[] = [];
  #queuedBytes = 0;
  #blocked = false;
  /** `send()` callers waiting for the buffer to fall below `highWaterMark`. */
  #waiters: Array<(sent: boolean) => void> = [];
  /** Characters written since `send()` last gave the event loop a turn. */
  #sinceYield = 0;

  constructor(response: ServerResponse, settings: StreamSettings) {
    this.#response = response;
    this.#settings = settings;
    this.lastEventId = settings.lastEventId;
    const flush = (response as FlushableResponse).flush;
    this.#flush = typeof flush === 'function' ? flush.bind(response) : undefined;

    response.on('drain', () => this.#drain());
    response.on('close', () => this.#onResponseClose());

    if (settings.retry !== undefined && settings.format === 'sse') this.#write(encodeRetry(settings.retry));
    if (settings.heartbeat > 0) {
      const beat = settings.format === 'sse' ? SSE_HEARTBEAT : NDJSON_HEARTBEAT;
      this.#heartbeat = setInterval(() => {
        if (!this.#blocked) this.#write(beat);
      }, settings.heartbeat);
      this.#heartbeat.unref();
    }
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  get closed(): boolean {
    return this.#closeReason !== undefined;
  }

  get closeReason(): CloseReason | undefined {
    return this.#closeReason;
  }

  push(data: unknown, options?: PushOptions): boolean {
    if (this.#closeReason !== undefined) return false;
    const { format, serialize } = this.#settings;
    return this.#write(format === 'sse' ? encodeEvent(data, options, serialize) : encodeNdjsonLine(data, serialize));
  }

  send(data: unknown, options?: PushOptions): Promise<boolean> {
    let pushed: boolean;
    try {
      pushed = this.push(data, options);
    } catch (error) {
      return Promise.reject(error);
    }
    if (!pushed) return NOT_SENT;
    const { highWaterMark } = this.#settings;
    if (this.#bufferedBytes() > highWaterMark) return new Promise((resolve) => this.#waiters.push(resolve));
    // A client that keeps up never makes send() wait, so a tight `await send()` loop would run on microtasks alone
    // and starve timers and other sockets; every highWaterMark characters it yields one macrotask turn instead.
    if (this.#sinceYield > highWaterMark) {
      this.#sinceYield = 0;
      return new Promise((resolve) => setImmediate(() => resolve(this.#closeReason === undefined)));
    }
    return SENT;
  }

  comment(text: string): void {
    const frame = encodeComment(text);
    if (this.#closeReason === undefined && this.#settings.format === 'sse') this.#write(frame);
  }

  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    if (this.#closeReason !== undefined || this.#response.writableEnded) {
      this.#end('close');
      return (this.#closing = Promise.resolve());
    }
    this.#closing = new Promise((resolve) => (this.#finished = resolve));
    const { done, format } = this.#settings;
    const tail = done === undefined ? '' : format === 'sse' ? encodeEvent(done, undefined, String) : `${JSON.stringify(done)}\n`;
    const rest = this.#queue.join('') + tail;
    // Never `res.end(callback)`: compression() hands that argument to Buffer.from() and throws.
    if (rest === '') this.#response.end();
    else this.#response.end(rest);
    this.#end('close');
    return this.#closing;
  }

  /** Writes one frame with a single `res.write`, so a heartbeat can never land inside a half-written event. */
  #write(frame: string): boolean {
    if (this.#blocked) {
      this.#queue.push(frame);
      this.#queuedBytes += Buffer.byteLength(frame);
      if (this.#bufferedBytes() > this.#settings.maxBuffer) {
        this.#end('overflow');
        this.#response.destroy();
        return false;
      }
      return true;
    }
    const response = this.#response;
    if (response.writableEnded) {
      // The route ended the response itself (res.end(), res.json()); 'close' will follow.
      this.#end('close');
      return false;
    }
    this.#blocked = !response.write(frame);
    this.#flush?.();
    this.#sinceYield += frame.length;
    return true;
  }

  #drain(): void {
    if (this.#closeReason !== undefined) return;
    if (this.#queue.length > 0) {
      const chunk = this.#queue.length === 1 ? this.#queue[0] : this.#queue.join('');
      this.#queue = [];
      this.#queuedBytes = 0;
      this.#blocked = !this.#response.write(chunk);
      this.#flush?.();
    } else {
      this.#blocked = false;
    }
    if (this.#waiters.length > 0 && this.#bufferedBytes() <= this.#settings.highWaterMark) this.#settle(true);
  }

  /** Bytes written but not yet handed to the kernel: this stream's queue plus the response's and socket's buffers. */
  #bufferedBytes(): number {
    return this.#queuedBytes + this.#response.writableLength;
  }

  #onResponseClose(): void {
    this.#end(this.#response.writableFinished ? 'close' : 'disconnect');
    this.#finished?.();
  }

  /** Marks the stream closed, once: stops the heartbeat, drops the queue, releases waiters, aborts the signal. */
  #end(reason: CloseReason): void {
    if (this.#closeReason !== undefined) return;
    this.#closeReason = reason;
    clearInterval(this.#heartbeat);
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#settle(false);
    this.#abort.abort(new DOMException(ABORT_MESSAGES[reason], 'AbortError'));
  }

  #settle(sent: boolean): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const resolve of waiters) resolve(sent);
  }
}
