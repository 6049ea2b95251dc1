/**
 * Peers, Gateways and Nodes from a directory of YAML (or JSON) files, for standalone use without an
 * API server (and the demo before kube-apiserver is built). Same object shapes as in the cluster:
 * `kind: Peer` / `kind: Gateway` (apiVersion aksmesh.io/v1alpha1) and `kind: Node` (v1, with
 * spec.podCIDRs), any number per file. The directory is watched, and re-read every `pollMs` too.
 *
 * No API server guards these files, so the source trusts nothing in them:
 * - Regular files only. Each file is opened without following a last symlink (O_NOFOLLOW) and
 *   without blocking (O_NONBLOCK), then fstat'ed: a FIFO, a device (/dev/zero), a socket or a
 *   directory is refused by name, and nothing ever waits on one. Symlinks are followed only while
 *   they stay inside the directory, which is how a ConfigMap volume lays out its files
 *   (`peers.yaml -> ..data/peers.yaml`); one that leads outside it is refused.
 * - At most `maxFileBytes` per file (default 1 MiB): a ConfigMap, the usual way to ship such a
 *   directory, holds at most 1 MiB in all, and a Peer is about 400 bytes of YAML, so that is room for
 *   some 2,500 objects per file (and there may be any number of files); it bounds the memory and the
 *   parsing time one file can cost.
 * - Per object: a document that is not a Peer, Gateway or Node with a usable name is left out and
 *   named; a Node's fields that do not parse are left out and named (mesh/crd/validate.ts); Peers and
 *   Gateways go on to the trust rules, which refuse a bad one by field (and a field no kind has is
 *   named here). One bad object never drops the good ones beside it.
 * - A file that does not parse as YAML at all keeps its previous objects (an edit in progress).
 * - A change costs the files it touches, not the directory: a watch event names its file, and only
 *   that file is looked at; a file is read again only when its identity (inode, size, modification
 *   and change times) differs from its last read, or when it changed too close to that read for the
 *   times to tell (RACY_MS). Unchanged objects keep their identity, and the snapshot stays the same
 *   object while nothing changed. The poller still looks at every file (stat only), in chunks.
 * - Not half-way: a changed file is applied only once two reads `settleMs` apart (default 250 ms)
 *   return the same bytes; while it keeps changing, its previous objects stay and it is read again.
 *   Writers should still write a temporary file (a name starting with a dot, or another extension)
 *   and rename it into place, which is atomic: a writer that stalls mid-file for longer than
 *   `settleMs` would otherwise be read as finished.
 */
import { statSync, watch, type BigIntStats, type FSWatcher } from 'node:fs';
import { constants, open, readdir, realpath } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { silentLogger } from '../../native/index.ts';
import type { Logger } from '../../native/index.ts';
import type { Gateway, NodeInfo, Peer } from '../crd/types.ts';
import { checkNode, checkSpec, isObject, isObjectName, shown, unknownFields } from '../crd/validate.ts';
import { compareText } from '../topology/order.ts';
import type { PeerSource, Snapshot } from './types.ts';

export const DEFAULT_MAX_FILE_BYTES = 1024 * 1024;
export const DEFAULT_SETTLE_MS = 250;

export interface DirectorySourceOptions {
  log?: Logger;
  /** Re-read the directory this often even without a watch event (default 5000 ms). */
  pollMs?: number;
  /** Files larger than this are refused (default DEFAULT_MAX_FILE_BYTES). */
  maxFileBytes?: number;
  /** A changed file is applied once two reads this far apart agree (default DEFAULT_SETTLE_MS). */
  settleMs?: number;
  /** Called each time a file's bytes are read (tests count them: a change to one file reads that file only). */
  onRead?: (file: string) => void;
}

interface FileObjects {
  /** The content these objects were parsed from. */
  text: string;
  snapshot: Snapshot;
}

type ReadResult = { text: string } | { problem: string } | { gone: true };

/** What a file system object is, for "not a regular file (a FIFO)". */
function kindOf(st: { isDirectory(): boolean; isFIFO(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSocket(): boolean; isSymbolicLink(): boolean }): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isSymbolicLink()) return 'a symlink';
  return 'not a regular file';
}

const errorCode = (err: unknown): string => (err as NodeJS.ErrnoException).code ?? (err as Error).message;

