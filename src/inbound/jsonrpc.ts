import type { OutgoingHttpHeaders } from "node:http";
import { SidecarError } from "../errors.js";
import { memberSpan } from "../api/envelope.js";
import type { Deadline } from "../http/deadline.js";
import { readUpstream } from "../http/response.js";
import type { AppClient } from "./app-client.js";

/** How an RPC-style call reaches an app: `http` (POST to the endpoint's path) or `jsonrpc` (go-micro's JSON-RPC on `/`). */
export type Protocol = "http" | "jsonrpc";

/** Largest JSON-RPC answer read from an app: it is buffered to take its `result` out. */
export const MAX_JSONRPC_ANSWER = 16 * 1024 * 1024;

/** The answer handed back to the calling sidecar. */
export interface JsonRpcAnswer {
  status: number;
  headers: OutgoingHttpHeaders;
  body: Buffer;
}

let lastId = 0;

/**
 * One RPC-style call to an app speaking go-micro's JSON-RPC (as micro's example servers do): POST /
 * with `{"method": "Say.Hello", "params": [<request>], "id": <n>}`; the app answers
 * `{"id", "result", "error"}`. The `result`'s bytes become the answer body (200, JSON), as the app
 * wrote them; a non-null `error` (a string as Go's net/rpc writes it, or an object with a `message`
 * as JSON-RPC 2.0 and Python's json-rpc write it) is `500 APP_ERROR` with the app's message; any
 * other answer is `502 BAD_APP_RESPONSE`.
 */
export async function callJsonRpc(app: AppClient, service: string, method: string, body: Buffer, headers: OutgoingHttpHeaders, deadline: Deadline): Promise<JsonRpcAnswer> {
  const params = body.length === 0 ? Buffer.from("{}") : body;
  try {
    JSON.parse(params.toString("utf8"));
  } catch (err) {
    throw new SidecarError("BAD_JSON", `the request for ${method} must be JSON to reach a JSON-RPC app: ${(err as Error).message}`);
  }
  lastId = lastId >= Number.MAX_SAFE_INTEGER ? 1 : lastId + 1;
  const id = lastId;
  const payload = Buffer.concat([Buffer.from(`{"method":${JSON.stringify(method)},"params":[`), params, Buffer.from(`],"id":${id}}`)]);
  const { "content-length": _length, "content-type": _type, ...rest } = headers;
  const upstream = await app.send({
    method: "POST",
    path: "/",
    headers: { ...rest, "content-type": "application/json", "content-length": payload.length },
    body: payload,
    deadline,
  });
  let answer: Buffer | null;
  try {
    answer = await readUpstream(upstream, MAX_JSONRPC_ANSWER);
  } catch (err) {
    if (deadline.expired) throw new SidecarError("TIMEOUT", `the app of '${service}' did not answer within ${deadline.ms}ms`, { cause: err });
    throw new SidecarError("APP_UNREACHABLE", `the JSON-RPC answer of the app of '${service}' broke off: ${(err as Error).message}`, { cause: err });
  }
  if (answer === null) throw new SidecarError("RESPONSE_TOO_LARGE", `the JSON-RPC answer of the app of '${service}' is larger than ${MAX_JSONRPC_ANSWER} bytes`);
  const bad = (why: string) => new SidecarError("BAD_APP_RESPONSE", `the app of '${service}' (JSON-RPC) answered ${method} with HTTP ${upstream.statusCode ?? "?"} and ${why}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(answer.toString("utf8"));
  } catch {
    throw bad("a body that is not JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw bad("JSON that is not a JSON-RPC response object");
  const r = parsed as Record<string, unknown>;
  if (r.id !== undefined && r.id !== null && String(r.id) !== String(id)) throw bad(`the id ${JSON.stringify(r.id)} instead of ${id}`);
  if (r.error !== undefined && r.error !== null) throw new SidecarError("APP_ERROR", errorMessage(r.error));
  if (!("result" in r)) throw bad("neither a result nor an error");
  const span = memberSpan(answer, "result");
  const result = span ? answer.subarray(span.start, span.end) : Buffer.from(JSON.stringify(r.result));
  return { status: 200, headers: { "content-type": "application/json", "content-length": result.length }, body: result };
}

/** The app's own words: net/rpc sends a string, JSON-RPC 2.0 an object with `message` (and `code`). */
function errorMessage(error: unknown): string {
  if (typeof error === "string") return error;
  if (typeof error === "object" && error !== null && typeof (error as { message?: unknown }).message === "string") return (error as { message: string }).message;
  return JSON.stringify(error).slice(0, 1024);
}
