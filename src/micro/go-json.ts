/**
 * The fields of a JSON object as Go's encoding/json fills a struct from it: an exact key first,
 * else a key equal to the field's name in any case (`Name`, `NAME` for `name`), the last one
 * winning. micro's clients and its README send `{"Name": ..., "Nodes": [{"Port": ...}]}`.
 */
export function goFields<K extends string>(value: Record<string, unknown>, names: readonly K[]): Partial<Record<K, unknown>> {
  const out: Partial<Record<K, unknown>> = {};
  const folded = new Map<string, unknown>();
  for (const [k, v] of Object.entries(value)) folded.set(k.toLowerCase(), v);
  for (const name of names) {
    if (Object.hasOwn(value, name)) out[name] = value[name];
    else if (folded.has(name.toLowerCase())) out[name] = folded.get(name.toLowerCase());
  }
  return out;
}
