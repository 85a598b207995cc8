import type { OutgoingHttpHeaders } from "node:http";
import type { Msg, Subscription } from "@nats-io/transport-node";
import { errorBody, SidecarError, toSidecarError } from "../errors.js";
import { nextTraceContext } from "../http/trace.js";
import { Deadline } from "../http/deadline.js";
import { readUpstream } from "../http/response.js";
import { publicHeaders, H, toApp } from "../http/headers.js";
import type { Logger } from "../log.js";
import { closedError, type Component } from "../lifecycle/component.js";
import type { NatsClient } from "../nats/connect.js";
import { fromNats, toNats } from "../nats/headers.js";
import { maxBody, NH, nodeSubject, serviceSubject } from "../transport/nats.js";
import { neverReachedApp, type AppClient } from "./app-client.js";
import type { InboundGate } from "./gate.js";
import { checkAllowed, inboundTimeout, vouchedCaller } from "./server.js";
import type { Secret } from "../http/auth.js";
import { callJsonRpc, type Protocol } from "./jsonrpc.js";

export interface NatsInboundOptions {
  service: string;
  nodeId: string;
  app: AppClient;
  gate: InboundGate;
  /** app.protocol: how RPC-style calls (x-sidecar-rpc) reach the app. Default http. */
  protocol?: Protocol;
  defaultTimeout: number;
  mesh: Secret;
  allow?: readonly string[] | undefined;
  log: Logger;
}

const TO_APP_DROP = new Set<string>(["host", "content-length"]);
/** NATS computes the length of a reply itself. */
const TO_PEER_DROP = new Set<string>(["content-length"]);

/**
 * The callee side of the NATS transport: answers requests on `sidecar.node.<id>` and, in queue
 * group `<service>`, on `sidecar.rpc.<service>`, by calling the app. Subscribed only while the
 * app is registered, so an unhealthy app gets no NATS traffic either.
 */
export class NatsInbound implements Component {
  #subs: Subscription[] = [];
  #closing: Promise<void> | undefined;

  constructor(private readonly client: NatsClient, private readonly o: NatsInboundOptions) {}

  /**
   * Subscribe (a no-op while subscribed). start() and stop() follow the app's health, so a
   * stopped NatsInbound starts again; a closed one does not: start() rejects with CLOSED.
   */
  start(): Promise<void> {
    if (this.#closing) return Promise.reject(closedError("NATS inbound"));
    this.#subscribe();
    return Promise.resolve();
  }

  #subscribe(): void {
    if (this.#subs.length > 0) return;
    const callback = (err: Error | null, msg: Msg): void => {
      if (err) this.o.log.warn("NATS inbound subscription error", { error: err.message });
      else void this.#handle(msg);
    };
    this.#subs = [
      this.client.subscribe(nodeSubject(this.o.nodeId), { callback }),
      this.client.subscribe(serviceSubject(this.o.service), { queue: this.o.service, callback }),
    ];
  }

  /** Stop taking requests; those being handled still get their answer. */
  async stop(): Promise<void> {
    const subs = this.#subs;
    this.#subs = [];
    await Promise.all(subs.map((s) => s.drain().catch(() => undefined)));
  }

  /** stop() for good. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.stop();
    return this.#closing;
  }

  #reply(msg: Msg, status: number, headers: OutgoingHttpHeaders, body: Uint8Array): void {
    msg.respond(body, { headers: toNats(headers, { [NH.status]: String(status) }) });
  }

  #fail(msg: Msg, err: SidecarError, refused: boolean, requestId: string): void {
    const body = Buffer.from(errorBody(err.code, err.message, requestId));
    this.#reply(msg, err.status, { "content-type": "application/json", ...err.headers, ...(refused ? { [H.refused]: err.code } : {}) }, body);
  }

  async #handle(msg: Msg): Promise<void> {
    if (!msg.reply) return;
    const h = msg.headers;
    const requestId = h?.get(H.requestId) || "";
    if (!this.o.mesh.accepts(h?.get(H.meshToken) || undefined)) {
      return this.#fail(msg, new SidecarError("UNAUTHORIZED", "a peer sidecar must send the mesh token (mesh.token)"), false, requestId);
    }
    // No client certificate travels with a NATS message: only the mesh token vouches for the caller's name.
    const caller = vouchedCaller({ mutualTls: false, meshToken: this.o.mesh.required }, undefined, h?.get(H.caller) || undefined);
    const denied = checkAllowed(this.o.allow, caller, this.o.service);
    if (denied) return this.#fail(msg, denied, false, requestId);
    const refusal = this.o.gate.enter();
    if (refusal) {
      const err = new SidecarError(refusal.code, refusal.message);
      return this.#fail(msg, err, true, requestId);
    }
    const deadline = new Deadline(inboundTimeout(h?.get(H.timeout), this.o.defaultTimeout));
    const headers = toApp(fromNats(h), caller, TO_APP_DROP);
    const { traceparent, tracestate } = nextTraceContext(headers.traceparent, headers.tracestate);
    try {
      headers[H.timeout] = String(deadline.ms);
      headers.traceparent = traceparent;
      if (tracestate === undefined) delete headers.tracestate;
      else headers.tracestate = tracestate;
      const rpcMethod = h?.get(H.rpc);
      if (this.o.protocol === "jsonrpc" && rpcMethod) {
        const answer = await callJsonRpc(this.o.app, this.o.service, rpcMethod, Buffer.from(msg.data), headers, deadline);
        const { "content-length": _length, ...answerHeaders } = answer.headers;
        return this.#reply(msg, answer.status, answerHeaders, answer.body);
      }
      const upstream = await this.o.app.send({ method: h?.get(NH.method) || "POST", path: h?.get(NH.path) || "/", headers, body: Buffer.from(msg.data), deadline });
      const limit = maxBody(this.client);
      const body = await readUpstream(upstream, limit);
      if (body === null) throw new SidecarError("RESPONSE_TOO_LARGE", `the app's response is larger than the NATS server's max payload allows (${limit} bytes)`);
      // The app's own x-sidecar-refused (or any internal header) must not steer the calling sidecar.
      this.#reply(msg, upstream.statusCode ?? 502, publicHeaders(upstream.headers, TO_PEER_DROP), body);
    } catch (err) {
      const e = toSidecarError(err);
      if (e.status >= 500) this.o.log.warn("NATS call into the app failed", { code: e.code, error: e.message, requestId, traceparent });
      this.#fail(msg, e, neverReachedApp(err), requestId);
    } finally {
      deadline.done();
      this.o.gate.leave();
    }
  }
}
