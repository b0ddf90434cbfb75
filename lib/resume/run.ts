/**
 * A resumable run: the route's work behind `sseStream({ resume })`, writing its events to a store instead of one
 * response, so it outlives its connection and any number of clients can follow it.
 */
import { outsideRequests } from '../context.js';
import { SSE, type PushOptions, type Serializer } from '../encode.js';
import { EVENT_SHAPES, type EventShapes, type ShapedStream } from '../event-shapes.js';
import { pipe } from '../pipe.js';
import { abortReason, sendThen, type CloseReason, type PipeOptions, type PipeSource, type SseStream } from '../sse-stream.js';
import { Appender } from '../feed/append.js';
import { checkStore, storeWarning, type ResumeStore, type RunEnd, type RunSettings } from '../store/contract.js';
import { defaultStore } from '../store/default.js';

/** Runs produced by this process, by store and key, so `abortRun()` stops a local one without waiting for its lease. */
const LIVE_RUNS = Symbol.for('express-sse-context.live-runs.v1');
const liveRuns: WeakMap<ResumeStore, Map<string, RunStream>> = ((globalThis as Record<symbol, unknown>)[LIVE_RUNS] ??=
  new WeakMap<ResumeStore, Map<string, RunStream>>()) as WeakMap<ResumeStore, Map<string, RunStream>>;

/**
 * The store key of the run a route names `key`. Runs and channels share stores, each in a key space of its own,
 * so no `resume.key` can reach a channel (`'channel:…'`) and no channel name a run.
 * @internal
 */
export function runKey(key: string): string {
  return `run:${key}`;
}

/**
 * The `res.sse` of the route that produces a resumable run. Its events go to the store, numbered by it; its signal
 * aborts on `abortRun()`, a lost lease or `ttl`, not when a client disconnects.
 * @internal
 */
export class RunStream implements SseStream, ShapedStream {
  readonly lastEventId: string | undefined;
  readonly #store: ResumeStore;
  readonly #key: string;
  readonly #runId: string;
  readonly #serialize: Serializer;
  readonly [EVENT_SHAPES]: EventShapes;
  readonly #abort = new AbortController();
  readonly #renewal: NodeJS.Timeout;
  readonly #expiry: NodeJS.Timeout;
  readonly #appender: Appender;
  #closeReason: CloseReason | undefined;
  #closing: Promise<void> | undefined;

  constructor(
    store: ResumeStore,
    key: string,
    runId: string,
    settings: RunSettings,
    encoding: { serialize: Serializer; shapes: EventShapes },
    lastEventId: string | undefined,
  ) {
    this.#store = store;
    this.#key = key;
    this.#runId = runId;
    this.#serialize = encoding.serialize;
    this[EVENT_SHAPES] = encoding.shapes;
    this.lastEventId = lastEventId;
    this.#appender = new Appender(store, key, runId, { maxEvents: settings.maxEvents, onRefused: (stored) => this.#refused(stored) });
    this.#renewal = outsideRequests(() => setInterval(() => this.#renew(), Math.max(1, Math.floor(settings.lease * 0.2))));
    this.#renewal.unref();
    this.#expiry = outsideRequests(() => setTimeout(() => void this.#finish('expired', 'expired'), settings.ttl));
    this.#expiry.unref();
    let runs = liveRuns.get(store);
    if (runs === undefined) liveRuns.set(store, (runs = new Map()));
    runs.set(key, this);
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  get closed(): boolean {
    return this.#closeReason !== undefined || this.#closing !== undefined;
  }

  get closeReason(): CloseReason | undefined {
    return this.#closeReason;
  }

  push(data: unknown, options?: PushOptions): boolean {
    if (this.#closeReason !== undefined || this.#closing !== undefined) return false;
    if (options?.id !== undefined) throw new TypeError('id: a resumable stream numbers its events itself');
    this.#appender.add(SSE.event(data, options, this.#serialize));
    return true;
  }

  send(data: unknown, options?: PushOptions): Promise<boolean> {
    return sendThen(() => this.push(data, options), () => this.#appender.durable());
  }

  pipe<T>(source: PipeSource<T>, options?: PipeOptions<T>): Promise<boolean> {
    return pipe(this, source, options);
  }

  /** Comments are not events, so a run stores none: this only checks `text`, as every stream's `comment()` does. */
  comment(text: string): void {
    SSE.comment(text);
  }

  close(): Promise<void> {
    return this.#finish('close', 'done');
  }

  /** A run is followed, it follows nothing: its events are its route's own. */
  subscribe(): Promise<void> {
    return Promise.reject(new TypeError('subscribe: a resumable run cannot follow a channel; subscribe in a route without resume'));
  }

  /** For `abortRun()`: the store has already recorded the end; this stops the work. */
  aborted(): void {
    this.#end('aborted');
  }

  /** Stores what is queued, then the end, then closes the run; once, whoever asks first. */
  #finish(closeReason: CloseReason, end: RunEnd): Promise<void> {
    this.#closing ??= (async () => {
      await this.#appender.settled();
      let ended = this.#closeReason === undefined;
      if (ended) {
        try {
          ended = await this.#store.end(this.#key, this.#runId, end);
        } catch (error) {
          storeWarning('end()', error);
        }
      }
      // The store had already ended the run (abortRun(), or a lease that lapsed): that is how it ended.
      this.#end(ended ? closeReason : 'aborted');
    })();
    return this.#closing;
  }

