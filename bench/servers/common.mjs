/**
 * What every benchmark server shares: the event payload, the hand-written SSE routes (used by raw.mjs and
 * express.mjs), and serve(), which listens on 127.0.0.1, prints `PORT <n>`, answers the /_bench/* control routes
 * and measures CPU time, memory and bytes buffered between /_bench/begin and /_bench/end.
 *
 * The protocol each implementation serves (each route sends 200 + text/event-stream, then):
 *   GET /stream?n=N               N events back to back, then ends the response (workloads 1 and 2)
 *   GET /tick?n=N&interval=MS     one event every MS ms (setInterval), N in all, then ends (workload 3)
 *   GET /idle                     one event, then stays open and quiet (workload 4)
 *   GET /forward?n=N              like /stream with the log-record payload (workload 5; library servers only)
 * Every event's data is the JSON of payload(i): 64 bytes, with `i` its index in the stream and `t` the server's
 * clock (µs since the epoch) when it was made.
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';

/** Wall-clock time in µs, with sub-millisecond resolution (Date.now() has only ms). */
export const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

const PAD = 'x'.repeat(64);
/** `{"i":<i>,"t":<t>,"p":"xx…"}`: 64 bytes of JSON while `t` has 16 digits (until the year 2286). */
export function payload(i) {
  const t = nowUs();
  return { i, t, p: PAD.slice(0, 46 - String(i).length - String(t).length) };
}

/** One SSE frame for `value`, as a hand-written server writes it. */
export const frame = (value) => `data: ${JSON.stringify(value)}\n\n`;

/** The numeric query parameters of a request URL. */
export function query(url) {
  const params = new URL(url, 'http://127.0.0.1').searchParams;
  return { n: Number(params.get('n')), interval: Number(params.get('interval')) };
}

/** Resolves on the response's next 'drain' or 'close', whichever comes first. */
export function drained(res) {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/**
 * Calls `emit(i)` for i = 0..n-1 the way a producer with no backpressure signal of its own (`push()`, `logger.info()`)
 * has to run: a macrotask turn every 100 events (as the real work between log calls gives), then a wait for 'drain'
 * while the response is full. Without the turns, a library that writes on a later tick would only collect.
 */
export async function produce(res, n, emit) {
  for (let i = 0; i < n && !res.sse.closed; i++) {
    emit(i);
    if (i % 100 === 99) {
      await new Promise(setImmediate);
      while (res.writableNeedDrain && !res.sse.closed) await drained(res);
    }
  }
}

const SSE_HEADERS = { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' };

/** The routes written by hand, one res.write per event, waiting for 'drain' when res.write returns false. */
export const byHand = {
  async stream(req, res) {
    const { n } = query(req.url);
    res.writeHead(200, SSE_HEADERS);
    for (let i = 0; i < n; i++) {
      if (!res.write(frame(payload(i)))) await drained(res);
      if (res.destroyed) return;
    }
    res.end();
  },
  tick(req, res) {
    const { n, interval } = query(req.url);
    res.writeHead(200, SSE_HEADERS);
    let i = 0;
    const timer = setInterval(() => {
      res.write(frame(payload(i)));
      if (++i === n) {
        clearInterval(timer);
        res.end();
      }
    }, interval);
    res.on('close', () => clearInterval(timer));
  },
  idle(req, res) {
    res.writeHead(200, SSE_HEADERS);
    res.write(frame(payload(0)));
  },
};

// ---- measurement ----------------------------------------------------------------------------------------------

const sockets = new Set();
let measuring = null;

/**
 * Records the current memory use and bytes waiting in sockets into the running measurement: every 5 ms, and when a
 * server calls it after a loop that never yields (better-sse), before those bytes start to leave.
 */
export function sample() {
  if (measuring === null) return;
  const start = process.hrtime.bigint();
  const { rss, heapUsed } = process.memoryUsage();
  let buffered = 0;
  for (const socket of sockets) buffered += socket.writableLength;
  measuring.peakRss = Math.max(measuring.peakRss, rss);
  measuring.peakHeap = Math.max(measuring.peakHeap, heapUsed);
  measuring.peakBuffered = Math.max(measuring.peakBuffered, buffered);
  measuring.samplerNs += process.hrtime.bigint() - start;
  measuring.samples++;
}

async function forcedGcHeap() {
  for (let i = 0; i < 3; i++) {
    globalThis.gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return process.memoryUsage().heapUsed;
}

const control = {
  begin() {
    clearInterval(measuring?.timer);
    measuring = { cpu: process.cpuUsage(), peakRss: 0, peakHeap: 0, peakBuffered: 0, samplerNs: 0n, samples: 0, timer: setInterval(sample, 5) };
    sample();
    return {};
  },
  end() {
    if (measuring === null) throw new Error('/_bench/end without /_bench/begin');
    sample();
    clearInterval(measuring.timer);
    const { user, system } = process.cpuUsage(measuring.cpu);
    const { peakRss, peakHeap, peakBuffered, samples } = measuring;
    const samplerUs = Number(measuring.samplerNs / 1000n);
    measuring = null;
    // The sampling is ours, not the implementation's: its time is taken out of the CPU time.
    return { cpuUs: user + system - samplerUs, peakRss, peakHeap, peakBuffered, samples, samplerUs };
  },
  async heap() {
    if (typeof globalThis.gc !== 'function') throw new Error('start the server with --expose-gc');
    return { heapUsed: await forcedGcHeap(), connections: sockets.size };
  },
  clock: () => ({ t: nowUs() }),
};

/** Serves `handler` (a node (req, res) listener: an Express app, Hono's getRequestListener, a function) on 127.0.0.1. */
export function serve(handler) {
  const server = http.createServer(async (req, res) => {
    if (!req.url.startsWith('/_bench/')) return handler(req, res);
    const route = control[req.url.slice('/_bench/'.length)];
    try {
      if (route === undefined) throw new Error(`no control route ${req.url}`);
      const body = JSON.stringify(await route());
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(body);
    } catch (error) {
      res.writeHead(500).end(String(error?.message ?? error));
    }
  });
  // 2,000 concurrent streams: no request timeout, a deep accept backlog.
  server.requestTimeout = 0;
  server.headersTimeout = 0;
  server.keepAliveTimeout = 0;
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1', 4096, () => console.log(`PORT ${server.address().port}`));
  exitWithParent();
  process.on('SIGTERM', () => process.exit(0)); // an orderly exit, so that --cpu-prof writes its profile
  return server;
}

/** Exits when the process that started this one is gone (the orchestrator was killed), so nothing is left behind. */
export function exitWithParent() {
  const parent = process.ppid;
  setInterval(() => process.ppid !== parent && process.exit(3), 500).unref();
}
