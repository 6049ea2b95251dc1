/**
 * Reading what the agents logged with `--log-format json` (native/log.ts: winston's JSON layout,
 * one object per line, `timestamp` an ISO time with millisecond precision). The e2e cluster
 * appends an agent's stdout and stderr to one file across restarts, with its own `===` header lines
 * and, in spawn mode, wireguard-go's output: anything that is not a JSON object is skipped.
 */
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';

export interface LogEntry {
  /** Milliseconds since the epoch (the agent's clock: the same machine as the benchmark's). */
  at: number;
  level: string;
  message: string;
  fields: Record<string, unknown>;
}

/** The size of a file now (0 before it exists): where the next lines start. */
export function logOffset(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** Every JSON log entry written to `path` from byte `offset` on (a partial last line is left out). */
export function readLogEntries(path: string, offset = 0): LogEntry[] {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return [];
  }
  let text: string;
  try {
    const size = fstatSync(fd).size;
    const buffer = Buffer.alloc(Math.max(0, size - offset));
    let read = 0;
    while (read < buffer.length) {
      const n = readSync(fd, buffer, read, buffer.length - read, offset + read);
      if (n === 0) break;
      read += n;
    }
    text = buffer.subarray(0, read).toString('utf8');
  } finally {
    closeSync(fd);
  }
  const out: LogEntry[] = [];
  const end = text.lastIndexOf('\n');
  for (const line of text.slice(0, end + 1).split('\n')) {
    if (!line.startsWith('{')) continue;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    const { timestamp, level, message, ...fields } = o;
    const at = typeof timestamp === 'string' ? Date.parse(timestamp) : NaN;
    if (!Number.isFinite(at) || typeof message !== 'string') continue;
    out.push({ at, level: String(level), message, fields });
  }
  return out;
}

/** A public key as base64 whether the log carried base64 or hex. */
export function base64Key(key: string): string {
  return /^[0-9a-fA-F]{64}$/.test(key) ? Buffer.from(key, 'hex').toString('base64') : key;
}
