// Hono's streamSSE on @hono/node-server, awaiting each writeSSE (its backpressure).
import { getRequestListener } from '@hono/node-server';
import { Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import { payload, serve } from './common.mjs';

const data = (i) => ({ data: JSON.stringify(payload(i)) });
const app = new Hono();

app.get('/stream', (c) => {
  const n = Number(c.req.query('n'));
  return streamSSE(c, async (stream) => {
    for (let i = 0; i < n && !stream.aborted; i++) await stream.writeSSE(data(i));
  });
});

app.get('/tick', (c) => {
  const n = Number(c.req.query('n'));
  const interval = Number(c.req.query('interval'));
  return streamSSE(c, (stream) => new Promise((resolve) => {
    let i = 0;
    const timer = setInterval(() => {
      const written = stream.writeSSE(data(i));
      if (++i === n) {
        clearInterval(timer);
        written.then(resolve); // returning closes the stream: not before the last event is in it
      }
    }, interval);
    stream.onAbort(() => {
      clearInterval(timer);
      resolve();
    });
  }));
});

app.get('/idle', (c) => streamSSE(c, async (stream) => {
  await stream.writeSSE(data(0));
  await new Promise((resolve) => stream.onAbort(resolve));
}));

serve(getRequestListener(app.fetch));
