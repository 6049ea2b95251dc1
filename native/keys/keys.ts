/**
 * WireGuard keys: Curve25519, 32 bytes, base64 in every human and Kubernetes-facing place,
 * lower-case hex on the UAPI wire.
 */
import { chmodSync, closeSync, fstatSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import nacl from 'tweetnacl';
import { NativeError } from '../errors.ts';

export const KEY_BYTES = 32;
/** A base64 key as `wg genkey` prints it: 43 characters of base64 and one `=`. */
export const KEY_PATTERN = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** Clamp a Curve25519 scalar in place, as `wg genkey` and wireguard-go do. */
export function clamp(key: Uint8Array): Uint8Array {
  key[0] &= 248;
  key[31] = (key[31] & 127) | 64;
  return key;
}

/** A new private key (random, clamped), base64. */
export function generatePrivateKey(): string {
  return Buffer.from(clamp(nacl.randomBytes(KEY_BYTES))).toString('base64');
}

/** A new preshared key (random, not clamped), base64. */
export function generatePresharedKey(): string {
  return Buffer.from(nacl.randomBytes(KEY_BYTES)).toString('base64');
}

/**
 * Decode a base64 key, or throw an `invalid-key` error that names `what`.
 * Accepts exactly what `wg` accepts: 44 characters of canonical base64 for 32 bytes.
 */
export function decodeKey(text: string, what = 'key'): Uint8Array {
  if (typeof text !== 'string' || !KEY_PATTERN.test(text)) {
    const shown = typeof text === 'string' ? describe(text) : typeof text;
    throw new NativeError(
      'invalid-key',
      `${what}: ${shown} is not a WireGuard key (expected 44 characters of base64 encoding 32 bytes, as printed by "wg genkey")`,
    );
  }
  return new Uint8Array(Buffer.from(text, 'base64'));
}

function describe(text: string): string {
  if (text.length === 0) return 'an empty string';
  const shown = text.length > 60 ? `${text.slice(0, 57)}...` : text;
  return `${JSON.stringify(shown)} (${text.length} characters)`;
}

/** Validate without throwing: null when valid, else the message. */
export function keyProblem(text: string, what = 'key'): string | null {
  try {
    decodeKey(text, what);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** The public key of a base64 private key. The private key is clamped first, as wireguard-go does. */
export function publicKeyOf(privateKey: string, what = 'private key'): string {
  const secret = clamp(decodeKey(privateKey, what));
  return Buffer.from(nacl.scalarMult.base(secret)).toString('base64');
}

export function keyToHex(key: string, what = 'key'): string {
  return Buffer.from(decodeKey(key, what)).toString('hex');
}

export function hexToKey(hex: string, what = 'key'): string {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new NativeError('invalid-key', `${what}: ${describe(hex)} is not a 64-digit hex key`);
  }
  return Buffer.from(hex, 'hex').toString('base64');
}

/** Whether a hex key is all zeroes (wireguard-go's "no key"). */
export function isZeroHex(hex: string): boolean {
  return /^0{64}$/.test(hex);
}

/**
 * Read a private key file. Refuses a file that group or others can read or write: a private key
 * that has been readable by others is compromised, and we do not silently keep using it.
 */
export function readPrivateKeyFile(path: string): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new NativeError(
      'key-file',
      code === 'ENOENT'
        ? `private key file ${path} does not exist (create one with "aks-mesh keygen > ${path}" and chmod 600)`
        : `cannot read private key file ${path}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  try {
    const mode = fstatSync(fd).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      throw new NativeError(
        'key-file',
        `private key file ${path} has mode ${mode.toString(8).padStart(4, '0')}, so others can read it; ` +
          `run "chmod 600 ${path}" (and consider the key compromised if others did read it)`,
      );
    }
    const text = readFileSync(fd, 'utf8').trim();
    decodeKey(text, `private key file ${path}`);
    return text;
  } finally {
    closeSync(fd);
  }
}

/**
 * Write a private key file with mode 0600 (its folder 0700 if we create it). Refuses to overwrite
 * an existing file: losing a node's key silently would change its identity in the mesh.
 */
export function writePrivateKeyFile(path: string, privateKey: string): void {
  decodeKey(privateKey, 'private key');
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (err) {
    throw new NativeError('key-file', `cannot create private key file ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  try {
    chmodSync(path, 0o600); // the umask may have narrowed it further; never wider
    writeSync(fd, `${privateKey}\n`);
  } finally {
    closeSync(fd);
  }
}

/** Load the key at `path`, or create it there with a fresh key when it does not exist yet. */
export function loadOrCreatePrivateKey(path: string): { privateKey: string; created: boolean } {
  try {
    return { privateKey: readPrivateKeyFile(path), created: false };
  } catch (err) {
    if (!(err instanceof NativeError) || !/does not exist/.test(err.message)) throw err;
  }
  const privateKey = generatePrivateKey();
  writePrivateKeyFile(path, privateKey);
  return { privateKey, created: true };
}
