/**
 * The AI SDK scenarios (__tests__/sdk/ai-sdk-scenarios.mjs) run in a child process, since the SDK is an ES module
 * only, and the checks of what they observed: shared by the memory-store run in `npm test` and the Redis run in
 * `npm run test:integration`.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** What ai-sdk-scenarios.mjs reports of one scenario's stream. */
export interface Observed {
  types: string[];
  logs: Array<Record<string, unknown>>;
  errors: string[];
  readError?: { name: string; message: string };
}

export interface ScenarioResult {
  store: string;
  send: Observed & { text: string; expected: string; keptParts: string[] };
  resume: Observed & {
    deltasBeforeDrop: number;
    resumedNull: boolean;
    text: string;
    expected: string;
    afterEndNull: boolean;
    unknownChatNull: boolean;
  };
  secondMessage: { first: string; second: string; expected: string };
  stop: Observed & { stopped: boolean; text: string; full: string };
  midStreamError: Observed;
  withoutPreset: Observed;
}

/** Runs the scenarios (against the memory store, or a RedisStore on `redisPort`) and returns what they saw. */
export async function runScenarios(redisPort?: number): Promise<ScenarioResult> {
  const script = path.join(__dirname, '../sdk/ai-sdk-scenarios.mjs');
  const extra = redisPort === undefined ? [] : ['--redis-port', String(redisPort)];
  const { stdout } = await run(process.execPath, [script, ...extra], { cwd: path.join(__dirname, '../..'), timeout: 60_000 });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as ScenarioResult;
}

/** The assertions. */
export function checkScenarios(result: ScenarioResult): void {
  // 1. The assembled message is the model's text; logs came as transient data parts, not kept in the message.
  expect(result.send.readError).toBeUndefined();
  expect(result.send.text).toBe(result.send.expected);
  expect(result.send.types).toEqual(expect.arrayContaining(['start', 'text-start', 'text-delta', 'text-end', 'finish', 'data-log']));
  expect(result.send.logs).toEqual([
    expect.objectContaining({ level: 'info', message: 'Answering', chat: 'chat-1', messages: 1, transient: true }),
    expect.objectContaining({ level: 'info', message: 'Answer complete', chat: 'chat-1', transient: true }),
  ]);
  expect(result.send.keptParts).not.toContain('data-log');
  expect(result.send.errors).toEqual([]);

  // 2. After a dropped connection the SDK resumes the answer in progress from its start; then 204.
  expect(result.resume.deltasBeforeDrop).toBe(3);
  expect(result.resume.resumedNull).toBe(false);
  expect(result.resume.readError).toBeUndefined();
  expect(result.resume.text).toBe(result.resume.expected);
  expect(result.resume.afterEndNull).toBe(true);
  expect(result.resume.unknownChatNull).toBe(true);

  // 3. 'start' mode: the chat's second message gets its own answer.
  expect(result.secondMessage.second).toBe(result.secondMessage.expected);
  expect(result.secondMessage.first).not.toBe(result.secondMessage.second);

  // 4. Stop ends the answer early, without an error.
  expect(result.stop.stopped).toBe(true);
  expect(result.stop.readError).toBeUndefined();
  expect(result.stop.text.length).toBeLessThan(result.stop.full.length);
  expect(result.stop.full.startsWith(result.stop.text)).toBe(true);

  // 5. A mid-stream error is the SDK's own error part with the safe message, and no schema error.
  expect(result.midStreamError.readError).toBeUndefined();
  expect(result.midStreamError.errors).toEqual(['Internal Server Error']);
  expect(result.midStreamError.logs).toEqual([expect.objectContaining({ message: 'calling the search tool', transient: true })]);

  // 6. The control: without the preset, the log event fails the SDK's schema.
  expect(result.withoutPreset.readError?.name).toBe('AI_TypeValidationError');
}

