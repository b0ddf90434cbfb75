import { spawn } from 'node:child_process';
import express from 'express';
import { sseStream } from '../lib';
import { deferred, loopTurns, type Deferred } from './helpers/deferred';
import { listen, openStream, type StreamClient, type TestServer } from './helpers/sse-client';

const KIB = 1024;
const MIB = 1024 * KIB;

/** What the send() loop of the first test saw, sampled inside the loop. */
interface ProducerStats {
  res: express.Response;
  /** Events whose send() resolved true. */
  sent: number;
  inSend: boolean;
  /** send() calls that were still pending when the response emitted 'drain': they waited for the client. */
  waits: number;
  /** The largest `res.writableLength` seen right after a push and right after send() resolved. */
  maxWritableLength: number;
  stoppedEarly: boolean;
  finished: Deferred<void>;
}

interface FloodStats {
  res: express.Response;
  accepted: number;
  acceptedBytes: number;
  /** The sequence number of the first push that returned false, if any did. */
  firstRefused: number | undefined;
  pushesAfterOverflow: boolean[];
  sendAfterOverflow: boolean | undefined;
  abortReason: unknown;
  finished: Deferred<void>;
}

const TOTAL = 100_000;
const HIGH_WATER_MARK = 16 * KIB;
/** The route buffers at most one event past highWaterMark in its queue, and a socket holds about 16 KiB: 64 KiB is ample. */
const ALLOWANCE = 64 * KIB;
const FLOOD_MAX_BUFFER = 1 * MIB;
const FLOOD_ATTEMPT_BYTES = 100 * MIB;

/** The SSE frame the stream writes for `value` with the default serializer. */
const frameBytes = (value: unknown): number => Buffer.byteLength(`data: ${JSON.stringify(value)}\n\n`);

