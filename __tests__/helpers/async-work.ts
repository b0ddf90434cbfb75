/**
 * The work of one request as the isolation tests run it, whatever the logger: one log call per way that work can
 * reach a logger (await, timers, setImmediate, promise chains, EventEmitter callbacks, an AsyncResource-bound
 * listener of a module-level emitter, and code that never sees req/res), each with a random pause.
 */
import { AsyncResource } from 'node:async_hooks';
import { EventEmitter } from 'node:events';
import { delay } from './sse-client';

/** The ways a request's work reaches the logger; each request logs exactly one record per step. */
export const STEPS = ['sync', 'await', 'timeout', 'immediate', 'then', 'own-emitter', 'shared-emitter', 'bound-listener', 'deep'] as const;
export type Step = (typeof STEPS)[number];

/** A module-level bus: each request registers its own listener and emits for itself. */
const bus = new EventEmitter();
bus.setMaxListeners(0);
/** A module-level ticker (created outside any request) that requests listen to with AsyncResource-bound listeners. */
const ticker = new EventEmitter();
ticker.setMaxListeners(0);
let tickTimer: NodeJS.Timeout | undefined;

const jitter = (): number => Math.floor(Math.random() * 4);

/** Stops the module-level ticker, so the test process can exit. */
export function stopAsyncWork(): void {
  clearInterval(tickTimer);
  tickTimer = undefined;
}

/** Module-level code that never sees req or res: a few async hops, then the log call. */
async function deepWork(note: (step: Step) => void): Promise<void> {
  await new Promise<void>((resolve) => process.nextTick(resolve));
  await new Promise<void>((resolve) => {
    setTimeout(() => {
      queueMicrotask(() => {
        note('deep');
        resolve();
      });
    }, jitter());
  });
}

/** Calls `note(step)` once for every step of STEPS, each reached a different way; `marker` names the request. */
export async function acrossAsyncWork(marker: string, note: (step: Step) => void): Promise<void> {
  tickTimer ??= setInterval(() => ticker.emit('tick'), 1);
  note('sync');
  await delay(jitter());
  note('await');

  const ownEmitter = new EventEmitter();
  const viaOwnEmitter = new Promise<void>((resolve) => {
    ownEmitter.once('data', () => {
      note('own-emitter');
      resolve();
    });
  });
  setTimeout(() => ownEmitter.emit('data'), jitter());

  const viaSharedEmitter = new Promise<void>((resolve) => {
    const listener = (to: string): void => {
      if (to !== marker) return;
      bus.off('job', listener);
      note('shared-emitter');
      resolve();
    };
    bus.on('job', listener);
  });
  setImmediate(() => bus.emit('job', marker));

  // The ticker's 'tick' is emitted by a module-level timer, outside any request; binding the listener is how code
  // keeps the request's context across an emitter it does not own.
  const viaBoundListener = new Promise<void>((resolve) => {
    ticker.once(
      'tick',
      AsyncResource.bind(() => {
        note('bound-listener');
        resolve();
      }),
    );
  });

  await Promise.all([
    new Promise<void>((resolve) =>
      setTimeout(() => {
        note('timeout');
        resolve();
      }, jitter()),
    ),
    new Promise<void>((resolve) =>
      setImmediate(() => {
        note('immediate');
        resolve();
      }),
    ),
    Promise.resolve()
      .then(() => delay(jitter()))
      .then(() => note('then')),
    viaOwnEmitter,
    viaSharedEmitter,
    viaBoundListener,
    deepWork(note),
  ]);
}
