import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { AGENT_SELECTOR_ANNOTATION, CLEANUP_CONTAINER, DONE_CONTAINER, PARKED_LABEL, UninstallError, cleanupDaemonSetFor, isParked, parseDuration, retryTransient } from './uninstall.ts';

test('parseDuration reads helm-style durations and plain seconds; anything else is NaN', () => {
  for (const [text, ms] of [['240s', 240_000], ['4m', 240_000], ['1m30s', 90_000], ['1h', 3_600_000], ['90', 90_000]] as const) assert.equal(parseDuration(text), ms, text);
  for (const bad of ['', 'soon', '4 m', '-5s', '1.5m', 's']) assert.ok(Number.isNaN(parseDuration(bad)), bad);
});

const agent = (containers: k8s.V1Container[], volumes: k8s.V1Volume[] = []): k8s.V1DaemonSet => ({
  metadata: { name: 'aks-mesh-agent', namespace: 'mesh', uid: 'u1', labels: { 'app.kubernetes.io/name': 'aks-mesh', 'app.kubernetes.io/component': 'agent' } },
  spec: {
    selector: { matchLabels: { 'app.kubernetes.io/name': 'aks-mesh', 'app.kubernetes.io/component': 'agent' } },
    template: { metadata: { labels: { 'app.kubernetes.io/name': 'aks-mesh', 'app.kubernetes.io/component': 'agent' } }, spec: { serviceAccountName: 'aks-mesh-agent', containers, volumes } },
  },
});

test('the cleanup DaemonSet runs the agent container\'s command with --cleanup, with only the volumes it mounts, on every node', () => {
  const ds = cleanupDaemonSetFor(
    agent(
      [
        { name: 'wireguard-go', image: 'img:1', command: ['wireguard-go'], volumeMounts: [{ name: 'tun', mountPath: '/dev/net/tun' }] },
        { name: 'agent', image: 'img:1', command: ['./agent'], env: [{ name: 'AKS_MESH_TABLE', value: '7' }], volumeMounts: [{ name: 'keys', mountPath: '/var/lib/aks-mesh' }] },
      ],
      [{ name: 'tun', hostPath: { path: '/dev/net/tun' } }, { name: 'keys', hostPath: { path: '/var/lib/aks-mesh' } }],
    ),
    'aks-mesh-agent-cleanup',
  );
  const pod = ds.spec?.template.spec as k8s.V1PodSpec;
  const [init] = pod.initContainers ?? [];
  assert.deepEqual([init.name, init.command, init.args, init.env], [CLEANUP_CONTAINER, ['./agent'], ['--cleanup'], [{ name: 'AKS_MESH_TABLE', value: '7' }]]);
  assert.deepEqual(pod.volumes?.map((v) => v.name), ['keys']);
  assert.deepEqual(pod.containers.map((c) => c.name), [DONE_CONTAINER]);
  assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
  // Its own selector: never the agent's pods.
  assert.equal(ds.spec?.selector.matchLabels?.['app.kubernetes.io/component'], 'cleanup');
  assert.equal(ds.spec?.template.metadata?.labels?.['app.kubernetes.io/component'], 'cleanup');
});

test('an agent DaemonSet without an agent container is refused naming the field', () => {
  assert.throws(
    () => cleanupDaemonSetFor(agent([{ name: 'other', image: 'x', args: ['gateway'] }]), 'c'),
    (err: unknown) => err instanceof UninstallError && /DaemonSet mesh\/aks-mesh-agent: spec\.template\.spec\.containers has no agent container/.test(err.message),
  );
});

test('parked, the cleanup DaemonSet asks for a node label no node has, on top of the agent\'s nodeSelector; it records the agent\'s selector', () => {
  const a = agent([{ name: 'agent', image: 'img:1', args: ['agent'] }]);
  (a.spec?.template.spec as k8s.V1PodSpec).nodeSelector = { 'kubernetes.io/os': 'linux' };
  const parked = cleanupDaemonSetFor(a, 'c', { parked: true });
  assert.deepEqual(parked.spec?.template.spec?.nodeSelector, { 'kubernetes.io/os': 'linux', [PARKED_LABEL]: 'true' });
  assert.equal(isParked(parked), true);
  assert.deepEqual(JSON.parse(parked.metadata?.annotations?.[AGENT_SELECTOR_ANNOTATION] ?? ''), a.spec?.selector.matchLabels);
  const running = cleanupDaemonSetFor(a, 'c');
  assert.deepEqual(running.spec?.template.spec?.nodeSelector, { 'kubernetes.io/os': 'linux' });
  assert.equal(isParked(running), false);
});

// The client's own error class, as the API server's answers arrive: a 429 or 503 the real API server
// gives only under load, which a test cannot cause on purpose (e2e/uninstall-hook.test.ts stops the
// real one for the no-answer case).
const answer = (code: number) => new k8s.ApiException(code, `HTTP ${code}`, { message: `status ${code}` }, {});

test('retryTransient tries again on 429, 5xx and no answer, until the deadline; any other status at once', async () => {
  for (const transient of [answer(429), answer(500), answer(502), answer(503), answer(504), Object.assign(new Error('fetch failed'), { cause: { code: 'ECONNRESET' } })]) {
    let calls = 0;
    const got = await retryTransient('x', async () => (++calls < 3 ? Promise.reject(transient) : 'ok'), { deadline: Date.now() + 10_000, firstPauseMs: 1 });
    assert.deepEqual([got, calls], ['ok', 3], transient.message);
  }
  for (const final of [400, 401, 403, 404, 409, 422]) {
    let calls = 0;
    await assert.rejects(retryTransient('x', async () => (calls++, Promise.reject(answer(final))), { deadline: Date.now() + 10_000, firstPauseMs: 1 }), (err: unknown) => err instanceof k8s.ApiException && err.code === final);
    assert.equal(calls, 1, `HTTP ${final}: one call`);
  }
  // Past the deadline the transient error itself is thrown.
  let calls = 0;
  await assert.rejects(retryTransient('x', async () => (calls++, Promise.reject(answer(503))), { deadline: Date.now() + 30, firstPauseMs: 10 }), (err: unknown) => err instanceof k8s.ApiException && err.code === 503);
  assert.ok(calls >= 1);
});
