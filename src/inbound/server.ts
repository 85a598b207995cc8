import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { SidecarError } from "../errors.js";
import { Deadline, MAX_TIMEOUT_MS } from "../http/deadline.js";
import { publicHeaders, H, requestIdOf, toApp } from "../http/headers.js";
import { pipeBody } from "../http/pipe.js";
import type { StreamedResponse } from "../http/response.js";
import { sendError } from "../http/reply.js";
import type { Secret } from "../http/auth.js";
import type { Logger } from "../log.js";
import { neverReachedApp, type AppClient } from "./app-client.js";
import type { InboundGate, Refusal } from "./gate.js";
import { readBody } from "../http/body.js";
import { certifiedCaller } from "../tls/mesh.js";
import { isValidName } from "../names.js";
import { callJsonRpc, type Protocol } from "./jsonrpc.js";

/** Where an inbound call goes: this sidecar's own app, or one it fronts (POST /registry). */
export interface InboundTarget {
  service: string;
  app: AppClient;
  gate: InboundGate;
  /** How RPC-style calls (marked x-sidecar-rpc) reach the app. */
  protocol: Protocol;
}

/** The apps a sidecar fronts besides its own: by node id (x-sidecar-node), else (no node named) by service. */
export interface FrontedTargets {
  find(service: string, node: string | undefined): InboundTarget | undefined;
}

export interface InboundOptions {
  /** The service this sidecar serves: calls for another one hit a stale record. */
  service: string;
  app: AppClient;
  gate: InboundGate;
  /** app.protocol: how RPC-style calls reach the own app. Default http. */
  protocol?: Protocol;
  /** Apps fronted through POST /registry. */
  fronted?: FrontedTargets | undefined;
  /** Default deadline for a call into the app when the caller sent none. */
  defaultTimeout: number;
  /** Local broker: hand a message a peer published (`caller`: the publisher, when vouched for) to this node's subscriptions; how many took it. */
  deliveries?: ((topic: string, body: Buffer, headers: Record<string, string>, caller: string | undefined) => number) | undefined;
  /** Largest message the local broker accepts from a peer. */
  maxBody: number;
  /** mesh.token: required from peers when set. */
  mesh: Secret;
  /** inbound.allow: the calling services let in (all when undefined). */
  allow?: readonly string[] | undefined;
  /** Mutual TLS: the caller is the service its client certificate names, not what its header claims. */
  mutualTls?: boolean;
  log: Logger;
}

/** A call from a peer sidecar, whichever way it came: an HTTP/1.1 request or a mesh stream. */
export interface PeerCall {
  method: string;
  /** Path and query on the app. */
  path: string;
  /** Tagged (tagHeaders): the request id and traceparent of this hop are set. */
  headers: IncomingHttpHeaders;
  /** A mesh stream's whole body, or the HTTP request to stream it from. */
  body: Buffer | IncomingMessage;
  /** The CN of the peer's client certificate, under mutual TLS. */
  certified: string | undefined;
  requestId: string;
}

/** How the answer to a PeerCall goes back. */
export interface PeerReply {
  /** Run `fn` if the peer goes away before the answer is complete; returns a function removing it. */
  onAbort(fn: () => void): () => void;
  /** A whole answer. */
  whole(status: number, headers: OutgoingHttpHeaders, body: Buffer): void;
  /** The app's answer, streamed; resolves once written. */
  stream(status: number, headers: OutgoingHttpHeaders, upstream: StreamedResponse): Promise<void>;
  /** An error answer (JSON body, logged), or the answer broken off when its head is already out. */
  error(err: unknown, extraHeaders?: Record<string, string>): void;
}

const TO_APP_DROP = new Set<string>(["host"]);
/** What a delivery keeps of the peer's request: its message headers (the relay picks what the app gets). */
const NOT_MESSAGE = new Set<string>(["host", "content-length"]);

/**
 * The calling (or publishing) service as this sidecar can vouch for it: the CN of its client
 * certificate under mutual TLS; else the name it sent, when the mesh token proved the peer a
 * member of the mesh; else undefined. Without either, a name is only a claim anyone reaching the
 * listener could make: it is neither checked against inbound.allow (which then refuses) nor shown to the app.
 */
