import type { Clock } from "../clock.js";

/** The window the status page shows: the last minute, one slot per second. */
export const WINDOW_SECONDS = 60;
/** Upper bounds (ms) of the latency buckets the percentiles are read from; the last is unbounded. */
export const LATENCY_BOUNDS_MS = [0.5, 1, 2, 3, 5, 7.5, 10, 15, 25, 50, 75, 100, 150, 250, 500, 750, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, Infinity];
/** Most keys (services called, subscriptions) with a window of their own; past it, OTHER. */
export const MAX_KEYS = 500;
export const OTHER = "other";

const B = LATENCY_BOUNDS_MS.length;
/** Per slot: [second, ok, failed, ...bucket counts]. */
const SLOT = 3 + B;

/** A minute of traffic of one key, as the status page draws it. */
export interface TrafficSnapshot {
  /** Requests (or messages) in each of the last 60 seconds, oldest first; the last is the current second. */
  perSecond: number[];
  /** The failed ones among them. */
  failedPerSecond: number[];
  total: number;
  failed: number;
  /** Per second, over the last minute (or since the first request, when that is less). */
  rate: number;
  /** ok ÷ total, or null with no traffic. */
  success: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
}

/**
 * One minute of outcomes and latencies for one key: 60 one-second slots in a ring, each with
 * ok and failed counts and a latency histogram. Recording is an index and three adds; reading
 * merges the slots of the last minute. Fixed size: (3 + 23) × 60 numbers.
 */
export class TrafficWindow {
  readonly #slots = new Float64Array(WINDOW_SECONDS * SLOT);
  #first = -1;

  constructor(private readonly clock: Clock) {
    for (let i = 0; i < WINDOW_SECONDS; i++) this.#slots[i * SLOT] = -1;
  }

  record(ok: boolean, ms: number): void {
    const second = Math.floor(this.clock.now() / 1000);
    if (this.#first < 0) this.#first = second;
    const base = (second % WINDOW_SECONDS) * SLOT;
    const s = this.#slots;
    if (s[base] !== second) {
      s.fill(0, base, base + SLOT);
      s[base] = second;
    }
    s[base + (ok ? 1 : 2)]! += 1;
    let b = 0;
    while (ms > LATENCY_BOUNDS_MS[b]!) b++;
    s[base + 3 + b]! += 1;
  }

  snapshot(): TrafficSnapshot {
    const now = Math.floor(this.clock.now() / 1000);
    const s = this.#slots;
    const perSecond: number[] = [];
    const failedPerSecond: number[] = [];
    const buckets = new Array<number>(B).fill(0);
    let ok = 0;
    let failed = 0;
    for (let second = now - WINDOW_SECONDS + 1; second <= now; second++) {
      const base = (((second % WINDOW_SECONDS) + WINDOW_SECONDS) % WINDOW_SECONDS) * SLOT;
      if (s[base] !== second) {
        perSecond.push(0);
        failedPerSecond.push(0);
        continue;
      }
      ok += s[base + 1]!;
      failed += s[base + 2]!;
      perSecond.push(s[base + 1]! + s[base + 2]!);
      failedPerSecond.push(s[base + 2]!);
      for (let b = 0; b < B; b++) buckets[b]! += s[base + 3 + b]!;
    }
    const total = ok + failed;
    const seconds = this.#first < 0 ? WINDOW_SECONDS : Math.max(1, Math.min(WINDOW_SECONDS, now - this.#first + 1));
    return {
      perSecond, failedPerSecond, total, failed,
      rate: total / seconds,
      success: total === 0 ? null : ok / total,
      p50Ms: quantile(buckets, total, 0.5),
      p99Ms: quantile(buckets, total, 0.99),
    };
  }
}

/**
 * The q-quantile of a histogram, interpolated linearly inside its bucket (as Prometheus's
 * histogram_quantile does); the unbounded last bucket answers its lower bound.
 */
export function quantile(buckets: readonly number[], total: number, q: number): number | null {
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let b = 0; b < buckets.length; b++) {
    const n = buckets[b]!;
    if (n > 0 && seen + n >= rank) {
      const lower = b === 0 ? 0 : LATENCY_BOUNDS_MS[b - 1]!;
      const upper = LATENCY_BOUNDS_MS[b]!;
      if (upper === Infinity) return lower;
      return lower + (upper - lower) * ((rank - seen) / n);
    }
    seen += n;
  }
  return null;
}

/** A window per key (service called, subscription name), at most MAX_KEYS; later keys share OTHER's. */
export class TrafficWindows {
  readonly #windows = new Map<string, TrafficWindow>();

  constructor(private readonly clock: Clock, private readonly maxKeys = MAX_KEYS) {}

  record(key: string, ok: boolean, ms: number): void {
    let w = this.#windows.get(key);
    if (!w) {
      if (this.#windows.size >= this.maxKeys) key = OTHER;
      w = this.#windows.get(key) ?? new TrafficWindow(this.clock);
      this.#windows.set(key, w);
    }
    w.record(ok, ms);
  }

  /** The last minute of every key that had traffic in it, sorted by key. */
  snapshot(): ({ key: string } & TrafficSnapshot)[] {
    return [...this.#windows]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, w]) => ({ key, ...w.snapshot() }))
      .filter((t) => t.total > 0);
  }

  forget(key: string): void {
    this.#windows.delete(key);
  }

  get size(): number {
    return this.#windows.size;
  }
}
