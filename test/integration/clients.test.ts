import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, it } from "node:test";
import { ROOT } from "../support/sidecar.js";

/** The language clients' own test suites, each against real sidecars it starts itself. */
describe("language clients", () => {
  it("Python client: unittest against a real sidecar", () => {
    const r = spawnSync("python3", ["-m", "unittest", "discover", "-s", "tests", "-t", "."], { cwd: path.join(ROOT, "clients/python"), encoding: "utf8", timeout: 60_000 });
    assert.equal(r.status, 0, `python3 -m unittest failed:\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /Ran \d+ tests/);
    assert.match(r.stderr, /\nOK\n?$/);
  });

  it("Java client: built with the JDK alone, tested against a real sidecar", () => {
    const r = spawnSync("bash", ["build.sh", "test"], { cwd: path.join(ROOT, "clients/java"), encoding: "utf8", timeout: 120_000 });
    assert.equal(r.status, 0, `clients/java/build.sh test failed:\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^\d+ passed, 0 failed$/m);
  });
});
