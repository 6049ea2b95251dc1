/**
 * The Konnectivity-side gateway: a mesh member whose own object is a Gateway (gatewayRole). It peers
 * with every node (their pod CIDRs and mesh IPs) and routes its --pod-cidr list into its tunnel, in
 * its own network namespace (the Konnectivity agent pod's), so what the API server sends into the
 * cluster reaches pods encrypted. Its flags are in flags.ts, its sidecar container in sidecar.ts.
 */
import { MeshMember } from '../mesh/member.ts';
import type { MemberOptions } from '../mesh/member.ts';
import { gatewayRole } from './role.ts';

export type GatewayOptions = Omit<MemberOptions, 'role'> & {
  /** The pod CIDRs to route into the tunnel (canonical). */
  podCIDRs: string[];
  /** Where nodes reach this gateway: IP:port. */
  endpoint: string;
  /** The pod's own IP: answers from it (kubelet's probes) leave through the main table, not the tunnel. */
  podIP?: string;
};

export function createGateway(options: GatewayOptions): MeshMember {
  const { podCIDRs, endpoint, podIP, ...member } = options;
  return new MeshMember({ ...member, role: gatewayRole({ name: options.name, nodeName: options.nodeName, endpoint, podCIDRs, ...(podIP ? { podIP } : {}) }) });
}
