// Broadcast through this library: sseChannel('bench') (the in-memory store), res.sse.subscribe(channel) in an
// Express route behind sseStream(), channel.push(value).
import express from 'express';
import { sseChannel, sseStream } from 'express-sse-context';
import { serveBroadcast } from './broadcast-common.mjs';

const channel = sseChannel('bench');
const app = express();
app.get('/bc/subscribe', sseStream(), (req, res) => res.sse.subscribe(channel));

serveBroadcast({
  subscribe: app,
  count: () => channel.subscriberCount,
  broadcast: (value) => channel.push(value),
});
