/**
 * What only a gateway does, as the MemberRole the member core is given: its own object is a Gateway
 * (its public key, endpoint, mesh IP, node and the pod CIDRs it routes), and it routes every one of
 * its --pod-cidr list into its tunnel, parts that no node holds yet included, so nothing it sends to
 * pods leaves in clear (DESIGN §3.6). It writes no verdicts on others (its RBAC may not write Peer
 * status) and has no Node of its own to untaint.
 */
import type { GatewaySpec } from '../mesh/crd/types.ts';
import type { MemberRole, OwnSpecContext } from '../mesh/member.ts';
import { compareText } from '../mesh/topology/order.ts';

export interface GatewayRoleOptions {
  /** The Gateway object's name. */
  name: string;
  /** The node this gateway's pod runs on. */
  nodeName: string;
  /** Where nodes reach this gateway (IP:port, canonical). */
  endpoint: string;
  /** The pod CIDRs it routes into the mesh (--pod-cidr). */
  podCIDRs: readonly string[];
  /** The pod's own IP (--pod-ip, $POD_IP): what it answers from leaves through the main table. */
  podIP?: string;
}

export function gatewayRole(o: GatewayRoleOptions): MemberRole {
  const podCIDRs = [...o.podCIDRs].sort(compareText);
  let routesIn: readonly string[] | null = null;
  let routesOut: string[] = [];
  return {
    self: 'gateway',
    kind: 'Gateway',
    owner: `gateway ${o.name}`,
    podCIDRs,
    ...(o.podIP ? { replySource: o.podIP } : {}),
    // Recomputed only when the topology's routes change (a new array: the fallbacks parse it).
    routes(topologyRoutes) {
      if (topologyRoutes !== routesIn) {
        routesIn = topologyRoutes;
        routesOut = [...new Set([...topologyRoutes, ...podCIDRs])].sort(compareText);
      }
      return routesOut;
    },
    ownSpec(c: OwnSpecContext): GatewaySpec {
      const keepalive = c.persistentKeepalive ? { persistentKeepalive: c.persistentKeepalive } : {};
      const spec: GatewaySpec = { publicKey: c.publicKey, meshIP: c.meshIP(), nodeName: o.nodeName, podCIDRs: [...podCIDRs], ...keepalive };
      if (o.endpoint) spec.endpoint = o.endpoint;
      return spec;
    },
  };
}
