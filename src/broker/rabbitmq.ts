import { randomUUID } from "node:crypto";
import { connect, type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage, type Options } from "amqplib";
import { closedError } from "../lifecycle/component.js";
import { sleep, waitIdle } from "../lifecycle/wait-idle.js";
import type { Logger } from "../log.js";
import { subjectMatches } from "../subjects.js";
import { InProcessDeliveries } from "./in-process.js";
import type { ActiveSubscription, Broker, BrokerStatus, DeliverFn, Delivery, PublishResult, SubscriptionSpec } from "./types.js";

export interface RabbitOptions {
  /** amqp:// or amqps:// (credentials in it are secrets: only host and port are ever logged). */
  url: string;
  /** The topic exchange every message is published to (declared durable). */
  exchange: string;
  /** Durable subscriptions' queues: `classic` (one node) or `quorum` (replicated on a cluster). */
  queueType: "classic" | "quorum";
  /** PEM contents for amqps://: ca to verify the server, cert and key when it wants a client certificate. */
  tls?: { ca?: Buffer | undefined; cert?: Buffer | undefined; key?: Buffer | undefined } | undefined;
}

/** Reconnection backoff: 100 ms, doubling, at most 1 s (for ever). */
const BACKOFF = { initial: 100, max: 1_000 };

/**
 * Our subjects on AMQP's topic exchange: the same dot-separated words; `*` is one word in both;
 * `>` (one or more words) binds as `#` (zero or more) and the consumer drops the zero-word match
 * (`orders.>` must not take `orders`). A literal `#` word has no AMQP spelling: refused.
 */
export function bindingOf(topic: string): string {
  const words = topic.split(".");
  if (words.includes("#")) throw new Error(`topic '${topic}': a '#' word is a wildcard in AMQP's topic exchange, and cannot be bound literally`);
  return words.map((w) => (w === ">" ? "#" : w)).join(".");
}

