/**
 * A hostile review of request-body flow control in the raw engine (`req.pause()` / `req.resume()`, early bodies,
 * pipelining): the connection's read switch is one, but a pause or a resume is an exchange's own. Each test here
 * failed before its fix, or guards a case that was found fine.
 */

import assert from "node:assert/strict";
import type { HttpRequest, HttpResponse } from "../http/mod.ts";
import { BACKENDS } from "./_helpers.ts";
import { httpTest, rawRequest } from "./_http.ts";

const H = "Host: x\r\n";
/** How long a paused reader is watched for chunks it must not get. */
const WATCH_MS = 150;
const REST = "r".repeat(256 * 1024);

/** A reader that pauses on its first chunk, counts what it is handed while paused, and resumes after `WATCH_MS`. */
function pausingReader(
  req: HttpRequest,
  res: HttpResponse,
  onPaused: () => void,
  later: (ms: number, fn: () => void) => void,
): void {
  let paused = false;
  let whilePaused = 0;
  let total = 0;
  req.readBody((chunk) => {
    const firstChunk = total === 0;
    total += chunk.byteLength;
    if (paused) whilePaused += chunk.byteLength;
    if (firstChunk) {
      paused = true;
      req.pause();
      onPaused();
      later(WATCH_MS, () => {
        paused = false;
        req.resume();
      });
    }
  }, () => res.end(`total=${total} whilePaused=${whilePaused}`));
}

