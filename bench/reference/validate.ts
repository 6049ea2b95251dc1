/**
 * mesh/crd/validate.ts as of commit 3c259c8, for referenceTopology (./topology.ts): a frozen copy,
 * so that the reference's speed is the old code's and no optimisation of the live checked path
 * (such as remembering parsed addresses) reaches it. The property tests compare the two as well.
 */
/**
 * The agent's own check of every Peer, Gateway and Node, field by field: the one checked path every
 * object goes through before anything uses it. Objects from the API server have passed the CRD
 * schema, but objects from the directory source have not, and OpenAPI cannot say everything (host
 * bits, the mesh CIDR): so every object is checked here again, whatever its shape (null, a number, a
 * string where a list belongs...). Nothing here throws. Problems name the field; values are quoted
 * short and escaped, and what might be key material is never quoted at all.
 */
import { canonicalCidr, canonicalEndpoint, canonicalIp, KEY_PATTERN } from '../../native/index.ts';
import { GATEWAY_SCHEMA, LIMITS, PATTERNS, PEER_SCHEMA } from '../../mesh/crd/schema.ts';
import type { NodeInfo } from '../../mesh/crd/types.ts';

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

/** A Peer or Gateway that passed the check: its name, creation time and canonical spec. */
export interface CheckedObject {
  kind: 'Peer' | 'Gateway';
  name: string;
  /** Creation time in ms; an object without one (the directory source) sorts after every dated one. */
  created: number;
  spec: CheckedSpec;
}

export type ObjectCheck = { ok: true; object: CheckedObject } | { ok: false; kind: 'Peer' | 'Gateway'; name: string; problems: FieldProblem[] };

const NAME_RE = new RegExp(PATTERNS.dnsSubdomain);
const LABEL_RE = new RegExp(PATTERNS.dnsLabel);
const SECRET_KEY_RE = new RegExp(PATTERNS.secretKey);

export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Text shaped like a WireGuard key: 44 characters of base64 ending in '=' (as KEY_PATTERN), or 64
 * hex digits (wg's UAPI form), each within however long a run of such characters it sits in.
 */
const KEY_SHAPED = /[A-Za-z0-9+/]{42,}[AEIMQUYcgkosw048]=|[0-9A-Fa-f]{64,}/g;
export const REDACTED_KEY = '(a value shaped like a key, not shown)';

/**
 * `text` with anything shaped like a key replaced by REDACTED_KEY. Refusal messages go into the
 * Accepted condition, Warning events and logs, and a private or preshared key pasted into the wrong
 * field (an endpoint, a name, a Secret reference) must reach none of them. (spec.publicKey is never
 * quoted at all.)
 */
export function redactKeys(text: string): string {
  // A run of one repeated character ("1111...", "aaaa...") holds no secret and is left readable.
  return text.replace(KEY_SHAPED, (m) => (/^(.)\1*=?$/.test(m) ? m : REDACTED_KEY));
}

/** A value as it may appear in a message: JSON (control characters escaped), keys redacted, at most 64 characters. */
export function shown(v: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(v) ?? String(v);
  } catch {
    text = typeof v;
  }
  // Redacted before cutting, so a key cut short by the limit is not shown in part either.
  text = redactKeys(text);
  return text.length > 64 ? `${text.slice(0, 61)}...` : text;
}

/** What kind of JSON value this is, for "expected a string, got a number". */
function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/** Whether `v` is a Kubernetes object name (DNS subdomain, at most 253 characters). */
export function isObjectName(v: unknown): v is string {
  return typeof v === 'string' && v.length <= LIMITS.nodeName && NAME_RE.test(v);
}

/** A field name as it may appear in a path: plain identifiers as they are, anything else quoted. */
const fieldName = (k: string): string => (/^[A-Za-z][A-Za-z0-9]{0,63}$/.test(k) ? `.${k}` : `[${shown(k)}]`);

