/**
 * Links, addresses, routes and rules through iproute2's `ip`, always with argument arrays
 * (never a shell string): `-json` to read, `-batch -` for many routes at once. Everything added
 * here has a matching removal.
 */
import { execFile } from 'node:child_process';
import { NativeError } from '../errors.ts';
import { canonicalCidr } from '../addr.ts';
import { fwmarkMask, formatMark, validateFwmark, validateRulePriority, validateTable } from './marks.ts';

export interface IpOptions {
  /** Act inside this named network namespace (`ip -n`); absent is the caller's own namespace. */
  netns?: string;
}

/** WireGuard's overhead on IPv6 underlays: 40 (IPv6) + 8 (UDP) + 32 (WireGuard). */
export const WIREGUARD_OVERHEAD = 80;

function run(args: string[], o: IpOptions, input?: string): Promise<string> {
  const argv = o.netns ? ['-n', o.netns, ...args] : args;
  return new Promise((resolve, reject) => {
    const child = execFile('ip', argv, { encoding: 'utf8', timeout: 30_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        const why = (stderr || err.message).trim().split('\n').slice(0, 3).join('; ');
        reject(new NativeError('ip-command', `ip ${argv.join(' ')}${input ? ' (batch)' : ''} failed: ${why}`, { cause: err }));
      } else {
        resolve(stdout);
      }
    });
    if (input !== undefined) {
      // An ip that exits before reading its input must not end the process with an unhandled EPIPE:
      // its exit status and stderr say what failed.
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(input);
    }
  });
}

async function runJson<T>(args: string[], o: IpOptions): Promise<T> {
  const out = await run(['-json', ...args], o);
  return (out.trim() ? JSON.parse(out) : []) as T;
}

export interface LinkInfo {
  name: string;
  mtu: number;
  up: boolean;
  index: number;
}

interface RawLink {
  ifname: string;
  mtu: number;
  flags: string[];
  ifindex: number;
}

/** The interface, or null if there is none by that name. */
export async function getLink(name: string, o: IpOptions = {}): Promise<LinkInfo | null> {
  try {
    const [link] = await runJson<RawLink[]>(['link', 'show', 'dev', name], o);
    return link ? { name: link.ifname, mtu: link.mtu, up: link.flags.includes('UP'), index: link.ifindex } : null;
  } catch (err) {
    if (err instanceof NativeError && /does not exist|Cannot find device/.test(err.message)) return null;
    throw err;
  }
}

export async function setLinkUp(name: string, o: IpOptions = {}): Promise<void> {
  await run(['link', 'set', 'dev', name, 'up'], o);
}

export async function setLinkDown(name: string, o: IpOptions = {}): Promise<void> {
  await run(['link', 'set', 'dev', name, 'down'], o);
}

export async function setLinkMtu(name: string, mtu: number, o: IpOptions = {}): Promise<void> {
  if (!Number.isInteger(mtu) || mtu < 1280 || mtu > 65535) {
    throw new NativeError('invalid-config', `MTU ${mtu} for ${name} is out of range (1280 to 65535)`);
  }
  await run(['link', 'set', 'dev', name, 'mtu', String(mtu)], o);
}

export async function deleteLink(name: string, o: IpOptions = {}): Promise<boolean> {
  if (!(await getLink(name, o))) return false;
  await run(['link', 'del', 'dev', name], o);
  return true;
}

/** Addresses on an interface, as CIDRs with the host part kept ("100.96.0.7/16"). */
export async function listAddresses(name: string, o: IpOptions = {}): Promise<string[]> {
  const links = await runJson<Array<{ addr_info?: Array<{ local: string; prefixlen: number; scope: string }> }>>(
    ['addr', 'show', 'dev', name],
    o,
  );
  return links.flatMap((l) => (l.addr_info ?? []).filter((a) => a.scope !== 'link').map((a) => `${a.local}/${a.prefixlen}`));
}

/** Add (or keep) an address such as "100.96.0.7/16" on an interface. */
export async function replaceAddress(name: string, address: string, o: IpOptions = {}): Promise<void> {
  canonicalCidr(address, `address for ${name}`);
  await run(['addr', 'replace', address, 'dev', name], o);
}

export async function deleteAddress(name: string, address: string, o: IpOptions = {}): Promise<void> {
  await run(['addr', 'del', address, 'dev', name], o);
}

/**
 * The underlay MTU: the MTU of the interface that carries the default route (IPv4, then IPv6);
 * without a default route, the largest MTU of any other interface that is up; else 1500.
 */
