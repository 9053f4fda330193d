/**
 * Tests of `http/parser.ts`, driven by the fixtures in `fixtures/http/requests.ts`: every valid request is parsed
 * as expected and every rejection gives its status, whole, split at every byte boundary and one byte at a time;
 * plus pipelining, the in-place (no copy) property, `detach()`, limits, and the parser's state accessors.
 */

import assert from "node:assert/strict";
import {
  DEFAULT_LIMITS,
  type ParserHandler,
  type ParserLimits,
  type RequestHead,
  RequestParser,
} from "../http/parser.ts";
import { reasonPhrase, STATUS_TEXT } from "../http/status.ts";
import { type ExpectedRequest, REJECTED, VALID } from "./fixtures/http/requests.ts";

/** One char code per byte (ISO-8859-1), so fixtures can hold any byte. */
function bytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) throw new Error(`Fixture char ${c} at ${i} is not a byte`);
    out[i] = c;
  }
  return out;
}

const str = (b: Uint8Array): string => String.fromCharCode(...b);

interface HeadSnapshot {
  method: string;
  target: string;
  path: string;
  query: string;
  versionMinor: 0 | 1;
  keepAlive: boolean;
  expectContinue: boolean;
  chunked: boolean;
  contentLength: number;
  headers: [string, string][];
  get: Record<string, string | null>;
}

type Event = { head: HeadSnapshot } | { body: string } | { complete: true };

function snapshot(head: RequestHead, names: string[]): HeadSnapshot {
  const headers: [string, string][] = [];
  head.forEachHeader((n, v) => headers.push([n, v]));
  for (let i = 0; i < head.headerCount; i++) {
    assert.deepEqual([head.headerName(i), head.headerValue(i)], headers[i], "headerName/headerValue match forEach");
  }
  const get: Record<string, string | null> = {};
  for (const n of names) get[n] = head.get(n);
  return {
    method: head.method(),
    target: head.target(),
    path: head.path(),
    query: head.query(),
    versionMinor: head.versionMinor,
    keepAlive: head.keepAlive,
    expectContinue: head.expectContinue,
    chunked: head.chunked,
    contentLength: head.contentLength,
    headers,
    get,
  };
}

/** Collects the events, merging adjacent body chunks (their boundaries depend on the split). */
class Recorder implements ParserHandler {
  events: Event[] = [];
  constructor(readonly names: string[] = []) {}
  onHead(head: RequestHead): void {
    this.events.push({ head: snapshot(head, this.names) });
  }
  onBody(chunk: Uint8Array): void {
    const last = this.events.at(-1);
    if (last && "body" in last) last.body += str(chunk);
    else this.events.push({ body: str(chunk) });
  }
  onComplete(): void {
    this.events.push({ complete: true });
  }
}

interface Outcome {
  status: number;
  reason: string;
  events: Event[];
  idle: boolean;
}

/** Feeds `input` cut at `cuts` (sorted offsets), stopping at the first error. */
function feed(input: Uint8Array, cuts: number[], limits?: Partial<ParserLimits>, names: string[] = []): Outcome {
  const rec = new Recorder(names);
  const parser = new RequestParser(rec, limits);
  let status = 0;
  let from = 0;
  for (const to of [...cuts, input.length]) {
    // A fresh copy per read, as a server's reused read buffer would hold it.
    status = parser.execute(input.slice(from, to));
    from = to;
    if (status !== 0) break;
  }
  assert.equal(parser.error, status);
  return { status, reason: parser.errorReason, events: rec.events, idle: parser.idle };
}

const oneByteCuts = (n: number): number[] => Array.from({ length: Math.max(0, n - 1) }, (_, i) => i + 1);

function namesOf(requests: ExpectedRequest[]): string[] {
  return [...new Set(requests.flatMap((r) => Object.keys(r.get ?? {})))];
}

/** Checks events against the expected requests: head, body (default ""), complete, for each in order. */
function assertRequests(events: Event[], expected: ExpectedRequest[]): void {
  const got: { head: HeadSnapshot; body: string; complete: boolean }[] = [];
  for (const e of events) {
    if ("head" in e) got.push({ head: e.head, body: "", complete: false });
    else if ("body" in e) got.at(-1)!.body += e.body;
    else got.at(-1)!.complete = true;
  }
  assert.equal(got.length, expected.length, "number of requests");
  expected.forEach((want, i) => {
    const { head, body, complete } = got[i];
    assert.ok(complete, `request ${i} completes`);
    assert.equal(body, want.body ?? "", `request ${i} body`);
    for (const key of Object.keys(want) as (keyof ExpectedRequest)[]) {
      if (key === "body") continue;
      assert.deepEqual(head[key], want[key], `request ${i} ${key}`);
    }
  });
}

