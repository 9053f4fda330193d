/**
 * A differential review of `serve()` against `Deno.serve`: the same handler
 * runs under both (each on port 0 on 127.0.0.1) and a client compares what it
 * sees: status, headers, framing, body bytes, request parsing, streaming,
 * disconnects and errors. Differences the project documents (header order and
 * case, `Date`, framing of bodies whose length is known, the 500's content
 * type, header values outside ASCII) are normalised or skipped; the rest must
 * match.
 */

import assert from "node:assert/strict";
import { serve, type ServeHandler, type ServeOptions } from "../http/mod.ts";
import { Reactor } from "../reactor/mod.ts";
import { assertNoFdLeak } from "./_helpers.ts";

const enc = new TextEncoder();
const latin1 = new TextDecoder("latin1");

type Handler = (req: Request, info: Deno.ServeHandlerInfo) => Response | Promise<Response>;

/** Both servers' ports. */
interface Pair {
  ours: number;
  theirs: number;
}

/**
 * Runs `body` with `handler` served by `Deno.serve` and by `serve()` (on a reactor of its own running `run()`),
 * then shuts both down and checks that no fd leaked.
 */
async function both(
  handler: Handler,
  body: (p: Pair) => Promise<void>,
  options: { ours?: Partial<ServeOptions>; theirs?: Partial<Deno.ServeTcpOptions> } = {},
): Promise<void> {
  await assertNoFdLeak(async () => {
    const reactor = new Reactor({ onError: (err) => console.error("reactor:", err) });
    const running = reactor.run();
    const ours = serve(
      { port: 0, hostname: "127.0.0.1", reactor, onListen() {}, ...options.ours },
      handler as unknown as ServeHandler,
    );
    const ac = new AbortController();
    const theirs = Deno.serve(
      { port: 0, hostname: "127.0.0.1", signal: ac.signal, onListen() {}, ...options.theirs },
      handler,
    );
    try {
      await body({ ours: ours.addr.port, theirs: theirs.addr.port });
    } finally {
      await ours.shutdown();
      ac.abort();
      await theirs.finished;
      reactor.stop();
      await running;
      for (let i = 0; i < 3; i++) reactor.runOnce(0);
      reactor.close();
    }
  });
}

/** A response as a client sees it on the wire. */
interface Wire {
  /** `HTTP/1.1 200 OK` */
  statusLine: string;
  /** Header lines as `name: value`, names lower-cased, in the order sent. */
  headers: string[];
  /** "length", "chunked", "close" (read to EOF) or "none" (a bodiless status or HEAD). */
  framing: string;
  /** The body bytes, de-chunked, as Latin-1. */
  body: string;
  /** A chunked body ended with its last chunk, or a length body was complete. */
  complete: boolean;
}

/** Sends `text` on a fresh connection, reads until the server closes (or `timeoutMs`), returns the raw bytes. */
async function raw(port: number, text: string | Uint8Array, timeoutMs = 3000): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const chunks: string[] = [];
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    await conn.write(typeof text === "string" ? enc.encode(text) : text);
    const buf = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      chunks.push(latin1.decode(buf.subarray(0, n)));
    }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
  return chunks.join("");
}

/** Splits raw response bytes into responses; `head` marks responses to HEAD requests (no body). */
function parseWire(text: string, heads: boolean[] = []): Wire[] {
  const out: Wire[] = [];
  let at = 0;
  while (at < text.length) {
    const end = text.indexOf("\r\n\r\n", at);
    if (end < 0) break;
    const lines = text.slice(at, end).split("\r\n");
    const statusLine = lines[0];
    const headers = lines.slice(1).map((l) => {
      const i = l.indexOf(":");
      return `${l.slice(0, i).toLowerCase()}: ${l.slice(i + 1).trim()}`;
    });
    const get = (name: string) => headers.find((h) => h.startsWith(`${name}: `))?.slice(name.length + 2);
    const status = Number(statusLine.split(" ")[1]);
    at = end + 4;
    let body = "";
    let framing: string;
    let complete = true;
    if (heads[out.length] || status === 204 || status === 304 || status < 200) {
      framing = "none";
    } else if (get("transfer-encoding") === "chunked") {
      framing = "chunked";
      complete = false;
      for (;;) {
        const le = text.indexOf("\r\n", at);
        if (le < 0) break;
        const size = parseInt(text.slice(at, le), 16);
        if (!(size >= 0) || le + 2 + size > text.length) break;
        at = le + 2;
        if (size === 0) {
          complete = text.slice(at, at + 2) === "\r\n";
          at += 2;
          break;
        }
        body += text.slice(at, at + size);
        at += size + 2;
      }
      if (!complete) at = text.length;
    } else if (get("content-length") !== undefined) {
      framing = "length";
      const n = Number(get("content-length"));
      body = text.slice(at, at + n);
      complete = body.length === n;
      at += n;
    } else {
      framing = "close";
      body = text.slice(at);
      at = text.length;
    }
    out.push({ statusLine, headers, framing, body, complete });
  }
  return out;
}

