/** A raw-socket client for the stall tests: one that sends its request and then never reads. */
import net from 'node:net';

/** A client that sends its request and reads nothing, ever: the kernel's buffers fill, then the server's. */
export function stalledClient(url: string): Promise<{ socket: net.Socket; closed: Promise<void> }> {
  const { hostname, port, pathname } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: hostname, port: Number(port) }, () => {
      socket.pause();
      socket.write(`GET ${pathname} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nAccept: text/event-stream\r\n\r\n`);
      const closed = new Promise<void>((done) => socket.once('close', () => done()));
      resolve({ socket, closed });
    });
    socket.on('error', () => undefined);
    socket.once('error', reject);
  });
}

/**
 * A client that reads slowly but steadily: at most `bytes` every `everyMs` ms, from the first byte on. `received()`
 * counts what it read; `stop()` closes it.
 */
export async function steadyReader(
  url: string,
  bytes: number,
  everyMs: number,
): Promise<{ received: () => number; text: () => string; closed: Promise<void>; stop: () => void }> {
  const { socket, closed } = await stalledClient(url);
  const chunks: Buffer[] = [];
  let received = 0;
  const timer = setInterval(() => {
    let budget = bytes;
    while (budget > 0) {
      const chunk = socket.read(Math.min(budget, socket.readableLength || budget)) as Buffer | null;
      if (chunk === null) break;
      chunks.push(chunk);
      received += chunk.length;
      budget -= chunk.length;
    }
  }, everyMs);
  void closed.then(() => clearInterval(timer));
  return {
    received: () => received,
    text: () => Buffer.concat(chunks).toString('utf8'),
    closed,
    stop: () => {
      clearInterval(timer);
      socket.destroy();
    },
  };
}
