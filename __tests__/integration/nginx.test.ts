/**
 * Behind a real nginx (Debian's /usr/sbin/nginx), started by this test with a generated config in a temp dir
 * (`daemon off;`, prefix, pid, logs and temp paths in the temp dir, a free 127.0.0.1 port) and stopped after. The
 * proxy keeps its default `proxy_buffering on`.
 *
 * - Events arrive one by one, thanks to the `X-Accel-Buffering: no` header the stream sends: the route pushes event
 *   N+1 only after the test's client has received event N *through nginx*. A buffering proxy would hold event N (and
 *   the response head) and the exchange would stall, so the test fails without the header. Checked with nginx's
 *   default upstream protocol (HTTP/1.0, where the body is delimited by the connection's end) and with the usual SSE
 *   config (`proxy_http_version 1.1`, a chunked upstream body).
 * - The control: the same stream sending `X-Accel-Buffering: yes` (through the `headers` option), over the default
 *   HTTP/1.0 upstream. Once nginx has provably read the first event from the upstream socket (the kernel's queues for
 *   that connection are empty, read from /proc/net/tcp) and has finished a later request, the client has received
 *   nothing, not even the response head; everything arrives only when the stream ends. So buffering is real and
 *   observable, and it is the header that turns it off.
 *   (Observed with nginx 1.22: over a *chunked* HTTP/1.1 upstream, nginx passes each chunk on even when buffering, so
 *   there the control is not observable for small events; the header matters for the default HTTP/1.0 upstream and
 *   costs nothing on the other.)
 *
 * Needs nginx: `apt-get update && apt-get install -y nginx`. Run with `npm run test:integration`.
 */
import { freePort } from '../helpers/ports';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import express from 'express';
import { sseStream } from '../../lib';
import { deferred, loopTurns, Turns, type Deferred } from '../helpers/deferred';
import { eventually, listen, openStream, parseEvents, type TestServer } from '../helpers/sse-client';

const NGINX_PATH = process.env.NGINX_PATH ?? '/usr/sbin/nginx';
const INSTALL_COMMAND = 'apt-get update && apt-get install -y nginx';
const EVENTS = 5;

interface Nginx {
  url: string;
  port: number;
  dir: string;
  errorLog(): string;
  stop(): Promise<void>;
}


function config(dir: string, port: number, upstreamPort: number): string {
  return `
daemon off;
master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port};
    # proxy_buffering is left at its default, on: only the X-Accel-Buffering response header turns it off.
    location / {
      proxy_pass http://127.0.0.1:${upstreamPort};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 60s;
    }
    # nginx's defaults: HTTP/1.0 to the upstream, Connection: close.
    location /http10/ {
      proxy_pass http://127.0.0.1:${upstreamPort}/;
    }
  }
}
`;
}

async function startNginx(upstreamPort: number): Promise<Nginx> {
  if (!existsSync(NGINX_PATH)) {
    throw new Error(
      `nginx was not found at ${NGINX_PATH}. This test runs the stream behind Debian's nginx; install it with:\n` +
        `${INSTALL_COMMAND}\n(\`npm test\` runs every other test without it.)`,
    );
  }
  const dir = await mkdtemp(path.join(tmpdir(), 'express-sse-context-nginx-'));
  // nginx's workers drop root privileges; they must still reach the temp paths.
  await chmod(dir, 0o755);
  const port = await freePort();
  const confPath = path.join(dir, 'nginx.conf');
  await writeFile(confPath, config(dir, port, upstreamPort));
  const errorLogPath = path.join(dir, 'error.log');
  const errorLog = (): string => (existsSync(errorLogPath) ? readFileSync(errorLogPath, 'utf8') : '');
  let output = '';
  const child: ChildProcess = spawn(NGINX_PATH, ['-p', `${dir}/`, '-c', confPath, '-e', errorLogPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let exitCode: number | null | undefined;
  void exited.then((code) => (exitCode = code));
  const stop = async (): Promise<void> => {
    if (exitCode === undefined) {
      child.kill('SIGTERM');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (exitCode !== undefined) throw new Error(`nginx exited with ${String(exitCode)}: ${output}\n${errorLog()}`);
      if (await canConnect(port)) break;
      if (Date.now() > deadline) throw new Error(`nginx did not listen on ${port} within 10 s: ${output}\n${errorLog()}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `http://127.0.0.1:${port}`, port, dir, errorLog, stop };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A plain GET, read to the end. */
function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.once('end', () => resolve({ status: response.statusCode ?? 0, body }));
      })
      .once('error', reject);
  });
}

/**
 * The kernel's send and receive queues (bytes) of the loopback TCP connection from `localPort` to `remotePort`, from
 * /proc/net/tcp; `undefined` when no such connection exists.
 */
function tcpQueues(localPort: number, remotePort: number): { tx: number; rx: number } | undefined {
  const hexPort = (port: number): string => port.toString(16).toUpperCase().padStart(4, '0');
  const local = `0100007F:${hexPort(localPort)}`;
  const remote = `0100007F:${hexPort(remotePort)}`;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[1] === local && fields[2] === remote) {
      const [tx, rx] = fields[4].split(':').map((hex) => parseInt(hex, 16));
      return { tx, rx };
    }
  }
  return undefined;
}

