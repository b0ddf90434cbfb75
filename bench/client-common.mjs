/**
 * What both load generators (client.mjs, channels-client.mjs) need of the server under test: its JSON routes, its
 * control routes, and its clock.
 */
import http from 'node:http';
import { nowUs } from './servers/common.mjs';

/** A client of the server on 127.0.0.1:`port`, over `agent`. */
export function serverClient(port, agent) {
  /** GETs a route of the server and returns its JSON. */
  const get = (path) =>
    new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path, agent }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (chunk) => (body += chunk));
          res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(`${path}: ${res.statusCode} ${body}`))));
        })
        .on('error', reject);
    });
  const control = (name) => get(`/_bench/${name}`);

  /** The server clock minus ours, in µs, from the round trip with the smallest delay. */
  async function clockOffset() {
    let best = { rtt: Infinity, offset: 0 };
    for (let i = 0; i < 30; i++) {
      const sent = nowUs();
      const { t } = await control('clock');
      const received = nowUs();
      if (received - sent < best.rtt) best = { rtt: received - sent, offset: t - (sent + received) / 2 };
    }
    return best.offset;
  }

  return { get, control, clockOffset };
}

/** The value at share `p` (0..1) of an ascending array. */
export const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
