import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { apiUrl, rpc, startSidecar, testSettings, waitFor } from "../support/sidecar.js";

const GREETER = "go.micro.srv.greeter";

/** A POST as a micro client sends it; the body parsed when it is JSON. */
async function post(url: string, body: string, contentType?: string): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(url, { method: "POST", headers: contentType ? { "content-type": contentType } : {}, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
const FORM = "application/x-www-form-urlencoded";

/**
 * micro clients (micro/micro car/, micro/examples sidecar/python) talking to our sidecar as they
 * talked to micro's: every /rpc shape micro's handler took, its path form, its proxy handler
 * and its error shape. The callee is a normal app registered as go.micro.srv.greeter.
 */
describe("micro compatibility: /rpc shapes, the path form, micro's errors", () => {
  let dir: string;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  let a1: TestApp;
  let a2: TestApp;
  let v1: TestApp;
  let base: string;
  let proxyBase: string;
  let microErrorsBase: string;
  let ourErrorsBase: string;
  let a2Address: string;

  const start = async (service: string, appPort: number, extra: string[] = []) => {
    const s = await startSidecar(testSettings({ service, appPort, registry: { dir }, extra }));
    sidecars.push(s);
    return s;
  };
  const nodesOf = async (b: string, service: string) => {
    const r = await fetch(`${b}/registry/${service}`);
    return r.status === 200 ? ((await r.json()) as { nodes: { id: string; address: string }[] }).nodes : [];
  };

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-micro-rpc-"));
    a1 = await TestApp.start("a1");
    a2 = await TestApp.start("a2");
    v1 = await TestApp.start("v1");
    const clientApp = await TestApp.start("client");
    apps.push(a1, a2, v1, clientApp);
    await start(GREETER, a1.port);
    const s2 = await start(GREETER, a2.port);
    await start("go.micro.srv.v1.greeter", v1.port);
    base = apiUrl(await start("client", clientApp.port));
    proxyBase = apiUrl(await start("client-proxy", clientApp.port, ["micro.handler=proxy"]));
    microErrorsBase = apiUrl(await start("client-micro-errors", clientApp.port, ["micro.errors=true"]));
    ourErrorsBase = apiUrl(await start("client-our-errors", clientApp.port, ["micro.errors=false"]));
    for (const b of [base, proxyBase, microErrorsBase, ourErrorsBase]) {
      await waitFor(async () => (await nodesOf(b, GREETER)).length === 2 && (await nodesOf(b, "go.micro.srv.v1.greeter")).length === 1, "both greeters and v1 in every client's view");
    }
    a2Address = (await nodesOf(base, GREETER)).find((n) => n.id === s2.node.id)!.address;
  });

  after(async () => {
    await Promise.all(sidecars.map((s) => s.close()));
    await Promise.all(apps.map((a) => a.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  const calls = () => a1.callCount() + a2.callCount();

  it("JSON {service, method, request}: an object request and a JSON-encoded string request reach POST /Say/Hello the same", async () => {
    const asObject = await post(`${base}/rpc`, '{"service":"go.micro.srv.greeter","method":"Say.Hello","request":{"name":"John","n":12345678901234567890}}', "application/json");
    const asString = await rpc(base, { service: GREETER, method: "Say.Hello", request: '{"name":"John","n":12345678901234567890}' });
    for (const r of [asObject, asString]) {
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.path, "/Say/Hello");
      assert.equal(r.body.body, '{"name":"John","n":12345678901234567890}', "the app gets the JSON (digits kept), not a string");
    }
  });

  it("a request string that is not JSON is a 400 in micro's shape, and nothing is called", async () => {
    const before = calls();
    const r = await rpc(base, { service: GREETER, method: "Say.Hello", request: "not json" });
    assert.equal(r.status, 400);
    assert.equal(r.body.id, "go.micro.rpc");
    assert.equal(calls(), before);
  });

  it("form-encoded service, method and request (micro's README, the ruby client) reach the app as JSON", async () => {
    const r = await post(`${base}/rpc`, form({ service: GREETER, method: "Say.Hello", request: '{"name":"John"}' }), FORM);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.path, "/Say/Hello");
    assert.deepEqual(JSON.parse(r.body.body), { name: "John" });
  });

  it("capitalized field names (Service, Method, Request: Go decodes case-insensitively)", async () => {
    const r = await post(`${base}/rpc`, '{"Service":"go.micro.srv.greeter","Method":"Say.Hello","Request":{"name":"Ada","n":12345678901234567890}}', "application/json");
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.path, "/Say/Hello");
    assert.equal(r.body.body, '{"name":"Ada","n":12345678901234567890}');
  });

  it("address of a registered node pins every call to that node", async () => {
    const [b1, b2] = [a1.callCount(), a2.callCount()];
    for (let i = 0; i < 6; i++) {
      const r = await rpc(base, { service: GREETER, method: "Say.Hello", request: {}, address: a2Address });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.app, "a2");
    }
    assert.equal(a1.callCount() - b1, 0);
    assert.equal(a2.callCount() - b2, 6);
  });

  it("address of an unregistered host:port is a 400 and no connection is made to it", async () => {
    let connections = 0;
    const stranger = net.createServer((socket) => {
      connections += 1;
      socket.destroy();
    });
    await new Promise<void>((r) => stranger.listen(0, "127.0.0.1", r));
    try {
      const address = `127.0.0.1:${(stranger.address() as net.AddressInfo).port}`;
      const before = calls();
      const json = await rpc(base, { service: GREETER, method: "Say.Hello", request: {}, address });
      const viaForm = await post(`${base}/rpc`, form({ service: GREETER, method: "Say.Hello", request: "{}", address }), FORM);
      for (const r of [json, viaForm]) {
        assert.equal(r.status, 400, JSON.stringify(r.body));
        assert.equal(r.body.id, "go.micro.rpc");
        assert.match(r.body.detail, /not a registered node/);
      }
      assert.equal(connections, 0, "the sidecar never connected to the stranger");
      assert.equal(calls(), before);
    } finally {
      await new Promise((r) => stranger.close(r));
    }
  });

  it("path form: POST /greeter/say/hello calls go.micro.srv.greeter Say.Hello, the app gets POST /Say/Hello with the body", async () => {
    const r = await post(`${base}/greeter/say/hello`, '{"name":"John"}', "application/json");
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.method, "POST");
    assert.equal(r.body.path, "/Say/Hello");
    assert.equal(r.body.body, '{"name":"John"}');
  });

  it("path form, versioned: POST /v1/greeter/hello calls go.micro.srv.v1.greeter Greeter.Hello", async () => {
    const before = v1.callCount();
    const r = await post(`${base}/v1/greeter/hello`, '{"name":"John"}', "application/json");
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.app, "v1");
    assert.equal(r.body.path, "/Greeter/Hello");
    assert.equal(v1.callCount() - before, 1);
  });

  it("path form: a GET is not a micro call (404 in our shape, nothing called)", async () => {
    const before = calls();
    const r = await fetch(`${base}/greeter/say/hello`);
    assert.equal(r.status, 404);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, "NOT_FOUND");
    // ...while the POST of the same path is one.
    assert.equal((await post(`${base}/greeter/say/hello`, "{}", "application/json")).status, 200);
    assert.equal(calls(), before + 1);
  });

  it("micro.handler=proxy: POST /greeter with a form body reaches the app's POST /greeter unchanged", async () => {
    const r = await post(`${proxyBase}/greeter`, "name=John", FORM);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const got = [a1, a2].flatMap((a) => a.callsTo("/greeter")).at(-1)!;
    assert.equal(got.method, "POST");
    assert.equal(got.path, "/greeter");
    assert.equal(got.headers["content-type"], FORM);
    assert.equal(got.body, "name=John");
  });

  it("micro.handler=proxy: other methods, deeper paths and versioned paths are proxied as they are", async () => {
    const r = await fetch(`${proxyBase}/greeter/things/1?q=2`, { method: "PUT", body: "x" });
    assert.equal(r.status, 200);
    assert.deepEqual(((await r.json()) as { method: string; path: string }).method, "PUT");
    const v = await fetch(`${proxyBase}/v1/greeter/hi`);
    assert.equal(((await v.json()) as { app: string; path: string }).path, "/v1/greeter/hi");
  });

  it("our routes keep precedence over the path form (/status, /registry, /metrics, /health, /rpc, /proxy)", async () => {
    const before = calls();
    const status = await fetch(`${proxyBase}/status`);
    assert.equal(status.status, 200);
    assert.ok(((await status.json()) as { sidecar?: unknown }).sidecar, "our status document");
    assert.equal((await fetch(`${proxyBase}/registry`)).status, 200);
    assert.equal((await fetch(`${proxyBase}/metrics`)).status, 200);
    assert.equal((await fetch(`${proxyBase}/health/live`)).status, 200);
    assert.equal((await post(`${base}/status`, "{}", "application/json")).status, 405);
    assert.equal((await rpc(proxyBase, { service: GREETER, endpoint: "Say.Hello" })).status, 200);
    assert.equal(calls(), before + 1, "only the /rpc call reached an app");
    // ...while a path that is not ours is micro's.
    assert.equal((await post(`${proxyBase}/greeter`, "a=1", FORM)).status, 200);
  });

  it("micro.errors=auto: micro-style requests and the path form answer micro's shape {id, code, detail, status}, ours keep ours", async () => {
    const missing = await post(`${base}/rpc`, form({ method: "Say.Hello" }), FORM);
    assert.equal(missing.status, 400);
    assert.deepEqual(Object.keys(missing.body), ["id", "code", "detail", "status"]);
    assert.equal(missing.body.id, "go.micro.rpc");
    assert.equal(missing.body.code, 400);
    assert.equal(missing.body.status, "Bad Request");
    const unknown = await post(`${base}/rpc`, '{"Service":"go.micro.srv.nosuch","Method":"Say.Hello","Request":{}}', "application/json");
    assert.deepEqual(unknown.body, { id: "go.micro.client", code: 404, detail: "no service named 'go.micro.srv.nosuch' in the registry", status: "Not Found" });
    const path = await post(`${base}/nosuch/say/hello`, "{}", "application/json");
    assert.equal(path.status, 404);
    assert.equal(path.body.id, "go.micro.client");
    const badName = await post(`${base}/greeter/say/hello%20there`, "{}", "application/json");
    assert.equal(badName.status, 400);
    assert.equal(badName.body.id, "go.micro.api");
    assert.ok(missing.headers.get("x-request-id"), "the request id still travels in the header");
    // Our own requests keep our shape.
    const ours = await rpc(base, { service: "go.micro.srv.nosuch", endpoint: "Say.Hello" });
    assert.equal(ours.status, 404);
    assert.equal(ours.body.error.code, "SERVICE_NOT_FOUND");
  });

  it("micro.errors=true answers micro's shape for our requests too", async () => {
    const r = await rpc(microErrorsBase, { service: "go.micro.srv.nosuch", endpoint: "Say.Hello" });
    assert.equal(r.status, 404);
    assert.deepEqual(Object.keys(r.body), ["id", "code", "detail", "status"]);
    assert.equal(r.body.code, 404);
  });

  it("micro.errors=false answers our shape for micro-style requests and the path form", async () => {
    const r = await post(`${ourErrorsBase}/rpc`, form({ method: "Say.Hello" }), FORM);
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, "INVALID_REQUEST");
    const p = await post(`${ourErrorsBase}/nosuch/say/hello`, "{}", "application/json");
    assert.equal(p.status, 404);
    assert.equal(p.body.error.code, "SERVICE_NOT_FOUND");
  });
});
