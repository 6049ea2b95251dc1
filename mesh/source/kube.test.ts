/**
 * KubeSource against an API server that never answers: stop() aborts the lists in flight at once
 * and nothing starts again afterwards. Fake: a TCP server that accepts connections and never
 * answers (a hung API server), which a real kube-apiserver will not do on demand. (A connection
 * still in its TLS handshake is closed by undici's own connect timeout, not by the abort: the
 * process-level bound is the agent's exit, see e2e/stop.test.ts.) A listener that throws does not
 * keep the others from hearing about changes.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { after, before, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { KubeSource } from './kube.ts';

let server: Server;
const sockets = new Set<Socket>();
let port = 0;
let accepted = 0;

before(async () => {
  server = createServer((s) => {
    sockets.add(s);
    accepted++;
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as { port: number }).port;
});
after(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((r) => server.close(r));
});

function kubeConfig(): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'hung', server: `https://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'not-a-real-token' }],
    contexts: [{ name: 'c', cluster: 'hung', user: 'u' }],
    currentContext: 'c',
  });
  return kc;
}

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(check(), what);
}

test('stop() aborts the lists in flight against an API server that never answers; nothing restarts after it', async () => {
  const errors: string[] = [];
  const log = { error: () => undefined, warn: (m: string, meta?: Record<string, unknown>) => void errors.push(`${m} ${JSON.stringify(meta)}`), info: () => undefined, debug: () => undefined };
  // A short backoff: were the aborted lists taken for failures, restarts would come within 100 ms.
  const source = new KubeSource(kubeConfig(), { backoffMs: 100, maxBackoffMs: 100, log });
  await source.start();
  await until('the three lists connected', () => accepted >= 3);
  const before = accepted;
  await source.stop();
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(source.synced(), false);
  assert.equal(accepted, before, 'no list or watch started after stop()');
  assert.deepEqual(errors, [], 'an abort at stop is not reported as an API server failure');
});

test('a listener that throws is logged, and the next listener still hears the change', async () => {
  const errors: string[] = [];
  const log = { error: (m: string, meta?: Record<string, unknown>) => void errors.push(`${m} ${JSON.stringify(meta)}`), warn: () => undefined, info: () => undefined, debug: () => undefined };
  const source = new KubeSource(kubeConfig(), { log });
  let heard = 0;
  source.onChange(() => {
    throw new Error('listener bug');
  });
  source.onChange(() => heard++);
  (source as unknown as { emit(): void }).emit();
  assert.equal(heard, 1);
  assert.match(errors[0] ?? '', /a change listener failed.*listener bug/);
  await source.stop();
});