for (const f of VALID) {
  Deno.test(f.name, () => {
    const out = feed(bytes(f.input), [], f.limits, namesOf(f.requests));
    assert.equal(out.status, 0, `rejected with ${out.status}: ${out.reason}`);
    assertRequests(out.events, f.requests);
    assert.ok(out.idle, "idle after the last request");
  });
}

for (const f of REJECTED) {
  Deno.test(f.name, () => {
    const out = feed(bytes(f.input), [], f.limits);
    assert.equal(out.status, f.status, `status (reason: ${out.reason})`);
    assert.ok(out.reason.includes(f.reason), `reason "${out.reason}" includes "${f.reason}"`);
    assert.equal(out.events.filter((e) => "complete" in e).length, f.completed ?? 0, "requests completed before");
  });
}

Deno.test("every valid fixture gives the same events at every split and one byte at a time", async (t) => {
  for (const f of VALID) {
    await t.step(f.name, () => {
      const input = bytes(f.input);
      const names = namesOf(f.requests);
      const whole = feed(input, [], f.limits, names);
      for (let i = 0; i <= input.length; i++) {
        assert.deepEqual(feed(input, [i], f.limits, names), whole, `split at ${i}`);
      }
      assert.deepEqual(feed(input, oneByteCuts(input.length), f.limits, names), whole, "one byte at a time");
    });
  }
});

Deno.test("every rejection gives the same status and events at every split and one byte at a time", async (t) => {
  for (const f of REJECTED) {
    await t.step(f.name, () => {
      const input = bytes(f.input);
      const whole = feed(input, [], f.limits);
      // Long inputs: every split near the ends, a stride in the middle (each split costs a full parse).
      const stride = input.length > 4096 ? 97 : 1;
      for (let i = 0; i <= input.length; i += i < 64 || i > input.length - 64 ? 1 : stride) {
        assert.deepEqual(feed(input, [i], f.limits), whole, `split at ${i}`);
      }
      assert.deepEqual(feed(input, oneByteCuts(input.length), f.limits), whole, "one byte at a time");
    });
  }
});

Deno.test("a whole request in one read is parsed in place: head.bytes is a view of the input", () => {
  const input = bytes("GET /in-place HTTP/1.1\r\nHost: a\r\n\r\n");
  let seen = 0;
  const parser = new RequestParser({
    onHead(head) {
      assert.equal(head.bytes.buffer, input.buffer, "no copy of the head");
      assert.equal(head.target(), "/in-place");
      head.detach();
      assert.notEqual(head.bytes.buffer, input.buffer, "detach() copies");
      assert.equal(head.bytes.length, input.length, "detach() copies just the head");
      const detached = head.bytes;
      head.detach();
      assert.equal(head.bytes, detached, "detach() is idempotent");
      assert.equal(head.get("host"), "a");
      seen++;
    },
    onBody() {},
    onComplete() {},
  });
  assert.equal(parser.execute(input), 0);
  assert.equal(seen, 1);
});

Deno.test("a pipelined head after others in one read is parsed in place too", () => {
  const input = bytes("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: b\r\n\r\n");
  const targets: string[] = [];
  const parser = new RequestParser({
    onHead(head) {
      assert.equal(head.bytes.buffer, input.buffer);
      targets.push(`${head.target()} ${head.get("host")}`);
    },
    onBody() {},
    onComplete() {},
  });
  assert.equal(parser.execute(input), 0);
  assert.deepEqual(targets, ["/1 a", "/2 b"]);
});

Deno.test("a head split across reads is assembled in the parser's buffer, not the input's", () => {
  const input = bytes("GET /split HTTP/1.1\r\nHost: a\r\nX-Long: value\r\n\r\n");
  let head: RequestHead | undefined;
  const parser = new RequestParser({
    onHead(h) {
      assert.notEqual(h.bytes.buffer, input.buffer);
      assert.equal(h.get("x-long"), "value");
      head = h;
    },
    onBody() {},
    onComplete() {},
  });
  assert.equal(parser.execute(input.subarray(0, 30)), 0);
  assert.equal(head, undefined);
  assert.equal(parser.execute(input.subarray(30)), 0);
  assert.ok(head);
});

