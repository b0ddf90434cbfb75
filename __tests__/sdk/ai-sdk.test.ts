/**
 * The Vercel AI SDK's client against examples/ai-chat (streamText with a mock model, piped through res.sse.pipe())
 * and against a failing route, with the in-memory store.
 */
import { checkScenarios, runScenarios } from '../helpers/ai-sdk';

test('the AI SDK reads the example chat server: send, logs as data parts, resume after a drop, 204, stop, errors', async () => {
  const result = await runScenarios();
  console.log(`AI SDK scenarios (${result.store} store): ${JSON.stringify({ send: result.send.types, resumedDeltas: result.resume.deltasBeforeDrop })}`);
  checkScenarios(result);
});
