import { KvWatchInclude } from "@nats-io/kv";
import { KvWatcher, stallLimit, type KvWatchDeps } from "./nats-watch.js";

/**
 * A watch of one of our own keys, for updates only: each heartbeat we write must come back
 * through it soon. One that does not means watches are stalled (their consumer lived on a cluster
 * server that went away), so `onStall` restarts them all, and `stalled` holds until our next
 * heartbeat is seen. It costs one message per heartbeat, where watching the whole bucket to see
 * our own writes cost every node's.
 */
export class Canary {
  readonly #watcher: KvWatcher;
  readonly #timer: NodeJS.Timeout;
  /** When the oldest of our writes the canary has not shown yet succeeded (undefined: it showed them all). */
  #unseenSince: number | undefined;
  /** The newest revision of `key` we wrote, and the newest the canary showed: a write's echo may arrive before its acknowledgement. */
  #written = 0;
  #seen = 0;
  /** Its consumer is open and listed: writes from now on must come back. */
  #open = false;
  /** Our own heartbeat went unseen: this sidecar may be blind to everyone's. */
  stalled = false;

  constructor(d: KvWatchDeps, readonly key: string, ttl: number, onStall: () => void) {
    this.#watcher = new KvWatcher(
      d,
      { key, include: KvWatchInclude.UpdatesOnly },
      (e) => {
        if (e.key !== key) return;
        this.#seen = Math.max(this.#seen, e.revision);
        if (this.#seen < this.#written) return; // an older write than the newest we made: still waiting
        this.#unseenSince = undefined;
        if (this.stalled) d.log.info("registry watch sees our heartbeats again");
        this.stalled = false;
      },
      () => {
        // A write made while (re)opening may never come back; the next one will.
        this.#open = true;
        this.#unseenSince = undefined;
      },
    );
    void this.#watcher.start().catch(() => undefined);
    // Measured from the oldest unseen write: heartbeats come every TTL/3, so the newest one is
    // never older than that, stalled or not.
    const stallAfter = stallLimit(ttl);
    this.#timer = setInterval(() => {
      const since = this.#unseenSince;
      if (since === undefined || Date.now() - since <= stallAfter) return;
      d.log.warn("registry watch stalled (our own heartbeat never arrived); restarting the watches", { stalledMs: Date.now() - since, key });
      this.stalled = true;
      this.#open = false;
      this.#unseenSince = undefined;
      onStall();
    }, Math.max(100, Math.floor(stallAfter / 2)));
    this.#timer.unref();
  }

  /** We wrote `key` (at `revision`): it must come back through the canary, unless it already did. */
  written(key: string, revision: number): void {
    if (key !== this.key) return;
    this.#written = Math.max(this.#written, revision);
    if (this.#open && this.#seen < revision) this.#unseenSince ??= Date.now();
  }

  restart(): void {
    this.#open = false;
    this.#watcher.restart();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#watcher.stop();
  }
}
