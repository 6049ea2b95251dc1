/**
 * The agent's own check of a Peer or Gateway, field by field. Objects from the API server have
 * passed the CRD schema, but objects from the directory source have not, and OpenAPI cannot say
 * everything (host bits, the mesh CIDR): so every object is checked here again before it can reach
 * a device. Problems name the object and the field.
 */
import { canonicalCidr, canonicalEndpoint, canonicalIp, keyProblem } from '../../native/index.ts';
import type { Gateway, Peer } from './types.ts';

export interface FieldProblem {
  field: string;
  message: string;
}

/** A Peer or Gateway reduced to what the mesh uses, canonical. */
export interface CheckedSpec {
  publicKey: string;
  endpoint: string | null;
  meshIP: string | null;
  nodeName: string | null;
  /** Peer: spec.allowedIPs; Gateway: spec.podCIDRs. Canonical, in the object's order (indexes name fields). */
  cidrs: string[];
  persistentKeepalive: number | null;
  presharedKeySecretRef: { namespace: string; name: string; key: string } | null;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function problemOf(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Check a Peer (`kind` 'Peer') or a Gateway; returns the canonical spec, or the problems. */
export function checkSpec(kind: 'Peer' | 'Gateway', obj: Peer | Gateway): { spec: CheckedSpec } | { problems: FieldProblem[] } {
  const problems: FieldProblem[] = [];
  const add = (field: string, message: string | null): void => {
    if (message) problems.push({ field, message });
  };
  const spec: unknown = (obj as { spec?: unknown }).spec;
  if (!isObject(spec)) return { problems: [{ field: 'spec', message: 'spec: missing' }] };
  for (const forbidden of ['privateKey', 'presharedKey']) {
    if (forbidden in spec) add(`spec.${forbidden}`, `spec.${forbidden}: a secret key never goes into the API; keep it in the node key file`);
  }

  const publicKey = spec.publicKey;
  if (typeof publicKey !== 'string') add('spec.publicKey', 'spec.publicKey: required');
  else add('spec.publicKey', keyProblem(publicKey, 'spec.publicKey'));

  let endpoint: string | null = null;
  if (spec.endpoint !== undefined && spec.endpoint !== null) {
    add('spec.endpoint', problemOf(() => (endpoint = canonicalEndpoint(spec.endpoint as string, 'spec.endpoint'))));
    if (endpoint !== null && /:0$/.test(endpoint)) add('spec.endpoint', `spec.endpoint: ${JSON.stringify(spec.endpoint)} has port 0`);
  }

  let meshIP: string | null = null;
  if (spec.meshIP !== undefined && spec.meshIP !== null) {
    add('spec.meshIP', problemOf(() => (meshIP = canonicalIp(spec.meshIP as string, 'spec.meshIP'))));
  } else if (kind === 'Gateway') {
    add('spec.meshIP', 'spec.meshIP: required');
  }

  let nodeName: string | null = null;
  if (spec.nodeName !== undefined && spec.nodeName !== null) {
    if (typeof spec.nodeName !== 'string' || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(spec.nodeName) || spec.nodeName.length > 253) {
      add('spec.nodeName', `spec.nodeName: ${JSON.stringify(spec.nodeName)} is not a node name`);
    } else nodeName = spec.nodeName;
  }

  const listField = kind === 'Peer' ? 'allowedIPs' : 'podCIDRs';
  const list = spec[listField];
  const cidrs: string[] = [];
  if (!Array.isArray(list) || list.length === 0) {
    add(`spec.${listField}`, `spec.${listField}: required, at least one CIDR`);
  } else {
    list.forEach((c, i) => {
      const field = `spec.${listField}[${i}]`;
      const p = problemOf(() => {
        const canonical = canonicalCidr(c as string, field);
        cidrs.push(canonical);
      });
      add(field, p);
    });
  }

  let persistentKeepalive: number | null = null;
  if (spec.persistentKeepalive !== undefined && spec.persistentKeepalive !== null) {
    const k = spec.persistentKeepalive;
    if (typeof k !== 'number' || !Number.isInteger(k) || k < 0 || k > 65535) {
      add('spec.persistentKeepalive', `spec.persistentKeepalive: ${JSON.stringify(k)} is not a whole number of seconds from 0 to 65535`);
    } else persistentKeepalive = k;
  }

  let presharedKeySecretRef: CheckedSpec['presharedKeySecretRef'] = null;
  const ref = spec.presharedKeySecretRef;
  if (ref !== undefined && ref !== null) {
    if (!isObject(ref) || typeof ref.namespace !== 'string' || typeof ref.name !== 'string' || typeof ref.key !== 'string') {
      add('spec.presharedKeySecretRef', 'spec.presharedKeySecretRef: needs namespace, name and key');
    } else presharedKeySecretRef = { namespace: ref.namespace, name: ref.name, key: ref.key };
  }

  if (problems.length > 0) return { problems };
  return {
    spec: { publicKey: publicKey as string, endpoint, meshIP, nodeName, cidrs, persistentKeepalive, presharedKeySecretRef },
  };
}
