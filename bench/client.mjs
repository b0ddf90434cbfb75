/**
 * The load generator: runs one workload against one server and prints one line of JSON with the result.
 *
 *   node bench/client.mjs --port 1234 --workload stream|burst|tick|idle|forward|stall [--n N] [--clients C]
 *                         [--interval MS] [--pause MS] [--warmup]
 *
 * Every frame goes through eventsource-parser (a spec-following SSE parser). Each event's data must parse as JSON
 * whose `i` is the event's index in its stream, and each stream must carry exactly the events asked for: anything
 * else is a failure (a message on stderr, exit code 1), never a number.
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { createParser } from 'eventsource-parser';
import { exitWithParent, nowUs } from './servers/common.mjs';
import { percentile, serverClient } from './client-common.mjs';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    workload: { type: 'string' },
    n: { type: 'string', default: '1' },
    clients: { type: 'string', default: '1' },
    interval: { type: 'string', default: '10' },
    pause: { type: 'string', default: '0' },
    warmup: { type: 'boolean', default: false },
  },
});
const port = Number(args.port);
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
const { control, clockOffset } = serverClient(port, agent);

class Failure extends Error {}

/**
 * Opens one event stream and parses it. Resolves with the number of events when the server ends it, or, when
 * `until` is given, as soon as that many events have arrived (the stream is left open; `close()` ends it).
 * `onEvent(value, receivedUs)` sees each event's parsed data.
 */
function openStream(path, { expected, until, onEvent, pauseMs = 0 }) {
  let request;
  let count = 0;
  const done = new Promise((resolve, reject) => {
    const fail = (message) => {
      request.destroy();
      reject(new Failure(`${path}: ${message}`));
    };
    const parser = createParser({
      onEvent(event) {
        const received = nowUs();
        let value;
        try {
          value = JSON.parse(event.data);
        } catch {
          return fail(`event ${count} is not JSON: ${JSON.stringify(event.data.slice(0, 80))}`);
        }
        if (value?.i !== count) return fail(`event ${count} carries i=${value?.i}: an event was lost, repeated or reordered`);
        count++;
        onEvent?.(value, received);
        if (count === until) resolve(count);
      },
      onError: (error) => fail(`unparseable frame: ${error.message}`),
    });
    request = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      const type = res.headers['content-type'] ?? '';
      if (res.statusCode !== 200 || !type.startsWith('text/event-stream')) return fail(`status ${res.statusCode}, content-type ${type}`);
      res.setEncoding('utf8');
      res.on('data', (chunk) => parser.feed(chunk));
      if (pauseMs > 0) {
        // A stalled client: read nothing for pauseMs, then everything.
        res.pause();
        setTimeout(() => res.resume(), pauseMs);
      }
      res.on('end', () => {
        if (until !== undefined) return fail(`ended after ${count} events, before the ${until} expected`);
        if (count !== expected) return fail(`got ${count} events, expected ${expected}`);
        resolve(count);
      });
      res.on('error', (error) => fail(`connection lost after ${count} events (${error.message})`));
    });
    request.on('error', (error) => fail(`connection lost after ${count} events (${error.message})`));
  });
  return { done, count: () => count, close: () => request.destroy() };
}

/** Opens `clients` streams at once and waits until every one has ended with its `n` events. */
async function streams(path, clients, n, options = {}) {
  const all = [];
  for (let c = 0; c < clients; c++) all.push(openStream(path, { expected: n, ...options }).done);
  await Promise.all(all);
  return clients * n;
}

/** Times `work` between /_bench/begin and /_bench/end; returns events/s and the server's CPU and memory. */
async function measured(work) {
  await control('begin');
  const start = performance.now();
  const events = await work();
  const wallMs = performance.now() - start;
  const server = await control('end');
  return { events, wallMs, eventsPerSec: events / (wallMs / 1000), cpuUsPerEvent: server.cpuUs / events, ...server };
}


const workloads = {
  /** (1) one stream, n events back to back; (5) /forward is the same with the log-record payload. */
  stream: ({ n }) => measured(() => streams(`/stream?n=${n}`, 1, n)),
  forward: ({ n }) => measured(() => streams(`/forward?n=${n}`, 1, n)),
  /** (2) `clients` streams of n events each, all opened at once. */
  burst: ({ n, clients }) => measured(() => streams(`/stream?n=${n}`, clients, n)),
  /** (3) `clients` streams with one event every `interval` ms; latency = receipt - send time, clocks aligned. */
  async tick({ n, clients, interval }) {
    const offset = await clockOffset();
    const latencies = new Float64Array(n * clients);
    let k = 0;
    const onEvent = (value, received) => (latencies[k++] = received - (value.t - offset));
    const result = await measured(() => streams(`/tick?n=${n}&interval=${interval}`, clients, n, { onEvent }));
    latencies.sort();
    const ms = (us) => us / 1000;
    return { ...result, p50Ms: ms(percentile(latencies, 0.5)), p99Ms: ms(percentile(latencies, 0.99)), maxMs: ms(latencies[k - 1]), clockOffsetUs: offset };
  },
  /** (4) `clients` streams that stay open after their first event: server heap per connection after forced GC. */
  async idle({ clients }) {
    const before = await control('heap');
    const open = [];
    for (let c = 0; c < clients; c += 200) {
      // In batches, so the accept queue never overflows into SYN retries.
      const batch = [];
      for (let b = c; b < Math.min(clients, c + 200); b++) batch.push(openStream('/idle', { until: 1 }));
      await Promise.all(batch.map((s) => s.done));
      open.push(...batch);
    }
    const after = await control('heap');
    if (after.connections < clients) throw new Failure(`the server holds ${after.connections} connections, expected ${clients}`);
    const extra = open.filter((s) => s.count() !== 1).length;
    if (extra > 0) throw new Failure(`/idle: ${extra} streams got more than the one event expected`);
    for (const s of open) s.close();
    return { connections: clients, heapBefore: before.heapUsed, heapAfter: after.heapUsed, heapPerConnection: (after.heapUsed - before.heapUsed) / clients };
  },
  /** A client that reads nothing for `pause` ms of a long stream: how much does the server buffer meanwhile? */
  stall: ({ n, pause }) => measured(() => streams(`/stream?n=${n}`, 1, n, { pauseMs: pause })),
};

/** A short run of the same workload first, so the measured run starts with warm code. */
const WARMUP = { stream: { n: 5000 }, forward: { n: 5000 }, burst: { clients: 20, n: 100 }, tick: { clients: 20, n: 10, interval: 5 }, idle: { clients: 100 }, stall: { n: 5000, pause: 0 } };

async function main() {
  const workload = workloads[args.workload];
  if (workload === undefined || !(port > 0)) throw new Error(`usage: client.mjs --port N --workload ${Object.keys(workloads).join('|')}`);
  if (args.warmup) {
    await workload(WARMUP[args.workload]);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const params = { n: Number(args.n), clients: Number(args.clients), interval: Number(args.interval), pause: Number(args.pause) };
  const result = await workload(params);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

exitWithParent();
main().then(
  () => process.exit(0),
  (error) => {
    console.error(error instanceof Failure ? `FAIL: ${error.message}` : `ERROR: ${error.stack ?? error}`);
    process.exit(1);
  },
);
