/**
 * Tests of `net/` stream transports on every backend: listening on IPv4,
 * IPv6, dual-stack and Unix sockets, connecting, echo, write queues and
 * backpressure, host names, connect errors and timeouts, half-close,
 * closing from callbacks, write after end, and addresses in use.
 *
 * Each step makes its own reactor, runs it in the background with a
 * watchdog, and checks the process's fd count afterwards (see `_net.ts`).
 * Faults (resets, slow readers, 10,000 connections, EMFILE) are in
 * `net_faults_test.ts`; UDP in `net_udp_test.ts`.
 */

import assert from "node:assert/strict";
import type { Connection } from "../net/mod.ts";
import type { BackendName } from "../reactor/mod.ts";
import { close, connect as connectFd, encodeSockaddr, OSError, POLLOUT, SOCK_STREAM, socket } from "../ffi/mod.ts";
import { BACKENDS, tcpListener, unusedPort, waitFd } from "./_helpers.ts";
import { codeOf, netTest, nextEvent, Recorder, turns, until } from "./_net.ts";

const decoder = new TextDecoder();

/** An echo handler for `listen()`. */
function echo(conn: Connection): void {
  conn.on("data", (chunk) => conn.write(chunk));
}

/** Connects to `port`, sends `message`, and resolves with the echo once `message.length` bytes came back. */
async function roundTrip(
  ctx: Parameters<Parameters<typeof netTest>[1]>[0],
  target: { host?: string; port: number } | { path: string },
  message: string,
): Promise<{ conn: Connection; reply: string }> {
  const conn = ctx.connect(target);
  const rec = new Recorder(conn);
  conn.write(message);
  await until(() => rec.received >= message.length || rec.closes > 0, `the echo of ${JSON.stringify(message)}`);
  return { conn, reply: rec.text() };
}

