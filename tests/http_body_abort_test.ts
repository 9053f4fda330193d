/**
 * A request body that can no longer complete tells its reader: `readBody(onChunk, onEnd, onAbort)` and
 * `readAll(onBody, onAbort)` call `onAbort` once when the client closes, resets, half-closes or breaks the body
 * before it is complete, whether the handler answered already or not, and never after the body ended. Before, neither
 * callback ran once the response had ended: the reader waited for ever, holding what it had gathered.
 *
 * Real sockets on loopback, every backend.
 */

import assert from "node:assert/strict";
import type { HttpHandler, HttpRequest, HttpResponse, HttpServerOptions } from "../http/mod.ts";
import type { BackendName } from "../reactor/mod.ts";
import { close, send } from "../ffi/mod.ts";
import { BACKENDS } from "./_helpers.ts";
import { type HttpContext, httpTest, rawRequest } from "./_http.ts";
import { resettingClient } from "./_net.ts";
import { delay, waitFor } from "./_reactor.ts";

const H = "Host: x\r\n";
const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");
/** The part of a body the clients of these tests send before they leave. */
const PART = new Uint8Array(1000).fill(97);

/** What the handler saw of one request's body. */
class Reader {
  bytes = 0;
  ends = 0;
  /** The byte counts `readAll` delivered. */
  bodies: number[] = [];
  aborts: Error[] = [];
  req: HttpRequest | null = null;
  res: HttpResponse | null = null;
  readonly onChunk = (chunk: Uint8Array): void => {
    this.bytes += chunk.byteLength;
  };
  readonly onEnd = (): void => {
    this.ends++;
  };
  readonly onBody = (body: Uint8Array): void => {
    this.bodies.push(body.byteLength);
  };
  readonly onAbort = (error: Error): void => {
    assert.ok(error instanceof Error);
    this.aborts.push(error);
  };
}

/**
 * /first reads the body and answers at once; /after answers once the body is complete; /all-first and /all-after
 * the same through `readAll`; /keep neither reads nor answers; /answer answers without reading.
 */
function handler(r: Reader): HttpHandler {
  return (req, res) => {
    r.req = req;
    r.res = res;
    switch (req.path) {
      case "/first":
        req.readBody(r.onChunk, r.onEnd, r.onAbort);
        return res.end("accepted");
      case "/close-first":
        // Answers at once with `Connection: close`: the rest of the body is not read.
        req.readBody(r.onChunk, r.onEnd, r.onAbort);
        return res.setHeader("connection", "close").end("accepted");
      case "/after":
        return req.readBody(r.onChunk, () => {
          r.onEnd();
          res.end("done");
        }, r.onAbort);
      case "/all-first":
        req.readAll(r.onBody, r.onAbort);
        return res.end("accepted");
      case "/all-after":
        return req.readAll((body) => {
          r.onBody(body);
          res.end("done");
        }, r.onAbort);
      case "/answer-on-abort":
        // Answers from onAbort, as a handler telling its client of the broken body would.
        return req.readBody(r.onChunk, () => res.end("done"), (error) => {
          r.onAbort(error);
          res.status = 500;
          res.end("sorry");
        });
      case "/answer-on-response-abort":
        res.onAbort(() => {
          r.aborts.push(new Error("the response's onAbort"));
          res.status = 500;
          res.end("sorry");
        });
        return req.readBody(r.onChunk, () => res.end("done"));
      case "/keep":
        return;
      case "/answer":
        return res.end("accepted");
    }
    res.status = 404;
    res.end("not found");
  };
}

function bodyTest(
  backend: BackendName,
  options: Omit<HttpServerOptions, "reactor" | "port">,
  body: (ctx: HttpContext & { r: Reader }) => Promise<void>,
): Promise<void> {
  const r = new Reader();
  return httpTest(backend, options, () => handler(r), (ctx) => body({ ...ctx, r }));
}

