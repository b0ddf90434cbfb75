/**
 * The default `ResumeStore`: runs kept in this process's memory, bounded per key, expired after `ttl`.
 */
import { outsideRequests } from '../context.js';
import { storedFrame } from '../encode.js';
import { newRunId, type OpenedRun, type ReadResult, type ResumeStore, type RunEnd, type RunSettings, type StoredEvent } from './contract.js';

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
  readonly watchers: Set<() => void>;
}

/**
 * Keeps each key's run in memory: its last `maxEvents` events (older ones are dropped, and a client that asks for
 * them is told how many it missed), deleted `ttl` after it ended. One timer per ended run, none once it is empty.
 * Runs live and die with this process: use `express-sse-context/redis` to resume across instances or restarts.
 */
export class MemoryStore implements ResumeStore {
  readonly #runs = new Map<string, MemoryRun>();
  /** Watchers of keys that have no run yet: a follower may watch before the run it waits for is opened. */
  readonly #waiting = new Map<string, Set<() => void>>();

  /** Keys with a run held now (live or ended, not yet expired). */
  get size(): number {
    return this.#runs.size;
  }

  open(key: string, settings: RunSettings): Promise<OpenedRun> {
    const existing = this.#runs.get(key);
    const replace = settings.replaceLive === true || (existing?.end !== undefined && settings.replaceEnded === true);
    if (existing !== undefined && !replace) {
      return Promise.resolve({ runId: existing.runId, created: false });
    }
    clearTimeout(existing?.expiry);
    const run: MemoryRun = {
      runId: newRunId(),
      settings,
      ring: [],
      tail: 0,
      end: undefined,
      expiry: undefined,
      // The key's feeds keep watching across the replacement: their next read finds the new run.
      watchers: existing?.watchers ?? this.#waiting.get(key) ?? new Set(),
    };
    this.#waiting.delete(key);
    this.#runs.set(key, run);
    if (existing !== undefined) wake(run.watchers);
    return Promise.resolve({ runId: run.runId, created: true });
  }

  append(key: string, runId: string, bodies: readonly string[]): Promise<number | false> {
    const run = this.#live(key, runId);
    if (run === undefined) return Promise.resolve(false);
    const { maxEvents } = run.settings;
    for (const body of bodies) {
      const seq = ++run.tail;
      run.ring[(seq - 1) % maxEvents] = { seq, frame: storedFrame(runId, seq, body) };
    }
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
    wake(run.watchers);
  }

  #expireAfter(key: string, ttl: number): NodeJS.Timeout {
    // Outside the request that ended the run: a timer made in its context would keep its `res.sse` for `ttl`.
    const timer = outsideRequests(() =>
      setTimeout(() => {
        const run = this.#runs.get(key);
        if (run === undefined || run.expiry !== timer) return;
        this.#runs.delete(key);
        // Followers still attached learn that the run is gone on their next read.
        wake(run.watchers);
      }, ttl),
    );
    timer.unref();
    return timer;
  }
}

function wake(watchers: Set<() => void>): void {
  for (const watcher of watchers) watcher();
}
