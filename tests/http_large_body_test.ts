/**
 * Response bodies larger than a connection's write-queue cap (`maxWriteBuffer`, 16 MiB), handed over in one piece
 * (`end(big)`, one `write(big)`, `serve()` answering `new Response(big)`): they must arrive whole, as they do with
 * Node's `http`, Go's `net/http` and `Deno.serve`, with keep-alive and pipelining going on after them. A handler
 * that ignores `write()` returning false still loses the connection past the cap, but `onError` is told why; a
 * client that leaves mid-body aborts the response.
 */

import assert from "node:assert/strict";
import type { HttpHandler, HttpRequest } from "../http/mod.ts";
import { BACKENDS, concatBytes, payload } from "./_helpers.ts";
import { httpTest, serveTest } from "./_http.ts";
import { delay, waitFor } from "./_reactor.ts";
import { assertSameBytes, type WireClient, within, withWireClient } from "./_wire.ts";

const H = "Host: x\r\n";
const encoder = new TextEncoder();

/** ~40 M UTF-16 units, ~57 MB of UTF-8: 1-, 2-, 3- and 4-byte sequences (a surrogate pair) throughout. */
const BIG_TEXT = "é" + "aé😀中bcdefgh".repeat(3_340_000) + "😀";
const BIG_TEXT_UTF8 = encoder.encode(BIG_TEXT);
/** 40 MB of bytes in a pattern that shows an offset, a lost or a repeated piece. */
const BIG_BYTES = payload(40_000_000, 7);
/** A piece of a flood: 1 MiB, written again and again by a handler that ignores backpressure. */
const MIB = new Uint8Array(1024 * 1024).fill(0x66);
/** What a flood writes in all: well past the 16 MiB cap plus what the kernel's socket buffers absorb. */
const FLOOD_BYTES = 48 * 1024 * 1024;

/** The raw handler of these tests; `/watch` reports its abort through `onAbort`. */
function routes(onAbort: () => void = () => {}): HttpHandler {
  return (req, res) => {
    switch (req.path) {
      case "/text":
        return res.end(BIG_TEXT);
      case "/bytes":
        return res.end(BIG_BYTES);
      case "/chunked":
        res.write(BIG_BYTES); // one piece, its false ignored: end() right after is ordinary use
        return res.end();
      case "/chunked-text":
        res.write(BIG_TEXT);
        return res.end("tail");
      case "/paced":
        // Two pieces, the second once the first is out: onDrain comes after a large piece's last slice.
        if (!res.write(BIG_BYTES.subarray(0, 20_000_000))) {
          return res.onDrain(() => res.end(BIG_BYTES.subarray(20_000_000)));
        }
        return res.end(BIG_BYTES.subarray(20_000_000));
      case "/watch":
        res.onAbort(onAbort);
        return res.end(BIG_TEXT);
      case "/flood":
      case "/flood-small":
        return flood(res, req.path === "/flood" ? MIB : MIB.subarray(0, 16 * 1024));
      case "/next":
        return res.end("next");
    }
    res.status = 404;
    res.end("not found");
  };
}

/** Writes {@linkcode FLOOD_BYTES} in `piece`s without ever waiting for a drain (a handler's bug). */
function flood(res: Parameters<HttpHandler>[1], piece: Uint8Array): void {
  for (let sent = 0; sent < FLOOD_BYTES; sent += piece.byteLength) res.write(piece);
  res.end();
}

/** Reads the next response of `client` and checks it is a 200 with `expected` as its body, framed as `framing`. */
async function expectBody(
  client: WireClient,
  expected: Uint8Array,
  framing: "length" | "chunked",
  what: string,
): Promise<void> {
  const { head, body } = await within(client.response(), 15_000, what);
  assert.match(head, /^HTTP\/1\.1 200 OK\r\n/, head);
  if (framing === "length") assert.match(head, new RegExp(`\\r\\ncontent-length: ${expected.byteLength}\\r\\n`, "i"));
  else assert.match(head, /\r\ntransfer-encoding: chunked\r\n/i, head);
  assert.doesNotMatch(head, /\r\nconnection: close\r\n/i, "the connection is kept alive");
  assertSameBytes(body, expected, what);
}

