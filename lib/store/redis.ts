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
 * Needs Redis 6.2 or later (exclusive `XRANGE` starts). On Redis 7 reads are declared read-only (script flags), so a
 * full server or a read-only replica still answers them. What the store does when Redis is down, full or slow:
 * docs/redis-faults.md.
 */
import type { Redis } from 'ioredis';
import { outsideRequests } from '../context.js';
import { checkOptions, describe, optionNames, positiveTimerDelay } from '../options.js';
import { SCRIPTS, type Script } from './redis-scripts.js';
import {
  newRunId,
  storeWarning,
  type OpenedRun,
  type ReadResult,
  type ResumeStore,
  type RunEnd,
  type RunSettings,
  type StoredEvent,
} from './contract.js';

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
  /**
   * Milliseconds the store waits for Redis to answer one call that a request waits for: `open`, `read`, `append`,
   * `end`, `renew`, `abort`, and the `SUBSCRIBE` of `watch` (waiting for a connection to be ready counts). Past it
   * the call rejects with an error that says so, and the request's client gets a `{ type: "error" }` event and an
   * end without `done`, so `EventSource` comes back after its `retry` delay. A command that was never sent (its
   * connection was not ready in time) is dropped; one that was sent may still be carried out after its caller gave
   * up (docs/redis-faults.md says what the store does then). A positive integer; default 5000 (5 seconds).
   */
  timeout?: number;
}

const KNOWN_OPTIONS = optionNames<RedisStoreOptions>({ client: true, prefix: true, timeout: true });

/** What `#deadline` hands the work it bounds: `expired` turns `true` once its caller was given up on. */
interface Call {
  expired: boolean;
  /** Set once the command went to Redis: only then can it still be carried out after its deadline. */
  sent: boolean;
}

/** An append sent to Redis that did not answer within the deadline: a retry of the same bodies awaits it. */
interface Unanswered {
  runId: string;
  bodies: readonly string[];
  reply: Promise<unknown>;
}

function sameBodies(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((body, index) => body === b[index]);
}

