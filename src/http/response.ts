import type { IncomingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";

/** A response head with its body as a stream (an http.IncomingMessage is one). */
export interface StreamedResponse extends Readable {
  statusCode?: number | undefined;
  headers: IncomingHttpHeaders;
  whole?: undefined;
}

/** A response that arrived whole (a mesh frame, a NATS reply, an app's answer read in one go): its body is written at once, no stream made. */
export interface WholeResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  whole: Buffer;
}

export type UpstreamResponse = StreamedResponse | WholeResponse;

/** Throw an answer's body away (the call goes elsewhere). */
export function discard(upstream: UpstreamResponse): void {
  if (upstream.whole === undefined) upstream.resume();
}

/** The whole body of an answer, or null when it is larger than `limit` bytes (the stream is then destroyed). Rejects when the stream breaks off. */
export async function readUpstream(upstream: UpstreamResponse, limit: number): Promise<Buffer | null> {
  if (upstream.whole !== undefined) return upstream.whole.length > limit ? null : upstream.whole;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of upstream as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      upstream.destroy();
      return null;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}
