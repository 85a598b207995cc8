import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import { createRequire } from "node:module";

/** node:http's own header checks (the ones ClientRequest runs), so a request we write is one node would have written. */
const common = createRequire(import.meta.url)("_http_common") as {
  _checkIsHttpToken(name: string): boolean;
  _checkInvalidHeaderChar(value: string): boolean;
};

/** Fields node:http keeps only the first of (IncomingMessage#_addHeaderLine): a second one is dropped, as there. */
const FIRST_WINS = new Set([
  "content-type", "content-length", "user-agent", "referer", "host", "authorization", "proxy-authorization",
  "if-modified-since", "if-unmodified-since", "from", "location", "max-forwards", "retry-after", "etag",
  "last-modified", "server", "age", "expires",
]);

/**
 * A response head's raw name/value list as node:http's IncomingMessage#headers shows it: names
 * lowercased, set-cookie an array, cookie joined with "; ", the FIRST_WINS fields first only, any
 * other repeated field joined with ", ". Callers see the same object whichever client read it.
 */
export function incomingHeaders(raw: readonly string[]): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    const had = out[name];
    if (had === undefined) out[name] = name === "set-cookie" ? [value] : value;
    else if (name === "set-cookie") (had as string[]).push(value);
    else if (FIRST_WINS.has(name)) continue;
    else out[name] = `${had as string}${name === "cookie" ? "; " : ", "}${value}`;
  }
  return out;
}

/** A header name or value node:http would refuse to send (ERR_INVALID_HTTP_TOKEN / ERR_INVALID_CHAR). */
export class InvalidHeaderError extends Error {
  constructor(
    message: string,
    readonly code: "ERR_INVALID_HTTP_TOKEN" | "ERR_INVALID_CHAR" | "ERR_UNESCAPED_CHARACTERS",
  ) {
    super(message);
    this.name = "InvalidHeaderError";
  }
}

/** How the request's body is framed on the wire. */
export type Framing = { length: number } | "chunked" | "none";

/** Request-target characters node:http refuses (ClientRequest's INVALID_PATH_REGEX). */
const BAD_PATH = /[^\u0021-\u00ff]/;

/**
 * The request head, as latin1 text. `headers` must not carry framing (content-length,
 * transfer-encoding: the caller's framing is replaced by `framing`), nor hop-by-hop fields
 * beyond what is written here. Throws InvalidHeaderError for what node:http would refuse.
 */
export function requestHead(method: string, path: string, authority: string, headers: OutgoingHttpHeaders, framing: Framing): string {
  if (!common._checkIsHttpToken(method)) throw new InvalidHeaderError(`method ${JSON.stringify(method)} is not a token`, "ERR_INVALID_HTTP_TOKEN");
  if (BAD_PATH.test(path)) throw new InvalidHeaderError("the request path contains unescaped characters", "ERR_UNESCAPED_CHARACTERS");
  let host = authority;
  let fields = "";
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    if (lower === "content-length" || lower === "transfer-encoding" || lower === "connection") continue;
    // A Host the caller set is kept, as node:http keeps it.
    if (lower === "host" && !Array.isArray(value)) {
      host = String(value);
      if (common._checkInvalidHeaderChar(host)) throw new InvalidHeaderError("the value of header 'host' contains invalid characters", "ERR_INVALID_CHAR");
      continue;
    }
    if (!common._checkIsHttpToken(name)) throw new InvalidHeaderError(`header name ${JSON.stringify(name)} is not a token`, "ERR_INVALID_HTTP_TOKEN");
    if (Array.isArray(value)) for (const v of value) fields += line(name, v);
    else fields += line(name, value);
  }
  if (framing === "chunked") fields += "Transfer-Encoding: chunked\r\n";
  else if (framing !== "none") fields += `Content-Length: ${framing.length}\r\n`;
  return `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: keep-alive\r\n${fields}\r\n`;
}

function line(name: string, value: string | number): string {
  const v = String(value);
  if (common._checkInvalidHeaderChar(v)) throw new InvalidHeaderError(`the value of header '${name}' contains invalid characters`, "ERR_INVALID_CHAR");
  return `${name}: ${v}\r\n`;
}
