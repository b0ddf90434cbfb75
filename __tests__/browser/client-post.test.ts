/**
 * The agent console's POST path in real Chromium: with "POST" ticked the page imports express-sse-context/client
 * (dist/esm, served as a browser module with an import map for eventsource-parser) and reads the stream of a
 * fetch() POST with a JSON body through readEvents(). Needs /usr/bin/chromium; run with `npm run test:browser`.
 */
import type { Page, Request } from 'playwright-core';
import { eventually } from '../helpers/sse-client';
import { launchChromium, loadDemo, startDemo, type LogRecord, type RunningDemo } from './harness';

const WAIT = { timeout: 30_000 };
const { composeAnswer } = loadDemo();

describe('agent console, POST through readEvents(), in Chromium', () => {
  let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
  const demos: RunningDemo[] = [];

  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await Promise.all(demos.map((demo) => demo.close()));
    await browser?.close();
  });

  /** Opens the page with POST ticked, recording every request to the stream and every page error. */
  async function openWithPost(options: { stepDelayMs: number; tokenDelayMs: number }): Promise<{
    page: Page;
    demo: RunningDemo;
    streams: Request[];
    errors: string[];
    modules: string[];
  }> {
    const demo = await startDemo(options);
    demos.push(demo);
    const page = await browser!.context.newPage();
    const streams: Request[] = [];
    const errors: string[] = [];
    const modules: string[] = [];
    page.on('request', (request) => {
      if (new URL(request.url()).pathname === '/chat/stream') streams.push(request);
    });
    page.on('pageerror', (error) => errors.push(error.message));
    page.on('response', (response) => {
      const { pathname } = new URL(response.url());
      // Chromium asks for a favicon the demo does not have.
      if (response.status() >= 400 && pathname !== '/favicon.ico') errors.push(`${response.status()} ${pathname}`);
      if (pathname.startsWith('/vendor/')) modules.push(`${response.status()} ${pathname} ${response.headers()['content-type']}`);
    });
    await page.goto(demo.url);
    await page.locator('#connection', { hasText: 'Idle' }).waitFor(WAIT);
    await page.check('#use-post');
    return { page, demo, streams, errors, modules };
  }

  it('Send POSTs the question as JSON and streams the steps, logs and answer through readEvents()', async () => {
    const { page, streams, errors, modules } = await openWithPost({ stepDelayMs: 5, tokenDelayMs: 5 });
    const question = 'What can a POST stream carry?';
    await page.fill('#message', question);
    await page.click('#send');
    await page.locator('#connection', { hasText: 'Done' }).waitFor(WAIT);

    // One request, a POST with the question as its JSON body: not EventSource's GET.
    expect(streams.map((request) => request.method())).toEqual(['POST']);
    expect(streams[0].postDataJSON()).toEqual({ message: question });
    expect(await streams[0].headerValue('content-type')).toBe('application/json');
    expect(await streams[0].headerValue('accept')).toBe('text/event-stream, application/x-ndjson;q=0.9');

    expect(await page.textContent('#answer-text')).toBe(composeAnswer(question));
    expect(await page.textContent('#progress-label')).toBe('100%');
    const lines = await page.locator('#log li .message').allTextContents();
    expect(lines).toContain(`Planning how to answer "${question}"`);
    expect(lines).toContain('Answer complete');
    expect(await page.isHidden('#error-banner')).toBe(true);
    expect(errors).toEqual([]);
    // The library's client from dist/esm (its modules, and the option checks they share), and eventsource-parser
    // through the import map, all as JavaScript.
    expect(modules.sort()).toEqual(
      [
        'eventsource-parser.js',
        'express-sse-context/client/decoders.js',
        'express-sse-context/client/errors.js',
        'express-sse-context/client/index.js',
        'express-sse-context/client/plan.js',
        'express-sse-context/client/response.js',
        'express-sse-context/options.js',
      ].map((file) => `200 /vendor/${file} text/javascript; charset=utf-8`),
    );
    await page.close();
  });

  it('Stop aborts the fetch: the server-side signal aborts and the agent stops mid-answer', async () => {
    const { page, demo, errors } = await openWithPost({ stepDelayMs: 5, tokenDelayMs: 400 });
    const question = 'a posted question to stop';
    await page.fill('#message', question);
    await page.click('#send');
    await page.waitForFunction("document.getElementById('answer-text').textContent.length > 0", undefined, WAIT);
    await page.click('#stop');
    await page.locator('#connection', { hasText: 'Stopped' }).waitFor(WAIT);

    const isStop = (r: LogRecord): boolean => r.agent === 'stopped' && r.question === question;
    await eventually(() => demo.records.some(isStop), 15_000, 'the agent to log that it stopped');
    expect(demo.records.find(isStop)!.message).toBe('Agent stopped during "answer": The client disconnected');
    expect((await page.textContent('#answer-text'))!.length).toBeLessThan(composeAnswer(question).length);
    expect(await page.isHidden('#error-banner')).toBe(true);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('"fail" over POST shows the safe error event, then [DONE] ends the loop', async () => {
    const { page } = await openWithPost({ stepDelayMs: 5, tokenDelayMs: 2 });
    await page.fill('#message', 'fail');
    await page.click('#send');
    await page.locator('#connection', { hasText: 'Failed' }).waitFor(WAIT);
    expect(await page.textContent('#error-message')).toBe('Internal Server Error');
    await page.close();
  });
});