/**
 * The text of one regular file inside `realDir`, at most `maxBytes`, UTF-8; or why not. Never
 * blocks on a FIFO or a device, never reads more than maxBytes + 1 bytes.
 */
export async function readRegularFile(path: string, realDir: string, maxBytes: number): Promise<ReadResult> {
  let target: string;
  try {
    target = await realpath(path);
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return { gone: true };
    return { problem: `cannot resolve it (${errorCode(err)})` };
  }
  if (!target.startsWith(realDir + sep)) return { problem: `a symlink to ${shown(target)}, outside the directory` };
  let fh: FileHandle;
  try {
    fh = await open(target, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const code = errorCode(err);
    if (code === 'ENOENT') return { gone: true };
    return { problem: code === 'ELOOP' ? 'a symlink that changed while it was read' : `cannot open it (${code})` };
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) return { problem: `not a regular file (${kindOf(st)})` };
    if (st.size > maxBytes) return { problem: `${st.size} bytes, more than the limit of ${maxBytes}` };
    // The file may grow after fstat: read until its end, but never more than one byte past the limit.
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.alloc(Math.min(64 * 1024, maxBytes + 1 - total));
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, total);
      if (bytesRead === 0) break;
      chunks.push(chunk.subarray(0, bytesRead));
      total += bytesRead;
      if (total > maxBytes) return { problem: `more than the limit of ${maxBytes} bytes` };
    }
    return decode(Buffer.concat(chunks));
  } catch (err) {
    return { problem: `cannot read it (${errorCode(err)})` };
  } finally {
    await fh.close().catch(() => undefined);
  }
}

function decode(bytes: Buffer): ReadResult {
  try {
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes) };
  } catch {
    return { problem: 'not UTF-8 text' };
  }
}

