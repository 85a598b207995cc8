import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { TestApp } from "../support/app.js";
import { ROOT, waitFor } from "../support/sidecar.js";

/** The package as a Node program embeds it: `import { Sidecar, loadConfig } from "sidecar"` (the built dist/, through package.json `exports`). */
describe("the public API: import from \"sidecar\"", () => {
  let tmp: string;
  let app: TestApp;
  // A specifier in a variable: the test reads the built package at run time, as a consumer does.
  const pkg = "sidecar";

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), "sidecar-public-api-"));
    app = await TestApp.start("embedded-app");
  });
  after(async () => {
    await app.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it("exports Sidecar, loadConfig, ConfigError, SidecarError, the error catalogue and the logger; an embedded sidecar starts, serves and closes", async () => {
    const api = (await import(pkg)) as typeof import("../../src/index.js");
    for (const name of ["Sidecar", "loadConfig", "ConfigError", "SidecarError", "ERRORS", "DEFAULTS", "createLogger", "silentLogger"]) {
      assert.ok(name in api, `${name} is exported`);
    }
    assert.equal(new api.SidecarError("TIMEOUT", "late").status, 504);
    assert.throws(() => api.loadConfig({ env: {}, cwd: tmp, set: ["app.port=abc"] }), api.ConfigError);
    const { config } = api.loadConfig({
      env: {},
      cwd: tmp,
      set: ["service.name=embedded", `app.port=${app.port}`, "app.health.path=/health", "app.health.interval=100ms", "api.port=0", "inbound.port=0", `registry.dir=${path.join(tmp, "registry")}`, "shutdownTimeout=1s"],
    });
    const sidecar = new api.Sidecar(config, api.silentLogger());
    try {
      await sidecar.start();
      await waitFor(async () => (await fetch(`http://${sidecar.apiAddress}/registry/embedded`)).status === 200, "the embedded sidecar registered its app");
    } finally {
      await sidecar.close();
    }
  });

  it("internals are not importable: only the package root is exported", async () => {
    await assert.rejects(import(`${pkg}/dist/sidecar.js`), (err: NodeJS.ErrnoException) => err.code === "ERR_PACKAGE_PATH_NOT_EXPORTED");
  });

  it("a TypeScript program type-checks against the published declarations (dist/index.d.ts)", () => {
    const consumer = path.join(tmp, "consumer");
    mkdirSync(path.join(consumer, "node_modules"), { recursive: true });
    symlinkSync(ROOT, path.join(consumer, "node_modules", "sidecar"), "dir");
    writeFileSync(path.join(consumer, "package.json"), JSON.stringify({ type: "module" }));
    writeFileSync(
      path.join(consumer, "main.ts"),
      [
        'import { Sidecar, loadConfig, SidecarError, ERRORS, type Config, type ErrorCode } from "sidecar";',
        'const { config }: { config: Config } = loadConfig({ set: ["service.name=x", "app.port=1"], env: {} });',
        "const code: ErrorCode = \"TIMEOUT\";",
        "const status: number = ERRORS[code].status + new SidecarError(code, \"m\").status;",
        "export const s: Sidecar | undefined = status > 0 ? undefined : new Sidecar(config, undefined as never);",
        "",
      ].join("\n"),
    );
    const tsc = path.join(ROOT, "node_modules", "typescript", "bin", "tsc");
    const r = spawnSync(process.execPath, [tsc, "--noEmit", "--strict", "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022", "--skipLibCheck", "--types", "node", "--typeRoots", path.join(ROOT, "node_modules", "@types"), "main.ts"], { cwd: consumer, encoding: "utf8" });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  });
});
