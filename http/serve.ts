/**
 * `serve()`: the shape of `Deno.serve`, on fdloop's HTTP engine. A fetch
 * handler (`(req: Request, info) => Response | Promise<Response>`) written
 * for `Deno.serve`, or an app's `fetch` (Hono's `app.fetch`), runs by
 * changing only the import.
 *
 * @module
 */

import { defaultReactor } from "../net/mod.ts";
import { holdRunning } from "../net/default_reactor.ts";
import type { Reactor } from "../reactor/mod.ts";
import { type HttpRequest, type HttpResponse, HttpServer, type HttpServerOptions } from "./server.ts";

/** What the handler learns about the connection (as `Deno.ServeHandlerInfo`). */
export interface ServeHandlerInfo {
  /** The client's address. */
  readonly remoteAddr: { transport: "tcp"; hostname: string; port: number };
  /** Resolves when the response has been handed to the connection (or the client went away). */
  readonly completed: Promise<void>;
}

/** A fetch handler. */
export type ServeHandler = (request: Request, info: ServeHandlerInfo) => Response | Promise<Response>;

/** Options of {@linkcode serve}: `Deno.serve`'s, where they apply, and the engine's limits and timeouts. */
export interface ServeOptions extends Omit<HttpServerOptions, "host" | "onError"> {
  /** Host to bind (default `0.0.0.0`, as `Deno.serve`). */
  hostname?: string;
  /** Aborting it shuts the server down. */
  signal?: AbortSignal;
  /** Called once listening; default prints `Listening on http://HOST:PORT/`. */
  onListen?: (addr: { hostname: string; port: number; transport: "tcp" }) => void;
  /** Makes the response for a handler that threw or rejected; default logs the error and answers 500. */
  onError?: (error: unknown) => Response | Promise<Response>;
  /** The handler, when passed in the options. */
  handler?: ServeHandler;
}

