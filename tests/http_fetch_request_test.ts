/**
 * The `Request` that `serve()` hands to fetch handlers (http/fetch_request.ts):
 * read lazily from the parsed head, and a real `Request` to any code that
 * looks, including Deno's own (`new Request(req)`, `req.clone()`, the body
 * methods), and still right after the handler returned and the read buffer
 * was reused.
 */

import assert from "node:assert/strict";
import { serve } from "../http/mod.ts";
import { close, send } from "../ffi/mod.ts";
import { fetchText, rawRequest } from "./_http.ts";
import { resettingClient } from "./_net.ts";

type Handler = (req: Request) => Response | Promise<Response>;

async function withServer(handler: Handler, fn: (base: string, port: number) => Promise<void>): Promise<void> {
  const s = serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, handler);
  try {
    await fn(`http://127.0.0.1:${s.addr.port}`, s.addr.port);
  } finally {
    await s.shutdown();
  }
}

Deno.test("a served request is a Request: instanceof, toStringTag, method, url, headers", async () => {
  let seen: unknown[] = [];
  await withServer((req) => {
    seen = [
      req instanceof Request,
      Object.prototype.toString.call(req),
      req.method,
      req.url,
      req.headers.get("x-one"),
      req.headers.get("host"),
      req.body,
      req.bodyUsed,
      req.redirect,
      req.cache,
    ];
    return new Response("ok");
  }, async (base, port) => {
    assert.equal((await fetchText(`${base}/a/b?c=d`, { headers: { "x-one": "1" } })).text, "ok");
    assert.deepEqual(seen, [
      true,
      "[object Request]",
      "GET",
      `http://127.0.0.1:${port}/a/b?c=d`,
      "1",
      `127.0.0.1:${port}`,
      null,
      false,
      "follow",
      "default",
    ]);
  });
});

Deno.test("a request kept past its handler still reads its own URL and headers after later requests reused the buffer", async () => {
  const kept: Request[] = [];
  await withServer((req) => {
    kept.push(req);
    return new Response("ok");
  }, async (base) => {
    for (let i = 0; i < 5; i++) await fetchText(`${base}/n/${i}`, { headers: { "x-i": String(i).repeat(i + 1) } });
  });
  assert.deepEqual(
    kept.map((r) => [new URL(r.url).pathname, r.headers.get("x-i")]),
    [0, 1, 2, 3, 4].map((i) => [`/n/${i}`, String(i).repeat(i + 1)]),
  );
  // Made real only now (clone()), from what seal() kept.
  assert.deepEqual(
    kept.map((r) => new URL(r.clone().url).pathname),
    [0, 1, 2, 3, 4].map((i) => `/n/${i}`),
  );
});

Deno.test("each served request gets the URL of its own Host and target, when they repeat and when they alternate", async () => {
  // serve() reuses the last URL it built while the host and target stay the same: a change of either must show.
  const urls: string[] = [];
  const sent = [
    ["a.test", "/x"],
    ["a.test", "/x"],
    ["a.test", "/y"],
    ["b.test:8080", "/y"],
    ["b.test:8080", "/y?q=1"],
    ["a.test", "/x"],
    ["b.test:8080", "*"],
  ];
  await withServer((req) => {
    urls.push(req.url);
    return new Response("ok");
  }, async (_base, port) => {
    const wire = sent.map(([host, target]) =>
      `${target === "*" ? "OPTIONS" : "GET"} ${target} HTTP/1.1\r\nHost: ${host}\r\n\r\n`
    ).join("");
    const res = await rawRequest(port, wire, { until: (text) => text.split("HTTP/1.1 200").length > sent.length });
    assert.equal(res.text.split("HTTP/1.1 200").length - 1, sent.length, res.text);
  });
  assert.deepEqual(urls, [
    "http://a.test/x",
    "http://a.test/x",
    "http://a.test/y",
    "http://b.test:8080/y",
    "http://b.test:8080/y?q=1",
    "http://a.test/x",
    "http://b.test:8080/",
  ]);
});

Deno.test("Deno's own code takes a served request: new Request(req), req.clone(), and a header set before that", async () => {
  let copies: unknown[] = [];
  await withServer((req) => {
    req.headers.set("x-added", "yes");
    const copy = new Request(req);
    const clone = req.clone();
    copies = [copy.url, copy.method, copy.headers.get("x-added"), clone.url, clone.headers.get("x-h")];
    return new Response("ok");
  }, async (base) => {
    await fetchText(`${base}/copy`, { headers: { "x-h": "v" } });
    assert.deepEqual(copies, [`${base}/copy`, "GET", "yes", `${base}/copy`, "v"]);
  });
});

