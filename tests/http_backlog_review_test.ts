/**
 * A hostile review of the per-connection backlog (commit 435817d) and the module-wide response buffers: how the
 * deadlines, the cork, pipelining, shutdown and closes behave while a response waits for a client to read it. Each
 * defect found has a test here that failed before its fix; the rest pin behaviour that proved correct.
 */

import assert from "node:assert/strict";
import { _responseBufferCapacities } from "../http/server.ts";
import type { HttpHandler, HttpResponse, HttpServer, HttpServerOptions } from "../http/mod.ts";
import type { BackendName, Reactor } from "../reactor/mod.ts";
import { BACKENDS, payload } from "./_helpers.ts";
import { httpTest } from "./_http.ts";
import { delay, turns, waitFor } from "./_reactor.ts";
import {
  assertSameBytes,
  type ReadResponse,
  type WireClient,
  type WireClientOptions,
  within,
  withWireClient,
} from "./_wire.ts";

const H = "Host: x\r\n";
const encoder = new TextEncoder();

/** A body far past what the kernel's socket buffers of a client that does not read absorb: a backlog is certain. */
const BIG = payload(40_000_000, 11);
/** 8 MB: still far past what the socket buffers of a client that has not read yet absorb. */
const BIG8 = BIG.subarray(0, 8_000_000);
/** A streamed piece below the feed slice (256 KiB): it goes to the connection's own queue, not to a backlog. */
const PIECE = payload(200 * 1024, 12);
/** A body between the cork (64 KiB) and the feed slice: written straight to the connection. */
const MID = payload(100 * 1024, 13);

/** What the handler of these tests saw and did, for the test to check. */
class State {
  aborts = new Map<string, number>();
  /** The paths whose handler ran, in order. */
  seen: string[] = [];
  /** Bytes of body each `/burst` wrote (PIECE after PIECE, until write() said false). */
  burstBytes = 0;
  burstDone = false;
  waiting: HttpResponse | null = null;
  /** `/late` ended its response (after its client left). */
  lateDone = false;

  abort(path: string): () => void {
    return () => this.aborts.set(path, (this.aborts.get(path) ?? 0) + 1);
  }
}

function routes(state: State, reactor: { callLater(ms: number, fn: () => void): unknown }): HttpHandler {
  return (req, res) => {
    state.seen.push(req.path);
    res.onAbort(state.abort(req.path));
    switch (req.path) {
      case "/big":
        return res.end(BIG);
      case "/big8":
        return res.end(BIG8);
      case "/mid":
        return res.end(MID);
      case "/burst": {
        // Writes until the client is not keeping up, then ends: the response is done, its tail still queued.
        let sent = 0;
        do sent += PIECE.byteLength; while (res.write(PIECE));
        state.burstBytes = sent;
        state.burstDone = true;
        return res.end();
      }
      case "/stream": {
        // A well-behaved stream that never ends: it writes until false and waits for onDrain, again and again.
        const more = () => {
          while (res.write(PIECE));
          res.onDrain(more);
        };
        return more();
      }
      case "/slow":
        reactor.callLater(50, () => res.end("slow"));
        return;
      case "/paced": {
        // As tests/http_large_body_test.ts's /paced: a write() of 20 MB, the rest once onDrain says so.
        const half = BIG.subarray(0, 20_000_000);
        const rest = BIG.subarray(20_000_000);
        if (!res.write(half)) return res.onDrain(() => res.end(rest));
        return res.end(rest);
      }
      case "/wait":
        state.waiting = res;
        return;
      case "/wake":
        state.waiting!.end("waited");
        return res.end("woke");
      case "/next":
        return res.end("next");
      case "/echo":
        return req.readAll((body) => res.end(body));
      case "/write":
        // One write() of 8 MB: chunked for HTTP/1.1, close-delimited for HTTP/1.0.
        res.write(BIG8);
        return res.end();
      case "/huge":
        // A head past the module-wide buffer's keep size (64 KiB), then a large body.
        return res.setHeader("x-huge", "h".repeat(100_000)).end(BIG8);
      case "/late":
        reactor.callLater(30, () => {
          res.end(BIG8); // the client left meanwhile: nothing to send, nothing to throw
          state.lateDone = true;
        });
        return;
    }
    res.status = 404;
    res.end("not found");
  };
}

/** `n` bytes of PIECE repeated (what /burst sends). */
function pieces(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let at = 0; at < n; at += PIECE.byteLength) out.set(PIECE.subarray(0, Math.min(PIECE.byteLength, n - at)), at);
  return out;
}

