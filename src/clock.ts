/**
 * Time, in one place: components that expire, eject or back off take a Clock, so their tests
 * control time instead of sleeping.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
