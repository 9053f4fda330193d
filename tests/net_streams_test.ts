/**
 * The web streams of a `Connection`: `conn.readable` (copies of the read buffer, backpressure that pauses the
 * socket, `end` / errors / `cancel()`, made late) and `conn.writable` (`ready` waits for `drain`, `close()` sends the
 * FIN after the queue, `abort()` destroys even while a write waits), on real sockets and every backend.
 *
 * @module
 */

import assert from "node:assert/strict";
import { close as closeFd } from "../ffi/mod.ts";
import type { Connection } from "../net/mod.ts";
import type { BackendName } from "../reactor/mod.ts";
import { BACKENDS } from "./_helpers.ts";
import { codeOf, netTest, nextEvent, Recorder, resettingClient, turns, until } from "./_net.ts";

/** A server that hands over its one connection, and a client connected to it. */
async function pair(
  ctx: Parameters<Parameters<typeof netTest>[1]>[0],
  options: { highWaterMark?: number; onServer?: (c: Connection) => void } = {},
): Promise<{ srv: Connection; conn: Connection }> {
  let srv: Connection | undefined;
  const server = ctx.listen({ port: 0, highWaterMark: options.highWaterMark }, (c) => {
    srv = c;
    options.onServer?.(c);
  });
  const conn = ctx.connect({ port: server.port, highWaterMark: options.highWaterMark });
  await nextEvent(conn, "connect");
  await until(() => srv !== undefined, "the server's connection");
  return { srv: srv!, conn };
}

/** Settles to "pending" if `p` has not settled after `n` turns of the loop. */
async function stateAfter(
  ctx: { reactor: Parameters<typeof turns>[0] },
  p: Promise<unknown>,
  n = 5,
): Promise<string> {
  let state = "pending";
  p.then(() => state = "fulfilled", () => state = "rejected");
  await turns(ctx.reactor, n);
  return state;
}

/** A writable's write that waits for drain: 8 MiB to a server that does not read. */
async function blockedWrite(ctx: Parameters<Parameters<typeof netTest>[1]>[0]): Promise<{
  conn: Connection;
  writer: WritableStreamDefaultWriter<Uint8Array>;
  pending: Promise<void>;
}> {
  const { srv, conn } = await pair(ctx, { highWaterMark: 16 * 1024 });
  srv.pause();
  const writer = conn.writable.getWriter();
  const pending = writer.write(new Uint8Array(8 << 20));
  pending.catch(() => {});
  assert.equal(await stateAfter(ctx, pending), "pending");
  return { conn, writer, pending };
}

