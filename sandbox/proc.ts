/**
 * Processes the test harnesses own: liveness by pid, signals that tolerate a process already gone,
 * log tails for error messages, and pid-file claims that parallel test runs respect (a file holding
 * the claimant's pid, created exclusively; a claim whose process is gone is taken over).
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync, unlinkSync, writeSync } from 'node:fs';

/** Send a signal; a process that is already gone is not an error. */
export function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    /* already gone */
  }
}

/**
 * The last `lines` lines of a file (at most its last 256 KiB), without lines matching `skip`,
 * long lines cut at 600 characters; '(no log)' when there is no file.
 */
export function tailOf(path: string, lines: number, skip?: RegExp): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return '(no log)';
  }
  try {
    const size = fstatSync(fd).size;
    const len = Math.min(size, 256 * 1024);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    return buf
      .toString('utf8')
      .trimEnd()
      .split('\n')
      .filter((line) => !skip?.test(line))
      .slice(-lines)
      .map((line) => (line.length > 600 ? `${line.slice(0, 600)}…` : line))
      .join('\n');
  } finally {
    closeSync(fd);
  }
}

/** Whether a process runs (a zombie counts as gone). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/**
 * Claim `path` for this process: true if now ours, false if a live process holds it. Errors other
 * than "exists" are thrown.
 */
export function claimPidFile(path: string): boolean {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o644);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let owner = 0;
    try {
      owner = Number(readFileSync(path, 'utf8'));
    } catch {
      continue; // released meanwhile
    }
    if (!owner || isRunning(owner)) return false; // held (or being written) by a live process
    try {
      unlinkSync(path); // stale: its owner died without releasing it
    } catch {
      /* someone else took it over */
    }
  }
  return false;
}