/** How this file's clients read: HTTP/1.0's close-delimited bodies too, a reset as a close, bodies 64 KiB at a time. */
const CLIENT: WireClientOptions = { closeDelimited: true, resetIsClose: true, readStep: 64 * 1024 };

/** Runs `fn` with a client of its own (read as {@linkcode CLIENT} says), closed afterwards whatever happens. */
function withClient<T>(port: number, fn: (client: WireClient) => Promise<T>): Promise<T> {
  return withWireClient(port, fn, CLIENT);
}

/** An httpTest with these routes; `state` is fresh for each. */
function backlogTest(
  backend: BackendName,
  options: Omit<HttpServerOptions, "reactor" | "port">,
  body: (
    ctx: { port: number; state: State; server: HttpServer; handlerErrors: unknown[]; reactor: Reactor },
  ) => Promise<void>,
): Promise<void> {
  const state = new State();
  return httpTest(backend, options, ({ reactor }) => routes(state, reactor), async (ctx) => {
    await body({ ...ctx, state });
    assert.deepEqual(_responseBufferCapacities(), INITIAL, "the module-wide buffers are back to their sizes");
  });
}

const INITIAL = _responseBufferCapacities();

for (const backend of BACKENDS) {
  Deno.test(`backlog (${backend}): a client that stops reading is closed after sendTimeout, not kept for ever`, async (t) => {
    // Short idle and linger deadlines too: they must not cut a client still reading, nor keep one that stopped.
    const options = { sendTimeout: 300, idleTimeout: 100, lingerTimeout: 100 };
    const steps: [string, string, string, number | undefined][] = [
      ["end() of 40 MB", `GET /big HTTP/1.1\r\n${H}\r\n`, "/big", 1],
      [
        "end() of 40 MB with a request pipelined behind",
        `GET /big HTTP/1.1\r\n${H}\r\nGET /next HTTP/1.1\r\n${H}\r\n`,
        "/big",
        1,
      ],
      ["a stream waiting for onDrain", `GET /stream HTTP/1.1\r\n${H}\r\n`, "/stream", 1],
      // Ended, all of it handed to the connection (so not aborted), its tail queued past the idle deadline.
      ["a response ended, its tail queued", `GET /burst HTTP/1.1\r\n${H}\r\n`, "/burst", undefined],
      ["the same with Connection: close", `GET /burst HTTP/1.1\r\n${H}Connection: close\r\n\r\n`, "/burst", undefined],
    ];
    for (const [what, wire, path, aborts] of steps) {
      await t.step(what, () =>
        backlogTest(backend, options, async ({ port, state, server, handlerErrors }) => {
          await withClient(port, async (client) => {
            await client.send(wire);
            await waitFor(() => state.seen.includes(path), "the handler to run");
            await waitFor(() => server.connectionCount === 0, "the server to drop the client that does not read", 5000);
          });
          assert.equal(state.aborts.get(path), aborts, "a response cut short is aborted, once");
          assert.deepEqual(handlerErrors, [], "a client that does not read is not the server's error");
        }));
    }
  });
}

/** Checks that `r` is a 200 whose body is `expected`; `close` says whether it must announce the close. */
function expectOk(r: ReadResponse, expected: Uint8Array, what: string, close = false): void {
  assert.match(r.head, /^HTTP\/1\.1 200 OK\r\n/, r.head);
  if (close) assert.match(r.head, /\r\nconnection: close\r\n/i, r.head);
  else assert.doesNotMatch(r.head, /\r\nconnection: close\r\n/i, r.head);
  assertSameBytes(r.body, expected, what);
}

/** Asks `/next` on `client`'s connection: it is still alive and in step. */
async function expectNext(client: WireClient): Promise<void> {
  await client.send(`GET /next HTTP/1.1\r\n${H}\r\n`);
  const r = await within(client.response(), 5000, "the request after");
  expectOk(r, encoder.encode("next"), "/next");
}

