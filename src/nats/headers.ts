import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";

/** HTTP headers → NATS message headers (multi-valued headers appended one by one). */
export function toNats(h: OutgoingHttpHeaders | IncomingHttpHeaders, extra: Record<string, string> = {}): MsgHdrs {
  const out = natsHeaders();
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const one of v) out.append(k, String(one));
    else out.append(k, String(v));
  }
  for (const [k, v] of Object.entries(extra)) out.set(k, v);
  return out;
}

/** NATS message headers → HTTP headers (lower-case names; repeated ones as arrays), minus `drop`. */
export function fromNats(h: MsgHdrs | undefined, drop: ReadonlySet<string> = new Set()): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  if (!h) return out;
  for (const [k, values] of h) {
    const key = k.toLowerCase();
    if (drop.has(key)) continue;
    out[key] = values.length === 1 ? values[0] : (values as string[]);
  }
  return out;
}
