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
 * - Not half-way: a changed file is applied only once two reads `settleMs` apart (default 250 ms)
 *   return the same bytes; while it keeps changing, its previous objects stay and it is read again.
 *   Writers should still write a temporary file (a name starting with a dot, or another extension)
 *   and rename it into place, which is atomic: a writer that stalls mid-file for longer than
 *   `settleMs` would otherwise be read as finished.
 */
import { watch, type FSWatcher } from 'node:fs';
import { constants, open, readdir, realpath } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { silentLogger } from '../../native/index.ts';
import type { Logger } from '../../native/index.ts';
import type { Gateway, Peer } from '../crd/types.ts';
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

export class DirectorySource implements PeerSource {
  readonly dir: string;
  private readonly log: Logger;
  private readonly pollMs: number;
  private readonly maxFileBytes: number;
  private readonly settleMs: number;
  private files = new Map<string, FileObjects>();
  private merged: Snapshot = { peers: [], gateways: [], nodes: [] };
  private listeners: Array<() => void> = [];
  private watcher: FSWatcher | null = null;
  private poller: NodeJS.Timeout | undefined;
  private retry: NodeJS.Timeout | undefined;
  private wake: (() => void) | null = null;
  private loaded = false;
  private stopped = false;
  private last = '';
  private reading: Promise<void> | null = null;
  private followUp: Promise<void> | null = null;
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
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.reload();
    try {
      this.watcher = watch(this.dir, () => void this.reload());
      this.watcher.on('error', (err) => this.log.warn('the directory watch failed; polling only', { dir: this.dir, error: err.message }));
    } catch (err) {
      this.log.warn('cannot watch the directory; polling only', { dir: this.dir, error: (err as Error).message });
    }
    this.poller = setInterval(() => void this.reload(), this.pollMs);
    this.poller.unref();
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

  snapshot(): Snapshot {
    return { peers: [...this.merged.peers], gateways: [...this.merged.gateways], nodes: [...this.merged.nodes] };
  }

  onChange(cb: () => void): void {
    this.listeners.push(cb);
  }

  /**
   * Read the directory again now (also what the watcher and the poller do). Resolves after a read
   * that started after this call; never rejects. A call during a read gets one read right after it.
   */
  reload(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.reading) {
      const next = (this.followUp ??= this.reading.then(() => {
        this.followUp = null;
        return this.reload();
      }));
      return next;
    }
    this.reading = this.read()
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

  private async read(): Promise<void> {
    let names: string[];
    let realDir: string;
    try {
      realDir = await realpath(this.dir);
      names = (await readdir(this.dir)).filter((n) => /\.(ya?ml|json)$/.test(n) && !n.startsWith('.')).sort(compareText);
    } catch (err) {
      this.report(':dir', 'cannot read the peer directory; keeping the last state', { dir: this.dir, error: errorCode(err) });
      return;
    }
    this.report(':dir', null, {});
    const first = new Map<string, ReadResult>();
    for (const name of names) first.set(name, await readRegularFile(join(this.dir, name), realDir, this.maxFileBytes));

    // Files whose bytes differ from what was applied are read once more after settleMs; a file that
    // changed meanwhile is still being written: it keeps what it had and is looked at again shortly.
    const changed = names.filter((n) => {
      const r = first.get(n) as ReadResult;
      return 'text' in r && this.stable.get(n) !== r.text;
    });
    const unsettled = new Set<string>();
    if (changed.length > 0) {
      await this.sleep(this.settleMs);
      if (this.stopped) return;
      for (const name of changed) {
        const again = await readRegularFile(join(this.dir, name), realDir, this.maxFileBytes);
        const before = first.get(name) as { text: string };
        if ('text' in again && again.text !== before.text) unsettled.add(name);
        else first.set(name, again);
      }
    }

    const next = new Map<string, FileObjects>();
    for (const name of names) {
      const path = join(this.dir, name);
      const r = first.get(name) as ReadResult;
      const previous = this.files.get(name);
      if (unsettled.has(name)) {
        this.log.debug('a peer file is still changing; applying it once it is stable', { file: path });
        if (previous) next.set(name, previous);
        continue;
      }
      if ('gone' in r) continue;
      if ('problem' in r) {
        this.report(path, `ignoring a peer file: ${r.problem}`, { file: path });
        continue;
      }
      this.report(path, null, {});
      this.stable.set(name, r.text);
      if (previous?.text === r.text) {
        next.set(name, previous);
        continue;
      }
      try {
        const parsed = parseObjects(r.text, path);
        for (const p of parsed.problems) this.log.warn(p, { file: path });
        next.set(name, { text: r.text, snapshot: parsed.snapshot });
        this.report(`${path}:parse`, null, {});
      } catch (err) {
        this.report(`${path}:parse`, 'ignoring a file that does not parse; its previous objects stay', { file: path, error: (err as Error).message });
        if (previous) next.set(name, previous);
      }
    }
    if (this.stopped) return;
    for (const name of [...this.stable.keys()]) if (!names.includes(name)) this.stable.delete(name);
    this.files = next;
    this.merge();
    this.loaded = true;
    if (unsettled.size > 0) {
      clearTimeout(this.retry);
      this.retry = setTimeout(() => void this.reload(), this.settleMs);
      this.retry.unref();
    }
    const fingerprint = JSON.stringify(this.merged);
    if (fingerprint !== this.last) {
      this.last = fingerprint;
      for (const cb of this.listeners) {
        try {
          cb();
        } catch (err) {
          this.log.warn('a listener of the peer directory failed', { error: (err as Error).message });
        }
      }
    }
  }

  /** All files' objects in file-name order; a kind and name given twice keeps its first, the others are named. */
  private merge(): void {
    const all: Snapshot = { peers: [], gateways: [], nodes: [] };
    const seen = new Map<string, string>();
    const keep = (kind: string, name: string, file: string): boolean => {
      const id = `${kind}/${name}`;
      const where = seen.get(id);
      if (where === undefined) {
        seen.set(id, file);
        return true;
      }
      this.report(`${file}:${id}`, `leaving out ${kind} ${name}: ${where} has one of that name already`, { file: join(this.dir, file) });
      return false;
    };
    for (const [file, f] of this.files) {
      all.peers.push(...f.snapshot.peers.filter((p) => keep('Peer', p.metadata.name, file)));
      all.gateways.push(...f.snapshot.gateways.filter((g) => keep('Gateway', g.metadata.name, file)));
      all.nodes.push(...f.snapshot.nodes.filter((n) => keep('Node', n.name, file)));
    }
    this.merged = all;
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
