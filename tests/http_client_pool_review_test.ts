/**
 * The `HttpClient` pool's per-host entries and its idle connections: an entry
 * per host:port lives only while that host has a connection or a waiter (a
 * crawler talking to thousands of hosts must not grow without bound), idle
 * connections close on the idle timeout and when the server closes them, and
 * the FIFO hand-off to waiters and the counts survive the entries going away.
 * Real sockets on 127.0.0.1; the tests count (connections, closes, entries),
 * they do not sleep.
 */

import assert from "node:assert/strict";
import { HttpClient, type HttpClientOptions } from "../http/mod.ts";
import { pooledHostCount } from "../http/client.ts";
import { listen, type Server } from "../net/mod.ts";
import type { Reactor } from "../reactor/mod.ts";
import { assertNoFdLeak, unusedPort } from "./_helpers.ts";
import { turns, until } from "./_net.ts";
import { type RawRequest, readRequests, reset } from "./_raw_server.ts";
import { assertNoErrors, newReactor, stopAndClose } from "./_reactor.ts";

/** A response with a Content-Length body. */
function ok(body: string, extra = ""): string {
  return `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n${extra}\r\n${body}`;
}

/** The path of a request head. */
function pathOf(head: string): string {
  return head.split(" ")[1];
}

interface PoolContext {
  reactor: Reactor;
  client: HttpClient;
  servers: Server[];
  /** Connections accepted (all listeners). */
  accepted: () => number;
  /** Server-side connections closed (all listeners). */
  closed: () => number;
  requests: (RawRequest & { server: number })[];
}

/**
 * Runs `body` with an `HttpClient` and `listeners` raw listeners (each on its own port 0, one reactor) that
 * hand each request to `onRequest`. Checks fds and the reactor's errors.
 */
async function poolTest(
  options: {
    listeners: number;
    client?: Omit<HttpClientOptions, "reactor">;
    onRequest: (req: RawRequest & { server: number }) => void;
  },
  body: (ctx: PoolContext) => Promise<void>,
): Promise<void> {
  await assertNoFdLeak(async () => {
    const { reactor, errors } = newReactor("epoll");
    let accepted = 0;
    let closed = 0;
    const requests: (RawRequest & { server: number })[] = [];
    const servers: Server[] = [];
    for (let s = 0; s < options.listeners; s++) {
      servers.push(listen({ host: "127.0.0.1", port: 0, reactor }, (conn) => {
        const index = accepted++;
        conn.on("close", () => closed++);
        conn.on("error", () => {});
        readRequests(conn, index, (req) => {
          const r = { ...req, server: s };
          requests.push(r);
          options.onRequest(r);
        });
      }));
    }
    const client = new HttpClient({ reactor, idleTimeout: 60_000, ...options.client });
    const running = reactor.run();
    try {
      await body({ reactor, client, servers, accepted: () => accepted, closed: () => closed, requests });
    } finally {
      client.close();
      await Promise.all(servers.map((s) => s.close({ closeConnections: true })));
      await turns(reactor, 3);
      await stopAndClose(reactor, running);
    }
    assertNoErrors(errors);
  });
}

