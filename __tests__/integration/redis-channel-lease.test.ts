/**
 * A broadcast channel on Redis outlives its instances: every instance that opens the channel renews its lease, and
 * a channel whose lease lapsed anyway (no instance held it for longer than the lease) is opened again, so pushes
 * go on and subscribers come back to it. Against a real redis-server, started on a free port by this test.
 *
 * Needs redis-server: `apt-get update && apt-get install -y redis-server`. Run with `npm run test:integration`.
 */
import express from 'express';
import type Redis from 'ioredis';
import { sseChannel, sseStream, type SseChannel } from '../../lib';
import { RedisStore } from '../../lib/store/redis';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';
import { delay, eventually, listen, openStream, type StreamClient, type TestServer } from '../helpers/sse-client';

const LEASE_KEY = (name: string): string => `sse:{channel:${name}}:lease`;

describe('a broadcast channel on Redis outlives its instances', () => {
  let redis: RedisServer;
  let client: Redis;
  let store: RedisStore;

  beforeAll(async () => {
    redis = await startRedisServer();
    client = redis.connect();
    store = new RedisStore({ client });
  });
  afterAll(async () => {
    await store?.close();
    await client?.quit();
    await redis?.stop();
  });

  /** A server whose /feed subscribes to `channel`, as an instance of an app would. */
  async function serve(channel: SseChannel): Promise<TestServer> {
    const app = express();
    app.get('/feed', sseStream({ done: '[DONE]', heartbeat: 0 }), (_req, res) => void res.sse.subscribe(channel));
    return listen(app);
  }

  async function subscribe(server: TestServer, channel: SseChannel, lastEventId?: string): Promise<StreamClient> {
    const before = channel.subscriberCount;
    const subscriber = await openStream(`${server.url}/feed`, { headers: lastEventId === undefined ? {} : { 'Last-Event-ID': lastEventId } });
    await eventually(() => channel.subscriberCount > before, 5000, 'the subscription');
    return subscriber;
  }

  test('an instance that opens an existing channel renews its lease', async () => {
    const first = sseChannel('deploys', { store });
    first.push('from the first instance');
    await eventually(async () => (await client.pttl(LEASE_KEY('deploys'))) > 0, 5000, 'the lease');
    await first.close(); // the first instance is redeployed
    await delay(50);
    const left = await client.pttl(LEASE_KEY('deploys'));
    const second = sseChannel('deploys', { store });
    await eventually(async () => (await client.pttl(LEASE_KEY('deploys'))) > left, 5000, 'the second instance to renew the lease');
    await second.close();
  });

  test('a channel whose lease lapsed is opened again: pushes go on and subscribers come back to it', async () => {
    const news = sseChannel('news', { store });
    const server = await serve(news);
    try {
      const first = await subscribe(server, news);
      expect(news.push('one')).toBe(true);
      await first.waitForCount(1);
      // What a lease left unrenewed for 0.6 × lease does.
      await client.del(LEASE_KEY('news'));
      await first.ended;
      const [one, error] = first.events;
      expect(one!.data).toBe('one');
      expect(JSON.parse(error!.data)).toEqual({ type: 'error', message: 'The stream is no longer available' });
      expect(first.events).toHaveLength(2); // without [DONE], so EventSource comes back

      const back = await subscribe(server, news, one!.id!);
      expect(news.push('two')).toBe(true);
      expect(news.push('three')).toBe(true);
      await back.waitForCount(2);
      expect(back.events.map((event) => event.data)).toEqual(['two', 'three']);
      expect(back.events[0]!.id!.split('.')[0]).not.toBe(one!.id!.split('.')[0]);
      await expect(client.pttl(LEASE_KEY('news'))).resolves.toBeGreaterThan(0);
      await expect(client.hget('sse:{channel:news}:run', 'ended')).resolves.toBeNull();
      back.abort();
    } finally {
      await news.close();
      await server.close();
    }
  });
});
