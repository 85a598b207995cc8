import type { WebSocket, WebSocketServer } from "ws";
import type { ActiveSubscription, Broker, Delivery, Outcome, SubscriptionSpec } from "../broker/types.js";
import { INTERNAL } from "../http/headers.js";
import { withDeadline } from "../lifecycle/wait-idle.js";
import type { Logger } from "../log.js";

export type WsServer = WebSocketServer;

/** micro pings every 54 s and gives up on a peer silent for 60 s (its pingTime and readDeadline). */
const PING_MS = 54_000;
/** Deliveries to one group's sockets at once; the rest wait in the subscription's bounded queue. */
const IN_FLIGHT = 16;
/** How long a closing sidecar waits for clients to answer the WebSocket close handshake. */
const CLOSE_GRACE_MS = 1_000;
/** A frame not written within this long fails its delivery (micro's writeDeadline). */
const WRITE_MS = 10_000;

/** Go's canonical MIME header key (`textproto.CanonicalMIMEHeaderKey`): content-type → Content-Type. */
export function canonicalHeader(name: string): string {
  return name.replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase());
}

/**
 * A delivery as go-micro's `broker.Message` in JSON: what Go's json.Marshal writes for
 * `struct { Header map[string]string; Body []byte }` (no tags: the field names, and the body in
 * base64). The sidecars' internal headers stay out, as at every last hop.
 */
export function microFrame(d: Delivery): string {
  const header: Record<string, string> = {};
  for (const [k, v] of Object.entries(d.headers)) if (!INTERNAL.has(k)) header[canonicalHeader(k)] = String(v);
  header[canonicalHeader("ce-id")] = d.id;
  return JSON.stringify({ Header: header, Body: d.body.toString("base64") });
}

interface Group {
  spec: SubscriptionSpec;
  sockets: WebSocket[];
  next: number;
  sub: Promise<ActiveSubscription>;
}

export interface SocketGroupsOptions {
  broker: Broker;
  log: Logger;
  announce?: ((topics: string[]) => void) | undefined;
  /** Publish a frame a client sent, to the topic it subscribed to. */
  publish: (topic: string, body: Buffer, contentType: string) => Promise<void>;
}

/**
 * The WebSocket subscribers of micro's `/broker`, grouped by topic and queue: one broker
 * subscription per group (its queue is the NATS queue group, so micro's `queue=` spreads messages
 * over subscribers across sidecars too), each message to one socket of the group in turn.
 * Without `queue=` every socket is a group of its own and gets every message. At-most-once, as in
 * micro: a message for a group whose sockets are gone is dropped and logged.
 */
export class SocketGroups {
  #groups = new Map<string, Group>();
  #alive = new WeakSet<WebSocket>();
  #count = 0;
  readonly #pinger: NodeJS.Timeout;

  constructor(private readonly o: SocketGroupsOptions) {
    this.#pinger = setInterval(() => this.#ping(), PING_MS);
    this.#pinger.unref();
  }

  get connections(): number {
    return this.#count;
  }

  async join(ws: WebSocket, o: { topic: string; queue: string; shared: boolean; contentType: string }): Promise<void> {
    this.#count += 1;
    this.#alive.add(ws);
    ws.on("pong", () => this.#alive.add(ws));
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      const body = isBinary || Buffer.isBuffer(data) ? Buffer.from(data) : Buffer.from(String(data));
      this.o.publish(o.topic, body, o.contentType).catch((err: unknown) => {
        this.o.log.warn("a frame from a /broker WebSocket was not published", { topic: o.topic, error: (err as Error).message });
      });
    });
    const key = `${o.topic}\u0000${o.queue}`;
    let group = this.#groups.get(key);
    if (!group) {
      const spec: SubscriptionSpec = {
        name: o.shared ? `micro-broker:${o.queue}:${o.topic}` : o.queue, topic: o.topic, path: "/broker", queue: o.queue, durable: false,
        maxInFlight: IN_FLIGHT, timeout: WRITE_MS, retry: { attempts: 1, initial: 200, max: WRITE_MS }, deadLetter: undefined, stream: undefined,
      };
      const created: Group = { spec, sockets: [], next: 0, sub: Promise.resolve(undefined as unknown as ActiveSubscription) };
      created.sub = this.o.broker.subscribe(spec, (d) => this.#deliver(created, d));
      this.#groups.set(key, (group = created));
      this.#announce();
    }
    group.sockets.push(ws);
    const joined = group;
    ws.once("close", () => this.#leave(key, joined, ws));
    try {
      await group.sub;
    } catch (err) {
      this.#groups.delete(key);
      this.#announce();
      throw err;
    }
    this.o.log.info("a /broker WebSocket subscribed", { topic: o.topic, queue: o.shared ? o.queue : undefined, subscribers: group.sockets.length });
  }

  /** One message to the next open socket of the group. */
  #deliver(group: Group, d: Delivery): Promise<Outcome> {
    const open = group.sockets.filter((s) => s.readyState === s.OPEN);
    if (open.length === 0) {
      this.o.log.warn("a /broker message found no open WebSocket; dropped (at-most-once, as in micro)", { topic: d.topic, id: d.id });
      return Promise.resolve({ kind: "dead" });
    }
    const ws = open[group.next++ % open.length]!;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        ws.terminate();
        resolve({ kind: "dead" });
      }, WRITE_MS);
      ws.send(microFrame(d), (err) => {
        clearTimeout(timer);
        if (err) this.o.log.warn("a /broker message could not be written to its WebSocket; dropped", { topic: d.topic, id: d.id, error: err.message });
        resolve(err ? { kind: "dead" } : { kind: "ack" });
      });
    });
  }

  #leave(key: string, group: Group, ws: WebSocket): void {
    this.#count -= 1;
    group.sockets = group.sockets.filter((s) => s !== ws);
    if (group.sockets.length > 0 || this.#groups.get(key) !== group) return;
    this.#groups.delete(key);
    this.#announce();
    void group.sub.then((s) => s.stop(0)).catch(() => undefined);
  }

  #announce(): void {
    this.o.announce?.([...new Set([...this.#groups.values()].map((g) => g.spec.topic))]);
  }

  /** micro's keep-alive: a socket that did not answer the last ping is cut. */
  #ping(): void {
    for (const g of this.#groups.values()) {
      for (const ws of g.sockets) {
        if (!this.#alive.has(ws)) {
          ws.terminate();
          continue;
        }
        this.#alive.delete(ws);
        ws.ping();
      }
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#pinger);
    const groups = [...this.#groups.values()];
    this.#groups.clear();
    const sockets = groups.flatMap((g) => g.sockets);
    for (const ws of sockets) ws.close(1001, "the sidecar is shutting down");
    // A client that does not answer the close handshake is cut after a moment, not ws's 30 s.
    const closed = Promise.all(sockets.map((ws) => (ws.readyState === ws.CLOSED ? undefined : new Promise((r) => ws.once("close", r)))));
    await withDeadline(closed.then(() => true), CLOSE_GRACE_MS, false);
    for (const ws of sockets) if (ws.readyState !== ws.CLOSED) ws.terminate();
    await Promise.all(groups.map((g) => g.sub.then((s) => s.stop(1_000)).catch(() => undefined)));
    this.#announce();
  }
}
