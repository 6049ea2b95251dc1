/**
 * The seed's deployment snippet as written. It passes `--gateway-endpoint=$(NODE_IP)`: a bare address,
 * meaning that address on the listen port (the gateway's default, 51821, not the agent's 51820): the
 * gateway registers `<IP>:51821` and the nodes reach it there.
 *
 * The second test runs the sidecar container of gateway/sidecar.ts the way kubelet would: its args
 * with `$(VAR)` expanded from its env, the env alone (downward API values, AKS_MESH_LISTEN_PORT, the
 * in-cluster service variables), and a pod-like filesystem: a private mount namespace whose root is
 * read-only, with tmpfs where the sidecar has emptyDirs (/var/run/wireguard, /var/lib/aks-mesh, /tmp)
 * and the service-account token where kubelet mounts it. No flag beyond the seed's three. (The
 * sandbox has no kubelet and no hostPort: NODE_IP here is the gateway namespace's own underlay
 * address; the real-node e2e runs it in a pod.)
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { GROUP, VERSION } from '../mesh/crd/types.ts';
import { MeshCluster, wireguardGoPids } from '../sandbox/cluster.ts';
import { kubeTestsUnavailable } from '../sandbox/apiserver.ts';
import { networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { GATEWAY_DEFAULTS, GATEWAY_LISTEN_PORT } from '../gateway/flags.ts';
import { gatewaySidecar } from '../gateway/sidecar.ts';

const skip = networkTestsUnavailable() ?? kubeTestsUnavailable() ?? false;
const CLI = join(import.meta.dirname, '..', 'cli', 'main.ts');

/** kubelet's $(VAR) expansion of a container's args: a defined variable is replaced, $$ is a literal $, anything else stays. */
function expand(text: string, env: Record<string, string>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) => (m === '$$' ? '$' : name !== undefined && name in env ? env[name] : m));
}

/**
 * The pod's filesystem, set up in a private mount namespace (argument $1: a folder holding the
 * service-account token and CA), then `exec "$@"`. The host's mounts are never touched: every mount
 * here exists only in this process's namespace and goes with it.
 */
const POD_FILESYSTEM = `set -eu
secrets=$1; shift
mount --make-rprivate /
# This network namespace's view of /sys, as 'ip netns exec' gives it.
mount -t sysfs sysfs /sys
# emptyDir /var/run/wireguard (and /run for the token kubelet mounts), emptyDir /var/lib/aks-mesh, emptyDir /tmp.
mount -t tmpfs -o mode=0755,size=4m aks-mesh-pod-run /run
mkdir -p /run/wireguard /run/secrets/kubernetes.io/serviceaccount
cp "$secrets/token" "$secrets/ca.crt" /run/secrets/kubernetes.io/serviceaccount/
mount -t tmpfs -o mode=0755,size=1m aks-mesh-pod-var-lib /var/lib
mkdir -m 0700 /var/lib/aks-mesh
# (Where this checkout or its node sits under /tmp, as in a CI clone, a fresh /tmp would hide them:
# the emptyDir then goes on top of a bind of them back in place.)
keep=$(mktemp -d /run/aks-mesh-pod-keep.XXXXXX)
mount --rbind /tmp "$keep"
mount -t tmpfs -o mode=1777,size=64m aks-mesh-pod-tmp /tmp
for path in "$@"; do
  case "$path" in /tmp/*)
    top=/tmp/$(printf %s "\${path#/tmp/}" | cut -d/ -f1)
    if [ ! -e "$top" ]; then mkdir -p "$top"; mount --rbind "$keep/\${top#/tmp/}" "$top"; fi;;
  esac
done
# readOnlyRootFilesystem: true
mount -o remount,bind,ro /
if touch /aks-mesh-read-only-probe 2>/dev/null; then echo 'the root filesystem is still writable' >&2; exit 97; fi
exec "$@"
`;

