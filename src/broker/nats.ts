import { randomUUID } from "node:crypto";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { Msg, Subscription } from "@nats-io/transport-node";
import type { Logger } from "../log.js";
import type { NatsClient } from "../nats/connect.js";
import { fromNats, toNats } from "../nats/headers.js";
import { InProcessDeliveries } from "./in-process.js";
import { JetStreamSubscription, type StreamDefaults } from "./jetstream.js";
import type { ActiveSubscription, Broker, BrokerStatus, DeliverFn, PublishResult, SubscriptionSpec } from "./types.js";
import { closedError } from "../lifecycle/component.js";

/** How long "which stream stores this topic" is remembered: found, and not found. */
const STREAM_CACHE_MS = { found: 30_000, missing: 1_000 };

/**
 * The NATS broker: core NATS for `durable: false` (queue groups, at-most-once, fastest) and
 * JetStream for `durable: true` (at-least-once). A publish to a topic a stream covers waits for
 * JetStream's acknowledgement, so 202 means stored.
 */
export class NatsBroker implements Broker {
  readonly kind = "nats";
  #streams = new Map<string, { name: string | undefined; at: number }>();
  #closed = false;

  private constructor(
    private readonly client: NatsClient,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly defaults: StreamDefaults,
    private readonly log: Logger,
  ) {}

  static async open(client: NatsClient, defaults: StreamDefaults, log: Logger): Promise<NatsBroker> {
    const jsm = await client.jetstreamManager();
    return new NatsBroker(client, client.jetstream(), jsm, defaults, log);
  }

  async #streamFor(topic: string): Promise<string | undefined> {
    const cached = this.#streams.get(topic);
    const now = Date.now();
    if (cached && now - cached.at < (cached.name ? STREAM_CACHE_MS.found : STREAM_CACHE_MS.missing)) return cached.name;
    let name: string | undefined;
    try {
      name = await this.jsm.streams.find(topic);
    } catch {
      name = undefined;
    }
    this.#streams.set(topic, { name, at: now });
    return name;
  }

  async publish(topic: string, body: Buffer, headers: Record<string, string>): Promise<PublishResult> {
    if (this.#closed) throw closedError("nats broker");
    const id = headers["ce-id"] || randomUUID();
    const h = toNats({ ...headers, "ce-id": id });
    const stream = await this.#streamFor(topic);
    if (stream) {
      // msgID lets JetStream drop a duplicate if the app retries the same publish.
      const ack = await this.js.publish(topic, body, { headers: h, msgID: id });
      return { id, stored: true, stream: ack.stream };
    }
    this.client.publish(topic, body, { headers: h });
    await this.client.flush();
    return { id, stored: false };
  }

  async subscribe(spec: SubscriptionSpec, deliver: DeliverFn): Promise<ActiveSubscription> {
    if (this.#closed) throw closedError("nats broker");
    if (spec.durable) return JetStreamSubscription.start(this.js, this.jsm, spec, deliver, this.defaults, this.log);
    return CoreSubscription.start(this.client, spec, deliver, this.log);
  }

  status(): BrokerStatus {
    return this.#closed ? "closed" : this.client.status();
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}

/** `durable: false`: a core NATS queue subscription; unsubscribed while paused, so other instances take the messages. */
class CoreSubscription implements ActiveSubscription {
  #sub: Subscription | undefined;
  readonly #deliveries: InProcessDeliveries;

  private constructor(private readonly client: NatsClient, readonly spec: SubscriptionSpec, deliver: DeliverFn, private readonly log: Logger) {
    this.#deliveries = new InProcessDeliveries(spec, deliver, log);
  }

  static async start(client: NatsClient, spec: SubscriptionSpec, deliver: DeliverFn, log: Logger): Promise<CoreSubscription> {
    const sub = new CoreSubscription(client, spec, deliver, log);
    sub.#subscribe();
    await client.flush();
    log.info("subscribed", { subscription: spec.name, topic: spec.topic, durable: false, queue: spec.queue, maxInFlight: spec.maxInFlight });
    return sub;
  }

  #subscribe(): void {
    this.#sub = this.client.subscribe(this.spec.topic, {
      queue: this.spec.queue,
      callback: (err: Error | null, m: Msg): void => {
        if (err) {
          this.log.warn("subscription error", { subscription: this.spec.name, error: err.message });
          return;
        }
        const headers = fromNats(m.headers) as Record<string, string>;
        this.#deliveries.push({ id: headers["ce-id"] ?? randomUUID(), topic: m.subject, body: Buffer.from(m.data), headers, attempt: 1 });
      },
    });
  }

  get paused(): boolean {
    return this.#deliveries.paused;
  }

  get dropped(): number {
    return this.#deliveries.dropped;
  }

  async pause(): Promise<void> {
    if (this.paused) return;
    this.#deliveries.pause();
    await this.#sub?.drain();
    this.#sub = undefined;
  }

  resume(): void {
    if (!this.paused) return;
    this.#subscribe();
    this.#deliveries.resume();
  }

  async stop(timeout: number): Promise<void> {
    await this.#sub?.drain().catch(() => undefined);
    this.#sub = undefined;
    await this.#deliveries.stop(timeout);
  }
}
