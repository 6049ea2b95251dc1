/**
 * The desired state, kept from one pass to the next: an event costs what it changes (issue 10).
 *
 * computeTopology() is a fresh engine's first pass. An engine that is asked again compares the new
 * input with the last one (objects, Nodes and preshared keys by identity: a source hands back the
 * same object while its content is unchanged; self and settings by value) and recomputes only what
 * the change reaches:
 * - the kind/name group of a changed object (duplicates of a name are refused within the group);
 * - the public-key verdicts of the keys of changed objects (who owns a key depends only on the
 *   objects that carry it);
 * - the overlap verdicts of the connected component(s), in the graph "shares an address with", that
 *   hold a changed candidate, old or new. The first-winner rule (in overlapOrder) only looks at
 *   earlier candidates that overlap, so a component recomputed on its own is exact, and a component
 *   no change reached keeps its verdicts.
 * - when Nodes change: the Peer named after each changed Node and the external Peers whose CIDRs
 *   overlap the changed Node's pod CIDRs or addresses, before or after (the only Nodes their own
 *   checks can see), through the same steps.
 * The settings or self changing (or hundreds of objects at once) recompute everything but each
 * object's own parse (which depends on the object alone).
 * An unchanged accepted peer keeps its DesiredPeer object, an unchanged list its array, and a pass
 * that changes nothing returns the previous Topology itself, so consumers can stop at `===`.
 * Callers must not mutate what it returns.
 *
 * Objects are never mutated in place by the sources (a change is a new object), so what was
 * derived from an object is remembered by its identity.
 */
import { checkNodeInfo, checkObject, isObject } from '../crd/validate.ts';
import type { CheckedObject, ObjectCheck } from '../crd/validate.ts';
import type { NodeInfo } from '../crd/types.ts';
import { compareText } from './order.ts';
import { CidrIndex, overlaps as cidrOverlaps } from './ranges.ts';
import type { IndexEntry } from './ranges.ts';
import { NodeState, checkSettings, describe, fingerprint, hostCidr, ownCheck, overlapOrder, rank, precedes, whyKeeps, whyWins } from './rules.ts';
import type { OwnCheck } from './rules.ts';
import type { CheckedSettings, DesiredPeer, ObjectKind, Refusal, Self, Topology, TopologyInput } from './topology.ts';
import { identityDelta } from '../delta.ts';

/** One occurrence of a raw object in the input. */
interface Entry {
  raw: unknown;
  check: ObjectCheck;
  /** Its JSON text, the tie-break between objects of one name (computed only when a name has several). */
  text?: string;
  /** Its InvalidSpec refusal, when it is the first of its name and fails the checked path. */
  invalid?: Refusal;
}

/** Every occurrence of one kind and name (or of one unusable name: those are all refused). */
interface Group {
  kind: ObjectKind;
  name: string;
  /** Whether the name is an object name (then a second object of it is a DuplicateName). */
  named: boolean;
  entries: Entry[];
  /** The object this name puts forward: the first (by JSON text) if it passes the checked path. */
  winner: CheckedObject | null;
  /** InvalidSpec and DuplicateName refusals of the entries, in text order. */
  entryRefusals: Refusal[];
  /** What the refused list holds for this group now (entryRefusals, then the winner's refusal). */
  shown: Refusal[];
}

/** What the engine knows of one object that its group puts forward. */
interface Member {
  object: CheckedObject;
  group: Group;
  /** ownCheck() for the current Nodes and settings (generation `ownAt`). */
  own: OwnCheck | null;
  ownAt: number;
  candidate: Candidate | null;
  /** Why it is left out (its own checks, its key, its preshared key, or an overlap), or null when accepted. */
  refusal: Refusal | null;
  /** Its peer in the output, when it won and this device peers with it. */
  peer: DesiredPeer | null;
}

/** A Peer or Gateway that passed every check but the overlap with others. */
interface Candidate {
  member: Member;
  allowedIPs: string[];
  presharedKey: string | null;
}

interface NodeChange {
  name: string;
  was: NodeInfo | undefined;
  now: NodeInfo | undefined;
}

interface KeyVerdict {
  owner: CheckedObject | undefined;
  /** Node Peers claiming the key, by name. */
  claims: CheckedObject[];
}

/** The settings as checkSettings() reads them, to compare by value. */
interface SettingsSeen {
  meshCIDR: unknown;
  defaultPersistentKeepalive: unknown;
  serviceCIDRs: unknown;
  clusterCIDRs: unknown;
  nodeSubnets: unknown;
}

