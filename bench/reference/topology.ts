/**
 * The desired-state function as of commit 7e998a4 (unchanged up to 3c259c8): mesh/topology/topology.ts
 * with the parts of mesh/topology/ranges.ts it uses, kept to compare verdicts and speed. The property
 * tests check that computeTopology and TopologyEngine reach exactly its verdicts and messages, and
 * bench/topology.ts runs it beside ours. A deliberate copy: it must not change when the live code is
 * optimised. mesh/crd/validate.ts of 3c259c8 is frozen beside it (./validate.ts); only
 * order.ts, the CRD schema and native/'s parsers are shared.
 */
import { canonicalCidr } from '../../native/index.ts';
import { checkNodeInfo, checkObject, isObject, redactKeys, shown } from './validate.ts';
import type { CheckedObject } from './validate.ts';
import type { NodeInfo } from '../../mesh/crd/types.ts';
import type { CheckedSettings, DesiredPeer, ObjectKind, Refusal, Self, Topology, TopologyInput } from '../../mesh/topology/topology.ts';
import { compareText } from '../../mesh/topology/order.ts';
import ipaddr from 'ipaddr.js';

/**
 * The service CIDR(s) when none is configured: AKS's default (`--service-cidr 10.0.0.0/16`). kubeadm's
 * default is 10.96.0.0/12; set the real one (both families on a dual-stack cluster).
 */
const DEFAULT_SERVICE_CIDRS: readonly string[] = ['10.0.0.0/16'];
/**
 * The cluster's pod CIDR(s) when none is configured: the controller-manager's --cluster-cidr on AKS
 * (kubenet, Azure CNI Overlay: `--pod-cidr 10.244.0.0/16`) and in flannel's and kubeadm guides. It
 * covers the pod CIDRs of Nodes that have none yet.
 */
const DEFAULT_CLUSTER_CIDRS: readonly string[] = ['10.244.0.0/16'];
/** The node subnets when none are configured: the address space of the virtual network AKS creates (10.224.0.0/12). */
const DEFAULT_NODE_SUBNETS: readonly string[] = ['10.224.0.0/12'];

/**
 * Check the settings (for flags, and before every computation): canonical CIDRs with the defaults
 * filled in, or the problems, each naming the setting.
 */
