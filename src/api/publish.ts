import type { IncomingMessage, ServerResponse } from "node:http";
import { isValidSubject, type Broker } from "../broker/types.js";
import { SidecarError } from "../errors.js";
import { readBody } from "../http/body.js";
import { H, requestIdOf } from "../http/headers.js";
import { sendError } from "../http/reply.js";
import { nextTraceparent } from "../http/trace.js";
import type { Logger } from "../log.js";
import { show } from "../names.js";

export interface PublishOptions {
  broker: Broker;
  service: string;
  maxBody: number;
  log: Logger;
}

/** Request headers that travel with a published message. */
function carried(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (typeof v !== "string") continue;
    if (k.startsWith("ce-") || (k.startsWith("x-sidecar-") && k !== H.timeout && k !== H.retries) || k === "content-type" || k === "traceparent" || k === "tracestate") out[k] = v;
  }
  return out;
}

/**
 * `POST /publish/{topic}` (DESIGN §5): any body and content type → 202 once the broker has it
 * (for a topic a JetStream stream covers: once stored). `ce-*` and `x-sidecar-*` headers travel
 * with the message; `ce-id` is the message id (assigned when absent) and also JetStream's
 * de-duplication id, so a retried publish is stored once.
 */
export function publishHandler(o: PublishOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const handle = async (req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> => {
    if (req.method !== "POST") throw new SidecarError("METHOD_NOT_ALLOWED", `${req.method} is not allowed on /publish; use POST`, { headers: { allow: "POST" } });
    const url = req.url ?? "";
    const q = url.indexOf("?");
    const topic = decodeURIComponent((q === -1 ? url : url.slice(0, q)).slice("/publish/".length));
    if (!isValidSubject(topic, false)) {
      throw new SidecarError("INVALID_TOPIC", `topic ${show(topic)} is not a NATS subject to publish on (dot-separated tokens of printable characters, no spaces, no wildcards)`);
    }
    const body = await readBody(req, o.maxBody);
    const headers = carried(req);
    headers["ce-source"] ??= `/sidecar/${o.service}`;
    headers["ce-type"] ??= topic;
    headers["ce-specversion"] ??= "1.0";
    headers["ce-time"] ??= new Date().toISOString();
    headers.traceparent ??= nextTraceparent(undefined);
    // Fail fast while disconnected: a publish must not hang until the client's timeout.
    if (o.broker.status() !== "connected") {
      throw new SidecarError("BROKER_UNAVAILABLE", `the ${o.broker.kind} broker is ${o.broker.status()}; publish again once it is back`, { headers: { "retry-after": "1" } });
    }
    let result;
    try {
      result = await o.broker.publish(topic, body, headers);
    } catch (err) {
      throw new SidecarError("BROKER_UNAVAILABLE", `the broker did not take the message for '${topic}': ${(err as Error).message}`, { cause: err, headers: { "retry-after": "1" } });
    }
    // Still 202 (the broker has it, and other services may have taken it), but not silently lost.
    const text = JSON.stringify({ id: result.id, topic, stored: result.stored, ...(result.stream ? { stream: result.stream } : {}), ...(result.notTakenBy ? { notTakenBy: result.notTakenBy } : {}) });
    res.writeHead(202, { "content-type": "application/json", "content-length": Buffer.byteLength(text), [H.requestId]: requestId });
    res.end(text);
  };
  return (req, res) => {
    const requestId = requestIdOf(req);
    handle(req, res, requestId).catch((err: unknown) => sendError(res, err, requestId, o.log));
  };
}
