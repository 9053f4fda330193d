/**
 * Review of the transports (`net/`): the connection's state machine when a
 * listener throws (the reactor reports the exception and goes on, so the
 * connection must go on too: `close` still comes, the FIN still goes out,
 * the fd is still released), half-close while paused, zero-length writes,
 * and UDP sends to a port nobody listens on. Every test runs on every
 * backend, on 127.0.0.1, with an fd leak check.
 *
 * @module
 */

import assert from "node:assert/strict";
import { bindUdp, connect, type Connection, listen, type Server, type UdpSocket } from "../net/mod.ts";
import { close, getSockOptInt, IPPROTO_TCP, send, SO_KEEPALIVE, SOL_SOCKET, TCP_NODELAY } from "../ffi/mod.ts";
import { type BackendName, type ErrorContext, Reactor } from "../reactor/mod.ts";
import { assertNoFdLeak, BACKENDS, occupyBelow, unusedPort } from "./_helpers.ts";
import { codeOf, Recorder, resettingClient, turns, until } from "./_net.ts";
import { stopAndClose } from "./_reactor.ts";
import { resolveHost } from "../net/address.ts";

interface Reported {
  error: unknown;
  context: ErrorContext;
}

/** A reactor running in the background whose `onError` records instead of failing (these tests expect reports). */
interface Ctx {
  reactor: Reactor;
  reported: Reported[];
  track<T extends Connection | Server | UdpSocket>(x: T): T;
}

async function withReactor(backend: BackendName, body: (ctx: Ctx) => Promise<void>): Promise<void> {
  await assertNoFdLeak(async () => {
    const reported: Reported[] = [];
    const reactor = new Reactor({ backend, onError: (error, context) => reported.push({ error, context }) });
    const made: (Connection | Server | UdpSocket)[] = [];
    const running = reactor.run();
    try {
      await body({ reactor, reported, track: (x) => (made.push(x), x) });
    } finally {
      for (const x of made) {
        if ("destroy" in x) x.destroy();
        else if ("connections" in x) void x.close({ closeConnections: true });
        else x.close();
      }
      await stopAndClose(reactor, running);
    }
  });
}

/** The messages of the reported errors. */
function messages(reported: Reported[]): string[] {
  return reported.map((r) => r.error instanceof Error ? r.error.message : String(r.error));
}

/** A name /etc/hosts maps to 127.0.0.1, other than `localhost` (which never needs a lookup). */
function loopbackName(): string {
  for (const line of Deno.readTextFileSync("/etc/hosts").split("\n")) {
    const [addr, ...names] = line.split("#")[0].trim().split(/\s+/);
    if (addr === "127.0.0.1") { for (const n of names) if (n !== "localhost" && n.length > 0) return n; }
  }
  return Deno.hostname();
}

Deno.test("`connect()` (select) to a name whose socket lands on fd ≥ FD_SETSIZE: error, close once, no fd leaked", () =>
  withReactor("select", async ({ reactor, reported, track }) => {
    const server = track(listen({ host: "0.0.0.0", port: 0, reactor }));
    server.on("error", () => {}); // its accepted fd lands high too: dropped, tested in net_faults_test.ts
    const taken = occupyBelow(server.fd, 1024);
    try {
      const conn = track(connect({ host: loopbackName(), port: server.port, reactor }));
      const cli = new Recorder(conn);
      await until(() => cli.closes > 0, "the connection to close", 3000);
      await turns(reactor, 3);
      assert.equal(cli.closes, 1);
      assert.equal(cli.errors.length, 1);
      assert.match(cli.errors[0].message, /FD_SETSIZE/);
      assert.deepEqual(reported, []);
    } finally {
      for (const d of taken) close(d);
    }
  }));

