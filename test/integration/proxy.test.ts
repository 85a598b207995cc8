import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import http from "node:http";
import { after, before, describe, it } from "node:test";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { NatsServer } from "../support/nats.js";
import { apiUrl, registryNodes, SidecarProcess, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

/** Raw HTTP request (fetch refuses some headers, e.g. Connection), body streamed in chunks. */
function request(url: string, o: { method: string; headers?: http.OutgoingHttpHeaders; chunks?: Buffer[] }): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    // The path is given as is: a URL object would resolve "..", hiding what the sidecar must refuse.
    const u = /^http:\/\/([^/]+):(\d+)(\/.*)$/.exec(url)!;
    const req = http.request({ host: u[1], port: Number(u[2]), path: u[3], method: o.method, headers: o.headers, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on("data", (c: Buffer) => parts.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
    });
    req.on("error", reject);
    for (const c of o.chunks ?? []) req.write(c);
    req.end();
  });
}

describe("HTTP proxy and raw /rpc on NATS", () => {
  let nats: NatsServer;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  let base: string;
  let web1: TestApp;

  before(async () => {
    nats = await NatsServer.start();
    const settings = (service: string, app: TestApp) => testSettings({ service, appPort: app.port, registry: { nats: nats.url } });
    const callerApp = await TestApp.start("client");
    web1 = await TestApp.start("web1");
    apps.push(callerApp, web1);
    const caller = await startSidecar(settings("client", callerApp));
    sidecars.push(caller, await startSidecar(settings("web", web1)));
    base = apiUrl(caller);
    await waitFor(async () => (await registryNodes(base, "web")).length === 1, "the web node");
  });

  after(() => teardown({ sidecars, apps, nats }));

  it("PUT of a 3 MiB streamed body with a query string and a custom header arrives intact", async () => {
    const chunks = Array.from({ length: 48 }, (_, i) => Buffer.alloc(64 * 1024, 97 + (i % 26)));
    const body = Buffer.concat(chunks);
    assert.equal(body.length, 3 * 1024 * 1024);
    const r = await request(`${base}/proxy/web/upload/file.bin?name=x%20y&n=1`, {
      method: "PUT",
      headers: { "content-type": "application/octet-stream", "x-custom": "kept", "transfer-encoding": "chunked" },
      chunks,
    });
    assert.equal(r.status, 200);
    const seen = web1.calls.at(-1)!;
    assert.equal(seen.method, "PUT");
    assert.equal(seen.path, "/upload/file.bin?name=x%20y&n=1");
    assert.equal(seen.headers["x-custom"], "kept");
    assert.equal(seen.headers["content-type"], "application/octet-stream");
    assert.equal(sha(seen.body), sha(body), "the body arrives byte for byte");
    assert.equal(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert.equal(seen.headers["x-forwarded-proto"], "http");
    assert.ok(seen.headers["x-forwarded-host"]);
  });

  it("streams a large response back with the app's status and headers", async () => {
    const r = await request(`${base}/proxy/web/big?bytes=${5 * 1024 * 1024}`, { method: "GET" });
    assert.equal(r.status, 200);
    assert.equal(r.headers["x-app"], "web1");
    assert.equal(r.headers["content-type"], "application/octet-stream");
    assert.equal(r.body.length, 5 * 1024 * 1024);
    assert.equal(sha(r.body), sha(Buffer.alloc(5 * 1024 * 1024, "z")));
  });

  it("passes any method, drops hop-by-hop headers and those named in Connection", async () => {
    for (const method of ["GET", "DELETE", "PATCH", "OPTIONS"]) {
      const r = await request(`${base}/proxy/web/things/7`, { method, headers: { connection: "keep-alive, x-hop", "x-hop": "secret", "keep-alive": "timeout=5", "x-end": "e2e" } });
      assert.equal(r.status, 200, method);
      const seen = web1.calls.at(-1)!;
      assert.equal(seen.method, method);
      assert.equal(seen.path, "/things/7");
      assert.equal(seen.headers["x-hop"], undefined, "named in Connection: dropped");
      assert.equal(seen.headers["keep-alive"], undefined, "hop-by-hop: dropped");
      assert.equal(seen.headers["x-end"], "e2e");
      assert.equal(seen.headers["x-sidecar-caller"], undefined, "no mesh.token here: the callee's sidecar cannot vouch for the caller's name");
    }
    const slash = await request(`${base}/proxy/web`, { method: "GET" });
    assert.equal(slash.status, 200);
    assert.equal(web1.calls.at(-1)!.path, "/");
  });

  it("passes the app's response headers back end to end: repeated ones kept, hop-by-hop and Connection-named ones dropped, one request id", async () => {
    for (const r of [
      await request(`${base}/proxy/web/headers`, { method: "GET", headers: { "x-request-id": "resp-1" } }),
      await request(`${base}/rpc/web/headers`, { method: "POST", headers: { "x-request-id": "resp-1", "content-type": "application/json" }, chunks: [Buffer.from("{}")] }),
    ]) {
      assert.equal(r.status, 200);
      assert.deepEqual(r.headers["set-cookie"], ["a=1", "b=2"], "a repeated header arrives as sent");
      assert.equal(r.headers["x-private"], undefined, "named in the app's Connection header: dropped");
      assert.equal(r.headers["x-end"], "e2e");
      assert.equal(r.headers["x-request-id"], "resp-1", "the call's request id, once, not the app's");
      assert.equal(r.headers["content-type"], "text/plain");
      assert.equal(r.body.toString(), "headers");
    }
  });

  it("answers the app's errors unchanged and its own with the JSON error body", async () => {
    const teapot = await request(`${base}/proxy/web/status/418`, { method: "POST" });
    assert.equal(teapot.status, 418);
    assert.equal(teapot.body.toString(), "status 418 from web1");
    const unknown = await request(`${base}/proxy/nobody/x`, { method: "GET" });
    assert.equal(unknown.status, 404);
    assert.equal(JSON.parse(unknown.body.toString()).error.code, "SERVICE_NOT_FOUND");
    const badName = await request(`${base}/proxy/bad%20name/x`, { method: "GET" });
    assert.equal(JSON.parse(badName.body.toString()).error.code, "INVALID_NAME");
    const traversal = await request(`${base}/proxy/web/a/../../admin`, { method: "GET" });
    assert.equal(traversal.status, 400);
    const slow = await request(`${base}/proxy/web/slow?ms=3000`, { method: "POST", headers: { "x-sidecar-timeout": "150" } });
    assert.equal(slow.status, 504);
  });

  it("raw /rpc/{service}/{endpoint} with a binary body", async () => {
    const payload = Buffer.from([0, 1, 2, 250, 251, 252]);
    const r = await request(`${base}/rpc/web/Files.Put?v=2`, { method: "POST", headers: { "content-type": "application/x-thing" }, chunks: [payload] });
    assert.equal(r.status, 200);
    const seen = web1.calls.at(-1)!;
    assert.equal(seen.path, "/Files/Put?v=2");
    assert.equal(seen.headers["content-type"], "application/x-thing");
    assert.equal(Buffer.from(seen.body, "latin1").length > 0, true);
  });

  it("a proxied call to a dead node goes to another node (nothing was sent yet)", async () => {
    const web2 = await TestApp.start("web2");
    apps.push(web2);
    const child = await SidecarProcess.start(testSettings({ service: "web", appPort: web2.port, registry: { nats: nats.url } }));
    await waitFor(async () => (await registryNodes(base, "web")).length === 2, "two web nodes");
    child.kill("SIGKILL");
    await child.exit();
    for (let i = 0; i < 6; i++) {
      const r = await request(`${base}/proxy/web/after-kill`, { method: "PUT", headers: { "content-length": "5" }, chunks: [Buffer.from("hello")] });
      assert.equal(r.status, 200);
      assert.equal(web1.calls.at(-1)!.body, "hello");
    }
  });
});
