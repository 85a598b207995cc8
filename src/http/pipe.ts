import type { ServerResponse } from "node:http";
import type { Readable } from "node:stream";

/**
 * Stream an upstream response body into our response; resolves when it is fully written.
 * Hand-written rather than stream.pipeline: pipeline allocates an AbortController per call and
 * aborts it on completion (a DOMException each time), measurable on the hot path.
 */
export function pipeBody(upstream: Readable, res: ServerResponse): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      res.destroy(err);
      reject(err);
    };
    upstream.once("error", onError);
    res.once("close", () => {
      if (res.writableFinished) return;
      upstream.destroy();
      reject(new Error("the response closed before the body was written"));
    });
    res.once("finish", () => {
      upstream.off("error", onError);
      resolve();
    });
    upstream.pipe(res);
  });
}

/** Write a whole body as the end of our response; resolves once written (as pipeBody does). */
export function endBody(body: Buffer, res: ServerResponse): Promise<void> {
  return new Promise((resolve, reject) => {
    res.once("close", () => {
      if (!res.writableFinished) reject(new Error("the response closed before the body was written"));
    });
    res.once("finish", resolve);
    res.end(body);
  });
}