/** What a file was (following links) when it was last read: any difference means it is read again. */
interface FileIdentity {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

interface SeenFile {
  /** The file's identity taken just before it was last read. */
  id: FileIdentity;
  /** When that read started (ms since the epoch). */
  readAtMs: number;
}

/**
 * A file whose modification time is this close to (or after) the read that recorded it may have
 * been written again within the same timestamp tick (Linux timestamps are as coarse as a jiffy,
 * some filesystems' 1 to 2 s), keeping its size: its identity proves nothing, so it is read again
 * until it is older than this (git's "racily clean" rule). Costs one file, only while it is fresh.
 */
export const RACY_MS = 2000;
/** Files parsed between two yields to the event loop. */
const PARSE_CHUNK = 100;

/** How many files a full scan stats synchronously before yielding to the event loop. */
const STAT_CHUNK = 256;

const isCandidate = (name: string): boolean => /\.(ya?ml|json)$/.test(name) && !name.startsWith('.');

function identityOf(st: BigIntStats): FileIdentity {
  return { dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
}

function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

/** The file's identity, following links; undefined: it is gone; null: it cannot be stat'ed (the read says why). */
function statOf(path: string): FileIdentity | null | undefined {
  try {
    const st = statSync(path, { bigint: true, throwIfNoEntry: false });
    return st ? identityOf(st) : undefined;
  } catch {
    return null;
  }
}

/** The same list when it holds the same objects (so consumers can short-circuit on `===`). */
function sameListOr<T>(previous: T[] | undefined, next: T[]): T[] {
  if (previous && previous.length === next.length && previous.every((x, i) => x === next[i])) return previous;
  return next;
}

/** Objects of a re-read file whose content did not change keep their previous identity. */
function keepIdentity(previous: Snapshot | undefined, next: Snapshot): Snapshot {
  if (!previous) return next;
  const reuse = <T>(old: T[], now: T[], name: (x: T) => string): T[] => {
    const byName = new Map(old.map((x) => [name(x), x]));
    const out = now.map((x) => {
      const o = byName.get(name(x));
      return o !== undefined && JSON.stringify(o) === JSON.stringify(x) ? o : x;
    });
    return sameListOr(old, out);
  };
  const peers = reuse(previous.peers, next.peers, (p) => p.metadata.name);
  const gateways = reuse(previous.gateways, next.gateways, (g) => g.metadata.name);
  const nodes = reuse(previous.nodes, next.nodes, (n) => n.name);
  if (peers === previous.peers && gateways === previous.gateways && nodes === previous.nodes) return previous;
  return { peers, gateways, nodes };
}

export class DirectorySource implements PeerSource {
  readonly dir: string;
  private readonly log: Logger;
  private readonly pollMs: number;
  private readonly maxFileBytes: number;
  private readonly settleMs: number;
  private readonly onRead?: (file: string) => void;
  /** The applied objects of each file. */
  private files = new Map<string, FileObjects>();
  /** The candidate files present at the last look, in name order (which decides duplicates). */
  private names: string[] = [];
  private nameSet = new Set<string>();
  /** Per file, its identity when it was last read and handled: while it is the same, the file is not read again. */
  private seen = new Map<string, SeenFile>();
  private merged: Snapshot = { peers: [], gateways: [], nodes: [] };
  private listeners: Array<() => void> = [];
  private watcher: FSWatcher | null = null;
  private poller: NodeJS.Timeout | undefined;
  private retry: NodeJS.Timeout | undefined;
  private wake: (() => void) | null = null;
  private loaded = false;
  private stopped = false;
  private reading: Promise<void> | null = null;
  private followUp: Promise<void> | null = null;
  /** What the next read looks at: every file, or only these (named by watch events). */
  private pending: Set<string> | 'all' | null = null;
  /** Per file, the last bytes read that were stable (applied, or refused as not YAML), so they are not settled again. */
  private stable = new Map<string, string>();
  /** The last problem reported per file (or per object), so a poll does not repeat it. */
  private reported = new Map<string, string>();

  constructor(dir: string, options: DirectorySourceOptions = {}) {
    this.dir = dir;
    this.log = options.log ?? silentLogger;
    this.pollMs = options.pollMs ?? 5000;
    this.maxFileBytes = options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
    this.settleMs = options.settleMs ?? DEFAULT_SETTLE_MS;
    this.onRead = options.onRead;
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.reload();
    try {
      this.watcher = watch(this.dir, (_event, filename) => this.watched(filename));
      this.watcher.on('error', (err) => this.log.warn('the directory watch failed; polling only', { dir: this.dir, error: err.message }));
    } catch (err) {
      this.log.warn('cannot watch the directory; polling only', { dir: this.dir, error: (err as Error).message });
    }
    this.poller = setInterval(() => void this.reload(), this.pollMs);
    this.poller.unref();
  }

  /**
   * A watch event names the file it is about: a change to one file reads that file only. A temporary
   * file (one dot: the writer's, renamed into place later) is no one's business; anything else that
   * is not a peer file (no name, a ConfigMap volume's `..data` swap, a directory a link leads into)
   * may change what the links lead to: look at every file.
   */
  private watched(filename: string | Buffer | null): void {
    const name = typeof filename === 'string' ? filename : filename?.toString('utf8');
    if (name && isCandidate(name)) void this.reload([name]);
    else if (name && name.startsWith('.') && !name.startsWith('..')) return;
    else void this.reload();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    this.watcher = null;
    clearInterval(this.poller);
    clearTimeout(this.retry);
    this.wake?.();
    if (this.reading) await this.reading;
    if (this.followUp) await this.followUp;
  }

  synced(): boolean {
    return this.loaded;
  }

  /** The same object (and arrays) while nothing changed; callers must not mutate it. */
  snapshot(): Snapshot {
    return this.merged;
  }

  onChange(cb: () => void): void {
    this.listeners.push(cb);
  }

  /**
   * Look at the directory again now: every file (also what the poller does), or only the files
   * named (what a watch event does). A file is read only when its identity (inode, size, times)
   * differs from when it was last read. Resolves after a read that started after this call; never
   * rejects. A call during a read gets one read right after it.
   */
  reload(files: 'all' | readonly string[] = 'all'): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (files === 'all' || this.pending === 'all') this.pending = 'all';
    else {
      this.pending ??= new Set();
      for (const f of files) this.pending.add(f);
    }
    if (this.reading) {
      return (this.followUp ??= this.reading.then(() => {
        this.followUp = null;
        return this.startRead();
      }));
    }
    return this.startRead();
  }

  private startRead(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const scope = this.pending ?? new Set<string>();
    this.pending = null;
    this.reading = this.read(scope)
      .catch((err: unknown) => {
        this.log.warn('reading the peer directory failed; keeping the last state', { dir: this.dir, error: (err as Error).message });
      })
      .finally(() => (this.reading = null));
    return this.reading;
  }

  /** Say a problem once (until it changes or goes away). */
  private report(key: string, message: string | null, meta: Record<string, unknown>): void {
    if (message === null) {
      this.reported.delete(key);
      return;
    }
    if (this.reported.get(key) === message) return;
    this.reported.set(key, message);
    this.log.warn(message, meta);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    }).finally(() => (this.wake = null));
  }

  private readFile(name: string, realDir: string): Promise<ReadResult> {
    this.onRead?.(name);
    return readRegularFile(join(this.dir, name), realDir, this.maxFileBytes);
  }

  private async read(scope: Set<string> | 'all'): Promise<void> {
    let realDir: string;
    let listing: string[] | null = null;
    try {
      realDir = await realpath(this.dir);
      if (scope === 'all') listing = (await readdir(this.dir)).filter(isCandidate).sort(compareText);
    } catch (err) {
      this.report(':dir', 'cannot read the peer directory; keeping the last state', { dir: this.dir, error: errorCode(err) });
      return;
    }
    this.report(':dir', null, {});
    const look = listing ?? [...scope].filter(isCandidate);

    // Which files to read: those whose identity changed since their last read (or that are new, or
    // fresh enough to have changed within one timestamp tick). A full scan yields now and then, so
    // that thousands of stats never block the event loop for long.
    const listed = listing ? new Set(listing) : null;
    const gone = new Set<string>(listed ? this.names.filter((n) => !listed.has(n)) : []);
    const toRead: string[] = [];
    const ids = new Map<string, FileIdentity | null>();
    const startedMs = Date.now();
    for (let i = 0; i < look.length; i++) {
      if (i > 0 && i % STAT_CHUNK === 0) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (this.stopped) return;
      }
      const name = look[i];
      const id = statOf(join(this.dir, name));
      if (id === undefined) {
        gone.add(name);
        continue;
      }
      ids.set(name, id);
      const seen = this.seen.get(name);
      // Racily clean by the later of mtime and ctime: a writer may set mtime back (cp -p, rsync -t,
      // tar x), but not ctime.
      const changedNs = id === null ? 0n : id.ctimeNs > id.mtimeNs ? id.ctimeNs : id.mtimeNs;
      if (id === null || !seen || !sameIdentity(seen.id, id) || seen.readAtMs - Number(changedNs / 1_000_000n) < RACY_MS) toRead.push(name);
    }

    const first = new Map<string, ReadResult>();
    for (const name of toRead) first.set(name, await this.readFile(name, realDir));

    // Files whose bytes differ from what was applied are read once more after settleMs; a file that
    // changed meanwhile is still being written: it keeps what it had and is looked at again shortly.
    const changed = toRead.filter((n) => {
      const r = first.get(n) as ReadResult;
      return 'text' in r && this.stable.get(n) !== r.text;
    });
    const unsettled = new Set<string>();
    if (changed.length > 0) {
      await this.sleep(this.settleMs);
      if (this.stopped) return;
      for (const name of changed) {
        const again = await this.readFile(name, realDir);
        const before = first.get(name) as { text: string };
        if ('text' in again && again.text !== before.text) unsettled.add(name);
        else first.set(name, again);
      }
    }
    if (this.stopped) return;

    let files = this.files;
    const write = (): Map<string, FileObjects> => (files === this.files ? (files = new Map(this.files)) : files);
    let parsedFiles = 0;
    for (const name of toRead) {
      // Parsing is synchronous: thousands of files at start would block the event loop (and the
      // health probes) for seconds. Reads are one at a time, so yielding here lets nothing else in.
      if (parsedFiles > 0 && parsedFiles % PARSE_CHUNK === 0) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (this.stopped) return;
      }
      const path = join(this.dir, name);
      const r = first.get(name) as ReadResult;
      const previous = this.files.get(name);
      if (unsettled.has(name)) {
        this.log.debug('a peer file is still changing; applying it once it is stable', { file: path });
        continue;
      }
      const id = ids.get(name);
      // A file that could not be used is read again on every look: many of its problems are not the
      // file's own (EMFILE, EIO, a folder's permissions fixed later) and would leave its identity as it is.
      if (id && !('problem' in r)) this.seen.set(name, { id, readAtMs: startedMs });
      else this.seen.delete(name);
      if ('gone' in r) {
        gone.add(name);
        continue;
      }
      if ('problem' in r) {
        this.report(path, `ignoring a peer file: ${r.problem}`, { file: path });
        if (previous) write().delete(name);
        continue;
      }
      this.report(path, null, {});
      this.stable.set(name, r.text);
      if (previous?.text === r.text) continue;
      try {
        parsedFiles++;
        const parsed = parseObjects(r.text, path);
        for (const p of parsed.problems) this.log.warn(p, { file: path });
        write().set(name, { text: r.text, snapshot: keepIdentity(previous?.snapshot, parsed.snapshot) });
        this.report(`${path}:parse`, null, {});
      } catch (err) {
        this.report(`${path}:parse`, 'ignoring a file that does not parse; its previous objects stay', { file: path, error: (err as Error).message });
      }
    }
    for (const name of gone) {
      if (this.files.has(name)) write().delete(name);
      this.stable.delete(name);
      this.seen.delete(name);
    }
    // The names in order: a full scan lists them; otherwise only new and gone ones change the list.
    let names = listing ?? this.names;
    if (!listing) {
      const added = look.filter((n) => ids.has(n) && !gone.has(n) && !this.nameSet.has(n));
      if (added.length > 0 || gone.size > 0) names = [...names.filter((n) => !gone.has(n)), ...added].sort(compareText);
    } else if (gone.size > 0) {
      names = names.filter((n) => !gone.has(n));
    }
    const listChanged = names !== this.names && (names.length !== this.names.length || names.some((n, i) => n !== this.names[i]));
    if (listChanged) {
      this.names = names;
      this.nameSet = new Set(names);
    }
    const wasLoaded = this.loaded;
    this.loaded = true;
    if (unsettled.size > 0) {
      clearTimeout(this.retry);
      this.retry = setTimeout(() => void this.reload([...unsettled]), this.settleMs);
      this.retry.unref();
    }
    if (files === this.files && !listChanged && wasLoaded) return;
    const previousFiles = this.files;
    this.files = files;
    const before = this.merged;
    if (listChanged || !wasLoaded || !this.replaceInPlace(previousFiles)) this.merge();
    if (this.merged === before && wasLoaded) return;
    for (const cb of this.listeners) {
      try {
        cb();
      } catch (err) {
        this.log.warn('a listener of the peer directory failed', { error: (err as Error).message });
      }
    }
  }

  /**
   * The common change, without a full merge: files whose objects changed but kept their kinds and
   * names, in the same order, each of which was in the merged lists (no duplicate involved). Their
   * new objects take the old ones' places (found by identity). False: merge() must run.
   */
  private replaceInPlace(previousFiles: Map<string, FileObjects>): boolean {
    const lists = { peers: this.merged.peers, gateways: this.merged.gateways, nodes: this.merged.nodes };
    const copied = { peers: false, gateways: false, nodes: false };
    const names = { peers: (p: Peer) => p.metadata.name, gateways: (g: Gateway) => g.metadata.name, nodes: (n: NodeInfo) => n.name };
    for (const [file, after] of this.files) {
      const before = previousFiles.get(file);
      if (before === after) continue;
      if (!before) return false;
      for (const kind of ['peers', 'gateways', 'nodes'] as const) {
        const old = before.snapshot[kind] as Array<Peer | Gateway | NodeInfo>;
        const now = after.snapshot[kind] as Array<Peer | Gateway | NodeInfo>;
        if (old === now) continue;
        const name = names[kind] as (x: Peer | Gateway | NodeInfo) => string;
        if (old.length !== now.length || old.some((o, i) => name(o) !== name(now[i]))) return false;
        for (let i = 0; i < old.length; i++) {
          if (old[i] === now[i]) continue;
          const list = lists[kind] as Array<Peer | Gateway | NodeInfo>;
          const at = list.indexOf(old[i]);
          if (at < 0) return false;
          if (!copied[kind]) {
            (lists as Record<string, unknown[]>)[kind] = list.slice();
            copied[kind] = true;
          }
          (lists[kind] as Array<Peer | Gateway | NodeInfo>)[at] = now[i];
        }
      }
    }
    // Files that went away are not handled here (the list of names changed: merge()).
    for (const file of previousFiles.keys()) if (!this.files.has(file)) return false;
    if (copied.peers || copied.gateways || copied.nodes) this.merged = lists;
    return true;
  }

  /**
   * All files' objects in file-name order; a kind and name given twice keeps its first, the others
   * are named. A kind's list that holds the same objects as before is the same list, and the
   * snapshot is the same object when none changed.
   */
  private merge(): void {
    const all: Snapshot = { peers: [], gateways: [], nodes: [] };
    // By kind, so that no "kind/name" text is built per object.
    const seen = { Peer: new Map<string, string>(), Gateway: new Map<string, string>(), Node: new Map<string, string>() };
    const keep = (kind: 'Peer' | 'Gateway' | 'Node', name: string, file: string): boolean => {
      const where = seen[kind].get(name);
      if (where === undefined) {
        seen[kind].set(name, file);
        return true;
      }
      this.report(`${file}:${kind}/${name}`, `leaving out ${kind} ${name}: ${where} has one of that name already`, { file: join(this.dir, file) });
      return false;
    };
    for (const file of this.names) {
      const f = this.files.get(file);
      if (!f) continue;
      for (const p of f.snapshot.peers) if (keep('Peer', p.metadata.name, file)) all.peers.push(p);
      for (const g of f.snapshot.gateways) if (keep('Gateway', g.metadata.name, file)) all.gateways.push(g);
      for (const n of f.snapshot.nodes) if (keep('Node', n.name, file)) all.nodes.push(n);
    }
    const peers = sameListOr(this.merged.peers, all.peers);
    const gateways = sameListOr(this.merged.gateways, all.gateways);
    const nodes = sameListOr(this.merged.nodes, all.nodes);
    if (peers === this.merged.peers && gateways === this.merged.gateways && nodes === this.merged.nodes) return;
    this.merged = { peers, gateways, nodes };
  }
}