Deno.test("a served request's body reads through text(), json(), formData(), arrayBuffer() and the stream", async () => {
  await withServer(async (req) => {
    const path = new URL(req.url).pathname;
    const before = req.bodyUsed;
    let out: unknown;
    if (path === "/text") out = await req.text();
    else if (path === "/json") out = (await req.json()).a;
    else if (path === "/form") out = (await req.formData()).get("k");
    else if (path === "/bytes") out = (await req.arrayBuffer()).byteLength;
    else out = (await new Response(req.body).text()).length;
    return Response.json({ out, before, after: req.bodyUsed });
  }, async (base) => {
    const post = async (path: string, body: BodyInit, type = "text/plain") =>
      JSON.parse((await fetchText(base + path, { method: "POST", body, headers: { "content-type": type } })).text);
    assert.deepEqual(await post("/text", "hello"), { out: "hello", before: false, after: true });
    assert.deepEqual(await post("/json", '{"a":7}', "application/json"), { out: 7, before: false, after: true });
    assert.deepEqual(await post("/form", "k=v%20w", "application/x-www-form-urlencoded"), {
      out: "v w",
      before: false,
      after: true,
    });
    assert.deepEqual(await post("/bytes", new Uint8Array(100_000)), { out: 100_000, before: false, after: true });
    assert.deepEqual(await post("/stream", "s".repeat(70_000)), { out: 70_000, before: false, after: true });
  });
});

Deno.test("a served request's signal aborts when the client resets the connection before the response", async () => {
  let aborted: () => void;
  const abortSeen = new Promise<void>((resolve) => aborted = resolve);
  let signal: AbortSignal | undefined;
  let asked: () => void;
  const handlerRan = new Promise<void>((resolve) => asked = resolve);
  await withServer((req) => {
    signal = req.signal;
    req.signal.addEventListener("abort", () => aborted());
    asked();
    return new Promise<Response>(() => {}); // never answers
  }, async (_base, port) => {
    const fd = await resettingClient(port);
    try {
      const wire = new TextEncoder().encode("GET /hang HTTP/1.1\r\nHost: x\r\n\r\n");
      assert.equal(send(fd, wire, wire.byteLength), wire.byteLength);
      await handlerRan;
    } finally {
      close(fd); // SO_LINGER 0: an RST
    }
    await abortSeen;
    assert.equal(signal?.aborted, true);
  });
});

Deno.test("an HTTP/1.0 request without Host gets the server's hostname in its URL", async () => {
  let url = "";
  await withServer((req) => {
    url = req.url;
    return new Response("ok");
  }, async (_base, port) => {
    const r = await rawRequest(port, "GET /old HTTP/1.0\r\n\r\n");
    assert.match(r.text, /^HTTP\/1\.0 200/);
    assert.equal(url, "http://127.0.0.1/old");
  });
});

Deno.test("`new req.constructor(url, init)` makes a Request, as from Deno.serve's request", async () => {
  let made: unknown;
  await withServer((req) => {
    const ctor = req.constructor as typeof Request;
    made = new ctor(req.url, { method: "POST", body: "b" });
    return new Response("ok");
  }, async (base) => {
    await fetchText(`${base}/c`);
    assert.ok(made instanceof Request);
    assert.equal((made as Request).method, "POST");
  });
});

Deno.test("a request whose Host the URL parser refuses still reads its body", async () => {
  let got = "";
  await withServer(async (req) => {
    got = await req.text();
    return new Response("ok");
  }, async (_base, port) => {
    const r = await rawRequest(
      port,
      "POST /p HTTP/1.1\r\nHost: a:99999\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert.match(r.text, /^HTTP\/1\.1 200/);
    assert.equal(got, "hello");
  });
});

Deno.test("a request kept past its response says its body is gone instead of handing back part of it", async () => {
  let kept: Request | undefined;
  await withServer((req) => {
    kept = req;
    return new Response("answered before the body"); // the rest of the body is discarded
  }, async (base) => {
    const r = await fetchText(`${base}/late`, { method: "POST", body: "z".repeat(300_000) });
    assert.equal(r.status, 200);
    await assert.rejects(kept!.text(), (err: Error) => err instanceof TypeError && /Request closed/.test(err.message));
  });
});
