/**
 * `sseStream({ resume })`: the options, and what a request for a key does: start the run, or follow the one there is.
 */
import type { Request } from 'express';
import { LIBRARY_ERRORS, type Serializer } from '../encode.js';
import type { EventShapes } from '../event-shapes.js';
import { checkOptions, describe, nonNegativeInteger, optionNames, positiveTimerDelay } from '../options.js';
import type { FrameSink, SseStream } from '../sse-stream.js';
import { follow } from '../feed/follow.js';
import { checkStore, resumePosition, storeWarning, type ResumeStore, type RunSettings } from '../store/contract.js';
import { defaultStore } from '../store/default.js';
import { runKey, RunStream } from './run.js';

/** Options of `sseStream({ resume })`. */
export interface ResumeOptions {
  /**
   * Names the run a request belongs to, e.g. `(req) => req.params.runId`. Requests with the same key share one run:
   * the first runs the route, the others follow it. Anyone who can produce a key can read its run, so derive it
   * from something the client is allowed to see (and check that before `sseStream()`). A non-empty string;
   * a function that throws, or returns anything else, sends the request to the error middleware.
   */
  key: (req: Request) => string;
  /**
   * Where the events are kept. Default: one in-memory store per process (`MemoryStore`); for many instances,
   * `RedisStore` from `express-sse-context/redis`.
   */
  store?: ResumeStore;
  /**
   * Milliseconds a run may go on (it is then stopped, and its clients get a `{ type: "error" }` event) and how long
   * its events are kept after it ends, for clients that come back late. Default: 600000 (10 minutes).
   */
  ttl?: number;
  /**
   * Events kept per run; past it the oldest are dropped, and a client that comes back for them first gets
   * `{ type: "missed", count }`. Default: 10000.
   */
  maxEvents?: number;
  /**
   * Milliseconds after which the followers of a producer that died (its process killed) get a `{ type: "error" }`
   * event and their streams end. The producer renews its lease five times per period. Default: 5000.
   */
  lease?: number;
}

/**
 * `resume` as validated once by `sseStream()`.
 * @internal
 */
export interface ResolvedResume {
  keyOf: (req: Request) => string;
  store: ResumeStore;
  settings: RunSettings;
  serialize: Serializer;
  shapes: EventShapes;
}

const KNOWN_OPTIONS = optionNames<ResumeOptions>({ key: true, store: true, ttl: true, maxEvents: true, lease: true });

/**
 * @throws TypeError naming the option (`resume.ttl`, …) for a bad value.
 * @internal
 */
export function resolveResume(options: ResumeOptions, serialize: Serializer, shapes: EventShapes): ResolvedResume {
  checkOptions(options, 'resume', KNOWN_OPTIONS, 'resume.', 'resume');
  const { key, store = defaultStore } = options;
  if (typeof key !== 'function') throw new TypeError(`resume.key: expected a function of the request, got ${describe(key)}`);
  checkStore(store, 'resume.store');
  const ttl = positiveTimerDelay(options.ttl ?? 600_000, 'resume.ttl');
  const lease = positiveTimerDelay(options.lease ?? 5_000, 'resume.lease');
  const maxEvents = nonNegativeInteger(options.maxEvents ?? 10_000, 'resume.maxEvents');
  if (maxEvents === 0) throw new TypeError('resume.maxEvents: must be at least 1');
  return {
    keyOf(req) {
      const value: unknown = key(req);
      if (typeof value !== 'string' || value === '') {
        throw new TypeError(`resume.key: expected the function to return a non-empty string, got ${describe(value)}`);
      }
      return value;
    },
    store,
    settings: { ttl, lease, maxEvents },
    serialize,
    shapes,
  };
}

/**
 * Serves one request of a resumable route: opens the run for `key`, starts the route (`startRoute`) when this
 * request created it, and makes the response follow the run from the client's `Last-Event-ID`.
 * @internal
 */
export async function serveResumable(
  resume: ResolvedResume,
  key: string,
  response: FrameSink,
  lastEventId: string | undefined,
  startRoute: (run: SseStream) => void,
): Promise<void> {
  const { store, settings } = resume;
  const storeKey = runKey(key);
  let opened;
  try {
    opened = await store.open(storeKey, settings);
  } catch (error) {
    storeWarning('open()', error);
    response.writeError(LIBRARY_ERRORS.unavailable);
    // Without `done`: the browser comes back later, and the run starts (or resumes) then.
    await response.closeForReconnect();
    return;
  }
  if (opened.created) startRoute(new RunStream(store, storeKey, opened.runId, settings, resume, lastEventId));
  const target = { store, key: storeKey, runId: opened.runId, poll: Math.max(1, Math.floor(settings.lease / 4)) };
  await follow(target, response, resumePosition(lastEventId, opened.runId));
}
