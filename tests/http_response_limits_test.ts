/**
 * Limits of the raw API's response writing: what a bodiless status may carry
 * (RFC 9110 §8.6: no `Content-Length` on a 204), and the memory a large
 * response leaves behind in the module-wide buffers responses are written
 * into (none: it must come back once the response is out).
 */

import assert from "node:assert/strict";
import { type HttpHandler, PreparedHeaders } from "../http/mod.ts";
import { OutBuffer } from "../http/response.ts";
import { _responseBufferCapacities } from "../http/server.ts";
import { BACKENDS, concatBytes } from "./_helpers.ts";
import { httpTest, rawRequest, serveTest } from "./_http.ts";

const H = "Host: x\r\n";
const NEXT = `GET /next HTTP/1.1\r\n${H}Connection: close\r\n\r\n`;
/** The most a shared response buffer may keep between responses (http/server.ts `KEEP_MAX`). */
const KEEP_MAX = 64 * 1024;

const encoder = new TextEncoder();
/** ~8 MB of UTF-8 from ~5.6 M UTF-16 units: 1-, 2-, 3- and 4-byte sequences (a surrogate pair) throughout. */
const BIG = "é" + "aé😀中bcdefgh".repeat(430_000) + "😀";
const BIG_BYTES = encoder.encode(BIG);
/** Bytes of the streamed case: a pattern that shows an offset or a lost piece. */
const BIG_CHUNK = Uint8Array.from({ length: 3 * 1024 * 1024 }, (_, i) => (i * 7 + (i >> 12)) & 0xff);
/** A header line longer than any head the shared buffers keep room for. */
const HUGE_VALUE = "v".repeat(200_000);

const handler: HttpHandler = (req, res) => {
  switch (req.path) {
    case "/next":
      return res.end("next");
    case "/204-length":
      res.status = 204;
      res.setHeader("Content-Length", new URLSearchParams(req.query).get("n") ?? "0");
      return res.end();
    case "/204-prepared":
      res.status = 204;
      res.setHeaders(new PreparedHeaders({ "x-a": "1", "content-length": "0", "x-b": "2" }));
      return res.end();
    case "/204-te":
      res.status = 204;
      res.setHeader("transfer-encoding", "chunked");
      return res.end();
    case "/204-write":
      res.status = 204;
      res.setHeader("content-length", "0");
      res.write("");
      return res.end();
    case "/304-length":
      res.status = 304;
      res.setHeader("content-length", "42");
      return res.end();
    case "/big":
      return res.end(BIG);
    case "/big-bytes":
      return res.end(BIG_BYTES);
    case "/big-stream":
      res.write(BIG_CHUNK);
      res.write(BIG_CHUNK.subarray(0, 5000));
      return res.end(BIG_CHUNK.subarray(0, 20_000));
    case "/huge-head":
      res.setHeader("x-huge", HUGE_VALUE);
      return res.end("small");
  }
  res.status = 404;
  res.end("not found");
};

/** The first response head of `text` (up to its blank line) and what follows it. */
function firstHead(text: string): { head: string; rest: string } {
  const end = text.indexOf("\r\n\r\n");
  assert.ok(end >= 0, text);
  return { head: text.slice(0, end + 2), rest: text.slice(end + 4) };
}

/** Sends `wire` on a fresh connection and returns every byte the server sent until it closed. */
async function exchangeBytes(port: number, wire: string): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const writing = conn.write(encoder.encode(wire));
    const chunks: Uint8Array[] = [];
    let size = 0;
    const buf = new Uint8Array(256 * 1024);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
      size += n;
    }
    await writing;
    const all = new Uint8Array(size);
    let at = 0;
    for (const c of chunks) {
      all.set(c, at);
      at += c.byteLength;
    }
    return all;
  } finally {
    conn.close();
  }
}