Deno.test("`HttpClient` pool: a host's entry goes once it has no connection and no waiter", async (t) => {
  await t.step("200 distinct ports: entries of closed connections go at once, the rest at close()", async () => {
    await poolTest({
      listeners: 200,
      // Odd ports answer `Connection: close`: their connection is not kept, so nothing is left for the host.
      onRequest: (req) => req.conn.write(ok(`s${req.server}`, req.server % 2 === 1 ? "connection: close\r\n" : "")),
    }, async ({ client, servers, closed }) => {
      const texts = await Promise.all(
        servers.map(async (s) => (await client.request(`http://127.0.0.1:${s.port}/`)).text()),
      );
      assert.deepEqual(texts, servers.map((_, i) => `s${i}`));
      await until(() => client.connectionCount === 100 && closed() === 100, "the Connection: close ones to close");
      await turns(client.reactor, 2);
      assert.equal(pooledHostCount(client), 100, "only the hosts with an idle connection keep an entry");
      assert.equal(client.waitingCount, 0);
      client.close();
      await until(() => client.connectionCount === 0 && closed() === 200, "close() to close the idle ones");
      await turns(client.reactor, 2);
      assert.equal(pooledHostCount(client), 0, "no entry left once every connection closed");
    });
  });

  await t.step("idle connections closed by the idle timeout take their host's entry with them", async () => {
    await poolTest({
      listeners: 20,
      client: { idleTimeout: 30 },
      onRequest: (req) => req.conn.write(ok(`s${req.server}`)),
    }, async ({ client, servers, closed, accepted }) => {
      await Promise.all(servers.map(async (s) => (await client.request(`http://127.0.0.1:${s.port}/`)).text()));
      assert.equal(accepted(), 20);
      await until(() => client.connectionCount === 0 && closed() === 20, "the idle timeout to close them");
      await turns(client.reactor, 2);
      assert.equal(pooledHostCount(client), 0);
      // And the host is usable again afterwards (a new entry).
      assert.equal(await (await client.request(`http://127.0.0.1:${servers[3].port}/`)).text(), "s3");
      assert.equal(pooledHostCount(client), 1);
    });
  });

  await t.step("a refused connect fails with ECONNREFUSED and leaves no entry", async () => {
    await poolTest({ listeners: 0, onRequest: () => {} }, async ({ client }) => {
      for (let i = 0; i < 20; i++) {
        // On loopback connect(2) may fail at once: the connection comes back destroyed already. The request must
        // fail with the connect's error, not with the write of its head ("Cannot write to a destroyed connection").
        await assert.rejects(client.request(`http://127.0.0.1:${unusedPort()}/`), (err: unknown) => {
          assert.equal((err as { code?: string }).code, "ECONNREFUSED", String(err));
          return true;
        });
      }
      await until(() => client.connectionCount === 0, "the failed connections to go");
      await turns(client.reactor, 2);
      assert.equal(pooledHostCount(client), 0);
    });
  });

  await t.step("waiters are served first come first served; counts and the entry end at 0", async () => {
    const held: RawRequest[] = [];
    await poolTest({
      listeners: 1,
      client: { maxConnectionsPerHost: 1 },
      onRequest: (req) => {
        const path = pathOf(req.head);
        if (path === "/0") held.push(req);
        // Every other answer closes the connection: the next waiter gets a fresh slot, not the connection.
        else req.conn.write(ok(path, Number(path.slice(1)) % 2 === 0 ? "connection: close\r\n" : ""));
      },
    }, async ({ client, servers, requests }) => {
      const base = `http://127.0.0.1:${servers[0].port}`;
      const first = client.request(`${base}/0`);
      await until(() => held.length === 1, "the first request to arrive");
      const ac = new AbortController();
      const rest = [1, 2, 3, 4, 5, 6].map((i) =>
        client.request(`${base}/${i}`, i === 3 ? { signal: ac.signal } : {}).then((r) => r.text())
      );
      assert.equal(client.waitingCount, 6);
      ac.abort(new Error("3 aborted"));
      await assert.rejects(rest[2], /3 aborted/);
      assert.equal(client.waitingCount, 5);
      assert.equal(pooledHostCount(client), 1);
      held[0].conn.write(ok("/0", "connection: close\r\n"));
      assert.equal(await (await first).text(), "/0");
      assert.deepEqual(await Promise.all([rest[0], rest[1], rest[3], rest[4], rest[5]]), [
        "/1",
        "/2",
        "/4",
        "/5",
        "/6",
      ]);
      assert.deepEqual(requests.map((r) => pathOf(r.head)), ["/0", "/1", "/2", "/4", "/5", "/6"], "FIFO");
      assert.equal(client.waitingCount, 0);
      client.close();
      await until(() => client.connectionCount === 0, "every connection to close");
      await turns(client.reactor, 2);
      assert.equal(pooledHostCount(client), 0);
    });
  });
});

Deno.test("`HttpClient` pool: idle connections the server closes", async (t) => {
  await t.step("a FIN on an idle connection takes it (and its entry) out of the pool at once", async () => {
    await poolTest({
      listeners: 1,
      onRequest: (req) => req.conn.write(ok(`c${req.connIndex}`)),
    }, async ({ client, servers, requests, accepted }) => {
      const base = `http://127.0.0.1:${servers[0].port}`;
      assert.equal(await (await client.request(`${base}/`)).text(), "c0");
      assert.equal(client.connectionCount, 1);
      requests[0].conn.end();
      // No request is made: the pool notices the EOF while the connection is idle.
      await until(() => client.connectionCount === 0, "the idle connection to leave the pool");
      await turns(client.reactor, 2);
      assert.equal(pooledHostCount(client), 0);
      assert.equal(await (await client.request(`${base}/`)).text(), "c1");
      assert.equal(accepted(), 2);
    });
  });

  await t.step("a reset of an idle connection takes it out of the pool at once", async () => {
    await poolTest({
      listeners: 1,
      onRequest: (req) => req.conn.write(ok(`c${req.connIndex}`)),
    }, async ({ client, servers, requests }) => {
      const base = `http://127.0.0.1:${servers[0].port}`;
      assert.equal(await (await client.request(`${base}/`)).text(), "c0");
      reset(requests[0].conn);
      await until(() => client.connectionCount === 0, "the idle connection to leave the pool");
      await turns(client.reactor, 2);
      assert.equal(pooledHostCount(client), 0);
      assert.equal(await (await client.request(`${base}/`)).text(), "c1");
    });
  });

  await t.step("a server closing a reused connection as the request arrives: GET retried once, POST not", async () => {
    const perConn: number[] = [];
    await poolTest({
      listeners: 1,
      onRequest: (req) => {
        // The second request on each connection finds it closed (as if the server's idle timeout fired just then).
        perConn[req.connIndex] = (perConn[req.connIndex] ?? 0) + 1;
        if (perConn[req.connIndex] === 2) req.conn.destroy();
        else req.conn.write(ok(`c${req.connIndex}`));
      },
    }, async ({ client, servers, accepted }) => {
      const base = `http://127.0.0.1:${servers[0].port}`;
      assert.equal(await (await client.request(`${base}/`)).text(), "c0");
      // GET on the reused connection: dropped, sent again on a fresh one.
      assert.equal(await (await client.request(`${base}/`)).text(), "c1");
      assert.equal(accepted(), 2);
      // POST on the reused connection: dropped, not sent again (the server may have acted on it).
      await assert.rejects(client.request(`${base}/`, { method: "POST", body: "x" }), /closed|reset|EPIPE/i);
      assert.equal(accepted(), 2, "the POST was not sent again");
      await until(() => client.connectionCount === 0, "the dropped connection to go");
      await turns(client.reactor, 2);
      assert.equal(pooledHostCount(client), 0);
    });
  });
});
