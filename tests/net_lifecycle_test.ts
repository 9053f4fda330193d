/**
 * Life-cycle edges of the transports: listeners added with `once()` and
 * removed with `off()`, closing after the reactor is gone, a server closed
 * twice, and the memory a queue of small writes holds.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect, type Connection, Emitter, listen } from "../net/mod.ts";
import { getSockOptInt, IPPROTO_TCP, SO_KEEPALIVE, SOL_SOCKET, TCP_KEEPIDLE, TCP_NODELAY } from "../ffi/mod.ts";
import { type BackendName, Reactor } from "../reactor/mod.ts";
import { assertNoFdLeak, BACKENDS } from "./_helpers.ts";
import { netTest, nextEvent, until } from "./_net.ts";

Deno.test("`Emitter.off()` removes a listener added with `once()`", () => {
  class Bell extends Emitter<{ ring: (n: number) => void }> {
    ring(n: number): void {
      this.emit("ring", n);
    }
  }
  const bell = new Bell();
  const heard: number[] = [];
  const listener = (n: number) => heard.push(n);
  bell.once("ring", listener);
  assert.equal(bell.listenerCount("ring"), 1);
  bell.off("ring", listener);
  assert.equal(bell.listenerCount("ring"), 0);
  bell.ring(1);
  bell.once("ring", listener);
  bell.ring(2);
  bell.ring(3);
  assert.deepEqual(heard, [2]);
});

Deno.test("`Emitter` calls every listener with the emitter as `this`: one, several, and `once()`", () => {
  class Bell extends Emitter<{ ring: (n: number) => void }> {
    ring(n: number): void {
      this.emit("ring", n);
    }
  }
  const a = new Bell();
  const b = new Bell();
  const heard: [Bell, number][] = [];
  function shared(this: Bell, n: number): void {
    heard.push([this, n]);
  }
  a.on("ring", shared);
  b.on("ring", shared);
  a.ring(1); // a single listener
  b.once("ring", shared);
  b.ring(2); // two listeners, one of them a once() wrapper
  b.ring(3);
  assert.deepEqual(heard, [[a, 1], [b, 2], [b, 2], [b, 3]]);
});

for (const backend of BACKENDS) {
  Deno.test(`\`net\` (${backend}): one \`data\` function shared by two connections echoes on each through \`this\``, async () => {
    await assertNoFdLeak(async () => {
      const reactor = new Reactor({ backend });
      function echo(this: Connection, chunk: Uint8Array): void {
        this.write(chunk);
      }
      const server = listen({ port: 0, reactor }, (c) => c.on("data", echo));
      const clients = ["one", "two"].map((word) => {
        const c = connect({ port: server.port, reactor });
        const got: string[] = [];
        c.on("data", (chunk) => got.push(new TextDecoder().decode(chunk)));
        c.write(new TextEncoder().encode(word));
        return { c, got, word };
      });
      const running = reactor.run();
      try {
        await until(() => clients.every(({ got, word }) => got.join("") === word), "each client's own echo");
      } finally {
        for (const { c } of clients) c.destroy();
        await server.close({ closeConnections: true });
        reactor.stop();
        await running;
        reactor.close();
      }
    });
  });
}

for (const backend of BACKENDS) {
  Deno.test(`\`net\` (${backend}) life-cycle edges`, async (t) => {
    await t.step(
      "closing after reactor.close() still closes every fd and emits close once",
      () =>
        assertNoFdLeak(async () => {
          const reactor = new Reactor({ backend });
          const accepted: Connection[] = [];
          const server = listen({ port: 0, reactor }, (c) => accepted.push(c));
          const clients = [0, 1].map(() => connect({ port: server.port, reactor }));
          const running = reactor.run();
          await until(() => accepted.length === 2 && clients.every((c) => !c.connecting), "two connections");
          reactor.stop();
          await running;
          reactor.close();
          const closes = new Map<Connection, number>();
          for (const c of [...accepted, ...clients]) c.on("close", () => closes.set(c, (closes.get(c) ?? 0) + 1));
          await server.close({ closeConnections: true }); // must not throw at the first connection
          for (const c of clients) c.destroy();
          // With the reactor closed, close events are queued as microtasks; a macrotask turn runs
          // after all of them (and after any they queue), so a second close would show below.
          await new Promise((resolve) => setTimeout(resolve, 0));
          assert.ok([...accepted, ...clients].every((c) => c.destroyed && c.fd === -1));
          assert.deepEqual([...closes.values()], [1, 1, 1, 1]);
        }),
    );

    await t.step(
      "a server forgets a closed connection before the connection's close listeners run",
      () =>
        netTest(backend as BackendName, async (ctx) => {
          let seen: boolean | undefined;
          const server = ctx.listen({ port: 0 }, (c) => c.on("close", () => seen = server.connections.has(c)));
          const conn = ctx.connect({ port: server.port });
          await nextEvent(conn, "connect");
          await until(() => server.connections.size === 1, "the server's connection");
          conn.destroy();
          await until(() => seen !== undefined, "the server's connection to close");
          assert.equal(seen, false);
        }),
    );

    await t.step(
      "a server closed twice emits close once and both promises resolve",
      () =>
        netTest(backend as BackendName, async (ctx) => {
          const server = ctx.listen({ port: 0 });
          let closes = 0;
          server.on("close", () => closes++);
          await server.close();
          await server.close();
          assert.equal(closes, 1);
        }),
    );

    await t.step(
      "queued small writes between large ones hold about the memory they queue",
      () =>
        netTest(backend as BackendName, async (ctx) => {
          let peer: Connection | undefined;
          const server = ctx.listen({ port: 0 }, (c) => {
            peer = c;
            c.pause(); // never read: everything queues
          });
          const conn = ctx.connect({ port: server.port, maxWriteBuffer: 64 << 20 });
          await nextEvent(conn, "connect");
          await until(() => peer !== undefined, "the server's connection");
          while (conn.bufferedAmount === 0) conn.write(new Uint8Array(65536)); // the kernel's buffers are full
          const gc = (globalThis as { gc?: () => void }).gc;
          gc?.();
          const before = Deno.memoryUsage().external;
          const queuedBefore = conn.bufferedAmount;
          // A header-and-body pattern: each large write seals the staging chunk, each small one reopens it.
          const big = new Uint8Array(4097), one = new Uint8Array(1);
          for (let i = 0; i < 2000; i++) {
            conn.write(big);
            conn.write(one);
          }
          gc?.();
          const grown = Deno.memoryUsage().external - before;
          const queued = conn.bufferedAmount - queuedBefore;
          assert.equal(queued, 2000 * 4098);
          // Each sealed 16 KiB staging chunk used to be dropped for a fresh one: 4.5x the queued bytes.
          assert.ok(grown < queued * 2, `queued ${queued} bytes, external memory grew ${grown} bytes`);
        }),
    );

    await t.step(
      "conn.readable.pipeTo(conn.writable) echoes 4 MiB with backpressure",
      () =>
        netTest(backend as BackendName, async (ctx) => {
          const piped: Promise<void>[] = [];
          const server = ctx.listen({ port: 0, highWaterMark: 16 * 1024 }, (c) => {
            piped.push(c.readable.pipeTo(c.writable));
          });
          const conn = ctx.connect({ port: server.port });
          const total = 4 * 1024 * 1024;
          const payload = new Uint8Array(total);
          for (let i = 0; i < total; i++) payload[i] = (i * 31 + (i >>> 9)) & 0xff;
          let got = 0;
          let wrong = -1;
          conn.on("data", (chunk) => {
            for (let j = 0; j < chunk.byteLength; j++) {
              if (wrong < 0 && chunk[j] !== payload[got + j]) wrong = got + j;
            }
            got += chunk.byteLength;
          });
          await nextEvent(conn, "connect");
          for (let at = 0; at < total; at += 256 * 1024) {
            if (!conn.write(payload.subarray(at, at + 256 * 1024))) await nextEvent(conn, "drain");
          }
          conn.end(); // the server's readable ends, pipeTo closes its writable: end() comes back to us
          await until(() => conn.readableEnded, "the echo's end", 10_000);
          assert.equal(got, total);
          assert.equal(wrong, -1, `byte ${wrong} is wrong`);
          await Promise.all(piped);
        }),
    );

    await t.step(
      "setNoDelay() and setKeepAlive() set the socket options",
      () =>
        netTest(backend as BackendName, async (ctx) => {
          const server = ctx.listen({ port: 0 });
          const conn = ctx.connect({ port: server.port });
          await nextEvent(conn, "connect");
          assert.equal(getSockOptInt(conn.fd, IPPROTO_TCP, TCP_NODELAY), 0);
          conn.setNoDelay();
          assert.equal(getSockOptInt(conn.fd, IPPROTO_TCP, TCP_NODELAY), 1);
          conn.setNoDelay(false);
          assert.equal(getSockOptInt(conn.fd, IPPROTO_TCP, TCP_NODELAY), 0);
          conn.setKeepAlive(true, 2500);
          assert.equal(getSockOptInt(conn.fd, SOL_SOCKET, SO_KEEPALIVE), 1);
          assert.equal(getSockOptInt(conn.fd, IPPROTO_TCP, TCP_KEEPIDLE), 3); // seconds, rounded up
          conn.setKeepAlive(false);
          assert.equal(getSockOptInt(conn.fd, SOL_SOCKET, SO_KEEPALIVE), 0);
        }),
    );
  });
}
