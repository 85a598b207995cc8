import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../src");

/** What `file` loads at run time: its static value imports (not `import type`), resolved from src. */
function imports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const out: string[] = [];
  for (const m of text.matchAll(/^(?:import|export)\s+(?!type\b)(?:[^"';]*?\sfrom\s+)?["']([^"']+)["']/gm)) {
    const spec = m[1]!;
    // `import { type A, type B } from` loads nothing either.
    const clause = m[0].replace(/^(?:import|export)\s+/, "").split(/\sfrom\s/)[0] ?? "";
    if (/^\{[^}]*\}$/.test(clause.trim()) && clause.replace(/[{}]/g, "").split(",").every((n) => n.trim() === "" || n.trim().startsWith("type "))) continue;
    out.push(spec.startsWith(".") ? path.resolve(path.dirname(file), spec.replace(/\.js$/, ".ts")) : spec);
  }
  return out;
}

/** Every module reachable from `entry` by static imports (packages by name). */
function reachable(entry: string): Set<string> {
  const seen = new Set<string>();
  const todo = [entry];
  while (todo.length > 0) {
    const f = todo.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    if (f.startsWith("/")) todo.push(...imports(f));
  }
  return seen;
}

describe("what the running sidecar loads", () => {
  it("the sidecar (and the CLI's start path) never loads zod or yaml: the config is validated in a worker thread that exits (about 5 MiB resident)", () => {
    for (const entry of ["sidecar.ts", "cli.ts"]) {
      const loaded = [...reachable(path.join(SRC, entry))];
      const heavy = loaded.filter((m) => m === "zod" || m === "yaml" || m.endsWith("/config/schema.ts") || m.endsWith("/config/load.ts"));
      assert.deepEqual(heavy, [], `${entry} reaches ${heavy.join(", ")}`);
    }
  });
});
