/**
 * `npm run bench [-- --quick] [-- --runs N] [-- --only raw,lib] [-- --workloads stream,tick] [-- --out FILE] [-- --profile]`
 *
 * For each workload, starts every implementation's server (bench/servers/*.mjs) in its own process on 127.0.0.1,
 * then, run after run, drives each from a fresh client process (bench/client.mjs), rotating the order so that
 * noise from the rest of the machine spreads evenly. A client that reports a miscounted stream fails the cell, the
 * table says FAILED, and the exit code is 1. Writes bench/results.md (bench/results-quick.md with --quick), or
 * bench/results-channels.md (-quick.md) when only the fan-out and broadcast workloads ran, and prints the same tables.
 * The fan-out and broadcast workloads (`--workloads fanout,broadcast`) have servers and a client of their own
 * (servers/fanout.mjs, servers/broadcast-*.mjs, channels-client.mjs); for the Redis cell this starts a redis-server of
 * its own (redis-server.mjs) on a free port, persisting nothing, and kills it at the end. Every child process is killed when this one exits, however it exits. With --profile, each
 * server runs under --cpu-prof and leaves bench/profiles/<workload>.<implementation>.cpuprofile (open it in Chrome
 * DevTools, Performance tab) when its workload is done.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startRedis, redisVersion } from './redis-server.mjs';
import { brief, machine, render } from './report.mjs';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
    only: { type: 'string' },
    workloads: { type: 'string' },
    out: { type: 'string' },
    profile: { type: 'boolean', default: false },
  },
});
const here = fileURLToPath(new URL('.', import.meta.url));
const root = fileURLToPath(new URL('..', import.meta.url));
const quick = args.quick;
const runs = Number(args.runs ?? (quick ? 2 : 5));

/** The implementations: the server module, and its extra arguments. */
const IMPLEMENTATIONS = [
  { name: 'raw', file: 'raw.mjs' },
  { name: 'express', file: 'express.mjs' },
  { name: 'better-sse', file: 'better-sse.mjs' },
  { name: 'hono', file: 'hono.mjs' },
  { name: 'lib', file: 'lib.mjs' },
  { name: 'lib-transport', file: 'lib-transport.mjs' },
  { name: 'lib-compression', file: 'lib.mjs', args: ['--compression'] },
  // Serves /forward only: the log-forwarding workload's pino row.
  { name: 'lib-pino', file: 'lib-pino.mjs', forwardOnly: true },
];
const ALL = IMPLEMENTATIONS.filter((impl) => !impl.forwardOnly).map((impl) => impl.name);

/**
 * The servers of the fan-out and broadcast workloads, which serve other routes (bench/servers/fanout.mjs,
 * broadcast-*.mjs) and have their own client (channels-client.mjs). `redis`: started with the port of the
 * redis-server this run starts for them.
 */
const FANOUT = [
  { name: 'lib-memory', file: 'fanout.mjs', args: ['--store', 'memory'] },
  { name: 'lib-redis', file: 'fanout.mjs', args: ['--store', 'redis'], redis: true },
  { name: 'lib-plain', file: 'fanout.mjs', args: ['--store', 'none'] },
];
const BROADCAST = [
  { name: 'lib', file: 'broadcast-lib.mjs' },
  { name: 'better-sse', file: 'broadcast-better-sse.mjs' },
  { name: 'raw', file: 'broadcast-raw.mjs' },
];
const CHANNELS = { client: 'channels-client.mjs', channels: true };

