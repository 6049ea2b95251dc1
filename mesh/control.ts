/**
 * The member's local control socket (issue 12): net-ipc on a Unix socket that only the agent's own
 * user can open (the socket 0600, its directory 0700 when we create it), answering three requests:
 *   status     desired against live (peers missing, extra, configured differently), refused objects
 *              and why, the last pass, wireguard-go's state and restarts, whether the source synced
 *   reconcile  a full pass now; answers with what it did
 *   diff       what a full pass would change now (device and routes), without changing anything
 * `aks-mesh status --local`, `aks-mesh reconcile` and `aks-mesh diff` (cli/control-client.ts) ask them.
 *
 * A request is `{ op, version }`; an answer `{ ok: true, result }` or `{ ok: false, error }`. Answers
 * are plain JSON (counters as decimal strings) and never carry a private or preshared key: a device
 * setting that differs is named, not shown.
 */
import { chmodSync, lstatSync, mkdirSync, realpathSync, statSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { Server } from 'net-ipc';
import { silentLogger } from '../native/index.ts';
import type { Logger, WireguardStatus } from '../native/index.ts';
import type { DeviceOp, PeerDecision, PeerField, Preview, SyncResult } from './reconcile/index.ts';
import type { Refusal } from './topology/index.ts';

/** The protocol version a request carries; an agent refuses one it does not know. */
export const CONTROL_PROTOCOL_VERSION = 1;

export const CONTROL_OPS = ['status', 'reconcile', 'diff'] as const;
export type ControlOp = (typeof CONTROL_OPS)[number];

export interface ControlRequest {
  op: ControlOp;
  version: number;
}

export type ControlReply = { ok: true; result: unknown } | { ok: false; error: string };

/** The default socket of a member's interface: /var/run/aks-mesh/<interface>.sock. */
export const DEFAULT_CONTROL_DIR = '/var/run/aks-mesh';
export function defaultControlSocket(interfaceName: string): string {
  return `${DEFAULT_CONTROL_DIR}/${interfaceName}.sock`;
}

/** A peer as the answers name it: kind and name when the desired state knows them, always the public key. */
export interface PeerRef {
  kind?: string;
  name?: string;
  publicKey: string;
}

/** The last pass, as status and reconcile report it. */
export interface PassSummary {
  at: string;
  full: boolean;
  sets: number;
  error?: string;
  added: PeerRef[];
  updated: Array<PeerRef & { fields: PeerField[] }>;
  removed: PeerRef[];
  routesAdded: string[];
  routesRemoved: string[];
}

export interface StatusAnswer {
  member: { role: 'node' | 'gateway'; kind: string; name: string; interface: string; publicKey: string };
  source: { synced: boolean };
  wireguard: { mode: string; state: string; pid?: number; restarts: number; failures: number; lastError: string | null; since: string; healthy: boolean };
  passes: number;
  lastPass: PassSummary | null;
  /** Desired against live, from a read of the device now; null while there is no desired state or the device cannot be read (deviceError). */
  peers: {
    desired: number;
    onDevice: number;
    missing: PeerRef[];
    extra: PeerRef[];
    different: Array<PeerRef & { fields: PeerField[] }>;
    /** Device settings that differ (listenPort, fwmark, privateKey: named, never shown). */
    settings: string[];
  } | null;
  routes: { desired: number; missing: string[]; extra: string[]; conflicts: string[] } | null;
  deviceError?: string;
  refused: Array<{ kind: string; name: string; reason: string; field?: string; message: string }>;
  /** True when the device and the routes are what the desired state says. */
  inSync: boolean;
}

export interface DiffAnswer {
  at: string;
  /** False while the source has not synced: a pass would do nothing (the device is left as it is). */
  synced: boolean;
  device: {
    settings: string[];
    add: Array<PeerRef & { allowedIPs: string[]; endpoint?: string }>;
    update: Array<PeerRef & { fields: PeerField[] }>;
    remove: PeerRef[];
    /** Replace mode: every peer rewritten in one set (this many). */
    replace?: number;
  };
  routes: { add: string[]; remove: string[]; addFallbacks: string[]; removeFallbacks: string[]; conflicts: string[] } | null;
  /** How many changes a pass would make (0: nothing). */
  changes: number;
}

export interface ReconcileAnswer {
  /** The pass that ran; null when there is no desired state yet (the source has not synced: nothing was done). */
  pass: PassSummary | null;
}

function refOf(decision: { kind?: string; name?: string; publicKey: string }): PeerRef {
  return decision.kind && decision.name ? { kind: decision.kind, name: decision.name, publicKey: decision.publicKey } : { publicKey: decision.publicKey };
}

/** Names by public key from the desired peers (a DesiredPeer carries kind and name). */
function namesOf(peers: ReadonlyArray<{ publicKey: string }>): Map<string, PeerRef> {
  const out = new Map<string, PeerRef>();
  for (const p of peers) out.set(p.publicKey, refOf(p as { kind?: string; name?: string; publicKey: string }));
  return out;
}

export function passSummary(result: SyncResult): PassSummary {
  const changes: readonly PeerDecision[] = result.changes ?? [];
  return {
    at: result.at.toISOString(),
    full: result.full,
    sets: result.sets,
    ...(result.error ? { error: result.error.message } : {}),
    added: changes.filter((c) => c.change === 'added').map(refOf),
    updated: changes.filter((c) => c.change === 'updated').map((c) => ({ ...refOf(c), fields: c.fields ?? [] })),
    removed: changes.filter((c) => c.change === 'removed').map(refOf),
    routesAdded: [...result.routesAdded],
    routesRemoved: [...result.routesRemoved],
  };
}

export interface StatusInput {
  member: StatusAnswer['member'];
  synced: boolean;
  wireguard: WireguardStatus;
  passes: number;
  lastPass: SyncResult | null;
  refused: readonly Refusal[];
  /** A preview made now; null while there is no desired state. */
  preview: Preview | null;
  /** Why no preview could be made (the device could not be read). */
  previewError?: string;
}

/** The status answer: a pure function of what the member knows and a preview made now. */
export function statusAnswer(i: StatusInput): StatusAnswer {
  const w = i.wireguard;
  let peers: StatusAnswer['peers'] = null;
  let routes: StatusAnswer['routes'] = null;
  let inSync = false;
  if (i.preview) {
    const p = i.preview;
    const names = namesOf(p.desired.device.peers);
    const ref = (key: string): PeerRef => names.get(key) ?? { publicKey: key };
    peers = {
      desired: p.desired.device.peers.length,
      onDevice: p.live.peers.length,
      missing: p.drift.missing.map(ref),
      extra: p.drift.extra.map(ref),
      different: p.drift.different.map((d) => ({ ...ref(d.publicKey), fields: d.fields })),
      settings: [...p.drift.settings],
    };
    if (p.routes) {
      routes = { desired: p.desired.routes.length, missing: [...p.routes.add], extra: [...p.routes.remove], conflicts: [...p.routes.conflicts] };
    }
    inSync = p.ops.length === 0 && (!p.routes || p.routes.add.length + p.routes.remove.length + p.routes.addFallbacks.length + p.routes.removeFallbacks.length === 0);
  }
  return {
    member: i.member,
    source: { synced: i.synced },
    wireguard: {
      mode: w.mode,
      state: w.state,
      ...(w.pid !== undefined ? { pid: w.pid } : {}),
      restarts: w.restarts,
      failures: w.failures,
      lastError: w.lastError,
      since: w.since.toISOString(),
      healthy: w.healthy,
    },
    passes: i.passes,
    lastPass: i.lastPass ? passSummary(i.lastPass) : null,
    peers,
    routes,
    ...(i.previewError ? { deviceError: i.previewError } : {}),
    refused: i.refused.map((r) => ({ kind: r.kind, name: r.name, reason: r.reason, ...(r.field ? { field: r.field } : {}), message: r.message })),
    inSync,
  };
}

/** The diff answer: what the preview's plan would change, named; never a key's secret. */
export function diffAnswer(preview: Preview | null, at = new Date()): DiffAnswer {
  if (!preview) return { at: at.toISOString(), synced: false, device: { settings: [], add: [], update: [], remove: [] }, routes: null, changes: 0 };
  const names = namesOf(preview.desired.device.peers);
  const different = new Map(preview.drift.different.map((d) => [d.publicKey, d.fields]));
  const device: DiffAnswer['device'] = { settings: [], add: [], update: [], remove: [] };
  for (const op of preview.ops as DeviceOp[]) {
    switch (op.op) {
      case 'device':
        for (const k of ['privateKey', 'listenPort', 'fwmark'] as const) if (op[k] !== undefined) device.settings.push(k);
        break;
      case 'remove':
        device.remove.push(names.get(op.publicKey) ?? { publicKey: op.publicKey });
        break;
      case 'put': {
        const ref = names.get(op.peer.publicKey) ?? { publicKey: op.peer.publicKey };
        if (op.created) device.add.push({ ...ref, allowedIPs: [...op.peer.allowedIPs], ...(op.peer.endpoint ? { endpoint: op.peer.endpoint } : {}) });
        else {
          device.update.push({ ...ref, fields: different.get(op.peer.publicKey) ?? [] });
        }
        break;
      }
      case 'replace':
        device.replace = op.peers.length;
        break;
    }
  }
  const r = preview.routes;
  const routes = r ? { add: [...r.add], remove: [...r.remove], addFallbacks: [...r.addFallbacks], removeFallbacks: [...r.removeFallbacks], conflicts: [...r.conflicts] } : null;
  const changes =
    device.settings.length + device.add.length + device.update.length + device.remove.length + (device.replace ? 1 : 0) + (r ? r.add.length + r.remove.length + r.addFallbacks.length + r.removeFallbacks.length : 0);
  return { at: at.toISOString(), synced: true, device, routes, changes };
}

export interface ControlHandlers {
  status(): Promise<StatusAnswer>;
  reconcile(): Promise<ReconcileAnswer>;
  diff(): Promise<DiffAnswer>;
}

/** Whether something accepts connections on a Unix socket path (a live agent) or not (a stale file). */
function accepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ path });
    const done = (live: boolean): void => {
      s.destroy();
      resolve(live);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(2000, () => done(true));
  });
}

