import { STATUS_CODES, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { errorBody, toSidecarError, type ErrorCode, type SidecarError } from "../errors.js";
import type { Logger } from "../log.js";
import { H, requestFields } from "./headers.js";

/** Answer `text` whole, with `headers` besides the content type and length. */
export function sendText(res: ServerResponse, status: number, contentType: string, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": contentType, "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Answer `value` as a JSON document, with `headers` besides the content type and length. */
export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  sendText(res, status, "application/json; charset=utf-8", JSON.stringify(value), headers);
}

/**
 * Answer with the JSON error body and log it: 5xx as warnings, 4xx at debug
 * (a caller's mistake is the caller's to see, not an operator's page). `render` writes another
 * body shape (micro's, src/micro/errors.ts).
 */
export function sendError(res: ServerResponse, err: unknown, requestId: string, log: Logger, extraHeaders?: Record<string, string>, render?: (e: SidecarError) => string): void {
  const e = logError(err, requestId, log, requestFields(res.req));
  if (res.headersSent) {
    res.destroy(e);
    return;
  }
  const body = render ? render(e) : errorBody(e.code, e.message, requestId);
  // Answering before the request body was read (413, a refusal): close the connection rather
  // than leave the client's upload and its next request to share it.
  const unread = res.req !== undefined && !res.req.complete;
  if (unread) res.req.resume();
  res.writeHead(e.status, {
    ...(unread ? { connection: "close" } : {}),
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    [H.requestId]: requestId,
    ...e.headers,
    ...extraHeaders,
  });
  res.end(body);
}

/** Log an error answer (5xx as a warning, 4xx at debug, INTERNAL with its stack); the error, as a SidecarError. */
export function logError(err: unknown, requestId: string, log: Logger, request: { requestId?: string; traceparent?: string }): SidecarError {
  const e = toSidecarError(err);
  const fields = { code: e.code, status: e.status, ...request, requestId, error: e.message };
  if (e.code === "INTERNAL") log.error("internal error", { ...fields, stack: (e.cause as Error | undefined)?.stack });
  else if (e.status >= 500) log.warn("call failed", fields);
  else log.debug("request refused", fields);
  return e;
}

/**
 * The JSON error written straight to a socket that has no ServerResponse (a request node:http
 * could not parse, a refused WebSocket upgrade), then the connection closed.
 */
export function endSocketWithError(socket: Duplex, status: number, code: ErrorCode, message: string, requestId?: string): void {
  const body = errorBody(code, message, requestId);
  const id = requestId ? `${H.requestId}: ${requestId}\r\n` : "";
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? code}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${id}connection: close\r\n\r\n${body}`);
}