/** The workloads and their sizes; `runs: 1` where one run says all there is to say. */
const WORKLOADS = [
  { name: 'stream', impls: ALL, params: { n: quick ? 50_000 : 200_000 } },
  { name: 'burst', impls: ALL, params: { clients: 500, n: quick ? 100 : 200 } },
  { name: 'tick', impls: ALL, params: { clients: 200, n: quick ? 50 : 300, interval: 10 } },
  { name: 'idle', impls: ALL, params: { clients: quick ? 1000 : 2000 } },
  { name: 'forward', impls: ['lib', 'lib-transport', 'lib-pino'], params: { n: quick ? 50_000 : 200_000 } },
  // Enough events to overflow the kernel's socket buffers on loopback (several MB), or nothing waits in the server.
  { name: 'stall', impls: ALL, runs: 1, params: { n: quick ? 100_000 : 200_000, pause: quick ? 500 : 1000 } },
  { name: 'logger', impls: [], params: { calls: quick ? 20_000 : 50_000, rounds: quick ? 6 : 10 } },
  // Issue 6: one resumable run, 100 followers of its key; issue 8: one channel, 1,000 and 10,000 subscribers.
  { name: 'fanout', ...CHANNELS, servers: FANOUT, params: { followers: 100, n: quick ? 500 : 5000 } },
  { name: 'broadcast1k', group: 'broadcast', ...CHANNELS, clientWorkload: 'broadcast', servers: BROADCAST, params: { subscribers: 1000, m: quick ? 50 : 200 } },
  { name: 'broadcast10k', group: 'broadcast', ...CHANNELS, clientWorkload: 'broadcast', servers: BROADCAST, params: { subscribers: 10_000, m: quick ? 20 : 50 } },
];
/** No client may take longer than this, whatever it does. */
const CLIENT_TIMEOUT_MS = quick ? 30_000 : 90_000;

// ---- child processes ----------------------------------------------------------------------------------------

const children = new Set();
/** The redis-server of the Redis cells, started by the first workload that needs it, stopped at the end. */
let redis;
const killAll = () => {
  for (const child of children) child.kill('SIGKILL');
};
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
}

function node(argv) {
  const child = spawn(process.execPath, argv, { cwd: here, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  child.output = { stdout: '', stderr: '' };
  child.stdout.setEncoding('utf8').on('data', (chunk) => (child.output.stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk) => (child.output.stderr += chunk));
  return child;
}

/** Starts a server process and resolves with it once it has printed its port. */
function startServer(impl, workload) {
  const profile = args.profile ? ['--cpu-prof', `--cpu-prof-dir=${here}profiles`, `--cpu-prof-name=${workload}.${impl.name}.cpuprofile`] : [];
  const child = node(['--expose-gc', ...profile, `servers/${impl.file}`, ...(impl.args ?? [])]);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail('did not print its port within 15 s'), 15_000);
    const fail = (why) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`server ${impl.name} ${why}\n${child.output.stderr}`));
    };
    child.stdout.on('data', () => {
      const port = /^PORT (\d+)$/m.exec(child.output.stdout)?.[1];
      if (port === undefined) return;
      clearTimeout(timer);
      resolve({ impl, child, port: Number(port) });
    });
    child.on('exit', (code) => fail(`exited with code ${code}`));
  });
}

/** SIGTERM (a server then exits on its own, writing its --cpu-prof profile), SIGKILL if it is still there after 5 s. */
function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.on('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Runs a script to completion; resolves with its one line of JSON, rejects with its error output. */
function runScript(argv, timeoutMs) {
  const child = node(argv);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const { stdout, stderr } = child.output;
      if (code === 0) return resolve(JSON.parse(stdout));
      const why = signal === 'SIGKILL' ? `timed out after ${timeoutMs / 1000} s` : stderr.trim() || `exit code ${code}`;
      reject(new Error(why));
    });
  });
}

// ---- the runs ---------------------------------------------------------------------------------------------------

/** The entries of `list` named (or, for workloads, whose `group` is named) in the comma-separated `names`. */
const selected = (list, names) => (names === undefined ? list : list.filter((x) => names.split(',').some((name) => name === x.name || name === x.group)));
const implementations = selected(IMPLEMENTATIONS, args.only);
const workloads = selected(WORKLOADS, args.workloads);
/** results[workload][impl] = { runs: [client results], failure?: message } */
const results = {};
const failures = [];
const log = (line) => process.stderr.write(`${line}\n`);

