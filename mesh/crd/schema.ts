/**
 * OpenAPI v3 schemas of Peer and Gateway and the CRD manifests built from them: the one source of
 * `config/crd/bases/` and the chart's `crds/` (written by `aks-mesh crds`; a test fails on drift).
 *
 * Every rule is plain OpenAPI (patterns, formats, ranges, required, list-type set): the API servers
 * we must support (1.20 in tests) have no CEL. What OpenAPI cannot say (host bits, overlaps, whose
 * pod CIDR a Peer claims) is enforced by the agent's trust rules (mesh/topology).
 */
import { GROUP, RESOURCES, VERSION } from './types.ts';
import type { UnhealthyReason } from './types.ts';

/** At most this many unhealthy peers are listed on a member's status (the rest are counted in unhealthyOmitted). */
export const UNHEALTHY_LIMIT = 32;
/** Every reason a peer may be listed as unhealthy for. */
export const UNHEALTHY_REASONS: readonly UnhealthyReason[] = ['NoHandshake', 'StaleHandshake', 'NoEndpoint', 'NotConfigured', 'DeviceUnreadable', 'Refused'];

type Schema = Record<string, unknown>;

const OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const IPV4 = `${OCTET}(\\.${OCTET}){3}`;
const H = '[0-9a-fA-F]{1,4}';
const IPV6 =
  `((${H}:){7}${H}|(${H}:){1,7}:|(${H}:){1,6}:${H}|(${H}:){1,5}(:${H}){1,2}|(${H}:){1,4}(:${H}){1,3}|` +
  `(${H}:){1,3}(:${H}){1,4}|(${H}:){1,2}(:${H}){1,5}|${H}:(:${H}){1,6}|:((:${H}){1,7}|:))`;
const PORT = '([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])';

/** Patterns (formats do the rest), exported for the tests that check them against our own parsers. */
export const PATTERNS = {
  key: '^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$',
  endpoint: `^(${IPV4}|\\[${IPV6}\\]):${PORT}$`,
  dnsSubdomain: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$',
  dnsLabel: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$',
  secretKey: '^[-._a-zA-Z0-9]+$',
  /** Matches nothing (`$` then more text): a field with this pattern can never be set. */
  never: '^$ private keys never go into the API; keep them in the node key file',
  /**
   * A plain IP address without leading zeros. The API servers we support check `format: ipv4` with
   * Go's net.ParseIP, which before Go 1.17 read "100.96.0.08" as 100.96.0.8; the agent's parser
   * refuses it, so the schema must too (one object must not pass one and fail the other).
   */
  ip: `^(${IPV4}|${IPV6})$`,
  /** A CIDR without leading zeros in the address or the prefix length (same reason as `ip`). */
  cidr: `^(${IPV4}/(3[0-2]|[12]?[0-9])|${IPV6}/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))$`,
} as const;

/** Sizes the schema allows; the agent's own check (mesh/crd/validate.ts) applies the same to objects from a directory. */
export const LIMITS = {
  endpoint: 64,
  meshIP: 45,
  cidr: 49,
  nodeName: 253,
  allowedIPs: 256,
  podCIDRs: 64,
  secretNamespace: 63,
  secretName: 253,
  secretKey: 253,
} as const;

