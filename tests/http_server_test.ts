/**
 * The HTTP/1.1 server engine (`listenHttp`) over real sockets: rejections and
 * their lingering close, pipelining order, splits, chunked uploads, 100-continue,
 * HEAD, keep-alive rules, timeouts and graceful shutdown, on every backend.
 */

import assert from "node:assert/strict";
import { type HttpHandler, type HttpRequest, type HttpResponse, PreparedHeaders } from "../http/mod.ts";
import type { BackendName, Reactor } from "../reactor/mod.ts";
import { Fifo } from "../http/server.ts";
import { BACKENDS } from "./_helpers.ts";
import { randomBytes } from "./_echo.ts";
import { fetchText, httpTest, parseResponses, rawRequest } from "./_http.ts";
import { turns, waitFor } from "./_reactor.ts";

const H = "Host: t\r\n";

/** The routes of the tests: /, /sleep?ms=N (a reactor timer), /echo (the body back), /stream, /throw. */
function routes({ reactor }: { reactor: Reactor }): HttpHandler {
  return (req, res) => {
    switch (req.path) {
      case "/":
        res.end("Hello, World!");
        return;
      case "/sleep": {
        const ms = Number(new URLSearchParams(req.query).get("ms") ?? "0");
        reactor.callLater(ms, () => res.end(`slept ${ms}`));
        return;
      }
      case "/echo":
        req.readAll((body) => res.end(body));
        return;
      case "/stream":
        res.write("one,");
        reactor.callLater(5, () => {
          res.write("two,");
          res.end("three");
        });
        return;
      case "/throw":
        throw new Error("handler failure on purpose");
      default:
        res.status = 404;
        res.end("not found");
    }
  };
}

