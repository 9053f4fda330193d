/**
 * The HTTP client (`HttpClient`) under size, speed and time: bodies of tens
 * to hundreds of megabytes both ways read or produced slowly (memory must
 * stay bounded: the client stops reading the socket while the body stream's
 * queue is full), bodies never read or cancelled, a server that answers an
 * upload early, timeouts and aborts in the middle of a body, a connect that
 * never completes, and hundreds of requests queued on a capped pool with
 * some aborted while they wait. Every test counts fds before and after, and
 * shows what did not happen by counting (bytes, connections, closes).
 */

import assert from "node:assert/strict";
import { HttpClient, type HttpClientOptions } from "../http/mod.ts";
import type { Connection } from "../net/mod.ts";
import type { Reactor } from "../reactor/mod.ts";
import {
  close as closeFd,
  connect as connectFd,
  encodeSockaddr,
  getaddrinfo,
  POLLOUT,
  SOCK_STREAM,
  socket,
} from "../ffi/mod.ts";
import { assertNoFdLeak, payload, tcpListener, waitFd } from "./_helpers.ts";
import { sleep, until } from "./_net.ts";
import { rawTest, reset } from "./_raw_server.ts";
import { assertNoErrors, newReactor, stopAndClose, turns } from "./_reactor.ts";

const MiB = 1024 * 1024;
const latin1 = new TextDecoder("latin1");

/** 1 MiB of bytes in a pattern: a body made of copies of it shows a lost, repeated or shifted piece. */
const PATTERN = payload(MiB, 11);

/** Calls `onHead(head)` once per request head on `conn`, and `onBody(bytes)` for whatever follows it. */
function onRequestHead(conn: Connection, onHead: (head: string) => void, onBody?: (bytes: Uint8Array) => void): void {
  let text = "";
  let inBody = false;
  conn.on("data", (chunk) => {
    if (inBody) {
      onBody?.(chunk);
      return;
    }
    text += latin1.decode(chunk);
    const end = text.indexOf("\r\n\r\n");
    if (end < 0) return;
    inBody = true;
    const head = text.slice(0, end);
    const rest = chunk.subarray(chunk.byteLength - (text.length - end - 4));
    text = "";
    onHead(head);
    if (rest.byteLength > 0) onBody?.(rest);
  });
}

/** Writes `total` bytes of {@linkcode PATTERN} copies, waiting for `drain`, counting what the kernel took. */
function pump(conn: Connection, total: number, done: () => void = () => {}): void {
  let at = 0;
  const more = () => {
    while (at < total && !conn.destroyed) {
      const n = Math.min(MiB - (at % MiB), total - at);
      const piece = PATTERN.subarray(at % MiB, at % MiB + n);
      at += n;
      if (!conn.write(piece)) return;
    }
    if (at >= total) {
      conn.off("drain", more);
      done();
    }
  };
  conn.on("drain", more);
  more();
}

/** Heap plus external (array buffers) memory now. */
function memoryNow(): number {
  const m = Deno.memoryUsage();
  return m.heapUsed + m.external;
}

/**
 * Reads `res`'s body in steps, pausing now and then (a slow consumer), checking the pattern at each chunk's ends,
 * and calling `sample(read)` after each step. Returns the bytes read.
 */
async function readSlowly(
  res: Response,
  sample: (read: number) => void,
  pauseEvery = 32,
): Promise<number> {
  const reader = res.body!.getReader();
  let read = 0;
  let steps = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return read;
    const first = PATTERN[read % MiB];
    const last = PATTERN[(read + value.byteLength - 1) % MiB];
    if (value[0] !== first || value[value.byteLength - 1] !== last) {
      throw new Error(`The body is not the pattern at byte ${read} (chunk of ${value.byteLength})`);
    }
    read += value.byteLength;
    sample(read);
    if (++steps % pauseEvery === 0) await sleep(1);
  }
}