export function vouchedCaller(auth: { mutualTls: boolean; meshToken: boolean }, certified: string | undefined, claimed: unknown): string | undefined {
  if (auth.mutualTls) return certified;
  return auth.meshToken && isValidName(claimed) ? claimed : undefined;
}

/** inbound.allow: a 403 for a calling (or publishing) service not on the list, else undefined. */
export function checkAllowed(allow: readonly string[] | undefined, caller: string | undefined, service: string, what = "call"): SidecarError | undefined {
  if (allow === undefined || (caller !== undefined && allow.includes(caller))) return undefined;
  return new SidecarError("FORBIDDEN", `service ${JSON.stringify(caller ?? "(unknown)")} may not ${what} '${service}' (inbound.allow)`);
}

/** The deadline a peer asked for (`x-sidecar-timeout`), else the default. */
export function inboundTimeout(value: unknown, fallback: number): number {
  const given = Number(value);
  return Number.isFinite(given) && given > 0 ? Math.min(given, MAX_TIMEOUT_MS) : fallback;
}

/**
 * The listener peer sidecars deliver calls to: checks the call is for this
 * service and that the app takes it, then forwards it to the app and streams the answer back.
 * A call the app never saw is answered with `x-sidecar-refused` so the caller can try another node.
 */
export class InboundHandler {
  readonly #own: InboundTarget;

  constructor(private readonly o: InboundOptions) {
    this.#own = { service: o.service, app: o.app, gate: o.gate, protocol: o.protocol ?? "http" };
  }

