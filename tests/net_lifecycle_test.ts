/**
 * Life-cycle edges of the transports: listeners added with `once()` and
 * removed with `off()`, closing after the reactor is gone, a server closed
 * twice, and the memory a queue of small writes holds.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect, type Connection, Emitter, listen } from "../net/mod.ts";
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
          await new Promise((resolve) => setTimeout(resolve, 10));
          assert.ok([...accepted, ...clients].every((c) => c.destroyed && c.fd === -1));
          assert.deepEqual([...closes.values()], [1, 1, 1, 1]);
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
  });
}
