/**
 * Where the `request` member of a /rpc envelope sits in the body, so its bytes can travel to the
 * callee as the caller wrote them: no re-serialisation (big integers keep their digits, escapes
 * and formatting stay), and no second pass over a large payload. The body must already have
 * passed JSON.parse; like JSON.parse, the last of duplicate keys wins. Structural characters are
 * ASCII, so scanning UTF-8 bytes is safe.
 */
/** `name`: the member's key when it is not "request" (micro's `Request`, src/micro/rpc-forms.ts). */
export function requestSpan(body: Uint8Array, name = "request"): { start: number; end: number } | undefined {
  return memberSpan(body, name);
}

/** Where the member `name` of the JSON object in `body` sits (a JSON-RPC answer's `result`, say); same rules as requestSpan. */
export function memberSpan(body: Uint8Array, name: string): { start: number; end: number } | undefined {
  const wanted = Buffer.from(JSON.stringify(name));
  let i = skipSpace(body, 0);
  if (body[i] !== 0x7b /* { */) return undefined;
  i = skipSpace(body, i + 1);
  let found: { start: number; end: number } | undefined;
  while (i < body.length && body[i] !== 0x7d /* } */) {
    const keyStart = i;
    i = skipString(body, i);
    const key = body.subarray(keyStart, i);
    // An escaped key ("req\u0075est") decodes to "request" for JSON.parse too: decode it to compare.
    const isRequest = key.includes(0x5c)
      ? (JSON.parse(Buffer.from(key).toString("utf8")) as string) === name
      : i - keyStart === wanted.length && Buffer.from(body.buffer, body.byteOffset + keyStart, wanted.length).equals(wanted);
    i = skipSpace(body, i);
    i = skipSpace(body, i + 1); // the ':'
    const start = i;
    i = skipValue(body, i);
    if (isRequest) found = { start, end: i };
    i = skipSpace(body, i);
    if (body[i] === 0x2c /* , */) i = skipSpace(body, i + 1);
  }
  return found;
}

function skipSpace(b: Uint8Array, i: number): number {
  while (i < b.length && (b[i] === 0x20 || b[i] === 0x0a || b[i] === 0x0d || b[i] === 0x09)) i++;
  return i;
}

/** From an opening quote to just past its closing quote. */
function skipString(b: Uint8Array, i: number): number {
  i++;
  while (i < b.length && b[i] !== 0x22) i += b[i] === 0x5c /* \ */ ? 2 : 1;
  return i + 1;
}

function skipValue(b: Uint8Array, i: number): number {
  const c = b[i];
  if (c === 0x22) return skipString(b, i);
  if (c === 0x7b || c === 0x5b) {
    let depth = 0;
    while (i < b.length) {
      const d = b[i];
      if (d === 0x22) {
        i = skipString(b, i);
        continue;
      }
      if (d === 0x7b || d === 0x5b) depth++;
      else if (d === 0x7d || d === 0x5d) {
        depth--;
        if (depth === 0) return i + 1;
      }
      i++;
    }
    return i;
  }
  // A number or a literal: up to the next delimiter.
  while (i < b.length && b[i] !== 0x2c && b[i] !== 0x7d && b[i] !== 0x5d && b[i] !== 0x20 && b[i] !== 0x0a && b[i] !== 0x0d && b[i] !== 0x09) i++;
  return i;
}
