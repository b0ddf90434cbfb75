/**
 * A stalled client: it sends its request and then never reads another byte, while the route calls `push()` for
 * 100 MiB of events without ever awaiting `send()`. The server holds at most `maxBuffer` for it: the stream closes as
 * 'overflow' (signal aborted, connection dropped, every later push refused), and the process's resident memory grows
 * by at most `maxBuffer` plus a fixed allowance, measured in this process, before and at its peak during the flood.
 *
 * Meanwhile three other clients on the same server keep receiving: after every MiB the producer attempts, it pushes
 * one event to each of them and goes on only once every one of them has *received* it. So the flood can only finish
 * if the other clients are served all along; no clock is involved, and the count of their events is printed.
 *
 * The allowance (ALLOWANCE below, 32 MiB) is what the flood costs besides the held text, independent of how much is
 * attempted: V8's young generation, which grows under allocation pressure to two semi-spaces of at most 16 MiB each on
 * 64-bit Node 20 (the frames and their concatenations are short-lived strings), plus allocator slack for socket write
 * requests. Without the maxBuffer bound the 100 MiB would stay in the process (as pending text or in the socket's
 * write queue), far above maxBuffer + 32 MiB.
 */
import express from 'express';
import { sseStream, type SseStream } from '../../lib';
import { deferred, loopTurns, type Deferred } from '../helpers/deferred';
import { stalledClient } from '../helpers/raw-client';
import { eventually, listen, openStream, type StreamClient, type TestServer } from '../helpers/sse-client';
import { collectGarbage, KIB, MIB, mib } from './support';

/** The default maxBuffer (4 MiB), so the test measures what an application gets without configuring anything. */
const MAX_BUFFER = 4 * MIB;
const ALLOWANCE = 32 * MIB;
const FLOOD_BYTES = 100 * MIB;
const OTHERS = 3;
/** One event's payload: 8 KiB of text. */
const PAYLOAD = 'x'.repeat(8 * KIB);

interface FloodReport {
  sse: SseStream;
  attemptedBytes: number;
  acceptedBytes: number;
  acceptedEvents: number;
  refused: number;
  /** Peak `rss - baseline` sampled after every pushed MiB. */
  peakRssGrowth: number;
  /**
   * The largest rise of RSS above its lowest value so far (the baseline, or lower). This is what is asserted: memory
   * the process happens to return to the OS meanwhile (a jest worker reused from an earlier test file can shrink by
   * 100+ MiB) cannot hide growth from the flood.
   */
  peakRssRise: number;
  lowestRss: number;
  peakHeapGrowth: number;
  peakExternalGrowth: number;
  /** Ticks pushed to each other client, each received before the producer went on. */
  ticks: number;
  abortReason: unknown;
  finished: Deferred<void>;
}

