/** Service and node names: they become registry keys, subjects and file names, so they are strict. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function isValidName(name: unknown): name is string {
  // ".." and a trailing "." would make an empty token in a NATS KV key ("a..b.node"), so they are refused too.
  return typeof name === "string" && NAME_PATTERN.test(name) && !name.includes("..") && !name.endsWith(".");
}

/** Longest rendering of a bad value in an error message. */
const SHOW_LIMIT = 80;

/**
 * A short, printable rendering of a bad value for error messages: never the whole of a huge
 * input, and never a recursion as deep as the input (a 100,000-deep array from a caller is
 * rendered from its first few levels, not handed to JSON.stringify, which would overflow the stack).
 */
export function show(value: unknown): string {
  const text = render(value, 0, { left: SHOW_LIMIT + 1 });
  return text.length > SHOW_LIMIT ? `${text.slice(0, SHOW_LIMIT - 3)}...` : text;
}

/** Depth beyond which nested arrays and objects are shown as `[...]` / `{...}`. */
const SHOW_DEPTH = 4;

function render(value: unknown, depth: number, budget: { left: number }): string {
  if (budget.left <= 0) return "";
  let out: string;
  if (typeof value === "string") out = JSON.stringify(value.length > SHOW_LIMIT ? value.slice(0, SHOW_LIMIT) : value);
  else if (value === null || typeof value === "number" || typeof value === "boolean") out = String(value);
  else if (Array.isArray(value)) {
    if (depth >= SHOW_DEPTH) out = "[...]";
    else {
      const parts: string[] = [];
      for (const v of value) {
        if (budget.left <= 0) break;
        parts.push(render(v, depth + 1, budget));
      }
      out = `[${parts.join(",")}]`;
    }
  } else if (typeof value === "object") {
    if (depth >= SHOW_DEPTH) out = "{...}";
    else {
      const parts: string[] = [];
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (budget.left <= 0) break;
        parts.push(`${JSON.stringify(k.length > SHOW_LIMIT ? k.slice(0, SHOW_LIMIT) : k)}:${render(v, depth + 1, budget)}`);
      }
      out = `{${parts.join(",")}}`;
    }
  } else out = String(value);
  budget.left -= out.length;
  return out;
}
