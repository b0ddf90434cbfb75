/**
 * The write side of a store key, shared by runs and channels: events encoded once, handed to the store in order,
 * one append per tick's batch, with a promise for whoever waits for them to be durable.
 */
import { outsideRequests } from '../context.js';
import { storeWarning, type ResumeStore } from '../store/contract.js';

/** Characters appended without the producer giving the event loop a turn; past it, `durable()` yields one. */
const YIELD_EVERY = 64 * 1024;

const TICK = Promise.resolve();
/** Tries of one append before its events are given up, and the pause before each retry (ms, times the try). */
const TRIES = 3;
const RETRY_PAUSE = 100;

/**
 * Options of an `Appender`.
 * @internal
 */
export interface AppenderOptions {
  /** Events the key keeps (`maxEvents`, a channel's `history`): one append carries at most half of them. */
  maxEvents: number;
  /**
   * Called once when the store refuses an append (the run ended, was aborted, or lost its lease) or keeps failing;
   * `stored` tells whether any earlier append was accepted.
   */
  onRefused: (stored: boolean) => void;
  /** Awaited, when it returns a promise, before each append: a channel holds its pushes while a subscriber takes its place. */
  gate?: () => Promise<void> | undefined;
}

/**
 * Appends encoded event bodies to one run of one key, in the order they were added.
 * @internal
 */
export class Appender {
  readonly #store: ResumeStore;
  readonly #key: string;
  readonly #runId: Promise<string>;
  readonly #onRefused: (stored: boolean) => void;
  readonly #gate: (() => Promise<void> | undefined) | undefined;
  #bodies: string[] = [];
  #waiting: Array<(appended: boolean) => void> = [];
  #appending: Promise<void> | undefined;
  #refused = false;
  /** Whether the store accepted any append. */
  #stored = false;
  #sinceYield = 0;

  /** The most events one append carries: half of what the key keeps, so a burst cannot outrun its readers. */
  readonly #chunk: number;

  constructor(store: ResumeStore, key: string, runId: string | Promise<string>, options: AppenderOptions) {
    this.#store = store;
    this.#key = key;
    this.#runId = Promise.resolve(runId);
    this.#chunk = Math.max(1, Math.floor(options.maxEvents / 2));
    this.#onRefused = options.onRefused;
    this.#gate = options.gate;
  }

  /** Queues one encoded body (an SSE frame without its `id:` line). */
  add(body: string): void {
    this.#bodies.push(body);
    this.#sinceYield += body.length;
    this.#appending ??= this.#appendAll();
  }

  /** Resolves `true` once everything added so far is in the store, `false` if the store refused it. */
  durable(): Promise<boolean> {
    if (this.#refused) return Promise.resolve(false);
    if (this.#appending === undefined) return Promise.resolve(true);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  /** Resolves once no append is in flight. */
  async settled(): Promise<void> {
    await this.#appending;
  }

  /** Drops what is queued: the run is over. */
  discard(): void {
    this.#refused = true;
    this.#bodies = [];
    this.#settle(false);
  }

  async #appendAll(): Promise<void> {
    // Events added in the same tick go in one append.
    await TICK;
    let runId: string;
    try {
      runId = await this.#runId;
    } catch {
      // Opening the key failed (and was reported there): nothing can be appended.
      runId = '';
      this.discard();
      this.#onRefused(false);
    }
    while (this.#bodies.length > 0 && !this.#refused) {
      const bodies = this.#bodies.length > this.#chunk ? this.#bodies.splice(0, this.#chunk) : this.#bodies;
      const last = bodies === this.#bodies;
      const waiting = last ? this.#waiting : [];
      if (last) {
        this.#bodies = [];
        this.#waiting = [];
      }
      await this.#gate?.();
      const appended = await this.#appendWithRetries(runId, bodies);
      if (appended !== false) this.#stored = true;
      if (appended === false) {
        this.discard();
        this.#onRefused(this.#stored);
      } else if (!last || this.#sinceYield > YIELD_EVERY) {
        // Between the chunks of a burst, the key's readers take their turn before older events are dropped; and a
        // producer that only awaits its appends would otherwise never let timers and sockets run.
        this.#sinceYield = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      for (const resolve of waiting) resolve(appended !== false);
    }
    this.#settle(!this.#refused);
    this.#appending = undefined;
  }

  /** A store that fails (a dropped Redis connection) gets a few tries before the events are given up. */
  async #appendWithRetries(runId: string, bodies: string[]): Promise<number | false> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.#store.append(this.#key, runId, bodies);
      } catch (error) {
        storeWarning('append()', error);
        if (attempt === TRIES) return false;
        await new Promise((resolve) => outsideRequests(() => setTimeout(resolve, RETRY_PAUSE * attempt)));
      }
    }
  }

  #settle(appended: boolean): void {
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const resolve of waiting) resolve(appended);
  }
}
