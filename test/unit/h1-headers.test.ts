import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { incomingHeaders, InvalidHeaderError, requestHead } from "../../src/http/h1/headers.js";

describe("h1 headers: a response head read as node:http reads it", () => {
  it("lowercases names and joins repeated fields with ', '", () => {
    assert.deepEqual(incomingHeaders(["X-A", "1", "x-a", "2", "Vary", "accept"]), { "x-a": "1, 2", vary: "accept" });
  });
  it("keeps set-cookie as an array, always", () => {
    assert.deepEqual(incomingHeaders(["Set-Cookie", "a=1"]), { "set-cookie": ["a=1"] });
    assert.deepEqual(incomingHeaders(["Set-Cookie", "a=1", "set-cookie", "b=2"]), { "set-cookie": ["a=1", "b=2"] });
  });
  it("joins cookie with '; '", () => {
    assert.deepEqual(incomingHeaders(["Cookie", "a=1", "Cookie", "b=2"]), { cookie: "a=1; b=2" });
  });
  it("keeps only the first of the fields node:http keeps once (content-type, content-length, location, …)", () => {
    assert.deepEqual(incomingHeaders(["Content-Type", "text/plain", "content-type", "text/html", "Location", "/a", "Location", "/b"]), { "content-type": "text/plain", location: "/a" });
  });
});

describe("h1 headers: the request head", () => {
  it("writes the request line, Host, keep-alive, the fields and the framing", () => {
    const head = requestHead("POST", "/a?b=1", "127.0.0.1:5000", { "x-a": "1", "x-list": ["p", "q"] }, { length: 3 });
    assert.equal(head, "POST /a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:5000\r\nConnection: keep-alive\r\nx-a: 1\r\nx-list: p\r\nx-list: q\r\nContent-Length: 3\r\n\r\n");
  });
  it("replaces the caller's framing and connection fields by its own", () => {
    const head = requestHead("PUT", "/", "h:1", { "content-length": "99", "Transfer-Encoding": "gzip", connection: "close" }, "chunked");
    assert.equal(head, "PUT / HTTP/1.1\r\nHost: h:1\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n");
  });
  it("no framing field for a bodiless request", () => {
    assert.equal(requestHead("GET", "/", "h:1", {}, "none"), "GET / HTTP/1.1\r\nHost: h:1\r\nConnection: keep-alive\r\n\r\n");
  });
  it("keeps a Host the caller set, as node:http does", () => {
    assert.match(requestHead("GET", "/", "h:1", { host: "example.test" }, "none"), /^GET \/ HTTP\/1\.1\r\nHost: example\.test\r\n/);
  });
  it("refuses what node:http refuses: a value with CR/LF, a name that is not a token, a bad method, an unescaped path", () => {
    const code = (fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        assert.ok(err instanceof InvalidHeaderError);
        return err.code;
      }
      return "none";
    };
    assert.equal(code(() => requestHead("GET", "/", "h:1", { "x-a": "1\r\nx-injected: 2" }, "none")), "ERR_INVALID_CHAR");
    assert.equal(code(() => requestHead("GET", "/", "h:1", { "bad name": "1" }, "none")), "ERR_INVALID_HTTP_TOKEN");
    assert.equal(code(() => requestHead("G T", "/", "h:1", {}, "none")), "ERR_INVALID_HTTP_TOKEN");
    assert.equal(code(() => requestHead("GET", "/a b", "h:1", {}, "none")), "ERR_UNESCAPED_CHARACTERS");
  });
});
