import type { IncomingMessage, ServerResponse } from "node:http";
import type { Broker } from "../broker/types.js";
import { isValidSubject } from "../subjects.js";
import { SidecarError } from "../errors.js";
import { readBody } from "../http/body.js";
import { H, requestIdOf } from "../http/headers.js";
import { sendError } from "../http/reply.js";
import { checkHeaderBytes, fillCloudEvents, checkNotReserved, sendToBroker } from "./message.js";
import type { Logger } from "../log.js";
import { show } from "../names.js";
import { checkBinaryHeaders, isBatch, isStructured, structuredAttributes } from "../broker/cloudevents.js";

export interface PublishOptions {
  broker: Broker;
  service: string;
  maxBody: number;
  log: Logger;
}

/** Request headers that travel with a published message: ce-*, the app's own x-sidecar-*, content type and trace context. */
function carried(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (typeof v !== "string") continue;
    if (k.startsWith("ce-") || (k.startsWith("x-sidecar-") && k !== H.timeout && k !== H.retries) || k === "content-type" || k === "traceparent" || k === "tracestate") {
      checkNotReserved(k);
      out[k] = v;
    }
  }
  return out;
}

/** The topic of /publish/{topic}, percent-decoded; 400 when the escape is malformed (%ZZ). */
function topicOf(url: string): string {
  const q = url.indexOf("?");
  const raw = (q === -1 ? url : url.slice(0, q)).slice("/publish/".length);
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new SidecarError("INVALID_TOPIC", `topic ${show(raw)} is not valid percent-encoding`);
  }
}

/**
 * `POST /publish/{topic}`: any body and content type → 202 once the broker has it
 * (for a topic a JetStream stream covers: once stored). `ce-*` and `x-sidecar-*` headers travel
 * with the message; `ce-id` is the message id (assigned when absent) and also JetStream's
 * de-duplication id, so a retried publish is stored once.
 */
export function publishHandler(o: PublishOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const handle = async (req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> => {
    if (req.method !== "POST") throw new SidecarError("METHOD_NOT_ALLOWED", `${req.method} is not allowed on /publish; use POST`, { headers: { allow: "POST" } });
    const topic = topicOf(req.url ?? "");
    if (!isValidSubject(topic, false)) {
      throw new SidecarError("INVALID_TOPIC", `topic ${show(topic)} is not a NATS subject to publish on (dot-separated tokens of printable characters, no spaces or control characters, no wildcards)`);
    }
    const headers = carried(req);
    const contentType = headers["content-type"];
    if (isBatch(contentType)) throw new SidecarError("INVALID_CLOUDEVENT", "a batch of CloudEvents (application/cloudevents-batch+json) is not one message: publish each event on its own");
    const structured = isStructured(contentType);
    if (structured && Object.keys(headers).some((k) => k.startsWith("ce-"))) {
      throw new SidecarError("INVALID_CLOUDEVENT", "a structured CloudEvent (application/cloudevents+json) carries its attributes in the body: send no ce-* headers with it");
    }
    if (!structured) checkBinaryHeaders(headers);
    checkHeaderBytes(headers);
    const body = await readBody(req, o.maxBody);
    if (structured) {
      // The event's own attributes, as headers: its id is the message id (and the de-duplication key).
      Object.assign(headers, structuredAttributes(body));
      checkHeaderBytes(headers);
    } else {
      fillCloudEvents(headers, topic, o.service);
    }
    const result = await sendToBroker(o.broker, topic, body, headers);
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
