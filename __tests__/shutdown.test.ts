/**
 * Graceful shutdown: `closeAllStreams()` gives every client a farewell event and a retry hint, ends every stream with
 * reason 'shutdown', and lets `server.close()` finish, so a process that handles SIGTERM this way exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import express from 'express';
import { closeAllStreams, openStreamCount, sseStream, type SseStream } from '../lib';
import { deferred } from './helpers/deferred';
import { eventually, listen, openStream, type StreamClient } from './helpers/sse-client';

const CLIENTS = 200;

function startServer(): { child: ChildProcess; port: Promise<number>; output: string[]; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'shutdown-server.js')], { stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const port = deferred<number>();
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    output.push(...chunk.trim().split('\n'));
    const match = /PORT (\d+)/.exec(chunk);
    if (match) port.resolve(Number(match[1]));
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => output.push(chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  void exited.then(() => port.reject(new Error(`the server exited before listening: ${output.join('\n')}`)));
  return { child, port: port.promise, output, exited };
}

describe('closeAllStreams()', () => {
  it(`ends ${CLIENTS} open streams of a process on SIGTERM: each client gets the farewell and retry, the process exits`, async () => {
    const server = startServer();
    try {
      const url = `http://127.0.0.1:${await server.port}/events`;
      const clients: StreamClient[] = [];
      for (let i = 0; i < CLIENTS; i += 20) {
        clients.push(...(await Promise.all(Array.from({ length: 20 }, () => openStream(url)))));
      }
      await Promise.all(clients.map((client) => client.waitForEvent()));

      server.child.kill('SIGTERM');
      const guard = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 15_000).unref());
      expect(await Promise.race([server.exited, guard])).toBe(0);

      await Promise.all(clients.map((client) => client.ended));
      for (const client of clients) {
        expect(client.events.map((event) => JSON.parse(event.data) as unknown)).toEqual([{ type: 'hello' }, { type: 'shutdown' }]);
        expect(client.retries).toEqual([1500]);
        expect(client.response.complete).toBe(true);
      }
      expect(server.output).toContain(`OPEN ${CLIENTS}`);
      expect(server.output).toContain('OPEN 0');
    } finally {
      server.child.kill('SIGKILL');
    }
  });

  it("aborts each stream's signal with reason 'shutdown' and sends no done terminator", async () => {
    const app = express();
    const route = deferred<SseStream>();
    app.get('/events', sseStream({ heartbeat: 0, done: '[DONE]' }), (_req, res) => route.resolve(res.sse));
    const server = await listen(app);
    try {
      const client = await openStream(`${server.url}/events`);
      const stream = await route.promise;
      expect(openStreamCount()).toBe(1);
      await closeAllStreams({ data: 'bye' });
      await client.ended;
      expect(stream.closeReason).toBe('shutdown');
      expect(stream.signal.aborted).toBe(true);
      expect((stream.signal.reason as DOMException).name).toBe('AbortError');
      expect(client.events.map((event) => event.data)).toEqual(['bye']);
      expect(openStreamCount()).toBe(0);
      await eventually(() => client.response.complete, 5000, 'the response to complete');
    } finally {
      await server.close();
    }
  });

  it('rejects a bad retry with a TypeError naming it', async () => {
    await expect(closeAllStreams({ retry: -1 })).rejects.toThrow(TypeError);
    await expect(closeAllStreams({ retry: -1 })).rejects.toThrow(/retry/);
  });
});
