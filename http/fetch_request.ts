/**
 * The web `Request` that `serve()` hands to a fetch handler, built on first
 * need.
 *
 * `new Request(url, { headers })` costs about 5 µs (URL parsing, header
 * validation, the body and signal machinery), more than the engine spends
 * on the whole request. Most handlers read `method` and `url`, maybe a
 * header, and never touch the rest. A {@linkcode LazyRequest} answers those
 * from the parsed head, and turns into a real `Request` (kept inside it) the
 * first time anything else is asked: a body method, `clone()`, or Deno
 * itself reaching for the request's internals in `fetch(req)` or
 * `new Request(req)`.
 *
 * It is a `Request` as far as code can tell: `req instanceof Request` holds,
 * every property and method of `Request.prototype` works, and the internal
 * slots Deno's own functions read are forwarded to the real request. What is
 * not the same: a `headers` object read before the request became real is a
 * copy of the real one's (changes made to it after that are not seen by a
 * `fetch(req)`).
 *
 * @module
 */

import { headerFields, type HttpRequest, type HttpResponse } from "./server.ts";

const NULL_BODY_METHODS = new Set(["GET", "HEAD"]);
/** `LazyRequest`'s mark for a complete response: a function that does nothing, so calling it again is harmless. */
const RESPONDED = (): void => {};
/** The body of a request that sent none (not a string: that would add a `Content-Type`). */
const EMPTY_BODY = new Uint8Array(0);

/** A web `Request` read lazily from a parsed head; see the module doc. */
export class LazyRequest {
  readonly #req: HttpRequest;
  readonly #res: HttpResponse;
  readonly #hostname: string;
  readonly #method: string;
  readonly #hasBody: boolean;
  /** The header fields as `[name, value, name, value, …]`, copied by `seal()` when `headers` was not read yet. */
  #fields: string[] | null = null;
  #real: Request | null = null;
  #url: string | null = null;
  /** The request target, kept with `#url` (the parsed head may be reused once the handler returned). */
  #target = "";
  #headers: Headers | null = null;
  #signal: AbortController | null = null;
  /**
   * What `responded()` tells the body stream, if one was made; {@linkcode RESPONDED} once the response is complete.
   * (One field for both: a `serve()` request is made per request, and each field costs every one of them.)
   */
  #onResponded: (() => void) | null = null;

  /** `req` and `res` are the exchange's two sides; `hostname` stands in for a missing `Host`. */
  constructor(req: HttpRequest, res: HttpResponse, hostname: string) {
    this.#req = req;
    this.#res = res;
    this.#hostname = hostname;
    this.#method = req.method;
    this.#hasBody = req.hasBody;
  }

  /** The method, as sent. */
  get method(): string {
    return this.#method;
  }

  /** The absolute URL: `http://` + `Host` + the target. */
  get url(): string {
    if (this.#url === null) {
      const req = this.#req;
      const target = this.#target = req.url;
      const host = req.header("host") || this.#hostname;
      this.#url = requestUrl(host, target);
    }
    return this.#url;
  }

