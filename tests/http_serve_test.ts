/**
 * `serve()`: the `Deno.serve` shape on fdloop's engine. The same fetch
 * handler is run by both and must answer the same; the overloads, `onListen`,
 * `signal`, `onError`, streaming both ways and `info.remoteAddr`.
 */

import assert from "node:assert/strict";
import { plainResponse, usePlainResponses } from "../http/deno_response.ts";
import { serve } from "../http/mod.ts";
import { fetchText, parseResponses, rawRequest } from "./_http.ts";

/** A handler written for Deno.serve, with nothing fdloop-specific in it. */
const app = async (req: Request, info: { remoteAddr: { hostname: string } }): Promise<Response> => {
  const url = new URL(req.url);
  switch (url.pathname) {
    case "/":
      return new Response("Hello, World!");
    case "/json":
      return Response.json({ code: 200, msg: "success", method: req.method, q: url.searchParams.get("q") });
    case "/echo":
      return new Response(await req.arrayBuffer(), { headers: { "x-len": req.headers.get("content-length") ?? "-" } });
    case "/who":
      return new Response(info.remoteAddr.hostname);
    case "/stream": {
      let i = 0;
      return new Response(
        new ReadableStream({
          pull(c) {
            if (i === 50) return c.close();
            c.enqueue(new TextEncoder().encode(`${i++},`));
          },
        }),
        { headers: { "content-type": "text/plain" } },
      );
    }
    case "/status":
      return new Response(null, { status: 204, headers: { "x-a": "b" } });
    case "/throw":
      throw new Error("on purpose");
    default:
      return new Response("nope", { status: 404 });
  }
};

const CASES: [string, RequestInit?][] = [
  ["/"],
  ["/json?q=1"],
  ["/echo", { method: "POST", body: "x".repeat(70_000) }],
  ["/who"],
  ["/stream"],
  ["/status"],
  ["/missing"],
];

async function answers(base: string): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const [path, init] of CASES) {
    const r = await fetchText(base + path, init);
    out.push([path, r.status, r.text, r.headers.get("content-type"), r.headers.get("x-len"), r.headers.get("x-a")]);
  }
  return out;
}

Deno.test("`serve()` answers a Deno.serve handler exactly as Deno.serve does", async () => {
  const ours = serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, app);
  const ac = new AbortController();
  const theirs = Deno.serve({ port: 0, hostname: "127.0.0.1", signal: ac.signal, onListen() {} }, app);
  try {
    assert.deepEqual(
      await answers(`http://127.0.0.1:${ours.addr.port}`),
      await answers(`http://127.0.0.1:${theirs.addr.port}`),
    );
  } finally {
    await ours.shutdown();
    ac.abort();
    await theirs.finished;
  }
});

Deno.test("`serve()` overloads: serve(handler), serve(options, handler), serve({ handler }); onListen gets the address", async () => {
  const seen: { hostname: string; port: number }[] = [];
  const a = serve({
    port: 0,
    hostname: "127.0.0.1",
    onListen: (addr) => seen.push(addr),
    handler: () => new Response("a"),
  });
  const b = serve({ port: 0, hostname: "127.0.0.1", onListen: (addr) => seen.push(addr) }, () => new Response("b"));
  try {
    assert.equal((await fetchText(`http://127.0.0.1:${a.addr.port}/`)).text, "a");
    assert.equal((await fetchText(`http://127.0.0.1:${b.addr.port}/`)).text, "b");
    assert.deepEqual(seen.map((x) => x.port), [a.addr.port, b.addr.port]);
    assert.equal(a.addr.hostname, "127.0.0.1");
  } finally {
    await a.shutdown();
    await b.shutdown();
  }
  assert.throws(() => serve({ port: 0 } as never), TypeError);
});

Deno.test("`serve()` with a signal shuts down when it aborts, and finished resolves", async () => {
  const ac = new AbortController();
  const s = serve({ port: 0, hostname: "127.0.0.1", signal: ac.signal, onListen() {} }, () => new Response("x"));
  assert.equal((await fetchText(`http://127.0.0.1:${s.addr.port}/`)).text, "x");
  ac.abort();
  await s.finished;
  await assert.rejects(fetchText(`http://127.0.0.1:${s.addr.port}/`));
});

Deno.test("`serve()` onError makes the response for a handler that throws or rejects; the default is a 500", async () => {
  const errors: unknown[] = [];
  const custom = serve({
    port: 0,
    hostname: "127.0.0.1",
    onListen() {},
    onError: (err) => {
      errors.push(err);
      return new Response("sorry", { status: 503 });
    },
  }, app);
  const original = console.error;
  const logged: unknown[] = [];
  console.error = (...args: unknown[]) => logged.push(args);
  const plain = serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async () => {
    await Promise.resolve();
    throw new Error("rejected on purpose");
  });
  try {
    const r = await fetchText(`http://127.0.0.1:${custom.addr.port}/throw`);
    assert.deepEqual([r.status, r.text], [503, "sorry"]);
    assert.equal(errors.length, 1);
    const p = await fetchText(`http://127.0.0.1:${plain.addr.port}/`);
    assert.equal(p.status, 500);
    assert.equal(logged.length, 1, "the failure is logged once");
  } finally {
    console.error = original;
    await custom.shutdown();
    await plain.shutdown();
  }
});

