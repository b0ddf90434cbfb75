/**
 * The demo's "Simulate network drop" in real Chromium: the page closes its EventSource mid-answer and reopens it
 * with the last event id it saw; the run went on on the server, and the answer completes with nothing missing or
 * doubled. Needs /usr/bin/chromium (`apt-get update && apt-get install -y chromium`); run with `npm run test:browser`.
 */
import type { Page } from 'playwright-core';
import { launchChromium, loadDemo, startDemo, type LogRecord, type RunningDemo } from './harness';

const WAIT = { timeout: 30_000 };
const { composeAnswer } = loadDemo();

describe('agent console: a dropped connection in Chromium', () => {
  let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
  let demo: RunningDemo | undefined;

  beforeAll(async () => {
    browser = await launchChromium();
    // Slow tokens, so the drop lands in the middle of the answer and tokens are produced while the page is offline.
    demo = await startDemo({ stepDelayMs: 5, tokenDelayMs: 60 });
  });
  afterAll(async () => {
    await demo?.close();
    await browser?.close();
  });

  const answerLength = (page: Page): Promise<number> =>
    page.evaluate("document.getElementById('answer-text').textContent.length");

  it('drop mid-answer, reopen with the last event id: the answer completes, nothing missing or doubled, the agent ran once', async () => {
    const page = await browser!.context.newPage();
    await page.goto(demo!.url);
    await page.locator('#connection', { hasText: 'Idle' }).waitFor(WAIT);
    const question = 'What happens when the network drops?';
    await page.fill('#message', question);
    await page.click('#send');
    await page.waitForFunction("document.getElementById('answer-text').textContent.length > 20", undefined, WAIT);

    await page.click('#drop');
    const atDrop = await answerLength(page);
    await page.locator('#connection', { hasText: 'Offline' }).waitFor(WAIT);
    // While the page is offline the agent goes on writing tokens into the run.
    await page.waitForTimeout(400);
    expect(await answerLength(page)).toBe(atDrop);
    await page.locator('#connection', { hasText: 'Done' }).waitFor(WAIT);

    const answer = composeAnswer(question);
    expect(await page.textContent('#answer-text')).toBe(answer);
    expect(atDrop).toBeLessThan(answer.length);

    // The page's log: the server's lines for this question exactly once each, in order, plus the page's own note.
    const levels = await page.locator('#log li .level').allTextContents();
    const messages = await page.locator('#log li .message').allTextContents();
    const shown = levels.map((level, i) => ({ level, message: messages[i]! }));
    const serverLines = shown.filter((line) => line.level !== 'page').map((line) => line.message);
    const logged = demo!.records
      .filter((record: LogRecord) => record.level !== 'debug' && record.serverOnly !== true && String(record.message).length > 0)
      .map((record) => String(record.message));
    expect(serverLines).toEqual(logged);
    expect(serverLines).toContain('Answer complete');
    expect(new Set(serverLines).size).toBe(serverLines.length);
    expect(shown.filter((line) => line.level === 'page')).toHaveLength(1);
    // One run of the agent for the question, although two connections asked for it.
    expect(demo!.records.filter((record) => record.message === `Planning how to answer "${question}"`)).toHaveLength(1);
    expect(await page.textContent('#progress-label')).toBe('100%');
    expect(await page.isHidden('#error-banner')).toBe(true);
    await page.close();
  });
});
