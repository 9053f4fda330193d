/**
 * The seeds' HTTP servers (one per backend: `--backend epoll|poll|select`) in
 * one program, with the same routes under both of fdloop's handler APIs:
 *
 *   deno run --allow-ffi examples/http_server.ts --port 8000 [--api raw|fetch] [--sync]
 *   curl http://127.0.0.1:8000/
 *
 * - `GET /` → `Hello, World!` (text/plain)
 * - `GET /sleep?ms=N` → `OK` after N ms from a reactor timer; other clients go on meanwhile
 * - `POST /echo` → the request body, streamed back (chunked or not, up to 8 MiB)
 * - `GET /json` → `{"code":200,"msg":"success"}`
 * - `GET /page` → a small HTML page
 * - anything else → 404
 *
 * `--api raw` (the default) answers through `listenHttp()`: method and path
 * are read lazily from the parsed bytes and the fast routes write a header
 * block built once (`PreparedHeaders`). `--api fetch` is the same server as
 * `serve()` with a `(req: Request) => Response` handler, the shape of
 * `Deno.serve`. `--sync` (raw only) runs the blocking `runSync()` loop.
 *
 * Prints `listening on HOST:PORT` once it accepts, serves until SIGINT or
 * SIGTERM, then stops accepting, closes idle connections, lets requests in
 * flight finish (for up to 2 s, or until a second SIGINT/SIGTERM), prints a
 * summary line and exits 0.
 *
 * @module
 */

import {
  formatAddress,
  type HttpRequest,
  type HttpResponse,
  type HttpServer,
  listenHttp,
  PreparedHeaders,
  Reactor,
  serve,
} from "../mod.ts";
import {
  backendFlag,
  catchSignals,
  LOOP_FLAGS,
  onNextSignal,
  openOrExit,
  parseFlags,
  portFlag,
  runUntilSignal,
} from "./_cli.ts";

const flags = parseFlags("Usage: deno run --allow-ffi examples/http_server.ts [options]", {
  host: { type: "string", default: "127.0.0.1", help: "Address to listen on" },
  port: { type: "string", default: "8000", help: "Port (0 = pick a free port)" },
  api: { type: "string", default: "raw", help: "Handler API: raw (listenHttp) or fetch (serve)" },
  ...LOOP_FLAGS,
  sync: { type: "boolean", help: "Use the blocking runSync() loop (needs --api raw)" },
});

if (flags.api !== "raw" && flags.api !== "fetch") {
  console.error(`Unknown API ${JSON.stringify(flags.api)}: use raw or fetch`);
  Deno.exit(2);
}
if (flags.api === "fetch" && flags.sync) {
  // A fetch handler answers through promises (reading a Response body is async),
  // and promises do not run while runSync() blocks the thread.
  console.error("--sync needs --api raw: fetch handlers answer through promises, which runSync() does not run");
  Deno.exit(2);
}

/** How long a graceful shutdown waits for requests in flight. */
const SHUTDOWN_GRACE_MS = 2000;
/** The longest `/sleep` accepted. */
const MAX_SLEEP_MS = 60_000;

