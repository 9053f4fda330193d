/**
 * The HTTP client (`HttpClient`, `request`) against raw servers that send
 * exact bytes: the pool's slots and reuse, abort and timeout at each phase,
 * request bodies and their streams, framing of the response, and fds and
 * connections left behind. A test that shows something did not happen
 * counts (connections accepted, closes seen, cancels called).
 */

import assert from "node:assert/strict";
import type { Connection } from "../net/mod.ts";
import { Reactor } from "../reactor/mod.ts";
import { close as closeFd, dupAtLeast, F_GETFD, pipe, POLLOUT, socketError, sym, write } from "../ffi/mod.ts";
import { dialHost } from "../net/dial.ts";
import { assertNoFdLeak, occupyBelow, tcpListener, waitFd } from "./_helpers.ts";
import { until } from "./_net.ts";
import { rawTest, reset } from "./_raw_server.ts";

const latin1 = new TextDecoder("latin1");

/** A response with a Content-Length body. */
function ok(body: string, extra = ""): string {
  return `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n${extra}\r\n${body}`;
}

/** The path of a request head. */
function pathOf(head: string): string {
  return head.split(" ")[1];
}

// ---------------------------------------------------------------- the pool

Deno.test("`HttpClient` pool: slots, reuse and close()", async (t) => {
  await t.step("a request aborted while waiting for a slot passes the slot on to the next one", async () => {
    const held: Connection[] = [];
    await rawTest({
      client: { maxConnectionsPerHost: 1, idleTimeout: 60_000 },
      onRequest: (req) => {
        if (pathOf(req.head) === "/hold") held.push(req.conn);
        else req.conn.write(ok(pathOf(req.head)));
      },
    }, async ({ client, base, accepted }) => {
      const a = client.request(`${base}/hold`);
      await until(() => held.length === 1, "the held request to arrive");
      const ac = new AbortController();
      const b = client.request(`${base}/b`, { signal: ac.signal });
      // C would otherwise wait for the idle connection's timer (60 s): the timeout turns that into a failure.
      const c = client.request(`${base}/c`, { timeout: 3000 });
      ac.abort(new Error("b aborted"));
      await assert.rejects(b, /b aborted/);
      held[0].write(ok("held"));
      assert.equal(await (await a).text(), "held");
      assert.equal(await (await c).text(), "/c");
      assert.equal(accepted(), 1, "one connection for all");
    });
  });

  await t.step("a connect() that throws at once (select, fd >= FD_SETSIZE) does not use up a slot", async () => {
    await rawTest({
      backend: "select",
      client: { maxConnectionsPerHost: 1 },
      onRequest: (req) => req.conn.write(ok("fine")),
    }, async ({ client, base }) => {
      // Fill every fd below FD_SETSIZE, so the client's socket gets one the select backend refuses.
      const [r, w] = pipe();
      const fillers = occupyBelow(r, 1024);
      try {
        await assert.rejects(client.request(`${base}/`), RangeError);
      } finally {
        for (const fd of fillers) closeFd(fd);
        closeFd(r);
        closeFd(w);
      }
      assert.equal(client.connectionCount, 0);
      const res = await client.request(`${base}/`, { timeout: 3000 });
      assert.equal(await res.text(), "fine");
    });
  });

  await t.step("close() closes a connection in use once its exchange ends, instead of pooling it", async () => {
    const held: Connection[] = [];
    await rawTest({
      client: { idleTimeout: 60_000 },
      onRequest: (req) => held.push(req.conn),
    }, async ({ client, base, closed }) => {
      const pending = client.request(`${base}/`);
      await until(() => held.length === 1, "the request to arrive");
      client.close();
      held[0].write(ok("late"));
      assert.equal(await (await pending).text(), "late");
      await until(() => closed() === 1, "the server to see the client close the connection", 2000);
      assert.equal(client.connectionCount, 0);
    });
  });

  await t.step("bytes past the end of a response: the connection is not reused", async () => {
    await rawTest({
      onRequest: (req) => {
        if (pathOf(req.head) === "/1") req.conn.write(ok("one") + ok("smuggled"));
        else req.conn.write(ok("two"));
      },
    }, async ({ client, base, accepted }) => {
      assert.equal(await (await client.request(`${base}/1`)).text(), "one");
      assert.equal(await (await client.request(`${base}/2`)).text(), "two");
      assert.equal(accepted(), 2, "the second request went on a new connection");
    });
  });

  await t.step("a reused connection closed before the answer: a GET is sent again, a POST is not", async () => {
    const served = new Map<Connection, number>();
    await rawTest({
      client: { idleTimeout: 60_000 },
      onRequest: (req) => {
        // The first request of each connection is answered; the second is read, then the connection closes.
        const n = (served.get(req.conn) ?? 0) + 1;
        served.set(req.conn, n);
        if (n === 1) req.conn.write(ok(pathOf(req.head)));
        else req.conn.destroy();
      },
    }, async ({ client, base, requests }) => {
      assert.equal(await (await client.request(`${base}/1`)).text(), "/1");
      assert.equal(await (await client.request(`${base}/get`)).text(), "/get", "retried on a new connection");
      assert.equal(requests.filter((r) => pathOf(r.head) === "/get").length, 2);
      await assert.rejects(client.request(`${base}/post`, { method: "POST", body: "x" }));
      assert.equal(requests.filter((r) => pathOf(r.head) === "/post").length, 1, "a POST is sent once");
    });
  });

  await t.step("an idle pooled connection that receives bytes is closed, not reused", async () => {
    const conns: Connection[] = [];
    await rawTest({
      client: { idleTimeout: 60_000 },
      onRequest: (req) => {
        conns.push(req.conn);
        req.conn.write(ok(`answer ${req.connIndex}`));
      },
    }, async ({ client, base, closed }) => {
      assert.equal(await (await client.request(`${base}/1`)).text(), "answer 0");
      assert.equal(client.connectionCount, 1);
      conns[0].write(ok("unasked"));
      await until(() => closed() === 1, "the client to close the connection that spoke out of turn", 2000);
      assert.equal(await (await client.request(`${base}/2`)).text(), "answer 1");
    });
  });
});

