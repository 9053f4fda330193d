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

const H = "Host: x\r\n";
const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

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

/** One response as read off the socket: its head as text, and its body (de-chunked). */
interface ReadResponse {
  head: string;
  body: Uint8Array;
}

/**
 * An HTTP/1.1 client on a plain socket: writes exact bytes and reads the responses one at a time (framed by
 * Content-Length or chunked), on one keep-alive connection. A slow one reads in 16 KiB steps, pausing on the way.
 */
class SocketClient {
  readonly #conn: Deno.TcpConn;
  readonly #slow: boolean;
  /** Bytes read and not yet consumed. */
  #buf: Uint8Array = new Uint8Array(0);
  readonly #scratch = new Uint8Array(64 * 1024);
  #sinceRest = 0;

  private constructor(conn: Deno.TcpConn, slow: boolean) {
    this.#conn = conn;
    this.#slow = slow;
  }

  static async open(port: number, options: { slow?: boolean } = {}): Promise<SocketClient> {
    return new SocketClient(await Deno.connect({ hostname: "127.0.0.1", port }), options.slow ?? false);
  }

  async send(wire: string): Promise<void> {
    const bytes = encoder.encode(wire);
    for (let at = 0; at < bytes.byteLength;) at += await this.#conn.write(bytes.subarray(at));
  }

