import type { KV, KvWatchEntry, KvWatchOptions } from "@nats-io/kv";
import type { Logger } from "../log.js";

export type Iter = Awaited<ReturnType<KV["watch"]>>;

export interface KvWatchDeps {
  kv: KV;
  log: Logger;
  /** Every kv.watch goes through here: the registry waits for those still being created before it closes. */
  track<T>(p: Promise<T>): Promise<T>;
  /** The registry was closed: stop, and stop any iterator created meanwhile. */
  closed(): boolean;
  /** Stop `iter` and delete its consumer on the server now (nats.js leaves it there for its 5-minute inactivity threshold). */
  release(iter: Iter): void;
}

/**
 * One KV watch of a key filter (`greeter.*`, one own key, or `>`) that restarts itself: when its
 * iterator ends or fails (a consumer lost with its server), and when `restart()` is called (the
 * registry's watchdog found the watches stalled). `start()` resolves once the entries present at
 * the start have been delivered, so the first caller of a service sees all of its nodes.
 */
export class KvWatcher {
  #iter: Iter | undefined;
  #stopped = false;
  /** Between a failure or restart and the new iterator's initial entries: this watch may have missed changes. */
  reopening = false;
  /** When this watch last delivered an entry (or (re)opened). */
  lastEntryAt = Date.now();
  /** Keys this watch has shown put and not deleted since it (re)opened: each should heartbeat. */
  readonly present = new Set<string>();

  constructor(
    private readonly d: KvWatchDeps,
    private readonly options: KvWatchOptions & { key: string },
    /** `listing`: one of the entries present at the open (nats.js marks the last of them an update; this does not). */
    private readonly onEntry: (e: KvWatchEntry, listing: boolean) => void,
    /** Called whenever the watch has delivered the entries present at an open (the first, and each restart). */
    private readonly onListed: () => void = () => {},
  ) {}

  /** The key filter watched. */
  get key(): string {
    return this.options.key;
  }

  get stopped(): boolean {
    return this.#stopped || this.d.closed();
  }

  /** Open (retrying every 250 ms until it works or the watch is stopped) and wait for the initial entries. */
  async start(): Promise<void> {
    const first = await this.#open("open");
    if (!first) throw new Error("the registry watch was stopped while it was opening");
    const listed = this.#consume(first);
    void this.#run(listed);
    await listed.ready;
  }

  /** Iterate, and re-create the watch after it ends, until stopped (never iterate a finished one again). */
  async #run(listed: { ready: Promise<void>; done: Promise<void> }): Promise<void> {
    for (;;) {
      await listed.done;
      if (this.stopped) return;
      // An iterator that ended (it failed, or a restart ended it) may have missed changes: not listening until it lists again.
      this.reopening = true;
      const fresh = await this.#open("restart");
      if (!fresh) return;
      listed = this.#consume(fresh);
      void listed.ready.then(() => (this.reopening = false));
    }
  }

  /** Drain `iter` into onEntry. `ready` settles once its initial entries are in; `done` when it ends. */
  #consume(iter: Iter): { ready: Promise<void>; done: Promise<void> } {
    this.#iter = iter;
    this.present.clear();
    this.lastEntryAt = Date.now();
    let listed!: () => void;
    const ready = new Promise<void>((r) => (listed = r));
    let settled = false;
    const settle = () => {
      if (settled) return;
      settled = true;
      listed();
      this.onListed();
    };
    void pendingAtOpen(iter).then((n) => {
      if (n === 0) settle();
    });
    const done = (async () => {
      try {
        for await (const e of iter) {
          this.lastEntryAt = Date.now();
          if (e.operation === "PUT") this.present.add(e.key);
          else this.present.delete(e.key);
          this.onEntry(e, !settled);
          // nats.js marks the last of the entries pending at the open as the first update.
          if (e.isUpdate) settle();
        }
      } catch (err) {
        if (!this.stopped) this.d.log.warn("registry watch failed; restarting it", { key: this.options.key, error: (err as Error).message });
      } finally {
        listed(); // a watch that ended before listing everything: start() must not hang (its restart lists again)
      }
    })();
    return { ready, done };
  }

  /**
   * kv.watch, retrying every 250 ms (saying so every 10 attempts): a cluster electing a leader
   * refuses or times out for a while. A restart waits 250 ms first. Undefined once stopped; a
   * watch created after that is stopped at once (nobody else would stop it, and its heartbeat
   * timer would keep the process alive).
   */
  async #open(what: "open" | "restart"): Promise<Iter | undefined> {
    for (let attempt = 0; ; attempt++) {
      if (this.stopped) return undefined;
      if (what === "restart" || attempt > 0) await new Promise((r) => setTimeout(r, 250));
      if (this.stopped) return undefined;
      try {
        const iter = await this.d.track(this.d.kv.watch(this.options));
        if (!this.stopped) return iter;
        this.d.release(iter);
        return undefined;
      } catch (err) {
        if (attempt % 10 === 0) this.d.log.warn(`cannot ${what} the registry watch yet; retrying`, { key: this.options.key, error: (err as Error).message });
      }
    }
  }

  /**
   * End the current iterator: the watch opens a new one (and lists again). It says it is not
   * listening until then (its stall may have hidden heartbeats), so the view expires none of its
   * nodes meanwhile.
   */
  restart(): void {
    this.reopening = true;
    if (this.#iter) this.d.release(this.#iter);
  }

  stop(): void {
    this.#stopped = true;
    if (this.#iter) this.d.release(this.#iter);
  }
}

/**
 * How many entries the watch's consumer had pending when it was created: nats.js reads the
 * consumer's info for that and keeps it (the iterator's `_data` is the consumer). Zero means the
 * watch has nothing to list. Undefined when this nats.js does not expose it: the first update then
 * marks the listing done, as for a non-empty one.
 */
export async function pendingAtOpen(iter: Iter): Promise<number | undefined> {
  return (await consumerInfo(iter))?.num_pending;
}

/** The watch's consumer as nats.js last saw it (name, stream, pending at creation); undefined if this nats.js does not keep it. */
export async function consumerInfo(iter: Iter): Promise<{ name?: string; stream_name?: string; num_pending?: number } | undefined> {
  const consumer = (iter as unknown as { _data?: { info?: (cached: boolean) => Promise<{ name?: string; stream_name?: string; num_pending?: number }> } })._data;
  if (typeof consumer?.info !== "function") return undefined;
  try {
    return await consumer.info(true);
  } catch {
    return undefined;
  }
}

/** How long our own heartbeat may take to come back through a watch: TTL/3, within 0.5-2 s. */
export function stallLimit(ttl: number): number {
  return Math.max(500, Math.min(2_000, Math.floor(ttl / 3)));
}
