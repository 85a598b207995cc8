import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { checkHeaderBytes, fillCloudEvents, checkNotReserved, sendToBroker } from "../api/message.js";
import type { Broker } from "../broker/types.js";
import { isValidSubject } from "../subjects.js";
import { SidecarError } from "../errors.js";
import { readBody } from "../http/body.js";
import { endToEnd, H, requestIdOf } from "../http/headers.js";
import { endSocketWithError, sendError, sendJson } from "../http/reply.js";
import type { Logger } from "../log.js";
import { Lifecycle, type Component } from "../lifecycle/component.js";
import { show } from "../names.js";
import { SocketGroups, type WsServer } from "./broker-socket.js";

/**
 * Limits of micro's `/broker`: its read limit for a frame a client publishes (16384 bytes, micro's
 * `readLimit`), and how many WebSocket subscribers one sidecar holds (each holds a subscription).
 */
export const MICRO_BROKER_LIMITS = { frameBytes: 16_384, connections: 256 } as const;

/** Request headers that never become message headers: the connection's own, and the api token. */
const NOT_CARRIED = new Set([H.requestId, "host", "content-length", "authorization", "cookie", "expect", "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol"]);

export interface MicroBrokerOptions {
  broker: Broker;
  service: string;
  maxBody: number;
  log: Logger;
  /** The embedded broker finds subscribers in node records: called with this node's WebSocket topics when they change. */
  announce?: ((topics: string[]) => void) | undefined;
}

/** Answer an upgrade request with the JSON error instead of a WebSocket, and close the connection. */
export function refuseUpgrade(socket: Duplex, err: SidecarError, requestId: string, log?: Logger): void {
  socket.on("error", () => undefined);
  log?.debug("WebSocket upgrade refused", { code: err.code, status: err.status, requestId, error: err.message });
  endSocketWithError(socket, err.status, err.code, err.message, requestId);
}

/** `topic` (and `queue`) of micro's `/broker?topic=...&queue=...`. */
function query(req: IncomingMessage): { topic: string; queue: string | undefined } {
  const url = new URL(req.url ?? "/", "http://sidecar");
  const topic = url.searchParams.get("topic") ?? "";
  const queue = url.searchParams.get("queue") || undefined;
  if (topic === "") throw new SidecarError("INVALID_TOPIC", "Topic not specified: /broker needs ?topic=");
  return { topic, queue };
}

/** The headers of a micro publish: every request header, as micro did (`Header[k] = strings.Join(v, ", ")`), but the connection's and the token. */
function messageHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(endToEnd(req.headers, NOT_CARRIED))) {
    checkNotReserved(k);
    out[k] = Array.isArray(v) ? v.join(", ") : String(v);
  }
  return out;
}

/**
 * micro's `/broker` (micro/micro `internal/handler/broker.go`, go-api's broker handler):
 * `POST /broker?topic=foo` publishes the body with the request's headers as message headers;
 * `GET /broker?topic=foo&queue=q` upgraded to a WebSocket streams every message as go-micro's
 * `broker.Message` in JSON (`{"Header": {...}, "Body": "<base64>"}`, what Go's json.Marshal
 * writes for it), and publishes each frame the client sends, with the upgrade request's
 * Content-Type (default text/plain). The `ws` module is loaded on the first upgrade only.
 */
export class MicroBroker implements Component {
  readonly #lifecycle = new Lifecycle("micro /broker", { close: () => this.#close() });
  #groups: SocketGroups | undefined;
  #wss: Promise<WsServer> | undefined;
  #closed = false;
  /** Connections accepted for an upgrade and not closed yet (the bound counts these). */
  #held = 0;

  constructor(private readonly o: MicroBrokerOptions) {}

