/**
 * `aks-mesh status`: the mesh's health at a glance, from the status every member writes on its own
 * Peer or Gateway (Ready, peers configured, recent handshakes, last sync, the peers it finds
 * unhealthy and why) and the Accepted condition agents write on objects the trust rules refused; the
 * broken pairs, each named once with who reports it; and a warning when the API server does not bind
 * writes to nodes (no node-bound-writes policy). Everything printed comes from the API, so control
 * characters and terminal escapes are stripped first.
 */
import type { Argv } from 'yargs';
import { UNHEALTHY_REASONS } from '../../mesh/crd/schema.ts';
import type { PeerHealth, UnhealthyReason } from '../../mesh/crd/types.ts';
import { UsageError } from '../format.ts';
import { loadKubeConfig } from '../kubeconfig.ts';

interface StatusArgs {
  kubeconfig?: string;
  json: boolean;
  local: boolean;
  'control-socket'?: string;
  interface?: string;
  timeout?: number;
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
  /** status.peers.summary: healthy/desired. */
  healthy: string;
  lastSync: string;
  problem: string;
}

/** What `status` reads of one member for the broken pairs: its object and the health on its status. */
export interface MemberHealth {
  kind: 'Peer' | 'Gateway';
  name: string;
  health?: PeerHealth;
  /** The Accepted condition's message when the trust rules refused this object. */
  refusedMessage?: string;
}

/** A pair of members at least one of which lists the other as unhealthy, named once. */
export interface BrokenPair {
  /** The two members as printed (a Peer by its name, a Gateway as Gateway/<name>), in order. */
  members: [string, string];
  /** Each reason given, with who gave it (sorted). */
  reasons: Array<{ reason: string; reportedBy: string[]; lastHandshake?: string }>;
}

/** An object the trust rules refused, with the members that list it and the reason written on it. */
export interface RefusedObject {
  kind: 'Peer' | 'Gateway';
  name: string;
  reportedBy: string[];
  message?: string;
}

export interface MeshHealth {
  brokenPairs: BrokenPair[];
  refused: RefusedObject[];
  /**
   * Members whose list was cut (status.peers.unhealthyOmitted): more broken pairs than shown, or,
   * with `refusedOnly`, only more refused objects (pairs come first in a list, so once a list holds a
   * Refused entry every pair of that member is in it).
   */
  omitted: Array<{ member: string; count: number; refusedOnly?: true }>;
}

/** How a member is named in a pair: a Peer by its name, a Gateway as Gateway/<name> (names have no '/', so they cannot collide). */
export function memberLabel(kind: 'Peer' | 'Gateway', name: string): string {
  return printable(kind === 'Peer' ? name : `Gateway/${name}`);
}

