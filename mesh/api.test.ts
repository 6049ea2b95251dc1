/**
 * The split between mesh/kube.ts (no Kubernetes client) and mesh/api.ts (client-node): errors of
 * the real client are still read right, and what a --peers-dir member imports loads nothing of
 * @kubernetes/client-node (about 85 MB of RSS and most of a second of CPU at start).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { apiMessage, httpStatus } from './kube.ts';

const root = join(import.meta.dirname, '..');

test('httpStatus and apiMessage read client-node errors without loading client-node themselves', () => {
  const err = new k8s.ApiException(403, 'Forbidden', JSON.stringify({ message: 'peers.aksmesh.io "node-b" is forbidden' }), {});
  assert.equal(httpStatus(err), 403);
  assert.equal(apiMessage(err), 'peers.aksmesh.io "node-b" is forbidden');
  assert.equal(apiMessage(new k8s.ApiException(500, 'x', 'not json', {})), 'HTTP 500');
  const network = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), { code: 'ECONNREFUSED' });
  assert.equal(httpStatus(network), 0, 'a network error has no HTTP status');
  assert.equal(apiMessage(network), 'connect ECONNREFUSED 127.0.0.1:6443');
});

function loadedBy(code: string): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'aks-mesh-modules-'));
  try {
    const out = join(dir, 'modules.txt');
    execFileSync(process.execPath, ['--import', join(root, 'bench/lib/loaded-modules.ts'), '--input-type=module', '-e', code], { cwd: root, env: { ...process.env, AKS_MESH_LOADED_MODULES: out } });
    return readFileSync(out, 'utf8').split('\n').filter(Boolean);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('what a --peers-dir member imports loads nothing of @kubernetes/client-node; kube mode does', () => {
  const dirMode = loadedBy(
    ["'./cli/commands/member.ts'", "'./native/index.ts'", "'./mesh/topology/index.ts'", "'./mesh/source/directory.ts'", "'./mesh/member.ts'", "'./mesh/metrics.ts'", "'./agent/agent.ts'", "'./gateway/gateway.ts'"]
      .map((m) => `await import(${m});`)
      .join(''),
  );
  assert.ok(dirMode.some((m) => m.endsWith('/mesh/member.ts')), 'the hook saw the member load');
  assert.deepEqual(dirMode.filter((m) => m.includes('@kubernetes/client-node')), []);
  const kubeMode = loadedBy("await import('./mesh/source/kube.ts'); await import('./mesh/api.ts');");
  assert.ok(kubeMode.some((m) => m.includes('@kubernetes/client-node')));
});
