/**
 * How long after a signal the same signal again is taken for the same one. `npx sidecar …` (npm
 * exec) forwards the SIGINT a terminal's Ctrl-C sends, and the terminal sends it to the whole
 * foreground process group too: the sidecar gets it twice within milliseconds. Taken for a second
 * Ctrl-C, it would skip the drain. A person's second Ctrl-C comes later than this.
 */
export const SAME_SIGNAL_MS = 300;

/** Remembers the first shutdown signal; tells a copy of it (the same signal within SAME_SIGNAL_MS) from a second request. */
export class FirstSignal {
  #signal: string | undefined;
  #at = 0;

  /** Record `signal`; true when it is the first one. */
  first(signal: string, now = Date.now()): boolean {
    if (this.#signal !== undefined) return false;
    this.#signal = signal;
    this.#at = now;
    return true;
  }

  /** A copy of the first signal (the same one, within SAME_SIGNAL_MS of it), to be ignored. */
  isCopy(signal: string, now = Date.now()): boolean {
    return signal === this.#signal && now - this.#at < SAME_SIGNAL_MS;
  }
}
