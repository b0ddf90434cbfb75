import http from 'node:http';
import express from 'express';
import request from 'supertest';
import { sseStream } from '../lib';
import { listen, openStream, type TestServer } from './helpers/sse-client';

describe('response headers', () => {
  let server: TestServer;
  let openResponse: express.Response | undefined;

  beforeAll(async () => {
    const app = express();
    app.get('/events', sseStream({ headers: { 'X-Custom': 'yes' } }), (_req, res) => {
      // The route pushes nothing and waits for the test: only flushed headers can reach the client now.
      openResponse = res;
    });
    app.get('/plain', sseStream(), (_req, res) => void res.sse.close());
    server = await listen(app);
  });
  afterAll(() => server.close());

  it('sends status 200 and the event-stream headers', async () => {
    const response = await request(server.url).get('/plain');
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(response.headers['cache-control']).toBe('no-cache, no-transform');
    expect(response.headers['x-accel-buffering']).toBe('no');
    // supertest asks for `Connection: close`, and gets it.
    expect(response.headers['connection']).toBe('close');
  });

  it('sends Connection: keep-alive to an HTTP/1.1 client that keeps its connection', async () => {
    const agent = new http.Agent({ keepAlive: true });
    const headers = await new Promise<http.IncomingHttpHeaders>((resolve, reject) => {
      http
        .get(`${server.url}/plain`, { agent }, (response) => {
          response.resume();
          resolve(response.headers);
        })
        .on('error', reject);
    });
    agent.destroy();
    expect(headers['connection']).toBe('keep-alive');
  });

  it('flushes the headers before the route pushes anything, with extra headers applied', async () => {
    const client = await openStream(`${server.url}/events`);
    expect(client.status).toBe(200);
    expect(client.headers['x-custom']).toBe('yes');
    expect(client.raw()).toBe('');
    expect(openResponse?.sse.closed).toBe(false);
    await openResponse?.sse.close();
    await client.ended;
  });
});
