/**
 * The HTTP/1.1 server engine and its raw API, `listenHttp()`.
 *
 * One {@linkcode HttpServer} accepts connections through `net/`'s `listen()`.
 * Each connection feeds its reads to a {@linkcode RequestParser} and keeps a
 * queue of exchanges (request + response) in arrival order: a response is
 * written only when every response before it is complete, so pipelined
 * requests are answered in order even when a later handler finishes first.
 * While one read is being parsed the connection is corked: the responses of
 * every request in that read leave in one `send`.
 *
 * Timeouts (header, body, idle keep-alive, lingering close) are deadlines on
 * the connection, checked by one sweep timer per server: no timer is made or
 * cancelled per request. The same sweep watches that a client takes the
 * output waiting for it (`sendTimeout`).
 *
 * @module
 */

import { Errno, OSError } from "../ffi/mod.ts";
import type { Connection, ListenOptions, Server, SocketAddress } from "../net/mod.ts";
import { listen } from "../net/mod.ts";
import { ownerOf, setOwner } from "../net/connection.ts";
import type { Reactor } from "../reactor/mod.ts";
import { DEFAULT_LIMITS, type ParserHandler, type ParserLimits, RequestHead, RequestParser } from "./parser.ts";
import {
  checkHeader,
  contentLength,
  dateHeader,
  F_CLOSE,
  F_CONNECTION,
  F_DATE,
  F_LENGTH,
  F_TYPE,
  headerFlags,
  OutBuffer,
  PreparedHeaders,
  statusLine,
  withoutFraming,
} from "./response.ts";
import { reasonPhrase } from "./status.ts";

const encoder = new TextEncoder();

/** Options of {@linkcode listenHttp} (and of `serve()`). */
export interface HttpServerOptions {
  /** Host to bind (default `127.0.0.1`; `::` is dual-stack; `0.0.0.0` for every IPv4 interface). */
  host?: string;
  /** Port (default 8000; 0 = a free port, see `server.port`). */
  port?: number;
  /** A Unix socket path instead of host and port. */
  path?: string;
  /** `listen()` backlog (default 511). */
  backlog?: number;
  /** `SO_REUSEPORT`, for several processes on one port. */
  reusePort?: boolean;
  /** The reactor (default: the process-wide default reactor). */
  reactor?: Reactor;
  /** Most bytes of a request head, request line included (default 16 KiB); past it: 431. */
  maxHeaderBytes?: number;
  /** Most header fields (default 100); past it: 431. */
  maxHeaders?: number;
  /** Longest request target (default 8 KiB); past it: 414. */
  maxUriBytes?: number;
  /** Largest request body (default 8 MiB); past it: 413. */
  maxBodyBytes?: number;
  /**
   * The whole header section must arrive within this many ms (default 20 000) of the accept, or on a keep-alive
   * connection of the request's first byte; then 408 and close (a connection that sent nothing is just closed).
   */
  headerTimeout?: number;
  /** A request body must arrive within this many ms of its head (default 60 000); then 408 and close. */
  bodyTimeout?: number;
  /**
   * A keep-alive connection with no request in flight is closed after this many ms (default 5 000), counted from
   * when its last response has left for the client (not while the client is still reading it: see `sendTimeout`).
   */
  idleTimeout?: number;
  /**
   * After an error response (or a `Connection: close` one), read and discard for at most this many ms before closing
   * (default 2 000), counted from the FIN, which follows the response's last byte.
   */
  lingerTimeout?: number;
  /** …and at most this many bytes (default 1 MiB), counted from the same point (after a rejection: from it). */
  lingerBytes?: number;
  /**
   * A response waiting for its client (a large body being fed to it, or bytes queued on the connection) must see some
   * of it taken within this many ms, again and again (default 60 000, as nginx's `send_timeout`): a client that stops
   * reading is closed then, and the response aborted, instead of being kept for ever with what waits for it. A client
   * that keeps reading is not cut, however long its response takes; progress is seen as the kernel takes more, so one
   * so slow that the socket buffers on the way (up to a few MB) take longer than this to empty looks stalled, as it
   * does to nginx. 0 or `Infinity`: no limit (as Go's `WriteTimeout` unset). Checked about once a second.
   */
  sendTimeout?: number;
  /**
   * Pipelined requests waiting for their turn, at most, before reading pauses (default 64). Their handlers run as
   * they arrive, and what they answer is kept until its turn; once that is past 1 MiB on a connection, the handlers
   * of the requests behind run only when their turn comes (their bodies wait, as for a handler that reads late).
   */
  maxPipelined?: number;
  /**
   * What the client's FIN means (default true): a half-close, after which the requests in flight are still answered;
   * or, when false, that the client is gone, as hyper (`Deno.serve`) takes it: the connection closes and the
   * exchanges in flight are aborted (their `onAbort` runs). `serve()` sets false.
   */
  halfClose?: boolean;
  /**
   * Called once for each handler that throws (the client gets a 500) and for
   * other errors of the server, among them an `OSError` `ENOBUFS` when a
   * handler that kept writing without waiting for `onDrain` took a
   * connection's write queue past its cap (16 MiB; the connection is
   * dropped). Default: the request line and the error on stderr (one line
   * for an error of the server itself); an `onError` that throws goes to the
   * reactor's `onError`.
   */
  onError?: (error: unknown, request?: HttpRequest) => void;
}

/**
 * The request side of an exchange, decoded lazily from the parsed bytes.
 *
 * Valid until the response ends: a handler that answers later keeps it
 * (its bytes are copied once, when the handler returns without answering).
 */
export interface HttpRequest {
  /** `GET`, `POST`, … */
  readonly method: string;
  /** The request target as sent, such as `/sleep?ms=10`. */
  readonly url: string;
  /** The target up to `?`. */
  readonly path: string;
  /** The target after `?`, `""` if none. */
  readonly query: string;
  /** `"1.1"` or `"1.0"`. */
  readonly httpVersion: string;
  /** The body length from `Content-Length`, or -1 (none, or chunked). */
  readonly contentLength: number;
  /** Whether a body follows the head (a `Content-Length` above 0, or chunked). */
  readonly hasBody: boolean;
  /** A header's value by lower-case name (repeated fields joined with `, `), or null. */
  header(name: string): string | null;
  /** Calls `fn` for each header field, in order, names as sent. */
  forEachHeader(fn: (name: string, value: string) => void): void;
  /** The client's address, `ip:port` form (looked up once). */
  readonly remoteAddress: { address: string; port: number } | null;
  /**
   * Receives the body: `onChunk` for each piece (a view valid only during the
   * call: copy it to keep it), `onEnd` once it is complete. Call it during the
   * handler or later; pieces that arrived before are buffered for you (up
   * to 64 KiB: reading then pauses until you ask). Sends `100 Continue`
   * first when the client asked for it.
   *
   * After the pieces, exactly one of `onEnd` and `onAbort` is called, once: `onAbort` when the body can no longer
   * complete, whether the response has ended or not, with an `Error` naming why: the connection closed or was reset
   * (its error is the `cause`), the client's FIN came first (see `halfClose`), the body was refused (a malformed
   * chunk, `maxBodyBytes`, `bodyTimeout`: the engine answers 400, 413 or 408 if the response has not started), or
   * the connection closes after the response (`Connection: close`) without reading the rest. A reader that comes
   * after the loss hears it at once, with none of the pieces that had arrived. Without `onAbort`, a lost body is
   * only seen as an `onEnd` that never comes.
   *
   * @param onChunk Called for each piece of the body.
   * @param onEnd Called once the body is complete.
   * @param onAbort Called once if the body can no longer complete (never after `onEnd`).
   * @throws {Error} when asked again, or after the response ended and part
   *   of the body, arriving with nobody reading it, was discarded.
   */
  readBody(onChunk: (chunk: Uint8Array) => void, onEnd: () => void, onAbort?: (error: Error) => void): void;
  /**
   * The whole body, once complete, as one `Uint8Array` (bounded by `maxBodyBytes`). Exactly one of `onBody` and
   * `onAbort` is called, once: `onAbort` as for {@linkcode HttpRequest.readBody}, when the body can no longer
   * complete (what was gathered of it is dropped).
   *
   * @throws {Error} as {@linkcode HttpRequest.readBody} does.
   */
  readAll(onBody: (body: Uint8Array) => void, onAbort?: (error: Error) => void): void;
  /**
   * Backpressure for a body consumer that is not keeping up: no `onChunk` calls until `resume()` (pieces already
   * read, the rest of the read that brought the last one, are kept and handed over on `resume()`), and reading the
   * connection stops while this request's body is the one coming. Called before `readBody()`, the pieces kept so
   * far are held too (as a paused Node `IncomingMessage`). `onEnd` still comes once every piece was handed over.
   *
   * The pause is this request's own: the connection reads on once its body is complete (the requests pipelined
   * behind it must be read; what remains for a paused reader is held for it, bounded by one read), and
   * `pause()`/`resume()` of another request, one before it that is done or one with no body, never touch it. After
   * the body ended (or was lost), and on a request without a body, `pause()` does nothing. The body deadline
   * (`bodyTimeout`) still runs. A pause of a request whose response ends before it reads its body is dropped: the
   * rest of that body is read and discarded.
   */
  pause(): void;
  /** Undoes this request's own `pause()`: hands over the pieces held meanwhile, and reads on. */
  resume(): void;
}

