// Broadcast by hand on node:http: a Set of responses, each event serialised once and res.write() to every one.
import { frame } from './common.mjs';
import { serveBroadcast } from './broadcast-common.mjs';

const responses = new Set();

serveBroadcast({
  subscribe(req, res) {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
    res.flushHeaders();
    responses.add(res);
    res.on('close', () => responses.delete(res));
  },
  count: () => responses.size,
  broadcast(value) {
    const text = frame(value);
    for (const res of responses) res.write(text);
  },
});