// ---------------------------------------------------------------- request bodies and heads

Deno.test("`HttpClient` request side: method, bodies, abort while uploading", async (t) => {
  await t.step("a method that is not a token is refused before any connection is made", async () => {
    await rawTest(
      { onRequest: (req) => req.conn.write(ok(req.head.split(" ")[0])) },
      async ({ client, base, accepted }) => {
        await assert.rejects(
          client.request(`${base}/`, { method: "GET / HTTP/1.1\r\nx-injected: 1\r\n\r\nGET" }),
          TypeError,
        );
        await assert.rejects(client.request(`${base}/`, { method: "GET /x" }), TypeError);
        await assert.rejects(client.request(`${base}/`, { method: "" }), TypeError);
        await assert.rejects(client.request(`${base}/`, { headers: { "x-bad": "a\u0001b" } }), TypeError);
        assert.equal(await (await client.request(`${base}/`, { method: "PATCH" })).text(), "PATCH");
        assert.equal(accepted(), 1, "only the valid request connected");
      },
    );
  });

  await t.step("a byte body bigger than the connection's write buffer limit (16 MiB) is sent", async () => {
    const size = 32 * 1024 * 1024;
    await rawTest({ onRequest: (req) => req.conn.write(ok(String(req.bodyBytes))) }, async ({ client, base }) => {
      const res = await client.request(`${base}/`, { method: "POST", body: new Uint8Array(size) });
      assert.equal(await res.text(), String(size));
    });
  });

  await t.step("abort while a stream body waits for drain: the body stream is cancelled, the fd closed", async () => {
    let pulls = 0;
    let cancels = 0;
    let serverGotData = false;
    await rawTest({
      onConnection: (conn) => {
        conn.on("data", () => {
          serverGotData = true;
          conn.pause(); // read nothing more: the client's queue fills
        });
      },
    }, async ({ client, base }) => {
      const body = new ReadableStream<Uint8Array>({
        pull(c) {
          pulls++;
          c.enqueue(new Uint8Array(8 * 1024 * 1024)); // more than the kernel and the high-water mark take
        },
        cancel() {
          cancels++;
        },
      }, { highWaterMark: 0 });
      const ac = new AbortController();
      const pending = client.request(`${base}/`, { method: "POST", body, signal: ac.signal });
      await until(() => serverGotData && pulls === 1, "the upload to start");
      await new Promise((r) => setTimeout(r, 0)); // the write of the first chunk is done: the upload waits for drain
      ac.abort(new Error("upload aborted"));
      await assert.rejects(pending, /upload aborted/);
      await until(() => cancels === 1, "the body stream to be cancelled", 2000);
      // The server reads nothing more (paused), so it is the client's count that shows the close.
      await until(() => client.connectionCount === 0, "the connection to close", 2000);
      assert.equal(pulls, 1);
    });
  });

  await t.step("an early final response while a stream body waits for drain cancels the body stream", async () => {
    let cancels = 0;
    await rawTest({
      onConnection: (conn) => {
        conn.once("data", () => {
          conn.pause();
          conn.write("HTTP/1.1 413 Content Too Large\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbig!");
        });
      },
    }, async ({ client, base }) => {
      const body = new ReadableStream<Uint8Array>({
        pull(c) {
          c.enqueue(new Uint8Array(8 * 1024 * 1024));
        },
        cancel() {
          cancels++;
        },
      }, { highWaterMark: 0 });
      const res = await client.request(`${base}/`, { method: "POST", body });
      assert.equal(res.status, 413);
      assert.equal(await res.text(), "big!");
      await until(() => cancels === 1, "the body stream to be cancelled", 2000);
      await until(() => client.connectionCount === 0, "the connection to close", 2000);
    });
  });
});

