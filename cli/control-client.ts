/**
 * The client side of a member's local control socket (mesh/control.ts): `aks-mesh status --local`,
 * `aks-mesh reconcile`, `aks-mesh diff`. The socket is found as --control-socket, else
 * $AKS_MESH_CONTROL_SOCKET, else /var/run/aks-mesh/<interface>.sock with --interface, else
 * $AKS_MESH_INTERFACE, else the agent's default interface (wg-mesh): so inside the agent's pod
 * (`kubectl exec`) the pod's own environment finds it. Errors name the socket and what to do.
 */
import { readFileSync, statSync } from 'node:fs';
import type { Argv } from 'yargs';
import type { ControlOp, ControlReply, DiffAnswer, PassSummary, PeerRef, ReconcileAnswer, StatusAnswer } from '../mesh/control.ts';
import { UsageError } from './format.ts';
import { defaultControlSocketPath } from './member-control.ts';

/** The protocol version requests carry (mesh/control.ts CONTROL_PROTOCOL_VERSION; a literal so the CLI loads nothing of mesh/). */
const PROTOCOL_VERSION = 1;
const DEFAULT_INTERFACE = 'wg-mesh';

/** A failure the CLI prints as one line (exit 1; `diff` exits 2, see runDiff). */
export class ControlError extends Error {}

/** Which socket: the flag, the environment, or the interface's default. */
export function resolveControlSocket(o: { socket?: string; interface?: string }, env: NodeJS.ProcessEnv = process.env): string {
  if (o.socket) return o.socket;
  if (env.AKS_MESH_CONTROL_SOCKET && env.AKS_MESH_CONTROL_SOCKET !== 'off') return env.AKS_MESH_CONTROL_SOCKET;
  return defaultControlSocketPath(o.interface || env.AKS_MESH_INTERFACE || DEFAULT_INTERFACE);
}

