/**
 * Deterministic mesh IP allocation for a node's own Peer, with a conflict rule every agent agrees on.
 *
 * A node's first choice is a hash of its name into the mesh CIDR; if that address is held by a Peer
 * or Gateway that wins over it (older, then Gateway before Peer, then smaller name: the trust rules'
 * overlap winner is the older too; only on a tie in age do they keep a node's Peer before a
 * Gateway, where yielding here merely moves the node), it probes the next address, and so on. Two agents that picked
 * the same address at the same moment both see both Peers; the younger one moves on its next pass.
 * An address the node already holds is kept as long as it wins, so mesh IPs are stable.
 */
import ipaddr from 'ipaddr.js';
import { canonicalCidr, parseIp } from '../../native/index.ts';
import { checkObject } from '../crd/validate.ts';
import { compareText } from './order.ts';

export interface MeshIPHolder {
  kind: 'Peer' | 'Gateway';
  name: string;
  meshIP: string;
  /** Creation time in ms, or undefined for an object not created yet / without one. */
  created?: number;
}

/** FNV-1a, 32 bits: stable across versions and platforms (unlike anything random). */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

function toBigInt(addr: ipaddr.IPv4 | ipaddr.IPv6): bigint {
  return addr.toByteArray().reduce((n, b) => (n << 8n) | BigInt(b), 0n);
}

function fromBigInt(n: bigint, v6: boolean): string {
  const bytes: number[] = [];
  for (let i = 0; i < (v6 ? 16 : 4); i++) {
    bytes.unshift(Number(n & 0xffn));
    n >>= 8n;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

const order = (a: MeshIPHolder, b: MeshIPHolder): number =>
  (a.created ?? Number.MAX_SAFE_INTEGER) - (b.created ?? Number.MAX_SAFE_INTEGER) || compareText(a.kind, b.kind) || compareText(a.name, b.name);

/** The address a holder claims, parsed strictly (no leading zeros), or null: another object's bad mesh IP is skipped, never thrown on. */
function holderAddress(h: unknown): ipaddr.IPv4 | ipaddr.IPv6 | null {
  try {
    // Stryker disable next-line StringLiteral: equivalent: the error is caught below and its message never shown
    return parseIp((h as MeshIPHolder).meshIP, 'meshIP');
  } catch {
    return null;
  }
}

/**
 * Every Peer and Gateway that holds a mesh IP, through the one checked path (mesh/crd/validate.ts):
 * objects that do not pass it hold nothing. What allocateMeshIP takes.
 */
export function meshIPHolders(peers: readonly unknown[], gateways: readonly unknown[]): MeshIPHolder[] {
  const out: MeshIPHolder[] = [];
  for (const [kind, objects] of [['Peer', peers], ['Gateway', gateways]] as const) {
    // Stryker disable next-line ArrayDeclaration: equivalent: anything put in the fallback fails the checked path and holds nothing
    for (const raw of Array.isArray(objects) ? objects : []) {
      const c = checkObject(kind, raw);
      if (!c.ok || c.object.spec.meshIP === null) continue;
      const created = c.object.created === Number.MAX_SAFE_INTEGER ? undefined : c.object.created;
      out.push({ kind, name: c.object.name, meshIP: c.object.spec.meshIP, ...(created === undefined ? {} : { created }) });
    }
  }
  return out;
}

/**
 * The mesh IP node `self` should use, given everything that holds one now (self's own Peer may be
 * among them: its current address is kept while it wins).
 */
export function allocateMeshIP(self: { kind?: 'Peer' | 'Gateway'; name: string; created?: number }, meshCIDR: string, holders: readonly MeshIPHolder[]): string {
  const cidr = canonicalCidr(meshCIDR, 'mesh CIDR');
  const [net, len] = ipaddr.parseCIDR(cidr);
  const v6 = net.kind() === 'ipv6';
  const bits = v6 ? 128 : 32;
  const size = 1n << BigInt(bits - len);
  // IPv4: skip the network and broadcast addresses; IPv6: skip the subnet-router anycast (offset 0).
  const first = 1n;
  const usable = v6 ? size - 1n : size - 2n;
  if (usable < 1n) throw new Error(`mesh CIDR ${cidr} has no usable addresses`);
  const base = toBigInt(net);
  // Stryker disable next-line StringLiteral: equivalent: our own meshIP field is never read (only kind, name and created order holders)
  const me: MeshIPHolder = { kind: self.kind ?? 'Peer', name: self.name, meshIP: '', created: self.created };
  const isMe = (h: MeshIPHolder): boolean => h.kind === me.kind && h.name === me.name;
  // Addresses held by someone who wins over us (a holder whose address does not parse holds nothing).
  const valid = (Array.isArray(holders) ? holders : []).filter((h) => h !== null && typeof h === 'object' && holderAddress(h) !== null);
  // Stryker disable next-line EqualityOperator: equivalent: order() is 0 only for ourselves, whom !isMe already leaves out
  const blocked = new Set(valid.filter((h) => !isMe(h) && order(h, me) < 0).map((h) => (holderAddress(h) as ipaddr.IPv4 | ipaddr.IPv6).toString()));
  const current = valid.find(isMe);
  const addr = current ? holderAddress(current) : null;
  if (addr) {
    const offset = toBigInt(addr) - base;
    if (addr.kind() === net.kind() && addr.match(net, len) && offset >= first && offset < first + usable && !blocked.has(addr.toString())) {
      return addr.toString();
    }
  }
  const start = BigInt(fnv1a(me.kind === 'Peer' ? self.name : `${me.kind}/${self.name}`)) % usable;
  // Stryker disable next-line ConditionalExpression,EqualityOperator: equivalent below a million addresses; the cap only bounds the search in huge (IPv6) CIDRs, which no test can fill
  const limit = usable < 1_000_000n ? usable : 1_000_000n;
  // Stryker disable next-line EqualityOperator: equivalent below a million addresses: one more probe returns to the first, already blocked
  for (let i = 0n; i < limit; i++) {
    const candidate = fromBigInt(base + first + ((start + i) % usable), v6);
    if (!blocked.has(candidate)) return candidate;
  }
  throw new Error(`mesh CIDR ${cidr} is full: no free mesh IP for node ${self.name}`);
}