const HELLO = "Hello, World!";
const JSON_BODY = '{"code":200,"msg":"success"}';
const PAGE = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fdloop</title>
</head>
<body>
<h1>Hello from fdloop</h1>
<p>This page was served by an HTTP/1.1 server running on a reactor that talks to the kernel through FFI.</p>
</body>
</html>
`;
const TYPE_TEXT = "text/plain; charset=utf-8";
const TYPE_JSON = "application/json";
const TYPE_HTML = "text/html; charset=utf-8";
const TYPE_BYTES = "application/octet-stream";

/** `ms` of `/sleep?ms=N`: an integer from 0 to MAX_SLEEP_MS, or -1. */
function sleepMs(query: string): number {
  const text = new URLSearchParams(query).get("ms") ?? "";
  const ms = Number(text);
  return /^\d+$/.test(text) && ms <= MAX_SLEEP_MS ? ms : -1;
}
const BAD_SLEEP = `/sleep takes ?ms=N with N an integer from 0 to ${MAX_SLEEP_MS}\n`;

const reactor = new Reactor({ backend: backendFlag(flags.backend) });
const port = portFlag(flags.port);
let requests = 0;

// ---------------------------------------------------------------- --api raw

const encoder = new TextEncoder();
// Built once: the fast routes write these bytes as they are.
const H_TEXT = new PreparedHeaders({ "content-type": TYPE_TEXT });
const H_JSON = new PreparedHeaders({ "content-type": TYPE_JSON });
const H_HTML = new PreparedHeaders({ "content-type": TYPE_HTML });
const H_BYTES = new PreparedHeaders({ "content-type": TYPE_BYTES });
const B_HELLO = encoder.encode(HELLO);
const B_JSON = encoder.encode(JSON_BODY);
const B_PAGE = encoder.encode(PAGE);
const B_OK = encoder.encode("OK");
const B_NOT_FOUND = encoder.encode("Not Found\n");

function rawHandler(req: HttpRequest, res: HttpResponse): void {
  requests++;
  const method = req.method;
  const path = req.path;
  if (method === "GET" || method === "HEAD") {
    switch (path) {
      case "/":
        res.setHeaders(H_TEXT).end(B_HELLO);
        return;
      case "/json":
        res.setHeaders(H_JSON).end(B_JSON);
        return;
      case "/page":
        res.setHeaders(H_HTML).end(B_PAGE);
        return;
      case "/sleep": {
        const ms = sleepMs(req.query);
        if (ms < 0) {
          res.status = 400;
          res.setHeaders(H_TEXT).end(BAD_SLEEP);
          return;
        }
        // The answer comes from a reactor timer: this handler returns at once and the loop serves others.
        const timer = reactor.callLater(ms, () => res.setHeaders(H_TEXT).end(B_OK));
        res.onAbort(() => timer.cancel());
        return;
      }
    }
  } else if (method === "POST" && path === "/echo") {
    res.setHeaders(H_BYTES);
    // A Content-Length body goes back with the same length; a chunked one, chunked.
    if (req.contentLength >= 0) res.setHeader("content-length", String(req.contentLength));
    if (!req.hasBody) {
      res.end();
      return;
    }
    // Each piece goes out as it arrives (write() copies what it cannot send at once).
    req.readBody((chunk) => res.write(chunk), () => res.end());
    return;
  }
  res.status = 404;
  res.setHeaders(H_TEXT).end(B_NOT_FOUND);
}

// ---------------------------------------------------------------- --api fetch

/** The path and query of an absolute URL, without building a `URL` (as a router would: `new URL()` costs ~1 µs). */
function splitUrl(url: string): { path: string; query: string } {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return { path: "/", query: "" };
  const q = url.indexOf("?", start);
  return q < 0 ? { path: url.slice(start), query: "" } : { path: url.slice(start, q), query: url.slice(q + 1) };
}

function fetchHandler(req: Request): Response | Promise<Response> {
  requests++;
  const { path, query } = splitUrl(req.url);
  const method = req.method;
  if (method === "GET" || method === "HEAD") {
    switch (path) {
      case "/":
        return new Response(HELLO, { headers: { "content-type": TYPE_TEXT } });
      case "/json":
        return new Response(JSON_BODY, { headers: { "content-type": TYPE_JSON } });
      case "/page":
        return new Response(PAGE, { headers: { "content-type": TYPE_HTML } });
      case "/sleep": {
        const ms = sleepMs(query);
        if (ms < 0) return new Response(BAD_SLEEP, { status: 400, headers: { "content-type": TYPE_TEXT } });
        return new Promise((resolve) => {
          reactor.callLater(ms, () => resolve(new Response("OK", { headers: { "content-type": TYPE_TEXT } })));
        });
      }
    }
  } else if (method === "POST" && path === "/echo") {
    // The request body stream becomes the response body: streamed back, chunked.
    return new Response(req.body, { headers: { "content-type": TYPE_BYTES } });
  }
  return new Response("Not Found\n", { status: 404, headers: { "content-type": TYPE_TEXT } });
}

// ---------------------------------------------------------------- serving

const server: HttpServer = openOrExit(
  "http_server",
  () =>
    flags.api === "raw"
      ? listenHttp({ host: flags.host, port, reactor }, rawHandler)
      : serve({ reactor, hostname: flags.host, port, onListen() {} }, fetchHandler).server,
);
// The bound address, not --host as typed (`[::1]` must not become `[[::1]]`).
catchSignals(); // before the line a script waits for: a signal sent at once must not kill us
console.log(`listening on ${formatAddress(server.address)}`);

await runUntilSignal(reactor, flags.sync, () => {
  // Stop accepting and close idle keep-alive connections now; requests in flight may finish.
  void server.shutdown(SHUTDOWN_GRACE_MS);
});
if (server.connectionCount > 0) {
  // Drain what is still in flight (bounded by the grace period), cooperatively in both modes.
  // A second SIGINT/SIGTERM stops waiting: what is left is closed on the next turn.
  onNextSignal(() => void server.shutdown(0));
  void server.finished.then(() => reactor.stop());
  await reactor.run();
  onNextSignal(undefined);
}
console.log(
  `http_server: served ${requests} requests (${reactor.selector.name}, --api ${flags.api}${
    flags.sync ? ", sync" : ""
  })`,
);
reactor.close();
