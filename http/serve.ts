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
import { plainResponse } from "./deno_response.ts";
import { LazyRequest } from "./fetch_request.ts";
import { PreparedHeaders } from "./response.ts";
import {
  abortResponse,
  type HttpRequest,
  type HttpResponse,
  HttpServer,
  type HttpServerOptions,
  isHeadResponse,
  resetResponseHead,
} from "./server.ts";

/** What the handler learns about the connection (as `Deno.ServeHandlerInfo`). */
export interface ServeHandlerInfo {
  /** The client's address. */
  readonly remoteAddr: { transport: "tcp"; hostname: string; port: number };
  /**
   * Resolves once the response is in the engine's hands, as `Deno.serve`'s does once hyper has it: for a body
   * given whole, when it is handed over (a large one is then still on its way, sent in slices as the client reads
   * it); for a stream, after its last chunk. It resolves too, and never rejects, when the client went away first.
   */
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
  /** Stops accepting, lets requests in flight finish (closing what is left after 10 s), then resolves. */
  shutdown(): Promise<void>;
  /** The engine underneath, for its raw counters. */
  readonly server: HttpServer;
  /** For `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * `Response`, read once: Deno defines it on `globalThis` as an accessor, so a
 * reference to the global calls a getter each time (twice per request here).
 */
const ResponseClass: typeof Response = Response;

function defaultOnError(error: unknown): Response {
  console.error("fdloop serve: the handler failed:", error);
  return new Response("Internal Server Error", {
    status: 500,
    headers: { "content-type": "text/plain;charset=UTF-8" },
  });
}

/**
 * Serves a fetch handler over HTTP/1.1, like `Deno.serve`: `serve(handler)`,
 * `serve(options, handler)` or `serve({ ...options, handler })`.
 *
 * Without a `reactor` option it uses the default reactor and starts its
 * cooperative `run()` itself, so the process stays alive until
 * `shutdown()`, exactly as with `Deno.serve`. With a `reactor`, running it
 * is yours (`run()` or `runSync()`).
 *
 * Request bodies are `ReadableStream`s (bounded by `maxBodyBytes`), read
 * with backpressure until the response is complete; what arrives after that
 * is taken in as it comes (a handler may still read it, as with
 * `Deno.serve`), so that the connection goes on to its next request. A body
 * the client abandons errors its stream rather than leave a read pending;
 * one the handler cancels is read on and dropped, keeping the connection.
 *
 * A response body is framed as `Deno.serve` frames it: one whose chunks are
 * all ready at once (a string, bytes, a stream with its chunks queued) with
 * its real `Content-Length`; a stream that comes later chunked (or cut at the
 * handler's `Content-Length`), as it comes, waiting for the client when it
 * falls behind.
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
    // A client's FIN means it is gone, as hyper (Deno.serve) and Go take it: req.signal aborts, streams are cancelled.
    { halfClose: false, ...options, host: hostname, reactor, onError: undefined },
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

type ErrorHook = (error: unknown) => Response | Promise<Response>;

/** Runs the fetch handler for one exchange and writes its `Response`: at once when it is plain and returned at once. */
function respond(
  req: HttpRequest,
  res: HttpResponse,
  handler: ServeHandler,
  onError: ErrorHook,
  hostname: string,
): void {
  const request = new LazyRequest(req, res, hostname);
  const info = new HandlerInfo(req, res, request);
  let result: Response | Promise<Response>;
  try {
    result = handler(request as unknown as Request, info);
  } catch (err) {
    request.seal();
    answerError(res, err, info, onError);
    return;
  }
  request.seal();
  if (result instanceof ResponseClass) {
    send(res, result, info, onError);
    return;
  }
  Promise.resolve(result).then(
    (response) => send(res, response, info, onError),
    (err) => answerError(res, err, info, onError),
  );
}

/** Sends what `onError` makes of the handler's error (at once when it is a `Response`); its failure is a 500. */
function answerError(res: HttpResponse, err: unknown, info: HandlerInfo, onError: ErrorHook): void {
  let answer: Response | Promise<Response>;
  try {
    answer = onError(err);
  } catch (err2) {
    return fail(res, err2, info);
  }
  if (answer instanceof ResponseClass) return send(res, answer, info);
  Promise.resolve(answer).then((r) => send(res, r, info), (e) => fail(res, e, info));
}

/**
 * Writes `response`, then settles `info.completed`; never throws. What is
 * not a usable `Response` (not one at all, or one whose body was already
 * read) is an error of the handler, as in `Deno.serve`: `onError` answers
 * instead (when given; its own answer gets no second chance). A response
 * that cannot be written (a status or header the engine refuses, a stream
 * that fails) is a 500, or a cut body once its head is out; `onError` hears
 * of it, as `Deno.serve`'s hears of a failed stream (what it returns is not used).
 */
function send(res: HttpResponse, response: unknown, info: HandlerInfo, onError?: ErrorHook): void {
  try {
    if (response instanceof ResponseClass) {
      const plain = plainResponse(response);
      if (plain !== null) {
        const body = plain.body;
        plain.body = ""; // the object is reused: it must not keep this body alive until the next response
        if (plain.contentType !== null) res.setHeaders(contentTypeHeader(plain.contentType));
        res.end(body);
        info.complete();
        return;
      }
      if (!response.bodyUsed) {
        writeResponse(res, response).then(() => info.complete(), (err) => fail(res, err, info, onError));
        return;
      }
    }
  } catch (err) {
    fail(res, err, info, onError);
    return;
  }
  const err = new TypeError(
    response instanceof ResponseClass
      ? "The handler returned a Response whose body was already read"
      : `${onError === undefined ? "onError" : "The handler"} did not return a Response`,
  );
  if (onError === undefined) return fail(res, err, info);
  answerError(res, err, info, onError);
}

const contentTypes = new Map<string, PreparedHeaders>();

/** `Content-Type: <value>`, prepared once per value (for the few values a server uses). */
function contentTypeHeader(value: string): PreparedHeaders {
  let h = contentTypes.get(value);
  if (h === undefined) {
    h = new PreparedHeaders({ "content-type": value });
    if (contentTypes.size < 64) contentTypes.set(value, h);
  }
  return h;
}

/** `Deno.ServeHandlerInfo`: the client's address and `completed`, each made on first read. */
class HandlerInfo implements ServeHandlerInfo {
  readonly #req: HttpRequest;
  readonly #res: HttpResponse;
  readonly #request: LazyRequest;
  #done = false;
  /** What few handlers ask for, made on first read: one object made per request costs every request its fields. */
  #rare: { remote?: ServeHandlerInfo["remoteAddr"]; completed?: Promise<void>; resolve?: () => void } | null = null;