for (const backend of BACKENDS) {
  Deno.test(`\`Connection\` (${backend}) review: throwing listeners, half-close while paused, edge writes`, async (t) => {
    await t.step(
      "an error listener that throws: close still comes, once",
      () =>
        withReactor(backend, async ({ reactor, reported, track }) => {
          const conn = track(connect({ port: unusedPort(), reactor }));
          let closes = 0;
          conn.on("error", () => {
            throw new Error("thrown by the error listener");
          });
          conn.on("close", () => closes++);
          await until(() => reported.length > 0, "the thrown error to be reported");
          await turns(reactor, 3);
          assert.deepEqual(messages(reported), ["thrown by the error listener"]);
          assert.equal(closes, 1);
        }),
    );

    await t.step(
      "a server close listener that throws: the connection still emits close and server.close() resolves",
      () =>
        withReactor(backend, async ({ reactor, reported, track }) => {
          let accepted: Connection | undefined;
          const server = track(listen({ port: 0, reactor }, (c) => accepted = c));
          server.on("close", () => {
            throw new Error("thrown by the server's close listener");
          });
          const conn = track(connect({ port: server.port, reactor }));
          await until(() => accepted !== undefined, "the server's connection");
          let closes = 0;
          accepted!.on("close", () => closes++);
          let resolved = false;
          const closing = server.close().then(() => resolved = true);
          conn.destroy();
          await until(() => reported.length > 0, "the thrown error to be reported");
          await turns(reactor, 3);
          assert.deepEqual(messages(reported), ["thrown by the server's close listener"]);
          assert.equal(closes, 1, "the accepted connection's close");
          assert.equal(resolved, true, "server.close() resolved");
          await closing;
        }),
    );

    await t.step(
      "an end listener that throws: the connection still ends its side and closes (no fd held)",
      () =>
        withReactor(backend, async ({ reactor, reported, track }) => {
          let srv: Recorder | undefined;
          const server = track(listen({ port: 0, reactor }, (c) => {
            srv = new Recorder(c);
            c.on("end", () => {
              throw new Error("thrown by the end listener");
            });
          }));
          const conn = track(connect({ port: server.port, reactor }));
          const cli = new Recorder(conn);
          conn.end("bye");
          await until(() => reported.length > 0, "the thrown error to be reported");
          await until(() => cli.closes > 0 && srv!.closes > 0, "both ends to close", 2000);
          assert.deepEqual(messages(reported), ["thrown by the end listener"]);
          assert.equal(srv!.text(), "bye");
          assert.equal(cli.ends, 1);
          assert.equal(srv!.closes, 1);
        }),
    );

    await t.step(
      "a drain listener that throws after end(): the FIN still goes out",
      () =>
        withReactor(backend, async ({ reactor, reported, track }) => {
          let srv: Recorder | undefined;
          const server = track(listen({ port: 0, reactor, allowHalfOpen: true }, (c) => srv = new Recorder(c)));
          // lowWaterMark 0: drain comes from the flush that empties the queue, the one that must also send the FIN.
          const conn = track(connect({ port: server.port, reactor, highWaterMark: 1024, lowWaterMark: 0 }));
          await until(() => !conn.connecting && srv !== undefined, "the connection");
          srv!.conn.pause(); // let the queue build up
          const chunk = new Uint8Array(64 * 1024);
          let sent = 0;
          while (conn.write(chunk)) sent += chunk.byteLength;
          sent += chunk.byteLength;
          conn.on("drain", () => {
            throw new Error("thrown by the drain listener");
          });
          conn.end();
          srv!.conn.resume();
          await until(() => reported.length > 0, "the thrown error to be reported");
          await until(() => srv!.ends === 1, "the server to read the FIN", 2000);
          assert.deepEqual(messages(reported), ["thrown by the drain listener"]);
          assert.equal(srv!.received, sent);
        }),
    );

    await t.step(
      "a connect listener that throws on a dialled name: reported, no unhandled rejection, queued writes go out",
      () =>
        withReactor(backend, async ({ reactor, reported, track }) => {
          const rejections: unknown[] = [];
          const onRejection = (e: PromiseRejectionEvent) => {
            e.preventDefault();
            rejections.push(e.reason);
          };
          globalThis.addEventListener("unhandledrejection", onRejection);
          try {
            let srv: Recorder | undefined;
            const server = track(listen({ host: "0.0.0.0", port: 0, reactor }, (c) => srv = new Recorder(c)));
            const conn = track(connect({ host: loopbackName(), port: server.port, reactor }));
            assert.equal(conn.fd, -1);
            conn.write("queued while resolving");
            conn.end();
            conn.on("connect", () => {
              throw new Error("thrown by the connect listener");
            });
            await until(() => reported.length > 0 || rejections.length > 0, "the thrown error");
            await until(() => srv !== undefined && srv.ends === 1, "the queued write and the FIN", 2000)
              .catch((err) => err);
            await turns(reactor, 3);
            assert.deepEqual(rejections, []);
            assert.deepEqual(messages(reported), ["thrown by the connect listener"]);
            assert.equal(srv!.text(), "queued while resolving");
            assert.equal(srv!.ends, 1);
          } finally {
            globalThis.removeEventListener("unhandledrejection", onRejection);
          }
        }),
    );

    await t.step(
      "pause() inside a data listener: nothing is lost, end waits for resume() and then comes once",
      () =>
        withReactor(backend, async ({ reactor, reported, track }) => {
          let srv: Connection | undefined;
          const server = track(listen({ port: 0, reactor }, (c) => {
            srv = c;
            c.write("first");
          }));
          const conn = track(connect({ port: server.port, reactor }));
          const cli = new Recorder(conn);
          let listenersAfterPause = 0;
          conn.once("data", () => conn.pause()); // the second data listener pauses, on the first chunk
          conn.on("data", () => listenersAfterPause++); // a third still gets that chunk
          await until(() => cli.received > 0, "the first bytes");
          assert.equal(conn.isPaused, true);
          srv!.end("second"); // data and FIN while the client is paused
          await until(() => srv!.writableEnded && srv!.bufferedAmount === 0, "the server's FIN");
          await turns(reactor, 5);
          assert.equal(cli.text(), "first");
          assert.equal(cli.ends, 0, "no end while paused");
          assert.equal(conn.readableEnded, false);
          assert.equal(listenersAfterPause, 1);
          conn.resume();
          await until(() => cli.closes === 1, "the client to close");
          await turns(reactor, 3);
          assert.equal(cli.text(), "firstsecond");
          assert.equal(listenersAfterPause, 2);
          assert.equal(cli.ends, 1);
          assert.equal(cli.closes, 1);
          assert.equal(conn.readableEnded, true);
          assert.equal(conn.writableEnded, true); // ended for us: allowHalfOpen is false
          assert.equal(conn.destroyed, true);
          assert.deepEqual(reported, []);
        }),
    );

    await t.step(
      "a peer that sends and then resets while we are paused: the data first, then ECONNRESET, close once",
      () =>
        withReactor(backend, async ({ reactor, reported, track }) => {
          let srv: Recorder | undefined;
          const server = track(listen({ port: 0, reactor }, (c) => {
            srv = new Recorder(c);
            c.pause();
          }));
          const raw = await resettingClient(server.port);
          try {
            await until(() => srv !== undefined, "the server's connection");
            assert.equal(send(raw, new TextEncoder().encode("last words")), 10);
          } finally {
            close(raw); // SO_LINGER 0: RST, with the bytes still unread on the server
          }
          await turns(reactor, 3);
          assert.equal(srv!.received, 0);
          srv!.conn.resume();
          await until(() => srv!.closes > 0, "the server's connection to close");
          await turns(reactor, 3);
          assert.equal(srv!.text(), "last words");
          assert.deepEqual(srv!.errors.map(codeOf), ["ECONNRESET"]);
          assert.equal(srv!.closes, 1);
          assert.equal(srv!.ends, 0);
          assert.deepEqual(reported, []);
        }),
    );

    await t.step(
      "zero-length writes: true, nothing queued, no drain; refused after end() and destroy()",
      () =>
        withReactor(backend, async ({ reactor, reported, track }) => {
          let srv: Recorder | undefined;
          const server = track(listen({ port: 0, reactor }, (c) => srv = new Recorder(c)));
          const conn = track(connect({ port: server.port, reactor, highWaterMark: 1 }));
          assert.equal(conn.write(new Uint8Array(0)), true, "while connecting");
          assert.equal(conn.bufferedAmount, 0);
          let drains = 0;
          conn.on("drain", () => drains++);
          await until(() => !conn.connecting && srv !== undefined, "the connection");
          assert.equal(conn.write(""), true);
          assert.equal(conn.write(new Uint8Array(0)), true);
          assert.equal(conn.bufferedAmount, 0);
          await turns(reactor, 3);
          assert.equal(drains, 0);
          assert.equal(conn.bytesWritten, 0);
          conn.end();
          assert.throws(() => conn.write(new Uint8Array(0)), (e) => codeOf(e) === "ERR_WRITE_AFTER_END");
          await until(() => conn.destroyed, "the connection to close");
          assert.throws(() => conn.write("x"), (e) => codeOf(e) === "ERR_WRITE_AFTER_END");
          assert.equal(srv!.received, 0);
          assert.deepEqual(reported, []);
        }),
    );

    await t.step(
      "destroy() while connecting: no connect, close once, then end() and destroy() again do nothing",
      () =>
        withReactor(backend, async ({ reactor, reported, track }) => {
          const server = track(listen({ port: 0, reactor }));
          const conn = track(connect({ port: server.port, reactor }));
          const cli = new Recorder(conn);
          let connects = 0;
          conn.on("connect", () => connects++);
          conn.write("never sent");
          assert.equal(conn.connecting, true);
          conn.destroy();
          assert.equal(conn.destroyed, true);
          assert.equal(conn.fd, -1);
          conn.end();
          conn.destroy(new Error("a second destroy"));
          await until(() => cli.closes > 0, "close");
          await turns(reactor, 3);
          assert.equal(connects, 0);
          assert.equal(cli.closes, 1);
          assert.deepEqual(cli.errors, []);
          assert.equal(cli.closeError, undefined);
          assert.deepEqual(reported, []);
        }),
    );

    await t.step(
      "setNoDelay()/setKeepAlive() while a name is being dialled apply once connected; after close they do nothing",
      () =>
        withReactor(backend, async ({ reactor, reported, track }) => {
          const server = track(listen({ host: "0.0.0.0", port: 0, reactor }));
          const conn = track(connect({ host: loopbackName(), port: server.port, reactor }));
          assert.equal(conn.fd, -1);
          conn.setNoDelay(true).setKeepAlive(true);
          let noDelay = -1, keepAlive = -1;
          conn.on("connect", () => {
            noDelay = getSockOptInt(conn.fd, IPPROTO_TCP, TCP_NODELAY);
            keepAlive = getSockOptInt(conn.fd, SOL_SOCKET, SO_KEEPALIVE);
          });
          await until(() => noDelay >= 0, "connect");
          assert.equal(noDelay, 1);
          assert.equal(keepAlive, 1);
          conn.destroy();
          conn.setNoDelay(false).setKeepAlive(false);
          assert.deepEqual(reported, []);
        }),
    );
  });

  Deno.test(`\`UdpSocket\` (${backend}) review: a datagram to a port nobody listens on`, async (t) => {
    await t.step(
      "is sent without an error (ICMP port unreachable is not reported on an unconnected socket), and the socket goes on",
      () =>
        withReactor(backend, async ({ reactor, reported, track }) => {
          const a = track(bindUdp({ reactor }));
          const b = track(bindUdp({ reactor }));
          const nobody = bindUdp({ reactor });
          const port = nobody.port;
          nobody.close();
          const errors: Error[] = [];
          a.on("error", (e) => errors.push(e));
          const got: string[] = [];
          a.on("message", (bytes) => got.push(new TextDecoder().decode(bytes)));
          for (let i = 0; i < 3; i++) assert.equal(a.send("lost", { address: "127.0.0.1", port }), true);
          await turns(reactor, 3);
          b.send("hello", { address: "127.0.0.1", port: a.port });
          b.send(new Uint8Array(0), { address: "127.0.0.1", port: a.port });
          await until(() => got.length === 2, "both datagrams");
          assert.deepEqual(got, ["hello", ""]);
          assert.deepEqual(errors, []);
          assert.deepEqual(reported, []);
        }),
    );
  });
}