Deno.test("`serve()` streams a large response with backpressure to a slow reader, intact", async () => {
  const total = 8 * 1024 * 1024;
  const chunk = new Uint8Array(64 * 1024).map((_, i) => i & 0xff);
  const s = serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, () => {
    let sent = 0;
    return new Response(
      new ReadableStream<Uint8Array>({
        pull(c) {
          if (sent >= total) return c.close();
          c.enqueue(chunk);
          sent += chunk.length;
        },
      }),
    );
  });
  try {
    const client = Deno.createHttpClient({});
    try {
      const res = await fetch(`http://127.0.0.1:${s.addr.port}/`, { client });
      const reader = res.body!.getReader();
      let got = 0;
      let bad = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        for (let i = 0; i < value.length; i++) if (value[i] !== ((got + i) % chunk.length & 0xff)) bad++;
        got += value.length;
        if (got < 1024 * 1024) await new Promise((r) => setTimeout(r, 1)); // slow at first
      }
      assert.equal(got, total);
      assert.equal(bad, 0);
    } finally {
      client.close();
    }
  } finally {
    await s.shutdown();
  }
});

/** Responses of every shape, returned at once (the path that writes before the handler's caller returns). */
function shapes(req: Request): Response {
  const path = req.url.slice(req.url.indexOf("/", 8));
  switch (path) {
    case "/text":
      return new Response("plain text");
    case "/typed":
      return new Response("<p>hi</p>", { headers: { "content-type": "text/html; charset=utf-8" } });
    case "/bytes":
      return new Response(new Uint8Array([104, 105]));
    case "/json":
      return Response.json({ a: [1, 2] });
    case "/created":
      return new Response("made", { status: 201, headers: { "content-type": "text/plain" } });
    case "/headers": {
      const r = new Response("h");
      r.headers.set("x-a", "1");
      return r;
    }
    case "/empty":
      return new Response(null, { status: 204 });
    case "/blank":
      return new Response("");
    case "/used": {
      const r = new Response("already read");
      void r.text();
      return r;
    }
    default:
      return new Response("nope", { status: 404 });
  }
}
const SHAPES = ["/text", "/typed", "/bytes", "/json", "/created", "/headers", "/empty", "/blank", "/used", "/x"];

async function shapeAnswers(base: string): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const path of SHAPES) {
    const r = await fetchText(base + path);
    out.push([
      path,
      r.status,
      r.status === 500 ? "(500)" : r.text,
      r.headers.get("content-type"),
      r.headers.get("x-a"),
    ]);
  }
  return out;
}

Deno.test("`serve()` writes every shape of Response as Deno.serve does, with and without Deno's plain-response fields", async () => {
  const original = console.error;
  console.error = () => {}; // the /used case logs its 500
  const ac = new AbortController();
  const theirs = Deno.serve(
    {
      port: 0,
      hostname: "127.0.0.1",
      signal: ac.signal,
      onListen() {},
      onError: () => new Response("", { status: 500 }),
    },
    shapes,
  );
  const ours = serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, shapes);
  try {
    const expected = await shapeAnswers(`http://127.0.0.1:${theirs.addr.port}`);
    assert.ok(plainResponse(new Response("probe")) !== null, "this Deno keeps the plain-response fields");
    assert.deepEqual(await shapeAnswers(`http://127.0.0.1:${ours.addr.port}`), expected);
    usePlainResponses(false);
    assert.equal(plainResponse(new Response("probe")), null);
    assert.deepEqual(await shapeAnswers(`http://127.0.0.1:${ours.addr.port}`), expected);
  } finally {
    usePlainResponses(true);
    console.error = original;
    await ours.shutdown();
    ac.abort();
    await theirs.finished;
  }
});

Deno.test("`serve()` answers 500 and keeps serving when a response cannot be written, sync or async", async () => {
  const original = console.error;
  console.error = () => {};
  const s = serve({
    port: 0,
    hostname: "127.0.0.1",
    onListen() {},
    onError: (() => {}) as unknown as () => Response, // returns nothing: not a Response either
  }, async (req) => {
    const path = new URL(req.url).pathname;
    await Promise.resolve();
    switch (path) {
      case "/latin1": // Deno accepts a Latin-1 header value; the engine sends only ASCII
        return new Response("x", { headers: { "content-type": "text/plain; name=café" } });
      case "/error":
        return Response.error(); // status 0
      case "/broken": // its Content-Length must not frame the 500
        return new Response(new ReadableStream({ pull: (c) => c.error(new Error("broken on purpose")) }), {
          headers: { "content-length": "5" },
        });
      case "/throw":
        throw new Error("thrown on purpose");
      default:
        return new Response("ok");
    }
  });
  try {
    for (const path of ["/latin1", "/error", "/broken", "/throw"]) {
      // Two requests on one connection: the 500 is framed right and the connection still works.
      const r = await rawRequest(
        s.addr.port,
        `GET ${path} HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n`,
        {
          until: (text) => text.endsWith("\r\n\r\nok"),
        },
      );
      const [first, second] = parseResponses(r.text);
      assert.equal(first?.status, 500, path);
      assert.equal(first.headers.get("content-length"), String(first.body.length), `${path}: framed by its own body`);
      assert.deepEqual([second?.status, second?.body], [200, "ok"], `${path}: the next request is answered`);
    }
  } finally {
    console.error = original;
    await s.shutdown();
  }
});