describe('behind nginx with proxy_buffering on', () => {
  let app: TestServer;
  let nginx: Nginx | undefined;
  const turns = new Turns<string>();
  let buffered: { res: Deferred<express.Response>; release: Deferred<void> } = { res: deferred(), release: deferred() };

  beforeAll(async () => {
    const server = express();
    // Pushes event N+1 only once the test's client, reading through nginx, has received event N.
    server.get('/paced', sseStream({ heartbeat: 0 }), async (req, res) => {
      const key = String(req.query.key);
      for (let i = 0; i < EVENTS; i += 1) {
        res.sse.push(`event ${i}`, { id: i });
        await turns.get(`${key}:${i}`).promise;
      }
      await res.sse.close();
    });
    // The control: the same stream, but telling nginx to buffer it.
    server.get('/buffered', sseStream({ heartbeat: 0, headers: { 'X-Accel-Buffering': 'yes' } }), async (_req, res) => {
      res.sse.push('event 0');
      buffered.res.resolve(res);
      await buffered.release.promise;
      res.sse.push('event 1');
      await res.sse.close();
    });
    server.get('/ok', (_req, res) => {
      res.send('ok');
    });
    app = await listen(server);
    nginx = await startNginx(Number(new URL(app.url).port));
  });
  afterAll(async () => {
    await nginx?.stop();
    await app?.close();
  });

  function proxy(): Nginx {
    if (nginx === undefined) throw new Error('nginx did not start');
    return nginx;
  }

  it.each([
    ['HTTP/1.1 to the upstream (proxy_http_version 1.1)', '/paced?key=v11'],
    ["nginx's default HTTP/1.0 to the upstream", '/http10/paced?key=v10'],
  ])('%s: each event reaches the client before the next is pushed', async (_name, route) => {
    const key = new URLSearchParams(route.split('?')[1]).get('key') ?? '';
    // A buffering nginx would hold even the response head: fail in 5 s rather than at the test's timeout.
    const client = await withTimeout(openStream(`${proxy().url}${route}`), 5000, 'the response head through nginx');
    expect(client.status).toBe(200);
    expect(client.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    const arrivals: number[] = [];
    for (let i = 0; i < EVENTS; i += 1) {
      // Times out (and fails) if nginx holds the event back.
      await client.waitForEvent((event) => event.data === `event ${i}`, 5000);
      arrivals.push(client.events.length);
      turns.get(`${key}:${i}`).resolve();
    }
    await client.ended;
    console.log(`nginx ${key}: events seen by the client as each next one was allowed: ${JSON.stringify(arrivals)}`);
    // One by one: when event i arrived, the client had exactly i + 1 events.
    expect(arrivals).toEqual(Array.from({ length: EVENTS }, (_, i) => i + 1));
    expect(client.events.map((event) => [event.id, event.data])).toEqual(Array.from({ length: EVENTS }, (_, i) => [String(i), `event ${i}`]));
    expect(client.response.complete).toBe(true);
  });

  it('control: with X-Accel-Buffering: yes nginx holds the events until the stream ends', async () => {
    buffered = { res: deferred(), release: deferred() };
    // A buffering nginx holds even the response head (it waits for more output), so read without waiting for it.
    const body: string[] = [];
    let headersArrived = false;
    let clientPort: number | undefined;
    const request = http.get(`${proxy().url}/http10/buffered`, { agent: false });
    request.once('socket', (socket: net.Socket) => socket.once('connect', () => (clientPort = socket.localPort)));
    const ended = new Promise<void>((resolve, reject) => {
      request.once('error', reject);
      request.once('response', (response) => {
        headersArrived = true;
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => body.push(chunk));
        response.once('end', resolve);
      });
    });
    const res = await buffered.res.promise;
    const upstreamPort = Number(new URL(app.url).port);
    const nginxSide = res.socket?.remotePort;
    if (nginxSide === undefined) throw new Error('no upstream socket');
    // The event left this process, and nginx has read it: nothing waits in either kernel queue of the connection.
    await eventually(() => res.writableLength === 0, 5000, 'the event to leave the process');
    await eventually(
      () => {
        const ours = tcpQueues(upstreamPort, nginxSide);
        const theirs = tcpQueues(nginxSide, upstreamPort);
        return ours !== undefined && theirs !== undefined && ours.tx === 0 && theirs.rx === 0;
      },
      5000,
      'nginx to read the event from the upstream connection',
    );
    // nginx handles its events in order: once it has served a later request, it is done with what it read before.
    expect(await get(`${proxy().url}/ok`)).toEqual({ status: 200, body: 'ok' });
    // Whatever nginx forwarded has reached the client's socket and been read by this process.
    await eventually(() => clientPort !== undefined && tcpQueues(clientPort, proxy().port)?.rx === 0, 5000, 'the client socket to be read');
    await loopTurns(10);
    const whileOpen = { headersArrived, bodyBytes: body.join('').length };

    buffered.release.resolve();
    await ended;
    const events = parseEvents(body.join(''));
    console.log(
      `nginx control (X-Accel-Buffering: yes, upstream HTTP/1.0): while the stream was open, after nginx had read its first ` +
        `event: response head at the client ${whileOpen.headersArrived}, body bytes ${whileOpen.bodyBytes}; after it ended: ${events.length} events`,
    );
    expect(whileOpen).toEqual({ headersArrived: false, bodyBytes: 0 });
    expect(events.map((event) => event.data)).toEqual(['event 0', 'event 1']);
  });

  it('nginx logged no error about the upstream', () => {
    const log = proxy().errorLog();
    expect(log).not.toMatch(/\[(error|crit|alert|emerg)\]/);
    expect(log).not.toContain('upstream prematurely closed');
  });
});