describe('a stalled client', () => {
  let server: TestServer;
  let flood = deferred<FloodReport>();
  /** The other clients, as the test sees them; the flood route waits on their arrivals. */
  const others: StreamClient[] = [];
  const otherStreams: SseStream[] = [];
  let rssBaseline = 0;
  let heapBaseline = 0;
  let externalBaseline = 0;
  let floodBytes = FLOOD_BYTES;

  beforeAll(async () => {
    const app = express();
    app.get('/flood', sseStream({ heartbeat: 0 }), async (_req, res) => {
      const sse = res.sse;
      const report: FloodReport = {
        sse,
        attemptedBytes: 0,
        acceptedBytes: 0,
        acceptedEvents: 0,
        refused: 0,
        peakRssGrowth: 0,
        peakRssRise: 0,
        lowestRss: rssBaseline,
        peakHeapGrowth: 0,
        peakExternalGrowth: 0,
        ticks: 0,
        abortReason: undefined,
        finished: deferred(),
      };
      sse.signal.addEventListener('abort', () => (report.abortReason = sse.signal.reason));
      flood.resolve(report);
      let seq = 0;
      while (report.attemptedBytes < floodBytes) {
        // One MiB of push() calls in one synchronous burst, as a producer that never awaits send() does.
        const mibEnd = report.attemptedBytes + MIB;
        while (report.attemptedBytes < mibEnd) {
          const frame = `${seq} ${PAYLOAD}`;
          report.attemptedBytes += frame.length + 8; // 'data: ' and the blank line
          if (sse.push(frame)) {
            report.acceptedEvents += 1;
            report.acceptedBytes += frame.length + 8;
          } else {
            report.refused += 1;
          }
          seq += 1;
        }
        await loopTurns(1);
        const memory = process.memoryUsage();
        report.peakRssGrowth = Math.max(report.peakRssGrowth, memory.rss - rssBaseline);
        report.lowestRss = Math.min(report.lowestRss, memory.rss);
        report.peakRssRise = Math.max(report.peakRssRise, memory.rss - report.lowestRss);
        report.peakHeapGrowth = Math.max(report.peakHeapGrowth, memory.heapUsed - heapBaseline);
        report.peakExternalGrowth = Math.max(report.peakExternalGrowth, memory.external + memory.arrayBuffers - externalBaseline);
        // Every other client must receive one more event before the flood goes on.
        report.ticks += 1;
        const tick = report.ticks;
        for (const other of otherStreams) other.push({ tick, attempted: report.attemptedBytes });
        await Promise.all(others.map((client) => client.waitForCount(tick, 10_000)));
      }
      report.finished.resolve();
    });
    app.get('/other', sseStream({ heartbeat: 0 }), (_req, res) => {
      otherStreams.push(res.sse);
    });
    server = await listen(app);
  });
  afterAll(async () => {
    for (const client of others) client.abort();
    await server.close();
  });

  /** Runs one flood against a fresh stalled client, with the other clients open. */
  async function runFlood(bytes: number): Promise<{ report: FloodReport; stalledClosed: boolean }> {
    floodBytes = bytes;
    flood = deferred<FloodReport>();
    const stalled = await stalledClient(`${server.url}/flood`);
    const report = await flood.promise;
    await report.finished.promise;
    let stalledClosed = false;
    void stalled.closed.then(() => (stalledClosed = true));
    if (report.sse.closeReason === 'overflow') {
      // The server dropped the connection: once the client reads again it gets what the kernel held, then the end.
      stalled.socket.resume();
      await eventually(() => stalledClosed, 10_000, 'the stalled connection to be dropped');
    } else {
      stalled.socket.destroy();
    }
    return { report, stalledClosed };
  }

  it(
    'costs at most maxBuffer plus a fixed allowance while 100 MiB are pushed; closes as "overflow"; others keep receiving',
    async () => {
      for (let i = 0; i < OTHERS; i += 1) others.push(await openStream(`${server.url}/other`));
      await eventually(() => otherStreams.length === OTHERS, 5000, 'the other streams to open');

      // Warm-up: a first, smaller flood, so lazily allocated pools and compiled code are in the baseline.
      await runFlood(16 * MIB);
      const ticksBefore = others.map((client) => client.events.length);

      await collectGarbage();
      const before = process.memoryUsage();
      rssBaseline = before.rss;
      heapBaseline = before.heapUsed;
      externalBaseline = before.external + before.arrayBuffers;

      const { report, stalledClosed } = await runFlood(FLOOD_BYTES);
      const afterFlood = process.memoryUsage();
      await collectGarbage();
      const settled = process.memoryUsage();
      const received = others.map((client, i) => client.events.length - ticksBefore[i]);

      console.log(
        [
          `stalled client: attempted ${mib(report.attemptedBytes)} with push(); accepted ${report.acceptedEvents} events ` +
            `(${mib(report.acceptedBytes)}, the rest of which left for the kernel's socket buffers) before overflow; ` +
            `${report.refused} pushes refused afterwards; closeReason ${String(report.sse.closeReason)}`,
          `  RSS: baseline ${mib(rssBaseline)}, peak growth ${mib(report.peakRssGrowth)}, peak rise above the lowest value so far ` +
            `${mib(report.peakRssRise)}, after the flood ${mib(afterFlood.rss - rssBaseline)}, ` +
            `after GC ${mib(settled.rss - rssBaseline)}; bound maxBuffer ${mib(MAX_BUFFER)} + allowance ${mib(ALLOWANCE)} = ${mib(MAX_BUFFER + ALLOWANCE)}`,
          `  heap used: peak growth ${mib(report.peakHeapGrowth)}; external + array buffers: peak growth ${mib(report.peakExternalGrowth)}`,
          `  other clients received ${JSON.stringify(received)} events during the flood (one per MiB attempted, each before the next MiB)`,
        ].join('\n'),
      );

      expect(report.attemptedBytes).toBeGreaterThanOrEqual(FLOOD_BYTES);
      expect(report.sse.closeReason).toBe('overflow');
      expect(report.sse.closed).toBe(true);
      expect(report.sse.signal.aborted).toBe(true);
      expect(report.abortReason).toBeInstanceOf(DOMException);
      expect(report.refused).toBeGreaterThan(0);
      expect(report.sse.push('late')).toBe(false);
      expect(stalledClosed).toBe(true);
      expect(report.peakRssRise).toBeLessThanOrEqual(MAX_BUFFER + ALLOWANCE);
      expect(report.peakRssGrowth).toBeLessThanOrEqual(MAX_BUFFER + ALLOWANCE);
      // Every other client received every tick, in order, and its stream is still open.
      expect(report.ticks).toBe(FLOOD_BYTES / MIB);
      for (const [i, client] of others.entries()) {
        expect(received[i]).toBe(report.ticks);
        const ticks = client.events.slice(ticksBefore[i]).map((event) => (JSON.parse(event.data) as { tick: number }).tick);
        expect(ticks).toEqual(Array.from({ length: report.ticks }, (_, n) => n + 1));
      }
      expect(otherStreams.every((sse) => !sse.closed)).toBe(true);
    },
    60_000,
  );
});