const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Every reason a member may list (UNHEALTHY_REASONS, the CRD's enum), in words, for --help. */
const REASON_WORDS: Record<UnhealthyReason, string> = {
  NoHandshake: 'configured, never a handshake',
  StaleHandshake: 'the last handshake is older than 3 minutes',
  NoEndpoint: 'no endpoint known and no recent handshake',
  NotConfigured: 'desired but not on the device',
  DeviceUnreadable: 'the reporting member cannot read its own device: wireguard-go hung or gone; it counts none of its peers healthy',
  Refused: 'the trust rules refused the object; listed under refused, not as a pair',
};
export const REASON_HELP = UNHEALTHY_REASONS.map((r) => `${r} (${REASON_WORDS[r]})`).join('; ');

/**
 * The broken pairs from every member's status.peers.unhealthy (contract: a pair is unhealthy when
 * either side lists the other), each unordered pair once with its reasons and reporters; the
 * refused objects apart (listed by members, or carrying Accepted=False). Pure: `status` and the
 * dashboard read the same answer from the same objects.
 */
export function meshHealth(members: readonly MemberHealth[]): MeshHealth {
  const pairs = new Map<string, { members: [string, string]; reasons: Map<string, { reporters: Set<string>; lastHandshake?: string }> }>();
  const refused = new Map<string, { kind: 'Peer' | 'Gateway'; name: string; reporters: Set<string>; message?: string }>();
  const omitted: MeshHealth['omitted'] = [];
  const refusedEntry = (kind: 'Peer' | 'Gateway', name: string) => {
    const key = `${kind}/${name}`;
    let r = refused.get(key);
    if (!r) refused.set(key, (r = { kind, name: printable(name), reporters: new Set() }));
    return r;
  };
  for (const m of members) {
    const self = memberLabel(m.kind, m.name);
    if (m.refusedMessage !== undefined) refusedEntry(m.kind, m.name).message = printable(m.refusedMessage);
    const h = m.health;
    if (h?.unhealthyOmitted) {
      const refusedOnly = Array.isArray(h.unhealthy) && h.unhealthy.some((u) => u?.reason === 'Refused');
      omitted.push({ member: self, count: h.unhealthyOmitted, ...(refusedOnly ? { refusedOnly: true as const } : {}) });
    }
    for (const u of Array.isArray(h?.unhealthy) ? h.unhealthy : []) {
      // The schema holds these shapes, but an older CRD (or a hand-written status) may not.
      if (u === null || typeof u !== 'object' || (u.kind !== 'Peer' && u.kind !== 'Gateway') || typeof u.name !== 'string') continue;
      if (u.reason === 'Refused') {
        refusedEntry(u.kind, u.name).reporters.add(self);
        continue;
      }
      const other = memberLabel(u.kind, u.name);
      const ends = [self, other].sort(byText) as [string, string];
      const key = ends.join('\0');
      let pair = pairs.get(key);
      if (!pair) pairs.set(key, (pair = { members: ends, reasons: new Map() }));
      const reason = printable(String(u.reason));
      let r = pair.reasons.get(reason);
      if (!r) pair.reasons.set(reason, (r = { reporters: new Set() }));
      r.reporters.add(self);
      if (typeof u.lastHandshake === 'string' && (!r.lastHandshake || u.lastHandshake > r.lastHandshake)) r.lastHandshake = printable(u.lastHandshake);
    }
  }
  const brokenPairs = [...pairs.values()]
    .sort((a, b) => byText(a.members[0], b.members[0]) || byText(a.members[1], b.members[1]))
    .map((p) => ({
      members: p.members,
      reasons: [...p.reasons.entries()]
        .sort(([a], [b]) => byText(a, b))
        .map(([reason, r]) => ({ reason, reportedBy: [...r.reporters].sort(byText), ...(r.lastHandshake ? { lastHandshake: r.lastHandshake } : {}) })),
    }));
  const refusedList = [...refused.values()]
    .sort((a, b) => byText(a.kind, b.kind) || byText(a.name, b.name))
    .map((r) => ({ kind: r.kind, name: r.name, reportedBy: [...r.reporters].sort(byText), ...(r.message !== undefined ? { message: r.message } : {}) }));
  return { brokenPairs, refused: refusedList, omitted: omitted.sort((a, b) => byText(a.member, b.member)) };
}

/** The broken pairs and refused objects as text lines (what `status` prints under its table). */
export function meshHealthLines(h: MeshHealth, members: number): string[] {
  const lines: string[] = [];
  if (members > 0) lines.push(h.brokenPairs.length ? 'broken pairs:' : 'broken pairs: none');
  for (const p of h.brokenPairs) {
    const why = p.reasons
      .map((r) => {
        // Said by the member that cannot read its device, about itself: name it as the cause.
        const by = r.reason === 'DeviceUnreadable' ? `${r.reportedBy.join(', ')} cannot read ${r.reportedBy.length === 1 ? 'its' : 'their'} own device` : `reported by ${r.reportedBy.join(', ')}`;
        return `${r.reason} (${by}${r.lastHandshake ? `; last handshake ${r.lastHandshake}` : ''})`;
      })
      .join('; ');
    lines.push(`  ${p.members[0]} ↔ ${p.members[1]}: ${why}`);
  }
  for (const o of h.omitted) {
    const what = o.refusedOnly ? `refused object${o.count === 1 ? '' : 's'}` : `unhealthy peer${o.count === 1 ? '' : 's'}`;
    lines.push(`  ${o.member} lists ${o.count} more ${what} than its status holds`);
  }
  if (h.refused.length) lines.push('refused:');
  for (const r of h.refused) {
    const by = r.reportedBy.length ? ` (reported by ${r.reportedBy.join(', ')})` : '';
    lines.push(`  ${r.kind} ${r.name}: ${r.message ?? 'refused by the trust rules'}${by}`);
  }
  return lines;
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
    `Show every Peer and Gateway with its Ready and Accepted conditions, HEALTHY (peers with a handshake within 3 minutes / desired peers), peers configured and recent handshakes, then the broken pairs and the refused objects. A pair is broken when either member lists the other as unhealthy on its status, with the reason: ${REASON_HELP}`,
    (c) =>
      c
        .option('kubeconfig', { type: 'string', describe: 'kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)' })
        .option('json', { type: 'boolean', default: false, describe: 'Print JSON instead of a table: {members: [rows], brokenPairs, refused, omitted}' })
        .option('local', {
          type: 'boolean',
          default: false,
          describe: 'Ask the agent or gateway on this machine through its control socket instead of the API: desired against live, refused peers and why, the last pass, wireguard-go and its restarts. Exit 0: in sync; 1: not in sync, the last pass failed, the device cannot be read, or the agent could not be asked (the last line or stderr says which)',
        })
        .option('control-socket', { type: 'string', describe: 'With --local: the control socket (default /var/run/aks-mesh/<interface>.sock; env AKS_MESH_CONTROL_SOCKET)' })
        .option('interface', { alias: 'i', type: 'string', describe: 'With --local: the member\'s interface, which names its socket (default: $AKS_MESH_INTERFACE, else wg-mesh)' })
        .option('timeout', { type: 'number', describe: 'With --local: seconds to wait for the answer (default 30)' })
        .check((a) => {
          if (!a.local && (a['control-socket'] !== undefined || a.interface !== undefined || a.timeout !== undefined)) throw new UsageError('--control-socket, --interface and --timeout go with --local');
          if (a.timeout !== undefined && (!Number.isFinite(a.timeout) || a.timeout <= 0)) throw new UsageError(`--timeout ${a.timeout}: expected a positive number of seconds`);
          if (a.local && a.kubeconfig !== undefined) throw new UsageError('--local asks the member on this machine, not the API: drop --kubeconfig');
          return true;
        }) as unknown as Argv<StatusArgs>,
    async (a) => {
      if (a.local) {
        const { runLocalStatus } = await import('../control-client.ts');
        await runLocalStatus({ socket: a['control-socket'], interface: a.interface, json: a.json, ...(a.timeout !== undefined ? { timeoutMs: a.timeout * 1000 } : {}) });
        return;
      }
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
      const members: MemberHealth[] = [];
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
            healthy: typeof p?.summary === 'string' ? p.summary : '-',
            lastSync: sync === null ? '-' : `${sync}s ago`,
            problem: (accepted?.status === 'False' ? accepted.message : ready?.status === 'False' ? ready.message : '') ?? '',
          };
          // Every field may carry what a writer put into the API (messages above all).
          for (const field of ['name', 'node', 'meshIP', 'ready', 'accepted', 'peers', 'handshakes', 'healthy', 'lastSync', 'problem'] as const) row[field] = printable(String(row[field]));
          rows.push(row);
          members.push({ kind, name: o.metadata.name, ...(p ? { health: p } : {}), ...(accepted?.status === 'False' ? { refusedMessage: accepted.message ?? '' } : {}) });
        }
      }
      // On stderr, so that --json output stays one JSON document.
      const warning = nodeBoundWarning(await checked, NODE_BOUND_POLICY);
      if (warning) process.stderr.write(`${warning}\n`);
      const health = meshHealth(members);
      if (a.json) {
        process.stdout.write(`${JSON.stringify({ members: rows, ...health }, null, 2)}\n`);
        return;
      }
      // HEALTHY is status.peers.summary, the same n/m as `kubectl get mp -o wide`.
      const header = ['KIND', 'NAME', 'NODE', 'MESH IP', 'READY', 'ACCEPTED', 'HEALTHY', 'PEERS', 'HANDSHAKES<3M', 'LAST SYNC', 'PROBLEM'];
      const cells = rows.map((r) => [r.kind, r.name, r.node, r.meshIP, r.ready, r.accepted, r.healthy, r.peers, r.handshakes, r.lastSync, r.problem]);
      const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
      for (const line of [header, ...cells]) process.stdout.write(`${line.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()}\n`);
      if (rows.length === 0) process.stdout.write('no Peers or Gateways: is the agent DaemonSet running?\n');
      for (const line of meshHealthLines(health, rows.length)) process.stdout.write(`${line}\n`);
    },
  );
}
