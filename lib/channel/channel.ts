/**
 * `sseChannel()`: one push, every subscribed client, from code that is not tied to any request. A channel is a key
 * in a resume store that never ends by itself: pushes append to it (from any instance, with the Redis store), and
 * each subscribed response follows it through the same feed as resumable runs.
 */
import { outsideRequests } from '../context.js';
import { LIBRARY_ERRORS, SSE, type PushOptions, type Serializer } from '../encode.js';
import { checkOptions, describe, MAX_TIMER_MS, nonNegativeInteger, optionNames } from '../options.js';
import { sendThen, type FrameSink, type Subscribable } from '../sse-stream.js';
import { Appender } from '../feed/append.js';
import { follow } from '../feed/follow.js';
import { checkStore, resumePosition, storeWarning, type ResumeStore, type RunSettings } from '../store/contract.js';
import { defaultStore } from '../store/default.js';

/** Options of `sseChannel()`. */
export interface SseChannelOptions {
  /**
   * Where the channel's events go. Default: the in-memory store of this process. With `RedisStore` (from
   * `express-sse-context/redis`) a push on one instance reaches the subscribers of every instance.
   */
  store?: ResumeStore;
  /**
   * Events kept for subscribers that reconnect with a `Last-Event-ID`: such a client gets the events it missed, if
   * they are among the last `history`, and a `{ type: "missed", count }` event first when some were dropped.
   * A new subscriber gets only events pushed after it subscribed. Default: 100.
   */
  history?: number;
  /** Turns pushed values that are not strings into text. Default: `JSON.stringify`. */
  serialize?: (value: unknown) => string;
}

/** A broadcast channel: create it with `sseChannel()`, attach responses with `res.sse.subscribe(channel)`. */
export interface SseChannel extends Subscribable {
  /** The name given to `sseChannel()`. */
  readonly name: string;
  /**
   * Sends one event to every subscriber, on every instance that shares the store. The event is encoded once, and
   * numbered by the channel (so `options.id` is not allowed). Returns `false` once the channel is closed.
   *
   * @throws TypeError as `res.sse.push()` does for bad data or options, and for an `id`.
   */
  push(data: unknown, options?: PushOptions): boolean;
  /**
   * Like `push()`, and resolves once the event is in the store: `true` when every subscriber, on any instance, will
   * get it; `false` when the channel is closed or the store refused the event. Await it before answering the
   * request that caused the event (a webhook), or between pushes from two instances that must arrive in order.
   *
   * @throws TypeError (as a rejection) for what `push()` refuses.
   */
  send(data: unknown, options?: PushOptions): Promise<boolean>;
  /**
   * Responses of this process following the channel now: counted once each one's place in the channel is fixed,
   * so every event pushed after the count went up reaches it.
   */
  readonly subscriberCount: number;
  /**
   * Ends this object's subscriptions (each response gets its `done` terminator and ends) and its pushes. The
   * channel's events stay in the store for other instances, which go on.
   */
  close(): Promise<void>;
}

/** Channels never end on their own: their keys live as long as timers can count. */
const FOREVER = MAX_TIMER_MS;
const KNOWN_OPTIONS = optionNames<SseChannelOptions>({ store: true, history: true, serialize: true });
const KEY_PREFIX = 'channel:';

/**
 * Creates a broadcast channel named `name` in `store` (default: in memory). Channels with the same name and store
 * are one channel, across objects and, with the Redis store, across instances.
 *
 * @example
 * const news = sseChannel('news');
 * app.get('/news', sseStream(), (req, res) => res.sse.subscribe(news));
 * setInterval(() => news.push({ type: 'headline', text: 'Otters hold hands while sleeping' }), 5000);
 * @throws TypeError naming the option for a bad `name`, `store`, `history` or `serialize`.
 */
export function sseChannel(name: string, options: SseChannelOptions = {}): SseChannel {
  if (typeof name !== 'string' || name === '') throw new TypeError(`name: expected a non-empty string, got ${describe(name)}`);
  checkOptions(options, 'sseChannel(name, options)', KNOWN_OPTIONS, '', 'sseChannel()');
  const { store = defaultStore, serialize = JSON.stringify as Serializer } = options;
  checkStore(store, 'store');
  const history = nonNegativeInteger(options.history ?? 100, 'history');
  if (history === 0) throw new TypeError('history: must be at least 1');
  if (typeof serialize !== 'function') throw new TypeError(`serialize: expected a function, got ${describe(serialize)}`);
  return new Channel(name, store, { ttl: FOREVER, lease: FOREVER, maxEvents: history, replaceEnded: true }, serialize);
}

