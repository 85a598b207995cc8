import type { Clock } from "../clock.js";

export interface RetryBudgetOptions {
  /** Retries allowed as a share of calls in the window. Default 0.2. */
  ratio: number;
  /** Retries always allowed per second, so a quiet service can still retry. Default 1. */
  minPerSecond: number;
  /** Window (ms) over which calls and retries are counted. Default 10 s. */
  window: number;
}

const BUCKETS = 10;

/**
 * A retry budget (after Finagle and Linkerd): retries may add at most `ratio` of the calls seen
 * in the last `window`, plus a small floor, so retries cannot multiply the load on a service
 * that is already failing. Counted in ten rotating buckets.
 */
export class RetryBudget {
  #calls = new Float64Array(BUCKETS);
  #retries = new Float64Array(BUCKETS);
  #bucket = 0;
  #bucketStart: number;
  readonly #bucketMs: number;

  constructor(private readonly options: RetryBudgetOptions, private readonly clock: Clock) {
    this.#bucketMs = Math.max(1, options.window / BUCKETS);
    this.#bucketStart = clock.now();
  }

  #rotate(): void {
    const now = this.clock.now();
    let steps = Math.floor((now - this.#bucketStart) / this.#bucketMs);
    if (steps <= 0) return;
    this.#bucketStart += steps * this.#bucketMs;
    if (steps > BUCKETS) steps = BUCKETS;
    for (let i = 0; i < steps; i++) {
      this.#bucket = (this.#bucket + 1) % BUCKETS;
      this.#calls[this.#bucket] = 0;
      this.#retries[this.#bucket] = 0;
    }
  }

  /** Count one call (not its retries). */
  recordCall(): void {
    this.#rotate();
    this.#calls[this.#bucket]! += 1;
  }

  /** Take one retry from the budget; false when the budget is spent. */
  tryRetry(): boolean {
    this.#rotate();
    let calls = 0;
    let retries = 0;
    for (let i = 0; i < BUCKETS; i++) {
      calls += this.#calls[i]!;
      retries += this.#retries[i]!;
    }
    const allowed = this.options.ratio * calls + (this.options.minPerSecond * this.options.window) / 1000;
    if (retries + 1 > allowed) return false;
    this.#retries[this.#bucket]! += 1;
    return true;
  }
}
