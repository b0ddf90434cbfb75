'use strict';
/**
 * A simulated AI agent: plan -> search -> draft -> answer.
 *
 * Nothing here sees `req` or `res`. Progress goes to the client through `currentStream()`, the agent's own
 * `logger.info()` calls reach the same client through `SseTransport`, and the only thing the route hands over is the
 * stream's `AbortSignal`, so every wait stops the moment the browser goes away.
 */
const { setTimeout: sleep } = require('node:timers/promises');
const { currentStream } = require('express-sse-context');
const { logger: appLogger } = require('./logger');

const STEPS = ['plan', 'search', 'draft', 'answer'];
const SOURCES = ['docs', 'web', 'notes'];

/** Sends an event to the browser of the request this code is running for. Returns false once that stream closed. */
function emit(event) {
  const stream = currentStream();
  return stream !== undefined && stream.push(event);
}

/** `{type:"status", step, progress}`: progress is the share of steps already finished, 100 when all are done. */
function announce(step) {
  const progress = step === 'done' ? 100 : Math.round((STEPS.indexOf(step) / STEPS.length) * 100);
  emit({ type: 'status', step, progress });
}

/** The (canned) answer, echoing the question. */
function composeAnswer(message) {
  return (
    `You asked: "${message}". ` +
    'This answer is streamed one token at a time over the same Server-Sent Events response that carried the ' +
    "agent's progress and logs. The agent code never saw req or res: it pushed its status through currentStream(), " +
    'and its ordinary winston logger.info() calls reached this tab, and only this tab, through SseTransport.'
  );
}

/** Splits text into tokens that join back into it exactly: each word with the whitespace after it. */
function tokenize(text) {
  return text.match(/\s*\S+\s*/gy) ?? [];
}

/**
 * @param {object} [options]
 * @param {import('winston').Logger} [options.logger] defaults to the app's module-level logger
 * @param {number} [options.stepDelayMs=450] simulated work per step
 * @param {number} [options.tokenDelayMs=45] pause between answer tokens
 */
function createAgent({ logger = appLogger, stepDelayMs = 450, tokenDelayMs = 45 } = {}) {
  const searchLog = logger.child({ tool: 'search' });

  async function plan(message, signal) {
    logger.info(`Planning how to answer "${message}"`);
    await sleep(stepDelayMs, undefined, { signal });
    logger.info('Plan ready: search three sources, draft, then answer', { steps: STEPS.length });
  }

  async function search(message, signal) {
    let found = 0;
    for (const source of SOURCES) {
      signal.throwIfAborted();
      searchLog.info(`Searching ${source} for "${message}"`, { source });
      await sleep(stepDelayMs / 2, undefined, { signal });
      if (message.toLowerCase() === 'fail' && source === 'web') {
        // The page gets a generic error event; the details stay in the server's log.
        searchLog.error(`The ${source} search tool crashed`, { source });
        throw new Error(`search tool crashed: ECONNRESET from 10.0.0.7:9200 (simulated because the message was "fail")`);
      }
      const hits = 2 + ((message.length + source.length) % 4);
      found += hits;
      searchLog.info(`Found ${hits} results in ${source}`, { source, hits });
    }
    return found;
  }

  async function draft(message, found, signal) {
    logger.info(`Drafting an answer from ${found} results`);
    await sleep(stepDelayMs, undefined, { signal });
    const answer = composeAnswer(message);
    logger.info('Draft ready', { words: answer.split(/\s+/).length });
    return answer;
  }

  async function streamAnswer(answer, progress, signal) {
    const tokens = tokenize(answer);
    progress.tokensTotal = tokens.length;
    logger.info(`Streaming the answer (${tokens.length} tokens)`);
    for (const text of tokens) {
      if (signal.aborted) break;
      if (!emit({ type: 'token', text })) break;
      progress.tokensSent += 1;
      await sleep(tokenDelayMs, undefined, { signal });
    }
    signal.throwIfAborted();
    logger.info('Answer complete', { tokens: progress.tokensSent });
  }

  /**
   * Runs the agent for one question, sending status, log and token events to the current stream.
   *
   * @param {string} message the user's question
   * @param {{ signal: AbortSignal }} options the stream's signal: aborted when the browser goes away
   * @returns {Promise<string | null>} the full answer, or `null` when the client stopped the run
   */
  async function run(message, { signal }) {
    const progress = { step: 'plan', tokensSent: 0, tokensTotal: 0 };
    try {
      announce('plan');
      await plan(message, signal);

      progress.step = 'search';
      announce('search');
      const found = await search(message, signal);

      progress.step = 'draft';
      announce('draft');
      const answer = await draft(message, found, signal);

      progress.step = 'answer';
      announce('answer');
      await streamAnswer(answer, progress, signal);

      announce('done');
      return answer;
    } catch (error) {
      if (!signal.aborted) throw error;
      // The stream is closed, so this record reaches the server's console (and other transports) but no browser.
      logger.warn(`Agent stopped during "${progress.step}": ${signal.reason?.message ?? 'aborted'}`, {
        agent: 'stopped',
        step: progress.step,
        question: message,
        tokensSent: progress.tokensSent,
        tokensTotal: progress.tokensTotal,
      });
      return null;
    }
  }

  return { run };
}

module.exports = { createAgent, composeAnswer, tokenize, STEPS };
