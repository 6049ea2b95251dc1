/**
 * The mark, table and priority checks: each refusal names the flag and the value (what the CLI
 * prints as a usage error), and the default mark collides with none of the marks we know of.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  DEFAULT_FWMARK,
  DEFAULT_FWMARK_MASK,
  DEFAULT_RULE_PRIORITY,
  DEFAULT_TABLE,
  KNOWN_MARKS,
  formatMark,
  fwmarkCollisions,
  fwmarkMask,
  validateFwmark,
  validateRulePriority,
  validateTable,
} from './marks.ts';

describe('the default mark', () => {
  test('is one bit, tested through a mask of that bit', () => {
    assert.equal(DEFAULT_FWMARK & (DEFAULT_FWMARK - 1), 0);
    assert.equal(DEFAULT_FWMARK_MASK, DEFAULT_FWMARK);
    assert.equal(fwmarkMask(DEFAULT_FWMARK), DEFAULT_FWMARK_MASK);
  });

  test("shares no bit with kube-proxy, kubelet, Calico, Cilium, Tailscale, kube-router, Antrea, AWS VPC CNI or Istio", () => {
    assert.deepEqual(fwmarkCollisions(DEFAULT_FWMARK), []);
    for (const known of [0x4000, 0x8000, 0xff000000, 0xffff0000, 0x0f00, 0x1e00, 0x40000, 0x80000, 0x10000, 0x20000, 0x80000000, 0xff, 0x80, 0x539]) {
      assert.equal(DEFAULT_FWMARK & known, 0, `overlaps ${formatMark(known)}`);
    }
    assert.equal(validateFwmark(DEFAULT_FWMARK), undefined);
    assert.equal(validateTable(DEFAULT_TABLE), undefined);
    assert.equal(validateRulePriority(DEFAULT_RULE_PRIORITY), undefined);
  });

  test('the old default 51820 (0xca6c) is reported with both of Kubernetes\' bits', () => {
    const kube = fwmarkCollisions(51820).filter((k) => k.kubernetes).map((k) => formatMark(k.bits));
    assert.deepEqual(kube, ['0x4000', '0x8000']);
    assert.ok(KNOWN_MARKS.every((k) => k.owner.length > 0));
  });
});

describe('validateFwmark', () => {
  const refused: Array<[string, unknown, RegExp]> = [
    ['0 (the mesh table silently off)', 0, /^--fwmark 0: the mark must have at least one bit set; with 0 the mesh table would only be used by marked packets/],
    ['the old default 51820', 51820, /^--fwmark 51820 \(0xca6c\) has kube-proxy's masquerade bit 0x4000 \(KUBE-POSTROUTING masquerades such packets; --iptables-masquerade-bit 14\) and kubelet's drop bit 0x8000 \(KUBE-FIREWALL drops such packets; kubelet's and kube-proxy's --iptables-drop-bit 15\): the tunnel's own packets would be masqueraded or dropped\. Choose a mark without them, such as the default 0x2000$/],
    ["kube-proxy's masquerade bit", 0x4000, /^--fwmark 16384 \(0x4000\) has kube-proxy's masquerade bit 0x4000 \(KUBE-POSTROUTING masquerades such packets; --iptables-masquerade-bit 14\): /],
    ["kubelet's drop bit among others", 0x18000, /^--fwmark 98304 \(0x18000\) has kubelet's drop bit 0x8000 \(KUBE-FIREWALL drops such packets; kubelet's and kube-proxy's --iptables-drop-bit 15\): /],
    ['a negative number', -1, /^--fwmark -1: expected a whole number from 1 to 0xffffffff/],
    ['a fraction', 1.5, /^--fwmark 1\.5: expected a whole number/],
    ['2^32', 2 ** 32, /^--fwmark 4294967296: expected a whole number/],
    ['NaN (yargs given a word)', Number.NaN, /^--fwmark NaN: expected a whole number/],
    ['a string', '0x2000', /^--fwmark "0x2000": expected a whole number/],
    ['nothing', undefined, /^--fwmark undefined: expected a whole number/],
  ];
  for (const [name, value, message] of refused) {
    test(`refuses ${name}, naming the flag and the value`, () => {
      assert.match(validateFwmark(value) ?? '(accepted)', message);
    });
  }

  test("accepts Kubernetes' bits only when explicitly allowed (a cluster that moved them), never 0", () => {
    assert.equal(validateFwmark(51820, { allowKubernetesBits: true }), undefined);
    assert.match(validateFwmark(0, { allowKubernetesBits: true }) ?? '', /--fwmark 0:/);
  });

  test('accepts other single bits and wide marks; names the flag it is given', () => {
    for (const ok of [1, 0x2000, 0x20000, 0x80000000, (0xffffffff & ~0xc000) >>> 0]) assert.equal(validateFwmark(ok), undefined, formatMark(ok));
    assert.match(validateFwmark(0, { flag: 'AKS_MESH_FWMARK' }) ?? '', /^AKS_MESH_FWMARK 0:/);
  });

  test('other components\' marks are reported (for a warning), not refused', () => {
    assert.equal(validateFwmark(0x40000), undefined);
    assert.deepEqual(fwmarkCollisions(0x40000).map((k) => k.kubernetes), [false]);
    assert.match(fwmarkCollisions(0x40000)[0].owner, /Tailscale/);
    assert.match(fwmarkCollisions(0x1000)[0].owner, /Cilium/);
  });
});

describe('validateTable', () => {
  for (const [table, name] of [[0, 'unspec'], [253, 'default'], [254, 'main'], [255, 'local']] as const) {
    test(`refuses the kernel's ${name} table (${table})`, () => {
      assert.equal(
        validateTable(table),
        `--table ${table}: table ${table} is the kernel's "${name}" table, which holds the node's own routes; choose a table of its own, such as the default 51820`,
      );
    });
  }
  for (const bad of [-1, 2 ** 32, 1.5, Number.NaN, '100']) {
    test(`refuses ${JSON.stringify(bad) ?? String(bad)}`, () => {
      assert.match(validateTable(bad) ?? '(accepted)', /^--table .*: expected a routing table number from 1 to 4294967295 \(not 253, 254 or 255\)/);
    });
  }
  test('accepts other tables', () => {
    for (const ok of [1, 252, 256, 51820, 0xffffffff]) assert.equal(validateTable(ok), undefined, String(ok));
  });
});

describe('validateRulePriority', () => {
  for (const bad of [0, 32766, 32767, -5, 1.5, 70000, Number.NaN]) {
    test(`refuses ${bad}: not between the local and main tables' rules`, () => {
      assert.match(validateRulePriority(bad) ?? '(accepted)', new RegExp(`^--rule-priority ${String(bad).replace('.', '\\.')}: expected a whole number from 1 to 32765, after the local table's rule \\(0\\) and before the main table's \\(32766\\)`));
    });
  }
  test('accepts 1 to 32765', () => {
    for (const ok of [1, 5280, 32765]) assert.equal(validateRulePriority(ok), undefined);
  });
});
