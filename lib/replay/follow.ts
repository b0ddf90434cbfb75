/**
 * Clients following a run (or a channel) in a store: each replays what the store kept after its `Last-Event-ID`
 * at its own pace, then joins the key's feed, which reads each new batch from the store once for every client of
 * this process that is caught up and writes the same frame strings to all of them.
 *
 * Everything goes by position, so the seam between replay and live holds neither a gap nor a duplicate, and a
 * client that falls behind (more than `highWaterMark` waiting) leaves the feed and catches up on its own, from the
 * store, without slowing the others.
 */
import type { ResponseStream } from '../stream.js';
import { storeWarning, type ReadResult, type ResumeStore, type RunEnd } from './store.js';

/** Events read per store round trip. */
const BATCH = 256;

/** The `{ type: "error" }` frames a follower writes itself, by why it stops; encoded once per process. */
const FAILURE_FRAMES: Partial<Record<RunEnd | 'gone' | 'unavailable', string>> = {
  expired: errorFrame('The run took longer than its time limit and was stopped'),
  lost: errorFrame('The run stopped unexpectedly'),
  gone: errorFrame('The run is no longer available'),
  unavailable: errorFrame('The stream is temporarily unavailable'),
};

/** What a follower follows. */
export interface FollowTarget {
  store: ResumeStore;
  key: string;
  runId: string;
  /** Milliseconds between the feed's reads while nothing wakes it: how soon it notices a producer that died. */
  poll: number;
}