/** Asks `/next` on `client`'s connection and checks the answer: the connection is still alive and in step. */
async function expectNext(client: WireClient): Promise<void> {
  await client.send(`GET /next HTTP/1.1\r\n${H}\r\n`);
  const { head, body } = await within(client.response(), 5000, "the request after the large response");
  assert.match(head, /^HTTP\/1\.1 200 OK\r\n/, head);
  assert.equal(new TextDecoder().decode(body), "next");
}

for (const backend of BACKENDS) {
  Deno.test(`\`listenHttp()\` (${backend}) sends a body past the write cap given to end() or write() whole`, async (t) => {
    await httpTest(backend, {}, () => routes(), async ({ port, handlerErrors }) => {
      await t.step(
        "end() with a 40 M-unit string (57 MB of UTF-8) arrives byte-exact, keep-alive goes on",
        () =>
          withWireClient(port, async (client) => {
            await client.send(`GET /text HTTP/1.1\r\n${H}\r\n`);
            await expectBody(client, BIG_TEXT_UTF8, "length", "end(string)");
            await expectNext(client);
          }),
      );

      await t.step(
        "end() with 40 MB of bytes arrives byte-exact, and a request pipelined behind it after",
        () =>
          withWireClient(port, async (client) => {
            await client.send(`GET /bytes HTTP/1.1\r\n${H}\r\nGET /next HTTP/1.1\r\n${H}\r\n`);
            await expectBody(client, BIG_BYTES, "length", "end(bytes)");
            const next = await within(client.response(), 5000, "the pipelined request");
            assert.equal(new TextDecoder().decode(next.body), "next");
            await expectNext(client);
          }),
      );

      await t.step(
        "one write() of 40 MB then end() arrives whole, chunked",
        () =>
          withWireClient(port, async (client) => {
            await client.send(`GET /chunked HTTP/1.1\r\n${H}\r\n`);
            await expectBody(client, BIG_BYTES, "chunked", "write(bytes)");
            await expectNext(client);
          }),
      );

      await t.step(
        "a write() of 20 MB, then end() of 20 MB once onDrain says so, arrives whole",
        () =>
          withWireClient(port, async (client) => {
            await client.send(`GET /paced HTTP/1.1\r\n${H}\r\n`);
            await expectBody(client, BIG_BYTES, "chunked", "write() and end() paced by onDrain");
            await expectNext(client);
          }),
      );

      await t.step(
        "one write() of a 57 MB string then end() with a tail arrives whole, in order",
        () =>
          withWireClient(port, async (client) => {
            await client.send(`GET /chunked-text HTTP/1.1\r\n${H}\r\n`);
            await expectBody(client, concatBytes([BIG_TEXT_UTF8, encoder.encode("tail")]), "chunked", "write(string)");
            await expectNext(client);
          }),
      );
      assert.deepEqual(handlerErrors, []);
    });
  });

  Deno.test(`\`listenHttp()\` (${backend}) closes after a large body only once its last byte is out`, async () => {
    // A linger deadline far shorter than the sending: it must start once the body is handed over, not at end().
    await httpTest(backend, { lingerTimeout: 200 }, () => routes(), async ({ port, handlerErrors }) => {
      await withWireClient(port, async (client) => {
        await client.send(`GET /bytes HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
        const { head, body } = await within(client.response(), 15_000, "end(bytes) with Connection: close");
        assert.match(head, /\r\nconnection: close\r\n/i, head);
        assertSameBytes(body, BIG_BYTES, "end(bytes) with Connection: close");
        assert.equal(await within(client.drainToClose(), 5000, "the close after the body"), 0, "nothing after it");
      }, { slow: true });
      assert.deepEqual(handlerErrors, []);
    });
  });

  Deno.test(`\`listenHttp()\` (${backend}) sends a body past the write cap whole to a slow reader`, async () => {
    await httpTest(backend, {}, () => routes(), async ({ port, handlerErrors }) => {
      await withWireClient(port, async (client) => {
        await client.send(`GET /bytes HTTP/1.1\r\n${H}\r\n`);
        await delay(50); // the reader starts late: the server has filled the socket and waits for it to drain
        await expectBody(client, BIG_BYTES, "length", "end(bytes) read slowly");
        await expectNext(client);
      }, { slow: true });
      assert.deepEqual(handlerErrors, []);
    });
  });

  Deno.test(`\`listenHttp()\` (${backend}) aborts a large response whose client leaves mid-body`, async () => {
    const aborted = Promise.withResolvers<void>();
    let aborts = 0;
    const onAbort = () => {
      aborts++;
      aborted.resolve();
    };
    await httpTest(backend, {}, () => routes(onAbort), async ({ server, port, handlerErrors }) => {
      await withWireClient(port, async (client) => {
        await client.send(`GET /watch HTTP/1.1\r\n${H}\r\n`);
        assert.ok(await client.readSome(1024 * 1024) >= 1024 * 1024);
      }); // closed with most of the body unread
      await within(aborted.promise, 5000, "onAbort of the response cut short");
      await waitFor(() => server.connectionCount === 0, "the server to forget the connection");
      assert.equal(aborts, 1);
      assert.deepEqual(handlerErrors, [], "a client leaving is not the server's error");
    });
  });

  Deno.test(`\`listenHttp()\` (${backend}) tells onError once why a handler ignoring write()'s false lost its connection`, async (t) => {
    for (const [path, what] of [["/flood", "1 MiB"], ["/flood-small", "16 KiB"]]) {
      await t.step(`writes of ${what} each, 48 MiB in all`, async () => {
        const blamed: (string | undefined)[] = [];
        const handlerErrors: unknown[] = [];
        const onError = (err: unknown, req?: HttpRequest) => {
          handlerErrors.push(err);
          blamed.push(req?.url);
        };
        await httpTest(backend, { onError }, () => routes(), async ({ server, port }) => {
          await withWireClient(port, async (client) => {
            await client.send(`GET ${path} HTTP/1.1\r\n${H}\r\n`);
            const got = await within(client.drainToClose(), 10_000, "the server to drop the connection");
            assert.ok(got < FLOOD_BYTES, `the client got ${got} bytes: the flood was not cut`);
          });
          // The error is reported before the connection's close, which makes the server forget it.
          await waitFor(() => server.connectionCount === 0, "the server to forget the connection");
          assert.equal(handlerErrors.length, 1, `onError calls: ${handlerErrors.map(String).join("; ")}`);
          const err = handlerErrors[0] as Error & { code?: string };
          assert.equal(err.code, "ENOBUFS");
          assert.match(err.message, /ENOBUFS/);
          assert.match(err.message, /limit is 16777216/);
          assert.deepEqual(blamed, [path], "the error names the request whose handler wrote on");
        });
      });
    }
  });

  Deno.test(`\`serve()\` (${backend}) sends a Response with a body past the write cap whole`, async (t) => {
    const handler = (req: Request) => {
      const path = new URL(req.url).pathname;
      if (path === "/text") return new Response(BIG_TEXT);
      if (path === "/bytes") return new Response(BIG_BYTES);
      return new Response("next");
    };
    await serveTest(backend, handler, async (port) => {
      await t.step("a 57 MB string", () =>
        withWireClient(port, async (client) => {
          await client.send(`GET /text HTTP/1.1\r\n${H}\r\n`);
          await expectBody(client, BIG_TEXT_UTF8, "length", "Response(string)");
          await expectNext(client);
        }));
      await t.step("40 MB of bytes", () =>
        withWireClient(port, async (client) => {
          await client.send(`GET /bytes HTTP/1.1\r\n${H}\r\n`);
          await expectBody(client, BIG_BYTES, "length", "Response(bytes)");
          await expectNext(client);
        }));
    });
  });
}
