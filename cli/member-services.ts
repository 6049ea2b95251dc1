/**
 * What a long-running member's side services (the live stream, cli/member-stream.ts; the local
 * control socket, cli/member-control.ts) get from `aks-mesh agent` / `aks-mesh gateway`
 * (cli/commands/member.ts): the member, its logger, and every reconcile pass as it happens.
 */
import type { Logger } from '../native/index.ts';
import type { MeshMember } from '../mesh/member.ts';
import type { MemberMetrics } from '../mesh/metrics.ts';
import type { SyncResult } from '../mesh/reconcile/index.ts';
import type { Topology } from '../mesh/topology/index.ts';

export interface ServiceContext {
  readonly member: MeshMember;
  readonly metrics: MemberMetrics;
  readonly log: Logger;
  /** 'node' (an agent) or 'gateway'. */
  readonly role: 'node' | 'gateway';
  /** The member's own object name (node name or Gateway name). */
  readonly name: string;
  /** Called after every reconcile pass (after the metrics recorded it); returns an unsubscribe. */
  onSync(listener: (result: SyncResult, topology: Topology) => void): () => void;
}

/** A started side service; close() releases its socket and connections. */
export interface MemberService {
  close(): Promise<void>;
}
