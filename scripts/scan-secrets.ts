#!/usr/bin/env node
/**
 * Search a test run for leaked private keys (issue 9: no private key in any log line, error message
 * or JSON output of a whole run).
 *
 *   node scripts/scan-secrets.ts [--expect-keys] <dir or file>...
 *
 * 1. Every regular file whose whole content is one WireGuard key (44 characters of base64, as
 *    `aks-mesh keygen` and writePrivateKeyFile write it) is taken as a private key file: the e2e
 *    clusters keep theirs under <dir>/aks-mesh-cluster-*\/keys/ with AKS_MESH_KEEP_LOGS=1. A key
 *    that is the public key of another such file is a public key, and left out.
 * 2. Every other file (logs, captures, kubeconfigs, the run's own output) is searched for each
 *    private key in base64 and in hex, raw and clamped (wireguard-go answers a private key clamped),
 *    in pieces as short as 20 base64 characters or 24 hex digits (a message that cut a key short
 *    still leaks most of it), and for any value labelled as a private or preshared key
 *    (`private_key=<hex>`, `"privateKey":"<base64>"`, ...) that is not all zeroes.
 * Findings are printed as file:line and which key file's key leaked, never the key itself; exit 1
 * if there is any (or, with --expect-keys, if no private key file was found: a search for nothing
 * proves nothing), 2 for bad usage. The patterns are this file's own, not native/keys/redact.ts's:
 * an independent reader of what the redaction let through.
 */
import { lstatSync, openSync, closeSync, readSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { clamp, KEY_PATTERN, publicKeyOf } from '../native/keys/keys.ts';

/** Pieces this long are searched for: 120 bits of base64, 96 of hex; no chance match. */
const BASE64_PIECE = 20;
const HEX_PIECE = 24;
/** Bigger files are read only up to this size (an etcd WAL is 64 MiB; a capture rarely more). */
const MAX_FILE_BYTES = 512 * 1024 * 1024;
/** A key file is one key and a newline, give or take white space. */
const KEY_FILE_MAX = 256;

export interface Finding {
  file: string;
  line: number;
  /** Which private key leaked: its key file, or "a labelled key value" for the pattern match. */
  what: string;
}

/** The pieces of a set of keys to search for, each pointing back at where its key came from. */
export class KeyIndex {
  private readonly base64 = new Map<string, string>();
  private readonly hex = new Map<string, string>();
  readonly size: number;

  constructor(keys: ReadonlyArray<{ key: string; source: string }>) {
    for (const { key, source } of keys) {
      const raw = Buffer.from(key, 'base64');
      for (const bytes of [raw, Buffer.from(clamp(new Uint8Array(raw)))]) {
        const b64 = bytes.toString('base64').slice(0, 43);
        for (let i = 0; i + BASE64_PIECE <= b64.length; i++) this.base64.set(b64.slice(i, i + BASE64_PIECE), source);
        const hex = bytes.toString('hex');
        for (let i = 0; i + HEX_PIECE <= hex.length; i++) this.hex.set(hex.slice(i, i + HEX_PIECE), source);
      }
    }
    this.size = keys.length;
  }

  /** Where in `text` a piece of a key appears: offset and source, at most one hit per run of characters. */
  find(text: string): Array<{ offset: number; source: string; form: 'base64' | 'hex' }> {
    const hits: Array<{ offset: number; source: string; form: 'base64' | 'hex' }> = [];
    if (this.size === 0) return hits;
    for (const m of text.matchAll(/[A-Za-z0-9+/]{20,}/g)) {
      const run = m[0];
      for (let i = 0; i + BASE64_PIECE <= run.length; i++) {
        const source = this.base64.get(run.slice(i, i + BASE64_PIECE));
        if (source) {
          hits.push({ offset: m.index + i, source, form: 'base64' });
          break;
        }
      }
    }
    for (const m of text.matchAll(/[0-9a-fA-F]{24,}/g)) {
      const run = m[0].toLowerCase();
      for (let i = 0; i + HEX_PIECE <= run.length; i++) {
        const source = this.hex.get(run.slice(i, i + HEX_PIECE));
        if (source) {
          hits.push({ offset: m.index + i, source, form: 'hex' });
          break;
        }
      }
    }
    return hits;
  }
}

/**
 * A value written as a private or preshared key, whatever key it is: the UAPI wire form, a JSON or
 * util.inspect field, `k="v"` log metadata, or text like `private key: <base64>`. All zeroes is
 * wireguard-go's "no key" and is not a leak; "(redacted)" and "(hidden)" do not match.
 */
const LABELLED = /(?:private|preshared)[ _-]?key(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?([0-9a-fA-F]{64}|[A-Za-z0-9+/]{43}=)(?![0-9A-Za-z+/=])/gi;

export function findLabelledKeys(text: string): number[] {
  const offsets: number[] = [];
  for (const m of text.matchAll(LABELLED)) {
    if (/^0{64}$/.test(m[1]) || /^A{43}=$/.test(m[1])) continue;
    offsets.push(m.index);
  }
  return offsets;
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) line++;
  return line;
}

/** Every leak in one text (a file's content or a run's output). */
export function scanText(text: string, file: string, index: KeyIndex): Finding[] {
  const found = index.find(text).map((h) => ({
    file,
    line: lineAt(text, h.offset),
    what: `private key of ${h.source} (${h.form})`,
  }));
  for (const offset of findLabelledKeys(text)) {
    found.push({ file, line: lineAt(text, offset), what: 'a value labelled as a private or preshared key' });
  }
  // One finding per line and key: a line that has both the key and its label says it once.
  const seen = new Set<string>();
  return found
    .sort((a, b) => a.line - b.line)
    .filter((f) => {
      const id = `${f.line}\0${f.what.replace(/ \((base64|hex)\)$/, '')}`;
      if (seen.has(id)) return false;
      seen.add(id);
      return true;
    });
}

function readUpTo(path: string, max: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.alloc(Math.min(1 << 20, max - total));
      if (chunk.length === 0) break;
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      chunks.push(chunk.subarray(0, n));
      total += n;
    }
    return Buffer.concat(chunks, total);
  } finally {
    closeSync(fd);
  }
}

