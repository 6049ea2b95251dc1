/**
 * What the members know about the Kubernetes API without loading a client: their own Node's
 * not-ready taint, how to read an API error, who last wrote a spec (managedFields), and whether two
 * specs say the same. Writing to the API (MeshApi) lives in api.ts and reading (informers) in
 * source/kube.ts; both load @kubernetes/client-node, which costs about 85 MB of RSS and 0.8 s of CPU
 * at start, so a --peers-dir member, which never talks to an API server, never imports them.
 */
import type { MeshStatus } from './crd/types.ts';
import { AGENT_NOT_READY_TAINT } from './manifests.ts';
import { compareText } from './topology/order.ts';
export type { MeshApi, MeshApiOptions } from './api.ts';

/**
 * The taint that keeps ordinary pods off a node until its agent has converged (like Cilium's
 * node.cilium.io/agent-not-ready): operators put it on node pools at creation (kubelet
 * --register-with-taints); the agent removes it from its own Node, and only that taint.
 */
export const NOT_READY_TAINT = AGENT_NOT_READY_TAINT; // one source: the chart's toleration and the policy use it too

/** HTTP status of a client-node error, or 0 for a network error. */
export function httpStatus(err: unknown): number {
  return isApiException(err) ? err.code : 0;
}

/**
 * client-node's ApiException (an Error with a numeric HTTP `code`, the response `body` and
 * `headers`), recognised by its shape so that this module need not load client-node. Node's and
 * undici's network errors carry a string code.
 */
function isApiException(err: unknown): err is Error & { code: number; body: unknown; headers: unknown } {
  return err instanceof Error && typeof (err as { code?: unknown }).code === 'number' && 'body' in err && 'headers' in err;
}

/** The API server's own message for an error (e.g. which field a schema refused), one line. */
export function apiMessage(err: unknown): string {
  if (isApiException(err)) {
    try {
      const body = (typeof err.body === 'string' ? JSON.parse(err.body) : err.body) as { message?: unknown } | null;
      if (body?.message) return String(body.message);
    } catch {
      /* not JSON */
    }
    return `HTTP ${err.code}`;
  }
  return err instanceof Error ? err.message.split('\n')[0] : String(err);
}

/** How long one API call may take before it is abandoned (default): a hung API server must not hold a write or a stop forever. */
export const API_CALL_TIMEOUT_MS = 30_000;

/** Who last wrote an object's spec, from metadata.managedFields (as the writer named itself). */
export interface SpecWriter {
  manager: string;
  operation: string;
  /** RFC 3339, as the API server recorded it (second precision), or null. */
  time: string | null;
}

export interface ManagedField {
  manager?: string;
  operation?: string;
  time?: string | Date;
  fieldsV1?: Record<string, unknown>;
}

/** A Peer or Gateway as read from the API (what this module needs of it). */
export type MeshObject = {
  metadata: { name: string; uid?: string; generation?: number; resourceVersion?: string; managedFields?: ManagedField[] };
  spec?: unknown;
  status?: MeshStatus;
};

export const rfc3339 = (t: string | Date | undefined): string | null => {
  if (t === undefined) return null;
  const d = new Date(t);
  return Number.isFinite(d.getTime()) ? d.toISOString().replace(/\.\d+Z$/, 'Z') : null;
};

/**
 * The writers of an object's spec, newest first: managedFields entries whose fields include the
 * spec. A tie in time (the API server records seconds) keeps the API server's order.
 */
export function specWriters(managedFields: readonly ManagedField[] | undefined): SpecWriter[] {
  return (managedFields ?? [])
    .filter((f) => f.fieldsV1 && typeof f.fieldsV1 === 'object' && 'f:spec' in f.fieldsV1)
    .map((f) => ({ manager: String(f.manager ?? '(unnamed)'), operation: String(f.operation ?? 'Update'), time: rfc3339(f.time) }))
    .map((w, i) => ({ w, i }))
    .sort((a, b) => ((b.w.time ?? '') < (a.w.time ?? '') ? -1 : (b.w.time ?? '') > (a.w.time ?? '') ? 1 : a.i - b.i))
    .map(({ w }) => w);
}

export function isPlainSpec(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** The top-level spec fields whose values differ (a field only one side has differs too). */
export function differingKeys(a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => !sameSpec(a[k], b[k]));
}

/** Whether a managedFields entry owns one of these top-level spec fields. */
export function ownsSpecField(f: ManagedField, fields: readonly string[]): boolean {
  const spec = f.fieldsV1 && typeof f.fieldsV1 === 'object' ? (f.fieldsV1 as Record<string, unknown>)['f:spec'] : undefined;
  return isPlainSpec(spec) && fields.some((k) => `f:${k}` in spec);
}

/** What ensureOwnObject did, and who had changed the object before (when it was not us). */
export interface OwnObjectOutcome {
  outcome: 'created' | 'updated' | 'unchanged';
  /** Set when the spec we found was written by someone else: the newest other spec writer (or an unnamed one). */
  overwrittenBy: SpecWriter | null;
  /** The spec as found (updated only). */
  previous?: unknown;
  /** The object as found (updated only): for an event about it. */
  found?: MeshObject;
}

/** Whether two specs say the same (key order, null and undefined fields aside). */
export function sameSpec(a: unknown, b: unknown): boolean {
  return JSON.stringify(normalize(a)) === JSON.stringify(normalize(b));
}

function normalize(spec: unknown): unknown {
  if (Array.isArray(spec)) return spec.map(normalize);
  if (spec && typeof spec === 'object') {
    return Object.fromEntries(
      Object.entries(spec as Record<string, unknown>)
        .filter(([, v]) => v !== undefined && v !== null)
        .sort(([a], [b]) => compareText(a, b))
        .map(([k, v]) => [k, normalize(v)]),
    );
  }
  return spec;
}