describe('the seed snippet: --gateway-endpoint=$(NODE_IP), a bare IP', { skip }, () => {
  let c: MeshCluster;
  let dir: string;
  let seed: ChildProcess | undefined;
  const seedLog = (): string => {
    try {
      return readFileSync(join(dir, 'seed-gateway.log'), 'utf8');
    } catch {
      return '(no log)';
    }
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aks-mesh-seed-gateway-'));
    c = await MeshCluster.start({ nodes: 2, gateway: true, source: 'kube', resyncSeconds: 5 });
  });
  after(async () => {
    // The seed gateway and its wireguard-go first (by pid; its wireguard-go by name and network
    // namespace), while the namespaces still exist.
    if (seed?.pid !== undefined && seed.exitCode === null && seed.signalCode === null) {
      const exited = new Promise((resolve) => seed?.once('exit', resolve));
      seed.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
      if (seed.exitCode === null && seed.signalCode === null) seed.kill('SIGKILL');
    }
    const gw = c?.gateway;
    if (gw) {
      const netns = `net:[${statSync(join('/run/netns', gw.ns)).ino}]`;
      for (const p of wireguardGoPids([GATEWAY_DEFAULTS.interface])) {
        try {
          if (readlinkSync(`/proc/${p.pid}/ns/net`) === netns) process.kill(p.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    await c?.stop();
    if (dir && process.env.AKS_MESH_KEEP_LOGS !== '1') await rm(dir, { recursive: true, force: true });
  });

  test('the gateway registers that IP on its listen port, and reaches the pods', async () => {
    const gw = c.gateway;
    assert.ok(gw);
    for (const n of c.nodes) await c.startAgent(n.name);
    await c.startAgent(gw.name, { flags: { '--gateway-endpoint': gw.underlayIp } });
    await c.waitForMatrix({ timeoutMs: 60_000 });
    const api = c.kubeConfig().makeApiClient(k8s.CustomObjectsApi);
    const object = (await api.getClusterCustomObject({ group: GROUP, version: VERSION, plural: 'gateways', name: gw.name })) as { spec: { endpoint?: string } };
    assert.equal(object.spec.endpoint, `${gw.underlayIp}:${GATEWAY_LISTEN_PORT}`);
  });

  test("the sidecar container as kubelet runs it: the seed's three flags, the pod's env, a read-only root; its Gateway registered, every pod reached", async () => {
    const gw = c.gateway;
    assert.ok(gw && gw.kubeconfig);
    // The gateway started above goes (stopped, not cleaned: its routes and fallbacks stay, as after a
    // container restart); the sidecar's gateway, with a key of its own, takes over the same Gateway.
    await c.stopAgent(gw.name);
    const api = c.kubeConfig().makeApiClient(k8s.CustomObjectsApi);
    const before = (await api.getClusterCustomObject({ group: GROUP, version: VERSION, plural: 'gateways', name: gw.name })) as { spec: { publicKey: string } };

    // What kubelet would give the container: the service-account token and CA files, and the
    // in-cluster service variables (here: the sandbox API server's address on the underlay).
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(gw.kubeconfig);
    const server = new URL(kc.getCurrentCluster()?.server ?? '');
    const token = kc.getCurrentUser()?.token;
    const ca = kc.getCurrentCluster()?.caData;
    assert.ok(token && ca, 'the gateway member has a token user and the cluster CA');
    const secrets = join(dir, 'secrets');
    await mkdir(secrets, { mode: 0o700 });
    await writeFile(join(secrets, 'token'), token, { mode: 0o600 });
    await writeFile(join(secrets, 'ca.crt'), Buffer.from(ca, 'base64'));

    const sidecar = gatewaySidecar({ image: 'unused-here', podCIDRs: gw.podCIDRs }).container;
    const downward: Record<string, string> = { 'spec.nodeName': gw.name, 'status.hostIP': gw.underlayIp, 'status.podIP': gw.underlayIp };
    const env: Record<string, string> = {};
    for (const e of sidecar.env) env[e.name] = e.value !== undefined ? expand(e.value, env) : downward[e.valueFrom?.fieldRef.fieldPath ?? ''];
    const args = sidecar.args.map((a) => expand(a, env));
    assert.deepEqual(args, [`--node-name=${gw.name}`, `--gateway-endpoint=${gw.underlayIp}`, `--pod-cidr=${gw.podCIDRs.join(',')}`]);
    assert.deepEqual(sidecar.command, ['./gateway'], 'the image runs ./gateway, which is `aks-mesh gateway` (here: cli/main.ts gateway)');

    const podEnv = {
      ...env,
      KUBERNETES_SERVICE_HOST: server.hostname,
      KUBERNETES_SERVICE_PORT: server.port,
      PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: '/nonexistent',
      ...(process.env.AKS_MESH_WIREGUARD_GO ? { AKS_MESH_WIREGUARD_GO: process.env.AKS_MESH_WIREGUARD_GO } : {}),
    };
    const fd = openSync(join(dir, 'seed-gateway.log'), 'a', 0o644);
    try {
      seed = spawn(
        'setpriv',
        [
          '--pdeathsig',
          'SIGTERM',
          '--',
          'nsenter',
          `--net=/run/netns/${gw.ns}`,
          '--',
          'unshare',
          '--mount',
          '--propagation',
          'private',
          '--',
          'sh',
          '-c',
          POD_FILESYSTEM,
          'pod-filesystem',
          secrets,
          process.execPath,
          CLI,
          'gateway',
          ...args,
        ],
        { stdio: ['ignore', fd, fd], env: podEnv },
      );
    } finally {
      closeSync(fd);
    }
    const exited = new Promise<string>((resolve) => seed?.once('exit', (code, signal) => resolve(`the sidecar's gateway exited (${code ?? signal}):\n${seedLog()}`)));

    // Its Gateway carries the new key, the node's address on 51821 and the seed's pod CIDRs.
    let waiting = true;
    const registered = (async () => {
      while (waiting) {
        const g = (await api.getClusterCustomObject({ group: GROUP, version: VERSION, plural: 'gateways', name: gw.name })) as { spec: { publicKey: string; endpoint?: string; podCIDRs: string[]; nodeName: string } };
        if (g.spec.publicKey !== before.spec.publicKey) return g;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      throw new Error('gave up');
    })();
    registered.catch(() => undefined);
    let g: Awaited<typeof registered>;
    try {
      g = await Promise.race([registered, exited.then((why) => Promise.reject(new Error(why))), new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no new Gateway key within 60 s:\n${seedLog()}`)), 60_000).unref())]);
    } finally {
      waiting = false;
    }
    assert.equal(g.spec.endpoint, `${gw.underlayIp}:${GATEWAY_LISTEN_PORT}`);
    assert.deepEqual(g.spec.podCIDRs, [...gw.podCIDRs].sort());
    assert.equal(g.spec.nodeName, gw.name);
    // Nothing reached the host's disk: the key lives in the pod's emptyDir.
    assert.ok(!existsSync('/var/lib/aks-mesh/gateway.key'), 'no key on the host');

    // The nodes pick up the new key and endpoint; the gateway reaches every pod through its tunnel.
    await Promise.race([c.waitForMatrix({ timeoutMs: 90_000 }), exited.then((why) => Promise.reject(new Error(why)))]);
    assert.match(seedLog(), /created a private key/);
    for (const n of c.nodes) {
      const route = execFileSync('ip', ['-n', gw.ns, 'route', 'get', n.podIp], { encoding: 'utf8' });
      assert.match(route, new RegExp(`dev ${GATEWAY_DEFAULTS.interface}\\b`), `the gateway's traffic to ${n.podIp} goes into its tunnel: ${route}`);
    }
  });
});
