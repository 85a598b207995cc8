import { STATUS_CODES, type ServerResponse } from "node:http";
import type { SidecarError } from "../errors.js";
import { sendError } from "../http/reply.js";
import type { Logger } from "../log.js";

/** `micro.errors`: always micro's shape, never, or only for requests that look like micro's. */
export type MicroErrors = boolean | "auto";

/** Who answers, in micro's terms: its rpc handler, its api (path form), or its client (the call itself failed). */
export type MicroErrorId = "go.micro.rpc" | "go.micro.api" | "go.micro.client";

/** go-micro's error JSON (errors.Error): `{"id", "code", "detail", "status"}`, in that order. */
export function microErrorBody(id: MicroErrorId, e: SidecarError): string {
  return JSON.stringify({ id, code: e.status, detail: e.message, status: STATUS_CODES[e.status] ?? "" });
}

/** Does this request's error answer in micro's shape? */
export function wantsMicro(mode: MicroErrors, microStyle: boolean): boolean {
  return mode === true || (mode === "auto" && microStyle);
}

/**
 * Answer an error in our shape or micro's (per `micro.errors` and whether the request looked
 * like micro's); status, headers and logging are the same either way.
 */
export function replyError(res: ServerResponse, err: unknown, requestId: string, log: Logger, o: { mode: MicroErrors; microStyle: boolean; id: MicroErrorId }): void {
  if (!wantsMicro(o.mode, o.microStyle)) return sendError(res, err, requestId, log);
  const id = o.id;
  sendError(res, err, requestId, log, undefined, (e) => microErrorBody(id, e));
}
