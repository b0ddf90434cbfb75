/**
 * The demo's agent console in real Chromium, through the browser's own EventSource: what a person sees.
 * Needs /usr/bin/chromium (`apt-get update && apt-get install -y chromium`); run with `npm run test:browser`.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { eventually } from '../helpers/sse-client';
import { launchChromium, loadDemo, OUTPUT_DIR, startDemo, type LogRecord, type RunningDemo } from './harness';

/** Generous guard for anything the page waits for; the runs themselves take well under a second. */
const WAIT = { timeout: 30_000 };

const { composeAnswer } = loadDemo();

/** Counts the text nodes the page appends to the answer: one per token when it is typed out live. */
const OBSERVE_ANSWER = `(() => {
  window.__answerAppends = 0;
  new MutationObserver((records) => {
    for (const record of records) window.__answerAppends += record.addedNodes.length;
  }).observe(document.getElementById('answer-text'), { childList: true });
})()`;

async function open(page: Page, demo: RunningDemo): Promise<void> {
  await page.goto(demo.url);
  await page.locator('#connection', { hasText: 'Idle' }).waitFor(WAIT);
}

async function ask(page: Page, message: string): Promise<void> {
  await page.fill('#message', message);
  await page.click('#send');
}

/** Waits until the status pill shows `label` ("Done", "Stopped", "Failed"). */
async function until(page: Page, label: string): Promise<void> {
  await page.locator('#connection', { hasText: label }).waitFor(WAIT);
}

const logMessages = (page: Page): Promise<string[]> => page.locator('#log li .message').allTextContents();

function screenshot(page: Page, name: string): Promise<Buffer> {
  mkdirSync(OUTPUT_DIR, { recursive: true });
  return page.screenshot({ path: path.join(OUTPUT_DIR, name), fullPage: true, animations: 'disabled', caret: 'hide' });
}

