/**
 * Keeping key material out of messages. Two nets, because a leak has two shapes:
 * - the secrets this process holds (its private key, the preshared keys it reads) are registered
 *   once and then replaced wherever they appear, in base64 and in hex, raw and clamped (wireguard-go
 *   answers a private key clamped, so a key read from a file may come back as another 32 bytes);
 * - any value written as a private or preshared key (`private_key=<hex>` on the UAPI wire,
 *   `"privateKey": "<base64>"` in JSON or util.inspect, `private key: <base64>` as text) is replaced
 *   whether or not it was registered, so a key we never saw (a peer's PSK from a Secret, a test's
 *   key) does not slip through either.
 * Imports nothing of ours: errors.ts and log.ts both use it.
 */

/** What a redacted value is replaced with. */
export const REDACTED = '(redacted)';

const secrets = new Set<string>();
let registered: RegExp | null = null;

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** The 32 bytes of a base64 or hex key, or null if `key` is neither. */
function keyBytes(key: string): Buffer | null {
  if (/^[0-9a-fA-F]{64}$/.test(key)) return Buffer.from(key, 'hex');
  if (/^[A-Za-z0-9+/]{43}=$/.test(key)) {
    const bytes = Buffer.from(key, 'base64');
    return bytes.length === 32 ? bytes : null;
  }
  return null;
}

/**
 * Register a private or preshared key (base64 or hex) so that it is replaced in every log line and
 * every NativeError message of this process from now on. Idempotent; anything that is not a key is
 * ignored (there is nothing to match).
 */
export function registerSecret(key: string): void {
  const bytes = typeof key === 'string' ? keyBytes(key.trim()) : null;
  if (!bytes || bytes.every((b) => b === 0)) return;
  const clamped = Buffer.from(bytes);
  clamped[0] &= 248;
  clamped[31] = (clamped[31] & 127) | 64;
  const before = secrets.size;
  for (const form of [bytes, clamped]) {
    // 43 characters: the key with or without its "=", and wherever a tool drops the padding.
    secrets.add(escapeRegExp(form.toString('base64').slice(0, 43)));
    secrets.add(form.toString('hex'));
  }
  if (secrets.size !== before) registered = null;
}

/** How many key forms are registered (tests). */
export function registeredSecretCount(): number {
  return secrets.size;
}

function registeredPattern(): RegExp | null {
  if (secrets.size === 0) return null;
  // Hex is matched case-insensitively; a base64 key differing only in case is a different key but
  // its odds of appearing by chance are nil, so one case-insensitive pattern serves both.
  registered ??= new RegExp(`(?:${[...secrets].join('|')})=?`, 'gi');
  return registered;
}

/**
 * A value labelled as a private or preshared key: `private_key=`, `preshared_key=` (UAPI),
 * `privateKey`/`presharedKey` as a JSON, util.inspect, or `k="v"` field, `private key: ` (text).
 * The label, then the separator with its quotes (escaped, in JSON inside JSON), then the value:
 * 64 hex digits or 44 base64.
 */
const LABELLED =
  /((?:private|preshared)[ _-]?key(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?)([0-9a-fA-F]{64}|[A-Za-z0-9+/]{43}=)(?![0-9A-Za-z+/=])/gi;

/** Whether a key value is all zeroes: wireguard-go's "no key", worth keeping visible. */
function isZeroValue(value: string): boolean {
  return /^0{64}$/.test(value) || /^A{43}=$/.test(value);
}

/** `text` with every registered secret and every labelled key value replaced by REDACTED. */
export function redactSecrets(text: string): string {
  if (typeof text !== 'string' || text.length < 43) return text;
  let out = text.replace(LABELLED, (whole, label: string, value: string) => (isZeroValue(value) ? whole : `${label}${REDACTED}`));
  const pattern = registeredPattern();
  if (pattern) out = out.replace(pattern, REDACTED);
  return out;
}

/**
 * A UAPI line as it may be shown: the value of `private_key=` and `preshared_key=` replaced (valid
 * or not: a refused private_key line is still most of a key), every other line as it is.
 */
export function redactUapiLine(line: string): string {
  const m = /^(private_key|preshared_key)=(.*)$/s.exec(line);
  if (!m) return line;
  if (/^0{64}$/.test(m[2])) return line;
  return `${m[1]}=${REDACTED}${/^[0-9a-fA-F]{64}$/.test(m[2]) ? '' : ` (${m[2].length} characters)`}`;
}
