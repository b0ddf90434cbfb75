/**
 * `sseStream({ resume })`: the options, and what a request for a key does: start the run, or follow the one there is.
 */
import type { Request } from 'express';
import { LIBRARY_ERRORS, type Serializer } from '../encode.js';
import type { EventShapes } from '../event-shapes.js';
import { checkOptions, describe, nonNegativeInteger, optionNames, positiveTimerDelay } from '../options.js';
import type { FrameSink, SseStream } from '../sse-stream.js';
import { follow } from '../feed/follow.js';
import {
  asStoreFull,
  checkStore,
  resumePosition,
  storeWarning,
  type ResumeStore,
  type RunSettings,
  type StoreFullError,
} from '../store/contract.js';
import { defaultStore } from '../store/default.js';
import { runKey, RunStream, stopLocalRun } from './run.js';

/**
 * What a request of a resumable route does with its key's run: `'join'` follows it, and runs the route when there is
 * none; `'start'` always runs the route as a new run (an ended one is replaced, a live one is stopped first);
 * `'follow'` never runs the route, and answers 204 when there is no live run.
 */
export type ResumeMode = 'join' | 'start' | 'follow';

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
  /**
   * What a request does with its key's run. `'join'`: follows the run, and runs the route when there is none (a
   * finished run is replayed for `ttl`). `'start'`: always runs the route as a new run of the key; an ended run is
   * replaced, a live one is stopped first (its signal aborts, as with `abortRun()`), and its clients move on to the
   * new run from its start: for a chat's `POST`, where each message gets its own answer. `'follow'`: never runs the
   * route; follows the key's live run, and answers `204 No Content` before any stream header when there is none
   * (which also stops `EventSource` from reconnecting): for the AI SDK's `GET /api/chat/:id/stream`.
   * Default: `'join'`.
   */
  mode?: ResumeMode;
}

/**
 * `resume` as validated once by `sseStream()`.
 * @internal
 */
export interface ResolvedResume {
  keyOf: (req: Request) => string;
  store: ResumeStore;
  settings: RunSettings;
  mode: ResumeMode;
  serialize: Serializer;
  shapes: EventShapes;
}

/**
 * What `openRun()` found for a request: a run to serve, no live run to follow (`'follow'` mode: 204), a store that
 * is full (503), or a store that failed.
 * @internal
 */
export type RunOpening =
  | { kind: 'run'; runId: string; created: boolean }
  | { kind: 'none' }
  | { kind: 'full'; error: StoreFullError }
  | { kind: 'failed' };

const MODES: readonly unknown[] = ['join', 'start', 'follow'];
/** Opens a `'start'` request makes when a store ignores `replaceLive`: abort the live run, open again. */
const START_TRIES = 3;

const KNOWN_OPTIONS = optionNames<ResumeOptions>({ key: true, store: true, ttl: true, maxEvents: true, lease: true, mode: true });

/**
 * @throws TypeError naming the option (`resume.ttl`, …) for a bad value.
 * @internal
 */
export function resolveResume(options: ResumeOptions, serialize: Serializer, shapes: EventShapes): ResolvedResume {
  checkOptions(options, 'resume', KNOWN_OPTIONS, 'resume.', 'resume');
  const { key, store = defaultStore, mode = 'join' } = options;
  if (!MODES.includes(mode)) throw new TypeError(`resume.mode: expected one of 'join', 'start', 'follow', got ${describe(mode)}`);
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
    mode,
    serialize,
    shapes,
  };
}

/**
 * Opens the key's run for one request, before anything is written to its response, as its `mode` says.
 * @internal
 */
export async function openRun(resume: ResolvedResume, key: string): Promise<RunOpening> {
  const { store, settings, mode } = resume;
  const storeKey = runKey(key);
  try {
    if (mode === 'follow') {
      // Positioned past any tail: one round trip tells whether the key has a run and whether it is over.
      const found = await store.read(storeKey, Number.MAX_SAFE_INTEGER, 1);
      return found.runId === undefined || found.end !== undefined ? { kind: 'none' } : { kind: 'run', runId: found.runId, created: false };
    }
    if (mode === 'join') return { kind: 'run', ...(await store.open(storeKey, settings)) };
    for (let attempt = 1; ; attempt += 1) {
      const opened = await store.open(storeKey, { ...settings, replaceEnded: true, replaceLive: true });
      if (opened.created || attempt === START_TRIES) {
        // The run this one replaced stops at once when this process produced it; elsewhere, on its next append.
        if (opened.created) stopLocalRun(store, storeKey);
        return { kind: 'run', ...opened };
      }
      await store.abort(storeKey);
      stopLocalRun(store, storeKey);
    }
  } catch (error) {
    const full = asStoreFull(error);
    if (full !== undefined) return { kind: 'full', error: full };
    storeWarning(mode === 'follow' ? 'read()' : 'open()', error);
    return { kind: 'failed' };
  }
}

/**
 * Serves one request of a resumable route once `openRun()` found a run (or failed): starts the route
 * (`startRoute`) when this request created the run, and makes the response follow the run from the client's
 * `Last-Event-ID`, and on to the runs that replace it.
 * @internal
 */
export async function serveRun(
  resume: ResolvedResume,
  key: string,
  opening: Exclude<RunOpening, { kind: 'none' | 'full' }>,
  response: FrameSink,
  lastEventId: string | undefined,
  startRoute: (run: SseStream) => void,
): Promise<void> {
  if (opening.kind === 'failed') {
    response.writeError(LIBRARY_ERRORS.unavailable);
    // Without `done`: the browser comes back later, and the run starts (or resumes) then.
    await response.closeForReconnect();
    return;
  }
  const { store, settings } = resume;
  const storeKey = runKey(key);
  if (opening.created) startRoute(new RunStream(store, storeKey, opening.runId, settings, resume, lastEventId));
  const poll = Math.max(1, Math.floor(settings.lease / 4));
  let runId: string | undefined = opening.runId;
  let from = resumePosition(lastEventId, runId);
  while (runId !== undefined && !response.closed) {
    runId = await follow({ store, key: storeKey, runId, poll }, response, from);
    from = 0;
  }
}