/** One response at `at` in `bytes`: its head as text and its body bytes (Content-Length or chunked), and where it ends. */
function responseAt(bytes: Uint8Array, at: number): { head: string; body: Uint8Array; end: number } {
  const latin1 = new TextDecoder("latin1");
  let headEnd = at;
  while (
    !(bytes[headEnd] === 13 && bytes[headEnd + 1] === 10 && bytes[headEnd + 2] === 13 && bytes[headEnd + 3] === 10)
  ) {
    headEnd++;
    assert.ok(headEnd < bytes.byteLength, "no end of head");
  }
  const head = latin1.decode(bytes.subarray(at, headEnd + 2));
  let pos = headEnd + 4;
  const length = head.match(/\r\ncontent-length: (\d+)\r\n/i);
  if (length !== null) {
    const n = Number(length[1]);
    return { head, body: bytes.subarray(pos, pos + n), end: pos + n };
  }
  assert.match(head, /\r\ntransfer-encoding: chunked\r\n/i);
  const pieces: Uint8Array[] = [];
  for (;;) {
    let lineEnd = pos;
    while (bytes[lineEnd] !== 13) lineEnd++;
    const size = parseInt(latin1.decode(bytes.subarray(pos, lineEnd)), 16);
    pos = lineEnd + 2;
    if (size === 0) return { head, body: concatBytes(pieces), end: pos + 2 };
    pieces.push(bytes.subarray(pos, pos + size));
    pos += size + 2;
  }
}

/** Asserts that the shared response buffers are back to `before` and within the bound. */
function assertBuffersBack(before: { head: number; body: number; cork: number }, what: string): void {
  const after = _responseBufferCapacities();
  assert.deepEqual(after, before, `${what}: the shared response buffers kept their growth`);
  for (const [name, size] of Object.entries(after)) assert.ok(size <= KEEP_MAX, `${name} buffer holds ${size} bytes`);
}

Deno.test("OutBuffer.clear() gives back memory grown past its keep bound, and keeps it below", () => {
  const out = new OutBuffer(1024, 4096);
  out.text("x".repeat(3000));
  assert.equal(out.bytes.byteLength, 16 * 1024); // 3 bytes a UTF-16 unit reserved: 9000 → 16 KiB
  out.view();
  out.clear();
  assert.equal(out.bytes.byteLength, 1024);
  assert.equal(out.view().byteLength, 0);
  assert.equal(out.view().buffer, out.bytes.buffer, "no view of the old memory is kept");
  out.text("é".repeat(1000)); // 2000 bytes, 3000 reserved: 4 KiB, within the bound
  assert.equal(out.bytes.byteLength, 4096);
  out.clear();
  assert.equal(out.bytes.byteLength, 4096, "growth within the bound is kept for the next use");
  out.text("héllo");
  assert.equal(new TextDecoder().decode(out.view()), "héllo");
});

Deno.test("OutBuffer without a keep bound keeps what it grew to", () => {
  const out = new OutBuffer(16);
  out.put(new Uint8Array(100_000));
  const size = out.bytes.byteLength;
  out.clear();
  assert.equal(out.bytes.byteLength, size);
});

