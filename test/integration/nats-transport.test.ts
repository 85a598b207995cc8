import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { NatsServer } from "../support/nats.js";
import { apiUrl, registryNodes, rpc, SidecarProcess, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

/** transport.kind: nats, end to end through a real nats-server. */
describe("NATS transport", () => {
  let nats: NatsServer;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  let base: string;
  let n1: TestApp;
  let n2: TestApp;

  const settings = (service: string, app: TestApp, extra: string[] = []) => testSettings({ service, appPort: app.port, registry: { nats: nats.url }, extra });

  before(async () => {
    nats = await NatsServer.start();
    const callerApp = await TestApp.start("client");
    n1 = await TestApp.start("n1");
    n2 = await TestApp.start("n2");
    apps.push(callerApp, n1, n2);
    // The caller itself is reachable over http; it reaches each callee by the transport its record names.
    const caller = await startSidecar(settings("client", callerApp, ["api.maxBody=4MiB"]));
    sidecars.push(caller);
    for (const a of [n1, n2]) sidecars.push(await startSidecar(settings("natsy", a, ["transport.kind=nats"])));
    base = apiUrl(caller);
    await waitFor(async () => (await registryNodes(base, "natsy")).length === 2, "two natsy nodes");
  });

  after(() => teardown({ sidecars, apps, nats }));

  it("registers nodes with transport 'nats' and balances calls over them", async () => {
    const body = (await (await fetch(`${base}/registry/natsy`)).json()) as { nodes: { transport: string }[] };
    assert.deepEqual(body.nodes.map((n) => n.transport), ["nats", "nats"]);
    const [c1, c2] = [n1.callCount(), n2.callCount()];
    for (let i = 0; i < 10; i++) {
      const r = await rpc(base, { service: "natsy", endpoint: "Greeter.Hello", request: { i } }, { headers: { "x-request-id": `nats-${i}` } });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get("x-request-id"), `nats-${i}`);
      assert.equal(r.body.path, "/Greeter/Hello");
      assert.deepEqual(JSON.parse(r.body.body), { i });
    }
    assert.equal(n1.callCount() - c1, 5);
    assert.equal(n2.callCount() - c2, 5);
    const seen = n1.calls.at(-1)!;
    assert.equal(seen.headers["x-sidecar-caller"], undefined, "no mesh.token here: the callee's sidecar cannot vouch for the caller's name");
    assert.equal(seen.headers["content-type"], "application/json");
  });

  it("W3C trace context over NATS: the trace id kept with the callee sidecar's own span, tracestate carried", async () => {
    const given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const r = await rpc(base, { service: "natsy", endpoint: "Greeter.Hello" }, { headers: { traceparent: given, tracestate: "rojo=1, congo=2", "x-request-id": "nats-trace" } });
    assert.equal(r.status, 200);
    const seen = [...n1.calls, ...n2.calls].find((c) => c.headers["x-request-id"] === "nats-trace")!;
    assert.equal(String(seen.headers.traceparent).split("-")[1], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert.notEqual(String(seen.headers.traceparent).split("-")[2], "00f067aa0ba902b7");
    assert.equal(seen.headers.tracestate, "rojo=1,congo=2");
  });

  it("carries status, headers and body both ways, and the proxy route too", async () => {
    const r = await rpc(base, { service: "natsy", endpoint: "/status/418" });
    assert.equal(r.status, 418);
    assert.equal(r.headers.get("content-type"), "text/plain; charset=utf-8");
    assert.match(r.body, /^status 418 from n[12]$/);
    const put = await fetch(`${base}/proxy/natsy/things/1?q=2`, { method: "PUT", headers: { "x-custom": "yes", "content-type": "text/plain" }, body: "payload" });
    assert.equal(put.status, 200);
    const got = (await put.json()) as { method: string; path: string; body: string };
    assert.deepEqual([got.method, got.path, got.body], ["PUT", "/things/1?q=2", "payload"]);
    assert.equal(put.headers.get("x-app")?.startsWith("n"), true);
  });

  it("a body over the server's max payload → 413; a response over it → 502 RESPONSE_TOO_LARGE", async () => {
    const big = "x".repeat(2 * 1024 * 1024);
    const raw = await fetch(`${base}/rpc/natsy/Files.Put`, { method: "POST", headers: { "content-type": "text/plain" }, body: big });
    assert.equal(raw.status, 413);
    assert.equal(((await raw.json()) as { error: { code: string } }).error.code, "BODY_TOO_LARGE");
    const proxied = await fetch(`${base}/proxy/natsy/upload`, { method: "PUT", body: big });
    assert.equal(proxied.status, 413);
    const res = await fetch(`${base}/proxy/natsy/big?bytes=${2 * 1024 * 1024}`);
    assert.equal(res.status, 502);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, "RESPONSE_TOO_LARGE");
  });

  it("a hanging app → 504 at the deadline", async () => {
    const t0 = Date.now();
    const r = await rpc(base, { service: "natsy", endpoint: "/slow?ms=3000", timeout: 200 });
    assert.equal(r.status, 504);
    assert.equal(r.body.error.code, "TIMEOUT");
    assert.ok(Date.now() - t0 < 1000);
  });

  it("a killed NATS-transport node answers 'no responders' and its calls go to the other node", async () => {
    const app = await TestApp.start("n3");
    apps.push(app);
    const child = await SidecarProcess.start(settings("natsy", app, ["transport.kind=nats"]));
    await waitFor(async () => (await registryNodes(base, "natsy")).length === 3, "three natsy nodes");
    child.kill("SIGKILL");
    await child.exit();
    for (let i = 0; i < 30; i++) assert.equal((await rpc(base, { service: "natsy", endpoint: "Greeter.Hello" })).status, 200);
  });

  it("an unhealthy node stops answering over NATS too", async () => {
    n2.healthy = false;
    await waitFor(async () => (await registryNodes(base, "natsy")).length === 1, "n2 to leave");
    const before = n2.callCount();
    for (let i = 0; i < 6; i++) assert.equal((await rpc(base, { service: "natsy", endpoint: "Greeter.Hello" })).status, 200);
    assert.equal(n2.callCount(), before);
    n2.healthy = true;
    await waitFor(async () => (await registryNodes(base, "natsy")).length === 2, "n2 to return");
  });
});
