/**
 * Every stream open in this process: how many there are, and a way to end them all when the server shuts down.
 */
import { nonNegativeInteger } from './options.js';

/**
 * What `closeAllStreams()` asks of an open stream: to end with a farewell instead of its `done` terminator.
 * @internal
 */
export interface ShutdownTarget {
  shutdown(data: unknown, retry: number | undefined): Promise<void>;
}

const OPEN_STREAMS = Symbol.for('express-sse-context.open-streams.v1');
/**
 * Streams add themselves when they open and leave when they close. Shared, like the async context, by the CommonJS
 * and the ES module build when an app loads both.
 * @internal
 */
export const openStreams: Set<ShutdownTarget> = ((globalThis as Record<symbol, unknown>)[OPEN_STREAMS] ??=
  new Set<ShutdownTarget>()) as Set<ShutdownTarget>;

/** Options of `closeAllStreams()`. */
export interface CloseAllOptions {
  /** A last event for every client, e.g. `{ type: 'shutdown' }`. Default: none. */
  data?: unknown;
  /** Milliseconds the browser should wait before it reconnects (to another instance), sent as `retry:` (SSE only). Default: none. */
  retry?: number;
  /**
   * Milliseconds over which the reconnections are spread: each client gets its own `retry`, drawn uniformly from the
   * integers of `[retry, retry + jitter]`, so thousands of clients do not come back to the remaining instances in
   * the same instant. `0` sends every client the same `retry`. Needs `retry`. Default: equal to `retry`.
   */
  jitter?: number;
}

/** The number of `sseStream()` streams open in this process now: a gauge for metrics. */
export function openStreamCount(): number {
  return openStreams.size;
}

/**
 * Ends every open stream cleanly, for a graceful shutdown: each client gets a `retry` hint (spread over
 * `[retry, retry + jitter]`, so reconnections arrive over a window) and the `data` event if given (not the `done`
 * terminator, so `EventSource` reconnects, to a healthy instance), its signal aborts with a
 * shutdown reason (`closeReason` `'shutdown'`), and `server.close()` can then finish. Resolves once every response
 * has finished (or its client was dropped).
 *
 * @example
 * process.on('SIGTERM', async () => {
 *   await closeAllStreams({ data: { type: 'shutdown' }, retry: 1000, jitter: 4000 });
 *   server.close();
 * });
 * @throws TypeError naming the option for a `retry` or `jitter` that is not a non-negative integer, a `jitter`
 * without `retry`, or a `retry + jitter` past `Number.MAX_SAFE_INTEGER`.
 */
export async function closeAllStreams(options: CloseAllOptions = {}): Promise<void> {
  const { data, retry } = options;
  if (retry === undefined) {
    if (options.jitter !== undefined) throw new TypeError('jitter: needs retry, the delay it spreads');
    await Promise.all(Array.from(openStreams, (stream) => stream.shutdown(data, undefined)));
    return;
  }
  nonNegativeInteger(retry, 'retry');
  const jitter = nonNegativeInteger(options.jitter ?? retry, 'jitter');
  if (!Number.isSafeInteger(retry + jitter)) throw new TypeError(`jitter: retry + jitter must be a safe integer, got ${retry} + ${jitter}`);
  await Promise.all(Array.from(openStreams, (stream) => stream.shutdown(data, retry + Math.floor(Math.random() * (jitter + 1)))));
}