/** A plain TCP client: writes, reads until a text shows up, closes (a FIN: it leaves nothing unread). */
class Client {
  readonly #conn: Deno.TcpConn;
  #seen = "";

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  static async open(port: number): Promise<Client> {
    return new Client(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  async write(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    for (let at = 0; at < bytes.byteLength;) at += await this.#conn.write(bytes.subarray(at));
  }

  /** Reads until `text` has arrived (the end of the response the test waits for). */
  async readUntil(text: string): Promise<string> {
    const buf = new Uint8Array(16 * 1024);
    while (!this.#seen.includes(text)) {
      const n = await this.#conn.read(buf);
      if (n === null) throw new Error(`The server closed before ${JSON.stringify(text)}: ${this.#seen}`);
      this.#seen += latin1.decode(buf.subarray(0, n));
    }
    return this.#seen;
  }

  closeWrite(): Promise<void> {
    return this.#conn.closeWrite();
  }

  close(): void {
    try {
      this.#conn.close();
    } catch { /* closed already */ }
  }
}

/** The head of a request for `path` announcing a body of `length` bytes. */
const head = (path: string, length = 100_000) => `POST ${path} HTTP/1.1\r\n${H}Content-Length: ${length}\r\n\r\n`;

/** Sends the head and PART, reads the answer if the route gives one before the body, and closes. */
async function leaveMidBody(port: number, path: string, answer: string | null, r: Reader): Promise<void> {
  const c = await Client.open(port);
  try {
    await c.write(head(path));
    await c.write(PART);
    if (answer !== null) await c.readUntil(answer);
    if (path === "/keep") {
      await waitFor(() => r.req !== null, "the handler");
      await delay(20); // the part arrives, kept for a reader to come
    } else {
      await waitFor(() => r.bytes > 0, "part of the body to be read");
    }
  } finally {
    c.close();
  }
}

async function assertAbortedOnce(ctx: HttpContext & { r: Reader }, cause: RegExp): Promise<void> {
  await waitFor(() => ctx.r.aborts.length > 0, "onAbort");
  await waitFor(() => ctx.server.connectionCount === 0, "the connection to close");
  await delay(20);
  assert.equal(ctx.r.aborts.length, 1, "onAbort once");
  assert.match(ctx.r.aborts[0].message, cause);
  assert.equal(ctx.r.ends, 0, "onEnd never");
  assert.deepEqual(ctx.r.bodies, [], "onBody never");
}

const CLOSED = /closed|before the request body was complete/i;

for (const backend of BACKENDS) {
  Deno.test(`body abort (${backend}): readBody, answered before the body, hears the client leave mid-body`, async (t) => {
    for (const halfClose of [true, false]) {
      await t.step(`the client closes (halfClose ${halfClose})`, () =>
        bodyTest(backend, { halfClose }, async (ctx) => {
          await leaveMidBody(ctx.port, "/first", "accepted", ctx.r);
          await assertAbortedOnce(ctx, CLOSED);
          assert.equal(ctx.r.bytes, PART.byteLength);
        }));
    }
    await t.step("the client half-closes (its FIN) and reads on", () =>
      bodyTest(backend, {}, async (ctx) => {
        const c = await Client.open(ctx.port);
        try {
          await c.write(head("/first"));
          await c.write(PART);
          await c.readUntil("accepted");
          await waitFor(() => ctx.r.bytes > 0, "part of the body to be read");
          await c.closeWrite();
          await waitFor(() => ctx.r.aborts.length > 0, "onAbort");
        } finally {
          c.close();
        }
        await assertAbortedOnce(ctx, CLOSED);
      }));
    await t.step(
      "the answer says `Connection: close`: the rest of the body is not read",
      () =>
        bodyTest(backend, {}, async (ctx) => {
          const c = await Client.open(ctx.port);
          try {
            await c.write(head("/close-first"));
            await c.write(PART);
            await c.readUntil("accepted");
            await waitFor(() => ctx.r.aborts.length > 0, "onAbort");
          } finally {
            c.close();
          }
          await assertAbortedOnce(ctx, /closes after the response/);
        }),
    );
    await t.step(
      "the answer says `Connection: close`, the whole body in the same read: onEnd, not onAbort",
      () =>
        bodyTest(backend, {}, async (ctx) => {
          const c = await Client.open(ctx.port);
          try {
            const wire = encoder.encode(head("/close-first", PART.byteLength));
            const all = new Uint8Array(wire.byteLength + PART.byteLength);
            all.set(wire);
            all.set(PART, wire.byteLength);
            await c.write(all);
            await c.readUntil("accepted");
          } finally {
            c.close();
          }
          await waitFor(() => ctx.server.connectionCount === 0, "the connection to close");
          assert.equal(ctx.r.aborts.length, 0, "onAbort never");
          assert.equal(ctx.r.ends, 1);
          assert.equal(ctx.r.bytes, PART.byteLength);
        }),
    );
    await t.step("the client resets (SO_LINGER 0)", () =>
      bodyTest(backend, {}, async (ctx) => {
        const fd = await resettingClient(ctx.port);
        try {
          const wire = encoder.encode(head("/first"));
          assert.equal(send(fd, wire), wire.byteLength);
          assert.equal(send(fd, PART), PART.byteLength);
          await waitFor(() => ctx.r.bytes > 0 && ctx.r.res!.finished, "the answer and part of the body");
        } finally {
          close(fd); // an RST
        }
        await assertAbortedOnce(ctx, CLOSED);
        assert.match(String((ctx.r.aborts[0].cause as Error | undefined)?.message), /ECONNRESET/);
      }));
  });

  Deno.test(`body abort (${backend}): readBody, not answered yet, hears the client leave mid-body`, async (t) => {
    for (const halfClose of [true, false]) {
      await t.step(`the client closes (halfClose ${halfClose})`, () =>
        bodyTest(backend, { halfClose }, async (ctx) => {
          await leaveMidBody(ctx.port, "/after", null, ctx.r);
          await assertAbortedOnce(ctx, CLOSED);
          assert.equal(ctx.r.res!.finished, false);
        }));
    }
  });

  Deno.test(`body abort (${backend}): readAll hears the client leave mid-body, answered or not`, async (t) => {
    for (const path of ["/all-first", "/all-after"]) {
      for (const halfClose of [true, false]) {
        await t.step(
          `${path}, the client closes (halfClose ${halfClose})`,
          () =>
            bodyTest(backend, { halfClose }, async (ctx) => {
              const c = await Client.open(ctx.port);
              try {
                await c.write(head(path));
                await c.write(PART);
                if (path === "/all-first") await c.readUntil("accepted");
                else await waitFor(() => ctx.r.req !== null, "the handler");
                await delay(20); // the part arrives, into readAll's buffer
              } finally {
                c.close();
              }
              await assertAbortedOnce(ctx, CLOSED);
            }),
        );
      }
    }
    await t.step("the client resets (SO_LINGER 0)", () =>
      bodyTest(backend, {}, async (ctx) => {
        const fd = await resettingClient(ctx.port);
        try {
          const wire = encoder.encode(head("/all-first"));
          assert.equal(send(fd, wire), wire.byteLength);
          assert.equal(send(fd, PART), PART.byteLength);
          await waitFor(() => ctx.r.res?.finished === true, "the answer");
          await delay(20);
        } finally {
          close(fd);
        }
        await assertAbortedOnce(ctx, CLOSED);
      }));
  });

  Deno.test(`body abort (${backend}): a malformed chunk size mid-body aborts the reader`, async (t) => {
    const chunked = (path: string) => `POST ${path} HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n`;
    await t.step("not answered yet: onAbort, and the 400 goes out", () =>
      bodyTest(backend, {}, async (ctx) => {
        const r = await rawRequest(ctx.port, [chunked("/after"), "5\r\nhello\r\n", "zz\r\nxx\r\n0\r\n\r\n"], {
          gapMs: 30,
        });
        assert.deepEqual(r.statuses, [400]);
        assert.ok(r.closed);
        await assertAbortedOnce(ctx, /400/);
        assert.equal(ctx.r.bytes, 5);
      }));
    await t.step(
      "answered first: onAbort (the 200 went out, the connection closes)",
      () =>
        bodyTest(backend, {}, async (ctx) => {
          const r = await rawRequest(ctx.port, [chunked("/first"), "5\r\nhello\r\n", "zz\r\nxx\r\n0\r\n\r\n"], {
            gapMs: 30,
          });
          assert.deepEqual(r.statuses, [200]);
          assert.ok(r.closed);
          await assertAbortedOnce(ctx, /400/);
        }),
    );
    for (const path of ["/answer-on-abort", "/answer-on-response-abort"]) {
      await t.step(
        `${path}: what the handler answers from it does not go out ahead of the 400`,
        () =>
          bodyTest(backend, {}, async (ctx) => {
            const r = await rawRequest(ctx.port, [chunked(path), "5\r\nhello\r\n", "zz\r\nxx\r\n0\r\n\r\n"], {
              gapMs: 30,
            });
            assert.deepEqual(r.statuses, [400], r.text);
            assert.deepEqual(ctx.handlerErrors, []);
            assert.doesNotMatch(r.text, /sorry/);
            await waitFor(() => ctx.server.connectionCount === 0, "the connection to close");
            assert.equal(ctx.r.aborts.length, 1);
          }),
      );
    }
    await t.step("readAll: onAbort, never onBody", () =>
      bodyTest(backend, {}, async (ctx) => {
        const r = await rawRequest(ctx.port, [chunked("/all-after"), "5\r\nhello\r\n", "-1\r\nxx\r\n0\r\n\r\n"], {
          gapMs: 30,
        });
        assert.deepEqual(r.statuses, [400]);
        await assertAbortedOnce(ctx, /400/);
      }));
  });

  Deno.test(`body abort (${backend}): a reader that comes after the body was lost hears it at once`, async (t) => {
    await t.step("not answered: readBody after the client left mid-body", () =>
      bodyTest(backend, {}, async (ctx) => {
        await leaveMidBody(ctx.port, "/keep", null, ctx.r);
        await waitFor(() => ctx.server.connectionCount === 0, "the connection to close");
        ctx.r.req!.readBody(ctx.r.onChunk, ctx.r.onEnd, ctx.r.onAbort);
        assert.equal(ctx.r.aborts.length, 1, "called at once");
        assert.match(ctx.r.aborts[0].message, CLOSED);
        assert.equal(ctx.r.ends, 0);
        ctx.r.res!.end("late"); // nobody to send it to: nothing happens
      }));
    await t.step(
      "answered: readAll after the client left before any of the body",
      () =>
        bodyTest(backend, { halfClose: false }, async (ctx) => {
          const c = await Client.open(ctx.port);
          try {
            await c.write(head("/answer"));
            await c.readUntil("accepted");
          } finally {
            c.close();
          }
          await waitFor(() => ctx.server.connectionCount === 0, "the connection to close");
          ctx.r.req!.readAll(ctx.r.onBody, ctx.r.onAbort);
          assert.equal(ctx.r.aborts.length, 1, "called at once");
          assert.deepEqual(ctx.r.bodies, []);
        }),
    );
  });

  Deno.test(`body abort (${backend}): a complete body calls onEnd only, never onAbort`, async (t) => {
    for (const path of ["/first", "/after", "/all-first", "/all-after"]) {
      for (const reset of [false, true]) {
        await t.step(
          `${path}, then the client ${reset ? "resets" : "closes"}`,
          () =>
            bodyTest(backend, {}, async (ctx) => {
              const answer = path.endsWith("first") ? "accepted" : "done";
              if (reset) {
                const fd = await resettingClient(ctx.port);
                try {
                  const wire = encoder.encode(head(path, PART.byteLength));
                  assert.equal(send(fd, wire), wire.byteLength);
                  assert.equal(send(fd, PART), PART.byteLength);
                  await waitFor(() => ctx.r.ends + ctx.r.bodies.length > 0, "the body");
                  await waitFor(() => ctx.r.res!.finished, "the answer");
                } finally {
                  close(fd);
                }
              } else {
                const c = await Client.open(ctx.port);
                try {
                  await c.write(head(path, PART.byteLength));
                  await c.write(PART);
                  await c.readUntil(answer);
                } finally {
                  c.close();
                }
              }
              await waitFor(() => ctx.server.connectionCount === 0, "the connection to close");
              await delay(20);
              assert.equal(ctx.r.aborts.length, 0, "onAbort never");
              if (path.startsWith("/all")) assert.deepEqual(ctx.r.bodies, [PART.byteLength]);
              else {
                assert.equal(ctx.r.ends, 1);
                assert.equal(ctx.r.bytes, PART.byteLength);
              }
              // A reader asking again is refused, as before (the body was read).
              assert.throws(() => ctx.r.req!.readBody(ctx.r.onChunk, ctx.r.onEnd, ctx.r.onAbort), /already/);
            }),
        );
      }
    }
  });
}
