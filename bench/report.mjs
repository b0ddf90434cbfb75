/**
 * Turns the runs into markdown: the machine and versions, a summary of ratios, the issue's targets, and one table
 * per workload with the median, min and max of the runs.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

const PACKAGES = ['express', 'better-sse', 'hono', '@hono/node-server', 'compression', 'winston', 'winston-transport', 'pino', 'eventsource-parser', 'ioredis'];

/** The machine, the versions and the library's commit; `root` is the project's directory. */
export function machine(root) {
  const read = (path) => {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return '';
    }
  };
  const version = (dir) => JSON.parse(read(`${dir}/package.json`) || '{}').version ?? 'missing';
  const git = (...argv) => {
    try {
      return execFileSync('git', argv, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return '';
    }
  };
  const commit = git('rev-parse', '--short', 'HEAD');
  const libModified = commit && git('status', '--porcelain', '--', 'lib') !== '';
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    cpus: os.availableParallelism?.() ?? os.cpus().length,
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(read('/proc/cpuinfo'))?.[1] ?? os.cpus()[0]?.model ?? 'unknown',
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    load: os.loadavg().map((x) => x.toFixed(2)).join(' '),
    library: `${version(root)}${commit ? ` (commit ${commit}${libModified ? ', lib/ modified' : ''})` : ''}`,
    packages: Object.fromEntries(PACKAGES.map((name) => [name, version(`${root}/node_modules/${name}`)])),
  };
}

const LABELS = {
  raw: 'raw node:http',
  express: 'Express route, by hand',
  'better-sse': 'better-sse',
  hono: 'Hono streamSSE',
  lib: 'express-sse-context',
  'lib-transport': 'express-sse-context, SseTransport',
  'lib-pino': 'express-sse-context, pino + sseDestination',
  'lib-compression': 'express-sse-context + compression()',
  'lib-memory': 'express-sse-context, resume, MemoryStore',
  'lib-redis': 'express-sse-context, resume, RedisStore',
  'lib-plain': 'express-sse-context, no resume (each client runs the route)',
};

// ---- numbers ------------------------------------------------------------------------------------------------------

