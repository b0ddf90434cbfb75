/**
 * `ResponseStream`, the `res.sse` of one response: push -> encode -> buffer -> socket, with backpressure, a memory
 * bound, a heartbeat, an orderly close and an AbortSignal for the work that feeds it.
 *
 * It knows the response and the wire format, nothing of resumable runs or channels: those write to it through its
 * `FrameSink` side, and a channel attaches itself through `subscribe()`.
 */
import type { ServerResponse } from 'node:http';
import { NDJSON, type PushOptions, type Serializer, type WireFormat } from './encode.js';
import { errorEventData, EVENT_SHAPES, type ErrorEventInfo, type EventShapes, type ShapedStream } from './event-shapes.js';
import { pipe } from './pipe.js';
import {
  abortReason,
  sendThen,
  type CloseReason,
  type FrameSink,
  type PipeOptions,
  type PipeSource,
  type SseStream,
  type StreamSummary,
  type Subscribable,
} from './sse-stream.js';
import { outsideRequests } from './context.js';
import { openStreams } from './shutdown.js';

/**
 * What a stream needs to know of its configuration; resolved and validated once by `sseStream()`.
 * @internal
 */
export interface StreamSettings {
  wire: WireFormat;
  serialize: Serializer;
  /** What the route's log and error events look like. */
  shapes: EventShapes;
  /** The stream's one timer: heartbeats and the stall check (see `timerPlan()`). */
  timer: TimerPlan;
  highWaterMark: number;
  maxBuffer: number;
  /** Written when the stream opens (the `retry:` line, which the first event then follows), or `''`. */
  opening: string;
  /** Written by `close()` after everything pending (the `done` frame), or `''`. */
  closing: string;
}

/**
 * What the one timer of a stream does: it ticks every `tick` ms, writes a heartbeat every `beatEvery` ticks (0 =
 * never), and drops the client once `stallTicks` whole ticks in a row have passed with data waiting for it and no
 * byte of it accepted (0 = never). With no heartbeat the timer starts only once data first waits for the client.
 * @internal
 */
export interface TimerPlan {
  tick: number;
  beatEvery: number;
  stallTicks: number;
}

/**
 * The timer of a stream with `heartbeat` and `stallTimeout` (ms, 0 = off). It ticks at the heartbeat, or at a
 * fraction of it no longer than `stallTimeout` (or at `stallTimeout` when heartbeats are off). A client is dropped
 * after `ceil(stallTimeout / tick)` whole ticks without progress: never before `stallTimeout` ms without a byte
 * accepted, and at most one tick later.
 * @internal
 */
export function timerPlan(heartbeat: number, stallTimeout: number): TimerPlan {
  if (heartbeat === 0) return { tick: stallTimeout, beatEvery: 0, stallTicks: stallTimeout === 0 ? 0 : 1 };
  const beatEvery = stallTimeout === 0 || stallTimeout >= heartbeat ? 1 : Math.ceil(heartbeat / stallTimeout);
  const tick = Math.max(1, Math.floor(heartbeat / beatEvery));
  return { tick, beatEvery, stallTicks: stallTimeout === 0 ? 0 : Math.ceil(stallTimeout / tick) };
}

/**
 * The most text one `res.write` hands the socket. A write's bytes count as accepted only once all of them are in
 * the kernel, so a slow client's progress shows in pieces no larger than this, and the stall rule never takes a
 * steady reader for a stalled one because of one large write (a burst of `push()` can queue `maxBuffer`).
 */
const MAX_WRITE = 64 * 1024;

/** A response that `compression()` has given a `flush()`; calling it pushes buffered gzip output to the socket. */
type FlushableResponse = ServerResponse & { flush?: () => void };

const SENT = Promise.resolve(true);
const NOT_SENT = Promise.resolve(false);

/**
 * The `SseStream` behind `res.sse`; created by `sseStream()`, never by users.
 *
 * Frames pushed in one tick are joined and handed to `res.write` once, on `process.nextTick`: a lone event leaves
 * at once, a burst leaves as one chunk. Buffered text is counted in characters (UTF-16 code units, as Node counts
 * string chunks): bytes for ASCII, fewer than the bytes for other text.
 * @internal
 */
