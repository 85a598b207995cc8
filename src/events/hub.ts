import type { Emit, LaggedEvent, SidecarEvent, StampedEvent } from "./types.js";

/** Events kept for the status page and for a GET /events stream that starts or resumes. */
export const RECENT_EVENTS = 200;
/** Events an events() iterator buffers for a slow reader before it drops the oldest (and says so). */
export const ITERATOR_BUFFER = 1_024;

/**
 * The sidecar's event bus: numbers and times each event, keeps the last RECENT_EVENTS, hands
 * each to the listeners synchronously and to every events() iterator through a bounded buffer.
 * Emitting never blocks and never throws into the component that emitted.
 */
export class EventHub {
  #seq = 0;
  readonly #ring: StampedEvent[] = [];
  readonly #listeners = new Set<(e: StampedEvent) => void>();
  #closed = false;

  constructor(private readonly capacity = RECENT_EVENTS) {}

  readonly emit: Emit = (event: SidecarEvent): void => {
    if (this.#closed) return;
    const stamped = { ...event, seq: ++this.#seq, time: new Date().toISOString() } as StampedEvent;
    this.#ring.push(stamped);
    if (this.#ring.length > this.capacity) this.#ring.shift();
    for (const l of this.#listeners) {
      try {
        l(stamped);
      } catch {
        // A listener's bug is its own: the other listeners and the emitter go on.
      }
    }
  };

  /** The number of the last event emitted (0 before the first). */
  get seq(): number {
    return this.#seq;
  }

  /** The kept events numbered above `after`, oldest first; `lagged` counts those no longer kept. */
  since(after = 0): { events: StampedEvent[]; lagged: number } {
    const events = this.#ring.filter((e) => e.seq > after);
    const first = this.#ring[0]?.seq ?? this.#seq + 1;
    return { events, lagged: Math.max(0, first - after - 1) };
  }

  /** The last `n` kept events, newest first. */
  recent(n = this.capacity): StampedEvent[] {
    return this.#ring.slice(-n).reverse();
  }

  /** Call `fn` with every event from now on, synchronously; returns the unsubscribe. */
  listen(fn: (e: StampedEvent) => void): () => void {
    this.#listeners.add(fn);
    return () => void this.#listeners.delete(fn);
  }

  /** Listeners to tell when the hub closes (GET /events streams end). */
  readonly #onClose = new Set<() => void>();

  onClose(fn: () => void): () => void {
    if (this.#closed) fn();
    else this.#onClose.add(fn);
    return () => void this.#onClose.delete(fn);
  }

  /**
   * Every event from now on (with `replay`, the kept ones first), until the hub closes. A reader
   * more than ITERATOR_BUFFER events behind gets a `lagged` event in place of the dropped ones.
   * Breaking out of the loop (return()) unsubscribes.
   */
  events(options: { replay?: boolean; buffer?: number } = {}): AsyncIterableIterator<StampedEvent | LaggedEvent> {
    const limit = options.buffer ?? ITERATOR_BUFFER;
    const queue: StampedEvent[] = options.replay ? [...this.#ring] : [];
    let dropped = 0;
    let wake: (() => void) | undefined;
    let done = this.#closed;
    const push = (e: StampedEvent) => {
      queue.push(e);
      if (queue.length > limit) {
        queue.shift();
        dropped += 1;
      }
      wake?.();
    };
    const finish = () => {
      done = true;
      unlisten();
      unclose();
      wake?.();
    };
    let unlisten: () => unknown = () => undefined;
    let unclose: () => unknown = () => undefined;
    if (!done) {
      unlisten = this.listen(push);
      unclose = this.onClose(finish);
    }
    const iterator: AsyncIterableIterator<StampedEvent | LaggedEvent> = {
      [Symbol.asyncIterator]: () => iterator,
      next: async () => {
        for (;;) {
          if (dropped > 0) {
            const lagged: LaggedEvent = { type: "lagged", dropped };
            dropped = 0;
            return { value: lagged, done: false };
          }
          const e = queue.shift();
          if (e) return { value: e, done: false };
          if (done) return { value: undefined, done: true };
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
        }
      },
      return: async () => {
        finish();
        queue.length = 0;
        return { value: undefined, done: true };
      },
    };
    return iterator;
  }

  /** No more events: iterators end once drained, streams end, emit() does nothing. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const fn of this.#onClose) fn();
    this.#onClose.clear();
    this.#listeners.clear();
  }
}