/** What a socket error means for the person at the terminal. */
export function connectProblem(socket: string, err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EACCES' || code === 'EPERM') return `permission denied: the control socket ${socket} is owner-only; run as root (or as the agent's user)`;
  if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'ENOTDIR') {
    return `no agent listening on ${socket} (is the agent running on this node? --control-socket or --interface choose another socket)`;
  }
  const message = err instanceof Error ? err.message : String(err);
  return `control socket ${socket}: ${message}`;
}

/** "nobody (uid 65534)": the uid, with its name where /etc/passwd has one. */
export function describeUid(uid: number, passwd = '/etc/passwd'): string {
  try {
    for (const line of readFileSync(passwd, 'utf8').split('\n')) {
      const [name, , id] = line.split(':');
      if (name && Number(id) === uid && id !== '') return `${name} (uid ${uid})`;
    }
  } catch {
    // No passwd to read (a distroless image): the number alone.
  }
  return `uid ${uid}`;
}

/**
 * Whose socket this is, before anything is sent to it: it must be a socket owned by root or by the
 * user running the command. In a folder others may write to (a sticky /tmp: the agent only warns),
 * another user could have put a socket of their own at the path between two runs of the agent; root
 * may connect to anyone's socket, and its answers ("in sync: yes") would be that user's word. The
 * socket's owner is the agent's user (the agent makes it 0600, only that user and root can open it):
 * a root agent (the chart's) is refused to no one who may open it; an agent run as another user is
 * asked as that user (root is refused it: it cannot tell that socket from a planted one). Returns the file's identity, checked again once connected (a socket swapped in between).
 */
export function checkSocketOwner(socket: string, me = process.geteuid?.() ?? 0): { dev: number; ino: number } {
  let st;
  try {
    st = statSync(socket);
  } catch (err) {
    throw new ControlError(connectProblem(socket, err));
  }
  if (!st.isSocket()) throw new ControlError(`${socket} is not a socket: no agent listens there (--control-socket or --interface choose another socket)`);
  if (st.uid !== 0 && st.uid !== me) {
    throw new ControlError(
      `the control socket ${socket} is owned by ${describeUid(st.uid)}, not by root or by you (${describeUid(me)}): refusing to talk to it, another user may have put it there ` +
        `(an agent running as ${describeUid(st.uid)} is asked as that user; a socket in a folder only its agent may write to, such as the default /var/run/aks-mesh, cannot be replaced)`,
    );
  }
  return { dev: st.dev, ino: st.ino };
}

/** Send one request and return its result; throws ControlError with a message naming the socket. */
export async function controlRequest(socket: string, op: ControlOp, timeoutMs: number): Promise<unknown> {
  const identity = checkSocketOwner(socket);
  // Loaded when asked: the other commands never pay for it.
  const { Client } = await import('net-ipc');
  const client = new Client({ path: socket, reconnect: false });
  // With reconnect off, a refused connection only emits 'close' (carrying the error): wait for that too.
  let onClose: (reason: unknown) => void = () => undefined;
  const closed = new Promise<never>((_, reject) => {
    onClose = (reason) => reject(reason ?? new Error('the agent closed the connection'));
  });
  client.on('close', (reason) => onClose(reason));
  client.on('error', () => undefined);
  closed.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ControlError(`the agent on ${socket} did not answer ${op} within ${Math.round(timeoutMs / 1000)} s (--timeout)`)), timeoutMs);
  });
  try {
    try {
      await Promise.race([client.connect(), closed, timeout]);
    } catch (err) {
      if (err instanceof ControlError) throw err;
      throw new ControlError(connectProblem(socket, err));
    }
    // The file we checked must still be the one at the path, now that we are connected to what is
    // there: otherwise the check said nothing about the other end. Nothing has been asked of it yet.
    let now: { dev: number; ino: number } | null = null;
    try {
      now = statSync(socket);
    } catch {
      // Gone since: not the socket we checked either.
    }
    if (!now || now.dev !== identity.dev || now.ino !== identity.ino) throw new ControlError(`the control socket ${socket} was replaced while connecting to it; nothing was asked (run the command again)`);
    let reply: ControlReply;
    try {
      reply = (await Promise.race([client.request({ op, version: PROTOCOL_VERSION }, 0), closed, timeout])) as ControlReply;
    } catch (err) {
      if (err instanceof ControlError) throw err;
      throw new ControlError(`control socket ${socket}: the agent ended the connection before answering ${op} (${err instanceof Error ? err.message : String(err)})`);
    }
    if (!reply || typeof reply !== 'object') throw new ControlError(`control socket ${socket}: unexpected answer to ${op}`);
    if (!reply.ok) throw new ControlError(`the agent on ${socket} could not ${op}: ${reply.error}`);
    return reply.result;
  } finally {
    clearTimeout(timer);
    client.destroy();
  }
}

/** "Peer/node-b", or "(unnamed)" for a peer the desired state does not name (one put on the device by hand). */
function peerName(p: PeerRef): string {
  return p.kind && p.name ? `${p.kind}/${p.name}` : '(unnamed)';
}

/** The name, or for an unnamed peer its public key too (status lists show names only). */
function peerLabel(p: PeerRef): string {
  return p.kind && p.name ? `${p.kind}/${p.name}` : `(unnamed) ${p.publicKey}`;
}

/** At most `max` lines of a list, then how many more. */
function listLines(items: readonly string[], indent: string, max = 20): string[] {
  const out = items.slice(0, max).map((x) => `${indent}${x}`);
  if (items.length > max) out.push(`${indent}… and ${items.length - max} more (--json lists every one)`);
  return out;
}

function passLines(p: PassSummary, now: number): string[] {
  const ago = Math.max(0, Math.round((now - Date.parse(p.at)) / 1000));
  const lines = [`last pass:   ${p.at} (${ago} s ago), ${p.full ? 'full' : 'event'}, ${p.sets} set${p.sets === 1 ? '' : 's'}${p.error ? `, FAILED: ${p.error}` : ''}`];
  const did = [
    p.added.length && `${p.added.length} added`,
    p.updated.length && `${p.updated.length} updated`,
    p.removed.length && `${p.removed.length} removed`,
    p.routesAdded.length && `${p.routesAdded.length} route${p.routesAdded.length === 1 ? '' : 's'} added`,
    p.routesRemoved.length && `${p.routesRemoved.length} route${p.routesRemoved.length === 1 ? '' : 's'} removed`,
  ].filter(Boolean);
  if (did.length) lines.push(`             ${did.join(', ')}`);
  return lines;
}

/** `aks-mesh status --local` as text. */
export function formatStatus(s: StatusAnswer, now = Date.now()): string {
  const w = s.wireguard;
  const lines = [
    `${s.member.kind} ${s.member.name} (${s.member.role === 'node' ? 'agent' : 'gateway'}) on ${s.member.interface}`,
    `public key:  ${s.member.publicKey}`,
    `source:      ${s.source.synced ? 'synced' : 'NOT SYNCED (the device is left as it is until it is)'}`,
    `wireguard-go: ${w.state}${w.pid ? ` (pid ${w.pid})` : ''}, ${w.mode} mode, ${w.restarts} restart${w.restarts === 1 ? '' : 's'}${w.healthy ? '' : `, UNHEALTHY: ${w.lastError ?? 'unknown'}`}`,
  ];
  lines.push(...(s.lastPass ? passLines(s.lastPass, now) : ['last pass:   none yet']));
  if (s.deviceError) lines.push(`device:      cannot read it: ${s.deviceError}`);
  if (s.peers) {
    const p = s.peers;
    lines.push(`peers:       ${p.desired} desired, ${p.onDevice} on the device, ${p.missing.length} missing, ${p.extra.length} extra, ${p.different.length} different`);
    if (p.settings.length) lines.push(`  device settings differ: ${p.settings.join(', ')}`);
    if (p.missing.length) lines.push('  missing (desired, not on the device):', ...listLines(p.missing.map(peerLabel), '    '));
    if (p.extra.length) lines.push('  extra (on the device, not desired):', ...listLines(p.extra.map(peerLabel), '    '));
    if (p.different.length) lines.push('  configured differently:', ...listLines(p.different.map((d) => `${peerLabel(d)}: ${d.fields.join(', ')}`), '    '));
  } else if (!s.deviceError) lines.push('peers:       no desired state yet');
  if (s.routes) {
    const r = s.routes;
    lines.push(`routes:      ${r.desired} desired, ${r.missing.length} missing, ${r.extra.length} extra${r.conflicts.length ? `, ${r.conflicts.length} held by another device` : ''}`);
    if (r.missing.length) lines.push(...listLines(r.missing.map((c) => `missing ${c}`), '    '));
    if (r.extra.length) lines.push(...listLines(r.extra.map((c) => `extra ${c}`), '    '));
    if (r.conflicts.length) lines.push(...listLines(r.conflicts.map((c) => `another device: ${c}`), '    '));
  }
  lines.push(`refused:     ${s.refused.length}`);
  lines.push(...listLines(s.refused.map((r) => `${r.kind}/${r.name} (${r.reason}): ${r.message}`), '    '));
  lines.push(localVerdict(s).line);
  return `${lines.join('\n')}\n`;
}

/**
 * The verdict of `status --local`, its last line and its exit code: ok (exit 0) only when the device
 * and the routes are what the desired state says and the last pass did not fail. The hint names diff
 * and reconcile only where they can help: not while the device cannot be read (both would fail the
 * same way) nor before the source synced (a pass would leave the device as it is).
 */
export function localVerdict(s: StatusAnswer): { ok: boolean; line: string } {
  if (s.deviceError) return { ok: false, line: 'in sync:     UNKNOWN: the device cannot be read (see "device:" above: is wireguard-go running and answering?)' };
  if (!s.source.synced) return { ok: false, line: 'in sync:     NO: the source has not synced yet (Peers and Gateways not read), so the device is left as it is' };
  const failed = s.lastPass?.error !== undefined;
  if (!s.inSync) {
    return {
      ok: false,
      line: `in sync:     NO${failed ? ', and the last pass FAILED' : ''} (aks-mesh diff shows what a pass would change; aks-mesh reconcile runs one now)`,
    };
  }
  if (failed) return { ok: false, line: 'in sync:     yes, but the last pass FAILED (see "last pass:" above; aks-mesh reconcile tries one now)' };
  return { ok: true, line: 'in sync:     yes' };
}

/** `aks-mesh diff` as text: one line per change, + to add, - to remove, ~ to change. */
export function formatDiff(d: DiffAnswer): string {
  if (!d.synced) return 'the source has not synced yet: a pass would leave the device as it is\n';
  const lines: string[] = [];
  for (const k of d.device.settings) lines.push(`~ device ${k}`);
  if (d.device.replace !== undefined) lines.push(`~ replace every peer (${d.device.replace}) in one set (--apply-mode replace)`);
  for (const p of d.device.remove) lines.push(`- peer ${peerName(p)} ${p.publicKey}`);
  for (const p of d.device.add) lines.push(`+ peer ${peerName(p)} ${p.publicKey} allowed-ips ${p.allowedIPs.join(',')}${p.endpoint ? ` endpoint ${p.endpoint}` : ''}`);
  for (const p of d.device.update) lines.push(`~ peer ${peerName(p)} ${p.publicKey}: ${p.fields.join(', ') || 'settings'}`);
  if (d.routes) {
    for (const c of d.routes.remove) lines.push(`- route ${c}`);
    for (const c of d.routes.add) lines.push(`+ route ${c}`);
    for (const c of d.routes.removeFallbacks) lines.push(`- unreachable ${c}`);
    for (const c of d.routes.addFallbacks) lines.push(`+ unreachable ${c}`);
    for (const c of d.routes.conflicts) lines.push(`! route ${c} (another device holds it; left alone)`);
  }
  if (d.changes === 0) lines.push('no changes: the device and the routes are what the desired state says');
  return `${lines.join('\n')}\n`;
}

export function formatReconcile(r: ReconcileAnswer, now = Date.now()): string {
  if (!r.pass) return 'no pass: the source has not synced yet, so the device is left as it is\n';
  const p = r.pass;
  const lines = passLines(p, now);
  for (const x of p.removed) lines.push(`- peer ${peerName(x)} ${x.publicKey}`);
  for (const x of p.added) lines.push(`+ peer ${peerName(x)} ${x.publicKey}`);
  for (const x of p.updated) lines.push(`~ peer ${peerName(x)} ${x.publicKey}: ${x.fields.join(', ')}`);
  for (const c of p.routesRemoved) lines.push(`- route ${c}`);
  for (const c of p.routesAdded) lines.push(`+ route ${c}`);
  if (!p.error && p.sets === 0 && !p.routesAdded.length && !p.routesRemoved.length) lines.push('nothing to change: the device and the routes were already in step');
  return `${lines.join('\n')}\n`;
}

function print(value: unknown, json: boolean, text: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : text());
}

/**
 * `aks-mesh status --local`: the member on this machine, through its control socket. Exit 0 when it
 * is in sync, 1 when it is not, its last pass failed or its device cannot be read (the last line
 * says which), and 1 on any trouble asking it (the error on stderr).
 */
export async function runLocalStatus(o: { socket?: string; interface?: string; json: boolean; timeoutMs?: number }): Promise<void> {
  const socket = resolveControlSocket(o);
  const s = (await controlRequest(socket, 'status', o.timeoutMs ?? 30_000)) as StatusAnswer;
  print(s, o.json, () => formatStatus(s));
  process.exitCode = localVerdict(s).ok ? 0 : 1;
}

/** The options `reconcile` and `diff` share. */
export interface ControlArgs {
  'control-socket'?: string;
  interface?: string;
  json: boolean;
  timeout: number;
}

export function controlOptions(c: Argv): Argv<ControlArgs> {
  return c
    .option('control-socket', { type: 'string', describe: "The agent's control socket (default $AKS_MESH_CONTROL_SOCKET, else /var/run/aks-mesh/<interface>.sock)" })
    .option('interface', { alias: 'i', type: 'string', describe: "The member's interface, which names its socket (default $AKS_MESH_INTERFACE, else wg-mesh)" })
    .option('json', { type: 'boolean', default: false, describe: 'Print the answer as JSON' })
    .option('timeout', { type: 'number', default: 60, describe: 'Seconds to wait for the answer' })
    .check((a) => {
      if (!Number.isFinite(a.timeout) || a.timeout <= 0) throw new UsageError(`--timeout ${a.timeout}: expected a positive number of seconds`);
      return true;
    }) as unknown as Argv<ControlArgs>;
}

/** `aks-mesh reconcile`: a full pass now; exit 1 when it failed. */
export async function runReconcile(a: ControlArgs): Promise<void> {
  const socket = resolveControlSocket({ socket: a['control-socket'], interface: a.interface });
  const r = (await controlRequest(socket, 'reconcile', a.timeout * 1000)) as ReconcileAnswer;
  print(r, a.json, () => formatReconcile(r));
  if (r.pass?.error) process.exitCode = 1;
}

/** diff's exit code for trouble: no agent, permission denied, no answer, an agent that could not diff, bad flags (yargs). */
export const DIFF_TROUBLE = 2;

/**
 * `aks-mesh diff`: like diff(1), exit 0 when nothing would change, 1 when something would, and 2 on
 * any trouble, so that `aks-mesh diff || alert drift` cannot mistake a dead or unreachable agent for
 * drift. Trouble is said on stderr as one line, as the other commands say theirs.
 */
export async function runDiff(a: ControlArgs): Promise<void> {
  let d: DiffAnswer;
  try {
    const socket = resolveControlSocket({ socket: a['control-socket'], interface: a.interface });
    d = (await controlRequest(socket, 'diff', a.timeout * 1000)) as DiffAnswer;
  } catch (err) {
    process.stderr.write(`aks-mesh: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}\n`);
    process.exitCode = DIFF_TROUBLE;
    return;
  }
  print(d, a.json, () => formatDiff(d));
  process.exitCode = d.changes > 0 ? 1 : 0;
}
