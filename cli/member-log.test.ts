/**
 * The agent's --log-format (issue 12 "Logs"): by default (auto) JSON, one object a line, when
 * stderr is not a terminal (a pod's log, a file), and text when it is (a person running it by
 * hand, here through script(1)'s pseudo-terminal); --log-format text and json force either. No line
 * carries the private key. The agent runs `--cleanup` in a namespace of its own, so what it
 * removes (the mesh table's routes and rule there) touches nothing of the host.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CLI, NODE_BINARY } from '../sandbox/cluster.ts';
import { Sandbox, networkTestsUnavailable } from '../sandbox/sandbox.ts';

const skip = networkTestsUnavailable() ?? false;

describe('agent log format', { skip }, () => {
  const box = new Sandbox();
  let ns: string;
  let dir: string;

  before(async () => {
    ns = await box.addNamespace('log');
    dir = mkdtempSync(join(tmpdir(), 'aks-mesh-log-'));
  });
  after(async () => {
    await box.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const argv = (extra: string[]): string[] => [
    CLI,
    'agent',
    '--node-name',
    'node-log',
    '--interface',
    box.ifName('wg', 'l'),
    '--peers-dir',
    dir,
    '--key-file',
    join(dir, 'private.key'),
    '--metrics-address',
    'off',
    '--control-socket',
    'off',
    '--cleanup',
    ...extra,
  ];
  const privateKey = (): string => readFileSync(join(dir, 'private.key'), 'utf8').trim();

  test('auto (the default), stderr a pipe: one JSON object a line; never the private key', async () => {
    const { stderr } = await box.exec(ns, NODE_BINARY, argv([]));
    const lines = stderr.trim().split('\n');
    const entries = lines.map((l) => JSON.parse(l) as { level: string; message: string; component: string; timestamp: string });
    assert.ok(entries.some((e) => e.message.startsWith('cleaned up') && e.level === 'info' && e.component === 'agent'), stderr);
    assert.ok(entries.every((e) => typeof e.timestamp === 'string'));
    assert.ok(!stderr.includes(privateKey()), 'the private key is in the log');
  });

  test('--log-format text and json force either', async () => {
    const text = (await box.exec(ns, NODE_BINARY, argv(['--log-format', 'text']))).stderr;
    assert.match(text, /^\S+ info {2}\[agent\] cleaned up/m);
    assert.ok(!text.split('\n').some((l) => l.startsWith('{')));
    const json = (await box.exec(ns, NODE_BINARY, argv(['--log-format', 'json']))).stderr;
    assert.ok(json.trim().split('\n').every((l) => JSON.parse(l)));
  });

  test('auto on a terminal: readable text', async () => {
    // util-linux script(1) gives the agent a pseudo-terminal for stdout and stderr alike.
    const command = ['exec', 'ip', 'netns', 'exec', ns, NODE_BINARY, ...argv([])].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn('script', ['-qfec', command.replace(/^'exec'/, 'exec'), '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'] });
      box.track(child);
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      child.on('error', reject);
      child.on('close', () => resolve(text));
    });
    assert.match(out, /info {2}\[agent\] cleaned up/);
    assert.ok(!out.split(/\r?\n/).some((l) => l.startsWith('{')), out);
    assert.ok(!out.includes(privateKey()));
  });
});