  /** Reads the next response whole. */
  async response(): Promise<ReadResponse> {
    const head = await this.#head();
    const length = head.match(/\r\ncontent-length: (\d+)\r\n/i);
    if (length !== null) return { head, body: await this.#exactly(Number(length[1])) };
    assert.match(head, /\r\ntransfer-encoding: chunked\r\n/i, head);
    const pieces: Uint8Array[] = [];
    for (;;) {
      const size = parseInt(await this.#line(), 16);
      if (size === 0) {
        assert.equal(await this.#line(), "", "the chunked body ends with an empty line");
        return { head, body: concatBytes(pieces) };
      }
      pieces.push(await this.#exactly(size));
      assert.equal(await this.#line(), "", "a chunk ends with CRLF");
    }
  }

  /** Reads at most `limit` bytes of whatever comes, then stops (the rest stays unread). */
  async readSome(limit: number): Promise<number> {
    let got = this.#buf.byteLength;
    while (got < limit) {
      const n = await this.#conn.read(this.#scratch);
      if (n === null) break;
      got += n;
    }
    return got;
  }

  /** Reads and discards until the server closes (EOF or reset); how many bytes came. */
  async drainToClose(): Promise<number> {
    let got = this.#buf.byteLength;
    for (;;) {
      let n: number | null;
      try {
        n = await this.#conn.read(this.#scratch);
      } catch {
        n = null; // a reset is a close too
      }
      if (n === null) return got;
      got += n;
    }
  }

  close(): void {
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }

  async #head(): Promise<string> {
    for (;;) {
      const end = indexOfBlankLine(this.#buf);
      if (end >= 0) {
        const head = latin1.decode(this.#buf.subarray(0, end + 2));
        this.#buf = this.#buf.subarray(end + 4);
        return head;
      }
      await this.#more();
    }
  }

  async #line(): Promise<string> {
    for (;;) {
      const end = this.#buf.indexOf(13);
      if (end >= 0 && end + 1 < this.#buf.byteLength) {
        const line = latin1.decode(this.#buf.subarray(0, end));
        this.#buf = this.#buf.subarray(end + 2);
        return line;
      }
      await this.#more();
    }
  }

  /** The next `n` bytes, read straight into their own array past what is buffered. */
  async #exactly(n: number): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    let at = Math.min(n, this.#buf.byteLength);
    out.set(this.#buf.subarray(0, at));
    this.#buf = this.#buf.subarray(at);
    while (at < n) {
      const step = this.#slow ? Math.min(n - at, 16 * 1024) : n - at;
      const got = await this.#conn.read(out.subarray(at, at + step));
      if (got === null) throw new Error(`The server closed the connection after ${at} of ${n} body bytes`);
      at += got;
      await this.#pace(got);
    }
    return out;
  }

  async #more(): Promise<void> {
    const n = await this.#conn.read(this.#scratch);
    if (n === null) throw new Error("The server closed the connection before the response was complete");
    const next = new Uint8Array(this.#buf.byteLength + n);
    next.set(this.#buf);
    next.set(this.#scratch.subarray(0, n), this.#buf.byteLength);
    this.#buf = next;
    await this.#pace(n);
  }

  /** A slow reader rests 2 ms after each 256 KiB it reads: the server's socket buffer fills and drains many times. */
  async #pace(n: number): Promise<void> {
    if (!this.#slow) return;
    this.#sinceRest += n;
    if (this.#sinceRest < 256 * 1024) return;
    this.#sinceRest = 0;
    await delay(2);
  }
}

function indexOfBlankLine(bytes: Uint8Array): number {
  for (let i = bytes.indexOf(13); i >= 0 && i + 3 < bytes.byteLength; i = bytes.indexOf(13, i + 1)) {
    if (bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) return i;
  }
  return -1;
}

/** Fails naming the first byte where `actual` differs from `expected` (a 57 MB assert.deepEqual would not finish). */
function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.byteLength, expected.byteLength, `${what}: the body's length`);
  for (let i = 0; i < expected.byteLength; i++) {
    if (actual[i] !== expected[i]) {
      assert.fail(`${what}: the body differs first at byte ${i} of ${expected.byteLength}`);
    }
  }
}

/** `p`, or a failure naming `what` after `ms`: a stall fails the test instead of hanging it. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Reads the next response of `client` and checks it is a 200 with `expected` as its body, framed as `framing`. */
async function expectBody(
  client: SocketClient,
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
async function expectNext(client: SocketClient): Promise<void> {
  await client.send(`GET /next HTTP/1.1\r\n${H}\r\n`);
  const { head, body } = await within(client.response(), 5000, "the request after the large response");
  assert.match(head, /^HTTP\/1\.1 200 OK\r\n/, head);
  assert.equal(new TextDecoder().decode(body), "next");
}

/** Runs `fn` with a client on a connection of its own, closed afterwards whatever happens. */
async function withClient(
  port: number,
  fn: (client: SocketClient) => Promise<void>,
  options: { slow?: boolean } = {},
): Promise<void> {
  const client = await SocketClient.open(port, options);
  try {
    await fn(client);
  } finally {
    client.close();
  }
}

for (const backend of BACKENDS) {
  Deno.test(`\`listenHttp()\` (${backend}) sends a body past the write cap given to end() or write() whole`, async (t) => {
    await httpTest(backend, {}, () => routes(), async ({ port, handlerErrors }) => {
      await t.step(
        "end() with a 40 M-unit string (57 MB of UTF-8) arrives byte-exact, keep-alive goes on",
        () =>
          withClient(port, async (client) => {
            await client.send(`GET /text HTTP/1.1\r\n${H}\r\n`);
            await expectBody(client, BIG_TEXT_UTF8, "length", "end(string)");
            await expectNext(client);
          }),
      );

      await t.step(
        "end() with 40 MB of bytes arrives byte-exact, and a request pipelined behind it after",
        () =>
          withClient(port, async (client) => {
            await client.send(`GET /bytes HTTP/1.1\r\n${H}\r\nGET /next HTTP/1.1\r\n${H}\r\n`);
            await expectBody(client, BIG_BYTES, "length", "end(bytes)");
            const next = await within(client.response(), 5000, "the pipelined request");
            assert.equal(new TextDecoder().decode(next.body), "next");
            await expectNext(client);
          }),
      );

      await t.step("one write() of 40 MB then end() arrives whole, chunked", () =>
        withClient(port, async (client) => {
          await client.send(`GET /chunked HTTP/1.1\r\n${H}\r\n`);
          await expectBody(client, BIG_BYTES, "chunked", "write(bytes)");
          await expectNext(client);
        }));

      await t.step(
        "a write() of 20 MB, then end() of 20 MB once onDrain says so, arrives whole",
        () =>
          withClient(port, async (client) => {
            await client.send(`GET /paced HTTP/1.1\r\n${H}\r\n`);
            await expectBody(client, BIG_BYTES, "chunked", "write() and end() paced by onDrain");
            await expectNext(client);
          }),
      );

      await t.step(
        "one write() of a 57 MB string then end() with a tail arrives whole, in order",
        () =>
          withClient(port, async (client) => {
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
      await withClient(port, async (client) => {
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
      await withClient(port, async (client) => {
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
      await withClient(port, async (client) => {
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
          await withClient(port, async (client) => {
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
        withClient(port, async (client) => {
          await client.send(`GET /text HTTP/1.1\r\n${H}\r\n`);
          await expectBody(client, BIG_TEXT_UTF8, "length", "Response(string)");
          await expectNext(client);
        }));
      await t.step("40 MB of bytes", () =>
        withClient(port, async (client) => {
          await client.send(`GET /bytes HTTP/1.1\r\n${H}\r\n`);
          await expectBody(client, BIG_BYTES, "length", "Response(bytes)");
          await expectNext(client);
        }));
    });
  });
}
