/**
 * `closeAllStreams({ retry, jitter })` during a deploy: 1,000 real `EventSource` clients (the `eventsource` package)
 * are told to come back, each after its own `retry` drawn from `[retry, retry + jitter]`, so their reconnections
 * reach the server over that window instead of in the same instant. The test timestamps every reconnection.
 */
import { EventSource } from 'eventsource';
import express from 'express';
import { closeAllStreams, openStreamCount, sseStream } from '../../lib';
import { eventually, listen, type TestServer } from '../helpers/sse-client';

const CLIENTS = 1000;
const RETRY = 200;
const JITTER = 2000;

describe('closeAllStreams({ retry, jitter })', () => {
  let server: TestServer;
  const connections = new Map<string, number[]>();

  beforeAll(async () => {
    const app = express();
    app.get('/deploy/:id', sseStream({ heartbeat: 0 }), (req, res) => {
      const times = connections.get(String(req.params.id)) ?? [];
      times.push(performance.now());
      connections.set(String(req.params.id), times);
      res.sse.push('hello');
    });
    server = await listen(app);
  });
  afterAll(() => server.close());

  /** Opens `CLIENTS` EventSource clients, shuts them all down, and returns each one's ms from shutdown to return. */
  const reconnectionDelays = async (round: string, jitter: number): Promise<number[]> => {
    const sources = Array.from({ length: CLIENTS }, (_, i) => new EventSource(`${server.url}/deploy/${round}-${i}`));
    try {
      await eventually(() => openStreamCount() === CLIENTS, 30_000, `${CLIENTS} streams to open`);
      const shutdownAt = performance.now();
      await closeAllStreams({ retry: RETRY, jitter });
      const times = (): number[][] => Array.from({ length: CLIENTS }, (_, i) => connections.get(`${round}-${i}`) ?? []);
      await eventually(() => times().every((list) => list.length >= 2), 30_000, 'every client to come back');
      return times().map((list) => list[1]! - shutdownAt).sort((a, b) => a - b);
    } finally {
      for (const source of sources) source.close();
      await eventually(() => openStreamCount() === 0, 10_000, 'the clients to leave');
    }
  };
  const quantile = (delays: number[], q: number): number => delays[Math.floor(q * (delays.length - 1))]!;
  const describeDelays = (delays: number[]): string =>
    [0, 0.1, 0.5, 0.9, 1].map((q) => quantile(delays, q).toFixed(0)).join(' / ');

  it(`spreads the reconnections of ${CLIENTS} EventSource clients over [retry, retry + jitter]`, async () => {
    const bunched = await reconnectionDelays('bunched', 0);
    const spread = await reconnectionDelays('spread', JITTER);
    const width = (delays: number[]): number => quantile(delays, 0.9) - quantile(delays, 0.1);
    console.log(
      `closeAllStreams, ${CLIENTS} EventSource clients, ms from shutdown to reconnection (min / p10 / median / p90 / max): ` +
        `retry ${RETRY}, jitter 0: ${describeDelays(bunched)}; retry ${RETRY}, jitter ${JITTER}: ${describeDelays(spread)}; ` +
        `p10-p90 width ${width(bunched).toFixed(0)} vs ${width(spread).toFixed(0)} ms`,
    );
    expect(bunched[0]).toBeGreaterThanOrEqual(RETRY);
    expect(spread[0]).toBeGreaterThanOrEqual(RETRY);
    // Uniform over 2 s, the middle 80% of the clients span about 1.6 s, plus the time the shutdown itself takes.
    expect(width(spread)).toBeGreaterThanOrEqual(JITTER / 2);
  }, 120_000);

  it('gives every client the same retry with jitter 0, and a retry in [retry, 2 × retry] by default', async () => {
    const { openStream } = await import('../helpers/sse-client');
    const same = await Promise.all(Array.from({ length: 50 }, (_, i) => openStream(`${server.url}/deploy/same-${i}`)));
    await closeAllStreams({ retry: 1000, jitter: 0 });
    await Promise.all(same.map((client) => client.ended));
    expect(new Set(same.flatMap((client) => client.retries))).toEqual(new Set([1000]));

    const spread = await Promise.all(Array.from({ length: 50 }, (_, i) => openStream(`${server.url}/deploy/default-${i}`)));
    await closeAllStreams({ retry: 1000 });
    await Promise.all(spread.map((client) => client.ended));
    const retries = spread.flatMap((client) => client.retries);
    expect(retries).toHaveLength(50);
    expect(retries.every((retry) => retry >= 1000 && retry <= 2000)).toBe(true);
    expect(new Set(retries).size).toBeGreaterThan(25);
  });

  it('rejects a bad jitter with a TypeError naming it', async () => {
    await expect(closeAllStreams({ retry: 100, jitter: -1 })).rejects.toThrow(/^jitter: expected a non-negative integer/);
    await expect(closeAllStreams({ retry: 100, jitter: 1.5 })).rejects.toThrow(TypeError);
    await expect(closeAllStreams({ jitter: 100 })).rejects.toThrow(/^jitter: needs retry/);
    await expect(closeAllStreams({ retry: Number.MAX_SAFE_INTEGER, jitter: 1 })).rejects.toThrow(/^jitter: retry \+ jitter/);
  });
});