/** What must be equal: the status line, the headers but `date`/`connection`/framing ones (sorted), body, completeness. */
function essence(w: Wire | undefined): unknown {
  if (w === undefined) return undefined;
  const skip = /^(date|connection|content-length|transfer-encoding): /;
  return {
    statusLine: w.statusLine,
    headers: w.headers.filter((h) => !skip.test(h)).map(normaliseBoundary).sort(),
    body: normaliseBoundary(w.body),
    complete: w.complete,
  };
}

function normaliseBoundary(s: string): string {
  return s.replace(/-{4}\d{20,}/g, "----BOUNDARY");
}

/** GET (or `method`) `path` with `Connection: close` on both servers, parsed. */
async function getBoth(p: Pair, path: string, extra = "", method = "GET"): Promise<{ ours: Wire; theirs: Wire }> {
  const req = `${method} ${path} HTTP/1.1\r\nHost: t\r\n${extra}Connection: close\r\n\r\n`;
  const head = [method === "HEAD"];
  const [theirs] = parseWire(await raw(p.theirs, req), head);
  const [ours] = parseWire(await raw(p.ours, req), head);
  return { ours, theirs };
}

const bytes = (s: string) => enc.encode(s);
function stream(
  chunks: string[],
  extra: Partial<UnderlyingDefaultSource<Uint8Array>> = {},
): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(c) {
      for (const s of chunks) c.enqueue(bytes(s));
      if (extra.pull === undefined) c.close();
    },
    ...extra,
  });
}

/** Responses of each shape handlers return. */
function shapes(req: Request): Response {
  const path = new URL(req.url).pathname;
  switch (path) {
    case "/text":
      return new Response("plain text");
    case "/json":
      return Response.json({ a: [1, "é"] });
    case "/json-status":
      return Response.json({ a: 1 }, { status: 201, statusText: "Made", headers: { "x-a": "1" } });
    case "/redirect":
      return Response.redirect("http://example.com/x", 302);
    case "/redirect-rel":
      return Response.redirect(new URL("/there", req.url), 301);
    case "/no-content":
      return new Response(null, { status: 204 });
    case "/not-modified":
      return new Response(null, { status: 304, headers: { etag: '"v1"' } });
    case "/status-text":
      return new Response("x", { status: 200, statusText: "Very Fine" });
    case "/teapot":
      return new Response("x", { status: 418 });
    case "/unknown-status":
      return new Response("x", { status: 599 });
    case "/cookies": {
      const h = new Headers();
      h.append("Set-Cookie", "a=1; Path=/; HttpOnly");
      h.append("set-cookie", "b=2; Expires=Wed, 21 Oct 2099 07:28:00 GMT");
      h.append("X-Multi", "1");
      h.append("x-multi", "2");
      return new Response("c", { headers: h });
    }
    case "/blob":
      return new Response(new Blob(["blob!"], { type: "text/x-blob" }));
    case "/blob-untyped":
      return new Response(new Blob(["blob!"]));
    case "/array-buffer":
      return new Response(new Uint8Array([1, 2, 3]).buffer);
    case "/uint8array":
      return new Response(new Uint8Array([0, 255, 10, 13]));
    case "/data-view":
      return new Response(new DataView(new Uint8Array([65, 66, 67, 68]).buffer, 1, 2));
    case "/search-params":
      return new Response(new URLSearchParams({ a: "1 2", b: "é&" }));
    case "/form-data": {
      const f = new FormData();
      f.append("a", "1");
      f.append("file", new Blob(["data"], { type: "text/x-file" }), "f.txt");
      return new Response(f);
    }
    case "/null":
      return new Response();
    case "/empty-string":
      return new Response("");
    case "/stream":
      return new Response(stream(["ab", "cd", "ef"]), { headers: { "content-type": "text/x-s" } });
    case "/stream-one":
      return new Response(stream(["ab"]));
    case "/stream-none":
      return new Response(stream([]));
    case "/custom-type":
      return new Response("<b>", { headers: { "Content-Type": "text/html; charset=utf-8" } });
    case "/connection-close":
      return new Response("x", { headers: { connection: "close" } });
    case "/length-right":
      return new Response("xyz", { headers: { "content-length": "3" } });
    case "/length-short": // Deno.serve frames a static body by its real length, whatever the handler said
      return new Response("xyz", { headers: { "content-length": "1" } });
    case "/length-long":
      return new Response("xyz", { headers: { "content-length": "10" } });
    case "/stream-length":
      return new Response(stream(["ab", "cd"]), { headers: { "content-length": "4" } });
    case "/te-static": // copied from an upstream response: Deno.serve frames the body itself
      return new Response("hello", { headers: { "transfer-encoding": "chunked" } });
    case "/te-stream":
      return new Response(stream(["ab", "cd"]), { headers: { "Transfer-Encoding": "chunked" } });
    case "/proxy-headers": // what `new Response(upstream.body, upstream)` carries
      return new Response(stream(["ab", "cd"]), {
        headers: { "transfer-encoding": "chunked", "content-type": "text/plain", "x-up": "1" },
      });
    default:
      return new Response("nope", { status: 404 });
  }
}