for (const backend of BACKENDS) {
  Deno.test(`conn.readable / conn.writable (${backend})`, async (t) => {
    await t.step(
      "chunks are copies: a chunk the stream keeps never changes",
      () =>
        netTest(backend as BackendName, async (ctx) => {
          const { srv, conn } = await pair(ctx, { onServer: (c) => void c.readable });
          conn.write(new Uint8Array(1000).fill(1));
          await until(() => srv.bytesRead === 1000, "the first bytes");
          conn.write(new Uint8Array(1000).fill(2));
          await until(() => srv.bytesRead === 2000, "the second bytes");
          const reader = srv.readable.getReader();
          const seen: number[] = [];
          let total = 0;
          while (total < 2000) {
            const { value } = await reader.read();
            for (const b of value!) seen[total++] = b;
          }
          assert.deepEqual(seen.slice(0, 1000), new Array(1000).fill(1));
          assert.deepEqual(seen.slice(1000), new Array(1000).fill(2));
          reader.releaseLock();
        }),
    );

    await t.step(
      "a reader that does not read pauses the socket; reading resumes it",
      () =>
        netTest(backend as BackendName, async (ctx) => {
          const hwm = 16 * 1024;
          const { srv, conn } = await pair(ctx, { highWaterMark: hwm, onServer: (c) => void c.readable });
          const total = 1 << 20;
          conn.write(new Uint8Array(total));
          await until(() => srv.isPaused, "the server's pause");
          const at = srv.bytesRead;
          await turns(ctx.reactor, 5);
          assert.equal(srv.bytesRead, at, "a paused connection reads nothing");
          assert.ok(at < total);
          let got = 0;
          const reader = srv.readable.getReader();
          while (got < total) got += (await reader.read()).value!.byteLength;
          assert.equal(got, total);
          reader.releaseLock();
        }),
    );

    await t.step(
      "the peer's end closes the readable; a reset errors it",
      () =>
        netTest(backend as BackendName, async (ctx) => {
          const { srv, conn } = await pair(ctx, { onServer: (c) => void c.readable });
          conn.end("bye");
          const reader = srv.readable.getReader();
          assert.equal(new TextDecoder().decode((await reader.read()).value), "bye");
          assert.equal((await reader.read()).done, true);

          let second: Connection | undefined;
          const server = ctx.listen({ port: 0 }, (c) => {
            second = c;
            c.on("error", () => {});
            void c.readable;
          });
          const fd = await resettingClient(server.port);
          await until(() => second !== undefined, "the second connection");
          closeFd(fd); // RST
          const err = await second!.readable.getReader().read().then(() => undefined, (e) => e);
          assert.equal(codeOf(err), "ECONNRESET");
        }),
    );

    await t.step(
      "cancel() on the readable destroys the connection without a callback error",
      () =>
        netTest(backend as BackendName, async (ctx) => {
          const { srv, conn } = await pair(ctx, { onServer: (c) => void c.readable });
          const rec = new Recorder(conn);
          const closed = nextEvent(srv, "close");
          await srv.readable.cancel();
          assert.equal(srv.destroyed, true);
          await closed;
          await until(() => rec.closes === 1, "the client's close");
          await turns(ctx.reactor, 3); // a throwing close listener would have stopped the reactor by now
        }),
    );

    await t.step(
      "a readable made after the peer's end, or after destroy(), closes (does not hang)",
      () =>
        netTest(backend as BackendName, async (ctx) => {
          const { srv, conn } = await pair(ctx, {
            onServer: (c) => c.on("data", () => {}), // nothing buffered for a late stream: only its end matters
          });
          srv.on("end", () => {});
          const ended = nextEvent(srv, "end");
          conn.end();
          await ended;
          const late = srv.readable.getReader().read();
          assert.equal(await stateAfter(ctx, late), "fulfilled");
          assert.equal((await late).done, true);

          const second = await pair(ctx);
          second.srv.destroy();
          await nextEvent(second.srv, "close");
          const afterDestroy = second.srv.readable.getReader().read();
          assert.equal(await stateAfter(ctx, afterDestroy), "fulfilled");
          assert.equal((await afterDestroy).done, true);
        }),
    );

    await t.step("the writer's ready waits for drain", () =>
      netTest(backend as BackendName, async (ctx) => {
        const { srv, conn } = await pair(ctx, { highWaterMark: 16 * 1024 });
        srv.pause(); // the peer does not read: the kernel buffers fill, then our queue
        const writer = conn.writable.getWriter();
        const chunk = new Uint8Array(64 * 1024);
        let writes = 0;
        while (conn.bufferedAmount < 16 * 1024) {
          void writer.write(chunk).catch(() => {});
          writes++;
          await turns(ctx.reactor, 1);
        }
        assert.equal(await stateAfter(ctx, writer.ready), "pending");
        let got = 0;
        srv.on("data", (c) => got += c.byteLength);
        srv.resume();
        await writer.ready;
        assert.ok(conn.bufferedAmount <= 16 * 1024);
        await writer.close();
        await until(() => got === writes * chunk.byteLength, "every byte");
      }));

    await t.step(
      "writable.close() resolves once the queue is flushed and the FIN sent",
      () =>
        netTest(backend as BackendName, async (ctx) => {
          const { srv, conn } = await pair(ctx, { highWaterMark: 1 << 20 });
          srv.pause();
          const writer = conn.writable.getWriter();
          const total = 4 << 20;
          void writer.write(new Uint8Array(total)).catch(() => {});
          const closing = writer.close();
          assert.equal(await stateAfter(ctx, closing), "pending", "close() resolved with bytes still queued");
          assert.ok(conn.bufferedAmount > 0);
          let got = 0;
          srv.on("data", (c) => got += c.byteLength);
          const ended = nextEvent(srv, "end");
          srv.resume();
          await closing;
          assert.equal(conn.bufferedAmount, 0);
          await ended;
          assert.equal(got, total);
        }),
    );

    await t.step(
      "writable.close() rejects when the connection is destroyed before the FIN",
      () =>
        netTest(backend as BackendName, async (ctx) => {
          const { srv, conn } = await pair(ctx, { highWaterMark: 1 << 20 });
          srv.pause();
          const writer = conn.writable.getWriter();
          void writer.write(new Uint8Array(4 << 20)).catch(() => {});
          const closing = writer.close();
          closing.catch(() => {});
          await turns(ctx.reactor, 2);
          conn.destroy();
          assert.equal(await stateAfter(ctx, closing), "rejected");
        }),
    );

    await t.step(
      "writable.abort() destroys the connection even while a write waits for drain",
      () =>
        netTest(backend as BackendName, async (ctx) => {
          const { conn, writer, pending } = await blockedWrite(ctx);
          const aborted = writer.abort(new Error("give up"));
          aborted.catch(() => {});
          const closed = nextEvent<Error | undefined>(conn, "close");
          conn.on("error", () => {});
          await turns(ctx.reactor, 5);
          assert.equal(conn.destroyed, true, "abort() did not destroy the connection");
          assert.equal((await closed)?.message, "give up");
          assert.equal(await stateAfter(ctx, pending), "rejected");
        }),
    );

    await t.step(
      "writable.abort() without a reason destroys the connection with no error",
      () =>
        netTest(backend as BackendName, async (ctx) => {
          const { conn, writer } = await blockedWrite(ctx);
          const closed = nextEvent<Error | undefined>(conn, "close");
          await writer.abort(); // no `error` listener: an error here would reach onError and fail the test
          assert.equal(conn.destroyed, true);
          assert.equal(await closed, undefined);
        }),
    );

    await t.step(
      "pipeTo with preventClose leaves the write side open",
      () =>
        netTest(backend as BackendName, async (ctx) => {
          let piped: Promise<void> | undefined;
          const { conn } = await pair(ctx, {
            onServer: (c) => {
              piped = c.readable.pipeTo(c.writable, { preventClose: true }).then(() => {
                c.end("tail"); // the stream no longer holds the writer: end the connection by hand
              });
            },
          });
          const rec = new Recorder(conn);
          conn.end("head");
          await until(() => rec.ends === 1, "the echo's end");
          assert.equal(rec.text(), "headtail");
          await piped;
        }),
    );

    await t.step(
      "streams of a destroyed connection: writes reject, reads end",
      () =>
        netTest(backend as BackendName, async (ctx) => {
          const { conn } = await pair(ctx);
          conn.destroy();
          await nextEvent(conn, "close");
          const err = await conn.writable.getWriter().write(new Uint8Array(1)).then(() => undefined, (e) => e);
          assert.equal(codeOf(err), "ERR_WRITE_AFTER_END");
          const read = conn.readable.getReader().read();
          assert.equal(await stateAfter(ctx, read), "fulfilled");
        }),
    );
  });
}
