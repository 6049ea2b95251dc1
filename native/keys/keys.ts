/**
 * WireGuard keys: Curve25519, 32 bytes, base64 in every human and Kubernetes-facing place,
 * lower-case hex on the UAPI wire.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fchmodSync, fstatSync, fsyncSync, linkSync, mkdirSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import type { Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import nacl from 'tweetnacl';
import { NativeError } from '../errors.ts';
import { registerSecret } from './redact.ts';

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
 * Whether a key's value may be quoted in a message: a public key may (it is public, and quoting it
 * helps find the typo), a private or preshared key never (a key with a trailing comment or a stray
 * character is still the key). Unless the caller says, anything named private or preshared is secret.
 */
export interface KeyOptions {
  secret?: boolean;
}

function isSecret(what: string, options: KeyOptions): boolean {
  return options.secret ?? /private|preshared/i.test(what);
}

const EXPECTED = 'expected 44 characters of base64 encoding 32 bytes, as printed by "wg genkey"';

/**
 * Decode a base64 key, or throw an `invalid-key` error that names `what`.
 * Accepts exactly what `wg` accepts: 44 characters of canonical base64 for 32 bytes.
 * A secret's content is never quoted: the message gives its length and the rule it breaks.
 */
export function decodeKey(text: string, what = 'key', options: KeyOptions = {}): Uint8Array {
  if (typeof text !== 'string' || !KEY_PATTERN.test(text)) {
    if (typeof text === 'string' && isSecret(what, options)) {
      const shown = text.length === 0 ? 'an empty value' : `a value of ${text.length} characters (not shown: it may be a secret)`;
      throw new NativeError('invalid-key', `${what}: ${shown} is not a WireGuard key (${EXPECTED})${text.length ? `: ${shapeProblem(text)}` : ''}`);
    }
    const shown = typeof text === 'string' ? describe(text) : typeof text;
    throw new NativeError('invalid-key', `${what}: ${shown} is not a WireGuard key (${EXPECTED})`);
  }
  return new Uint8Array(Buffer.from(text, 'base64'));
}

/** Which rule a non-key breaks, said without quoting any of it. */
function shapeProblem(text: string): string {
  const lines = text.split(/\r?\n/).length;
  if (lines > 1) return `it spans ${lines} lines`;
  if (text.includes('#')) return 'it contains a comment ("#"): only the key may be there';
  if (/\s/.test(text)) return 'it contains white space';
  if (/^[0-9a-fA-F]{64}$/.test(text)) return 'it is 64 hex digits (the UAPI wire form), not base64';
  if (text.length !== 44) return `it has ${text.length} characters`;
  const bad = text.search(/[^A-Za-z0-9+/=]/);
  if (bad >= 0) return `character ${bad + 1} is not base64`;
  // Stryker disable next-line Regex: equivalent: the text is exactly 44 characters here, so either anchor alone says the same
  if (!/^[^=]{43}=$/.test(text)) return 'its padding is wrong (a key ends with exactly one "=")';
  return 'its last character sets padding bits (not canonical base64)';
}

function describe(text: string): string {
  if (text.length === 0) return 'an empty string';
  const shown = text.length > 60 ? `${text.slice(0, 57)}...` : text;
  return `${JSON.stringify(shown)} (${text.length} characters)`;
}