for (const backend of BACKENDS) {
  Deno.test(`a connection destroyed just before \`reactor.close()\` still emits close (${backend})`, async () => {
    await assertNoFdLeak(async () => {
      const reactor = new Reactor({ backend });
      const server = listen({ host: "127.0.0.1", port: 0, reactor });
      const conn = connect({ host: "127.0.0.1", port: server.port, reactor });
      let closes = 0;
      conn.on("close", () => closes++);
      conn.destroy();
      void server.close({ closeConnections: true });
      reactor.close();
      assert.equal(closes, 0, "not during close()");
      await null; // the callbacks close() left for microtasks run before this continuation
      assert.equal(closes, 1);
    });
  });
}

for (const backend of BACKENDS) {
  Deno.test(`a connection listener that throws is reported once, and its connection closes (${backend})`, async () => {
    await withReactor(backend, async ({ reactor, reported, track }) => {
      const server = track(listen({ host: "127.0.0.1", port: 0, reactor }, () => {
        throw new Error("the connection handler failed");
      }));
      const client = track(connect({ host: "127.0.0.1", port: server.port, reactor }));
      let closed = false;
      client.on("close", () => closed = true);
      client.on("error", () => {});
      await until(() => closed, "the client to see its connection closed", 2000);
      await turns(reactor, 2);
      const ours = reported.filter((r) => (r.error as Error).message === "the connection handler failed");
      assert.equal(ours.length, 1, `reported ${ours.length} times`);
    });
  });
}

Deno.test("a link-local IPv6 host with a zone (`fe80::1%lo`) reaches the socket layer, not a host-name error", () => {
  assert.equal(resolveHost("fe80::1%lo"), "fe80::1%lo");
  assert.equal(resolveHost("[fe80::1%1]"), "fe80::1%1");
  assert.throws(() => resolveHost("fe80::zz%lo"), TypeError);
});

for (const backend of BACKENDS) {
  Deno.test(`an abstract Unix socket (a leading NUL) listens, connects and echoes (${backend})`, async () => {
    await withReactor(backend, async ({ reactor, track }) => {
      const path = `\0fdloop-review-${Deno.pid}-${backend}`;
      const server = track(listen({ path, reactor }, (conn) => conn.on("data", (chunk) => conn.write(chunk))));
      const client = track(connect({ path, reactor }));
      let got = "";
      client.on("data", (chunk) => got += new TextDecoder().decode(chunk));
      client.on("connect", () => client.write("abstract"));
      await until(() => got === "abstract", "the echo over the abstract socket", 2000);
      assert.equal(server.address.family, "unix");
      client.end();
    });
  });
}