  /** The app a peer's call is for: a fronted node it names (or, naming none, of its service), else the own app when the service is ours. */
  #target(service: string | string[] | undefined, node: string | string[] | undefined): InboundTarget | undefined {
    if (service === undefined) return this.#own;
    if (typeof service !== "string") return undefined;
    const named = typeof node === "string" ? node : undefined;
    // A call naming no node (a requester that is not a sidecar of ours) for our own service is the own app's.
    const fronted = named === undefined && service === this.o.service ? undefined : this.o.fronted?.find(service, named);
    if (fronted) return fronted;
    return service === this.o.service ? this.#own : undefined;
  }

  /** The HTTP/1.1 inbound listener's handler. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    req.on("error", () => undefined);
    const requestId = requestIdOf(req);
    this.serve({ method: req.method ?? "GET", path: req.url ?? "/", headers: req.headers, body: req, certified: this.o.mutualTls ? certifiedCaller(req.socket) : undefined, requestId }, httpReply(res, requestId, this.o.log));
  };

  /** A peer's call, however it came (an HTTP/1.1 request, a mesh stream): checked, then handed to the app (or the local broker). */
  serve(call: PeerCall, reply: PeerReply): void {
    const { requestId } = call;
    const refuse = (r: Refusal) =>
      reply.error(new SidecarError(r.code, r.message), {
        [H.refused]: r.code,
        // A draining sidecar closes each connection it refuses on: the caller will not reuse it.
        ...(r.code === "SHUTTING_DOWN" ? { connection: "close" } : {}),
      });
    if (!this.o.mesh.accepts(call.headers[H.meshToken])) {
      return reply.error(new SidecarError("UNAUTHORIZED", "a peer sidecar must send the mesh token (mesh.token)"));
    }
    const target = call.headers[H.service];
    const to = this.#target(target, call.headers[H.node]);
    if (!to) {
      return refuse({ code: "MISDIRECTED", message: `this sidecar serves '${this.o.service}', not ${JSON.stringify(target)} (stale registry record)` });
    }
    const caller = vouchedCaller({ mutualTls: this.o.mutualTls ?? false, meshToken: this.o.mesh.required }, call.certified, call.headers[H.caller]);
    const topic = call.headers[H.deliver];
    // Deliveries obey the allow list like calls: the publisher is the caller.
    const denied = checkAllowed(this.o.allow, caller, to.service, typeof topic === "string" ? "publish to" : "call");
    if (denied) {
      if (typeof topic === "string") this.o.log.warn("delivery refused (inbound.allow)", { topic, publisher: caller ?? "(unknown)", requestId });
      return reply.error(denied);
    }
    if (typeof topic === "string" && this.o.deliveries) return this.#receive(topic, caller, call, reply, refuse);
    const refusal = to.gate.enter();
    if (refusal) return refuse(refusal);
    this.#forward(call, reply, caller, to)
      .catch((err: unknown) => {
        if (neverReachedApp(err)) return reply.error(err, { [H.refused]: "APP_UNREACHABLE" });
        reply.error(err);
      })
      .finally(() => to.gate.leave());
  }

  /** A local-broker message from a peer: queue it for this node's subscriptions, 202. */
  #receive(topic: string, caller: string | undefined, call: PeerCall, reply: PeerReply, refuse: (r: Refusal) => void): void {
    if (this.o.gate.draining) return refuse({ code: "SHUTTING_DOWN", message: `the sidecar of '${this.o.service}' is shutting down` });
    const deliveries = this.o.deliveries!;
    bodyOf(call, this.o.maxBody).then(
      (body) => {
        // No internal header survives (the mesh token, a claimed caller): the publisher travels apart, vouched for.
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(toApp(call.headers, undefined, NOT_MESSAGE))) if (typeof v === "string") headers[k] = v;
        const accepted = deliveries(topic, body, headers, caller);
        reply.whole(202, { "content-type": "application/json", [H.requestId]: call.requestId }, Buffer.from(JSON.stringify({ accepted })));
      },
      (err: unknown) => reply.error(err),
    );
  }

  async #forward(call: PeerCall, reply: PeerReply, caller: string | undefined, to: InboundTarget): Promise<void> {
    const { requestId } = call;
    const deadline = new Deadline(inboundTimeout(call.headers[H.timeout], this.o.defaultTimeout));
    const offAbort = reply.onAbort(() => deadline.cancel());
    const headers = toApp(call.headers, caller, TO_APP_DROP);
    headers[H.requestId] = requestId;
    headers[H.timeout] = String(deadline.ms);
    try {
      const method = call.headers[H.rpc];
      if (to.protocol === "jsonrpc" && typeof method === "string") {
        // An RPC-style call for a JSON-RPC app: the request is small and buffered (api.maxBody at the caller).
        const answer = await callJsonRpc(to.app, to.service, method, await bodyOf(call, this.o.maxBody), headers, deadline);
        answer.headers[H.requestId] = requestId;
        reply.whole(answer.status, answer.headers, answer.body);
        return;
      }
      const upstream = await to.app.send({ method: call.method, path: call.path, headers, body: call.body, deadline });
      // The app's own x-sidecar-refused (or any internal header) must not steer the calling sidecar.
      const back = publicHeaders(upstream.headers);
      back[H.requestId] = requestId;
      if (upstream.whole !== undefined) reply.whole(upstream.statusCode, back, upstream.whole);
      else await reply.stream(upstream.statusCode ?? 502, back, upstream);
    } catch (err) {
      // The calling sidecar went away (its caller gave up): nobody is left to answer.
      if (deadline.cancelled && !deadline.expired) return;
      throw err;
    } finally {
      deadline.done();
      offAbort();
    }
  }
}

/** The body of a peer's call, whole (413 past `limit`). */
function bodyOf(call: PeerCall, limit: number): Promise<Buffer> {
  if (!Buffer.isBuffer(call.body)) return readBody(call.body, limit);
  if (call.body.length > limit) return Promise.reject(new SidecarError("BODY_TOO_LARGE", `the request body is larger than api.maxBody (${limit} bytes)`));
  return Promise.resolve(call.body);
}

/** Answers over the HTTP/1.1 listener. */
function httpReply(res: ServerResponse, requestId: string, log: Logger): PeerReply {
  return {
    onAbort(fn) {
      const onClose = () => {
        if (!res.writableFinished) fn();
      };
      res.once("close", onClose);
      return () => res.off("close", onClose);
    },
    whole(status, headers, body) {
      res.writeHead(status, headers).end(body);
    },
    async stream(status, headers, upstream) {
      res.writeHead(status, headers);
      await pipeBody(upstream, res);
    },
    error(err, extraHeaders) {
      sendError(res, err, requestId, log, extraHeaders);
    },
  };
}