/** The fields each kind's spec may have (from the schema, so the two never drift apart). */
const specFields = (schema: Record<string, unknown>): Set<string> =>
  new Set(Object.keys(((schema.properties as Record<string, Record<string, unknown>>).spec.properties as Record<string, unknown>) ?? {}));
const FIELDS = { Peer: specFields(PEER_SCHEMA), Gateway: specFields(GATEWAY_SCHEMA) };
const SECRET_FIELDS = ['privateKey', 'presharedKey'];
const KNOWN = (kind: 'Peer' | 'Gateway'): string[] => [...FIELDS[kind]].filter((f) => !SECRET_FIELDS.includes(f));

/** Edit distance (insertions, deletions, substitutions), for "did you mean". */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length];
}

/**
 * What is wrong with a spec field of this name, or null: a field of the kind, or one that resembles
 * none. Refused: anything that looks like a secret key, the other kind's list field, and a near miss
 * of a field (same letters in another case, or at most two edits away).
 */
function fieldProblem(kind: 'Peer' | 'Gateway', k: string): string | null {
  if (FIELDS[kind].has(k) && !SECRET_FIELDS.includes(k)) return null;
  const plain = k.toLowerCase().replace(/[-_ ]/g, '');
  if (SECRET_FIELDS.some((f) => plain.includes(f.toLowerCase())) || plain === 'psk') {
    return 'a secret key never goes into the API; keep it in the node key file';
  }
  const other = kind === 'Peer' ? 'Gateway' : 'Peer';
  if (FIELDS[other].has(k)) return `a ${kind} has no ${k} (a ${other} field); a ${kind} has ${KNOWN(kind).join(', ')}`;
  const near = KNOWN(kind).find((f) => f.toLowerCase() === plain || (plain.length >= 4 && distance(f.toLowerCase(), plain) <= 2));
  return near ? `a ${kind} has no such field; did you mean ${near}?` : null;
}

/** Spec fields of an object that its kind does not know and that resemble none of its fields (left alone, but worth a word). */
export function unknownFields(kind: 'Peer' | 'Gateway', obj: unknown): string[] {
  const spec = isObject(obj) && isObject(obj.spec) ? obj.spec : {};
  return Object.keys(spec).filter((k) => !FIELDS[kind].has(k) && fieldProblem(kind, k) === null).map((k) => `spec${fieldName(k)}`);
}

/** What each parser accepts, for a refusal that cannot quote the parser's own message. */
const NOUNS = new Map<(text: string, what: string) => string, string>([
  [canonicalCidr, 'a CIDR such as 10.244.1.0/24 or fd00::/64'],
  [canonicalIp, 'an IPv4 or IPv6 address'],
  [canonicalEndpoint, 'an endpoint (host:port)'],
]);

/** An IP address or CIDR field: a string, short enough, parsed strictly (no leading zeros, no host names). */
function parseText(v: unknown, field: string, max: number, parse: (text: string, what: string) => string): { value: string } | { problem: string } {
  if (typeof v !== 'string') return { problem: `${field}: expected a string, got ${typeName(v)}` };
  if (v.length > max) return { problem: `${field}: ${shown(v)} is longer than ${max} characters` };
  // The parsers quote what they could not parse, which can be a fragment of a key (a base64 key
  // holds '/', where a CIDR is split): key-shaped text is refused without the parser's words.
  if (redactKeys(v) !== v) return { problem: `${field}: ${shown(v)} is not ${NOUNS.get(parse) ?? 'valid here'}` };
  try {
    return { value: parse(v, field) };
  } catch (err) {
    // The parser's message quotes the value: redacted like shown().
    return { problem: redactKeys((err as Error).message) };
  }
}

