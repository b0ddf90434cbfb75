/**
 * `express-sse-context/redis`: a {@link ResumeStore} on Redis Streams, so that any instance behind a load balancer
 * can serve the followers of a run another instance produces.
 *
 * Every operation is one Lua script, so each is atomic and costs one round trip. All keys of one run share the hash
 * tag `{key}`, so the store works on Redis Cluster. For a key K (with the default prefix `sse:`):
 *
 * - `sse:{K}:run` — a hash: `id` (the run id), `ttl`, `lease`, `max` (the run's settings), `seq` (the tail) and,
 *   once the run is over, `ended` (its {@link RunEnd}).
 * - `sse:{K}:lease` — the producer's lease: the run id, expiring unless renewed. Every write of the producer checks
 *   it, so a producer that lost its lease (stalled, aborted, replaced) appends nothing.
 * - `sse:{K}:events` — a Redis Stream whose entry ids are positions: event `seq` is entry `0-<seq>` with field `f`
 *   (its frame); the end of the run is one more entry, `0-<tail + 1>`, with field `e` (the reason).
 * - `sse:{K}:wake` — a pub/sub channel told of every append and of the end, so followers need not poll.
 *
 * Needs Redis 6.2 or later (exclusive `XRANGE` starts).
 */
import type { Redis } from 'ioredis';
import { describe } from '../options.js';
import { SCRIPTS, type Script } from './redis-scripts.js';
import { newRunId, type OpenedRun, type ReadResult, type ResumeStore, type RunEnd, type RunSettings, type StoredEvent } from './contract.js';

/** Options of {@link RedisStore}. */
export interface RedisStoreOptions {
  /**
   * The ioredis client the store sends its commands on. The store never closes it; it opens one more connection of
   * its own (`client.duplicate()`) for pub/sub wake-ups, on the first `watch()`, closed by {@link RedisStore.close}.
   */
  client: Redis;
  /**
   * Prepended to every key and channel the store uses, e.g. `'myapp:sse:'`. Must not hold `{` or `}`: the braces
   * around the stream key are the hash tag that keeps one run's keys in one Redis Cluster slot. Default `'sse:'`.
   */
  prefix?: string;
}

/** Per wake channel: the watchers' callbacks, and the SUBSCRIBE they wait for. */
interface Channel {
  listeners: Set<() => void>;
  subscribed: Promise<unknown>;
}

/** A reply's number: ioredis gives integers as numbers, or as strings under its `stringNumbers` option. */
function toNumber(reply: unknown): number {
  return Number(reply);
}

function toText(reply: unknown): string {
  return Buffer.isBuffer(reply) ? reply.toString('utf8') : String(reply);
}

function isRunEnd(value: string): value is RunEnd {
  return value === 'done' || value === 'aborted' || value === 'expired' || value === 'lost';
}

function checkKey(key: unknown): asserts key is string {
  // An empty key would give `{}`, which Redis Cluster does not take for a hash tag: the run's keys would scatter.
  if (typeof key !== 'string' || key === '') throw new TypeError(`key: expected a non-empty string, got ${describe(key)}`);
}


/**
 * A {@link ResumeStore} on Redis Streams (Redis 6.2+, standalone or Cluster), for resumable streams served by many
 * instances: `sseStream({ resume: { key, store: new RedisStore({ client }) } })`.
 *
 * ```ts
 * import Redis from 'ioredis';
 * import { RedisStore } from 'express-sse-context/redis';
 *
 * const store = new RedisStore({ client: new Redis(process.env.REDIS_URL) });
 * // on shutdown: await store.close() (closes the store's own subscriber connection, not your client)
 * ```
 */
export class RedisStore implements ResumeStore {
  readonly #client: Redis;
  readonly #prefix: string;
  readonly #channels = new Map<string, Channel>();
  #subscriber: Redis | undefined;
  #closed: Promise<void> | undefined;

  /**
   * @throws TypeError naming the option, for a missing or invalid `client` or `prefix`.
   */
  constructor(options: RedisStoreOptions) {
    if (options === null || typeof options !== 'object') throw new TypeError(`options: expected an object, got ${describe(options)}`);
    const { client, prefix = 'sse:' } = options;
    if (client === null || typeof client !== 'object' || typeof client.evalsha !== 'function' || typeof client.duplicate !== 'function') {
      throw new TypeError(`client: expected an ioredis client, got ${describe(client)}`);
    }
    if (typeof prefix !== 'string' || /[{}]/.test(prefix)) {
      throw new TypeError(`prefix: expected a string without '{' or '}', got ${describe(prefix)}`);
    }
    this.#client = client;
    this.#prefix = prefix;
  }