export class ResponseStream implements SseStream, FrameSink, ShapedStream {
  readonly lastEventId: string | undefined;
  readonly #response: FlushableResponse;
  readonly #settings: StreamSettings;
  readonly #flush: (() => void) | undefined;
  #abort: AbortController | undefined;
  /** The heartbeat and stall check while the stream is open; after `close()`, the stall check alone. */
  #timer: NodeJS.Timeout | undefined;
  /** Ticks since the last heartbeat. */
  #beats = 0;
  /** Whole ticks in a row in which data waited for the client and it accepted none. */
  #stalledTicks = 0;
  /** Characters the client had accepted at the last tick, and whether data waited for it then. */
  #acceptedAtTick = 0;
  #waitedAtTick = false;
  /** Characters handed to the response: with its `writableLength`, what the client has accepted so far. */
  #written = 0;
  #closeReason: CloseReason | undefined;
  #closing: Promise<void> | undefined;
  #finished: (() => void) | undefined;
  readonly #openedAt = performance.now();
  #duration = 0;
  #events = 0;
  #bytes = 0;
  /** Frames not yet handed to `res.write`: this tick's, or all since the response's buffer filled. */
  #pending = '';
  #writeScheduled = false;
  /** The last `res.write` returned false; the next one waits for `'drain'`. */
  #blocked = false;
  /** `send()` callers waiting for the buffer to fall below `highWaterMark`. */
  #waiters: Array<(sent: boolean) => void> = [];
  #subscribed = false;