const SHAPE_PATHS = [
  "/text",
  "/json",
  "/json-status",
  "/redirect",
  "/redirect-rel",
  "/no-content",
  "/not-modified",
  "/status-text",
  "/teapot",
  "/unknown-status",
  "/cookies",
  "/blob",
  "/blob-untyped",
  "/array-buffer",
  "/uint8array",
  "/data-view",
  "/search-params",
  "/form-data",
  "/null",
  "/empty-string",
  "/stream",
  "/stream-one",
  "/stream-none",
  "/custom-type",
  "/connection-close",
  "/length-right",
  "/length-short",
  "/length-long",
  "/stream-length",
  "/te-static",
  "/te-stream",
  "/proxy-headers",
  "/missing",
];

Deno.test("`serve()` vs `Deno.serve`: responses of every shape", async (t) => {
  await both(shapes, async (p) => {
    await t.step("status line, headers, content types and body bytes are the same", async () => {
      for (const path of SHAPE_PATHS) {
        const { ours, theirs } = await getBoth(p, path);
        assert.deepEqual(essence(ours), essence(theirs), path);
        assert.ok(ours.framing === "length" || ours.framing === theirs.framing, `${path}: ${ours.framing}`);
      }
    });

    await t.step("HEAD to a handler that returns a body: the same head, no body bytes", async () => {
      for (const path of ["/text", "/json", "/stream", "/blob", "/no-content", "/length-short"]) {
        const req =
          `HEAD ${path} HTTP/1.1\r\nHost: t\r\n\r\nGET /text HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`;
        const theirs = parseWire(await raw(p.theirs, req), [true]);
        const ours = parseWire(await raw(p.ours, req), [true]);
        assert.equal(ours.length, 2, path);
        assert.deepEqual(ours.map(essence), theirs.map(essence), path);
        assert.equal(ours[1].body, "plain text", `${path}: nothing of a body after the HEAD response`);
      }
    });

    await t.step("a handler's wrong Content-Length does not desynchronise a keep-alive connection", async () => {
      for (const path of ["/length-short", "/length-long", "/te-static", "/proxy-headers"]) {
        const req = `GET ${path} HTTP/1.1\r\nHost: t\r\n\r\nGET /text HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`;
        const theirs = parseWire(await raw(p.theirs, req));
        const ours = parseWire(await raw(p.ours, req));
        assert.deepEqual(ours.map(essence), theirs.map(essence), path);
        assert.equal(ours.length, 2, path);
      }
    });
  });
});