Deno.test("a detached head outlives the read buffer; the parser then uses a new head object", () => {
  const buf = new Uint8Array(256);
  const heads: RequestHead[] = [];
  const parser = new RequestParser({
    onHead(head) {
      if (heads.length === 0) head.detach();
      heads.push(head);
    },
    onBody() {},
    onComplete() {},
  });
  const send = (s: string) => {
    const b = bytes(s);
    buf.fill(0x58);
    buf.set(b);
    assert.equal(parser.execute(buf.subarray(0, b.length)), 0);
  };
  send("GET /first?a=1 HTTP/1.1\r\nHost: one\r\nX: 1\r\n\r\n");
  send("POST /second HTTP/1.1\r\nHost: two\r\nContent-Length: 0\r\n\r\n");
  send("PUT /third HTTP/1.1\r\nHost: three\r\n\r\n");
  assert.equal(heads.length, 3);
  assert.notEqual(heads[0], heads[1], "a detached head is not reused");
  assert.equal(heads[1], heads[2], "an undetached head is reused");
  const first = heads[0];
  assert.equal(first.method(), "GET");
  assert.equal(first.target(), "/first?a=1");
  assert.equal(first.query(), "a=1");
  assert.equal(first.get("host"), "one");
  assert.deepEqual([first.headerName(1), first.headerValue(1)], ["X", "1"]);
  assert.equal(first.headerCount, 2);
});

Deno.test("a pipelined request split across reads comes out whole and in order", () => {
  const wire = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n" +
    "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello" +
    "GET /c HTTP/1.1\r\nHost: h\r\n\r\n";
  const input = bytes(wire);
  const cut = wire.indexOf("Content-Length") + 4; // inside the second head
  const out = feed(input, [cut, wire.indexOf("hello") + 2]);
  assert.equal(out.status, 0);
  assertRequests(out.events, [
    { method: "GET", target: "/a" },
    { method: "POST", target: "/b", body: "hello" },
    { method: "GET", target: "/c" },
  ]);
});