/** Validate without throwing: null when valid, else the message. */
export function keyProblem(text: string, what = 'key', options: KeyOptions = {}): string | null {
  try {
    decodeKey(text, what, options);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** The public key of a base64 private key. The private key is clamped first, as wireguard-go does. */
export function publicKeyOf(privateKey: string, what = 'private key'): string {
  const secret = clamp(decodeKey(privateKey, what, { secret: true }));
  return Buffer.from(nacl.scalarMult.base(secret)).toString('base64');
}

export function keyToHex(key: string, what = 'key', options: KeyOptions = {}): string {
  return Buffer.from(decodeKey(key, what, options)).toString('hex');
}

export function hexToKey(hex: string, what = 'key', options: KeyOptions = {}): string {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
    const shown = isSecret(what, options) ? `a value of ${String(hex).length} characters (not shown: it may be a secret)` : describe(hex);
    throw new NativeError('invalid-key', `${what}: ${shown} is not a 64-digit hex key`);
  }
  return Buffer.from(hex, 'hex').toString('base64');
}

/** Whether a hex key is all zeroes (wireguard-go's "no key"). */
export function isZeroHex(hex: string): boolean {
  return /^0{64}$/.test(hex);
}

/** A key file holds one 44-character key and a newline; anything much bigger is the wrong file. */
export const KEY_FILE_MAX_BYTES = 4096;

function keyFileError(message: string, cause?: unknown): NativeError {
  // Stryker disable next-line ConditionalExpression: equivalent: without a cause, err.cause is undefined either way
  return new NativeError('key-file', message, cause === undefined ? undefined : { cause });
}

function fileKind(st: Stats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isDirectory()) return 'a directory';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  // Stryker disable next-line ConditionalExpression,StringLiteral: equivalent: open(2) of a socket fails with ENXIO first, so fstat never sees one here
  if (st.isSocket()) return 'a socket';
  // Stryker disable next-line StringLiteral: equivalent: unreachable, every other file type (a symbolic link) is refused by O_NOFOLLOW first
  return 'not a regular file';
}

