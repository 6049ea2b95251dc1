import assert from 'node:assert/strict';
import { test } from 'node:test';
import type * as k8s from '@kubernetes/client-node';
import { CLEANUP_CONTAINER, DONE_CONTAINER, UninstallError, cleanupDaemonSetFor, parseDuration } from './uninstall.ts';

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