class Channel implements SseChannel {
  readonly name: string;
  readonly #store: ResumeStore;
  readonly #key: string;
  readonly #settings: RunSettings;
  readonly #serialize: Serializer;
  /** Every response attached, for `close()`; `#following`, those whose position in the channel is fixed. */
  readonly #subscribers = new Set<FrameSink>();
  readonly #following = new Set<FrameSink>();
  readonly #renewal: NodeJS.Timeout;
  #runId: Promise<string>;
  #appender: Appender;
  #closed = false;
  /**
   * Subscribers still taking their place, and the appends held until they have: a push made after `subscribe()`
   * must land after the position the subscriber starts from.
   */
  #positioning = 0;
  #held: Array<() => void> = [];

  constructor(name: string, store: ResumeStore, settings: RunSettings, serialize: Serializer) {
    this.name = name;
    this.#store = store;
    this.#key = KEY_PREFIX + name;
    this.#settings = settings;
    this.#serialize = serialize;
    this.#runId = this.#open();
    this.#appender = this.#appenderFor(this.#runId);
    // Every instance that holds the channel keeps its lease, so the channel lives while any of them does.
    this.#renewal = outsideRequests(() => setInterval(() => void this.#renew(), Math.floor(FOREVER * 0.2)));
    this.#renewal.unref();
  }

  get subscriberCount(): number {
    return this.#following.size;
  }

  push(data: unknown, options?: PushOptions): boolean {
    if (this.#closed) return false;
    if (options?.id !== undefined) throw new TypeError('id: a channel numbers its events itself');
    this.#appender.add(SSE.event(data, options, this.#serialize));
    return true;
  }

  send(data: unknown, options?: PushOptions): Promise<boolean> {
    return sendThen(() => this.push(data, options), () => this.#appender.durable());
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#renewal);
    await this.#appender.settled();
    await Promise.all(Array.from(this.#subscribers, (response) => response.close()));
  }

  async follow(response: FrameSink): Promise<void> {
    if (this.#closed) return response.close();
    this.#subscribers.add(response);
    this.#positioning += 1;
    let positioned = false;
    const onPositioned = (): void => {
      if (positioned) return;
      positioned = true;
      if (!response.closed) this.#following.add(response);
      if (--this.#positioning === 0) this.#release();
    };
    try {
      const opened = this.#runId;
      const reopen = (): void => this.#replace(opened);
      let runId: string;
      try {
        runId = await opened;
      } catch {
        reopen();
        response.writeError(LIBRARY_ERRORS.unavailable);
        return await response.closeForReconnect();
      }
      // A client that sends an id of another run (the channel was opened again while it was away) missed all of this one.
      const from = response.lastEventId === undefined ? 'tail' : resumePosition(response.lastEventId, runId);
      await follow({ store: this.#store, key: this.#key, runId, poll: 1000, reopen }, response, from, onPositioned);
    } finally {
      onPositioned();
      this.#subscribers.delete(response);
      this.#following.delete(response);
    }
  }

  #release(): void {
    const held = this.#held;
    this.#held = [];
    for (const resume of held) resume();
  }

  /** Keeps the run's lease; a run found over (its lease lapsed while no instance held the channel) is replaced. */
  async #renew(opened = this.#runId): Promise<void> {
    let runId: string;
    try {
      runId = await opened;
    } catch {
      // Opening failed, and was reported; the next push or subscriber opens again.
      return;
    }
    try {
      if (!(await this.#store.renew(this.#key, runId))) this.#replace(opened);
    } catch (error) {
      storeWarning('renew()', error);
    }
  }

  #open(): Promise<string> {
    const opened: Promise<string> = this.#store.open(this.#key, this.#settings).then((run) => {
      // Every instance that holds the channel produces it: one that joins renews the lease for all, so the channel
      // lives while instances come and go, even when none lives as long as the renewal period.
      if (!run.created) void this.#renew(opened);
      return run.runId;
    });
    opened.catch((error: unknown) => storeWarning('open()', error));
    return opened;
  }

  /**
   * Opens the key again when the run `stale` is over (its lease lapsed, the store refused an append, or opening
   * failed), so pushes go on. Its subscribers get an error event without `done`; their browsers come back to the
   * new run. Once per stale run, whoever notices first.
   */
  #replace(stale: Promise<string>): void {
    if (this.#closed || this.#runId !== stale) return;
    this.#runId = this.#open();
    this.#appender = this.#appenderFor(this.#runId);
  }

  #appenderFor(runId: Promise<string>): Appender {
    return new Appender(this.#store, this.#key, runId, {
      maxEvents: this.#settings.maxEvents,
      onRefused: () => this.#replace(runId),
      gate: () => (this.#positioning === 0 ? undefined : new Promise<void>((resume) => this.#held.push(resume))),
    });
  }
}
