/**
 * The trust rules of the desired state (DESIGN §3.2), one object at a time: the settings check,
 * what a node's Peer, an external Peer or a Gateway may claim, who keeps a public key and who keeps
 * contested address space, and the words of every refusal. TopologyEngine (engine.ts) decides which
 * objects to ask about; these functions say what the answer is. Every lookup over Nodes goes through
 * an index (NodeState), so one object's check costs O(log n), not a walk over every Node.
 */
import { canonicalCidr } from '../../native/index.ts';
import { isObject, redactKeys, shown } from '../crd/validate.ts';
import type { CheckedObject } from '../crd/validate.ts';
import type { NodeInfo } from '../crd/types.ts';
import { compareText } from './order.ts';
import { CidrIndex, contains as cidrContains, overlaps as cidrOverlaps, rangeOf, rangesOverlap } from './ranges.ts';
import type { Range } from './ranges.ts';
import type { CheckedSettings } from './topology.ts';

/**
 * The service CIDR(s) when none is configured: AKS's default (`--service-cidr 10.0.0.0/16`). kubeadm's
 * default is 10.96.0.0/12; set the real one (both families on a dual-stack cluster).
 */
export const DEFAULT_SERVICE_CIDRS: readonly string[] = ['10.0.0.0/16'];
/**
 * The cluster's pod CIDR(s) when none is configured: the controller-manager's --cluster-cidr on AKS
 * (kubenet, Azure CNI Overlay: `--pod-cidr 10.244.0.0/16`) and in flannel's and kubeadm guides. It
 * covers the pod CIDRs of Nodes that have none yet.
 */
export const DEFAULT_CLUSTER_CIDRS: readonly string[] = ['10.244.0.0/16'];
/** The node subnets when none are configured: the address space of the virtual network AKS creates (10.224.0.0/12). */
export const DEFAULT_NODE_SUBNETS: readonly string[] = ['10.224.0.0/12'];

/**
 * Check the settings (for flags, and before every computation): canonical CIDRs with the defaults
 * filled in, or the problems, each naming the setting.
 */
export function checkSettings(settings: unknown): { settings: CheckedSettings } | { problems: string[] } {
  const s = isObject(settings) ? settings : {};
  const problems: string[] = [];
  const one = (text: unknown, what: string): string | null => {
    try {
      return canonicalCidr(text as string, what);
    } catch (err) {
      // The message quotes the value: a key pasted into the wrong setting must not reach a log.
      problems.push(redactKeys((err as Error).message));
      return null;
    }
  };
  const many = (value: unknown, fallback: readonly string[], what: string): string[] => {
    if (value === undefined) return [...fallback];
    if (!Array.isArray(value)) {
      problems.push(`${what}: expected a list of CIDRs, got ${shown(value)}`);
      // Stryker disable next-line ArrayDeclaration: equivalent: a problem was recorded, so these settings are refused whatever the list holds
      return [];
    }
    // Stryker disable next-line MethodExpression,ConditionalExpression: equivalent: a null is only left by an entry that recorded a problem, which refuses the settings
    return value.map((c, i) => one(c, `${what}[${i}]`)).filter((c): c is string => c !== null);
  };
  const meshCIDR = one(s.meshCIDR, 'meshCIDR');
  const k = s.defaultPersistentKeepalive;
  if (k !== undefined && (typeof k !== 'number' || !Number.isInteger(k) || k < 0 || k > 65535)) {
    problems.push(`defaultPersistentKeepalive: ${shown(k)} is not a whole number of seconds from 0 to 65535`);
  }
  const serviceCIDRs = many(s.serviceCIDRs, DEFAULT_SERVICE_CIDRS, 'serviceCIDRs');
  const clusterCIDRs = many(s.clusterCIDRs, DEFAULT_CLUSTER_CIDRS, 'clusterCIDRs');
  const nodeSubnets = many(s.nodeSubnets, DEFAULT_NODE_SUBNETS, 'nodeSubnets');
  if (meshCIDR !== null) {
    // Every Peer's and Gateway's meshIP/32 is routed into the tunnel: a mesh CIDR as broad as
    // default-route space, or over reserved or the cluster's own space, would let a mesh IP take
    // the node's own traffic (cloud metadata, DNS, pods, services, nodes) to whoever holds it.
    const problem = reservedProblem(meshCIDR);
    if (problem) problems.push(`meshCIDR: ${meshCIDR} ${problem.why}`);
    // (Default-route space overlaps everything: the one problem is enough.)
    const own: Array<[string[], string]> = [
      [serviceCIDRs, 'the service CIDR'],
      [clusterCIDRs, "the cluster's pod CIDR"],
      [nodeSubnets, 'the node subnet'],
    ];
    for (const [cidrs, what] of problem ? [] : own) {
      const hit = cidrs.find((c) => cidrOverlaps(c, meshCIDR));
      if (hit) problems.push(`meshCIDR: ${meshCIDR} overlaps ${what} ${hit}`);
    }
  }
  const checked = {
    // Stryker disable next-line StringLiteral: equivalent: meshCIDR is null only with a problem recorded, which refuses the settings
    meshCIDR: meshCIDR ?? '',
    defaultPersistentKeepalive: typeof k === 'number' ? k : 0,
    serviceCIDRs,
    clusterCIDRs,
    nodeSubnets,
  };
  return problems.length ? { problems } : { settings: checked };
}

