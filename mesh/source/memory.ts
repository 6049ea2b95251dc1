/**
 * Peers, Gateways and Nodes held in memory and changed by calls: for embedding (a program that
 * already has the objects) and for benchmarks that must measure the mesh, not a file system or an
 * API server. It keeps the snapshot contract (types.ts): each change makes a new Snapshot whose
 * untouched lists and objects are the same as before.
 *
 * A change is a new object: everything downstream (the topology engine, the reconciler's mirror)
 * recognises unchanged objects by identity, so an object changed in place and put back is taken as
 * unchanged. Never mutate an object once it was put.
 */
import type { Gateway, NodeInfo, Peer } from '../crd/types.ts';
import type { PeerSource, Snapshot } from './types.ts';

export class MemorySource implements PeerSource {
  private current: Snapshot;
  private readonly listeners: Array<() => void> = [];
  private started = false;

  constructor(initial: Partial<Snapshot> = {}) {
    this.current = { peers: [...(initial.peers ?? [])], gateways: [...(initial.gateways ?? [])], nodes: [...(initial.nodes ?? [])] };
  }

  async start(): Promise<void> {
    this.started = true;
  }

  async stop(): Promise<void> {
    this.started = false;
  }

  synced(): boolean {
    return this.started;
  }

  snapshot(): Snapshot {
    return this.current;
  }

  onChange(cb: () => void): void {
    this.listeners.push(cb);
  }

  /** Add or replace (by name) a Peer. */
  putPeer(peer: Peer): void {
    this.change({ peers: put(this.current.peers, peer, (p) => p.metadata.name) });
  }

  deletePeer(name: string): void {
    this.change({ peers: this.current.peers.filter((p) => p.metadata.name !== name) });
  }

  putGateway(gateway: Gateway): void {
    this.change({ gateways: put(this.current.gateways, gateway, (g) => g.metadata.name) });
  }

  deleteGateway(name: string): void {
    this.change({ gateways: this.current.gateways.filter((g) => g.metadata.name !== name) });
  }

  putNode(node: NodeInfo): void {
    this.change({ nodes: put(this.current.nodes, node, (n) => n.name) });
  }

  deleteNode(name: string): void {
    this.change({ nodes: this.current.nodes.filter((n) => n.name !== name) });
  }

  private change(part: Partial<Snapshot>): void {
    this.current = { ...this.current, ...part };
    for (const cb of this.listeners) cb();
  }
}

/** The list with `item` in place of the one of its name (or appended): a new list, the other items the same objects. */
function put<T>(list: readonly T[], item: T, name: (x: T) => string): T[] {
  const key = name(item);
  const next = list.slice();
  for (let i = 0; i < next.length; i++) {
    if (name(next[i]) !== key) continue;
    next[i] = item;
    return next;
  }
  next.push(item);
  return next;
}
