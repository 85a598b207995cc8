import { randomFillSync } from "node:crypto";

/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/, Level 1 and Level 2's tracestate
 * limits). The sidecar is its own span: it keeps the caller's trace id and flags, issues a new
 * parent id, and forwards `tracestate` as it came (it has no key of its own), once validated.
 */

/** The version-00 layout of the first 55 characters, which every version shares (§3.2.4). */
const V00 = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const V00_LENGTH = 55;
const ZERO_TRACE = "0".repeat(32);
const ZERO_PARENT = "0".repeat(16);
/** Flags this version defines: sampled (Level 1) and random trace id (Level 2); others MUST be zeroed. */
const KNOWN_FLAGS = 0x03;

/** Most list members a tracestate may have (§3.3.1.1); one more and the whole header is dropped. */
export const TRACESTATE_MAX_MEMBERS = 32;
/** Longest tracestate this sidecar forwards, in characters (commas included): the spec's "at least 512". */
export const TRACESTATE_MAX_LENGTH = 512;
/** Members longer than this are the first to go when a tracestate is truncated (§3.3.1.5). */
const TRACESTATE_LONG_MEMBER = 128;
/** key = simple-key / multi-tenant-key (simple-key up to 256 chars; tenant up to 241 "@" system up to 14). */
const KEY = /^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})$/;
/** value = 0*255(chr) nblk-chr: printable ASCII but ',' and '=', 1 to 256 chars, not ending in a space. */
const VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;
/** HTTP's optional white space around list members. */
const OWS = /^[ \t]+|[ \t]+$/g;

/**
 * Random bytes as hex, from a pool refilled 4 KiB at a time: one getrandom() per ~170 hops
 * instead of one or two per request (randomBytes showed up at 4% of a loaded sidecar's CPU).
 */
const pool = Buffer.alloc(4096);
let offset = pool.length;
function randomHex(bytes: number): string {
  if (offset + bytes > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const hex = pool.toString("hex", offset, offset + bytes);
  offset += bytes;
  return hex;
}

export interface Traceparent {
  traceId: string;
  parentId: string;
  /** Two lowercase hex digits, unknown flags already zeroed. */
  flags: string;
}

/**
 * A `traceparent` header value, or undefined when it is invalid (§3.2, §4.3). A version above 00
 * is read as 00 (its first 55 characters), provided the next character, if any, is '-'; version
 * ff, upper-case hex, an all-zero trace id or parent id make it invalid. Two header fields (which
 * node:http joins with ", ") are invalid too: the join is never a valid value.
 */
export function parseTraceparent(value: unknown): Traceparent | undefined {
  if (typeof value !== "string") return undefined;
  // The common case first, with no copy: a version-00 header, exactly as sidecars and SDKs send it.
  if (value.length === V00_LENGTH && value.charCodeAt(0) === 0x30 && value.charCodeAt(1) === 0x30) {
    const m = V00.exec(value);
    if (m && (m[4] === "01" || m[4] === "00")) return m[2] === ZERO_TRACE || m[3] === ZERO_PARENT ? undefined : { traceId: m[2]!, parentId: m[3]!, flags: m[4] };
  }
  const s = value.replace(OWS, "");
  if (s.length < V00_LENGTH) return undefined;
  const version = s.slice(0, 2);
  if (version === "ff") return undefined;
  if (version === "00" ? s.length !== V00_LENGTH : s.length > V00_LENGTH && s[V00_LENGTH] !== "-") return undefined;
  const m = V00.exec(s.slice(0, V00_LENGTH));
  if (!m || m[2] === ZERO_TRACE || m[3] === ZERO_PARENT) return undefined;
  const flags = parseInt(m[4]!, 16) & KNOWN_FLAGS;
  return { traceId: m[2]!, parentId: m[3]!, flags: flags.toString(16).padStart(2, "0") };
}

/**
 * A `tracestate` to forward, or undefined when there is none to forward (§3.3). Several header
 * fields are one list (RFC 9110 §5.3: node:http joins them with ", "; an array is joined here).
 * Empty members are skipped and white space around members removed. An invalid key or value,
 * a duplicated key, or more than 32 members make the whole header invalid: it is dropped (Level
 * 2, §3.3.1.1-3.3.1.4). Past 512 characters whole members are removed: those longer than 128
 * characters first, then from the end (§3.3.1.5).
 */
export function parseTracestate(value: unknown): string | undefined {
  const joined = Array.isArray(value) ? value.join(",") : value;
  if (typeof joined !== "string") return undefined;
  const members: string[] = [];
  const keys = new Set<string>();
  for (const raw of joined.split(",")) {
    const member = raw.replace(OWS, "");
    if (member === "") continue;
    const eq = member.indexOf("=");
    if (eq === -1) return undefined;
    const key = member.slice(0, eq);
    if (!KEY.test(key) || !VALUE.test(member.slice(eq + 1)) || keys.has(key)) return undefined;
    keys.add(key);
    members.push(member);
    if (members.length > TRACESTATE_MAX_MEMBERS) return undefined;
  }
  truncate(members);
  return members.length > 0 ? members.join(",") : undefined;
}

/** Remove whole members until the list fits TRACESTATE_MAX_LENGTH: long ones first, then from the end. */
function truncate(members: string[]): void {
  let length = members.reduce((n, m) => n + m.length, 0) + Math.max(0, members.length - 1);
  for (let i = members.length - 1; i >= 0 && length > TRACESTATE_MAX_LENGTH; i--) {
    if (members[i]!.length <= TRACESTATE_LONG_MEMBER) continue;
    length -= members[i]!.length + (members.length > 1 ? 1 : 0);
    members.splice(i, 1);
  }
  while (length > TRACESTATE_MAX_LENGTH && members.length > 0) {
    length -= members.pop()!.length + (members.length > 0 ? 1 : 0);
  }
}

export interface TraceContext {
  traceparent: string;
  /** Absent when the caller sent none, an invalid one, or no valid traceparent. */
  tracestate?: string;
}

/**
 * The trace context for the next hop (§4): with a valid `traceparent`, its trace id and flags
 * are kept, the parent id is this sidecar's new span, and a valid `tracestate` travels on. An
 * invalid or missing traceparent starts a new trace, and its tracestate is dropped: a vendor
 * must not forward tracestate it cannot tie to a trace (§3.3).
 */
export function nextTraceContext(traceparent: unknown, tracestate?: unknown): TraceContext {
  const parent = parseTraceparent(traceparent);
  if (!parent) return { traceparent: `00-${randomHex(16)}-${randomHex(8)}-01` };
  const next = `00-${parent.traceId}-${randomHex(8)}-${parent.flags}`;
  const state = parseTracestate(tracestate);
  return state === undefined ? { traceparent: next } : { traceparent: next, tracestate: state };
}

/** The `traceparent` for the next hop alone (see nextTraceContext). */
export function nextTraceparent(incoming: unknown): string {
  return nextTraceContext(incoming).traceparent;
}