/**
 * Address space no Peer may route into the mesh, whatever Node it belongs to: sending it into a
 * tunnel would take the node's own loopback, link-local (cloud metadata at 169.254.169.254,
 * node-local DNS at 169.254.20.10), multicast or broadcast traffic, or the cloud platform's
 * services, to whoever holds the peer's key.
 */
export const RESERVED_RANGES: ReadonlyArray<readonly [cidr: string, what: string]> = [
  ['0.0.0.0/8', 'the unspecified range 0.0.0.0/8'],
  ['127.0.0.0/8', 'loopback 127.0.0.0/8'],
  ['169.254.0.0/16', 'link-local 169.254.0.0/16 (cloud metadata 169.254.169.254)'],
  ['168.63.129.16/32', "Azure's platform address 168.63.129.16 (DNS, DHCP, health probes)"],
  ['224.0.0.0/4', 'multicast 224.0.0.0/4'],
  ['240.0.0.0/4', 'reserved 240.0.0.0/4 (with the broadcast address 255.255.255.255)'],
  ['::/128', 'the unspecified address ::'],
  ['::1/128', 'loopback ::1'],
  ['::ffff:0.0.0.0/96', 'IPv4-mapped ::ffff:0:0/96 (all of IPv4)'],
  ['64:ff9b::/96', 'NAT64 64:ff9b::/96 (all of IPv4)'],
  ['64:ff9b:1::/48', 'local NAT64 64:ff9b:1::/48'],
  ['fe80::/10', 'link-local fe80::/10'],
  ['ff00::/8', 'multicast ff00::/8'],
  ['fd00:ec2::254/128', 'cloud metadata fd00:ec2::254 (AWS)'],
  ['fd00:ec2::253/128', 'cloud DNS fd00:ec2::253 (AWS)'],
  ['fd20:ce::254/128', 'cloud metadata fd20:ce::254 (Google Cloud)'],
].map(([cidr, what]) => [canonicalCidr(cidr), what] as const);

/**
 * The shortest prefix a Peer may claim. Shorter ones are default-route space: 0.0.0.0/0, ::/0, their
 * halves (0.0.0.0/1, 128.0.0.0/1, ::/1, 8000::/1) and everything else that large, which would pull
 * the node's own traffic (to the API server, the registry, the internet) into the tunnel.
 */
export const MIN_PREFIX_LENGTH = 8;


/** An address as a /32 or /128 CIDR, canonical (remembered: the rules ask it for every node address and every mesh IP). */
const hostCidrs = new Map<string, string>();
/** A dotted quad without leading zeros: canonical already, so its /32 is canonical too. */
const PLAIN_IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
export function hostCidr(ip: string): string {
  let cidr = hostCidrs.get(ip);
  if (cidr === undefined) {
    cidr = PLAIN_IPV4.test(ip) ? `${ip}/32` : canonicalCidr(`${ip}/${ip.includes(':') ? 128 : 32}`);
    if (hostCidrs.size >= 100_000) hostCidrs.clear();
    hostCidrs.set(ip, cidr);
  }
  return cidr;
}

