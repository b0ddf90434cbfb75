/**
 * Clients following a run (or a channel) in a store: each replays what the store kept after its `Last-Event-ID`
 * at its own pace, then joins the key's feed, which reads each new batch from the store once for every client of
 * this process that is caught up and writes the same frame strings to all of them.
 *
 * Everything goes by position, so the seam between replay and live holds neither a gap nor a duplicate, and a
 * client that falls behind (more than `highWaterMark` waiting) leaves the feed and catches up on its own, from the
 * store, without slowing the others. While it waits for its socket the feed counts what it misses: one more than
 * `maxBuffer` behind is dropped as `'overflow'` (and one that stops reading, by its stream's stall rule).
 */
import { outsideRequests } from '../context.js';
import { LIBRARY_ERRORS, missedFrame } from '../encode.js';
import type { ErrorEventInfo } from '../event-shapes.js';
import type { FrameSink } from '../sse-stream.js';
import { storeWarning, type ReadResult, type ResumeStore, type RunEnd, type StoredEvent } from '../store/contract.js';

/** Events read per store round trip. */
const BATCH = 256;
/** Failed store reads in a row after which a follower gives up (and its client reconnects later). */
const MAX_FAILURES = 3;

/** Why a follower stops other than by its client leaving: how the run ended, or what went wrong. */
type Stop = RunEnd | 'gone' | 'unavailable';

/**
 * Why a follower stops when the run it follows is no longer the key's: a run that vanished (discarded by a producer
 * that gave up before its first event was stored, or lost with the store's data) starts again on the next request,
 * so its clients come back; one that was replaced (a channel's) is gone.
 */
const vanished = (read: ReadResult, reopen: (() => void) | undefined): Stop => (read.runId === undefined && reopen === undefined ? 'unavailable' : 'gone');

/** The errors a follower reports itself, as its route's error event, by why it stops. */
const FAILURES: Partial<Record<Stop, ErrorEventInfo>> = {
  expired: LIBRARY_ERRORS.expired,
  lost: LIBRARY_ERRORS.lost,
  gone: LIBRARY_ERRORS.gone,
  unavailable: LIBRARY_ERRORS.unavailable,
};

/**
 * What a follower follows.
 * @internal
 */
export interface FollowTarget {
  store: ResumeStore;
  key: string;
  runId: string;
  /** Milliseconds between the feed's reads while nothing wakes it: how soon it notices a producer that died. */
  poll: number;
  /**
   * Set for a channel, which never ends: when its run is found over or replaced, `reopen` is called so the channel
   * opens a live one, and the client is asked to come back to it (its stream ends without the `done` terminator).
   * Unset for a run: one that is over or gone is over for its clients too.
   */
  reopen?: () => void;
}

