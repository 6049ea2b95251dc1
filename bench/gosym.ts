/**
 * Function names for program counters of a stripped Go binary (Debian strips wireguard-go's symbol
 * table, so `perf` shows its own code as bare addresses): Go keeps its own table of functions in the
 * .gopclntab section for stack traces, which stripping leaves in place. Reads the Go 1.18+ layout
 * (magic 0xfffffff0 for 1.18/1.19, 0xfffffff1 for 1.20 and later: the same fields), which covers
 * Debian bookworm's, trixie's and sid's builds.
 */
import { readFileSync } from 'node:fs';

interface Section {
  name: string;
  addr: number;
  offset: number;
  size: number;
}

function sections(elf: Buffer): Section[] {
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2) throw new Error('not a 64-bit ELF file');
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const shstrndx = elf.readUInt16LE(0x3e);
  const raw = Array.from({ length: shnum }, (_, i) => {
    const at = shoff + i * shentsize;
    return { nameOff: elf.readUInt32LE(at), addr: Number(elf.readBigUInt64LE(at + 16)), offset: Number(elf.readBigUInt64LE(at + 24)), size: Number(elf.readBigUInt64LE(at + 32)) };
  });
  const strtab = raw[shstrndx];
  return raw.map((s) => {
    const start = strtab.offset + s.nameOff;
    return { name: elf.toString('latin1', start, elf.indexOf(0, start)), addr: s.addr, offset: s.offset, size: s.size };
  });
}

/** A lookup from a virtual address in `binary` to the Go function that holds it. */
export function goSymbolizer(binary: string): (pc: number) => string | undefined {
  const elf = readFileSync(binary);
  const all = sections(elf);
  const pcln = all.find((s) => s.name === '.gopclntab');
  if (!pcln) throw new Error(`${binary}: no .gopclntab section (not a Go binary?)`);
  const t = elf.subarray(pcln.offset, pcln.offset + pcln.size);
  const magic = t.readUInt32LE(0);
  if (magic !== 0xfffffff0 && magic !== 0xfffffff1) throw new Error(`${binary}: .gopclntab magic 0x${magic.toString(16)} is not Go 1.18 or later`);
  if (t[7] !== 8) throw new Error(`${binary}: pointer size ${t[7]}, expected 8`);
  const field = (i: number): number => Number(t.readBigUInt64LE(8 + i * 8));
  const nfunc = field(0);
  // Go 1.26 leaves textStart 0 in the table: the function offsets then count from the .text section.
  const textStart = field(2) || (all.find((s) => s.name === '.text')?.addr ?? 0);
  const funcnameOffset = field(3);
  const pclnOffset = field(7);
  const entries: number[] = [];
  const names: string[] = [];
  for (let i = 0; i < nfunc; i++) {
    const at = pclnOffset + i * 8;
    const entryOff = t.readUInt32LE(at);
    const funcOff = t.readUInt32LE(at + 4);
    const nameOff = t.readInt32LE(pclnOffset + funcOff + 4);
    const start = funcnameOffset + nameOff;
    entries.push(textStart + entryOff);
    names.push(t.toString('latin1', start, t.indexOf(0, start)));
  }
  const end = textStart + t.readUInt32LE(pclnOffset + nfunc * 8);
  return (pc) => {
    if (pc < entries[0] || pc >= end) return undefined;
    let lo = 0;
    let hi = entries.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (entries[mid] <= pc) lo = mid;
      else hi = mid - 1;
    }
    return names[lo];
  };
}