/** Who wins an overlap: the oldest object, then Gateway before Peer, then the smaller name (code units, not locale). */
export function precedes(a: CheckedObject, b: CheckedObject): number {
  return a.created - b.created || compareText(a.kind, b.kind) || compareText(a.name, b.name);
}

/**
 * Who a public key belongs to first: a node's Peer before any Gateway, a Gateway before any external
 * Peer (then precedes()). Without it, an older object (or, in a directory, where nothing has a
 * creation time, a smaller name) could take a node's key and knock the node out of the mesh.
 * Address space (mesh IPs) goes by age first instead (overlapOrder()).
 */
export const rank = (o: CheckedObject): number => (o.kind === 'Peer' && o.spec.nodeName !== null ? 0 : o.kind === 'Gateway' ? 1 : 2);

/** Why `winner` took `loser`'s key (rank, then precedes()), in words. */
export function whyWins(winner: CheckedObject, loser: CheckedObject): string {
  if (rank(winner) < rank(loser)) return rank(winner) === 0 ? "which is a node's Peer" : 'which is a Gateway';
  return winner.created < loser.created ? 'which is older' : winner.kind !== loser.kind ? 'which is as old and a Gateway' : 'which is as old and sorts first by name';
}

/**
 * Who keeps contested address space (a mesh IP, overlapping CIDRs): the oldest object, as
 * allocateMeshIP (meship.ts) assumes. Ranked first, a younger node's Peer (a compromised node sets
 * its own meshIP) or a new Gateway could take an older Gateway's or external Peer's mesh IP and
 * every node would route it to them. Only where ages tie (undated objects in a directory) does a
 * node's Peer come before a Gateway before an external Peer, so a squatter with a smaller name
 * cannot take a node's address; then the smaller name.
 */
export function overlapOrder(a: CheckedObject, b: CheckedObject): number {
  return a.created - b.created || rank(a) - rank(b) || compareText(a.name, b.name);
}

/** Why `winner` kept address space against `loser` (overlapOrder()), in words. */
export function whyKeeps(winner: CheckedObject, loser: CheckedObject): string {
  if (winner.created < loser.created) return 'which is older';
  if (rank(winner) < rank(loser)) return rank(winner) === 0 ? "which is as old and a node's Peer" : 'which is as old and a Gateway';
  return 'which is as old and sorts first by name';
}

export const list = (cidrs: readonly string[]): string => `[${cidrs.join(', ')}]`;
export const describe = (o: CheckedObject): string => `${o.kind} ${o.name}`;

/** A stable text of an arbitrary value, to order duplicates deterministically. */
export function fingerprint(v: unknown): string {
  try {
    return JSON.stringify(v) ?? '';
  } catch {
    return '';
  }
}

export interface Problem {
  reason: string;
  why: string;
}

/**
 * The first entry of `cidrs` (in the object's order) with a problem, as a refusal that names the
 * entry (`spec.allowedIPs[1] 0.0.0.0/0 is default-route space`); an object's own meshIP/32 is always fine.
 */
export function firstProblem(cidrs: readonly string[], own: string | null, check: (cidr: string) => Problem | null): (Problem & { field: string }) | null {
  for (const [i, c] of cidrs.entries()) {
    if (c === own) continue;
    const p = check(c);
    if (p) return { reason: p.reason, field: `spec.allowedIPs[${i}]`, why: `spec.allowedIPs[${i}] ${c} ${p.why}` };
  }
  return null;
}

const RESERVED_PARSED: ReadonlyArray<readonly [Range, string]> = RESERVED_RANGES.map(([cidr, what]) => [rangeOf(cidr), what] as const);
/** reservedProblem() by canonical CIDR: a pure function of the text, asked for every allowed IP on every pass. */
const reservedMemo = new Map<string, Problem | null>();