/** Redis before 7 does not know `#!lua flags=…`: it fails to compile the script. */
function isFlagsUnsupported(error: unknown): boolean {
  return error instanceof Error && /compiling script|shebang/i.test(error.message);
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
  readonly #timeout: number;
  readonly #channels = new Map<string, Channel>();
  /** Per key, its last append that outlived its deadline. */
  readonly #unanswered = new Map<string, Unanswered>();
  /** Per connection, the wait for it to be ready, shared by every call that needs it. */
  readonly #readiness = new WeakMap<Redis, Promise<void>>();
  #subscriber: Redis | undefined;
  #closed: Promise<void> | undefined;
  /** Cleared when the server turns out to be older than Redis 7: reads are then sent without script flags. */
  #scriptFlags = true;

  /**
   * @throws TypeError naming the option, for a missing or invalid `client`, `prefix` or `timeout`, or an unknown one.
   */
  constructor(options: RedisStoreOptions) {
    checkOptions(options, 'options', KNOWN_OPTIONS, '', 'RedisStore');
    const { client, prefix = 'sse:' } = options;
    if (client === null || typeof client !== 'object' || typeof client.evalsha !== 'function' || typeof client.duplicate !== 'function') {
      throw new TypeError(`client: expected an ioredis client, got ${describe(client)}`);
    }
    if (typeof prefix !== 'string' || /[{}]/.test(prefix)) {
      throw new TypeError(`prefix: expected a string without '{' or '}', got ${describe(prefix)}`);
    }
    this.#client = client;
    this.#prefix = prefix;
    this.#timeout = positiveTimerDelay(options.timeout ?? 5_000, 'timeout');
  }

  async open(key: string, settings: RunSettings): Promise<OpenedRun> {
    const { ttl, lease, maxEvents, replaceEnded = false, replaceLive = false } = settings;
    const runId = newRunId();
    // The run is ours when it has our fresh id, even if the reply says otherwise: ioredis resends a command that was
    // in flight when its connection dropped, and the second time the script finds the run the first one created.
    const opened = (reply: unknown): OpenedRun => {
      const [id, created] = reply as unknown[];
      return { runId: toText(id), created: toNumber(created) === 1 || toText(id) === runId };
    };
    const args = [runId, ttl, lease, maxEvents, replaceLive ? 2 : replaceEnded ? 1 : 0, this.#channel(key)];
    return opened(
      await this.#run('open()', SCRIPTS.open, key, args, {
        // Created after its caller gave up: no one will produce it, so it must not stand in the way of the next open.
        onLate: (reply) => {
          if (opened(reply).created) this.discard(key, runId).catch((error: unknown) => storeWarning('discard() of a run opened too late', error));
        },
      }),
    );
  }

  async append(key: string, runId: string, bodies: readonly string[]): Promise<number | false> {
    checkKey(key);
    // A retry of an append Redis has not answered yet waits for that answer: sending the bodies again would store
    // them twice once both are carried out.
    const earlier = this.#unanswered.get(key);
    const retry = earlier !== undefined && earlier.runId === runId && sameBodies(earlier.bodies, bodies) ? earlier : undefined;
    let sent: Unanswered | undefined = retry;
    const reply = await this.#deadline('append()', (call) => {
      if (retry !== undefined) return retry.reply;
      const entry: Unanswered = { runId, bodies, reply: this.#send(call, SCRIPTS.append, key, [runId, this.#channel(key), ...bodies]) };
      sent = entry;
      return entry.reply;
    }, {
      onExpired: (call) => {
        if (!call.sent || sent === undefined || this.#unanswered.get(key) === sent) return;
        const entry = sent;
        this.#unanswered.set(key, entry);
        const forget = (): void => {
          if (this.#unanswered.get(key) === entry) this.#unanswered.delete(key);
        };
        // Kept for one more deadline after its answer, for the retry that may still come; at once if it failed.
        entry.reply.then(() => outsideRequests(() => setTimeout(forget, this.#timeout)).unref(), forget);
      },
    });
    if (this.#unanswered.get(key) === sent) this.#unanswered.delete(key);
    const seq = toNumber(reply);
    return seq < 0 ? false : seq;
  }

  async renew(key: string, runId: string): Promise<boolean> {
    return toNumber(await this.#run('renew()', SCRIPTS.renew, key, [runId])) === 1;
  }

  async end(key: string, runId: string, reason: RunEnd): Promise<boolean> {
    return toNumber(await this.#run('end()', SCRIPTS.end, key, [runId, reason, this.#channel(key)])) === 1;
  }

  async abort(key: string): Promise<boolean> {
    return toNumber(await this.#run('abort()', SCRIPTS.abort, key, [this.#channel(key)])) === 1;
  }

  /**
   * Removes run `runId` of `key` as if it had never been opened, unless it ended other than `'lost'`: its producer
   * gave up before any of its events was stored, so the next `open()` creates the key's run anew. Its followers are
   * woken and find it gone. Resolves `false` when there was nothing to remove.
   */
  async discard(key: string, runId: string): Promise<boolean> {
    return toNumber(await this.#run('discard()', SCRIPTS.discard, key, [runId, this.#channel(key)])) === 1;
  }

  /**
   * Reads without writing (a read-only script on Redis 7), so a full Redis or a read-only replica still answers.
   * A run whose lease lapsed reads as ended `'lost'`; recording that end is a separate write, sent after the read
   * without waiting for it: when Redis refuses it, every read still reports the same end.
   */
  async read(key: string, after: number, limit: number): Promise<ReadResult> {
    if (!Number.isSafeInteger(after) || after < 0) throw new RangeError(`after: expected a non-negative integer, got ${after}`);
    if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`limit: expected a positive integer, got ${limit}`);
    const reply = (await this.#run('read()', SCRIPTS.read, key, [after, limit])) as unknown[];
    const runId = toText(reply[0]);
    const end = toText(reply[2]);
    const events: StoredEvent[] = (reply[4] as unknown[][]).map(([seq, frame]) => ({ seq: toNumber(seq), frame: toText(frame) }));
    if (toNumber(reply[5]) === 1) {
      this.#run('read() recording a lapsed lease', SCRIPTS.lose, key, [runId, this.#channel(key)]).catch((error: unknown) =>
        storeWarning('read() recording a lapsed lease', error),
      );
    }
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
   * per key however many follow it, and an `UNSUBSCRIBE` when the last of them stops. The `SUBSCRIBE` waits for that
   * connection to be ready (so it works with `enableOfflineQueue: false`), within `timeout`.
   */
  async watch(key: string, onWake: () => void): Promise<() => void> {
    checkKey(key);
    if (this.#closed !== undefined) throw new Error('RedisStore: watch() after close()');
    const name = this.#channel(key);
    let channel = this.#channels.get(name);
    if (channel === undefined) {
      const subscriber = this.#subscriberConnection();
      const created: Channel = { listeners: new Set(), subscribed: Promise.resolve() };
      const subscribed = this.#deadline(
        'watch()',
        async (call) => {
          await this.#ready(subscriber);
          // Given up on meanwhile: a SUBSCRIBE now would outlive every watch of the key.
          if (call.expired || this.#channels.get(name) !== created) return false;
          await subscriber.subscribe(name);
          return true;
        },
        {
          // A SUBSCRIBE answered after its watch gave up: unless another watch of the key wants it, take it back.
          onLate: (sent) => {
            if (sent && !this.#channels.has(name)) subscriber.unsubscribe(name).catch(() => undefined);
          },
        },
      );
      created.subscribed = subscribed;
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
      // Without a listener, ioredis prints every failed reconnection of an outage to the console.
      let failing = false;
      subscriber.on('error', (error: unknown) => {
        if (!failing) storeWarning('subscriber connection (client.duplicate())', error);
        failing = true;
      });
      subscriber.on('ready', () => (failing = false));
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

  /** Runs `command` on the run of `key`, within the deadline. */
  #run(operation: string, command: Script, key: string, args: (string | number)[], late?: { onLate?: (reply: unknown) => void }): Promise<unknown> {
    checkKey(key);
    return this.#deadline(operation, (call) => this.#send(call, command, key, args), late);
  }

  async #send(call: Call, command: Script, key: string, args: (string | number)[]): Promise<unknown> {
    await this.#ready(this.#client);
    // Not sent at all when the connection was not ready in time: nothing of it can happen after its caller gave up.
    if (call.expired) throw new Error('RedisStore: not sent, the deadline passed');
    call.sent = true;
    const flagged = command.unflagged !== undefined && this.#scriptFlags;
    const script = command.unflagged === undefined || flagged ? command : command.unflagged;
    const keys = [`${this.#prefix}{${key}}:run`, `${this.#prefix}{${key}}:lease`, `${this.#prefix}{${key}}:events`];
    try {
      try {
        return await this.#client.evalsha(script.sha, keys.length, ...keys, ...args);
      } catch (error) {
        if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
        return await this.#client.eval(script.source, keys.length, ...keys, ...args);
      }
    } catch (error) {
      if (!flagged || !isFlagsUnsupported(error)) throw error;
      this.#scriptFlags = false;
      return this.#send(call, command, key, args);
    }
  }

  /**
   * Resolves once `connection` is ready for commands, or has ended (a command then fails at once): with
   * `enableOfflineQueue: false`, ioredis rejects a command sent before. One wait per connection, however many calls.
   */
  #ready(connection: Redis): Promise<void> {
    if (connection.status === 'ready' || connection.status === 'end') return Promise.resolve();
    let ready = this.#readiness.get(connection);
    if (ready === undefined) {
      ready = new Promise<void>((resolve) => {
        const done = (): void => {
          connection.off('ready', done);
          connection.off('end', done);
          this.#readiness.delete(connection);
          resolve();
        };
        connection.on('ready', done);
        connection.on('end', done);
      });
      this.#readiness.set(connection, ready);
      // A client created with `lazyConnect` connects on its first command, which is not sent before it is ready.
      if (connection.status === 'wait') connection.connect().catch(() => undefined);
    }
    return ready;
  }

  /**
   * Settles as `work` does, or rejects once `timeout` ms passed first. `onExpired` is called then; `onLate` with the
   * answer, if `work` fulfils after that.
   */
  #deadline<T>(
    operation: string,
    work: (call: Call) => Promise<T>,
    hooks: { onExpired?: (call: Call) => void; onLate?: (value: T) => void } = {},
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const call: Call = { expired: false, sent: false };
      const timer = outsideRequests(() => setTimeout(() => {
        call.expired = true;
        reject(new Error(`RedisStore: ${operation} had no answer from Redis within ${this.#timeout} ms`));
        hooks.onExpired?.(call);
      }, this.#timeout));
      timer.unref();
      work(call).then(
        (value) => {
          clearTimeout(timer);
          if (call.expired) hooks.onLate?.(value);
          else resolve(value);
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }
}
