import { AckPolicy, DeliverPolicy, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import type { Logger } from "../log.js";
import { waitIdle } from "../lifecycle/wait-idle.js";
import { fromNats } from "../nats/headers.js";
import type { ActiveSubscription, DeliverFn, Delivery, SubscriptionSpec } from "./types.js";

const safe = (s: string) => s.replace(/\*/g, "any").replace(/>/g, "all").replace(/[^A-Za-z0-9_-]/g, "_");
const nanos = (ms: number) => ms * 1_000_000;
/** Stream sequences of the messages this subscription dead-lettered, remembered (the newest) in case a term is lost. */
const DEAD_REMEMBERED = 10_000;

/** The durable consumer shared by the instances of one service (the queue) for one subscription. */
export const consumerName = (spec: SubscriptionSpec) => `${safe(spec.queue)}__${safe(spec.name)}`;

export interface StreamDefaults {
  /** How long a stream created by the sidecar keeps messages (ms). */
  maxAge: number;
  replicas: number;
}

/** The stream to consume `spec.topic` from: the configured one, the one covering the topic, or a new one. */
export async function ensureStream(jsm: JetStreamManager, spec: SubscriptionSpec, defaults: StreamDefaults, log: Logger): Promise<string> {
  if (spec.stream) {
    await jsm.streams.info(spec.stream);
    return spec.stream;
  }
  try {
    return await jsm.streams.find(spec.topic);
  } catch {
    const name = `SIDECAR_${safe(spec.topic)}`;
    try {
      await jsm.streams.add({ name, subjects: [spec.topic], max_age: nanos(defaults.maxAge), num_replicas: defaults.replicas });
    } catch (err) {
      throw new Error(`cannot create JetStream stream ${name} for topic '${spec.topic}' (an existing stream may overlap it: name one with subscriptions[].stream): ${(err as Error).message}`, { cause: err });
    }
    log.info("created JetStream stream", { stream: name, subjects: [spec.topic], maxAgeMs: defaults.maxAge });
    return name;
  }
}

/**
 * A durable subscription: a JetStream pull consumer named after the service and the
 * subscription, so instances share the work and a restarted sidecar resumes where it stopped.
 * Up to maxInFlight messages are unacknowledged at once (max_ack_pending). Ack on 2xx, nak with
 * the backoff delay on a retry (another instance may take it), term after dead-lettering.
 *
 * The term is a bare `+TERM`: nats-server before 2.10 does not parse `+TERM <reason>` and leaves
 * the message pending, to be redelivered (and dead-lettered again) at every ack wait until
 * max_ack_pending of them stall the consumer. The reason travels in the dead letter's headers.
 */
export class JetStreamSubscription implements ActiveSubscription {
  #messages: ConsumerMessages | undefined;
  #paused = false;
  #stopped = false;
  #inFlight = 0;
  #idle: (() => void)[] = [];
  #loop: Promise<void> | undefined;
  /** Cuts a back-off wait short (pause, stop). */
  #wake: (() => void) | undefined;
  /**
   * Acks decided in this turn of the event loop, sent together from setImmediate: nats.js writes
   * what was queued in one turn with one syscall, where acks sent from each HTTP response's own
   * callback cost one write each (about 15 µs per message at 64 in flight, in a CPU profile).
   */
  #acks: JsMsg[] = [];
  #ackTimer: NodeJS.Immediate | undefined;
  /**
   * Messages (stream sequence) this sidecar dead-lettered, oldest first, bounded. Should a term be
   * lost (a connection dropped before the server had it), the redelivered message is terminated
   * again rather than delivered or dead-lettered a second time.
   */
  #dead = new Set<number>();

  private constructor(
    readonly spec: SubscriptionSpec,
    private readonly js: JetStreamClient,
    private readonly stream: string,
    private readonly deliver: DeliverFn,
    private readonly log: Logger,
  ) {}

  static async start(js: JetStreamClient, jsm: JetStreamManager, spec: SubscriptionSpec, deliver: DeliverFn, defaults: StreamDefaults, log: Logger): Promise<JetStreamSubscription> {
    const stream = await ensureStream(jsm, spec, defaults, log);
    const durable = consumerName(spec);
    // Long enough for one delivery to finish (its timeout) with room to spare; a sidecar that dies
    // mid-delivery gets its messages redelivered to the others after this.
    const ackWait = nanos(spec.timeout * 2 + 1_000);
    try {
      await jsm.consumers.add(stream, {
        durable_name: durable,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.New,
        filter_subject: spec.topic,
        max_ack_pending: spec.maxInFlight,
        ack_wait: ackWait,
        // No server-side cap: the relay dead-letters after retry.attempts. A message past a
        // max_deliver would be left in the stream undelivered with no dead letter, only a server
        // advisory, and deliveries that never reached the app (naks while paused, a sidecar that
        // died mid-delivery) count towards it: a silent loss where we promise a dead letter.
        max_deliver: -1,
      });
    } catch {
      // It exists with other settings (a config change): update what can be updated.
      await jsm.consumers.update(stream, durable, { max_ack_pending: spec.maxInFlight, ack_wait: ackWait });
    }
    const sub = new JetStreamSubscription(spec, js, stream, deliver, log);
    await sub.#consume();
    log.info("subscribed", { subscription: spec.name, topic: spec.topic, durable: true, stream, consumer: durable, maxInFlight: spec.maxInFlight });
    return sub;
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Never: an undelivered message stays in the stream. */
  get dropped(): number {
    return 0;
  }

  /** Start consuming; the first pull is awaited so that start() reports a consumer that cannot be read. */
  async #consume(): Promise<void> {
    const messages = await this.#open();
    this.#loop = this.#run(messages);
  }

  async #open(): Promise<ConsumerMessages> {
    const consumer = await this.js.consumers.get(this.stream, consumerName(this.spec));
    // Pull ahead of the deliveries (the server still holds unacknowledged messages to max_ack_pending).
    // Short pulls (5 s): a pull that a lost cluster server was serving is noticed (missed idle
    // heartbeats) and replaced within seconds rather than the default 30 s.
    const messages = await consumer.consume({ max_messages: Math.max(100, this.spec.maxInFlight * 2), expires: 5_000 });
    this.#messages = messages;
    return messages;
  }

  /**
   * Deliver until paused or stopped. If the consumer ends by itself (a cluster lost the server
   * holding it, its leader moved, the connection was replaced), open it again, backing off from
   * 0.5 s to 10 s: a subscription never dies quietly.
   */
  async #run(first: ConsumerMessages | undefined): Promise<void> {
    let messages: ConsumerMessages | undefined = first;
    let failures = 0;
    while (!this.#paused && !this.#stopped) {
      try {
        messages ??= await this.#open();
        // Paused or stopped while opening: pause()/stop() closed the previous iterator, not this one.
        if (this.#paused || this.#stopped) {
          await messages.close();
          return;
        }
        for await (const m of messages) {
          failures = 0;
          // Paused or stopping: hand the message straight back, so it waits (or another instance takes it).
          if (this.#paused || this.#stopped) m.nak();
          else void this.#handle(m);
        }
        if (this.#paused || this.#stopped) return;
        this.log.warn("JetStream consumer ended; opening it again", { subscription: this.spec.name });
      } catch (err) {
        if (this.#paused || this.#stopped) return;
        this.log.warn("JetStream consumer failed; opening it again", { subscription: this.spec.name, error: (err as Error).message, attempt: failures + 1 });
      }
      messages = undefined;
      const delay = Math.min(10_000, 500 * 2 ** failures++);
      await new Promise<void>((r) => {
        const t = setTimeout(r, delay);
        this.#wake = () => {
          clearTimeout(t);
          r();
        };
      });
      this.#wake = undefined;
    }
  }

  async #handle(m: JsMsg): Promise<void> {
    if (m.info.redelivered && this.#dead.has(m.seq)) {
      // Dead-lettered already: its term did not reach the server. End it without a second copy.
      this.log.warn("a message already dead-lettered was redelivered (its term was lost); terminated again", { subscription: this.spec.name, seq: m.seq, attempt: m.info.deliveryCount });
      m.term();
      return;
    }
    this.#inFlight += 1;
    const headers = fromNats(m.headers) as Record<string, string>;
    const d: Delivery = {
      id: headers["ce-id"] ?? headers["nats-msg-id"] ?? `${this.stream}:${m.seq}`,
      topic: m.subject,
      body: Buffer.from(m.data),
      headers,
      attempt: m.info.deliveryCount,
    };
    try {
      const outcome = await this.deliver(d);
      if (outcome.kind === "ack") this.#ack(m);
      else if (outcome.kind === "retry") m.nak(outcome.delay);
      else this.#term(m);
    } catch (err) {
      this.log.error("delivery failed unexpectedly; the message will be redelivered", { subscription: this.spec.name, id: d.id, error: (err as Error).message });
      m.nak(this.spec.retry.max);
    } finally {
      this.#inFlight -= 1;
      if (this.#inFlight === 0) for (const w of this.#idle.splice(0)) w();
    }
  }

  #term(m: JsMsg): void {
    // Bare: see the class comment (a reason would make nats-server 2.9 ignore it).
    m.term();
    this.#dead.add(m.seq);
    if (this.#dead.size > DEAD_REMEMBERED) this.#dead.delete(this.#dead.values().next().value!);
  }

  #ack(m: JsMsg): void {
    this.#acks.push(m);
    this.#ackTimer ??= setImmediate(this.#flushAcks);
  }

  readonly #flushAcks = (): void => {
    if (this.#ackTimer) clearImmediate(this.#ackTimer);
    this.#ackTimer = undefined;
    const acks = this.#acks;
    this.#acks = [];
    for (const m of acks) m.ack();
  };

  async pause(): Promise<void> {
    if (this.#paused || this.#stopped) return;
    this.#paused = true;
    this.#wake?.();
    await this.#messages?.close();
    await this.#loop;
    this.log.info("subscription paused: the app is not passing its health check; messages wait in the stream", { subscription: this.spec.name });
  }

  resume(): void {
    if (!this.#paused || this.#stopped) return;
    this.#paused = false;
    // Paused: the loop ended (pause awaited it). A fresh one opens the consumer, retrying until it can.
    this.#messages = undefined;
    this.#loop = this.#run(undefined);
    this.log.info("subscription resumed", { subscription: this.spec.name });
  }

  async stop(timeout: number): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#wake?.();
    await this.#messages?.close();
    await this.#loop;
    // Whatever is still in flight at the deadline stays unacknowledged: JetStream redelivers it after ack_wait.
    await waitIdle(() => this.#inFlight === 0, (wake) => this.#idle.push(wake), timeout);
    // Before the connection closes: acks still waiting for this turn's batch go out now.
    this.#flushAcks();
  }
}