/** The response side of an exchange. */
export interface HttpResponse {
  /**
   * The status (default 200): a final one, 200–599. Writing the head (`end()`,
   * the first `write()`) with another throws a `RangeError`: a 1xx would leave
   * the client waiting for the real answer (`100 Continue` is the engine's).
   */
  status: number;
  /**
   * Adds a header line (validated: a CR or LF in it throws a `TypeError`). A 204 is sent without the
   * `Content-Length` or `Transfer-Encoding` set for it (RFC 9110 §8.6 forbids them there; Go and hyper drop them too).
   */
  setHeader(name: string, value: string): this;
  /** Adds a prepared header block (built once, written verbatim). */
  setHeaders(headers: PreparedHeaders): this;
  /**
   * Sends the response with `body` (string or bytes, may be empty, of any size) and a
   * `Content-Length`. For `HEAD` requests the body is left out. A `Content-Length` the handler set must be the
   * body's length in bytes (else a `TypeError`, and nothing is sent): a wrong one would misframe the next response.
   * After `write()`, a body that ends short of it drops the connection.
   *
   * A large body goes to the connection in slices as the client reads it; the response behind it on a keep-alive
   * connection waits for its last slice. What cannot be sent at once is copied, so `body` may be reused (changed)
   * as soon as `end()` returns.
   */
  end(body?: string | Uint8Array): void;
  /**
   * Sends a piece of a streamed body: the first call sends the head, with
   * `Transfer-Encoding: chunked` for HTTP/1.1 or no length for HTTP/1.0 (the
   * connection then closes after). End with `end()`. A piece of any size is
   * sent whole, as `end()` sends a body, and may be reused once `write()` returns.
   *
   * @returns false when the client is not keeping up: wait for `onDrain`. A response pipelined behind others
   *   says so too once 64 KiB of it wait for its turn (as Node's `http` does); `onDrain` then comes with its turn.
   *   A handler that writes on regardless past the connection's write cap
   *   (16 MiB held) loses the connection, and `onError` gets `ENOBUFS`.
   */
  write(chunk: string | Uint8Array): boolean;
  /** Calls `fn` once when the client caught up after `write()` returned false. */
  onDrain(fn: () => void): void;
  /**
   * Calls `fn` once if the connection closes before the response is complete, all of it handed to the connection
   * (at once if it did already): a client that leaves in the middle of a large body aborts the response.
   */
  onAbort(fn: () => void): void;
  /** Whether the head has been sent. */
  readonly headersSent: boolean;
  /** Whether `end()` has been called. */
  readonly finished: boolean;
}

/** A raw request handler: answer through `res`, now or later. */
export type HttpHandler = (req: HttpRequest, res: HttpResponse) => void;

/**
 * The most memory a module-wide response buffer keeps between responses. A head with the engine's headers and a
 * few of the handler's takes well under 4 KiB, and a small body (up to 16 KiB) is copied in after it: 64 KiB leaves
 * room for every ordinary response with no allocation, while one with huge headers grows the buffer only until it is
 * out (`OutBuffer.clear()` then gives the memory back). Large bodies never go through these buffers.
 */
const KEEP_MAX = 64 * 1024;
/** The cork buffer's fixed size: output that does not fit goes straight to the socket, after what it holds. */
const CORK_SIZE = 64 * 1024;
/** Bodies given as strings up to this many UTF-16 units are encoded into `bodyScratch` (at most 3 bytes each). */
const TEXT_SCRATCH_MAX = 16 * 1024;
/**
 * Output pieces larger than this are handed to the connection in slices of this size as it drains (see
 * {@linkcode Backlog}), never queued there whole: a body of any size passes a write queue capped at `maxWriteBuffer`.
 */
const FEED_SLICE = 256 * 1024;
/** What a piece held in a {@linkcode Backlog} costs on the heap beyond its bytes (a Uint8Array and its ArrayBuffer). */
const PIECE_COST = 256;
/** Bytes a response pipelined behind others may keep, waiting for its turn, before its `write()` says false. */
const KEPT_HIGH = 64 * 1024;
/**
 * Past this many bytes kept on a connection by responses waiting for their turn (copies of what their handlers gave
 * `end()` or `write()`), the handlers of further pipelined requests wait for their turn too: one read of tiny
 * pipelined requests must not run a handler answering with a large body hundreds of times, copying it each time.
 */
const KEPT_DISPATCH_MAX = 1024 * 1024;

// Shared scratch space for one response head at a time (the loop is single-threaded).
const scratch = new OutBuffer(4096, KEEP_MAX);
// Responses of one read, collected while a connection is corked. It never grows (see HttpConnection.#send).
const cork = new OutBuffer(CORK_SIZE, CORK_SIZE);

/** Body bytes kept for a handler that has not asked for the body yet, before reading pauses (as a reader's queue). */
const EARLY_BODY_MAX = 64 * 1024;
/** What a kept body piece costs on the heap beyond its bytes (a Uint8Array and its ArrayBuffer). */
const CHUNK_COST = 256;
const CONTINUE = encoder.encode("HTTP/1.1 100 Continue\r\n\r\n");
const CHUNK_END = encoder.encode("0\r\n\r\n");
const H_CONTENT_LENGTH = encoder.encode("Content-Length: ");
const H_CHUNKED = encoder.encode("Transfer-Encoding: chunked\r\n");
const H_CLOSE = encoder.encode("Connection: close\r\n");
const H_KEEP_ALIVE = encoder.encode("Connection: keep-alive\r\n");
const H_TEXT = encoder.encode("Content-Type: text/plain; charset=utf-8\r\n");
const EMPTY = new Uint8Array(0);
/** The head of engine-made responses (errors) that answer no parsed request. */
const EMPTY_HEAD = new RequestHead();

/** Why a body still coming is lost when the connection closes after a response (see `HttpConnection.#loseBody`). */
const LINGER_LOSS = "The connection closes after the response: the rest of the request body is not read";

// Deadline kinds of a connection.
const D_NONE = 0;
const D_HEADER = 1;
const D_BODY = 2;
const D_IDLE = 3;
const D_LINGER = 4;

/** What an exchange holds only when its body is read or kept, or someone waits on its response. */
class ExchangeRare {
  /** Body chunks kept for a reader to come, or for a reader that paused (from `bodyAt` on); what they cost. */
  bodyChunks: Uint8Array[] | null = null;
  bodyAt = 0;
  earlyBytes = 0;
  onChunk: ((chunk: Uint8Array) => void) | null = null;
  onEnd: (() => void) | null = null;
  /** The reader's `onAbort`; and why the body was lost, for a reader that comes after (see `Exchange.loseBody`). */
  onBodyAbort: ((error: Error) => void) | null = null;
  bodyError: Error | null = null;
  drainFns: (() => void)[] | null = null;
  abortFns: (() => void)[] | null = null;
  /** Bytes of output kept in `pending`, waiting for the exchange's turn. */
  keptBytes = 0;
}

// State bits of an exchange (`#bits`): one number instead of fourteen boolean fields of 8 bytes each.
const X_USER_CONNECTION = 1;
const X_USER_LENGTH = 2;
const X_USER_DATE = 4;
const X_USER_TYPE = 8;
const X_HEADERS_SENT = 16;
const X_FINISHED = 32;
const X_REQUEST_COMPLETE = 64;
const X_ENDED = 128;
const X_EARLY_PAUSED = 256;
const X_BODY_DROPPED = 512;
const X_CONTINUE_SENT = 1024;
const X_WANTS_CONTINUE = 2048;
const X_CLOSE_AFTER = 4096;
const X_IS_HEAD = 8192;
const X_ABORTED = 16384;
const X_DEFERRED = 32768;
const X_CUT = 65536;
const X_READING = 131072;
const X_BODY_LOST = 262144;
const X_PAUSED = 524288;

/**
 * One request and its response. Handlers see it as an {@linkcode HttpRequest}
 * and an {@linkcode HttpResponse}.
 */
class Exchange implements HttpRequest, HttpResponse {
  status = 200;
  head: RequestHead;
  readonly conn: HttpConnection;
  /** The first prepared header block, when nothing was set before it (`setHeaders`). */
  #first: Uint8Array | null = null;
  /** Further header lines, already encoded (`setHeader` / `setHeaders`), after `#first`. */
  #extra: Uint8Array[] | null = null;
  #extraText = "";
  #bits = 0;
  #streaming = 0; // 0: not streaming, 1: chunked, 2: close-delimited, 3: framed by the handler, 4: no body (204, 304)
  /** The body bytes the handler's `Content-Length` still allows, or -1 (it set none). */
  #left = -1;
  /** Output written before this exchange's turn. */
  pending: Uint8Array[] | null = null;
  /** Body reading and callbacks, made when first needed: most requests have no body and nobody waits on them. */
  #rare: ExchangeRare | null = null;
  /** A complete response rendered by the engine (errors), written as is. */
  preset: Uint8Array | null = null;

