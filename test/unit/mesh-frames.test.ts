import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { dataFrame, END_STREAM, FrameReader, FrameType, headFrame, MeshProtocolError, numberFrame, PREFACE, resetFrame, splitHead, type Frame, type RequestHead } from "../../src/transport/mesh/frames.js";

const read = (chunks: Buffer[], max?: number): Frame[] => {
  const out: Frame[] = [];
  const r = new FrameReader((f) => out.push({ ...f, payload: Buffer.from(f.payload) }), max);
  for (const c of chunks) r.push(c);
  return out;
};

describe("mesh frames", () => {
  const head: RequestHead = { m: "POST", p: "/Greeter/Hello?x=1", h: { "content-type": "application/json", "set-cookie": ["a=1", "b=2"] } };
  const body = Buffer.from('{"name":"café"}');

  it("the preface starts with 0, a byte no HTTP request begins with", () => {
    assert.equal(PREFACE[0], 0);
  });

  it("a head frame round-trips its type, flags, stream, head and body", () => {
    const [f] = read([headFrame(FrameType.REQUEST, END_STREAM, 7, head, body)]);
    assert.equal(f!.type, FrameType.REQUEST);
    assert.equal(f!.flags, END_STREAM);
    assert.equal(f!.stream, 7);
    const split = splitHead<RequestHead>(f!.payload);
    assert.deepEqual(split.head, head);
    assert.deepEqual(split.body, body);
  });

  it("frames cut at every byte boundary come out whole and in order", () => {
    const wire = Buffer.concat([headFrame(FrameType.REQUEST, END_STREAM, 1, head, body), dataFrame(FrameType.DATA, 3, Buffer.from("xyz")), numberFrame(FrameType.CREDIT, 3, 65536), dataFrame(FrameType.END, 3), resetFrame(5, "CANCELLED")]);
    const frames = read([...wire].map((b) => Buffer.from([b])));
    assert.deepEqual(frames.map((f) => [f.type, f.stream]), [[FrameType.REQUEST, 1], [FrameType.DATA, 3], [FrameType.CREDIT, 3], [FrameType.END, 3], [FrameType.RESET, 5]]);
    assert.equal(frames[1]!.payload.toString(), "xyz");
    assert.equal(frames[2]!.payload.readUInt32BE(0), 65536);
    assert.equal(frames[3]!.payload.length, 0);
    assert.equal(frames[4]!.payload.toString(), "CANCELLED");
  });

  it("many frames in one chunk are views into it, not copies", () => {
    const wire = Buffer.concat([dataFrame(FrameType.DATA, 1, Buffer.from("a")), dataFrame(FrameType.DATA, 3, Buffer.from("b"))]);
    const seen: Buffer[] = [];
    new FrameReader((f) => seen.push(f.payload)).push(wire);
    assert.equal(seen.length, 2);
    assert.equal(seen[0]!.buffer, wire.buffer);
  });

  it("a frame longer than the limit is refused from its length alone, before it is buffered", () => {
    const big = Buffer.alloc(10);
    big.writeUInt32BE(2 ** 31, 0);
    const r = new FrameReader(() => assert.fail("no frame"), 1024);
    assert.throws(() => r.push(big), MeshProtocolError);
  });

  it("a frame shorter than its own header is refused", () => {
    const tiny = Buffer.alloc(10);
    tiny.writeUInt32BE(2, 0);
    assert.throws(() => read([tiny]), MeshProtocolError);
  });

  it("an HTTP answer read as frames is refused (a peer that does not speak mesh)", () => {
    assert.throws(() => read([Buffer.from("HTTP/1.1 400 Bad Request\r\n\r\n")]), MeshProtocolError);
  });

  it("a head that is not JSON, longer than its frame, or without headers is refused", () => {
    const bad = (json: string, declared = Buffer.byteLength(json)) => {
      const p = Buffer.alloc(4 + Buffer.byteLength(json));
      p.writeUInt32BE(declared, 0);
      p.write(json, 4);
      return p;
    };
    assert.throws(() => splitHead(bad("{nope")), MeshProtocolError);
    assert.throws(() => splitHead(bad("{}", 99)), MeshProtocolError);
    assert.throws(() => splitHead(bad('{"m":"GET","p":"/"}')), MeshProtocolError);
    assert.throws(() => splitHead(bad('{"h":null}')), MeshProtocolError);
    assert.throws(() => splitHead(Buffer.alloc(2)), MeshProtocolError);
  });
});
