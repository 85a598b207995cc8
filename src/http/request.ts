import http, { type IncomingMessage } from "node:http";
import type { Deadline } from "./deadline.js";

/**
 * An outgoing request bound to a call's deadline: cancelling the call destroys the request, or,
 * once the head arrived, the response (and with it the connection). `response` rejects with the
 * raw socket error; callers classify it.
 */
export function requestWithDeadline(
  options: http.RequestOptions,
  deadline: Deadline,
  send: (options: http.RequestOptions) => http.ClientRequest = http.request,
): { req: http.ClientRequest; response: Promise<IncomingMessage> } {
  const req = send(options);
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    const off = deadline.onCancel(() => req.destroy(new Error("call cancelled")));
    req.once("response", (res) => {
      off();
      deadline.onCancel(() => res.destroy());
      resolve(res);
    });
    req.once("error", (err) => {
      off();
      reject(err);
    });
  });
  return { req, response };
}
