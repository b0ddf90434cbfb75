/**
 * Shared instruments of the reliability suite: a forced garbage collection without `--expose-gc` on the command line,
 * the process's active resources and listener counts as comparable figures, a seeded random generator (so a failing
 * run can be replayed with the printed seed), and a Timeout tracker built on async_hooks.
 */
import { randomInt } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import v8 from 'node:v8';
import vm from 'node:vm';
import { loopTurns } from '../helpers/deferred';

export { TimeoutTracker } from '../helpers/timers';

v8.setFlagsFromString('--expose-gc');
/**
 * V8's `gc()`. The flag can be turned on at run time (jest workers are not started with it, and `NODE_OPTIONS` does
 * not accept it), and a context created afterwards gets the function as a global.
 */
const rawGc = vm.runInNewContext('gc') as () => void;

/** Full collections, with event-loop turns between them so FinalizationRegistry callbacks and weak callbacks run. */
export async function collectGarbage(rounds = 3): Promise<void> {
  for (let i = 0; i < rounds; i += 1) {
    rawGc();
    await loopTurns(2);
  }
}

export const MIB = 1024 * 1024;
export const KIB = 1024;

/** `process.getActiveResourcesInfo()` counted by kind, e.g. `{ TCPSocketWrap: 3, Timeout: 1 }`. */
export function activeResources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) counts[kind] = (counts[kind] ?? 0) + 1;
  return counts;
}

/** Listener count per event name of an emitter, e.g. `{ connection: 1, request: 1 }`. */
export function listenerCounts(emitter: EventEmitter | NodeJS.Process): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of emitter.eventNames()) counts[String(name)] = emitter.listenerCount(name);
  return counts;
}

/** The kinds whose count is higher in `after` than in `before`, with both figures. */
export function grownKinds(before: Record<string, number>, after: Record<string, number>): Record<string, [number, number]> {
  const grown: Record<string, [number, number]> = {};
  for (const [kind, count] of Object.entries(after)) if (count > (before[kind] ?? 0)) grown[kind] = [before[kind] ?? 0, count];
  return grown;
}

/** mulberry32: a small, fast, seedable generator; `next()` is uniform in [0, 1). */
export function seededRandom(seed: number): { seed: number; next(): number; int(maxExclusive: number): number } {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { seed, next, int: (maxExclusive) => Math.floor(next() * maxExclusive) };
}

/** The seed from `envName` when set (to replay a failure), a fresh random one otherwise. */
export function seedFrom(envName: string): number {
  const fromEnv = Number(process.env[envName]);
  return Number.isSafeInteger(fromEnv) && fromEnv > 0 ? fromEnv : randomInt(1, 2 ** 31);
}

/** Formats a byte count as MiB with two decimals. */
export const mib = (bytes: number): string => `${(bytes / MIB).toFixed(2)} MiB`;