Deno.test("`serve()` vs `Deno.serve`: the request a handler sees", async (t) => {
  const handler = async (req: Request, info: Deno.ServeHandlerInfo): Promise<Response> => {
    const url = new URL(req.url);
    switch (url.pathname.startsWith("/meta") ? "/meta" : url.pathname) {
      case "/text":
        return Response.json({ text: await req.text(), used: req.bodyUsed });
      case "/json":
        return Response.json(await req.json());
      case "/array-buffer":
        return Response.json({ n: (await req.arrayBuffer()).byteLength });
      case "/bytes":
        return Response.json({ sum: (await req.bytes()).reduce((a, b) => a + b, 0) });
      case "/blob": {
        const b = await req.blob();
        return Response.json({ size: b.size, type: b.type });
      }
      case "/form": {
        const f = await req.formData();
        const out: string[][] = [];
        for (const [k, v] of f) {
          out.push([k, typeof v === "string" ? v : `${v.name}:${v.type}:${v.size}:${await v.text()}`]);
        }
        return Response.json(out);
      }
      case "/stream": {
        let n = 0;
        let chunks = 0;
        for await (const c of req.body!) {
          n += c.byteLength;
          chunks++;
        }
        return Response.json({ n, some: chunks > 0 });
      }
      case "/meta":
        return Response.json({
          method: req.method,
          url: req.url,
          headers: [...req.headers],
          body: req.body === null ? null : "stream",
          bodyUsed: req.bodyUsed,
          cache: req.cache,
          mode: req.mode,
          credentials: req.credentials,
          destination: req.destination,
          referrer: req.referrer,
          integrity: req.integrity,
          keepalive: req.keepalive,
          aborted: req.signal.aborted,
          isRequest: req instanceof Request,
          tag: Object.prototype.toString.call(req),
          remote: Object.keys(info.remoteAddr).sort(),
          remoteTypes: Object.values(info.remoteAddr).map((v) => typeof v),
          remoteHost: (info.remoteAddr as Deno.NetAddr).hostname,
          remoteTransport: info.remoteAddr.transport,
        });
      case "/clone": {
        const c = req.clone();
        return Response.json({ a: await req.text(), b: await c.text() });
      }
      default:
        return new Response("nope", { status: 404 });
    }
  };
  await both(handler, async (p) => {
    const post = async (port: number, path: string, init: RequestInit) => {
      const client = Deno.createHttpClient({});
      try {
        const r = await fetch(`http://127.0.0.1:${port}${path}`, { method: "POST", ...init, client });
        return [r.status, await r.text()];
      } finally {
        client.close();
      }
    };
    await t.step("the body as text, json, arrayBuffer, bytes, blob, formData and a stream", async () => {
      const form = new FormData();
      form.append("a", "1");
      form.append("f", new File(["file body"], "x.txt", { type: "text/x-f" }));
      const cases: [string, RequestInit | (() => RequestInit)][] = [
        ["/text", { body: "héllo" }],
        ["/text", { body: "" }],
        ["/json", { body: '{"a":[1,2]}', headers: { "content-type": "application/json" } }],
        ["/array-buffer", { body: new Uint8Array(100_000) }],
        ["/bytes", { body: new Uint8Array([1, 2, 3]) }],
        ["/blob", { body: "abc", headers: { "content-type": "text/x-b" } }],
        ["/form", { body: new URLSearchParams({ a: "1", b: "x y" }) }],
        ["/form", { body: form }],
        ["/stream", () => ({ body: stream(["a".repeat(70_000), "b"]) })],
        ["/stream", { body: "x".repeat(200_000) }],
        ["/clone", { body: "twice" }],
        ["/text", {}], // a POST without a body still has one (empty), as in Deno.serve
        ["/stream", { method: "DELETE" }],
        ["/text", { method: "PUT", body: "put" }],
      ];
      for (const [path, init] of cases) {
        const make = () => typeof init === "function" ? init() : init;
        assert.deepEqual(await post(p.ours, path, make()), await post(p.theirs, path, make()), path);
      }
    });

    await t.step("repeated Cookie fields are joined with `; ` (one cookie header a parser can split)", async () => {
      const req = "GET /meta HTTP/1.1\r\nHost: t\r\nCookie: a=1\r\ncookie: b=2\r\nConnection: close\r\n\r\n";
      for (const port of [p.theirs, p.ours]) {
        const [w] = parseWire(await raw(port, req));
        assert.deepEqual(JSON.parse(w.body).headers, [["connection", "close"], ["cookie", "a=1; b=2"], ["host", "t"]]);
      }
    });

    await t.step("a POST, DELETE or OPTIONS without a body has an empty body stream, not null", async () => {
      for (const method of ["POST", "DELETE", "OPTIONS"]) {
        for (const port of [p.theirs, p.ours]) {
          const [w] = parseWire(await raw(port, `${method} /text HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`));
          assert.equal(w.body, '{"text":"","used":true}', `${method} on ${port === p.ours ? "serve()" : "Deno.serve"}`);
        }
      }
    });

    await t.step("method, url, headers (order, case, repeats), body, signal, remoteAddr shape", async () => {
      const reqs = [
        "GET /meta?q=1 HTTP/1.1\r\nHost: t:8080\r\nX-B: 1\r\nx-a: 2\r\nAccept: a\r\nX-A: 3\r\n",
        "GET http://other.example:81/meta?q HTTP/1.1\r\nHost: t\r\n",
        "GET /meta HTTP/1.1\r\nHost: [::1]:8080\r\n",
        "GET /meta HTTP/1.1\r\nHost: [::1]\r\n",
        "GET /meta HTTP/1.1\r\nHost: t\r\nCookie: a=1\r\nCookie: b=2\r\n",
        "POST /meta HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n",
        "POST /meta HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n",
        "DELETE /meta HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n",
        "HEAD /meta HTTP/1.1\r\nHost: t\r\n",
        "GET /meta/%7Euser/a%20b?x=%20 HTTP/1.1\r\nHost: t\r\n",
        "OPTIONS /meta HTTP/1.1\r\nHost: t\r\n",
        "GET /meta HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n",
      ];
      for (const head of reqs) {
        const text = `${head}Connection: close\r\n\r\n${head.includes("Length: 2") ? "xy" : ""}`;
        const isHead = [head.startsWith("HEAD")];
        const [theirs] = parseWire(await raw(p.theirs, text), isHead);
        const [ours] = parseWire(await raw(p.ours, text), isHead);
        assert.deepEqual(essence(ours), essence(theirs), head);
        if (!isHead[0]) {
          const o = JSON.parse(ours.body);
          assert.equal(o.remoteHost, "127.0.0.1");
          assert.deepEqual(o.remote, ["hostname", "port", "transport"]);
        }
      }
    });
  });
});