function checkSettings(settings: unknown): { settings: CheckedSettings } | { problems: string[] } {
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
const RESERVED_RANGES: ReadonlyArray<readonly [cidr: string, what: string]> = [
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
const MIN_PREFIX_LENGTH = 8;

/** A Peer or Gateway that passed the per-object checks, with what the device would route to it. */
interface Candidate {
  object: CheckedObject;
  /** What the device would route to this peer: its CIDRs plus its mesh IP, canonical, sorted. */
  allowedIPs: string[];
  presharedKey: string | null;
}

/** An address as a /32 or /128 CIDR, canonical (remembered: the rules ask it for every node address and every external CIDR). */
const hostCidrs = new Map<string, string>();
function hostCidr(ip: string): string {
  let cidr = hostCidrs.get(ip);
  if (cidr === undefined) {
    cidr = canonicalCidr(`${ip}/${ip.includes(':') ? 128 : 32}`);
    if (hostCidrs.size >= 100_000) hostCidrs.clear();
    hostCidrs.set(ip, cidr);
  }
  return cidr;
}

/** Who wins an overlap: the oldest object, then Gateway before Peer, then the smaller name (code units, not locale). */
function precedes(a: CheckedObject, b: CheckedObject): number {
  return a.created - b.created || compareText(a.kind, b.kind) || compareText(a.name, b.name);
}

/**
 * Who a public key belongs to first: a node's Peer before any Gateway, a Gateway before any external
 * Peer (then precedes()). Without it, an older object (or, in a directory, where nothing has a
 * creation time, a smaller name) could take a node's key and knock the node out of the mesh.
 * Address space (mesh IPs) goes by age first instead (overlapOrder()).
 */
const rank = (o: CheckedObject): number => (o.kind === 'Peer' && o.spec.nodeName !== null ? 0 : o.kind === 'Gateway' ? 1 : 2);

/** Why `winner` took `loser`'s key (rank, then precedes()), in words. */
function whyWins(winner: CheckedObject, loser: CheckedObject): string {
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
function overlapOrder(a: CheckedObject, b: CheckedObject): number {
  return a.created - b.created || rank(a) - rank(b) || compareText(a.name, b.name);
}

/** Why `winner` kept address space against `loser` (overlapOrder()), in words. */
function whyKeeps(winner: CheckedObject, loser: CheckedObject): string {
  if (winner.created < loser.created) return 'which is older';
  if (rank(winner) < rank(loser)) return rank(winner) === 0 ? "which is as old and a node's Peer" : 'which is as old and a Gateway';
  return 'which is as old and sorts first by name';
}

const list = (cidrs: readonly string[]): string => `[${cidrs.join(', ')}]`;
const describe = (o: CheckedObject): string => `${o.kind} ${o.name}`;
const asArray = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** A stable text of an arbitrary value, to order duplicates deterministically. */
function fingerprint(v: unknown): string {
  try {
    return JSON.stringify(v) ?? '';
  } catch {
    return '';
  }
}

export function referenceTopology(input: TopologyInput): Topology {
  const raw: Partial<TopologyInput> = isObject(input) ? input : {};
  const checkedSettings = checkSettings(raw.settings);
  if ('problems' in checkedSettings) return { peers: [], routes: [], refused: [], settingsProblems: checkedSettings.problems };
  const settings = checkedSettings.settings;
  const meshCIDR = settings.meshCIDR;
  const self: Self = isObject(raw.self) && (raw.self.role === 'node' || raw.self.role === 'gateway') && typeof raw.self.name === 'string' ? raw.self : { role: 'node', name: '' };
  const presharedKeys = raw.presharedKeys instanceof Map ? raw.presharedKeys : new Map<string, string>();

  const refused: Refusal[] = [];
  const refuse = (kind: ObjectKind, name: string, reason: string, field: string, why: string): void => {
    refused.push({ kind, name, reason, field, message: `${kind} ${name}: ${why}` });
  };

  // Nodes, checked again (a directory can say anything); a name given twice keeps its first
  // occurrence in name-then-content order, so the result does not depend on the input's order.
  const nodes = new Map<string, NodeInfo>();
  for (const n of asArray(raw.nodes)
    .map((r) => ({ text: fingerprint(r), node: checkNodeInfo(r) }))
    .sort((a, b) => compareText(a.text, b.text))) {
    if (n.node && !nodes.has(n.node.name)) nodes.set(n.node.name, n.node);
  }
  const nodeList = [...nodes.values()].sort((a, b) => compareText(a.name, b.name));

  // Every object through the one checked path; a second object of the same kind and name (a
  // directory can hold two) is refused, again independently of the input's order.
  const entries = [
    ...asArray(raw.peers).map((r) => ({ kind: 'Peer' as const, r, check: checkObject('Peer', r) })),
    ...asArray(raw.gateways).map((r) => ({ kind: 'Gateway' as const, r, check: checkObject('Gateway', r) })),
  ]
    .map((e) => ({ ...e, name: e.check.ok ? e.check.object.name : e.check.name, text: fingerprint(e.r) }))
    .sort((a, b) => compareText(a.kind, b.kind) || compareText(a.name, b.name) || compareText(a.text, b.text));

  const seen = new Set<string>();
  const checked: CheckedObject[] = [];
  for (const e of entries) {
    const id = `${e.kind}/${e.name}`;
    // (Objects without a usable name are refused below for that; they are not duplicates of each other.)
    const named = e.check.ok || e.check.problems[0].field !== 'metadata.name';
    if (named && seen.has(id)) {
      refuse(e.kind, e.name, 'DuplicateName', 'metadata.name', `metadata.name: another ${e.kind} has the same name`);
      continue;
    }
    seen.add(id);
    if (!e.check.ok) {
      refuse(e.kind, e.name, 'InvalidSpec', e.check.problems[0].field, e.check.problems.map((p) => p.message).join('; '));
      continue;
    }
    checked.push(e.check.object);
  }

  // Public keys: a node's Peer always wins its own key, then a Gateway, then an external Peer;
  // within each, the oldest (then name). Claimants are all well-formed objects, a node's Peer only
  // when it is the Peer of an existing Node, so a key stays its node's even while that Peer is
  // refused for something else (an older impostor cannot take it over, issue 9).
  const isNodePeer = (o: CheckedObject): boolean => o.kind === 'Peer' && o.spec.nodeName !== null && o.spec.nodeName === o.name && nodes.has(o.name);
  const keyOwner = new Map<string, CheckedObject>();
  // Node Peers by key: a key two nodes claim is refused for every one of them. Giving it to the
  // older would let a compromised older node copy a newer node's key and knock it out; giving it
  // to the newer would let a new node take an old one's traffic. Neither gets the traffic.
  const nodeClaims = new Map<string, CheckedObject[]>();
  for (const o of checked) {
    if (o.kind === 'Peer' && o.spec.nodeName !== null && !isNodePeer(o)) continue;
    if (isNodePeer(o)) nodeClaims.set(o.spec.publicKey, [...(nodeClaims.get(o.spec.publicKey) ?? []), o]);
    const held = keyOwner.get(o.spec.publicKey);
    if (!held || rank(o) < rank(held) || (rank(o) === rank(held) && precedes(o, held) < 0)) keyOwner.set(o.spec.publicKey, o);
  }

  const candidates: Candidate[] = [];
  for (const o of checked) {
    const { kind, name, spec } = o;
    if (spec.meshIP !== null && !cidrContains(meshCIDR, hostCidr(spec.meshIP))) {
      refuse(kind, name, 'MeshIPOutsideMeshCIDR', 'spec.meshIP', `spec.meshIP ${spec.meshIP} is not inside the mesh CIDR ${meshCIDR}`);
      continue;
    }
    const own = spec.meshIP === null ? null : hostCidr(spec.meshIP);
    // A mesh IP is routed like any allowed IP, so it passes the same reserved-space check (the
    // allowedIPs checks below skip it). checkSettings() already keeps the mesh CIDR clear of
    // reserved space; this holds should that ever change.
    const ownProblem = own === null ? null : reservedProblem(own);
    // Stryker disable next-line ConditionalExpression: equivalent while checkSettings() refuses a mesh CIDR over reserved space
    if (ownProblem) {
      refuse(kind, name, 'MeshIPReserved', 'spec.meshIP', `spec.meshIP ${spec.meshIP} ${ownProblem.why}`);
      continue;
    }
    let allowedIPs: string[];
    if (kind === 'Gateway') {
      // A gateway is reached by its mesh IP only; its podCIDRs are what it routes on its own side.
      allowedIPs = [own as string];
    } else if (spec.nodeName !== null) {
      if (spec.nodeName !== name) {
        refuse(kind, name, 'NodeNameMismatch', 'spec.nodeName', `spec.nodeName ${spec.nodeName} differs from the Peer's name: a node's Peer is named after its node`);
        continue;
      }
      const node = nodes.get(spec.nodeName);
      if (!node) {
        refuse(kind, name, 'NodeNotFound', 'spec.nodeName', `spec.nodeName: Node ${spec.nodeName} does not exist`);
        continue;
      }
      const problem = firstProblem(spec.cidrs, own, (c) => {
        const reserved = reservedProblem(c);
        if (reserved) return reserved;
        if (node.podCIDRs.some((pod) => cidrContains(pod, c))) return null;
        return {
          reason: 'AllowedIPsOutsidePodCIDRs',
          why: `is not inside Node ${node.name}'s podCIDRs ${list(node.podCIDRs)}${own ? ` nor its meshIP ${own}` : ''}`,
        };
      });
      if (problem) {
        refuse(kind, name, problem.reason, problem.field, problem.why);
        continue;
      }
      allowedIPs = own ? [...spec.cidrs, own] : [...spec.cidrs];
    } else {
      // A machine outside the cluster: none of the cluster's own address space, nor anything reserved.
      const problem = firstProblem(spec.cidrs, own, (c) => reservedProblem(c) ?? externalProblem(c, nodeList, settings));
      if (problem) {
        refuse(kind, name, problem.reason, problem.field, problem.why);
        continue;
      }
      allowedIPs = own ? [...spec.cidrs, own] : [...spec.cidrs];
    }
    const claims = nodeClaims.get(spec.publicKey) ?? [];
    if (isNodePeer(o) && claims.length > 1) {
      const others = claims.filter((x) => x !== o).map((x) => `Node ${x.name}'s Peer`);
      refuse(kind, name, 'PublicKeyClaimedByNodes', 'spec.publicKey', `spec.publicKey is also the key of ${others.join(', ')}: a key more than one node claims is refused for all of them (a cloned image, or a node copying another's key)`);
      continue;
    }
    const owner = keyOwner.get(spec.publicKey) as CheckedObject;
    if (owner !== o) {
      const why =
        rank(owner) < rank(o)
          ? owner.kind === 'Peer'
            ? `spec.publicKey is the key of Node ${owner.name}'s Peer: a node's Peer always wins its own key`
            : `spec.publicKey is the key of Gateway ${owner.name}: only a node's Peer may share a Gateway's key`
          : `spec.publicKey is already used by ${describe(owner)}, ${whyWins(owner, o)}`;
      refuse(kind, name, 'DuplicatePublicKey', 'spec.publicKey', why);
      continue;
    }
    let presharedKey: string | null = null;
    if (spec.presharedKeySecretRef) {
      const r = spec.presharedKeySecretRef;
      const found = presharedKeys.get(`${r.namespace}/${r.name}/${r.key}`);
      if (typeof found !== 'string' || found === '') {
        refuse(kind, name, 'PresharedKeyMissing', 'spec.presharedKeySecretRef', `spec.presharedKeySecretRef: Secret ${r.namespace}/${r.name} has no usable key ${r.key}`);
        continue;
      }
      presharedKey = found;
    }
    candidates.push({ object: o, allowedIPs: [...new Set(allowedIPs)].sort(compareText), presharedKey });
  }

  // Overlaps between otherwise acceptable objects (in practice: mesh IPs, and node pod CIDRs that
  // overlap): one deterministic winner, the rest refused. The oldest first (overlapOrder()).
  candidates.sort((a, b) => overlapOrder(a.object, b.object));
  const winners: Candidate[] = [];
  const taken = new TakenSpace();
  const meshIPs = new Map<string, number>();
  for (const c of candidates) {
    // The first winner (in that order) it collides with: same mesh IP, or any overlap.
    const hit = c.object.spec.meshIP === null ? undefined : meshIPs.get(c.object.spec.meshIP);
    const first = Math.min(hit ?? Infinity, ...c.allowedIPs.flatMap((a) => taken.holders(a)));
    if (first === Infinity) {
      taken.add(winners.length, c.allowedIPs);
      if (c.object.spec.meshIP !== null) meshIPs.set(c.object.spec.meshIP, winners.length);
      winners.push(c);
      continue;
    }
    const lostTo = winners[first];
    const { kind, name, spec } = c.object;
    const other = `${describe(lostTo.object)}, ${whyKeeps(lostTo.object, c.object)}`;
    if (spec.meshIP !== null && spec.meshIP === lostTo.object.spec.meshIP) {
      refuse(kind, name, 'DuplicateMeshIP', 'spec.meshIP', `spec.meshIP ${spec.meshIP} is already used by ${other}`);
    } else {
      const mine = c.allowedIPs.find((a) => lostTo.allowedIPs.some((b) => cidrOverlaps(a, b))) as string;
      const theirs = lostTo.allowedIPs.find((b) => cidrOverlaps(mine, b)) as string;
      const index = spec.cidrs.indexOf(mine);
      const field = kind === 'Gateway' || index < 0 ? 'spec.meshIP' : `spec.allowedIPs[${index}]`;
      refuse(kind, name, 'OverlapsPeer', field, `${field} ${field === 'spec.meshIP' ? spec.meshIP : mine} overlaps ${theirs} of ${other}`);
    }
  }

  // Stryker disable next-line ConditionalExpression,StringLiteral: equivalent for a gateway: the filter below keeps only node Peers, so its own Gateway goes either way
  const selfKind: ObjectKind = self.role === 'node' ? 'Peer' : 'Gateway';
  const isSelf = (c: Candidate): boolean => c.object.kind === selfKind && c.object.name === self.name;
  const peers: DesiredPeer[] = winners
    .filter((c) => !isSelf(c))
    // A gateway peers with the nodes only.
    .filter((c) => self.role === 'node' || (c.object.kind === 'Peer' && c.object.spec.nodeName !== null))
    .map((c) => ({
      kind: c.object.kind,
      name: c.object.name,
      nodeName: c.object.spec.nodeName,
      meshIP: c.object.spec.meshIP,
      publicKey: c.object.spec.publicKey,
      endpoint: c.object.spec.endpoint,
      allowedIPs: c.allowedIPs,
      persistentKeepalive: c.object.spec.persistentKeepalive ?? settings.defaultPersistentKeepalive,
      presharedKey: c.presharedKey,
    }))
    .sort((a, b) => compareText(a.publicKey, b.publicKey));
  const routes = [...new Set(peers.flatMap((p) => p.allowedIPs))].sort(compareText);
  refused.sort((a, b) => compareText(a.kind, b.kind) || compareText(a.name, b.name));
  return { peers, routes, refused };
}

interface Problem {
  reason: string;
  why: string;
}

/**
 * The first entry of `cidrs` (in the object's order) with a problem, as a refusal that names the
 * entry (`spec.allowedIPs[1] 0.0.0.0/0 is default-route space`); an object's own meshIP/32 is always fine.
 */
function firstProblem(cidrs: readonly string[], own: string | null, check: (cidr: string) => Problem | null): (Problem & { field: string }) | null {
  for (const [i, c] of cidrs.entries()) {
    if (c === own) continue;
    const p = check(c);
    if (p) return { reason: p.reason, field: `spec.allowedIPs[${i}]`, why: `spec.allowedIPs[${i}] ${c} ${p.why}` };
  }
  return null;
}

/** Default-route space and reserved ranges: refused for every Peer, a node's included. */
function reservedProblem(c: string): Problem | null {
  const length = Number(c.slice(c.indexOf('/') + 1));
  if (length < MIN_PREFIX_LENGTH) {
    return { reason: 'AllowedIPsTooBroad', why: `is default-route space (a prefix shorter than /${MIN_PREFIX_LENGTH})` };
  }
  const hit = RESERVED_RANGES.find(([r]) => cidrOverlaps(c, r));
  return hit ? { reason: 'AllowedIPsReserved', why: `overlaps ${hit[1]}` } : null;
}

/** The cluster's own address space, which no machine outside it may claim. */
function externalProblem(c: string, nodes: readonly NodeInfo[], settings: CheckedSettings): Problem | null {
  for (const node of nodes) {
    const pod = node.podCIDRs.find((p) => cidrOverlaps(p, c));
    if (pod) return { reason: 'OverlapsPodCIDR', why: `overlaps Node ${node.name}'s podCIDR ${pod}` };
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
  for (const node of nodes) {
    const ip = node.internalIPs.find((a) => cidrContains(c, hostCidr(a)));
    if (ip) return { reason: 'OverlapsNodeAddress', why: `contains Node ${node.name}'s address ${ip}` };
  }
  const subnet = settings.nodeSubnets.find((r) => cidrOverlaps(r, c));
  return subnet ? { reason: 'OverlapsNodeSubnet', why: `overlaps the node subnet ${subnet}` } : null;
}


// ---- mesh/topology/ranges.ts as of the same commit (the parts used above) ----

interface Range {
  v6: boolean;
  first: bigint;
  last: bigint;
}

/** Parsed CIDRs by their text; cleared when it grows past CACHE_LIMIT (the input decides its size). */
const cache = new Map<string, Range>();
const CACHE_LIMIT = 100_000;

/** The range of a CIDR (any valid form; throws on an invalid one, like canonicalCidr). */
function rangeOf(cidr: string): Range {
  const hit = cache.get(cidr);
  if (hit) return hit;
  const canonical = canonicalCidr(cidr);
  const slash = canonical.lastIndexOf('/');
  const addr = canonical.slice(0, slash);
  const v6 = addr.includes(':');
  const bytes = (v6 ? ipaddr.IPv6.parse(addr) : ipaddr.IPv4.parse(addr)).toByteArray();
  const first = bytes.reduce((n, b) => (n << 8n) | BigInt(b), 0n);
  const hostBits = BigInt((v6 ? 128 : 32) - Number(canonical.slice(slash + 1)));
  const range = { v6, first, last: first | ((1n << hostBits) - 1n) };
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(cidr, range);
  return range;
}

/** Whether CIDR `inner` lies entirely inside CIDR `outer` (same family). */
function cidrContains(outer: string, inner: string): boolean {
  const o = rangeOf(outer);
  const i = rangeOf(inner);
  return o.v6 === i.v6 && o.first <= i.first && i.last <= o.last;
}

/** Whether two CIDRs share any address (same family). */
function cidrOverlaps(a: string, b: string): boolean {
  const x = rangeOf(a);
  const y = rangeOf(b);
  return x.v6 === y.v6 && x.first <= y.last && y.first <= x.last;
}

/**
 * The address space already taken, by owner (an index): find who holds any part of a CIDR in
 * O(log n) rather than comparing with every owner. Each owner's CIDRs are merged first, and owners
 * never overlap one another (an overlapping candidate is refused, not added), so the intervals are
 * disjoint and sorted by both ends.
 */
class TakenSpace {
  private readonly families: { v4: Array<{ first: bigint; last: bigint; owner: number }>; v6: Array<{ first: bigint; last: bigint; owner: number }> } = { v4: [], v6: [] };

  /** Owners holding any address of `cidr`. */
  holders(cidr: string): number[] {
    const r = rangeOf(cidr);
    const list = r.v6 ? this.families.v6 : this.families.v4;
    // The first interval that ends at or after r.first; from there, those that start by r.last.
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid].last < r.first) lo = mid + 1;
      else hi = mid;
    }
    const out: number[] = [];
    for (let i = lo; i < list.length && list[i].first <= r.last; i++) out.push(list[i].owner);
    return out;
  }

  /** Mark `cidrs` as held by `owner` (none of them may overlap another owner's). */
  add(owner: number, cidrs: readonly string[]): void {
    const merged: Range[] = [];
    for (const r of cidrs.map(rangeOf).sort((a, b) => Number(a.v6) - Number(b.v6) || (a.first < b.first ? -1 : a.first > b.first ? 1 : 0))) {
      const last = merged.at(-1);
      if (last && last.v6 === r.v6 && r.first <= last.last) {
        if (r.last > last.last) last.last = r.last;
      } else merged.push({ ...r });
    }
    for (const r of merged) {
      const list = r.v6 ? this.families.v6 : this.families.v4;
      let lo = 0;
      let hi = list.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (list[mid].first < r.first) lo = mid + 1;
        else hi = mid;
      }
      list.splice(lo, 0, { first: r.first, last: r.last, owner });
    }
  }
}