function stats(values) {
  const sorted = values.toSorted((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted.at(-1) };
}
const fixed = (digits) => (x) => x.toFixed(digits);
const rate = (x) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)} M` : `${(x / 1e3).toFixed(1)} k`);
const bytes = (x) => (x >= 2 ** 20 ? `${(x / 2 ** 20).toFixed(1)} MiB` : `${(x / 2 ** 10).toFixed(1)} KiB`);
const ms = (x) => `${x.toFixed(2)} ms`;
const ratio = (x) => `${x.toFixed(2)}×`;

/** median (min–max) of `metric` over a cell's runs. */
const spread = (format) => (values) => {
  const { median, min, max } = stats(values);
  return values.length > 1 ? `${format(median)} (${format(min)}–${format(max)})` : format(median);
};

// ---- the tables ---------------------------------------------------------------------------------------------------

/**
 * One entry per workload: its heading, what it measures, the main metric (whose median the ratio compares with the
 * `base` implementation's) and further columns, each a [heading, metric, summary of the values] triple.
 */
const TABLES = {
  stream: {
    title: (p) => `1. One stream, ${p.n.toLocaleString('en')} events back to back`,
    about: 'events/s as the client receives them; express-sse-context uses `await res.sse.send()` (through SseTransport: `logger.info()` in the loop of workload 5), better-sse pushes everything at once (it has no backpressure signal), Hono awaits `writeSSE()`, the raw servers wait for `drain`. Peaks are the server\'s, over the workload, sampled every 5 ms: bytes waiting in its sockets (not counting what waits in an implementation\'s own queue, such as Hono\'s web stream), heap used, RSS.',
    metric: ['events/s', (r) => r.eventsPerSec, rate],
    higherIsBetter: true,
    columns: [
      ['server CPU µs/event', (r) => r.cpuUsPerEvent, spread(fixed(2))],
      ['peak buffered', (r) => r.peakBuffered, (v) => bytes(Math.max(...v))],
      ['peak heap', (r) => r.peakHeap, (v) => bytes(Math.max(...v))],
      ['peak RSS', (r) => r.peakRss, (v) => bytes(Math.max(...v))],
    ],
  },
  burst: {
    title: (p) => `2. ${p.clients} clients × ${p.n} events`,
    about: 'All streams opened at once, each sending its events back to back; events/s over the whole burst, connection set-up included.',
    metric: ['events/s', (r) => r.eventsPerSec, rate],
    higherIsBetter: true,
    columns: [['server CPU µs/event', (r) => r.cpuUsPerEvent, spread(fixed(2))]],
  },
  tick: {
    title: (p) => `3. ${p.clients} streams, 1 event / ${p.interval} ms each (${p.n} per stream): latency`,
    about: 'Latency = receipt time on the client − send time stamped in the event, with the two clocks aligned by the round trip to the server with the smallest delay.',
    metric: ['p99 latency', (r) => r.p99Ms, ms],
    higherIsBetter: false,
    columns: [
      ['p50', (r) => r.p50Ms, spread(ms)],
      ['max', (r) => r.maxMs, spread(ms)],
      ['server CPU µs/event', (r) => r.cpuUsPerEvent, spread(fixed(2))],
    ],
  },
  idle: {
    title: (p) => `4. ${p.clients.toLocaleString('en')} idle streams: heap per connection`,
    about: 'Server `heapUsed` after forced GC with the streams open (each has received one event) minus before they opened, divided by their number.',
    metric: ['heap / connection', (r) => r.heapPerConnection, bytes],
    higherIsBetter: false,
    columns: [],
  },
  forward: {
    title: (p) => `5. Log forwarding: ${p.n.toLocaleString('en')} records on one stream`,
    about: 'The same record `{"type":"log","level":"info","message":"bench",…}` sent with `res.sse.push()`, logged with winston\'s `logger.info()` through `SseTransport` (winston\'s default format), or logged with pino\'s `logger.info()` through `sseDestination()` (pino\'s only destination, `base: undefined, timestamp: false`), in the same loop: none has a backpressure signal, so it gives a macrotask turn every 100 records and then waits for `drain` while the response is full.',
    base: 'lib',
    metric: ['events/s', (r) => r.eventsPerSec, rate],
    higherIsBetter: true,
    columns: [['server CPU µs/event', (r) => r.cpuUsPerEvent, spread(fixed(2))]],
  },
  stall: {
    base: null,
    summary: false,
    title: (p) => `Also: a stalled client, one stream of ${p.n.toLocaleString('en')} events, the client reads nothing for ${p.pause} ms`,
    about: 'What the server holds meanwhile: bytes waiting in its sockets (Hono\'s web-stream queue is not counted; the kernel\'s socket buffers, several MB on loopback, are not either), heap, RSS. One run.',
    metric: ['peak buffered', (r) => r.peakBuffered, bytes],
    higherIsBetter: false,
    columns: [
      ['peak heap', (r) => r.peakHeap, (v) => bytes(Math.max(...v))],
      ['peak RSS', (r) => r.peakRss, (v) => bytes(Math.max(...v))],
    ],
  },
};

/** The broadcast tables, for 1,000 and 10,000 subscribers. */
const broadcastTable = {
  title: (p) => `9. Broadcast on one instance: ${p.subscribers.toLocaleString('en')} subscribers × ${p.m} events`,
  about:
    'One channel, every subscriber an open event stream (one client process holds them all): express-sse-context `sseChannel(\'bench\')` (the in-memory store) with `res.sse.subscribe(channel)` behind `sseStream()` in Express, better-sse `createChannel()` + `channel.register(session)` + `channel.broadcast(value)`, and a raw `node:http` loop of `res.write()` over a `Set` of responses (one `JSON.stringify` per event). Once every subscriber has had a `{"sync":k}` broadcast (so it is registered), the server pushes the events back to back with a macrotask turn every 10, the same loop for each; events/s = subscribers × events ÷ the time from the push request until the last subscriber has the last event. Every subscriber must get every event once, in order, and nothing more (else FAILED), so each cell that has a number had all of them. Latency: receipt − the event\'s `t`, clocks aligned; under a back-to-back push it is mostly queueing. Server CPU and peaks cover only the push; peak RSS includes the open connections.',
  base: 'better-sse',
  metric: ['events/s', (r) => r.eventsPerSec, rate],
  higherIsBetter: true,
  columns: [
    ['server CPU ms', (r) => r.cpuMs, spread(fixed(0))],
    ['CPU µs/event', (r) => r.cpuUsPerEvent, spread(fixed(2))],
    ['p50 latency', (r) => r.p50Ms, spread(ms)],
    ['p99 latency', (r) => r.p99Ms, spread(ms)],
    ['peak RSS', (r) => r.peakRss, (v) => bytes(Math.max(...v))],
    ['peak heap', (r) => r.peakHeap, (v) => bytes(Math.max(...v))],
    ['every event, in order', (r) => r.events, (v) => `yes: ${v[0].toLocaleString('en')} × ${v.length} runs`],
  ],
};

