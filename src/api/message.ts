import { DEAD } from "../broker/relay.js";
import type { Broker, PublishResult } from "../broker/types.js";
import { SidecarError } from "../errors.js";
import { INTERNAL } from "../http/headers.js";
import { nextTraceparent } from "../http/trace.js";

/** What every publish edge (`/publish`, micro's `/broker`) does to a message before the broker has it. */

/**
 * Most bytes of headers (names and values) one message may carry. Each message is held with its
 * headers in every queue and stream it passes through; 8 KiB leaves room for trace context,
 * CloudEvents attributes and an app's own headers, and stops a 1-byte body from costing 16 KiB.
 */
export const MESSAGE_HEADER_LIMIT = 8 * 1024;

/**
 * `x-sidecar-*` names the sidecars set themselves on a message or its delivery (INTERNAL, and the
 * dead-letter headers): an app that sent one on a publish could pose as another service, a broker
 * hop, a retry or a dead letter, so it is refused rather than dropped without a word.
 */
export const RESERVED_MESSAGE_HEADERS: ReadonlySet<string> = new Set([...INTERNAL, ...Object.values(DEAD)]);

/** 400 when an app sends one of the sidecars' own header names with a publish. */
export function checkNotReserved(name: string): void {
  if (RESERVED_MESSAGE_HEADERS.has(name)) throw new SidecarError("INVALID_REQUEST", `header ${name} is set by the sidecar, not by an app: remove it from the publish`);
}

/** 431 when the headers a message would carry are over MESSAGE_HEADER_LIMIT. */
export function checkHeaderBytes(headers: Record<string, string>): void {
  let bytes = 0;
  for (const [k, v] of Object.entries(headers)) bytes += k.length + Buffer.byteLength(v);
  if (bytes > MESSAGE_HEADER_LIMIT) {
    throw new SidecarError("MESSAGE_HEADERS_TOO_LARGE", `the message's headers (ce-* or a structured event's attributes, x-sidecar-*, content-type, trace context) take ${bytes} bytes; at most ${MESSAGE_HEADER_LIMIT} travel with a message`);
  }
}

/** A binary-mode CloudEvent's attributes the publisher left out, and a trace for a message that has none. */
export function fillCloudEvents(headers: Record<string, string>, topic: string, service: string): void {
  headers["ce-source"] ??= `/sidecar/${service}`;
  headers["ce-type"] ??= topic;
  headers["ce-specversion"] ??= "1.0";
  headers["ce-time"] ??= new Date().toISOString();
}

/** Hand a message to the broker: 503 BROKER_UNAVAILABLE at once while disconnected (never a hang), or when it refuses. */
export async function sendToBroker(broker: Broker, topic: string, body: Buffer, headers: Record<string, string>): Promise<PublishResult> {
  headers.traceparent ??= nextTraceparent(undefined);
  if (broker.status() !== "connected") {
    throw new SidecarError("BROKER_UNAVAILABLE", `the ${broker.kind} broker is ${broker.status()}; publish again once it is back`);
  }
  try {
    return await broker.publish(topic, body, headers);
  } catch (err) {
    throw new SidecarError("BROKER_UNAVAILABLE", `the broker did not take the message for '${topic}': ${(err as Error).message}`, { cause: err });
  }
}