/** Default-route space and reserved ranges: refused for every Peer, a node's included. */
export function reservedProblem(c: string): Problem | null {
  const known = reservedMemo.get(c);
  if (known !== undefined) return known;
  let problem: Problem | null;
  const length = Number(c.slice(c.indexOf('/') + 1));
  if (length < MIN_PREFIX_LENGTH) {
    problem = { reason: 'AllowedIPsTooBroad', why: `is default-route space (a prefix shorter than /${MIN_PREFIX_LENGTH})` };
  } else {
    const r = rangeOf(c);
    const hit = RESERVED_PARSED.find(([reserved]) => rangesOverlap(r, reserved));
    problem = hit ? { reason: 'AllowedIPsReserved', why: `overlaps ${hit[1]}` } : null;
  }
  if (reservedMemo.size >= 100_000) reservedMemo.clear();
  reservedMemo.set(c, problem);
  return problem;
}

/**
 * The Nodes as the rules see them, with indexes over their pod CIDRs and addresses (built when an
 * external Peer first needs them, then kept up to date as Nodes come, change and go): which Node,
 * first by name, holds address space that overlaps a CIDR is O(log n) instead of a walk over every
 * Node for every external CIDR.
 */
export class NodeState {
  private readonly nodes: Map<string, NodeInfo>;
  private pods: CidrIndex<string> | null = null;
  private addresses: CidrIndex<string> | null = null;

  /** One NodeInfo per name (checked, canonical). */
  constructor(byName: Map<string, NodeInfo>) {
    this.nodes = byName;
  }

  get(name: string): NodeInfo | undefined {
    return this.nodes.get(name);
  }

  has(name: string): boolean {
    return this.nodes.has(name);
  }

  /** Node `name` is now `node` (undefined: gone); `before` is what it was. */
  set(name: string, before: NodeInfo | undefined, node: NodeInfo | undefined): void {
    if (node) this.nodes.set(name, node);
    else this.nodes.delete(name);
    if (before) {
      for (const p of before.podCIDRs) this.pods?.delete(p, name);
      for (const a of before.internalIPs) this.addresses?.delete(hostCidr(a), name);
    }
    if (node) {
      for (const p of node.podCIDRs) this.pods?.add(p, name);
      for (const a of node.internalIPs) this.addresses?.add(hostCidr(a), name);
    }
  }

  /** The first Node by name (code units) holding a CIDR in `index` that overlaps `c`. */
  private first(index: CidrIndex<string>, c: string): NodeInfo | undefined {
    let best: string | undefined;
    index.forEachOverlapping(c, (e) => {
      for (const v of e.values) if (best === undefined || compareText(v, best) < 0) best = v;
    });
    return best === undefined ? undefined : this.nodes.get(best);
  }

  /** The cluster's own address space, which no machine outside it may claim. */
  externalProblem(c: string, settings: CheckedSettings): Problem | null {
    if (!this.pods) {
      this.pods = new CidrIndex<string>();
      this.pods.load((add) => this.nodes.forEach((n) => n.podCIDRs.forEach((p) => add(p, n.name))));
    }
    const withPod = this.first(this.pods, c);
    if (withPod) {
      const pod = withPod.podCIDRs.find((p) => cidrOverlaps(p, c)) as string;
      return { reason: 'OverlapsPodCIDR', why: `overlaps Node ${withPod.name}'s podCIDR ${pod}` };
    }
    const ranges: Array<[string[], string, string]> = [
      [settings.clusterCIDRs, 'OverlapsClusterCIDR', "the cluster's pod CIDR"],
      [settings.serviceCIDRs, 'OverlapsServiceCIDR', 'the service CIDR'],
      [[settings.meshCIDR], 'OverlapsMeshCIDR', 'the mesh CIDR'],
    ];
    for (const [cidrs, reason, what] of ranges) {
      const hit = cidrs.find((r) => cidrOverlaps(r, c));
      if (hit) return { reason, why: `overlaps ${what} ${hit}${reason === 'OverlapsMeshCIDR' ? ' (only its own meshIP/32 may)' : ''}` };
    }
    if (!this.addresses) {
      this.addresses = new CidrIndex<string>();
      this.addresses.load((add) => this.nodes.forEach((n) => n.internalIPs.forEach((a) => add(hostCidr(a), n.name))));
    }
    const withAddress = this.first(this.addresses, c);
    if (withAddress) {
      const ip = withAddress.internalIPs.find((a) => cidrContains(c, hostCidr(a))) as string;
      return { reason: 'OverlapsNodeAddress', why: `contains Node ${withAddress.name}'s address ${ip}` };
    }
    const subnet = settings.nodeSubnets.find((r) => cidrOverlaps(r, c));
    return subnet ? { reason: 'OverlapsNodeSubnet', why: `overlaps the node subnet ${subnet}` } : null;
  }
}

