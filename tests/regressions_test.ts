/**
 * Regressions found in a second review of the day's fixes (2e531dd..): each
 * step failed before its fix. Real sockets on 127.0.0.1, every backend.
 */

import assert from "node:assert/strict";
import { type HttpServerOptions, listenHttp } from "../http/mod.ts";
import { assertNoFdLeak, BACKENDS } from "./_helpers.ts";
import { assertNoErrors, newReactor, stopAndClose } from "./_reactor.ts";
import { httpTest, rawRequest, serveTest } from "./_http.ts";

const enc = new TextEncoder();

/** A stream that enqueues "tick\n" 2 ms after each pull until cancelled, counting both in `ticks`. */
function tickingStream(ticks: { pulls: number; cancelled: number }): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    pull(c) {
      ticks.pulls++;
      return new Promise((r) =>
        setTimeout(() => {
          if (ticks.cancelled === 0) c.enqueue(enc.encode("tick\n"));
          r();
        }, 2)
      );
    },
    cancel() {
      ticks.cancelled++;
    },
  });
}

for (const backend of BACKENDS) {
  Deno.test(`[${backend}] serve(): a stream that reaches its Content-Length in its first chunk ends the response though it stays open`, async () => {
    let cancelled = 0;
    await serveTest(backend, (req) => {
      if (new URL(req.url).pathname === "/next") return new Response("next");
      const stream = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(enc.encode("hello")); // all 5 declared bytes, ready at once; the stream never closes
        },
        cancel() {
          cancelled++;
        },
      });
      return new Response(stream, { headers: { "content-length": "5" } });
    }, async (port) => {
      const r = await rawRequest(port, [
        "GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      ], { timeoutMs: 3000, until: (t) => t.endsWith("next") });
      assert.deepEqual(r.statuses, [200, 200], r.text);
      assert.match(r.text, /content-length: 5\r\n\r\nhello/i);
      assert.equal(cancelled, 1);
    });
  });
}

for (const backend of BACKENDS) {
  Deno.test(`[${backend}] serve(): a stream returned after the client went away is cancelled`, async () => {
    const ticks = { pulls: 0, cancelled: 0 };
    let gone!: () => void;
    const clientGone = new Promise<void>((r) => gone = r);
    await serveTest(backend, async (_req, info) => {
      await info.completed; // resolves when the client has gone (its FIN aborts, as in Deno.serve)
      gone();
      await new Promise((r) => setTimeout(r, 1)); // the stream comes later still
      return new Response(tickingStream(ticks));
    }, async (port) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(enc.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
      conn.close();
      await clientGone;
      for (let i = 0; i < 200 && ticks.cancelled === 0; i++) await new Promise((r) => setTimeout(r, 5));
      assert.equal(
        ticks.cancelled,
        1,
        `the stream of a gone client was pulled ${ticks.pulls} times and never cancelled`,
      );
    });
  });

  Deno.test(`[${backend}] HttpResponse.onAbort() after the connection closed runs at once`, async () => {
    await assertNoFdLeak(async () => {
      const { reactor, errors } = newReactor(backend);
      const running = reactor.run();
      let late = 0;
      let closedFirst!: () => void;
      const seen = new Promise<void>((r) => closedFirst = r);
      const server = listenHttp(
        { port: 0, host: "127.0.0.1", reactor, halfClose: false } as HttpServerOptions,
        (_req, res) => {
          res.onAbort(() => {
            closedFirst();
            res.onAbort(() => late++); // registered after the close
          });
        },
      );
      try {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
        await conn.write(enc.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        conn.close();
        await seen;
        assert.equal(late, 1);
      } finally {
        await server.shutdown(500);
        await stopAndClose(reactor, running);
      }
      assertNoErrors(errors);
    });
  });
}

for (const backend of BACKENDS) {
  Deno.test(`[${backend}] HttpServer.shutdown() again after it finished arms no timer, and does not throw once the reactor is closed`, async () => {
    await assertNoFdLeak(async () => {
      const { reactor, errors } = newReactor(backend);
      const server = listenHttp({ port: 0, host: "127.0.0.1", reactor }, (_req, res) => res.end("x"));
      const first = server.shutdown(1000);
      for (let i = 0; i < 3; i++) reactor.runOnce(0);
      await first;
      const fired = reactor.metrics.timersFired;
      const second = server.shutdown(0); // sooner, but there is nothing left to close
      for (let i = 0; i < 3; i++) reactor.runOnce(0);
      await second;
      assert.equal(reactor.metrics.timersFired, fired, "a force-close timer ran after the server had finished");
      reactor.close();
      await server.shutdown(0); // threw "The reactor is closed"
      assertNoErrors(errors);
    });
  });
}

for (const backend of BACKENDS) {
  Deno.test(`[${backend}] serve(): a HEAD response whose stream comes later is cancelled once its head is out`, async () => {
    const ticks = { pulls: 0, cancelled: 0 };
    await serveTest(backend, async (req) => {
      if (req.method === "GET") return new Response("next");
      await new Promise((r) => setTimeout(r, 2)); // the stream comes later
      return new Response(
        tickingStream(ticks),
        { headers: { "content-length": "10" } }, // the length of the body a GET would get: nothing is short
      );
    }, async (port) => {
      const r = await rawRequest(
        port,
        "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        {
          timeoutMs: 3000,
          until: (t) => t.endsWith("next"),
        },
      );
      assert.deepEqual(r.statuses, [200, 200], r.text);
      assert.doesNotMatch(r.text, /tick/);
      assert.match(r.text, /^HTTP\/1\.1 200 OK\r\n(?:.*\r\n)*content-length: 10\r\n/i);
      assert.equal(ticks.cancelled, 1);
    });
  });
}

for (const backend of BACKENDS) {
  Deno.test(`[${backend}] a pipelined response that waits for drain resumes when its turn comes, though its turn needs no drain`, async () => {
    const chunk = new Uint8Array(256 * 1024).fill(0x61);
    let bWaited = 0;
    let bDrained = 0;
    await httpTest(backend, {}, () => (req, res) => {
      if (req.path === "/a") {
        let sent = 0;
        const pump = () => {
          while (sent < 16) {
            sent++;
            if (!res.write(chunk)) return res.onDrain(pump);
          }
          res.end();
        };
        pump(); // fills the connection's queue: write() says false
        return;
      }
      // Behind /a: its output waits for its turn, and write() tells what the connection says now.
      if (!res.write("b1")) {
        bWaited++;
        res.onDrain(() => {
          bDrained++;
          res.end("b2");
        });
      } else {
        res.end("b2");
      }
    }, async ({ port }) => {
      const r = await rawRequest(
        port,
        "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        {
          timeoutMs: 5000,
        },
      );
      assert.equal(bWaited, 1, "the test needs /b to wait for drain");
      assert.deepEqual(r.statuses, [200, 200]);
      assert.equal(bDrained, 1);
      assert.ok(r.text.endsWith("2\r\nb2\r\n0\r\n\r\n"), JSON.stringify(r.text.slice(-60)));
      assert.equal(r.closed, true);
    });
  });
}