/** Check a Peer (`kind` 'Peer') or a Gateway; returns the canonical spec, or the problems (never throws). */
export function checkSpec(kind: 'Peer' | 'Gateway', obj: unknown): { spec: CheckedSpec } | { problems: FieldProblem[] } {
  const problems: FieldProblem[] = [];
  const add = (field: string, message: string): void => {
    problems.push({ field, message });
  };
  const spec: unknown = isObject(obj) ? obj.spec : undefined;
  if (spec === undefined) return { problems: [{ field: 'spec', message: 'spec: required' }] };
  if (!isObject(spec)) return { problems: [{ field: 'spec', message: `spec: expected an object, got ${typeName(spec)}` }] };

  // A misspelled field (meshIp, allowedIps) would otherwise be dropped and the rest accepted: an
  // object that is not what its author meant. A field that resembles no field at all is left alone:
  // it may be a newer schema's (agents and CRDs are not upgraded in one instant), and the API server
  // prunes what its schema does not know anyway. (unknownFields() names them for the directory.)
  for (const k of Object.keys(spec)) {
    const problem = fieldProblem(kind, k);
    if (problem) add(`spec${fieldName(k)}`, `spec${fieldName(k)}: ${problem}`);
  }

  // Never quoted: a private key pasted here by mistake must not reach a log or a condition.
  const publicKey = spec.publicKey;
  if (publicKey === undefined || publicKey === null) add('spec.publicKey', 'spec.publicKey: required');
  else if (typeof publicKey !== 'string') add('spec.publicKey', `spec.publicKey: expected a string, got ${typeName(publicKey)}`);
  else if (!KEY_PATTERN.test(publicKey)) {
    add('spec.publicKey', `spec.publicKey: not a WireGuard public key (${publicKey.length} characters; expected 44 characters of base64 encoding 32 bytes, as "wg pubkey" prints it)`);
  }

  let endpoint: string | null = null;
  if (spec.endpoint !== undefined && spec.endpoint !== null) {
    const r = parseText(spec.endpoint, 'spec.endpoint', LIMITS.endpoint, canonicalEndpoint);
    if ('problem' in r) add('spec.endpoint', r.problem);
    else if (/:0$/.test(r.value)) add('spec.endpoint', `spec.endpoint: ${shown(spec.endpoint)} has port 0`);
    else endpoint = r.value;
  }

  let meshIP: string | null = null;
  if (spec.meshIP !== undefined && spec.meshIP !== null) {
    const r = parseText(spec.meshIP, 'spec.meshIP', LIMITS.meshIP, canonicalIp);
    if ('problem' in r) add('spec.meshIP', r.problem);
    else meshIP = r.value;
  } else if (kind === 'Gateway') {
    add('spec.meshIP', 'spec.meshIP: required');
  }

  let nodeName: string | null = null;
  if (spec.nodeName !== undefined && spec.nodeName !== null) {
    if (!isObjectName(spec.nodeName)) add('spec.nodeName', `spec.nodeName: ${shown(spec.nodeName)} is not a node name (lower case letters, digits, '-' and '.', at most 253)`);
    else nodeName = spec.nodeName;
  }

  const listField = kind === 'Peer' ? 'allowedIPs' : 'podCIDRs';
  const max = kind === 'Peer' ? LIMITS.allowedIPs : LIMITS.podCIDRs;
  const list = spec[listField];
  const cidrs: string[] = [];
  if (list === undefined || list === null) add(`spec.${listField}`, `spec.${listField}: required, at least one CIDR`);
  else if (!Array.isArray(list)) add(`spec.${listField}`, `spec.${listField}: expected a list of CIDRs, got ${typeName(list)}`);
  else if (list.length === 0) add(`spec.${listField}`, `spec.${listField}: required, at least one CIDR`);
  else if (list.length > max) add(`spec.${listField}`, `spec.${listField}: ${list.length} entries, at most ${max}`);
  else {
    list.forEach((c: unknown, i: number) => {
      const r = parseText(c, `spec.${listField}[${i}]`, LIMITS.cidr, canonicalCidr);
      if ('problem' in r) add(`spec.${listField}[${i}]`, r.problem);
      else cidrs.push(r.value);
    });
  }

  let persistentKeepalive: number | null = null;
  const k = spec.persistentKeepalive;
  if (k !== undefined && k !== null) {
    if (typeof k !== 'number' || !Number.isInteger(k) || k < 0 || k > 65535) {
      add('spec.persistentKeepalive', `spec.persistentKeepalive: ${shown(k)} is not a whole number of seconds from 0 to 65535`);
    } else persistentKeepalive = k;
  }

  let presharedKeySecretRef: CheckedSpec['presharedKeySecretRef'] = null;
  const ref = spec.presharedKeySecretRef;
  if (kind === 'Peer' && ref !== undefined && ref !== null) {
    const before = problems.length;
    if (!isObject(ref)) add('spec.presharedKeySecretRef', `spec.presharedKeySecretRef: expected an object with namespace, name and key, got ${typeName(ref)}`);
    else {
      const parts: Array<[string, RegExp, number]> = [
        ['namespace', LABEL_RE, LIMITS.secretNamespace],
        ['name', NAME_RE, LIMITS.secretName],
        ['key', SECRET_KEY_RE, LIMITS.secretKey],
      ];
      for (const [part, re, limit] of parts) {
        const v = ref[part];
        const field = `spec.presharedKeySecretRef.${part}`;
        if (v === undefined || v === null) add(field, `${field}: required`);
        else if (typeof v !== 'string' || v.length > limit || !re.test(v)) add(field, `${field}: ${shown(v)} is not a Secret ${part}`);
      }
      for (const extra of Object.keys(ref).filter((x) => !parts.some(([p]) => p === x))) {
        add(`spec.presharedKeySecretRef${fieldName(extra)}`, `spec.presharedKeySecretRef${fieldName(extra)}: a Secret reference has only namespace, name and key`);
      }
      // Stryker disable next-line ConditionalExpression: equivalent: with any problem recorded the whole spec is refused, so what the reference holds then is never used
      if (problems.length === before) presharedKeySecretRef = { namespace: ref.namespace as string, name: ref.name as string, key: ref.key as string };
    }
  }

  if (problems.length > 0) return { problems };
  return {
    spec: { publicKey: publicKey as string, endpoint, meshIP, nodeName, cidrs, persistentKeepalive, presharedKeySecretRef },
  };
}

