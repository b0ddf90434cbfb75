/**
 * The functions with the most self time in a .cpuprofile (from `npm run bench -- --profile`):
 *
 *   node bench/profile-top.mjs bench/profiles/stream.lib.cpuprofile [count]
 */
import { readFileSync } from 'node:fs';

const [file, count = '25'] = process.argv.slice(2);
if (file === undefined) throw new Error('usage: profile-top.mjs FILE.cpuprofile [count]');
const { nodes, samples, timeDeltas } = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(nodes.map((node) => [node.id, node]));
const self = new Map();
let total = 0;
samples.forEach((id, k) => {
  const { functionName, url, lineNumber } = byId.get(id).callFrame;
  const where = url ? ` ${url.replace(/^.*\/node_modules\//, '').replace(/^file:\/\/.*\/(bench|dist)\//, '$1/')}:${lineNumber + 1}` : '';
  const key = `${functionName || '(anonymous)'}${where}`;
  self.set(key, (self.get(key) ?? 0) + timeDeltas[k]);
  total += timeDeltas[k];
});
for (const [key, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(count))) {
  console.log(`${((us / total) * 100).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(6)} ms  ${key}`);
}
