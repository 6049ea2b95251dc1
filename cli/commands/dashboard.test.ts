import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CLI, NODE_BINARY } from '../../sandbox/cluster.ts';
import { isLoopbackHost, parseAddress, parseStreams, readStreamToken } from './dashboard.ts';

test('--address: host:port or [v6]:port; loopback names are told apart', () => {
  assert.deepEqual(parseAddress('127.0.0.1:9590'), { host: '127.0.0.1', port: 9590 });
  assert.deepEqual(parseAddress('[::1]:0'), { host: '::1', port: 0 });
  assert.throws(() => parseAddress('127.0.0.1'), /--address 127\.0\.0\.1: expected host:port/);
  assert.throws(() => parseAddress('127.0.0.1:70000'), /--address 127\.0\.0\.1:70000/);
  for (const h of ['127.0.0.1', '127.1.2.3', '::1', 'localhost']) assert.ok(isLoopbackHost(h), h);
  for (const h of ['0.0.0.0', '10.0.0.1', '::', 'example.com']) assert.ok(!isLoopbackHost(h), h);
});

test('--stream member=url: member names as Kubernetes spells them, optionally with the kind', () => {
  assert.deepEqual(parseStreams(['node-a=ws://127.0.0.1:19587', 'Gateway/gw-1=ws://[::1]:19588/stream']), [
    { member: 'node-a', url: 'ws://127.0.0.1:19587' },
    { member: 'Gateway/gw-1', url: 'ws://[::1]:19588/stream' },
  ]);
  assert.throws(() => parseStreams(['ws://127.0.0.1:1']), /--stream ws:\/\/127\.0\.0\.1:1: expected <member>=ws:\/\/host:port/);
  assert.throws(() => parseStreams(['Node-A=ws://x:1']), /expected <member>=/);
});

test('the stream token: from a regular file (trimmed), else the environment; never a directory, a symlink or an empty file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aks-mesh-dash-token-'));
  try {
    writeFileSync(join(dir, 't'), 'abc123\n', { mode: 0o600 });
    assert.equal(readStreamToken(join(dir, 't'), 'from-env'), 'abc123');
    assert.equal(readStreamToken(undefined, ' from-env\n'), 'from-env');
    assert.equal(readStreamToken(undefined, undefined), undefined);
    writeFileSync(join(dir, 'empty'), '\n');
    assert.throws(() => readStreamToken(join(dir, 'empty'), undefined), /--stream-token-file .*empty: empty/);
    symlinkSync(join(dir, 't'), join(dir, 'link'));
    assert.throws(() => readStreamToken(join(dir, 'link'), undefined), /not a regular file/);
    assert.throws(() => readStreamToken(dir, undefined), /not a regular file/);
    assert.throws(() => readStreamToken(join(dir, 'missing'), undefined), /--stream-token-file .*missing: ENOENT/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('aks-mesh dashboard --help explains the flags and the security; bad flags exit 2 naming them', () => {
  const help = spawnSync(NODE_BINARY, [CLI, 'dashboard', '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0);
  for (const flag of ['--kubeconfig', '--address', '--stream', '--stream-token-file', '--allow-remote']) assert.match(help.stdout, new RegExp(flag));
  assert.match(help.stdout, /NO authentication/);
  const bad = spawnSync(NODE_BINARY, [CLI, 'dashboard', '--stream', 'nope', '--kubeconfig', '/nonexistent'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--stream nope: expected <member>=ws:\/\/host:port/);
  const scheme = spawnSync(NODE_BINARY, [CLI, 'dashboard', '--stream', 'node-a=http://127.0.0.1:1', '--kubeconfig', '/nonexistent'], { encoding: 'utf8' });
  assert.equal(scheme.status, 2);
  assert.match(scheme.stderr, /--stream node-a=http:\/\/127\.0\.0\.1:1: the scheme must be ws: or wss:/);
});
