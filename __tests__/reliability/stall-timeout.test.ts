/**
 * The stall rule (`sseStream({ stallTimeout })`): a client that accepts no byte for `stallTimeout` ms while data
 * waits for it is dropped, whatever kind of stream it reads: a plain one whose route awaits `send()` (which would
 * otherwise wait for 'drain' for ever), a resumable run's follower, a channel's subscriber. Raw sockets that send
 * their request and never read play the stalled clients; a raw socket that reads a little every few milliseconds
 * plays the slow but steady one, which must never be taken for stalled.
 */
import express from 'express';
import { openStreamCount, sseChannel, sseStream, MemoryStore, type CloseReason, type SseChannel } from '../../lib';
import { stalledClient, steadyReader } from '../helpers/raw-client';
import { delay, eventually, listen, type TestServer } from '../helpers/sse-client';

const HEARTBEAT = 100;
const STALL = 300;
const PAYLOAD = 'z'.repeat(20_000);

describe('stallTimeout', () => {
  let server: TestServer;
  const reasons: CloseReason[] = [];
  /** Per stalled plain stream: milliseconds from its last accepted send() to its signal's abort. */
  const droppedAfter: number[] = [];
  const failures: unknown[] = [];
  const onFailure = (error: unknown): void => void failures.push(error);
  const store = new MemoryStore();
  let news: SseChannel;

  /** A route that sends for as long as its client takes it: `await send()` and nothing else. */
  const sendLoop = async (_req: express.Request, res: express.Response): Promise<void> => {
    let lastAccepted = performance.now();
    res.sse.signal.addEventListener('abort', () => droppedAfter.push(performance.now() - lastAccepted));
    while (await res.sse.send(PAYLOAD)) lastAccepted = performance.now();
  };

  beforeAll(async () => {
    process.on('unhandledRejection', onFailure);
    process.on('uncaughtException', onFailure);
    news = sseChannel('stall-news', { store, history: 20 });
    const onClose = (summary: { reason: CloseReason }): void => void reasons.push(summary.reason);
    const app = express();
    app.get('/send', sseStream({ heartbeat: HEARTBEAT, stallTimeout: STALL, onClose }), sendLoop);
    app.get('/send-no-heartbeat', sseStream({ heartbeat: 0, stallTimeout: STALL, onClose }), sendLoop);
    app.get('/send-never-dropped', sseStream({ heartbeat: HEARTBEAT, stallTimeout: 0, onClose }), sendLoop);
    app.get('/steady', sseStream({ heartbeat: 250, stallTimeout: 1500, onClose }), async (_req, res) => {
      for (let i = 0; i < 60 && (await res.sse.send(`${i} ${PAYLOAD}`)); i += 1);
      await res.sse.close();
    });
    app.get('/steady-burst', sseStream({ heartbeat: 250, stallTimeout: 2000, maxBuffer: 16 * 1024 * 1024, onClose }), async (_req, res) => {
      // 12 MB queued at once, more than loopback's socket buffers hold: the stream hands it to the socket in pieces,
      // so each piece a steady reader takes shows as progress (one 12 MB write would show none until its end).
      for (let i = 0; i < 600; i += 1) res.sse.push(`${i} ${PAYLOAD}`);
      await res.sse.send('end');
      await res.sse.close();
    });
    app.get('/news', sseStream({ heartbeat: HEARTBEAT, stallTimeout: STALL, onClose }), (_req, res) => void res.sse.subscribe(news));
    app.get(
      '/runs/:key',
      sseStream({ heartbeat: HEARTBEAT, stallTimeout: STALL, onClose, resume: { key: (req) => String(req.params.key), store } }),
      async (_req, res) => {
        // The run writes to the store, not to a socket: it goes on whatever its followers do.
        for (let i = 0; i < 400 && !res.sse.closed; i += 1) {
          res.sse.push(`${i} ${PAYLOAD}`);
          await delay(2);
        }
        await res.sse.close();
      },
    );
    server = await listen(app);
  });
  afterAll(async () => {
    news.close();
    await server.close();
    process.off('unhandledRejection', onFailure);
    process.off('uncaughtException', onFailure);
  });
  beforeEach(() => {
    reasons.length = 0;
    droppedAfter.length = 0;
  });

  it('drops 20 clients that stop reading while their routes await send(), each stallTimeout after its last byte', async () => {
    const clients = await Promise.all(Array.from({ length: 20 }, () => stalledClient(`${server.url}/send`)));
    await eventually(() => reasons.length === 20, 10_000, 'every stream to report closed');
    // A client that reads nothing never reads the end of its connection either: the test lets go of it.
    for (const client of clients) client.socket.destroy();
    const sorted = [...droppedAfter].sort((a, b) => a - b);
    console.log(
      `stalled (heartbeat ${HEARTBEAT}, stallTimeout ${STALL}): 20 of 20 dropped; ms from last accepted send() to drop: ` +
        `min ${sorted[0]!.toFixed(0)}, median ${sorted[10]!.toFixed(0)}, max ${sorted[19]!.toFixed(0)}`,
    );
    expect(reasons).toEqual(Array.from({ length: 20 }, () => 'stalled'));
    // Never before stallTimeout without progress (a millisecond of timer rounding aside).
    expect(sorted[0]).toBeGreaterThanOrEqual(STALL - 5);
    expect(openStreamCount()).toBe(0);
    expect(failures).toEqual([]);
  });

  it('with heartbeats off, the check starts when data first waits, and drops the client all the same', async () => {
    const client = await stalledClient(`${server.url}/send-no-heartbeat`);
    await eventually(() => reasons.length === 1, 10_000, 'the stream to report closed');
    client.socket.destroy();
    console.log(`stalled (heartbeat 0, stallTimeout ${STALL}): dropped ${droppedAfter[0]!.toFixed(0)} ms after its last accepted send()`);
    expect(reasons).toEqual(['stalled']);
    expect(droppedAfter[0]).toBeGreaterThanOrEqual(STALL - 5);
  });

  it('stallTimeout 0 never drops: the route waits in send() for as long as the client is connected', async () => {
    const client = await stalledClient(`${server.url}/send-never-dropped`);
    await delay(STALL * 4);
    expect(client.socket.destroyed).toBe(false);
    expect(reasons).toEqual([]);
    expect(openStreamCount()).toBe(1);
    client.socket.destroy();
    await eventually(() => reasons.length === 1, 5000, 'the stream to report closed');
    expect(reasons).toEqual(['disconnect']);
  });

  it('a client that reads slowly but steadily is never taken for a stalled one', async () => {
    // 16 KiB every 50 ms (320 KiB/s) against 1.2 MB of events, each sent once the last is on its way.
    const reader = await steadyReader(`${server.url}/steady`, 16 * 1024, 50);
    await reader.closed;
    const numbers = [...reader.text().matchAll(/^data: (\d+) /gm)].map((match) => Number(match[1]));
    console.log(`steady reader (16 KiB per 50 ms, stallTimeout 1500): ${reader.received()} bytes, ${numbers.length} of 60 events`);
    expect(numbers).toEqual(Array.from({ length: 60 }, (_, i) => i));
    expect(reasons).toEqual(['close']);
  });

  it('nor after a burst of push() larger than the socket buffers', async () => {
    // 64 KiB every 25 ms (2.5 MiB/s) against 12 MB pushed at once: about 5 s behind. The kernel lets it show progress
    // about every 1.75 MiB it drains (bench/stall-window.mjs: 0.65 s at this rate), well within stallTimeout.
    const reader = await steadyReader(`${server.url}/steady-burst`, 64 * 1024, 25);
    await reader.closed;
    const numbers = [...reader.text().matchAll(/^data: (\d+) /gm)].map((match) => Number(match[1]));
    console.log(`steady reader after a 12 MB burst (64 KiB per 25 ms, stallTimeout 2000): ${reader.received()} bytes, ${numbers.length} of 600 events`);
    expect(numbers).toEqual(Array.from({ length: 600 }, (_, i) => i));
    expect(reasons).toEqual(['close']);
  }, 30_000);

  it("drops 200 channel subscribers that never read: subscriberCount falls to 0 while the channel keeps pushing", async () => {
    const clients = await Promise.all(Array.from({ length: 200 }, () => stalledClient(`${server.url}/news`)));
    await eventually(() => news.subscriberCount === 200, 5000, 'every subscription');
    const started = performance.now();
    let pushed = 0;
    while (news.subscriberCount > 0 && performance.now() - started < 30_000) {
      news.push(`${pushed} ${PAYLOAD}`);
      pushed += 1;
      await delay(5);
    }
    const elapsed = performance.now() - started;
    await eventually(() => reasons.length === 200, 10_000, 'every stream to report closed');
    for (const client of clients) client.socket.destroy();
    const counts = reasons.reduce<Record<string, number>>((all, reason) => ({ ...all, [reason]: (all[reason] ?? 0) + 1 }), {});
    console.log(
      `200 stalled subscribers: subscriberCount 0 after ${elapsed.toFixed(0)} ms and ${pushed} pushes ` +
        `(${((pushed * PAYLOAD.length) / 1024 / 1024).toFixed(1)} MiB to each); close reasons ${JSON.stringify(counts)}`,
    );
    expect(news.subscriberCount).toBe(0);
    // Dropped by the stall rule, or as 'overflow' when more than maxBuffer came while it waited: never left parked.
    expect(reasons.every((reason) => reason === 'stalled' || reason === 'overflow')).toBe(true);
    expect(failures).toEqual([]);
  }, 60_000);

  it("drops a resumable run's follower that stops reading, and the run goes on to its end", async () => {
    const client = await stalledClient(`${server.url}/runs/stalled-follower`);
    await eventually(() => reasons.length === 1, 10_000, 'the follower to report closed');
    client.socket.destroy();
    expect(reasons).toEqual(['stalled']);
    expect(store.size).toBeGreaterThan(0);
    await eventually(async () => (await store.read('run:stalled-follower', 0, 1)).tail === 400, 10_000, 'the run to push all');
  });
});