/**
 * The bounds of a slow download of 200 MB: the server ran at most 32 MiB ahead of the reader (kernel buffers on
 * loopback, a few MB each way, plus the stream's queue; without backpressure the client takes it all), what
 * survives garbage collection stays under 32 MiB, and the peak (garbage included: the reader's chunks are dropped
 * as it goes, and V8 collects every ~64 MiB of them) stays well below the body.
 */
function assertBounded(ahead: number, floor: number, peak: number): void {
  const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
  assert.ok(ahead < 32 * MiB, `the server ran ${mib(ahead)} ahead of the reader`);
  assert.ok(floor < 32 * MiB, `${mib(floor)} more memory than at the start survived garbage collection`);
  assert.ok(peak < 112 * MiB, `memory grew by ${mib(peak)}`);
}

// ---------------------------------------------------------------- downloads

Deno.test("`HttpClient` large downloads read slowly: backpressure reaches the server, memory stays bounded", async (t) => {
  await t.step("a 200 MB Content-Length body: the server is held back by the reader", async () => {
    const size = 200 * MiB;
    const conns: Connection[] = [];
    let headLen = 0;
    await rawTest({
      onConnection: (conn) => {
        conns.push(conn);
        onRequestHead(conn, () => {
          const head = `HTTP/1.1 200 OK\r\ncontent-length: ${size}\r\n\r\n`;
          headLen = head.length;
          conn.write(head);
          pump(conn, size);
        });
      },
    }, async ({ client, base }) => {
      const res = await client.request(`${base}/big`);
      const base0 = memoryNow();
      let ahead = 0; // most bytes the server had handed to the kernel beyond what the reader had taken
      let grown = 0; // most heap + external memory above what it was when the body started
      let floor = Infinity; // least of it over the second half: what survives garbage collection
      const read = await readSlowly(res, (read) => {
        ahead = Math.max(ahead, conns[0].bytesWritten - headLen - read);
        if (read % MiB < 64 * 1024) {
          const m = memoryNow() - base0;
          grown = Math.max(grown, m);
          if (read > size / 2) floor = Math.min(floor, m);
        }
      });

      assert.equal(read, size);
      assertBounded(ahead, floor, grown);
      assert.equal(client.connectionCount, 1, "kept for the next request");
    });
  });
});

Deno.test("`HttpClient` a 64 MB close-delimited body read slowly ends whole at the server's FIN", async () => {
  const size = 64 * MiB;
  await rawTest({
    onConnection: (conn) =>
      onRequestHead(conn, () => {
        conn.write("HTTP/1.1 200 OK\r\n\r\n"); // no length: the body ends when the server closes
        pump(conn, size, () => conn.end());
      }),
  }, async ({ client, base, closed }) => {
    const res = await client.request(`${base}/`);
    assert.equal(await readSlowly(res, () => {}, 16), size);
    await until(() => closed() === 1 && client.connectionCount === 0, "the connection to close, not pooled");
  });
});

// ---------------------------------------------------------------- Deno.serve