  /** A plain HTTP request to /broker: POST publishes; GET without an upgrade is refused with a hint. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const requestId = requestIdOf(req);
    this.#publish(req, res).catch((err: unknown) => sendError(res, err, requestId, this.o.log));
  };

  async #publish(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method === "GET") throw new SidecarError("INVALID_REQUEST", "GET /broker subscribes over a WebSocket: send the upgrade headers (Connection: Upgrade, Upgrade: websocket)");
    if (req.method !== "POST") throw new SidecarError("METHOD_NOT_ALLOWED", `${req.method} is not allowed on /broker; POST publishes, GET with a WebSocket upgrade subscribes`, { headers: { allow: "GET, POST" } });
    const { topic } = query(req);
    if (!isValidSubject(topic, false)) throw new SidecarError("INVALID_TOPIC", `topic ${show(topic)} is not a NATS subject to publish on (dot-separated tokens of printable characters, no spaces or control characters, no wildcards)`);
    const headers = messageHeaders(req);
    checkHeaderBytes(headers);
    const body = await readBody(req, this.o.maxBody);
    fillCloudEvents(headers, topic, this.o.service);
    const result = await sendToBroker(this.o.broker, topic, body, headers);
    // micro answered 200 with no body; the id and topic cost a micro client nothing.
    sendJson(res, 200, { id: result.id, topic, stored: result.stored, ...(result.notTakenBy ? { notTakenBy: result.notTakenBy } : {}) }, { [H.requestId]: requestIdOf(req) });
  }

  /** An upgrade request (the api listener's `upgrade` event) for /broker: subscribe over a WebSocket. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const refuse = (err: SidecarError) => refuseUpgrade(socket, err, requestIdOf(req), this.o.log);
    let topic: string;
    let queue: string | undefined;
    try {
      if (req.method !== "GET") throw new SidecarError("METHOD_NOT_ALLOWED", `a WebSocket upgrade on /broker must be a GET, not ${req.method}`);
      ({ topic, queue } = query(req));
      if (!isValidSubject(topic, true)) throw new SidecarError("INVALID_TOPIC", `topic ${show(topic)} is not a NATS subject (dot-separated tokens; '*' and a final '>' allowed)`);
      if (queue !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(queue)) throw new SidecarError("INVALID_REQUEST", `queue ${show(queue)} must be 1-64 letters, digits, '.', '_' or '-'`);
      if (this.#closed) throw new SidecarError("SHUTTING_DOWN", "the sidecar is shutting down");
      if (this.#held >= MICRO_BROKER_LIMITS.connections) {
        throw new SidecarError("OVERLOADED", `this sidecar already holds ${MICRO_BROKER_LIMITS.connections} /broker WebSocket subscribers`);
      }
    } catch (err) {
      return refuse(err as SidecarError);
    }
    // The slot is taken now, not once the handshake is done, so that upgrades arriving together
    // cannot pass the bound; it is given back when the connection closes, whatever happened on it.
    this.#held += 1;
    socket.once("close", () => (this.#held -= 1));
    const contentType = typeof req.headers["content-type"] === "string" ? req.headers["content-type"] : "text/plain";
    void this.#server().then(
      (wss) => {
        if (this.#closed) return refuse(new SidecarError("SHUTTING_DOWN", "the sidecar is shutting down"));
        wss.handleUpgrade(req, socket, head, (ws) => {
          // A frame over the limit, a bad frame, a reset: ws emits 'error' and closes the socket
          // (1009 for a large frame); unheard, it would be an uncaught exception that ends the sidecar.
          ws.on("error", (err) => this.o.log.debug("a /broker WebSocket failed", { topic, queue, error: err.message }));
          this.#groups!.join(ws, { topic, queue: queue ?? `ws-${randomUUID()}`, shared: queue !== undefined, contentType }).catch((err: unknown) => {
            this.o.log.warn("a /broker WebSocket subscriber could not subscribe", { topic, queue, error: (err as Error).message });
            ws.close(1011, "cannot subscribe");
          });
        });
      },
      (err: unknown) => refuse(new SidecarError("INTERNAL", `the WebSocket module did not load: ${(err as Error).message}`, { cause: err })),
    );
  }

  #server(): Promise<WsServer> {
    this.#wss ??= import("ws").then(({ WebSocketServer }) => {
      const wss = new WebSocketServer({ noServer: true, maxPayload: MICRO_BROKER_LIMITS.frameBytes });
      this.#groups = new SocketGroups({
        broker: this.o.broker,
        log: this.o.log,
        announce: this.o.announce,
        publish: async (topic, body, contentType) => {
          const headers: Record<string, string> = { "content-type": contentType };
          fillCloudEvents(headers, topic, this.o.service);
          await sendToBroker(this.o.broker, topic, body, headers);
        },
      });
      return wss;
    });
    return this.#wss;
  }

  /** WebSocket connections held now (subscribed, or finishing their handshake). */
  get connections(): number {
    return this.#held;
  }

  /** Nothing to open: WebSockets come through upgrade(). After close() it rejects with CLOSED. */
  start(): Promise<void> {
    return this.#lifecycle.start();
  }

  /** Close every WebSocket (1001, going away) and its subscription. Idempotent. */
  close(): Promise<void> {
    return this.#lifecycle.close();
  }

  async #close(): Promise<void> {
    this.#closed = true;
    await this.#groups?.close();
    if (this.#wss) (await this.#wss).close();
  }
}
