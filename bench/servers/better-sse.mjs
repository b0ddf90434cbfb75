// better-sse with its defaults (createSession; each push sends `event: message` and a random UUID id). It has no
// backpressure signal, so /stream pushes everything at once, as a user of it would.
import { createSession } from 'better-sse';
import { payload, query, sample, serve } from './common.mjs';

const routes = {
  '/stream'(session, res, { n }) {
    for (let i = 0; i < n; i++) session.push(payload(i));
    sample();
    res.end();
  },
  '/tick'(session, res, { n, interval }) {
    let i = 0;
    const timer = setInterval(() => {
      session.push(payload(i));
      if (++i === n) {
        clearInterval(timer);
        res.end();
      }
    }, interval);
    session.on('disconnected', () => clearInterval(timer));
  },
  '/idle'(session) {
    session.push(payload(0));
  },
};

serve(async (req, res) => {
  const route = routes[req.url.split('?')[0]];
  if (route === undefined) return res.writeHead(404).end();
  route(await createSession(req, res), res, query(req.url));
});