function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException)?.code;
}

/** A bind error, said with what to do about it. */
function listenProblem(err: unknown, path: string): string {
  const message = (err as Error)?.message ?? String(err);
  const uid = process.getuid?.() ?? 0;
  switch (errnoCode(err)) {
    case 'EACCES':
    case 'EPERM':
      return `${message} (this agent, uid ${uid}, may not create files in ${dirname(path)}: run it as that folder's owner, or choose another --control-socket)`;
    case 'EROFS':
      return `${message} (${dirname(path)} is on a read-only file system: mount a writable volume there, or choose another --control-socket)`;
    default:
      return message;
  }
}

/**
 * Make the socket's folder ready: created 0700 when missing; an existing one (or where a symlink to
 * it leads) must be a directory owned by this user or root, and not writable by others unless
 * sticky (others could otherwise put their own socket in our place); a sticky one is warned about.
 * An existing folder's mode is never changed: it may be a shared one (--control-socket /tmp/x.sock) whose mode is not ours to decide.
 */
function prepareDirectory(path: string, log: Logger): void {
  const dir = dirname(path);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new Error(`control socket ${path}: cannot create its directory ${dir}: ${(err as Error).message}`);
  }
  const uid = process.getuid?.() ?? 0;
  // A symlinked folder (/var/run -> /run is the usual one) is judged by where it leads, by the same
  // rules as a real one: a link must not be a way around the owner or the mode check.
  let st;
  let where = dir;
  try {
    if (lstatSync(dir).isSymbolicLink()) where = `${dir} (a symlink to ${realpathSync(dir)})`;
    st = statSync(dir);
  } catch (err) {
    throw new Error(`control socket ${path}: cannot read its directory ${dir}: ${(err as Error).message}`);
  }
  if (!st.isDirectory()) throw new Error(`control socket ${path}: ${dir} is not a directory`);
  if (st.uid !== uid && st.uid !== 0) throw new Error(`control socket ${path}: ${where} is owned by uid ${st.uid}, not by this agent (uid ${uid}) or root`);
  if (st.mode & 0o022 && !(st.mode & 0o1000)) {
    throw new Error(`control socket ${path}: ${where} is writable by other users (mode ${(st.mode & 0o7777).toString(8)}): anyone could replace the socket; choose another --control-socket`);
  }
  if (st.mode & 0o022) {
    // Sticky (/tmp): nobody can remove or rename our socket while it is there, but once this agent
    // stops (and removes it) another user may put their own at the path, for the next `aks-mesh
    // status --local` or `reconcile` to talk to. The clients refuse a socket not owned by root or by
    // themselves; a folder only this agent may write to needs no such care.
    log.warn(
      `control socket ${path}: its folder ${where} is writable by other users (mode ${(st.mode & 0o7777).toString(8)}, sticky): while this agent is not running another user may put a socket of their own at this path; prefer a folder only this agent's user may write to (such as the default ${DEFAULT_CONTROL_DIR})`,
      { socket: path, folder: dir },
    );
  }
}

