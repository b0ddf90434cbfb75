/**
 * A promise with its resolve/reject exposed, so a test and a route on the same server can hand each other a turn
 * (the route pushes event N+1 only once the test's client saw event N) and a test can take hold of a route's `res`.
 */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(reason: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((ok, fail) => {
    resolve = ok;
    reject = fail;
  });
  return { promise, resolve, reject };
}

/**
 * One deferred per key, created by whichever side asks first: `turns.get(3).promise` / `turns.get(3).resolve()`; with
 * a value, how a route hands its `res.sse` to the test: `runs.get(key).resolve(res.sse)`.
 */
export class Turns<K, T = void> {
  readonly #all = new Map<K, Deferred<T>>();

  get(key: K): Deferred<T> {
    let turn = this.#all.get(key);
    if (turn === undefined) {
      turn = deferred<T>();
      this.#all.set(key, turn);
    }
    return turn;
  }
}

/** Resolves after `turns` turns of the event loop (setImmediate), not after any amount of time. */
export async function loopTurns(turns: number): Promise<void> {
  for (let i = 0; i < turns; i += 1) await new Promise<void>((resolve) => setImmediate(resolve));
}

/**
 * Pushes `make(i)` for i = 0, 1, ... a batch at a time, letting each batch reach the response, until the response
 * says it is full (`writableNeedDrain`) because the client reads nothing. Returns how many were pushed.
 * The kernel's loopback buffers take several MB first, so a fixed count would not reliably fill it.
 */
export async function pushUntilResponseFull(
  res: { writableNeedDrain: boolean; sse: { push(data: unknown): boolean } },
  make: (i: number) => string,
  limit = 200_000,
): Promise<number> {
  let pushed = 0;
  while (!res.writableNeedDrain) {
    if (pushed >= limit) throw new Error(`the response still accepted data after ${limit} events`);
    for (let i = 0; i < 500; i += 1, pushed += 1) if (!res.sse.push(make(pushed))) throw new Error('push refused');
    await loopTurns(1);
  }
  return pushed;
}
