/**
 * One client following a resumable run: replay what the store kept after its `Last-Event-ID`, then the live
 * events, then the end. It reads by position, so the seam between replay and live can hold neither a gap nor a
 * duplicate, and a slow client is served at its own pace (it waits for `'drain'`, the store keeps the events).
 */
import type { ResponseStream } from '../stream.js';
import { resumePosition, storeWarning, type ResumeStore, type RunEnd } from './store.js';

/** Events read per store round trip. */
const BATCH = 256;

/** Frames a follower writes of its own, encoded once per process. */
const LOST_FRAMES: Record<Exclude<RunEnd, 'done' | 'aborted'> | 'gone' | 'unavailable', string> = {
  expired: errorFrame('The run took longer than its time limit and was stopped'),
  lost: errorFrame('The run stopped unexpectedly'),
  gone: errorFrame('The run is no longer available'),
  unavailable: errorFrame('The stream is temporarily unavailable'),
};

/** What a follower needs to know of the run it follows. */
export interface FollowTarget {
  store: ResumeStore;
  key: string;
  runId: string;
  /** Milliseconds between reads while nothing wakes the follower: how soon it notices a producer that died. */
  poll: number;
}

/**
 * Sends `response` the run's events after the client's `lastEventId` (all that is kept when it is missing, malformed
 * or from another run), then follows until the run ends or the client leaves. Ends the response with the
 * stream's `done` terminator; a run that was lost or expired first gets a `{ type: "error" }` event.
 */
export async function follow(target: FollowTarget, response: ResponseStream, lastEventId: string | undefined): Promise<void> {
  const { store, key, runId, poll } = target;
  /** Wake-ups so far: one that comes while a read is in flight must not be slept through. */
  let wakes = 0;
  let wakeUp: (() => void) | undefined;
  const wake = (): void => {
    wakes += 1;
    wakeUp?.();
  };
  const { signal } = response;
  signal.addEventListener('abort', wake);
  let unwatch: (() => void) | undefined;
  try {
    // Watch before the first read: an event appended in between then wakes this follower instead of being missed.
    unwatch = await store.watch(key, wake);
    let cursor = resumePosition(lastEventId, runId);
    while (!response.closed) {
      const wakesBefore = wakes;
      const read = await store.read(key, cursor, BATCH);
      if (response.closed) return;
      if (read.runId !== runId) return void (await endWith(response, LOST_FRAMES.gone));
      if (cursor > read.tail) {
        // An id of this run from beyond its end cannot be real: replay from the start instead.
        cursor = 0;
        continue;
      }
      if (read.missed > 0) response.sendFrame(`data: {"type":"missed","count":${read.missed}}\n\n`);
      for (const event of read.events) {
        cursor = event.seq;
        if (!(await response.sendFrame(event.frame))) return;
      }
      if (read.end !== undefined) {
        return void (await endWith(response, read.end === 'done' || read.end === 'aborted' ? '' : LOST_FRAMES[read.end]));
      }
      if (read.events.length === 0 && wakes === wakesBefore) await sleepUntilWoken(poll, (resolve) => (wakeUp = resolve));
      wakeUp = undefined;
    }
  } catch (error) {
    storeWarning('read() or watch()', error);
    await endWith(response, LOST_FRAMES.unavailable);
  } finally {
    signal.removeEventListener('abort', wake);
    unwatch?.();
  }
}

/** Writes `frame` (if any), then closes the response with its `done` terminator, so the browser does not reconnect. */
async function endWith(response: ResponseStream, frame: string): Promise<void> {
  if (frame !== '') response.sendFrame(frame);
  await response.close();
}

function sleepUntilWoken(milliseconds: number, register: (resolve: () => void) => void): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, milliseconds);
    register(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function errorFrame(message: string): string {
  return `data: ${JSON.stringify({ type: 'error', message })}\n\n`;
}
