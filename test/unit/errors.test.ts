import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { ERRORS, SidecarError } from "../../src/errors.js";
import { ROOT } from "../support/sidecar.js";

describe("error catalogue", () => {
  const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
  for (const [code, { status }] of Object.entries(ERRORS)) {
    it(`${code} is documented in the README's error table with status ${status}`, () => {
      assert.match(readme, new RegExp(`^\\|\\s*\`${code}\`\\s*\\|\\s*${status}\\s*\\|`, "m"));
    });
  }
  it("every code in the README's table exists in the catalogue", () => {
    const documented = [...readme.matchAll(/^\|\s*`([A-Z_]+)`\s*\|\s*\d{3}\s*\|/gm)].map((m) => m[1]);
    assert.deepEqual(documented.filter((c) => !(c! in ERRORS)), []);
  });
  it("a code the catalogue gives a Retry-After carries it whoever raises it; other headers are kept beside it", () => {
    for (const [code, entry] of Object.entries(ERRORS)) {
      const e = new SidecarError(code as keyof typeof ERRORS, "m", { headers: { "x-extra": "1" } });
      assert.equal(e.headers?.["retry-after"], "retryAfter" in entry ? String(entry.retryAfter) : undefined, code);
      assert.equal(e.headers?.["x-extra"], "1", code);
    }
    assert.equal(new SidecarError("OVERLOADED", "busy").headers?.["retry-after"], "1");
    assert.equal(new SidecarError("TIMEOUT", "late").headers, undefined);
  });

  it("SidecarError takes its status from the code and keeps the cause", () => {
    const cause = new Error("boom");
    const e = new SidecarError("TIMEOUT", "late", { cause });
    assert.equal(e.status, 504);
    assert.equal(e.cause, cause);
  });
});
