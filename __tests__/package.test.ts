/**
 * The published package, as a user gets it: `npm pack` (which builds, through `prepack`) in a copy of the repo, the
 * tarball installed with npm into a fresh app in a temporary directory, then the README's quick start run there as an
 * ES module (`import`) and as CommonJS (`require`) against a real server on 127.0.0.1, and type-checked under
 * `strict` as a TypeScript consumer of each.
 *
 * The copy keeps the build and pack away from the repo's own dist/, which the other test files load meanwhile. The
 * install needs the npm registry only for packages missing from npm's cache (`--prefer-offline`), and pins the
 * versions installed here, so a warm cache is enough.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';
import { openStream } from './helpers/sse-client';

const run = promisify(execFile);
const REPO = path.resolve(__dirname, '..');
/** Not copied: what git ignores, and what the build makes again. */
const NOT_COPIED = new Set(['node_modules', '.git', 'dist', 'docs', 'coverage', 'test-output']);

/** The environment of an npm run outside `npm test`: none of the outer npm's lifecycle and package variables. */
const npmEnv = Object.fromEntries(
  Object.entries(process.env).filter(([key]) => !/^(npm_(lifecycle|package)_|npm_config_local_prefix$|INIT_CWD$)/i.test(key)),
);

async function npm(args: string[], cwd: string): Promise<string> {
  try {
    const { stdout } = await run('npm', args, { cwd, env: npmEnv, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`npm ${args.join(' ')} failed in ${cwd}:\n${stdout ?? ''}\n${stderr ?? ''}`, { cause: error });
  }
}

function installedVersion(name: string): string {
  return (JSON.parse(readFileSync(path.join(REPO, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
}

/** The first ```ts block after "## Quick start" in README.md, exactly as a reader copies it. */
function readmeQuickStart(): string {
  const readme = readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const section = readme.indexOf('\n## Quick start');
  const match = /```ts\n([\s\S]*?)```/.exec(readme.slice(section));
  if (section < 0 || match === null) throw new Error('README.md has no ```ts block under "## Quick start"');
  return match[1];
}

/** The quick start as a runnable script: listening on a free loopback port, which it prints for the test. */
function runnable(quickStart: string, module: ts.ModuleKind): string {
  const listen = 'app.listen(3000);';
  if (!quickStart.includes(listen)) throw new Error(`the README's quick start no longer ends with ${listen}`);
  const source = quickStart.replace(
    listen,
    "const server = app.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));",
  );
  return ts.transpileModule(source, { compilerOptions: { module, target: ts.ScriptTarget.ES2022, esModuleInterop: true } }).outputText;
}

interface Packed {
  filename: string;
  size: number;
  unpackedSize: number;
  files: Array<{ path: string; size: number }>;
}

let stage: string;
let app: string;
let packed: Packed;
const children: ChildProcess[] = [];

beforeAll(async () => {
  stage = mkdtempSync(path.join(tmpdir(), 'express-sse-context-package-'));
  const source = path.join(stage, 'source');
  cpSync(REPO, source, {
    recursive: true,
    filter: (from) => !NOT_COPIED.has(path.relative(REPO, from).split(path.sep)[0]) && !from.endsWith('.tgz'),
  });
  symlinkSync(path.join(REPO, 'node_modules'), path.join(source, 'node_modules'), 'dir');
  // `npm pack` runs `prepack`, which is `npm run build`: the tarball is built from a clean dist/.
  [packed] = JSON.parse(await npm(['pack', '--json', '--pack-destination', stage], source)) as Packed[];

  app = path.join(stage, 'app');
  mkdirSync(app);
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'quick-start-app', private: true, version: '1.0.0' }));
  const peers = ['express', 'winston', '@types/express', '@types/node'].map((name) => `${name}@${installedVersion(name)}`);
  await npm(
    ['install', path.join(stage, packed.filename), ...peers, '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts'],
    app,
  );
}, 180_000);

afterAll(() => {
  for (const child of children) child.kill();
  if (stage !== undefined) rmSync(stage, { recursive: true, force: true });
});

describe('npm pack', () => {
  test('the tarball holds dist/ (CommonJS and ESM, each with declarations), README, CHANGELOG, LICENSE, package.json', () => {
    const files = packed.files.map((file) => file.path).sort();
    const other = files.filter((file) => !file.startsWith('dist/'));
    expect(other).toEqual(['CHANGELOG.md', 'LICENSE', 'README.md', 'package.json']);
    const dist = files.filter((file) => file.startsWith('dist/'));
    for (const file of dist) expect(file).toMatch(/^dist\/(cjs|esm)\/(((store|resume|feed|channel|client)\/)?[\w-]+\.(js|d\.ts)|package\.json)$/);
    for (const format of ['cjs', 'esm']) {
      const built = dist.filter((file) => file.startsWith(`dist/${format}/`));
      expect(built).toEqual(expect.arrayContaining([`dist/${format}/index.js`, `dist/${format}/index.d.ts`, `dist/${format}/package.json`]));
      // Every module has its declarations.
      for (const js of built.filter((file) => file.endsWith('.js'))) expect(built).toContain(js.replace(/\.js$/, '.d.ts'));
    }
    const installed = path.join(app, 'node_modules', 'express-sse-context');
    expect(JSON.parse(readFileSync(path.join(installed, 'dist/esm/package.json'), 'utf8'))).toEqual({ type: 'module' });
    expect(JSON.parse(readFileSync(path.join(installed, 'dist/cjs/package.json'), 'utf8'))).toEqual({ type: 'commonjs' });
    console.log(`${packed.filename}: ${packed.files.length} files, ${packed.size} bytes packed, ${packed.unpackedSize} unpacked`);
  });

  test('no source maps, and no references to files the tarball lacks', () => {
    const dist = path.join(app, 'node_modules', 'express-sse-context', 'dist');
    for (const format of ['cjs', 'esm']) {
      for (const name of readdirSync(path.join(dist, format), { recursive: true, encoding: 'utf8' })) {
        expect(name).not.toMatch(/\.map$/);
        if (!name.endsWith('.js') && !name.endsWith('.ts')) continue;
        expect(readFileSync(path.join(dist, format, name), 'utf8')).not.toMatch(/sourceMappingURL|\.\.\/lib\//);
      }
    }
  });

  test('no `any` in the public types', () => {
    const dist = path.join(app, 'node_modules', 'express-sse-context', 'dist');
    const found: string[] = [];
    for (const format of ['cjs', 'esm']) {
      for (const name of readdirSync(path.join(dist, format), { recursive: true, encoding: 'utf8' }).filter((file) => file.endsWith('.d.ts'))) {
        const file = ts.createSourceFile(name, readFileSync(path.join(dist, format, name), 'utf8'), ts.ScriptTarget.Latest, true);
        const visit = (node: ts.Node): void => {
          if (node.kind === ts.SyntaxKind.AnyKeyword) found.push(`${format}/${name}: ${node.parent.getText(file)}`);
          ts.forEachChild(node, visit);
        };
        visit(file);
      }
    }
    expect(found).toEqual([]);
  });
});

describe("the README's quick start in a fresh app", () => {
  /** Starts the script, waits for the port it prints, and reads one stream from it to the end. */
  async function runQuickStart(file: string): Promise<void> {
    const child = spawn(process.execPath, [file], { cwd: app, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let output = '';
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${file} printed no port within 15 s:\n${output}`)), 15_000);
      const read = (chunk: Buffer): void => {
        output += chunk.toString();
        const line = /^\{"port":(\d+)\}$/m.exec(output);
        if (line !== null) {
          clearTimeout(timer);
          resolve(Number(line[1]));
        }
      };
      child.stdout.on('data', read);
      child.stderr.on('data', read);
      child.once('exit', (code) => reject(new Error(`${file} exited with ${code}:\n${output}`)));
    });
    try {
      const client = await openStream(`http://127.0.0.1:${port}/research?topic=otters`);
      expect(client.status).toBe(200);
      expect(client.headers['content-type']).toBe('text/event-stream; charset=utf-8');
      // The first log event arrives while the route still works: streamed, not buffered until the end.
      const first = await client.waitForEvent(undefined, 10_000);
      expect(JSON.parse(first.data)).toEqual({ type: 'log', level: 'info', message: 'plan: otters' });
      expect(client.response.complete).toBe(false);
      await client.ended;
      expect(client.events.map((event) => event.data)).toEqual([
        JSON.stringify({ type: 'log', level: 'info', message: 'plan: otters' }),
        JSON.stringify({ type: 'log', level: 'info', message: 'search: otters' }),
        JSON.stringify({ type: 'log', level: 'info', message: 'draft: otters' }),
        JSON.stringify({ type: 'answer', text: 'All about otters' }),
        '[DONE]',
      ]);
      // The Console transport logged the same records on the server.
      expect(output).toContain('"message":"draft: otters"');
    } finally {
      child.kill();
    }
  }

  test('as an ES module: import { sseStream, SseTransport, sseErrorHandler } from "express-sse-context"', async () => {
    const code = runnable(readmeQuickStart(), ts.ModuleKind.ESNext);
    expect(code).toMatch(/^import .* from 'express-sse-context';$/m);
    writeFileSync(path.join(app, 'quick-start.mjs'), code);
    await runQuickStart('quick-start.mjs');
  }, 30_000);

  test('as CommonJS: require("express-sse-context")', async () => {
    const code = runnable(readmeQuickStart(), ts.ModuleKind.CommonJS);
    expect(code).toContain('require("express-sse-context")');
    writeFileSync(path.join(app, 'quick-start.cjs'), code);
    await runQuickStart('quick-start.cjs');
  }, 30_000);

  /** An app that imports the ES module build in one file and requires the CommonJS build in another shares one context. */
  test('an app that loads both builds (ESM route, CommonJS logger) still streams its logs', async () => {
    writeFileSync(
      path.join(app, 'both-builds.mjs'),
      [
        "import { createRequire } from 'node:module';",
        "import express from 'express';",
        "import winston from 'winston';",
        "import { sseStream } from 'express-sse-context';",
        "const { SseTransport } = createRequire(import.meta.url)('express-sse-context');",
        'const logger = winston.createLogger({ transports: [new SseTransport()] });',
        'const app = express();',
        "app.get('/', sseStream({ heartbeat: 0 }), async (_req, res) => {",
        "  logger.info('from a CommonJS logger');",
        '  await res.sse.close();',
        '});',
        "const server = app.listen(0, '127.0.0.1', async () => {",
        '  const response = await fetch(`http://127.0.0.1:${server.address().port}/`);',
        '  console.log(JSON.stringify(await response.text()));',
        '  server.close();',
        '});',
      ].join('\n'),
    );
    const { stdout } = await run(process.execPath, ['both-builds.mjs'], { cwd: app, timeout: 15_000 });
    expect(JSON.parse(stdout)).toBe(`data: ${JSON.stringify({ type: 'log', level: 'info', message: 'from a CommonJS logger' })}\n\n`);
  }, 30_000);

  test.each([
    ['an ES module', 'mjs', "import express from 'express';\nimport { sseStream } from 'express-sse-context';\nimport { readEvents } from 'express-sse-context/client';"],
    ['CommonJS', 'cjs', "const express = require('express');\nconst { sseStream } = require('express-sse-context');\nconst { readEvents } = require('express-sse-context/client');"],
  ])('express-sse-context/client loads as %s and reads a POSTed stream from the library’s server', async (_format, extension, imports) => {
    const file = `client.${extension}`;
    writeFileSync(
      path.join(app, file),
      [
        imports,
        'const app = express();',
        "app.post('/ask', express.json(), sseStream({ done: '[DONE]', heartbeat: 0 }), async (req, res) => {",
        "  for (const word of req.body.q.split(' ')) res.sse.push({ word, auth: req.get('authorization') });",
        '  await res.sse.close();',
        '});',
        "const server = app.listen(0, '127.0.0.1', async () => {",
        '  const words = [];',
        '  const stream = readEvents(`http://127.0.0.1:${server.address().port}/ask`, {',
        "    method: 'POST',",
        "    headers: { 'content-type': 'application/json', authorization: 'Bearer x' },",
        "    body: JSON.stringify({ q: 'from the tarball' }),",
        "    done: '[DONE]',",
        '  });',
        '  for await (const event of stream) words.push(event.json());',
        '  console.log(JSON.stringify(words));',
        '  server.close();',
        '});',
      ].join('\n'),
    );
    const { stdout } = await run(process.execPath, [file], { cwd: app, timeout: 15_000 });
    expect(JSON.parse(stdout)).toEqual(['from', 'the', 'tarball'].map((word) => ({ word, auth: 'Bearer x' })));
  }, 30_000);

  test.each([
    ['ESM', 'mts'],
    ['CommonJS', 'cts'],
  ])('type-checks as a strict TypeScript %s consumer (res.sse.push() on Express’s Response)', async (_format, extension) => {
    const consumer = `consumer-${extension}`;
    mkdirSync(path.join(app, consumer));
    // The quick start, plus proof that `res.sse` is really typed (were it `any`, the expected error would not come).
    const typed = [
      "app.get('/typed', sseStream(), (_req, res) => {",
      "  const queued: boolean = res.sse.push({ ok: true }, { event: 'update', id: 1 });",
      "  // @ts-expect-error retry is a number of milliseconds",
      "  res.sse.push('late', { retry: 'soon' });",
      '  void queued;',
      '});',
      // The client subpath's types resolve too, and its generic types json().
      "import { readEvents, SseResponseError } from 'express-sse-context/client';",
      'export async function firstEcho(): Promise<string> {',
      "  for await (const event of readEvents<{ echo: string }>('http://127.0.0.1/', { method: 'POST', done: '[DONE]' })) {",
      '    const echo: string = event.json().echo;',
      '    // @ts-expect-error echo is a string',
      '    const wrong: number = event.json().echo;',
      '    return echo + String(wrong);',
      '  }',
      "  throw new SseResponseError('none', { status: 204, contentType: null, body: '', url: '' });",
      '}',
    ].join('\n');
    writeFileSync(path.join(app, consumer, `quick-start.${extension}`), `${readmeQuickStart()}\n${typed}\n`);
    writeFileSync(
      path.join(app, consumer, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'es2022',
          esModuleInterop: true,
          types: ['node'],
          skipLibCheck: false,
          noEmit: true,
        },
        files: [`quick-start.${extension}`],
      }),
    );
    const tsc = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
    await expect(
      run(process.execPath, [tsc, '-p', path.join(app, consumer)], { cwd: app }).catch((error: { stdout?: string }) => {
        throw new Error(`tsc found errors:\n${error.stdout ?? String(error)}`);
      }),
    ).resolves.toBeDefined();
  }, 60_000);
});