/** What an object's own checks say, before public keys, preshared keys and overlaps with others. */
export type OwnCheck = { ok: true; allowedIPs: string[] } | { ok: false; reason: string; field: string; why: string };

/**
 * The checks of one object against the Nodes and the settings alone (no other Peer or Gateway):
 * its mesh IP inside the mesh CIDR and clear of reserved space, a node's Peer inside its Node's pod
 * CIDRs, an external Peer clear of reserved and the cluster's own space. On success, what the device
 * would route to it: its CIDRs plus its mesh IP, canonical, without duplicates, sorted.
 */
export function ownCheck(o: CheckedObject, nodes: NodeState, settings: CheckedSettings): OwnCheck {
  const { kind, name, spec } = o;
  const meshCIDR = settings.meshCIDR;
  if (spec.meshIP !== null && !cidrContains(meshCIDR, hostCidr(spec.meshIP))) {
    return { ok: false, reason: 'MeshIPOutsideMeshCIDR', field: 'spec.meshIP', why: `spec.meshIP ${spec.meshIP} is not inside the mesh CIDR ${meshCIDR}` };
  }
  const own = spec.meshIP === null ? null : hostCidr(spec.meshIP);
  // A mesh IP is routed like any allowed IP, so it passes the same reserved-space check (the
  // allowedIPs checks below skip it). checkSettings() already keeps the mesh CIDR clear of
  // reserved space; this holds should that ever change.
  const ownProblem = own === null ? null : reservedProblem(own);
  // Stryker disable next-line ConditionalExpression: equivalent while checkSettings() refuses a mesh CIDR over reserved space
  if (ownProblem) return { ok: false, reason: 'MeshIPReserved', field: 'spec.meshIP', why: `spec.meshIP ${spec.meshIP} ${ownProblem.why}` };
  let allowedIPs: string[];
  if (kind === 'Gateway') {
    // A gateway is reached by its mesh IP only; its podCIDRs are what it routes on its own side.
    allowedIPs = [own as string];
  } else if (spec.nodeName !== null) {
    if (spec.nodeName !== name) {
      return { ok: false, reason: 'NodeNameMismatch', field: 'spec.nodeName', why: `spec.nodeName ${spec.nodeName} differs from the Peer's name: a node's Peer is named after its node` };
    }
    const node = nodes.get(spec.nodeName);
    if (!node) return { ok: false, reason: 'NodeNotFound', field: 'spec.nodeName', why: `spec.nodeName: Node ${spec.nodeName} does not exist` };
    const problem = firstProblem(spec.cidrs, own, (c) => {
      const reserved = reservedProblem(c);
      if (reserved) return reserved;
      if (node.podCIDRs.some((pod) => cidrContains(pod, c))) return null;
      return {
        reason: 'AllowedIPsOutsidePodCIDRs',
        why: `is not inside Node ${node.name}'s podCIDRs ${list(node.podCIDRs)}${own ? ` nor its meshIP ${own}` : ''}`,
      };
    });
    if (problem) return { ok: false, ...problem };
    allowedIPs = own ? [...spec.cidrs, own] : [...spec.cidrs];
  } else {
    // A machine outside the cluster: none of the cluster's own address space, nor anything reserved.
    const problem = firstProblem(spec.cidrs, own, (c) => reservedProblem(c) ?? nodes.externalProblem(c, settings));
    if (problem) return { ok: false, ...problem };
    allowedIPs = own ? [...spec.cidrs, own] : [...spec.cidrs];
  }
  // Sorted by code units (the default sort, as compareText), duplicates dropped.
  allowedIPs.sort();
  return { ok: true, allowedIPs: allowedIPs.filter((a, i) => i === 0 || a !== allowedIPs[i - 1]) };
}
