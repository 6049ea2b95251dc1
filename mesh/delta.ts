/**
 * What changed between two lists of objects, by identity: the sources keep unchanged objects as the
 * same objects (mesh/source/types.ts), so the topology engine and the member find a change without
 * comparing values (issue 10).
 */

/**
 * Which raw objects left and which arrived between two arrays (occurrences: an object listed twice
 * counts twice). Sources keep their order, so a change is a short run between a common prefix and
 * a common suffix; anything in between is matched by identity.
 */
export function identityDelta(before: readonly unknown[], after: readonly unknown[]): { gone: unknown[]; added: unknown[] } {
  const { start, endBefore, endAfter } = sharedEnds(before, after);
  if (endBefore === start) return { gone: [], added: after.slice(start, endAfter) };
  if (endAfter === start) return { gone: before.slice(start, endBefore), added: [] };
  const counts = new Map<unknown, number>();
  for (let i = start; i < endBefore; i++) counts.set(before[i], (counts.get(before[i]) ?? 0) + 1);
  const added: unknown[] = [];
  for (let i = start; i < endAfter; i++) {
    const n = counts.get(after[i]) ?? 0;
    if (n > 0) counts.set(after[i], n - 1);
    else added.push(after[i]);
  }
  const gone: unknown[] = [];
  for (const [raw, n] of counts) for (let i = 0; i < n; i++) gone.push(raw);
  return { gone, added };
}

/**
 * The middle where two lists differ: they hold the same items (`===`) before `start` and from
 * `endBefore` / `endAfter` on. A change to one item of thousands is then a walk of comparisons.
 */
export function sharedEnds<T>(before: readonly T[], after: readonly T[]): { start: number; endBefore: number; endAfter: number } {
  let start = 0;
  while (start < before.length && start < after.length && before[start] === after[start]) start++;
  let endBefore = before.length;
  let endAfter = after.length;
  while (endBefore > start && endAfter > start && before[endBefore - 1] === after[endAfter - 1]) {
    endBefore--;
    endAfter--;
  }
  return { start, endBefore, endAfter };
}