export async function underlayMtu(o: IpOptions = {}, exclude: string[] = []): Promise<number> {
  for (const family of ['-4', '-6']) {
    const routes = await runJson<Array<{ dev?: string }>>([family, 'route', 'show', 'default'], o).catch(() => []);
    for (const r of routes) {
      if (!r.dev || exclude.includes(r.dev)) continue;
      const link = await getLink(r.dev, o);
      if (link) return link.mtu;
    }
  }
  const links = await runJson<RawLink[]>(['link', 'show'], o);
  const mtus = links
    .filter((l) => l.ifname !== 'lo' && !exclude.includes(l.ifname) && l.flags.includes('UP'))
    .map((l) => l.mtu);
  return mtus.length ? Math.max(...mtus) : 1500;
}

/** The WireGuard interface MTU: underlay minus 80, unless set explicitly. */
export async function autoMtu(o: IpOptions = {}, exclude: string[] = []): Promise<number> {
  return Math.max(1280, (await underlayMtu(o, exclude)) - WIREGUARD_OVERHEAD);
}

export interface Route {
  /** Canonical CIDR. */
  dst: string;
  dev: string;
}

interface RawRoute {
  dst: string;
  dev?: string;
  type?: string;
  metric?: number;
}

async function tableEntries(table: number, o: IpOptions): Promise<Array<RawRoute & { cidr: string }>> {
  const out: Array<RawRoute & { cidr: string }> = [];
  for (const family of ['-4', '-6']) {
    const routes = await runJson<RawRoute[]>([family, 'route', 'show', 'table', String(table)], o).catch((err: Error) => {
      if (/table id value is invalid|FIB table does not exist/.test(err.message)) return [];
      throw err;
    });
    for (const r of routes) {
      const dst = r.dst === 'default' ? (family === '-4' ? '0.0.0.0/0' : '::/0') : r.dst.includes('/') ? r.dst : `${r.dst}/${family === '-4' ? 32 : 128}`;
      out.push({ ...r, cidr: canonicalCidr(dst) });
    }
  }
  return out;
}

/** Routes through a device in a routing table, both families, canonical CIDRs. */
export async function listRoutes(table: number, o: IpOptions = {}): Promise<Route[]> {
  return (await tableEntries(table, o)).filter((r) => r.dev && (r.type === undefined || r.type === 'unicast')).map((r) => ({ dst: r.cidr, dev: r.dev as string }));
}

/**
 * Metric of the `unreachable` fallbacks: behind every real route to the same destination, so they
 * only answer when the tunnel's route is gone (wireguard-go died, the agent stopped in spawn mode).
 * Traffic meant for the mesh is then refused instead of leaving in clear through the main table.
 */
export const FALLBACK_METRIC = 4_000_000_000;

/** Destinations with an `unreachable` fallback in a table. */
export async function listFallbacks(table: number, o: IpOptions = {}): Promise<string[]> {
  return (await tableEntries(table, o)).filter((r) => r.type === 'unreachable' && r.metric === FALLBACK_METRIC).map((r) => r.cidr);
}

function fallbackLines(verb: 'replace' | 'del', cidrs: readonly string[], table: number): string {
  return cidrs.map((c) => `route ${verb} unreachable ${canonicalCidr(c, 'route destination')} table ${table} metric ${FALLBACK_METRIC}`).join('\n');
}

/** Add `unreachable` fallbacks for destinations, in one `ip -batch`. */
export async function replaceFallbacks(table: number, cidrs: readonly string[], o: IpOptions = {}): Promise<void> {
  if (cidrs.length === 0) return;
  checkTable(table);
  await run(['-batch', '-'], o, `${fallbackLines('replace', cidrs, table)}\n`);
}

/** Remove `unreachable` fallbacks, in one `ip -batch`. */
export async function deleteFallbacks(table: number, cidrs: readonly string[], o: IpOptions = {}): Promise<void> {
  if (cidrs.length === 0) return;
  checkTable(table);
  await run(['-batch', '-'], o, `${fallbackLines('del', cidrs, table)}\n`);
}

function checkTable(table: number): void {
  const problem = validateTable(table, { flag: 'table' });
  if (problem) throw new NativeError('invalid-config', problem);
}

function checkDevice(dev: string): string {
  if (!/^[A-Za-z0-9_=+.-]{1,15}$/.test(dev)) throw new NativeError('invalid-config', `route device ${JSON.stringify(dev)} is not an interface name`);
  return dev;
}

function batchLines(verb: 'replace' | 'del', routes: readonly Route[], table: number): string {
  return routes
    .map((r) => {
      const dst = canonicalCidr(r.dst, 'route destination');
      // ip infers the family from the address (a batch line cannot carry -6).
      return `route ${verb} ${dst} dev ${checkDevice(r.dev)} table ${table}`;
    })
    .join('\n');
}

