// Broadcast through better-sse: createChannel(), channel.register(await createSession(req, res)),
// channel.broadcast(value) (which pushes, and serialises, per session).
import { createChannel, createSession } from 'better-sse';
import { serveBroadcast } from './broadcast-common.mjs';

const channel = createChannel();

serveBroadcast({
  async subscribe(req, res) {
    channel.register(await createSession(req, res));
  },
  count: () => channel.sessionCount,
  broadcast: (value) => channel.broadcast(value),
});
