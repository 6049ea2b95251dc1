/**
 * The Konnectivity-side gateway's public face: what only a gateway does. createGateway runs it
 * (gatewayRole: its own Gateway, its --pod-cidr list routed into the tunnel); flags.ts holds its flags
 * and what the seed's `--gateway-endpoint=$(NODE_IP)` means; sidecar.ts the container for the
 * Konnectivity agent pod that `aks-mesh gateway-patch` prints and the chart renders.
 * Everything it shares with the agent is mesh/member.ts.
 */
export { createGateway } from './gateway.ts';
export type { GatewayOptions } from './gateway.ts';
export { gatewayRole } from './role.ts';
export type { GatewayRoleOptions } from './role.ts';
export { GATEWAY_DEFAULTS, GATEWAY_FLAG_NAMES, GATEWAY_LISTEN_PORT, gatewayFlags, resolveGateway, splitList } from './flags.ts';
export type { GatewayFlags, GatewaySettings } from './flags.ts';
export { DEFAULT_SIDECAR_NAME, DEFAULT_SIDECAR_RESOURCES, GATEWAY_CLUSTER_ROLE, GATEWAY_METRICS_PORT, gatewayRoleBinding, gatewaySidecar, gatewaySidecarPatch, sidecarNameProblem } from './sidecar.ts';
export type { Container, GatewaySidecar, GatewaySidecarOptions, Resources, Volume } from './sidecar.ts';