  constructor(req: HttpRequest, res: HttpResponse, request: LazyRequest) {
    this.#req = req;
    this.#res = res;
    this.#request = request;
  }

  get remoteAddr(): ServeHandlerInfo["remoteAddr"] {
    const rare = this.#rare ??= {};
    if (rare.remote === undefined) {
      const a = this.#req.remoteAddress;
      rare.remote = { transport: "tcp", hostname: a?.address ?? "", port: a?.port ?? 0 };
    }
    return rare.remote;
  }

  get completed(): Promise<void> {
    const rare = this.#rare ??= {};
    if (rare.completed === undefined) {
      if (this.#done) return rare.completed = Promise.resolve();
      rare.completed = new Promise<void>((resolve) => rare.resolve = resolve);
      this.#res.onAbort(() => this.#settle());
    }
    return rare.completed;
  }

  /** The response was handed to the engine (or could not be): a request body still arriving no longer holds it up. */
  complete(): void {
    this.#request.responded();
    this.#settle();
  }

  /** Resolves `completed` (the response is done with, or the client went away). */
  #settle(): void {
    this.#done = true;
    this.#rare?.resolve?.();
  }
}

/** What `Promise.race` gets when a read is not ready yet. */
const NOT_YET = Symbol("not yet");

/** Resolves to {@linkcode NOT_YET} a few microtasks later: after a read of a stream with data ready has resolved. */
async function notYet(): Promise<typeof NOT_YET> {
  for (let i = 0; i < 4; i++) await null;
  return NOT_YET;
}

/**
 * Writes `response` to `res`, as `Deno.serve` frames it. A body that is
 * ready at once (a string, bytes, a stream with its chunks queued) goes out
 * in one `end()` with its real `Content-Length`, whatever `Content-Length`
 * the handler set; `Transfer-Encoding` is the engine's to choose. A body
 * that comes later is streamed: the head (and each chunk) is sent as soon
 * as nothing more is ready, chunked, or framed by the handler's
 * `Content-Length` (cut there; the connection is dropped if the stream ends
 * short). When the client goes away, the stream is cancelled.
 */
async function writeResponse(res: HttpResponse, response: Response): Promise<void> {
  res.status = response.status;
  let declared = -1; // the handler's Content-Length
  response.headers.forEach((value, name) => {
    if (name === "content-length") declared = /^\d{1,15}$/.test(value) ? Number(value) : -1;
    else if (name !== "transfer-encoding") res.setHeader(name, value);
  });
  const body = response.body;
  if (body === null) {
    // A HEAD response may tell the length of the body it leaves out (as Deno.serve lets it); no other can.
    if (declared >= 0 && isHeadResponse(res)) res.setHeader("content-length", String(declared));
    res.end();
    return;
  }
  const reader = body.getReader();
  let aborted = false;
  let wake: (() => void) | null = null;
  res.onAbort(() => {
    aborted = true;
    reader.cancel(new DOMException("The client closed the connection", "AbortError")).catch(() => {});
    wake?.();
  });
  // A HEAD response's body is left out: once its head is out, the stream has nothing more to give (as in Deno.serve).
  const headOnly = isHeadResponse(res);
  let held: Uint8Array | string | null = null; // read while the head waits for the next read to say whether it is all
  let left = -1; // bytes still to send under the handler's Content-Length, once streaming with it
  try {
    let ok = true;
    for (;;) {
      const reading = reader.read();
      // Once the head is out, each chunk is written as it comes; before, only what is ready now is gathered.
      let next = res.headersSent ? await reading : await Promise.race([reading, notYet()]);
      if (next === NOT_YET) {
        // Nothing more is ready: what there is goes out now (the head at least), the rest as it comes.
        if (!res.headersSent) {
          if (declared >= 0) {
            res.setHeader("content-length", String(declared));
            left = declared;
          }
          ok = res.write(EMPTY); // the head
        }
        if (held !== null) {
          [ok, left] = writeCounted(res, held, left);
          held = null;
        }
        if (left === 0 || headOnly) {
          // The handler's length is reached already (or was 0): the response is complete, whatever the stream does.
          reader.cancel().catch(() => {});
          break;
        }
        next = await reading;
      }
      if (aborted) return;
      if (next.done) break;
      const chunk = asChunk(next.value);
      if (!res.headersSent) {
        if (held === null) {
          held = chunk;
          continue;
        }
        // Two chunks ready at once: stream (the head, then both).
        if (declared >= 0) {
          res.setHeader("content-length", String(declared));
          left = declared;
        }
        [ok, left] = writeCounted(res, held, left);
        held = null;
      }
      [ok, left] = writeCounted(res, chunk, left);
      if (left === 0 || headOnly) {
        // The handler's length is reached: what the stream has more is not sent (Deno.serve cuts there too).
        reader.cancel().catch(() => {});
        break;
      }
      if (!ok) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          res.onDrain(resolve);
        });
        wake = null;
        if (aborted) return;
      }
    }
    if (!res.headersSent) {
      res.end(held ?? undefined); // all of it was ready: one response with its real length
      return;
    }
    if (left > 0 && !headOnly) throw new Error(`The response body ended ${left} bytes short of its Content-Length`);
    res.end();
  } catch (err) {
    // A chunk that is not bytes, a stream that errors, a body cut short: the stream must stop too (its source may
    // still be producing), as Deno.serve cancels it.
    reader.cancel(err).catch(() => {});
    throw err;
  }
}

