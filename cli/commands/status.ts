/**
 * `aks-mesh status`: the mesh's health at a glance, from the status every member writes on its own
 * Peer or Gateway (Ready, peers configured, recent handshakes, last sync) and the Accepted condition
 * agents write on objects the trust rules refused; and a warning when the API server does not bind
 * writes to nodes (no node-bound-writes policy). Everything printed comes from the API, so control
 * characters and terminal escapes are stripped first.
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

// Matching control characters is the point of these two expressions.
/** Terminal escape sequences: CSI (ESC [ … final), OSC (ESC ] … BEL or ESC \\), and other ESC sequences (ESC, intermediates, one final: ESC c, ESC ( B). */
// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -/]*[0-~]?/g;
/** Line breaks and tabs (shown as one space), then every other C0/C1 control, bidi override and zero-width mark (dropped). */
const BREAKS = /[\t\n\v\f\r\u0085\u2028\u2029]+/g;
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/g;

/**
 * Text from the API as it may reach a terminal: no escape sequences (colours, cursor moves, window
 * titles, hyperlinks), no control characters, no bidi overrides that reorder what is shown; a line
 * break becomes a space, so one object stays one row.
 */
export function printable(text: string): string {
  return text.replace(ESCAPES, '').replace(BREAKS, ' ').replace(CONTROLS, '');
}

/** What `status` found out about node-bound writes (DESIGN: the node-bound-writes policy). */
export interface NodeBoundCheck {
  /** Whether the API server serves admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy. */
  served: boolean;
  /** The policy and its binding: present, missing, or not readable by this user ('unknown'). */
  policy?: 'present' | 'missing' | 'unknown';
  binding?: 'present' | 'missing' | 'unknown';
}

// The agents' `patch nodes` ships only with the policy (config/admission, the chart's admission.yaml):
// without it they cannot remove their Node's not-ready taint, and someone has to.
const NOT_BOUND =
  "writes are not node-bound: a compromised node could rewrite other nodes' Peers and take their traffic; " +
  'the agents also cannot remove their Node\'s not-ready taint (aksmesh.io/agent-not-ready) without it: operators remove it (kubectl taint nodes <node> aksmesh.io/agent-not-ready:NoSchedule-)';

/** The warning `status` prints for a check, or null when writes are node-bound. */
export function nodeBoundWarning(check: NodeBoundCheck, policyName: string): string | null {
  if (!check.served) {
    return `warning: this API server does not serve ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1, Kubernetes >= 1.30), so ${NOT_BOUND}`;
  }
  const missing = [check.policy === 'missing' && 'ValidatingAdmissionPolicy', check.binding === 'missing' && 'ValidatingAdmissionPolicyBinding'].filter(Boolean);
  if (missing.length) return `warning: ${missing.join(' and ')} ${policyName} not installed (see config/admission or the chart's nodeBoundWrites), so ${NOT_BOUND}`;
  if (check.policy === 'unknown' || check.binding === 'unknown') {
    return `warning: could not read ValidatingAdmissionPolicy ${policyName} or its binding with these credentials; writes may not be node-bound`;
  }
  return null;
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
      const { GROUP, VERSION, NODE_BOUND_POLICY, apiMessage } = await import('../../mesh/index.ts');
      const kc = await loadKubeConfig(a.kubeconfig);
      const api = kc.makeApiClient(k8s.CustomObjectsApi);
      const admission = kc.makeApiClient(k8s.AdmissionregistrationV1Api);
      const code = (err: unknown) => (err instanceof k8s.ApiException ? err.code : 0);
      const check = async (): Promise<NodeBoundCheck> => {
        try {
          const resources = await admission.getAPIResources();
          if (!resources.resources.some((r) => r.name === 'validatingadmissionpolicies')) return { served: false };
        } catch (err) {
          if (code(err) === 404) return { served: false };
          return { served: true, policy: 'unknown', binding: 'unknown' };
        }
        const state = (read: Promise<unknown>) =>
          read.then(
            () => 'present' as const,
            (err: unknown) => (code(err) === 404 ? ('missing' as const) : ('unknown' as const)),
          );
        const [policy, binding] = await Promise.all([
          state(admission.readValidatingAdmissionPolicy({ name: NODE_BOUND_POLICY })),
          state(admission.readValidatingAdmissionPolicyBinding({ name: NODE_BOUND_POLICY })),
        ]);
        return { served: true, policy, binding };
      };
      const checked = check();
      type Obj = { metadata: { name: string }; spec?: { nodeName?: string; meshIP?: string }; status?: import('../../mesh/index.ts').MeshStatus };
      const list = async (plural: string): Promise<Obj[]> => {
        try {
          return ((await api.listClusterCustomObject({ group: GROUP, version: VERSION, plural })) as { items: Obj[] }).items;
        } catch (err) {
          throw new Error(`listing ${plural}.${GROUP}: ${printable(apiMessage(err))}`);
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
          const row: Row = {
            kind,
            name: o.metadata.name,
            node: o.spec?.nodeName ?? '-',
            meshIP: o.spec?.meshIP ?? '-',
            ready: ready?.status ?? '-',
            accepted: accepted?.status ?? '-',
            peers: p ? `${p.configured}/${p.desired}` : '-',
            handshakes: p ? `${p.handshakeWithin3m}/${p.desired}` : '-',
            lastSync: sync === null ? '-' : `${sync}s ago`,
            problem: (accepted?.status === 'False' ? accepted.message : ready?.status === 'False' ? ready.message : '') ?? '',
          };
          // Every field may carry what a writer put into the API (messages above all).
          for (const field of ['name', 'node', 'meshIP', 'ready', 'accepted', 'peers', 'handshakes', 'lastSync', 'problem'] as const) row[field] = printable(String(row[field]));
          rows.push(row);
        }
      }
      // On stderr, so that --json output stays one JSON document.
      const warning = nodeBoundWarning(await checked, NODE_BOUND_POLICY);
      if (warning) process.stderr.write(`${warning}\n`);
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