Object.assign(TABLES, {
  fanout: {
    title: (p) => `8. Fan-out of one resumable run to ${p.followers} followers, ${p.n.toLocaleString('en')} events`,
    about:
      'A route behind `sseStream({ resume: { key, store } })`; 100 clients request the same key, so the first runs the route and all follow the run through the store. The route pushes event 0 at once, waits until every client has it, then pushes events 1..N (`push()`, every 100th `await send()`) and closes the run; events/s = followers × N ÷ the time from the go request until every follower\'s stream has ended, each with exactly its N + 1 events in order (else FAILED). "No resume" is the same route without `resume`: each of the 100 requests runs it on its own response. Server CPU is the Node process\'s, per delivered event; Redis CPU is the redis-server\'s (`INFO cpu`) over the same span, not included in the former. Latency: receipt − the event\'s `t`, clocks aligned; with the events pushed back to back it is mostly queueing.',
    base: 'lib-memory',
    metric: ['events/s', (r) => r.eventsPerSec, rate],
    higherIsBetter: true,
    columns: [
      ['server CPU µs/event', (r) => r.cpuUsPerEvent, spread(fixed(2))],
      ['Redis CPU µs/event', (r) => r.storeCpuUsPerEvent, (v) => (v.every((x) => x === undefined) ? '–' : spread(fixed(2))(v))],
      ['p50 latency', (r) => r.p50Ms, spread(ms)],
      ['p99 latency', (r) => r.p99Ms, spread(ms)],
      ['peak RSS', (r) => r.peakRss, (v) => bytes(Math.max(...v))],
    ],
  },
  broadcast1k: broadcastTable,
  broadcast10k: broadcastTable,
});

const median = (cell, metric) => (cell && !cell.failure && cell.runs.length > 0 ? stats(cell.runs.map(metric)).median : undefined);

function workloadTable(name, params, cells) {
  const spec = TABLES[name];
  const base = spec.base === undefined ? 'raw' : spec.base;
  const [metricName, metric, format] = spec.metric;
  const baseValue = base === null ? undefined : median(cells[base], metric);
  const ratioHead = base === null ? [] : [`× ${LABELS[base]}`];
  const head = ['implementation', `${metricName}: median (min–max)`, ...ratioHead, ...spec.columns.map(([heading]) => heading)];
  const rows = Object.entries(cells).map(([impl, cell]) => {
    if (cell.failure) return [LABELS[impl], `**FAILED**: ${cell.failure.replaceAll('|', '\\|')}`, ...head.slice(2).map(() => '')];
    const value = median(cell, metric);
    return [
      LABELS[impl],
      spread(format)(cell.runs.map(metric)),
      ...(base === null ? [] : [baseValue === undefined ? '–' : ratio(value / baseValue)]),
      ...spec.columns.map(([, columnMetric, summary]) => summary(cell.runs.map(columnMetric))),
    ];
  });
  const better = spec.higherIsBetter ? 'higher is better' : 'lower is better';
  return `## ${spec.title(params)}\n\n${spec.about} (${metricName}: ${better}.)\n\n${table(head, rows)}`;
}

