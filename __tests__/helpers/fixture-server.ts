/**
 * A test fixture server (`__tests__/fixtures/*.js`) as a child process: what the multi-instance tests run several
 * of, each on its own free port (it prints `PORT <n>` once it listens).
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface FixtureServer {
  url: string;
  child: ChildProcess;
  /** Resolves when the process exited. */
  exited: Promise<void>;
  /** What it printed, stdout and stderr. */
  output(): string;
}

export function startFixture(file: string, env: Record<string, string>): Promise<FixtureServer> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const exited = new Promise<void>((done) => child.once('exit', () => done()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const port = /PORT (\d+)/.exec(output)?.[1];
      if (port !== undefined) resolve({ url: `http://127.0.0.1:${port}`, child, exited, output: () => output });
    });
    void exited.then(() => reject(new Error(`${file} exited before listening:\n${output}`)));
  });
}

/** Kills it with SIGKILL (if it still runs) and waits for it to exit. */
export async function stopFixture(server: FixtureServer | undefined): Promise<void> {
  if (server === undefined || server.child.exitCode !== null || server.child.signalCode !== null) return;
  server.child.kill('SIGKILL');
  await server.exited;
}