// ---------------------------------------------------------------- response framing

Deno.test("`HttpClient` response side: framing, truncation, interim responses", async (t) => {
  await t.step("a reset during a close-delimited body errors the body instead of ending it short", async () => {
    await rawTest({
      onRequest: (req) => req.conn.write("HTTP/1.1 200 OK\r\n\r\npartial"),
    }, async ({ client, base, requests }) => {
      const res = await client.request(`${base}/`);
      const reader = res.body!.getReader();
      const first = await reader.read();
      assert.equal(latin1.decode(first.value), "partial");
      reset(requests[0].conn);
      await assert.rejects(reader.read(), (err: unknown) => (err as { code?: string }).code === "ECONNRESET");
    });
  });

  await t.step("a close-delimited body ends at the server's FIN; the connection is not pooled", async () => {
    await rawTest({
      onRequest: (req) => req.conn.end("HTTP/1.1 200 OK\r\n\r\nuntil close"),
    }, async ({ client, base, accepted }) => {
      assert.equal(await (await client.request(`${base}/`)).text(), "until close");
      assert.equal(await (await client.request(`${base}/`)).text(), "until close");
      assert.equal(accepted(), 2);
    });
  });

  await t.step("a truncated Content-Length or chunked body is an error, not a short body", async () => {
    await rawTest({
      onRequest: (req) => {
        if (pathOf(req.head) === "/cl") req.conn.end("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort");
        else req.conn.end("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nwor");
      },
    }, async ({ client, base }) => {
      await assert.rejects((await client.request(`${base}/cl`)).text(), /closed before the response was complete/);
      await assert.rejects((await client.request(`${base}/chunked`)).text(), /closed before the response was complete/);
      assert.equal(client.connectionCount, 0);
    });
  });

  await t.step("HEAD, 204 and 304 with a Content-Length do not wait for a body; the connection is reused", async () => {
    await rawTest({
      onRequest: (req) => {
        const p = pathOf(req.head);
        if (p === "/head") req.conn.write("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n");
        else if (p === "/204") req.conn.write("HTTP/1.1 204 No Content\r\ncontent-length: 100\r\n\r\n");
        else if (p === "/304") req.conn.write("HTTP/1.1 304 Not Modified\r\ncontent-length: 100\r\n\r\n");
        else req.conn.write(ok("after"));
      },
    }, async ({ client, base, accepted }) => {
      const head = await client.request(`${base}/head`, { method: "HEAD" });
      assert.equal(head.headers.get("content-length"), "100");
      assert.equal(await head.text(), "");
      assert.equal((await client.request(`${base}/204`)).status, 204);
      assert.equal((await client.request(`${base}/304`)).status, 304);
      assert.equal(await (await client.request(`${base}/x`)).text(), "after");
      assert.equal(accepted(), 1);
    });
  });

  await t.step("a head ending in CRLF LF (a bare LF blank line): the last header is read whole", async () => {
    await rawTest({
      onRequest: (req) => req.conn.write("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\nabcdefghij"),
    }, async ({ client, base }) => {
      const res = await client.request(`${base}/`);
      assert.equal(res.headers.get("content-length"), "10");
      assert.equal(await res.text(), "abcdefghij");
    });
  });

  await t.step("100 Continue and 103 Early Hints before the final response are skipped", async () => {
    await rawTest({
      onRequest: (req) => {
        req.conn.write("HTTP/1.1 100 Continue\r\n\r\n");
        req.conn.write("HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\n" + ok("final"));
      },
    }, async ({ client, base }) => {
      const res = await client.request(`${base}/`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("link"), null);
      assert.equal(await res.text(), "final");
    });
  });

  await t.step("a 101 fails the request at once and closes the connection (no Upgrade support)", async () => {
    await rawTest({
      client: { idleTimeout: 60_000 },
      onRequest: (req) =>
        req.conn.write("HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n"),
    }, async ({ client, base, closed }) => {
      await assert.rejects(client.request(`${base}/`), /switched protocols \(101\)/);
      await until(() => closed() === 1, "the client to close the switched connection", 2000);
      assert.equal(client.connectionCount, 0);
    });
  });

  await t.step("Connection: close in the response closes the connection afterwards", async () => {
    await rawTest({
      onRequest: (req) => req.conn.write(ok("bye", "connection: close\r\n")),
    }, async ({ client, base, accepted, closed }) => {
      assert.equal(await (await client.request(`${base}/`)).text(), "bye");
      await until(() => closed() === 1, "the client to close", 1000); // not the idle timer (4 s)
      assert.equal(await (await client.request(`${base}/`)).text(), "bye");
      assert.equal(accepted(), 2);
    });
  });

  await t.step(
    "a response with both Transfer-Encoding and Content-Length: chunked, then the connection is closed",
    async () => {
      await rawTest({
        onRequest: (req) =>
          req.conn.write(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n2\r\nte\r\n0\r\n\r\n",
          ),
      }, async ({ client, base, closed }) => {
        assert.equal(await (await client.request(`${base}/`)).text(), "te");
        await until(() => closed() === 1, "the client to close", 1000); // not the idle timer (4 s)
      });
    },
  );

  await t.step("a Connection: close request is not pooled", async () => {
    await rawTest({ onRequest: (req) => req.conn.write(ok("x")) }, async ({ client, base, closed }) => {
      assert.equal(await (await client.request(`${base}/`, { headers: { connection: "close" } })).text(), "x");
      await until(() => closed() === 1, "the client to close", 1000); // not the idle timer (4 s)
    });
  });
});