/** Creation time in ms of an object's metadata.creationTimestamp, or MAX_SAFE_INTEGER (none, or not a time). */
export function createdAt(obj: unknown): number {
  const t = isObject(obj) && isObject(obj.metadata) ? obj.metadata.creationTimestamp : undefined;
  if (typeof t !== 'string' && !(t instanceof Date)) return Number.MAX_SAFE_INTEGER;
  const ms = new Date(t).getTime();
  return Number.isFinite(ms) ? ms : Number.MAX_SAFE_INTEGER;
}

/** The name to report an object by: its metadata.name when that is a string (escaped, short), else "(unnamed)". */
export function reportedName(obj: unknown): string {
  const name = isObject(obj) && isObject(obj.metadata) ? obj.metadata.name : undefined;
  if (typeof name !== 'string' || name === '') return '(unnamed)';
  return isObjectName(name) ? name : shown(name);
}

/** The one checked path for a Peer or Gateway, whatever `raw` is: its name, its creation time and its canonical spec, or the problems. */
export function checkObject(kind: 'Peer' | 'Gateway', raw: unknown): ObjectCheck {
  const name = reportedName(raw);
  const meta = isObject(raw) ? raw.metadata : undefined;
  const rawName = isObject(meta) ? meta.name : undefined;
  if (!isObjectName(rawName)) {
    const message = rawName === undefined || rawName === null ? 'metadata.name: required' : `metadata.name: ${shown(rawName)} is not an object name (lower case letters, digits, '-' and '.', at most 253)`;
    return { ok: false, kind, name, problems: [{ field: 'metadata.name', message }] };
  }
  const checked = checkSpec(kind, raw);
  if ('problems' in checked) return { ok: false, kind, name, problems: checked.problems };
  return { ok: true, object: { kind, name: rawName, created: createdAt(raw), spec: checked.spec } };
}

