/**
 * The desired state of one device, as a pure function of what the cluster says (DESIGN §3.2):
 * (this node or gateway, Peers, Gateways, Nodes, settings) -> the peers its device should hold,
 * the routes it should have, and every object it refused and why.
 *
 * Every agent runs this over the same objects and reaches the same verdicts, so a refused object
 * is refused everywhere and the verdict can be written to its status by anyone.
 */
import { canonicalCidr, cidrContains, cidrOverlaps } from '../../native/index.ts';
import type { PeerConfig } from '../../native/index.ts';
import { checkSpec } from '../crd/validate.ts';
import type { CheckedSpec } from '../crd/validate.ts';
import type { Gateway, NodeInfo, Peer } from '../crd/types.ts';

export interface MeshSettings {
  /** The CIDR mesh IPs come from (default 100.96.0.0/16). */
  meshCIDR: string;
  /** Keepalive for peers that do not set one (0 = off). */
  defaultPersistentKeepalive?: number;
}

export interface Self {
  /** A node's agent, or a Konnectivity-side gateway. */
  role: 'node' | 'gateway';
  /** The node name (role node) or the Gateway's name (role gateway). */
  name: string;
}

export interface TopologyInput {
  self: Self;
  peers: readonly Peer[];
  gateways: readonly Gateway[];
  nodes: readonly NodeInfo[];
  settings: MeshSettings;
  /** Preshared keys by `namespace/name/key` of their Secret (base64), for peers that reference one. */
  presharedKeys?: ReadonlyMap<string, string>;
}

export type ObjectKind = 'Peer' | 'Gateway';

export interface Refusal {
  kind: ObjectKind;
  name: string;
  /** Machine-readable, CamelCase (a condition reason). */
  reason: string;
  /** The field at fault, e.g. `spec.allowedIPs[0]`. */
  field: string;
  /** A sentence naming the object and the field. */
  message: string;
}

export interface DesiredPeer extends PeerConfig {
  kind: ObjectKind;
  name: string;
  nodeName: string | null;
  meshIP: string | null;
}

export interface Topology {
  /** Peers this device should hold, sorted by public key. */
  peers: DesiredPeer[];
  /** Destinations to route through the tunnel, canonical and sorted. */
  routes: string[];
  /** Objects left out, sorted by kind and name. Includes this device's own object if it lost. */
  refused: Refusal[];
}

interface Candidate {
  kind: ObjectKind;
  name: string;
  created: number;
  spec: CheckedSpec;
  /** What the device would route to this peer: its CIDRs plus its mesh IP. */
  allowedIPs: string[];
  presharedKey: string | null;
}

const hostCidr = (ip: string): string => canonicalCidr(`${ip}/${ip.includes(':') ? 128 : 32}`);

function createdAt(obj: Peer | Gateway): number {
  const t = obj.metadata?.creationTimestamp;
  const ms = t === undefined ? NaN : new Date(t).getTime();
  // An object with no creation time (the directory source) sorts after every dated one.
  return Number.isFinite(ms) ? ms : Number.MAX_SAFE_INTEGER;
}

/** Who wins an overlap: the oldest object, then Gateway before Peer, then the smaller name. */
function precedes(a: Candidate, b: Candidate): number {
  return a.created - b.created || a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name);
}

const list = (cidrs: readonly string[]): string => `[${cidrs.join(', ')}]`;