Deno.test("`serve()` vs `Deno.serve`: streamed response bodies", async (t) => {
  const cancelled: string[] = [];
  let release: (() => void) | null = null;
  const handler = (req: Request): Response => {
    const path = new URL(req.url).pathname;
    const tag = req.headers.get("x-tag") ?? "";
    switch (path) {
      case "/error-midway": {
        let n = 0;
        return new Response(
          new ReadableStream<Uint8Array>({
            async pull(c) {
              await new Promise((r) => setTimeout(r, 5));
              if (n++ < 2) c.enqueue(bytes(`chunk${n};`));
              else c.error(new Error("the stream failed on purpose"));
            },
          }),
        );
      }
      case "/error-midway-length": {
        let n = 0;
        return new Response(
          new ReadableStream<Uint8Array>({
            async pull(c) {
              await new Promise((r) => setTimeout(r, 5));
              if (n++ < 2) c.enqueue(bytes("abc"));
              else c.error(new Error("the stream failed on purpose"));
            },
          }),
          { headers: { "content-length": "100" } },
        );
      }
      case "/slow": // the second chunk only once the client has the first (server-sent events, progress)
        return new Response(
          new ReadableStream<Uint8Array>({
            start(c) {
              c.enqueue(bytes("data: first\n\n"));
            },
            async pull(c) {
              await new Promise<void>((r) => release = r);
              c.enqueue(bytes("data: second\n\n"));
              c.close();
            },
          }),
          { headers: { "content-type": "text/event-stream" } },
        );
      case "/quiet": // nothing to send until the client has seen the head (an event stream with no event yet)
        return new Response(
          new ReadableStream<Uint8Array>({
            async pull(c) {
              await new Promise<void>((r) => release = r);
              c.enqueue(bytes("data: late\n\n"));
              c.close();
            },
          }),
          { headers: { "content-type": "text/event-stream" } },
        );
      case "/endless": // cancel() must run when the client goes away
        return new Response(
          new ReadableStream<Uint8Array>({
            async pull(c) {
              await new Promise((r) => setTimeout(r, 2));
              c.enqueue(bytes("tick\n"));
            },
            cancel() {
              cancelled.push(tag);
            },
          }),
        );
      case "/endless-quiet": // cancel() must run when the client goes away while the stream waits for data
        return new Response(
          new ReadableStream<Uint8Array>({
            start(c) {
              c.enqueue(bytes("hello\n"));
            },
            pull() {
              return new Promise(() => {}); // never more
            },
            cancel() {
              cancelled.push(tag);
            },
          }),
        );
      case "/endless-silent": // nothing at all, ever: the head must still go out, cancel() must still run
        return new Response(
          new ReadableStream<Uint8Array>({
            pull() {
              return new Promise(() => {});
            },
            cancel() {
              cancelled.push(tag);
            },
          }),
        );
      case "/big": {
        const chunk = new Uint8Array(256 * 1024).fill(97);
        let sent = 0;
        return new Response(
          new ReadableStream<Uint8Array>({
            pull(c) {
              if (sent >= 64) return c.close();
              sent++;
              c.enqueue(chunk);
            },
            cancel() {
              cancelled.push(tag);
            },
          }),
        );
      }
      default:
        return new Response("nope", { status: 404 });
    }
  };
  await both(handler, async (p) => {
    const fetchBody = async (port: number, path: string): Promise<string> => {
      const client = Deno.createHttpClient({});
      try {
        const r = await fetch(`http://127.0.0.1:${port}${path}`, { client });
        return await r.text();
      } finally {
        client.close();
      }
    };

    await t.step("a stream that errors midway: the client sees an error, not a complete body", async () => {
      for (const path of ["/error-midway", "/error-midway-length"]) {
        const original = console.error;
        console.error = () => {};
        try {
          await assert.rejects(fetchBody(p.theirs, path), `Deno.serve ${path}`);
          await assert.rejects(fetchBody(p.ours, path), `serve() ${path}`);
        } finally {
          console.error = original;
        }
        // On the wire: the chunks sent, then the connection ends without the last chunk.
        const req = `GET ${path} HTTP/1.1\r\nHost: t\r\n\r\n`;
        const [theirs] = parseWire(await raw(p.theirs, req));
        const [ours] = parseWire(await raw(p.ours, req));
        assert.equal(theirs.complete, false);
        assert.deepEqual(essence(ours), essence(theirs), path);
      }
    });

    for (const path of ["/slow", "/quiet"]) {
      await t.step(
        `a slow stream (${path}): the head and each chunk reach the client before the next is made`,
        async () => {
          for (const port of [p.theirs, p.ours]) {
            const client = Deno.createHttpClient({});
            try {
              const res = await within(fetch(`http://127.0.0.1:${port}${path}`, { client }), "the head");
              assert.equal(res.headers.get("content-type"), "text/event-stream");
              const reader = res.body!.getReader();
              let text = "";
              if (path === "/slow") {
                while (!text.includes("first")) {
                  const r = await within(reader.read(), "the first chunk");
                  assert.ok(!r.done);
                  text += new TextDecoder().decode(r.value);
                }
              }
              await waitFor(() => release !== null);
              release!();
              release = null;
              for (;;) {
                const r = await within(reader.read(), "the rest");
                if (r.done) break;
                text += new TextDecoder().decode(r.value);
              }
              assert.equal(text, path === "/slow" ? "data: first\n\ndata: second\n\n" : "data: late\n\n");
            } finally {
              client.close();
            }
          }
        },
      );
    }

    for (const path of ["/endless", "/endless-quiet", "/endless-silent", "/big"]) {
      await t.step({
        name: `a stream (${path}) is cancelled when the client disconnects`,
        // A stream with nothing to write learns that the client closed from its FIN: serve() runs the engine with
        // `halfClose: false`, so the FIN drops the exchange, as Deno.serve does.
        fn: async () => {
          for (const [name, port] of [["theirs", p.theirs], ["ours", p.ours]] as const) {
            const tag = `${name}${path}`;
            const conn = await Deno.connect({ hostname: "127.0.0.1", port });
            await conn.write(bytes(`GET ${path} HTTP/1.1\r\nHost: t\r\nx-tag: ${tag}\r\n\r\n`));
            const buf = new Uint8Array(1024);
            const n = await within(conn.read(buf), `${tag}: the head`);
            assert.ok(n !== null && latin1.decode(buf.subarray(0, n)).startsWith("HTTP/1.1 200"), tag);
            conn.close();
            await waitFor(() => cancelled.includes(tag), `${tag}: cancel() of the underlying source`);
          }
        },
      });
    }
  });
});

