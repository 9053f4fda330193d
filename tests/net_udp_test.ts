/**
 * Tests of `bindUdp()` and `UdpSocket` on every backend: binding on IPv4 and
 * IPv6 loopback, datagrams with their sender's address, an echo between two
 * sockets, and closing. Each step makes its own reactor and checks the fd
 * count afterwards (see `_net.ts`).
 */

import assert from "node:assert/strict";
import type { UdpRemoteInfo } from "../net/mod.ts";
import type { BackendName } from "../reactor/mod.ts";
import { BACKENDS } from "./_helpers.ts";
import { netTest, nextEvent, turns, until } from "./_net.ts";

const decoder = new TextDecoder();

interface Received {
  text: string;
  rinfo: UdpRemoteInfo;
}

function udpSuite(backend: BackendName): void {
  Deno.test(`\`bindUdp()\` (${backend}) sends and receives datagrams on IPv4 and IPv6 loopback`, async (t) => {
    for (const host of ["127.0.0.1", "::1"]) {
      const family = host.includes(":") ? "IPv6" : "IPv4";
      await t.step(
        `two sockets on ${host} echo datagrams, with the sender's address in rinfo`,
        () =>
          netTest(backend, async (ctx) => {
            const echoer = ctx.bindUdp({ host });
            const client = ctx.bindUdp({ host });
            assert.ok(echoer.port > 0 && client.port > 0);
            assert.notEqual(echoer.port, client.port);
            assert.deepEqual(echoer.address, { family, address: host, port: echoer.port });
            const atEchoer: Received[] = [];
            echoer.on("message", (bytes, rinfo) => {
              atEchoer.push({ text: decoder.decode(bytes), rinfo });
              assert.equal(echoer.send(bytes, rinfo), true);
            });
            const atClient: Received[] = [];
            client.on("message", (bytes, rinfo) => atClient.push({ text: decoder.decode(bytes), rinfo }));
            const messages = ["one", "two", "x".repeat(1200), ""];
            for (const m of messages) assert.equal(client.send(m, { address: host, port: echoer.port }), true);
            await until(() => atClient.length === messages.length, "every echo");
            // Loopback does not reorder or drop a handful of datagrams.
            assert.deepEqual(atEchoer.map((r) => r.text), messages);
            assert.deepEqual(atClient.map((r) => r.text), messages);
            for (const [i, r] of atEchoer.entries()) {
              assert.deepEqual(r.rinfo, { family, address: host, port: client.port, size: messages[i].length });
            }
            for (const r of atClient) assert.deepEqual({ ...r.rinfo, size: 0 }, { ...echoer.address, size: 0 });
          }),
      );
    }

    await t.step("send() to a numeric address and to localhost", () =>
      netTest(backend, async (ctx) => {
        const a = ctx.bindUdp({ host: "127.0.0.1" });
        const b = ctx.bindUdp({ host: "localhost" });
        assert.deepEqual(b.address, { family: "IPv4", address: "127.0.0.1", port: b.port });
        const got: string[] = [];
        b.on("message", (bytes) => got.push(decoder.decode(bytes)));
        a.send("by address", { address: "127.0.0.1", port: b.port });
        a.send("by localhost", { address: "localhost", port: b.port });
        await until(() => got.length === 2, "both datagrams");
        assert.deepEqual(got, ["by address", "by localhost"]);
      }));

    await t.step(
      "a dual-stack socket on :: receives from IPv4 and answers through the mapped address",
      () =>
        netTest(backend, async (ctx) => {
          const dual = ctx.bindUdp({ host: "::" });
          const v4 = ctx.bindUdp({ host: "127.0.0.1" });
          const atDual: Received[] = [];
          dual.on("message", (bytes, rinfo) => {
            atDual.push({ text: decoder.decode(bytes), rinfo });
            dual.send(bytes, rinfo);
          });
          const atV4: Received[] = [];
          v4.on("message", (bytes, rinfo) => atV4.push({ text: decoder.decode(bytes), rinfo }));
          v4.send("mapped", { address: "127.0.0.1", port: dual.port });
          await until(() => atV4.length === 1, "the echo from the dual-stack socket");
          assert.deepEqual(atDual[0], {
            text: "mapped",
            rinfo: { family: "IPv6", address: "::ffff:127.0.0.1", port: v4.port, size: 6 },
          });
          assert.deepEqual(atV4[0], {
            text: "mapped",
            rinfo: { family: "IPv4", address: "127.0.0.1", port: dual.port, size: 6 },
          });
          // An IPv6 socket also sends to a bare IPv4 address (mapped for it).
          dual.send("bare v4", { address: "127.0.0.1", port: v4.port });
          await until(() => atV4.length === 2, "the datagram to a bare IPv4 address");
          assert.equal(atV4[1].text, "bare v4");
        }),
    );

    await t.step(
      "close() emits close once, releases the fd, and send() afterwards throws",
      () =>
        netTest(backend, async (ctx) => {
          const sock = ctx.bindUdp();
          let closes = 0;
          sock.on("close", () => closes++);
          const closed = nextEvent(sock, "close");
          sock.close();
          sock.close();
          assert.equal(sock.fd, -1);
          await closed;
          await turns(ctx.reactor, 3); // a second close event would have come by now
          assert.equal(closes, 1);
          assert.throws(() => sock.send("late", { address: "127.0.0.1", port: 9 }), /closed UDP socket/);
        }),
    );

    await t.step("a name that needs DNS is refused at once", () =>
      netTest(backend, async (ctx) => {
        assert.throws(() => ctx.bindUdp({ host: "example.com" }), /a numeric address or localhost is needed/);
        const sock = ctx.bindUdp();
        assert.throws(() => sock.send("x", { address: "example.com", port: 9 }), TypeError);
        await Promise.resolve();
      }));
  });
}

for (const backend of BACKENDS) udpSuite(backend);