/** Runs `fn` with a `Deno.serve` server on loopback (its I/O runs beside the reactor's `run()`). */
async function withDenoServe(
  handler: (req: Request) => Response | Promise<Response>,
  fn: (base: string) => Promise<void>,
): Promise<void> {
  const ac = new AbortController();
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", signal: ac.signal, onListen() {} }, handler);
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`);
  } finally {
    ac.abort();
    await server.finished;
  }
}

/** Runs `fn` with a client on a fresh reactor running in the background, checking fds around it all. */
async function withClient(
  options: Omit<HttpClientOptions, "reactor">,
  fn: (client: HttpClient, reactor: Reactor) => Promise<void>,
): Promise<void> {
  const { reactor, errors } = newReactor("epoll");
  const client = new HttpClient({ reactor, ...options });
  const running = reactor.run();
  try {
    await fn(client, reactor);
  } finally {
    client.close();
    await turns(reactor, 3);
    await stopAndClose(reactor, running);
  }
  assertNoErrors(errors);
}

/** SHA-256 of `bytes`, in hex. */
async function sha256(bytes: Uint8Array<ArrayBuffer> | ArrayBuffer): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("`HttpClient` against Deno.serve: a 100 MB chunked body read slowly holds the server's stream back", async () => {
  const size = 100 * MiB;
  let pulled = 0;
  await assertNoFdLeak(() =>
    withDenoServe(
      () =>
        new Response(
          new ReadableStream<Uint8Array>({
            pull(c) {
              if (pulled >= size) return c.close();
              c.enqueue(PATTERN.slice()); // a fresh copy: Deno may hold on to what it was given
              pulled += MiB;
            },
          }),
        ),
      (base) =>
        withClient({}, async (client) => {
          const res = await client.request(`${base}/`);
          assert.equal(res.headers.get("transfer-encoding"), "chunked");
          const base0 = memoryNow();
          let ahead = 0;
          let grown = 0;
          let floor = Infinity;
          const read = await readSlowly(res, (read) => {
            ahead = Math.max(ahead, pulled - read);
            if (read % MiB < 64 * 1024) {
              const m = memoryNow() - base0;
              grown = Math.max(grown, m);
              if (read > size / 2) floor = Math.min(floor, m);
            }
          }, 8);
          assert.equal(read, size);
          assertBounded(ahead, floor, grown);
        }),
    )
  );
});

// ---------------------------------------------------------------- bodies not read

/** A server answering `/big` with `size` bytes of the pattern and anything else with its path (small). */
function bigOrSmall(size: number, conns: Connection[]): (conn: Connection) => void {
  return (conn) => {
    conns.push(conn);
    let heads = "";
    conn.on("data", (chunk) => {
      heads += latin1.decode(chunk);
      for (let end = heads.indexOf("\r\n\r\n"); end >= 0; end = heads.indexOf("\r\n\r\n")) {
        const path = heads.slice(0, end).split(" ")[1];
        heads = heads.slice(end + 4);
        if (path === "/big") {
          conn.write(`HTTP/1.1 200 OK\r\ncontent-length: ${size}\r\n\r\n`);
          pump(conn, size);
        } else {
          conn.write(`HTTP/1.1 200 OK\r\ncontent-length: ${path.length}\r\n\r\n${path}`);
        }
      }
    });
  };
}

Deno.test("`HttpClient` bodies not read: cancel() frees the slot, a dropped body holds it (consume or cancel)", async (t) => {
  await t.step("cancel() after one chunk, and before any: the connection is closed, the slot goes on", async () => {
    const conns: Connection[] = [];
    await rawTest({
      client: { maxConnectionsPerHost: 1 },
      onConnection: bigOrSmall(64 * MiB, conns),
    }, async ({ client, base, accepted, closed }) => {
      const a = await client.request(`${base}/big`);
      const reader = a.body!.getReader();
      assert.equal((await reader.read()).done, false);
      // A second request waits for the only slot: the cancel must hand it on.
      const next = client.request(`${base}/after-a`, { timeout: 5000 });
      await until(() => client.waitingCount === 1, "the next request to wait");
      await reader.cancel();
      assert.equal(await (await next).text(), "/after-a");
      assert.equal(accepted(), 2, "the cancelled connection was not reused");
      await until(() => closed() === 1, "the cancelled connection to close");
      assert.ok(conns[0].bytesWritten < 32 * MiB, "the server was not read to the end");

      const b = await client.request(`${base}/big`);
      await b.body!.cancel();
      await until(() => closed() === 2 && client.connectionCount === 0, "the second cancelled connection to close");
      assert.equal(await (await client.request(`${base}/after-b`, { timeout: 5000 })).text(), "/after-b");
      assert.equal(accepted(), 3);
    });
  });

  await t.step("a small body left unread is complete already: the connection goes back to the pool", async () => {
    await rawTest({
      client: { maxConnectionsPerHost: 1 },
      onConnection: bigOrSmall(0, []),
    }, async ({ client, base, accepted }) => {
      const unread = await client.request(`${base}/unread`);
      const next = await client.request(`${base}/next`, { timeout: 5000 });
      assert.equal(await next.text(), "/next");
      assert.equal(await unread.text(), "/unread", "the unread body is intact");
      assert.equal(accepted(), 1);
    });
  });

  await t.step("a large body dropped unread holds its slot, without reading on; cancel() frees it", async () => {
    const conns: Connection[] = [];
    await rawTest({
      client: { maxConnectionsPerHost: 1 },
      onConnection: bigOrSmall(64 * MiB, conns),
    }, async ({ client, base, accepted, reactor }) => {
      const dropped = await client.request(`${base}/big`);
      // Never read: as with undici's fetch, a body must be consumed or cancelled (nothing is left to the GC).
      await assert.rejects(
        client.request(`${base}/waits`, { timeout: 200 }),
        (e: unknown) => (e as Error).name === "TimeoutError",
      );
      assert.equal(client.waitingCount, 0, "the timed-out request left the queue");
      assert.equal(client.connectionCount, 1);
      const written = conns[0].bytesWritten;
      await turns(reactor, 20);
      assert.equal(conns[0].bytesWritten, written, "the server is held back: the client stopped reading");
      assert.ok(written < 32 * MiB, `the server wrote ${written} bytes for a body nobody read`);
      await dropped.body!.cancel();
      assert.equal(await (await client.request(`${base}/after`, { timeout: 5000 })).text(), "/after");
      assert.equal(accepted(), 2);
    });
  });
});

// ---------------------------------------------------------------- uploads

/** A Deno.serve handler answering with the SHA-256 and length of the request body, counting bytes as they come. */
function hashingHandler(progress: { received: number } = { received: 0 }): (req: Request) => Promise<Response> {
  return async (req) => {
    const parts: Uint8Array[] = [];
    for await (const chunk of req.body!) {
      parts.push(chunk);
      progress.received += chunk.byteLength;
    }
    const all = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
    let o = 0;
    for (const p of parts) {
      all.set(p, o);
      o += p.byteLength;
    }
    return new Response(`${all.byteLength} ${await sha256(all)}`);
  };
}

/** `n` bytes of the pattern. */
function patternBytes(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let o = 0; o < n; o += MiB) out.set(PATTERN.subarray(0, Math.min(MiB, n - o)), o);
  return out;
}

Deno.test("`HttpClient` large uploads arrive exactly", async (t) => {
  const size = 50 * MiB;
  const bytes = patternBytes(size);
  const expected = `${size} ${await sha256(bytes)}`;

  await t.step("a 50 MB Uint8Array body", async () => {
    await assertNoFdLeak(() =>
      withDenoServe(hashingHandler(), (base) =>
        withClient({}, async (client) => {
          const res = await client.request(`${base}/`, { method: "PUT", body: bytes });
          assert.equal(await res.text(), expected);
        }))
    );
  });

  await t.step("a ReadableStream producing 50 MB slowly, in pieces of odd sizes up to 1 MiB", async () => {
    const progress = { received: 0 };
    let produced = 0;
    let ahead = 0; // most bytes produced beyond what the server had received
    await assertNoFdLeak(() =>
      withDenoServe(hashingHandler(progress), (base) =>
        withClient({}, async (client) => {
          let pulls = 0;
          const body = new ReadableStream<Uint8Array>({
            async pull(c) {
              if (produced >= size) return c.close();
              if (++pulls % 4 === 0) await sleep(1);
              const n = Math.min(size - produced, pulls % 3 === 0 ? MiB : 300_007 + pulls);
              c.enqueue(bytes.slice(produced, produced + n));
              produced += n;
              ahead = Math.max(ahead, produced - progress.received);
            },
          });
          const res = await client.request(`${base}/`, { method: "POST", body });
          assert.equal(await res.text(), expected);
        }))
    );
    assert.ok(ahead < 32 * MiB, `the stream was read ${(ahead / MiB).toFixed(1)} MiB ahead of the server`);
  });
});

Deno.test("`HttpClient` a stream body with one piece larger than the write buffer limit (16 MiB) is sent", async () => {
  // The connection refuses to queue more than its maxWriteBuffer: a 40 MB piece must go in slices, as bytes do.
  const size = 40 * MiB;
  const bytes = patternBytes(size);
  const expected = `${size} ${await sha256(bytes)}`;
  await assertNoFdLeak(() =>
    withDenoServe(hashingHandler(), (base) =>
      withClient({}, async (client) => {
        const body = new ReadableStream<Uint8Array>({
          start(c) {
            c.enqueue(bytes);
            c.close();
          },
        });
        const res = await client.request(`${base}/`, { method: "POST", body, timeout: 10_000 });
        assert.equal(await res.text(), expected);
      }))
  );
});

// ---------------------------------------------------------------- early answers to uploads

const TOO_LARGE = "HTTP/1.1 413 Content Too Large\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbig!";

/** The body kinds of an upload: 50 MB of bytes, or a stream of 1 MiB pieces (cancels counted in `cancels`). */
function uploads(cancels: { n: number }): [string, () => Uint8Array | ReadableStream<Uint8Array>][] {
  return [
    ["50 MB of bytes", () => new Uint8Array(50 * MiB)],
    ["a 50 MB stream", () => {
      let sent = 0;
      return new ReadableStream<Uint8Array>({
        pull(c) {
          if (sent >= 50 * MiB) return c.close();
          c.enqueue(new Uint8Array(MiB));
          sent += MiB;
        },
        cancel() {
          cancels.n++;
        },
      }, { highWaterMark: 0 });
    }],
  ];
}

/**
 * Whether `err` says what happened to the connection (a reset, a broken pipe, a close before the answer), not a
 * detail of the client's own (a write to a connection it had destroyed).
 */
function isTransportError(err: unknown): boolean {
  return /ECONNRESET|EPIPE|closed before the response/.test(String((err as Error)?.message));
}

Deno.test("`HttpClient` a server that answers an upload early and closes: the answer or a clear error, no hang", async (t) => {
  const cancels = { n: 0 };
  for (const [what, makeBody] of uploads(cancels)) {
    await t.step(`${what}: a 413, then FIN while the server reads on`, async () => {
      await rawTest({
        onConnection: (conn) => onRequestHead(conn, () => conn.end(TOO_LARGE), () => {}),
      }, async ({ client, base, closed }) => {
        const before = cancels.n;
        const body = makeBody();
        const res = await client.request(`${base}/`, { method: "POST", body, timeout: 10_000 });
        assert.equal(res.status, 413);
        assert.equal(await res.text(), "big!");
        await until(() => closed() === 1 && client.connectionCount === 0, "the connection to close");
        if (body instanceof ReadableStream) await until(() => cancels.n === before + 1, "the body to be cancelled");
      });
    });

    await t.step(`${what}: a 413, then close at once (a reset: the upload was not read)`, async () => {
      await rawTest({
        onConnection: (conn) =>
          onRequestHead(conn, () => {
            conn.write(TOO_LARGE);
            conn.destroy();
          }),
      }, async ({ client, base }) => {
        const before = cancels.n;
        const body = makeBody();
        const started = performance.now();
        try {
          const res = await client.request(`${base}/`, { method: "POST", body, timeout: 10_000 });
          assert.equal(res.status, 413);
          await res.text().catch(() => {}); // the reset may cut the body
        } catch (err) {
          assert.ok(isTransportError(err), `not a clear error: ${err}`);
        }
        assert.ok(performance.now() - started < 5000, "settled long before the timeout");
        await until(() => client.connectionCount === 0, "the connection to close");
        if (body instanceof ReadableStream) await until(() => cancels.n === before + 1, "the body to be cancelled");
      });
    });

    await t.step(`${what}: no answer, a reset after 1 MB`, async () => {
      await rawTest({
        onConnection: (conn) => {
          let got = 0;
          onRequestHead(conn, () => {}, (chunk) => {
            got += chunk.byteLength;
            if (got > MiB && !conn.destroyed) reset(conn);
          });
        },
      }, async ({ client, base }) => {
        // The reset lands at different points of the upload (waiting for drain, between two writes): try several.
        for (let i = 0; i < 5; i++) {
          const before = cancels.n;
          const body = makeBody();
          const err = await client.request(`${base}/`, { method: "POST", body, timeout: 10_000 }).then(
            () => new Error("resolved"),
            (e) => e,
          );
          assert.ok(isTransportError(err), `attempt ${i}: not a clear error: ${err}`);
          await until(() => client.connectionCount === 0, "the connection to close");
          if (body instanceof ReadableStream) await until(() => cancels.n === before + 1, "the body to be cancelled");
        }
      });
    });
  }
});

Deno.test("`HttpClient` an upload whose connection is reset before a write fails with the reset, not a detail", async () => {
  const conns: Connection[] = [];
  let cancels = 0;
  await rawTest({
    onConnection: (conn) => {
      conns.push(conn);
      conn.on("data", () => {});
    },
  }, async ({ client, base }) => {
    let pulls = 0;
    // Small pieces the kernel takes at once. Before the third, the server resets the connection: the client's
    // write of it fails at once (its loop has not run since), and the fourth piece is there at once too.
    const body = new ReadableStream<Uint8Array>({
      async pull(c) {
        if (++pulls === 3) {
          await until(() => conns[0]?.bytesRead > 0, "the server to read the first pieces");
          reset(conns[0]);
        }
        c.enqueue(new Uint8Array(16 * 1024));
      },
      cancel() {
        cancels++;
      },
    }, { highWaterMark: 0 });
    const err = await client.request(`${base}/`, { method: "POST", body, timeout: 10_000 }).then(
      () => new Error("resolved"),
      (e) => e,
    );
    assert.ok(isTransportError(err), `not a clear error: ${err}`);
    await until(() => client.connectionCount === 0 && cancels === 1, "the connection to close, the body cancelled");
  });
});

// ---------------------------------------------------------------- time

Deno.test("`HttpClient` timeouts and aborts in the middle of a large body", async (t) => {
  await t.step("`timeout` fires while the body streams: the read rejects, the connection closes", async () => {
    const conns: Connection[] = [];
    await rawTest({
      client: { maxConnectionsPerHost: 1 },
      onConnection: bigOrSmall(200 * MiB, conns),
    }, async ({ client, base, closed }) => {
      const started = performance.now();
      const res = await client.request(`${base}/big`, { timeout: 300 });
      let read = 0;
      const err = await readSlowly(res, (n) => read = n, 4).then(() => new Error("read to the end"), (e) => e);
      const took = performance.now() - started;
      assert.equal((err as Error).name, "TimeoutError", String(err));
      assert.ok(read > 0 && read < 200 * MiB, `read ${read} bytes`);
      assert.ok(took < 2000, `the timeout of 300 ms fired after ${took.toFixed(0)} ms`);
      await until(() => closed() === 1 && client.connectionCount === 0, "the connection to close");
      assert.equal(await (await client.request(`${base}/next`, { timeout: 5000 })).text(), "/next");
    });
  });

  await t.step("abort while the queue is full and the socket paused: the body errors with the reason", async () => {
    const conns: Connection[] = [];
    await rawTest({
      client: { maxConnectionsPerHost: 1 },
      onConnection: bigOrSmall(64 * MiB, conns),
    }, async ({ client, base, closed, reactor }) => {
      const ac = new AbortController();
      const res = await client.request(`${base}/big`, { signal: ac.signal });
      const reader = res.body!.getReader();
      assert.equal((await reader.read()).done, false);
      // The reader stops: the queue fills, the client stops reading, the server stops writing.
      let written = -1;
      await until(() => {
        const same = conns[0].bytesWritten === written;
        written = conns[0].bytesWritten;
        return same;
      }, "the server to be held back");
      await turns(reactor, 10);
      const waiting = client.request(`${base}/waiting`, { timeout: 5000 });
      const reason = new Error("enough");
      ac.abort(reason);
      await assert.rejects(reader.read(), (e) => e === reason);
      await until(() => closed() === 1, "the connection to close");
      assert.equal(await (await waiting).text(), "/waiting", "the slot went to the waiting request");
      assert.equal(client.connectionCount, 1);
    });
  });

  await t.step("`connectTimeout` against a listener whose backlog is full", async () => {
    await assertNoFdLeak(async () => {
      // A listener that never accepts, with a backlog of 1: fill its queue with raw connects until one hangs.
      const listener = tcpListener("127.0.0.1", 0, 1);
      const fillers: number[] = [];
      try {
        const sa = encodeSockaddr({ host: "127.0.0.1", port: listener.port });
        let hung = false;
        for (let i = 0; i < 8 && !hung; i++) {
          const fd = socket(sa.family, SOCK_STREAM);
          fillers.push(fd);
          if (!connectFd(fd, sa.buf, sa.len, "filler")) hung = (waitFd(fd, POLLOUT, 200) & POLLOUT) === 0;
        }
        assert.ok(hung, "a connect to the full backlog was answered: the kernel did not drop the SYN");
        await withClient({ maxConnectionsPerHost: 1 }, async (client) => {
          const started = performance.now();
          const err = await client.request(`http://127.0.0.1:${listener.port}/`, { connectTimeout: 200 }).then(
            () => new Error("resolved"),
            (e) => e,
          );
          const took = performance.now() - started;
          assert.equal((err as { code?: string }).code, "ETIMEDOUT", String(err));
          assert.ok(took >= 150 && took < 2000, `ETIMEDOUT after ${took.toFixed(0)} ms`);
          assert.equal(client.connectionCount, 0, "the slot is free");
          // And the total timeout covers connecting too.
          const err2 = await client.request(`http://127.0.0.1:${listener.port}/`, { timeout: 200 }).then(
            () => new Error("resolved"),
            (e) => e,
          );
          assert.equal((err2 as Error).name, "TimeoutError", String(err2));
          await until(() => client.connectionCount === 0, "the slot to be freed");
          // A host name is resolved, then dialled (net/dial.ts): the timeout cancels the dial and closes its socket.
          const name = Deno.hostname();
          const addresses = await getaddrinfo(name).catch(() => []);
          if (addresses.length > 0 && addresses.every((a) => a.address === "127.0.0.1")) {
            const err3 = await client.request(`http://${name}:${listener.port}/`, { connectTimeout: 200 }).then(
              () => new Error("resolved"),
              (e) => e,
            );
            assert.equal((err3 as { code?: string }).code, "ETIMEDOUT", String(err3));
            assert.equal(client.connectionCount, 0);
          }
        });
      } finally {
        for (const fd of fillers) closeFd(fd);
        closeFd(listener.fd);
      }
    });
  });
});

