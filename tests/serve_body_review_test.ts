/**
 * A review of `serve()`'s request body streams (http/fetch_request.ts): the
 * backpressure the stream applies to the connection (`req.pause()` /
 * `req.resume()`) must be undone once the body is complete, and a body
 * finished with must not leave the keep-alive connection paused for the
 * requests behind it.
 *
 * Real sockets on loopback; `serve()` on a reactor of its own running `run()`.
 */

import assert from "node:assert/strict";
import { serve, type ServeHandler, type ServeOptions } from "../http/mod.ts";
import { Reactor } from "../reactor/mod.ts";
import { assertNoFdLeak } from "./_helpers.ts";
import { delay } from "./_reactor.ts";
import { nextAnswer } from "./_wire.ts";

const encoder = new TextEncoder();

type Handler = (req: Request) => Response | Promise<Response>;

/** Runs `body` against `serve()` with `handler` on 127.0.0.1:0; shuts it down, fails on a reactor error or fd leak. */
async function withServe(
  handler: Handler,
  body: (port: number) => Promise<void>,
  options: Partial<ServeOptions> = {},
): Promise<void> {
  const reactorErrors: unknown[] = [];
  await assertNoFdLeak(async () => {
    const reactor = new Reactor({ onError: (err) => reactorErrors.push(err) });
    const running = reactor.run();
    const server = serve(
      { port: 0, hostname: "127.0.0.1", reactor, onListen() {}, ...options },
      handler as unknown as ServeHandler,
    );
    try {
      await body(server.addr.port);
    } finally {
      await server.server.shutdown(500);
      reactor.stop();
      await running;
      for (let i = 0; i < 3; i++) reactor.runOnce(0);
      reactor.close();
    }
  });
  assert.deepEqual(reactorErrors, []);
}

/** `p`, or `fallback` if it has not settled within `ms`. */
async function within<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([p, new Promise<T>((resolve) => timer = setTimeout(() => resolve(fallback), ms))]);
  } finally {
    clearTimeout(timer);
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let sent = 0; sent < bytes.byteLength;) sent += await conn.write(bytes.subarray(sent));
}

Deno.test("`serve()`: a body whose stream filled up in the read that completed it does not leave the connection paused", async () => {
  // The handler reads its body late: every piece is queued in the stream first, and the stream's queue passes its
  // 64 KiB high-water mark in the read that also brings the body's end.
  const handler: Handler = async (req) => {
    if (req.method !== "POST") return new Response("next");
    const body = req.body!; // the stream is made now, and fills while nobody reads it
    await delay(100);
    const n = (await new Response(body).arrayBuffer()).byteLength;
    return new Response(`got ${n}`);
  };
  await withServe(handler, async (port) => {
    for (const size of [100_000, 300_000, 1_000_000]) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await writeAll(conn, encoder.encode(`POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n`));
        await writeAll(conn, new Uint8Array(size));
        assert.equal(await within(nextAnswer(conn), 5000, "(no answer within 5 s)"), `got ${size}`);
        // The next request on the keep-alive connection, sent after the first answer.
        await writeAll(conn, encoder.encode(`GET /next HTTP/1.1\r\nHost: x\r\n\r\n`));
        assert.equal(await within(nextAnswer(conn), 3000, "(no answer within 3 s)"), "next", `after ${size} B`);
      } finally {
        conn.close();
      }
    }
  });
});

Deno.test("`serve()`: req.body cancelled mid-upload: the rest is discarded and the connection goes on, no error", async (t) => {
  const handler: Handler = async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/next") return new Response("next");
    const reader = req.body!.getReader();
    const first = await reader.read();
    if (path === "/cancel-then-answer") {
      await reader.cancel("not wanted");
      return new Response(`cancelled after ${first.value!.byteLength > 0}`);
    }
    // Answered first, cancelled a little later (the upload still coming).
    setTimeout(() => reader.cancel("not wanted"), 20);
    return new Response(`answered after ${first.value!.byteLength > 0}`);
  };
  await withServe(handler, async (port) => {
    for (
      const [path, answer] of [["/cancel-then-answer", "cancelled after true"], [
        "/answer-then-cancel",
        "answered after true",
      ]]
    ) {
      await t.step(path, async () => {
        const SIZE = 5_000_000;
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        try {
          const writing = (async () => {
            await writeAll(conn, encoder.encode(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: ${SIZE}\r\n\r\n`));
            for (let sent = 0; sent < SIZE;) {
              const n = Math.min(64 * 1024, SIZE - sent);
              await writeAll(conn, new Uint8Array(n));
              sent += n;
            }
            await writeAll(conn, encoder.encode(`GET /next HTTP/1.1\r\nHost: x\r\n\r\n`));
          })().catch((err) => `write failed: ${err}`);
          const answers = await within(
            (async () => [await nextAnswer(conn), await nextAnswer(conn)])(),
            5000,
            ["(no answers within 5 s)"],
          );
          assert.equal(await writing, undefined);
          assert.deepEqual(answers, [answer, "next"]);
        } finally {
          conn.close();
        }
      });
    }
  }, { maxBodyBytes: 64 * 1024 * 1024 });
});