/**
 * A Node as the mesh needs it, from a Kubernetes Node object of any shape: its name, the pod CIDRs
 * that parse (spec.podCIDRs, else spec.podCIDR), canonical, and its InternalIP addresses that parse.
 * Whatever does not parse is left out and named in `problems`; `node` is null without a usable name.
 */
export function checkNode(raw: unknown): { node: NodeInfo | null; problems: FieldProblem[] } {
  const problems: FieldProblem[] = [];
  const meta = isObject(raw) ? raw.metadata : undefined;
  const name = isObject(meta) ? meta.name : undefined;
  if (!isObjectName(name)) return { node: null, problems: [{ field: 'metadata.name', message: `metadata.name: ${shown(name)} is not a node name` }] };
  const spec = isObject(raw) && isObject(raw.spec) ? raw.spec : {};
  const status = isObject(raw) && isObject(raw.status) ? raw.status : {};

  const podCIDRs: string[] = [];
  const cidrList = (field: string, values: unknown[]): void => {
    values.forEach((c, i) => {
      const r = parseText(c, `${field}[${i}]`, LIMITS.cidr, canonicalCidr);
      if ('problem' in r) problems.push({ field: `${field}[${i}]`, message: r.problem });
      else if (!podCIDRs.includes(r.value)) podCIDRs.push(r.value);
    });
  };
  if (spec.podCIDRs !== undefined && spec.podCIDRs !== null && !Array.isArray(spec.podCIDRs)) {
    problems.push({ field: 'spec.podCIDRs', message: `spec.podCIDRs: expected a list of CIDRs, got ${typeName(spec.podCIDRs)}` });
  }
  if (Array.isArray(spec.podCIDRs) && spec.podCIDRs.length > 0) cidrList('spec.podCIDRs', spec.podCIDRs.slice(0, LIMITS.podCIDRs));
  else if (spec.podCIDR !== undefined && spec.podCIDR !== null && spec.podCIDR !== '') cidrList('spec.podCIDR', [spec.podCIDR]);

  const internalIPs: string[] = [];
  const addresses = status.addresses;
  if (addresses !== undefined && addresses !== null && !Array.isArray(addresses)) {
    problems.push({ field: 'status.addresses', message: `status.addresses: expected a list, got ${typeName(addresses)}` });
  }
  (Array.isArray(addresses) ? addresses : []).forEach((a: unknown, i: number) => {
    if (!isObject(a) || a.type !== 'InternalIP') return;
    const r = parseText(a.address, `status.addresses[${i}].address`, LIMITS.meshIP, canonicalIp);
    if ('problem' in r) problems.push({ field: `status.addresses[${i}].address`, message: r.problem });
    else if (!internalIPs.includes(r.value)) internalIPs.push(r.value);
  });

  const t = meta && isObject(meta) ? meta.creationTimestamp : undefined;
  const created = typeof t === 'string' || t instanceof Date ? new Date(t) : null;
  const creationTimestamp = created && Number.isFinite(created.getTime()) ? created.toISOString() : undefined;
  return { node: { name, podCIDRs, internalIPs, ...(creationTimestamp ? { creationTimestamp } : {}) }, problems };
}

/**
 * A NodeInfo as handed to the desired-state function, checked again (a caller may hand it anything):
 * only a usable name, pod CIDRs and InternalIPs that parse, canonical. Null without a usable name.
 */
export function checkNodeInfo(raw: unknown): NodeInfo | null {
  if (!isObject(raw) || !isObjectName(raw.name)) return null;
  const podCIDRs = Array.isArray(raw.podCIDRs) ? raw.podCIDRs : [];
  const internalIPs = Array.isArray(raw.internalIPs) ? raw.internalIPs : [];
  return checkNode({
    metadata: { name: raw.name, creationTimestamp: raw.creationTimestamp },
    spec: { podCIDRs },
    status: { addresses: internalIPs.map((address) => ({ type: 'InternalIP', address })) },
  }).node;
}
