/** Topics are NATS subjects, whatever the broker: the rules in one place (config, publish edges, the embedded broker). */

/** A subject token: no whitespace, no `.`, `*` or `>`, and no control characters (C0, DEL, C1), which no log or app header can show. */
const TOKEN = /^[^\s.*>\x00-\x1f\x7f-\x9f]+$/;

/** NATS subject rules: dot-separated non-empty tokens, no whitespace or control characters; `*` and a final `>` only where wildcards are allowed. */
export function isValidSubject(subject: unknown, wildcards: boolean): subject is string {
  if (typeof subject !== "string" || subject.length === 0 || subject.length > 255) return false;
  const tokens = subject.split(".");
  return tokens.every((t, i) => TOKEN.test(t) || (wildcards && (t === "*" || (t === ">" && i === tokens.length - 1))));
}

/** Does `subject` match `pattern` (NATS wildcards)? */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i;
    if (i >= s.length || (p[i] !== "*" && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}
