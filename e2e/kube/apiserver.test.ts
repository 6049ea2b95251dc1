/**
 * The kube-apiserver harness on the real binaries: start to /readyz, token users and RBAC, a
 * restart of the API server alone (etcd keeps the data, clients reconnect to the same URL), a
 * custom-resource write (where a kube-apiserver 1.20 built with Go >= 1.18 and the old vendored
 * reflect2 crashes), parallel clusters, and cleanup: by stop(), by the exit hooks on SIGTERM, and by
 * the parent-death signal when the test process is SIGKILLed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { toolsUnavailable } from '../../sandbox/sandbox.ts';
import { PORT_DIR, TestCluster, isRunning, kubeTestsUnavailable } from '../../sandbox/apiserver.ts';

const skip = kubeTestsUnavailable() ?? false;

describe('TestCluster', { skip }, () => {
  let cluster: TestCluster;
  let core: k8s.CoreV1Api;
  const ns = `am-${process.pid}`;

  before(async () => {
    cluster = await TestCluster.start({ extraIps: ['198.18.0.1'], users: [{ name: 'nobody' }, { name: 'viewer', groups: ['mesh:viewers'] }] });
    core = cluster.kubeConfig().makeApiClient(k8s.CoreV1Api);
  });
  after(() => cluster?.stop());

  test('starts, /readyz answers ok over TLS checked against the cluster CA', async (t) => {
    const { timings } = cluster;
    t.diagnostic(
      `startup: certs ${ms(timings.certsMs)}, etcd ${ms(timings.etcdMs)}, kube-apiserver to /readyz ${ms(timings.apiServerMs)}, total ${ms(timings.totalMs)}`,
    );
    assert.match(cluster.server, /^https:\/\/127\.0\.0\.1:\d+$/);
    const ready = await httpsGet(`${cluster.server}/readyz`, cluster.caPem, cluster.token('admin'));
    assert.deepEqual(ready, { status: 200, body: 'ok' });
    const san = new X509Certificate(readFileSync(`${cluster.dir}/apiserver.crt`)).subjectAltName ?? '';
    for (const ip of ['127.0.0.1', '10.0.0.1', '198.18.0.1']) assert.ok(san.includes(`IP Address:${ip}`), san);
    assert.ok(isRunning(cluster.etcdPid as number));
    assert.ok(isRunning(cluster.apiServerPid as number));
  });

  test('the admin creates a Namespace and a ConfigMap through client-node', async () => {
    await core.createNamespace({ body: { metadata: { name: ns } } });
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'probe' }, data: { hello: 'world' } } });
    const cm = await core.readNamespacedConfigMap({ namespace: ns, name: 'probe' });
    assert.deepEqual(cm.data, { hello: 'world' });
  });

  test('a user without RBAC bindings is authenticated but forbidden (403) to list nodes', async () => {
    const nobody = cluster.kubeConfig('nobody').makeApiClient(k8s.CoreV1Api);
    await assert.rejects(nobody.listNode(), (err: unknown) => err instanceof k8s.ApiException && err.code === 403);
    const bad = new k8s.KubeConfig();
    bad.loadFromOptions({
      clusters: [{ name: 'c', server: cluster.server, caData: Buffer.from(cluster.caPem).toString('base64'), skipTLSVerify: false }],
      users: [{ name: 'u', token: 'not-a-token' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    await assert.rejects(bad.makeApiClient(k8s.CoreV1Api).listNode(), (err: unknown) => err instanceof k8s.ApiException && err.code === 401);
  });

  test('kubectl runs against the cluster as any user', { skip: toolsUnavailable(['kubectl']) ?? false }, async () => {
    const admin = await cluster.kubectl(['get', 'configmap', 'probe', '-n', ns, '-o', 'jsonpath={.data.hello}']);
    assert.deepEqual(admin, { code: 0, stdout: 'world', stderr: '' });
    const applied = await cluster.kubectl(['apply', '-f', '-'], {
      input: `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-stdin, namespace: ${ns}}\ndata: {a: b}\n`,
    });
    assert.equal(applied.code, 0, applied.stderr);
    const viewer = await cluster.kubectl(['get', 'nodes'], { user: 'viewer' });
    assert.notEqual(viewer.code, 0);
    assert.match(viewer.stderr, /forbidden/i);
    assert.match(viewer.stderr, /"viewer"/);
  });

  test('a user added later authenticates (the API server restarts on the same port)', async () => {
    const port = cluster.port;
    await cluster.addUser('late', ['mesh:late']);
    assert.equal(cluster.port, port);
    const late = cluster.kubeConfig('late').makeApiClient(k8s.AuthorizationV1Api);
    const review = await late.createSelfSubjectAccessReview({
      body: { spec: { resourceAttributes: { verb: 'list', resource: 'nodes' } } },
    });
    assert.equal(review.status?.allowed, false);
  });

  test('a restart of the API server alone keeps the data; the same KubeConfig reconnects', async () => {
    const port = cluster.port;
    const etcdPid = cluster.etcdPid;
    const oldPid = cluster.apiServerPid as number;
    await cluster.stopApiServer();
    assert.equal(isRunning(oldPid), false);
    assert.equal(cluster.apiServerPid, undefined);
    await assert.rejects(core.readNamespacedConfigMap({ namespace: ns, name: 'probe' }));
    await cluster.startApiServer();
    assert.equal(cluster.port, port);
    assert.equal(cluster.etcdPid, etcdPid);
    assert.notEqual(cluster.apiServerPid, oldPid);
    const cm = await core.readNamespacedConfigMap({ namespace: ns, name: 'probe' });
    assert.deepEqual(cm.data, { hello: 'world' });
  });

  test('a custom resource can be defined and written (the Go >= 1.18 crash point)', async () => {
    const crds = cluster.kubeConfig().makeApiClient(k8s.ApiextensionsV1Api);
    const objects = cluster.kubeConfig().makeApiClient(k8s.CustomObjectsApi);
    const group = 'test.aks-mesh.io';
    await crds.createCustomResourceDefinition({
      body: {
        metadata: { name: `widgets.${group}` },
        spec: {
          group,
          scope: 'Namespaced',
          names: { plural: 'widgets', singular: 'widget', kind: 'Widget' },
          versions: [
            {
              name: 'v1',
              served: true,
              storage: true,
              schema: { openAPIV3Schema: { type: 'object', properties: { spec: { type: 'object', properties: { size: { type: 'integer' } } } } } },
            },
          ],
        },
      },
    });
    await until(async () => {
      const crd = await crds.readCustomResourceDefinition({ name: `widgets.${group}` });
      return crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ?? false;
    }, 20_000);
    const body = { apiVersion: `${group}/v1`, kind: 'Widget', metadata: { name: 'w1' }, spec: { size: 3 } };
    // Established can run a moment ahead of the serving handler: retry a 404 briefly.
    await until(async () => {
      try {
        await objects.createNamespacedCustomObject({ group, version: 'v1', namespace: ns, plural: 'widgets', body });
        return true;
      } catch (err) {
        if (err instanceof k8s.ApiException && err.code === 404) return false;
        throw err;
      }
    }, 10_000);
    const got = (await objects.getNamespacedCustomObject({ group, version: 'v1', namespace: ns, plural: 'widgets', name: 'w1' })) as {
      spec: { size: number };
    };
    assert.equal(got.spec.size, 3);
    assert.ok(isRunning(cluster.apiServerPid as number), `kube-apiserver died on the custom-resource write\n${cluster.logTail(40)}`);
  });

  test('stop() leaves no process and no temp dir', async () => {
    const pids = [cluster.etcdPid as number, cluster.apiServerPid as number];
    const dir = cluster.dir;
    await cluster.stop();
    for (const pid of pids) assert.equal(isRunning(pid), false, `pid ${pid} still runs`);
    assert.equal(existsSync(dir), false);
    await cluster.stop(); // idempotent
  });
});

describe('TestCluster in processes that die', { skip }, () => {
  test('parallel clusters get their own ports; SIGTERM runs the hooks, SIGKILL still kills etcd and kube-apiserver', async () => {
    const [a, b] = await Promise.all([startChildCluster(), startChildCluster()]);
    try {
      assert.equal(new Set([a.port, b.port, a.etcdUrl, b.etcdUrl]).size, 4, JSON.stringify([a, b]));
      assert.notEqual(a.dir, b.dir);
      a.child.kill('SIGTERM');
      b.child.kill('SIGKILL');
      await until(async () => ![a.etcd, a.api, b.etcd, b.api].some(isRunning), 10_000);
      await until(async () => !existsSync(a.dir), 5000); // removed by a's exit hook
    } finally {
      for (const c of [a, b]) for (const pid of [c.child.pid, c.etcd, c.api]) if (pid && isRunning(pid)) process.kill(pid, 'SIGKILL');
      // SIGKILL leaves b no chance to remove its dir and port reservations (the next run would sweep them).
      await rm(b.dir, { recursive: true, force: true });
      for (const name of existsSync(PORT_DIR) ? readdirSync(PORT_DIR) : []) {
        const path = join(PORT_DIR, name);
        if (readFileSync(path, 'utf8') === String(b.child.pid)) await rm(path, { force: true });
      }
    }
  });
});

interface ChildCluster {
  child: ReturnType<typeof spawn>;
  etcd: number;
  api: number;
  dir: string;
  port: number;
  etcdUrl: string;
}

/** A separate Node process that starts a cluster, prints its pids and waits to be killed. */
async function startChildCluster(): Promise<ChildCluster> {
  const code = `
    const { TestCluster } = await import(${JSON.stringify(new URL('../../sandbox/apiserver.ts', import.meta.url).href)});
    const c = await TestCluster.start();
    console.log(JSON.stringify({ etcd: c.etcdPid, api: c.apiServerPid, dir: c.dir, port: c.port, etcdUrl: c.etcdUrl }));
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  try {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    for await (const line of lines) return { child, ...JSON.parse(line) };
    throw new Error(`child cluster exited (${child.exitCode ?? child.signalCode}) before printing its pids`);
  } finally {
    clearTimeout(timer);
  }
}

function httpsGet(url: string, ca: string, token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, headers: { Authorization: `Bearer ${token}` }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function until(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function ms(x: number): string {
  return `${(x / 1000).toFixed(2)} s`;
}
