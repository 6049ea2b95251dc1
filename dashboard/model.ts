/**
 * The dashboard's cluster view as a pure function of what the API holds: every Peer and Gateway as a
 * member (Ready, Accepted, HEALTHY n/m), every pair of members with its health as the members' own
 * status says it (contract (1) of issue 12: a pair (X, Y) is unhealthy when X lists Y or Y lists X),
 * the objects the agents refused and why, and the Nodes that have no Peer (no agent there yet).
 *
 * Everything here is data for the page, which shows it as text: nothing is trusted or interpreted as
 * markup. Fields are copied by name and type-checked, so an object carrying odd shapes (any holder
 * of `update peers/status` can write them) never breaks the view of the others.
 */

export type MemberKind = 'Peer' | 'Gateway';
export type PairHealth = 'healthy' | 'unhealthy' | 'unknown';

/** The reasons contract (1) allows in status.peers.unhealthy. */
export const UNHEALTHY_REASONS = ['NoHandshake', 'StaleHandshake', 'NoEndpoint', 'NotConfigured', 'DeviceUnreadable', 'Refused'] as const;

/** A Peer or Gateway as the informers hold it (status as written by its member, contract (1)). */
export interface MeshObject {
  metadata?: { name?: string; creationTimestamp?: string | Date };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

/** A Node as the mesh's informers hold it (mesh/source: name, pod CIDRs, InternalIPs). */
export interface NodeObject {
  name: string;
  podCIDRs: readonly string[];
  internalIPs: readonly string[];
}

export interface UnhealthyEntry {
  kind: MemberKind;
  name: string;
  reason: string;
  lastHandshake?: string;
}

export interface MemberView {
  /** "Peer/node-a": what pairs, selections and streams refer to. */
  key: string;
  kind: MemberKind;
  name: string;
  nodeName: string | null;
  endpoint: string | null;
  meshIP: string | null;
  /** The Ready condition: 'True' | 'False' | 'Unknown', or null when the member never wrote one. */
  ready: string | null;
  readyReason: string | null;
  readyMessage: string | null;
  /** The Accepted condition (written by agents on objects the trust rules refused). */
  accepted: string | null;
  acceptedReason: string | null;
  acceptedMessage: string | null;
  /** status.peers.summary ("2/3", the HEALTHY column), or null before the member wrote health. */
  healthy: string | null;
  desired: number | null;
  configured: number | null;
  handshakeWithin3m: number | null;
  /** The peers this member reports unhealthy (contract (1)), and how many more it left out. */
  unhealthy: UnhealthyEntry[];
  unhealthyOmitted: number;
  lastSyncTime: string | null;
}

/** One side's word on a pair: what X's status says about Y. */
export interface PairSide {
  from: string;
  health: PairHealth;
  /** For 'unhealthy': the reason from the status; for 'unknown': why `from` cannot say (e.g. 'not Ready'). */
  reason: string | null;
  lastHandshake: string | null;
}

export interface PairView {
  /** Member keys, a < b. */
  a: string;
  b: string;
  health: PairHealth;
  sides: PairSide[];
}

export interface RefusedView {
  kind: MemberKind;
  name: string;
  reason: string;
  message: string;
  /** Who says so: 'Accepted condition', or the members listing it with reason Refused. */
  source: string;
}

export interface NodeView {
  name: string;
  internalIP: string | null;
  podCIDRs: string[];
  /** Whether a Peer exists for this Node (an agent registered it). */
  hasPeer: boolean;
}

export interface ClusterView {
  members: MemberView[];
  /** Every pair, or in a large mesh only those that are not healthy (see pairsPartial). */
  pairs: PairView[];
  /**
   * Set in a mesh of more than FULL_PAIRS_MEMBERS members: `pairs` holds only pairs that are not
   * healthy (unhealthy first), at most MAX_PAIRS; every pair left out is healthy unless `omitted`.
   */
  pairsPartial?: { omitted: number };
  refused: RefusedView[];
  nodes: NodeView[];
}

/** Up to this many members in the mesh, every pair is computed and drawn (60 members: 1,770 pairs). */
export const FULL_PAIRS_MEMBERS = 60;
/** At most this many pairs are sent in a large mesh (the not-healthy ones, unhealthy first). */
export const MAX_PAIRS = 2000;

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const obj = (v: unknown): Record<string, unknown> | null => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

function condition(status: Record<string, unknown> | null, type: string): { status: string | null; reason: string | null; message: string | null } {
  const c = list(status?.conditions).map(obj).find((x) => x?.type === type);
  return { status: str(c?.status), reason: str(c?.reason), message: str(c?.message) };
}

export function memberView(kind: MemberKind, o: MeshObject): MemberView | null {
  const name = str(o.metadata?.name);
  if (!name) return null;
  const spec = obj(o.spec);
  const status = obj(o.status);
  const peers = obj(status?.peers);
  const ready = condition(status, 'Ready');
  const accepted = condition(status, 'Accepted');
  const unhealthy: UnhealthyEntry[] = [];
  for (const e of list(peers?.unhealthy).map(obj)) {
    const k = e?.kind;
    const n = str(e?.name);
    if ((k !== 'Peer' && k !== 'Gateway') || !n) continue;
    const entry: UnhealthyEntry = { kind: k, name: n, reason: str(e?.reason) ?? 'Unknown' };
    const last = str(e?.lastHandshake);
    if (last) entry.lastHandshake = last;
    unhealthy.push(entry);
  }
  const healthyCount = num(peers?.healthy);
  const desired = num(peers?.desired);
  return {
    key: `${kind}/${name}`,
    kind,
    name,
    nodeName: str(spec?.nodeName),
    endpoint: str(spec?.endpoint),
    meshIP: str(spec?.meshIP),
    ready: ready.status,
    readyReason: ready.reason,
    readyMessage: ready.message,
    accepted: accepted.status,
    acceptedReason: accepted.reason,
    acceptedMessage: accepted.message,
    // The summary as written; built from the counts when a writer left it out.
    healthy: str(peers?.summary) ?? (healthyCount !== null && desired !== null ? `${healthyCount}/${desired}` : null),
    desired,
    configured: num(peers?.configured),
    handshakeWithin3m: num(peers?.handshakeWithin3m),
    unhealthy,
    unhealthyOmitted: num(peers?.unhealthyOmitted) ?? 0,
    lastSyncTime: str(status?.lastSyncTime),
  };
}

/** Whether a member writes health at all (contract (1)): its status carries status.peers.healthy or summary. */
function writesHealth(m: MemberView): boolean {
  return m.healthy !== null;
}

/**
 * Whether an agent runs for this member: it writes Ready or peer counts on its own status. An
 * external Peer (a machine outside the cluster) has none of that; the Accepted condition that agents
 * write on other objects does not count.
 */
function hasAgent(m: MemberView): boolean {
  return m.ready !== null || m.desired !== null;
}

/** What X's status says about the pair (X, Y). */
export function sideOf(x: MemberView, y: MemberView): PairSide {
  const listed = x.unhealthy.find((e) => e.kind === y.kind && e.name === y.name);
  if (listed) return { from: x.key, health: 'unhealthy', reason: listed.reason, lastHandshake: listed.lastHandshake ?? null };
  const unknown = (reason: string): PairSide => ({ from: x.key, health: 'unknown', reason, lastHandshake: null });
  if (!writesHealth(x)) return unknown('reports no peer health');
  if (x.ready !== 'True') return unknown('not Ready');
  // A bounded list that left entries out may have left this pair out, unless it already lists a
  // refused object: pairs come first in the list (mesh/health.ts), so then only refusals were cut.
  if (x.unhealthyOmitted > 0 && !x.unhealthy.some((e) => e.reason === 'Refused')) return unknown(`left ${x.unhealthyOmitted} unhealthy peers out of its status`);
  return { from: x.key, health: 'healthy', reason: null, lastHandshake: null };
}

/**
 * A pair's health: unhealthy when either side lists the other; healthy when every side that has an
 * agent says healthy (an external Peer has none, so its pairs rest on the other side's word);
 * unknown otherwise (no health written yet, a side not Ready, a truncated list).
 */
export function pairView(x: MemberView, y: MemberView): PairView {
  const [a, b] = x.key < y.key ? [x, y] : [y, x];
  const sides = [sideOf(a, b), sideOf(b, a)];
  const speaking = sides.filter((s, i) => hasAgent(i === 0 ? a : b) || s.health === 'unhealthy');
  let health: PairHealth = 'unknown';
  if (sides.some((s) => s.health === 'unhealthy')) health = 'unhealthy';
  else if (speaking.length > 0 && speaking.every((s) => s.health === 'healthy')) health = 'healthy';
  return { a: a.key, b: b.key, health, sides };
}

/** Gateways peer with nodes and external Peers, never with each other (they have no tunnel to draw). */
function peersWith(x: MemberView, y: MemberView): boolean {
  return !(x.kind === 'Gateway' && y.kind === 'Gateway');
}

function nodeView(n: NodeObject, peerNames: Set<string>): NodeView | null {
  if (!n.name) return null;
  return { name: n.name, internalIP: n.internalIPs[0] ?? null, podCIDRs: [...n.podCIDRs], hasPeer: peerNames.has(n.name) };
}

const byKey = (a: { key: string }, b: { key: string }): number => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/** The whole view: members sorted by kind then name (Peers first), pairs in that order, refused objects, Nodes. */
export function clusterView(peers: MeshObject[], gateways: MeshObject[], nodes: NodeObject[]): ClusterView {
  const members = [
    ...peers.map((p) => memberView('Peer', p)),
    ...gateways.map((g) => memberView('Gateway', g)),
  ].filter((m): m is MemberView => m !== null);
  members.sort((a, b) => (a.kind === b.kind ? byKey(a, b) : a.kind === 'Peer' ? -1 : 1));
  // Refused objects are not in the mesh: no tunnel to draw, they are listed with why instead.
  const inMesh = members.filter((m) => m.accepted !== 'False');
  const { pairs, partial } = inMesh.length <= FULL_PAIRS_MEMBERS ? { pairs: allPairs(inMesh), partial: undefined } : notHealthyPairs(inMesh);
  const refused: RefusedView[] = [];
  const seen = new Set<string>();
  for (const m of members) {
    if (m.accepted !== 'False') continue;
    seen.add(m.key);
    refused.push({ kind: m.kind, name: m.name, reason: m.acceptedReason ?? 'Refused', message: m.acceptedMessage ?? '', source: 'Accepted condition' });
  }
  // Members that list a peer as Refused name objects an Accepted condition may not (yet) mark.
  const refusers = new Map<string, { kind: MemberKind; name: string; by: string[] }>();
  for (const m of members) {
    for (const e of m.unhealthy) {
      const key = `${e.kind}/${e.name}`;
      if (e.reason !== 'Refused' || seen.has(key)) continue;
      const r = refusers.get(key) ?? { kind: e.kind, name: e.name, by: [] };
      r.by.push(m.key);
      refusers.set(key, r);
    }
  }
  for (const r of [...refusers.values()].sort((a, b) => byKey({ key: `${a.kind}/${a.name}` }, { key: `${b.kind}/${b.name}` }))) {
    refused.push({ kind: r.kind, name: r.name, reason: 'Refused', message: `refused by ${r.by.join(', ')}`, source: 'peer health' });
  }
  const peerNames = new Set(members.filter((m) => m.kind === 'Peer').map((m) => m.name));
  const nodeViews = nodes.map((n) => nodeView(n, peerNames)).filter((n): n is NodeView => n !== null).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { members, pairs, ...(partial ? { pairsPartial: partial } : {}), refused, nodes: nodeViews };
}

function allPairs(inMesh: MemberView[]): PairView[] {
  const pairs: PairView[] = [];
  for (let i = 0; i < inMesh.length; i++) {
    for (let j = i + 1; j < inMesh.length; j++) if (peersWith(inMesh[i], inMesh[j])) pairs.push(pairView(inMesh[i], inMesh[j]));
  }
  return pairs;
}

/**
 * A large mesh's pairs that are not healthy, without visiting its N² pairs: a pair is unhealthy only
 * if a side lists the other (the lists' entries), and unknown only if a side cannot vouch (a member
 * not Ready, without health, or with a cut list: each such member's pairs). Healthy pairs are left
 * out; beyond MAX_PAIRS, unknown ones first.
 */
function notHealthyPairs(inMesh: MemberView[]): { pairs: PairView[]; partial: { omitted: number } } {
  const byKey = new Map(inMesh.map((m) => [m.key, m]));
  const found = new Map<string, PairView>();
  const add = (x: MemberView, y: MemberView): void => {
    if (x === y || !peersWith(x, y)) return;
    const id = x.key < y.key ? `${x.key}|${y.key}` : `${y.key}|${x.key}`;
    if (found.has(id)) return;
    const p = pairView(x, y);
    if (p.health !== 'healthy') found.set(id, p);
  };
  for (const x of inMesh) {
    for (const e of x.unhealthy) {
      const y = byKey.get(`${e.kind}/${e.name}`);
      if (y) add(x, y);
    }
  }
  let unknownLeft = 0;
  for (const x of inMesh) {
    // sideOf(x, x) asks only whether x can vouch for anyone (Ready, health written, list not cut).
    if (!hasAgent(x) || sideOf(x, x).health !== 'unknown') continue;
    for (const y of inMesh) {
      if (found.size >= MAX_PAIRS * 2) {
        unknownLeft++;
        continue;
      }
      add(x, y);
    }
  }
  const sorted = [...found.values()].sort((p, q) => (p.health === q.health ? 0 : p.health === 'unhealthy' ? -1 : 1));
  return { pairs: sorted.slice(0, MAX_PAIRS), partial: { omitted: Math.max(0, sorted.length - MAX_PAIRS) + unknownLeft } };
}
