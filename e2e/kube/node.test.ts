/**
 * Real nodes (sandbox/kubenode.ts, issue 11 "A real node"): two kubelets 1.20.2 with containerd 1.6
 * and kube-proxy, each in its own network and mount namespace on the sandbox underlay, register and
 * turn Ready; a DaemonSet with hostNetwork, NET_ADMIN, /dev/net/tun and an emptyDir shared by two
 * containers runs wireguard-go in one container and reaches its UAPI socket from the other, on both
 * nodes; a pod on one node reaches a pod on the other over the plain routes, and the API server
 * through the `kubernetes` Service (kube-proxy's rules); stop() leaves the host as it found it.
 *
 * The workload image is sandbox/node/build-images.sh's tools image (the host's sh, ip, wg, ping,
 * socat and the wireguard-go we ship, FROM scratch), so this test depends on no other part's image.
 * Root, the node binaries (sandbox/build-node.sh) and containerd are needed; AKS_MESH_REQUIRE_KUBE=1
 * turns their absence into a failure.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { KUBERNETES_SERVICE_IP } from '../../sandbox/apiserver.ts';
import { MeshCluster } from '../../sandbox/cluster.ts';
import {
  KUBELET_SYSCTLS,
  RUN_RECORDS,
  RealNodeCluster,
  SYSCTL_DIR,
  SysctlClaim,
  assertOwnedPath,
  buildNodeImage,
  otherSysctlClaimants,
  processStartTime,
  readSysctls,
  realNodesUnavailable,
  restorableSysctls,
  sweepStaleRuns,
} from '../../sandbox/kubenode.ts';
import { isRunning } from '../../sandbox/proc.ts';
import { cidrContains } from '../../native/index.ts';

const skip = realNodesUnavailable() ?? false;
/** Global settings kubelet or kube-proxy could change: kubelet's tunables and conntrack's table size. */
const HOST_SYSCTLS = [...KUBELET_SYSCTLS, 'net/netfilter/nf_conntrack_max'];

