/**
 * The store resumable routes and channels use when given none: one `MemoryStore` per process.
 */
import { MemoryStore } from './memory.js';
import type { ResumeStore } from './contract.js';

const DEFAULT_STORE = Symbol.for('express-sse-context.memory-store.v1');
/**
 * Shared by the CommonJS and the ES module build when an app loads both, so a run started through one is found
 * through the other.
 * @internal
 */
export const defaultStore: ResumeStore = ((globalThis as Record<symbol, unknown>)[DEFAULT_STORE] ??=
  new MemoryStore()) as ResumeStore;
