/**
 * A hostile-client review of `http/parser.ts` and of how `listenHttp()` reacts to what it reports: edge cases the
 * fixtures in `fixtures/http/requests.ts` do not hold, each parsed whole and split at every byte boundary, and the
 * server-side reactions that only show over a real socket.
 */

import assert from "node:assert/strict";
import { type ParserLimits, RequestParser } from "../http/parser.ts";
import { Fifo } from "../http/server.ts";
import type { HttpHandler, HttpRequest, HttpResponse } from "../http/mod.ts";
import type { Reactor } from "../reactor/mod.ts";
import { httpTest, rawRequest } from "./_http.ts";

/** One char code per byte (ISO-8859-1). */
function bytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

interface Outcome {
  status: number;
  reason: string;
  events: string[];
}

/** Feeds `input` cut at `cuts`, stopping at the first error; body chunks are merged (their split is arbitrary). */
function feed(input: string, cuts: number[] = [], limits?: Partial<ParserLimits>): Outcome {
  const events: string[] = [];
  const parser = new RequestParser({
    onHead(head) {
      events.push(`head ${head.method()} ${head.target()} cl=${head.contentLength} chunked=${head.chunked}`);
    },
    onBody(chunk) {
      const s = String.fromCharCode(...chunk);
      if (events.at(-1)?.startsWith("body ")) events[events.length - 1] += s;
      else events.push("body " + s);
    },
    onComplete() {
      events.push("complete");
    },
  }, limits);
  let status = 0;
  let from = 0;
  for (const to of [...cuts, input.length]) {
    status = parser.execute(bytes(input.slice(from, to)));
    from = to;
    if (status !== 0) break;
  }
  return { status, reason: parser.errorReason, events };
}

/** The outcome of `input` whole, checked to be the same at every single split. */
function parse(input: string, limits?: Partial<ParserLimits>): Outcome {
  const whole = feed(input, [], limits);
  for (let i = 0; i <= input.length; i++) assert.deepEqual(feed(input, [i], limits), whole, `split at ${i}`);
  return whole;
}

function rejects(input: string, status: number, reason: string): void {
  const out = parse(input);
  assert.equal(out.status, status, `status (reason: ${out.reason})`);
  assert.ok(out.reason.includes(reason), `reason "${out.reason}" includes "${reason}"`);
}

const H = "Host: a\r\n";
const CHUNKED = "POST / HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n";

Deno.test("`RequestParser` review: Content-Length", async (t) => {
  await t.step("two different values beyond 2^53 are a 400 (differing), not a 413", () => {
    rejects(
      "POST / HTTP/1.1\r\n" + H + "Content-Length: 9007199254740993\r\nContent-Length: 9007199254740994\r\n\r\n",
      400,
      "Differing Content-Length",
    );
    rejects(
      "POST / HTTP/1.1\r\n" + H + "Content-Length: 1" + "0".repeat(30) + "\r\nContent-Length: 2" + "0".repeat(30) +
        "\r\n\r\n",
      400,
      "Differing Content-Length",
    );
    // The same huge number written twice (leading zeros aside) is one value: over the body limit.
    rejects(
      "POST / HTTP/1.1\r\n" + H + "Content-Length: 9007199254740993\r\nContent-Length: 0009007199254740993\r\n\r\n",
      413,
      "exceeds the body limit",
    );
  });

  await t.step("repeats with leading zeros are the same value; one empty repeat is a 400", () => {
    const out = parse("POST / HTTP/1.1\r\n" + H + "Content-Length: 5\r\nContent-Length: 005\r\n\r\nhello");
    assert.equal(out.status, 0, out.reason);
    assert.deepEqual(out.events, ["head POST / cl=5 chunked=false", "body hello", "complete"]);
    rejects("POST / HTTP/1.1\r\n" + H + "Content-Length: 5\r\nContent-Length:  \r\n\r\n", 400, "Empty");
  });
});

