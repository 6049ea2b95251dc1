/**
 * What only a node's agent does, as the MemberRole the member core is given: its own object is the
 * Peer named after its node (allowed IPs: its Node's pod CIDRs; endpoint: its Node's first
 * InternalIP), it removes its Node's not-ready taint once converged, and it writes the trust rules'
 * verdicts on every Peer and Gateway (a gateway's RBAC may not write Peer status; every agent
 * reaches the same verdicts, DESIGN §3.2).
 */
import { NOT_READY_TAINT, apiMessage, httpStatus } from '../mesh/kube.ts';
import type { PeerSpec } from '../mesh/crd/types.ts';
import type { MemberRole, OwnSpecContext, RoleContext } from '../mesh/member.ts';
import type { Snapshot } from '../mesh/source/index.ts';
import type { Refusal } from '../mesh/topology/index.ts';
import { compareText } from '../mesh/topology/order.ts';

export interface AgentRoleOptions {
  nodeName: string;
  listenPort: number;
  /** This node's endpoint IP:port; default: its Node's first InternalIP on the listen port. */
  endpoint?: string;
}

export function agentRole(o: AgentRoleOptions): MemberRole {
  let nodeFor: { nodes: Snapshot['nodes']; node: Snapshot['nodes'][number] | undefined } | null = null;
  /** The not-ready taint on this node: still to check, being removed, or done with (removed or never there). */
  let taint: 'pending' | 'removing' | 'done' = 'pending';
  /** Refusals this agent wrote, by kind/name, with their message. */
  const reported = new Map<string, string>();
  /** Objects whose Accepted condition was found True or set True (by identity: a changed object is looked at again). */
  const acceptedChecked = new WeakSet<object>();
  let acceptedLists: { peers: unknown[]; gateways: unknown[]; refused: readonly Refusal[] } | null = null;

  return {
    self: 'node',
    kind: 'Peer',
    owner: `the agent on ${o.nodeName}`,
    routes: (topologyRoutes) => topologyRoutes,

    ownSpec(c: OwnSpecContext): PeerSpec | null {
      if (nodeFor?.nodes !== c.nodes) nodeFor = { nodes: c.nodes, node: c.nodes.find((n) => n.name === o.nodeName) };
      const node = nodeFor.node;
      if (!node) {
        c.log.warn('no Node object for this node yet; not registering', { node: o.nodeName });
        return null;
      }
      const endpointIp = node.internalIPs[0];
      const endpoint = o.endpoint ?? (endpointIp ? (endpointIp.includes(':') ? `[${endpointIp}]:${o.listenPort}` : `${endpointIp}:${o.listenPort}`) : undefined);
      const keepalive = c.persistentKeepalive ? { persistentKeepalive: c.persistentKeepalive } : {};
      const spec: PeerSpec = { publicKey: c.publicKey, allowedIPs: [...node.podCIDRs].sort(compareText), meshIP: c.meshIP(), nodeName: o.nodeName, ...keepalive };
      if (endpoint) spec.endpoint = endpoint;
      return spec;
    },

    /**
     * Once converged, remove the not-ready taint from this node's own Node (only that taint, only this
     * Node), so ordinary pods are scheduled here only when the mesh is there for them. Done once per
     * process; a failure is retried after the next pass. Nothing in directory mode (no API).
     */
    afterPass(c: RoleContext, result, topology): void {
      if (taint !== 'pending' || !c.converged(result, topology)) return;
      taint = 'removing';
      c.track(
        c.api.removeNodeTaint(o.nodeName, NOT_READY_TAINT).then(
          (outcome) => {
            taint = 'done';
            if (outcome === 'removed') {
              c.log.info('converged: removed the not-ready taint from this Node', { node: o.nodeName, taint: `${NOT_READY_TAINT.key}:${NOT_READY_TAINT.effect}`, peers: topology.peers.length });
            }
          },
          (err: unknown) => {
            // Without the right to patch Nodes (an older RBAC) retrying cannot help: say so once.
            const forbidden = httpStatus(err) === 403;
            taint = forbidden ? 'done' : 'pending';
            c.log.warn(`could not remove the not-ready taint from this Node${forbidden ? ' (not allowed to patch Nodes: pods stay off this node until an operator removes it)' : '; retrying after the next pass'}`, {
              node: o.nodeName,
              error: apiMessage(err),
            });
          },
        ),
      );
    },

    /**
     * Each refusal is written once per distinct message by this agent; an accepted object's old
     * refusal is cleared. Only objects that are new or changed (by identity) or whose verdict changed
     * are looked at: each pass would otherwise visit every object.
     */
    async afterStatus(c: RoleContext, topology): Promise<void> {
      const refused = topology.refused;
      const current = new Map(refused.map((r) => [`${r.kind}/${r.name}`, r]));
      for (const [key, r] of current) {
        if (reported.get(key) === r.message) continue;
        await c.api.reportRefusal(r);
        reported.set(key, r.message);
      }
      const cleared = new Set<string>();
      for (const key of [...reported.keys()]) {
        if (current.has(key)) continue;
        reported.delete(key);
        cleared.add(key);
      }
      // An object refused before (by anyone) and accepted now gets its Accepted condition back to True.
      const snapshot = c.source.snapshot();
      const seen = acceptedLists;
      if (seen && seen.peers === snapshot.peers && seen.gateways === snapshot.gateways && seen.refused === refused && cleared.size === 0) return;
      for (const [kind, list] of [['Peer', snapshot.peers], ['Gateway', snapshot.gateways]] as const) {
        for (const obj of list) {
          const key = `${kind}/${obj.metadata.name}`;
          if (current.has(key)) {
            // Refused now: once accepted again, it is looked at again.
            acceptedChecked.delete(obj);
            continue;
          }
          if (acceptedChecked.has(obj) && !cleared.has(key)) continue;
          await c.api.reportAccepted(kind, obj.metadata.name, obj.status);
          acceptedChecked.add(obj);
        }
      }
      acceptedLists = { peers: snapshot.peers, gateways: snapshot.gateways, refused };
    },
  };
}
