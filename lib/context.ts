/**
 * The one AsyncLocalStorage that carries the current request's stream through every await, timer and callback of
 * the work it starts, and into no other request.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
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
