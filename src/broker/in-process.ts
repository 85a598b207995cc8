import type { Logger } from "../log.js";
import { waitIdle } from "../lifecycle/wait-idle.js";
import type { DeliverFn, Delivery, SubscriptionSpec } from "./types.js";

/**
 * What a subscription holds beyond the messages in flight: nats.go's default pending limits for
 * a slow consumer (messages, and bytes of the whole messages: see messageBytes). Past either, new
 * messages are dropped (at-most-once, and logged) rather than held until the process runs out of
 * memory while the app cannot keep up.
 */
export const QUEUE_LIMITS = { messages: 65_536, bytes: 64 * 1024 * 1024 } as const;
/** At most one "queue full" line per this many ms per subscription, with the count since the last. */
const DROP_LOG_MS = 5_000;

/**
 * What a queued message costs against QUEUE_LIMITS.bytes: its body, header names and values,
 * topic and id. Headers count because a publisher's x-sidecar-* headers travel with every
 * message: 1-byte bodies with 12 KB of headers took a subscriber out of memory while the
 * body-only count stayed far below the limit. String lengths, not UTF-8 bytes: what NATS and
 * HTTP carry here is ASCII in practice, and a length costs nothing on the hot path.
 */
export function messageBytes(d: Delivery): number {
  let n = d.body.length + d.topic.length + d.id.length;
  for (const k in d.headers) {
    const v: unknown = d.headers[k];
    // A NATS header repeated arrives as an array (fromNats), whatever the type says: count its values.
    n += k.length + (typeof v === "string" ? v.length : String(v).length);
  }
  return n;
}

/**
 * Deliveries held in this process (core NATS and the local broker: at-most-once): up to
 * `maxInFlight` at once, the rest queued in arrival order, retries on timers. While paused,
 * queued messages wait; on stop, deliveries in flight finish and anything still queued or
 * waiting for a retry is logged by id as lost (it was only ever in this process).
 */
export class InProcessDeliveries {
  /** FIFO with a moving head: Array.shift() is O(n), and a burst can queue thousands. */
  #queue: Delivery[] = [];
  #head = 0;
  #inFlight = 0;
  #retries = new Map<NodeJS.Timeout, Delivery>();
  #paused = false;
  #stopped = false;
  #idle: (() => void)[] = [];
  /** All messages dropped; and those not yet reported in a "queue full" line. */
  #droppedTotal = 0;
  #dropped = 0;
  #droppedAt = -Infinity;

  constructor(
    private readonly spec: SubscriptionSpec,
    private readonly deliver: DeliverFn,
    private readonly log: Logger,
    private readonly limits: { messages: number; bytes: number } = QUEUE_LIMITS,
  ) {}

  /** Bytes of the queued messages (messageBytes; not those in flight). */
  #queuedBytes = 0;

  get paused(): boolean {
    return this.#paused;
  }

  get dropped(): number {
    return this.#droppedTotal;
  }

  /** Queue a message for delivery; false when it was dropped (stopped, or the queue is full). */
  push(d: Delivery): boolean {
    if (this.#stopped) {
      this.log.error("message arrived after the subscription stopped; dropped (at-most-once)", { subscription: this.spec.name, id: d.id });
      this.#droppedTotal += 1;
      return false;
    }
    const size = messageBytes(d);
    this.#queue.push(d);
    this.#queuedBytes += size;
    this.#pump();
    if (this.#queue.length - this.#head > this.limits.messages || this.#queuedBytes > this.limits.bytes) {
      // It has to wait (it is still the newest in the queue) and there is no room for it.
      this.#queue.pop();
      this.#queuedBytes -= size;
      this.#drop(d);
      return false;
    }
    return true;
  }

  #drop(d: Delivery): void {
    this.#droppedTotal += 1;
    this.#dropped += 1;
    const now = Date.now();
    if (now - this.#droppedAt < DROP_LOG_MS) return;
    this.log.error("subscription queue full: message dropped (at-most-once; the app takes messages more slowly than they arrive)", {
      subscription: this.spec.name, id: d.id, queued: this.#queue.length - this.#head, queuedBytes: this.#queuedBytes,
      limits: this.limits, droppedSinceLastLine: this.#dropped,
    });
    this.#dropped = 0;
    this.#droppedAt = now;
  }

  #pump(): void {
    while (!this.#paused && this.#inFlight < this.spec.maxInFlight && this.#head < this.#queue.length) {
      const d = this.#queue[this.#head]!;
      this.#queue[this.#head++] = undefined as unknown as Delivery;
      this.#queuedBytes -= messageBytes(d);
      if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#head);
        this.#head = 0;
      }
      this.#inFlight += 1;
      void this.#run(d);
    }
  }

  async #run(d: Delivery): Promise<void> {
    try {
      const outcome = await this.deliver(d);
      if (outcome.kind === "retry" && !this.#stopped) {
        const timer = setTimeout(() => {
          this.#retries.delete(timer);
          this.push({ ...d, attempt: d.attempt + 1 });
        }, outcome.delay);
        this.#retries.set(timer, d);
      } else if (outcome.kind === "retry") {
        this.log.error("shutting down before a retry; message dropped (at-most-once)", { subscription: this.spec.name, id: d.id, attempt: d.attempt });
        this.#droppedTotal += 1;
      }
    } catch (err) {
      this.log.error("delivery failed unexpectedly; message dropped", { subscription: this.spec.name, id: d.id, error: (err as Error).message });
    } finally {
      this.#inFlight -= 1;
      if (this.#inFlight === 0) for (const w of this.#idle.splice(0)) w();
      this.#pump();
    }
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    this.#pump();
  }

  async stop(timeout: number): Promise<void> {
    this.#stopped = true;
    await waitIdle(() => this.#inFlight === 0, (wake) => this.#idle.push(wake), timeout);
    const lost = [...this.#queue.slice(this.#head), ...this.#retries.values()];
    for (const t of this.#retries.keys()) clearTimeout(t);
    this.#retries.clear();
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#head = 0;
    this.#droppedTotal += lost.length;
    for (const d of lost) this.log.error("subscription stopped with a message not delivered; dropped (at-most-once)", { subscription: this.spec.name, id: d.id, attempt: d.attempt });
  }
}
