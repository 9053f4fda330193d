/**
 * Suspicions reviewers raised: each test here failed before its fix (or, for
 * a suspicion that was not a defect, shows why). Real sockets on 127.0.0.1,
 * every backend; "did not happen" is shown by counting, not by sleeping.
 */

import assert from "node:assert/strict";
import { HttpClient, type HttpResponse, listenHttp } from "../http/mod.ts";
import { holdRunning } from "../net/default_reactor.ts";
import { type ErrorContext, Reactor } from "../reactor/mod.ts";
import {
  AF_INET,
  AF_UNIX,
  close,
  connect as connectFd,
  encodeSockaddr,
  getPeerName,
  getSockName,
  send,
  SOCK_DGRAM,
  SOCK_STREAM,
  socket,
  socketpair,
} from "../ffi/mod.ts";
import { assertNoFdLeak, BACKENDS } from "./_helpers.ts";
import { assertNoErrors, newReactor, stopAndClose, testEveryBackend, waitFor } from "./_reactor.ts";
import { httpTest, serveTest } from "./_http.ts";
import { netTest, until } from "./_net.ts";

const enc = new TextEncoder();
const dec = new TextDecoder("latin1");

/** Reads `conn` until EOF (or a reset) or `ms`: what came, and whether it ended. */
async function readAll(conn: Deno.Conn, ms: number): Promise<{ text: string; ended: boolean }> {
  let text = "";
  let ended = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const reading = (async () => {
    const buf = new Uint8Array(65536);
    for (;;) {
      let n: number | null;
      try {
        n = await conn.read(buf);
      } catch {
        n = null;
      }
      if (n === null) {
        ended = true;
        return;
      }
      text += dec.decode(buf.subarray(0, n));
    }
  })();
  await Promise.race([reading, new Promise((r) => timer = setTimeout(r, ms))]);
  clearTimeout(timer);
  return { text, ended };
}

const SLOW_THEN_BAD = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nBOGUS\r\n\r\n";

// ------------------------------------------------------------------ 1. server: a rejection behind a slow response

for (const backend of BACKENDS) {
  Deno.test(`[${backend}] suspicion 1: bytes after a rejected request, behind a slow response, count toward lingerBytes`, async () => {
    let slow: HttpResponse | null = null;
    let aborted = 0;
    await httpTest(backend, { lingerBytes: 4096 }, () => (_req, res) => {
      slow = res;
      res.onAbort(() => aborted++);
    }, async ({ port }) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await conn.write(enc.encode(SLOW_THEN_BAD));
        await waitFor(() => slow !== null, "the slow handler");
        await conn.write(new Uint8Array(16 * 1024)); // not HTTP, past lingerBytes: the server must not keep reading
        const r = await readAll(conn, 3000);
        assert.ok(r.ended, "the server neither closed the connection nor stopped reading without limit");
        assert.equal(r.text, "", "nothing was due yet: the slow response was still in progress");
        await waitFor(() => aborted === 1, "the slow exchange aborted by the close");
      } finally {
        conn.close();
      }
    });
  });

  Deno.test(`[${backend}] suspicion 1: the error response still follows the slow one when little comes after it`, async () => {
    let slow: HttpResponse | null = null;
    await httpTest(backend, { lingerBytes: 4096 }, () => (_req, res) => {
      slow = res;
    }, async ({ port }) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await conn.write(enc.encode(SLOW_THEN_BAD + "x".repeat(100)));
        await waitFor(() => slow !== null, "the slow handler");
        slow!.end("slow");
        const r = await readAll(conn, 3000);
        assert.ok(r.ended, r.text);
        assert.deepEqual([...r.text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1])), [200, 400], r.text);
      } finally {
        conn.close();
      }
    });
  });

  Deno.test(`[${backend}] suspicion 1: with halfClose false, a FIN after a rejected request aborts the slow exchange`, async () => {
    let seen = 0;
    let aborted = 0;
    await httpTest(backend, { halfClose: false }, () => (_req, res) => {
      seen++;
      res.onAbort(() => aborted++);
    }, async ({ port }) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await conn.write(enc.encode(SLOW_THEN_BAD));
        await waitFor(() => seen === 1, "the slow handler");
        await conn.closeWrite();
        await waitFor(() => aborted === 1, "the FIN to abort the slow exchange", 3000);
      } finally {
        conn.close();
      }
    });
  });

  Deno.test(`[${backend}] suspicion 1: serve(): req.signal aborts on a FIN behind a rejected request`, async () => {
    let aborted = 0;
    let seen = 0;
    await serveTest(backend, (req) => {
      seen++;
      return new Promise<Response>((resolve) => {
        req.signal.addEventListener("abort", () => {
          aborted++;
          resolve(new Response("late"));
        });
      });
    }, async (port) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await conn.write(enc.encode(SLOW_THEN_BAD));
        await waitFor(() => seen === 1, "the slow handler");
        await conn.closeWrite();
        await waitFor(() => aborted === 1, "req.signal to abort", 3000);
      } finally {
        conn.close();
      }
    });
  });
}

