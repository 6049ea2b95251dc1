/** Backoff: doubles up to its cap, each delay jittered within [nominal/2, nominal], back to the start after reset. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Backoff } from './backoff.ts';

test('doubles up to the cap; jitter keeps each delay within half of nominal and nominal', () => {
  const low = new Backoff({ initialMs: 100, maxMs: 800, random: () => 0 });
  assert.deepEqual([1, 2, 3, 4, 5].map(() => low.next()), [50, 100, 200, 400, 400]);
  const high = new Backoff({ initialMs: 100, maxMs: 800, random: () => 0.999999 });
  assert.deepEqual([1, 2, 3, 4, 5].map(() => high.next()), [100, 200, 400, 800, 800]);
  assert.equal(high.failures, 5);
});

test('two retriers drawing different random numbers come back at different times', () => {
  const a = new Backoff({ initialMs: 1000, random: () => 0.1 });
  const b = new Backoff({ initialMs: 1000, random: () => 0.9 });
  assert.notEqual(a.next(), b.next());
});

test('reset starts over', () => {
  const b = new Backoff({ initialMs: 100, random: () => 0 });
  b.next();
  b.next();
  b.reset();
  assert.equal(b.next(), 50);
  assert.equal(b.failures, 1);
});
