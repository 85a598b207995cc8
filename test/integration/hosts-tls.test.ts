import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Hosts } from "../hosts/hosts.js";
import { HostProcess } from "../hosts/process.js";
import { readLoad, until } from "../hosts/load-output.js";
import { startNodes } from "../hosts/fleet.js";
import { TestCa } from "../support/certs.js";
import { ROOT } from "../support/sidecar.js";


/**
 * Mesh mutual TLS across hosts, with certificates naming the hosts (a CA the test makes):
 * echo1's names echo1, as a peer dialling echo1:8082 checks; echo2's names another host, so a
 * caller must refuse it (never sending it a call) and fail over to echo1.
 */
describe("hosts: mesh mutual TLS with certificates naming each host", () => {
  let hosts: Hosts;
  let tmp: string;
  let ca: TestCa;
  const procs: HostProcess[] = [];

  before(async () => {
    const why = Hosts.missing();
    if (why) throw new Error(why);
    tmp = mkdtempSync(path.join(os.tmpdir(), "sidecar-hosts-"));
    ca = TestCa.create("hosts-ca");
    hosts = Hosts.create(["nats", "echo1", "echo2", "caller"]);
    const nats = HostProcess.start(hosts, "nats", "nats", "nats-server", ["-js", "-sd", path.join(tmp, "nats")]);
    procs.push(nats);
    await nats.line(/Server is ready/);
    const certs = { echo1: ca.issue("echo", ["echo1"]), echo2: ca.issue("echo", ["not-echo2"]), caller: ca.issue("caller", ["caller"]) };
    await startNodes(hosts, procs, { hosts: ["echo1", "echo2", "caller"], tmp, sets: (h) => { const c = certs[h as keyof typeof certs]; return ["nats.servers=nats://nats:4222", "registry.ttl=3s", `mesh.tls.cert=${c.cert}`, `mesh.tls.key=${c.key}`, `mesh.tls.ca=${ca.cert}`]; } });
  });

  after(async () => {
    await hosts?.destroy();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    ca?.remove();
  });

  it("calls go to echo1, whose certificate names its host; echo2's names another, so it never gets one, and no call fails", async () => {
    const load = HostProcess.start(hosts, "caller", "load", process.execPath, [path.join(ROOT, "test/hosts/load.mjs")], { env: { PATH: process.env.PATH, SECONDS: "20", CALLS: "400", CALLERS: "8", TIMEOUT_MS: "2000" } });
    procs.push(load);
    await until("400 calls", 30_000, () => (readLoad(load).calls.length >= 400 ? true : undefined), load);
    const { calls, views } = readLoad(load);
    const figures = { calls: calls.length, failed: calls.filter((c) => !c.ok).length, byHost: Object.fromEntries(["echo1", "echo2"].map((h) => [h, calls.filter((c) => c.host === h).length])), view: views.at(-1)?.view };
    console.log(`hosts figures, mesh TLS: ${JSON.stringify(figures)}`);
    assert.equal(figures.view, "echo1:8082,echo2:8082", "both nodes are registered: only the caller's TLS check tells them apart");
    assert.equal(figures.failed, 0, JSON.stringify(figures));
    assert.equal(figures.byHost.echo2, 0, "the node whose certificate names another host got no call");
    assert.equal(figures.byHost.echo1, calls.length);
    const caller = procs.find((p) => p.name === "caller-sidecar")!;
    // Refused by the caller's TLS check: ejected, and the log line says why.
    const ejected = caller.matching(/"node ejected"/).map((l) => JSON.parse(l) as { lastFailure?: string });
    assert.ok(ejected.length > 0, "echo2 ejected");
    assert.match(ejected[0]!.lastFailure ?? "", /ERR_TLS_CERT_ALTNAME_INVALID/, JSON.stringify(ejected[0]));
    assert.equal(procs.find((p) => p.name === "echo2-app")!.matching(/./).filter((l) => !/listening/.test(l)).length, 0);
  });
});
