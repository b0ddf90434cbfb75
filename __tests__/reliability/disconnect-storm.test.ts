/**
 * Disconnect storm: 2,000 clients connect, receive a few events and go away at random points (before the request was
 * even answered, right after the headers, between events, in the middle of a frame, while the route sits in a long
 * `await`), 100 at a time. Afterwards every stream the server opened is closed as 'disconnect' with its signal
 * aborted, every producer has returned, no heartbeat timer, socket or listener is left, every response object is
 * garbage-collected, and the heap after a forced GC is within a small bound of where it started.
 *
 * The abort points are drawn from a seeded generator; the seed is printed, and `STORM_SEED=<seed>` replays a run.
 */
import { EventEmitter, once } from 'node:events';
import http from 'node:http';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import express from 'express';
import { sseStream, type SseStream } from '../../lib';
import { loopTurns } from '../helpers/deferred';
import { eventually, listen, openStream, type StreamClient, type TestServer } from '../helpers/sse-client';
import {
  activeResources,
  collectGarbage,
  grownKinds,
  KIB,
  listenerCounts,
  mib,
  MIB,
  seededRandom,
  seedFrom,
  TimeoutTracker,
} from './support';

const CLIENTS = 2000;
const BATCH = 100;
const WARMUP = 500;
/**
 * Heap growth allowed after the storm and a forced GC: 2 KiB per client. Measured growth is about 1 MiB (compiled code
 * and type feedback of paths first run during the storm, and the test runner's own buffers); one stream kept per client
 * (and with it its response and socket) measured 57 MiB.
 */
const HEAP_BOUND = 4 * MIB;
/** A frame larger than one socket read (64 KiB), so a client can always leave in the middle of one. */
const BIG = 'b'.repeat(96 * KIB);
/** Longer than the whole test: the route only ever leaves these awaits through its signal. */
const LONG_MS = 10 * 60 * 1000;

const MODES = ['before-headers', 'after-headers', 'after-events', 'mid-event', 'long-await'] as const;
type Mode = (typeof MODES)[number];

interface Plan {
  mode: Mode;
  /** Events to receive before leaving (after-events, mid-event, long-await). */
  events: number;
  /** Extra event-loop turns before the abort. */
  turns: number;
}

interface Outcome {
  mode: Mode;
  /** Events the client had parsed when it left. */
  eventsSeen: number;
  /** For mid-event: the bytes received so far did not end on a frame boundary. */
  midFrame: boolean;
}

/** A module-level emitter the long-await routes wait on with `events.once(bus, 'never', { signal })`. */
const bus = new EventEmitter();
bus.setMaxListeners(0);

/** The promise chain a long-await route sits in: several hops, then a wait only its signal can end. */
async function deepWait(signal: AbortSignal, viaEmitter: boolean): Promise<void> {
  await Promise.resolve();
  await nextTurn();
  const inner = async (): Promise<void> => {
    if (viaEmitter) await once(bus, 'never', { signal });
    else await sleep(LONG_MS, undefined, { signal });
  };
  await Promise.resolve().then(inner);
}

/** The route's own abort: the signal's reason itself, or Node's AbortError whose cause it is (timers, events.once). */
function isAbortOf(stream: SseStream, error: unknown): boolean {
  const { reason } = stream.signal;
  return error === reason || (typeof error === 'object' && error !== null && (error as { cause?: unknown }).cause === reason);
}