  /** The handler set `Connection`. */
  get #userConnection(): boolean {
    return (this.#bits & X_USER_CONNECTION) !== 0;
  }
  set #userConnection(on: boolean) {
    this.#bits = on ? this.#bits | X_USER_CONNECTION : this.#bits & ~X_USER_CONNECTION;
  }
  /** The handler set `Content-Length` or `Transfer-Encoding`. */
  get #userLength(): boolean {
    return (this.#bits & X_USER_LENGTH) !== 0;
  }
  set #userLength(on: boolean) {
    this.#bits = on ? this.#bits | X_USER_LENGTH : this.#bits & ~X_USER_LENGTH;
  }
  /** The handler set `Date`. */
  get #userDate(): boolean {
    return (this.#bits & X_USER_DATE) !== 0;
  }
  set #userDate(on: boolean) {
    this.#bits = on ? this.#bits | X_USER_DATE : this.#bits & ~X_USER_DATE;
  }
  /** The handler set `Content-Type`. */
  get #userType(): boolean {
    return (this.#bits & X_USER_TYPE) !== 0;
  }
  set #userType(on: boolean) {
    this.#bits = on ? this.#bits | X_USER_TYPE : this.#bits & ~X_USER_TYPE;
  }
  get #headersSent(): boolean {
    return (this.#bits & X_HEADERS_SENT) !== 0;
  }
  set #headersSent(on: boolean) {
    this.#bits = on ? this.#bits | X_HEADERS_SENT : this.#bits & ~X_HEADERS_SENT;
  }
  get #finished(): boolean {
    return (this.#bits & X_FINISHED) !== 0;
  }
  set #finished(on: boolean) {
    this.#bits = on ? this.#bits | X_FINISHED : this.#bits & ~X_FINISHED;
  }
  get requestComplete(): boolean {
    return (this.#bits & X_REQUEST_COMPLETE) !== 0;
  }
  set requestComplete(on: boolean) {
    this.#bits = on ? this.#bits | X_REQUEST_COMPLETE : this.#bits & ~X_REQUEST_COMPLETE;
  }
  /** The body reader was told the body ended. */
  get #ended(): boolean {
    return (this.#bits & X_ENDED) !== 0;
  }
  set #ended(on: boolean) {
    this.#bits = on ? this.#bits | X_ENDED : this.#bits & ~X_ENDED;
  }
  /** Reading paused for body bytes nobody read yet. */
  get #earlyPaused(): boolean {
    return (this.#bits & X_EARLY_PAUSED) !== 0;
  }
  set #earlyPaused(on: boolean) {
    this.#bits = on ? this.#bits | X_EARLY_PAUSED : this.#bits & ~X_EARLY_PAUSED;
  }
  /** Some of the body was discarded: it arrived after the response ended, with nobody reading. */
  get #bodyDropped(): boolean {
    return (this.#bits & X_BODY_DROPPED) !== 0;
  }
  set #bodyDropped(on: boolean) {
    this.#bits = on ? this.#bits | X_BODY_DROPPED : this.#bits & ~X_BODY_DROPPED;
  }
  get continueSent(): boolean {
    return (this.#bits & X_CONTINUE_SENT) !== 0;
  }
  set continueSent(on: boolean) {
    this.#bits = on ? this.#bits | X_CONTINUE_SENT : this.#bits & ~X_CONTINUE_SENT;
  }
  /** The handler asked for the body while the client waits for `100 Continue`. */
  get wantsContinue(): boolean {
    return (this.#bits & X_WANTS_CONTINUE) !== 0;
  }
  set wantsContinue(on: boolean) {
    this.#bits = on ? this.#bits | X_WANTS_CONTINUE : this.#bits & ~X_WANTS_CONTINUE;
  }
  /** Close the connection after this response (client asked, or the response is close-delimited). */
  get closeAfter(): boolean {
    return (this.#bits & X_CLOSE_AFTER) !== 0;
  }
  set closeAfter(on: boolean) {
    this.#bits = on ? this.#bits | X_CLOSE_AFTER : this.#bits & ~X_CLOSE_AFTER;
  }
  get isHead(): boolean {
    return (this.#bits & X_IS_HEAD) !== 0;
  }
  /** Its handler waits for its turn (the responses before it kept too much: see `KEPT_DISPATCH_MAX`). */
  get deferred(): boolean {
    return (this.#bits & X_DEFERRED) !== 0;
  }
  set deferred(on: boolean) {
    this.#bits = on ? this.#bits | X_DEFERRED : this.#bits & ~X_DEFERRED;
  }
  /** Some of its output never reached the connection (it failed first): its close aborts the response. */
  get cut(): boolean {
    return (this.#bits & X_CUT) !== 0;
  }
  markCut(): void {
    this.#bits |= X_CUT;
  }
  /** The body can no longer complete (see `loseBody`). */
  get #bodyLost(): boolean {
    return (this.#bits & X_BODY_LOST) !== 0;
  }

  constructor(conn: HttpConnection, head: RequestHead) {
    this.conn = conn;
    this.head = head;
    let bits = 0;
    if (!head.keepAlive) bits |= X_CLOSE_AFTER;
    const method = head.method();
    if (method === "HEAD") bits |= X_IS_HEAD;
    // After a CONNECT the client's bytes are a tunnel, which this engine does not make: close after the answer.
    // The same after an Upgrade request: a proxy that starts tunnelling before it sees a 101 would otherwise
    // pass the requests behind it unseen (the WebSocket/h2c smuggling pattern).
    else if (method === "CONNECT") bits |= X_CLOSE_AFTER;
    if (head.upgrade) bits |= X_CLOSE_AFTER;
    if (!(head.chunked || head.contentLength > 0)) bits |= X_REQUEST_COMPLETE;
    this.#bits = bits;
  }

  // ------------------------------------------------------------ request

  get method(): string {
    return this.head.method();
  }
  get url(): string {
    return this.head.target();
  }
  get path(): string {
    return this.head.path();
  }
  get query(): string {
    return this.head.query();
  }
  get httpVersion(): string {
    return this.head.versionMinor === 0 ? "1.0" : "1.1";
  }
  get contentLength(): number {
    return this.head.contentLength;
  }
  get hasBody(): boolean {
    return this.head.chunked || this.head.contentLength > 0;
  }
  header(name: string): string | null {
    return this.head.get(name);
  }
  forEachHeader(fn: (name: string, value: string) => void): void {
    this.head.forEachHeader(fn);
  }
  get remoteAddress(): { address: string; port: number } | null {
    return this.conn.remoteAddress();
  }

  readBody(onChunk: (chunk: Uint8Array) => void, onEnd: () => void, onAbort?: (error: Error) => void): void {
    if ((this.#bits & X_READING) !== 0) throw new Error("The request body is already being read");
    if (this.#bodyDropped) {
      throw new Error("The request body is gone: the response ended before it was read, and the rest was discarded");
    }
    this.#bits |= X_READING;
    const rare = this.#rare ??= new ExchangeRare();
    if (this.#bodyLost) {
      // Too late to wait for it (as the response's onAbort): the reader hears it now.
      if (onAbort !== undefined) onAbort(rare.bodyError!);
      return;
    }
    rare.onChunk = onChunk;
    rare.onEnd = onEnd;
    if (onAbort !== undefined) rare.onBodyAbort = onAbort;
    this.wantsContinue = true;
    this.conn.sendContinue(this);
    rare.earlyBytes = 0;
    this.#releaseEarly(); // the kept pieces are the reader's now: they are held only if it pauses
    this.#handOver(rare);
  }

  pause(): void {
    if ((this.#bits & (X_PAUSED | X_ENDED | X_BODY_LOST)) !== 0) return;
    this.#bits |= X_PAUSED;
    this.#syncPause();
  }

  resume(): void {
    if ((this.#bits & X_PAUSED) === 0) return; // not paused by this request: not its pause to undo
    this.#bits &= ~X_PAUSED;
    this.#syncPause();
    const rare = this.#rare;
    if (rare !== null && rare.onChunk !== null) this.#handOver(rare);
  }

  /**
   * Pauses or resumes reading the connection for this request's own reasons (its reader paused, or its body is kept
   * unread): only while its body is the one coming. Once complete or lost, another request's body is read.
   */
  #syncPause(): void {
    if (!this.requestComplete) this.conn.pauseBody((this.#bits & (X_PAUSED | X_EARLY_PAUSED)) !== 0);
  }

  /**
   * Hands the reader the pieces held for it, in order, until it pauses; then `onEnd` once the body is complete and
   * every piece was handed over (unless lost meanwhile: a piece's callback that dropped the connection heard
   * onAbort). Re-entrant: a callback's `resume()` goes on from where this call is.
   */
  #handOver(rare: ExchangeRare): void {
    for (;;) {
      const q = rare.bodyChunks;
      if (q === null) break;
      if (rare.bodyAt >= q.length) {
        rare.bodyChunks = null;
        rare.bodyAt = 0;
        break;
      }
      const onChunk = rare.onChunk;
      if (onChunk === null || (this.#bits & X_PAUSED) !== 0) return;
      onChunk(q[rare.bodyAt++]);
    }
    if (this.requestComplete && !this.#bodyLost && !this.#ended && rare.onEnd !== null) {
      this.#ended = true;
      rare.onEnd();
    }
  }

  readAll(onBody: (body: Uint8Array) => void, onAbort?: (error: Error) => void): void {
    // One buffer, doubled as needed: a slice per chunk would cost ~200 B of heap per 1-byte chunk. It starts at the
    // announced length up to 64 KiB: a client that announces 8 MiB and sends nothing does not get 8 MiB allocated.
    let buf = new Uint8Array(Math.max(0, Math.min(this.head.contentLength, EARLY_BODY_MAX)));
    let size = 0;
    this.readBody(
      (chunk) => {
        if (size + chunk.byteLength > buf.byteLength) {
          const next = new Uint8Array(Math.max(size + chunk.byteLength, buf.byteLength * 2, 1024));
          next.set(buf.subarray(0, size));
          buf = next;
        }
        buf.set(chunk, size);
        size += chunk.byteLength;
      },
      () => onBody(size === buf.byteLength ? buf : buf.subarray(0, size)),
      onAbort,
    );
  }

  /** A piece of the request body arrived (a view into the read buffer). */
  deliverBody(chunk: Uint8Array): void {
    const rare = this.#rare ??= new ExchangeRare();
    if (rare.onChunk !== null) {
      // A reader that paused gets none until it resumes: kept (reading is paused: at most the rest of this read).
      if (rare.bodyChunks === null && (this.#bits & X_PAUSED) === 0) rare.onChunk(chunk);
      else (rare.bodyChunks ??= []).push(chunk.slice());
    } else if (!this.#finished) {
      // Kept for a reader to come; past EARLY_BODY_MAX, reading pauses until it comes (or the response ends).
      (rare.bodyChunks ??= []).push(chunk.slice());
      rare.earlyBytes += chunk.byteLength + CHUNK_COST; // a tiny chunk costs its object, not its bytes
      if (rare.earlyBytes >= EARLY_BODY_MAX) {
        this.#earlyPaused = true;
        this.#syncPause();
      }
    } else {
      this.#bodyDropped = true; // the response is done and nobody reads: discard
    }
  }

  /** Resumes reading if it was paused for a body nobody was reading yet (and its reader did not pause it). */
  #releaseEarly(): void {
    if (!this.#earlyPaused) return;
    this.#earlyPaused = false;
    this.#syncPause();
  }

  /** The response ended: a body nobody reads is read on and discarded, whatever paused it (its handler's too). */
  #releaseUnread(): void {
    if ((this.#bits & (X_EARLY_PAUSED | X_PAUSED)) === 0) return;
    if (this.#rare?.onChunk == null) this.#bits &= ~X_PAUSED;
    this.#releaseEarly();
    this.#syncPause();
  }

  /** The request is complete. */
  completeRequest(): void {
    if (this.requestComplete) return;
    this.requestComplete = true;
    // Its pauses have nothing more to throttle: the next request must be read. What a paused reader has not taken
    // yet stays held for it; a release of the early pause later must not resume a pause that is another's.
    this.#bits &= ~X_EARLY_PAUSED;
    this.conn.pauseBody(false);
    const rare = this.#rare;
    if (rare !== null && rare.onEnd !== null) this.#handOver(rare);
  }

  /**
   * The body can no longer complete: the connection closed, or will read no more of it, or it was refused. Its
   * reader hears it through `onAbort` (once, never after `onEnd`; a reader to come hears it at once), and what was
   * kept of it for a reader is dropped. Nothing for a complete body.
   */
  loseBody(error: Error): void {
    if (this.requestComplete) return;
    this.requestComplete = true;
    this.#bits |= X_BODY_LOST;
    const rare = this.#rare ??= new ExchangeRare();
    rare.bodyError = error;
    rare.bodyChunks = null;
    rare.bodyAt = rare.earlyBytes = 0;
    this.#bits &= ~X_EARLY_PAUSED;
    this.conn.pauseBody(false); // a reader's pause has nothing left to throttle
    const onAbort = rare.onBodyAbort;
    rare.onChunk = rare.onEnd = rare.onBodyAbort = null; // what a reader gathered goes with them
    if (onAbort === null) return;
    try {
      onAbort(error);
    } catch (err) {
      this.conn.server.reportError(err, this);
    }
  }

  // ------------------------------------------------------------ response

  get headersSent(): boolean {
    return this.#headersSent;
  }
  get finished(): boolean {
    return this.#finished;
  }

  setHeader(name: string, value: string): this {
    if (this.#headersSent) throw new Error("Cannot set a header after the head was sent");
    name = String(name);
    value = String(value);
    checkHeader(name, value);
    const lower = name.toLowerCase();
    const flags = headerFlags(lower, value);
    if ((flags & F_LENGTH) !== 0 && lower === "content-length") this.#declare(contentLength(value));
    this.#note(flags);
    this.#extraText += `${name}: ${value}\r\n`;
    return this;
  }

  setHeaders(headers: PreparedHeaders): this {
    if (this.#headersSent) throw new Error("Cannot set headers after the head was sent");
    if (!(headers instanceof PreparedHeaders)) throw new TypeError("setHeaders() takes a PreparedHeaders");
    if (headers._length >= 0) this.#declare(headers._length);
    this.#note(headers._flags);
    this.#flushExtraText();
    // The common case, one prepared block and nothing before it, needs no array.
    if (this.#first === null && this.#extra === null) this.#first = headers.bytes;
    else (this.#extra ??= []).push(headers.bytes);
    return this;
  }

  /** Drops the connection: what was sent of this response stays cut, and the client sees the close. */
  abortConnection(error: unknown): void {
    this.conn.conn.destroy(error instanceof Error ? error : new Error(String(error)));
  }

  /** Forgets the status and the headers set so far (before the head is sent). */
  resetHead(): void {
    if (this.#headersSent) throw new Error("Cannot reset a response whose head was sent");
    this.status = 200;
    this.#first = this.#extra = null;
    this.#extraText = "";
    this.#left = -1;
    this.#bits &= ~(X_USER_CONNECTION | X_USER_LENGTH | X_USER_DATE | X_USER_TYPE);
  }

  /** The handler set `Content-Length: n`: the body must be exactly `n` bytes (or the next response would not be read as one). */
  #declare(n: number): void {
    if (this.#left >= 0) throw new TypeError("Content-Length must be set once");
    this.#left = n;
  }

  /** Takes note of headers that change what the engine adds (`F_*` bits). */
  #note(flags: number): void {
    if (flags === 0) return;
    if (flags & F_CONNECTION) this.#userConnection = true;
    if (flags & F_CLOSE) this.closeAfter = true;
    if (flags & F_LENGTH) this.#userLength = true;
    if (flags & F_DATE) this.#userDate = true;
    if (flags & F_TYPE) this.#userType = true;
  }

  #flushExtraText(): void {
    if (this.#extraText === "") return;
    (this.#extra ??= []).push(encoder.encode(this.#extraText));
    this.#extraText = "";
  }

  end(body?: string | Uint8Array): void {
    if (this.#finished) throw new Error("The response has already ended");
    // A bad status must throw before the response counts as finished (#writeHead comes after that).
    if (!this.#headersSent) statusLine(this.status, this.head.versionMinor);
    if (this.#streaming !== 0) {
      if (body !== undefined) this.write(body);
      this.#finished = true;
      this.#releaseUnread(); // the rest of the body is read and discarded
      if (this.#streaming === 3 && this.#left > 0 && !this.isHead) {
        // Shorter than its Content-Length: the client would wait for the rest, or read the next response as it.
        const err = new TypeError(`The body ended ${this.#left} bytes short of its Content-Length`);
        this.conn.server.reportError(err, this);
        this.abortConnection(err);
        return;
      }
      if (this.#streaming === 1 && !this.isHead) this.conn.output(this, CHUNK_END);
      this.conn.responseDone(this);
      return;
    }
    let bytes: Uint8Array;
    if (body === undefined) {
      bytes = EMPTY;
    } else if (typeof body === "string") {
      bytes = encodeBody(body);
    } else {
      bytes = body;
    }
    // A long string's encoding is this response's own: held as is if it waits. A short one's is a shared scratch.
    const owned = typeof body === "string" && body.length > TEXT_SCRATCH_MAX;
    if (this.#left >= 0 && this.#left !== bytes.byteLength && !this.isHead && !isBodiless(this.status)) {
      throw new TypeError(`Content-Length: ${this.#left} set, but the body has ${bytes.byteLength} bytes`);
    }
    this.#finished = true;
    this.#releaseUnread(); // the rest of the body is read and discarded
    const out = scratch;
    out.clear();
    this.#writeHead(out, bytes.byteLength, false);
    if (!this.isHead && !isBodiless(this.status) && bytes.byteLength > 0) {
      if (bytes.byteLength <= 16 * 1024) {
        out.put(bytes);
      } else {
        this.#flush(out);
        this.conn.output(this, bytes, owned);
      }
    }
    if (out.length > 0) this.#flush(out);
    this.conn.responseDone(this);
  }

  write(chunk: string | Uint8Array): boolean {
    if (this.#finished) throw new Error("Cannot write after end()");
    const bytes = typeof chunk === "string" ? encoder.encode(chunk) : chunk;
    const left = this.#left;
    if (
      left >= 0 && bytes.byteLength > left && !this.isHead &&
      (this.#headersSent ? this.#streaming === 3 : !isBodiless(this.status))
    ) {
      throw new TypeError(`Content-Length: the body would go ${bytes.byteLength - left} bytes past it`);
    }
    if (!this.#headersSent) {
      const out = scratch;
      out.clear();
      this.#writeHead(out, -1, true);
      this.#flush(out);
    }
    if (bytes.byteLength === 0 || this.isHead || this.#streaming === 4) return this.conn.writable;
    if (left >= 0) this.#left = left - bytes.byteLength;
    const owned = typeof chunk === "string"; // its encoding is this response's own
    if (this.#streaming === 1) {
      const out = scratch;
      out.clear();
      out.hex(bytes.byteLength);
      out.crlf();
      if (bytes.byteLength <= 4096) {
        out.put(bytes);
        out.crlf();
        this.#flush(out);
      } else {
        this.#flush(out);
        this.conn.output(this, bytes, owned);
        this.conn.output(this, CRLF, true);
      }
    } else {
      this.conn.output(this, bytes, owned);
    }
    // Not its turn yet: what it keeps for its turn is bounded too, as the connection's queue is.
    return this.conn.writable && (this.pending === null || this.#rare!.keptBytes < KEPT_HIGH);
  }

  /** Keeps output written before this exchange's turn: `owned` bytes as they are, others copied. */
  keep(bytes: Uint8Array, owned: boolean): void {
    (this.pending ??= []).push(owned ? bytes : bytes.slice());
    (this.#rare ??= new ExchangeRare()).keptBytes += bytes.byteLength;
  }

  /** Takes the output kept until this exchange's turn (its turn came). */
  takePending(): Uint8Array[] {
    const pending = this.pending!;
    this.pending = null;
    this.#rare!.keptBytes = 0;
    return pending;
  }

  /** Hands what `out` holds to the connection (which copies what it keeps), and clears it for the next response. */
  #flush(out: OutBuffer): void {
    this.conn.output(this, out.view());
    out.clear(); // a buffer that grew past KEEP_MAX (huge headers) gives its memory back here
  }

  onDrain(fn: () => void): void {
    ((this.#rare ??= new ExchangeRare()).drainFns ??= []).push(fn);
  }

  onAbort(fn: () => void): void {
    // Too late to wait for it: the connection closed before the response was complete (a handler still busy then).
    if ((this.#bits & X_ABORTED) !== 0) return fn();
    ((this.#rare ??= new ExchangeRare()).abortFns ??= []).push(fn);
  }

  /** The connection drained: run the `onDrain` callbacks. */
  drained(): void {
    const rare = this.#rare;
    const fns = rare === null ? null : rare.drainFns;
    if (fns === null) return;
    rare!.drainFns = null;
    for (const fn of fns) fn();
  }

  /** The connection closed before the response was complete (all of it handed to the connection); once. */
  aborted(): void {
    if ((this.#bits & X_ABORTED) !== 0) return;
    this.#bits |= X_ABORTED;
    const rare = this.#rare;
    if (rare === null) return;
    const fns = rare.abortFns;
    rare.abortFns = rare.drainFns = null;
    if (fns !== null) { for (const fn of fns) fn(); }
  }

  get wantsDrain(): boolean {
    return this.#rare !== null && this.#rare.drainFns !== null;
  }

  /**
   * Writes the status line and headers into `out`: `length` ≥ 0 is a known
   * body length (`Content-Length`); `streaming` picks chunked (HTTP/1.1) or
   * close-delimited (HTTP/1.0) framing unless the handler framed it itself.
   */
  #writeHead(out: OutBuffer, length: number, streaming: boolean): void {
    const minor = this.head.versionMinor;
    const status = this.status;
    const line = statusLine(status, minor); // throws for a bad status: nothing is sent, a 500 still can be
    this.#headersSent = true;
    out.put(line);
    if (!this.#userDate) out.put(dateHeader(this.conn.server.reactor));
    this.#putUserHeaders(out, status);
    if (streaming) this.#streaming = isBodiless(status) ? 4 : this.#userLength ? 3 : minor === 1 ? 1 : 2;
    if (!this.#userLength && !isBodiless(status)) {
      if (this.#streaming === 1) out.put(H_CHUNKED);
      else if (this.#streaming === 2) this.closeAfter = true;
      else {
        out.put(H_CONTENT_LENGTH);
        out.decimal(length);
        out.crlf();
      }
    }
    if (this.conn.shuttingDown) this.closeAfter = true;
    if (!this.#userConnection) {
      if (this.closeAfter) out.put(H_CLOSE);
      else if (minor === 0) out.put(H_KEEP_ALIVE);
    }
    out.crlf();
  }

  /**
   * Writes the header lines the handler set. A 204 goes without the `Content-Length` or `Transfer-Encoding` it set
   * (RFC 9110 §8.6, RFC 9112 §6.1), as Go's net/http and hyper drop them; a 304 keeps them (allowed there).
   */
  #putUserHeaders(out: OutBuffer, status: number): void {
    this.#flushExtraText();
    const unframe = status === 204 && this.#userLength;
    const first = this.#first;
    if (first !== null) out.put(unframe ? withoutFraming(first) : first);
    const extra = this.#extra;
    if (extra !== null) {
      for (let i = 0; i < extra.length; i++) {
        out.put(unframe ? withoutFraming(extra[i]) : extra[i]);
      }
    }
  }

  /** A complete response for an engine-made error (`preset`). */
  static render(status: number, minor: number, reason: string, close: boolean): Uint8Array {
    const body = `${reason || reasonPhrase(status)}\n`;
    const out = new OutBuffer(256 + body.length * 3);
    out.put(statusLine(status, minor));
    out.put(dateHeader());
    out.put(H_TEXT);
    out.put(H_CONTENT_LENGTH);
    out.decimal(encoder.encode(body).byteLength);
    out.crlf();
    if (close) out.put(H_CLOSE);
    out.crlf();
    out.text(body);
    return out.view().slice();
  }
}

/**
 * The request's header fields as `[name, value, name, value, …]`, in one
 * array of the exact size (for `serve()`'s lazy `Request`, which copies them
 * when its handler returns).
 */
export function headerFields(req: HttpRequest): string[] {
  const head = (req as Exchange).head;
  const n = head.headerCount;
  const fields = new Array<string>(2 * n);
  for (let i = 0; i < n; i++) {
    fields[2 * i] = head.headerName(i);
    fields[2 * i + 1] = head.headerValue(i);
  }
  return fields;
}

/**
 * Drops the connection of `res` (for `serve()`, whose response failed after its head went out: ending it cleanly
 * would tell the client that a cut body is complete), as the engine does for a raw handler that fails then.
 */
export function abortResponse(res: HttpResponse, error: unknown): void {
  if (res instanceof Exchange) res.abortConnection(error);
}

/** Whether `res` answers a HEAD request (its body is left out). */
export function isHeadResponse(res: HttpResponse): boolean {
  return res instanceof Exchange && res.isHead;
}

/** Forgets what a response set before its head was sent (for `serve()`, which answers a failed response with a 500). */
export function resetResponseHead(res: HttpResponse): void {
  if (res instanceof Exchange) res.resetHead();
}

const CRLF = encoder.encode("\r\n");
// A string body of up to TEXT_SCRATCH_MAX units, encoded (so within KEEP_MAX: 3 × 16 Ki fits 64 KiB).
const bodyScratch = new OutBuffer(4096, KEEP_MAX);

/**
 * A string body as UTF-8: a short one in `bodyScratch` (a view, valid until the next call), a long one in bytes of
 * its own, which go to the socket as they are and are freed with the response.
 */
function encodeBody(body: string): Uint8Array {
  if (body.length > TEXT_SCRATCH_MAX) return encoder.encode(body);
  bodyScratch.clear();
  bodyScratch.text(body);
  return bodyScratch.view();
}

/**
 * @ignore For tests only (not exported from `http/mod.ts`): the capacities, in bytes, of the module-wide buffers
 * that responses are written into, to show that a large response gave their memory back.
 */
export function _responseBufferCapacities(): { head: number; body: number; cork: number } {
  return { head: scratch.bytes.byteLength, body: bodyScratch.bytes.byteLength, cork: cork.bytes.byteLength };
}

/**
 * The default `onError`: the request line and the error (with its stack) for
 * a handler's failure, once; one line for an error of the server itself (a
 * connection the select backend refuses past FD_SETSIZE, an fd shortage), as
 * the reactor prints a transport's.
 */
function logHandlerError(error: unknown, request?: HttpRequest): void {
  if (request === undefined) {
    console.error(`fdloop http: server error: ${error instanceof Error ? error.message : String(error)}`);
    return;
  }
  console.error(`fdloop http: the handler of ${request.method} ${request.url} failed:`, error);
}

/** Statuses whose responses never carry a body (RFC 9110 §6.4.1). */
function isBodiless(status: number): boolean {
  return status < 200 || status === 204 || status === 304;
}

/**
 * A first-in first-out queue on a ring that keeps its array when it empties.
 * An array used as a queue (`push` one, `shift` it) frees its backing store
 * each time it empties and allocates a new one on the next `push` (152 bytes
 * here): once per request on a keep-alive connection.
 */
export class Fifo<T> {
  #items: (T | undefined)[] = [];
  #head = 0;
  #size = 0;

  get length(): number {
    return this.#size;
  }

  /** The oldest item, or `undefined` when empty. */
  first(): T | undefined {
    return this.#size === 0 ? undefined : this.#items[this.#head];
  }

  push(item: T): void {
    if (this.#size === this.#items.length) this.#grow();
    const items = this.#items;
    items[(this.#head + this.#size) & (items.length - 1)] = item;
    this.#size++;
  }

  /** Removes and returns the oldest item. */
  shift(): T | undefined {
    if (this.#size === 0) return undefined;
    const items = this.#items;
    const item = items[this.#head];
    items[this.#head] = undefined;
    this.#head = --this.#size === 0 ? 0 : (this.#head + 1) & (items.length - 1);
    return item;
  }

  /** Removes every item and returns them, oldest first. */
  takeAll(): T[] {
    const all: T[] = [];
    while (this.#size > 0) all.push(this.shift()!);
    return all;
  }

  /** Doubles the ring (a power of two, at least 4), oldest item first. */
  #grow(): void {
    const old = this.#items;
    const items = new Array<T | undefined>(Math.max(4, old.length * 2));
    for (let i = 0; i < this.#size; i++) items[i] = old[(this.#head + i) & (old.length - 1)];
    this.#items = items;
    this.#head = 0;
  }
}

/**
 * Output waiting behind a piece larger than a connection's write queue should hold (a body of any size given to
 * `end()` or one `write()`): handed to the connection in slices of `FEED_SLICE` each time it drains, by reference
 * (a caller's bytes are copied once, when they must wait, so that it may reuse them; a string's encoding is the
 * response's own). The response it belongs to is done, and the responses behind it get their turn, only once its
 * last slice is handed over; a close before that aborts it.
 */
class Backlog {
  /** The pieces, in order, from `head` on; the first is handed over from `at`. */
  readonly pieces: Uint8Array[];
  head = 0;
  at = 0;
  /**
   * What the pieces behind the first cost (their bytes and `PIECE_COST` each): it counts against the connection's
   * cap, as a handler that writes on without waiting for `onDrain` would otherwise grow it without bound.
   */
  behind = 0;
  /** The exchange whose output this is (the one whose turn it is). */
  readonly owner: Exchange | null;

  constructor(first: Uint8Array, owner: Exchange | null) {
    this.pieces = [first];
    this.owner = owner;
  }
}

/** A write that would take the output held behind a large body past the connection's cap: `ENOBUFS`. */
function overflowError(conn: Connection, len: number, held: number): OSError {
  return new OSError(
    Errno.ENOBUFS,
    "write",
    `Cannot queue ${len} more bytes of a response on fd ${conn.fd}`,
    `${held} bytes wait behind a body being sent, the limit is ${conn.maxWriteBuffer} (wait for onDrain)`,
  );
}

/** The state of one HTTP connection: its parser, its queue of exchanges and its deadline. */
class HttpConnection implements ParserHandler {
  readonly server: Engine;
  readonly conn: Connection;
  readonly parser: RequestParser;
  /** Exchanges in arrival order; the first is the one whose response is being written. */
  readonly queue: Fifo<Exchange> = new Fifo();
  /** The exchange whose request the parser is reading (head seen, not complete). */
  #parsing: Exchange | null = null;
  #corked = false;
  /** When the current deadline passes, on the reactor's clock (Infinity: none). */
  deadline = Infinity;
  deadlineKind = D_NONE;
  /** No more requests are served (the client asked, an error, a shutdown). */
  #closing = false;
  /** FIN sent; reading and discarding until the client closes or the linger deadline. */
  #lingering = false;
  /** Bytes discarded since a rejection (while its error response waits) and while lingering: at most `lingerBytes`. */
  #lingered = 0;
  /** A request was refused: what follows is not HTTP we will read, it is discarded (counted) until the close. */
  #discarding = false;
  /** Reading paused because too many pipelined requests wait for their turn. */
  #pipelinePaused = false;
  /** Reading paused because a handler is not keeping up with a request body. */
  #bodyPaused = false;
  #remote: { address: string; port: number } | null | undefined = undefined;
  shuttingDown = false;
  /** Bytes the exchanges behind the front keep for their turn (see `KEPT_DISPATCH_MAX`). */
  #kept = 0;

  constructor(server: Engine, conn: Connection) {
    this.server = server;
    this.conn = conn;
    this.parser = new RequestParser(this, server.limits);
    // One set of listeners for every connection, each finding its HttpConnection on the connection it runs for
    // (`this`): four closures per connection would cost ~300 bytes of heap each.
    setOwner(conn, this);
    conn.on("data", HttpConnection.#data);
    conn.on("end", HttpConnection.#end);
    conn.on("drain", HttpConnection.#drain);
    conn.on("error", HttpConnection.#error);
    conn.on("close", HttpConnection.#close);
    this.setDeadline(D_HEADER, server.headerTimeout);
  }

  static readonly #data = function (this: Connection, chunk: Uint8Array): void {
    (ownerOf(this) as HttpConnection).#onData(chunk);
  };
  static readonly #end = function (this: Connection): void {
    (ownerOf(this) as HttpConnection).#onEnd();
  };
  static readonly #drain = function (this: Connection): void {
    (ownerOf(this) as HttpConnection).#onDrain();
  };
  static readonly #close = function (this: Connection, error?: Error): void {
    (ownerOf(this) as HttpConnection).#onClose(error);
  };
  static readonly #error = function (this: Connection, error: Error): void {
    (ownerOf(this) as HttpConnection).#onError(error);
  };

  /** Output waiting for the connection behind a large piece, handed over as it drains; null when none waits. */
  #backlog: Backlog | null = null;

  /** Whether the connection's write queue is below its high-water mark: what the last `write()` said, until `drain`. */
  writable = true;

  /**
   * When the sweep looks next whether the client took any of the output waiting for it ({@linkcode checkSend});
   * Infinity while nothing is watched. Apart from `deadline`: no other deadline may put it off.
   */
  sendCheck = Infinity;
  /** The connection's `bytesWritten` when the watch last saw it move, and when that was. */
  #sendMark = 0;
  #sendSince = 0;

  remoteAddress(): { address: string; port: number } | null {
    if (this.#remote === undefined) {
      const a = this.conn.destroyed ? undefined : this.conn.remoteAddress;
      this.#remote = a === undefined || a.family === "unix" ? null : { address: a.address, port: a.port };
    }
    return this.#remote;
  }

  setDeadline(kind: number, ms: number): void {
    this.deadlineKind = kind;
    this.deadline = ms > 0 && Number.isFinite(ms) ? this.server.reactor.time() + ms : Infinity;
  }

  // ------------------------------------------------------------ reading

  #onData(chunk: Uint8Array): void {
    // Rejected already (the error response may wait behind earlier ones), or lingering: read on, so that a FIN is
    // seen, but discard what comes, bounded. Lingering, the bound counts from when the response has all left: until
    // then the client may still be sending the body of a request answered early, and closing would cut the response.
    if (this.#lingering || this.#discarding) {
      if (this.#discarding || (this.#backlog === null && this.conn.bufferedAmount === 0)) {
        this.#lingered += chunk.byteLength;
        if (this.#lingered > this.server.lingerBytes) this.conn.destroy();
      }
      return;
    }
    let status = 0;
    this.#corked = true;
    try {
      status = this.parser.execute(chunk);
    } catch (err) {
      // A body callback of the handler threw: the parser's state is lost with it.
      this.server.reportError(err, this.#parsing ?? undefined);
      this.conn.destroy();
      return;
    } finally {
      this.#corked = false;
      this.#uncork();
    }
    if (status !== 0) {
      this.#reject(status, this.parser.errorReason);
      return;
    }
    if (this.#lingering) {
      this.#loseBody(LINGER_LOSS); // a response of this read closes the connection (#finishAndClose)
      return;
    }
    // A new head began in this read: the whole header section must arrive before its deadline.
    if (this.parser.inHead && this.deadlineKind !== D_HEADER) this.setDeadline(D_HEADER, this.server.headerTimeout);
    if (this.queue.length >= this.server.maxPipelined && !this.#pipelinePaused) {
      this.#pipelinePaused = true;
      this.#applyPause();
    }
  }

  onHead(head: RequestHead): void {
    const ex = new Exchange(this, head);
    this.queue.push(ex);
    this.#parsing = ex;
    if (ex.hasBody) this.setDeadline(D_BODY, this.server.bodyTimeout);
    else this.setDeadline(D_NONE, Infinity);
    if (this.#closing) {
      // After `Connection: close`, an error or a shutdown, later pipelined requests are not served.
      ex.preset = EMPTY;
      return;
    }
    // RFC 9112 §9.6: after a request with the "close" option (or a CONNECT), no further request is processed.
    if (ex.closeAfter) this.#closing = true;
    if (this.#kept >= KEPT_DISPATCH_MAX) {
      ex.deferred = true; // dispatched by #advance when its turn comes
      head.detach();
      return;
    }
    this.server.dispatch(ex);
    // Keep the head's bytes past this read if anything may still look at it.
    if (!ex.finished || ex.hasBody) head.detach();
  }

  onBody(chunk: Uint8Array): void {
    this.#parsing?.deliverBody(chunk);
  }

  onComplete(): void {
    const ex = this.#parsing;
    this.#parsing = null;
    if (ex === null) return;
    if (this.deadlineKind === D_BODY) this.setDeadline(D_NONE, Infinity);
    ex.completeRequest();
    if (this.queue.first() === ex) this.#advance();
  }

  /** The client half-closed: answer what is in flight, then close. */
  #onEnd(): void {
    if (this.#lingering) return;
    if (!this.server.halfClose) {
      this.conn.destroy(); // #onClose aborts what is in flight
      return;
    }
    this.#closing = true;
    const ex = this.#parsing;
    if (ex !== null) {
      // A request cut short: it will never complete. Its response (if any) is abandoned, and its body reader told.
      ex.preset = EMPTY;
      this.#loseBody("The client closed its side of the connection (FIN) before the request body was complete");
      if (!ex.finished) ex.aborted();
    }
    this.#advance();
  }

  /**
   * The body of the request being read will not complete (`message` says why; `cause`, the connection's error): its
   * reader hears it ({@linkcode Exchange.loseBody}), and the parser is done with it. Nothing made when none is read.
   */
  #loseBody(message: string, cause?: Error): void {
    const ex = this.#parsing;
    if (ex === null) return;
    this.#parsing = null;
    if (ex.requestComplete) return;
    ex.loseBody(cause === undefined ? new Error(message) : new Error(message, { cause }));
  }

  /** Pauses or resumes reading the socket to match the two reasons to pause. */
  #applyPause(): void {
    const pause = this.#pipelinePaused || this.#bodyPaused;
    if (pause === this.conn.isPaused || this.conn.destroyed) return;
    if (pause) this.conn.pause();
    else this.conn.resume();
  }

  /** Backpressure from a request body's reader (`req.pause()` / `req.resume()`). */
  pauseBody(paused: boolean): void {
    if (this.#bodyPaused === paused || this.#lingering || this.#discarding) return;
    this.#bodyPaused = paused;
    this.#applyPause();
  }

  #onDrain(): void {
    if (this.#backlog !== null) {
      this.#feedBacklog(this.#backlog);
      return;
    }
    this.writable = true;
    if (this.#pipelinePaused && this.queue.length < this.server.maxPipelined) {
      this.#pipelinePaused = false;
      this.#applyPause();
    }
    const front = this.queue.first();
    if (front !== undefined && front.wantsDrain) front.drained();
  }

  #onClose(error?: Error): void {
    // What a backlog still held is dropped with the connection; its response ended, but did not all go out.
    const fed = this.#backlog === null ? null : this.#backlog.owner;
    this.#backlog = null;
    this.server.connectionClosed(this);
    this.#loseBody("The connection closed before the request body was complete", error);
    // Aborted: a response in progress, and one that ended but did not all reach the connection (kept for its turn,
    // refused by a connection that failed, cut in the middle of a large body).
    for (const ex of this.queue.takeAll()) if (!ex.finished || ex.pending !== null || ex.cut) ex.aborted();
    if (fed !== null) fed.aborted();
  }

  /**
   * A reset or vanished client ends only its own connection: there is nobody to tell. A write queue past its cap
   * (`ENOBUFS`) is the handler's doing, writing on without waiting for `onDrain`: `onError` hears of it, naming the
   * request (still at the front: `#advance` retires nothing on a destroyed connection).
   */
  #onError(error: Error): void {
    if (error instanceof OSError && error.code === "ENOBUFS") this.server.reportError(error, this.queue.first());
  }

  // ------------------------------------------------------------ writing

  /** Sends `100 Continue` for `ex` if the client asked for it, it is `ex`'s turn, and nothing final was sent. */
  sendContinue(ex: Exchange): void {
    if (!ex.head.expectContinue || ex.continueSent || ex.requestComplete || ex.headersSent) return;
    if (this.queue.first() !== ex) return; // sent from #advance when its turn comes
    ex.continueSent = true;
    this.#send(CONTINUE, true);
  }

  /**
   * Output of `ex`: written now if it is its turn, else kept until it is. `owned` bytes are the response's own (a
   * string's encoding, a copy): kept as they are; others (a caller's, a shared buffer's view) are copied if kept.
   */
  output(ex: Exchange, bytes: Uint8Array, owned = false): void {
    if (this.conn.destroyed) {
      ex.markCut();
      return;
    }
    // Taken over by the engine (its request broke or was cut short, or it is not served): nothing of it is sent, even
    // what an `onAbort` callback of its handler answers while the engine's answer is still on its way.
    if (ex.preset !== null) return;
    if (this.queue.first() === ex) {
      this.#send(bytes, owned);
    } else {
      ex.keep(bytes, owned);
      this.#kept += bytes.byteLength;
    }
  }

  #send(bytes: Uint8Array, owned: boolean): void {
    if (!this.#corked) {
      this.#write(bytes, owned);
      return;
    }
    if (bytes.byteLength > cork.room()) {
      // What does not fit goes out after what the cork holds; what is larger than the cork, straight to the socket
      // (copying a large body into the shared buffer would grow it for good).
      this.#uncork();
      if (bytes.byteLength > cork.room()) {
        this.#write(bytes, owned);
        return;
      }
    }
    cork.put(bytes);
    if (cork.length >= CORK_SIZE) this.#uncork();
  }

  /** Hands `bytes` to the connection: behind a backlog if one waits, in slices if large, else in one `write()`. */
  #write(bytes: Uint8Array, owned: boolean): void {
    if (this.conn.destroyed || this.conn.writableEnded) return;
    if (this.#backlog !== null) this.#hold(this.#backlog, bytes, owned);
    else if (bytes.byteLength > FEED_SLICE) this.#feed(bytes, owned);
    else if (!(this.writable = this.conn.write(bytes))) this.#watchSend();
  }

  /**
   * Writes a large piece in slices while the connection takes them (below its high-water mark); what is left waits
   * in a new backlog, fed on each drain. The connection's queue never holds more than a slice of it.
   */
  #feed(bytes: Uint8Array, owned: boolean): void {
    const at = this.#writeSlices(bytes, 0);
    if (this.conn.destroyed) {
      // It failed in the middle of the piece (the client left): the close to come aborts the response.
      if (at < bytes.byteLength) this.queue.first()?.markCut();
      return;
    }
    if (!this.writable) this.#watchSend();
    if (at === bytes.byteLength) return;
    // The caller may reuse its bytes once write() or end() returns: the rest is copied, once.
    this.#backlog = new Backlog(owned ? bytes.subarray(at) : bytes.slice(at), this.queue.first() ?? null);
  }

  /**
   * Output waits for the client (a backlog, or the connection's queue past its high-water mark): from now on the
   * sweep watches that the client takes some of it every `sendTimeout` ms ({@linkcode checkSend}).
   */
  #watchSend(): void {
    if (this.sendCheck !== Infinity) return;
    const now = this.server.reactor.time();
    this.#sendMark = this.conn.bytesWritten;
    this.#sendSince = now;
    this.sendCheck = now + this.server.sendStep;
  }

  /**
   * The sweep's look at output waiting for the client: a client that took none of it for `sendTimeout` ms is closed
   * (what was in flight is aborted), as nginx's `send_timeout` does. Once nothing waits, the watch stops, and an idle
   * or linger deadline that waited for the output to leave starts.
   */
  checkSend(now: number): void {
    if (this.conn.destroyed) return;
    if (this.#backlog === null && this.conn.bufferedAmount === 0) {
      this.sendCheck = Infinity;
      if (this.deadlineKind !== D_NONE) return;
      if (this.#lingering) this.setDeadline(D_LINGER, this.server.lingerTimeout);
      else if (this.queue.length === 0 && this.parser.idle) this.setDeadline(D_IDLE, this.server.idleTimeout);
      return;
    }
    const written = this.conn.bytesWritten;
    if (written !== this.#sendMark) {
      this.#sendMark = written;
      this.#sendSince = now;
    } else if (now - this.#sendSince >= this.server.sendTimeout) {
      this.conn.destroy();
      return;
    }
    this.sendCheck = Math.min(this.#sendSince + this.server.sendTimeout, now + this.server.sendStep);
  }

  /** Writes `piece` from `from` on, a slice at a time, until the connection says to wait; returns where it stopped. */
  #writeSlices(piece: Uint8Array, from: number): number {
    let at = from;
    do {
      const end = Math.min(at + FEED_SLICE, piece.byteLength);
      this.writable = this.conn.write(at === 0 && end === piece.byteLength ? piece : piece.subarray(at, end));
      at = end;
    } while (this.writable && at < piece.byteLength);
    return at;
  }

  /**
   * Queues `bytes` behind the backlog (a copy unless `owned`). Past the connection's cap, counting what waits behind
   * the piece being fed and what the connection holds, the connection is destroyed with `ENOBUFS` (see `#onError`).
   */
  #hold(backlog: Backlog, bytes: Uint8Array, owned: boolean): void {
    const len = bytes.byteLength;
    if (len === 0) return;
    const held = backlog.behind + this.conn.bufferedAmount;
    if (held + len + PIECE_COST > this.conn.maxWriteBuffer) {
      this.conn.destroy(overflowError(this.conn, len, held));
      return;
    }
    backlog.pieces.push(owned ? bytes : bytes.slice());
    backlog.behind += len + PIECE_COST;
    this.writable = false;
  }

  /**
   * The connection drained: hands it what it takes of the backlog. Once the last piece is handed over, the response
   * is done: the close decided meanwhile goes ahead, or the next responses get their turn (and a handler waiting for
   * `onDrain` hears it).
   */
  #feedBacklog(backlog: Backlog): void {
    const pieces = backlog.pieces;
    while (backlog.head < pieces.length) {
      const piece = pieces[backlog.head];
      const at = this.#writeSlices(piece, backlog.at);
      if (this.conn.destroyed) return;
      if (at < piece.byteLength) {
        backlog.at = at;
        return;
      }
      pieces[backlog.head++] = EMPTY;
      backlog.at = 0;
      if (backlog.head < pieces.length) backlog.behind -= pieces[backlog.head].byteLength + PIECE_COST;
      if (!this.writable) {
        if (backlog.head < pieces.length) return;
        break; // all handed over; the connection owes a drain, which comes back through #onDrain
      }
    }
    this.#backlog = null;
    if (this.#lingering) this.#endAndLinger();
    else this.#advance();
  }

  /** Writes what the responses of this read put in the cork buffer, in one `send`. */
  #uncork(): void {
    if (cork.length === 0) return;
    const view = cork.view();
    cork.clear();
    // write() copies what it cannot send now (and a backlog what it holds), so the cork buffer is free again.
    this.#write(view, false);
  }

  /** `ex` ended its response. */
  responseDone(ex: Exchange): void {
    // Its output waits in ex.pending (#advance writes it), or the connection is gone (its close aborts the rest).
    if (this.queue.first() !== ex || this.conn.destroyed) return;
    if (!ex.requestComplete) {
      // Answered before the whole body arrived. A client waiting for 100 Continue
      // will not send the body: close. Otherwise read on and discard the rest.
      if (ex.head.expectContinue && !ex.continueSent) ex.closeAfter = true;
      if (ex.closeAfter) this.#finishAndClose();
      return;
    }
    this.#advance();
  }

  /**
   * Retires finished exchanges from the front, writing what the next ones kept, and sets the idle deadline. Not
   * while a backlog waits (its response is not done until it is handed over: `#feedBacklog` comes back here), nor
   * on a destroyed connection (its close aborts what is left).
   */
  #advance(): void {
    const q = this.queue;
    while (q.length > 0) {
      if (this.#backlog !== null || this.conn.destroyed) return;
      const ex = q.first()!;
      if (ex.preset !== null) {
        q.shift();
        this.#unpausePipeline();
        if (ex.preset.byteLength > 0) {
          this.#send(ex.preset, true);
          this.#finishAndClose();
          return;
        }
        continue;
      }
      if (!ex.finished || !ex.requestComplete) {
        if (ex.deferred) {
          // Its handler waited for its turn, which came: it runs now, last (it may end the response at once, which
          // comes back here).
          ex.deferred = false;
          this.server.dispatch(ex);
          return;
        }
        // Its turn came with its output kept until now: a write() that said false then waits for a drain that the
        // connection, writable again, may never owe. Tell it now (last: its callback may end it and come back here).
        if (ex.wantsDrain && this.writable) ex.drained();
        return;
      }
      q.shift();
      // One fewer in flight: reading paused at maxPipelined resumes now, not only on a drain (none may be owed, and a
      // backlog's drain does not pass through #onDrain's unpause) or once the queue is empty (a request further on,
      // its body unread behind the pause, could never complete).
      this.#unpausePipeline();
      if (ex.closeAfter) {
        this.#finishAndClose();
        return;
      }
      const next = q.first();
      if (next === undefined || next.preset !== null) continue;
      if (next.pending !== null) {
        for (const b of next.takePending()) {
          this.#kept -= b.byteLength;
          this.#send(b, true); // copies already
        }
      } else if (next.wantsContinue) {
        this.sendContinue(next);
      }
      if (next.finished && !next.requestComplete && next.closeAfter) {
        this.#finishAndClose();
        return;
      }
    }
    if (this.#backlog !== null || this.conn.destroyed) return;
    this.#unpausePipeline();
    if (this.#closing) this.#finishAndClose();
    else if (this.parser.idle) this.setDeadline(D_IDLE, this.server.idleTimeout);
  }

  /** Resumes reading paused because too many pipelined requests waited, once fewer than `maxPipelined` do. */
  #unpausePipeline(): void {
    if (!this.#pipelinePaused || this.queue.length >= this.server.maxPipelined) return;
    this.#pipelinePaused = false;
    this.#applyPause();
  }

  /**
   * Sends what is queued, then FIN, then reads and discards for a bounded time (a lingering close, as nginx does).
   * A backlog is handed over first: the FIN and the linger deadline wait for its last piece (`#feedBacklog`).
   */
  #finishAndClose(): void {
    if (this.#lingering) return;
    this.#closing = true;
    this.#lingering = true;
    // No more is read: a body still coming is lost to its reader. In the middle of a read, once the parser is done
    // with it (#onData): what of the body that read holds still reaches the reader, and may complete it.
    if (!this.#corked) this.#loseBody(LINGER_LOSS);
    // What this connection's read put in the cork goes first. Not corked, the cork (module-wide) holds another
    // connection's responses, if any: a handler of that read ending this response brought us here.
    if (this.#corked) this.#uncork();
    for (const ex of this.queue.takeAll()) if (!ex.finished) ex.aborted();
    if (this.conn.destroyed) return;
    this.#pipelinePaused = this.#bodyPaused = false;
    this.#applyPause();
    if (this.#backlog !== null) this.setDeadline(D_NONE, Infinity);
    else this.#endAndLinger();
  }

  /** Sends FIN once the connection's queue is flushed, and closes at the linger deadline at the latest. */
  #endAndLinger(): void {
    this.conn.end();
    this.setDeadline(D_LINGER, this.server.lingerTimeout);
  }

  /** A request the parser refused (or a timeout): answer `status` after the responses before it, then close. */
  #reject(status: number, reason: string): void {
    const bytes = Exchange.render(status, 1, reason, true);
    const broken = this.#parsing;
    if (broken !== null) {
      // Its body went wrong: whatever its handler does now cannot be sent (preset first: the reader's onAbort may
      // answer). Its body reader hears why.
      const started = broken.headersSent;
      if (!started) broken.preset = EMPTY;
      this.#loseBody(`The request body was refused: ${status} ${reason || reasonPhrase(status)}`);
      if (started) {
        this.#finishAndClose();
        return;
      }
      if (!broken.finished) broken.aborted();
    }
    this.#closing = true;
    const err = new Exchange(this, EMPTY_HEAD);
    err.preset = bytes;
    err.requestComplete = true;
    this.queue.push(err);
    this.#advance();
    // Still behind a response in progress: what comes until the error goes out is no longer HTTP. It is read and
    // discarded, counted against `lingerBytes` as the lingering close that follows counts it, rather than left
    // unread: a paused connection would not see the client's FIN (nor abort the exchange in progress for it).
    if (!this.#lingering && !this.conn.destroyed) {
      this.#discarding = true;
      this.#pipelinePaused = this.#bodyPaused = false;
      this.#applyPause();
    }
  }

  /** The sweep found the deadline passed. */
  expire(): void {
    const kind = this.deadlineKind;
    this.setDeadline(D_NONE, Infinity);
    if (kind === D_HEADER && this.parser.idle && this.queue.length === 0) {
      this.conn.destroy(); // nothing of a request arrived: close quietly
    } else if (kind === D_HEADER || kind === D_BODY) {
      this.#reject(408, kind === D_HEADER ? "Request header timeout" : "Request body timeout");
    } else if (kind === D_IDLE || kind === D_LINGER) {
      // The last response (or the FIN behind it) has not all left: the client is still reading it. The deadline
      // starts once it has (checkSend), and a client that stopped reading is closed by the send watch meanwhile.
      if (this.conn.bufferedAmount > 0) this.#watchSend();
      else this.conn.destroy();
    }
  }

  /** Graceful shutdown: close now if idle, else after what is in flight. */
  shutdown(): void {
    this.shuttingDown = true;
    this.#closing = true;
    if (this.queue.length === 0 && this.parser.idle && this.#backlog === null) {
      // Idle, but its last response may still be on its way to the client: FIN after it (and linger), not a cut.
      if (this.conn.bufferedAmount > 0) this.#finishAndClose();
      else this.conn.destroy();
    }
  }
}

/** What the connections of one server share: options, the handler, the deadline sweep, shutdown. */
class Engine {
  /** The reactor serving it. */
  readonly reactor: Reactor;
  /** The listening socket. */
  readonly listener: Server;
  /** Parser limits. */
  readonly limits: ParserLimits;
  readonly headerTimeout: number;
  readonly bodyTimeout: number;
  readonly idleTimeout: number;
  readonly lingerTimeout: number;
  readonly lingerBytes: number;
  /** `sendTimeout`, Infinity for none; and how often the send watch of a connection looks (at most once a second). */
  readonly sendTimeout: number;
  readonly sendStep: number;
  readonly maxPipelined: number;
  readonly halfClose: boolean;
  readonly #handler: HttpHandler;
  readonly #onError: (error: unknown, request?: HttpRequest) => void;
  readonly #connections = new Set<HttpConnection>();
  /** The deadline sweep: running only while there are connections, so an idle server wakes for nothing. */
  #sweep: { cancel(): void } | null = null;
  readonly #sweepEvery: number;
  #shutdown: Promise<void> | null = null;
  /** The timer that closes what is left after a shutdown's timeout, and when it fires. */
  #force: { cancel(): void } | null = null;
  #forceAt = 0;
  #finishedResolve!: () => void;
  /** Resolves once the server is shut down and every connection is closed. */
  readonly finished: Promise<void>;

  constructor(options: HttpServerOptions, handler: HttpHandler) {
    this.#handler = handler;
    this.limits = {
      maxHeaderBytes: options.maxHeaderBytes ?? DEFAULT_LIMITS.maxHeaderBytes,
      maxUriBytes: options.maxUriBytes ?? DEFAULT_LIMITS.maxUriBytes,
      maxBodyBytes: options.maxBodyBytes ?? DEFAULT_LIMITS.maxBodyBytes,
      maxHeaders: options.maxHeaders ?? DEFAULT_LIMITS.maxHeaders,
    };
    this.headerTimeout = options.headerTimeout ?? 20_000;
    this.bodyTimeout = options.bodyTimeout ?? 60_000;
    this.idleTimeout = options.idleTimeout ?? 5_000;
    this.lingerTimeout = options.lingerTimeout ?? 2_000;
    this.lingerBytes = options.lingerBytes ?? 1024 * 1024;
    const send = options.sendTimeout ?? 60_000;
    this.sendTimeout = send > 0 ? send : Infinity;
    this.sendStep = Math.min(this.sendTimeout / 4, 1000);
    this.maxPipelined = options.maxPipelined ?? 64;
    this.halfClose = options.halfClose ?? true;
    const listenOptions: ListenOptions = options.path !== undefined
      ? { path: options.path, backlog: options.backlog, reactor: options.reactor, allowHalfOpen: true }
      : {
        allowHalfOpen: true, // a client that half-closes after its request still gets the response
        host: options.host ?? "127.0.0.1",
        port: options.port ?? 8000,
        backlog: options.backlog,
        reusePort: options.reusePort,
        reactor: options.reactor,
      };
    this.listener = listen(listenOptions, (conn) => this.#accept(conn));
    this.reactor = this.listener.reactor;
    this.#onError = options.onError ?? logHandlerError;
    this.listener.on("error", (err) => this.#onError(err));
    const shortest = Math.min(
      this.headerTimeout,
      this.bodyTimeout,
      this.idleTimeout,
      this.lingerTimeout,
      this.sendTimeout,
    );
    this.#sweepEvery = Math.min(1000, Math.max(5, Math.floor(shortest / 4)));
    this.finished = new Promise((resolve) => this.#finishedResolve = resolve);
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  #accept(conn: Connection): void {
    if (this.#shutdown !== null) {
      conn.destroy();
      return;
    }
    conn.setNoDelay(true);
    this.#connections.add(new HttpConnection(this, conn));
    this.#sweep ??= this.reactor.callEvery(this.#sweepEvery, () => this.#sweepDeadlines());
  }

  /** Runs the handler for `ex`; a throw becomes a 500. */
  dispatch(ex: Exchange): void {
    try {
      this.#handler(ex, ex);
    } catch (err) {
      this.handlerFailed(ex, err);
    }
  }

  /** Passes an error to `onError` (the hook's own failure goes to the reactor). */
  reportError(err: unknown, request?: HttpRequest): void {
    try {
      this.#onError(err, request);
    } catch (hookError) {
      this.reactor.reportError(hookError, { source: "transport" });
    }
  }

  /** A handler threw or rejected: log once, answer 500 if nothing was sent, else drop the connection. */
  handlerFailed(ex: Exchange, err: unknown): void {
    this.reportError(err, ex);
    if (ex.finished) return;
    if (ex.headersSent) {
      ex.abortConnection(err);
      return;
    }
    ex.resetHead(); // the handler's headers (a Content-Length, say) would misframe the 500
    ex.status = 500;
    if (!ex.requestComplete) ex.closeAfter = true;
    ex.end("Internal Server Error\n");
  }

  /** A connection closed: forget it; stop the sweep when none is left. */
  connectionClosed(c: HttpConnection): void {
    this.#connections.delete(c);
    if (this.#connections.size === 0) {
      this.#sweep?.cancel();
      this.#sweep = null;
    }
    this.#maybeFinished();
  }

  #sweepDeadlines(): void {
    const now = this.reactor.time();
    for (const c of this.#connections) {
      if (c.deadline <= now) c.expire();
      if (c.sendCheck <= now) c.checkSend(now);
    }
  }

  /**
   * Graceful shutdown: stops accepting, closes idle keep-alive connections at
   * once, lets requests in flight finish, and after `timeoutMs` (default
   * 10 000) closes whatever is left. Resolves with `finished`.
   */
  shutdown(timeoutMs = 10_000): Promise<void> {
    if (this.#shutdown !== null) {
      // Sooner, if anything is left: once finished, a timer would close nothing (on a reactor perhaps closed).
      if (this.#connections.size > 0) this.#forceCloseIn(timeoutMs);
      return this.#shutdown;
    }
    this.#forceCloseIn(timeoutMs);
    void this.listener.close();
    for (const c of [...this.#connections]) c.shutdown();
    this.#shutdown = this.finished.then(() => this.#force?.cancel());
    this.#maybeFinished();
    return this.#shutdown;
  }

  /** Closes the connections left `timeoutMs` from now, unless an earlier shutdown() said sooner. */
  #forceCloseIn(timeoutMs: number): void {
    const at = this.reactor.time() + Math.max(0, timeoutMs);
    if (this.#force !== null && at >= this.#forceAt) return;
    this.#force?.cancel();
    this.#forceAt = at;
    this.#force = this.reactor.callAt(at, () => {
      for (const c of [...this.#connections]) c.conn.destroy();
    });
  }

  #maybeFinished(): void {
    if (this.#shutdown === null || this.#connections.size > 0) return;
    this.#sweep?.cancel();
    this.#sweep = null;
    this.#finishedResolve();
  }
}

/**
 * An HTTP/1.1 server on the reactor. Made by {@linkcode listenHttp} (raw
 * handlers) or `serve()` (fetch handlers).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { listenHttp } from "@fdloop/fdloop/http";
 * import { Reactor } from "@fdloop/fdloop/reactor";
 * const reactor = new Reactor();
 * const server = listenHttp({ port: 0, reactor }, (req, res) => {
 *   res.setHeader("content-type", "text/plain");
 *   res.end(`you asked for ${req.path}`);
 * });
 * assert.ok(server.port > 0);
 * await server.shutdown();
 * reactor.close();
 * ```
 */
export class HttpServer {
  readonly #engine: Engine;

  /** Prefer {@linkcode listenHttp}. */
  constructor(options: HttpServerOptions, handler: HttpHandler) {
    this.#engine = new Engine(options, handler);
  }

  /** The reactor serving it. */
  get reactor(): Reactor {
    return this.#engine.reactor;
  }

  /** The bound address (with the real port when 0 was asked). */
  get address(): SocketAddress {
    return this.#engine.listener.address;
  }

  /** The bound port (0 for a Unix socket). */
  get port(): number {
    return this.#engine.listener.port;
  }

  /** Connections open now. */
  get connectionCount(): number {
    return this.#engine.connectionCount;
  }

  /** Resolves once the server is shut down and every connection is closed. */
  get finished(): Promise<void> {
    return this.#engine.finished;
  }

  /**
   * Graceful shutdown: stops accepting, closes idle keep-alive connections at
   * once, lets requests in flight finish, and after `timeoutMs` (default
   * 10 000) closes whatever is left. Resolves with {@linkcode HttpServer.finished}.
   * Called again with a shorter timeout (a second Ctrl-C), it closes what is
   * left sooner; `shutdown(0)` closes it on the next loop turn.
   */
  shutdown(timeoutMs?: number): Promise<void> {
    return this.#engine.shutdown(timeoutMs);
  }
}

/**
 * Serves HTTP/1.1 with a raw handler: the request is read lazily from the
 * parsed bytes, the response written from strings or prepared bytes, now or
 * later (from a timer, another connection's callback…).
 *
 * A handler that never answers leaves its client waiting (and, with
 * keep-alive, the requests pipelined behind it): that is the handler's bug;
 * the server only bounds reading, not answering.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { listenHttp, PreparedHeaders } from "@fdloop/fdloop/http";
 * import { Reactor } from "@fdloop/fdloop/reactor";
 * const reactor = new Reactor();
 * const plain = new PreparedHeaders({ "content-type": "text/plain" });
 * const server = listenHttp({ port: 0, reactor }, (req, res) => {
 *   if (req.path === "/") res.setHeaders(plain).end("Hello, World!");
 *   else if (req.path === "/later") reactor.callLater(10, () => res.end("later"));
 *   else {
 *     res.status = 404;
 *     res.end("not found");
 *   }
 * });
 * const done = (async () => {
 *   const r = await fetch(`http://127.0.0.1:${server.port}/`);
 *   assert.equal(await r.text(), "Hello, World!");
 *   await server.shutdown();
 *   reactor.stop();
 * })();
 * await reactor.run();
 * await done;
 * reactor.close();
 * ```
 */
export function listenHttp(options: HttpServerOptions, handler: HttpHandler): HttpServer {
  return new HttpServer(options, handler);
}
