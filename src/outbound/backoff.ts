/** Retry backoff defaults: 25 ms, doubling, capped at 1 s. */
export const BACKOFF = { initial: 25, max: 1_000 } as const;

/**
 * Delay before retry number `attempt` (0-based): exponential with full jitter (a uniform draw
 * between 0 and the exponential step), so callers that failed together do not retry together.
 */
export function backoffDelay(attempt: number, random: () => number = Math.random, o: { initial: number; max: number } = BACKOFF): number {
  const step = Math.min(o.max, o.initial * 2 ** attempt);
  return Math.round(random() * step);
}
