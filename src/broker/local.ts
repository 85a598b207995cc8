import { randomUUID } from "node:crypto";
import { readBody } from "../http/body.js";
import { H } from "../http/headers.js";
import type { Logger } from "../log.js";
import type { RegistryView } from "../registry/view.js";
import { parseAddress } from "../transport/http.js";
import { peerClient, type MeshTls } from "../tls/mesh.js";
import { InProcessDeliveries } from "./in-process.js";
import { subjectMatches } from "../subjects.js";
import type { ActiveSubscription, Broker, BrokerStatus, DeliverFn, PublishResult, SubscriptionSpec } from "./types.js";
import { closedError } from "../lifecycle/component.js";

/** A peer's answer to a delivery is a small JSON document ({"accepted": n}, or an error body). */
const ANSWER_LIMIT = 64 * 1024;

/** The header that makes a request to a peer's inbound listener a local-broker delivery. */
export const DELIVER_HEADER = H.deliver;

/**
 * The embedded broker, with no server: each node's record lists the topics it
 * subscribes to; a publish POSTs the message to one node of each subscribed service, through
 * its inbound listener, which hands it to its subscriptions. At-most-once, one machine, and only
 * to nodes registered at the time of the publish: nothing is stored.
 */
export class LocalBroker implements Broker {
  readonly kind = "local";
  readonly #client: ReturnType<typeof peerClient>;
  readonly #meshToken: string | undefined;
  readonly #service: string | undefined;
  #rotation = new Map<string, number>();
  #subs: LocalSubscription[] = [];
  #notTaken = 0;

  /** Every node of every service: opened at the first publish (a sidecar that never publishes watches only what it calls). */
  #everyone: Promise<RegistryView> | undefined;

  constructor(private readonly subscribers: () => RegistryView, private readonly log: Logger, peers: { meshToken?: string | undefined; tls?: MeshTls | undefined; service?: string | undefined } = {}) {
    this.#meshToken = peers.meshToken;
    this.#service = peers.service;
    this.#client = peerClient(peers.tls, { keepAlive: true, maxSockets: 64 });
  }

  async publish(topic: string, body: Buffer, headers: Record<string, string>): Promise<PublishResult> {
    if (this.#closed) throw closedError("local broker");
    const id = headers["ce-id"] || randomUUID();
    const sent: Record<string, string> = { ...headers, "ce-id": id, [DELIVER_HEADER]: topic };
    let notTakenBy: string[] | undefined;
    if (this.#meshToken) sent[H.meshToken] = this.#meshToken;
    // The publisher is this sidecar's service (dead letters included), whatever the app's headers said:
    // subscribers check it against inbound.allow, and believe it only with the mesh token or a certificate.
    if (this.#service) sent[H.caller] = this.#service;
    const view = await this.#view();
    for (const service of view.services()) {
      const nodes = view.nodes(service).filter((n) => n.subscriptions.some((p) => subjectMatches(p, topic)));
      if (nodes.length === 0) continue;
      const start = this.#rotation.get(service) ?? 0;
      this.#rotation.set(service, start + 1);
      let accepted = false;
      for (let i = 0; i < nodes.length && !accepted; i++) {
        const node = nodes[(start + i) % nodes.length]!;
        accepted = await this.#post(node.address, body, sent).catch(() => false);
      }
      if (!accepted) {
        this.#notTaken += 1;
        (notTakenBy ??= []).push(service);
        this.log.error("no node of the subscribed service took the message; it is lost (the local broker is at-most-once)", { topic, service, id, nodes: nodes.length });
      }
    }
    return { id, stored: false, notTakenBy };
  }

  notTaken(): number {
    return this.#notTaken;
  }

  #post(address: string, body: Buffer, headers: Record<string, string>): Promise<boolean> {
    const { host, port } = parseAddress(address);
    return new Promise((resolve, reject) => {
      const req = this.#client.request({ host, port, method: "POST", path: "/", headers: { ...headers, "content-length": body.length }, agent: this.#client.agent, timeout: 5_000 });
      // Taken when at least one of the node's subscriptions queued it (not one whose queue is full).
      req.once("response", (res) => {
        readBody(res, ANSWER_LIMIT).then((answer) => {
          if (res.statusCode === 401 || res.statusCode === 403) {
            this.log.warn("a subscriber's sidecar refused the message", { address, status: res.statusCode, error: errorMessage(answer) });
          }
          if (res.statusCode !== 202) return resolve(false);
          try {
            resolve((JSON.parse(answer.toString("utf8")) as { accepted?: unknown }).accepted !== 0);
          } catch {
            resolve(true);
          }
        }, reject);
      });
      req.once("timeout", () => req.destroy(new Error("timeout")));
      req.once("error", reject);
      req.end(body);
    });
  }

  /** A message delivered by a peer (`caller`: its publisher, as the inbound listener vouched for it): hand it to every local subscription it matches; how many took it. */
  receive(topic: string, body: Buffer, headers: Record<string, string>, caller?: string): number {
    let n = 0;
    for (const s of this.#subs) {
      if (!subjectMatches(s.spec.topic, topic)) continue;
      if (s.push({ id: headers["ce-id"] ?? randomUUID(), topic, body, headers, attempt: 1, ...(caller !== undefined ? { caller } : {}) })) n += 1;
    }
    return n;
  }

  async subscribe(spec: SubscriptionSpec, deliver: DeliverFn): Promise<ActiveSubscription> {
    if (this.#closed) throw closedError("local broker");
    const sub = new LocalSubscription(spec, new InProcessDeliveries(spec, deliver, this.log), () => {
      this.#subs = this.#subs.filter((s) => s !== sub);
    });
    this.#subs.push(sub);
    if (spec.durable) {
      this.log.warn("durable: true needs a NATS broker (JetStream); on the local broker this subscription is at-most-once", { subscription: spec.name });
    }
    this.log.info("subscribed", { subscription: spec.name, topic: spec.topic, broker: "local", maxInFlight: spec.maxInFlight });
    return sub;
  }

  status(): BrokerStatus {
    return this.#closed ? "closed" : "connected";
  }

  #closed = false;

  /** The view of every node, watched from the first publish on (a failed start is tried again at the next). */
  #view(): Promise<RegistryView> {
    this.#everyone ??= (async () => {
      const view = this.subscribers();
      try {
        await view.start();
        return view;
      } catch (err) {
        this.#everyone = undefined;
        await view.close();
        throw err;
      }
    })();
    return this.#everyone;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#client.agent.destroy();
    await (await this.#everyone?.catch(() => undefined))?.close();
  }
}

/** The message of a peer's JSON error body ({"error": {"message": ...}}), for the log. */
function errorMessage(answer: Buffer): string {
  try {
    return String((JSON.parse(answer.toString("utf8")) as { error?: { message?: unknown } }).error?.message ?? "");
  } catch {
    return "";
  }
}

class LocalSubscription implements ActiveSubscription {
  constructor(readonly spec: SubscriptionSpec, private readonly deliveries: InProcessDeliveries, private readonly onStop: () => void) {}

  push(d: Parameters<InProcessDeliveries["push"]>[0]): boolean {
    return this.deliveries.push(d);
  }

  get paused(): boolean {
    return this.deliveries.paused;
  }

  get dropped(): number {
    return this.deliveries.dropped;
  }

  async pause(): Promise<void> {
    this.deliveries.pause();
  }

  resume(): void {
    this.deliveries.resume();
  }

  async stop(timeout: number): Promise<void> {
    this.onStop();
    await this.deliveries.stop(timeout);
  }
}
