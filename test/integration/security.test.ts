import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { apiUrl, registryNodes, rpc, startSidecar, testSettings, waitFor } from "../support/sidecar.js";

const API_TOKEN = "api-token-0123456789abcdef";
const APP_TOKEN = "app-token-0123456789abcdef";
const MESH = "mesh-token-0123456789abcdef";

/** api.token, app.token, mesh.token and inbound.allow, on real sidecars (local registry). */
describe("security: tokens and allow lists", () => {
  let dir: string;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  let base: string;
  let callee: TestApp;
  let calleeSidecar: Sidecar;
  const auth = { authorization: `Bearer ${API_TOKEN}` };

  const start = async (service: string, app: TestApp, extra: string[]) => {
    const s = await startSidecar(testSettings({ service, appPort: app.port, registry: { dir }, extra }));
    sidecars.push(s);
    return s;
  };

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-sec-"));
    callee = await TestApp.start("callee");
    const callerApp = await TestApp.start("caller");
    apps.push(callee, callerApp);
    calleeSidecar = await start("vault", callee, [`mesh.token=${MESH}`, `app.token=${APP_TOKEN}`, "inbound.allow=[trusted, trusted-2]", 'subscriptions=[{"topic": "sec.events", "path": "/events"}]']);
    const trusted = await start("trusted", callerApp, [`mesh.token=${MESH}`, `api.token=${API_TOKEN}`]);
    base = apiUrl(trusted);
    await waitFor(async () => (await fetch(`${base}/registry/vault`, { headers: auth })).status === 200, "vault in the view");
  });

  after(async () => {
    await Promise.all(sidecars.map((s) => s.close()));
    await Promise.all(apps.map((a) => a.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it("api.token: every route but /health* needs the bearer token, 401 otherwise", async () => {
    for (const [url, init] of [[`${base}/registry`, {}], [`${base}/rpc`, { method: "POST", body: "{}" }], [`${base}/proxy/vault/x`, {}], [`${base}/publish/a.b`, { method: "POST", body: "x" }], [`${base}/subscriptions`, {}]] as const) {
      const res = await fetch(url, init);
      assert.equal(res.status, 401, url);
      assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="sidecar"');
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, "UNAUTHORIZED");
    }
    assert.equal((await fetch(`${base}/registry`, { headers: { authorization: "Bearer wrong-token-0123456789" } })).status, 401);
    assert.equal((await fetch(`${base}/registry`, { headers: auth })).status, 200);
    for (const h of ["/health", "/health/live", "/health/ready"]) assert.equal((await fetch(`${base}${h}`)).status, 200, h);
  });

  it("mesh.token and app.token: the call goes through; the app sees its token, never the mesh token nor the api token", async () => {
    const r = await rpc(base, { service: "vault", endpoint: "Vault.Open" }, { headers: auth });
    assert.equal(r.status, 200);
    const seen = callee.calls.at(-1)!;
    assert.equal(seen.headers["x-sidecar-app-token"], APP_TOKEN);
    assert.equal(seen.headers["x-sidecar-mesh-token"], undefined);
    assert.equal(seen.headers.authorization, undefined);
    const proxied = await fetch(`${base}/proxy/vault/open`, { headers: auth });
    assert.equal(proxied.status, 200);
    assert.equal(callee.calls.at(-1)!.headers.authorization, undefined, "the api token does not travel through the proxy");
    assert.equal(callee.calls.at(-1)!.headers["x-sidecar-app-token"], APP_TOKEN);
  });

  it("app.token also goes with deliveries and health checks", async () => {
    const checks = callee.healthChecks;
    const pub = await fetch(`${base}/publish/sec.events`, { method: "POST", headers: { ...auth, "content-type": "text/plain" }, body: "hi" });
    assert.equal(pub.status, 202);
    await waitFor(() => callee.callsTo("/events").length === 1, "the delivery");
    assert.equal(callee.callsTo("/events")[0]!.headers["x-sidecar-app-token"], APP_TOKEN);
    await waitFor(() => callee.healthChecks > checks, "another health check");
  });

  it("a peer without the mesh token gets 401 from the inbound listener", async () => {
    const node = (await (await fetch(`${base}/registry/vault`, { headers: auth })).json()) as { nodes: { address: string }[] };
    const res = await fetch(`http://${node.nodes[0]!.address}/Vault/Open`, { method: "POST", headers: { "x-sidecar-service": "vault", "x-sidecar-caller": "trusted" }, body: "{}" });
    assert.equal(res.status, 401);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, "UNAUTHORIZED");
    const wrong = await fetch(`http://${node.nodes[0]!.address}/Vault/Open`, { method: "POST", headers: { "x-sidecar-mesh-token": "not-the-mesh-token-at-all" }, body: "{}" });
    assert.equal(wrong.status, 401);
  });

  it("inbound.allow: a service not on the list gets 403 FORBIDDEN, and the app never sees the call", async () => {
    const app = await TestApp.start("outsider");
    apps.push(app);
    const outsider = await start("outsider", app, [`mesh.token=${MESH}`]);
    const obase = apiUrl(outsider);
    await waitFor(async () => (await registryNodes(obase, "vault")).length === 1, "vault in the outsider's view");
    const calls = callee.callCount();
    const r = await rpc(obase, { service: "vault", endpoint: "Vault.Open" });
    assert.equal(r.status, 403);
    assert.equal(r.body.error.code, "FORBIDDEN");
    assert.match(r.body.error.message, /"outsider" may not call 'vault'/);
    assert.equal(callee.callCount(), calls);
  });

  it("a secret that is too short is refused, and the error does not print it", async () => {
    const { loadConfig, ConfigError } = await import("../../src/config/index.js");
    assert.throws(() => loadConfig({ env: {}, cwd: dir, set: ["service.name=a", "app.port=1", "api.token=short"] }), (e: unknown) => e instanceof ConfigError && /api\.token: got \(a value, hidden: it is a secret\): expected a secret of at least 16 characters/.test(e.message) && !e.message.includes("short"));
    assert.equal(calleeSidecar.registered, true);
  });
});