const publicKey: Schema = {
  type: 'string',
  description: "The WireGuard public key: base64 of 32 bytes, as `wg pubkey` prints it. Never a private key.",
  pattern: PATTERNS.key,
};
const endpoint: Schema = {
  type: 'string',
  description: 'Where to reach the peer: IP:port or [IPv6]:port (no host names; wireguard-go does not resolve them).',
  maxLength: LIMITS.endpoint,
  pattern: PATTERNS.endpoint,
};
const meshIP: Schema = {
  type: 'string',
  description: 'The tunnel address, inside the mesh CIDR (default 100.96.0.0/16).',
  maxLength: LIMITS.meshIP,
  // Go's own parser via the API server's formats (the message names the field and the value), and
  // the pattern for what an old Go parser lets through (leading zeros).
  anyOf: [{ format: 'ipv4' }, { format: 'ipv6' }],
  pattern: PATTERNS.ip,
};
const cidrList = (description: string, maxItems: number): Schema => ({
  type: 'array',
  description,
  minItems: 1,
  maxItems,
  'x-kubernetes-list-type': 'set',
  // format cidr is Go's net.ParseCIDR: "spec.allowedIPs in body must be of type cidr: "10.0.0.0/33"".
  // Host bits set (10.0.0.5/24) pass here; the agent canonicalizes. Duplicates pass too: 1.20 does
  // not enforce list-type set for custom resources and forbids uniqueItems; the agent drops them.
  items: { type: 'string', maxLength: LIMITS.cidr, format: 'cidr', pattern: PATTERNS.cidr },
});
const nodeName: Schema = {
  type: 'string',
  description: "The Kubernetes Node this peer is. A node's own Peer has it and is named after the node.",
  maxLength: LIMITS.nodeName,
  pattern: PATTERNS.dnsSubdomain,
};
const persistentKeepalive: Schema = {
  type: 'integer',
  description: 'Seconds between keepalive packets, 0 (off) to 65535.',
  minimum: 0,
  maximum: 65535,
};
/** Fields that look like a private key are declared only to be refused (unknown fields would be dropped silently). */
const forbiddenSecret = (what: string): Schema => ({
  type: 'string',
  description: `Refused: a ${what} never goes into the API. Keep it in the node key file or a Secret (presharedKeySecretRef).`,
  pattern: PATTERNS.never,
});
const forbidden = {
  privateKey: forbiddenSecret('private key'),
  presharedKey: forbiddenSecret('preshared key'),
};