// ---------------------------------------------------------------- many requests

Deno.test("`HttpClient` 500 requests on 10 connections, some aborted or timed out while they wait", async () => {
  await rawTest({
    client: { maxConnectionsPerHost: 10, idleTimeout: 60_000 },
    onConnection: (conn) => {
      // Answers each request a moment later, so that the queue builds up.
      let heads = "";
      conn.on("data", (chunk) => {
        heads += latin1.decode(chunk);
        for (let end = heads.indexOf("\r\n\r\n"); end >= 0; end = heads.indexOf("\r\n\r\n")) {
          const path = heads.slice(0, end).split(" ")[1];
          heads = heads.slice(end + 4);
          setTimeout(() => {
            if (!conn.destroyed) conn.write(`HTTP/1.1 200 OK\r\ncontent-length: ${path.length}\r\n\r\n${path}`);
          }, 1);
        }
      });
    },
  }, async ({ client, base, accepted }) => {
    const n = 500;
    const reason = new Error("aborted while waiting");
    let peak = 0;
    const controllers = Array.from({ length: n }, () => new AbortController());
    const all = Promise.allSettled(controllers.map(async (ac, i) => {
      const res = await client.request(`${base}/${i}`, {
        signal: ac.signal,
        timeout: i % 50 === 49 ? 20 : 10_000, // the last ones of each 50 time out while they wait
      });
      peak = Math.max(peak, client.connectionCount);
      return await res.text();
    }));
    await until(() => client.waitingCount > n - 50, "the queue to build up");
    const aborted = new Set<number>();
    for (let i = 3; i < n; i += 9) {
      if (i % 50 === 49) continue;
      aborted.add(i);
      controllers[i].abort(reason);
    }
    const outcomes = await all;
    let ok = 0;
    let abortedCount = 0;
    let timedOut = 0;
    outcomes.forEach((o, i) => {
      if (o.status === "fulfilled") {
        assert.equal(o.value, `/${i}`);
        ok++;
      } else if (o.reason === reason) {
        assert.ok(aborted.has(i), `request ${i} got another's abort`);
        abortedCount++;
      } else {
        assert.equal((o.reason as Error).name, "TimeoutError", `request ${i}: ${o.reason}`);
        assert.equal(i % 50, 49, `request ${i} timed out`);
        timedOut++;
      }
    });
    // Every one settled; those aborted before they had a connection used none.
    assert.equal(ok + abortedCount + timedOut, n);
    assert.ok(abortedCount >= aborted.size - 10, `${abortedCount} of ${aborted.size} aborts took effect`);
    assert.ok(peak <= 10, `${peak} connections at once`);
    assert.equal(client.waitingCount, 0);
    assert.ok(client.connectionCount <= 10);
    // A request that fails after it got a connection closes it (a new one takes its place); one failing while
    // it waits opens none.
    assert.ok(accepted() <= 10 + abortedCount + timedOut, `${accepted()} connections accepted`);
    client.close();
    await until(() => client.connectionCount === 0, "the idle connections to close");
  });
});

