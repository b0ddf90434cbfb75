/**
 * What `stallTimeout` must exceed: for clients that read slowly but steadily, the longest time the server sees none
 * of its bytes accepted while data waits (a write completes only once the kernel took all of it, and the kernel
 * takes more only as the client's receive window reopens). One node:http server and one raw-socket reader per rate,
 * all at once, for `seconds` (default 30); the writer keeps the socket full throughout.
 *
 *   node bench/stall-window.mjs [seconds]
 */
import http from 'node:http';
import net from 'node:net';

const seconds = Number(process.argv[2] ?? 30);
const RATES_KIB = [4, 16, 64, 160, 320, 640, 1280, 2560];
/** A reader takes its share every READ_MS milliseconds. */
const READ_MS = 50;
const FRAME = `data: ${'q'.repeat(16 * 1024)}\n\n`;

function measure(rateKiB) {
  return new Promise((resolve) => {
    let reader;
    const server = http.createServer(async (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      let written = 0;
      let lastAccepted = 0;
      let lastProgress = performance.now();
      let longest = 0;
      const started = lastProgress;
      const sampler = setInterval(() => {
        const now = performance.now();
        const accepted = written - res.writableLength;
        if (accepted > lastAccepted) {
          longest = Math.max(longest, now - lastProgress);
          lastProgress = now;
          lastAccepted = accepted;
        }
        if (now - started < seconds * 1000) return;
        clearInterval(sampler);
        longest = Math.max(longest, now - lastProgress);
        reader.destroy();
        server.close();
        resolve({ rateKiB, longest, accepted });
      }, 5);
      let closed = false;
      let wake = () => undefined;
      res.once('close', () => {
        closed = true;
        wake();
      });
      while (!closed) {
        written += FRAME.length;
        if (!res.write(FRAME)) await new Promise((done) => res.once('drain', (wake = done)));
      }
    });
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      reader = net.connect(port, '127.0.0.1', () => {
        reader.pause();
        reader.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
        const share = Math.max(1, Math.round((rateKiB * 1024 * READ_MS) / 1000));
        const timer = setInterval(() => {
          for (let budget = share; budget > 0; ) {
            const chunk = reader.read(Math.min(budget, reader.readableLength || budget));
            if (chunk === null) break;
            budget -= chunk.length;
          }
        }, READ_MS);
        reader.once('close', () => clearInterval(timer));
      });
      reader.on('error', () => undefined);
    });
  });
}

const results = await Promise.all(RATES_KIB.map(measure));
console.log(`Steady readers for ${seconds} s, Node ${process.version}, ${process.platform}:`);
console.log('| read rate | longest wait for progress | rate × wait |');
console.log('| ---: | ---: | ---: |');
for (const { rateKiB, longest } of results) {
  console.log(`| ${rateKiB} KiB/s | ${(longest / 1000).toFixed(2)} s | ${((rateKiB * longest) / 1000 / 1024).toFixed(2)} MiB |`);
}
