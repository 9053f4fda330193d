/**
 * Review tests of UDP (`net/udp.ts`) and of the non-socket fd example
 * (`examples/stdin_monitor.ts`): edge cases the main suites do not cover.
 * Real sockets on loopback, every backend, counting instead of sleeping.
 *
 * @module
 */

import assert from "node:assert/strict";
import { OSError } from "../mod.ts";
import type { BackendName } from "../reactor/mod.ts";
import { BACKENDS } from "./_helpers.ts";
import { netTest, nextEvent, turns, until } from "./_net.ts";
import { within } from "./_examples.ts";

function udpReviewSuite(backend: BackendName): void {
  Deno.test(`UDP review (${backend})`, async (t) => {
    await t.step(
      "the largest IPv4 and IPv6 datagrams arrive whole (no silent truncation)",
      () =>
        netTest(backend, async (ctx) => {
          for (const [host, max] of [["127.0.0.1", 65507], ["::1", 65527]] as const) {
            const a = ctx.bindUdp({ host });
            const b = ctx.bindUdp({ host });
            const sizes: number[] = [];
            let intact = true;
            b.on("message", (bytes, rinfo) => {
              sizes.push(bytes.byteLength, rinfo.size);
              for (let i = 0; i < bytes.byteLength; i++) if (bytes[i] !== (i & 0xff)) intact = false;
            });
            const big = new Uint8Array(max).map((_, i) => i & 0xff);
            assert.equal(a.send(big, { address: host, port: b.port }), true);
            await until(() => sizes.length === 2, `the ${max}-byte datagram on ${host}`);
            assert.deepEqual(sizes, [max, max]);
            assert.ok(intact, "the bytes are the ones sent");
          }
        }),
    );

    await t.step(
      "an oversized datagram throws EMSGSIZE from send() and the socket goes on",
      () =>
        netTest(backend, async (ctx) => {
          for (const [host, max] of [["127.0.0.1", 65507], ["::1", 65527]] as const) {
            const a = ctx.bindUdp({ host });
            const b = ctx.bindUdp({ host });
            const got: number[] = [];
            b.on("message", (bytes) => got.push(bytes.byteLength));
            assert.throws(
              () => a.send(new Uint8Array(max + 1), { address: host, port: b.port }),
              (e: unknown) => e instanceof OSError && e.code === "EMSGSIZE",
            );
            a.send("ok", { address: host, port: b.port });
            await until(() => got.length === 1, "the datagram after EMSGSIZE");
            assert.deepEqual(got, [2]);
          }
        }),
    );

    await t.step(
      "a datagram to a closed port is not an error on an unconnected socket (IPv4, IPv6)",
      () =>
        netTest(backend, async (ctx) => {
          for (const host of ["127.0.0.1", "::1"]) {
            const a = ctx.bindUdp({ host });
            const gone = ctx.bindUdp({ host });
            const deadPort = gone.port;
            const closed = nextEvent(gone, "close");
            gone.close();
            await closed;
            const errors: Error[] = [];
            a.on("error", (e) => errors.push(e));
            const got: string[] = [];
            a.on("message", (bytes) => got.push(new TextDecoder().decode(bytes)));
            a.send("to nobody", { address: host, port: deadPort });
            a.send("to self", { address: host, port: a.port });
            await until(() => got.length === 1, `the datagram to itself on ${host}`);
            await turns(ctx.reactor, 3);
            assert.deepEqual(got, ["to self"]);
            assert.deepEqual(errors, []);
          }
        }),
    );

    await t.step("a dual-stack socket sends to localhost", () =>
      netTest(backend, async (ctx) => {
        const dual = ctx.bindUdp({ host: "::" });
        const v4 = ctx.bindUdp({ host: "127.0.0.1" });
        const got: string[] = [];
        v4.on("message", (bytes, rinfo) => got.push(`${new TextDecoder().decode(bytes)} ${rinfo.port}`));
        dual.send("hi", { address: "localhost", port: v4.port });
        await until(() => got.length === 1, "the datagram to localhost");
        assert.deepEqual(got, [`hi ${dual.port}`]);
      }));

    await t.step(
      "close() inside a message listener stops delivery at once, one close event",
      () =>
        netTest(backend, async (ctx) => {
          const a = ctx.bindUdp();
          const b = ctx.bindUdp();
          let messages = 0;
          let closes = 0;
          b.on("message", () => {
            messages++;
            b.close();
          });
          b.on("close", () => closes++);
          for (let i = 0; i < 10; i++) a.send(`m${i}`, { address: "127.0.0.1", port: b.port });
          await until(() => closes === 1, "the close event");
          await turns(ctx.reactor, 3);
          assert.equal(messages, 1);
          assert.equal(closes, 1);
          assert.equal(b.fd, -1);
        }),
    );

    await t.step(
      "many queued datagrams are read in batches: other callbacks run in between",
      () =>
        netTest(backend, async (ctx) => {
          const a = ctx.bindUdp();
          const b = ctx.bindUdp();
          const N = 150;
          let received = 0;
          let beforeSoon = -1;
          b.on("message", () => {
            if (received++ === 0) ctx.reactor.callSoon(() => (beforeSoon = received));
          });
          // All sent before the reactor's next turn: they wait together in the receive buffer.
          for (let i = 0; i < N; i++) a.send(new Uint8Array(1), { address: "127.0.0.1", port: b.port });
          await until(() => received === N, `all ${N} datagrams`);
          assert.ok(beforeSoon >= 1 && beforeSoon <= 64, `${beforeSoon} datagrams were read before callSoon ran`);
        }),
    );
  });
}

for (const backend of BACKENDS) udpReviewSuite(backend);

// ---------------------------------------------------------------- stdin_monitor.ts with odd stdins

const MONITOR = new URL("../examples/stdin_monitor.ts", import.meta.url).pathname;

/** Runs stdin_monitor.ts with `redirect` as its stdin (a shell redirection), bounded in time. */
async function monitorWith(
  redirect: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const cmd = new Deno.Command("sh", {
    args: ["-c", `exec "$0" run --allow-ffi "$@" ${redirect}`, Deno.execPath(), MONITOR, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const child = cmd.spawn();
  const out = await within(5_000, `stdin_monitor.ts ${redirect} to exit`, child.output(), () => child.kill("SIGKILL"));
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("examples/stdin_monitor.ts with a directory on stdin (EISDIR) exits 1 with one error line", async (t) => {
  for (const backend of ["epoll", "poll", "select"]) {
    await t.step(backend, async () => {
      const r = await monitorWith("< /", ["--interval", "10000", "--backend", backend]);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.equal(r.stderr.match(/EISDIR/g)?.length, 1, r.stderr);
    });
  }
});

Deno.test("examples/stdin_monitor.ts flushes an incomplete UTF-8 sequence at EOF as U+FFFD", async () => {
  const file = await Deno.makeTempFile();
  try {
    await Deno.writeFile(file, new Uint8Array([0x61, 0x62, 0x0a, 0xc3])); // "ab\n", then half of "é"
    for (const backend of ["epoll", "poll", "select"]) {
      const r = await monitorWith(`< '${file}'`, ["--interval", "10000", "--backend", backend]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const lines = r.stdout.split("\n").filter((l) => l);
      assert.deepEqual(lines, ["stdin: ab", "stdin: \ufffd", "stdin_monitor: 2 lines, 0 ticks"], backend);
    }
  } finally {
    await Deno.remove(file);
  }
});
