/**
 * A throwaway redis-server for the Redis cells: on a free port of 127.0.0.1, persisting nothing (`--save ''`,
 * `--appendonly no`), in a temporary directory; `stop()` kills it and removes the directory. run.mjs also kills it
 * with its other children however it exits.
 */
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const BINARY = process.env.REDIS_SERVER ?? 'redis-server';

/** A port that was free a moment ago (redis-server cannot be told to pick one and say which). */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer().on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once a PING on `port` gets +PONG, or rejects after `timeoutMs`. */
async function ready(port, child, timeoutMs) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode}: ${child.output}`);
    const pong = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      let reply = '';
      socket.setEncoding('utf8');
      socket.on('connect', () => socket.write('PING\r\n'));
      socket.on('data', (chunk) => {
        reply += chunk;
        if (reply.includes('\r\n')) socket.end();
      });
      socket.on('close', () => resolve(reply.startsWith('+PONG')));
      socket.on('error', () => resolve(false));
    });
    if (pong) return;
    if (Date.now() > until) throw new Error(`redis-server did not answer PING on port ${port} within ${timeoutMs} ms: ${child.output}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The version redis-server reports, e.g. `7.0.15`. */
export function redisVersion() {
  try {
    return /v=(\S+)/.exec(execFileSync(BINARY, ['--version'], { encoding: 'utf8' }))?.[1] ?? 'unknown';
  } catch {
    return 'missing';
  }
}

/** Starts redis-server; `track(child)` registers the process with the caller's clean-up. Resolves with { port, stop }. */
export async function startRedis(track = () => {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-redis-'));
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const child = spawn(BINARY, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    track(child);
    child.output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk) => (child.output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk) => (child.output += chunk));
    try {
      await ready(port, child, 10_000);
    } catch (error) {
      child.kill('SIGKILL');
      // Someone took the port between freePort() and redis-server's bind: try another.
      if (attempt < 3 && /Address already in use/.test(child.output)) continue;
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
    const stop = () =>
      new Promise((resolve) => {
        const done = () => {
          rmSync(dir, { recursive: true, force: true });
          resolve();
        };
        if (child.exitCode !== null || child.signalCode !== null) return done();
        child.once('exit', done);
        child.kill('SIGKILL');
      });
    return { port, stop, child };
  }
}