function record(workload, name, run, promise) {
  const cell = (results[workload.name][name] ??= { runs: [] });
  const start = performance.now();
  return promise.then(
    (result) => {
      cell.runs.push(result);
      const seconds = ((performance.now() - start) / 1000).toFixed(1);
      log(`  ${workload.name.padEnd(8)} ${name.padEnd(16)} run ${run + 1}: ${brief(workload.name, result)} (${seconds} s)`);
    },
    (error) => {
      cell.failure = error.message.split('\n')[0];
      failures.push(`${workload.name} / ${name}, run ${run + 1}: ${error.message}`);
      log(`  ${workload.name.padEnd(8)} ${name.padEnd(16)} run ${run + 1}: FAILED ${error.message}`);
    },
  );
}

async function runWorkload(workload) {
  results[workload.name] = {};
  const workloadRuns = workload.runs ?? runs;
  const flags = Object.entries(workload.params).flatMap(([key, value]) => [`--${key}`, String(value)]);
  if (workload.name === 'logger') {
    for (let run = 0; run < workloadRuns; run++) {
      await record(workload, 'lib', run, runScript(['logger-overhead.mjs', ...flags], CLIENT_TIMEOUT_MS));
    }
    return;
  }
  let impls = workload.servers ? selected(workload.servers, args.only) : implementations.filter((impl) => workload.impls.includes(impl.name));
  if (impls.some((impl) => impl.redis)) {
    redis ??= await startRedis((child) => {
      children.add(child);
      child.on('exit', () => children.delete(child));
    });
    impls = impls.map((impl) => (impl.redis ? { ...impl, args: [...impl.args, '--redis-port', String(redis.port)] } : impl));
  }
  const starting = await Promise.allSettled(impls.map((impl) => startServer(impl, workload.name)));
  const servers = starting.filter((s) => s.status === 'fulfilled').map((s) => s.value);
  try {
    for (const failed of starting.filter((s) => s.status === 'rejected')) throw failed.reason;
    for (let run = 0; run < workloadRuns; run++) {
      for (let k = 0; k < servers.length; k++) {
        const { impl, port, child } = servers[(k + run) % servers.length];
        if (results[workload.name][impl.name]?.failure) continue;
        const argv = [workload.client ?? 'client.mjs', '--port', String(port), '--workload', workload.clientWorkload ?? workload.name, ...flags, ...(run === 0 ? ['--warmup'] : [])];
        const client = runScript(argv, CLIENT_TIMEOUT_MS).catch((error) => {
          if (child.exitCode !== null) error.message += `\n(server ${impl.name} had exited: code ${child.exitCode}) ${child.output.stderr}`;
          throw error;
        });
        await record(workload, impl.name, run, client);
      }
    }
  } finally {
    await Promise.all(servers.map(({ child }) => stop(child)));
  }
}

const started = performance.now();
const before = machine(root);
log(`bench: ${quick ? 'quick, ' : ''}${runs} runs; ${before.cpus} × ${before.cpuModel}, load ${before.load}`);
try {
  for (const workload of workloads) {
    const start = performance.now();
    log(`${workload.name} ${JSON.stringify(workload.params)}`);
    await runWorkload(workload);
    log(`  (${((performance.now() - start) / 1000).toFixed(1)} s)`);
  }
} catch (error) {
  failures.push(error.message);
} finally {
  await redis?.stop();
}
const wallSeconds = (performance.now() - started) / 1000;
const meta = {
  ...machine(root),
  loadBefore: before.load,
  quick,
  runs,
  wallSeconds,
  redis: redis === undefined ? undefined : redisVersion(),
  workloads: Object.fromEntries(workloads.map((w) => [w.name, w.params])),
};
const markdown = render(meta, results, failures);
// A run of only the fan-out and broadcast workloads goes to its own file, leaving the figures of the others be.
const name = workloads.length > 0 && workloads.every((w) => w.channels) ? 'results-channels' : 'results';
const out = fileURLToPath(new URL(args.out ?? `${name}${quick ? '-quick' : ''}.md`, import.meta.url));
writeFileSync(out, markdown);
process.stdout.write(markdown);
log(`\nwrote ${out} in ${wallSeconds.toFixed(0)} s`);
if (failures.length > 0) {
  log(`\nFAILED (${failures.length}):\n${failures.map((f) => `  - ${f}`).join('\n')}`);
  process.exitCode = 1;
}