describe('backpressure', () => {
  let server: TestServer;
  let producer = deferred<ProducerStats>();
  let flood = deferred<FloodStats>();
  /** For the fairness test: the client of the ticking stream, watched by the fast route to know when to stop. */
  let tickClient: StreamClient | undefined;
  let fastLoop = deferred<{ sent: number; stoppedByTicks: boolean; ticksSeenAtStart: number; commentsAtStart: number }>();
  let fastProgress = 0;
  const tickTimers = new Set<NodeJS.Timeout>();

  beforeAll(async () => {
    const app = express();
    app.get('/producer', sseStream({ heartbeat: 0, highWaterMark: HIGH_WATER_MARK }), async (_req, res) => {
      const stats: ProducerStats = { res, sent: 0, inSend: false, waits: 0, maxWritableLength: 0, stoppedEarly: false, finished: deferred() };
      producer.resolve(stats);
      let drains = 0;
      res.on('drain', () => (drains += 1));
      // ~290-byte events: 100,000 of them (~29 MB) are more than the kernel's loopback socket buffers can swallow, so
      // a client that stops reading really does push back on the producer.
      const pad = 'x'.repeat(256);
      for (let seq = 0; seq < TOTAL; seq += 1) {
        const drainsBefore = drains;
        stats.inSend = true;
        const sending = res.sse.send({ seq, pad });
        stats.maxWritableLength = Math.max(stats.maxWritableLength, res.writableLength);
        const ok = await sending;
        stats.inSend = false;
        stats.maxWritableLength = Math.max(stats.maxWritableLength, res.writableLength);
        if (drains > drainsBefore) stats.waits += 1;
        if (!ok) {
          stats.stoppedEarly = true;
          break;
        }
        stats.sent = seq + 1;
      }
      await res.sse.close();
      stats.finished.resolve();
    });

    app.get('/flood', sseStream({ heartbeat: 0, maxBuffer: FLOOD_MAX_BUFFER }), async (_req, res) => {
      const stats: FloodStats = {
        res,
        accepted: 0,
        acceptedBytes: 0,
        firstRefused: undefined,
        pushesAfterOverflow: [],
        sendAfterOverflow: undefined,
        abortReason: undefined,
        finished: deferred(),
      };
      flood.resolve(stats);
      res.sse.signal.addEventListener('abort', () => (stats.abortReason = res.sse.signal.reason));
      const pad = 'p'.repeat(100);
      let seq = 0;
      let attemptedBytes = 0;
      // Pushes without ever awaiting send(), a thousand at a time, giving the event loop a turn between batches.
      flooding: while (attemptedBytes < FLOOD_ATTEMPT_BYTES) {
        for (let i = 0; i < 1000; i += 1, seq += 1) {
          const value = { seq, pad };
          const size = frameBytes(value);
          attemptedBytes += size;
          if (!res.sse.push(value)) {
            stats.firstRefused = seq;
            break flooding;
          }
          stats.accepted += 1;
          stats.acceptedBytes += size;
        }
        await loopTurns(1);
      }
      stats.pushesAfterOverflow = Array.from({ length: 10 }, (_, i) => res.sse.push({ late: i }));
      stats.sendAfterOverflow = await res.sse.send({ late: 'send' });
      stats.finished.resolve();
    });

    app.get('/fast', sseStream({ heartbeat: 0 }), async (_req, res) => {
      const watched = tickClient;
      if (watched === undefined) throw new Error('open the ticking stream first');
      const ticksAtStart = watched.events.length;
      const commentsAtStart = watched.comments.length;
      // Stops once the *client* of the other stream has received 5 timer-driven events and 3 heartbeats since this
      // loop started, which can only happen if the loop lets the event loop run; the cap is the failure guard.
      const cap = 1_000_000;
      const pad = 'f'.repeat(40);
      let sent = 0;
      let stoppedByTicks = false;
      while (sent < cap) {
        if (watched.events.length - ticksAtStart >= 5 && watched.comments.length - commentsAtStart >= 3) {
          stoppedByTicks = true;
          break;
        }
        if (!(await res.sse.send({ n: sent, pad }))) break;
        sent += 1;
        fastProgress = sent;
      }
      fastLoop.resolve({ sent, stoppedByTicks, ticksSeenAtStart: ticksAtStart, commentsAtStart });
      await res.sse.close();
    });

    app.get('/ticks', sseStream({ heartbeat: 10 }), (_req, res) => {
      let tick = 0;
      const timer = setInterval(() => {
        tick += 1;
        res.sse.push({ tick, fastProgress });
      }, 10);
      tickTimers.add(timer);
      res.sse.signal.addEventListener('abort', () => clearInterval(timer));
    });

    server = await listen(app);
  });
  afterAll(async () => {
    tickTimers.forEach((timer) => clearInterval(timer));
    await server.close();
  });
  beforeEach(() => {
    producer = deferred<ProducerStats>();
    flood = deferred<FloodStats>();
    fastLoop = deferred();
    fastProgress = 0;
  });

  it(
    'a send() loop of 100,000 events delivers every one, in order, to a slow client while the buffer stays near highWaterMark',
    async () => {
      const client = await openStream(`${server.url}/producer`, { paused: true });
      const stats = await producer.promise;

      // The client reads nothing yet: the producer must come to a halt inside send(), not run ahead.
      for (const resumeAfter of [0, 30_000]) {
        if (resumeAfter > 0) {
          await client.waitForCount(resumeAfter, 30_000);
          client.pause();
        }
        // The kernel's socket buffers absorb a while longer; then the producer sits in send() and makes no progress.
        const sentAtStall = await waitForStall(stats);
        expect(sentAtStall).toBeLessThan(TOTAL);
        client.resume();
      }

      await stats.finished.promise;
      await client.ended;
      console.log(
        `backpressure: ${TOTAL} events, send() waited for 'drain' ${stats.waits} times, ` +
          `max res.writableLength ${stats.maxWritableLength} bytes (highWaterMark ${HIGH_WATER_MARK}, bound ${HIGH_WATER_MARK + ALLOWANCE})`,
      );

      expect(stats.stoppedEarly).toBe(false);
      expect(stats.sent).toBe(TOTAL);
      expect(client.response.complete).toBe(true);
      expect(client.events).toHaveLength(TOTAL);
      let outOfOrder = 0;
      client.events.forEach((event, i) => {
        if ((JSON.parse(event.data) as { seq: number }).seq !== i) outOfOrder += 1;
      });
      expect(outOfOrder).toBe(0);
      expect(stats.waits).toBeGreaterThanOrEqual(2);
      expect(stats.maxWritableLength).toBeLessThan(HIGH_WATER_MARK + ALLOWANCE);
    },
    120_000,
  );

  it(
    'a stalled client costs at most maxBuffer: the stream closes as "overflow" and refuses every later push',
    async () => {
      const client = await openStream(`${server.url}/flood`, { paused: true });
      const stats = await flood.promise;
      await stats.finished.promise;
      console.log(
        `overflow: ${stats.accepted} pushes (${stats.acceptedBytes} bytes) accepted before the first refusal, ` +
          `maxBuffer ${FLOOD_MAX_BUFFER}, attempted up to ${FLOOD_ATTEMPT_BYTES}`,
      );

      expect(stats.firstRefused).toBeDefined();
      expect(stats.res.sse.closed).toBe(true);
      expect(stats.res.sse.closeReason).toBe('overflow');
      expect(stats.pushesAfterOverflow).toEqual(Array.from({ length: 10 }, () => false));
      expect(stats.sendAfterOverflow).toBe(false);
      expect(stats.res.sse.signal.aborted).toBe(true);
      expect(stats.abortReason).toBeInstanceOf(DOMException);
      expect((stats.abortReason as DOMException).name).toBe('AbortError');
      // What the process held when it gave up is at most maxBuffer (plus the event that crossed it); the rest of what
      // was accepted left the process for the kernel's socket buffers. Far from the 100 MiB the route tried to push.
      expect(stats.acceptedBytes).toBeLessThan(FLOOD_MAX_BUFFER + kernelSocketBufferBytes());
      // The connection is dropped, not ended as if the stream were complete (a paused client notices once it reads).
      client.resume();
      await client.ended;
      expect(client.response.complete).toBe(false);
    },
    60_000,
  );

  it(
    'while a send() loop feeds one fast client, another stream on the server still gets its timer events and heartbeats',
    async () => {
      const ticking = await openStream(`${server.url}/ticks`);
      await ticking.waitForCount(1);
      tickClient = ticking;
      // The fast client runs in its own process and reads as fast as the kernel delivers, so the producer never
      // has to wait for it: only the stream's own yielding can let this process's timers and sockets run.
      const fast = await readInChildProcess(`${server.url}/fast`);
      const result = await fastLoop.promise;
      const received = await fast;
      console.log(
        `fairness: the fast loop sent ${result.sent} events (the child read ${received.events}) before the other client had 5 ticks and 3 heartbeats`,
      );

      expect(result.stoppedByTicks).toBe(true);
      expect(received.events).toBe(result.sent);
      // Ticks produced while the loop was running (it had sent some events, not yet all) reached the other client.
      const during = ticking.events
        .slice(result.ticksSeenAtStart)
        .map((event) => (JSON.parse(event.data) as { fastProgress: number }).fastProgress)
        .filter((progress) => progress > 0 && progress < result.sent);
      expect(during.length).toBeGreaterThanOrEqual(3);
      ticking.abort();
    },
    60_000,
  );
});

