/**
 * The product as operators run it (issue 11, "Done when" 3 to 7): the image built by
 * scripts/build-image.sh, imported into the containerd of two real nodes (kubelet 1.20.2, kube-proxy
 * in iptables mode, sandbox/kubenode.ts), the chart installed by real Helm, beside a sandbox node whose
 * agent runs as a process (sandbox/cluster.ts), all on one underlay bridge and one API server.
 *
 *  3. `helm install` brings the agent DaemonSet (agent + wireguard-go sidecar, attach mode) to Ready;
 *     each agent registers its Peer under the chart's service account, which may do nothing more;
 *     pods on the two real nodes reach each other through wg-mesh, and a capture on the underlay finds
 *     no pod packet in clear, with kube-proxy's KUBE-SERVICES chain in each node's netns.
 *  4. The real nodes and the sandbox node mesh, both ways.
 *  5. `helm upgrade` to another image reference rolls the DaemonSet: new pods, new image; the pings
 *     lost across it (5/s) are reported. Killing the agent container alone loses none (asserted):
 *     the wireguard-go sidecar keeps the tunnel.
 *  6. The gateway sidecar, twice: `aks-mesh gateway-patch` (the original snippet: ./gateway,
 *     $(NODE_NAME), $(NODE_IP), the pod CIDRs joined by commas) patched into a Konnectivity-agent
 *     stand-in Deployment, and the chart's own (konnectivity.enabled). The stand-in is a container of
 *     our image that dials every pod (TCP; a refusal is an answer); each gateway registers its Gateway
 *     and reaches every pod through its tunnel, with no pod packet in clear on the underlay.
 *  7. `helm uninstall` (its pre-delete hook runs the agents' cleanup) leaves every real node with no
 *     mesh interface, rule, route, fallback or socket (sandbox/nodecheck.ts, read with `ip -json`),
 *     pod traffic takes the plain routes again, the real nodes' Peers are gone and the CRDs stay
 *     (Helm never deletes what a chart's crds/ installed).
 *
 * The agents' key folder is /run/aks-mesh (agent.keyDir): each real node has a private /run, while
 * the chart's default /var/lib/aks-mesh would be one host folder shared by both nodes (one key for two
 * nodes) and written on the development machine.
 *
 * The report (times, lost pings) is printed as `# realnode:` lines.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { KUBECTL_BINARY, KUBERNETES_SERVICE_IP, SERVICE_CLUSTER_IP_RANGE } from '../sandbox/apiserver.ts';
import { MeshCluster } from '../sandbox/cluster.ts';
import type { ClusterNode } from '../sandbox/cluster.ts';
import { CLUSTER_CIDR, RealNodeCluster, buildNodeImage, realNodesUnavailable } from '../sandbox/kubenode.ts';
import { waitFor } from '../sandbox/kube.ts';
import {
  chartMeshSettings,
  checkNodeClean,
  clearPodPackets,
  formatPingLoss,
  measurePingLoss,
  ping,
  routeTo,
  wireguardBetween,
} from '../sandbox/nodecheck.ts';
import { networkTestsUnavailable } from '../sandbox/sandbox.ts';
import { CHART, helmIn, helmTestsUnavailable } from './helm.ts';
import type { Run } from './helm.ts';
import {
  ROOT,
  buildProductImage,
  containerIdOf,
  kubectlJson,
  kubectlOk,
  killContainer,
  podNetns,
  podProblem,
  podReady,
  podsOf,
  sleeperPod,
  splitReference,
  waitPodsReady,
} from './realnode-pods.ts';
import type { BuiltImage, Pod } from './realnode-pods.ts';

const skip = networkTestsUnavailable(['tcpdump']) ?? realNodesUnavailable() ?? helmTestsUnavailable() ?? false;

const RELEASE = 'mesh';
const AGENT_DS = 'aks-mesh-agent';
const AGENT_SA = 'aks-mesh-agent';
const INTERFACE = 'wg-mesh';
const KEY_DIR = '/run/aks-mesh';
/** The Konnectivity-agent stand-in: dial every target pod every 2 s; an answer (even a refusal) means it got there and back. */
const DIALER = [
  "const net = require('node:net');",
  'const targets = process.argv.slice(1);',
  'setInterval(() => { for (const ip of targets) {',
  '  const s = net.connect({ host: ip, port: 7, timeout: 1500 });',
  "  s.on('connect', () => { console.log('reached', ip); s.destroy(); });",
  "  s.on('error', (e) => console.log(e.code === 'ECONNREFUSED' ? 'reached' : 'failed', ip, e.code));",
  "  s.on('timeout', () => { console.log('failed', ip, 'timeout'); s.destroy(); });",
  '} }, 2000);',
].join('\n');

