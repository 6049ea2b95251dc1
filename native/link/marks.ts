/**
 * The packet mark, routing table and rule priority that the mesh's policy routing uses, and the
 * checks that keep them from colliding with what the kernel and other node software already use.
 * Pure (no imports), so that flag parsing can use it without loading the rest of the bridge.
 *
 * wireguard-go puts the mark on its own UDP socket (UAPI `fwmark=`); the rule
 * `not fwmark <mark>/<mask> lookup <table>` sends everything else through the mesh table. A mark that
 * shares bits with another component's mark hands our packets to that component's rules: 51820
 * (0xca6c, wg-quick's habit) carries kube-proxy's masquerade bit 0x4000 (its MASQUERADE rewrote the
 * tunnel's source port) and kubelet's drop bit 0x8000 (its KUBE-FIREWALL rule drops every tunnel
 * packet). Sources of the values below: DESIGN §3.5.
 */

/**
 * The default mark: bit 13, the one bit of the low 16 that Kubernetes, Cilium, Istio, AWS VPC CNI and
 * Antrea leave alone, and below the upper 16 bits that Calico, Tailscale, Antrea and kube-router use.
 */
export const DEFAULT_FWMARK = 0x2000;
/** The rule matches only our bit, so a packet of ours that another component marks too still skips the table. */
export const DEFAULT_FWMARK_MASK = 0x2000;
/** The default mesh routing table. */
export const DEFAULT_TABLE = 51820;
/** The default priority of the mesh rule: after the local table's rule (0), before main's (32766). */
export const DEFAULT_RULE_PRIORITY = 5280;

/** The mask a rule uses for a mark: the mark's own bits (a one-bit mark is tested as one bit). */
export function fwmarkMask(fwmark: number): number {
  return fwmark >>> 0;
}

/** "0x2000" */
export function formatMark(value: number): string {
  return `0x${(value >>> 0).toString(16)}`;
}

export interface KnownMark {
  /** The bits this component sets or matches on. */
  bits: number;
  /** Who, and what for. */
  owner: string;
  /** What it does to a packet carrying them (for the refusal message). */
  effect?: string;
  /**
   * Set on every Kubernetes node by default (kube-proxy, kubelet): refused unless explicitly allowed.
   * The others depend on which CNI or VPN a cluster runs, and are reported, not refused.
   */
  kubernetes: boolean;
}

/** Marks of the software a node is likely to run (defaults; where they are configurable, the flag is named). */
export const KNOWN_MARKS: readonly KnownMark[] = [
  { bits: 0x4000, owner: "kube-proxy's masquerade bit", effect: 'KUBE-POSTROUTING masquerades such packets; --iptables-masquerade-bit 14', kubernetes: true },
  { bits: 0x8000, owner: "kubelet's drop bit", effect: "KUBE-FIREWALL drops such packets; kubelet's and kube-proxy's --iptables-drop-bit 15", kubernetes: true },
  { bits: 0x0f00, owner: "Cilium's magic marks (MagicMarkHostMask 0x0f00)", kubernetes: false },
  { bits: 0x1000, owner: 'Cilium WireGuard (MagicMarkWireGuardEncrypted 0x1e00)', kubernetes: false },
  { bits: 0xff000000, owner: "Calico's iptables marks (FelixConfiguration iptablesMarkMask, default 0xff000000; often 0xffff0000)", kubernetes: false },
  { bits: 0x00ff0000, owner: "Tailscale's marks (0x40000 subnet route, 0x80000 bypass, mask 0xff0000)", kubernetes: false },
  { bits: 0x00030000, owner: "kube-router's network policy marks (0x10000, 0x20000)", kubernetes: false },
  { bits: 0xe0000000, owner: "Antrea's host-local, Egress and L2 dispatch bits (31, 30, 29)", kubernetes: false },
  { bits: 0x000000ff, owner: "Antrea's SNAT IP ID (0xff), AWS VPC CNI's connmark (0x80), Istio's marks (0x539 and friends)", kubernetes: false },
];