/** Whether a key-file error says the file is not there (and so may be created). */
function isMissing(err: unknown): boolean {
  return err instanceof NativeError && (err.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

/**
 * Read a private key file. Opened without following a symbolic link (a link could point the agent
 * at another file and have it quoted or used) and without blocking (a FIFO at the path would hang
 * the read); then only a regular file owned by this process's effective uid, that neither group nor
 * others can read or change (a private key that has been readable by others is compromised, and we
 * do not silently keep using it), at most KEY_FILE_MAX_BYTES. No message quotes the file's content.
 * The key is registered as a secret, so logs and errors of this process never show it.
 */
export function readPrivateKeyFile(path: string): string {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    switch (code) {
      case 'ENOENT':
        throw keyFileError(`private key file ${path} does not exist (create one with "aks-mesh keygen > ${path}" and chmod 600)`, err);
      case 'ELOOP':
        throw keyFileError(
          `private key file ${path} is a symbolic link; key files are opened without following links (a link could point at any file): give the real path`,
          err,
        );
      case 'ENXIO':
        throw keyFileError(`private key file ${path} is a socket, not a regular file`, err);
      case 'EACCES':
      case 'EPERM':
        throw keyFileError(`private key file ${path}: permission denied (the agent runs as root, or as the file's owner)`, err);
      default:
        throw keyFileError(`cannot open private key file ${path}: ${code ?? (err as Error).message}`, err);
    }
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw keyFileError(`private key file ${path} is ${fileKind(st)}, not a regular file`);
    // Stryker disable next-line OptionalChaining: equivalent on Linux, where process.geteuid always exists
    const euid = process.geteuid?.();
    // Stryker disable next-line ConditionalExpression: equivalent on Linux, where euid is always defined (the other conditions are killed by the owner and mode tests)
    if (euid !== undefined && st.uid !== euid) {
      throw keyFileError(
        `private key file ${path} is owned by uid ${st.uid}, not by this process's uid ${euid}: another user could have written it; ` +
          `check it, then "chown ${euid} ${path}"`,
      );
    }
    const mode = st.mode & 0o777;
    if ((mode & 0o077) !== 0) {
      const can = [(mode & 0o044) !== 0 ? 'read' : '', (mode & 0o022) !== 0 ? 'change' : ''].filter(Boolean).join(' and ') || 'use';
      throw keyFileError(
        `private key file ${path} has mode ${mode.toString(8).padStart(4, '0')}, so others can ${can} it; ` +
          `run "chmod 600 ${path}" (and consider the key compromised if others did read it)`,
      );
    }
    const buffer = Buffer.alloc(KEY_FILE_MAX_BYTES + 1);
    let length = 0;
    for (;;) {
      // Stryker disable next-line ConditionalExpression: equivalent: reading a too-big file anyway stops at KEY_FILE_MAX_BYTES + 1 and is refused by size all the same
      const n = st.size > KEY_FILE_MAX_BYTES ? 0 : readSync(fd, buffer, length, buffer.length - length, null);
      length += n;
      // Stryker disable next-line ConditionalExpression,EqualityOperator: equivalent for regular files, whose read returns all that was asked; the loop is for short reads
      if (n === 0 || length === buffer.length) break;
    }
    if (st.size > KEY_FILE_MAX_BYTES || length > KEY_FILE_MAX_BYTES) {
      throw keyFileError(
        `private key file ${path} is ${Math.max(st.size, length)} bytes; a key file holds one 44-character key (at most ${KEY_FILE_MAX_BYTES} bytes): is this the right file?`,
      );
    }
    const text = buffer.subarray(0, length).toString('utf8').trim();
    // Stryker disable next-line ObjectLiteral,BooleanLiteral: equivalent: "private key file" already marks the value secret by its name
    decodeKey(text, `private key file ${path}`, { secret: true });
    registerSecret(text);
    return text;
  } finally {
    closeSync(fd);
  }
}

/**
 * Write a private key file with mode 0600 (its folder 0700 if we create it), atomically: a temporary
 * 0600 file in the same folder is written and fsynced, then hard-linked to `path` (which, unlike a
 * rename, fails rather than replace a file that appeared meanwhile), and the folder is fsynced, so a
 * crash leaves either no key file or a whole one. Refuses to overwrite an existing file: losing a
 * node's key silently would change its identity in the mesh.
 */
export function writePrivateKeyFile(path: string, privateKey: string): void {
  // Stryker disable next-line ObjectLiteral,BooleanLiteral: equivalent: "private key" already marks the value secret by its name
  decodeKey(privateKey, 'private key', { secret: true });
  registerSecret(privateKey);
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const temp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number;
  try {
    fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    throw keyFileError(`cannot create private key file ${path}: cannot create a temporary file in ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, err);
  }
  try {
    try {
      fchmodSync(fd, 0o600); // the umask may have narrowed it further; never wider
      writeSync(fd, `${privateKey}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(temp, path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw keyFileError(
        code === 'EEXIST'
          ? `private key file ${path} already exists; refusing to overwrite it (a node's key is its identity in the mesh)`
          : `cannot create private key file ${path}: ${code ?? (err as Error).message}`,
        err,
      );
    }
  } finally {
    // Stryker disable next-line ObjectLiteral,BooleanLiteral: equivalent: the temporary file always exists here, so force changes nothing
    rmSync(temp, { force: true });
  }
  const dirFd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  // Stryker disable next-line BlockStatement: the folder's fsync makes the new name survive a power loss; no test can observe it without one
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

/** Load the key at `path`, or create it there with a fresh key when it does not exist yet. */
export function loadOrCreatePrivateKey(path: string): { privateKey: string; created: boolean } {
  try {
    return { privateKey: readPrivateKeyFile(path), created: false };
  } catch (err) {
    if (!isMissing(err)) throw err;
  }
  const privateKey = generatePrivateKey();
  try {
    writePrivateKeyFile(path, privateKey);
  } catch (err) {
    // Another process (a second agent starting at once) created it first: use that one.
    if (err instanceof NativeError && (err.cause as NodeJS.ErrnoException | undefined)?.code === 'EEXIST') {
      return { privateKey: readPrivateKeyFile(path), created: false };
    }
    throw err;
  }
  return { privateKey, created: true };
}
