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
}

/** The number of `sseStream()` streams open in this process now: a gauge for metrics. */
export function openStreamCount(): number {
  return openStreams.size;
}

/**
 * Ends every open stream cleanly, for a graceful shutdown: each client gets the `retry` hint and the `data` event if
 * given (not the `done` terminator, so `EventSource` reconnects, to a healthy instance), its signal aborts with a
 * shutdown reason (`closeReason` `'shutdown'`), and `server.close()` can then finish. Resolves once every response
 * has finished (or its client was dropped).
 *
 * @example
 * process.on('SIGTERM', async () => {
 *   await closeAllStreams({ data: { type: 'shutdown' }, retry: 1000 });
 *   server.close();
 * });
 * @throws TypeError naming the option for a `retry` that is not a non-negative integer.
 */
export async function closeAllStreams(options: CloseAllOptions = {}): Promise<void> {
  const { data, retry } = options;
  if (retry !== undefined) nonNegativeInteger(retry, 'retry');
  await Promise.all(Array.from(openStreams, (stream) => stream.shutdown(data, retry)));
}