  constructor(response: ServerResponse, settings: StreamSettings, lastEventId: string | undefined) {
    this.#response = response;
    this.#settings = settings;
    this.lastEventId = lastEventId;
    const flush = (response as FlushableResponse).flush;
    this.#flush = typeof flush === 'function' ? flush.bind(response) : undefined;

    response.on('drain', () => this.#drain());
    response.on('close', () => this.#onResponseClose());
    // A route that ends the response itself (res.end(), res.json()) must not lose what it pushed: pending text goes
    // first, even past a full buffer (it is bounded by maxBuffer).
    const end = response.end as (this: ServerResponse, ...args: unknown[]) => ServerResponse;
    const writeAll = (): void => this.#write(true);
    response.end = function endAfterPending(this: ServerResponse, ...args: unknown[]): ServerResponse {
      writeAll();
      return end.apply(this, args);
    } as ServerResponse['end'];

    if (settings.opening !== '') this.#enqueue(settings.opening);
    if (settings.timer.beatEvery > 0) this.#startTimer();
    openStreams.add(this);
    // The client may have gone while earlier middleware awaited (auth, a body parser): 'close' will not come again.
    if (response.destroyed) this.#end('disconnect');
  }

  get signal(): AbortSignal {
    // Made on first use: most of an idle stream's memory would otherwise be an AbortController nobody reads.
    this.#abort ??= new AbortController();
    if (this.#closeReason !== undefined && !this.#abort.signal.aborted) this.#abort.abort(abortReason(this.#closeReason));
    return this.#abort.signal;
  }

  get [EVENT_SHAPES](): EventShapes {
    return this.#settings.shapes;
  }

  get closed(): boolean {
    return this.#closeReason !== undefined;
  }

  get closeReason(): CloseReason | undefined {
    return this.#closeReason;
  }

  push(data: unknown, options?: PushOptions): boolean {
    if (this.#closeReason !== undefined) return false;
    const { wire, serialize } = this.#settings;
    if (!this.#enqueue(wire.event(data, options, serialize))) return false;
    this.#events += 1;
    return true;
  }

  send(data: unknown, options?: PushOptions): Promise<boolean> {
    return sendThen(() => this.push(data, options), () => this.writable());
  }

  pipe<T>(source: PipeSource<T>, options?: PipeOptions<T>): Promise<boolean> {
    return pipe(this, source, options);
  }

  writeError(info: ErrorEventInfo): boolean {
    const { wire, serialize, shapes } = this.#settings;
    let frame: string;
    try {
      frame = wire.event(errorEventData(shapes, info, undefined), undefined, serialize);
    } catch {
      // A serializer that refuses the route's error data still lets the client learn what happened.
      frame = wire.event({ type: 'error', message: info.message }, undefined, JSON.stringify);
    }
    return this.writeFrame(frame);
  }

  /**
   * For log destinations (`sseDestination()`): queues one event whose data is JSON text already, sent as it is in
   * SSE and NDJSON alike (`serialize` is not applied). An event larger than `maxBuffer` on its own is not sent and
   * the stream stays open. Returns `false` when nothing was sent.
   */
  pushJson(json: string, options?: PushOptions): boolean {
    if (this.#closeReason !== undefined) return false;
    const frame = this.#settings.wire.json(json, options);
    if (frame.length > this.#settings.maxBuffer || !this.#enqueue(frame)) return false;
    this.#events += 1;
    return true;
  }

  writeFrame(frame: string): boolean {
    if (this.#closeReason !== undefined || !this.#enqueue(frame)) return false;
    this.#events += 1;
    return this.#bufferedBytes() <= this.#settings.highWaterMark;
  }

  lag(chars: number): boolean {
    if (this.#closeReason !== undefined) return false;
    if (this.#bufferedBytes() + chars <= this.#settings.maxBuffer) return true;
    this.#end('overflow');
    this.#response.destroy();
    return false;
  }

  writable(): Promise<boolean> {
    if (this.#closeReason !== undefined) return NOT_SENT;
    if (this.#bufferedBytes() <= this.#settings.highWaterMark) return SENT;
    // Either the client is behind (wait for 'drain'), or a producer that never waits has filled this tick's batch:
    // then it yields a macrotask turn, so the batch is written and timers and other sockets get their turn too.
    return new Promise((resolve) => {
      if (this.#blocked) this.#waiters.push(resolve);
      else setImmediate(() => this.#resumeAfterYield(resolve));
    });
  }

  comment(text: string): void {
    const frame = this.#settings.wire.comment(text);
    if (frame !== '' && this.#closeReason === undefined) this.#enqueue(frame);
  }

  close(): Promise<void> {
    return this.#finish('close', this.#settings.closing);
  }

  closeForReconnect(): Promise<void> {
    return this.#finish('close', '');
  }

  subscribe(channel: Subscribable): Promise<void> {
    if (channel === null || typeof channel !== 'object' || typeof channel.follow !== 'function') {
      return Promise.reject(new TypeError('channel: expected a channel made by sseChannel()'));
    }
    if (this.#settings.wire === NDJSON) return Promise.reject(new TypeError('subscribe: channels send SSE frames; this stream is NDJSON'));
    if (this.#subscribed) return Promise.reject(new TypeError('subscribe: this stream already follows a channel'));
    this.#subscribed = true;
    return channel.follow(this);
  }

  /**
   * For `closeAllStreams()`: sends `data` (with a `retry:` hint) instead of `done`, which would tell the client not
   * to come back, then ends the stream with reason `'shutdown'`. The hint is a line of its own: with `data` it is a
   * field of that last event, without it the stream ends on it, and either way no blank line stands alone.
   */
  shutdown(data: unknown, retry: number | undefined): Promise<void> {
    if (this.#closing !== undefined || this.#closeReason !== undefined) return this.close();
    const { wire, serialize } = this.#settings;
    let farewell = retry === undefined ? '' : wire.retry(retry);
    try {
      if (data !== undefined) farewell += wire.event(data, undefined, serialize);
    } catch {
      // A farewell this stream's serializer refuses is left out: the shutdown itself must not stop halfway.
    }
    return this.#finish('shutdown', farewell);
  }

  /** Writes what is pending and then `last`, ends the response, and closes the stream with `reason`. */
  #finish(reason: CloseReason, last: string): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    if (this.#closeReason !== undefined || this.#response.writableEnded) {
      this.#end('close');
      return (this.#closing = Promise.resolve());
    }
    this.#closing = new Promise((resolve) => (this.#finished = resolve));
    const rest = this.#pending + last;
    this.#pending = '';
    // Never `res.end(callback)`: compression() hands that argument to Buffer.from() and throws.
    this.#bytes += Buffer.byteLength(rest);
    this.#written += rest.length;
    if (rest === '') this.#response.end();
    else this.#response.end(rest);
    this.#end(reason);
    // What is left must still reach the client; one that stops reading is dropped by the stall rule, so neither
    // `close()` nor the text it holds waits forever.
    if (!this.#response.writableFinished && this.#settings.timer.stallTicks > 0) this.#startTimer();
    return this.#closing;
  }

  /** Starts the stream's one timer, outside the request's async context so that it holds nothing of the request. */
  #startTimer(): void {
    const { tick, beatEvery, stallTicks } = this.#settings.timer;
    if (this.#timer !== undefined || (beatEvery === 0 && stallTicks === 0)) return;
    this.#stalledTicks = 0;
    this.#waitedAtTick = false;
    this.#timer = outsideRequests(() => setInterval(ResponseStream.#tick, tick, this));
    this.#timer.unref();
  }

  /**
   * One tick: drops a client that has accepted no byte for `stallTicks` whole ticks while data waited for it, then
   * writes the heartbeat when one is due (not while the socket is full: it would only wait behind the rest).
   */
  static #tick(stream: ResponseStream): void {
    const { beatEvery, stallTicks } = stream.#settings.timer;
    if (stallTicks > 0 && stream.#stalledFor() >= stallTicks) {
      stream.#stopTimer();
      stream.#end('stalled');
      stream.#response.destroy();
      return;
    }
    if (beatEvery === 0 || stream.#closeReason !== undefined || ++stream.#beats < beatEvery) return;
    stream.#beats = 0;
    if (!stream.#blocked) stream.#enqueue(stream.#settings.wire.heartbeat);
  }

  /**
   * Whole ticks in a row, up to this one, in which data waited for the client and it accepted none. What it has
   * accepted is what was handed to the response less what still waits in the response's and the socket's buffers:
   * it rises only when the kernel takes bytes (a write raises both terms, or the waiting one by more).
   */
  #stalledFor(): number {
    const waiting = this.#response.writableLength;
    const accepted = this.#written - waiting;
    const waited = waiting > 0 || this.#pending !== '';
    this.#stalledTicks = waited && this.#waitedAtTick && accepted <= this.#acceptedAtTick ? this.#stalledTicks + 1 : 0;
    this.#waitedAtTick = waited;
    this.#acceptedAtTick = accepted;
    return this.#stalledTicks;
  }

  /** Adds a whole frame to the pending text, so a heartbeat can never land inside a half-written event. */
  #enqueue(frame: string): boolean {
    if (this.#response.writableEnded) {
      // The route ended the response itself; 'close' will follow.
      this.#end('close');
      return false;
    }
    this.#pending += frame;
    const { maxBuffer } = this.#settings;
    if (this.#pending.length > maxBuffer || (this.#blocked && this.#bufferedBytes() > maxBuffer)) {
      this.#end('overflow');
      this.#response.destroy();
      return false;
    }
    if (!this.#blocked && !this.#writeScheduled) {
      this.#writeScheduled = true;
      process.nextTick(ResponseStream.#writePending, this);
    }
    return true;
  }

  /** On the tick after a push: writes the tick's frames, unless the response's buffer is still full. */
  static #writePending(stream: ResponseStream): void {
    stream.#writeScheduled = false;
    if (!stream.#blocked) stream.#write();
  }

  /**
   * Hands pending text to the response, in writes of at most `MAX_WRITE` characters until the response says it is
   * full; with `all` (the route ends the response itself), all of it at once.
   */
  #write(all = false): void {
    if (this.#pending === '' || this.#closeReason !== undefined) return;
    if (this.#response.writableEnded) {
      this.#end('close');
      return;
    }
    do {
      const chunk = this.#nextChunk();
      this.#bytes += Buffer.byteLength(chunk);
      this.#written += chunk.length;
      this.#blocked = !this.#response.write(chunk);
    } while ((all || !this.#blocked) && this.#pending !== '');
    this.#flush?.();
    // With heartbeats off the timer starts only now, when data first waits for the client.
    if (this.#blocked) this.#startTimer();
  }

  /**
   * Takes the next write from the pending text: all of it, or up to `MAX_WRITE` characters ending at a line break
   * (else before a surrogate pair, which must not be split).
   */
  #nextChunk(): string {
    const pending = this.#pending;
    if (pending.length <= MAX_WRITE) {
      this.#pending = '';
      return pending;
    }
    let cut = pending.lastIndexOf('\n', MAX_WRITE - 1) + 1;
    if (cut === 0) {
      cut = MAX_WRITE;
      const last = pending.charCodeAt(cut - 1);
      if (last >= 0xd800 && last <= 0xdbff) cut -= 1;
    }
    this.#pending = pending.slice(cut);
    return pending.slice(0, cut);
  }

  #drain(): void {
    this.#blocked = false;
    this.#write();
    if (this.#waiters.length > 0 && !this.#blocked) this.#settle(true);
  }

  /**
   * After a yield: waits for 'drain' if the response said it is full. Behind compression() the bytes waiting in zlib
   * are not in writableLength, so the response's own verdict is the one to trust; a `highWaterMark` below the
   * socket's buffer (its writableHighWaterMark: 16 KiB on Node 20, 64 KiB since Node 22) therefore acts like that
   * buffer's size.
   */
  #resumeAfterYield(resolve: (sent: boolean) => void): void {
    if (this.#closeReason !== undefined) resolve(false);
    else if (this.#blocked) this.#waiters.push(resolve);
    else resolve(true);
  }

  /** Text waiting for the client: the pending frames plus the response's and socket's buffers. */
  #bufferedBytes(): number {
    return this.#pending.length + this.#response.writableLength;
  }

  #onResponseClose(): void {
    this.#end(this.#response.writableFinished ? 'close' : 'disconnect');
    this.#stopTimer();
    this.#finished?.();
  }

  #stopTimer(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** What the stream did; complete once it has closed. */
  summary(): StreamSummary {
    return { reason: this.#closeReason ?? 'close', duration: this.#duration, events: this.#events, bytes: this.#bytes };
  }

  /** Marks the stream closed, once: stops the timer, drops pending text, releases waiters, aborts the signal. */
  #end(reason: CloseReason): void {
    if (this.#closeReason !== undefined) return;
    this.#closeReason = reason;
    this.#duration = performance.now() - this.#openedAt;
    openStreams.delete(this);
    this.#stopTimer();
    this.#pending = '';
    this.#settle(false);
    this.#abort?.abort(abortReason(reason));
  }

  #settle(sent: boolean): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const resolve of waiters) resolve(sent);
  }
}
