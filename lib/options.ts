/**
 * The checks every option goes through, one copy each: counts, timer delays, option objects and their names, and
 * the short description of a bad value that every error message uses. Pure functions with no Node-only API: the
 * client uses them in browsers too.
 */

/**
 * The longest delay `setTimeout` and `setInterval` honour; a longer one fires at once.
 * @internal
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A short, safe description of a bad value for an error message.
 * @internal
 */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  if (typeof value === 'number' || typeof value === 'boolean') return `${typeof value} ${String(value)}`;
  if (typeof value === 'bigint') return `bigint ${value}n`;
  return typeof value;
}

/**
 * Checks a count (milliseconds, bytes, events) that must be a non-negative safe integer; `name` is where it came from.
 * @internal
 */
export function nonNegativeInteger(value: unknown, name: string): number {
  if (!Number.isSafeInteger(value) || (value as number) < 0) {
    throw new TypeError(`${name}: expected a non-negative integer, got ${describe(value)}`);
  }
  return value as number;
}

/**
 * Checks a delay a timer will wait: a non-negative integer no larger than `MAX_TIMER_MS`.
 * @internal
 */
export function timerDelay(value: unknown, name: string): number {
  const milliseconds = nonNegativeInteger(value, name);
  if (milliseconds > MAX_TIMER_MS) throw new TypeError(`${name}: at most ${MAX_TIMER_MS} milliseconds, got ${milliseconds}`);
  return milliseconds;
}

/**
 * Checks a delay that must be at least one millisecond and no larger than `MAX_TIMER_MS`.
 * @internal
 */
export function positiveTimerDelay(value: unknown, name: string): number {
  const milliseconds = nonNegativeInteger(value, name);
  if (milliseconds === 0 || milliseconds > MAX_TIMER_MS) {
    throw new TypeError(`${name}: expected 1 to ${MAX_TIMER_MS} milliseconds, got ${milliseconds}`);
  }
  return milliseconds;
}

/**
 * Checks an options object: `value` must be an object (`where` names it in the message) whose every key is in
 * `known`; an unknown key is reported as `${prefix}${key}: not an option of ${owner}`.
 * @internal
 */
export function checkOptions(value: unknown, where: string, known: ReadonlySet<string>, prefix: string, owner: string): void {
  if (value === null || typeof value !== 'object') throw new TypeError(`${where}: expected an object, got ${describe(value)}`);
  for (const key of Object.keys(value)) {
    if (!known.has(key)) throw new TypeError(`${prefix}${key}: not an option of ${owner}`);
  }
}

/**
 * The set of an options interface's keys, checked against it so the two cannot drift apart.
 * @internal
 */
export function optionNames<T>(keys: Record<keyof T, true>): ReadonlySet<string> {
  return new Set(Object.keys(keys));
}

/**
 * Checks an optional callback.
 * @internal
 */
export function optionalFunction(value: unknown, name: string): void {
  if (value !== undefined && typeof value !== 'function') throw new TypeError(`${name}: expected a function, got ${describe(value)}`);
}
