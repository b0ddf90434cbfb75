import { createHook } from 'node:async_hooks';

/**
 * The `Timeout`s created while `tracking` is on, until each is cleared (its async resource destroyed). Node's
 * `getActiveResourcesInfo()` lists only ref'd timers, and the stream `unref()`s its heartbeat, so this is what sees the
 * heartbeat itself: turn tracking on in a middleware right before `sseStream()` and off at the start of the route.
 */
export class TimeoutTracker {
  tracking = false;
  created = 0;
  readonly live = new Set<number>();
  readonly #hook = createHook({
    init: (asyncId, type, _trigger, resource) => {
      if (this.tracking && type === 'Timeout' && !isDateHeaderCache(resource)) {
        this.created += 1;
        this.live.add(asyncId);
      }
    },
    destroy: (asyncId) => {
      this.live.delete(asyncId);
    },
  });

  enable(): void {
    this.#hook.enable();
  }

  disable(): void {
    this.#hook.disable();
  }
}

/**
 * Node's http module caches the `Date` header for up to a second with an unref'd timeout (`utcDate()` in
 * node:internal/http), created by whichever response happens to write headers first in that second, including one in
 * `sseStream()`'s `flushHeaders()`. It is Node's, shared by all responses, and clears itself; it is not a stream's timer.
 */
function isDateHeaderCache(resource: unknown): boolean {
  const callback = (resource as { _onTimeout?: unknown })._onTimeout;
  return typeof callback === 'function' && callback.name === 'resetCache';
}
