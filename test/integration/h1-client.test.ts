import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { Readable } from "node:stream";
import { after, describe, it } from "node:test";
import { Deadline } from "../../src/http/deadline.js";
import { H1Pool } from "../../src/http/h1/pool.js";
import type { UpstreamResponse } from "../../src/http/response.js";
import { waitFor } from "../support/sidecar.js";

/** A real node:http server counting its connections, with a handler per test. */
async function httpServer(handler: http.RequestListener): Promise<{ port: number; sockets: Set<net.Socket>; connections: () => number; close(): void }> {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = http.createServer(handler);
  server.on("connection", (s) => {
    connections += 1;
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as net.AddressInfo).port, sockets, connections: () => connections, close: () => server.close() };
}

/** A raw TCP server that answers each connection's request bytes with whatever `answer` writes: for framing node:http would not produce. */
async function rawServer(answer: (s: net.Socket, request: string) => void): Promise<{ port: number; connections: () => number; close(): void }> {
  let connections = 0;
  const server = net.createServer((s) => {
    connections += 1;
    let got = "";
    s.on("data", (c) => {
      got += c.toString("latin1");
      const end = got.indexOf("\r\n\r\n");
      if (end === -1) return;
      const request = got.slice(0, end + 4);
      got = got.slice(end + 4);
      answer(s, request);
    });
    s.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as net.AddressInfo).port, connections: () => connections, close: () => server.close() };
}

async function text(r: UpstreamResponse): Promise<string> {
  if (r.whole !== undefined) return r.whole.toString();
  const parts: Buffer[] = [];
  for await (const c of r as AsyncIterable<Buffer>) parts.push(c);
  return Buffer.concat(parts).toString();
}

const get = (pool: H1Pool, path = "/", ms = 3000) => pool.request({ method: "GET", path, headers: {}, body: Buffer.alloc(0) }, new Deadline(ms));
const codeOf = async (p: Promise<unknown>) => p.then(() => "resolved", (e: NodeJS.ErrnoException) => e.code ?? e.message);