/** Rejections: raw bytes → status, and the connection closes after the response. */
const REJECTIONS: [string, string, number][] = [
  ["a malformed request line", "GET /\r\n\r\n", 400],
  ["a bare LF ending a header line", `GET / HTTP/1.1\r\nHost: t\n\r\n`, 400],
  ["whitespace before the colon", `GET / HTTP/1.1\r\n${H}X-A : 1\r\n\r\n`, 400],
  ["obs-fold", `GET / HTTP/1.1\r\n${H}X-A: 1\r\n 2\r\n\r\n`, 400],
  ["a NUL in a header value", `GET / HTTP/1.1\r\n${H}X-A: a\0b\r\n\r\n`, 400],
  [
    "both Content-Length and Transfer-Encoding",
    `POST / HTTP/1.1\r\n${H}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n`,
    400,
  ],
  [
    "differing duplicate Content-Length",
    `POST / HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd`,
    400,
  ],
  ["a Content-Length with a sign", `POST / HTTP/1.1\r\n${H}Content-Length: +3\r\n\r\nabc`, 400],
  ["a missing Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", 400],
  ["a repeated Host", `GET / HTTP/1.1\r\n${H}${H}\r\n`, 400],
  ["a raw byte >= 0x80 in the target", "GET /\xe9 HTTP/1.1\r\nHost: t\r\n\r\n", 400],
  ["a chunk size that is not hex", `POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\n`, 400],
  [
    "whitespace after the chunk size",
    `POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n`,
    400,
  ],
  ["an unsupported HTTP version", "GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505],
  ["a transfer coding other than chunked", `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\n\r\n`, 501],
  ["a header section over the limit", `GET / HTTP/1.1\r\n${H}X-Big: ${"a".repeat(20_000)}\r\n\r\n`, 431],
  ["a URI over the limit", `GET /${"a".repeat(9000)} HTTP/1.1\r\n${H}\r\n`, 414],
  ["a body over the limit", `POST /echo HTTP/1.1\r\n${H}Content-Length: 999999999\r\n\r\n`, 413],
];

Deno.test("the exchange queue (`Fifo`) keeps arrival order as an array would, through growth and wrap-around", () => {
  // A connection's exchanges: pushed as requests arrive, shifted as responses finish, taken all on close.
  const dice = randomBytes(20_000, 7); // a byte per step: push below 141, shift below 255, else take all
  const fifo = new Fifo<number>();
  const model: number[] = [];
  let next = 0;
  for (let step = 0; step < 20_000; step++) {
    const r = dice[step];
    if (r < 141) {
      fifo.push(next);
      model.push(next++);
    } else if (r < 255) {
      assert.equal(fifo.shift(), model.shift(), `shift at step ${step}`);
    } else {
      assert.deepEqual(fifo.takeAll(), model.splice(0), `takeAll at step ${step}`);
    }
    assert.equal(fifo.length, model.length, `length at step ${step}`);
    assert.equal(fifo.first(), model[0], `first() at step ${step}`);
  }
  assert.ok(next > 5000, "the queue saw pushes");
});

Deno.test("`listenHttp()` rejects malformed and oversized requests with the right status, then closes", async (t) => {
  await httpTest("epoll", {}, routes, async ({ port }) => {
    for (const [what, wire, status] of REJECTIONS) {
      await t.step(`${what}: ${status}`, async () => {
        const r = await rawRequest(port, wire, { timeoutMs: 3000 });
        assert.deepEqual(r.statuses, [status], r.text.slice(0, 200));
        assert.equal(r.closed, true, "the server closed the connection");
        assert.match(r.text, /Connection: close\r\n/);
      });
    }
  });
});

Deno.test("an error response reaches a client that is still sending (lingering close, not RST)", async () => {
  await httpTest("epoll", { maxBodyBytes: 1024 }, routes, async ({ port }) => {
    // 413 is decided from the head; the client goes on sending 256 KiB of body regardless.
    const head = `POST /echo HTTP/1.1\r\n${H}Content-Length: 262144\r\n\r\n`;
    const body = new Uint8Array(256 * 1024).fill(0x61);
    const pieces: (string | Uint8Array)[] = [head];
    for (let i = 0; i < body.length; i += 16 * 1024) pieces.push(body.subarray(i, i + 16 * 1024));
    const r = await rawRequest(port, pieces, { timeoutMs: 5000 });
    assert.deepEqual(r.statuses, [413]);
    assert.equal(r.closed, true);
  });
});

for (const backend of BACKENDS) {
  const test = (name: string, fn: (backend: BackendName) => Promise<void>) =>
    Deno.test(`\`listenHttp()\` (${backend}) ${name}`, () => fn(backend));

  test("answers pipelined requests in order, even when the first handler finishes last", (b) =>
    httpTest(b, {}, routes, async ({ port }) => {
      const wire =
        `GET /sleep?ms=80 HTTP/1.1\r\n${H}\r\nGET / HTTP/1.1\r\n${H}\r\nGET /sleep?ms=1 HTTP/1.1\r\n${H}\r\n` +
        `GET /nope HTTP/1.1\r\n${H}Connection: close\r\n\r\n`;
      const r = await rawRequest(port, wire);
      const res = parseResponses(r.text);
      assert.deepEqual(res.map((x) => [x.status, x.body]), [
        [200, "slept 80"],
        [200, "Hello, World!"],
        [200, "slept 1"],
        [404, "not found"],
      ]);
      assert.equal(r.closed, true, "Connection: close on the last request closes after its response");
    }));

  test("answers a request split at every byte boundary", (b) =>
    httpTest(b, {}, routes, async ({ port }) => {
      const wire = `POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n`;
      // Every split into two writes, with a gap so they arrive as two reads.
      for (let i = 1; i < wire.length; i += 7) {
        const r = await rawRequest(port, [wire.slice(0, i), wire.slice(i)], {
          gapMs: 2,
          until: (text) => text.includes("abcde"),
        });
        assert.equal(parseResponses(r.text)[0]?.body, "abcde", `split at ${i}`);
      }
      // And one byte per write.
      const r = await rawRequest(port, [...wire], { until: (text) => text.includes("abcde") });
      assert.equal(parseResponses(r.text)[0]?.body, "abcde");
    }));

  test("echoes a Content-Length body and a chunked upload of 1 MiB", (b) =>
    httpTest(b, {}, routes, async ({ port }) => {
      const big = "x".repeat(1 << 20);
      let res = await fetchText(`http://127.0.0.1:${port}/echo`, { method: "POST", body: big });
      assert.equal(res.text.length, big.length);
      const stream = new ReadableStream({
        start(c) {
          for (let i = 0; i < 16; i++) c.enqueue(new TextEncoder().encode(String(i).padStart(4, "0")));
          c.close();
        },
      });
      res = await fetchText(`http://127.0.0.1:${port}/echo`, { method: "POST", body: stream });
      assert.equal(res.text, Array.from({ length: 16 }, (_, i) => String(i).padStart(4, "0")).join(""));
    }));

  test("sends 100 Continue when the handler reads the body", (b) =>
    httpTest(b, {}, routes, async ({ port }) => {
      const head = `POST /echo HTTP/1.1\r\n${H}Content-Length: 5\r\nExpect: 100-continue\r\n\r\n`;
      const r = await rawRequest(port, [head], {
        until: (text) => text.includes("100 Continue"),
      });
      assert.match(r.text, /^HTTP\/1\.1 100 Continue\r\n\r\n$/);
      const full = await rawRequest(port, [head, "hello"], { gapMs: 20, until: (t) => t.includes("hello") });
      assert.deepEqual(parseResponses(full.text).map((x) => [x.status, x.body]), [[100, ""], [200, "hello"]]);
    }));

  test("answers HEAD with the headers of GET and no body", (b) =>
    httpTest(b, {}, routes, async ({ port }) => {
      const r = await rawRequest(port, `HEAD / HTTP/1.1\r\n${H}\r\nGET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
      assert.match(r.text, /^HTTP\/1\.1 200 OK\r\n[^]*Content-Length: 13\r\n\r\nHTTP\/1\.1 200 OK/);
      assert.ok(r.text.endsWith("\r\n\r\nHello, World!"));
    }));

  test("keeps HTTP/1.1 alive by default, closes HTTP/1.0 unless asked to keep it", (b) =>
    httpTest(b, { idleTimeout: 10_000 }, routes, async ({ port }) => {
      let r = await rawRequest(port, `GET / HTTP/1.1\r\n${H}\r\n`, { timeoutMs: 300 });
      assert.equal(r.closed, false, "HTTP/1.1 stays open");
      r = await rawRequest(port, `GET / HTTP/1.0\r\n\r\n`, { timeoutMs: 3000 });
      assert.equal(r.closed, true, "HTTP/1.0 closes");
      assert.match(r.text, /^HTTP\/1\.0 200 OK\r\n/);
      r = await rawRequest(port, `GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n`, { timeoutMs: 300 });
      assert.equal(r.closed, false, "HTTP/1.0 with keep-alive stays open");
      assert.match(r.text, /Connection: keep-alive\r\n/);
    }));

  test("streams a response chunked to HTTP/1.1 and close-delimited to HTTP/1.0", (b) =>
    httpTest(b, {}, routes, async ({ port }) => {
      let r = await rawRequest(port, `GET /stream HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
      assert.match(r.text, /Transfer-Encoding: chunked\r\n/);
      assert.equal(parseResponses(r.text)[0].body, "one,two,three");
      r = await rawRequest(port, `GET /stream HTTP/1.0\r\n\r\n`);
      assert.doesNotMatch(r.text, /Transfer-Encoding/);
      assert.ok(r.text.endsWith("\r\n\r\none,two,three"));
      assert.equal(r.closed, true);
    }));

  test("answers 500 for a throwing handler, reports it once, and keeps the connection", (b) =>
    httpTest(b, {}, routes, async ({ port, handlerErrors }) => {
      const r = await rawRequest(
        port,
        `GET /throw HTTP/1.1\r\n${H}\r\nGET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`,
      );
      assert.deepEqual(parseResponses(r.text).map((x) => x.status), [500, 200]);
      assert.equal(handlerErrors.length, 1);
    }));

  test("refuses a 1xx as a handler's answer: the client gets a 500, not an interim line it would wait past", (b) =>
    httpTest(b, {}, ({ reactor }) => (req, res) => {
      if (req.path !== "/interim") return routes({ reactor })(req, res);
      res.status = Number(req.query.slice(2));
      res.end("too early");
    }, async ({ port, handlerErrors }) => {
      const r = await rawRequest(
        port,
        `GET /interim?s=103 HTTP/1.1\r\n${H}\r\nGET /interim?s=101 HTTP/1.1\r\n${H}\r\n` +
          `GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`,
      );
      assert.deepEqual(parseResponses(r.text).map((x) => x.status), [500, 500, 200]);
      assert.equal(handlerErrors.length, 2);
      assert.match(String(handlerErrors[0]), /final status/);
    }));

  test("answers a CONNECT, then closes: the tunnel's bytes after it are not read as requests", (b) =>
    httpTest(b, {}, ({ reactor }) => (req, res) => {
      if (req.method !== "CONNECT") return routes({ reactor })(req, res);
      reactor.callLater(20, () => res.end()); // the tunnel's bytes arrive before the answer
    }, async ({ port }) => {
      const r = await rawRequest(port, [
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "\x16\x03\x01 not HTTP\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
      ]);
      const responses = parseResponses(r.text);
      assert.deepEqual(responses.map((x) => [x.status, x.headers.get("connection")]), [[200, "close"]]);
      assert.equal(r.closed, true);
    }));

  test("a rejection waiting behind a slow response gets no second error when the header timeout passes", (b) =>
    httpTest(b, { headerTimeout: 50 }, routes, async ({ port }) => {
      const r = await rawRequest(port, `GET /sleep?ms=300 HTTP/1.1\r\n${H}\r\nGET / HTTP/1.1\r\nBad Header\r\n\r\n`);
      assert.deepEqual(r.statuses, [200, 400]);
      assert.equal(r.closed, true);
    }));

  test("answers an Upgrade request, then closes: the requests behind it are not processed", (b) =>
    httpTest(b, {}, routes, async ({ port }) => {
      const r = await rawRequest(
        port,
        `GET / HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /echo HTTP/1.1\r\n${H}\r\n`,
      );
      assert.deepEqual(parseResponses(r.text).map((x) => [x.status, x.headers.get("connection")]), [[200, "close"]]);
      assert.equal(r.closed, true);
    }));

  test("closes an idle keep-alive connection after idleTimeout", (b) =>
    httpTest(b, { idleTimeout: 100 }, routes, async ({ port }) => {
      const r = await rawRequest(port, `GET / HTTP/1.1\r\n${H}\r\n`, { timeoutMs: 3000 });
      assert.equal(r.closed, true);
      assert.deepEqual(r.statuses, [200]);
    }));

  test("cuts off a client that dribbles its header section past headerTimeout (slowloris) with 408", (b) =>
    httpTest(b, { headerTimeout: 200 }, routes, async ({ port }) => {
      const lines = ["GET / HTTP/1.1\r\n", ...Array.from({ length: 40 }, (_, i) => `X-${i}: ${i}\r\n`)];
      const start = performance.now();
      const r = await rawRequest(port, lines, { gapMs: 25, timeoutMs: 5000 });
      assert.deepEqual(r.statuses, [408]);
      assert.equal(r.closed, true);
      // Each line arrives well within any per-line limit; the whole section's limit stops it.
      assert.ok(performance.now() - start < 4000);
    }));

  test("a second shutdown() with a shorter timeout closes what is left sooner (a second Ctrl-C)", (b) => {
    let started = 0;
    return httpTest(b, {}, ({ reactor }) => (_req, res) => {
      started++;
      reactor.callLater(60_000, () => res.end("too late"));
    }, async ({ reactor, port, server }) => {
      const inflight = rawRequest(port, `GET / HTTP/1.1\r\n${H}\r\n`, { timeoutMs: 5000 });
      await waitFor(() => started === 1, "the handler to start");
      const finished = server.shutdown(10_000);
      await turns(reactor, 3);
      assert.equal(server.connectionCount, 1, "the request in flight is waited for");
      void server.shutdown(0);
      await turns(reactor, 3);
      assert.equal(server.connectionCount, 0, "shutdown(0) closed it on the next turn");
      await finished;
      const r = await inflight;
      assert.deepEqual(r.statuses, []);
      assert.equal(r.closed, true);
    });
  });

  test("shuts down gracefully: idle connections close at once, a request in flight completes", (b) =>
    httpTest(b, {}, routes, async ({ port, server }) => {
      const idle = await Deno.connect({ hostname: "127.0.0.1", port });
      const inflight = rawRequest(port, `GET /sleep?ms=150 HTTP/1.1\r\n${H}\r\n`, { timeoutMs: 5000 });
      await new Promise((r) => setTimeout(r, 50));
      const finished = server.shutdown(5000);
      const r = await inflight;
      assert.deepEqual(parseResponses(r.text).map((x) => [x.status, x.body, x.headers.get("connection")]), [
        [200, "slept 150", "close"],
      ]);
      assert.equal(r.closed, true);
      assert.equal(await idle.read(new Uint8Array(1)), null, "the idle connection was closed");
      idle.close();
      await finished;
      assert.equal(server.connectionCount, 0);
    }));
}

Deno.test("an idle `listenHttp()` server with no connections does not wake its loop", async () => {
  await httpTest(
    "epoll",
    { idleTimeout: 20, headerTimeout: 20, lingerTimeout: 20 },
    routes,
    async ({ reactor, port }) => {
      // One connection starts the deadline sweep; once it is closed the sweep stops.
      const r = await rawRequest(port, `GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
      assert.equal(r.closed, true);
      await new Promise((resolve) => setTimeout(resolve, 50)); // the server's side of the close runs
      const before = reactor.metrics.iterations;
      await new Promise((resolve) => setTimeout(resolve, 300)); // with a 5 ms sweep, 60 wake-ups if it still ran
      assert.ok(
        reactor.metrics.iterations - before <= 2,
        `${reactor.metrics.iterations - before} loop turns while idle`,
      );
    },
  );
});

Deno.test("`req.pause()` stops body delivery until `req.resume()`, and the body still arrives intact", async () => {
  let pausedAt = -1;
  let resumed = false;
  let chunksWhilePaused = 0;
  let paused: HttpRequest | undefined;
  const handler = () => (req: HttpRequest, res: HttpResponse) => {
    let received = 0;
    req.readBody((chunk) => {
      if (pausedAt >= 0 && !resumed) chunksWhilePaused++;
      received += chunk.byteLength;
      if (pausedAt < 0 && received >= 64 * 1024) {
        pausedAt = received;
        paused = req;
        req.pause();
      }
    }, () => res.end(String(received)));
  };
  await httpTest("epoll", {}, handler, async ({ reactor, port }) => {
    const total = 2 * 1024 * 1024;
    const sending = fetchText(`http://127.0.0.1:${port}/`, { method: "POST", body: new Uint8Array(total).fill(0x62) });
    while (pausedAt < 0) await new Promise((r) => setTimeout(r, 1));
    // While paused the loop turns on (counted, each forced by a callSoon) but delivers no body.
    const start = reactor.metrics.iterations;
    while (reactor.metrics.iterations - start < 20) {
      reactor.callSoon(() => {});
      await new Promise((r) => setTimeout(r, 0));
    }
    assert.equal(chunksWhilePaused, 0);
    resumed = true;
    paused!.resume();
    assert.equal((await sending).text, String(total));
  });
});

Deno.test("a handler's own `Connection: close`, as a header line or in a prepared block, closes after its response", async () => {
  const closing = new PreparedHeaders({ "Connection": "close", "content-type": "text/plain" });
  const handler = (): HttpHandler => (req, res) => {
    if (req.path === "/prepared") res.setHeaders(closing).end("bye");
    else if (req.path === "/line") res.setHeader("Connection", "close").end("bye");
    else res.setHeaders(closing).setHeader("x-after", "1").end("both");
  };
  await httpTest("epoll", {}, handler, async ({ port }) => {
    for (const path of ["/prepared", "/line", "/mixed"]) {
      // A second request follows on the same connection: it must not be answered.
      const r = await rawRequest(port, `GET ${path} HTTP/1.1\r\n${H}\r\nGET / HTTP/1.1\r\n${H}\r\n`);
      assert.deepEqual(r.statuses, [200], path);
      assert.equal(r.closed, true, `${path}: the server closed`);
      assert.equal((r.text.match(/^Connection: close\r$/gim) ?? []).length, 1, `${path}: one Connection line`);
    }
    const mixed = await rawRequest(port, `GET /mixed HTTP/1.1\r\n${H}\r\n`);
    assert.match(mixed.text, /Connection: close\r\ncontent-type: text\/plain\r\nx-after: 1\r\n/);
  });
});

Deno.test("a body nobody reads yet is kept only up to 64 KiB before reading pauses, and arrives whole once read", async () => {
  const size = 4 * 1024 * 1024;
  let early = -1;
  let total = 0;
  let reading = false;
  const handler = ({ reactor }: { reactor: Reactor }): HttpHandler => (req, res) => {
    // Ask for the body only later: what arrived meanwhile was kept, and reading paused past 64 KiB.
    reactor.callLater(300, () => {
      reading = true;
      req.readBody((chunk) => {
        total += chunk.byteLength;
      }, () => res.end(String(total)));
      reading = false;
      early = total; // delivered at once: the chunks kept before readBody()
    });
  };
  await httpTest("epoll", { maxBodyBytes: 16 * 1024 * 1024 }, handler, async ({ port }) => {
    const r = await fetchText(`http://127.0.0.1:${port}/`, { method: "POST", body: new Uint8Array(size) });
    assert.equal(r.text, String(size), "the whole body arrived");
    assert.equal(reading, false);
    assert.ok(early > 0 && early <= 192 * 1024, `kept before reading: ${early} bytes (at most 64 KiB + two reads)`);
  });
});
