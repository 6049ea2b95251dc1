/**
 * The dashboard's server against a real kube-apiserver (sandbox/apiserver.ts): how often it rebuilds
 * and sends the view, and what happens to a connection whose upgrade it refused. The page's side is a
 * plain `ws` client on /ws, as the page's script opens it (the browser tests are in e2e/dashboard.test.ts).
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, mock, test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { TestCluster, kubeTestsUnavailable } from '../sandbox/apiserver.ts';
import { createPeer, installCrds } from '../sandbox/kube.ts';
import { generatePrivateKey, publicKeyOf } from '../native/index.ts';
import { WebSocket } from '../mesh/ws.ts';
import { VIEW_INTERVAL_MS, startDashboard } from './server.ts';
import type { Dashboard } from './server.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('aks-mesh dashboard server', { skip: kubeTestsUnavailable() || false, timeout: 180_000 }, () => {
  let cluster: TestCluster;
  let dash: Dashboard;
  let kc: KubeConfig;
  const suffix = Math.random().toString(36).slice(2, 7);

  before(async () => {
    cluster = await TestCluster.start();
    await installCrds(cluster);
    kc = cluster.kubeConfig();
    // Only the view's timer is driven by the test (ws and the informers use setTimeout, left real):
    // every view a page gets must come from a tick, none from an informer event.
    mock.timers.enable({ apis: ['setInterval'] });
    dash = await startDashboard({ kubeConfig: kc, host: '127.0.0.1', port: 0 });
  });
  after(async () => {
    mock.timers.reset();
    await dash?.close();
    await cluster?.stop();
  });

  test('a burst of API changes is sent to a page as one view per interval, never one per informer event (review #3: a busy mesh would rebuild the view tens of times a second)', async () => {
    const views: Array<{ members: Array<{ key: string }> }> = [];
    const page = new WebSocket(`${dash.url}ws`);
    page.on('message', (data) => {
      const msg = JSON.parse(data.toString()) as { type: string; view?: { members: Array<{ key: string }> } };
      if (msg.type === 'cluster' && msg.view) views.push(msg.view);
    });
    try {
      await new Promise<void>((resolve, reject) => {
        page.once('open', () => resolve());
        page.once('error', reject);
      });
      // The view as it stands, sent on connect.
      for (let i = 0; i < 50 && views.length === 0; i++) await sleep(100);
      assert.equal(views.length, 1, 'the current view on connect');
      const names = Array.from({ length: 20 }, (_, i) => `burst-${suffix}-${String(i).padStart(2, '0')}`);
      // Created one after another: each is its own watch event, in its own turn of the event loop.
      for (const [i, name] of names.entries()) {
        await createPeer(kc, name, { publicKey: publicKeyOf(generatePrivateKey()), endpoint: `198.51.100.${i + 1}:51820`, allowedIPs: [`10.250.${i}.0/24`] });
      }
      // The informers have these events by now (or soon): none of them may reach the page by itself.
      await sleep(2000);
      assert.equal(views.length, 1, `no view was sent between ticks, though ${names.length} Peers were created`);
      // Each tick sends at most one view, until the page has every new Peer.
      let ticks = 0;
      const has = (): boolean => names.every((n) => views.at(-1)?.members.some((m) => m.key === `Peer/${n}`));
      while (!has() && ticks < 120) {
        mock.timers.tick(VIEW_INTERVAL_MS);
        ticks++;
        await sleep(250);
      }
      assert.ok(has(), `the page got every new Peer after ${ticks} ticks: ${JSON.stringify(views.at(-1)?.members.map((m) => m.key))}`);
      assert.ok(views.length - 1 <= ticks, `${views.length - 1} views for ${ticks} ticks`);
    } finally {
      page.terminate();
    }
  });

  test('a refused upgrade is closed by the server even when the client never closes its side (review #11: such sockets were kept for good)', async () => {
    const { port } = new URL(dash.url);
    const cases = [
      ['a path other than /ws', `GET /nope HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`, /^HTTP\/1\.1 404 /],
      ['another Origin', `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nOrigin: http://evil.example\r\n`, /^HTTP\/1\.1 403 /],
    ] as const;
    for (const [what, head, status] of cases) {
      // allowHalfOpen: the client keeps its side open after the server's FIN, as a hostile one would.
      const socket = connect({ host: '127.0.0.1', port: Number(port), allowHalfOpen: true });
      let answer = '';
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => (answer += d));
      socket.on('error', () => undefined); // the reset below is what is expected
      const closed = new Promise<boolean>((resolve) => {
        socket.once('close', () => resolve(true));
        setTimeout(() => resolve(false), 20_000).unref();
      });
      socket.write(`${head}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
      // The server's FIN alone does not close our side; whether it still holds the socket shows when we
      // write: a socket it let go of answers with a reset, one it keeps takes the bytes silently.
      let done = false;
      void closed.then(() => (done = true));
      while (!done) {
        await sleep(1000); // setTimeout: the test drives only setInterval
        if (!done && socket.writable) socket.write('x');
      }
      const wasClosed = await closed;
      socket.destroy();
      assert.match(answer, status, `${what}: refused`);
      assert.ok(wasClosed, `${what}: the server closed the refused connection, though the client kept its side open`);
    }
  });

  test('the page has an icon: it links favicon.svg, which is served under the CSP, and /favicon.ico is an empty 204, never a 404 (audit12 #14: Chromium logged the 404 as an error on every load)', async () => {
    const page = await fetch(dash.url);
    assert.equal(page.status, 200);
    const html = await page.text();
    const href = /<link rel="icon" href="([^"]+)" type="image\/svg\+xml">/.exec(html)?.[1];
    assert.ok(href, html);
    const icon = await fetch(new URL(href, dash.url));
    assert.equal(icon.status, 200);
    assert.equal(icon.headers.get('content-type'), 'image/svg+xml');
    assert.match(icon.headers.get('content-security-policy') ?? '', /img-src 'self'/, 'an image from the page\'s own origin: allowed by its CSP');
    assert.match(await icon.text(), /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    const ico = await fetch(new URL('/favicon.ico', dash.url));
    assert.equal(ico.status, 204);
    assert.equal((await ico.arrayBuffer()).byteLength, 0);
    assert.equal((await fetch(new URL('/favicon.png', dash.url))).status, 404, 'other paths are still not found');
  });
});
