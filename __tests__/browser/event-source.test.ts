import express from 'express';
import { sseStream } from '../../lib';
import { listen, type TestServer } from '../helpers/sse-client';
import { launchChromium } from './harness';

/** What the browser's own EventSource makes of the library's frames. */
describe("the browser's EventSource", () => {
  let server: TestServer;
  let browser: Awaited<ReturnType<typeof launchChromium>>;

  beforeAll(async () => {
    const app = express();
    app.get('/', (_req, res) => {
      res.type('html').send(`<script>
        window.received = [];
        const source = new EventSource('/events');
        source.onmessage = (event) => {
          if (event.data === '[DONE]') { source.close(); window.done = true; return; }
          window.received.push({ type: 'message', data: event.data, id: event.lastEventId });
        };
        source.addEventListener('step', (event) => window.received.push({ type: 'step', data: event.data, id: event.lastEventId }));
      </script>`);
    });
    app.get('/events', sseStream({ done: '[DONE]', heartbeat: 20 }), (_req, res) => {
      res.sse.push('line 1\nline 2\r\nline 3\rline 4');
      res.sse.push('');
      res.sse.push({ step: 'plan' }, { event: 'step', id: 7 });
      res.sse.push('a\n\nevent: admin\ndata: injected');
      setTimeout(() => void res.sse.close(), 60);
    });
    server = await listen(app);
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('decodes multi-line data, empty data, named events with ids, and never an injected event', async () => {
    const page = await browser.context.newPage();
    await page.goto(server.url);
    await page.waitForFunction(() => (globalThis as unknown as { done?: boolean }).done === true, undefined, { timeout: 10_000 });
    const received = await page.evaluate(() => (globalThis as unknown as { received: unknown[] }).received);
    expect(received).toEqual([
      { type: 'message', data: 'line 1\nline 2\nline 3\nline 4', id: '' },
      // An event with empty data is delivered by Chromium's EventSource, as the spec's parsing rules say.
      { type: 'message', data: '', id: '' },
      { type: 'step', data: '{"step":"plan"}', id: '7' },
      { type: 'message', data: 'a\n\nevent: admin\ndata: injected', id: '7' },
    ]);
    await page.close();
  });
});