Deno.test("idle and inHead follow the connection through a request", () => {
  const parser = new RequestParser({ onHead() {}, onBody() {}, onComplete() {} });
  const state = () => [parser.idle, parser.inHead];
  assert.deepEqual(state(), [true, false]);
  parser.execute(bytes("POST / HTTP/1.1\r\nHo"));
  assert.deepEqual(state(), [false, true], "head partly received");
  parser.execute(bytes("st: a\r\nContent-Length: 3\r\n\r\nab"));
  assert.deepEqual(state(), [false, false], "reading the body");
  parser.execute(bytes("c"));
  assert.deepEqual(state(), [true, false], "between requests");
  parser.execute(bytes("\r\n"));
  assert.deepEqual(state(), [false, true], "an empty line starts the next head");
  assert.equal(parser.execute(bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n")), 0);
  assert.deepEqual(state(), [true, false]);
  assert.equal(parser.execute(bytes("BAD LINE\r\n")), 400);
  assert.deepEqual(state(), [false, false], "failed");
});

Deno.test("a failed parser returns the same status, emits nothing more, and reset() revives it", () => {
  const rec = new Recorder();
  const parser = new RequestParser(rec);
  assert.equal(parser.execute(bytes("GET / HTTP/1.1\r\nHost : a\r\n\r\n")), 400);
  const reason = parser.errorReason;
  assert.equal(parser.execute(bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n")), 400);
  assert.equal(parser.errorReason, reason);
  assert.equal(parser.error, 400);
  assert.deepEqual(rec.events, []);
  parser.reset();
  assert.equal(parser.error, 0);
  assert.equal(parser.errorReason, "");
  assert.equal(parser.execute(bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n")), 0);
  assert.equal(rec.events.length, 2);
});

Deno.test("an exception thrown by a handler propagates out of execute()", () => {
  const parser = new RequestParser({
    onHead() {
      throw new Error("handler bug");
    },
    onBody() {},
    onComplete() {},
  });
  assert.throws(() => parser.execute(bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n")), /handler bug/);
});

Deno.test("the limits default to DEFAULT_LIMITS and reject values below 1", () => {
  assert.deepEqual(DEFAULT_LIMITS, {
    maxHeaderBytes: 16384,
    maxUriBytes: 8192,
    maxBodyBytes: 8 * 1024 * 1024,
    maxHeaders: 100,
  });
  const h = { onHead() {}, onBody() {}, onComplete() {} };
  assert.throws(() => new RequestParser(h, { maxHeaderBytes: 0 }), RangeError);
  assert.throws(() => new RequestParser(h, { maxBodyBytes: NaN }), RangeError);
  assert.doesNotThrow(() => new RequestParser(h, { maxBodyBytes: Infinity }));
});

Deno.test("a small maxBodyBytes rejects a Content-Length body before any of it arrives", () => {
  const rec = new Recorder();
  const parser = new RequestParser(rec, { maxBodyBytes: 100 });
  assert.equal(parser.execute(bytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n")), 0);
  assert.equal(parser.execute(bytes("x".repeat(100))), 0);
  assert.equal(parser.execute(bytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n")), 413);
  assert.equal(rec.events.filter((e) => "head" in e).length, 1, "no onHead for the rejected request");
});

Deno.test("a head that never ends is a 431 as soon as it passes maxHeaderBytes", () => {
  const parser = new RequestParser({ onHead() {}, onBody() {}, onComplete() {} }, { maxHeaderBytes: 64 });
  assert.equal(parser.execute(bytes("GET / HTTP/1.1\r\nHost: a\r\nX: ")), 0);
  let status = 0;
  let fed = 28;
  while (status === 0 && fed < 1000) {
    status = parser.execute(bytes("y"));
    fed++;
  }
  assert.equal(status, 431);
  assert.equal(fed, 64);
});

Deno.test("method() returns the common methods and decodes others", () => {
  for (
    const m of ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE", "PROPFIND", "GETX"]
  ) {
    const target = m === "CONNECT" ? "a:1" : "/";
    const out = feed(bytes(`${m} ${target} HTTP/1.1\r\nHost: a\r\n\r\n`), []);
    assert.equal(out.status, 0, m);
    assert.equal((out.events[0] as { head: HeadSnapshot }).head.method, m);
  }
});

Deno.test("target() of a repeated target returns the cached string; a different target is decoded", () => {
  const targets: string[] = [];
  const parser = new RequestParser({
    onHead(head) {
      targets.push(head.target(), head.path(), head.query());
    },
    onBody() {},
    onComplete() {},
  });
  for (const t of ["/x?1", "/x?1", "/y", "/x?1"]) {
    assert.equal(parser.execute(bytes(`GET ${t} HTTP/1.1\r\nHost: a\r\n\r\n`)), 0);
  }
  assert.deepEqual(targets, ["/x?1", "/x", "1", "/x?1", "/x", "1", "/y", "/y", "", "/x?1", "/x", "1"]);
});

Deno.test("headerName() and headerValue() throw a RangeError out of range", () => {
  const parser = new RequestParser({
    onHead(head) {
      assert.equal(head.headerCount, 1);
      assert.throws(() => head.headerName(1), RangeError);
      assert.throws(() => head.headerValue(-1), RangeError);
      assert.throws(() => head.headerValue(0.5), RangeError);
    },
    onBody() {},
    onComplete() {},
  });
  assert.equal(parser.execute(bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n")), 0);
});

Deno.test("more than maxHeaders fields beyond the initial offset table still parse (the table grows)", () => {
  const fields = Array.from({ length: 80 }, (_, i) => `X-${i}: ${i}\r\n`).join("");
  const out = feed(bytes(`GET / HTTP/1.1\r\nHost: a\r\n${fields}\r\n`), [], undefined, ["x-79", "host"]);
  assert.equal(out.status, 0);
  const head = (out.events[0] as { head: HeadSnapshot }).head;
  assert.equal(head.headers.length, 81);
  assert.deepEqual(head.get, { "x-79": "79", host: "a" });
});

Deno.test("STATUS_TEXT has the reason phrases of every status the parser returns", () => {
  for (const s of [400, 413, 414, 431, 501, 505]) assert.ok(STATUS_TEXT[s], String(s));
  assert.equal(reasonPhrase(413), "Content Too Large");
  assert.equal(reasonPhrase(799), "");
});