describe('agent console in Chromium', () => {
  let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
  const demos: RunningDemo[] = [];

  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await Promise.all(demos.map((demo) => demo.close()));
    await browser?.close();
  });

  async function newDemo(options: { stepDelayMs: number; tokenDelayMs: number }): Promise<RunningDemo> {
    const demo = await startDemo(options);
    demos.push(demo);
    return demo;
  }
  const newPage = (): Promise<Page> => browser!.context.newPage();

  it('Send streams the steps to 100%, the agent\'s log lines and the answer, token by token', async () => {
    const demo = await newDemo({ stepDelayMs: 5, tokenDelayMs: 5 });
    const page = await newPage();
    await open(page, demo);
    const question = 'How do Server-Sent Events work?';
    await page.fill('#message', question);
    await page.evaluate(OBSERVE_ANSWER);
    await page.click('#send');
    await until(page, 'Done');

    expect(await page.textContent('#progress-label')).toBe('100%');
    expect(await page.getAttribute('#progress', 'aria-valuenow')).toBe('100');
    expect(await page.locator('#steps li.done').count()).toBe(4);

    const lines = await logMessages(page);
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expect(lines).toContain(`Planning how to answer "${question}"`);
    expect(lines).toContain('Answer complete');
    expect(await page.locator('#log-count').textContent()).toBe(String(lines.length));

    const answer = composeAnswer(question);
    expect(await page.textContent('#answer-text')).toBe(answer);
    expect(await page.isVisible('#answer-text')).toBe(true);
    // Typed out as the tokens arrived: one appended text node per token (then one for the final response).
    const tokens = answer.trim().split(/\s+/).length;
    expect(await page.evaluate('window.__answerAppends')).toBeGreaterThanOrEqual(tokens);

    expect(await page.isHidden('#error-banner')).toBe(true);
    expect(await page.isDisabled('#stop')).toBe(true);
    await screenshot(page, 'agent-console.png');
    await page.close();
  });

  it('Stop halts the stream: no more tokens reach the page, and the server-side signal aborts the agent', async () => {
    // Slow tokens, so Stop lands in the middle of the answer.
    const demo = await newDemo({ stepDelayMs: 5, tokenDelayMs: 400 });
    const page = await newPage();
    await open(page, demo);
    const question = 'a question to stop';
    await ask(page, question);
    await page.waitForFunction("document.getElementById('answer-text').textContent.length > 0", undefined, WAIT);
    await page.click('#stop');
    const atStop = (await page.textContent('#answer-text')) ?? '';
    await until(page, 'Stopped');

    // The server's signal aborted and the agent logged that it stopped, mid-answer.
    const isStop = (r: LogRecord): boolean => r.agent === 'stopped' && r.question === question;
    await eventually(() => demo.records.some(isStop), 15_000, 'the agent to log that it stopped');
    const stop = demo.records.find(isStop)!;
    // The page's question is a resumable run, which a disconnect does not stop: Stop calls abortRun() on the server.
    expect(stop.message).toBe('Agent stopped during "answer": The run was aborted');
    expect(stop.tokensSent as number).toBeLessThan(stop.tokensTotal as number);

    // Now that the server has stopped producing, the page still shows exactly what it had when Stop was clicked.
    expect(atStop.length).toBeGreaterThan(0);
    expect(composeAnswer(question).startsWith(atStop)).toBe(true);
    expect(atStop.length).toBeLessThan(composeAnswer(question).length);
    expect(await page.textContent('#answer-text')).toBe(atStop);
    const lines = await logMessages(page);
    expect(lines.at(-1)).toBe('You stopped the agent. The server aborts its work.');
    expect(lines).not.toContain('Answer complete');
    expect(await page.textContent('#progress-label')).not.toBe('100%');
    expect(await page.isEnabled('#send')).toBe(true);
    await screenshot(page, 'agent-console-stopped.png');
    await page.close();
  });

  it('"fail" shows the error banner with a safe message, and the next question works', async () => {
    const demo = await newDemo({ stepDelayMs: 5, tokenDelayMs: 2 });
    const page = await newPage();
    await open(page, demo);
    await ask(page, 'fail');
    await page.locator('#error-banner').waitFor({ state: 'visible', ...WAIT });
    await until(page, 'Failed');

    expect(await page.textContent('#error-message')).toBe('Internal Server Error');
    expect(await page.innerText('#error-banner')).toContain('The agent failed.');
    expect(await logMessages(page)).toContain('The web search tool crashed');
    expect(await page.textContent('#answer-text')).toBe('');
    // The crash details stayed in the server's log.
    expect(await page.innerText('body')).not.toMatch(/10\.0\.0\.7|ECONNRESET/);
    expect(demo.records.some((r) => r.serverOnly === true && String(r.message).includes('10.0.0.7'))).toBe(true);
    await screenshot(page, 'agent-console-error.png');

    await ask(page, 'working again');
    await until(page, 'Done');
    expect(await page.isHidden('#error-banner')).toBe(true);
    expect(await page.textContent('#answer-text')).toBe(composeAnswer('working again'));
    await page.close();
  });

  it('two tabs running at once each show only their own logs', async () => {
    // Slower steps, so the two runs overlap.
    const demo = await newDemo({ stepDelayMs: 300, tokenDelayMs: 2 });
    const [tabA, tabB] = await Promise.all([newPage(), newPage()]);
    await Promise.all([open(tabA, demo), open(tabB, demo)]);
    // One tab after the other, as a person would. (Bringing the tab to the front first matters: in headless
    // Chromium a click in a window that is not in front can wait about a second for the next frame.)
    await tabA.bringToFront();
    await ask(tabA, 'alpha-otters');
    await tabB.bringToFront();
    await ask(tabB, 'bravo-badgers');
    await Promise.all([until(tabA, 'Done'), until(tabB, 'Done')]);

    // They really ran at once: each started before the other finished searching (the test guards its own premise).
    const at = (message: string): number => demo.records.findIndex((r) => r.message === message);
    expect(at('Planning how to answer "bravo-badgers"')).toBeLessThan(at('Searching notes for "alpha-otters"'));
    expect(at('Planning how to answer "alpha-otters"')).toBeLessThan(at('Searching notes for "bravo-badgers"'));

    const linesA = await logMessages(tabA);
    const linesB = await logMessages(tabB);
    expect(linesA).toContain('Planning how to answer "alpha-otters"');
    expect(linesB).toContain('Planning how to answer "bravo-badgers"');
    expect(linesA.filter((line) => line.includes('bravo'))).toEqual([]);
    expect(linesB.filter((line) => line.includes('alpha'))).toEqual([]);
    // Each tab got every line its own run sent, and the same number: nothing lost, nothing extra.
    expect(linesA.length).toBe(linesB.length);
    expect(await tabA.textContent('#answer-text')).toBe(composeAnswer('alpha-otters'));
    expect(await tabB.textContent('#answer-text')).toBe(composeAnswer('bravo-badgers'));
    await Promise.all([tabA.close(), tabB.close()]);
  });
});
