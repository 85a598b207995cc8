import type { IncomingMessage, ServerResponse } from "node:http";
import { SidecarError } from "../errors.js";
import { requestIdOf } from "../http/headers.js";
import { sendError } from "../http/reply.js";
import type { Logger } from "../log.js";
import type { EventHub } from "./hub.js";
import type { StampedEvent } from "./types.js";

/** GET /events streams open at once; the next one is refused (503 TOO_MANY_STREAMS, Retry-After). */
export const MAX_EVENT_STREAMS = 16;
/** A stream whose reader leaves this much unread for a second (or four times it at once) is ended; it resumes with Last-Event-ID. */
export const STREAM_BACKLOG_BYTES = 256 * 1024;
/** A comment line this often keeps proxies and idle timers from closing a quiet stream. */
const KEEPALIVE_MS = 15_000;

/** One event in the text/event-stream format: `id` is the event's seq, `event` its type. */
export function sseFrame(e: StampedEvent | { type: "lagged"; dropped: number }): string {
  const id = "seq" in e ? `id: ${e.seq}\n` : "";
  return `${id}event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;
}

/**
 * GET /events: the hub's events as Server-Sent Events (WHATWG HTML §9.2). A new stream first
 * sends the kept events (the last RECENT_EVENTS), or with `Last-Event-ID` only those after it
 * (and a `lagged` event if some were no longer kept), then each event as it happens. Streams end
 * when the sidecar stops listening. Bounded: MAX_EVENT_STREAMS at once, STREAM_BACKLOG_BYTES unread.
 */
export function eventStream(hub: EventHub, log: Logger, limits = { streams: MAX_EVENT_STREAMS, backlogBytes: STREAM_BACKLOG_BYTES }): { handle(req: IncomingMessage, res: ServerResponse): void; readonly open: number; endAll(): void } {
  let open = 0;
  const ends = new Set<() => void>();
  return {
    get open() {
      return open;
    },
    /** End every open stream (before the api listener closes: an open stream would hold it open). */
    endAll() {
      for (const end of [...ends]) end();
    },
    handle(req, res) {
      const requestId = requestIdOf(req);
      if (req.method !== "GET") return sendError(res, new SidecarError("METHOD_NOT_ALLOWED", `${req.method ?? ""} is not allowed on /events; use GET`, { headers: { allow: "GET" } }), requestId, log);
      if (open >= limits.streams) return sendError(res, new SidecarError("TOO_MANY_STREAMS", `this sidecar already serves ${limits.streams} GET /events streams`), requestId, log);
      const last = lastEventId(req);
      open += 1;
      res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", "x-accel-buffering": "no" });
      const { events, lagged } = hub.since(last);
      let text = "retry: 1000\n\n";
      if (lagged > 0 && last > 0) text += sseFrame({ type: "lagged", dropped: lagged });
      for (const e of events) text += sseFrame(e);
      res.write(text);
      const end = () => {
        cleanup();
        res.end();
      };
      // A burst written in one turn of the event loop (a registry replaying many nodes) is not a
      // slow reader: over the bound, the stream gets a second to drain below it; over four times
      // the bound, it is ended at once (memory is the bound that matters).
      let grace: NodeJS.Timeout | undefined;
      const behind = () => {
        log.warn("an events stream fell too far behind; ending it (its reader resumes with Last-Event-ID)", { backlogBytes: res.writableLength });
        end();
      };
      const write = (e: StampedEvent) => {
        const backlog = res.writableLength;
        if (backlog > 4 * limits.backlogBytes) return behind();
        if (backlog > limits.backlogBytes) grace ??= setTimeout(() => (res.writableLength > limits.backlogBytes ? behind() : (grace = undefined)), 1_000).unref();
        res.write(sseFrame(e));
      };
      ends.add(end);
      const unlisten = hub.listen(write);
      const unclose = hub.onClose(end);
      const keepalive = setInterval(() => res.write(": keep-alive\n\n"), KEEPALIVE_MS).unref();
      let cleaned = false;
      const cleanup = () => {
        if (cleaned) return;
        cleaned = true;
        open -= 1;
        ends.delete(end);
        unlisten();
        unclose();
        clearInterval(keepalive);
        clearTimeout(grace);
      };
      res.on("close", cleanup);
    },
  };
}

/** The Last-Event-ID header (or `?lastEventId=`), as a seq; 0 when absent or not a number. */
function lastEventId(req: IncomingMessage): number {
  let raw = req.headers["last-event-id"];
  if (raw === undefined) {
    const q = (req.url ?? "").indexOf("?");
    if (q !== -1) raw = new URLSearchParams((req.url ?? "").slice(q + 1)).get("lastEventId") ?? undefined;
  }
  const n = Number(Array.isArray(raw) ? raw[0] : raw);
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}