describe("the app client's HTTP/1.1 pool (http/h1) against real servers", () => {
  const cleanup: (() => void)[] = [];
  after(() => cleanup.forEach((fn) => fn()));
  const pool = (port: number, o: { maxSockets?: number; idleTimeout?: number } = {}) => {
    const p = new H1Pool({ host: "127.0.0.1", port, ...o });
    cleanup.push(() => p.close());
    return p;
  };

  it("reuses one keep-alive connection for sequential calls; a small answer comes back whole", async () => {
    const s = await httpServer((req, res) => res.end(`hi ${req.method} ${req.url}`));
    cleanup.push(s.close);
    const p = pool(s.port);
    for (let i = 0; i < 20; i++) {
      const r = await get(p, `/n/${i}`);
      assert.equal(r.statusCode, 200);
      assert.ok(r.whole, "one read: no stream made");
      assert.equal(r.whole.toString(), `hi GET /n/${i}`);
    }
    assert.equal(s.connections(), 1);
    assert.equal(p.open, 1);
  });

  it("opens at most maxSockets connections; the rest wait and are all answered", async () => {
    let inFlight = 0;
    let most = 0;
    const s = await httpServer((_req, res) => {
      most = Math.max(most, ++inFlight);
      setTimeout(() => {
        inFlight -= 1;
        res.end("ok");
      }, 20);
    });
    cleanup.push(s.close);
    const p = pool(s.port, { maxSockets: 3 });
    const all = await Promise.all(Array.from({ length: 12 }, () => get(p).then(text)));
    assert.deepEqual(all, Array(12).fill("ok"));
    assert.equal(s.connections(), 3);
    assert.equal(most, 3);
  });

  it("a waiting request whose deadline passes fails and is never sent", async () => {
    const seen: string[] = [];
    const s = await httpServer((req, res) => {
      seen.push(req.url!);
      setTimeout(() => res.end("late"), 300);
    });
    cleanup.push(s.close);
    const p = pool(s.port, { maxSockets: 1 });
    const first = get(p, "/first");
    assert.equal(await codeOf(get(p, "/waiter", 50)), "call cancelled");
    assert.equal(await first.then(text), "late");
    await get(p, "/after").then(text);
    assert.deepEqual(seen, ["/first", "/after"]);
  });

  it("streams an answer that spans reads, with the headers node:http would show", async () => {
    const s = await httpServer((_req, res) => {
      res.writeHead(200, [["Set-Cookie", "a=1"], ["Set-Cookie", "b=2"], ["X-Rep", "1"], ["X-Rep", "2"], ["Content-Type", "text/plain"]].flat());
      res.write("part1-");
      setTimeout(() => res.end("part2"), 20);
    });
    cleanup.push(s.close);
    const r = await get(pool(s.port));
    assert.equal(r.whole, undefined, "the body is still coming: a stream");
    assert.deepEqual(r.headers["set-cookie"], ["a=1", "b=2"]);
    assert.equal(r.headers["x-rep"], "1, 2");
    assert.equal(r.headers["transfer-encoding"], "chunked");
    assert.equal(await text(r), "part1-part2");
  });

  it("a body's end (its stream destroyed after the last byte) leaves its connection, by then another call's, alone", async () => {
    const urls: string[] = [];
    const s = await httpServer((req, res) => {
      urls.push(req.url!);
      if (req.url === "/slow") return void setTimeout(() => res.end("second"), 50);
      res.write("a-");
      setTimeout(() => res.end("b"), 10);
    });
    cleanup.push(s.close);
    const p = pool(s.port, { maxSockets: 1 });
    const first = await get(p, "/stream");
    assert.equal(first.whole, undefined);
    // Waits for the one connection, and gets it the moment the first answer is complete, before anyone read its end.
    const second = get(p, "/slow");
    await waitFor(() => urls.includes("/slow"), "the waiter to be sent on the connection the first answer left");
    assert.equal(await text(first), "a-b");
    (first as Readable).destroy();
    assert.equal(await second.then(text), "second");
    assert.equal(s.connections(), 1);
  });

  it("reads a body delimited by the connection's close, and does not reuse that connection", async () => {
    const s = await rawServer((sock) => sock.end("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"));
    cleanup.push(s.close);
    const p = pool(s.port);
    assert.equal(await get(p).then(text), "until the end");
    assert.equal(await get(p).then(text), "until the end");
    assert.equal(s.connections(), 2);
  });

  it("HEAD: the content-length describes no body; 204 and 304 carry none; the connection stays usable", async () => {
    const s = await httpServer((req, res) => {
      if (req.url === "/204") return res.writeHead(204).end();
      if (req.url === "/304") return res.writeHead(304, { etag: '"x"' }).end();
      res.writeHead(200, { "content-length": "1000" });
      res.end(req.method === "HEAD" ? undefined : Buffer.alloc(1000, 1));
    });
    cleanup.push(s.close);
    const p = pool(s.port);
    const head = await p.request({ method: "HEAD", path: "/", headers: {}, body: Buffer.alloc(0) }, new Deadline(2000));
    assert.equal(head.headers["content-length"], "1000");
    assert.equal((await text(head)).length, 0);
    assert.equal((await get(p, "/204")).statusCode, 204);
    assert.equal((await get(p, "/304")).statusCode, 304);
    assert.equal((await get(p).then(text)).length, 1000);
    assert.equal(s.connections(), 1);
  });

  it("skips informational answers (100 Continue, 103 Early Hints) and returns the final one", async () => {
    const s = await rawServer((sock) => sock.write("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone"));
    cleanup.push(s.close);
    const r = await get(pool(s.port));
    assert.equal(r.statusCode, 201);
    assert.equal(await text(r), "done");
    assert.equal(r.headers.link, undefined, "the 103's fields are not the answer's");
  });

  it("an app that closes an idle connection: the next call opens a new one", async () => {
    const s = await httpServer((_req, res) => res.end("ok"));
    cleanup.push(s.close);
    const p = pool(s.port);
    await get(p).then(text);
    for (const sock of s.sockets) sock.destroy();
    await waitFor(() => p.open === 0, "the pool to see the close");
    assert.equal(await get(p).then(text), "ok");
    assert.equal(s.connections(), 2);
  });

  it("closes connections idle past idleTimeout, or past the app's Keep-Alive hint less a second", async () => {
    const s = await httpServer((req, res) => {
      if (req.url === "/hint") res.setHeader("keep-alive", "timeout=1");
      res.end("ok");
    });
    cleanup.push(s.close); // node's own keepAliveTimeout (5 s) is past every wait here: a close within them is ours
    const p = pool(s.port, { idleTimeout: 60_000 });
    await get(p, "/hint").then(text);
    await waitFor(() => s.sockets.size === 0, "our side to close the idle connection (hint 1 s, less a second)", 3000);
    const q = pool(s.port, { idleTimeout: 50 });
    await get(q).then(text);
    await waitFor(() => s.sockets.size === 0 && q.open === 0, "the idle connection closed after 50 ms", 3000);
  });

  it("a refused connection fails with ECONNREFUSED", async () => {
    const s = await httpServer(() => undefined);
    s.close();
    await waitFor(async () => (await codeOf(get(pool(s.port)))) === "ECONNREFUSED", "a refused connection");
  });

  it("a deadline before the head destroys the connection; one during the body ends the body with an error", async () => {
    let closed = 0;
    const s = await httpServer((req, res) => {
      req.socket.once("close", () => (closed += 1));
      if (req.url === "/never") return;
      res.writeHead(200);
      res.write("some");
    });
    cleanup.push(s.close);
    const p = pool(s.port);
    assert.equal(await codeOf(get(p, "/never", 50)), "call cancelled");
    await waitFor(() => closed === 1, "the server to see the connection close");
    const d = new Deadline(100);
    const r = await p.request({ method: "GET", path: "/body", headers: {}, body: Buffer.alloc(0) }, d);
    assert.equal(await codeOf(text(r)), "ERR_STREAM_PREMATURE_CLOSE");
    await waitFor(() => closed === 2, "the connection of the cut body to close");
    assert.equal(p.open, 0);
  });

  it("a slow reader holds the app back (backpressure on the socket), then gets every byte", async () => {
    const size = 16 * 1024 * 1024;
    let blocked = false;
    const s = await httpServer((_req, res) => {
      res.writeHead(200, { "content-length": String(size) });
      const chunk = Buffer.alloc(256 * 1024, 7);
      let sent = 0;
      const pump = () => {
        while (sent < size) {
          sent += chunk.length;
          if (!res.write(chunk)) {
            blocked = true;
            return void res.once("drain", pump);
          }
        }
        res.end();
      };
      pump();
    });
    cleanup.push(s.close);
    const r = await get(pool(s.port));
    assert.equal(r.whole, undefined);
    const body = r as Readable;
    body.pause();
    await waitFor(() => blocked, "the app's writes to block while nobody reads");
    let n = 0;
    for await (const c of body as AsyncIterable<Buffer>) n += c.length;
    assert.equal(n, size);
  });

  it("streams a request body with its declared length, or chunked without one", async () => {
    const seen: { te?: string | undefined; cl?: string | undefined; body: string }[] = [];
    const s = await httpServer((req, res) => {
      const parts: Buffer[] = [];
      req.on("data", (c: Buffer) => parts.push(c));
      req.on("end", () => {
        seen.push({ te: req.headers["transfer-encoding"], cl: req.headers["content-length"], body: Buffer.concat(parts).toString() });
        res.end("ok");
      });
    });
    cleanup.push(s.close);
    const p = pool(s.port);
    const stream = (parts: string[]) => Readable.from(parts.map((x) => Buffer.from(x)));
    await p.request({ method: "PUT", path: "/", headers: {}, body: stream(["ab", "", "cd"]), length: 4 }, new Deadline(2000)).then(text);
    await p.request({ method: "POST", path: "/", headers: {}, body: stream(["x", "", "yz"]) }, new Deadline(2000)).then(text);
    assert.deepEqual(seen, [
      { te: undefined, cl: "4", body: "abcd" },
      { te: "chunked", cl: undefined, body: "xyz" },
    ]);
    assert.equal(s.connections(), 1, "both framings leave the connection reusable");
  });

  it("an answer before the request body is all sent is returned, and that connection is not reused", async () => {
    const s = await httpServer((_req, res) => res.writeHead(413, { connection: "keep-alive" }).end("too big"));
    cleanup.push(s.close);
    const p = pool(s.port);
    const body = new Readable({ read() {} });
    body.push("start");
    const r = await p.request({ method: "POST", path: "/", headers: {}, body }, new Deadline(2000));
    assert.equal(r.statusCode, 413);
    assert.equal(await text(r), "too big");
    await waitFor(() => p.open === 0, "the half-sent connection to close");
    body.destroy();
    assert.equal(await get(p).then(text), "too big");
  });

  it("malformed answers and unsolicited bytes close that connection only, with the parser's error", async () => {
    let mode = "garbage";
    const s = await rawServer((sock) => {
      if (mode === "garbage") sock.write("HTTP/1.1 abc nonsense\r\n\r\n");
      else if (mode === "extra") sock.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
      else sock.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    });
    cleanup.push(s.close);
    const p = pool(s.port);
    assert.match(await codeOf(get(p)), /^HPE_/);
    mode = "extra";
    assert.equal(await get(p).then(text), "ok");
    await waitFor(() => p.open === 0, "the connection that sent an answer nobody asked for to close");
    mode = "fine";
    assert.equal(await get(p).then(text), "ok");
    assert.equal(s.connections(), 3);
  });

  it("a header node:http would refuse is refused before anything is written; the pool stays usable", async () => {
    const s = await httpServer((_req, res) => res.end("ok"));
    cleanup.push(s.close);
    const p = pool(s.port);
    const bad = p.request({ method: "GET", path: "/", headers: { "x-a": "1\r\nx-b: 2" }, body: Buffer.alloc(0) }, new Deadline(2000));
    assert.equal(await codeOf(bad), "ERR_INVALID_CHAR");
    assert.equal(await get(p).then(text), "ok");
    assert.equal(s.connections(), 1);
  });

  it("close(): a call in flight fails, later calls are refused", async () => {
    const s = await httpServer(() => undefined);
    cleanup.push(s.close);
    const p = pool(s.port);
    const pending = get(p);
    await waitFor(() => s.sockets.size === 1, "the call to be in flight");
    p.close();
    assert.equal(await codeOf(pending), "ECONNRESET");
    assert.equal(await codeOf(get(p)), "ERR_POOL_CLOSED");
    await waitFor(() => s.sockets.size === 0, "the connection to close");
  });
});