describe('the image, the chart and the gateway on real nodes (kubelet + containerd)', { skip, timeout: 1_500_000 }, () => {
  const tag = randomBytes(3).toString('hex');
  const namespace = `am-rn-${tag}`;
  const lines: string[] = [];
  const note = (line: string) => {
    lines.push(line);
    console.log(`# realnode: ${line}`);
  };
  let image: BuiltImage;
  let mesh: MeshCluster;
  let real: RealNodeCluster;
  let helm: (args: string[]) => Promise<Run>;
  let sandboxNode: ClusterNode | undefined;
  let sleepers: Pod[] = [];
  let installed = false;
  const settings = chartMeshSettings({ interfaceName: INTERFACE });

  /** The cluster's address plan, the same on every member (chart values and the sandbox agent's flags). */
  const plan = () => ({ serviceCIDRs: [SERVICE_CLUSTER_IP_RANGE], clusterCIDRs: [CLUSTER_CIDR], nodeCIDRs: [mesh.underlay.subnet] });
  const sandboxFlags = () => ({ '--service-cidr': plan().serviceCIDRs.join(','), '--cluster-cidr': plan().clusterCIDRs.join(','), '--node-cidr': plan().nodeCIDRs.join(',') });

  const valuesFile = (name: string, values: object): string => {
    const file = join(real.dir, `values-${name}.yaml`);
    writeFileSync(file, stringify(values));
    return file;
  };
  const helmOk = async (args: string[], what: string): Promise<Run> => {
    const t0 = performance.now();
    const r = await helm([...args, '--kubeconfig', real.kubeconfigPath]);
    note(`${what}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    if (r.code !== 0) {
      const pods = await real.kubectl(['get', 'pods', '-n', namespace, '-o', 'wide']);
      const agents = await real.kubectl(['logs', '-n', namespace, '-l', 'app.kubernetes.io/component=agent', '-c', 'agent', '--tail=15', '--prefix']);
      throw new Error(`${what} failed (exit ${r.code}): ${r.stderr.trim()}\n${pods.stdout}\nagent logs:\n${agents.stdout}${agents.stderr}\n${real.logTail(undefined, 10)}`);
    }
    return r;
  };
  /**
   * A namespace with its kube-root-ca.crt ConfigMap: the chart's and the gateway sidecar's projected
   * service-account volumes read it, and kube-controller-manager's root-ca-cert-publisher writes it
   * into every namespace; where the harness does not run that controller, the test publishes the CA.
   */
  const createNamespace = async (name: string): Promise<void> => {
    await kubectlOk(real, ['create', 'namespace', name]);
    const r = await real.kubectl(['create', 'configmap', 'kube-root-ca.crt', '-n', name, `--from-file=ca.crt=${real.api.caCertPath}`]);
    if (r.code !== 0 && !/AlreadyExists/.test(r.stderr)) throw new Error(`kube-root-ca.crt in ${name}: ${r.stderr.trim()}`);
  };
  const agentPods = () => podsOf(real, namespace, 'app.kubernetes.io/component=agent');
  const ipOf = (p: Pod): string => {
    if (!p.status.podIP) throw new Error(`pod ${p.metadata.name} has no IP`);
    return p.status.podIP;
  };

  before(async () => {
    const t0 = performance.now();
    const [built, tools] = await Promise.all([buildProductImage(), buildNodeImage('tools')]);
    image = built;
    note(`image ${image.reference} (scripts/build-image.sh ${(image.ms / 1000).toFixed(1)} s)`);
    // One sandbox node, added after the chart installed its ClusterRoles (its user is bound to them).
    mesh = await MeshCluster.start({ nodes: 0, crds: false, spareNodes: 1, ...RealNodeCluster.meshOptions() });
    real = await RealNodeCluster.start({ nodes: 2, mesh, images: [image.archive, tools.archive] });
    note(`real nodes Ready: ${(real.timings.totalMs / 1000).toFixed(1)} s (nodes ${(real.timings.nodesMs / 1000).toFixed(1)} s, kubelets ${(real.timings.readyMs / 1000).toFixed(1)} s)`);
    helm = helmIn(real.dir);
    // hostNetwork pods (the agents) reach the API server through the `kubernetes` Service's IP, which
    // kube-proxy DNATs in OUTPUT; the kernel needs a route for the service range before it gets there
    // (a cloud node has its default route). In the node's own namespace, gone with it.
    for (const n of real.nodes) {
      if ((await routeTo(n.netns, KUBERNETES_SERVICE_IP)).routable) continue;
      const r = await n.exec('ip', ['route', 'add', SERVICE_CLUSTER_IP_RANGE, 'via', mesh.underlay.hostIp]);
      if (r.code !== 0) throw new Error(`${n.name}: ip route add ${SERVICE_CLUSTER_IP_RANGE}: ${r.stderr.trim()}`);
    }
    await createNamespace(namespace);
    await kubectlOk(real, ['apply', '-f', '-'], real.nodes.map((n, i) => stringify(sleeperPod(`sleeper-${i}`, namespace, n.name, tools.reference))).join('---\n'));
    sleepers = await waitPodsReady(real, namespace, 'app=realnode-sleeper', real.nodes.length);
    note(`set-up: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  });

  after(async () => {
    // Everything goes with the nodes and the API server (by pid and by our generated names), even
    // half-way: no helm uninstall is needed for that.
    if (lines.length) console.log(`# realnode report\n${lines.map((l) => `#   ${l}`).join('\n')}`);
    await real?.stop();
    await mesh?.stop();
  });

  test('3. helm install: the DaemonSet is Ready, Peers registered under the chart\'s RBAC, pods meet through the tunnel, nothing in clear', async () => {
    const { repository, tag: imageTag } = splitReference(image.reference);
    const values = valuesFile('install', {
      image: { repository, tag: imageTag, pullPolicy: 'Never' },
      mesh: { interface: INTERFACE, ...plan() },
      agent: { wireguardMode: 'attach', keyDir: KEY_DIR },
    });
    await helmOk(['install', RELEASE, CHART, '--namespace', namespace, '-f', values, '--wait', '--timeout', '5m'], 'helm install --wait');
    installed = true;

    // helm --wait looked at the pods; the DaemonSet's status follows a moment later.
    let ds = { desired: 0, ready: 0 };
    await waitFor('the DaemonSet status: 2 of 2 ready', async () => {
      const got = await kubectlJson<{ status: { desiredNumberScheduled: number; numberReady: number } }>(real, ['get', 'ds', AGENT_DS, '-n', namespace]);
      ds = { desired: got.status.desiredNumberScheduled, ready: got.status.numberReady };
      return ds.desired === 2 && ds.ready === 2;
    }, 60_000, 1000).catch(() => undefined);
    assert.deepEqual(ds, { desired: 2, ready: 2 }, 'one ready agent pod per real node');
    for (const p of await agentPods()) {
      assert.deepEqual((p.status.containerStatuses ?? []).map((c) => `${c.name}:${c.ready}`).sort(), ['agent:true', 'wireguard-go:true'], `${p.metadata.name}: agent + wireguard-go sidecar`);
    }

    // Each agent registers its own Peer.
    const peers = await waitFor('a Ready Peer per real node', async () => {
      const list = await kubectlJson<{ items: Array<{ metadata: { name: string }; spec: { nodeName?: string; endpoint?: string; allowedIPs: string[] }; status?: { conditions?: Array<{ type: string; status: string }> } }> }>(real, ['get', 'peers.aksmesh.io']);
      const ready = real.nodes.map((n) => list.items.find((p) => p.metadata.name === n.name && p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')));
      return ready.every(Boolean) ? ready : false;
    }, 90_000, 1000);
    for (const [i, n] of real.nodes.entries()) {
      const p = peers[i];
      assert.equal(p?.spec.nodeName, n.name);
      assert.equal(p?.spec.endpoint, `${n.underlayIP}:51820`);
      assert.ok(p?.spec.allowedIPs.includes(n.podCIDR), `Peer ${n.name} routes its pod CIDR ${n.podCIDR}: ${p?.spec.allowedIPs.join(', ')}`);
    }

    // The permissions the chart grants, and nothing more (the API server answers for the pods' identity).
    const as = `system:serviceaccount:${namespace}:${AGENT_SA}`;
    const can = async (verb: string, resource: string): Promise<boolean> => {
      const r = await real.kubectl(['auth', 'can-i', verb, resource, `--as=${as}`]);
      return r.stdout.trim() === 'yes';
    };
    const grants: Array<[string, string, boolean]> = [
      ['create', 'peers.aksmesh.io', true],
      ['update', 'peers.aksmesh.io/status', true],
      ['watch', 'nodes', true],
      ['create', 'gateways.aksmesh.io', false],
      ['update', 'gateways.aksmesh.io', false],
      ['get', 'secrets', false],
      ['create', 'pods', false],
      ['update', 'nodes', false],
      ['delete', 'nodes', false],
      ['create', 'clusterrolebindings', false],
      ['delete', 'customresourcedefinitions', false],
    ];
    const got = await Promise.all(grants.map(async ([verb, resource]) => `${verb} ${resource}: ${(await can(verb, resource)) ? 'yes' : 'no'}`));
    assert.deepEqual(got, grants.map(([verb, resource, yes]) => `${verb} ${resource}: ${yes ? 'yes' : 'no'}`), `what ${as} may do`);

    // kube-proxy's rules are in place on every node.
    for (const n of real.nodes) {
      const r = await n.exec('iptables', ['-t', 'nat', '-S', 'KUBE-SERVICES']);
      assert.equal(r.code, 0, `${n.name}: kube-proxy's KUBE-SERVICES chain exists: ${r.stderr}`);
    }

    // Pod to pod across the real nodes: through wg-mesh, and nothing in clear on the underlay.
    const [a, b] = sleepers;
    for (const [from, to] of [[a, b], [b, a]]) {
      const path = await routeTo(real.node(from.spec.nodeName ?? '').netns, ipOf(to));
      assert.equal(path.dev, INTERFACE, `${from.spec.nodeName} sends to ${to.metadata.name} through ${INTERFACE}: ${path.text}`);
    }
    const capture = await mesh.startCapture();
    let results;
    try {
      results = await Promise.all([ping(await podNetns(real, a), ipOf(b), { count: 10, timeoutMs: 5000 }), ping(await podNetns(real, b), ipOf(a), { count: 10, timeoutMs: 5000 })]);
    } finally {
      const packets = await capture.stop();
      const clear = clearPodPackets(packets, [CLUSTER_CIDR]);
      assert.deepEqual(clear.slice(0, 5).map((p) => p.summary || `${p.protocol} ${p.src} -> ${p.dst}`), [], `${clear.length} pod packets in clear on the underlay`);
      assert.ok(wireguardBetween(packets, real.nodes[0].underlayIP, real.nodes[1].underlayIP) >= 20, 'the pings crossed as WireGuard transport packets between the nodes');
    }
    for (const r of results) assert.ok(r.received >= 9, `pod to pod across real nodes: ${r.output}`);
  });

  test('4. the real nodes mesh with a sandbox node (agent as a process), both ways', async () => {
    assert.ok(installed, 'needs the install');
    sandboxNode = await mesh.addNode();
    await mesh.startAgent(sandboxNode.name, { flags: sandboxFlags() });
    const s = sandboxNode;
    const targets = sleepers.map((p) => ({ name: p.metadata.name, ip: ipOf(p) }));
    await mesh.waitFor('the sandbox pod reaches both real nodes\' pods and they reach it', async () => {
      const out = await Promise.all([
        ...targets.map((t) => ping(s.podNs, t.ip, { count: 1, timeoutMs: 1000 })),
        ...sleepers.map(async (p) => ping(await podNetns(real, p), s.podIp, { count: 1, timeoutMs: 1000 })),
      ]);
      return out.every((r) => r.ok);
    }, { timeoutMs: 90_000, intervalMs: 1000 });
    assert.equal((await routeTo(s.ns, targets[0].ip)).dev, s.interfaceName, 'the sandbox node sends to real pods through its tunnel');
    assert.equal((await routeTo(real.nodes[0].netns, s.podIp)).dev, INTERFACE, 'real-0 sends to the sandbox pod through wg-mesh');
    const capture = await mesh.startCapture();
    try {
      for (const p of sleepers) {
        assert.ok((await ping(s.podNs, ipOf(p), { count: 5, timeoutMs: 3000 })).received >= 4, `sandbox pod -> ${p.metadata.name}`);
        assert.ok((await ping(await podNetns(real, p), s.podIp, { count: 5, timeoutMs: 3000 })).received >= 4, `${p.metadata.name} -> sandbox pod`);
      }
    } finally {
      const clear = clearPodPackets(await capture.stop(), [CLUSTER_CIDR]);
      assert.deepEqual(clear.slice(0, 5).map((p) => p.summary || `${p.protocol} ${p.src} -> ${p.dst}`), [], `${clear.length} pod packets in clear on the underlay`);
    }
  });

  test("4b. kubectl port-forward to real-0's agent pod, then aks-mesh inspect --url through it with the token from the chart's Secret (issue 12)", async () => {
    assert.ok(installed, 'needs the install');
    const secret = await kubectlJson<{ data: { token: string } }>(real, ['get', 'secret', 'aks-mesh-stream-token', '-n', namespace]);
    const tokenFile = join(real.dir, 'stream.token');
    writeFileSync(tokenFile, Buffer.from(secret.data.token, 'base64'), { mode: 0o600 });
    const [n0, n1] = real.nodes;
    const pod = (await agentPods()).find((p) => p.spec.nodeName === n0.name);
    assert.ok(pod, `an agent pod on ${n0.name}`);
    // A real port-forward (API server -> kubelet -> containerd, which dials localhost:9587 in the
    // hostNetwork pod's namespace: the node's), on a local port kubectl picks.
    const forward = spawn(KUBECTL_BINARY, ['--kubeconfig', real.kubeconfigPath, '-n', namespace, 'port-forward', `pod/${pod.metadata.name}`, ':9587', '--address', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let said = '';
    forward.stdout.setEncoding('utf8').on('data', (d: string) => (said += d));
    forward.stderr.setEncoding('utf8').on('data', (d: string) => (said += d));
    try {
      const port = await waitFor(
        'kubectl port-forward to listen',
        () => {
          const m = /Forwarding from 127\.0\.0\.1:(\d+) -> 9587/.exec(said);
          if (!m && forward.exitCode !== null) throw new Error(`kubectl port-forward exited ${forward.exitCode}: ${said}`);
          return m?.[1];
        },
        60_000,
      );
      const url = `ws://127.0.0.1:${port}`;
      const t0 = performance.now();
      const device = JSON.parse(await execCli(['inspect', '--url', url, '--token-file', tokenFile, '--json'])) as { interface: string; publicKey: string; peers: Array<{ name?: string | null }> };
      note(`inspect --url through kubectl port-forward: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      assert.equal(device.interface, INTERFACE);
      assert.ok(device.peers.some((p) => p.name === `Peer/${n1.name}`), `real-0's stream names its peer ${n1.name}: ${JSON.stringify(device.peers.map((p) => p.name))}`);
      await assert.rejects(execCli(['inspect', '--url', url]), /the stream requires a token \(401 Unauthorized\)/);
    } finally {
      forward.kill('SIGTERM');
    }
  });

  test('5. helm upgrade to another image rolls the DaemonSet (lost pings reported); an agent container restart alone loses none', async () => {
    assert.ok(installed, 'needs the install');
    const upgradeTag = `upgrade-${tag}`;
    const retagged = await buildProductImage(['--tag', upgradeTag]);
    await real.importImage(retagged.archive);
    const before = await agentPods();
    const [a, b] = sleepers;
    const from = await podNetns(real, a);
    const { loss } = await measurePingLoss(from, ipOf(b), async () => {
      await helmOk(['upgrade', RELEASE, CHART, '--namespace', namespace, '--reuse-values', '--set', `image.tag=${upgradeTag}`, '--wait', '--timeout', '5m'], 'helm upgrade --wait (new image tag)');
      await kubectlOk(real, ['rollout', 'status', `ds/${AGENT_DS}`, '-n', namespace, '--timeout=180s']);
    }, { settleMs: 3000, track: (child) => mesh.box.track(child) });
    note(`pings lost across helm upgrade (real-0 pod -> real-1 pod, 5/s): ${formatPingLoss(loss)}`);
    const after = await waitPodsReady(real, namespace, 'app.kubernetes.io/component=agent', 2);
    const expected = `${splitReference(image.reference).repository}:${upgradeTag}`;
    for (const p of after) {
      assert.ok(!before.some((o) => o.metadata.uid === p.metadata.uid), `${p.metadata.name} is a new pod`);
      assert.deepEqual([...new Set(p.spec.containers.map((c) => c.image))], [expected], `${p.metadata.name} runs the new image`);
    }
    assert.ok(loss.sent > 0, formatPingLoss(loss));

    // Only the agent container of real-0's pod dies; its wireguard-go sidecar keeps the tunnel.
    const victim = after.find((p) => p.spec.nodeName === real.nodes[0].name);
    assert.ok(victim, 'an agent pod on real-0');
    const restartsBefore = victim.status.containerStatuses?.find((c) => c.name === 'agent')?.restartCount ?? 0;
    const oldId = containerIdOf(victim, 'agent');
    const restart = await measurePingLoss(from, ipOf(b), async () => {
      await killContainer(real, victim, 'agent');
      await waitFor('the agent container restarted and Ready', async () => {
        const [p] = (await agentPods()).filter((x) => x.metadata.uid === victim.metadata.uid);
        const c = p?.status.containerStatuses?.find((x) => x.name === 'agent');
        return c && c.restartCount > restartsBefore && c.ready && c.containerID && !c.containerID.endsWith(oldId);
      }, 120_000, 500);
    }, { settleMs: 3000, track: (child) => mesh.box.track(child) });
    note(`pings lost across an agent container restart (attach mode): ${formatPingLoss(restart.loss)}`);
    assert.ok(restart.loss.sent >= 10, formatPingLoss(restart.loss));
    assert.equal(restart.loss.lost, 0, `the agent's restart alone loses no ping: ${formatPingLoss(restart.loss)}`);
  });

  test('6. the gateway sidecar (the original snippet via gateway-patch, and the chart\'s) registers its Gateway and reaches every pod through its tunnel', async () => {
    assert.ok(installed, 'needs the install');
    const targets = [...sleepers.map(ipOf), ...(sandboxNode ? [sandboxNode.podIp] : [])];
    const [node0, node1] = real.nodes;
    const sa = 'konnectivity-agent';
    // Its own namespace, as kube-system holds a managed cluster's Konnectivity agent.
    const kas = `${namespace}-kas`;
    await createNamespace(kas);
    // A Konnectivity agent Deployment as a pipeline has it (here a stand-in of our image that dials
    // pods), then the gateway added exactly as the project's README always said, via gateway-patch.
    const standIn = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'konnectivity-agent', namespace: kas },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: 'konnectivity-snippet' } },
        template: {
          metadata: { labels: { app: 'konnectivity-snippet' } },
          spec: {
            serviceAccountName: sa,
            nodeSelector: { 'kubernetes.io/hostname': node0.name },
            containers: [{ name: 'konnectivity-agent', image: image.reference, imagePullPolicy: 'Never', command: ['node', '-e', DIALER], args: targets }],
          },
        },
      },
    };
    await kubectlOk(real, ['create', 'serviceaccount', sa, '-n', kas]);
    await kubectlOk(real, ['apply', '-f', '-'], stringify(standIn));
    const addressPlan = ['--service-cidr', plan().serviceCIDRs.join(','), '--cluster-cidr', plan().clusterCIDRs.join(','), '--node-cidr', plan().nodeCIDRs.join(',')];
    await kubectlOk(real, ['apply', '-f', '-'], await execCli(['gateway-patch', '--rbac', '--service-account', `${kas}/${sa}`]));
    const patch = await execCli(['gateway-patch', '--image', image.reference, '--image-pull-policy', 'Never', '--pod-cidr', CLUSTER_CIDR, ...addressPlan]);
    const patchFile = join(real.dir, 'gateway-patch.yaml');
    writeFileSync(patchFile, patch);
    await kubectlOk(real, ['patch', 'deployment', 'konnectivity-agent', '-n', kas, '--patch-file', patchFile]);
    const live = await kubectlJson<{ spec: { template: { spec: { containers: Array<{ name: string; command?: string[]; args?: string[] }> } } } }>(real, ['get', 'deployment', 'konnectivity-agent', '-n', kas]);
    const gw = live.spec.template.spec.containers.find((c) => c.name === 'aks-mesh-gateway');
    assert.deepEqual({ command: gw?.command, args: gw?.args }, { command: ['./gateway'], args: ['--node-name=$(NODE_NAME)', '--gateway-endpoint=$(NODE_IP)', `--pod-cidr=${CLUSTER_CIDR}`] }, 'the original snippet, as written');

    // The chart's own Konnectivity agent Deployment, with the same stand-in and the chart's sidecar, on the other node.
    const values = valuesFile('konnectivity', {
      konnectivity: {
        enabled: true,
        nodeSelector: { 'kubernetes.io/hostname': node1.name },
        agent: { image: image.reference, command: ['node', '-e', DIALER], args: targets },
        gateway: { podCIDRs: [CLUSTER_CIDR] },
      },
    });
    // Not --wait: the pods' readiness is asserted last, after what the gateway does is seen.
    await helmOk(['upgrade', RELEASE, CHART, '--namespace', namespace, '--reuse-values', '-f', values], 'helm upgrade (konnectivity.enabled)');

    // The pods that carry the sidecar (a Deployment's previous pod may still run during its rollout), with the stand-in running.
    const withGateway = (ns: string, selector: string) =>
      waitFor(`a running pod with the gateway sidecar (${selector} in ${ns})`, async () => {
        const pods = (await podsOf(real, ns, selector)).filter((p) => p.spec.containers.some((c) => c.name === 'aks-mesh-gateway') && p.status.phase === 'Running');
        return pods.length === 1 && pods[0].status.containerStatuses?.find((c) => c.name === 'konnectivity-agent')?.state?.running ? pods : false;
      }, 120_000, 1000);
    const gatewayPods = [...(await withGateway(kas, 'app=konnectivity-snippet')), ...(await withGateway(namespace, 'app.kubernetes.io/component=konnectivity-agent'))];
    const gateways = await waitFor('a Ready Gateway per gateway pod', async () => {
      const list = await kubectlJson<{ items: Array<{ metadata: { name: string }; spec: { nodeName?: string; endpoint?: string; podCIDRs?: string[] }; status?: { conditions?: Array<{ type: string; status: string }> } }> }>(real, ['get', 'gateways.aksmesh.io']);
      const ready = list.items.filter((g) => g.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
      return gatewayPods.every((p) => ready.some((g) => g.spec.nodeName === p.spec.nodeName)) ? ready : false;
    }, 120_000, 1000);
    note(`gateways: ${gateways.map((g) => `${g.metadata.name} (${g.spec.endpoint ?? 'no endpoint'})`).join(', ')}`);

    const capture = await mesh.startCapture();
    const gatewayIps = gatewayPods.map(ipOf);
    try {
      for (const p of gatewayPods) {
        const ns = await podNetns(real, p);
        for (const ip of targets) {
          const path = await routeTo(ns, ip);
          assert.notEqual(path.dev, 'eth0', `${p.metadata.name} sends to ${ip} through its tunnel, not the pod's eth0: ${path.text}`);
          await waitFor(`${p.metadata.name} reaches ${ip}`, async () => (await ping(ns, ip, { count: 1, timeoutMs: 1000 })).ok, 60_000, 500);
        }
      }
      // What the stand-in itself dials (the Konnectivity agent's part) gets there too.
      for (const p of gatewayPods) {
        await waitFor(`the stand-in in ${p.metadata.name} reaches every pod`, async () => {
          const logs = await real.kubectl(['logs', p.metadata.name, '-n', p.metadata.namespace, '-c', 'konnectivity-agent', '--tail=200']);
          return targets.every((ip) => logs.stdout.includes(`reached ${ip}`));
        }, 60_000, 2000);
      }
    } finally {
      const packets = await capture.stop();
      const clear = clearPodPackets(packets, [CLUSTER_CIDR]).filter((p) => gatewayIps.includes(p.src) || gatewayIps.includes(p.dst));
      assert.deepEqual(clear.slice(0, 5).map((p) => p.summary || `${p.protocol} ${p.src} -> ${p.dst}`), [], `${clear.length} packets of the gateway pods in clear on the underlay`);
    }
    // What an operator sees: both Konnectivity agent pods Ready (the gateway's probes answered), none restarting.
    let last: Pod[] = [];
    const ready = await waitFor('both gateway pods Ready', async () => {
      last = await Promise.all(gatewayPods.map(async (p) => (await podsOf(real, p.metadata.namespace, `pod-template-hash=${p.metadata.labels?.['pod-template-hash'] ?? ''}`))[0] ?? p));
      return last.every(podReady);
    }, 60_000, 1000).catch(() => false);
    if (!ready) {
      // kubelet probes a pod from its node's bridge address, inside the pod CIDRs: say where the answer goes.
      const paths = await Promise.all(last.map(async (p) => {
        const bridge = real.node(p.spec.nodeName ?? '').podCIDR.replace(/\.0\/24$/, '.1');
        try {
          const path = await routeTo(await podNetns(real, p), bridge, { from: ipOf(p) });
          return `${p.metadata.name}: its answer to kubelet's probe from ${bridge} leaves through ${path.dev || path.text} (peers accept from a gateway only its mesh IP)`;
        } catch (err) {
          return `${p.metadata.name}: ${(err as Error).message}`;
        }
      }));
      assert.fail(`the Konnectivity agent pods with the gateway sidecar are Ready:\n${last.map(podProblem).join('\n')}\n${paths.join('\n')}`);
    }
    // The snippet's Deployment is not the chart's: gone before the uninstall, as its owner would remove it.
    await kubectlOk(real, ['delete', 'deployment', 'konnectivity-agent', '-n', kas, '--wait=true']);
  });

  test('7. helm uninstall leaves every real node clean, pod traffic takes the plain routes, Peers gone, CRDs kept', async () => {
    assert.ok(installed, 'needs the install');
    // The snippet's stand-in (not the chart's) goes first, also when test 6 stopped half-way.
    await real.kubectl(['delete', 'namespace', `${namespace}-kas`, '--wait=false']);
    await helmOk(['uninstall', RELEASE, '--namespace', namespace, '--wait', '--timeout', '5m'], 'helm uninstall --wait (pre-delete cleanup hook)');
    installed = false;
    for (const n of real.nodes) {
      // The node's /run is private (its holder's mount namespace): its socket folder seen through /proc.
      const report = await checkNodeClean(n.netns, settings, { socketDir: `/proc/${n.holderPid}/root/run/wireguard`, anySocket: true });
      assert.deepEqual(report.problems, [], `${n.name} is clean after helm uninstall`);
    }
    const [a, b] = sleepers;
    for (const [from, to] of [[a, b], [b, a]]) {
      const path = await routeTo(real.node(from.spec.nodeName ?? '').netns, ipOf(to));
      assert.equal(path.dev, real.node(from.spec.nodeName ?? '').underlayInterface, `${from.spec.nodeName} -> ${to.metadata.name} over the plain route: ${path.text}`);
      const r = await ping(await podNetns(real, from), ipOf(to), { count: 5, timeoutMs: 3000 });
      assert.ok(r.received >= 4, `pod traffic works again after uninstall: ${r.output}`);
    }
    const peers = (await kubectlJson<{ items: Array<{ metadata: { name: string } }> }>(real, ['get', 'peers.aksmesh.io'])).items.map((p) => p.metadata.name);
    for (const n of real.nodes) assert.ok(!peers.includes(n.name), `Peer ${n.name} removed by its node's cleanup (left: ${peers.join(', ')})`);
    const crds = await real.kubectl(['get', 'crd', 'peers.aksmesh.io', 'gateways.aksmesh.io']);
    assert.equal(crds.code, 0, `Helm keeps the chart's CRDs (crds/): ${crds.stderr}`);
    note(`after uninstall: Peers left ${peers.length ? peers.join(', ') : 'none'} (the sandbox node's is not the chart's); CRDs kept`);
  });
});

/** The aks-mesh CLI of this checkout (what gateway-patch prints); throws with its stderr. */
function execCli(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(join(ROOT, 'node_modules', '.bin', 'node'), [join(ROOT, 'cli', 'main.ts'), ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, AKS_MESH_STREAM_TOKEN: '' } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`aks-mesh ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}
