import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SidecarError } from "../../src/errors.js";
import { isLoopback, parseService, parseTtl } from "../../src/front/spec.js";

const rules = { hosts: ["10.0.0.5"], ownPorts: () => [8081, 8082] };
const post = (nodes: unknown[], extra: Record<string, unknown> = {}) => parseService(Buffer.from(JSON.stringify({ name: "go.micro.srv.greeter", ...extra, nodes })), rules, true);
const code = (f: () => unknown) => {
  try {
    f();
  } catch (err) {
    return (err as SidecarError).code;
  }
  return "none";
};

describe("micro's registry.Service as POST /registry takes it", () => {
  it("takes micro's node shape, later go-micro's host:port address, and localhost as 127.0.0.1", () => {
    const { specs } = post([
      { id: "a-1", address: "127.0.0.1", port: 4000 },
      { id: "a-2", address: "127.0.0.1:4001" },
      { id: "a-3", address: "localhost", port: 4002, metadata: { protocol: "http" } },
      { id: "a-4", address: "[::1]:4003" },
      { id: "a-5", address: "10.0.0.5", port: 4004 },
    ]);
    assert.deepEqual(specs.map((s) => [s.host, s.port, s.protocol]), [["127.0.0.1", 4000, "jsonrpc"], ["127.0.0.1", 4001, "jsonrpc"], ["127.0.0.1", 4002, "http"], ["::1", 4003, "jsonrpc"], ["10.0.0.5", 4004, "jsonrpc"]]);
  });

  it("service metadata applies to every node, the node's own wins", () => {
    const { specs } = post([{ id: "a-1", address: "127.0.0.1", port: 4000, metadata: { zone: "b" } }], { metadata: { zone: "a", protocol: "http" }, version: "1.2.0" });
    assert.deepEqual([specs[0]!.metadata, specs[0]!.version, specs[0]!.protocol], [{ zone: "b", protocol: "http" }, "1.2.0", "http"]);
  });

  it("refuses other hosts, the sidecar's own ports, duplicate ids and bad versions", () => {
    assert.equal(code(() => post([{ id: "a", address: "192.168.1.1", port: 1 }])), "INVALID_REQUEST");
    assert.equal(code(() => post([{ id: "a", address: "127.0.0.1", port: 8082 }])), "INVALID_REQUEST");
    assert.equal(code(() => post([{ id: "a", address: "127.0.0.1", port: 1 }, { id: "a", address: "127.0.0.1", port: 2 }])), "INVALID_REQUEST");
    assert.equal(code(() => post([{ id: "a", address: "127.0.0.1", port: 1 }], { version: "1 0" })), "INVALID_REQUEST");
    assert.equal(code(() => post([{ id: "a", address: "127.0.0.1", port: 1.5 }])), "INVALID_REQUEST");
  });

  it("DELETE needs the ids only, or no nodes at all", () => {
    assert.deepEqual(parseService(Buffer.from('{"name":"s","nodes":[{"id":"s-1"}]}'), rules, false).ids, ["s-1"]);
    assert.equal(parseService(Buffer.from('{"name":"s"}'), rules, false).ids, undefined);
  });

  it("loopback is 127.0.0.0/8, ::1 and localhost", () => {
    assert.deepEqual(["127.0.0.1", "127.9.9.9", "::1", "localhost", "128.0.0.1", "0.0.0.0", "::"].map(isLoopback), [true, true, true, true, false, false, false]);
  });

  it("?ttl= is a Go duration, more than 0 and at most 24h", () => {
    assert.deepEqual(["30s", "1m30s", "500ms", "1.5h", "2h45m", "1500us"].map(parseTtl), [30_000, 90_000, 500, 5_400_000, 9_900_000, 2]);
    for (const bad of ["", "30", "abc", "0s", "25h", "-1s", "1d"]) assert.equal(code(() => parseTtl(bad)), "INVALID_REQUEST", bad);
  });
});
