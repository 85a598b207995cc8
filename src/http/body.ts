import type { IncomingMessage } from "node:http";
import { SidecarError } from "../errors.js";

/** Read a whole request body, refusing (413) past `limit` bytes without buffering the excess. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    return Promise.reject(tooLarge(limit));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.off("data", onData);
        req.resume();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    req.on("data", onData);
    req.once("end", () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)));
    req.once("error", (err) => reject(new SidecarError("INVALID_REQUEST", `the request body could not be read: ${err.message}`, { cause: err })));
  });
}

function tooLarge(limit: number): SidecarError {
  return new SidecarError("BODY_TOO_LARGE", `the request body is larger than api.maxBody (${limit} bytes)`);
}
