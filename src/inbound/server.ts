import type { IncomingMessage, ServerResponse } from "node:http";
import { SidecarError } from "../errors.js";
import { Deadline, MAX_TIMEOUT_MS } from "../http/deadline.js";
import { publicHeaders, H, requestIdOf, toApp } from "../http/headers.js";
import { pipeBody } from "../http/pipe.js";
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

  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const requestId = requestIdOf(req);
    const refuse = (r: Refusal) =>
      sendError(res, new SidecarError(r.code, r.message), requestId, this.o.log, {
        [H.refused]: r.code,
        // A draining sidecar closes each connection it refuses on: the caller will not reuse it.
        ...(r.code === "SHUTTING_DOWN" ? { connection: "close" } : {}),
      });
    req.on("error", () => undefined);
    if (!this.o.mesh.accepts(req.headers[H.meshToken])) {
      return sendError(res, new SidecarError("UNAUTHORIZED", "a peer sidecar must send the mesh token (mesh.token)"), requestId, this.o.log);
    }
    const target = req.headers[H.service];
    const to = this.#target(target, req.headers[H.node]);
    if (!to) {
      return refuse({ code: "MISDIRECTED", message: `this sidecar serves '${this.o.service}', not ${JSON.stringify(target)} (stale registry record)` });
    }
    const caller = vouchedCaller({ mutualTls: this.o.mutualTls ?? false, meshToken: this.o.mesh.required }, certifiedCaller(req.socket), req.headers[H.caller]);
    const topic = req.headers[H.deliver];
    // Deliveries obey the allow list like calls: the publisher is the caller.
    const denied = checkAllowed(this.o.allow, caller, to.service, typeof topic === "string" ? "publish to" : "call");
    if (denied) {
      if (typeof topic === "string") this.o.log.warn("delivery refused (inbound.allow)", { topic, publisher: caller ?? "(unknown)", requestId });
      return sendError(res, denied, requestId, this.o.log);
    }
    if (typeof topic === "string" && this.o.deliveries) return this.#receive(topic, caller, req, res, requestId, refuse);
    const refusal = to.gate.enter();
    if (refusal) return refuse(refusal);
    this.#forward(req, res, caller, requestId, to)
      .catch((err: unknown) => {
        if (neverReachedApp(err)) return sendError(res, err, requestId, this.o.log, { [H.refused]: "APP_UNREACHABLE" });
        sendError(res, err, requestId, this.o.log);
      })
      .finally(() => to.gate.leave());
  };

  /** A local-broker message from a peer: queue it for this node's subscriptions, 202. */
  #receive(topic: string, caller: string | undefined, req: IncomingMessage, res: ServerResponse, requestId: string, refuse: (r: Refusal) => void): void {
    if (this.o.gate.draining) return refuse({ code: "SHUTTING_DOWN", message: `the sidecar of '${this.o.service}' is shutting down` });
    const deliveries = this.o.deliveries!;
    readBody(req, this.o.maxBody).then(
      (body) => {
        // No internal header survives (the mesh token, a claimed caller): the publisher travels apart, vouched for.
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(toApp(req.headers, undefined, NOT_MESSAGE))) if (typeof v === "string") headers[k] = v;
        const accepted = deliveries(topic, body, headers, caller);
        res.writeHead(202, { "content-type": "application/json", [H.requestId]: requestId }).end(JSON.stringify({ accepted }));
      },
      (err: unknown) => sendError(res, err, requestId, this.o.log),
    );
  }

  async #forward(req: IncomingMessage, res: ServerResponse, caller: string | undefined, requestId: string, to: InboundTarget): Promise<void> {
    const deadline = new Deadline(inboundTimeout(req.headers[H.timeout], this.o.defaultTimeout));
    const onClose = () => {
      if (!res.writableFinished) deadline.cancel();
    };
    res.once("close", onClose);
    const headers = toApp(req.headers, caller, TO_APP_DROP);
    headers[H.requestId] = requestId;
    headers[H.timeout] = String(deadline.ms);
    try {
      const method = req.headers[H.rpc];
      if (to.protocol === "jsonrpc" && typeof method === "string") {
        // An RPC-style call for a JSON-RPC app: the request is small and buffered (api.maxBody at the caller).
        const answer = await callJsonRpc(to.app, to.service, method, await readBody(req, this.o.maxBody), headers, deadline);
        answer.headers[H.requestId] = requestId;
        res.writeHead(answer.status, answer.headers).end(answer.body);
        return;
      }
      const upstream = await to.app.send({ method: req.method ?? "GET", path: req.url ?? "/", headers, body: req, deadline });
      // The app's own x-sidecar-refused (or any internal header) must not steer the calling sidecar.
      const back = publicHeaders(upstream.headers);
      back[H.requestId] = requestId;
      res.writeHead(upstream.statusCode ?? 502, back);
      await pipeBody(upstream, res);
    } catch (err) {
      // The calling sidecar went away (its caller gave up): nobody is left to answer.
      if (deadline.cancelled && !deadline.expired) return;
      throw err;
    } finally {
      deadline.done();
      res.off("close", onClose);
    }
  }
}