/** host:port of an AMQP URL, for logs (never the credentials). */
export function hostOf(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || (u.protocol === "amqps:" ? "5671" : "5672")}`;
  } catch {
    return "(an invalid URL)";
  }
}

/** AMQP header values as our string headers (numbers and booleans as text; other shapes dropped). */
function stringHeaders(table: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(table ?? {})) {
    if (typeof v === "string") out[k] = v;
    else if (Buffer.isBuffer(v)) out[k] = v.toString();
    else if (typeof v === "number" || typeof v === "boolean") out[k] = String(v);
  }
  return out;
}

/**
 * The RabbitMQ broker (AMQP 0-9-1 through amqplib). A publish is persistent and mandatory on a
 * confirm channel: 202 once RabbitMQ confirmed it, `stored: true` when a queue took it (an
 * unroutable message comes back first and is reported `stored: false`). A durable subscription
 * is a durable queue per (queue group, subscription) bound to the exchange, consumed with manual
 * acks and a prefetch of maxInFlight; a non-durable one, a transient queue shared by the group
 * and consumed without acks into the bounded in-process queue (at most once). The connection is
 * re-made for ever with backoff, and every subscription re-attached.
 */
export class RabbitBroker implements Broker {
  readonly kind = "rabbitmq";
  #model: ChannelModel | undefined;
  #pub: ConfirmChannel | undefined;
  #closed = false;
  #reconnecting: Promise<void> | undefined;
  /** messageIds RabbitMQ returned as unroutable, until their confirm arrives. */
  readonly #returned = new Set<string>();
  readonly #subs = new Set<RabbitSubscription>();

  private constructor(private readonly o: RabbitOptions, private readonly log: Logger) {}

  /** Connect (waiting for RabbitMQ, saying so every 10 attempts) and declare the exchange. */
  static async open(o: RabbitOptions, log: Logger, signal?: AbortSignal): Promise<RabbitBroker> {
    const broker = new RabbitBroker(o, log);
    for (let attempt = 0; ; attempt++) {
      try {
        await broker.#connect();
        log.info("connected to RabbitMQ", { server: hostOf(o.url), exchange: o.exchange });
        return broker;
      } catch (err) {
        if (signal?.aborted) throw new Error("stopped while waiting for RabbitMQ", { cause: err });
        if (attempt % 10 === 0) log.warn("waiting for RabbitMQ: cannot connect yet, retrying every second", { server: hostOf(o.url), error: (err as Error).message });
        await sleep(1_000, signal);
      }
    }
  }

  async #connect(): Promise<void> {
    const { tls } = this.o;
    const socket = tls ? { ...(tls.ca ? { ca: [tls.ca] } : {}), ...(tls.cert ? { cert: tls.cert } : {}), ...(tls.key ? { key: tls.key } : {}) } : {};
    const model = await connect(this.o.url, { ...socket, timeout: 5_000 });
    try {
      const pub = await model.createConfirmChannel();
      pub.on("return", (m: { properties: { messageId?: string } }) => {
        if (m.properties.messageId) this.#returned.add(m.properties.messageId);
      });
      pub.on("error", () => undefined); // a channel error closes it; 'close' below handles that
      await pub.assertExchange(this.o.exchange, "topic", { durable: true });
      model.on("error", () => undefined); // followed by 'close'
      model.once("close", () => this.#lost(model));
      this.#model = model;
      this.#pub = pub;
      for (const sub of this.#subs) await sub.attach(model);
    } catch (err) {
      await model.close().catch(() => undefined);
      throw err;
    }
  }

  /** The connection went away: refuse publishes at once, and reconnect with backoff for ever. */
  #lost(model: ChannelModel): void {
    if (this.#model !== model) return;
    this.#model = undefined;
    this.#pub = undefined;
    for (const sub of this.#subs) sub.detach();
    if (this.#closed) return;
    this.log.warn("disconnected from RabbitMQ; reconnecting", { server: hostOf(this.o.url) });
    this.#reconnecting ??= (async () => {
      for (let delay = BACKOFF.initial, attempt = 0; !this.#closed; delay = Math.min(BACKOFF.max, delay * 2), attempt++) {
        await sleep(delay);
        if (this.#closed) return;
        try {
          await this.#connect();
          this.log.info("reconnected to RabbitMQ", { server: hostOf(this.o.url) });
          return;
        } catch (err) {
          if (attempt % 10 === 0) this.log.warn("cannot reconnect to RabbitMQ yet; retrying", { server: hostOf(this.o.url), error: (err as Error).message });
        }
      }
    })().finally(() => (this.#reconnecting = undefined));
  }

  async publish(topic: string, body: Buffer, headers: Record<string, string>): Promise<PublishResult> {
    if (this.#closed) throw closedError("rabbitmq broker");
    const pub = this.#pub;
    if (!pub) throw new Error("not connected to RabbitMQ");
    const id = headers["ce-id"] || randomUUID();
    const options: Options.Publish = {
      persistent: true,
      mandatory: true,
      messageId: id,
      headers: { ...headers, "ce-id": id },
      ...(headers["content-type"] ? { contentType: headers["content-type"] } : {}),
    };
    await new Promise<void>((resolve, reject) => {
      pub.publish(this.o.exchange, topic, body, options, (err) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve()));
    });
    const stored = !this.#returned.delete(id);
    return { id, stored };
  }

  async subscribe(spec: SubscriptionSpec, deliver: DeliverFn): Promise<ActiveSubscription> {
    if (this.#closed) throw closedError("rabbitmq broker");
    const binding = bindingOf(spec.topic);
    const sub = new RabbitSubscription(spec, binding, deliver, this.o, this.log, () => this.#subs.delete(sub));
    this.#subs.add(sub);
    if (this.#model) await sub.attach(this.#model);
    this.log.info("subscribed", { subscription: spec.name, topic: spec.topic, broker: "rabbitmq", queue: sub.queueName, durable: spec.durable, maxInFlight: spec.maxInFlight });
    return sub;
  }

  status(): BrokerStatus {
    return this.#closed ? "closed" : this.#pub ? "connected" : "disconnected";
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const model = this.#model;
    this.#model = undefined;
    this.#pub = undefined;
    await model?.close().catch(() => undefined);
  }
}

/**
 * One subscription's queue and consumer. Durable: deliveries run with manual acks (at most
 * maxInFlight, the channel's prefetch); a retry keeps the message unacknowledged and delivers it
 * again after the delay; ack after the relay's ack or dead letter. A message whose sidecar died
 * before the ack is redelivered by RabbitMQ (to this group's other consumers, or later).
 */
class RabbitSubscription implements ActiveSubscription {
  readonly queueName: string;
  #channel: Channel | undefined;
  #tag: string | undefined;
  #paused = false;
  #stopped = false;
  #inFlight = 0;
  #idle: (() => void) | undefined;
  /** Non-durable: the bounded in-process queue (as core NATS). */
  readonly #deliveries: InProcessDeliveries | undefined;

  constructor(
    readonly spec: SubscriptionSpec,
    private readonly binding: string,
    private readonly deliver: DeliverFn,
    private readonly o: RabbitOptions,
    private readonly log: Logger,
    private readonly onStop: () => void,
  ) {
    this.queueName = `${o.exchange}.${spec.queue}.${spec.name}${spec.durable ? "" : ".transient"}`;
    if (!spec.durable) this.#deliveries = new InProcessDeliveries(spec, deliver, log);
  }

  get paused(): boolean {
    return this.#paused;
  }

  get dropped(): number {
    return this.#deliveries?.dropped ?? 0;
  }

  /** Declare and bind the queue, and consume (unless paused): at subscribe and after every reconnection. */
  async attach(model: ChannelModel): Promise<void> {
    if (this.#stopped) return;
    const channel = await model.createChannel();
    channel.on("error", () => undefined);
    channel.once("close", () => {
      if (this.#channel === channel) this.#channel = undefined;
    });
    const durable = this.spec.durable;
    await channel.assertQueue(this.queueName, durable ? { durable: true, arguments: { "x-queue-type": this.o.queueType } } : { durable: false, autoDelete: true });
    await channel.bindQueue(this.queueName, this.o.exchange, this.binding);
    if (durable) await channel.prefetch(this.spec.maxInFlight);
    this.#channel = channel;
    this.#tag = undefined;
    if (!this.#paused) await this.#consume();
  }

  /** The connection is gone: its channel and consumer with it (unacked messages go back to the queue). */
  detach(): void {
    this.#channel = undefined;
    this.#tag = undefined;
  }

  async #consume(): Promise<void> {
    const channel = this.#channel;
    if (!channel || this.#tag) return;
    const durable = this.spec.durable;
    const reply = await channel.consume(this.queueName, (m) => (m ? this.#onMessage(channel, m) : this.#cancelled()), { noAck: !durable });
    this.#tag = reply.consumerTag;
  }

  #cancelled(): void {
    // RabbitMQ cancelled the consumer (the queue was deleted): declare it again on the next reconnection.
    if (!this.#stopped) this.log.warn("RabbitMQ cancelled the consumer; it is re-made on the next reconnection", { subscription: this.spec.name, queue: this.queueName });
    this.#tag = undefined;
  }

  #delivery(m: ConsumeMessage): Delivery {
    const headers = stringHeaders(m.properties.headers as Record<string, unknown> | undefined);
    if (m.properties.contentType && !headers["content-type"]) headers["content-type"] = String(m.properties.contentType);
    // Quorum queues count deliveries; a classic queue only says "redelivered".
    const count = Number(headers["x-delivery-count"] ?? 0);
    delete headers["x-delivery-count"];
    const attempt = count > 0 ? count + 1 : m.fields.redelivered ? 2 : 1;
    return { id: (m.properties.messageId as string | undefined) ?? headers["ce-id"] ?? randomUUID(), topic: m.fields.routingKey, body: m.content, headers, attempt };
  }

  #onMessage(channel: Channel, m: ConsumeMessage): void {
    // `>` binds as `#`, which also takes zero words: not ours.
    if (!subjectMatches(this.spec.topic, m.fields.routingKey)) {
      if (this.spec.durable) channel.ack(m);
      return;
    }
    const d = this.#delivery(m);
    if (!this.spec.durable) {
      this.#deliveries!.push(d);
      return;
    }
    this.#inFlight += 1;
    void this.#run(channel, m, d).finally(() => {
      this.#inFlight -= 1;
      if (this.#inFlight === 0) this.#idle?.();
    });
  }

  async #run(channel: Channel, m: ConsumeMessage, first: Delivery): Promise<void> {
    for (let attempt = first.attempt; ; attempt++) {
      const outcome = await this.deliver({ ...first, attempt });
      if (outcome.kind !== "retry") break;
      // Held here, unacknowledged: if this sidecar dies, RabbitMQ redelivers it.
      await sleep(outcome.delay);
      if (this.#stopped || this.#channel !== channel) return; // back to the queue with the channel
    }
    try {
      channel.ack(m);
    } catch {
      // The channel closed under us: RabbitMQ redelivers the message (at least once).
    }
  }

  async pause(): Promise<void> {
    if (this.#paused) return;
    this.#paused = true;
    this.#deliveries?.pause();
    const { channel, tag } = { channel: this.#channel, tag: this.#tag };
    this.#tag = undefined;
    if (channel && tag) await channel.cancel(tag).catch(() => undefined);
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#deliveries?.resume();
    void this.#consume().catch((err: unknown) => this.log.warn("cannot resume the RabbitMQ consumer; it resumes on the next reconnection", { subscription: this.spec.name, error: (err as Error).message }));
  }

  async stop(timeout: number): Promise<void> {
    if (this.#stopped) return;
    await this.pause();
    this.#stopped = true;
    await this.#deliveries?.stop(timeout);
    await waitIdle(() => this.#inFlight === 0, (wake) => (this.#idle = wake), timeout);
    await this.#channel?.close().catch(() => undefined);
    this.#channel = undefined;
    this.onStop();
  }
}