/**
 * Take the socket path: nothing there, or a socket nobody listens on any more (an agent that was
 * killed) which is removed. A live socket is another agent's: refused. Anything else is not ours.
 */
async function claimPath(path: string, log: Logger): Promise<void> {
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) throw new Error(`control socket ${path}: something other than a socket is there; refusing to replace it (remove it, or choose another --control-socket)`);
  if (await accepts(path)) {
    throw new Error(`control socket ${path}: another process is listening on it (an agent already running for this interface?); stop it, or choose another --control-socket`);
  }
  unlinkSync(path);
  log.info('replaced a stale control socket (its agent is gone)', { path });
}

export class ControlServer {
  readonly path: string;
  private readonly server: Server;
  private readonly log: Logger;
  /** The socket file we made (inode), so close() never removes one a newer agent put there. */
  private ino = 0;

  private constructor(path: string, server: Server, log: Logger) {
    this.path = path;
    this.server = server;
    this.log = log;
  }

  /** Listen on `path` (see prepareDirectory and claimPath), answering with `handlers`. */
  static async start(path: string, handlers: ControlHandlers, options: { log?: Logger } = {}): Promise<ControlServer> {
    const log = options.log ?? silentLogger;
    if (!path.startsWith('/')) throw new Error(`control socket ${JSON.stringify(path)}: expected an absolute path`);
    // sockaddr_un holds 108 bytes with the terminating NUL.
    if (Buffer.byteLength(path) > 107) throw new Error(`control socket ${path}: longer than a Unix socket path may be (107 bytes)`);
    prepareDirectory(path, log);
    await claimPath(path, log);
    const server = new Server({ path, max: 16 });
    const control = new ControlServer(path, server, log);
    server.on('error', (err: unknown) => log.debug('control socket connection error', { error: (err as Error)?.message ?? String(err) }));
    server.on('request', (request: unknown, respond: (data: unknown) => Promise<void>) => {
      control.answer(request, handlers).then(
        (reply) => respond(reply).catch(() => undefined),
        () => undefined,
      );
    });
    // net-ipc's start() settles only on `listening` or its own checks: an error of the bind itself
    // (EACCES in a folder this user cannot write to, EROFS) comes as an 'error' event and would leave
    // start() pending for ever, the member never starting. So the first error also ends the wait.
    let onError: (err: unknown) => void = () => undefined;
    const failed = new Promise<never>((_, reject) => {
      onError = reject;
      server.once('error', onError);
    });
    // The socket file is created by the bind inside start(), synchronously: a umask of 0177 makes it
    // 0600 from its first moment (no window in which others could connect), restored at once.
    const umask = process.umask(0o177);
    let started: Promise<Server>;
    try {
      started = server.start();
    } finally {
      process.umask(umask);
    }
    try {
      await Promise.race([started, failed]);
    } catch (err) {
      await server.close().catch(() => undefined);
      throw new Error(`control socket ${path}: cannot listen: ${listenProblem(err, path)}`);
    } finally {
      server.off('error', onError);
    }
    chmodSync(path, 0o600);
    control.ino = lstatSync(path).ino;
    return control;
  }

  private async answer(request: unknown, handlers: ControlHandlers): Promise<ControlReply> {
    const r = request as Partial<ControlRequest> | null;
    const op = r && typeof r === 'object' ? r.op : undefined;
    if (typeof op !== 'string' || !(CONTROL_OPS as readonly string[]).includes(op)) {
      return { ok: false, error: `unknown request ${JSON.stringify(op ?? request)}: expected one of ${CONTROL_OPS.join(', ')}` };
    }
    if (r?.version !== CONTROL_PROTOCOL_VERSION) return { ok: false, error: `request version ${JSON.stringify(r?.version)}: this agent speaks version ${CONTROL_PROTOCOL_VERSION} (is the CLI from another release?)` };
    try {
      const result = await handlers[op as ControlOp]();
      return { ok: true, result };
    } catch (err) {
      return { ok: false, error: (err as Error)?.message ?? String(err) };
    }
  }

  /** Stop listening, end the connections, and remove the socket file if it is still ours. */
  async close(): Promise<void> {
    await this.server.close().catch(() => undefined);
    try {
      if (lstatSync(this.path).ino === this.ino) unlinkSync(this.path);
    } catch {
      // Already gone (the server's close removes it).
    }
  }
}