function tcpSuite(backend: BackendName): void {
  Deno.test({
    name: `\`listen()\`/\`connect()\` (${backend}) on IPv4, IPv6, dual-stack and Unix sockets, echo and backpressure`,
    sanitizeOps: true,
    sanitizeResources: true,
    fn: async (t) => {
      await t.step(
        "listen() on 127.0.0.1 port 0 picks a port; the addresses of both ends agree",
        () =>
          netTest(backend, async (ctx) => {
            let serverConn: Connection | undefined;
            const server = ctx.listen({ host: "127.0.0.1", port: 0 }, (conn) => {
              serverConn = conn;
              echo(conn);
            });
            assert.ok(server.port > 0, `port ${server.port}`);
            assert.deepEqual(server.address, { family: "IPv4", address: "127.0.0.1", port: server.port });
            const { conn, reply } = await roundTrip(ctx, { host: "127.0.0.1", port: server.port }, "hello v4");
            assert.equal(reply, "hello v4");
            assert.ok(serverConn);
            assert.deepEqual(conn.remoteAddress, { family: "IPv4", address: "127.0.0.1", port: server.port });
            assert.deepEqual(serverConn.localAddress, server.address);
            assert.deepEqual(serverConn.remoteAddress, conn.localAddress);
            assert.equal(server.connections.size, 1);
            assert.equal(server.accepted, 1);
          }),
      );

      await t.step("listen() on ::1 accepts IPv6 connections", () =>
        netTest(backend, async (ctx) => {
          let remote: unknown;
          const server = ctx.listen({ host: "::1", port: 0 }, (conn) => {
            remote = conn.remoteAddress;
            echo(conn);
          });
          assert.deepEqual(server.address, { family: "IPv6", address: "::1", port: server.port });
          const { conn, reply } = await roundTrip(ctx, { host: "::1", port: server.port }, "hello v6");
          assert.equal(reply, "hello v6");
          assert.deepEqual(conn.remoteAddress, { family: "IPv6", address: "::1", port: server.port });
          assert.deepEqual(remote, conn.localAddress);
          // The bracketed form is accepted too.
          const again = await roundTrip(ctx, { host: "[::1]", port: server.port }, "brackets");
          assert.equal(again.reply, "brackets");
        }));

      await t.step(
        "listen() on :: is dual-stack: an IPv4 client shows as ::ffff:127.0.0.1",
        () =>
          netTest(backend, async (ctx) => {
            let remote: unknown;
            const server = ctx.listen({ host: "::", port: 0 }, (conn) => {
              remote = conn.remoteAddress;
              echo(conn);
            });
            assert.equal(server.address.family, "IPv6");
            assert.deepEqual(server.address, { family: "IPv6", address: "::", port: server.port });
            const { conn, reply } = await roundTrip(ctx, { host: "127.0.0.1", port: server.port }, "mapped");
            assert.equal(reply, "mapped");
            const local = conn.localAddress as { address: string; port: number };
            assert.deepEqual(remote, { family: "IPv6", address: "::ffff:127.0.0.1", port: local.port });
            const v6 = await roundTrip(ctx, { host: "::1", port: server.port }, "native");
            assert.equal(v6.reply, "native");
          }),
      );

      await t.step("listen({ ipv6Only: true }) on :: refuses IPv4 clients", () =>
        netTest(backend, async (ctx) => {
          const server = ctx.listen({ host: "::", port: 0, ipv6Only: true }, echo);
          const conn = ctx.connect({ host: "127.0.0.1", port: server.port });
          const err = await nextEvent<Error>(conn, "error");
          assert.equal(codeOf(err), "ECONNREFUSED");
        }));

      await t.step(
        "listen({ path }) serves a Unix socket and removes its file on close()",
        () =>
          netTest(backend, async (ctx) => {
            const dir = Deno.makeTempDirSync({ prefix: "fdloop_net_" });
            const path = `${dir}/echo.sock`;
            try {
              let serverConn: Connection | undefined;
              const server = ctx.listen({ path }, (conn) => {
                serverConn = conn;
                echo(conn);
              });
              assert.equal(server.port, 0);
              assert.deepEqual(server.address, { family: "unix", path });
              assert.ok(Deno.lstatSync(path).isSocket);
              const { conn, reply } = await roundTrip(ctx, { path }, "over unix");
              assert.equal(reply, "over unix");
              assert.deepEqual(conn.remoteAddress, { family: "unix", path });
              assert.ok(serverConn);
              assert.deepEqual(serverConn.localAddress, { family: "unix", path });
              conn.destroy();
              await server.close();
              assert.throws(() => Deno.lstatSync(path), Deno.errors.NotFound);
            } finally {
              Deno.removeSync(dir, { recursive: true });
            }
          }),
      );

      await t.step(
        "writes made before connect are queued and delivered in order",
        () =>
          netTest(backend, async (ctx) => {
            const server = ctx.listen({ port: 0 }, echo);
            const conn = ctx.connect({ port: server.port });
            assert.equal(conn.connecting, true);
            assert.equal(conn.write("one,"), true);
            assert.equal(conn.write(new TextEncoder().encode("two,")), true);
            assert.equal(conn.write("three"), true);
            assert.equal(conn.bufferedAmount, 13);
            let connects = 0;
            conn.on("connect", () => connects++);
            const rec = new Recorder(conn);
            await until(() => rec.received >= 13, "the echo");
            assert.equal(rec.text(), "one,two,three");
            assert.equal(connects, 1);
            assert.equal(conn.connecting, false);
            assert.equal(conn.bufferedAmount, 0);
            assert.equal(conn.bytesWritten, 13);
          }),
      );

      await t.step(
        "queued writes of mixed sizes (coalesced small ones, large ones, a reused caller buffer) arrive in order",
        () =>
          netTest(backend, async (ctx) => {
            let peer: Connection | undefined;
            const received: Uint8Array[] = [];
            let got = 0;
            const server = ctx.listen({ port: 0 }, (conn) => {
              peer = conn;
              conn.pause(); // let the kernel buffers fill so later writes queue
              conn.on("data", (chunk) => {
                received.push(chunk.slice());
                got += chunk.byteLength;
              });
            });
            const conn = ctx.connect({ port: server.port, maxWriteBuffer: 256 * 1024 * 1024 });
            await nextEvent(conn, "connect");
            // Sizes cycle through tiny, around the 4 KiB coalescing limit, and large; the byte at
            // stream offset i is (i * 7 + (i >>> 11)) & 0xff, so any reordering or loss shows.
            const sizes = [1, 17, 4095, 4096, 4097, 100, 65536, 3, 16384, 12000];
            const scratch = new Uint8Array(65536); // reused for every write, as a caller might
            let offset = 0;
            for (let i = 0; i < 3000; i++) {
              const size = sizes[i % sizes.length];
              for (let j = 0; j < size; j++) {
                const at = offset + j;
                scratch[j] = (at * 7 + (at >>> 11)) & 0xff;
              }
              conn.write(scratch.subarray(0, size));
              offset += size;
              // Now and then let the reactor run a turn, flushing part of the queue between writes.
              if (i % 250 === 0) await turns(ctx.reactor, 1);
            }
            assert.ok(conn.bufferedAmount > 0, "nothing was queued: the test did not exercise the queue");
            await until(() => peer !== undefined, "the server's connection");
            peer!.resume();
            await until(() => got === offset, `all ${offset} bytes at the server (got ${got})`, 10_000);
            let at = 0;
            for (const chunk of received) {
              for (let j = 0; j < chunk.byteLength; j++, at++) {
                if (chunk[j] !== ((at * 7 + (at >>> 11)) & 0xff)) assert.fail(`byte ${at} is wrong`);
              }
            }
            assert.equal(conn.bufferedAmount, 0);
          }),
      );

      await t.step(
        "write() returns false at the high-water mark and drain follows once the peer reads",
        () =>
          netTest(backend, async (ctx) => {
            let peer: Connection | undefined;
            let peerBytes = 0;
            const server = ctx.listen({ port: 0 }, (conn) => {
              peer = conn;
              conn.pause(); // read nothing until told
              conn.on("data", (chunk) => peerBytes += chunk.byteLength);
            });
            const hwm = 32 * 1024;
            const conn = ctx.connect({ port: server.port, highWaterMark: hwm, lowWaterMark: 8 * 1024 });
            await nextEvent(conn, "connect");
            let drains = 0;
            conn.on("drain", () => drains++);
            const chunk = new Uint8Array(16 * 1024).fill(7);
            let written = 0;
            let ok = true;
            // The kernel's buffers take a few MiB on loopback before the queue starts to grow.
            for (let i = 0; i < 4096 && ok; i++) {
              ok = conn.write(chunk);
              written += chunk.byteLength;
              assert.ok(conn.bufferedAmount < hwm + chunk.byteLength, `bufferedAmount ${conn.bufferedAmount}`);
            }
            assert.equal(ok, false, "write() never returned false");
            assert.ok(conn.bufferedAmount >= hwm, `bufferedAmount ${conn.bufferedAmount} < ${hwm}`);
            assert.equal(drains, 0);
            await until(() => peer !== undefined, "the server's connection");
            peer!.resume();
            await until(() => drains === 1, "drain");
            assert.ok(conn.bufferedAmount <= 8 * 1024);
            await until(() => peerBytes === written, "every byte at the server");
            assert.equal(drains, 1);
          }),
      );
    },
  });

  Deno.test({
    name:
      `\`connect()\` (${backend}) host names, refused and timed-out connects, half-close and closing from callbacks`,
    fn: async (t) => {
      await t.step('connect({ host: "localhost" }) reaches 127.0.0.1', () =>
        netTest(backend, async (ctx) => {
          const server = ctx.listen({ host: "localhost", port: 0 }, echo);
          assert.deepEqual(server.address, { family: "IPv4", address: "127.0.0.1", port: server.port });
          const { reply } = await roundTrip(ctx, { host: "localhost", port: server.port }, "local");
          assert.equal(reply, "local");
        }));

      await t.step(
        "listen() on a name that needs DNS throws a TypeError at once (bind takes numeric addresses)",
        () =>
          netTest(backend, async (ctx) => {
            assert.throws(() => ctx.listen({ host: "example.com", port: 0 }), (err: unknown) => {
              assert.ok(err instanceof TypeError);
              assert.match(err.message, /"example\.com"/);
              return true;
            });
            await Promise.resolve();
          }),
      );

      await t.step(
        "connect() to a closed port: error ECONNREFUSED, then close exactly once",
        () =>
          netTest(backend, async (ctx) => {
            const port = unusedPort();
            const conn = ctx.connect({ host: "127.0.0.1", port });
            const rec = new Recorder(conn);
            let connected = false;
            conn.on("connect", () => connected = true);
            await until(() => rec.closes > 0, "close");
            await turns(ctx.reactor, 3); // three more loop turns: a second close event would have come
            assert.equal(rec.closes, 1);
            assert.equal(rec.errors.length, 1);
            const err = rec.errors[0];
            assert.ok(err instanceof OSError, String(err));
            assert.equal(err.code, "ECONNREFUSED");
            assert.match(err.message, new RegExp(`^Cannot connect to 127\\.0\\.0\\.1:${port}: ECONNREFUSED`));
            assert.equal(rec.closeError, err);
            assert.equal(connected, false);
            assert.equal(conn.destroyed, true);
            assert.equal(conn.fd, -1);
          }),
      );

      await t.step(
        "connect() to a missing Unix socket: error ENOENT, then close once",
        () =>
          netTest(backend, async (ctx) => {
            const dir = Deno.makeTempDirSync({ prefix: "fdloop_net_" });
            try {
              const conn = ctx.connect({ path: `${dir}/nobody.sock` });
              const rec = new Recorder(conn);
              await until(() => rec.closes > 0, "close");
              await turns(ctx.reactor, 3);
              assert.equal(rec.closes, 1);
              assert.equal(codeOf(rec.errors[0]), "ENOENT");
            } finally {
              Deno.removeSync(dir, { recursive: true });
            }
          }),
      );

      await t.step(
        "connect({ timeout: 300 }) to a listener whose accept queue is full: ETIMEDOUT",
        () =>
          netTest(backend, async (ctx) => {
            // A loopback listener with backlog 0 that never accepts: Linux queues one
            // connection (the queue is "full" above the backlog), then drops further SYNs
            // (tcp_abort_on_overflow is 0), so a connect stays in SYN_SENT and the client
            // would retransmit for minutes. A few raw connects fill the queue first.
            const listener = tcpListener("127.0.0.1", 0, 0);
            const fillers: number[] = [];
            try {
              const sa = encodeSockaddr({ host: "127.0.0.1", port: listener.port });
              for (let i = 0; i < 4; i++) {
                const fd = socket(sa.family, SOCK_STREAM);
                fillers.push(fd);
                connectFd(fd, sa.buf, sa.len, "filler");
              }
              // The handshake that can complete (the queue holds one) completes at once on loopback:
              // wait until a filler sees it, so the queue is full before the connect under test.
              await until(
                () => fillers.some((fd) => (waitFd(fd, POLLOUT, 0) & POLLOUT) !== 0),
                "a filler's handshake to complete",
              );
              const start = performance.now();
              const conn = ctx.connect({ host: "127.0.0.1", port: listener.port, timeout: 300 });
              const rec = new Recorder(conn);
              let connected = false;
              conn.on("connect", () => connected = true);
              await until(() => rec.closes > 0, "close", 8000);
              const elapsed = performance.now() - start;
              assert.equal(connected, false, "the kernel completed the connect despite the full queue");
              assert.equal(rec.closes, 1);
              assert.equal(codeOf(rec.errors[0]), "ETIMEDOUT");
              assert.match(rec.errors[0].message, /300 ms/);
              // Never early: the timer cannot fire before 300 ms (the 10 ms below is for clock
              // rounding). The upper bound only has to tell the 300 ms timer from the kernel's own
              // SYN timeout (about 2 minutes), so it leaves seconds for a loaded machine.
              assert.ok(elapsed >= 290 && elapsed < 5000, `timed out after ${elapsed.toFixed(0)} ms`);
            } finally {
              for (const fd of fillers) close(fd);
              close(listener.fd);
            }
          }),
      );

      await t.step(
        "the peer half-closes: with allowHalfOpen the server still replies, then both close once",
        () =>
          netTest(backend, async (ctx) => {
            let srv: Recorder | undefined;
            let wroteAfterEnd = false;
            const server = ctx.listen({ port: 0, allowHalfOpen: true }, (conn) => {
              srv = new Recorder(conn);
              conn.on("end", () => {
                // Give the reply a moment: the connection stays half-open meanwhile.
                ctx.reactor.callLater(20, () => {
                  wroteAfterEnd = conn.write(`got ${srv!.text()}; `);
                  conn.end("bye");
                });
              });
            });
            const conn = ctx.connect({ port: server.port });
            const cli = new Recorder(conn);
            conn.end("question");
            await until(() => cli.closes > 0 && srv !== undefined && srv.closes > 0, "both closes");
            await turns(ctx.reactor, 3); // a second end or close event would have come by now
            assert.equal(wroteAfterEnd, true);
            assert.equal(cli.text(), "got question; bye");
            assert.equal(cli.ends, 1);
            assert.equal(cli.closes, 1);
            assert.equal(cli.errors.length, 0);
            assert.equal(srv!.ends, 1);
            assert.equal(srv!.closes, 1);
            assert.equal(srv!.errors.length, 0);
            assert.equal(server.connections.size, 0);
          }),
      );

      await t.step(
        "the peer half-closes: without allowHalfOpen the server ends too",
        () =>
          netTest(backend, async (ctx) => {
            let srv: Recorder | undefined;
            const server = ctx.listen({ port: 0 }, (conn) => {
              srv = new Recorder(conn);
            });
            const conn = ctx.connect({ port: server.port });
            const cli = new Recorder(conn);
            conn.write("just this");
            conn.end();
            assert.equal(conn.writableEnded, true);
            await until(() => cli.closes > 0 && srv !== undefined && srv.closes > 0, "both closes");
            await turns(ctx.reactor, 3); // a second end or close event would have come by now
            assert.equal(srv!.text(), "just this");
            assert.equal(srv!.ends, 1);
            assert.equal(srv!.closes, 1);
            assert.equal(cli.ends, 1);
            assert.equal(cli.closes, 1);
            assert.equal(cli.received, 0);
            assert.equal(srv!.conn.readableEnded, true);
            assert.equal(srv!.conn.writableEnded, true);
          }),
      );

      await t.step(
        "destroy() and end() from inside a data callback: no exception, close once, fd released",
        () =>
          netTest(backend, async (ctx) => {
            const recs: Recorder[] = [];
            let n = 0;
            const server = ctx.listen({ port: 0 }, (conn) => {
              const mode = n++ === 0 ? "destroy" : "end";
              recs.push(new Recorder(conn));
              conn.on("data", () => {
                if (mode === "destroy") conn.destroy();
                else conn.end("ending");
              });
              // A second data listener must not run after destroy().
              conn.on("data", () => {
                if (conn.destroyed) throw new Error("a data listener ran after destroy()");
              });
            });
            for (const mode of ["destroy", "end"]) {
              const conn = ctx.connect({ port: server.port });
              const cli = new Recorder(conn);
              conn.write("trigger");
              await until(() => cli.closes > 0, `the client's close (${mode})`);
              if (mode === "end") assert.equal(cli.text(), "ending");
              assert.equal(cli.closes, 1);
            }
            await until(() => server.connections.size === 0, "the server's connections to close");
            await turns(ctx.reactor, 3); // a second close event would have come by now
            assert.equal(recs.length, 2);
            for (const r of recs) {
              assert.equal(r.closes, 1);
              assert.equal(r.errors.length, 0);
              assert.equal(r.conn.fd, -1);
            }
          }),
      );

      await t.step("a client destroying itself from its data callback", () =>
        netTest(backend, async (ctx) => {
          const server = ctx.listen({ port: 0 }, (conn) => conn.write("hello"));
          const conn = ctx.connect({ port: server.port });
          const rec = new Recorder(conn);
          conn.on("data", () => conn.destroy());
          await until(() => rec.closes > 0, "close");
          await until(() => server.connections.size === 0, "the server side to close");
          assert.equal(rec.closes, 1);
          assert.equal(rec.errors.length, 0);
        }));

      await t.step(
        "write() after end() throws ERR_WRITE_AFTER_END; the server keeps working",
        () =>
          netTest(backend, async (ctx) => {
            let thrown: unknown;
            const server = ctx.listen({ port: 0 }, (conn) => {
              conn.on("data", (chunk) => {
                const text = decoder.decode(chunk);
                if (text === "end me") {
                  conn.end("ended");
                  try {
                    conn.write("too late");
                  } catch (err) {
                    thrown = err;
                  }
                } else {
                  conn.write(chunk);
                }
              });
            });
            const first = await roundTrip(ctx, { port: server.port }, "end me");
            assert.equal(first.reply, "ended");
            assert.ok(thrown instanceof Error);
            assert.equal(codeOf(thrown), "ERR_WRITE_AFTER_END");
            // The client side refuses too, with the same code; a destroyed one as well.
            const conn = ctx.connect({ port: server.port });
            conn.end();
            assert.throws(() => conn.write("x"), { code: "ERR_WRITE_AFTER_END" });
            conn.destroy();
            assert.throws(() => conn.write("x"), { code: "ERR_WRITE_AFTER_END" });
            const second = await roundTrip(ctx, { port: server.port }, "still there?");
            assert.equal(second.reply, "still there?");
          }),
      );
    },
  });

  Deno.test(`\`listen()\` (${backend}) refuses an address in use with EADDRINUSE`, async (t) => {
    await t.step(
      "a Unix socket path in use: EADDRINUSE, and the first server's file stays",
      () =>
        netTest(backend, async (ctx) => {
          const dir = Deno.makeTempDirSync({ prefix: "fdloop_net_" });
          const path = `${dir}/busy.sock`;
          try {
            const server = ctx.listen({ path }, echo);
            assert.throws(() => ctx.listen({ path }), (err: unknown) => {
              assert.ok(err instanceof OSError);
              assert.equal(err.code, "EADDRINUSE");
              assert.match(err.message, /busy\.sock/);
              return true;
            });
            assert.ok(Deno.lstatSync(path).isSocket);
            const { reply } = await roundTrip(ctx, { path }, "first one serves");
            assert.equal(reply, "first one serves");
            await server.close({ closeConnections: true });
          } finally {
            Deno.removeSync(dir, { recursive: true });
          }
        }),
    );

    await t.step(
      "a TCP port in use: EADDRINUSE despite reuseAddr; with reusePort on both, it is shared",
      () =>
        netTest(backend, async (ctx) => {
          const server = ctx.listen({ host: "127.0.0.1", port: 0 }, echo);
          assert.throws(() => ctx.listen({ host: "127.0.0.1", port: server.port }), (err: unknown) => {
            assert.ok(err instanceof OSError);
            assert.equal(err.code, "EADDRINUSE");
            assert.equal(err.syscall, "bind");
            assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${server.port}`));
            return true;
          });
          assert.throws(() => ctx.listen({ host: "127.0.0.1", port: server.port, reuseAddr: false }), {
            code: "EADDRINUSE",
          });
          // Only one of the two asking for SO_REUSEPORT is not enough.
          assert.throws(() => ctx.listen({ host: "127.0.0.1", port: server.port, reusePort: true }), {
            code: "EADDRINUSE",
          });
          const a = ctx.listen({ host: "127.0.0.1", port: 0, reusePort: true }, echo);
          const b = ctx.listen({ host: "127.0.0.1", port: a.port, reusePort: true }, echo);
          assert.equal(b.port, a.port);
          for (let i = 0; i < 8; i++) {
            const { reply } = await roundTrip(ctx, { port: a.port }, `shared ${i}`);
            assert.equal(reply, `shared ${i}`);
          }
          assert.equal(a.accepted + b.accepted, 8);
        }),
    );
  });
}

for (const backend of BACKENDS) tcpSuite(backend);