/**
 * The Peers, Gateways and Nodes in one YAML/JSON text, each checked on its own: what cannot be used
 * is left out and named in `problems` (document number, kind, name, field), the rest stays. Throws
 * (naming the file and document) only when the text is not YAML at all.
 */
export function parseObjects(text: string, where: string): { snapshot: Snapshot; problems: string[] } {
  const out: Snapshot = { peers: [], gateways: [], nodes: [] };
  const problems: string[] = [];
  parseAllDocuments(text).forEach((doc, i) => {
    const at = `document ${i + 1}`;
    if (doc.errors.length) throw new Error(`${where}: ${at}: ${doc.errors[0].message.split('\n')[0]}`);
    let obj: unknown;
    try {
      obj = doc.toJS();
    } catch (err) {
      throw new Error(`${where}: ${at}: ${(err as Error).message.split('\n')[0]}`);
    }
    if (obj === null || obj === undefined) return;
    if (!isObject(obj)) {
      problems.push(`${at}: left out: expected an object with kind and metadata.name, got ${shown(obj)}`);
      return;
    }
    const kind = obj.kind;
    const name = isObject(obj.metadata) ? obj.metadata.name : undefined;
    if (kind !== 'Peer' && kind !== 'Gateway' && kind !== 'Node') {
      problems.push(`${at}: left out: kind ${shown(kind)} is not Peer, Gateway or Node`);
      return;
    }
    if (!isObjectName(name)) {
      problems.push(`${at}: left out: ${kind} metadata.name: ${shown(name)} is not an object name`);
      return;
    }
    if (kind === 'Node') {
      const checked = checkNode(obj);
      for (const p of checked.problems) problems.push(`${at}: Node ${name}: left out ${p.message}`);
      if (checked.node) out.nodes.push(checked.node);
      return;
    }
    // Peers and Gateways go on whatever their spec, so that the trust rules refuse a bad one by
    // field, on every member alike; said here too, with the file.
    const spec = checkSpec(kind, obj);
    if ('problems' in spec) problems.push(`${at}: ${kind} ${name} will be refused: ${spec.problems.map((p) => p.message).join('; ')}`);
    const unknown = unknownFields(kind, obj);
    if (unknown.length > 0) problems.push(`${at}: ${kind} ${name}: ignoring ${unknown.join(', ')}: no such field`);
    if (kind === 'Peer') out.peers.push(obj as unknown as Peer);
    else out.gateways.push(obj as unknown as Gateway);
  });
  return { snapshot: out, problems };
}