/** Regular files under `root` (or `root` itself), without following symbolic links. */
function walk(root: string, out: string[]): void {
  let st;
  try {
    st = lstatSync(root);
  } catch {
    return; // removed while we looked (a test still cleaning up)
  }
  if (st.isFile()) out.push(root);
  else if (st.isDirectory()) {
    let names: string[];
    try {
      names = readdirSync(root);
    } catch {
      return;
    }
    for (const name of names.sort()) walk(join(root, name), out);
  }
}

export interface ScanResult {
  keyFiles: string[];
  filesSearched: number;
  skipped: string[];
  findings: Finding[];
}

/** Find the private key files under `roots`, then every leak of their keys in every other file. */
export function scan(roots: readonly string[]): ScanResult {
  const files: string[] = [];
  for (const root of roots) walk(root, files);
  const unique = [...new Set(files)];
  const candidates: Array<{ key: string; source: string }> = [];
  for (const file of unique) {
    try {
      if (lstatSync(file).size > KEY_FILE_MAX) continue;
      const text = readUpTo(file, KEY_FILE_MAX).toString('utf8').trim();
      if (KEY_PATTERN.test(text)) candidates.push({ key: text, source: file });
    } catch {
      // unreadable or gone: nothing to learn from it
    }
  }
  const publicKeys = new Set(candidates.map((c) => publicKeyOf(c.key)));
  const privateKeys = candidates.filter((c) => !publicKeys.has(c.key));
  const keyFiles = new Set(candidates.map((c) => c.source));
  const index = new KeyIndex(privateKeys);
  const findings: Finding[] = [];
  const skipped: string[] = [];
  let filesSearched = 0;
  for (const file of unique) {
    if (keyFiles.has(file)) continue;
    let content: Buffer;
    try {
      content = readUpTo(file, MAX_FILE_BYTES + 1);
    } catch {
      skipped.push(file);
      continue;
    }
    if (content.length > MAX_FILE_BYTES) skipped.push(`${file} (searched its first ${MAX_FILE_BYTES} bytes only)`);
    filesSearched++;
    // latin1 maps every byte to one character: binary files (captures) are searched byte for byte.
    findings.push(...scanText(content.subarray(0, MAX_FILE_BYTES).toString('latin1'), file, index));
  }
  return { keyFiles: privateKeys.map((k) => k.source), filesSearched, skipped, findings };
}

function main(args: string[]): number {
  const expectKeys = args.includes('--expect-keys');
  const argv = args.filter((a) => a !== '--expect-keys');
  if (argv.length === 0 || argv.includes('-h') || argv.includes('--help') || argv.some((a) => a.startsWith('--'))) {
    process.stderr.write(
      'usage: node scripts/scan-secrets.ts [--expect-keys] <dir or file>...\n' +
        'Finds the private key files under the given folders and reports every other file (and every given file) that contains one of their keys.\n',
    );
    return argv.includes('-h') || argv.includes('--help') ? 0 : 2;
  }
  for (const root of argv) {
    try {
      lstatSync(root);
    } catch {
      process.stderr.write(`scan-secrets: ${root} does not exist\n`);
      return 2;
    }
  }
  const result = scan(argv);
  const cwd = process.cwd();
  const show = (file: string): string => (file.startsWith('/') && file.startsWith(cwd) ? relative(cwd, file) : file);
  for (const f of result.findings) process.stdout.write(`${show(f.file)}:${f.line}: ${f.what}\n`);
  for (const s of result.skipped) process.stderr.write(`scan-secrets: not fully searched: ${s}\n`);
  process.stderr.write(
    `scan-secrets: ${result.keyFiles.length} private key file(s), ${result.filesSearched} other file(s) searched, ` +
      `${result.findings.length} finding(s)\n`,
  );
  if (expectKeys && result.keyFiles.length === 0) {
    process.stderr.write('scan-secrets: no private key file found, so nothing was searched for (--expect-keys); was AKS_MESH_KEEP_LOGS=1 set?\n');
    return 1;
  }
  return result.findings.length > 0 ? 1 : 0;
}

if (import.meta.main) process.exitCode = main(process.argv.slice(2));
