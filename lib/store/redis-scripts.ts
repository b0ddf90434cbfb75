/**
 * The Lua scripts of `RedisStore`, one per store operation, each atomic and one round trip (a read that finds a
 * lapsed lease is followed by LOSE, best-effort). KEYS are always the
 * run's hash, its lease and its event stream (see `redis.ts` for the layout).
 * @internal
 * @module
 */
import { createHash } from 'node:crypto';
import { EVENT_ID_SEPARATOR } from '../encode.js';

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
 * ARGV: runId, ttl, lease, maxEvents, replace ('0': never, '1': a run that is over, '2': whatever run), channel. Replies
 * {runId, 1} when it created the run, {existing runId, 0} otherwise. A replaced run's lease goes to the new one, and
 * its followers are woken to find that out. The run hash lives 2 × ttl: the run may go on for ttl, and its
 * events are kept ttl after.
 */
const OPEN = `
local existing = redis.call('HMGET', KEYS[1], 'id', 'ended')
if existing[1] then
  local over = existing[2] or redis.call('GET', KEYS[2]) ~= existing[1]
  if ARGV[5] == '0' or (ARGV[5] == '1' and not over) then return {existing[1], 0} end
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
  -- The frame storedFrame() in encode.ts builds: the id line, then the body.
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', max, '0-' .. seq, 'f', 'id: ' .. ARGV[1] .. '${EVENT_ID_SEPARATOR}' .. seq .. '\\n' .. ARGV[i])
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
 * ARGV: after, limit. Replies {runId, tail, end, missed, {{seq, frame}, …}, lapsed}, with '' for no run and for no
 * end (RESP3 would turn a Lua false into a boolean, RESP2 into a nil: an empty string reads the same in both).
 * Read-only (`flags=no-writes` on Redis 7), so it answers on a full server (`maxmemory` with `noeviction`) and on a
 * read-only replica. A live run whose lease lapsed reads as ended 'lost' (that end is final: no one can renew a
 * lapsed lease, so every follower reads the same), and `lapsed` is 1 so that the caller records the end with LOSE, a
 * separate, best-effort write.
 * Events at or below tail - max are not returned even while an approximate XADD MAXLEN still keeps them, so what
 * a follower sees does not depend on how Redis trims.
 */
const READ = `
local run = redis.call('HMGET', KEYS[1], 'id', 'seq', 'max', 'ended')
local id = run[1]
if not id then return {'', 0, '', 0, {}, 0} end
local tail = tonumber(run[2])
local ended = run[4]
local lapsed = 0
if not ended and redis.call('GET', KEYS[2]) ~= id then
  ended = 'lost'
  lapsed = 1
end
local after = tonumber(ARGV[1])
local first = tail - tonumber(run[3]) + 1
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
return {id, tail, ended, missed, events, lapsed}
`;

/**
 * ARGV: runId, channel. Records the end 'lost' of run runId when its lease lapsed without an end (what READ reported
 * as `lapsed`), durably, and wakes its followers. Replies 1 when it recorded it, 0 when there was nothing to record.
 */
const LOSE = `${FINISH}
local run = redis.call('HMGET', KEYS[1], 'id', 'seq', 'ttl', 'ended')
if run[1] ~= ARGV[1] or run[4] or redis.call('GET', KEYS[2]) == run[1] then return 0 end
finish(tonumber(run[2]), 'lost', run[3], ARGV[2])
return 1
`;

/**
 * ARGV: runId, channel. Removes run runId, as if it had never been opened, unless it ended other than 'lost' (its
 * followers then read that end): its producer gave up before any of its events was stored. Wakes its followers,
 * who find it gone. Only reads and deletes, so it works on a full server. Replies 1 when it removed the run, else 0.
 */
const DISCARD = `
local run = redis.call('HMGET', KEYS[1], 'id', 'ended')
if run[1] ~= ARGV[1] or (run[2] and run[2] ~= 'lost') then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('PUBLISH', ARGV[2], '')
return 1
`;

/**
 * A script and its SHA1, sent with EVALSHA and, the first time a server lacks it, EVAL.
 * @internal
 */
export interface Script {
  source: string;
  sha: string;
  /**
   * For a script declared read-only (`#!lua flags=no-writes`, Redis 7): the same script without the declaration,
   * for Redis 6.2, which does not know script flags (and, without them, lets a script run that only reads).
   */
  unflagged?: Script;
}

function script(source: string): Script {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

function readOnlyScript(source: string): Script {
  return { ...script(`#!lua flags=no-writes\n${source}`), unflagged: script(source) };
}

/** @internal */
export const SCRIPTS = {
  open: script(OPEN),
  append: script(APPEND),
  renew: script(RENEW),
  end: script(END),
  abort: script(ABORT),
  read: readOnlyScript(READ),
  lose: script(LOSE),
  discard: script(DISCARD),
};