Deno.test("`serve()` vs `Deno.serve`: disconnects, errors and the server's life", async (t) => {
  const aborted: string[] = [];
  const errors: unknown[] = [];
  const handler = async (req: Request): Promise<Response> => {
    const path = new URL(req.url).pathname;
    const tag = req.headers.get("x-tag") ?? "";
    switch (path) {
      case "/wait-abort": {
        const reason = await new Promise<unknown>((resolve) => {
          if (req.signal.aborted) resolve(req.signal.reason);
          req.signal.addEventListener("abort", () => resolve(req.signal.reason), { once: true });
        });
        aborted.push(`${tag}:${reason instanceof Error ? reason.name : typeof reason}`);
        return new Response("late");
      }
      case "/throw-sync":
        (() => {
          throw new Error("thrown on purpose");
        })();
        return new Response("unreachable");
      case "/reject":
        await new Promise((r) => setTimeout(r, 1));
        throw new Error("rejected on purpose");
      case "/not-a-response":
        return "text" as unknown as Response;
      default:
        return new Response("ok");
    }
  };
  const sync = (req: Request): Response => {
    if (new URL(req.url).pathname === "/throw") throw new Error("thrown on purpose");
    return new Response("ok");
  };

  await t.step({
    name: "req.signal aborts when the client disconnects while the handler works on a complete request",
    // A stream with nothing to write learns that the client closed from its FIN: serve() runs the engine with
    // `halfClose: false`, so the FIN drops the exchange, as Deno.serve does.
    fn: async () => {
      await both(handler, async (p) => {
        for (const [name, port] of [["theirs", p.theirs], ["ours", p.ours]] as const) {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port });
          await conn.write(bytes(`GET /wait-abort HTTP/1.1\r\nHost: t\r\nx-tag: ${name}\r\n\r\n`));
          await new Promise((r) => setTimeout(r, 50));
          conn.close();
          await waitFor(() => aborted.some((a) => a.startsWith(`${name}:`)), `${name}: req.signal aborted`);
        }
      });
    },
  });

  await t.step(
    "req.signal aborts (an AbortError) when the client disconnects in the middle of its request",
    async () => {
      aborted.length = 0;
      await both(handler, async (p) => {
        // (Deno.serve does not notice here: it aborts nothing until the handler reads the body.)
        for (const [name, port] of [["ours", p.ours]] as const) {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port });
          await conn.write(
            bytes(`POST /wait-abort HTTP/1.1\r\nHost: t\r\nx-tag: ${name}\r\nContent-Length: 10\r\n\r\nab`),
          );
          await new Promise((r) => setTimeout(r, 50));
          conn.close();
          await waitFor(() => aborted.some((a) => a.startsWith(`${name}:`)), `${name}: req.signal aborted`);
        }
        assert.deepEqual(aborted.map((a) => a.split(":")[1]), ["AbortError"]);
      });
    },
  );

  await t.step("a handler that throws or rejects: 500, logged once, the connection still works", async () => {
    const original = console.error;
    const logged: unknown[][] = [];
    console.error = (...args: unknown[]) => logged.push(args);
    try {
      await both(handler, async (p) => {
        for (const path of ["/throw-sync", "/reject", "/not-a-response"]) {
          const req = `GET ${path} HTTP/1.1\r\nHost: t\r\n\r\nGET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`;
          const theirs = parseWire(await raw(p.theirs, req));
          logged.length = 0;
          const ours = parseWire(await raw(p.ours, req));
          assert.equal(logged.length, 1, `${path}: logged once`);
          assert.deepEqual(ours.map((w) => [w.statusLine, w.body]), theirs.map((w) => [w.statusLine, w.body]), path);
        }
      });
    } finally {
      console.error = original;
    }
  });

  await t.step("onError's Response (sync or async) answers; it is called once with the error", async () => {
    for (const async of [false, true]) {
      errors.length = 0;
      const onError = (err: unknown) => {
        errors.push(err);
        const r = new Response(`sorry: ${(err as Error).message}`, { status: 503, headers: { "x-e": "1" } });
        return async ? Promise.resolve(r) : r;
      };
      await both(handler, async (p) => {
        for (const path of ["/throw-sync", "/reject"]) {
          const { ours, theirs } = await getBoth(p, path);
          assert.deepEqual(essence(ours), essence(theirs), path);
        }
      }, { ours: { onError }, theirs: { onError } });
      assert.equal(errors.length, 4);
    }
    await both(sync, async (p) => {
      const { ours, theirs } = await getBoth(p, "/throw");
      assert.deepEqual([ours.statusLine, ours.body], [theirs.statusLine, theirs.body]);
    }, {
      ours: { onError: () => new Response("e", { status: 500 }) },
      theirs: { onError: () => new Response("e", { status: 500 }) },
    });
  });

  await t.step("onListen gets { hostname, port, transport }, as Deno.serve's", async () => {
    let ours: Record<string, unknown> = {};
    let theirs: Record<string, unknown> = {};
    await both(sync, (p) => {
      assert.equal(ours.port, p.ours);
      assert.equal(theirs.port, p.theirs);
      return Promise.resolve();
    }, { ours: { onListen: (a) => ours = { ...a } }, theirs: { onListen: (a) => theirs = { ...a } } });
    assert.deepEqual(Object.keys(ours).sort(), Object.keys(theirs).sort());
    assert.deepEqual({ ...ours, port: 0 }, { ...theirs, port: 0 });
  });

  await t.step(
    "shutdown() waits for a request in flight, then refuses; finished resolves; signal shuts down",
    async () => {
      await assertNoFdLeak(async () => {
        const reactor = new Reactor();
        const running = reactor.run();
        let answer: (() => void) | null = null;
        const slow = async () => {
          await new Promise<void>((r) => answer = r);
          return new Response("finished late");
        };
        const ac = new AbortController();
        const ours = serve({ port: 0, hostname: "127.0.0.1", reactor, signal: ac.signal, onListen() {} }, slow);
        const theirs = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, slow);
        try {
          for (
            const [name, s, stop] of [
              ["theirs", theirs, () => theirs.shutdown()],
              ["ours", ours, () => ours.shutdown()],
            ] as const
          ) {
            answer = null;
            const pending = raw(s.addr.port, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            await waitFor(() => answer !== null, `${name}: the handler runs`);
            let done = false;
            const stopped = stop().then(() => done = true);
            await new Promise((r) => setTimeout(r, 50));
            assert.equal(done, false, `${name}: shutdown() waits for the request in flight`);
            answer!();
            const [w] = parseWire(await pending);
            assert.equal(w?.body, "finished late", name);
            await within(stopped, `${name}: shutdown()`);
            await within(s.finished, `${name}: finished`);
            await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: s.addr.port }), name);
          }
        } finally {
          await theirs.shutdown().catch(() => {});
          await theirs.finished;
          ac.abort(); // after shutdown(): harmless
          await ours.finished;
          reactor.stop();
          await running;
          for (let i = 0; i < 3; i++) reactor.runOnce(0);
          reactor.close();
        }
      });
    },
  );
});

/** `p`, or a failure naming `what` after a few seconds (a hang is a failure, not a stuck test). */
async function within<T>(p: Promise<T>, what: string, ms = 3000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function waitFor(cond: () => boolean, what = "a condition", ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