  /**
   * The store refused an append or kept failing. When it took none of this run's events, the run is discarded, so
   * that the next request of the key runs the route again instead of finding a run that stopped unexpectedly.
   */
  #refused(stored: boolean): void {
    if (!stored && this.#closeReason === undefined) {
      // Inside an executor: a store of the app's own that throws instead of rejecting is reported too.
      new Promise((resolve) => resolve(this.#store.discard?.(this.#key, this.#runId))).catch((error: unknown) => storeWarning('discard()', error));
    }
    this.#end('aborted');
  }

  #renew(): void {
    this.#store.renew(this.#key, this.#runId).then(
      (held) => {
        if (!held) this.#end('aborted');
      },
      (error: unknown) => storeWarning('renew()', error),
    );
  }

  #end(reason: CloseReason): void {
    if (this.#closeReason !== undefined) return;
    this.#closeReason = reason;
    clearInterval(this.#renewal);
    clearTimeout(this.#expiry);
    const runs = liveRuns.get(this.#store);
    if (runs?.get(this.#key) === this) runs.delete(this.#key);
    this.#appender.discard();
    this.#abort.abort(abortReason(reason));
  }
}

/**
 * Stops the resumable run under `key` in `store` (default: the in-memory store), from any route or process: its
 * clients get the `done` terminator after what was already sent, and its `res.sse.signal` aborts (at once in this
 * process; in another, within a fifth of its `lease`). Resolves `true` when a live run was stopped.
 *
 * @example
 * app.post('/runs/:id/stop', async (req, res) => res.json({ stopped: await abortRun(req.params.id) }));
 * @throws TypeError for a `key` that is not a non-empty string, or a `store` that is not a `ResumeStore`.
 */
export async function abortRun(key: string, store: ResumeStore = defaultStore): Promise<boolean> {
  if (typeof key !== 'string' || key === '') throw new TypeError('key: expected a non-empty string');
  checkStore(store, 'store');
  const storeKey = runKey(key);
  const stopped = await store.abort(storeKey);
  if (stopped) stopLocalRun(store, storeKey);
  return stopped;
}

/**
 * Stops the work of the run under the store key `storeKey` when this process produces it: the store no longer
 * takes its events (it was aborted, or replaced by a new run of the key).
 * @internal
 */
export function stopLocalRun(store: ResumeStore, storeKey: string): void {
  liveRuns.get(store)?.get(storeKey)?.aborted();
}