/**
 * Add or replace routes in a table, all in one `ip -batch`. `ip route replace` would silently take
 * over another device's route to the same destination (the table shared by mistake, e.g. with
 * wg-quick, whose default table is also 51820): those destinations are left alone and returned as
 * conflicts, for the caller to report.
 */
export async function replaceRoutes(table: number, routes: readonly Route[], o: IpOptions = {}): Promise<{ conflicts: Route[] }> {
  if (routes.length === 0) return { conflicts: [] };
  checkTable(table);
  const held = new Map<string, string>();
  for (const r of await listRoutes(table, o)) if (!held.has(r.dst)) held.set(r.dst, r.dev);
  const conflicts: Route[] = [];
  const mine: Route[] = [];
  for (const r of routes) {
    const dst = canonicalCidr(r.dst, 'route destination');
    const other = held.get(dst);
    if (other !== undefined && other !== r.dev) conflicts.push({ dst, dev: other });
    else mine.push({ dst, dev: r.dev });
  }
  if (mine.length) await run(['-batch', '-'], o, `${batchLines('replace', mine, table)}\n`);
  return { conflicts };
}

/**
 * Delete the routes to `dsts` through `dev` from a table, in one `ip -batch`; returns the
 * destinations deleted. Only `dev`'s routes: a route through another device (the table shared by
 * mistake) stays, and so does a destination that is already gone.
 */
export async function deleteRoutes(table: number, dev: string, dsts: readonly string[], o: IpOptions = {}): Promise<string[]> {
  if (dsts.length === 0) return [];
  checkTable(table);
  checkDevice(dev);
  const ours = new Set((await listRoutes(table, o)).filter((r) => r.dev === dev).map((r) => r.dst));
  const gone = [...new Set(dsts.map((d) => canonicalCidr(d, 'route destination')))].filter((d) => ours.has(d));
  // Each line names the device: the kernel deletes only the route through it.
  if (gone.length) await run(['-batch', '-'], o, `${batchLines('del', gone.map((dst) => ({ dst, dev })), table)}\n`);
  return gone;
}

/**
 * Remove what the mesh owns in a table (both families): every route through `dev` and our
 * `unreachable` fallbacks (metric FALLBACK_METRIC). Routes through other devices, and other
 * unreachable routes, stay: never a route that is not ours, even in a table shared by mistake.
 */
export async function flushTable(table: number, dev: string, o: IpOptions = {}): Promise<{ routes: string[]; fallbacks: string[] }> {
  checkTable(table);
  checkDevice(dev);
  const routes = await deleteRoutes(table, dev, (await listRoutes(table, o)).filter((r) => r.dev === dev).map((r) => r.dst), o);
  const fallbacks = await listFallbacks(table, o);
  await deleteFallbacks(table, fallbacks, o);
  return { routes, fallbacks };
}

export interface PolicyRule {
  /** The table with the mesh routes. */
  table: number;
  /** wireguard-go's own UDP packets carry this mark and skip the table. */
  fwmark: number;
  /** The bits of the mark the rule tests (default: the mark's own bits, see fwmarkMask). */
  mask?: number;
  /** Rule priority (lower is earlier); must come after the local table's rule (0) and before main's (32766). */
  priority: number;
}

interface RawRule {
  priority: number;
  table?: string;
  fwmark?: string;
  fwmask?: string;
  not?: null | boolean;
  src?: string;
  srclen?: number;
}

function checkRule(rule: PolicyRule): void {
  // Kubernetes' bits are the flag parser's business (it may allow them); what breaks the rule itself is refused here.
  const problem =
    validateTable(rule.table, { flag: 'table' }) ??
    validateFwmark(rule.fwmark, { flag: 'fwmark', allowKubernetesBits: true }) ??
    (rule.mask === undefined ? undefined : validateFwmark(rule.mask, { flag: 'fwmark mask', allowKubernetesBits: true })) ??
    validateRulePriority(rule.priority, { flag: 'rule priority' });
  if (problem) throw new NativeError('invalid-config', problem);
  if (rule.mask !== undefined && ((rule.fwmark & rule.mask) >>> 0) === 0) {
    throw new NativeError('invalid-config', `fwmark ${formatMark(rule.fwmark)} has no bit inside its mask ${formatMark(rule.mask)}: the rule would never recognise wireguard-go's packets`);
  }
}

/** Ours: same priority and table (what removeRule looks for). */
function ruleMatches(r: RawRule, rule: PolicyRule): boolean {
  return r.priority === rule.priority && r.table === String(rule.table);
}

