/**
 * Route and fallback changes, already decided, in one `ip -batch` and without listing the table
 * again. native/link's replaceRoutes and deleteRoutes each list the table (two `ip route show`, one
 * per family, every route parsed) before they change it, so they can refuse to take over another
 * device's route: a full pass here lists the table once and decides that itself, and an event pass
 * must cost what it changes and lists nothing. There the same safety comes from the kernel: a new
 * route is `route add` (never `replace`), which fails on any route already there, and a removal
 * names our device, so the kernel deletes only the route through it. Any failure means the table is
 * not what we last applied: the caller marks its mirror untrusted and repairs with a full pass.
 */
import { execFile } from 'node:child_process';
import { FALLBACK_METRIC, NativeError, validateTable } from '../../native/index.ts';
import type { IpOptions } from '../../native/index.ts';

export interface RouteBatch {
  table: number;
  dev: string;
  /** Canonical CIDRs to route through `dev`. */
  addRoutes: readonly string[];
  /**
   * How they are added: 'add' (event passes: fails on any route already there, so nothing is taken
   * over on the strength of a stale mirror) or 'replace' (full passes, which have just listed the
   * table and left out every destination another device holds).
   */
  addVerb?: 'add' | 'replace';
  /** Canonical CIDRs whose route through `dev` goes. */
  removeRoutes: readonly string[];
  /** Canonical CIDRs that get an `unreachable` fallback (metric FALLBACK_METRIC). */
  addFallbacks: readonly string[];
  removeFallbacks: readonly string[];
}

/** The `ip -batch` lines, fail-closed order: new fallbacks first, removed ones last. */
export function routeBatchLines(b: RouteBatch): string[] {
  const lines: string[] = [];
  const t = `table ${b.table}`;
  for (const c of b.addFallbacks) lines.push(`route replace unreachable ${c} ${t} metric ${FALLBACK_METRIC}`);
  for (const c of b.addRoutes) lines.push(`route ${b.addVerb ?? 'add'} ${c} dev ${b.dev} ${t}`);
  for (const c of b.removeRoutes) lines.push(`route del ${c} dev ${b.dev} ${t}`);
  for (const c of b.removeFallbacks) lines.push(`route del unreachable ${c} ${t} metric ${FALLBACK_METRIC}`);
  return lines;
}

/**
 * Apply the batch with `ip -force -batch -` (every line is tried even after one fails, so the
 * others land). Rejects, naming the table and what ip said, when any line failed.
 */
export function applyRouteBatch(b: RouteBatch, o: IpOptions = {}): Promise<void> {
  const lines = routeBatchLines(b);
  if (lines.length === 0) return Promise.resolve();
  const problem = validateTable(b.table, { flag: 'table' });
  if (problem) return Promise.reject(new NativeError('invalid-config', problem));
  if (!/^[A-Za-z0-9_=+.-]{1,15}$/.test(b.dev)) return Promise.reject(new NativeError('invalid-config', `route device ${JSON.stringify(b.dev)} is not an interface name`));
  const argv = [...(o.netns ? ['-n', o.netns] : []), '-force', '-batch', '-'];
  return new Promise((resolve, reject) => {
    // stderr grows with every failed line under -force: room for all of them.
    const child = execFile('ip', argv, { encoding: 'utf8', timeout: 30_000, maxBuffer: 16 * 1024 * 1024 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const why = (stderr || err.message).trim().split('\n').slice(0, 3).join('; ');
      reject(new NativeError('ip-command', `ip ${argv.join(' ')} (${lines.length} route changes in table ${b.table}) failed: ${why}`, { cause: err }));
    });
    // An ip that exits before reading its batch (a namespace that is gone) must not end the agent
    // with an EPIPE nobody listens for: the exit status and stderr, in the callback, say what failed.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(`${lines.join('\n')}\n`);
  });
}
