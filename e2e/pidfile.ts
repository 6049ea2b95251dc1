/**
 * Claims that parallel test runs respect: a file holding the claimant's pid, created exclusively.
 * A claim whose process is gone is taken over.
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';

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
