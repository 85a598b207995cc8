import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { claims, proxyRoute, rpcRoute } from "../../src/micro/path.js";

const NS = "go.micro.srv";

describe("micro's path form: path → service and method (go-micro's api resolver)", () => {
  const cases: [string, string, string][] = [
    ["/greeter/say/hello", `${NS}.greeter`, "Say.Hello"],
    ["/greeter/hello", `${NS}.greeter`, "Greeter.Hello"],
    ["/foo/foo/bar", `${NS}.foo`, "Foo.Bar"],
    ["/foo/bar/baz/cat", `${NS}.foo.bar`, "Baz.Cat"],
    ["/foo/bar/baz/cat/car", `${NS}.foo.bar.baz`, "Cat.Car"],
    ["/v1/foo/bar", `${NS}.v1.foo`, "Foo.Bar"],
    ["/v1/foo/bar/baz", `${NS}.v1.foo`, "Bar.Baz"],
    ["/v1/foo/bar/baz/cat", `${NS}.v1.foo.bar`, "Baz.Cat"],
    ["/greeter/say-hello/to-you", `${NS}.greeter`, "SayHello.ToYou"],
    ["/greeter", `${NS}.greeter`, "Greeter"],
    ["//greeter//say/hello/", `${NS}.greeter`, "Say.Hello"],
  ];
  for (const [path, service, method] of cases) {
    it(`${path} calls ${service} ${method}`, () => assert.deepEqual(rpcRoute(NS, path), { service, method }));
  }
  it("uses the configured namespace", () => assert.deepEqual(rpcRoute("com.example.srv", "/greeter/say/hello"), { service: "com.example.srv.greeter", method: "Say.Hello" }));
  for (const bad of ["/", "/greeter/../say", "/./greeter/hello"]) {
    it(`${bad} names no service (refused, not resolved)`, () => assert.equal(rpcRoute(NS, bad), undefined));
  }
});

describe("micro's proxy form: the first segment names the service", () => {
  const cases: [string, string | undefined][] = [
    ["/greeter", `${NS}.greeter`],
    ["/greeter/anything/deeper", `${NS}.greeter`],
    ["/v1/greeter/hello", `${NS}.v1.greeter`],
    ["/v1", `${NS}.v1`],
    ["/my-svc/x", `${NS}.my-svc`],
    ["/bad_alias/x", undefined],
    ["/-x/y", undefined],
  ];
  for (const [path, service] of cases) {
    it(`${path} → ${String(service)}`, () => assert.equal(proxyRoute(NS, path), service));
  }
});

describe("which requests the path form claims", () => {
  for (const seg of ["rpc", "proxy", "publish", "broker", "registry", "subscriptions", "metrics", "status", "health"]) {
    it(`never /${seg} (ours)`, () => {
      assert.equal(claims(`/${seg}`, "POST", "rpc"), false);
      assert.equal(claims(`/${seg}/x/y`, "POST", "proxy"), false);
    });
  }
  it("never / (the status page)", () => assert.equal(claims("/", "POST", "proxy"), false));
  it("a POST elsewhere with handler rpc; other methods stay 404 (not micro calls)", () => {
    assert.equal(claims("/greeter/say/hello", "POST", "rpc"), true);
    assert.equal(claims("/greeter/say/hello", "GET", "rpc"), false);
  });
  it("any method with handler proxy", () => assert.equal(claims("/greeter", "GET", "proxy"), true));
  it("a segment that only starts like ours is not ours", () => assert.equal(claims("/rpcx/a/b", "POST", "rpc"), true));
});