/** Ours and exactly right: also `not fwmark <mark>/<mask>` (ip omits a full mask). */
function ruleExact(r: RawRule, rule: PolicyRule): boolean {
  const mask = rule.mask ?? fwmarkMask(rule.fwmark);
  return (
    ruleMatches(r, rule) &&
    'not' in r &&
    r.fwmark !== undefined &&
    Number(r.fwmark) === ((rule.fwmark & mask) >>> 0) &&
    Number(r.fwmask ?? 0xffffffff) === mask
  );
}

/**
 * Ensure `not fwmark <mark>/<mask> lookup <table>` at `priority`, for IPv4 and IPv6: everything except
 * wireguard-go's own packets consults the mesh table first, so an endpoint inside a routed CIDR
 * cannot loop back into the tunnel. The mask makes the test one of our bits only: other components'
 * marks on the same packet do not matter.
 */
export async function ensureRule(rule: PolicyRule, o: IpOptions = {}): Promise<void> {
  checkRule(rule);
  const mask = rule.mask ?? fwmarkMask(rule.fwmark);
  for (const family of ['-4', '-6']) {
    const rules = await runJson<RawRule[]>([family, 'rule', 'show'], o);
    if (rules.some((r) => ruleExact(r, rule))) continue;
    // A rule of ours with another mark or mask (the flag changed, or an older default without a mask)
    // would let wireguard-go's packets loop: replace it.
    for (const stale of rules.filter((r) => ruleMatches(r, rule))) {
      await run([family, 'rule', 'del', 'priority', String(stale.priority), 'table', String(rule.table)], o);
    }
    await run(
      [family, 'rule', 'add', 'not', 'fwmark', `${formatMark((rule.fwmark & mask) >>> 0)}/${formatMark(mask)}`, 'table', String(rule.table), 'priority', String(rule.priority)],
      o,
    );
  }
}

/** Remove the rule (both families). Returns how many were removed. */
export async function removeRule(rule: PolicyRule, o: IpOptions = {}): Promise<number> {
  checkTable(rule.table);
  let removed = 0;
  for (const family of ['-4', '-6']) {
    const rules = await runJson<RawRule[]>([family, 'rule', 'show'], o);
    for (const r of rules.filter((x) => ruleMatches(x, rule))) {
      await run([family, 'rule', 'del', 'priority', String(r.priority), 'table', String(rule.table)], o);
      removed++;
    }
  }
  return removed;
}

/**
 * A rule that sends what one local address sends back through the main table, ahead of the mesh
 * rule: `ip rule add from <address> lookup main priority <priority>`.
 */
export interface SourceRule {
  /** A single address (no prefix). */
  from: string;
  priority: number;
}

function sourceRuleMatches(r: RawRule, rule: SourceRule): boolean {
  const fullLength = rule.from.includes(':') ? 128 : 32;
  return r.priority === rule.priority && r.src === rule.from && (r.srclen ?? fullLength) === fullLength && r.table === 'main' && !r.not && r.fwmark === undefined;
}

/** Add the source rule once (its address's family only); any other rule at that priority is left alone. */
export async function ensureSourceRule(rule: SourceRule, o: IpOptions = {}): Promise<void> {
  if (!Number.isInteger(rule.priority) || rule.priority < 1 || rule.priority > 32765) {
    throw new NativeError('invalid-config', `rule priority ${rule.priority} for replies from ${rule.from}: must be 1-32765 (one below --rule-priority)`);
  }
  const family = rule.from.includes(':') ? '-6' : '-4';
  if ((await runJson<RawRule[]>([family, 'rule', 'show'], o)).some((r) => sourceRuleMatches(r, rule))) return;
  await run([family, 'rule', 'add', 'from', rule.from, 'lookup', 'main', 'priority', String(rule.priority)], o);
}

/** Remove the source rule if it is there. Returns how many were removed. */
export async function removeSourceRule(rule: SourceRule, o: IpOptions = {}): Promise<number> {
  const family = rule.from.includes(':') ? '-6' : '-4';
  let removed = 0;
  for (const r of (await runJson<RawRule[]>([family, 'rule', 'show'], o)).filter((x) => sourceRuleMatches(x, rule))) {
    await run([family, 'rule', 'del', 'from', rule.from, 'lookup', 'main', 'priority', String(r.priority)], o);
    removed++;
  }
  return removed;
}

export async function listRules(o: IpOptions = {}): Promise<Array<RawRule & { family: 4 | 6 }>> {
  const out: Array<RawRule & { family: 4 | 6 }> = [];
  for (const [flag, family] of [['-4', 4], ['-6', 6]] as const) {
    for (const r of await runJson<RawRule[]>([flag, 'rule', 'show'], o)) out.push({ ...r, family });
  }
  return out;
}
