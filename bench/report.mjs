/**
 * Turns the runs into markdown: the machine and versions, a summary of ratios, the issue's targets, and one table
 * per workload with the median, min and max of the runs.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

const PACKAGES = ['express', 'better-sse', 'hono', '@hono/node-server', 'compression', 'winston', 'winston-transport', 'eventsource-parser'];

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
  'lib-compression': 'express-sse-context + compression()',
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
    about: 'The same record `{"type":"log","level":"info","message":"bench",…}` sent with `res.sse.push()` or logged with `logger.info()` through `SseTransport` (winston\'s default format), in the same loop: neither has a backpressure signal, so it gives a macrotask turn every 100 records and then waits for `drain` while the response is full.',
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
  const impls = Object.keys(LABELS).filter((impl) => Object.values(results).some((cells) => cells[impl]));
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

// ---- the page -------------------------------------------------------------------------------------------------------

export function render(meta, results, failures) {
  const packages = Object.entries(meta.packages).map(([name, version]) => `${name} ${version}`).join(', ');
  const header = [
    `# express-sse-context benchmarks${meta.quick ? ' (--quick: small counts, few runs; not for comparison)' : ''}`,
    '',
    `- Date: ${meta.date}; ${meta.runs} runs per cell (median, min–max), ${meta.wallSeconds.toFixed(0)} s in all`,
    `- Machine: ${meta.cpus} CPUs (nproc), ${meta.cpuModel}, ${meta.memory} memory, ${meta.os}; load average ${meta.loadBefore} before, ${meta.load} after`,
    `- Node ${meta.node}; express-sse-context ${meta.library}; ${packages}`,
    '- Each implementation is a server process on 127.0.0.1 (bench/servers/*.mjs), each run a fresh client process (bench/client.mjs) that parses every frame with eventsource-parser and fails on any lost, repeated or reordered event. Events are 64 bytes of JSON (`{"i":…,"t":…,"p":"…"}`), serialised per event by every implementation; SseTransport\'s records are larger (`type`, `level`, `message` added). Server CPU is `process.cpuUsage()` over the workload. Workload 7 (`compression()` in front of the library) is the "+ compression()" row of each table.',
    '',
  ];
  if (failures.length > 0) header.push(`**${failures.length} FAILED**:\n\n${failures.map((f) => `- ${f.split('\n')[0]}`).join('\n')}\n`);
  const sections = [summary(results), targets(results)];
  for (const name of ['stream', 'burst', 'tick', 'idle', 'forward', 'logger', 'stall']) {
    if (results[name] === undefined) continue;
    if (name === 'logger') sections.push(loggerTable(meta.workloads.logger, results.logger.lib));
    else sections.push(workloadTable(name, meta.workloads[name], results[name]));
  }
  return `${header.join('\n')}\n${sections.filter(Boolean).join('\n')}`;
}
