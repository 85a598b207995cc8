import type { Clock } from "../../src/clock.js";

/** A clock tests move by hand. */
export class ManualClock implements Clock {
  constructor(private t = 1_000_000) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}