  /** The request headers. */
  get headers(): Headers {
    if (this.#real !== null) return this.#real.headers;
    return this.#headers ??= new Headers(this.#pairs());
  }

  /** The body as a stream (null for GET, HEAD and requests without one). A request with a body becomes real here. */
  get body(): ReadableStream<Uint8Array> | null {
    return this.#real === null && !this.#bodyAllowed() ? null : this.materialize().body;
  }

  /** Whether the body has been read. */
  get bodyUsed(): boolean {
    return this.#real === null && !this.#bodyAllowed() ? false : this.materialize().bodyUsed;
  }

  /** Aborted when the client goes away before the response is complete. */
  get signal(): AbortSignal {
    if (this.#real !== null) return this.#real.signal;
    return this.#abortController().signal;
  }

  /**
   * Makes the request independent of the read buffer its head was parsed
   * from, since the handler may keep it: copies the URL and the header
   * fields (as strings) unless they were read already. `serve()` calls it
   * once the handler has returned.
   */
  seal(): void {
    if (this.#real !== null) return;
    void this.url;
    if (this.#headers === null && this.#fields === null) this.#fields = headerFields(this.#req);
  }

  /**
   * The response is complete (`serve()` calls it). A body still arriving no longer holds the connection back for
   * its reader: it is taken in as it comes (up to `maxBodyBytes`), so that the next request on the connection is
   * read, whether the handler reads the rest later (as `Deno.serve` lets it) or has dropped the stream.
   */
  responded(): void {
    const tell = this.#onResponded;
    this.#onResponded = RESPONDED;
    if (tell !== null) tell();
  }

  #abortController(): AbortController {
    if (this.#signal === null) {
      const controller = new AbortController();
      this.#res.onAbort(() => controller.abort(new DOMException("The client closed the connection", "AbortError")));
      this.#signal = controller;
    }
    return this.#signal;
  }

  /**
   * The header fields as `[name, value]` pairs. Repeated `Cookie` fields are joined with `; ` (as `Deno.serve` does,
   * RFC 9113 §8.2.3): `Headers` would join them with `, `, which reads as one cookie's value.
   */
  #pairs(): [string, string][] {
    const pairs: [string, string][] = [];
    let cookie = -1;
    const add = (name: string, value: string) => {
      if (name.length === 6 && name.toLowerCase() === "cookie") {
        if (cookie >= 0) {
          pairs[cookie][1] += `; ${value}`;
          return;
        }
        cookie = pairs.length;
      }
      pairs.push([name, value]);
    };
    const fields = this.#fields;
    if (fields !== null) {
      for (let i = 0; i < fields.length; i += 2) add(fields[i], fields[i + 1]);
    } else {
      this.#req.forEachHeader(add);
    }
    return pairs;
  }

  /** Whether the request has a body: every method but GET and HEAD, as in `Deno.serve` (empty when none was sent). */
  #bodyAllowed(): boolean {
    return !NULL_BODY_METHODS.has(this.#method);
  }

  /**
   * The body as a stream, for the real request. A request with a body keeps its exchange until the body is read.
   * It errors with `BadResource`, as `Deno.serve`'s body does, if the body can no longer come (the reader's
   * `onAbort`): the client left or reset, or its body broke a limit or a deadline, before or after the response.
   */
  #bodyStream(): ReadableStream<Uint8Array> {
    const req = this.#req;
    const respondedAlready = this.#onResponded === RESPONDED;
    const onResponded = (fn: () => void) => this.#onResponded = fn;
    let resume = (): void => {};
    let cancel = (): void => {};
    // Backpressure: reading the connection pauses while the stream's queue is full (until the response is complete).
    // The stream resumes only a pause of its own (pause()/resume() are its exchange's own), and resumes
    // it when its body ends too: a closed stream is never pulled again, and a queue that filled in the read that
    // completed the body would otherwise leave the keep-alive connection paused for the requests behind it.
    return new ReadableStream<Uint8Array>({
      start(controller) {
        let open = true; // neither complete nor cut
        let responded = respondedAlready;
        let paused = false; // this stream paused reading and has not resumed it
        let starting = true; // inside readBody(): an end heard now was complete before, and no pause took effect
        resume = () => {
          if (!paused) return;
          paused = false;
          req.resume();
        };
        try {
          req.readBody((chunk) => {
            if (!open) return;
            controller.enqueue(chunk.slice());
            if (!responded && !paused && (controller.desiredSize ?? 1) <= 0) {
              paused = true;
              req.pause();
            }
          }, () => {
            if (!open) return;
            open = false;
            controller.close();
            if (starting) paused = false;
            else resume();
          }, (error) => {
            // A body that came whole stays readable (its chunks may still be queued): only one still coming errors.
            if (!open) return;
            open = false;
            controller.error(
              new Deno.errors.BadResource(`Cannot read request body: ${error.message}`, { cause: error }),
            );
            resume();
          });
        } catch (err) {
          // The response ended before the body was read and the rest of it was discarded (as Deno.serve's
          // "Request closed").
          controller.error(new TypeError(`Request closed: ${(err as Error).message}`));
          return;
        } finally {
          starting = false;
        }
        onResponded(() => {
          responded = true;
          if (open) resume();
        });
        cancel = () => {
          open = false;
          resume();
        };
      },
      pull() {
        resume();
      },
      cancel() {
        // The reader wants no more: the rest is read and dropped (up to `maxBodyBytes`), and the connection goes on.
        // (An enqueue on the cancelled stream would throw inside the parser's callback, and cost the connection.)
        cancel();
      },
    }, new ByteLengthQueuingStrategy({ highWaterMark: 64 * 1024 }));
  }

  /** The real `Request`, made now if it was not yet. */
  materialize(): Request {
    if (this.#real === null) {
      // The headers as pairs unless a Headers object was made already: the constructor copies them either way.
      const init: RequestInit = { method: this.method, headers: this.#headers ?? this.#pairs(), signal: this.signal };
      if (this.#bodyAllowed()) init.body = this.#hasBody ? this.#bodyStream() : EMPTY_BODY;
      const url = this.url; // sets #target too
      this.#real = new Request(absoluteUrl(url, this.#hostname, this.#target), init);
    }
    return this.#real;
  }
}

// The last URL made, by host and target: most requests to a server repeat one of a few, and the parser's strings
// for them are cached, so comparing is cheap and a hit saves building a string per request.
let lastHost = "";
let lastTarget = "";
let lastUrl = "";

/** The absolute URL of `target` on `host` (as `Deno.serve` builds `req.url`). */
function requestUrl(host: string, target: string): string {
  if (host === lastHost && target === lastTarget) return lastUrl;
  const url = target.startsWith("/") ? `http://${host}${target}` : target === "*" ? `http://${host}/` : target;
  lastHost = host;
  lastTarget = target;
  return lastUrl = url;
}

/**
 * `url` if the URL parser takes it, else the request's target on the server's own name: a `Host` the HTTP parser
 * accepts (`a:99999`, `[::1`) can still be a URL that `new Request()` refuses, and the request must still work.
 */
function absoluteUrl(url: string, hostname: string, target: string): string {
  if (URL.canParse(url)) return url;
  const fallback = `http://${hostname}${target.startsWith("/") ? target : "/"}`;
  return URL.canParse(fallback) ? fallback : "http://localhost/";
}

// A LazyRequest is a Request: it inherits Request.prototype, and what it does not answer itself is answered by
// the real request. That covers the public members (`clone()`, `text()`, `cache`, …) and the symbol-keyed slots
// Deno's own code reads on a Request (`fetch(req)`, `new Request(req)`, `req.text()` via its body mixin).
Object.setPrototypeOf(LazyRequest.prototype, Request.prototype);
// `new req.constructor(url, init)` makes a Request, as it would from Deno.serve's request.
Object.defineProperty(LazyRequest.prototype, "constructor", { value: Request, writable: true, configurable: true });
const own = new Set<PropertyKey>(Reflect.ownKeys(LazyRequest.prototype));
const realOf = (self: unknown): Request => (self as LazyRequest).materialize();
for (const key of Reflect.ownKeys(Request.prototype)) {
  if (own.has(key) || key === "constructor" || key === Symbol.toStringTag) continue;
  const d = Object.getOwnPropertyDescriptor(Request.prototype, key)!;
  if (typeof d.value === "function") {
    const method = d.value as (...args: unknown[]) => unknown;
    Object.defineProperty(LazyRequest.prototype, key, {
      value: function (this: unknown, ...args: unknown[]) {
        return method.apply(realOf(this), args);
      },
      writable: true,
      configurable: true,
    });
  } else if (d.get !== undefined) {
    const get = d.get;
    const set = d.set;
    Object.defineProperty(LazyRequest.prototype, key, {
      get(this: unknown) {
        return get.call(realOf(this));
      },
      set: set === undefined ? undefined : function (this: unknown, v: unknown) {
        set.call(realOf(this), v);
      },
      configurable: true,
    });
  }
}
// The slots a Request keeps on itself (its inner request, headers, signal, the brand Deno's checks look for).
for (const key of Object.getOwnPropertySymbols(new Request("http://probe.invalid/"))) {
  if (own.has(key)) continue;
  Object.defineProperty(LazyRequest.prototype, key, {
    get(this: unknown) {
      return (realOf(this) as unknown as Record<symbol, unknown>)[key];
    },
    set(this: unknown, v: unknown) {
      (realOf(this) as unknown as Record<symbol, unknown>)[key] = v;
    },
    configurable: true,
  });
}