function loggerTable(params, cell) {
  const title = '## 6. `logger.info()` outside any request, with and without `SseTransport`';
  const about = `In one process: ${params.rounds} rounds of ${params.calls.toLocaleString('en')} \`logger.info('bench', {…})\` calls on each logger (winston's default format, a transport that drops every record), timed until winston has processed them; each run reports each logger's median round.`;
  if (cell === undefined) return '';
  if (cell.failure) return `${title}\n\n**FAILED**: ${cell.failure}\n`;
  const ns = (x) => `${Math.round(x).toLocaleString('en')} ns`;
  const pct = (x) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;
  const rows = [
    ['null transport', spread(ns)(cell.runs.map((r) => r.withoutNs)), ''],
    ['null transport + SseTransport', spread(ns)(cell.runs.map((r) => r.withNs)), spread(pct)(cell.runs.map((r) => r.overhead))],
    ['null transport + a second null transport (reference)', spread(ns)(cell.runs.map((r) => r.withNullNs)), spread(pct)(cell.runs.map((r) => r.nullOverhead))],
  ];
  return `${title}\n\n${about}\n\n${table(['logger', 'per call: median (min–max)', 'added per call'], rows)}`;
}

/** One line about one run, for the progress log. */
export function brief(workload, result) {
  if (workload === 'logger') return `${Math.round(result.withoutNs)} ns/call, +${(result.overhead * 100).toFixed(1)}% with SseTransport`;
  const [name, metric, format] = TABLES[workload].metric;
  const cpu = result.cpuUsPerEvent === undefined ? '' : `, ${result.cpuUsPerEvent.toFixed(2)} µs CPU/event`;
  return `${format(metric(result))} ${name}${cpu}`;
}

function table(head, rows) {
  const line = (cells) => `| ${cells.join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n') + '\n';
}

// ---- summary and targets --------------------------------------------------------------------------------------------

function summary(results) {
  const summarized = Object.entries(TABLES).filter(([name, spec]) => results[name] && spec.base === undefined && spec.summary !== false);
  const impls = Object.keys(LABELS).filter((impl) => summarized.some(([name]) => results[name][impl]));
  const rows = [];
  for (const [name, spec] of Object.entries(TABLES)) {
    const cells = results[name];
    if (cells === undefined || spec.base !== undefined || spec.summary === false) continue;
    const [metricName, metric, format] = spec.metric;
    const base = median(cells.raw, metric);
    rows.push([
      `${name}: ${metricName}`,
      ...impls.map((impl) => {
        if (cells[impl]?.failure) return 'FAILED';
        const value = median(cells[impl], metric);
        if (value === undefined) return '';
        return base === undefined || impl === 'raw' ? format(value) : `${ratio(value / base)}`;
      }),
    ]);
  }
  const head = ['workload (medians; raw in units, the rest × raw)', ...impls.map((impl) => LABELS[impl])];
  return `## Summary\n\n${table(head, rows)}`;
}