describe('disconnect storm', () => {
  let server: TestServer;
  const timers = new TimeoutTracker();
  /** The streams of the current batch; checked and dropped after each batch so nothing keeps them alive. */
  let batchStreams: SseStream[] = [];
  /** Server-side connections not yet closed. */
  let openConnections = 0;
  let routesStarted = 0;
  let producersRunning = 0;
  let producersFinished = 0;
  /** Anything a producer threw that was not its own stream's abort. */
  const unexpected: unknown[] = [];
  const uncaught: unknown[] = [];
  const onUncaught = (error: unknown): void => void uncaught.push(error);
  /** Responses collected by the GC. */
  let responsesCollected = 0;
  let responsesRegistered = 0;
  const responseRegistry = new FinalizationRegistry<null>(() => {
    responsesCollected += 1;
  });

  beforeAll(async () => {
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onUncaught);
    timers.enable();
    const app = express();
    // Only sseStream() runs between these two: every Timeout created in that window is a stream's heartbeat.
    const trackFrom: express.RequestHandler = (_req, _res, next) => {
      timers.tracking = true;
      next();
    };
    app.get('/storm/:mode', trackFrom, sseStream({ heartbeat: 20 }), async (req, res) => {
      timers.tracking = false;
      const mode = String(req.params.mode) as Mode;
      const sse = res.sse;
      routesStarted += 1;
      batchStreams.push(sse);
      responsesRegistered += 1;
      responseRegistry.register(res, null);
      producersRunning += 1;
      try {
        switch (mode) {
          case 'before-headers':
          case 'after-headers':
            // Never pushes: the client leaves before the first event.
            await deepWait(sse.signal, false);
            break;
          case 'after-events':
            for (let i = 0; await sse.send({ i, mode }); i += 1) await nextTurn();
            break;
          case 'mid-event':
            for (let i = 0; await sse.send({ i, big: BIG }); i += 1);
            break;
          case 'long-await':
            sse.push({ i: 0 });
            sse.push({ i: 1 });
            sse.push('waiting', { event: 'waiting' });
            await deepWait(sse.signal, Number(req.query.emitter) === 1);
            // Only reachable if the wait ended some other way than the abort.
            sse.push('after the wait');
            break;
        }
      } catch (error) {
        if (!isAbortOf(sse, error)) unexpected.push(error);
      } finally {
        producersRunning -= 1;
        producersFinished += 1;
      }
    });
    server = await listen(app);
    server.server.on('connection', (socket) => {
      openConnections += 1;
      socket.once('close', () => (openConnections -= 1));
    });
  });
  afterAll(async () => {
    timers.disable();
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
    await server.close();
  });

  /** One client following its plan; resolves once its connection is gone. */
  async function runClient(plan: Plan, index: number): Promise<Outcome> {
    const url = `${server.url}/storm/${plan.mode}?emitter=${index % 2}`;
    if (plan.mode === 'before-headers') {
      // The request leaves, and the client goes before any answer: the route may or may not have started.
      const request = http.request(url, { agent: false });
      request.on('error', () => undefined);
      // (events.once would reject on the 'error' that destroying an unanswered request emits.)
      const closed = new Promise<void>((resolve) => request.once('close', () => resolve()));
      request.end(() => {
        void loopTurns(plan.turns).then(() => request.destroy());
      });
      await closed;
      return { mode: plan.mode, eventsSeen: 0, midFrame: false };
    }
    const client: StreamClient = await openStream(url);
    let midFrame = false;
    switch (plan.mode) {
      case 'after-headers':
        await loopTurns(plan.turns);
        break;
      case 'after-events':
        await client.waitForCount(plan.events, 10_000);
        await loopTurns(plan.turns);
        break;
      case 'long-await':
        await client.waitForEvent((event) => event.event === 'waiting', 10_000);
        await loopTurns(plan.turns);
        break;
      case 'mid-event':
        await new Promise<void>((resolve, reject) => {
          let tail = '';
          client.response.on('data', (chunk: string) => {
            tail = (tail + chunk).slice(-2);
            // The helper's own listener ran first, so `events` already counts every complete frame in this chunk.
            if (client.events.length >= plan.events && tail !== '\n\n') {
              midFrame = true;
              resolve();
            }
          });
          void client.ended.then(() => reject(new Error('the mid-event stream ended by itself')));
        });
        break;
    }
    const eventsSeen = client.events.length;
    client.abort();
    await client.ended;
    return { mode: plan.mode, eventsSeen, midFrame };
  }

  /** Runs `count` clients, `BATCH` at a time; after each batch checks, then forgets, every stream it opened. */
  async function storm(count: number, random: ReturnType<typeof seededRandom>): Promise<{ outcomes: Record<Mode, number>; streams: number; midFrame: number }> {
    const outcomes: Record<Mode, number> = { 'before-headers': 0, 'after-headers': 0, 'after-events': 0, 'mid-event': 0, 'long-await': 0 };
    let streams = 0;
    let midFrame = 0;
    for (let start = 0; start < count; start += BATCH) {
      const plans: Plan[] = Array.from({ length: Math.min(BATCH, count - start) }, () => ({
        mode: MODES[random.int(MODES.length)],
        events: 1 + random.int(5),
        turns: random.int(4),
      }));
      for (const plan of plans) if (plan.mode === 'mid-event') plan.events = random.int(3);
      const results = await Promise.all(
        plans.map((plan, i) =>
          runClient(plan, start + i).catch((error: unknown) => {
            throw new Error(`client ${start + i} ${JSON.stringify(plan)}: ${String(error)}`);
          }),
        ),
      );
      for (const result of results) {
        outcomes[result.mode] += 1;
        if (result.mode === 'after-headers') expect(result.eventsSeen).toBe(0);
        if (result.mode === 'mid-event' && result.midFrame) midFrame += 1;
      }
      // Every connection of the batch is gone on the server side too; then every stream must have noticed.
      await eventually(() => openConnections === 0, 10_000, 'the server to drop every connection');
      await eventually(() => producersRunning === 0, 10_000, `every producer to return (${producersRunning} still running)`);
      const wrong = batchStreams.filter(
        (sse) =>
          !sse.closed ||
          sse.closeReason !== 'disconnect' ||
          !sse.signal.aborted ||
          !(sse.signal.reason instanceof DOMException) ||
          (sse.signal.reason as DOMException).name !== 'AbortError',
      );
      expect(wrong.map((sse) => ({ closed: sse.closed, closeReason: sse.closeReason, aborted: sse.signal.aborted }))).toEqual([]);
      expect(batchStreams.every((sse) => sse.push('late') === false)).toBe(true);
      streams += batchStreams.length;
      batchStreams = [];
    }
    return { outcomes, streams, midFrame };
  }

  it(
    `${CLIENTS} clients leaving at random points leave no stream open, no producer running, and nothing behind`,
    async () => {
      const random = seededRandom(seedFrom('STORM_SEED'));
      // Warm-up: lazily created parsers, JIT-compiled paths and pools are not a leak; they exist before the baseline.
      await storm(WARMUP, random);

      await collectGarbage();
      const heapBefore = process.memoryUsage().heapUsed;
      const resourcesBefore = activeResources();
      const processListenersBefore = listenerCounts(process);
      const serverListenersBefore = listenerCounts(server.server);
      const startedBefore = routesStarted;
      const finishedBefore = producersFinished;
      const heartbeatsBefore = timers.created;
      const collectedBefore = responsesCollected;
      const registeredBefore = responsesRegistered;

      const { outcomes, streams, midFrame } = await storm(CLIENTS, random);

      // Every stream's heartbeat was created in the middleware and has been cleared since.
      await eventually(() => timers.live.size === 0, 10_000, `every heartbeat timer to be cleared (${timers.live.size} live)`);
      const resourcesAfter = activeResources();
      await collectGarbage(5);
      // Every response object of the storm can be collected: nothing (a listener, a timer, a map) still holds one.
      const registered = responsesRegistered - registeredBefore;
      for (let round = 0; round < 20 && responsesCollected - collectedBefore < registered; round += 1) await collectGarbage(2);
      const collected = responsesCollected - collectedBefore;
      const heapAfter = process.memoryUsage().heapUsed;
      // The counts are process-wide: a runner's own short timer (jest's reporter debounces with one) may come and go.
      // Settled means back to the baseline, which a leaked timer or socket never is.
      let resourcesSettled = activeResources();
      await eventually(
        () => Object.keys(grownKinds(resourcesBefore, (resourcesSettled = activeResources()))).length === 0,
        10_000,
        `active resources back to the baseline ${JSON.stringify(resourcesBefore)}`,
      ).catch(() => undefined);

      console.log(
        [
          `disconnect storm (seed ${random.seed}): ${CLIENTS} clients after ${WARMUP} warm-up, ${BATCH} at a time; ` +
            `abort points ${JSON.stringify(outcomes)}; ${midFrame} of ${outcomes['mid-event']} mid-event clients left inside a frame`,
          `  streams opened by the server: ${streams}; producers finished: ${producersFinished - finishedBefore}; ` +
            `heartbeat timers created: ${timers.created - heartbeatsBefore}, still live: ${timers.live.size}`,
          `  active resources before: ${JSON.stringify(resourcesBefore)}; right after: ${JSON.stringify(resourcesAfter)}; ` +
            `settled: ${JSON.stringify(resourcesSettled)}`,
          `  listeners: process ${JSON.stringify(processListenersBefore)} -> ${JSON.stringify(listenerCounts(process))}; ` +
            `server ${JSON.stringify(serverListenersBefore)} -> ${JSON.stringify(listenerCounts(server.server))}; bus 'never': ${bus.listenerCount('never')}`,
          `  responses collected by the GC: ${collected} of ${registered}`,
          `  heap after forced GC: ${mib(heapBefore)} -> ${mib(heapAfter)}, growth ${mib(heapAfter - heapBefore)} (bound ${mib(HEAP_BOUND)})`,
        ].join('\n'),
      );

      expect(unexpected).toEqual([]);
      expect(uncaught).toEqual([]);
      // Every client except those that left before the request was answered reached a route.
      expect(streams).toBeGreaterThanOrEqual(CLIENTS - outcomes['before-headers']);
      expect(routesStarted - startedBefore).toBe(streams);
      expect(producersFinished - finishedBefore).toBe(streams);
      expect(producersRunning).toBe(0);
      expect(midFrame).toBe(outcomes['mid-event']);
      // One heartbeat per stream, every one cleared.
      expect(timers.created - heartbeatsBefore).toBe(streams);
      expect(timers.live.size).toBe(0);
      expect(grownKinds(resourcesBefore, resourcesSettled)).toEqual({});
      expect(listenerCounts(process)).toEqual(processListenersBefore);
      expect(listenerCounts(server.server)).toEqual(serverListenersBefore);
      expect(bus.listenerCount('never')).toBe(0);
      expect(collected).toBe(registered);
      expect(heapAfter - heapBefore).toBeLessThan(HEAP_BOUND);
    },
    120_000,
  );
});