describe('real nodes (kubelet + containerd + kube-proxy in namespaces)', { skip, timeout: 600_000 }, () => {
  let cluster: RealNodeCluster;
  let tools: { reference: string; archive: string };
  const suffix = randomBytes(2).toString('hex');
  const ns = `node-test-${suffix}`;
  const wgName = `wgds${suffix}`;
  let sysctlsBefore: Record<string, string>;
  let sharedAtStart = false;
  let iptablesBefore: string;
  let startMs = 0;

  before(async () => {
    sysctlsBefore = readSysctls(HOST_SYSCTLS);
    // With another run's kubelets up, the host already holds kubelet's values: the originals are on record.
    sharedAtStart = otherSysctlClaimants().length > 0 || otherKubelets().length > 0;
    iptablesBefore = hostIptables();
    tools = await buildNodeImage('tools');
    const t0 = performance.now();
    cluster = await RealNodeCluster.start({ nodes: 2, images: [tools.archive] });
    startMs = performance.now() - t0;
    const created = await cluster.kubectl(['create', 'namespace', ns]);
    assert.equal(created.code, 0, created.stderr);
    await cluster.waitForServiceAccount(ns);
  });
  after(() => cluster?.stop());

  test('two nodes register with the API server and turn Ready, with their pod CIDR and underlay IP', async (t) => {
    const tm = cluster.timings;
    t.diagnostic(`harness start ${s(startMs)} (API server and underlay ${s(tm.meshMs)}, nodes to containerd + images ${s(tm.nodesMs)}, kubelet to Ready ${s(tm.readyMs)})`);
    const core = cluster.kubeConfig().makeApiClient(k8s.CoreV1Api);
    for (const node of cluster.nodes) {
      const got = await core.readNode({ name: node.name });
      assert.equal(got.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True', `${node.name} Ready`);
      assert.equal(got.spec?.podCIDR, node.podCIDR);
      assert.deepEqual(got.status?.addresses?.find((a) => a.type === 'InternalIP')?.address, node.underlayIP);
      assert.equal(got.metadata?.labels?.['kubernetes.io/os'], 'linux');
      assert.match(got.status?.nodeInfo?.containerRuntimeVersion ?? '', /^containerd:\/\/1\.6\./);
    }
    assert.notEqual(cluster.nodes[0].netns, cluster.nodes[1].netns);
  });

  test('a hostNetwork DaemonSet (NET_ADMIN, /dev/net/tun, an emptyDir shared by two containers) runs wireguard-go and reaches its UAPI socket on every node', async () => {
    const port = 51000 + Math.floor(Math.random() * 800);
    const ds = {
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'wg', namespace: ns },
      spec: {
        selector: { matchLabels: { app: 'wg' } },
        template: {
          metadata: { labels: { app: 'wg' } },
          spec: {
            hostNetwork: true,
            terminationGracePeriodSeconds: 2,
            nodeSelector: { 'kubernetes.io/os': 'linux' },
            containers: [
              {
                name: 'wireguard-go',
                image: tools.reference,
                imagePullPolicy: 'Never',
                command: ['/bin/wireguard-go', '-f', wgName],
                env: [{ name: 'WG_PROCESS_FOREGROUND', value: '1' }],
                securityContext: { capabilities: { add: ['NET_ADMIN'] } },
                volumeMounts: [
                  { name: 'sockets', mountPath: '/var/run/wireguard' },
                  { name: 'tun', mountPath: '/dev/net/tun' },
                ],
              },
              {
                name: 'client',
                image: tools.reference,
                imagePullPolicy: 'Never',
                // Through the shared emptyDir only: wg finds /var/run/wireguard/<if>.sock.
                command: ['/bin/sh', '-c', `until wg set ${wgName} listen-port ${port}; do sleep 0.5; done; exec sleep 100000`],
                readinessProbe: { exec: { command: ['/bin/sh', '-c', `wg show ${wgName} listen-port | grep -qx ${port}`] }, periodSeconds: 1 },
                volumeMounts: [{ name: 'sockets', mountPath: '/var/run/wireguard' }],
              },
            ],
            volumes: [
              { name: 'sockets', emptyDir: {} },
              { name: 'tun', hostPath: { path: '/dev/net/tun', type: 'CharDevice' } },
            ],
          },
        },
      },
    };
    const applied = await cluster.kubectl(['apply', '-f', '-'], { input: JSON.stringify(ds) });
    assert.equal(applied.code, 0, applied.stderr);
    // rollout status passes at once on a DaemonSet the controller has not counted yet: wait for it first.
    const counted = await waitForOutput(
      () => cluster.kubectl(['-n', ns, 'get', 'daemonset/wg', '-o', 'jsonpath={.status.desiredNumberScheduled}']),
      (o) => o === String(cluster.nodes.length),
    );
    assert.equal(counted, String(cluster.nodes.length), 'the DaemonSet wants a pod on every real node');
    const rolled = await cluster.kubectl(['-n', ns, 'rollout', 'status', 'daemonset/wg', '--timeout=120s'], { timeoutMs: 130_000 });
    assert.equal(rolled.code, 0, `${rolled.stdout}${rolled.stderr}\n${await describe('daemonset/wg')}\n${cluster.logTail()}`);

    const pods = await podsOf('app=wg');
    assert.deepEqual(pods.map((p) => p.spec?.nodeName).sort(), cluster.nodes.map((n) => n.name).sort());
    for (const node of cluster.nodes) {
      // The TUN is in the node's own network namespace (hostNetwork lands there), with the port the other container set.
      const link = await node.exec('ip', ['-o', 'link', 'show', wgName]);
      assert.equal(link.code, 0, `${node.name}: ${link.stderr}`);
      const listening = await node.exec('ss', ['-H', '-u', '-l', '-n', `sport = :${port}`]);
      assert.match(listening.stdout, new RegExp(`:${port}\\b`), `${node.name}: nothing listens on UDP ${port}`);
      // kubectl exec goes API server -> kubelet -> containerd: the client container reads the device through the socket.
      const pod = pods.find((p) => p.spec?.nodeName === node.name) as k8s.V1Pod;
      const shown = await cluster.kubectl(['-n', ns, 'exec', pod.metadata?.name as string, '-c', 'client', '--', 'wg', 'show', wgName]);
      assert.equal(shown.code, 0, shown.stderr);
      assert.match(shown.stdout, new RegExp(`listening port: ${port}`));
    }
  });

  test('a pod on one node reaches a pod on the other (plain routes) and the API server through the kubernetes Service', async () => {
    for (const [i, node] of cluster.nodes.entries()) {
      const pod = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `p${i}`, namespace: ns, labels: { app: 'ping' } },
        spec: {
          nodeName: node.name,
          terminationGracePeriodSeconds: 1,
          containers: [{ name: 'main', image: tools.reference, imagePullPolicy: 'Never', command: ['/bin/sleep', '100000'] }],
        },
      };
      const r = await cluster.kubectl(['apply', '-f', '-'], { input: JSON.stringify(pod) });
      assert.equal(r.code, 0, r.stderr);
    }
    const waited = await cluster.kubectl(['-n', ns, 'wait', '--for=condition=Ready', 'pod', '-l', 'app=ping', '--timeout=90s'], { timeoutMs: 100_000 });
    assert.equal(waited.code, 0, `${waited.stderr}\n${await describe('pods -l app=ping')}\n${cluster.logTail()}`);
    const pods = await podsOf('app=ping');
    const ipOf = (i: number) => pods.find((p) => p.metadata?.name === `p${i}`)?.status?.podIP as string;
    for (const [i, node] of cluster.nodes.entries()) assert.ok(cidrContains(node.podCIDR, `${ipOf(i)}/32`), `p${i} ${ipOf(i)} in ${node.podCIDR}`);

    const ping = await cluster.kubectl(['-n', ns, 'exec', 'p0', '--', 'ping', '-n', '-c', '3', '-W', '2', ipOf(1)]);
    assert.equal(ping.code, 0, `${ping.stdout}${ping.stderr}`);
    assert.match(ping.stdout, /3 packets transmitted, 3 (packets )?received/);

    // kube-proxy's rules are in the node's namespace (not the host's) and carry the kubernetes Service.
    for (const node of cluster.nodes) {
      const nat = await waitForOutput(() => node.exec('iptables-save', ['-t', 'nat']), (o) => o.includes(`-d ${KUBERNETES_SERVICE_IP}/32`));
      assert.match(nat, /^:KUBE-SERVICES /m);
    }
    assert.doesNotMatch(hostIptables(), /KUBE-SERVICES/);
    const api = await cluster.kubectl(['-n', ns, 'exec', 'p1', '--', 'socat', '-u', 'OPEN:/dev/null', `TCP:${KUBERNETES_SERVICE_IP}:443,connect-timeout=5`]);
    assert.equal(api.code, 0, `pod p1 could not connect to ${KUBERNETES_SERVICE_IP}:443: ${api.stdout}${api.stderr}`);
  });

  test('stop() removes every process, namespace, mount and cgroup of ours and restores the host sysctls and iptables', async (t) => {
    const holders = cluster.nodes.map((n) => n.holderPid);
    const mountNs = holders.map((pid) => readlinkSync(`/proc/${pid}/ns/mnt`));
    const cgroupRoots = cluster.nodes.map((n) => n.cgroupRoot);
    const netns = cluster.nodes.map((n) => n.netns);
    const dir = cluster.dir;
    // kubelet did change the host's tunables while it ran, so the restore below can fail (were
    // kubelet's values the host's own, it would pass with no restore at all).
    const running = readSysctls(HOST_SYSCTLS);
    t.diagnostic(`while running: ${JSON.stringify(running)}; before: ${JSON.stringify(sysctlsBefore)}`);
    if (!sharedAtStart) {
      const changed = KUBELET_SYSCTLS.filter((k) => running[k] !== sysctlsBefore[k]);
      assert.ok(changed.length > 0, `kubelet changed none of ${KUBELET_SYSCTLS.join(', ')}: the restore is not tested (the host already had kubelet's values)`);
    } else t.diagnostic('another run\'s kubelets ran when we started: the host held their values already');
    const report = await cluster.stop();
    t.diagnostic(`stop: ${s(report.ms)}, forced: [${report.forced.join(', ')}]`);
    assert.deepEqual(report.leftoverCgroups, []);
    const others = otherSysctlClaimants();
    if (others.length === 0) {
      // We were the last run using real nodes: the originals are back.
      assert.deepEqual(readSysctls(KUBELET_SYSCTLS), report.restoredSysctls);
      if (!sharedAtStart) assert.deepEqual(readSysctls(HOST_SYSCTLS), sysctlsBefore);
    } else {
      // Another run's kubelets still run on this machine: the last one out restores the values.
      t.diagnostic(`host sysctls left to the last run using real nodes (pids ${others.join(', ')})`);
      assert.deepEqual(report.restoredSysctls, {});
    }
    assert.equal(hostIptables(), iptablesBefore);
    for (const pid of holders) assert.ok(!existsSync(`/proc/${pid}`), `holder ${pid} still runs`);
    const inOurMountNs = readdirSync('/proc').filter((p) => /^\d+$/.test(p) && mountNs.includes(readlinkOr(`/proc/${p}/ns/mnt`)));
    assert.deepEqual(inOurMountNs, [], 'processes left in the nodes\' mount namespaces');
    const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    for (const name of netns) assert.ok(!namespaces.includes(name), `${name} left`);
    assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(dir), `mounts under ${dir} left`);
    if (process.env.AKS_MESH_KEEP_LOGS === '1') {
      // Kept logs (scripts/test keeps every run's logs): the logs and configs stay, the images' layers
      // and the pods' volumes (keys among them) do not.
      const kept = readdirSync(dir, { recursive: true, encoding: 'utf8' });
      assert.deepEqual(kept.filter((f) => /(^|\/)(containerd|kubelet)$/.test(f)), [], `containerd's or kubelet's state kept under ${dir}`);
    } else assert.ok(!existsSync(dir), `${dir} left`);
    const cgroups = readdirSync('/sys/fs/cgroup').flatMap((h) => cgroupRoots.map((r) => `/sys/fs/cgroup/${h}${r}`)).filter((d) => existsSync(d));
    assert.deepEqual(cgroups, []);
  });

  test('a run SIGKILLed (no hook runs) leaves pods running, and the next run sweeps them and everything else it made', async (t) => {
    const child = spawn(process.execPath, [join(import.meta.dirname, 'node-killed-child.ts'), tools.archive, tools.reference], { stdio: ['ignore', 'pipe', 'pipe'] });
    // Whatever fails below, the child run is killed and what it made is swept (the sweep is what is
    // tested, so it also runs as the cleanup: a second sweep finds nothing).
    t.after(() => {
      child.kill('SIGKILL');
      sweepStaleRuns();
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exited = new Promise((r) => child.once('exit', r));
    const deadline = Date.now() + 240_000;
    const made = await new Promise<{ dir: string; cgroupRoot: string; netns: string; underlayNetns: string; hostLink: string; containerPids: number[] }>((resolve, reject) => {
      const timer = setInterval(() => {
        const line = out.split('\n').find((l) => l.startsWith('{'));
        if (line) {
          clearInterval(timer);
          resolve(JSON.parse(line));
        } else if (child.exitCode !== null) {
          clearInterval(timer);
          reject(new Error(`the child run exited (${child.exitCode}): ${err}`));
        } else if (Date.now() > deadline) {
          clearInterval(timer);
          reject(new Error(`the child run printed nothing in 240 s: ${out}${err}`));
        }
      }, 200);
    });
    assert.ok(made.containerPids.length >= 2, `the child's pod runs (pause + main): ${JSON.stringify(made)}`);
    child.kill('SIGKILL');
    await exited;
    // Parent-death signals stop kubelet, containerd and the holder; the containers outlive them (by design).
    t.diagnostic(`after SIGKILL, still running: ${made.containerPids.filter(isRunning).length} of ${made.containerPids.length} container processes`);
    sweepStaleRuns((line) => t.diagnostic(line));
    await waitGone(made.containerPids);
    assert.deepEqual(made.containerPids.filter(isRunning), [], 'container processes left');
    const cgroups = readdirSync('/sys/fs/cgroup').map((h) => `/sys/fs/cgroup/${h}${made.cgroupRoot}`).filter((d) => existsSync(d));
    assert.deepEqual(cgroups, []);
    const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    for (const name of [made.netns, made.underlayNetns]) assert.ok(!namespaces.includes(name), `${name} left`);
    assert.ok(!execFileSync('ip', ['-br', 'link'], { encoding: 'utf8' }).includes(made.hostLink), `${made.hostLink} left`);
    assert.ok(!existsSync(made.dir), `${made.dir} left`);
  });

  async function podsOf(selector: string): Promise<k8s.V1Pod[]> {
    const core = cluster.kubeConfig().makeApiClient(k8s.CoreV1Api);
    return (await core.listNamespacedPod({ namespace: ns, labelSelector: selector })).items;
  }

  async function describe(what: string): Promise<string> {
    const r = await cluster.kubectl(['-n', ns, 'describe', ...what.split(' ')]);
    return r.stdout + r.stderr;
  }
});

