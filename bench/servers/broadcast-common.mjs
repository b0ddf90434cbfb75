/**
 * Workloads "broadcast1k" and "broadcast10k" (issue 8): one push, every subscriber of one instance. What the three
 * implementations (broadcast-lib.mjs, broadcast-better-sse.mjs, broadcast-raw.mjs) share: the routes around their
 * own subscribe and broadcast.
 *
 *   GET /bc/subscribe   an event stream subscribed to the implementation's one channel (open until the client leaves)
 *   GET /bc/count       {"subscribers": n}: the channel's subscribers, as the implementation counts them
 *   GET /bc/sync?k=K    broadcasts {"sync":K}: the client pings until every subscriber has had one (registered)
 *   GET /bc/go?m=M      answers at once, then broadcasts payload(0..M-1) back to back, with a macrotask turn every
 *                       10 events (as events from a real source would come), the same loop for each implementation
 */
import { payload, serve } from './common.mjs';

/** `impl`: { subscribe(req, res), count(), broadcast(value) }. */
export function serveBroadcast(impl) {
  const routes = {
    '/bc/subscribe': (req, res) => impl.subscribe(req, res),
    '/bc/count': (req, res) => json(res, { subscribers: impl.count() }),
    '/bc/sync'(req, res, params) {
      impl.broadcast({ sync: Number(params.get('k')) });
      json(res, {});
    },
    async '/bc/go'(req, res, params) {
      const m = Number(params.get('m'));
      json(res, {});
      for (let i = 0; i < m; i++) {
        impl.broadcast(payload(i));
        if (i % 10 === 9) await new Promise(setImmediate);
      }
    },
  };
  return serve((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const route = routes[url.pathname];
    if (route === undefined) return res.writeHead(404).end();
    return route(req, res, url.searchParams);
  });
}

function json(res, value) {
  res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(value));
}
