import { SidecarError } from "../errors.js";
import { show } from "../names.js";

/**
 * CloudEvents 1.0 at the publish edge (spec: cloudevents/spec `spec.md` and
 * `bindings/http-protocol-binding.md`). A publish is either a structured event (the body is the
 * event, `application/cloudevents+json`) whose own `id`, `source` and `type` are kept, or a binary
 * one (any body, attributes in `ce-*` headers) whose attribute names must be valid: an app's
 * CloudEvents SDK refuses an event with a bad one, so it is refused here, where the publisher can
 * still hear about it, rather than dead-lettered at every subscriber.
 */

/** "CloudEvents attribute names MUST consist of lower-case letters ('a' to 'z') or digits ('0' to '9')" (spec §Attribute Naming Convention). */
const ATTRIBUTE_NAME = /^[a-z0-9]+$/;
/** RFC 3339 `date-time`, the spec's Timestamp type. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
const REQUIRED = ["id", "source", "type"] as const;
/** The only spec version the sidecar speaks. */
export const SPEC_VERSION = "1.0";

/** Is this content type a structured-mode CloudEvent (`application/cloudevents+json`, any parameters)? */
export function isStructured(contentType: string | undefined): boolean {
  return contentType !== undefined && mediaType(contentType) === "application/cloudevents+json";
}

/** Is it a batch (`application/cloudevents-batch+json`), which a publish of one message cannot carry? */
export function isBatch(contentType: string | undefined): boolean {
  return contentType !== undefined && mediaType(contentType) === "application/cloudevents-batch+json";
}

function mediaType(contentType: string): string {
  return contentType.split(";")[0]!.trim().toLowerCase();
}

const invalid = (message: string) => new SidecarError("INVALID_CLOUDEVENT", message);

/** The attributes of a structured event, checked: its `ce-*` equivalents for the message's headers. */
export function structuredAttributes(body: Buffer): Record<string, string> {
  let event: unknown;
  try {
    event = JSON.parse(body.toString("utf8"));
  } catch (err) {
    throw invalid(`the body is not a structured CloudEvent (application/cloudevents+json): it is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof event !== "object" || event === null || Array.isArray(event)) {
    throw invalid(`a structured CloudEvent is a JSON object, got ${show(event)}`);
  }
  const e = event as Record<string, unknown>;
  if (e.specversion !== SPEC_VERSION) throw invalid(`specversion must be "${SPEC_VERSION}", got ${show(e.specversion)}`);
  for (const name of REQUIRED) {
    if (typeof e[name] !== "string" || e[name] === "") throw invalid(`the required attribute '${name}' must be a non-empty string, got ${show(e[name])}`);
  }
  if ("data" in e && "data_base64" in e) throw invalid("an event has 'data' or 'data_base64', not both");
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(e)) {
    if (name === "data" || name === "data_base64") continue;
    if (!ATTRIBUTE_NAME.test(name)) throw invalid(`attribute name ${show(name)} is not a CloudEvents attribute name (lower-case letters a-z and digits only)`);
    if (value === null) continue; // "an attribute with a null value is treated as absent" (JSON format §2.2)
    if (typeof value === "string") out[`ce-${name}`] = value;
    else if (typeof value === "boolean" || (typeof value === "number" && Number.isInteger(value))) out[`ce-${name}`] = String(value);
    else throw invalid(`attribute '${name}' must be a string, a boolean or an integer, got ${show(value)}`);
  }
  checkTime(out["ce-time"]);
  return out;
}

/** Binary mode: every `ce-*` header names a valid attribute, and the ones the spec types are well formed. */
export function checkBinaryHeaders(headers: Record<string, string>): void {
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith("ce-")) continue;
    const attribute = name.slice(3);
    if (!ATTRIBUTE_NAME.test(attribute)) {
      throw invalid(`header ${show(name)} does not name a CloudEvents attribute: after 'ce-' only lower-case letters a-z and digits are allowed`);
    }
    if (attribute === "datacontenttype") throw invalid("in binary mode the data's content type is the Content-Type header, not ce-datacontenttype (HTTP binding §3.1.1)");
    if (attribute === "specversion" && value !== SPEC_VERSION) throw invalid(`ce-specversion must be "${SPEC_VERSION}", got ${show(value)}`);
    if ((REQUIRED as readonly string[]).includes(attribute) && value === "") throw invalid(`${name} must not be empty`);
  }
  checkTime(headers["ce-time"]);
}

function checkTime(time: string | undefined): void {
  if (time !== undefined && (!RFC3339.test(time) || Number.isNaN(Date.parse(time)))) throw invalid(`time must be an RFC 3339 timestamp, got ${show(time)}`);
}