Deno.test("`HttpClient` a large PUT retried after its reused connection closed is sent again whole", async () => {
  const size = 32 * MiB;
  let putHeads = 0;
  await rawTest({
    client: { maxConnectionsPerHost: 1 },
    onConnection: (conn, index) => {
      let got = 0;
      let head = "";
      const answer = (body: string) => conn.write(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
      onRequestHead(conn, (h) => {
        head = h;
        if (h.startsWith("GET")) {
          answer("first");
          // The next request on this connection (the PUT) is met by a reset: a keep-alive race lost.
          onRequestHead(conn, () => {
            putHeads++;
            reset(conn);
          });
        } else putHeads++;
      }, (chunk) => {
        if (index === 0 || !head.startsWith("PUT")) return;
        got += chunk.byteLength;
        if (got === size) answer(`got ${got}`);
      });
    },
  }, async ({ client, base, accepted }) => {
    assert.equal(await (await client.request(`${base}/first`)).text(), "first");
    const res = await client.request(`${base}/put`, { method: "PUT", body: new Uint8Array(size), timeout: 10_000 });
    assert.equal(await res.text(), `got ${size}`);
    assert.equal(putHeads, 2, "sent twice");
    assert.equal(accepted(), 2);
  });
});

Deno.test("`HttpClient` Deno.serve answering 413 without reading a 50 MB upload: the client gets the 413", async (t) => {
  const cancels = { n: 0 };
  for (const [what, makeBody] of uploads(cancels)) {
    await t.step(what, async () => {
      await assertNoFdLeak(() =>
        withDenoServe(() => new Response("no", { status: 413 }), (base) =>
          withClient({}, async (client) => {
            const before = cancels.n;
            const body = makeBody();
            try {
              const res = await client.request(`${base}/`, { method: "POST", body, timeout: 10_000 });
              assert.equal(res.status, 413);
              assert.equal(await res.text(), "no");
            } catch (err) {
              assert.ok(isTransportError(err), `not a clear error: ${err}`);
            }
            await until(() => client.connectionCount === 0, "the connection to close");
            if (body instanceof ReadableStream) await until(() => cancels.n === before + 1, "the body to be cancelled");
          }))
      );
    });
  }
});
