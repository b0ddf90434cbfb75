/**
 * A throwaway redis-server for the integration tests: Debian's /usr/bin/redis-server on a free 127.0.0.1 port, with
 * no persistence and its working directory in a temp dir, removed by `stop()`. A missing binary fails the test with
 * the `apt-get` line that installs it.
 */
import { freePort } from './ports';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';

const REDIS_SERVER_PATH = process.env.REDIS_SERVER_PATH ?? '/usr/bin/redis-server';
export const REDIS_INSTALL_MESSAGE = 'redis-server not found: apt-get update && apt-get install -y redis-server';

export interface RedisServer {
  /** `redis://127.0.0.1:<port>`. */
  url: string;
  port: number;
  /** A new client of this server; the caller quits it. */
  connect(): Redis;
  /** Stops the server and removes its directory. */
  stop(): Promise<void>;
  /** Kills the server with SIGKILL (as a crash does) and waits for it to exit; `stop()` still removes its directory. */
  kill(): Promise<void>;
}

export interface RedisServerOptions {
  /** The port to listen on (to restart a killed server where its clients look for it); default: a free one. */
  port?: number;
  /** More redis-server arguments, e.g. `['--maxmemory-policy', 'noeviction']`. */
  args?: string[];
}


function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

/** Sends PING until the server answers PONG, or rejects after `timeoutMs` with what the server printed. */
async function untilReady(port: number, child: ChildProcess, output: () => string, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}:\n${output()}`);
    const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    try {
      await client.connect();
      if ((await client.ping()) === 'PONG') return;
    } catch {
      // Not listening yet: try again below.
    } finally {
      client.disconnect();
    }
    if (Date.now() > deadline) throw new Error(`redis-server did not answer PING within ${timeoutMs} ms:\n${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Starts a redis-server and resolves once it answers PING. */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  if (!existsSync(REDIS_SERVER_PATH)) throw new Error(REDIS_INSTALL_MESSAGE);
  const dir = await mkdtemp(path.join(tmpdir(), 'sse-redis-'));
  const port = options.port ?? (await freePort());
  const child = spawn(
    REDIS_SERVER_PATH,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', '', ...(options.args ?? [])],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited(child);
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await untilReady(port, child, () => output);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    connect: () => new Redis({ port, host: '127.0.0.1' }),
    stop,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited(child);
    },
  };
}