for (const backend of BACKENDS) {
  Deno.test(`body flow (${backend}): a finished exchange's late resume() does not undo the next reader's pause`, () => {
    let first: HttpRequest | null = null;
    return httpTest(backend, { bodyTimeout: 20_000 }, ({ reactor }) => (req, res) => {
      if (req.method === "GET") {
        first = req;
        return res.end("a");
      }
      // The GET before it is done: its resume(), from a timer, must not resume a pause that is not its own.
      pausingReader(req, res, () => reactor.callLater(0, () => first!.resume()), (ms, fn) => reactor.callLater(ms, fn));
    }, async ({ port }) => {
      const r = await rawRequest(port, [
        `GET /a HTTP/1.1\r\n${H}\r\nPOST /b HTTP/1.1\r\n${H}Content-Length: ${1000 + REST.length}\r\n\r\n` +
        "x".repeat(1000),
        REST,
      ], { gapMs: 30, timeoutMs: 5000, until: (t) => /whilePaused=\d+$/.test(t) });
      assert.deepEqual(r.statuses, [200, 200], r.text.slice(0, 300));
      assert.match(r.text, new RegExp(`total=${1000 + REST.length} whilePaused=0$`));
    });
  });

  Deno.test(`body flow (${backend}): an earlier body kept unread does not, released late, undo a later reader's pause`, () => {
    let first: { req: HttpRequest; res: HttpResponse } | null = null;
    // 300 one-byte chunks: past the 64 KiB kept for a handler not reading yet (each piece counts its object), in
    // the very read that completes the body: reading pauses for it and resumes at once, complete.
    const tiny = "1\r\nx\r\n".repeat(300) + "0\r\n\r\n";
    return httpTest(backend, { bodyTimeout: 20_000 }, ({ reactor }) => (req, res) => {
      if (req.path === "/a") {
        first = { req, res }; // reads its body later
        return;
      }
      pausingReader(req, res, () =>
        reactor.callLater(0, () => {
          const { req: a, res: ra } = first!;
          a.readAll((body) => ra.end(`a=${body.byteLength}`));
        }), (ms, fn) => reactor.callLater(ms, fn));
    }, async ({ port }) => {
      const r = await rawRequest(port, [
        `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${tiny}` +
        `POST /b HTTP/1.1\r\n${H}Content-Length: ${1000 + REST.length}\r\n\r\n${"x".repeat(1000)}`,
        REST,
      ], { gapMs: 30, timeoutMs: 5000, until: (t) => /whilePaused=\d+$/.test(t) });
      assert.deepEqual(r.statuses, [200, 200], r.text.slice(0, 300));
      assert.match(r.text, /a=300/);
      assert.match(r.text, new RegExp(`total=${1000 + REST.length} whilePaused=0$`));
    });
  });

  Deno.test(`body flow (${backend}): a reader that pauses gets no more chunks, even those of the same read`, () =>
    httpTest(backend, {}, ({ reactor }) => (req, res) => {
      let paused = false;
      let whilePaused = 0;
      let pieces = 0;
      req.readBody(() => {
        pieces++;
        if (paused) whilePaused++;
        else if (pieces === 1) {
          paused = true;
          req.pause();
          reactor.callLater(20, () => {
            paused = false;
            req.resume();
          });
        }
      }, () => res.end(`pieces=${pieces} whilePaused=${whilePaused}${paused ? " ended-paused" : ""}`));
    }, async ({ port }) => {
      // Ten chunks in one write: one read, ten onChunk calls.
      const r = await rawRequest(
        port,
        `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n` +
          "3\r\nabc\r\n".repeat(10) + "0\r\n\r\n",
        { timeoutMs: 3000, until: (t) => /whilePaused=\d+/.test(t) },
      );
      assert.deepEqual(r.statuses, [200], r.text);
      assert.match(r.text, /pieces=10 whilePaused=0$/);
    }));

  Deno.test(`body flow (${backend}): pause() before readBody() holds the kept pieces until resume()`, () =>
    httpTest(backend, { bodyTimeout: 20_000 }, ({ reactor }) => (req, res) => {
      // Not reading yet: 64 KiB are kept, then reading pauses. The handler pauses, then asks for the body: it is
      // handed nothing, and the connection stays paused, until it resumes (as Node's IncomingMessage: a paused
      // stream with a 'data' listener stays paused).
      reactor.callLater(60, () => {
        req.pause();
        let got = 0;
        let resumed = false;
        let early = 0;
        req.readBody((chunk) => {
          got += chunk.byteLength;
          if (!resumed) early += chunk.byteLength;
        }, () => res.end(`got=${got} early=${early}`));
        reactor.callLater(WATCH_MS, () => {
          resumed = true;
          req.resume();
        });
      });
    }, async ({ port }) => {
      const size = 1024 * 1024;
      const r = await rawRequest(port, [
        `POST / HTTP/1.1\r\n${H}Content-Length: ${size}\r\n\r\n`,
        "y".repeat(size),
      ], { timeoutMs: 5000, until: (t) => /early=\d+$/.test(t) });
      assert.deepEqual(r.statuses, [200], r.text.slice(0, 300));
      assert.match(r.text, new RegExp(`got=${size} early=0$`));
    }));

  Deno.test(`body flow (${backend}): pause() from onEnd, and a resume() of a GET, leave the next request served`, () =>
    httpTest(backend, {}, () => (req, res) => {
      if (req.method === "GET") {
        req.pause(); // no body: nothing to pause
        req.resume();
        req.pause();
        return res.end("next");
      }
      req.readAll((body) => {
        req.pause(); // after the end: nothing to throttle
        res.end(`got ${body.byteLength}`);
      });
    }, async ({ port }) => {
      const r = await rawRequest(port, [
        `POST /up HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello`,
        `GET /n HTTP/1.1\r\n${H}\r\n`,
        `GET /n HTTP/1.1\r\n${H}\r\n`,
      ], { gapMs: 30, timeoutMs: 3000, until: (t) => t.endsWith("nextnext") || /next[^]*next$/.test(t) });
      assert.deepEqual(r.statuses, [200, 200, 200], r.text.slice(0, 500));
    }));

  Deno.test(`body flow (${backend}): pause() then end() without reading does not leave the connection paused`, () =>
    httpTest(backend, { bodyTimeout: 20_000 }, () => (req, res) => {
      if (req.method === "GET") return res.end("next");
      req.pause(); // never reads: the response ends, and the rest of the body is discarded
      res.end("early");
    }, async ({ port }) => {
      const r = await rawRequest(port, [
        `POST /up HTTP/1.1\r\n${H}Content-Length: ${REST.length}\r\n\r\n`,
        REST,
        `GET /n HTTP/1.1\r\n${H}\r\n`,
      ], { gapMs: 30, timeoutMs: 3000, until: (t) => t.endsWith("next") });
      assert.deepEqual(r.statuses, [200, 200], r.text.slice(0, 500));
    }));
}

for (const backend of BACKENDS) {
  Deno.test(`body flow (${backend}): a body read after it came whole ends (a body, then none)`, () =>
    httpTest(backend, {}, ({ reactor }) => (req, res) => {
      // Asks for the body only later: it came whole meanwhile, and onEnd must still come.
      reactor.callLater(20, () => req.readAll((body) => res.end(`${req.method} ${body.byteLength}`)));
    }, async ({ port }) => {
      const r = await rawRequest(
        port,
        `POST /up HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello` +
          `GET /n HTTP/1.1\r\n${H}\r\n`,
        { timeoutMs: 3000, until: (t) => t.endsWith("GET 0") },
      );
      assert.deepEqual(r.statuses, [200, 200], r.text.slice(0, 500));
      assert.match(r.text, /POST 5[^]*GET 0$/);
    }));
}
