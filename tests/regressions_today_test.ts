/**
 * The final review of the day's changes (13810e1..HEAD) to `http/`: what the fixes, made in parallel, broke or made
 * inconsistent together. Each test here failed before its fix.
 */

import assert from "node:assert/strict";
import type { HttpHandler } from "../http/mod.ts";
import type { Reactor } from "../reactor/mod.ts";
import { BACKENDS, payload } from "./_helpers.ts";
import { httpTest, rawRequest } from "./_http.ts";
import { delay } from "./_reactor.ts";

const H = "Host: x\r\n";
const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");
const BIG = payload(8_000_000, 21);

function routes({ reactor }: { reactor: Reactor }): HttpHandler {
  return (req, res) => {
    switch (req.path) {
      case "/slow":
        reactor.callLater(30, () => res.end("slow"));
        return;
      case "/big":
        return res.end(BIG);
      case "/echo":
        return req.readAll((body) => res.end(body));
    }
    res.status = 404;
    res.end("not found");
  };
}

for (const backend of BACKENDS) {
  Deno.test(`today (${backend}): reading paused at maxPipelined resumes once the queue shrinks, drain or not`, () =>
    httpTest(backend, { maxPipelined: 2, bodyTimeout: 20_000 }, routes, async ({ port }) => {
      // Two slow answers and a POST whose body comes later: reading pauses at 3 ≥ 2 in flight. The two answers are
      // small (no drain is owed), so only the queue shrinking may resume reading, or the rest of the body is never
      // read (until bodyTimeout's 408).
      const r = await rawRequest(port, [
        `GET /slow HTTP/1.1\r\n${H}\r\nGET /slow HTTP/1.1\r\n${H}\r\n` +
        `POST /echo HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\n01234`,
        "56789",
      ], { gapMs: 200, timeoutMs: 3000, until: (t) => t.endsWith("0123456789") });
      assert.deepEqual(r.statuses, [200, 200, 200], r.text.slice(0, 500));
      assert.ok(r.text.endsWith("0123456789"));
    }));

  Deno.test(`today (${backend}): after large pipelined bodies sent through a backlog, a paused read resumes`, () =>
    httpTest(backend, { maxPipelined: 2, bodyTimeout: 20_000 }, routes, async ({ port }) => {
      // As above, with 8 MB answers fed through the backlog: its drain does not pass through #onDrain's unpause.
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await conn.write(encoder.encode(
          `GET /big HTTP/1.1\r\n${H}\r\nGET /big HTTP/1.1\r\n${H}\r\n` +
            `POST /echo HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\n01234`,
        ));
        const want = 2 * BIG.byteLength; // at least: the two bodies
        const buf = new Uint8Array(256 * 1024);
        let got = 0;
        let tail = "";
        let sentRest = false;
        const deadline = Date.now() + 5000;
        while (!tail.endsWith("0123456789") && Date.now() < deadline) {
          const n = await Promise.race([conn.read(buf), delay(deadline - Date.now()).then(() => null)]);
          if (n === null) break;
          got += n;
          tail = (tail + latin1.decode(buf.subarray(0, n))).slice(-200);
          if (!sentRest && got > want) {
            sentRest = true; // both big answers are in: the rest of the body
            await conn.write(encoder.encode("56789"));
          }
        }
        assert.ok(tail.endsWith("0123456789"), `the echo after the big answers (${got} bytes read): ${tail}`);
      } finally {
        conn.close();
      }
    }));
}

for (const backend of BACKENDS) {
  Deno.test(`today (${backend}): a raw reader that paused on its last chunk does not leave the connection paused`, () =>
    httpTest(backend, {}, () => (req, res) => {
      if (req.method !== "POST") return res.end("next");
      const pieces: number[] = [];
      // Pauses on every chunk and never resumes: the body ends in the read that brought it, so there is nothing
      // left to throttle, and the keep-alive connection must go on to the request behind it.
      req.readBody((chunk) => {
        pieces.push(chunk.byteLength);
        req.pause();
      }, () => res.end(String(pieces.reduce((a, b) => a + b, 0))));
    }, async ({ port }) => {
      const r = await rawRequest(port, [
        `POST /up HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello`,
        `GET /next HTTP/1.1\r\n${H}\r\n`,
      ], { gapMs: 100, timeoutMs: 3000, until: (t) => t.endsWith("next") });
      assert.deepEqual(r.statuses, [200, 200], r.text.slice(0, 500));
      assert.ok(r.text.endsWith("next"));
    }));
}