const EMPTY: readonly unknown[] = [];
/** Shared empty lists (never written to): most names and keys have nothing to list. */
const NO_REFUSALS: Refusal[] = [];
const NO_CLAIMS: CheckedObject[] = [];
const asArray = (v: unknown): readonly unknown[] => (Array.isArray(v) ? v : EMPTY);
function sameList(a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
const sameSetting = (a: unknown, b: unknown): boolean => a === b || (Array.isArray(a) && Array.isArray(b) && sameList(a, b));
const byKindName = (a: { kind: string; name: string }, b: { kind: string; name: string }): number => compareText(a.kind, b.kind) || compareText(a.name, b.name);
const byPublicKey = (a: DesiredPeer, b: DesiredPeer): number => (a.publicKey < b.publicKey ? -1 : a.publicKey > b.publicKey ? 1 : 0);

/** The first position in a sorted list at which `probe` sorts (lower bound). */
function lowerBound<T, K>(list: readonly T[], probe: K, compare: (x: T, probe: K) => number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compare(list[mid], probe) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Above this many changed objects, the lists are rebuilt by sorting rather than edited in place. */
const SPLICE_LIMIT = 256;

export class TopologyEngine {
  private result: Topology | null = null;
  private settingsSeen: SettingsSeen | null = null;
  private settings: CheckedSettings | null = null;
  private self: Self = { role: 'node', name: '' };
  private presharedKeys: ReadonlyMap<string, string> = new Map();
  private rawNodes: readonly unknown[] = EMPTY;
  private nodes = new NodeState(new Map());
  /** Raw Nodes that pass the check, by name (a name listed twice keeps one: nodeFor()). */
  private readonly nodeRaws = new Map<string, unknown[]>();
  /** External Peers (no nodeName): the ones whose own checks read the Nodes' pod CIDRs and addresses. */
  private readonly externals = new Set<Member>();
  /** Their CIDRs, to find those a Node change reaches (built on the first Node change). */
  private externalSpace: CidrIndex<Member> | null = null;
  private readonly rawObjects: Record<ObjectKind, readonly unknown[]> = { Peer: EMPTY, Gateway: EMPTY };
  /** checkObject() and checkNodeInfo() by raw object (pure functions of the object). */
  private readonly checks: Record<ObjectKind, WeakMap<object, ObjectCheck>> = { Peer: new WeakMap(), Gateway: new WeakMap() };
  private readonly nodeChecks = new WeakMap<object, NodeInfo | null>();
  private readonly groups = new Map<string, Group>();
  private readonly members = new Map<CheckedObject, Member>();
  /** Members by public key (every object a group puts forward, claimant or not). */
  private readonly byKey = new Map<string, Member[]>();
  private readonly keyVerdicts = new Map<string, KeyVerdict>();
  /** Members with a preshared key reference (re-checked when the Secrets change). */
  private readonly withPresharedKey = new Set<Member>();
  /** Every candidate's CIDRs, to find the overlap components a change reaches (built on the first change). */
  private candidateIndex: CidrIndex<Candidate> | null = null;
  /** Bumped when the Nodes or the settings change: every ownCheck() from before is stale. */
  private generation = 0;
  private peers: DesiredPeer[] = [];
  private routes: string[] = [];
  private refused: Refusal[] = [];

  compute(input: TopologyInput): Topology {
    const raw: Partial<TopologyInput> = isObject(input) ? input : {};
    const s: Record<string, unknown> = isObject(raw.settings) ? raw.settings : {};
    const seen: SettingsSeen = {
      meshCIDR: s.meshCIDR,
      defaultPersistentKeepalive: s.defaultPersistentKeepalive,
      serviceCIDRs: s.serviceCIDRs,
      clusterCIDRs: s.clusterCIDRs,
      nodeSubnets: s.nodeSubnets,
    };
    const prior = this.settingsSeen;
    const settingsChanged = !prior || !(Object.keys(seen) as Array<keyof SettingsSeen>).every((k) => sameSetting(seen[k], prior[k]));
    if (settingsChanged) {
      const checked = checkSettings(raw.settings);
      if ('problems' in checked) {
        // Unusable settings accept nothing; the next usable ones start over.
        this.settingsSeen = null;
        this.settings = null;
        const last = this.result;
        if (last?.settingsProblems && sameList(last.settingsProblems, checked.problems)) return last;
        this.result = { peers: [], routes: [], refused: [], settingsProblems: checked.problems };
        return this.result;
      }
      // Copies of the lists: a caller that edits its settings list in place still changes them.
      const copy = (v: unknown): unknown => (Array.isArray(v) ? [...(v as unknown[])] : v);
      this.settingsSeen = { meshCIDR: seen.meshCIDR, defaultPersistentKeepalive: seen.defaultPersistentKeepalive, serviceCIDRs: copy(seen.serviceCIDRs), clusterCIDRs: copy(seen.clusterCIDRs), nodeSubnets: copy(seen.nodeSubnets) };
      this.settings = checked.settings;
    }
    const self: Self = isObject(raw.self) && (raw.self.role === 'node' || raw.self.role === 'gateway') && typeof raw.self.name === 'string' ? raw.self : { role: 'node', name: '' };
    const selfChanged = self.role !== this.self.role || self.name !== this.self.name;
    this.self = { role: self.role, name: self.name };
    const presharedKeys = raw.presharedKeys instanceof Map ? raw.presharedKeys : this.presharedKeys.size === 0 ? this.presharedKeys : new Map<string, string>();
    const keysChanged = presharedKeys !== this.presharedKeys;
    this.presharedKeys = presharedKeys;
    const rawNodes = asArray(raw.nodes);
    let full = this.result === null || this.result.settingsProblems !== undefined || settingsChanged || selfChanged;
    // Nodes whose NodeInfo changed (came, went or changed), or everything again when too many did.
    let nodesTouched: NodeChange[] = [];
    if (!sameList(rawNodes, this.rawNodes)) {
      const touched = full ? null : this.updateNodes(this.rawNodes, rawNodes);
      if (touched === null) {
        this.setNodes(rawNodes);
        full = true;
      } else nodesTouched = touched;
    }
    this.rawNodes = rawNodes;

    if (full) this.generation++;

    // Which objects each name puts forward now.
    const gone: Member[] = [];
    const added: Member[] = [];
    const dirtyGroups = new Set<Group>();
    for (const kind of ['Peer', 'Gateway'] as const) {
      const after = asArray(kind === 'Peer' ? raw.peers : raw.gateways);
      const before = this.rawObjects[kind];
      if (after === before) continue;
      const change = identityDelta(before, after);
      this.rawObjects[kind] = after;
      for (const r of change.gone) {
        const group = this.groups.get(this.groupId(kind, r)) as Group;
        // (SameValueZero, as the diff's Map: a NaN in a list is the same NaN.)
        const at = group.entries.findIndex((e) => e.raw === r || (e.raw !== e.raw && r !== r));
        if (at >= 0) group.entries.splice(at, 1);
        dirtyGroups.add(group);
      }
      for (const r of change.added) {
        const check = this.check(kind, r);
        const name = check.ok ? check.object.name : check.name;
        const id = `${kind}/${name}`;
        let group = this.groups.get(id);
        if (!group) {
          const named = check.ok || check.problems[0].field !== 'metadata.name';
          group = { kind, name, named, entries: [], winner: null, entryRefusals: NO_REFUSALS, shown: NO_REFUSALS };
          this.groups.set(id, group);
        }
        group.entries.push({ raw: r, check });
        dirtyGroups.add(group);
      }
    }
    for (const group of dirtyGroups) {
      const before = group.winner;
      this.settleGroup(group);
      if (group.winner === before) continue;
      if (before) gone.push(this.members.get(before) as Member);
      if (group.winner) {
        const member: Member = { object: group.winner, group, own: null, ownAt: -1, candidate: null, refusal: null, peer: null };
        this.members.set(group.winner, member);
        added.push(member);
      }
    }

    // Members leave and join their keys; the keys they touch are decided again.
    const dirtyKeys = new Set<string>();
    for (const m of gone) {
      this.members.delete(m.object);
      this.withPresharedKey.delete(m);
      if (this.externals.delete(m)) for (const c of m.object.spec.cidrs) this.externalSpace?.delete(c, m);
      const key = m.object.spec.publicKey;
      const holders = this.byKey.get(key) as Member[];
      holders.splice(holders.indexOf(m), 1);
      if (holders.length === 0) this.byKey.delete(key);
      dirtyKeys.add(key);
    }
    for (const m of added) {
      if (m.object.spec.presharedKeySecretRef) this.withPresharedKey.add(m);
      if (m.object.kind === 'Peer' && m.object.spec.nodeName === null) {
        this.externals.add(m);
        for (const c of m.object.spec.cidrs) this.externalSpace?.add(c, m);
      }
      const key = m.object.spec.publicKey;
      const holders = this.byKey.get(key);
      if (holders) holders.push(m);
      else this.byKey.set(key, [m]);
      dirtyKeys.add(key);
    }

    if (full || gone.length + added.length > SPLICE_LIMIT) return this.recomputeAll(dirtyGroups);

    // Members whose verdict may have changed: new ones, those of a key whose verdict changed,
    // (when the Secrets changed) those with a preshared key, and (when Nodes changed) the Peer of
    // each changed Node (its pod CIDRs; whether it claims its key first) and every external Peer
    // (the cluster's own space it must stay out of).
    const recheck = new Set<Member>(added);
    if (nodesTouched.length > 0) {
      const touch = (m: Member): void => {
        m.own = null;
        recheck.add(m);
      };
      let space = this.externalSpace;
      if (!space) {
        space = new CidrIndex<Member>();
        space.load((add) => {
          for (const m of this.externals) for (const c of m.object.spec.cidrs) add(c, m);
        });
        this.externalSpace = space;
      }
      for (const { name, was, now } of nodesTouched) {
        const winner = this.groups.get(`Peer/${name}`)?.winner;
        const m = winner ? this.members.get(winner) : undefined;
        if (m) {
          touch(m);
          dirtyKeys.add(m.object.spec.publicKey);
        }
        // An external Peer's checks only see Nodes whose pod CIDRs overlap its CIDRs or whose
        // addresses lie in them: those that overlap the Node as it was or as it is now.
        for (const n of [was, now]) {
          if (!n) continue;
          for (const c of [...n.podCIDRs, ...n.internalIPs.map(hostCidr)]) space.forEachOverlapping(c, (e) => e.values.forEach(touch));
        }
      }
    }
    for (const key of dirtyKeys) {
      const before = this.keyVerdicts.get(key);
      const verdict = this.decideKey(key);
      if (before && verdict && before.owner === verdict.owner && sameList(before.claims, verdict.claims)) continue;
      for (const m of this.byKey.get(key) ?? []) recheck.add(m);
    }
    if (keysChanged) for (const m of this.withPresharedKey) recheck.add(m);

    const removedCandidates: Candidate[] = [];
    const addedCandidates: Candidate[] = [];
    let peersOut: DesiredPeer[] = [];
    /** Members that got a new peer (in m.peer). */
    let joined: Member[] = [];
    for (const m of gone) {
      if (m.candidate) removedCandidates.push(m.candidate);
      if (m.peer) peersOut.push(m.peer);
      m.peer = null;
    }
    for (const m of recheck) {
      const before = m.candidate;
      const verdict = this.evaluate(m);
      if (before && verdict.candidate && before.allowedIPs === verdict.candidate.allowedIPs && before.presharedKey === verdict.candidate.presharedKey) continue;
      if (before) removedCandidates.push(before);
      m.candidate = verdict.candidate;
      if (verdict.candidate) addedCandidates.push(verdict.candidate);
      else this.setRefusal(m, verdict.refusal, dirtyGroups);
      if (m.peer) peersOut.push(m.peer);
      m.peer = null;
    }

    // The overlap components these candidates reach, decided again.
    if (removedCandidates.length + addedCandidates.length > 0) {
      const index = this.candidateIndexNow(removedCandidates, addedCandidates);
      const seeds: Candidate[] = [...addedCandidates];
      for (const c of removedCandidates) for (const a of c.allowedIPs) index.forEachOverlapping(a, (e) => seeds.push(...e.values));
      const component = new Set<Candidate>();
      const reached = new Set<IndexEntry<Candidate>>();
      for (let i = 0; i < seeds.length; i++) {
        const c = seeds[i];
        if (component.has(c)) continue;
        component.add(c);
        for (const a of c.allowedIPs) {
          index.forEachOverlapping(a, (e) => {
            if (reached.has(e)) return;
            reached.add(e);
            for (const v of e.values) if (!component.has(v)) seeds.push(v);
          });
        }
      }
      this.decideOverlaps([...component], dirtyGroups, peersOut, joined);
    }

    // A peer that went out and came back with the same values (its object replaced by an equal
    // one, a Secret list replaced by an equal one) keeps its DesiredPeer and its place.
    if (peersOut.length > 0 && joined.length > 0) {
      const out = new Map(peersOut.map((p) => [p.publicKey, p]));
      const back = new Set<DesiredPeer>();
      joined = joined.filter((m) => {
        const was = out.get((m.peer as DesiredPeer).publicKey);
        if (!was || back.has(was) || !samePeer(m.peer as DesiredPeer, was)) return true;
        m.peer = was;
        back.add(was);
        return false;
      });
      if (back.size > 0) peersOut = peersOut.filter((p) => !back.has(p));
    }
    const peersIn = joined.map((m) => m.peer as DesiredPeer);
    if (dirtyGroups.size + peersOut.length + peersIn.length === 0) return this.result as Topology;
    if (dirtyGroups.size + peersOut.length + peersIn.length > SPLICE_LIMIT) return this.publish(true, dirtyGroups);
    this.splicePeers(peersOut, peersIn);
    this.spliceRefused(dirtyGroups);
    return this.publish(false, dirtyGroups);
  }

  /** A raw Node, checked (remembered by identity), or null when it has no usable name. */
  private nodeInfo(r: unknown): NodeInfo | null {
    if (!isObject(r)) return checkNodeInfo(r);
    const known = this.nodeChecks.get(r);
    if (known !== undefined) return known;
    const node = checkNodeInfo(r);
    this.nodeChecks.set(r, node);
    return node;
  }

  /**
   * The Node of a name given once or more (a directory can say anything): the first in JSON-text
   * order, ties in input order, so the result does not depend on the input's order.
   */
  private nodeFor(name: string, rawNodes: readonly unknown[]): NodeInfo | undefined {
    const raws = this.nodeRaws.get(name);
    if (!raws) return undefined;
    let best = raws[0];
    if (raws.length > 1) {
      let text = fingerprint(best);
      for (const r of raws.slice(1)) {
        const t = fingerprint(r);
        const c = compareText(t, text);
        if (c < 0 || (c === 0 && r !== best && rawNodes.indexOf(r) < rawNodes.indexOf(best))) {
          best = r;
          text = t;
        }
      }
    }
    return this.nodeInfo(best) as NodeInfo;
  }

  /** The Nodes, checked again, from scratch. */
  private setNodes(rawNodes: readonly unknown[]): void {
    this.nodeRaws.clear();
    for (const r of rawNodes) {
      const node = this.nodeInfo(r);
      if (!node) continue;
      const raws = this.nodeRaws.get(node.name);
      if (raws) raws.push(r);
      else this.nodeRaws.set(node.name, [r]);
    }
    const byName = new Map<string, NodeInfo>();
    for (const name of this.nodeRaws.keys()) byName.set(name, this.nodeFor(name, rawNodes) as NodeInfo);
    this.nodes = new NodeState(byName);
  }

  /** The Nodes after a change: those whose NodeInfo changed, or null when too many changed to go one by one. */
  private updateNodes(before: readonly unknown[], after: readonly unknown[]): NodeChange[] | null {
    const change = identityDelta(before, after);
    if (change.gone.length + change.added.length > SPLICE_LIMIT) return null;
    const names = new Set<string>();
    for (const r of change.gone) {
      const node = this.nodeInfo(r);
      if (!node) continue;
      const raws = this.nodeRaws.get(node.name) as unknown[];
      const at = raws.findIndex((x) => x === r || (x !== x && r !== r));
      if (at >= 0) raws.splice(at, 1);
      if (raws.length === 0) this.nodeRaws.delete(node.name);
      names.add(node.name);
    }
    for (const r of change.added) {
      const node = this.nodeInfo(r);
      if (!node) continue;
      const raws = this.nodeRaws.get(node.name);
      if (raws) raws.push(r);
      else this.nodeRaws.set(node.name, [r]);
      names.add(node.name);
    }
    const touched: NodeChange[] = [];
    for (const name of names) {
      const was = this.nodes.get(name);
      const now = this.nodeFor(name, after);
      if (now === was) continue;
      this.nodes.set(name, was, now);
      touched.push({ name, was, now });
    }
    return touched;
  }

  private check(kind: ObjectKind, r: unknown): ObjectCheck {
    if (typeof r !== 'object' || r === null) return checkObject(kind, r);
    const memo = this.checks[kind];
    let check = memo.get(r);
    if (!check) {
      check = checkObject(kind, r);
      memo.set(r, check);
    }
    return check;
  }

  private groupId(kind: ObjectKind, r: unknown): string {
    const check = this.check(kind, r);
    return `${kind}/${check.ok ? check.object.name : check.name}`;
  }

  /**
   * A group's verdicts: its entries in JSON-text order (ties in input order), the first put forward
   * if it passes the checked path, every later one of an object name a DuplicateName.
   */
  private settleGroup(group: Group): void {
    const { kind, name, entries } = group;
    if (entries.length === 0) {
      group.winner = null;
      group.entryRefusals = NO_REFUSALS;
      this.groups.delete(`${kind}/${name}`);
      return;
    }
    if (entries.length > 1) {
      for (const e of entries) e.text ??= fingerprint(e.raw);
      const list = this.rawObjects[kind];
      entries.sort((a, b) => compareText(a.text as string, b.text as string) || (a.raw === b.raw ? 0 : list.indexOf(a.raw) - list.indexOf(b.raw)));
    }
    // (Most names have one well-formed object: no list allocated for them.)
    let refusals = NO_REFUSALS;
    let winner: CheckedObject | null = null;
    entries.forEach((e, i) => {
      if (refusals === NO_REFUSALS && !(i === 0 && e.check.ok)) refusals = [];
      if (group.named && i > 0) {
        refusals.push({ kind, name, reason: 'DuplicateName', field: 'metadata.name', message: `${kind} ${name}: metadata.name: another ${kind} has the same name` });
      } else if (!e.check.ok) {
        const problems = e.check.problems;
        e.invalid ??= { kind, name, reason: 'InvalidSpec', field: problems[0].field, message: `${kind} ${name}: ${problems.map((p) => p.message).join('; ')}` };
        refusals.push(e.invalid);
      } else winner = e.check.object;
    });
    group.winner = winner;
    // The same refusals as before keep their objects (and the refused list its array).
    const before = group.entryRefusals;
    const same = before.length === refusals.length && refusals.every((r, i) => r === before[i] || sameRefusal(r, before[i]));
    if (!same) group.entryRefusals = refusals;
  }

  /** Whether `o` is the Peer of an existing Node, named after it (it then claims its key before anyone else). */
  private isNodePeer(o: CheckedObject): boolean {
    return o.kind === 'Peer' && o.spec.nodeName !== null && o.spec.nodeName === o.name && this.nodes.has(o.name);
  }

  /**
   * Who owns a public key: a node's Peer always wins its own key, then a Gateway, then an external
   * Peer; within each, the oldest (then name). Claimants are all well-formed objects, a node's Peer
   * only when it is the Peer of an existing Node, so a key stays its node's even while that Peer is
   * refused for something else (an older impostor cannot take it over, issue 9). A key two node
   * Peers claim is refused for every one of them: giving it to the older would let a compromised
   * older node copy a newer node's key and knock it out; giving it to the newer would let a new node
   * take an old one's traffic.
   */
  private decideKey(key: string): KeyVerdict | undefined {
    const holders = this.byKey.get(key);
    if (!holders) {
      this.keyVerdicts.delete(key);
      return undefined;
    }
    let owner: CheckedObject | undefined;
    let claims = NO_CLAIMS;
    for (const { object: o } of holders) {
      if (o.kind === 'Peer' && o.spec.nodeName !== null && !this.isNodePeer(o)) continue;
      if (this.isNodePeer(o)) claims = claims === NO_CLAIMS ? [o] : [...claims, o];
      if (!owner || rank(o) < rank(owner) || (rank(o) === rank(owner) && precedes(o, owner) < 0)) owner = o;
    }
    if (claims.length > 1) claims.sort((a, b) => compareText(a.name, b.name));
    const verdict = { owner, claims };
    this.keyVerdicts.set(key, verdict);
    return verdict;
  }

  /** One member's verdict before overlaps: a candidate, or why not. */
  private evaluate(m: Member): { candidate: Candidate; refusal: null } | { candidate: null; refusal: Refusal } {
    const o = m.object;
    const { kind, name, spec } = o;
    const refuse = (reason: string, field: string, why: string): { candidate: null; refusal: Refusal } => ({
      candidate: null,
      refusal: { kind, name, reason, field, message: `${kind} ${name}: ${why}` },
    });
    if (m.ownAt !== this.generation || !m.own) {
      m.own = ownCheck(o, this.nodes, this.settings as CheckedSettings);
      m.ownAt = this.generation;
    }
    const own = m.own;
    if (!own.ok) return refuse(own.reason, own.field, own.why);
    const verdict = this.keyVerdicts.get(spec.publicKey) as KeyVerdict;
    const claims = verdict.claims;
    if (claims.length > 1 && this.isNodePeer(o)) {
      const others = claims.filter((x) => x !== o).map((x) => `Node ${x.name}'s Peer`);
      return refuse('PublicKeyClaimedByNodes', 'spec.publicKey', `spec.publicKey is also the key of ${others.join(', ')}: a key more than one node claims is refused for all of them (a cloned image, or a node copying another's key)`);
    }
    const owner = verdict.owner as CheckedObject;
    if (owner !== o) {
      const why =
        rank(owner) < rank(o)
          ? owner.kind === 'Peer'
            ? `spec.publicKey is the key of Node ${owner.name}'s Peer: a node's Peer always wins its own key`
            : `spec.publicKey is the key of Gateway ${owner.name}: only a node's Peer may share a Gateway's key`
          : `spec.publicKey is already used by ${describe(owner)}, ${whyWins(owner, o)}`;
      return refuse('DuplicatePublicKey', 'spec.publicKey', why);
    }
    let presharedKey: string | null = null;
    if (spec.presharedKeySecretRef) {
      const r = spec.presharedKeySecretRef;
      const found = this.presharedKeys.get(`${r.namespace}/${r.name}/${r.key}`);
      if (typeof found !== 'string' || found === '') {
        return refuse('PresharedKeyMissing', 'spec.presharedKeySecretRef', `spec.presharedKeySecretRef: Secret ${r.namespace}/${r.name} has no usable key ${r.key}`);
      }
      presharedKey = found;
    }
    return { candidate: { member: m, allowedIPs: own.allowedIPs, presharedKey }, refusal: null };
  }

  private setRefusal(m: Member, refusal: Refusal, dirtyGroups: Set<Group>): void {
    if (m.refusal && sameRefusal(m.refusal, refusal)) return;
    m.refusal = refusal;
    dirtyGroups.add(m.group);
  }

  /** The index of every candidate's CIDRs, brought up to date (or built, the first time a change needs it). */
  private candidateIndexNow(removed: readonly Candidate[], added: readonly Candidate[]): CidrIndex<Candidate> {
    let index = this.candidateIndex;
    if (!index) {
      index = new CidrIndex<Candidate>();
      index.load((add) => {
        for (const m of this.members.values()) if (m.candidate) for (const a of m.candidate.allowedIPs) add(a, m.candidate);
      });
      this.candidateIndex = index;
      return index;
    }
    for (const c of removed) for (const a of c.allowedIPs) index.delete(a, c);
    for (const c of added) for (const a of c.allowedIPs) index.add(a, c);
    return index;
  }

  /**
   * Overlaps between otherwise acceptable objects (in practice: mesh IPs, and node pod CIDRs that
   * overlap): one deterministic winner, the rest refused. The oldest first (overlapOrder()): each
   * candidate loses to the first winner before it that it shares an address with. `candidates`
   * must be whole components of the overlap graph: then only they decide each other.
   */
  private decideOverlaps(candidates: Candidate[], dirtyGroups: Set<Group>, peersOut: DesiredPeer[], joined: Member[]): void {
    candidates.sort((a, b) => overlapOrder(a.member.object, b.member.object));
    const space = new CidrIndex<number>();
    space.load((add) => {
      for (const [i, c] of candidates.entries()) for (const a of c.allowedIPs) add(a, i);
    });
    // Stryker disable next-line ConditionalExpression,StringLiteral: equivalent for a gateway: the filter below keeps only node Peers, so its own Gateway goes either way
    const selfKind: ObjectKind = this.self.role === 'node' ? 'Peer' : 'Gateway';
    for (const [i, c] of candidates.entries()) {
      const m = c.member;
      // The first winner (in that order) it shares an address with; a shared mesh IP is one.
      let first = Infinity;
      for (const a of c.allowedIPs) {
        space.forEachOverlapping(a, (e) => {
          if (e.mark >= 0 && e.mark < first) first = e.mark;
        });
      }
      if (first === Infinity) {
        for (const a of c.allowedIPs) (space.get(a) as IndexEntry<number>).mark = i;
        if (m.refusal) {
          m.refusal = null;
          dirtyGroups.add(m.group);
        }
        const o = m.object;
        const shown = !(o.kind === selfKind && o.name === this.self.name) && (this.self.role === 'node' || (o.kind === 'Peer' && o.spec.nodeName !== null));
        if (!shown) {
          if (m.peer) peersOut.push(m.peer);
          m.peer = null;
        } else if (!m.peer) {
          m.peer = this.desiredPeer(c);
          joined.push(m);
        }
        continue;
      }
      if (m.peer) peersOut.push(m.peer);
      m.peer = null;
      const lostTo = candidates[first];
      const { kind, name, spec } = m.object;
      const winner = lostTo.member.object;
      const other = `${describe(winner)}, ${whyKeeps(winner, m.object)}`;
      let refusal: Refusal;
      if (spec.meshIP !== null && spec.meshIP === winner.spec.meshIP) {
        refusal = { kind, name, reason: 'DuplicateMeshIP', field: 'spec.meshIP', message: `${kind} ${name}: spec.meshIP ${spec.meshIP} is already used by ${other}` };
      } else {
        const mine = c.allowedIPs.find((a) => lostTo.allowedIPs.some((b) => cidrOverlaps(a, b))) as string;
        const theirs = lostTo.allowedIPs.find((b) => cidrOverlaps(mine, b)) as string;
        const index = spec.cidrs.indexOf(mine);
        const field = kind === 'Gateway' || index < 0 ? 'spec.meshIP' : `spec.allowedIPs[${index}]`;
        refusal = { kind, name, reason: 'OverlapsPeer', field, message: `${kind} ${name}: ${field} ${field === 'spec.meshIP' ? spec.meshIP : mine} overlaps ${theirs} of ${other}` };
      }
      this.setRefusal(m, refusal, dirtyGroups);
    }
  }

  private desiredPeer(c: Candidate): DesiredPeer {
    const o = c.member.object;
    return {
      kind: o.kind,
      name: o.name,
      nodeName: o.spec.nodeName,
      meshIP: o.spec.meshIP,
      publicKey: o.spec.publicKey,
      endpoint: o.spec.endpoint,
      allowedIPs: c.allowedIPs,
      persistentKeepalive: o.spec.persistentKeepalive ?? (this.settings as CheckedSettings).defaultPersistentKeepalive,
      presharedKey: c.presharedKey,
    };
  }

  /**
   * Everything again but the objects' own parse: after a Node, settings or self change (or too many
   * changes at once to edit in place). An accepted peer whose values did not change keeps its object.
   */
  private recomputeAll(dirtyGroups: Set<Group>): Topology {
    for (const key of [...this.keyVerdicts.keys()]) if (!this.byKey.has(key)) this.keyVerdicts.delete(key);
    for (const key of this.byKey.keys()) this.decideKey(key);
    this.candidateIndex = null;
    const candidates: Candidate[] = [];
    for (const m of this.members.values()) {
      m.peer = null;
      const verdict = this.evaluate(m);
      m.candidate = verdict.candidate;
      m.refusal = verdict.refusal;
      if (verdict.candidate) candidates.push(verdict.candidate);
    }
    this.decideOverlaps(candidates, dirtyGroups, [], []);
    const last = this.result && !this.result.settingsProblems ? this.result.peers : [];
    if (last.length > 0) {
      const previous = new Map(last.map((p) => [p.publicKey, p]));
      for (const m of this.members.values()) {
        const was = m.peer && previous.get(m.peer.publicKey);
        if (was && samePeer(m.peer as DesiredPeer, was)) m.peer = was;
      }
    }
    return this.publish(true, dirtyGroups);
  }

  /** Take out and put in peers (and their routes), keeping both lists sorted. */
  private splicePeers(out: readonly DesiredPeer[], into: readonly DesiredPeer[]): void {
    if (out.length + into.length === 0) return;
    this.peers = this.peers.slice();
    for (const p of out) {
      const at = lowerBound(this.peers, p, byPublicKey);
      if (this.peers[at] === p) this.peers.splice(at, 1);
    }
    for (const p of into) this.peers.splice(lowerBound(this.peers, p, byPublicKey), 0, p);
    // The routes often stay the same (a new endpoint, a new key): then the same array, untouched.
    const gone = out.flatMap((p) => p.allowedIPs).sort();
    const come = into.flatMap((p) => p.allowedIPs).sort();
    if (sameList(gone, come)) return;
    this.routes = this.routes.slice();
    for (const a of gone) {
      const r = lowerBound(this.routes, a, compareText);
      if (this.routes[r] === a) this.routes.splice(r, 1);
    }
    // Accepted peers never share an address, so a route is never held twice.
    for (const a of come) this.routes.splice(lowerBound(this.routes, a, compareText), 0, a);
  }

  /** Replace each dirty group's refusals in the refused list (sorted by kind and name; a group's are contiguous). */
  private spliceRefused(dirtyGroups: ReadonlySet<Group>): void {
    let copied = false;
    for (const g of dirtyGroups) {
      const now = this.groupRefusals(g);
      if (sameList(now, g.shown)) continue;
      if (!copied) {
        this.refused = this.refused.slice();
        copied = true;
      }
      const at = lowerBound(this.refused, g, byKindName);
      this.refused.splice(at, g.shown.length, ...now);
      g.shown = now;
    }
  }

  private groupRefusals(g: Group): Refusal[] {
    const m = g.winner ? this.members.get(g.winner) : undefined;
    return m?.refusal ? [...g.entryRefusals, m.refusal] : g.entryRefusals;
  }

  /** The result: lists rebuilt by sorting (`rebuild`), or as edited; the same Topology when nothing changed. */
  private publish(rebuild: boolean, dirtyGroups: ReadonlySet<Group>): Topology {
    const last = this.result;
    if (rebuild) {
      const peers: DesiredPeer[] = [];
      for (const m of this.members.values()) if (m.peer) peers.push(m.peer);
      peers.sort(byPublicKey);
      // (The default sort compares strings by UTF-16 code units, as compareText does.)
      const routes = peers.flatMap((p) => p.allowedIPs).sort();
      const groups: Group[] = [];
      for (const g of this.groups.values()) {
        g.shown = this.groupRefusals(g);
        if (g.shown.length > 0) groups.push(g);
      }
      // (A group that lost its last object is out of the map: nothing of it is shown any more.)
      for (const g of dirtyGroups) if (g.entries.length === 0) g.shown = NO_REFUSALS;
      const refused = groups.sort(byKindName).flatMap((g) => g.shown);
      this.peers = last && !last.settingsProblems && sameList(peers, last.peers) ? last.peers : peers;
      this.routes = last && !last.settingsProblems && sameList(routes, last.routes) ? last.routes : routes;
      this.refused = last && !last.settingsProblems && sameList(refused, last.refused) ? last.refused : refused;
    }
    if (last && !last.settingsProblems && last.peers === this.peers && last.routes === this.routes && last.refused === this.refused) return last;
    this.result = { peers: this.peers, routes: this.routes, refused: this.refused };
    return this.result;
  }
}

function sameRefusal(a: Refusal, b: Refusal): boolean {
  return a.kind === b.kind && a.name === b.name && a.reason === b.reason && a.field === b.field && a.message === b.message;
}

function samePeer(a: DesiredPeer, b: DesiredPeer): boolean {
  return (
    a.kind === b.kind &&
    a.name === b.name &&
    a.nodeName === b.nodeName &&
    a.meshIP === b.meshIP &&
    a.publicKey === b.publicKey &&
    a.endpoint === b.endpoint &&
    sameList(a.allowedIPs, b.allowedIPs) &&
    a.persistentKeepalive === b.persistentKeepalive &&
    a.presharedKey === b.presharedKey
  );
}
