/**
 * Peers, Gateways and Nodes from a directory of YAML (or JSON) files, for standalone use without an
 * API server (and the demo before kube-apiserver is built). Same object shapes as in the cluster:
 * `kind: Peer` / `kind: Gateway` (apiVersion aksmesh.io/v1alpha1) and `kind: Node` (v1, with
 * spec.podCIDRs), any number per file. The directory is watched, and re-read every `pollMs` too.
 * A file that does not parse is reported by name and its previous objects are kept.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { silentLogger } from '../../native/index.ts';
import type { Logger } from '../../native/index.ts';
import type { Gateway, Peer } from '../crd/types.ts';
import { nodeInfo } from './types.ts';
import type { PeerSource, Snapshot } from './types.ts';

interface FileObjects {
  mtimeKey: string;
  snapshot: Snapshot;
}

export class DirectorySource implements PeerSource {
  readonly dir: string;
  private readonly log: Logger;
  private readonly pollMs: number;
  private files = new Map<string, FileObjects>();
  private listeners: Array<() => void> = [];
  private watcher: FSWatcher | null = null;
  private poller: NodeJS.Timeout | undefined;
  private loaded = false;
  private last = '';
  private reading: Promise<void> | null = null;

  constructor(dir: string, options: { log?: Logger; pollMs?: number } = {}) {
    this.dir = dir;
    this.log = options.log ?? silentLogger;
    this.pollMs = options.pollMs ?? 5000;
  }

  async start(): Promise<void> {
    await this.reload();
    try {
      this.watcher = watch(this.dir, () => void this.reload());
    } catch (err) {
      this.log.warn('cannot watch the directory; polling only', { dir: this.dir, error: (err as Error).message });
    }
    this.poller = setInterval(() => void this.reload(), this.pollMs);
    this.poller.unref();
  }

  async stop(): Promise<void> {
    this.watcher?.close();
    clearInterval(this.poller);
    if (this.reading) await this.reading;
  }

  synced(): boolean {
    return this.loaded;
  }

  snapshot(): Snapshot {
    const all: Snapshot = { peers: [], gateways: [], nodes: [] };
    for (const f of [...this.files.keys()].sort()) {
      const s = (this.files.get(f) as FileObjects).snapshot;
      all.peers.push(...s.peers);
      all.gateways.push(...s.gateways);
      all.nodes.push(...s.nodes);
    }
    return all;
  }

  onChange(cb: () => void): void {
    this.listeners.push(cb);
  }

  /** Read the directory again now (also what the watcher and the poller do). */
  reload(): Promise<void> {
    this.reading ??= this.read().finally(() => (this.reading = null));
    return this.reading;
  }

  private async read(): Promise<void> {
    let names: string[];
    try {
      names = (await readdir(this.dir)).filter((n) => /\.(ya?ml|json)$/.test(n) && !n.startsWith('.'));
    } catch (err) {
      this.log.warn('cannot read the peer directory; keeping the last state', { dir: this.dir, error: (err as Error).message });
      return;
    }
    const next = new Map<string, FileObjects>();
    for (const name of names) {
      const path = join(this.dir, name);
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch {
        continue; // removed while we read
      }
      const previous = this.files.get(name);
      if (previous?.mtimeKey === text) {
        next.set(name, previous);
        continue;
      }
      try {
        next.set(name, { mtimeKey: text, snapshot: parseObjects(text, path) });
      } catch (err) {
        this.log.warn('ignoring a file that does not parse; its previous objects stay', { file: path, error: (err as Error).message });
        if (previous) next.set(name, previous);
      }
    }
    this.files = next;
    this.loaded = true;
    const fingerprint = JSON.stringify(this.snapshot());
    if (fingerprint !== this.last) {
      this.last = fingerprint;
      for (const cb of this.listeners) cb();
    }
  }
}

/** The Peers, Gateways and Nodes in one YAML/JSON text; throws naming the file and document. */
export function parseObjects(text: string, where: string): Snapshot {
  const out: Snapshot = { peers: [], gateways: [], nodes: [] };
  parseAllDocuments(text).forEach((doc, i) => {
    if (doc.errors.length) throw new Error(`${where}: document ${i + 1}: ${doc.errors[0].message.split('\n')[0]}`);
    const obj = doc.toJS() as { kind?: unknown; metadata?: { name?: unknown } } | null;
    if (obj === null || obj === undefined) return;
    if (typeof obj !== 'object' || typeof obj.metadata?.name !== 'string') {
      throw new Error(`${where}: document ${i + 1}: expected an object with kind and metadata.name`);
    }
    if (obj.kind === 'Peer') out.peers.push(obj as unknown as Peer);
    else if (obj.kind === 'Gateway') out.gateways.push(obj as unknown as Gateway);
    else if (obj.kind === 'Node') out.nodes.push(nodeInfo(obj as Parameters<typeof nodeInfo>[0]));
    else throw new Error(`${where}: document ${i + 1}: kind ${JSON.stringify(obj.kind)} is not Peer, Gateway or Node`);
  });
  return out;
}