export function computeTopology(input: TopologyInput): Topology {
  const { self, settings } = input;
  const meshCIDR = canonicalCidr(settings.meshCIDR, 'mesh CIDR');
  const refused: Refusal[] = [];
  const refuse = (kind: ObjectKind, name: string, reason: string, field: string, why: string): void => {
    refused.push({ kind, name, reason, field, message: `${kind} ${name}: ${why}` });
  };
  // Node objects from a directory are not validated by an API server: keep only pod CIDRs that parse.
  const validNodes = input.nodes.map((n) => ({ ...n, podCIDRs: n.podCIDRs.flatMap(parsedCidr) }));
  const nodes = new Map(validNodes.map((n) => [n.name, n]));
  const candidates: Candidate[] = [];

  const objects: Array<[ObjectKind, Peer | Gateway]> = [
    ...input.peers.map((p): [ObjectKind, Peer] => ['Peer', p]),
    ...input.gateways.map((g): [ObjectKind, Gateway] => ['Gateway', g]),
  ];
  for (const [kind, obj] of objects) {
    const name = obj.metadata?.name ?? '(unnamed)';
    const checked = checkSpec(kind, obj);
    if ('problems' in checked) {
      const first = checked.problems[0];
      refuse(kind, name, 'InvalidSpec', first.field, checked.problems.map((p) => p.message).join('; '));
      continue;
    }
    const spec = checked.spec;
    if (spec.meshIP !== null && !cidrContains(meshCIDR, hostCidr(spec.meshIP))) {
      refuse(kind, name, 'MeshIPOutsideMeshCIDR', 'spec.meshIP', `spec.meshIP ${spec.meshIP} is not inside the mesh CIDR ${meshCIDR}`);
      continue;
    }
    let allowedIPs: string[];
    if (kind === 'Gateway') {
      // A gateway is reached by its mesh IP only; its podCIDRs are what it routes on its own side.
      allowedIPs = [hostCidr(spec.meshIP as string)];
    } else if (spec.nodeName !== null) {
      if (spec.nodeName !== name) {
        refuse(kind, name, 'NodeNameMismatch', 'spec.nodeName', `spec.nodeName ${spec.nodeName} differs from the Peer's name: a node's Peer is named after its node`);
        continue;
      }
      const node = nodes.get(spec.nodeName);
      if (!node) {
        refuse(kind, name, 'NodeNotFound', 'spec.nodeName', `Node ${spec.nodeName} does not exist`);
        continue;
      }
      const own = spec.meshIP === null ? null : hostCidr(spec.meshIP);
      const bad = spec.cidrs.findIndex((c) => c !== own && !node.podCIDRs.some((pod) => cidrContains(pod, c)));
      if (bad >= 0) {
        refuse(
          kind,
          name,
          'AllowedIPsOutsidePodCIDRs',
          `spec.allowedIPs[${bad}]`,
          `allowedIPs ${spec.cidrs[bad]} is not inside Node ${node.name}'s podCIDRs ${list(node.podCIDRs)}${own ? ` nor its meshIP ${own}` : ''}`,
        );
        continue;
      }
      allowedIPs = own && !spec.cidrs.includes(own) ? [...spec.cidrs, own] : [...spec.cidrs];
    } else {
      // A machine outside the cluster: it may not claim any node's pods.
      const own = spec.meshIP === null ? null : hostCidr(spec.meshIP);
      let clash: { index: number; node: NodeInfo; pod: string } | null = null;
      spec.cidrs.forEach((c, index) => {
        for (const node of validNodes) {
          const pod = node.podCIDRs.find((p) => cidrOverlaps(p, c));
          if (pod && !clash) clash = { index, node, pod };
        }
      });
      if (clash) {
        const { index, node, pod } = clash as { index: number; node: NodeInfo; pod: string };
        refuse(kind, name, 'OverlapsPodCIDR', `spec.allowedIPs[${index}]`, `allowedIPs ${spec.cidrs[index]} overlaps Node ${node.name}'s podCIDR ${pod}`);
        continue;
      }
      // Nor the mesh's own addresses (beyond its own mesh IP), nor a node's address: either would
      // pull other members' tunnel or host traffic towards it.
      const meshIndex = spec.cidrs.findIndex((c) => c !== own && cidrOverlaps(c, meshCIDR));
      if (meshIndex >= 0) {
        refuse(kind, name, 'OverlapsMeshCIDR', `spec.allowedIPs[${meshIndex}]`, `allowedIPs ${spec.cidrs[meshIndex]} overlaps the mesh CIDR ${meshCIDR} (only its own meshIP/32 may)`);
        continue;
      }
      const hostClash = spec.cidrs
        .map((c, index) => ({ index, node: validNodes.find((n) => n.internalIPs.some((ip) => parsedCidr(hostCidrOf(ip)).some((h) => cidrOverlaps(c, h)))) }))
        .find((x) => x.node);
      if (hostClash?.node) {
        refuse(kind, name, 'OverlapsNodeAddress', `spec.allowedIPs[${hostClash.index}]`, `allowedIPs ${spec.cidrs[hostClash.index]} contains Node ${hostClash.node.name}'s address ${hostClash.node.internalIPs.join(', ')}`);
        continue;
      }
      allowedIPs = own && !spec.cidrs.includes(own) ? [...spec.cidrs, own] : [...spec.cidrs];
    }
    let presharedKey: string | null = null;
    if (spec.presharedKeySecretRef) {
      const r = spec.presharedKeySecretRef;
      const found = input.presharedKeys?.get(`${r.namespace}/${r.name}/${r.key}`);
      if (!found) {
        refuse(kind, name, 'PresharedKeyMissing', 'spec.presharedKeySecretRef', `Secret ${r.namespace}/${r.name} has no usable key ${r.key}`);
        continue;
      }
      presharedKey = found;
    }
    candidates.push({ kind, name, created: createdAt(obj), spec, allowedIPs: [...new Set(allowedIPs)].sort(), presharedKey });
  }

  // Overlaps between otherwise acceptable objects: one deterministic winner, the rest refused.
  candidates.sort(precedes);
  const winners: Candidate[] = [];
  for (const c of candidates) {
    let lost = false;
    for (const w of winners) {
      const other = `${w.kind} ${w.name}`;
      if (w.spec.publicKey === c.spec.publicKey) {
        refuse(c.kind, c.name, 'DuplicatePublicKey', 'spec.publicKey', `spec.publicKey is already used by ${other}, which is older`);
      } else if (c.spec.meshIP !== null && c.spec.meshIP === w.spec.meshIP) {
        refuse(c.kind, c.name, 'DuplicateMeshIP', 'spec.meshIP', `spec.meshIP ${c.spec.meshIP} is already used by ${other}, which is older`);
      } else {
        const mine = c.allowedIPs.find((a) => w.allowedIPs.some((b) => cidrOverlaps(a, b)));
        if (mine === undefined) continue;
        const theirs = w.allowedIPs.find((b) => cidrOverlaps(mine, b)) as string;
        const field = c.kind === 'Gateway' ? 'spec.meshIP' : fieldOf(c, mine);
        refuse(c.kind, c.name, 'OverlapsPeer', field, `${mine} overlaps ${theirs} of ${other}, which is older`);
      }
      lost = true;
      break;
    }
    if (!lost) winners.push(c);
  }

  const selfKind: ObjectKind = self.role === 'node' ? 'Peer' : 'Gateway';
  const isSelf = (c: Candidate): boolean => c.kind === selfKind && c.name === self.name;
  const selfKey = winners.find(isSelf)?.spec.publicKey;
  const peers: DesiredPeer[] = winners
    .filter((c) => !isSelf(c) && c.spec.publicKey !== selfKey)
    // A gateway peers with the nodes only.
    .filter((c) => self.role === 'node' || (c.kind === 'Peer' && c.spec.nodeName !== null))
    .map((c) => ({
      kind: c.kind,
      name: c.name,
      nodeName: c.spec.nodeName,
      meshIP: c.spec.meshIP,
      publicKey: c.spec.publicKey,
      endpoint: c.spec.endpoint,
      allowedIPs: c.allowedIPs,
      persistentKeepalive: c.spec.persistentKeepalive ?? settings.defaultPersistentKeepalive ?? 0,
      presharedKey: c.presharedKey,
    }))
    .sort((a, b) => a.publicKey.localeCompare(b.publicKey));
  const routes = [...new Set(peers.flatMap((p) => p.allowedIPs))].sort();
  refused.sort((a, b) => a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name));
  return { peers, routes, refused };
}

function hostCidrOf(ip: string): string {
  return `${ip}/${ip.includes(':') ? 128 : 32}`;
}

function parsedCidr(text: string): string[] {
  try {
    return [canonicalCidr(text)];
  } catch {
    return [];
  }
}

function fieldOf(c: Candidate, cidr: string): string {
  const i = c.spec.cidrs.indexOf(cidr);
  return i >= 0 ? `spec.allowedIPs[${i}]` : 'spec.meshIP';
}
