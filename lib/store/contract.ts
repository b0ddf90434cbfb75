/**
 * The one small interface behind resumable streams: an ordered, bounded, expiring log of encoded SSE frames per
 * key, with one producer holding a lease on it and any number of followers reading it by position.
 *
 * A store knows nothing of Express or of responses; `lib/feed/append.ts` writes to it, `lib/feed/follow.ts` reads
 * from it. Every event and the end of a run are durable in the store: a wake-up (`watch`) is only a hint that
 * saves a follower from polling, so a lost one costs latency, never an event.
 */
import { EVENT_ID_SEPARATOR } from '../encode.js';
import { describe } from '../options.js';

/** How a run ended: its route closed it, `abortRun()` stopped it, it outlived `ttl`, or its producer vanished. */
export type RunEnd = 'done' | 'aborted' | 'expired' | 'lost';

/** Settings of one run, fixed by whoever opens it. */
export interface RunSettings {
  /**
   * Milliseconds the run may go on, and how long its events are kept after it ends.
   */
  ttl: number;
  /** Milliseconds after which a producer that stopped renewing its lease is taken for dead. */
  lease: number;
  /** Events kept per key; the oldest are dropped past it. */
  maxEvents: number;
  /**
   * Whether `open()` replaces a run that is over (ended, or its lease lapsed) with a new one instead of reporting
   * it. Channels set it: they never end, so such a run is stale. Default `false`: an ended run is kept for the
   * clients that come back late, until `ttl`.
   */
  replaceEnded?: boolean;
  /**
   * Whether `open()` replaces the key's run even while it is live (`resume.mode: 'start'`): the new run takes the
   * lease, so the old producer's appends and renewals are refused, and the old run's followers find the new one.
   * Default `false`. A store that ignores it answers `created: false` for a live run; the library then aborts that
   * run and opens the key again.
   */
  replaceLive?: boolean;
}

/** The answer of `open()`. */
export interface OpenedRun {
  /** Identifies this run of the key; part of every event id, so an id from another run or key is recognised. */
  runId: string;
  /** `true` when this call created the run (and holds its lease), `false` when one already existed. */
  created: boolean;
}

/** One stored event: its position in the run and its complete SSE frame, `id:` line included. */
export interface StoredEvent {
  /** 1 for the first event of a run, then 2, 3, … without gaps. */
  seq: number;
  /** The encoded frame, ready for the socket. */
  frame: string;
}

/** The answer of `read()`. */
export interface ReadResult {
  /** The run under the key, or `undefined` when there is none (never was, or expired). */
  runId: string | undefined;
  /** Events after the position asked for, oldest first, at most the limit asked for. */
  events: StoredEvent[];
  /** How many events after the position asked for were dropped (past `maxEvents`) before the first one returned. */
  missed: number;
  /** The position of the last event appended so far (0 before the first). */
  tail: number;
  /** How the run ended, set only once `events` reaches the tail: nothing more will come. */
  end: RunEnd | undefined;
}

/**
 * Where resumable streams keep their events. The default is an in-memory store; `express-sse-context/redis`
 * provides one on Redis Streams for many instances. Keys are the store's own: two routes that share a store and
 * produce the same key share a run.
 */
export interface ResumeStore {
  /**
   * Creates the run for `key` when none exists, or when `settings.replaceEnded` is set and the existing one is over
   * (the caller then holds its lease); otherwise reports the existing one. Atomic: of any number of concurrent
   * callers, exactly one gets `created: true`.
   *
   * A store that is full (it holds as many runs or bytes as it may, and none of them can be evicted) rejects with a
   * `StoreFullError`: the request then gets a 503 with `Retry-After` before any stream header. Any other rejection
   * is a failure (the client gets an event stream with a `{ type: "error" }` event and no `done`, so it comes back).
   */
  open(key: string, settings: RunSettings): Promise<OpenedRun>;
  /**
   * Appends events, in order, each an encoded SSE frame without its `id:` line; the store gives each the next
   * position and the `id: <runId>.<seq>` line. Resolves with the position of the last one, or `false` (nothing
   * appended) when `runId` is no longer the key's live run.
   */
  append(key: string, runId: string, bodies: readonly string[]): Promise<number | false>;
  /** Renews the producer's lease. Resolves `false` when it was lost (the run ended, was aborted, or expired). */
  renew(key: string, runId: string): Promise<boolean>;
  /** Ends the run after every event appended so far. Resolves `false` when it had already ended. */
  end(key: string, runId: string, reason: RunEnd): Promise<boolean>;
  /** Ends the key's live run as `'aborted'`, whichever process produces it. Resolves `false` when none was live. */
  abort(key: string): Promise<boolean>;
  /**
   * Reads up to `limit` events after position `after`. A run whose lease has lapsed without an end reads as ended
   * `'lost'` (so every follower sees the same end), and the store records that end; a read never depends on a
   * write, so it answers whenever the store can answer reads.
   */
  read(key: string, after: number, limit: number): Promise<ReadResult>;
  /**
   * Calls `onWake` whenever something may have been appended to `key` or its run ended (a hint: read to see).
   * Resolves, once the store listens, with the function that stops it.
   */
  watch(key: string, onWake: () => void): Promise<() => void>;
  /**
   * Optional. Removes run `runId` of `key` as if it had never been opened, unless it ended other than `'lost'`: its
   * producer gave up before the store took any of its events, so the next `open()` starts the key's run again.
   * Wakes its followers, who find it gone. Resolves `false` when there was nothing to remove. A store without it
   * leaves such a run to end as `'lost'` once its lease lapses.
   */
  discard?(key: string, runId: string): Promise<boolean>;
}