for (const backend of BACKENDS) {
  Deno.test(`backlog (${backend}): a client that pauses longer than idleTimeout or lingerTimeout, after its response was handed over, gets it whole`, async (t) => {
    // The response is done (end() was called), but its tail waits in the connection's queue for the client: the
    // idle and linger deadlines count from when it has left, as nginx's keepalive_timeout and lingering close do.
    await t.step(
      "keep-alive: idleTimeout",
      () =>
        backlogTest(backend, { idleTimeout: 100 }, async ({ port, state }) => {
          await withClient(port, async (client) => {
            await client.send(`GET /burst HTTP/1.1\r\n${H}\r\n`);
            await waitFor(() => state.burstDone, "the handler to end its response");
            await delay(400); // four idle timeouts, sixteen sweeps
            const r = await within(client.response(), 5000, "/burst after a pause");
            expectOk(r, pieces(state.burstBytes), "/burst after a pause");
            await expectNext(client);
          });
        }),
    );
    await t.step(
      "Connection: close: lingerTimeout",
      () =>
        backlogTest(backend, { lingerTimeout: 100 }, async ({ port, state }) => {
          await withClient(port, async (client) => {
            await client.send(`GET /burst HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
            await waitFor(() => state.burstDone, "the handler to end its response");
            await delay(400);
            const r = await within(client.response(), 5000, "/burst after a pause");
            expectOk(r, pieces(state.burstBytes), "/burst after a pause", true);
            assert.equal(await within(client.drainToClose(), 5000, "the close after"), 0, "nothing after it");
          });
        }),
    );
  });

  Deno.test(`backlog (${backend}): shutdown() lets a response whose tail is still queued finish before it closes`, () =>
    backlogTest(backend, {}, async ({ port, state, server }) => {
      let finished: Promise<void> | undefined;
      await withClient(port, async (client) => {
        await client.send(`GET /burst HTTP/1.1\r\n${H}\r\n`);
        await waitFor(() => state.burstDone, "the handler to end its response");
        finished = server.shutdown(5000);
        const r = await within(client.response(), 5000, "/burst across a shutdown");
        expectOk(r, pieces(state.burstBytes), "/burst across a shutdown");
        assert.equal(await within(client.drainToClose(), 5000, "the close after"), 0, "nothing after it");
      });
      await within(finished!, 5000, "the shutdown");
    }));

  Deno.test(`backlog (${backend}): a response ended from another connection's read gets none of that read's responses`, () =>
    backlogTest(backend, {}, async ({ port, state }) => {
      await withClient(port, async (x) => {
        await x.send(`GET /wait HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
        await waitFor(() => state.waiting !== null, "/wait to be waiting");
        await withClient(port, async (y) => {
          // One read on y: /next is answered into the cork, then /wake ends x's response (which closes x).
          await y.send(`GET /next HTTP/1.1\r\n${H}\r\nGET /wake HTTP/1.1\r\n${H}\r\n`);
          expectOk(await within(y.response(), 5000, "y's /next"), encoder.encode("next"), "y's /next");
          expectOk(await within(y.response(), 5000, "y's /wake"), encoder.encode("woke"), "y's /wake");
        });
        expectOk(await within(x.response(), 5000, "x's /wait"), encoder.encode("waited"), "x's /wait", true);
        assert.equal(await within(x.drainToClose(), 5000, "x's close"), 0, "x gets nothing of y's");
      });
    }));

  Deno.test(`backlog (${backend}): a stream pipelined behind a slow response, paced by write() and onDrain, arrives whole`, () =>
    backlogTest(backend, {}, async ({ port, handlerErrors }) => {
      await withClient(port, async (client) => {
        await client.send(`GET /slow HTTP/1.1\r\n${H}\r\nGET /paced HTTP/1.1\r\n${H}\r\n`);
        expectOk(await within(client.response(), 5000, "/slow"), encoder.encode("slow"), "/slow");
        expectOk(await within(client.response(), 15_000, "/paced"), BIG, "/paced behind /slow");
        await expectNext(client);
      });
      assert.deepEqual(handlerErrors, []);
    }));
}

for (const backend of BACKENDS) {
  Deno.test(`backlog (${backend}): one read of pipelined requests for a large body does not run every handler at once, each copying it`, () =>
    backlogTest(backend, {}, async ({ port, state, reactor }) => {
      // 12 requests in 300 bytes: run at once, each handler's 8 MB would be copied to wait for its turn (a few
      // hundred such requests took this process past 2 GB). Past 1 MiB kept, the handlers behind wait for their turn.
      const n = 12;
      await withClient(port, async (client) => {
        await client.send(`GET /big8 HTTP/1.1\r\n${H}\r\n`.repeat(n));
        await waitFor(() => state.seen.length > 0, "the first handler");
        await turns(reactor, 5);
        assert.ok(state.seen.length <= 2, `${state.seen.length} handlers ran before the client read anything`);
        for (let i = 0; i < n; i++) {
          expectOk(await within(client.response(), 10_000, `response ${i}`), BIG8, `response ${i}`);
        }
        assert.equal(state.seen.length, n);
        await expectNext(client);
      });
    }));
}

for (const backend of BACKENDS) {
  Deno.test(`backlog (${backend}): a slow reader that keeps reading is cut by no deadline`, () =>
    backlogTest(backend, { sendTimeout: 400 }, async ({ port }) => {
      await withClient(port, async (client) => {
        client.restMs = 100; // 100 ms after each MiB: the server sees no progress for a while, often
        await client.send(`GET /big8 HTTP/1.1\r\n${H}\r\n`);
        expectOk(await within(client.response(), 10_000, "/big8 read slowly"), BIG8, "/big8 read slowly");
        await expectNext(client);
      });
    }));

  Deno.test(`backlog (${backend}): what waits behind a body being fed comes after it, whole and in order`, async (t) => {
    await t.step(
      "small responses of one read, the large one, a 100 KiB one, a HEAD, an HTTP/1.0 stream",
      () =>
        backlogTest(backend, {}, async ({ port }) => {
          await withClient(port, async (client) => {
            const get = (path: string, method = "GET", v = "1.1") => `${method} ${path} HTTP/${v}\r\n${H}\r\n`;
            await client.send(
              get("/next").repeat(3) + get("/big8") + get("/mid") + get("/big8", "HEAD") + get("/next").repeat(2) +
                get("/write", "GET", "1.0"),
            );
            for (let i = 0; i < 3; i++) {
              expectOk(await within(client.response(), 5000, "/next"), encoder.encode("next"), "/next");
            }
            expectOk(await within(client.response(), 10_000, "/big8"), BIG8, "/big8");
            expectOk(await within(client.response(), 5000, "/mid"), MID, "/mid");
            const head = await within(client.response(true), 5000, "HEAD /big8");
            assert.match(head.head, /^HTTP\/1\.1 200 OK\r\n[^]*\r\ncontent-length: 8000000\r\n/i, head.head);
            for (let i = 0; i < 2; i++) {
              expectOk(await within(client.response(), 5000, "/next"), encoder.encode("next"), "/next");
            }
            const old = await within(client.response(), 10_000, "the HTTP/1.0 stream");
            assert.match(old.head, /^HTTP\/1\.0 200 OK\r\n/, old.head);
            assert.doesNotMatch(old.head, /content-length|transfer-encoding/i, old.head);
            assertSameBytes(old.body, BIG8, "the HTTP/1.0 stream, to the close");
          });
        }),
    );
    await t.step(
      "a request the parser refuses: its 400 after the body, then the close",
      () =>
        backlogTest(backend, {}, async ({ port }) => {
          await withClient(port, async (client) => {
            await client.send(`GET /big8 HTTP/1.1\r\n${H}\r\nNOT HTTP\r\n\r\n`);
            expectOk(await within(client.response(), 10_000, "/big8"), BIG8, "/big8");
            const bad = await within(client.response(), 5000, "the 400");
            assert.match(bad.head, /^HTTP\/1\.1 400 /, bad.head);
            assert.match(bad.head, /\r\nconnection: close\r\n/i, bad.head);
            assert.equal(await within(client.drainToClose(), 5000, "the close"), 0);
          });
        }),
    );
    await t.step(
      "Expect: 100-continue: the 100 after the body, then the body's echo",
      () =>
        backlogTest(backend, {}, async ({ port }) => {
          await withClient(port, async (client) => {
            await client.send(
              `GET /big8 HTTP/1.1\r\n${H}\r\nPOST /echo HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: 5\r\n\r\n`,
            );
            expectOk(await within(client.response(), 10_000, "/big8"), BIG8, "/big8");
            const cont = await within(client.response(true), 5000, "the 100");
            assert.match(cont.head, /^HTTP\/1\.1 100 Continue\r\n/, cont.head);
            await client.send("hello");
            expectOk(await within(client.response(), 5000, "/echo"), encoder.encode("hello"), "/echo");
          });
        }),
    );
    await t.step(
      "a head past the module-wide buffer's keep size: the buffer shrinks back (checked after each test)",
      () =>
        backlogTest(backend, {}, async ({ port }) => {
          await withClient(port, async (client) => {
            await client.send(`GET /huge HTTP/1.1\r\n${H}\r\n`);
            const r = await within(client.response(), 10_000, "/huge");
            assert.match(r.head, /\r\nx-huge: h{100000}\r\n/, "the huge header");
            expectOk(r, BIG8, "/huge");
          });
        }),
    );
  });

  Deno.test(`backlog (${backend}): closes mid-body abort the response once and leave nothing behind`, async (t) => {
    await t.step(
      "shutdown(0) while a client does not read",
      () =>
        backlogTest(backend, {}, async ({ port, state, server }) => {
          await withClient(port, async (client) => {
            await client.send(`GET /big HTTP/1.1\r\n${H}\r\n`);
            await waitFor(() => state.seen.length === 1, "the handler");
            await within(server.shutdown(0), 5000, "shutdown(0)");
            assert.equal(server.connectionCount, 0);
            assert.equal(state.aborts.get("/big"), 1);
          });
        }),
    );
    await t.step(
      "shutdown(timeout) while a client reads: the body whole, then the close",
      () =>
        backlogTest(backend, {}, async ({ port, state, server }) => {
          let finished: Promise<void> | undefined;
          await withClient(port, async (client) => {
            await client.send(`GET /big8 HTTP/1.1\r\n${H}\r\n`);
            await waitFor(() => state.seen.length === 1, "the handler");
            finished = server.shutdown(5000);
            expectOk(await within(client.response(), 10_000, "/big8"), BIG8, "/big8 across a shutdown");
            assert.equal(await within(client.drainToClose(), 5000, "the close"), 0);
          });
          await within(finished!, 5000, "the shutdown");
          assert.equal(state.aborts.get("/big8"), undefined, "not aborted");
        }),
    );
    await t.step(
      "halfClose (default): a client's FIN after its request still gets the body whole",
      () =>
        backlogTest(backend, {}, async ({ port, state }) => {
          await withClient(port, async (client) => {
            await client.send(`GET /big8 HTTP/1.1\r\n${H}\r\n`);
            await client.closeWrite();
            expectOk(await within(client.response(), 10_000, "/big8"), BIG8, "/big8 after a FIN");
            assert.equal(await within(client.drainToClose(), 5000, "the close"), 0);
          });
          assert.equal(state.aborts.get("/big8"), undefined, "not aborted");
        }),
    );
    await t.step(
      "halfClose false: a client's FIN aborts the body being fed",
      () =>
        backlogTest(backend, { halfClose: false }, async ({ port, state, server }) => {
          await withClient(port, async (client) => {
            await client.send(`GET /big HTTP/1.1\r\n${H}\r\n`);
            await waitFor(() => state.seen.length === 1, "the handler");
            await client.closeWrite();
            await waitFor(() => server.connectionCount === 0, "the server to drop the connection");
            assert.equal(state.aborts.get("/big"), 1);
          });
        }),
    );
    await t.step(
      "halfClose false: a FIN aborts a response that ended but waits for its turn, unsent",
      () =>
        backlogTest(backend, { halfClose: false }, async ({ port, state, server }) => {
          await withClient(port, async (client) => {
            await client.send(`GET /wait HTTP/1.1\r\n${H}\r\nGET /next HTTP/1.1\r\n${H}\r\n`);
            await waitFor(() => state.seen.length === 2, "both handlers");
            await client.closeWrite();
            await waitFor(() => server.connectionCount === 0, "the server to drop the connection");
          });
          assert.equal(state.aborts.get("/wait"), 1, "the response in progress");
          assert.equal(state.aborts.get("/next"), 1, "the response kept for its turn, never sent");
        }),
    );
    await t.step(
      "a handler ending a large body from a timer after its client left",
      () =>
        backlogTest(backend, {}, async ({ port, state, server, handlerErrors }) => {
          await withClient(port, async (client) => {
            await client.send(`GET /late HTTP/1.1\r\n${H}\r\n`);
            await waitFor(() => state.seen.length === 1, "the handler");
          });
          await waitFor(() => state.lateDone, "the late end()");
          await waitFor(() => server.connectionCount === 0, "the server to forget the connection");
          assert.equal(state.aborts.get("/late"), 1);
          assert.deepEqual(handlerErrors, []);
        }),
    );
  });
}

for (const backend of BACKENDS) {
  Deno.test(`backlog (${backend}): a large response given before the request body came, with Connection: close, is not cut by the discarding of that body`, () =>
    backlogTest(backend, {}, async ({ port }) => {
      // The handler answers at once, without reading the 5 MB body; the client sends it all, then reads. What comes
      // meanwhile is read and discarded: counting it against lingerBytes (1 MiB) before the response is out cut the
      // response short with a reset.
      await withClient(port, async (client) => {
        const length = 5_000_000;
        const sending = client.send(`POST /big8 HTTP/1.1\r\n${H}Connection: close\r\nContent-Length: ${length}\r\n\r\n`)
          .then(() => client.sendBytes(new Uint8Array(length)));
        sending.catch(() => {}); // awaited below, after the response: a reset fails it there
        const r = await within(client.response(), 10_000, "/big8 answered early");
        await within(sending, 10_000, "the upload");
        expectOk(r, BIG8, "/big8 answered early", true);
        assert.equal(await within(client.drainToClose(), 5000, "the close"), 0);
      });
    }));
}
