/**
 * The load generator of the fan-out and broadcast workloads: runs one against one server, prints one line of JSON.
 *
 *   node bench/channels-client.mjs --port P --workload fanout --followers F --n N [--warmup]
 *   node bench/channels-client.mjs --port P --workload broadcast --subscribers S --m M [--warmup]
 *
 * As in client.mjs, every frame goes through eventsource-parser and every event's data must be JSON whose `i` is its
 * index in the stream; a lost, repeated or reordered event, an event too many, a stream that ends early or one that
 * is still short after DEADLINE_MS is a failure (a message on stderr, exit code 1), never a number.
 *
 * fanout: F streams of one key (/fanout?key=K&n=N). Each must get event 0 (the route pushes it at once; a follower
 * that has it is following the run), then the client calls /fanout/go?key=K and times from there until every
 * stream has ended with events 1..N. events/s = F × N / that time. The server also reports the CPU time of the
 * Redis server over the same span (INFO cpu; none for the other stores), which its own cpuUsage() does not include.
 *
 * broadcast: S streams of /bc/subscribe, opened in batches of 500. Once the server counts S subscribers, the client
 * has it broadcast {"sync":k} until every stream has had one (so every subscriber is registered, whatever the
 * implementation does between accepting a request and following the channel), then calls /bc/go?m=M and times from
 * there until every stream has events 0..M-1. events/s = S × M / that time.
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
    followers: { type: 'string', default: '100' },
    n: { type: 'string', default: '200' },
    subscribers: { type: 'string', default: '1000' },
    m: { type: 'string', default: '50' },
    warmup: { type: 'boolean', default: false },
  },
});
const port = Number(args.port);
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity, maxTotalSockets: Infinity });
const { get, control, clockOffset } = serverClient(port, agent);
/** How long the timed part may take before the client gives up and says which streams are short. */
const DEADLINE_MS = 20_000;
const BATCH = 500;

class Failure extends Error {}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One event stream, parsed. `expected`: the events 0..expected-1 it must carry, then (`ends`) the server ends it, or
 * (not `ends`) it stays open and any event after them fails. `sync` events ({"sync":k}) are allowed before event 0
 * only. `onEvent(value, receivedUs)` sees each counted event. `opened` resolves with the response's headers, `first`
 * with event 0, `done` with the last expected event (or the end of the stream).
 */
function openStream(path, { expected, ends, onEvent }) {
  let count = 0;
  let synced = false;
  let settled = false;
  let failure;
  const deferred = () => {
    let resolve;
    const promise = new Promise((r) => (resolve = r));
    return { promise, resolve };
  };
  const opened = deferred();
  const first = deferred();
  const done = deferred();
  const fail = (message) => {
    if (failure !== undefined) return;
    failure = new Failure(`${path}: ${message}`);
    request.destroy();
    // Whoever waits on any of the three learns it.
    for (const d of [opened, first, done]) d.resolve(failure);
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
      if (value?.sync !== undefined) {
        if (count > 0) return fail(`a sync event after event ${count - 1}`);
        synced = true;
        return;
      }
      if (settled) return fail(`an event after the ${expected} expected (i=${value?.i})`);
      if (value?.i !== count) return fail(`event ${count} carries i=${value?.i}: an event was lost, repeated or reordered`);
      count++;
      onEvent?.(value, received);
      if (count === 1) first.resolve();
      if (count === expected && !ends) {
        settled = true;
        done.resolve();
      }
    },
    onError: (error) => fail(`unparseable frame: ${error.message}`),
  });
  const request = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
    const type = res.headers['content-type'] ?? '';
    if (res.statusCode !== 200 || !type.startsWith('text/event-stream')) return fail(`status ${res.statusCode}, content-type ${type}`);
    opened.resolve();
    res.setEncoding('utf8');
    res.on('data', (chunk) => parser.feed(chunk));
    res.on('end', () => {
      if (!ends) return settled ? undefined : fail(`ended after ${count} events, before the ${expected} expected`);
      if (count !== expected) return fail(`got ${count} events, expected ${expected}`);
      settled = true;
      done.resolve();
    });
    res.on('error', (error) => fail(`connection lost after ${count} events (${error.message})`));
  });
  request.on('error', (error) => fail(`connection lost after ${count} events (${error.message})`));
  return {
    opened: opened.promise,
    first: first.promise,
    done: done.promise,
    count: () => count,
    synced: () => synced,
    failure: () => failure,
    close: () => request.destroy(),
  };
}

/** Waits for `promises` (which resolve with a Failure instead of rejecting), throws the first failure. */
async function all(promises, what, streams) {
  let timer;
  const deadline = new Promise((resolve) => (timer = setTimeout(resolve, DEADLINE_MS, 'deadline')));
  const outcome = await Promise.race([Promise.all(promises), deadline]);
  clearTimeout(timer);
  if (outcome === 'deadline') {
    const counts = streams.map((s) => s.count());
    const short = counts.filter((c, k) => streams[k].failure() === undefined).length;
    throw new Failure(`${what}: not done after ${DEADLINE_MS / 1000} s (${short} streams waiting; counts ${Math.min(...counts)}–${Math.max(...counts)})`);
  }
  const failure = outcome.find((x) => x instanceof Failure);
  if (failure !== undefined) throw failure;
}