const STORE_METHODS = ['open', 'append', 'renew', 'end', 'abort', 'read', 'watch'] as const;

/**
 * @throws TypeError naming `field` when `value` lacks one of the methods of a `ResumeStore`.
 * @internal
 */
export function checkStore(value: unknown, field: string): asserts value is ResumeStore {
  const store = value as Partial<Record<(typeof STORE_METHODS)[number], unknown>> | null;
  if (store === null || typeof store !== 'object' || STORE_METHODS.some((method) => typeof store[method] !== 'function')) {
    throw new TypeError(`${field}: expected a ResumeStore (an object with ${STORE_METHODS.join(', ')}), got ${describe(value)}`);
  }
}

/**
 * The position after which a client that sent `lastEventId` resumes in run `runId`: the id's position when it is
 * one of this run's ids, else 0 (from the start of what is kept), for a missing, malformed or foreign id.
 * @internal
 */
export function resumePosition(lastEventId: string | undefined, runId: string): number {
  if (lastEventId === undefined) return 0;
  const dot = lastEventId.lastIndexOf(EVENT_ID_SEPARATOR);
  if (dot <= 0 || lastEventId.slice(0, dot) !== runId) return 0;
  const digits = lastEventId.slice(dot + 1);
  if (!/^[1-9][0-9]{0,15}$/.test(digits)) return 0;
  const seq = Number(digits);
  return Number.isSafeInteger(seq) ? seq : 0;
}

/**
 * A fresh run id: 12 base-36 characters from a CSPRNG, so ids cannot be guessed across runs.
 * @internal
 */
export function newRunId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  let id = '';
  for (const byte of bytes) id += byte.toString(36).padStart(2, '0');
  return id.slice(0, 12);
}

/**
 * Reports a failing store call as a process warning: a resumable stream must not throw from inside its timers.
 * @internal
 */
export function storeWarning(operation: string, error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  process.emitWarning(`express-sse-context: the resume store's ${operation} failed: ${message}`, 'SseResumeStoreWarning');
}

/** Seconds a client is asked to wait (`Retry-After`) before it tries a full store again, unless the store says. */
const DEFAULT_RETRY_AFTER = 5;

/**
 * What `ResumeStore.open()` rejects with when the store is full: it holds as many runs or bytes as it may, and none
 * can be evicted (every run is live). Shaped like an `http-errors` error (`status` and `statusCode` 503, `expose`,
 * `headers` with `Retry-After`), so `sseStream()` hands it to `next(err)` and Express answers 503 before any stream
 * header. A custom store signals "full" by rejecting with one.
 */
export class StoreFullError extends Error {
  /** `'StoreFullError'`, the check `sseStream()` and error handlers can make across the CommonJS and ES builds. */
  override readonly name = 'StoreFullError';
  /** 503 Service Unavailable. */
  readonly status = 503;
  /** 503, for error handlers that read `statusCode`. */
  readonly statusCode = 503;
  /** The message is safe to show the client. */
  readonly expose = true;
  /** Seconds the client should wait before it tries again, sent as `Retry-After`. Default: 5. */
  readonly retryAfter: number;
  /** Response headers for the error's answer (`Retry-After`), as `http-errors` and Express's final handler use them. */
  readonly headers: Record<string, string>;

  constructor(message = 'Too many streams are open; try again later', retryAfter = DEFAULT_RETRY_AFTER) {
    super(message);
    this.retryAfter = Number.isSafeInteger(retryAfter) && retryAfter >= 0 ? retryAfter : DEFAULT_RETRY_AFTER;
    this.headers = { 'Retry-After': String(this.retryAfter) };
  }
}

/**
 * `error` as a `StoreFullError` when it is one, also one made by the other build of this package (CommonJS and ES
 * module), else `undefined`.
 * @internal
 */
export function asStoreFull(error: unknown): StoreFullError | undefined {
  if (error instanceof StoreFullError) return error;
  if (error === null || typeof error !== 'object') return undefined;
  const { name, status, message, retryAfter } = error as Partial<Record<'name' | 'status' | 'message' | 'retryAfter', unknown>>;
  if (name !== 'StoreFullError' || status !== 503) return undefined;
  return new StoreFullError(typeof message === 'string' ? message : undefined, typeof retryAfter === 'number' ? retryAfter : undefined);
}
