// Workload "fanout" (issue 6): one resumable run, many followers of its key.
//
//   node servers/fanout.mjs --store memory|redis|none [--redis-port P]
//
//   GET /fanout?key=K&n=N   sseStream({ resume: { key: K, store } }): the first request for K runs the route, every
//                           request follows the run. The route pushes event 0 at once, waits for /fanout/go?key=K,
//                           then pushes events 1..N and closes the run. With --store none there is no resume: every
//                           request runs the route on its own response (the library's ordinary per-stream cost).
//   GET /fanout/go?key=K    releases the route(s) waiting on K; the client calls it once every follower has event 0.
//   GET /fanout/store-cpu   {"us": n}: CPU time the Redis server has used (INFO cpu), null for the other stores.
//
// The route pushes with push(), and every 100th event with `await send()` (which waits for the store to have the
// events with resume, for the client's buffer without): the same loop for every store.
import express from 'express';
import { MemoryStore, sseStream } from 'express-sse-context';
import { payload, serve } from './common.mjs';

const argv = process.argv.slice(2);
const option = (name) => {
  const at = argv.indexOf(`--${name}`);
  return at === -1 ? undefined : argv[at + 1];
};
const storeName = option('store') ?? 'memory';

let store;
/** CPU time the store used outside this process, in µs: Redis's own (INFO cpu), null for the others. */
let storeCpuUs = async () => null;
if (storeName === 'memory') store = new MemoryStore();
else if (storeName === 'redis') {
  const { default: Redis } = await import('ioredis');
  const { RedisStore } = await import('express-sse-context/redis');
  const client = new Redis(Number(option('redis-port')), '127.0.0.1');
  await client.ping();
  store = new RedisStore({ client });
  storeCpuUs = async () => {
    const info = await client.info('cpu');
    const seconds = (name) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)[1]);
    return Math.round((seconds('used_cpu_user') + seconds('used_cpu_sys')) * 1e6);
  };
} else if (storeName !== 'none') throw new Error(`--store: memory, redis or none, got ${storeName}`);

/** One deferred per key: the route(s) of K wait on it, /fanout/go?key=K resolves it. */
const gates = new Map();
const gate = (key) => {
  let entry = gates.get(key);
  if (entry === undefined) {
    let open;
    const opened = new Promise((resolve) => (open = resolve));
    gates.set(key, (entry = { opened, open }));
  }
  return entry;
};

const app = express();
const sse = store === undefined ? sseStream() : sseStream({ resume: { key: (req) => String(req.query.key), store } });

app.get('/fanout/go', (req, res) => {
  gate(String(req.query.key)).open();
  res.json({});
});

app.get('/fanout/store-cpu', async (req, res) => res.json({ us: await storeCpuUs() }));

app.get('/fanout', sse, async (req, res) => {
  const key = String(req.query.key);
  const n = Number(req.query.n);
  res.sse.push(payload(0));
  await gate(key).opened;
  for (let i = 1; i <= n; i++) {
    if (i % 100 !== 0) res.sse.push(payload(i));
    else if (!(await res.sse.send(payload(i)))) return;
  }
  await res.sse.close();
  // The last follower's request is long in: the key's gate is no longer needed.
  setTimeout(() => gates.delete(key), 10_000).unref();
});

serve(app);