/** Sorted latencies (ms) of the first `k` entries. */
function latency(latencies, k) {
  const sorted = latencies.subarray(0, k).sort();
  const ms = (us) => us / 1000;
  return { p50Ms: ms(percentile(sorted, 0.5)), p99Ms: ms(percentile(sorted, 0.99)), maxMs: ms(sorted[k - 1]) };
}

let runs = 0;

const workloads = {
  async fanout({ followers, n }) {
    const offset = await clockOffset();
    const key = `fanout-${process.pid}-${Date.now()}-${runs++}`;
    const latencies = new Float64Array(followers * n);
    let k = 0;
    const onEvent = (value, received) => {
      if (value.i > 0) latencies[k++] = received - (value.t - offset);
    };
    const streams = [];
    for (let f = 0; f < followers; f++) streams.push(openStream(`/fanout?key=${key}&n=${n}`, { expected: n + 1, ends: true, onEvent }));
    await all(streams.map((s) => s.first), 'event 0', streams);
    const storeBefore = await get('/fanout/store-cpu');
    await control('begin');
    const start = performance.now();
    await get(`/fanout/go?key=${key}`);
    await all(streams.map((s) => s.done), `events 1..${n}`, streams);
    const wallMs = performance.now() - start;
    const server = await control('end');
    const storeAfter = await get('/fanout/store-cpu');
    const storeCpuUs = storeAfter.us === null ? undefined : storeAfter.us - storeBefore.us;
    const events = followers * n;
    if (k !== events) throw new Failure(`counted ${k} events, expected ${events}`);
    return {
      followers,
      events,
      wallMs,
      eventsPerSec: events / (wallMs / 1000),
      cpuUsPerEvent: server.cpuUs / events,
      storeCpuUsPerEvent: storeCpuUs === undefined ? undefined : storeCpuUs / events,
      ...server,
      storeCpuUs,
      ...latency(latencies, k),
      clockOffsetUs: offset,
    };
  },

  async broadcast({ subscribers, m }) {
    const offset = await clockOffset();
    const latencies = new Float64Array(subscribers * m);
    let k = 0;
    const onEvent = (value, received) => (latencies[k++] = received - (value.t - offset));
    const connectStart = performance.now();
    const streams = [];
    for (let s = 0; s < subscribers; s += BATCH) {
      // In batches, so the accept queue never overflows into SYN retries.
      const batch = [];
      for (let b = s; b < Math.min(subscribers, s + BATCH); b++) batch.push(openStream('/bc/subscribe', { expected: m, ends: false, onEvent }));
      streams.push(...batch);
      await all(batch.map((x) => x.opened), 'opening the streams', batch);
    }
    for (let tries = 0; ; tries++) {
      const { subscribers: counted } = await get('/bc/count');
      if (counted === subscribers) break;
      if (tries === 200) throw new Failure(`the server counts ${counted} subscribers, expected ${subscribers}`);
      await sleep(25);
    }
    const connectMs = performance.now() - connectStart;
    let syncs = 0;
    while (streams.some((s) => !s.synced())) {
      if (syncs === 50) throw new Failure(`${streams.filter((s) => !s.synced()).length} subscribers got none of ${syncs} sync broadcasts`);
      await get(`/bc/sync?k=${++syncs}`);
      for (let wait = 0; wait < 20 && streams.some((s) => !s.synced()); wait++) await sleep(10);
    }
    const broken = streams.find((s) => s.failure() !== undefined);
    if (broken !== undefined) throw broken.failure();
    await control('begin');
    const start = performance.now();
    await get(`/bc/go?m=${m}`);
    await all(streams.map((s) => s.done), `events 0..${m - 1}`, streams);
    const wallMs = performance.now() - start;
    // Anything more that comes in meanwhile fails its stream.
    await sleep(50);
    const server = await control('end');
    const late = streams.find((s) => s.failure() !== undefined);
    if (late !== undefined) throw late.failure();
    for (const s of streams) s.close();
    const events = subscribers * m;
    if (k !== events) throw new Failure(`counted ${k} events, expected ${events}`);
    return {
      subscribers,
      events,
      wallMs,
      eventsPerSec: events / (wallMs / 1000),
      cpuMs: server.cpuUs / 1000,
      cpuUsPerEvent: server.cpuUs / events,
      ...server,
      ...latency(latencies, k),
      connectMs,
      syncs,
      clockOffsetUs: offset,
    };
  },
};

/** A short run first, so the measured run starts with warm code. */
const WARMUP = { fanout: { followers: 20, n: 100 }, broadcast: { subscribers: 200, m: 20 } };

async function main() {
  const workload = workloads[args.workload];
  if (workload === undefined || !(port > 0)) throw new Error(`usage: channels-client.mjs --port N --workload ${Object.keys(workloads).join('|')}`);
  if (args.warmup) {
    await workload(WARMUP[args.workload]);
    await sleep(200);
  }
  const result = await workload({ followers: Number(args.followers), n: Number(args.n), subscribers: Number(args.subscribers), m: Number(args.m) });
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