/** The known marks `fwmark` shares bits with, Kubernetes' first. */
export function fwmarkCollisions(fwmark: number): KnownMark[] {
  const mark = fwmark >>> 0;
  return KNOWN_MARKS.filter((k) => (k.bits & mark) >>> 0 !== 0);
}

function isUint32(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 0xffffffff;
}

function shown(value: unknown): string {
  return typeof value === 'number' ? String(value) : JSON.stringify(value) ?? String(value);
}

/**
 * Why `value` cannot be the mark on wireguard-go's packets, or undefined when it can. 0 is refused (the
 * rule `not fwmark 0` would send only marked packets to the mesh table: the mesh silently off); so is
 * a mark with kube-proxy's or kubelet's bits, unless `allowKubernetesBits` (a cluster that moved them
 * with --iptables-masquerade-bit / --iptables-drop-bit).
 */
export function validateFwmark(value: unknown, options: { flag?: string; allowKubernetesBits?: boolean } = {}): string | undefined {
  const flag = options.flag ?? '--fwmark';
  if (!isUint32(value)) return `${flag} ${shown(value)}: expected a whole number from 1 to 0xffffffff, such as the default ${formatMark(DEFAULT_FWMARK)}`;
  if (value === 0) {
    return `${flag} 0: the mark must have at least one bit set; with 0 the mesh table would only be used by marked packets (the mesh silently off). The default is ${formatMark(DEFAULT_FWMARK)}`;
  }
  const kube = fwmarkCollisions(value).filter((k) => k.kubernetes);
  if (kube.length && !options.allowKubernetesBits) {
    const bits = kube.map((k) => `${k.owner} ${formatMark(k.bits & value)} (${k.effect})`).join(' and ');
    return `${flag} ${value} (${formatMark(value)}) has ${bits}: the tunnel's own packets would be masqueraded or dropped. Choose a mark without them, such as the default ${formatMark(DEFAULT_FWMARK)}`;
  }
  return undefined;
}

/** The kernel's reserved tables: unspec, default, main, local (ip-route(8)). */
export const RESERVED_TABLES: ReadonlyMap<number, string> = new Map([
  [0, 'unspec'],
  [253, 'default'],
  [254, 'main'],
  [255, 'local'],
]);

/**
 * Why `value` cannot be the mesh routing table, or undefined when it can. The reserved tables hold
 * the node's own routes: a mesh rule pointing at main, or a cleanup of it, would take the node off
 * its network.
 */
export function validateTable(value: unknown, options: { flag?: string } = {}): string | undefined {
  const flag = options.flag ?? '--table';
  if (!isUint32(value)) return `${flag} ${shown(value)}: expected a routing table number from 1 to 4294967295 (not 253, 254 or 255), such as the default ${DEFAULT_TABLE}`;
  const name = RESERVED_TABLES.get(value);
  if (name !== undefined) return `${flag} ${value}: table ${value} is the kernel's "${name}" table, which holds the node's own routes; choose a table of its own, such as the default ${DEFAULT_TABLE}`;
  return undefined;
}

/** The rule priorities the mesh rule must stay between: the local table's rule and the main table's. */
export const LOCAL_RULE_PRIORITY = 0;
export const MAIN_RULE_PRIORITY = 32766;

/**
 * Why `value` cannot be the mesh rule's priority, or undefined when it can: it must come after the
 * local table's rule (0: traffic to the node's own addresses) and before the main table's (32766).
 */
export function validateRulePriority(value: unknown, options: { flag?: string } = {}): string | undefined {
  const flag = options.flag ?? '--rule-priority';
  if (!Number.isInteger(value) || (value as number) <= LOCAL_RULE_PRIORITY || (value as number) >= MAIN_RULE_PRIORITY) {
    return `${flag} ${shown(value)}: expected a whole number from 1 to 32765, after the local table's rule (0) and before the main table's (32766), such as the default ${DEFAULT_RULE_PRIORITY}`;
  }
  return undefined;
}