// ---------------------------------------------------------------- abort and timeout

Deno.test("`HttpClient` abort and timeout at each phase close the connection", async (t) => {
  await t.step("abort after the head errors the body stream; a timeout while reading the body too", async () => {
    await rawTest({
      onRequest: (req) => req.conn.write("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nsome"),
    }, async ({ client, base, closed }) => {
      const ac = new AbortController();
      const res = await client.request(`${base}/`, { signal: ac.signal });
      ac.abort(new Error("stop reading"));
      await assert.rejects(res.text(), /stop reading/);
      await until(() => closed() === 1, "the connection to close");
      const slow = await client.request(`${base}/`, { timeout: 100 });
      await assert.rejects(slow.text(), (e: unknown) => (e as Error).name === "TimeoutError");
      await until(() => closed() === 2, "the connection to close");
      assert.equal(client.connectionCount, 0);
    });
  });

  await t.step("abort while waiting for the head, and while connecting", async () => {
    await rawTest({ onRequest: () => {} }, async ({ client, base, closed }) => {
      const ac = new AbortController();
      const pending = client.request(`${base}/`, { signal: ac.signal });
      await until(() => client.connectionCount === 1, "the connection");
      await new Promise((r) => setTimeout(r, 20));
      ac.abort();
      await assert.rejects(pending, (e: unknown) => (e as Error).name === "AbortError");
      await until(() => closed() === 1, "the connection to close");
      const ac2 = new AbortController();
      const p2 = client.request(`${base}/`, { signal: ac2.signal });
      ac2.abort();
      await assert.rejects(p2, (e: unknown) => (e as Error).name === "AbortError");
      await until(() => client.connectionCount === 0, "no connection left");
    });
  });

  await t.step("a pooled connection the server closed while idle: the next request goes on a new one", async () => {
    await rawTest({
      client: { idleTimeout: 60_000 },
      onRequest: (req) => req.conn.write(ok(`c${req.connIndex}`)),
    }, async ({ client, base, requests, closed }) => {
      assert.equal(await (await client.request(`${base}/`)).text(), "c0");
      requests[0].conn.end();
      await until(() => closed() === 1 && client.connectionCount === 0, "the idle connection to close");
      assert.equal(await (await client.request(`${base}/`)).text(), "c1");
    });
  });
});