Deno.test("`RequestParser` review: Transfer-Encoding", async (t) => {
  await t.step("codings split over two lines are one list: gzip then chunked, or chunked then gzip, is a 501", () => {
    for (const [a, b] of [["gzip", "chunked"], ["chunked", "gzip"]]) {
      rejects(
        `POST / HTTP/1.1\r\n${H}Transfer-Encoding: ${a}\r\nTransfer-Encoding: ${b}\r\n\r\n`,
        501,
        "Unsupported transfer coding",
      );
    }
  });

  await t.step("a quoted 'chunked' is not chunked (501); a lone comma is an empty element (400)", () => {
    rejects(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: "chunked"\r\n\r\n`, 501, "Unsupported transfer coding");
    rejects(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: ,\r\n\r\n`, 400, "Empty element");
  });

  await t.step("any Transfer-Encoding in HTTP/1.0, even an unknown coding, is a 400", () => {
    rejects("POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "HTTP/1.0");
  });
});

Deno.test("`RequestParser` review: chunked bodies", async (t) => {
  await t.step("BWS is not accepted anywhere in a chunk line (documented strict choice)", () => {
    rejects(CHUNKED + "5 ;a=b\r\nhello\r\n0\r\n\r\n", 400, "Whitespace after a chunk size");
    rejects(CHUNKED + "5;a=b \r\nhello\r\n0\r\n\r\n", 400, "Whitespace in a chunk extension");
    rejects(CHUNKED + "5;a= b\r\nhello\r\n0\r\n\r\n", 400, "Whitespace in a chunk extension");
    rejects(CHUNKED + "0 \r\n\r\n", 400, "Whitespace after a chunk size");
  });

  await t.step("extensions: names alone, several, and quoted values with escapes are accepted", () => {
    const out = parse(CHUNKED + '5;a;b="x\\"y;z";c=d\r\nhello\r\n0;e="\xe9"\r\n\r\n');
    assert.equal(out.status, 0, out.reason);
    assert.deepEqual(out.events, ["head POST / cl=-1 chunked=true", "body hello", "complete"]);
  });

  await t.step("chunk data must be followed by exactly CRLF", () => {
    rejects(CHUNKED + "5\r\nhello\r\r\n0\r\n\r\n", 400, "not followed by CRLF");
    rejects(CHUNKED + "5\r\nhello\r\n\r\n0\r\n\r\n", 400, "chunk size is empty");
    rejects(CHUNKED + "0x5\r\nhello\r\n0\r\n\r\n", 400, "not hexadecimal");
  });

  await t.step("framing fields in trailers are dropped, not applied", () => {
    const out = parse(
      CHUNKED + "0\r\nContent-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\nGET /next HTTP/1.1\r\n" + H + "\r\n",
    );
    assert.equal(out.status, 0, out.reason);
    assert.deepEqual(out.events, [
      "head POST / cl=-1 chunked=true",
      "complete",
      "head GET /next cl=-1 chunked=false",
      "complete",
    ]);
  });

  await t.step("whitespace before the colon of a trailer is a 400", () => {
    rejects(CHUNKED + "0\r\nX : 1\r\n\r\n", 400, "Whitespace between");
  });

  await t.step("a body that stops before the final CRLF of the trailers is not complete", () => {
    for (const tail of ["0\r\n", "0\r\n\r", "0\r\nT: 1\r\n"]) {
      const out = parse(CHUNKED + "5\r\nhello\r\n" + tail);
      assert.equal(out.status, 0);
      assert.deepEqual(out.events, ["head POST / cl=-1 chunked=true", "body hello"], JSON.stringify(tail));
    }
  });
});

Deno.test("`RequestParser` review: request targets and Host", async (t) => {
  await t.step("absolute-form and CONNECT still need a Host in HTTP/1.1 (RFC 9112 §3.2)", () => {
    rejects("GET http://x/y HTTP/1.1\r\n\r\n", 400, "without a Host");
    rejects("CONNECT x:443 HTTP/1.1\r\n\r\n", 400, "without a Host");
    assert.equal(parse("GET http://x/y HTTP/1.0\r\n\r\n").status, 0);
  });

  await t.step("asterisk-form is '*' alone and only for OPTIONS", () => {
    rejects("OPTIONS *x HTTP/1.1\r\n" + H + "\r\n", 400, "Malformed request target");
    rejects("GET * HTTP/1.1\r\n" + H + "\r\n", 400, "only for OPTIONS");
  });

  await t.step("a Host with userinfo is a 400", () => {
    rejects("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400, "Invalid character in the Host");
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The server's reactions, over loopback.

/** /sleep answers after 300 ms; /hold never answers nor reads its body; anything else answers at once. */
function routes(seen: string[]): ({ reactor }: { reactor: Reactor }) => HttpHandler {
  return ({ reactor }) => (req, res) => {
    seen.push(`${req.method} ${req.path}`);
    if (req.path === "/sleep") reactor.callLater(300, () => res.end("slept"));
    else if (req.path !== "/hold") res.end("ok");
  };
}

Deno.test("`listenHttp()` review: each rejection answers its status with Connection: close, then closes", async (t) => {
  const H = "Host: t\r\n";
  const cases: [string, string, number][] = [
    [
      "differing huge Content-Length",
      `POST / HTTP/1.1\r\n${H}Content-Length: 1${"0".repeat(20)}\r\n` +
      `Content-Length: 2${"0".repeat(20)}\r\n\r\n`,
      400,
    ],
    ["a Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400],
    ["chunked twice", `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n`, 400],
    ["gzip, chunked", `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, 501],
    ["a bare CR in a trailer", `POST /hold HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\nT: 1\r\r\n\r\n`, 400],
    [
      "a bad chunk after a good one",
      `POST /hold HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\nz\r\n`,
      400,
    ],
    ["HTTP/1.2", `GET / HTTP/1.2\r\n${H}\r\n`, 505],
  ];
  await httpTest("epoll", {}, routes([]), async ({ port }) => {
    for (const [what, wire, status] of cases) {
      await t.step(`${what}: ${status}`, async () => {
        const r = await rawRequest(port, wire, { timeoutMs: 3000 });
        assert.deepEqual(r.statuses, [status], r.text.slice(0, 300));
        assert.equal(r.closed, true, "the server closed the connection");
        assert.match(r.text, /Connection: close\r\n/);
      });
    }
  });
});

Deno.test("`listenHttp()` review: a rejection behind a pending response answers after it, then closes", async () => {
  const seen: string[] = [];
  await httpTest("epoll", {}, routes(seen), async ({ port }) => {
    const r = await rawRequest(port, `GET /sleep HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost : t\r\n\r\n`);
    assert.deepEqual(r.statuses, [200, 400]);
    assert.equal(r.closed, true);
    assert.deepEqual(seen, ["GET /sleep"]);
  });
});

Deno.test("`RequestParser`: `Connection` listing `upgrade` (any case, among others) sets `head.upgrade`", () => {
  const seen: boolean[] = [];
  const parser = new RequestParser({
    onHead: (head) => void seen.push(head.upgrade),
    onBody() {},
    onComplete() {},
  });
  const req = (connection: string) => `GET / HTTP/1.1\r\nHost: t\r\nConnection: ${connection}\r\n\r\n`;
  assert.equal(parser.execute(bytes(req("Upgrade") + req("keep-alive, UPGRADE") + req("upgrades") + req("close"))), 0);
  assert.deepEqual(seen, [true, true, false, false]);
});

// Found in `http/server.ts` by the same review.

Deno.test({
  name: "`listenHttp()` review: no request after one with `Connection: close` reaches the handler (RFC 9112 §9.6)",

  async fn() {
    const seen: string[] = [];
    await httpTest("epoll", {}, routes(seen), async ({ port }) => {
      const r = await rawRequest(
        port,
        "GET /sleep HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" +
          "POST /side-effect HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
      );
      assert.deepEqual(r.statuses, [200]);
      assert.equal(r.closed, true);
      assert.deepEqual(seen, ["GET /sleep"], "the pipelined POST must not be processed");
    });
  },
});

Deno.test({
  name: "`listenHttp()` review: reads after a rejection do not queue one more error exchange each",

  async fn() {
    let pushes = 0;
    const push = Fifo.prototype.push;
    Fifo.prototype.push = function (this: Fifo<unknown>, x: unknown) {
      pushes++;
      return push.call(this, x);
    };
    try {
      await httpTest("epoll", {}, routes([]), async ({ port }) => {
        const pieces = ["GET /sleep HTTP/1.1\r\nHost: t\r\n\r\nBAD\r\n", ...Array<string>(50).fill("x")];
        const r = await rawRequest(port, pieces, { gapMs: 2 });
        assert.deepEqual(r.statuses, [200, 400]);
        assert.ok(pushes <= 2, `${pushes} exchanges queued for one request and one rejection`);
      });
    } finally {
      Fifo.prototype.push = push;
    }
  },
});

Deno.test({
  name: "`listenHttp()` review: an unread body of 1-byte chunks is held within a bounded heap",

  async fn() {
    await httpTest("epoll", {}, routes([]), async ({ port }) => {
      const head = "POST /hold HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
      // 70 000 payload bytes in 1-byte chunks: past the 64 KiB the server keeps for a reader to come.
      const wire = new TextEncoder().encode(head + "1\r\nx\r\n".repeat(70_000));
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      let grown: number;
      try {
        const before = Deno.memoryUsage().heapUsed;
        for (let at = 0; at < wire.length;) at += await conn.write(wire.subarray(at));
        await new Promise((r) => setTimeout(r, 300));
        grown = Deno.memoryUsage().heapUsed - before;
      } finally {
        conn.close();
      }
      assert.ok(grown < 6_000_000, `the heap grew by ${(grown / 1e6).toFixed(1)} MB for 64 KiB of held body`);
    });
  },
});

Deno.test("`listenHttp()` review: `req.readAll()` of a body sent as 1-byte chunks holds about the body's size", async () => {
  let read = false;
  let grown = 0;
  const handler = () => (req: HttpRequest, res: HttpResponse) => {
    const before = Deno.memoryUsage().heapUsed;
    // Measured when the whole body is held: readAll() hands it over only after the last chunk. (A GC meanwhile can
    // make the difference negative: that is no growth, not an unread body.)
    req.readAll((body) => {
      read = true;
      grown = Deno.memoryUsage().heapUsed - before;
      res.end(String(body.byteLength));
    });
  };
  await httpTest("epoll", {}, handler, async ({ port }) => {
    const head = "POST /all HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    // 200 000 body bytes in 1-byte chunks, 1.2 MB on the wire.
    const r = await rawRequest(port, head + "1\r\nx\r\n".repeat(200_000) + "0\r\n\r\n");
    assert.deepEqual(r.statuses, [200]);
  });
  assert.ok(read, "the body was read");
  assert.ok(grown < 10_000_000, `the heap grew by ${(grown / 1e6).toFixed(1)} MB for a 200 KB body`);
});
