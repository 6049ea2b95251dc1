/**
 * Exponential backoff with jitter, for retries against a shared API server: every agent of a
 * cluster retries after the same outage, and without jitter they would all come back in step.
 * Each delay is drawn from [delay/2, delay] ("equal jitter"), so it never collapses towards zero
 * and never exceeds the cap; the nominal delay doubles per failure up to the cap, and reset()
 * returns to the first delay after a success.
 */
export interface BackoffOptions {
  /** First nominal delay (default 500 ms). */
  initialMs?: number;
  /** Largest nominal delay (default 30 s). */
  maxMs?: number;
  /** Source of randomness in [0, 1) (tests may pin it). */
  random?: () => number;
}

export class Backoff {
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;
  private nominal: number;
  /** Failures since the last reset. */
  failures = 0;

  constructor(options: BackoffOptions = {}) {
    this.initialMs = Math.max(1, options.initialMs ?? 500);
    this.maxMs = Math.max(this.initialMs, options.maxMs ?? 30_000);
    this.random = options.random ?? Math.random;
    this.nominal = this.initialMs;
  }

  /** The delay before the next attempt; each call counts one failure. */
  next(): number {
    const nominal = this.nominal;
    this.failures++;
    this.nominal = Math.min(this.nominal * 2, this.maxMs);
    return Math.round(nominal / 2 + (nominal / 2) * this.random());
  }

  reset(): void {
    this.nominal = this.initialMs;
    this.failures = 0;
  }
}