// ------------------------------------------------------------------ 2. serve(): a body stream that throws is cancelled

/** Runs `fn` with console.error silenced (serve() logs the failures these tests cause on purpose). */
async function quietly<T>(fn: () => Promise<T>): Promise<T> {
  const saved = console.error;
  console.error = () => {};
  try {
    return await fn();
  } finally {
    console.error = saved;
  }
}

for (const backend of BACKENDS) {
  Deno.test(`[${backend}] suspicion 2: serve(): a body stream whose first chunk is not bytes gets a 500 and is cancelled`, async () => {
    let cancelled = 0;
    let pulls = 0;
    await quietly(() =>
      serveTest(backend, () =>
        new Response(
          new ReadableStream({
            pull(c) {
              pulls++;
              c.enqueue(42 as unknown as Uint8Array);
            },
            cancel() {
              cancelled++;
            },
          }),
        ), async (port) => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        try {
          await conn.write(enc.encode("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
          const r = await readAll(conn, 3000);
          assert.match(r.text, /^HTTP\/1\.1 500 /, r.text);
          assert.equal(cancelled, 1, `the stream was pulled ${pulls} times and never cancelled`);
        } finally {
          conn.close();
        }
      })
    );
  });

  Deno.test(`[${backend}] suspicion 2: serve(): a body stream that yields a non-byte chunk mid-stream is cancelled`, async () => {
    let cancelled = 0;
    let n = 0;
    await quietly(() =>
      serveTest(backend, () =>
        new Response(
          new ReadableStream({
            async pull(c) {
              await new Promise((r) => setTimeout(r, 1));
              c.enqueue(n++ < 2 ? enc.encode("ok\n") : {} as Uint8Array);
            },
            cancel() {
              cancelled++;
            },
          }),
        ), async (port) => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        try {
          await conn.write(enc.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
          const r = await readAll(conn, 3000);
          assert.ok(r.ended, "the cut response did not end the connection");
          assert.match(r.text, /^HTTP\/1\.1 200 /, r.text);
          assert.equal(cancelled, 1, "the stream was not cancelled");
        } finally {
          conn.close();
        }
      })
    );
  });
}

// ------------------------------------------------------------------ 3, 7. client pool: FIFO hand-off, aborted waiters

for (const backend of BACKENDS) {
  Deno.test(`[${backend}] suspicion 3: HttpClient hands a freed connection to the first waiter, not a newcomer`, async () => {
    await assertNoFdLeak(async () => {
      const { reactor, errors } = newReactor(backend);
      const running = reactor.run();
      const order: string[] = [];
      const client = new HttpClient({ reactor, maxConnectionsPerHost: 1 });
      const pending: Promise<string>[] = [];
      let base = "";
      const issue = (path: string) => pending.push(client.request(`${base}${path}`).then((r) => r.text()));
      // Each /wN response ends on a timer; one iteration later (while the client reads that end and frees the
      // slot, before any promise continuation runs) a callback makes the next request, as another I/O callback of
      // a busy loop (a proxy's handler, say) would.
      const server = listenHttp({ port: 0, host: "127.0.0.1", reactor }, (req, res) => {
        order.push(req.url);
        res.write("a");
        reactor.callLater(2, () => {
          res.end();
          const n = /^\/w(\d)$/.exec(req.url)?.[1];
          if (n !== undefined && Number(n) < 3) {
            reactor.callSoon(() => reactor.callSoon(() => issue(`/w${Number(n) + 1}`)));
          }
        });
      });
      base = `http://127.0.0.1:${server.port}`;
      try {
        issue("/w0");
        issue("/b"); // waits: /w0 holds the one slot
        await waitFor(() => order.length === 5, "five requests");
        assert.deepEqual(await Promise.all(pending), ["a", "a", "a", "a", "a"]);
        assert.deepEqual(order, ["/w0", "/b", "/w1", "/w2", "/w3"]);
      } finally {
        client.close();
        await server.shutdown(500);
        await stopAndClose(reactor, running);
      }
      assertNoErrors(errors);
    });
  });

  Deno.test(`[${backend}] suspicion 7: HttpClient takes an aborted request out of the wait queue at once`, async () => {
    await assertNoFdLeak(async () => {
      const { reactor, errors } = newReactor(backend);
      const running = reactor.run();
      let held: HttpResponse | null = null;
      let served = 0;
      const server = listenHttp({ port: 0, host: "127.0.0.1", reactor }, (req, res) => {
        served++;
        if (req.url === "/hold") held = res;
        else res.end("ok");
      });
      const client = new HttpClient({ reactor, maxConnectionsPerHost: 1 });
      const base = `http://127.0.0.1:${server.port}`;
      try {
        const holding = client.request(`${base}/hold`);
        const controllers = Array.from({ length: 50 }, () => new AbortController());
        const waiting = controllers.map((c) => client.request(`${base}/x`, { signal: c.signal }));
        const timedOut = client.request(`${base}/x`, { timeout: 20 });
        for (const p of [holding, ...waiting, timedOut]) p.catch(() => {}); // checked below, unless an assertion fails
        assert.equal(client.waitingCount, 51);
        await waitFor(() => held !== null, "the held request");
        for (const c of controllers) c.abort();
        const outcomes = await Promise.allSettled(waiting);
        assert.ok(outcomes.every((o) => o.status === "rejected" && (o.reason as Error).name === "AbortError"));
        assert.equal(client.waitingCount, 1, "aborted requests stay queued while the slot is held");
        await assert.rejects(timedOut, (e: Error) => e.name === "TimeoutError");
        assert.equal(client.waitingCount, 0, "a timed-out request stays queued while the slot is held");
        const last = client.request(`${base}/last`); // queued behind the held slot, served once it is freed
        assert.equal(client.waitingCount, 1);
        held!.end("done");
        assert.equal(await (await holding).text(), "done");
        assert.equal(await (await last).text(), "ok");
        assert.equal(served, 2, "an aborted request was sent");
      } finally {
        client.close();
        await server.shutdown(500);
        await stopAndClose(reactor, running);
      }
      assertNoErrors(errors);
    });
  });
}

// ------------------------------------------------------------------ 4. reactor: runOnce() keeps a pending stop()

testEveryBackend(
  "suspicion 4: `Reactor.runOnce()` leaves a stop() made before it pending for runSync()",
  ({ reactor }) => {
    let guard = 0;
    const t = reactor.callLater(500, () => {
      guard++;
      reactor.stop();
    });
    reactor.stop();
    const start = performance.now();
    reactor.runOnce(-1); // waits 0 ms: a stop is pending
    assert.equal(reactor.runSync(), "stopped");
    assert.equal(guard, 0, "runSync() ran until the guard timer: the stop() was lost in runOnce()");
    assert.ok(performance.now() - start < 400);
    t.cancel();
  },
);

testEveryBackend("suspicion 4: `Reactor.runOnce()` keeps a stop() made by one of its callbacks", ({ reactor }) => {
  let guard = 0;
  const t = reactor.callLater(500, () => {
    guard++;
    reactor.stop();
  });
  let ran = 0;
  reactor.callSoon(() => {
    ran++;
    reactor.stop();
  });
  reactor.runOnce(0);
  assert.equal(ran, 1);
  assert.equal(reactor.runSync(), "stopped");
  assert.equal(guard, 0, "the stop() from the runOnce() callback was lost");
  // Taken by runSync(): the next runOnce() waits as asked again (here until the guard timer).
  reactor.runOnce(1000);
  assert.equal(guard, 1);
  t.cancel();
});

// ------------------------------------------------------------------ 5. holdRunning reports a failed run() as "run"

Deno.test('suspicion 5: holdRunning() reports a run() that failed with source "run"', async () => {
  const seen: ErrorContext[] = [];
  const reactor = new Reactor({ onError: (_err, ctx) => seen.push(ctx) });
  reactor.close(); // run() now rejects: "The reactor is closed"
  const release = holdRunning(reactor);
  await waitFor(() => seen.length === 1, "the failure to be reported");
  assert.deepEqual(seen, [{ source: "run" }]);
  release();
});

// ------------------------------------------------------------------ 6. decodeSockaddr: no caller sees length 0

for (const backend of BACKENDS) {
  Deno.test(`[${backend}] suspicion 6: UDP datagrams from a connected sender, empty ones included, come with their sender`, async () => {
    await netTest(backend, async ({ bindUdp }) => {
      const got: { size: number; port: number; address: string }[] = [];
      const u = bindUdp({ host: "127.0.0.1", port: 0 });
      u.on("message", (_b, rinfo) => got.push({ size: rinfo.size, port: rinfo.port, address: rinfo.address }));
      const fd = socket(AF_INET, SOCK_DGRAM);
      try {
        const to = encodeSockaddr({ host: "127.0.0.1", port: u.port });
        connectFd(fd, to.buf, to.len, "connect");
        const mine = getSockName(fd);
        assert.equal(mine.family, "IPv4");
        send(fd, enc.encode("hi"));
        send(fd, new Uint8Array(0));
        await until(() => got.length === 2, "two datagrams");
        const port = (mine as { port: number }).port;
        assert.deepEqual(got, [{ size: 2, port, address: "127.0.0.1" }, { size: 0, port, address: "127.0.0.1" }]);
      } finally {
        close(fd);
      }
    });
  });
}

Deno.test("suspicion 6: the names of unbound Unix sockets have a family (length 2, not 0)", () => {
  const [a, b] = socketpair(AF_UNIX, SOCK_STREAM);
  try {
    assert.deepEqual(getSockName(a), { family: "unix", path: "" });
    assert.deepEqual(getPeerName(b), { family: "unix", path: "" });
  } finally {
    close(a);
    close(b);
  }
});
