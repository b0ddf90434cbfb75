/**
 * What the real-client tests share: the Python virtualenv with httpx and httpx-sse (created here when missing), and
 * the two globals @microsoft/fetch-event-source reads in Node.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The pinned Python clients; `.ci/run` installs the same. */
export const PYTHON_PACKAGES = ['httpx==0.28.1', 'httpx-sse==0.4.3'];
/** The virtualenv, gitignored, at the repository's root (outside `__tests__/`, so Jest never crawls it). */
export const VENV = path.resolve(__dirname, '../../../.venv-clients');
export const VENV_PYTHON = path.join(VENV, 'bin', 'python');
export const PYTHON_INSTALL_COMMAND = `python3 -m venv .venv-clients && .venv-clients/bin/pip install ${PYTHON_PACKAGES.join(' ')}`;

/**
 * Makes sure the virtualenv exists with the pinned packages, creating it with `python3 -m venv` and pip when it does
 * not. Fails (never skips) with the exact command when it cannot.
 */
export async function ensurePythonClients(): Promise<string> {
  if (existsSync(VENV_PYTHON) && (await hasPinnedPackages())) return VENV_PYTHON;
  const started = performance.now();
  try {
    await run('python3', ['-m', 'venv', VENV]);
    // Where pip reaches only a local mirror, its retries of the public index are what takes the time: none here.
    await run(path.join(VENV, 'bin', 'pip'), ['install', '-q', ...PYTHON_PACKAGES], {
      env: { PIP_RETRIES: '0', PIP_TIMEOUT: '3', PIP_DISABLE_PIP_VERSION_CHECK: '1', ...process.env },
      timeout: 300_000,
    });
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    throw new Error(
      `Could not set up the Python clients (httpx, httpx-sse) in ${VENV}. Run:\n${PYTHON_INSTALL_COMMAND}\n` +
        `(needs python3 with its venv module: apt-get update && apt-get install -y python3 python3-venv)\n${stderr ?? String(error)}`,
      { cause: error },
    );
  }
  if (!(await hasPinnedPackages())) throw new Error(`The virtualenv ${VENV} lacks ${PYTHON_PACKAGES.join(' ')}. Run:\n${PYTHON_INSTALL_COMMAND}`);
  console.log(`Python clients: created ${VENV} (${PYTHON_PACKAGES.join(', ')}) in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return VENV_PYTHON;
}

async function hasPinnedPackages(): Promise<boolean> {
  const check = `import importlib.metadata as m; import sys; sys.exit(0 if [m.version('httpx'), m.version('httpx-sse')] == ${JSON.stringify(
    PYTHON_PACKAGES.map((spec) => spec.split('==')[1]),
  )} else 1)`;
  try {
    await run(VENV_PYTHON, ['-c', check]);
    return true;
  } catch {
    return false;
  }
}

/** Runs `httpx_client.py MODE URL` in the virtualenv and returns the JSON it prints. */
export async function runHttpxClient<T>(python: string, mode: 'sse' | 'ndjson', url: string): Promise<T> {
  const { stdout } = await run(python, [path.join(__dirname, 'httpx_client.py'), mode, url], { maxBuffer: 64 * 1024 * 1024, timeout: 30_000 });
  return JSON.parse(stdout) as T;
}

/**
 * @microsoft/fetch-event-source 2.0.1 is written for browsers and reads two globals even with `openWhenHidden: true`
 * and a `fetch` of its own (lib/cjs/fetch.js): `document.removeEventListener('visibilitychange', ...)` in `dispose()`,
 * and `window.setTimeout` / `window.clearTimeout` for its retry timer. The smallest honest shim: a `document` with
 * no-op listener methods (Node has no page to hide, so the visibility event never fires) and `window` as Node's
 * global, whose timers are the real ones. Nothing else of the DOM is provided, so anything more it touched would
 * throw. Returns the function that removes both again.
 */
export function installFetchEventSourceGlobals(): () => void {
  const scope = globalThis as Record<string, unknown>;
  const had = { document: 'document' in scope, window: 'window' in scope };
  if (!had.document) scope.document = { hidden: false, addEventListener: () => undefined, removeEventListener: () => undefined };
  if (!had.window) scope.window = globalThis;
  return () => {
    if (!had.document) delete scope.document;
    if (!had.window) delete scope.window;
  };
}
