/** Service and node names (DESIGN §3): they become registry keys, subjects and file names, so they are strict. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function isValidName(name: unknown): name is string {
  // ".." and a trailing "." would make an empty token in a NATS KV key ("a..b.node"), so they are refused too.
  return typeof name === "string" && NAME_PATTERN.test(name) && !name.includes("..") && !name.endsWith(".");
}

/** A short, printable rendering of a bad value for error messages (never the whole of a huge input). */
export function show(value: unknown): string {
  const text = typeof value === "string" ? JSON.stringify(value) : JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
