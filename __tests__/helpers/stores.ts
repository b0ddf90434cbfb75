/**
 * A real store with some of its methods wrapped: how the tests count what a store is asked, or make it fail, while
 * every other call reaches the real thing.
 */
import type { ResumeStore } from '../../lib';

export function wrapStore(inner: ResumeStore, overrides: Partial<ResumeStore>): ResumeStore {
  return {
    open: (key, settings) => inner.open(key, settings),
    append: (key, runId, bodies) => inner.append(key, runId, bodies),
    renew: (key, runId) => inner.renew(key, runId),
    end: (key, runId, reason) => inner.end(key, runId, reason),
    abort: (key) => inner.abort(key),
    read: (key, after, limit) => inner.read(key, after, limit),
    watch: (key, onWake) => inner.watch(key, onWake),
    ...overrides,
  };
}
