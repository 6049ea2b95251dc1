/**
 * `aks-mesh demo`: the README's first command. Builds a whole mesh on this machine — nodes with a pod
 * each and a Konnectivity-side gateway, each a network namespace on one underlay bridge with its own
 * `aks-mesh agent|gateway` process and wireguard-go — against a real kube-apiserver + etcd when one is
 * built (sandbox/build-apiserver.sh), else from a peers directory. Prints the connectivity matrix
 * and every device, and tears it all down on Ctrl-C (or at once with --once).
 */
import type { Argv } from 'yargs';
import { UsageError } from '../format.ts';

interface DemoArgs {
  once: boolean;
  nodes: number;
  'transfer-mib': number;
}

export function demoCommand(y: Argv): Argv {
  return y.command<DemoArgs>(
    'demo',
    'Build a local mesh (nodes, pods and a gateway in network namespaces; needs root), show connectivity and every device, tear down on Ctrl-C',
    (c) =>
      c
        .option('once', { type: 'boolean', default: false, describe: 'Tear down right after printing instead of waiting for Ctrl-C' })
        .option('nodes', { type: 'number', default: 3, describe: 'How many nodes (2 to 9)' })
        .option('transfer-mib', { type: 'number', default: 32, describe: 'Size of the hashed TCP transfer between two pods' })
        .check((a) => {
          if (!Number.isInteger(a.nodes) || a.nodes < 2 || a.nodes > 9) throw new UsageError(`--nodes ${a.nodes}: expected 2 to 9`);
          return true;
        }) as unknown as Argv<DemoArgs>,
    async (a) => runDemo(a),
  );
}

async function runDemo(a: DemoArgs): Promise<void> {
  const { networkTestsUnavailable } = await import('../../sandbox/sandbox.ts');
  const unavailable = networkTestsUnavailable();
  if (unavailable) throw new Error(`demo ${unavailable}: run it as root (sudo scripts/demo)`);
  const { MeshCluster } = await import('../../sandbox/cluster.ts');
  const { findApiServer } = await import('../../sandbox/apiserver.ts');
  const { UapiClient, wireguardGoVersion, findWireguardGo } = await import('../../native/index.ts');
  const { formatText } = await import('../format.ts');
  const out = (line = ''): boolean => process.stdout.write(`${line}\n`);

  const source = findApiServer() ? 'kube' : 'dir';
  out(`AKS Mesh demo: ${a.nodes} nodes with a pod each and a gateway, each a network namespace with its own agent and wireguard-go`);
  if (source === 'dir') {
    out('kube-apiserver is not built yet (sandbox/build-apiserver.sh builds it in a few minutes; scripts/test does):');
    out('using a peers directory (--peers-dir) instead of the Kubernetes API.');
  }
  const c = await MeshCluster.start({ nodes: a.nodes, gateway: true, source, exitOnSignal: false, resyncSeconds: 30 });
  let interrupted = false;
  const onSignal = (): void => {
    interrupted = true;
  };
  try {
    const wg = findWireguardGo();
    out(`wireguard-go ${wireguardGoVersion(wg)} (${wg}); API: ${c.kube ? `kube-apiserver 1.20.2 at ${c.kube.server.replace('127.0.0.1', c.underlay.hostIp)}` : `directory ${c.peersDir}`}`);
    if (source === 'dir') writeDirectoryPeers(c);
    for (const m of [...c.nodes, ...(c.gateway ? [c.gateway] : [])]) await c.startAgent(m.name);
    for (const m of [...c.nodes, ...(c.gateway ? [c.gateway] : [])]) {
      out(`  ${m.name.padEnd(8)} namespace ${m.ns}, underlay ${m.underlayIp}, interface ${m.interfaceName}${'podIp' in m ? `, pod ${m.podIp} in ${m.podCIDR}` : `, routes ${m.podCIDRs.join(',')}`}`);
    }
    const matrix = await c.waitForMatrix({ timeoutMs: 90_000 }).catch(async () => c.matrix());
    out();
    out('connectivity, pod to pod and gateway to pod (ping):');
    for (const line of matrix.table.split('\n')) out(`  ${line}`);
    const bytes = a['transfer-mib'] * 1024 * 1024;
    const [n0, n1] = c.nodes;
    const t = await c.tcp(n0.name, n1.name, bytes);
    out(`TCP ${n0.name} pod -> ${n1.name} pod: ${t.received} of ${t.sent} bytes, ${t.intact ? 'intact (sha256 matches)' : 'CORRUPTED'}, ${((t.received * 8) / t.seconds / 1e6).toFixed(0)} Mbit/s`);
    if (c.kube) {
      out();
      out('$ kubectl get mp,mgw');
      out((await c.kube.kubectl(['get', 'mp,mgw'])).stdout.trimEnd());
    }
    for (const m of [...c.nodes, ...(c.gateway ? [c.gateway] : [])]) {
      out();
      out(`$ aks-mesh inspect -i ${m.interfaceName}    # ${m.name}`);
      process.stdout.write(formatText(await new UapiClient(m.socketPath).get(), { interfaceName: m.interfaceName }));
    }
    out();
    if (!matrix.ok) throw new Error(`the mesh did not converge: ${matrix.failed.map((f) => `${f.from}->${f.to}`).join(', ')}; agent logs under ${c.dir}`);
    if (!a.once) {
      out(`The mesh is up. Try: ip netns exec ${n0.podNs} ping ${n1.podIp}`);
      out('Press Ctrl-C to tear it down.');
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      while (!interrupted) await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    await c.stop();
    out('torn down: agents, wireguard-go, namespaces and the API server are gone');
  }
}

/** Without an API server nobody registers Peers: write what each agent would have registered. */
function writeDirectoryPeers(c: import('../../sandbox/cluster.ts').MeshCluster): void {
  const objects: object[] = c.nodes.map((n, i) => ({
    apiVersion: 'aksmesh.io/v1alpha1',
    kind: 'Peer',
    metadata: { name: n.name },
    spec: { publicKey: n.publicKey, endpoint: n.endpoint, allowedIPs: [n.podCIDR], meshIP: `100.96.0.${i + 1}`, nodeName: n.name },
  }));
  if (c.gateway) {
    objects.push({
      apiVersion: 'aksmesh.io/v1alpha1',
      kind: 'Gateway',
      metadata: { name: c.gateway.name },
      spec: { publicKey: c.gateway.publicKey, endpoint: c.gateway.endpoint, meshIP: '100.96.255.1', podCIDRs: c.gateway.podCIDRs },
    });
  }
  c.writePeersFile('members.yaml', objects);
}