/** What {@linkcode serve} returns (as `Deno.HttpServer`). */
export interface ServeServer {
  /** Resolves when the server has shut down and every connection is closed. */
  readonly finished: Promise<void>;
  /** The bound address. */
  readonly addr: { hostname: string; port: number; transport: "tcp" };
  /** Stops accepting, lets requests in flight finish, then resolves. */
  shutdown(): Promise<void>;
  /** The engine underneath, for its raw counters. */
  readonly server: HttpServer;
  /** For `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

function defaultOnError(error: unknown): Response {
  console.error("fdloop serve: the handler failed:", error);
  return new Response("Internal Server Error", {
    status: 500,
    headers: { "content-type": "text/plain;charset=UTF-8" },
  });
}

const NULL_BODY = new Set(["GET", "HEAD"]);

/**
 * Serves a fetch handler over HTTP/1.1, like `Deno.serve`: `serve(handler)`,
 * `serve(options, handler)` or `serve({ ...options, handler })`.
 *
 * Without a `reactor` option it uses the default reactor and starts its
 * cooperative `run()` itself, so the process stays alive until
 * `shutdown()`, exactly as with `Deno.serve`. With a `reactor`, running it
 * is yours (`run()` or `runSync()`).
 *
 * Request bodies are `ReadableStream`s (bounded by `maxBodyBytes`); a
 * response body that is a stream is sent chunked, waiting for the client
 * when it falls behind.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { serve } from "@fdloop/fdloop/http";
 * const server = serve({ port: 0, onListen() {} }, (req) => new Response(`hello ${new URL(req.url).pathname}`));
 * const res = await fetch(`http://127.0.0.1:${server.addr.port}/you`);
 * assert.equal(await res.text(), "hello /you");
 * await server.shutdown();
 * ```
 */
export function serve(handler: ServeHandler): ServeServer;
/** Serves `handler` with the options given (see the first overload). */
export function serve(options: ServeOptions, handler: ServeHandler): ServeServer;
/** Serves `options.handler` (see the first overload). */
export function serve(options: ServeOptions & { handler: ServeHandler }): ServeServer;
export function serve(a: ServeHandler | ServeOptions, b?: ServeHandler): ServeServer {
  const options: ServeOptions = typeof a === "function" ? {} : a;
  const handler = typeof a === "function" ? a : b ?? a.handler;
  if (typeof handler !== "function") throw new TypeError("serve() needs a handler function");
  const ownReactor = options.reactor === undefined;
  const reactor: Reactor = options.reactor ?? defaultReactor();
  const onError = options.onError ?? defaultOnError;
  const hostname = options.hostname ?? "0.0.0.0";
  const server = new HttpServer(
    { ...options, host: hostname, reactor, onError: undefined },
    (req, res) => respond(req, res, handler, onError, hostname),
  );
  const addr = { hostname, port: server.port, transport: "tcp" as const };
  (options.onListen ?? ((a) => console.log(`Listening on http://${a.hostname}:${a.port}/`)))(addr);
  const release = ownReactor ? holdRunning(reactor) : () => {};
  const shutdown = async () => {
    await server.shutdown();
    release();
  };
  options.signal?.addEventListener("abort", () => void shutdown(), { once: true });
  return {
    finished: server.finished,
    addr,
    server,
    shutdown,
    [Symbol.asyncDispose]: shutdown,
  };
}

/** Runs the fetch handler for one exchange and writes its `Response`. */
function respond(
  req: HttpRequest,
  res: HttpResponse,
  handler: ServeHandler,
  onError: (error: unknown) => Response | Promise<Response>,
  hostname: string,
): void {
  let done!: () => void;
  const completed = new Promise<void>((resolve) => done = resolve);
  res.onAbort(done);
  const request = toRequest(req, hostname);
  let result: Response | Promise<Response>;
  try {
    result = handler(request, infoFor(req, completed));
  } catch (err) {
    result = onError(err);
  }
  const send = (response: Response) => writeResponse(res, response).then(done, (err) => fail(res, err, done));
  if (result instanceof Response) {
    void send(result);
  } else {
    Promise.resolve(result).then(
      (response) => {
        if (!(response instanceof Response)) throw new TypeError("The handler did not return a Response");
        return send(response);
      },
    ).catch((err) => Promise.resolve(onError(err)).then(send, (err2) => fail(res, err2, done)));
  }
}

function infoFor(req: HttpRequest, completed: Promise<void>): ServeHandlerInfo {
  let remote: ServeHandlerInfo["remoteAddr"] | undefined;
  return {
    get remoteAddr() {
      if (remote === undefined) {
        const a = req.remoteAddress;
        remote = { transport: "tcp", hostname: a?.address ?? "", port: a?.port ?? 0 };
      }
      return remote;
    },
    completed,
  };
}

/**
 * Builds the web `Request`: the URL from `Host`, the headers, and the body
 * as a stream. The cheapest form Deno's constructor takes: headers as an
 * array of pairs (a filled `Headers` costs twice as much), no `method` for
 * GET (see bench/http_request_bench.ts).
 */
function toRequest(req: HttpRequest, hostname: string): Request {
  const headers: [string, string][] = [];
  req.forEachHeader((name, value) => headers.push([name, value]));
  const host = req.header("host") || hostname;
  const target = req.url;
  const url = target.startsWith("/") ? `http://${host}${target}` : target === "*" ? `http://${host}/` : target;
  const method = req.method;
  if (method === "GET") return new Request(url, { headers });
  let body: ReadableStream<Uint8Array> | null = null;
  if (!NULL_BODY.has(method) && req.hasBody) {
    // Backpressure: reading the connection pauses while the stream's queue is full.
    body = new ReadableStream<Uint8Array>({
      start(controller) {
        req.readBody((chunk) => {
          controller.enqueue(chunk.slice());
          if ((controller.desiredSize ?? 1) <= 0) req.pause();
        }, () => controller.close());
      },
      pull() {
        req.resume();
      },
    }, new ByteLengthQueuingStrategy({ highWaterMark: 64 * 1024 }));
  }
  return new Request(url, { method, headers, body });
}

/** Writes `response` to `res`: one `end()` for a body that arrives whole, chunked writes with backpressure otherwise. */
async function writeResponse(res: HttpResponse, response: Response): Promise<void> {
  res.status = response.status;
  response.headers.forEach((value, name) => res.setHeader(name, value));
  const body = response.body;
  if (body === null) {
    res.end();
    return;
  }
  const reader = body.getReader();
  const first = await reader.read();
  if (first.done) {
    res.end();
    return;
  }
  const second = await reader.read();
  if (second.done) {
    res.end(first.value);
    return;
  }
  let aborted = false;
  res.onAbort(() => {
    aborted = true;
    void reader.cancel();
  });
  let ok = res.write(first.value);
  ok = res.write(second.value) && ok;
  for (;;) {
    if (!ok) await new Promise<void>((resolve) => res.onDrain(resolve));
    if (aborted) return;
    const next = await reader.read();
    if (next.done) break;
    if (aborted) return;
    ok = res.write(next.value);
  }
  res.end();
}

/** Writing the response failed: a 500 if nothing was sent yet, else the exchange is ended where it stands. */
function fail(res: HttpResponse, err: unknown, done: () => void): void {
  console.error("fdloop serve: cannot send the response:", err);
  if (!res.finished) {
    if (!res.headersSent) {
      res.status = 500;
      res.end("Internal Server Error");
    } else {
      res.end();
    }
  }
  done();
}