/** One response following a key: where it is, and how to end it. */
class Follower {
  cursor: number;
  #done: (() => void) | undefined;
  readonly finished = new Promise<void>((resolve) => (this.#done = resolve));

  constructor(
    readonly response: ResponseStream,
    cursor: number,
  ) {
    this.cursor = cursor;
  }

  /**
   * Writes the events this follower has not had yet, until its client falls more than `highWaterMark` behind: then
   * returns `false`, and the rest stays in the store for it.
   */
  write(events: ReadResult['events']): boolean {
    for (const event of events) {
      if (event.seq <= this.cursor) continue;
      this.cursor = event.seq;
      if (!this.response.writeFrame(event.frame)) return false;
    }
    return true;
  }

  /** Ends the response with the stream's `done` terminator (after an error event where the run failed). */
  end(why: RunEnd | 'gone' | 'unavailable'): void {
    const frame = FAILURE_FRAMES[why];
    if (frame !== undefined) this.response.writeFrame(frame);
    void this.response.close().then(this.#done);
  }

  /** For a follower whose client left first. */
  release(): void {
    this.#done?.();
  }
}

/** The shared reader of one key in this process, and the followers it serves live. */
class Feed {
  readonly #target: FollowTarget;
  readonly #live = new Set<Follower>();
  readonly #members = new Set<Follower>();
  readonly #dispose: () => void;
  #unwatch: (() => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Position up to which every live follower has been served. */
  #cursor = 0;
  #reading = false;
  #again = false;
  #ended: RunEnd | 'gone' | 'unavailable' | undefined;
  readonly ready: Promise<void>;

  constructor(target: FollowTarget, dispose: () => void) {
    this.#target = target;
    this.#dispose = dispose;
    // Watch before any follower's first read: an event appended in between then wakes the feed instead of being missed.
    this.ready = target.store.watch(target.key, () => this.#pump()).then(
      (unwatch) => {
        this.#unwatch = unwatch;
        if (this.#members.size === 0) this.#close();
      },
      (error: unknown) => {
        storeWarning('watch()', error);
        this.#ended = 'unavailable';
        this.#dispose();
      },
    );
  }

  /** Serves `response` from position `from` until the run ends or the client leaves. */
  async serve(response: ResponseStream, from: number | 'tail', onPositioned?: () => void): Promise<void> {
    const follower = new Follower(response, typeof from === 'number' ? from : this.#cursor);
    this.#members.add(follower);
    const onLeave = (): void => {
      this.#leave(follower);
      follower.release();
    };
    follower.response.signal.addEventListener('abort', onLeave);
    try {
      await this.ready;
      if (from === 'tail') follower.cursor = await this.#tail();
      onPositioned?.();
      await this.#catchUp(follower);
      await follower.finished;
    } finally {
      follower.response.signal.removeEventListener('abort', onLeave);
      this.#leave(follower);
    }
  }

  /** Replays from the store at the client's pace until the follower is level with the feed, then joins it. */
  async #catchUp(follower: Follower): Promise<void> {
    const { store, key, runId } = this.#target;
    const { response } = follower;
    while (!response.closed) {
      if (this.#ended !== undefined && follower.cursor >= this.#cursor) return follower.end(this.#ended);
      let read: ReadResult;
      try {
        read = await store.read(key, follower.cursor, BATCH);
      } catch (error) {
        storeWarning('read()', error);
        return follower.end('unavailable');
      }
      if (response.closed) return follower.release();
      if (read.runId !== runId) return follower.end('gone');
      if (follower.cursor > read.tail) {
        // An id of this run from beyond its end cannot be real: replay from the start instead.
        follower.cursor = 0;
        continue;
      }
      if (read.missed > 0) response.writeFrame(missedFrame(read.missed));
      if (!follower.write(read.events)) {
        if (!(await response.writable())) return follower.release();
      } else if (read.end !== undefined) {
        return follower.end(read.end);
      } else if (read.events.length < BATCH && follower.cursor >= this.#cursor) {
        if (this.#live.size === 0) this.#cursor = follower.cursor;
        this.#live.add(follower);
        this.#startPolling();
        // Whatever came while the follower read was appended after its read: the feed's next pump brings it.
        this.#pump();
        return;
      }
    }
    follower.release();
  }

  /**
   * Where a follower that wants only what comes next starts: level with the feed while it serves live followers
   * (whatever is newer reaches them all on its next pump), else the store's tail.
   */
  async #tail(): Promise<number> {
    if (this.#live.size > 0) return this.#cursor;
    const { store, key } = this.#target;
    try {
      return (await store.read(key, 0, 1)).tail;
    } catch {
      // The follower's own first read reports the store's failure.
      return 0;
    }
  }

  /** Reads what is new once and writes it to every live follower; one pump at a time, again if woken meanwhile. */
  #pump(): void {
    if (this.#live.size === 0) return;
    if (this.#reading) {
      this.#again = true;
      return;
    }
    this.#reading = true;
    void this.#readNew().finally(() => {
      this.#reading = false;
      if (this.#again) {
        this.#again = false;
        this.#pump();
      }
    });
  }

  async #readNew(): Promise<void> {
    const { store, key, runId } = this.#target;
    for (;;) {
      let read: ReadResult;
      try {
        read = await store.read(key, this.#cursor, BATCH);
      } catch (error) {
        storeWarning('read()', error);
        return this.#endLive('unavailable');
      }
      if (read.runId !== runId) return this.#endLive('gone');
      const missed = read.missed > 0 ? missedFrame(read.missed) : undefined;
      for (const follower of this.#live) {
        if (missed !== undefined) follower.response.writeFrame(missed);
        if (!follower.write(read.events)) this.#fallBehind(follower);
      }
      const last = read.events.at(-1);
      if (last !== undefined) this.#cursor = Math.max(this.#cursor, last.seq);
      if (read.end !== undefined) return this.#endLive(read.end);
      if (read.events.length < BATCH || this.#live.size === 0) return;
    }
  }

  /** A follower more than `highWaterMark` behind leaves the feed, and rejoins once it has caught up from the store. */
  #fallBehind(follower: Follower): void {
    this.#live.delete(follower);
    void follower.response.writable().then((open) => (open ? this.#catchUp(follower) : follower.release()));
  }

  #endLive(why: RunEnd | 'gone' | 'unavailable'): void {
    this.#ended = why;
    for (const follower of this.#live) follower.end(why);
    this.#live.clear();
    this.#stopPolling();
    // Followers still catching up finish on their own; one that comes later reads the end from the store.
    this.#dispose();
  }

  #startPolling(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.#pump(), this.#target.poll);
    this.#timer.unref();
  }

  #stopPolling(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #leave(follower: Follower): void {
    this.#live.delete(follower);
    if (this.#live.size === 0) this.#stopPolling();
    if (this.#members.delete(follower) && this.#members.size === 0) this.#close();
  }

  #close(): void {
    this.#stopPolling();
    this.#dispose();
    this.#unwatch?.();
    this.#unwatch = undefined;
  }
}

/** The feeds of this process, by store and run: one per key that has followers here. */
const feeds = new WeakMap<ResumeStore, Map<string, Feed>>();

/**
 * Sends `response` the events after position `from` (`'tail'`: only those appended from now on), then follows
 * until the run ends or the client leaves. Ends the response with the stream's `done` terminator; a run that was
 * lost or expired first gets a `{ type: "error" }` event. `onPositioned` is called once the follower's starting
 * position is fixed: every event appended after that reaches it.
 */
export function follow(target: FollowTarget, response: ResponseStream, from: number | 'tail', onPositioned?: () => void): Promise<void> {
  let byRun = feeds.get(target.store);
  if (byRun === undefined) feeds.set(target.store, (byRun = new Map()));
  const runs = byRun;
  let feed = runs.get(target.runId);
  if (feed === undefined) {
    const created: Feed = new Feed(target, () => {
      if (runs.get(target.runId) === created) runs.delete(target.runId);
    });
    runs.set(target.runId, (feed = created));
  }
  return feed.serve(response, from, onPositioned);
}

function missedFrame(count: number): string {
  return `data: {"type":"missed","count":${count}}\n\n`;
}

function errorFrame(message: string): string {
  return `data: ${JSON.stringify({ type: 'error', message })}\n\n`;
}
