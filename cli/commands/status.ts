/**
 * `aks-mesh status`: the mesh's health at a glance, from the status every member writes on its own
 * Peer or Gateway (Ready, peers configured, recent handshakes, last sync) and the Accepted condition
 * agents write on objects the trust rules refused.
 */
import type { Argv } from 'yargs';
import { loadKubeConfig } from '../kubeconfig.ts';

interface StatusArgs {
  kubeconfig?: string;
  json: boolean;
}

interface Row {
  kind: 'Peer' | 'Gateway';
  name: string;
  node: string;
  meshIP: string;
  ready: string;
  accepted: string;
  peers: string;
  handshakes: string;
  lastSync: string;
  problem: string;
}

export function statusCommand(y: Argv): Argv {
  return y.command<StatusArgs>(
    'status',
    'Show every Peer and Gateway with its Ready and Accepted conditions, peers configured and recent handshakes',
    (c) =>
      c
        .option('kubeconfig', { type: 'string', describe: 'kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)' })
        .option('json', { type: 'boolean', default: false, describe: 'Print JSON instead of a table' }) as unknown as Argv<StatusArgs>,
    async (a) => {
      const k8s = await import('@kubernetes/client-node');
      const { GROUP, VERSION, apiMessage } = await import('../../mesh/index.ts');
      const kc = await loadKubeConfig(a.kubeconfig);
      const api = kc.makeApiClient(k8s.CustomObjectsApi);
      type Obj = { metadata: { name: string }; spec?: { nodeName?: string; meshIP?: string }; status?: import('../../mesh/index.ts').MeshStatus };
      const list = async (plural: string): Promise<Obj[]> => {
        try {
          return ((await api.listClusterCustomObject({ group: GROUP, version: VERSION, plural })) as { items: Obj[] }).items;
        } catch (err) {
          throw new Error(`listing ${plural}.${GROUP}: ${apiMessage(err)}`);
        }
      };
      const now = Date.now();
      const rows: Row[] = [];
      for (const [kind, items] of [['Peer', await list('peers')], ['Gateway', await list('gateways')]] as const) {
        for (const o of items) {
          const cond = (type: string) => o.status?.conditions?.find((c) => c.type === type);
          const ready = cond('Ready');
          const accepted = cond('Accepted');
          const p = o.status?.peers;
          const sync = o.status?.lastSyncTime ? Math.round((now - new Date(o.status.lastSyncTime).getTime()) / 1000) : null;
          rows.push({
            kind,
            name: o.metadata.name,
            node: o.spec?.nodeName ?? '-',
            meshIP: o.spec?.meshIP ?? '-',
            ready: ready?.status ?? '-',
            accepted: accepted?.status ?? '-',
            peers: p ? `${p.configured}/${p.desired}` : '-',
            handshakes: p ? `${p.handshakeWithin3m}/${p.desired}` : '-',
            lastSync: sync === null ? '-' : `${sync}s ago`,
            problem: accepted?.status === 'False' ? accepted.message : ready?.status === 'False' ? ready.message : '',
          });
        }
      }
      if (a.json) {
        process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
        return;
      }
      const header = ['KIND', 'NAME', 'NODE', 'MESH IP', 'READY', 'ACCEPTED', 'PEERS', 'HANDSHAKES<3M', 'LAST SYNC', 'PROBLEM'];
      const cells = rows.map((r) => [r.kind, r.name, r.node, r.meshIP, r.ready, r.accepted, r.peers, r.handshakes, r.lastSync, r.problem]);
      const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
      for (const line of [header, ...cells]) process.stdout.write(`${line.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()}\n`);
      if (rows.length === 0) process.stdout.write('no Peers or Gateways: is the agent DaemonSet running?\n');
    },
  );
}
