/**
 * A message as a stream entry, and Redis's replies read back (RESP2 shapes, with Buffers: the
 * body is bytes). Fields: `id` (the ce-id), `headers` (JSON), `body` (raw).
 */

export type Fields = Buffer[];
/** A stream entry: its id and fields; fields are null when the entry was trimmed while pending. */
export type Entry = [id: string, fields: Fields | null];

export function encodeEntry(id: string, headers: Record<string, string>, body: Buffer): (string | Buffer)[] {
  return ["id", id, "headers", JSON.stringify(headers), "body", body];
}

/** The message in an entry's fields; an entry another producer wrote (no `body`) arrives as its fields in JSON. */
export function decodeEntry(entryId: string, fields: Fields, key: string): { id: string; headers: Record<string, string>; body: Buffer } {
  const f = new Map<string, Buffer>();
  for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i]!.toString(), fields[i + 1]!);
  let headers: Record<string, string> = {};
  try {
    const parsed: unknown = JSON.parse(f.get("headers")?.toString() ?? "{}");
    if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
      for (const [k, v] of Object.entries(parsed)) if (typeof v === "string") headers[k] = v;
    }
  } catch {
    headers = {};
  }
  let body = f.get("body");
  if (body === undefined) {
    body = Buffer.from(JSON.stringify(Object.fromEntries([...f].map(([k, v]) => [k, v.toString()]))));
    headers["content-type"] ??= "application/json";
  }
  const id = f.get("id")?.toString() || headers["ce-id"] || `${key}:${entryId}`;
  return { id, headers, body };
}

const str = (v: unknown): string => (Buffer.isBuffer(v) ? v.toString() : String(v));

/** XREADGROUP's reply: [[key, [[id, fields], ...]]], or null when the block timed out. */
export function readReply(reply: unknown): Entry[] {
  if (!Array.isArray(reply) || reply.length === 0) return [];
  const [, entries] = reply[0] as [unknown, unknown];
  return entriesOf(entries);
}

function entriesOf(entries: unknown): Entry[] {
  if (!Array.isArray(entries)) return [];
  return entries.map((e) => {
    const [id, fields] = e as [unknown, unknown];
    return [str(id), Array.isArray(fields) ? (fields as Fields) : null];
  });
}

/** XAUTOCLAIM's reply: [next cursor, [[id, fields], ...], [ids deleted from the stream]]. */
export function autoclaimReply(reply: unknown): { cursor: string; entries: Entry[]; deleted: string[] } {
  const [cursor, entries, deleted] = reply as [unknown, unknown, unknown];
  return { cursor: str(cursor), entries: entriesOf(entries), deleted: Array.isArray(deleted) ? deleted.map(str) : [] };
}

/** XPENDING's extended reply: [[id, consumer, idle ms, deliveries], ...] → deliveries by id. */
export function deliveryCounts(reply: unknown): Map<string, number> {
  const counts = new Map<string, number>();
  if (!Array.isArray(reply)) return counts;
  for (const row of reply) {
    const [id, , , n] = row as [unknown, unknown, unknown, unknown];
    counts.set(str(id), Number(n));
  }
  return counts;
}
