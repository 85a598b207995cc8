import { SidecarError } from "../errors.js";
import { show } from "../names.js";

/**
 * The /rpc envelopes micro's rpc handler took besides ours (micro/micro internal/handler/rpc.go):
 * form-encoded fields, field names in any case (Go decodes JSON into a struct case-insensitively),
 * and `request` as a JSON-encoded string. Only reached once a cheap check on the common path
 * (content type, a missing lowercase field, a string request) says the request is not ours.
 */

const FORM = /^application\/x-www-form-urlencoded[ \t]*(;|$)/i;
const FORM_LENGTH = "application/x-www-form-urlencoded".length;

/** Is the body form-encoded? (A length check first: application/json never gets to the regex.) */
export function isForm(contentType: string | undefined): boolean {
  return contentType !== undefined && contentType.length >= FORM_LENGTH && FORM.test(contentType);
}

export interface MicroEnvelope {
  service?: unknown;
  method?: unknown;
  address?: unknown;
  request?: unknown;
  /** The key the request was found under in the JSON body (its bytes are then passed on as they are). */
  requestKey?: string;
}

/** `service=…&method=…&address=…&request={…}` (micro's README); `endpoint` is accepted for `method` as on JSON. */
export function formEnvelope(body: Buffer): MicroEnvelope {
  const form = new URLSearchParams(body.toString("utf8"));
  const pick = (name: string) => form.get(name) ?? undefined;
  const request = pick("request");
  return { service: pick("service"), method: pick("method") ?? pick("endpoint"), address: pick("address"), request: request === "" ? undefined : request };
}

const MICRO_FIELDS = new Set(["service", "method", "address", "request"]);

/**
 * micro's fields spelt in another case (`Service`, `METHOD`); undefined when there are none.
 * Like Go's decoder, the last of several spellings wins.
 */
export function foldedFields(e: Record<string, unknown>): MicroEnvelope | undefined {
  let found: MicroEnvelope | undefined;
  for (const key of Object.keys(e)) {
    const lower = key.toLowerCase();
    if (lower === key || !MICRO_FIELDS.has(lower)) continue;
    found ??= {};
    if (lower === "request") found.requestKey = key;
    found[lower as "service" | "method" | "address" | "request"] = e[key];
  }
  return found;
}

/** A request sent as a JSON-encoded string (micro decoded it): its text, once checked to be JSON. */
export function jsonStringRequest(request: string, where: string): Buffer {
  try {
    JSON.parse(request);
  } catch (err) {
    throw new SidecarError("INVALID_REQUEST", `${where} must be JSON (an object, or a string holding JSON-encoded text), got ${show(request)}: ${(err as Error).message}`);
  }
  return Buffer.from(request);
}