/** One response following a key: where it is, what it still has to write, and how to end it. */
class Follower {
  cursor: number;
  /** Events read but not yet written: the client fell behind in the middle of their batch. */
  rest: StoredEvent[] = [];
  /** The store's last position when the follower last read (or was served by the feed). */
  tail = 0;
  /**
   * While the follower waits for its client's socket: characters of the frames appended since, which it has not
   * had, counted up to position `counted` and weighed by its stream against `maxBuffer` (what it replays from
   * before is history, not lag); and whether `rest` holds every one of them, so it need not read them again.
   */
  behind = 0;
  counted = 0;
  keeping = false;
  #done: ((replacedBy?: string) => void) | undefined;
  /** Resolves when the follower is done: with the id of the run that replaced the one it followed, if one did. */
  readonly finished = new Promise<string | undefined>((resolve) => (this.#done = resolve));

  constructor(
    readonly response: FrameSink,
    cursor: number,
  ) {
    this.cursor = cursor;
  }

  /**
   * Writes the events this follower has not had yet, announcing any it can no longer get (dropped past the store's
   * limit) with `{ type: "missed", count }`. Returns `false` once its client falls more than `highWaterMark`
   * behind: what is left of `events` waits in `rest`.
   */
  write(events: readonly StoredEvent[]): boolean {
    for (let i = 0; i < events.length; i += 1) {
      const event = events[i]!;
      if (event.seq <= this.cursor) continue;
      if (event.seq > this.cursor + 1) this.response.writeFrame(missedFrame(event.seq - this.cursor - 1));
      this.cursor = event.seq;
      if (!this.response.writeFrame(event.frame)) {
        this.rest = events.slice(i + 1);
        return false;
      }
    }
    this.rest = [];
    return true;
  }

  /** Ends the response: with the stream's `done` terminator, unless the client should come back later. */
  end(why: Stop, reopen: (() => void) | undefined): void {
    const stop = reopen !== undefined && why !== 'unavailable' ? 'gone' : why;
    if (stop === 'gone') reopen?.();
    const failure = FAILURES[stop];
    if (failure !== undefined) this.response.writeError(failure);
    const reconnect = stop === 'unavailable' || reopen !== undefined;
    void (reconnect ? this.response.closeForReconnect() : this.response.close()).then(() => this.#done?.());
  }

  /** For a follower whose client left first. */
  release(): void {
    this.#done?.();
  }

  /** For a follower of a run that another took the place of (`resume.mode: 'start'`): it goes on with that one. */
  moveTo(runId: string): void {
    this.#done?.(runId);
  }

  /** Ends the follower because its run is no longer the key's: it moves on to the run that replaced it, if any. */
  replaced(current: string | undefined, reopen: (() => void) | undefined): void {
    if (current !== undefined && reopen === undefined) this.moveTo(current);
    else this.end('gone', reopen);
  }
}

/** The shared reader of one key in this process, and the followers it serves live. */
class Feed {
  readonly #target: FollowTarget;
  readonly #live = new Set<Follower>();
  readonly #members = new Set<Follower>();
  /** Followers waiting for their client's socket: the feed counts what they miss meanwhile. */
  readonly #parked = new Set<Follower>();
  readonly #dispose: () => void;
  #unwatch: (() => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Position up to which every live follower has been served. */
  #cursor = 0;
  #reading = false;
  #again = false;
  #failures = 0;
  #ended: Stop | undefined;
  /** When the run was found replaced: the key's run now. */
  #replacedBy: string | undefined;
  readonly ready: Promise<void>;

  constructor(target: FollowTarget, dispose: () => void) {
    this.#target = target;
    this.#dispose = dispose;
    // Watch before any follower's first read: an event appended in between then wakes the feed instead of being missed.
    // Inside an executor, which runs at once: a store of the app's own that throws instead of rejecting is reported too.
    const watching = new Promise<() => void>((resolve) => resolve(target.store.watch(target.key, () => this.#pump())));
    this.ready = watching.then(
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
  async serve(response: FrameSink, from: number | 'tail', onPositioned: (() => void) | undefined): Promise<string | undefined> {
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
      return await follower.finished;
    } finally {
      follower.response.signal.removeEventListener('abort', onLeave);
      this.#leave(follower);
    }
  }

  /** Replays from the store at the client's pace until the follower is level with the feed, then joins it. */
  async #catchUp(follower: Follower): Promise<void> {
    const { store, key, runId, poll, reopen } = this.#target;
    const { response } = follower;
    let failures = 0;
    while (!response.closed) {
      if (follower.rest.length > 0) {
        if (!(await this.#park(follower))) break;
        follower.write(follower.rest);
        continue;
      }
      if (this.#ended === 'gone') return follower.replaced(this.#replacedBy, reopen);
      if (this.#ended !== undefined && follower.cursor >= this.#cursor) return follower.end(this.#ended, reopen);
      let read: ReadResult;
      try {
        read = await store.read(key, follower.cursor, BATCH);
        failures = 0;
      } catch (error) {
        storeWarning('read()', error);
        if (++failures >= MAX_FAILURES) return follower.end('unavailable', reopen);
        await sleep(poll, response.signal);
        continue;
      }
      if (response.closed) break;
      follower.tail = read.tail;
      if (read.runId !== runId) {
        const why = vanished(read, reopen);
        return why === 'gone' ? follower.replaced(read.runId, reopen) : follower.end(why, reopen);
      }
      if (follower.cursor > read.tail) {
        // An id of this run from beyond its end cannot be real: replay from the start instead.
        follower.cursor = 0;
        continue;
      }
      if (!follower.write(read.events)) {
        if (!(await this.#park(follower))) break;
      } else if (read.end !== undefined) {
        return follower.end(read.end, reopen);
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

  /**
   * Waits until the follower's client can take more, while the feed counts what it misses meanwhile. Resolves
   * `false` when the stream closed (the client left, was dropped as `'stalled'`, or fell more than `maxBuffer`
   * behind and was dropped as `'overflow'`).
   */
  async #park(follower: Follower): Promise<boolean> {
    const held = follower.rest.at(-1)?.seq ?? follower.cursor;
    follower.behind = 0;
    follower.counted = Math.max(held, follower.tail);
    follower.keeping = held === follower.tail;
    if (this.#live.size === 0 && this.#parked.size === 0) this.#cursor = Math.max(this.#cursor, follower.counted);
    this.#parked.add(follower);
    this.#startPolling();
    try {
      return await follower.response.writable();
    } finally {
      this.#parked.delete(follower);
      if (this.#live.size === 0 && this.#parked.size === 0) this.#stopPolling();
    }
  }

  /**
   * Counts the new events each parked follower misses, and keeps them for it while they follow on from what it
   * holds (at most `maxBuffer` characters): its stream drops one more than `maxBuffer` behind.
   */
  #countMissed(events: readonly StoredEvent[]): void {
    for (const follower of this.#parked) {
      for (const event of events) {
        if (event.seq <= follower.counted) continue;
        if (event.seq !== follower.counted + 1) follower.keeping = false;
        if (follower.keeping) follower.rest.push(event);
        follower.counted = event.seq;
        follower.behind += event.frame.length;
      }
      if (!follower.response.lag(follower.behind)) this.#parked.delete(follower);
    }
  }

  /** Reads what is new once and writes it to every live follower; one pump at a time, again if woken meanwhile. */
  #pump(): void {
    if (this.#live.size === 0 && this.#parked.size === 0) return;
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
        this.#failures = 0;
      } catch (error) {
        // The poll tries again; a store that keeps failing ends the live followers, whose clients come back later.
        storeWarning('read()', error);
        if (++this.#failures >= MAX_FAILURES) this.#endLive('unavailable');
        return;
      }
      if (read.runId !== runId) return this.#endLive(vanished(read, this.#target.reopen), read.runId);
      if (this.#parked.size > 0) this.#countMissed(read.events);
      for (const follower of this.#live) {
        if (!follower.write(read.events)) this.#fallBehind(follower, read.tail);
      }
      const last = read.events.at(-1);
      if (last !== undefined) this.#cursor = Math.max(this.#cursor, last.seq);
      if (read.end !== undefined) return this.#endLive(read.end);
      if (read.events.length < BATCH || (this.#live.size === 0 && this.#parked.size === 0)) return;
    }
  }

  /** A follower more than `highWaterMark` behind leaves the feed, and rejoins once it has caught up from the store. */
  #fallBehind(follower: Follower, tail: number): void {
    this.#live.delete(follower);
    follower.tail = tail;
    void this.#park(follower).then((open) => (open ? this.#catchUp(follower) : follower.release()));
  }

  #endLive(why: Stop, current?: string): void {
    this.#ended = why;
    this.#replacedBy = current;
    const { reopen } = this.#target;
    for (const follower of this.#live) {
      if (why === 'gone') follower.replaced(current, reopen);
      else follower.end(why, reopen);
    }
    this.#live.clear();
    this.#stopPolling();
    // Followers still catching up finish on their own; one that comes later reads the end from the store.
    this.#dispose();
  }

  #startPolling(): void {
    if (this.#timer !== undefined) return;
    this.#timer = outsideRequests(() => setInterval(() => this.#pump(), this.#target.poll));
    this.#timer.unref();
  }

  #stopPolling(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #leave(follower: Follower): void {
    this.#live.delete(follower);
    this.#parked.delete(follower);
    if (this.#live.size === 0 && this.#parked.size === 0) this.#stopPolling();
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
 * position is fixed: every event appended after that reaches it. Resolves, for a run that another replaced
 * (`resume.mode: 'start'`), with the id of the run the key holds now, for the caller to follow next.
 * @internal
 */
export function follow(
  target: FollowTarget,
  response: FrameSink,
  from: number | 'tail',
  onPositioned?: () => void,
): Promise<string | undefined> {
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

/** Waits `milliseconds`, or less if `signal` aborts first. */
function sleep(milliseconds: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = outsideRequests(() => setTimeout(done, milliseconds));
    signal.addEventListener('abort', done);
  });
}