// ---------------------------------------------------------------- dialling

for (const backend of ["poll", "epoll"] as const) {
  Deno.test(`\`dialHost()\` (${backend}) cancelled in the batch where its connect completes closes the socket once`, async () => {
    await assertNoFdLeak(async () => {
      const reactor = new Reactor({ backend });
      const listener = tcpListener(); // the kernel completes the handshake from the backlog: no accept needed
      const [r, w] = pipe();
      let reused = -1;
      try {
        // The dial's socket will take the lowest free number (the resolver opens nothing that it keeps).
        const probe = dupAtLeast(w, 0);
        closeFd(probe);
        const dial = dialHost(reactor, "127.0.0.1", listener.port);
        let settled = false;
        dial.promise.then(() => settled = true, () => settled = true);
        // The resolver answers off the thread; then the socket exists, its connect in progress.
        const deadline = performance.now() + 5000;
        while (!isSocket(probe) && performance.now() < deadline) await new Promise((res) => setTimeout(res, 2));
        const fd = isSocket(probe) ? probe : -1;
        assert.ok(fd >= 0, "the dial made a socket");
        assert.notEqual(waitFd(fd, POLLOUT) & POLLOUT, 0, "connected");
        // Registered after the dial's writer, and ready at the same time: the same batch, after it.
        reactor.addReader(r, () => {
          reactor.removeReader(r);
          dial.cancel(); // the dial's socket is connected but its promise has not run on yet
          // Whatever the cancel closed is free again: take that number for something else.
          if (!isOpen(fd)) reused = dupAtLeast(w, fd);
        });
        write(w, new Uint8Array([1]));
        reactor.runOnce(1000);
        await new Promise((res) => setTimeout(res, 0)); // the dial's continuation runs
        while (!settled) await new Promise((res) => setTimeout(res, 1));
        if (reused >= 0) {
          assert.equal(reused, fd);
          assert.ok(isOpen(reused), "the fd that took the dial's number was closed by the dial a second time");
        } else {
          assert.ok(!isOpen(fd), "the cancelled dial closed its socket");
        }
      } finally {
        if (reused >= 0 && isOpen(reused)) closeFd(reused);
        closeFd(r);
        closeFd(w);
        closeFd(listener.fd);
        for (let i = 0; i < 3; i++) reactor.runOnce(0);
        reactor.close();
      }
    });
  });
}

/** Whether `fd` is an open socket. */
function isSocket(fd: number): boolean {
  try {
    socketError(fd);
    return true;
  } catch {
    return false;
  }
}

/** Whether `fd` is open now. */
function isOpen(fd: number): boolean {
  return sym.fcntl(fd, F_GETFD, 0) >= 0;
}
