/**
 * The default `ResumeStore`: runs kept in this process's memory, bounded per key (`maxEvents`) and per store
 * (`maxRuns`, `maxBytes`), expired after `ttl`.
 */
import { outsideRequests } from '../context.js';
import { storedFrame } from '../encode.js';
import { checkOptions, nonNegativeInteger, optionNames } from '../options.js';
import {
  newRunId,
  StoreFullError,
  type OpenedRun,
  type ReadResult,
  type ResumeStore,
  type RunEnd,
  type RunSettings,
  type StoredEvent,
} from './contract.js';

/** Options of {@link MemoryStore}. */
export interface MemoryStoreOptions {
  /**
   * Runs the store holds at most, live or ended (channels count: each is a live run). Past it, ended runs are
   * evicted, the one that ended first first; when every run held is live, a new run is refused with a
   * {@link StoreFullError} (its request gets a 503 with `Retry-After`). A positive integer; default 10000.
   */
  maxRuns?: number;
  /**
   * Characters the store holds at most: those of its runs' stored frames (`id:` line included) and of their keys,
   * counted as JavaScript string length, as the stream's `maxBuffer` is (one byte each for ASCII text). Past it,
   * ended runs are evicted as for `maxRuns`; when only live runs remain, a new run is refused as for `maxRuns`. A
   * live run's appends are never refused, so live runs alone may hold more: each is bounded by its own `maxEvents`.
   * A positive integer; default 67108864 (64 MiB of ASCII text).
   */
  maxBytes?: number;
}

const KNOWN_OPTIONS = optionNames<MemoryStoreOptions>({ maxRuns: true, maxBytes: true });
const DEFAULT_MAX_RUNS = 10_000;
const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;

/** A bound of the store: a store that may hold no run at all could serve nothing. */
function positiveInteger(value: unknown, name: string): number {
  const count = nonNegativeInteger(value, name);
  if (count === 0) throw new TypeError(`${name}: must be at least 1`);
  return count;
}

/** One key's run: a ring of its last `maxEvents` frames. */
interface MemoryRun {
  readonly runId: string;
  readonly settings: RunSettings;
  /** Frames by position: the event at `seq` sits at `(seq - 1) % maxEvents` while it is kept. */
  readonly ring: StoredEvent[];
  tail: number;
  end: RunEnd | undefined;
  /** Deletes the run `ttl` after it ended. A live run needs none: its producer ends it at `ttl` (as `'expired'`). */
  expiry: NodeJS.Timeout | undefined;
  /** Characters of its key and of the frames its ring holds, counted against `maxBytes`. */
  bytes: number;
  readonly watchers: Set<() => void>;
}

/**
 * Keeps each key's run in memory: its last `maxEvents` events (older ones are dropped, and a client that asks for
 * them is told how many it missed), deleted `ttl` after it ended. One timer per ended run, none once it is empty.
 *
 * The store as a whole holds at most `maxRuns` runs and `maxBytes` characters: past either, ended runs are evicted
 * in the order they ended (a client that comes back for one finds it gone, and its route runs again), and when only
 * live runs remain a new run is refused with a {@link StoreFullError}, so keys that vary without end cannot grow it.
 * Runs live and die with this process: use `express-sse-context/redis` to resume across instances or restarts.
 */
export class MemoryStore implements ResumeStore {
  readonly #runs = new Map<string, MemoryRun>();
  /** The ended runs, in the order they ended: the order they are evicted in. */
  readonly #ended = new Map<string, MemoryRun>();
  /** Watchers of keys that have no run yet: a follower may watch before the run it waits for is opened. */
  readonly #waiting = new Map<string, Set<() => void>>();
  readonly #maxRuns: number;
  readonly #maxBytes: number;
  #bytes = 0;

  /**
   * @throws TypeError naming the option, for a `maxRuns` or `maxBytes` that is not a positive integer, or an
   * unknown one.
   */
  constructor(options: MemoryStoreOptions = {}) {
    checkOptions(options, 'options', KNOWN_OPTIONS, '', 'MemoryStore');
    this.#maxRuns = positiveInteger(options.maxRuns ?? DEFAULT_MAX_RUNS, 'maxRuns');
    this.#maxBytes = positiveInteger(options.maxBytes ?? DEFAULT_MAX_BYTES, 'maxBytes');
  }

  /** Keys with a run held now (live or ended, not yet expired or evicted). */
  get size(): number {
    return this.#runs.size;
  }

  /** Characters held now, counted as `maxBytes` counts them: the keys of the runs held and their stored frames. */
  get bytes(): number {
    return this.#bytes;
  }

  open(key: string, settings: RunSettings): Promise<OpenedRun> {
    const existing = this.#runs.get(key);
    const replace = settings.replaceLive === true || (existing?.end !== undefined && settings.replaceEnded === true);
    if (existing !== undefined && !replace) {
      return Promise.resolve({ runId: existing.runId, created: false });
    }
    if (existing !== undefined) {
      // A replacement takes the old run's place: it never grows the store, so it is never refused.
      this.#forget(key, existing);
    } else if (!this.#makeRoom(1, key.length)) {
      return Promise.reject(new StoreFullError());
    }
    const run: MemoryRun = {
      runId: newRunId(),
      settings,
      ring: [],
      tail: 0,
      end: undefined,
      expiry: undefined,
      bytes: key.length,
      // The key's feeds keep watching across the replacement: their next read finds the new run.
      watchers: existing?.watchers ?? this.#waiting.get(key) ?? new Set(),
    };
    this.#waiting.delete(key);
    this.#runs.set(key, run);
    this.#bytes += run.bytes;
    if (existing !== undefined) wake(run.watchers);
    return Promise.resolve({ runId: run.runId, created: true });
  }

