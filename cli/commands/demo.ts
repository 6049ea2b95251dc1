import type { Argv } from 'yargs';
import { Sandbox, networkTestsUnavailable } from '../../e2e/sandbox.ts';
import { tcpTransfer } from '../../e2e/tcp.ts';
import { startTunnel, stopTunnel, waitForPing } from '../../e2e/tunnel.ts';
import type { TunnelNode } from '../../e2e/tunnel.ts';
import { wireguardGoVersion } from '../../native/index.ts';
import { formatText } from '../format.ts';

interface DemoArgs {
  once: boolean;
}

export function demoCommand(y: Argv): Argv {
  return y.command<DemoArgs>(
    'demo',
    'Build a local mesh in network namespaces on this machine (needs root), show connectivity and every device, tear down on Ctrl-C',
    (c) =>
      c.option('once', {
        type: 'boolean',
        default: false,
        describe: 'Tear down right after printing instead of waiting for Ctrl-C',
      }) as unknown as Argv<DemoArgs>,
    async (a) => {
      const unavailable = networkTestsUnavailable();
      if (unavailable) throw new Error(`demo ${unavailable}: run it as root (sudo scripts/demo)`);
      const box = new Sandbox({ exitOnSignal: false });
      const out = (line = ''): boolean => process.stdout.write(`${line}\n`);
      let nodes: { a: TunnelNode; b: TunnelNode } | undefined;
      try {
        out('AKS Mesh demo: two nodes, each a network namespace with its own wireguard-go, on a veth underlay');
        nodes = await startTunnel(box);
        const all = [nodes.a, nodes.b];
        out(`wireguard-go ${wireguardGoVersion(nodes.a.wg.binary)} (${nodes.a.wg.binary}), configured only through its UAPI socket`);
        for (const n of all) out(`  node-${n.name}: namespace ${n.ns}, underlay ${n.underlayIp}, mesh ${n.meshIp}, interface ${n.interfaceName}`);
        out();
        out('connectivity over the tunnel (ping mesh IP):');
        out(`  ${'from \\ to'.padEnd(10)}${all.map((n) => `node-${n.name}`.padEnd(10)).join('')}`);
        for (const from of all) {
          const cells: string[] = [];
          for (const to of all) {
            if (from === to) cells.push('-'.padEnd(10));
            else cells.push((await waitForPing(box, from.ns, to.meshIp, 10_000) ? 'ok' : 'FAIL').padEnd(10));
          }
          out(`  ${`node-${from.name}`.padEnd(10)}${cells.join('')}`);
        }
        const bytes = 32 * 1024 * 1024;
        const t = await tcpTransfer(box, nodes.a, { ns: nodes.b.ns, ip: nodes.b.meshIp }, bytes);
        out(
          `TCP node-a -> node-b: ${t.received} of ${t.sent} bytes, ${t.intact ? 'intact (sha256 matches)' : 'CORRUPTED'}, ` +
            `${((t.received * 8) / t.seconds / 1e6).toFixed(0)} Mbit/s`,
        );
        for (const n of all) {
          out();
          out(`$ aks-mesh inspect -i ${n.interfaceName}    # node-${n.name}`);
          process.stdout.write(formatText(await n.wg.client.get(), { interfaceName: n.interfaceName }));
        }
        out();
        if (!a.once) {
          out('The mesh is up. Try: ip netns exec ' + nodes.a.ns + ' ping ' + nodes.b.meshIp);
          out('Press Ctrl-C to tear it down.');
          await new Promise<void>((resolve) => {
            process.once('SIGINT', resolve);
            process.once('SIGTERM', resolve);
          });
        }
      } finally {
        if (nodes) await stopTunnel(nodes);
        await box.cleanup();
        out('torn down: namespaces and wireguard-go processes removed');
      }
    },
  );
}
