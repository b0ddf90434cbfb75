/**
 * Browser-test harness: Debian's Chromium driven by playwright-core (never a downloaded browser), and the demo app on
 * a free loopback port with a logger whose records the test can read (the server's log).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Express } from 'express';
import type { Logger } from 'winston';
import TransportStream from 'winston-transport';
import { chromium, type BrowserContext } from 'playwright-core';
import { listen, type TestServer } from '../helpers/sse-client';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const INSTALL_COMMAND = 'apt-get update && apt-get install -y chromium';
export const OUTPUT_DIR = path.join(__dirname, '..', '..', 'test-output');

/** Launches headless Chromium with a fresh profile; fails (never skips) when Chromium is not installed. */
export async function launchChromium(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium was not found at ${CHROMIUM_PATH}. The browser tests drive Debian's Chromium; install it with:\n` +
        `${INSTALL_COMMAND}\n` +
        '(`npm test` runs every other test without it.)',
    );
  }
  const userDataDir = await mkdtemp(path.join(tmpdir(), 'express-sse-context-chromium-'));
  let context: BrowserContext;
  try {
    // launchPersistentContext is Playwright's way to pass --user-data-dir (it refuses the flag in `args`).
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      viewport: { width: 1280, height: 900 },
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
  } catch (error) {
    await rm(userDataDir, { recursive: true, force: true });
    throw error;
  }
  return {
    context,
    close: async () => {
      await context.close();
      await rm(userDataDir, { recursive: true, force: true });
    },
  };
}

export type LogRecord = Record<string, unknown>;

/** A real winston transport that keeps every record the server logged. */
export class MemoryTransport extends TransportStream {
  readonly records: LogRecord[] = [];
  override log(info: LogRecord, next: () => void): void {
    this.records.push(info);
    next();
  }
}

interface DemoModules {
  createApp: (options?: { stepDelayMs?: number; tokenDelayMs?: number; logger?: Logger }) => Express;
  createLogger: (options?: { console?: boolean; transports?: TransportStream[] }) => Logger;
  composeAnswer: (message: string) => string;
}

/** The demo's own modules (plain CommonJS requiring the built package, as user code would). */
export function loadDemo(): DemoModules {
  try {
    /* eslint-disable @typescript-eslint/no-require-imports */
    return { ...require('../../demo-app/app'), ...require('../../demo-app/logger'), ...require('../../demo-app/agent') };
  } catch (error) {
    throw new Error(`Could not load demo-app (it needs the built library: run \`npm run build\`): ${String(error)}`, { cause: error });
  }
}

export interface RunningDemo extends TestServer {
  /** Everything the server logged (the agent's lines, its "stopped" line, server-only error details). */
  records: LogRecord[];
}

/** Starts the demo app on 127.0.0.1, port 0, with the given delays and a logger the test can read. */
export async function startDemo(options: { stepDelayMs: number; tokenDelayMs: number }): Promise<RunningDemo> {
  const { createApp, createLogger } = loadDemo();
  const memory = new MemoryTransport();
  const logger = createLogger({ console: false, transports: [memory] });
  const server = await listen(createApp({ ...options, logger }));
  return Object.assign(server, { records: memory.records });
}
