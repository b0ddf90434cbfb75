// This library: sseStream() and res.sse.send()/push(). With --compression, compression() runs in front of it.
import compression from 'compression';
import express from 'express';
import { sseStream } from 'express-sse-context';
import { payload, produce, query, serve } from './common.mjs';

const app = express();
if (process.argv.includes('--compression')) app.use(compression());
const sse = sseStream();

app.get('/stream', sse, async (req, res) => {
  const { n } = query(req.url);
  for (let i = 0; i < n; i++) if (!(await res.sse.send(payload(i)))) return;
  await res.sse.close();
});

app.get('/tick', sse, (req, res) => {
  const { n, interval } = query(req.url);
  let i = 0;
  const timer = setInterval(() => {
    res.sse.push(payload(i));
    if (++i === n) {
      clearInterval(timer);
      void res.sse.close();
    }
  }, interval);
  res.sse.signal.addEventListener('abort', () => clearInterval(timer));
});

app.get('/idle', sse, (req, res) => {
  res.sse.push(payload(0));
});

// The same record SseTransport makes of logger.info('bench', payload(i)), pushed directly, in the same loop as
// lib-transport.mjs's /forward.
app.get('/forward', sse, async (req, res) => {
  await produce(res, query(req.url).n, (i) => res.sse.push({ type: 'log', level: 'info', message: 'bench', ...payload(i) }));
  await res.sse.close();
});

serve(app);
