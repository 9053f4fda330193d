/**
 * Review tests of http/response.ts and the raw API's response framing: every
 * response must be framed so that the next one on a keep-alive connection is
 * read as what it is, whatever the handler set or wrote.
 */

import assert from "node:assert/strict";
import type { HttpHandler } from "../http/mod.ts";
import { PreparedHeaders } from "../http/mod.ts";
import { OutBuffer } from "../http/response.ts";
import { httpTest, parseResponses, rawRequest } from "./_http.ts";

const H = "Host: x\r\n";

/** Pipelines `path` and then `GET /next` (closing), and returns the parsed responses and the raw text. */
async function thenNext(port: number, first: string) {
  const r = await rawRequest(port, `${first}GET /next HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
  return { text: r.text, res: parseResponses(r.text) };
}

const handler: HttpHandler = (req, res) => {
  switch (req.path) {
    case "/next":
      return res.end("next");
    case "/204-write":
      res.status = 204;
      res.write("body of a 204");
      return res.end();
    case "/304-write":
      res.status = 304;
      res.write("body of a 304");
      return res.end("more");
    case "/length-then-throw":
      res.setHeader("Content-Length", "5");
      throw new Error("handler failed after setting Content-Length");
    case "/length-mismatch-long":
      res.setHeader("Content-Length", "5");
      return res.end("hello world");
    case "/length-mismatch-short":
      res.setHeaders(new PreparedHeaders({ "content-length": "50" }));
      return res.end("hello");
    case "/length-match":
      res.setHeader("content-length", "6");
      return res.end("héllo");
    case "/length-write-over":
      res.setHeader("Content-Length", "3");
      res.write("abc");
      res.write("def");
      return res.end();
    case "/length-write-ok":
      res.setHeader("Content-Length", "6");
      res.write("abc");
      res.write("déf".slice(0, 1) + "ef");
      return res.end();
    case "/length-write-short":
      res.setHeader("Content-Length", "6");
      res.write("abc");
      return res.end();
    case "/utf8":
      return res.end("héllo 😀");
    case "/number":
      // deno-lint-ignore no-explicit-any
      res.setHeader("x-count", 42 as any);
      return res.end("n");
  }
  res.status = 404;
  res.end("not found");
};

Deno.test("OutBuffer with capacity 0 grows instead of looping forever", () => {
  const out = new OutBuffer(0);
  out.text("abc");
  out.decimal(12);
  out.crlf();
  assert.equal(new TextDecoder().decode(out.view()), "abc12\r\n");
});

Deno.test("OutBuffer grows a large body linearly and keeps it intact", () => {
  const out = new OutBuffer(16);
  const piece = new Uint8Array(1000).fill(7);
  for (let i = 0; i < 5000; i++) out.put(piece);
  assert.equal(out.length, 5_000_000);
  assert.ok(out.bytes.byteLength < 2 * 5_000_000 + 16);
  assert.ok(out.view().every((b) => b === 7));
});

Deno.test("PreparedHeaders validates the text that is sent, not a non-string value's own fields", () => {
  const sneaky = { length: 0, toString: () => "a\r\nInjected: 1" };
  // deno-lint-ignore no-explicit-any
  assert.throws(() => new PreparedHeaders({ "x-a": sneaky as any }), TypeError);
  // deno-lint-ignore no-explicit-any
  const n = new PreparedHeaders({ "x-n": 5 as any });
  assert.equal(new TextDecoder().decode(n.bytes), "x-n: 5\r\n");
});

Deno.test("PreparedHeaders and setHeader() reject a Content-Length that is not a decimal length", async () => {
  assert.throws(() => new PreparedHeaders({ "Content-Length": "abc" }), TypeError);
  assert.throws(() => new PreparedHeaders({ "content-length": "5, 6" }), TypeError);
  assert.throws(() => new PreparedHeaders({ "content-length": "-1" }), TypeError);
  await httpTest("epoll", {}, () => (_req, res) => {
    assert.throws(() => res.setHeader("content-length", "1e3"), TypeError);
    res.end("ok");
  }, async ({ port, handlerErrors }) => {
    const { res } = await thenNext(port, `GET / HTTP/1.1\r\n${H}\r\n`);
    assert.deepEqual(res.map((x) => [x.status, x.body]), [[200, "ok"], [200, "ok"]]);
    assert.deepEqual(handlerErrors, []);
  });
});

Deno.test("raw API: response framing stays in sync on a keep-alive connection", async (t) => {
  await httpTest("epoll", {}, () => handler, async ({ port, handlerErrors }) => {
    await t.step("write() on a 204 or 304 sends no body bytes and no chunk framing", async () => {
      for (const path of ["/204-write", "/304-write"]) {
        const { text } = await thenNext(port, `GET ${path} HTTP/1.1\r\n${H}\r\n`);
        const status = path.slice(1, 4);
        assert.match(
          text,
          new RegExp(`^HTTP/1\\.1 ${status} [^\r]*\r\nDate: [^\r]*\r\n\r\nHTTP/1\\.1 200 OK\r\n`),
          text,
        );
        assert.ok(text.endsWith("\r\n\r\nnext"), text);
      }
    });

    await t.step("a handler that set Content-Length then threw gets a well-framed 500", async () => {
      const { text, res } = await thenNext(port, `GET /length-then-throw HTTP/1.1\r\n${H}\r\n`);
      assert.equal(res[0].status, 500, text);
      assert.equal(res[0].headers.get("content-length"), String(res[0].body.length), text);
      assert.equal(res[0].body, "Internal Server Error\n");
      assert.equal(res[1]?.body, "next", text);
      handlerErrors.length = 0;
    });

    await t.step("a user Content-Length that disagrees with end(body) is refused, not sent", async () => {
      for (const path of ["/length-mismatch-long", "/length-mismatch-short"]) {
        const { text, res } = await thenNext(port, `GET ${path} HTTP/1.1\r\n${H}\r\n`);
        assert.deepEqual(res.map((x) => [x.status, x.body]), [[500, "Internal Server Error\n"], [200, "next"]], text);
        assert.equal(handlerErrors.length, 1);
        assert.match(String(handlerErrors[0]), /Content-Length/);
        handlerErrors.length = 0;
      }
    });

    await t.step("a user Content-Length that matches the UTF-8 length is sent once", async () => {
      const { text, res } = await thenNext(port, `GET /length-match HTTP/1.1\r\n${H}\r\n`);
      assert.equal(text.match(/content-length/gi)?.length, 2, text); // one a response: no duplicate
      assert.deepEqual(res.map((x) => [x.status, x.body]), [[200, "h\u00c3\u00a9llo"], [200, "next"]]);
    });

    await t.step("HEAD with a user Content-Length keeps it and sends no body", async () => {
      const { text, res } = await thenNext(port, `HEAD /length-match HTTP/1.1\r\n${H}\r\n`);
      assert.match(text, /^HTTP\/1\.1 200 OK\r\n[^]*content-length: 6\r\n\r\nHTTP\/1\.1 200/);
      assert.equal(res.length, 2);
    });

    await t.step("write() past a user Content-Length is refused: the connection is dropped, not desynced", async () => {
      const r = await rawRequest(port, `GET /length-write-over HTTP/1.1\r\n${H}\r\nGET /next HTTP/1.1\r\n${H}\r\n`);
      assert.ok(!r.text.includes("abcdef"), r.text);
      assert.ok(!r.text.includes("next"), r.text);
      assert.equal(r.closed, true);
      assert.equal(handlerErrors.length, 1);
      handlerErrors.length = 0;
    });

    await t.step("end() short of a user Content-Length drops the connection, and reports it", async () => {
      const r = await rawRequest(port, `GET /length-write-short HTTP/1.1\r\n${H}\r\nGET /next HTTP/1.1\r\n${H}\r\n`);
      assert.ok(!r.text.includes("next"), r.text);
      assert.equal(r.closed, true);
      assert.equal(handlerErrors.length, 1);
      assert.match(String(handlerErrors[0]), /short/);
      handlerErrors.length = 0;
    });

    await t.step("writes that add up to the user Content-Length keep the connection", async () => {
      const { text, res } = await thenNext(port, `GET /length-write-ok HTTP/1.1\r\n${H}\r\n`);
      assert.deepEqual(res.map((x) => [x.status, x.body]), [[200, "abcdef"], [200, "next"]], text);
    });

    await t.step("Content-Length counts UTF-8 bytes; numbers are sent as text", async () => {
      let { res } = await thenNext(port, `GET /utf8 HTTP/1.1\r\n${H}\r\n`);
      assert.equal(res[0].headers.get("content-length"), String(new TextEncoder().encode("héllo 😀").byteLength));
      assert.equal(res[1].body, "next");
      ({ res } = await thenNext(port, `GET /number HTTP/1.1\r\n${H}\r\n`));
      assert.equal(res[0].headers.get("x-count"), "42");
    });
    assert.deepEqual(handlerErrors, []);
  });
});
