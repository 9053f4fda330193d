/**
 * The HTTP client (`request`, `HttpClient`) against fdloop's own server and
 * against `Deno.serve`: pool reuse, 100 concurrent requests, bodies both
 * ways, timeouts, abort, a refused port and a name that does not resolve.
 */

import assert from "node:assert/strict";
import { HttpClient, listenHttp, request } from "../http/mod.ts";
import { GaiError } from "../ffi/mod.ts";
import { OSError, Reactor } from "../mod.ts";
import { assertNoFdLeak, unusedPort } from "./_helpers.ts";

/** A Deno.serve server for the client to talk to; the reactor runs beside it with run(). */
async function withDenoServe(fn: (base: string) => Promise<void>): Promise<void> {
  const ac = new AbortController();
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", signal: ac.signal, onListen() {} }, async (req) => {
    const u = new URL(req.url);
    if (u.pathname === "/sleep") {
      await new Promise((r) => setTimeout(r, Number(u.searchParams.get("ms") ?? "100")));
      return new Response("slept");
    }
    if (u.pathname === "/echo") return new Response(req.body);
    if (u.pathname === "/chunks") {
      return new Response(
        new ReadableStream({
          pull(c) {
            for (let i = 0; i < 4; i++) c.enqueue(new TextEncoder().encode(`part${i};`));
            c.close();
          },
        }),
      );
    }
    return new Response(`deno ${u.pathname}`);
  });
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`);
  } finally {
    ac.abort();
    await server.finished;
  }
}

/** Runs `fn` with a client on a fresh reactor running in the background. */
async function withClient(fn: (client: HttpClient, reactor: Reactor) => Promise<void>, max = 4): Promise<void> {
  const reactor = new Reactor();
  const client = new HttpClient({ reactor, maxConnectionsPerHost: max });
  const running = reactor.run();
  try {
    await fn(client, reactor);
  } finally {
    client.close();
    // Let the closes run, then stop.
    await new Promise((r) => setTimeout(r, 10));
    reactor.stop();
    await running;
    for (let i = 0; i < 3; i++) reactor.runOnce(0);
    reactor.close();
  }
}

Deno.test("`HttpClient` against Deno.serve: GET, POST echo, a chunked response, 100 concurrent requests on a capped pool", async () => {
  await assertNoFdLeak(() =>
    withDenoServe((base) =>
      withClient(async (client) => {
        let r = await client.request(`${base}/hello`);
        assert.equal(r.status, 200);
        assert.equal(await r.text(), "deno /hello");
        r = await client.request(`${base}/echo`, { method: "POST", body: "x".repeat(100_000) });
        assert.equal((await r.text()).length, 100_000);
        r = await client.request(`${base}/chunks`);
        assert.equal(await r.text(), "part0;part1;part2;part3;");
        const all = await Promise.all(
          Array.from({ length: 100 }, (_, i) => client.request(`${base}/${i}`).then((res) => res.text())),
        );
        assert.deepEqual(all, Array.from({ length: 100 }, (_, i) => `deno /${i}`));
        assert.ok(client.connectionCount <= 4, `${client.connectionCount} connections for a cap of 4`);
      })
    )
  );
});

Deno.test("`HttpClient` reuses one keep-alive connection for sequential requests", async () => {
  await assertNoFdLeak(async () => {
    const reactor = new Reactor();
    const peers = new Set<string>();
    const server = listenHttp({ port: 0, reactor }, (req, res) => {
      const a = req.remoteAddress;
      peers.add(`${a?.address}:${a?.port}`);
      res.end("ok");
    });
    const client = new HttpClient({ reactor });
    const running = reactor.run();
    try {
      for (let i = 0; i < 5; i++) {
        assert.equal(await (await client.request(`http://127.0.0.1:${server.port}/`)).text(), "ok");
      }
      assert.equal(peers.size, 1, "five requests, one connection");
      assert.equal(client.connectionCount, 1);
    } finally {
      client.close();
      await server.shutdown();
      reactor.stop();
      await running;
      for (let i = 0; i < 3; i++) reactor.runOnce(0);
      reactor.close();
    }
  });
});

Deno.test("`HttpClient` streams a request body chunked, and a stalled server hits the total timeout", async () => {
  await assertNoFdLeak(() =>
    withDenoServe((base) =>
      withClient(async (client) => {
        const body = new ReadableStream<Uint8Array>({
          start(c) {
            for (let i = 0; i < 10; i++) c.enqueue(new TextEncoder().encode(`${i}`));
            c.close();
          },
        });
        const r = await client.request(`${base}/echo`, { method: "POST", body });
        assert.equal(await r.text(), "0123456789");
        await assert.rejects(
          client.request(`${base}/sleep?ms=2000`, { timeout: 100 }),
          (err: unknown) => err instanceof DOMException && err.name === "TimeoutError",
        );
      })
    )
  );
});

Deno.test("`HttpClient` abort: an AbortSignal rejects the pending request with its reason", async () => {
  await assertNoFdLeak(() =>
    withDenoServe((base) =>
      withClient(async (client) => {
        const ac = new AbortController();
        const pending = client.request(`${base}/sleep?ms=2000`, { signal: ac.signal });
        setTimeout(() => ac.abort(new Error("changed my mind")), 50);
        await assert.rejects(pending, /changed my mind/);
        const pre = AbortSignal.abort();
        await assert.rejects(
          client.request(`${base}/`, { signal: pre }),
          (e: unknown) => (e as Error).name === "AbortError",
        );
      })
    )
  );
});

Deno.test("`HttpClient` errors: a refused port (ECONNREFUSED), a name that does not resolve (GaiError), https", async () => {
  await assertNoFdLeak(() =>
    withClient(async (client) => {
      const port = unusedPort();
      await assert.rejects(client.request(`http://127.0.0.1:${port}/`), (err: unknown) => {
        assert.ok(err instanceof OSError);
        assert.equal(err.code, "ECONNREFUSED");
        assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
        return true;
      });
      await assert.rejects(client.request("http://nonexistent.invalid/"), (err: unknown) => {
        assert.ok(err instanceof GaiError);
        assert.match(err.message, /nonexistent\.invalid/);
        return true;
      });
      await assert.rejects(client.request("https://127.0.0.1/"), /https is not supported/);
    })
  );
});

Deno.test("`request()` without a client runs the default reactor only while requests are in flight", async () => {
  await withDenoServe(async (base) => {
    const r = await request(`${base}/plain`);
    assert.equal(await r.text(), "deno /plain");
  });
});
