/**
 * `connect()` to a host name: resolved with getaddrinfo off the JS thread,
 * addresses tried in turn, errors that name the host.
 */

import assert from "node:assert/strict";
import { connect, type Connection, listen, OSError, Reactor } from "../mod.ts";
import { GaiError } from "../ffi/mod.ts";
import { assertNoFdLeak, BACKENDS } from "./_helpers.ts";

/** A name /etc/hosts maps to 127.0.0.1 on this machine, other than `localhost` (which never needs a lookup). */
function loopbackName(): string | null {
  const hosts = Deno.readTextFileSync("/etc/hosts");
  for (const line of hosts.split("\n")) {
    const [addr, ...names] = line.split("#")[0].trim().split(/\s+/);
    if (addr === "127.0.0.1") { for (const n of names) if (n !== "localhost" && n.length > 0) return n; }
  }
  return null;
}

async function settle(reactor: Reactor, conn: Connection): Promise<{ connected: boolean; error?: Error }> {
  let connected = false;
  let error: Error | undefined;
  let closed = false;
  conn.on("connect", () => connected = true);
  conn.on("error", (e) => error = e);
  conn.on("close", () => closed = true);
  const run = reactor.run();
  const end = Date.now() + 30_000;
  while (!connected && !closed && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  reactor.stop();
  await run;
  return { connected, error };
}

const name = loopbackName() ?? (() => {
  // Fall back to the resolver's own view: the machine's host name usually resolves locally.
  return Deno.hostname();
})();

for (const backend of BACKENDS) {
  Deno.test(`\`connect()\` (${backend}) resolves a host name off the JS thread and connects`, async () => {
    await assertNoFdLeak(async () => {
      const reactor = new Reactor({ backend });
      const server = listen({ host: "0.0.0.0", port: 0, reactor });
      const conn = connect({ host: name, port: server.port, reactor });
      assert.equal(conn.fd, -1, "no socket until the name is resolved");
      conn.write("queued before the socket exists");
      const r = await settle(reactor, conn);
      assert.equal(r.error, undefined, String(r.error));
      assert.equal(r.connected, true);
      assert.ok(conn.fd >= 0);
      conn.destroy();
      const run = reactor.run();
      await server.close({ closeConnections: true });
      reactor.stop();
      await run;
      reactor.close();
    });
  });
}

Deno.test("`connect()` to a name that does not resolve fails with a GaiError naming the host", async () => {
  await assertNoFdLeak(async () => {
    const reactor = new Reactor();
    const conn = connect({ host: "nonexistent.invalid", port: 80, reactor });
    const r = await settle(reactor, conn);
    assert.equal(r.connected, false);
    assert.ok(r.error instanceof GaiError, String(r.error));
    assert.ok(["EAI_NONAME", "EAI_AGAIN", "EAI_NODATA", "EAI_FAIL"].includes((r.error as GaiError).code));
    assert.match(r.error.message, /nonexistent\.invalid/);
    for (let i = 0; i < 3; i++) reactor.runOnce(0);
    reactor.close();
  });
});

Deno.test("`connect()` to a resolved name with nothing listening names the host and the address tried", async () => {
  await assertNoFdLeak(async () => {
    const reactor = new Reactor();
    // Port 9 (discard) on loopback: nothing listens here.
    const conn = connect({ host: name, port: 9, reactor });
    const r = await settle(reactor, conn);
    assert.ok(r.error instanceof OSError, String(r.error));
    assert.equal(r.error.code, "ECONNREFUSED");
    assert.ok(r.error.message.includes(`${name}:9 (`), r.error.message);
    for (let i = 0; i < 3; i++) reactor.runOnce(0);
    reactor.close();
  });
});

Deno.test("`connect()` destroyed while resolving closes nothing twice and leaks nothing", async () => {
  await assertNoFdLeak(async () => {
    const reactor = new Reactor();
    const conn = connect({ host: name, port: 9, reactor });
    let closes = 0;
    conn.on("close", () => closes++);
    conn.destroy();
    const run = reactor.run();
    await new Promise((r) => setTimeout(r, 50));
    reactor.stop();
    await run;
    assert.equal(closes, 1);
    reactor.close();
  });
});
