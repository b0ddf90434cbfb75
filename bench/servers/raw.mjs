// Raw node:http: one res.write per event, no framework.
import { byHand, serve } from './common.mjs';

const routes = { '/stream': byHand.stream, '/tick': byHand.tick, '/idle': byHand.idle };

serve((req, res) => {
  const route = routes[req.url.split('?')[0]];
  if (route === undefined) res.writeHead(404).end();
  else route(req, res);
});
