/**
 * The one AsyncLocalStorage that carries the current request's stream through every await, timer and callback of
 * the work it starts, and into no other request.
 */
import { AsyncLocalStorage, AsyncResource } from 'node:async_hooks';
import type { SseStream } from './sse-stream.js';

/**
 * One per process, even when an app loads both the CommonJS and the ES module build (an `import` in one file, a
 * `require()` in another): each copy of this module finds the same storage under this key.
 */
const STORAGE = Symbol.for('express-sse-context.storage.v1');
const storage: AsyncLocalStorage<SseStream> = ((globalThis as Record<symbol, unknown>)[STORAGE] ??=
  new AsyncLocalStorage<SseStream>()) as AsyncLocalStorage<SseStream>;

/**
 * The stream of the request whose work is running now, or `undefined` outside any `sseStream()` route (at startup,
 * in a timer scheduled outside a request, in another request). Code deep inside the work can push to its own
 * client without being handed `res`: `currentStream()?.push({ step: 'search' })`.
 */
export function currentStream(): SseStream | undefined {
  return storage.getStore();
}

/**
 * Runs `fn` with `stream` as the current stream for everything it starts, synchronously or later.
 * @internal
 */
export function runWithStream<T>(stream: SseStream, fn: () => T): T {
  return storage.run(stream, fn);
}

/**
 * The async context this module was loaded in, which belongs to no request. Timers and callbacks the library
 * schedules for itself (heartbeats, store expiry, lease renewals, feed polls, retries) are created in it, so none of
 * them carries the request that happened to schedule it (its `res.sse`, and through it the response) for as long
 * as the timer lives. Shared, like the storage, by the CommonJS and the ES module build.
 */
const LIBRARY_SCOPE_KEY = Symbol.for('express-sse-context.library-scope.v1');
const libraryScope: AsyncResource = ((globalThis as Record<symbol, unknown>)[LIBRARY_SCOPE_KEY] ??= storage.exit(
  () => new AsyncResource('express-sse-context'),
)) as AsyncResource;

/**
 * Runs `fn` (which calls `setTimeout`, `setInterval`, …) outside any request's async context, so what it schedules
 * keeps no finished request alive. The one way the library schedules its own timers.
 * @internal
 */
export function outsideRequests<T>(fn: () => T): T {
  return libraryScope.runInAsyncScope(fn);
}
