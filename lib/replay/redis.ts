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
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { newRunId, type OpenedRun, type ReadResult, type ResumeStore, type RunEnd, type RunSettings, type StoredEvent } from './store.js';

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

/**
 * The share of `lease` the lease key lives for without renewal. The producer renews every `lease * 0.2` ms and
 * followers poll every `lease * 0.25` ms, so a dead producer's followers learn of it within about `0.85 * lease`,
 * and a live one has two renewals' margin (at 0.2 and 0.4 × `lease`) before its lease lapses.
 */
const LEASE_SHARE = 0.6;

/**
 * Shared by the scripts that end a run. KEYS: run, lease, events. `finish(tail, reason, ttl, channel)` writes the end
 * entry after the last event (the end is not an event: `seq` stays), keeps the run `ttl` ms more and wakes followers.
 */
const FINISH = `
local function finish(tail, reason, ttl, channel)
  redis.call('XADD', KEYS[3], '0-' .. (tail + 1), 'e', reason)
  redis.call('HSET', KEYS[1], 'ended', reason)
  redis.call('DEL', KEYS[2])
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
  redis.call('PUBLISH', channel, '')
end
`;

/**
 * ARGV: runId, ttl, lease, maxEvents, replaceEnded ('1' or '0'), channel. Replies {runId, 1} when it created the
 * run, {existing runId, 0} otherwise. With replaceEnded, a run that is over (ended, or its lease lapsed) is replaced,
 * and its followers are woken to find that out. The run hash lives 2 × ttl: the run may go on for ttl, and its
 * events are kept ttl after.
 */
const OPEN = `
local existing = redis.call('HMGET', KEYS[1], 'id', 'ended')
if existing[1] then
  local over = existing[2] or redis.call('GET', KEYS[2]) ~= existing[1]
  if ARGV[5] ~= '1' or not over then return {existing[1], 0} end
end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'ttl', ARGV[2], 'lease', ARGV[3], 'max', ARGV[4], 'seq', 0)
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[2]))
redis.call('SET', KEYS[2], ARGV[1], 'PX', math.ceil(tonumber(ARGV[3]) * ${LEASE_SHARE}))
if existing[1] then redis.call('PUBLISH', ARGV[6], '') end
return {ARGV[1], 1}
`;

/**
 * ARGV: runId, channel, bodies…. Replies the position of the last body appended, or -1 when runId does not hold
 * the lease. The stream expires with the run hash, whose lifetime was fixed by open.
 */
const APPEND = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] or redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return -1 end
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq'))
if #ARGV < 3 then return seq end
local max = redis.call('HGET', KEYS[1], 'max')
for i = 3, #ARGV do
  seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', max, '0-' .. seq, 'f', 'id: ' .. ARGV[1] .. '.' .. seq .. '\\n' .. ARGV[i])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
redis.call('PUBLISH', ARGV[2], '')
return seq
`;

/**
 * ARGV: runId. Replies 1 when runId held the lease (now renewed), else 0. A live run's keys are kept 2 × ttl from
 * its last renewal, so one that lives long (a channel never ends) does not expire under its producers.
 */
const RENEW = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] or redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
local run = redis.call('HMGET', KEYS[1], 'lease', 'ttl')
redis.call('PEXPIRE', KEYS[2], math.ceil(tonumber(run[1]) * ${LEASE_SHARE}))
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(run[2]))
redis.call('PEXPIRE', KEYS[3], 2 * tonumber(run[2]))
return 1
`;

/** ARGV: runId, reason, channel. Replies 1 when runId held the lease (the run is now over), else 0. */
const END = `${FINISH}
if redis.call('GET', KEYS[2]) ~= ARGV[1] or redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
local run = redis.call('HMGET', KEYS[1], 'seq', 'ttl')
finish(tonumber(run[1]), ARGV[2], run[2], ARGV[3])
return 1
`;

/**
 * ARGV: channel. Replies 1 when a live run (not ended, its lease held) was ended as 'aborted', else 0. A run whose
 * lease lapsed is not live: it is ended as 'lost', as a read would.
 */
const ABORT = `${FINISH}
local run = redis.call('HMGET', KEYS[1], 'id', 'seq', 'ttl', 'ended')
if not run[1] or run[4] then return 0 end
if redis.call('GET', KEYS[2]) ~= run[1] then
  finish(tonumber(run[2]), 'lost', run[3], ARGV[1])
  return 0
end
finish(tonumber(run[2]), 'aborted', run[3], ARGV[1])
return 1
`;

/**
 * ARGV: after, limit, channel. Replies {runId, tail, end, missed, {{seq, frame}, …}}, with '' for no run and for no
 * end (RESP3 would turn a Lua false into a boolean, RESP2 into a nil: an empty string reads the same in both).
 * A live run whose lease lapsed is ended as 'lost' first, durably, so every follower reads the same end.
 * Events at or below tail - max are not returned even while an approximate XADD MAXLEN still keeps them, so what
 * a follower sees does not depend on how Redis trims.
 */
const READ = `${FINISH}
local run = redis.call('HMGET', KEYS[1], 'id', 'seq', 'ttl', 'max', 'ended')
local id = run[1]
if not id then return {'', 0, '', 0, {}} end
local tail = tonumber(run[2])
local ended = run[5]
if not ended and redis.call('GET', KEYS[2]) ~= id then
  ended = 'lost'
  finish(tail, ended, run[3], ARGV[3])
end
local after = tonumber(ARGV[1])
local first = tail - tonumber(run[4]) + 1
local oldest = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)[1]
if oldest and oldest[2][1] == 'f' then
  local kept = tonumber(string.sub(oldest[1], 3))
  if kept > first then first = kept end
else
  first = tail + 1
end
local start = after
if first - 1 > start then start = first - 1 end
local events = {}
local last = start
if start < tail then
  for _, entry in ipairs(redis.call('XRANGE', KEYS[3], '(0-' .. start, '+', 'COUNT', ARGV[2])) do
    if entry[2][1] == 'f' then
      last = tonumber(string.sub(entry[1], 3))
      events[#events + 1] = {last, entry[2][2]}
    end
  end
end
local missed = first - after - 1
if missed < 0 then missed = 0 end
if last < tail or not ended then ended = '' end
return {id, tail, ended, missed, events}
`;

/** A script and its SHA1, sent with EVALSHA and, the first time a server lacks it, EVAL. */
interface Script {
  source: string;
  sha: string;
}

function script(source: string): Script {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

const SCRIPTS = {
  open: script(OPEN),
  append: script(APPEND),
  renew: script(RENEW),
  end: script(END),
  abort: script(ABORT),
  read: script(READ),
};

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

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : value === null ? 'null' : typeof value;
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
    const { ttl, lease, maxEvents, replaceEnded = false } = settings;
    const reply = (await this.#run(SCRIPTS.open, key, [newRunId(), ttl, lease, maxEvents, replaceEnded ? 1 : 0, this.#channel(key)])) as unknown[];
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