/**
 * Reads an SSE response in a separate Node process, as fast as it can, and resolves with the number of frames (blank
 * line terminated) it received once the response ended.
 */
function readInChildProcess(url: string): Promise<{ events: number; bytes: number }> {
  const script = `
    const http = require('node:http');
    http.get(process.argv[1], { agent: false }, (res) => {
      let events = 0, bytes = 0, last = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        bytes += chunk.length;
        const text = last + chunk;
        events += text.split('\\n\\n').length - 1;
        last = text.endsWith('\\n') ? '\\n' : '';
      });
      res.on('end', () => process.stdout.write(JSON.stringify({ events, bytes })));
    }).on('error', (error) => { console.error(error); process.exit(1); });
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script, url], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => (output += chunk));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`the reading process exited with ${code}`));
      else resolve(JSON.parse(output) as { events: number; bytes: number });
    });
  });
}

/**
 * Resolves with the producer's count once it has been waiting in send() across 20 turns of the event loop without
 * sending anything more, while the response reports it is full; rejects after 10 s (a producer that never stops).
 */
async function waitForStall(stats: ProducerStats): Promise<number> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const before = stats.sent;
    await loopTurns(20);
    if (stats.inSend && stats.sent === before && stats.res.writableNeedDrain) return before;
    if (Date.now() > deadline || stats.sent >= TOTAL) throw new Error(`the producer never waited in send(); it sent ${stats.sent}`);
  }
}

/**
 * The most the kernel may hold for one loopback connection whose reader stopped: the sender's maximum send buffer
 * plus the receiver's maximum receive buffer (Linux `tcp_wmem`/`tcp_rmem`), or 64 MiB where these cannot be read.
 */
function kernelSocketBufferBytes(): number {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { readFileSync } = require('node:fs') as typeof import('node:fs');
    const max = (file: string): number => Number(readFileSync(file, 'utf8').trim().split(/\s+/)[2]);
    const total = max('/proc/sys/net/ipv4/tcp_wmem') + max('/proc/sys/net/ipv4/tcp_rmem');
    return Number.isFinite(total) && total > 0 ? total : 64 * MIB;
  } catch {
    return 64 * MIB;
  }
}