/** The issue's targets, each checked against the medians of this run. */
function targets(results) {
  const m = (workload, impl) => {
    const spec = TABLES[workload];
    return spec && results[workload] ? median(results[workload][impl], spec.metric[1]) : undefined;
  };
  const check = (text, a, b, test) => {
    if (a === undefined || b === undefined) return `- n/a: ${text} (not measured)`;
    const value = a / b;
    return `- ${test(value) ? 'met' : '**not met**'}: ${text}: ${ratio(value)}`;
  };
  const lines = [
    check('1 stream: ≥ 1.0× raw', m('stream', 'lib'), m('stream', 'raw'), (x) => x >= 1),
    check('1 stream: ≥ 3× better-sse', m('stream', 'lib'), m('stream', 'better-sse'), (x) => x >= 3),
    check('1 stream: ≥ 3× Hono', m('stream', 'lib'), m('stream', 'hono'), (x) => x >= 3),
    check('500 clients: ≥ 1.0× the Express route', m('burst', 'lib'), m('burst', 'express'), (x) => x >= 1),
    check('500 clients: ≥ 1.3× better-sse', m('burst', 'lib'), m('burst', 'better-sse'), (x) => x >= 1.3),
    check('p99 latency: ≤ 1.1× raw', m('tick', 'lib'), m('tick', 'raw'), (x) => x <= 1.1),
    check('idle heap per connection: ≤ 1.2× the Express route', m('idle', 'lib'), m('idle', 'express'), (x) => x <= 1.2),
    check('idle heap per connection: < 0.5× better-sse', m('idle', 'lib'), m('idle', 'better-sse'), (x) => x < 0.5),
    check('log forwarding: SseTransport ≥ 0.5× push()', m('forward', 'lib-transport'), m('forward', 'lib'), (x) => x >= 0.5),
  ];
  const logger = results.logger?.lib;
  if (logger && !logger.failure && logger.runs.length > 0) {
    const overhead = stats(logger.runs.map((r) => r.overhead)).median;
    lines.push(`- ${overhead < 0.05 ? 'met' : '**not met**'}: outside a request, SseTransport adds < 5% to logger.info(): ${(overhead * 100).toFixed(1)}%`);
  } else lines.push('- n/a: outside a request, SseTransport adds < 5% to logger.info() (not measured)');
  const stalled = m('stall', 'lib');
  if (stalled !== undefined) {
    // send() waits once more than highWaterMark bytes wait; the event that crossed it is already written.
    const limit = 64 * 1024 + 1024;
    lines.push(`- ${stalled <= limit ? 'met' : '**not met**'}: a stalled client never makes the server buffer past highWaterMark (64 KiB, plus the event that crossed it): ${bytes(stalled)}`);
  }
  return `## Targets (issue 5), express-sse-context against the others, medians of this run\n\n${lines.join('\n')}\n`;
}

/** The ratios of the fan-out and broadcast workloads, side by side: medians of this run. */
function channelsSummary(results) {
  const rows = [];
  const m = (workload, impl, metric) => (results[workload] ? median(results[workload][impl], metric) : undefined);
  const cell = (a, b, format = ratio) => (a === undefined || b === undefined ? 'n/a' : format(a / b));
  const rateOf = (r) => r.eventsPerSec;
  const cpuOf = (r) => r.cpuUsPerEvent;
  for (const name of ['broadcast1k', 'broadcast10k']) {
    const cells = results[name];
    if (cells === undefined) continue;
    const subscribers = (Object.values(cells).find((c) => c.runs.length > 0)?.runs[0].subscribers ?? 0).toLocaleString('en');
    const failed = Object.entries(cells).filter(([, c]) => c.failure).map(([impl]) => LABELS[impl]);
    rows.push([
      `broadcast, ${subscribers} subscribers`,
      `express-sse-context ${rate(m(name, 'lib', rateOf) ?? NaN)}/s, better-sse ${rate(m(name, 'better-sse', rateOf) ?? NaN)}/s, raw ${rate(m(name, 'raw', rateOf) ?? NaN)}/s`,
      `lib ÷ better-sse: ${cell(m(name, 'lib', rateOf), m(name, 'better-sse', rateOf))}; lib ÷ raw: ${cell(m(name, 'lib', rateOf), m(name, 'raw', rateOf))}`,
      `lib ÷ better-sse: ${cell(m(name, 'lib', cpuOf), m(name, 'better-sse', cpuOf))}; lib ÷ raw: ${cell(m(name, 'lib', cpuOf), m(name, 'raw', cpuOf))}`,
      failed.length > 0 ? `FAILED: ${failed.join(', ')}` : 'all delivered, in order',
    ]);
  }
  const cells = results.fanout;
  if (cells !== undefined) {
    const failed = Object.entries(cells).filter(([, c]) => c.failure).map(([impl]) => LABELS[impl]);
    rows.push([
      'fan-out of one run, 100 followers',
      `MemoryStore ${rate(m('fanout', 'lib-memory', rateOf) ?? NaN)}/s, RedisStore ${rate(m('fanout', 'lib-redis', rateOf) ?? NaN)}/s, no resume ${rate(m('fanout', 'lib-plain', rateOf) ?? NaN)}/s`,
      `Redis ÷ memory: ${cell(m('fanout', 'lib-redis', rateOf), m('fanout', 'lib-memory', rateOf))}; no resume ÷ memory: ${cell(m('fanout', 'lib-plain', rateOf), m('fanout', 'lib-memory', rateOf))}`,
      `Redis ÷ memory: ${cell(m('fanout', 'lib-redis', cpuOf), m('fanout', 'lib-memory', cpuOf))} (+ Redis's own ${fixed(2)(m('fanout', 'lib-redis', (r) => r.storeCpuUsPerEvent) ?? NaN)} µs); no resume ÷ memory: ${cell(m('fanout', 'lib-plain', cpuOf), m('fanout', 'lib-memory', cpuOf))}`,
      failed.length > 0 ? `FAILED: ${failed.join(', ')}` : 'all delivered, in order',
    ]);
  }
  if (rows.length === 0) return '';
  const head = ['workload (issues 6 and 8)', 'events/s, medians', 'events/s ratios', 'server CPU per event ratios (lower is better)', 'checked'];
  return `## Fan-out and broadcast: medians and ratios\n\n${table(head, rows)}`;
}