for (const backend of BACKENDS) {
  Deno.test(`\`listenHttp()\` (${backend}) sends no Content-Length or Transfer-Encoding on a 204`, async (t) => {
    await httpTest(backend, {}, () => handler, async ({ port, handlerErrors }) => {
      const cases = [
        ["a Content-Length: 0 set with setHeader()", `GET /204-length HTTP/1.1\r\n${H}\r\n`],
        ["a Content-Length: 5 (that would swallow the next response)", `GET /204-length?n=5 HTTP/1.1\r\n${H}\r\n`],
        [
          "a Content-Length in a PreparedHeaders block, whose other lines stay",
          `GET /204-prepared HTTP/1.1\r\n${H}\r\n`,
        ],
        ["a Transfer-Encoding: chunked", `GET /204-te HTTP/1.1\r\n${H}\r\n`],
        ["a Content-Length on a streamed 204 (write())", `GET /204-write HTTP/1.1\r\n${H}\r\n`],
        ["a Content-Length on the 204 answer to HEAD", `HEAD /204-length HTTP/1.1\r\n${H}\r\n`],
        ["a Content-Length on an HTTP/1.0 204", `GET /204-length HTTP/1.0\r\nConnection: keep-alive\r\n\r\n`],
      ];
      for (const [name, wire] of cases) {
        await t.step(`${name} is dropped, and the next response is read as itself`, async () => {
          const r = await rawRequest(port, wire + NEXT);
          const { head, rest } = firstHead(r.text);
          assert.match(head, /^HTTP\/1\.[01] 204 No Content\r\n/, r.text);
          assert.doesNotMatch(head, /content-length|transfer-encoding/i, head);
          if (wire.includes("prepared")) assert.match(head, /\r\nx-a: 1\r\nx-b: 2\r\n$/, head);
          assert.match(rest, /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nnext$/, r.text);
        });
      }

      await t.step("a 304 keeps the handler's Content-Length (RFC 9110 §8.6 allows it there)", async () => {
        const r = await rawRequest(port, `GET /304-length HTTP/1.1\r\n${H}\r\n` + NEXT);
        const { head, rest } = firstHead(r.text);
        assert.match(head, /^HTTP\/1\.1 304 Not Modified\r\n[^]*\r\ncontent-length: 42\r\n/, head);
        assert.match(rest, /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nnext$/, r.text);
      });
      assert.deepEqual(handlerErrors, []);
    });
  });

  Deno.test(`\`serve()\` (${backend}) sends no Content-Length on the 204 answer to HEAD`, async () => {
    await serveTest(
      backend,
      () => new Response(null, { status: 204, headers: { "content-length": "0", "x-a": "b" } }),
      async (port) => {
        const r = await rawRequest(port, `HEAD / HTTP/1.1\r\n${H}\r\n` + NEXT.replace("/next", "/"));
        const { head, rest } = firstHead(r.text);
        assert.match(head, /^HTTP\/1\.1 204 No Content\r\n[^]*x-a: b\r\n/, r.text);
        assert.doesNotMatch(head, /content-length|transfer-encoding/i, head);
        assert.match(rest, /^HTTP\/1\.1 204 No Content\r\n/, r.text);
      },
    );
  });

  Deno.test(`\`listenHttp()\` (${backend}) gives back the shared buffers' memory after a large response`, async (t) => {
    await httpTest(backend, {}, () => handler, async ({ port, handlerErrors }) => {
      // A small response first, so that what the buffers hold before is what every response needs.
      assert.match((await rawRequest(port, NEXT)).text, /\r\n\r\nnext$/);
      const before = _responseBufferCapacities();

      await t.step("end() with a string of ~8 MB of UTF-8 arrives byte-exact, and its memory comes back", async () => {
        const bytes = await exchangeBytes(port, `GET /big HTTP/1.1\r\n${H}\r\n` + NEXT);
        const big = responseAt(bytes, 0);
        assert.match(big.head, /^HTTP\/1\.1 200 OK\r\n/, big.head);
        assert.equal(big.body.byteLength, BIG_BYTES.byteLength);
        assert.ok(big.body.every((b, i) => b === BIG_BYTES[i]), "the body differs from the string's UTF-8");
        const next = responseAt(bytes, big.end);
        assert.equal(new TextDecoder().decode(next.body), "next");
        assert.equal(next.end, bytes.byteLength);
        assertBuffersBack(before, "end(string)");
      });

      await t.step("end() with ~8 MB of bytes arrives byte-exact, and no buffer keeps a copy", async () => {
        const bytes = await exchangeBytes(port, `GET /big-bytes HTTP/1.1\r\n${H}\r\n` + NEXT);
        const big = responseAt(bytes, 0);
        assert.equal(big.body.byteLength, BIG_BYTES.byteLength);
        assert.ok(big.body.every((b, i) => b === BIG_BYTES[i]), "the body differs");
        assert.equal(new TextDecoder().decode(responseAt(bytes, big.end).body), "next");
        assertBuffersBack(before, "end(bytes)");
      });

      await t.step("large chunks written with write() arrive in order, and no buffer keeps a copy", async () => {
        const bytes = await exchangeBytes(port, `GET /big-stream HTTP/1.1\r\n${H}\r\n` + NEXT);
        const big = responseAt(bytes, 0);
        const want = concatBytes([BIG_CHUNK, BIG_CHUNK.subarray(0, 5000), BIG_CHUNK.subarray(0, 20_000)]);
        assert.equal(big.body.byteLength, want.byteLength);
        assert.ok(big.body.every((b, i) => b === want[i]), "the streamed body differs");
        assert.equal(new TextDecoder().decode(responseAt(bytes, big.end).body), "next");
        assertBuffersBack(before, "write()");
      });

      await t.step("a head with a 200 KB header line is sent whole, and its memory comes back", async () => {
        const bytes = await exchangeBytes(port, `GET /huge-head HTTP/1.1\r\n${H}\r\n` + NEXT);
        const huge = responseAt(bytes, 0);
        assert.ok(huge.head.includes(`\r\nx-huge: ${HUGE_VALUE}\r\n`), "the header line was cut");
        assert.equal(new TextDecoder().decode(huge.body), "small");
        assert.equal(new TextDecoder().decode(responseAt(bytes, huge.end).body), "next");
        assertBuffersBack(before, "a huge head");
      });
      assert.deepEqual(handlerErrors, []);
    });
  });
}
