import type { IncomingMessage, ServerResponse } from "node:http";
import { SidecarError } from "../errors.js";
import { Deadline } from "../http/deadline.js";
import { endToEnd, H, requestIdOf } from "../http/headers.js";
import { pipeBody } from "../http/pipe.js";
import { sendError } from "../http/reply.js";
import type { Secret } from "../http/auth.js";
import type { Logger } from "../log.js";
import { neverReachedApp, type AppClient } from "./app-client.js";
import type { InboundGate, Refusal } from "./gate.js";
import { DELIVER_HEADER } from "../broker/local.js";
import { readBody } from "../http/body.js";
import { certifiedCaller } from "../tls/mesh.js";

export interface InboundOptions {
  /** The service this sidecar serves: calls for another one hit a stale record. */
  service: string;
  app: AppClient;
  gate: InboundGate;
  /** Default deadline for a call into the app when the caller sent none. */
  defaultTimeout: number;
  /** Local broker: hand a message a peer published to this node's subscriptions; how many took it. */
  deliveries?: ((topic: string, body: Buffer, headers: Record<string, string>) => number) | undefined;
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

export const MAX_TIMEOUT_MS = 10 * 60_000;
const TO_APP_DROP = new Set<string>([H.service, H.meshToken, "host"]);

/** inbound.allow: a 403 for a calling service not on the list, else undefined. */
export function checkAllowed(allow: readonly string[] | undefined, caller: unknown, service: string): SidecarError | undefined {
  if (allow === undefined || (typeof caller === "string" && allow.includes(caller))) return undefined;
  return new SidecarError("FORBIDDEN", `service ${JSON.stringify(caller ?? "(unknown)")} may not call '${service}' (inbound.allow)`);
}

/** The deadline a peer asked for (`x-sidecar-timeout`), else the default. */
export function inboundTimeout(value: unknown, fallback: number): number {
  const given = Number(value);
  return Number.isFinite(given) && given > 0 ? Math.min(given, MAX_TIMEOUT_MS) : fallback;
}

/**
 * The listener peer sidecars deliver calls to (DESIGN §1, §4): checks the call is for this
 * service and that the app takes it, then forwards it to the app and streams the answer back.
 * A call the app never saw is answered with `x-sidecar-refused` so the caller can try another node.
 */
export class InboundHandler {
  constructor(private readonly o: InboundOptions) {}

  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const requestId = requestIdOf(req);
    const refuse = (r: Refusal) =>
      sendError(res, new SidecarError(r.code, r.message, r.code === "OVERLOADED" ? { headers: { "retry-after": "1" } } : undefined), requestId, this.o.log, {
        [H.refused]: r.code,
        // A draining sidecar closes each connection it refuses on: the caller will not reuse it.
        ...(r.code === "SHUTTING_DOWN" ? { connection: "close" } : {}),
      });
    req.on("error", () => undefined);
    if (!this.o.mesh.accepts(req.headers[H.meshToken])) {
      return sendError(res, new SidecarError("UNAUTHORIZED", "a peer sidecar must send the mesh token (mesh.token)"), requestId, this.o.log);
    }
    const target = req.headers[H.service];
    if (target !== undefined && target !== this.o.service) {
      return refuse({ code: "MISDIRECTED", message: `this sidecar serves '${this.o.service}', not ${JSON.stringify(target)} (stale registry record)` });
    }
    const topic = req.headers[DELIVER_HEADER];
    if (typeof topic === "string" && this.o.deliveries) return this.#receive(topic, req, res, requestId, refuse);
    const denied = this.o.allow && checkAllowed(this.o.allow, this.o.mutualTls ? certifiedCaller(req.socket) : req.headers[H.caller], this.o.service);
    if (denied) return sendError(res, denied, requestId, this.o.log);
    const refusal = this.o.gate.enter();
    if (refusal) return refuse(refusal);
    this.#forward(req, res, requestId)
      .catch((err: unknown) => {
        if (neverReachedApp(err)) return sendError(res, err, requestId, this.o.log, { [H.refused]: "APP_UNREACHABLE" });
        sendError(res, err, requestId, this.o.log);
      })
      .finally(() => this.o.gate.leave());
  };

  /** A local-broker message from a peer: queue it for this node's subscriptions, 202. */
  #receive(topic: string, req: IncomingMessage, res: ServerResponse, requestId: string, refuse: (r: Refusal) => void): void {
    if (this.o.gate.draining) return refuse({ code: "SHUTTING_DOWN", message: `the sidecar of '${this.o.service}' is shutting down` });
    const deliveries = this.o.deliveries!;
    readBody(req, this.o.maxBody).then(
      (body) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string" && k !== DELIVER_HEADER) headers[k] = v;
        const accepted = deliveries(topic, body, headers);
        res.writeHead(202, { "content-type": "application/json", [H.requestId]: requestId }).end(JSON.stringify({ accepted }));
      },
      (err: unknown) => sendError(res, err, requestId, this.o.log),
    );
  }

  async #forward(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    const deadline = new Deadline(inboundTimeout(req.headers[H.timeout], this.o.defaultTimeout));
    const onClose = () => {
      if (!res.writableFinished) deadline.cancel();
    };
    res.once("close", onClose);
    const headers = endToEnd(req.headers, TO_APP_DROP);
    headers[H.requestId] = requestId;
    headers[H.timeout] = String(deadline.ms);
    try {
      const upstream = await this.o.app.send({ method: req.method ?? "GET", path: req.url ?? "/", headers, body: req, deadline });
      const back = endToEnd(upstream.headers);
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