describe('real nodes joining a MeshCluster (its underlay and API server)', { skip, timeout: 300_000 }, () => {
  let mesh: MeshCluster;
  let real: RealNodeCluster;
  let tools: { reference: string; archive: string };

  before(async () => {
    tools = await buildNodeImage('tools');
    mesh = await MeshCluster.start({ nodes: 1, ...RealNodeCluster.meshOptions() });
    real = await RealNodeCluster.start({ nodes: 1, mesh, images: [tools.archive] });
  });
  after(async () => {
    await real?.stop();
    await mesh?.stop();
  });

  test('a pod on a real node and a pod on a namespace node reach each other over clear routes, and stop() leaves the mesh running', async () => {
    const node = real.nodes[0];
    assert.equal(real.api, mesh.kube);
    assert.ok(node.underlayIP.startsWith(`${mesh.underlay.prefix}.`));
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'r0', namespace: 'default' },
      spec: { nodeName: node.name, terminationGracePeriodSeconds: 1, containers: [{ name: 'main', image: tools.reference, imagePullPolicy: 'Never', command: ['/bin/sleep', '100000'] }] },
    };
    const applied = await real.kubectl(['apply', '-f', '-'], { input: JSON.stringify(pod) });
    assert.equal(applied.code, 0, applied.stderr);
    const ready = await real.kubectl(['wait', '--for=condition=Ready', 'pod/r0', '--timeout=90s'], { timeoutMs: 100_000 });
    assert.equal(ready.code, 0, `${ready.stderr}\n${real.logTail()}`);
    const podIP = (await real.kubectl(['get', 'pod', 'r0', '-o', 'jsonpath={.status.podIP}'])).stdout;
    const sandboxPod = mesh.nodes[0];

    const routes = await real.addClearRoutesWithMesh();
    const there = await real.kubectl(['exec', 'r0', '--', 'ping', '-n', '-c', '2', '-W', '2', sandboxPod.podIp]);
    assert.equal(there.code, 0, `real pod -> sandbox pod: ${there.stdout}${there.stderr}`);
    const back = await mesh.ping(sandboxPod.podNs, podIP, { count: 2, timeoutMs: 4000 });
    assert.ok(back.ok, `sandbox pod -> real pod: ${back.output}`);
    await routes.remove();
    const gone = await mesh.ping(sandboxPod.podNs, podIP, { count: 1, timeoutMs: 1000 });
    assert.ok(!gone.ok, 'the clear routes were removed');

    await real.stop();
    assert.ok(mesh.kube?.apiServerPid && isRunning(mesh.kube.apiServerPid), "the mesh's API server still runs");
    assert.ok(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).includes(mesh.underlay.ns));
    const nodes = await mesh.kube.kubectl(['get', 'nodes', '-o', 'name']);
    assert.match(nodes.stdout, /node\/node-0/);
  });
});

