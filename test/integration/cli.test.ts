import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { apiUrl, SidecarProcess, startSidecar, testSettings, waitFor } from "../support/sidecar.js";

/** The CLI's client commands, run as a user runs them, against real sidecars. */
describe("sidecar call | publish | services", () => {
  let dir: string;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  let url: string;
  let greeter: TestApp;

  const run = async (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const p = SidecarProcess.spawn(args, env);
    const code = await p.exit();
    return { code, stdout: p.lines.map((l) => String(l.message ?? JSON.stringify(l))).join("\n"), raw: p.lines, stderr: p.stderr };
  };

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-cli-"));
    greeter = await TestApp.start("greeter");
    const caller = await TestApp.start("caller");
    apps.push(greeter, caller);
    sidecars.push(await startSidecar(testSettings({ service: "greeter", appPort: greeter.port, registry: { dir }, extra: ['subscriptions=[{"topic": "cli.events", "path": "/events"}]'] })));
    const s = await startSidecar(testSettings({ service: "caller", appPort: caller.port, registry: { dir } }));
    sidecars.push(s);
    url = apiUrl(s);
    await waitFor(async () => (await fetch(`${url}/registry/greeter`)).status === 200, "greeter in the view");
  });

  after(async () => {
    await Promise.all(sidecars.map((s) => s.close()));
    await Promise.all(apps.map((a) => a.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it("call prints the callee's answer", async () => {
    const r = await run(["call", "greeter", "Greeter.Hello", '{"name": "Ada"}', "--url", url]);
    assert.equal(r.code, 0, r.stderr);
    const answer = r.raw[0] as { app: string; path: string; body: string };
    assert.equal(answer.app, "greeter");
    assert.equal(answer.path, "/Greeter/Hello");
    assert.deepEqual(JSON.parse(answer.body), { name: "Ada" });
  });

  it("call exits 1 with the sidecar's error code and message", async () => {
    const r = await run(["call", "nobody", "A.b"], { SIDECAR_URL: url });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^sidecar call: SERVICE_NOT_FOUND \(404\): no service named 'nobody' in the registry/);
    const bad = await run(["call", "greeter", "A.b", "{not json", "--url", url]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /the request is not valid JSON/);
  });

  it("publish prints the message id, and the subscriber gets the message", async () => {
    const r = await run(["publish", "cli.events", '{"n": 1}', "--url", url]);
    assert.equal(r.code, 0, r.stderr);
    const { id } = r.raw[0] as { id: string };
    await waitFor(() => greeter.callsTo("/events").length === 1, "the delivery");
    assert.equal(greeter.callsTo("/events")[0]!.headers["ce-id"], id);
    assert.equal(greeter.callsTo("/events")[0]!.headers["content-type"], "application/json");
  });

  it("services lists services and nodes", async () => {
    const r = await run(["services", "--url", url]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^SERVICE\s+NODE\s+VERSION\s+ADDRESS/);
    assert.match(r.stdout, /\ngreeter\s+greeter-[0-9a-f]{8}\s+0\.0\.0\s+127\.0\.0\.1:\d+/);
    assert.match(r.stdout, /\ncaller\s+caller-/);
  });

  it("check-config on a YAML alias bomb (billion laughs) exits 2 with a config error, no stack trace", async () => {
    const lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < 9; i++) lines.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${String.fromCharCode(96 + i)}`).join(",")}]`);
    const bomb = path.join(dir, "laughs.yaml");
    writeFileSync(bomb, `${lines.join("\n")}\n`);
    const r = await run(["check-config", "--config", bomb]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /invalid configuration/);
    assert.match(r.stderr, /YAML cannot be read/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  });

  it("a sidecar that is not running is a clear error, exit 1", async () => {
    const r = await run(["services", "--url", "http://127.0.0.1:1"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot reach the sidecar at http:\/\/127\.0\.0\.1:1/);
  });
});
