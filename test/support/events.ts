import type { LaggedEvent, SidecarEventType, StampedEvent } from "../../src/events/types.js";

type Seen = StampedEvent | LaggedEvent;
type Of<T extends SidecarEventType> = Extract<StampedEvent, { type: T }>;

/**
 * The events of one sidecar as a test sees them: read from `Sidecar.events()` in process, or from
 * `GET /events` (Server-Sent Events) of a sidecar process. `next()` waits for an event, never a
 * sleep: it resolves the moment the event arrives (or has already arrived).
 */
export class EventLog {
  readonly seen: Seen[] = [];
  #waiters = new Set<() => void>();
  #ended = false;
  #stop: () => void = () => {};

  /** Read an in-process sidecar's events() iterator until it ends. */
  static of(events: AsyncIterable<Seen>): EventLog {
    const log = new EventLog();
    void (async () => {
      for await (const e of events) log.#push(e);
      log.#end();
    })();
    const it = events as AsyncIterableIterator<Seen>;
    log.#stop = () => void it.return?.();
    return log;
  }

  /** Read a sidecar's GET /events stream (`base` is its api URL). Resolves once the stream is open. */
  static async stream(base: string, init: { token?: string; lastEventId?: number } = {}): Promise<EventLog> {
    const log = new EventLog();
    const abort = new AbortController();
    const headers: Record<string, string> = { accept: "text/event-stream" };
    if (init.token) headers.authorization = `Bearer ${init.token}`;
    if (init.lastEventId !== undefined) headers["last-event-id"] = String(init.lastEventId);
    const res = await fetch(`${base}/events`, { headers, signal: abort.signal });
    if (res.status !== 200) throw new Error(`GET /events answered ${res.status}: ${await res.text()}`);
    log.#stop = () => abort.abort();
    void (async () => {
      const decoder = new TextDecoder();
      let buf = "";
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buf += decoder.decode(chunk, { stream: true });
          let end;
          while ((end = buf.indexOf("\n\n")) !== -1) {
            const frame = buf.slice(0, end);
            buf = buf.slice(end + 2);
            const data = frame.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
            if (data) log.#push(JSON.parse(data) as Seen);
          }
        }
      } catch {
        // aborted by close(), or the sidecar went away
      }
      log.#end();
    })();
    return log;
  }

  #push(e: Seen): void {
    this.seen.push(e);
    for (const w of this.#waiters) w();
  }

  #end(): void {
    this.#ended = true;
    for (const w of this.#waiters) w();
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** The seen events of one type, in order. */
  all<T extends SidecarEventType>(type: T): Of<T>[] {
    return this.seen.filter((e): e is Of<T> => e.type === type);
  }

  /** The first event of `type` matching `match` (seen already, or the next to arrive), within `timeout` ms. */
  next<T extends SidecarEventType>(type: T, match: (e: Of<T>) => boolean = () => true, timeout = 5_000): Promise<Of<T>> {
    const find = () => this.all(type).find(match);
    return this.until(find, `a '${type}' event`, timeout);
  }

  /** Wait until `find` returns something, re-checked at every event; fails after `timeout` ms or when the stream ends. */
  until<R>(find: () => R | undefined, what: string, timeout = 5_000): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const check = () => {
        const found = find();
        if (found !== undefined) return done(() => resolve(found));
        if (this.#ended) return done(() => reject(new Error(`the event stream ended before ${what}; seen: ${this.#types()}`)));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`timed out after ${timeout}ms waiting for ${what}; seen: ${this.#types()}`))), timeout);
      const done = (fn: () => void) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        fn();
      };
      this.#waiters.add(check);
      check();
    });
  }

  /** Wait for the stream to end (the sidecar stopped, or its stream was closed). */
  ends(timeout = 5_000): Promise<true> {
    return this.until(() => (this.#ended ? true : undefined), "the end of the stream", timeout);
  }

  #types(): string {
    return this.seen.map((e) => e.type).join(", ");
  }

  close(): void {
    this.#stop();
  }
}