  async open(key: string, settings: RunSettings): Promise<OpenedRun> {
    const { ttl, lease, maxEvents, replaceEnded = false, replaceLive = false } = settings;
    const replace = replaceLive ? 2 : replaceEnded ? 1 : 0;
    const reply = (await this.#run(SCRIPTS.open, key, [newRunId(), ttl, lease, maxEvents, replace, this.#channel(key)])) as unknown[];
    return { runId: toText(reply[0]), created: toNumber(reply[1]) === 1 };
  }

  async append(key: string, runId: string, bodies: readonly string[]): Promise<number | false> {
    const seq = toNumber(await this.#run(SCRIPTS.append, key, [runId, this.#channel(key), ...bodies]));
    return seq < 0 ? false : seq;
  }

  async renew(key: string, runId: string): Promise<boolean> {
    return toNumber(await this.#run(SCRIPTS.renew, key, [runId])) === 1;
  }

  async end(key: string, runId: string, reason: RunEnd): Promise<boolean> {
    return toNumber(await this.#run(SCRIPTS.end, key, [runId, reason, this.#channel(key)])) === 1;
  }

  async abort(key: string): Promise<boolean> {
    return toNumber(await this.#run(SCRIPTS.abort, key, [this.#channel(key)])) === 1;
  }

  async read(key: string, after: number, limit: number): Promise<ReadResult> {
    if (!Number.isSafeInteger(after) || after < 0) throw new RangeError(`after: expected a non-negative integer, got ${after}`);
    if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`limit: expected a positive integer, got ${limit}`);
    const reply = (await this.#run(SCRIPTS.read, key, [after, limit, this.#channel(key)])) as unknown[];
    const runId = toText(reply[0]);
    const end = toText(reply[2]);
    const events: StoredEvent[] = (reply[4] as unknown[][]).map(([seq, frame]) => ({ seq: toNumber(seq), frame: toText(frame) }));
    return {
      runId: runId === '' ? undefined : runId,
      events,
      missed: toNumber(reply[3]),
      tail: toNumber(reply[1]),
      end: isRunEnd(end) ? end : undefined,
    };
  }

  /**
   * Calls `onWake` whenever something may have been appended to `key` or its run ended (a hint: read to see).
   * Resolves, once Redis confirmed the `SUBSCRIBE`, with the function that stops it.
   *
   * All watches share one subscriber connection (`client.duplicate()`, opened by the first), with one `SUBSCRIBE`
   * per key however many follow it, and an `UNSUBSCRIBE` when the last of them stops.
   */
  async watch(key: string, onWake: () => void): Promise<() => void> {
    checkKey(key);
    if (this.#closed !== undefined) throw new Error('RedisStore: watch() after close()');
    const name = this.#channel(key);
    let channel = this.#channels.get(name);
    if (channel === undefined) {
      const subscriber = this.#subscriberConnection();
      const subscribed = subscriber.subscribe(name);
      const created: Channel = { listeners: new Set(), subscribed };
      channel = created;
      this.#channels.set(name, created);
      // A failed SUBSCRIBE forgets the channel, so that the next watch() tries again instead of awaiting this one.
      subscribed.catch(() => {
        if (this.#channels.get(name) === created && created.listeners.size === 0) this.#channels.delete(name);
      });
    }
    // One function per watch, so a callback given to two watches is removed only by its own stop function.
    const listener = (): void => onWake();
    channel.listeners.add(listener);
    try {
      await channel.subscribed;
    } catch (error) {
      this.#unwatch(name, channel, listener);
      throw error;
    }
    return () => this.#unwatch(name, channel, listener);
  }

  /**
   * Closes the store's subscriber connection, if `watch()` opened one; the client passed in stays connected.
   * Watches stop; later `watch()` calls reject. Safe to call more than once.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#channels.clear();
      const subscriber = this.#subscriber;
      if (subscriber === undefined) return;
      await subscriber.quit().catch(() => subscriber.disconnect());
    })();
    return this.#closed;
  }

  #unwatch(name: string, channel: Channel, listener: () => void): void {
    if (!channel.listeners.delete(listener) || channel.listeners.size > 0 || this.#channels.get(name) !== channel) return;
    this.#channels.delete(name);
    // Commands on one connection run in order, so a watch() of the same key after this subscribes again after it.
    this.#subscriber?.unsubscribe(name).catch(() => undefined);
  }

  #subscriberConnection(): Redis {
    if (this.#subscriber === undefined) {
      const subscriber = this.#client.duplicate();
      subscriber.on('message', (name: string) => {
        const channel = this.#channels.get(name);
        if (channel === undefined) return;
        for (const listener of channel.listeners) listener();
      });
      this.#subscriber = subscriber;
    }
    return this.#subscriber;
  }

  #channel(key: string): string {
    return `${this.#prefix}{${key}}:wake`;
  }

  async #run(command: Script, key: string, args: (string | number)[]): Promise<unknown> {
    checkKey(key);
    const keys = [`${this.#prefix}{${key}}:run`, `${this.#prefix}{${key}}:lease`, `${this.#prefix}{${key}}:events`];
    try {
      return await this.#client.evalsha(command.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return this.#client.eval(command.source, keys.length, ...keys, ...args);
    }
  }
}