/** Writes `chunk`, no further than `left` bytes when `left` ≥ 0; returns write()'s answer and what is left. */
function writeCounted(res: HttpResponse, chunk: Uint8Array | string, left: number): [boolean, number] {
  if (left < 0) return [res.write(chunk), -1];
  const bytes = typeof chunk === "string" ? encoder.encode(chunk) : chunk;
  const n = Math.min(bytes.byteLength, left);
  return [res.write(n === bytes.byteLength ? bytes : bytes.subarray(0, n)), left - n];
}

/** A stream's chunk as bytes (any `ArrayBufferView`, as `Deno.serve` takes; a string is sent as UTF-8). */
function asChunk(value: unknown): Uint8Array | string {
  if (value instanceof Uint8Array || typeof value === "string") return value;
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  throw new TypeError("A response body chunk must be a Uint8Array (or an ArrayBufferView)");
}

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();

/** Calls `onError` for its side effects only; its own failure (a throw, a rejection) is logged. */
function tell(onError: ErrorHook, err: unknown): void {
  const failed = (e: unknown) => console.error("fdloop serve: onError failed:", e);
  try {
    Promise.resolve(onError(err)).catch(failed);
  } catch (e) {
    failed(e);
  }
}

/**
 * Writing the response failed: a 500 if nothing was sent yet, else the connection is dropped (the body is cut).
 * The error goes to the `onError` given to `serve()` (for its logging: the response is decided here), as
 * `Deno.serve` passes a failed response stream to its `onError`; to stderr without one, or for `onError`'s own answer.
 */
function fail(res: HttpResponse, err: unknown, info: HandlerInfo, onError?: ErrorHook): void {
  if (onError !== undefined && onError !== defaultOnError) tell(onError, err);
  else console.error("fdloop serve: cannot send the response:", err);
  if (!res.finished) {
    if (!res.headersSent) {
      resetResponseHead(res); // the failed response's headers (a Content-Length…) must not frame the 500
      res.status = 500;
      res.end("Internal Server Error");
    } else {
      // Its head (and part of its body) is out: ending it cleanly would tell the client a cut body is complete.
      abortResponse(res, err);
    }
  }
  info.complete();
}
