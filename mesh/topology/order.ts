/**
 * Locale-free ordering. Every agent must sort names the same way to reach the same verdicts, and
 * `localeCompare` follows the process's locale (LANG=da_DK sorts "aa" after "z"): so names are
 * compared by UTF-16 code units, which is the same on every machine.
 */
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