const condition: Schema = {
  type: 'object',
  required: ['type', 'status'],
  properties: {
    type: { type: 'string', maxLength: 316 },
    status: { type: 'string', enum: ['True', 'False', 'Unknown'] },
    reason: { type: 'string', maxLength: 1024 },
    message: { type: 'string', maxLength: 32768 },
    lastTransitionTime: { type: 'string', format: 'date-time' },
    observedGeneration: { type: 'integer', format: 'int64', minimum: 0 },
  },
};
const status: Schema = {
  type: 'object',
  properties: {
    observedGeneration: { type: 'integer', format: 'int64', minimum: 0 },
    conditions: { type: 'array', 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'], items: condition },
    listenPort: { type: 'integer', minimum: 0, maximum: 65535 },
    peers: {
      type: 'object',
      properties: {
        desired: { type: 'integer', minimum: 0 },
        configured: { type: 'integer', minimum: 0 },
        handshakeWithin3m: { type: 'integer', minimum: 0 },
        healthy: { type: 'integer', minimum: 0, description: 'Configured peers with a handshake within the last 3 minutes.' },
        summary: { type: 'string', maxLength: 32, description: 'healthy/desired, e.g. "2/3" (the HEALTHY column).' },
        unhealthy: {
          type: 'array',
          description: `The peers this member does not count as healthy: this member's own pairs first, then refused objects, each sorted by kind then name, at most ${UNHEALTHY_LIMIT}.`,
          maxItems: UNHEALTHY_LIMIT,
          items: {
            type: 'object',
            required: ['kind', 'name', 'reason'],
            properties: {
              kind: { type: 'string', enum: ['Peer', 'Gateway'] },
              name: { type: 'string', maxLength: 253 },
              reason: {
                type: 'string',
                enum: [...UNHEALTHY_REASONS],
                description:
                  'NoHandshake: configured, never a handshake; StaleHandshake: the last one is older than 3 minutes; NoEndpoint: no endpoint known and no recent handshake; ' +
                  'NotConfigured: desired but not on the device; DeviceUnreadable: this member cannot read its own device, so it cannot judge the pair (healthy is 0 until a full pass reads it again); ' +
                  'Refused: the trust rules refused the object.',
              },
              lastHandshake: { type: 'string', format: 'date-time' },
            },
          },
        },
        unhealthyOmitted: { type: 'integer', minimum: 0, description: 'How many more unhealthy peers there are than the list holds.' },
      },
    },
    lastSyncTime: { type: 'string', format: 'date-time' },
  },
};

/** A cluster-scoped resource with a spec (these fields required, plus the secret-looking ones refused) and our status. */
function resourceSchema(description: string, required: string[], fields: Record<string, Schema>): Schema {
  return {
    type: 'object',
    description,
    required: ['spec'],
    properties: {
      apiVersion: { type: 'string' },
      kind: { type: 'string' },
      metadata: { type: 'object' },
      spec: { type: 'object', required, properties: { ...fields, ...forbidden } },
      status,
    },
  };
}

export const PEER_SCHEMA = resourceSchema(
  'A WireGuard peer of the mesh: a node (nodeName set, named after the node) or a machine outside the cluster.',
  ['publicKey', 'allowedIPs'],
  {
    publicKey,
    endpoint,
    allowedIPs: cidrList('The CIDRs routed to this peer (a node: its pod CIDRs and its mesh IP/32).', LIMITS.allowedIPs),
    meshIP,
    nodeName,
    persistentKeepalive,
    presharedKeySecretRef: {
      type: 'object',
      description: 'A Secret key holding the base64 preshared key for this peer.',
      required: ['namespace', 'name', 'key'],
      properties: {
        namespace: { type: 'string', maxLength: LIMITS.secretNamespace, pattern: PATTERNS.dnsLabel },
        name: { type: 'string', maxLength: LIMITS.secretName, pattern: PATTERNS.dnsSubdomain },
        key: { type: 'string', maxLength: LIMITS.secretKey, pattern: PATTERNS.secretKey },
      },
    },
  },
);

export const GATEWAY_SCHEMA = resourceSchema(
  'A Konnectivity-side gateway: peers with every node by its mesh IP and routes podCIDRs into the mesh.',
  ['publicKey', 'meshIP', 'podCIDRs'],
  {
    publicKey,
    endpoint,
    meshIP,
    nodeName,
    podCIDRs: cidrList('The pod CIDRs the gateway routes through its tunnel.', LIMITS.podCIDRs),
    persistentKeepalive,
  },
);

const READY = '.status.conditions[?(@.type=="Ready")].status';
/** healthy/desired as the member last wrote it (`kubectl get mp -o wide`). */
const HEALTHY: Schema = { name: 'Healthy', type: 'string', jsonPath: '.status.peers.summary', priority: 1, description: 'Peers with a handshake within 3 minutes, of those desired' };

function crd(kind: 'Peer' | 'Gateway', schema: Schema, columns: Schema[]): Schema {
  const r = RESOURCES[kind];
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${r.plural}.${GROUP}` },
    spec: {
      group: GROUP,
      scope: 'Cluster',
      names: { plural: r.plural, singular: r.singular, kind: r.kind, listKind: r.listKind, shortNames: [...r.shortNames], categories: ['aksmesh'] },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: columns,
          schema: { openAPIV3Schema: schema },
        },
      ],
    },
  };
}

export const PEER_CRD = crd('Peer', PEER_SCHEMA, [
  { name: 'Endpoint', type: 'string', jsonPath: '.spec.endpoint' },
  { name: 'Mesh IP', type: 'string', jsonPath: '.spec.meshIP' },
  { name: 'Allowed IPs', type: 'string', jsonPath: '.spec.allowedIPs' },
  { name: 'Node', type: 'string', jsonPath: '.spec.nodeName', priority: 1 },
  { name: 'Ready', type: 'string', jsonPath: READY },
  HEALTHY,
  { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
]);

export const GATEWAY_CRD = crd('Gateway', GATEWAY_SCHEMA, [
  { name: 'Endpoint', type: 'string', jsonPath: '.spec.endpoint' },
  { name: 'Mesh IP', type: 'string', jsonPath: '.spec.meshIP' },
  { name: 'Pod CIDRs', type: 'string', jsonPath: '.spec.podCIDRs' },
  { name: 'Ready', type: 'string', jsonPath: READY },
  HEALTHY,
  { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
]);

export const CRDS = [PEER_CRD, GATEWAY_CRD];