// ---- the page -------------------------------------------------------------------------------------------------------

export function render(meta, results, failures) {
  const packages = Object.entries(meta.packages).map(([name, version]) => `${name} ${version}`).join(', ');
  const header = [
    `# express-sse-context benchmarks${meta.quick ? ' (--quick: small counts, few runs; not for comparison)' : ''}`,
    '',
    `- Date: ${meta.date}; ${meta.runs} runs per cell (median, min–max), ${meta.wallSeconds.toFixed(0)} s in all`,
    `- Machine: ${meta.cpus} CPUs (nproc), ${meta.cpuModel}, ${meta.memory} memory, ${meta.os}; load average ${meta.loadBefore} before, ${meta.load} after`,
    `- Node ${meta.node}; express-sse-context ${meta.library}; ${packages}${meta.redis ? `; redis-server ${meta.redis}` : ''}`,
    '- Each implementation is a server process on 127.0.0.1 (bench/servers/*.mjs), each run a fresh client process (bench/client.mjs; bench/channels-client.mjs for fan-out and broadcast) that parses every frame with eventsource-parser and fails on any lost, repeated or reordered event. Events are 64 bytes of JSON (`{"i":…,"t":…,"p":"…"}`), serialised per event by every implementation; SseTransport\'s records are larger (`type`, `level`, `message` added). Server CPU is `process.cpuUsage()` over the workload. Workload 7 (`compression()` in front of the library) is the "+ compression()" row of each table.',
    '',
  ];
  if (failures.length > 0) header.push(`**${failures.length} FAILED**:\n\n${failures.map((f) => `- ${f.split('\n')[0]}`).join('\n')}\n`);
  const issue5 = ['stream', 'burst', 'tick', 'idle', 'forward', 'logger', 'stall'].some((name) => results[name] !== undefined);
  const sections = issue5 ? [summary(results), targets(results)] : [];
  sections.push(channelsSummary(results));
  for (const name of ['stream', 'burst', 'tick', 'idle', 'forward', 'logger', 'stall', 'fanout', 'broadcast1k', 'broadcast10k']) {
    if (results[name] === undefined) continue;
    if (name === 'logger') sections.push(loggerTable(meta.workloads.logger, results.logger.lib));
    else sections.push(workloadTable(name, meta.workloads[name], results[name]));
  }
  return `${header.join('\n')}\n${sections.filter(Boolean).join('\n')}`;
}