describe('the harness\'s machine-wide state (root acts on it)', { skip: process.getuid?.() !== 0 ? 'needs root' : false }, () => {
  const suffix = randomBytes(3).toString('hex');

  test('a directory or file that is a symlink, not root\'s only, or writable by others is refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'aks-mesh-owned-test-'));
    try {
      assertOwnedPath(dir, 'directory'); // mkdtemp: 0700, ours
      assert.match(RUN_RECORDS, /^\/run\/aks-mesh\//);
      assert.match(SYSCTL_DIR, /^\/run\/aks-mesh\//);
      const open = join(dir, 'open');
      mkdirSync(open);
      chmodSync(open, 0o1777); // what /tmp is: anyone could have made it
      assert.throws(() => assertOwnedPath(open, 'directory'), /open: refusing this directory: it is writable by group or others \(mode 1777\)/);
      const link = join(dir, 'link');
      symlinkSync(dir, link);
      assert.throws(() => assertOwnedPath(link, 'directory'), /link: refusing this directory: it is a symlink/);
      const file = join(dir, 'f.json');
      writeFileSync(file, '{}', { mode: 0o666 });
      chmodSync(file, 0o666);
      assert.throws(() => assertOwnedPath(file, 'file'), /f\.json: refusing this file: it is writable by group or others/);
      assert.throws(() => assertOwnedPath(dir, 'file'), /refusing this file: it is not a regular file/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('only kubelet\'s sysctls, with integer values, are ever written back from a record', () => {
    const recorded = { 'vm/overcommit_memory': '0', '../../etc/shadow': 'root::0:0', 'kernel/panic': '0; reboot', 'kernel/panic_on_oops': 1 };
    assert.deepEqual(restorableSysctls(recorded), { 'vm/overcommit_memory': '0' });
    assert.deepEqual(restorableSysctls('not an object'), {});
  });

  test('a run record naming something the harness never makes is not acted on (and is removed)', () => {
    const victimDir = mkdtempSync(join(tmpdir(), `aks-mesh-victim-${suffix}-`));
    const victimNs = `victim-${suffix}`;
    execFileSync('ip', ['netns', 'add', victimNs]);
    const dead = spawnSyncPid();
    const path = join(RUN_RECORDS, `${dead}-${suffix}.json`);
    try {
      writeFileSync(join(victimDir, 'keep'), 'x');
      writeRecord(path, { pid: dead, start: 1, dir: victimDir, netns: [victimNs], cgroupRoots: [], mountNamespaces: [] });
      const lines: string[] = [];
      sweepStaleRuns((l) => lines.push(l));
      assert.ok(existsSync(join(victimDir, 'keep')), `${victimDir} was removed`);
      assert.ok(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).includes(victimNs), `${victimNs} was deleted`);
      assert.ok(!existsSync(path), 'the record is left');
      assert.ok(lines.some((l) => l.includes(path) && /not a record of this harness: dir:/.test(l)), lines.join('\n'));
    } finally {
      rmSync(path, { force: true });
      rmSync(victimDir, { recursive: true, force: true });
      execFileSync('ip', ['netns', 'del', victimNs], { stdio: 'ignore' });
    }
  });

  test('a run record whose pid now belongs to another process (another start time) is swept', () => {
    // This very process's pid, as a recycled pid would look: running, but started at another time.
    const dir = mkdtempSync(join(tmpdir(), 'aks-mesh-realnode-'));
    const netns = `am-${suffix}-k0`;
    execFileSync('ip', ['netns', 'add', netns]);
    const path = join(RUN_RECORDS, `${process.pid}-${suffix}.json`);
    try {
      writeRecord(path, { pid: process.pid, start: (processStartTime(process.pid) ?? 0) + 1, dir, netns: [netns], cgroupRoots: [`/aks-mesh-${suffix}-real-0`], mountNamespaces: [] });
      sweepStaleRuns();
      assert.ok(!existsSync(dir), `${dir} left: the run was taken for alive`);
      assert.ok(!execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).includes(netns), `${netns} left`);
      assert.ok(!existsSync(path), 'the record is left');
    } finally {
      rmSync(path, { force: true });
      rmSync(dir, { recursive: true, force: true });
      try {
        execFileSync('ip', ['netns', 'del', netns], { stdio: 'ignore' });
      } catch {
        /* swept */
      }
    }
  });

  test('two clusters in one process hold two sysctl claims; a claim of a dead process (pid reused) is stale', () => {
    const a = new SysctlClaim(randomBytes(3).toString('hex'));
    const b = new SysctlClaim(randomBytes(3).toString('hex'));
    const mine = () => otherSysctlClaimants().filter((p) => p === process.pid).length;
    const before = mine();
    a.acquire();
    b.acquire();
    try {
      assert.equal(mine(), before + 2);
      a.release();
      // b still holds its claim: the host's values are not restored under the other cluster's kubelets.
      assert.equal(mine(), before + 1, 'the second cluster\'s claim went with the first one\'s');
    } finally {
      a.release();
      b.release();
    }
    assert.equal(mine(), before);
    // A claim recorded by a process that has since gone, whose pid this process now has.
    const stale = join(SYSCTL_DIR, `claim-${process.pid}-${suffix}`);
    writeFileSync(stale, JSON.stringify({ pid: process.pid, start: (processStartTime(process.pid) ?? 0) + 1 }), { mode: 0o600 });
    try {
      assert.equal(mine(), before, 'a claim with another start time counted as live');
      assert.ok(!existsSync(stale), 'the stale claim was not removed');
    } finally {
      rmSync(stale, { force: true });
    }
  });

  function writeRecord(path: string, record: object): void {
    mkdirSync(RUN_RECORDS, { recursive: true, mode: 0o700 });
    writeFileSync(path, JSON.stringify(record), { mode: 0o600 });
  }
});

/** The pid of a process that has exited. */
function spawnSyncPid(): number {
  const child = spawnSync('true');
  return child.pid as number;
}

/** Kubelets on this machine not started by this process (another run's, whatever its harness version). */
function otherKubelets(): number[] {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p) && readOr(`/proc/${p}/comm`).trim() === 'kubelet').map(Number);
}

function readOr(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** The host's iptables rules (every table), without counters: what a run must leave as it found. */
function hostIptables(): string {
  return execFileSync('iptables-save', { encoding: 'utf8' })
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/\[\d+:\d+\]/g, ''))
    .join('\n');
}

async function waitForOutput(run: () => Promise<{ stdout: string }>, ok: (out: string) => boolean, timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { stdout } = await run();
    if (ok(stdout) || Date.now() > deadline) return stdout;
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function waitGone(pids: number[], timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some(isRunning) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

function readlinkOr(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return '';
  }
}

function s(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