  append(key: string, runId: string, bodies: readonly string[]): Promise<number | false> {
    const run = this.#live(key, runId);
    if (run === undefined) return Promise.resolve(false);
    const { maxEvents } = run.settings;
    let added = 0;
    for (const body of bodies) {
      const seq = ++run.tail;
      const slot = (seq - 1) % maxEvents;
      const frame = storedFrame(runId, seq, body);
      // Past `maxEvents` the new frame takes the place of the oldest one: only the difference is new.
      added += frame.length - (run.ring[slot]?.frame.length ?? 0);
      run.ring[slot] = { seq, frame };
    }
    run.bytes += added;
    this.#bytes += added;
    // Never refused: live runs are bounded by their `maxEvents`; room is made from the ended runs, if any.
    this.#makeRoom(0, 0);
    wake(run.watchers);
    return Promise.resolve(run.tail);
  }

  renew(key: string, runId: string): Promise<boolean> {
    return Promise.resolve(this.#live(key, runId) !== undefined);
  }

  end(key: string, runId: string, reason: RunEnd): Promise<boolean> {
    const run = this.#live(key, runId);
    if (run !== undefined) this.#close(key, run, reason);
    return Promise.resolve(run !== undefined);
  }

  abort(key: string): Promise<boolean> {
    const run = this.#runs.get(key);
    if (run === undefined || run.end !== undefined) return Promise.resolve(false);
    this.#close(key, run, 'aborted');
    return Promise.resolve(true);
  }

  read(key: string, after: number, limit: number): Promise<ReadResult> {
    const run = this.#runs.get(key);
    if (run === undefined) return Promise.resolve({ runId: undefined, events: [], missed: 0, tail: 0, end: undefined });
    const { ring, tail } = run;
    const oldest = Math.max(1, tail - run.settings.maxEvents + 1);
    const from = Math.max(after + 1, oldest);
    const to = Math.min(tail, from + limit - 1);
    const events: StoredEvent[] = [];
    for (let seq = from; seq <= to; seq += 1) events.push(ring[(seq - 1) % run.settings.maxEvents]!);
    return Promise.resolve({
      runId: run.runId,
      events,
      missed: Math.max(0, from - after - 1),
      tail,
      end: to === tail ? run.end : undefined,
    });
  }

  watch(key: string, onWake: () => void): Promise<() => void> {
    let watchers = this.#runs.get(key)?.watchers ?? this.#waiting.get(key);
    if (watchers === undefined) this.#waiting.set(key, (watchers = new Set()));
    const watcher = (): void => onWake();
    watchers.add(watcher);
    const set = watchers;
    return Promise.resolve(() => {
      set.delete(watcher);
      if (set.size === 0 && this.#waiting.get(key) === set) this.#waiting.delete(key);
    });
  }

  #live(key: string, runId: string): MemoryRun | undefined {
    const run = this.#runs.get(key);
    return run !== undefined && run.runId === runId && run.end === undefined ? run : undefined;
  }

  #close(key: string, run: MemoryRun, reason: RunEnd): void {
    run.end = reason;
    run.expiry = this.#expireAfter(key, run.settings.ttl);
    this.#ended.set(key, run);
    wake(run.watchers);
  }

  /**
   * Evicts ended runs, the one that ended first first, until `runs` more runs and `bytes` more characters fit.
   * Returns `false` when they still do not fit: every run held is live.
   */
  #makeRoom(runs: number, bytes: number): boolean {
    const fits = (): boolean => this.#runs.size + runs <= this.#maxRuns && this.#bytes + bytes <= this.#maxBytes;
    while (!fits()) {
      const oldest = this.#ended.entries().next();
      if (oldest.done === true) return false;
      this.#remove(...oldest.value);
    }
    return true;
  }

  /** Deletes an ended run, at its expiry or evicted. */
  #remove(key: string, run: MemoryRun): void {
    this.#forget(key, run);
    // Followers still attached learn that the run is gone on their next read.
    wake(run.watchers);
  }

  /** Takes a run off the store's books: its place, its timer, its characters. */
  #forget(key: string, run: MemoryRun): void {
    clearTimeout(run.expiry);
    run.expiry = undefined;
    this.#runs.delete(key);
    this.#ended.delete(key);
    this.#bytes -= run.bytes;
  }

  #expireAfter(key: string, ttl: number): NodeJS.Timeout {
    // Outside the request that ended the run: a timer made in its context would keep its `res.sse` for `ttl`.
    const timer = outsideRequests(() =>
      setTimeout(() => {
        const run = this.#runs.get(key);
        if (run === undefined || run.expiry !== timer) return;
        this.#remove(key, run);
      }, ttl),
    );
    timer.unref();
    return timer;
  }
}

function wake(watchers: Set<() => void>): void {
  for (const watcher of watchers) watcher();
}
