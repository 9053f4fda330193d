/**
 * The HTTP/1.1 client: `request(url, init)` returns a web `Response` with a
 * streaming body, over connections from a keep-alive pool per host and port,
 * on the reactor. Many requests are in flight at once on one thread.
 *
 * @module
 */

import { connect, type Connection, defaultReactor } from "../net/mod.ts";
import { holdRunning } from "../net/default_reactor.ts";
import type { Reactor } from "../reactor/mod.ts";
import { checkHeader } from "./response.ts";

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

/** Options of {@linkcode request}. */
export interface RequestOptions {
  /** `GET` (default), `POST`, … */
  method?: string;
  /** Request headers. `Host`, `Content-Length` and `Transfer-Encoding` are set for you. */
  headers?: HeadersInit;
  /** The body: bytes, a string (UTF-8) or a stream (sent chunked). */
  body?: Uint8Array | ArrayBuffer | string | ReadableStream<Uint8Array> | null;
  /** Aborts the request (and the response body) with the signal's reason. */
  signal?: AbortSignal;
  /** Give up connecting after this many ms (`ETIMEDOUT`; default 10 000). */
  connectTimeout?: number;
  /** Give up on the whole exchange, body included, after this many ms (a `TimeoutError`; default none). */
  timeout?: number;
  /** The client (connection pool) to use (default: one shared per reactor). */
  client?: HttpClient;
}

/** Options of {@linkcode HttpClient}. */
export interface HttpClientOptions {
  /** The reactor (default: the process-wide default reactor, run for you while requests are in flight). */
  reactor?: Reactor;
  /** Most connections per host and port, in use or idle (default 16); more requests wait their turn. */
  maxConnectionsPerHost?: number;
  /** Idle keep-alive connections are closed after this many ms (default 4 000, below common server idle timeouts). */
  idleTimeout?: number;
  /** Largest response head in bytes (default 64 KiB). */
  maxHeaderBytes?: number;
}

/** A connection of the pool and what it is doing. */
interface PooledConnection {
  conn: Connection;
  /** Its host's entry (which stays in the pool's map while this connection is counted in it). */
  pool: HostPool;
  /** The exchange using it, or null when idle. */
  active: ClientExchange | null;
  idleTimer: { cancel(): void } | null;
  /** Requests served: a reused connection that fails before answering is retried once on a fresh one. */
  served: number;
  /** Set by `close()` while in use: closed when its exchange ends instead of kept. */
  retire: boolean;
  /** Its `close` came (with this error, if any): an exchange that takes it after that is told at once. */
  closed: { error?: Error } | null;
}

/**
 * The state of one host and port. It is in the pool's map only while it counts a connection or a slot, or has a
 * waiter: a client that talks to many hosts over time holds entries for those it talks to now, not for ever.
 */
interface HostPool {
  readonly key: string;
  idle: PooledConnection[];
  count: number;
  /** Requests waiting for a connection, first come first served: each is handed one (FIFO hand-off). */
  waiting: ((grant: Grant) => void)[];
  /** Every open connection, idle or in use. */
  all: Set<PooledConnection>;
}

/** The right to open a connection, handed to a waiter: the slot is counted already, for it. */
const NEW_SLOT: unique symbol = Symbol("new slot");

/** What a waiter is handed: a connection to use, a slot to open one in, or null (it stopped waiting). */
type Grant = PooledConnection | typeof NEW_SLOT | null;

/** What the pool needs of a request waiting for a slot. */
interface Waiter {
  /** The request failed or was aborted: it needs no connection any more. */
  readonly gone: boolean;
  /** Set while it waits: takes it out of the queue (when it is aborted, say). */
  cancelWait: (() => void) | null;
}

/** Reaches a client's pool, for {@linkcode pooledHostCount}. */
let poolOf: (client: HttpClient) => Pool;

/**
 * A keep-alive connection pool and the requests made through it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HttpClient, listenHttp } from "@fdloop/fdloop/http";
 * import { Reactor } from "@fdloop/fdloop/reactor";
 * const reactor = new Reactor();
 * const server = listenHttp({ port: 0, reactor }, (req, res) => res.end(req.path));
 * const client = new HttpClient({ reactor, maxConnectionsPerHost: 2 });
 * const work = (async () => {
 *   const all = await Promise.all([1, 2, 3].map((i) => client.request(`http://127.0.0.1:${server.port}/${i}`)));
 *   assert.deepEqual(await Promise.all(all.map((r) => r.text())), ["/1", "/2", "/3"]);
 *   client.close();
 *   await server.shutdown();
 *   reactor.stop();
 * })();
 * await reactor.run();
 * await work;
 * reactor.close();
 * ```
 */
export class HttpClient {
  /** The reactor the connections live on. */
  readonly reactor: Reactor;
  readonly #ownLoop: boolean;
  readonly #pool: Pool;

  /** Makes a pool; close it with {@linkcode HttpClient.close}. */
  constructor(options: HttpClientOptions = {}) {
    this.#ownLoop = options.reactor === undefined;
    this.reactor = options.reactor ?? defaultReactor();
    this.#pool = new Pool(
      this.reactor,
      options.maxConnectionsPerHost ?? 16,
      options.idleTimeout ?? 4000,
      options.maxHeaderBytes ?? 64 * 1024,
    );
  }

  /** Connections open now (in use and idle). */
  get connectionCount(): number {
    return this.#pool.connectionCount;
  }

  /** Requests waiting for a connection (their host is at `maxConnectionsPerHost`). */
  get waitingCount(): number {
    return this.#pool.waitingCount;
  }

  /**
   * Sends a request and resolves with the response once its head arrives;
   * the body streams after. Read the body to its end or cancel it: until
   * then its connection stays taken. See {@linkcode request}.
   */
  async request(url: string | URL, options: RequestOptions = {}): Promise<Response> {
    const target = url instanceof URL ? url : new URL(url);
    if (target.protocol === "https:") {
      throw new TypeError(`Cannot fetch ${target.href}: https is not supported (fdloop has no TLS yet)`);
    }
    if (target.protocol !== "http:") throw new TypeError(`Cannot fetch ${target.href}: only http: URLs are supported`);
    options.signal?.throwIfAborted();
    const ex = new ClientExchange(this.#pool, target, options); // checks the method and headers first
    const release = this.#ownLoop ? holdRunning(this.reactor) : () => {};
    return await ex.start(release);
  }

  /** Closes every idle connection; connections in use close when their exchange ends. */
  close(): void {
    this.#pool.closeIdle();
  }

  static {
    poolOf = (client) => client.#pool;
  }
}

/**
 * For tests (not exported from `mod.ts`): the host:port entries `client`'s pool holds now. An entry lives
 * while its host has a connection (idle, in use or being opened) or a request waiting for one.
 */
export function pooledHostCount(client: HttpClient): number {
  return poolOf(client).hostCount;
}

/** The keep-alive connections of one {@linkcode HttpClient}, per host and port. */
class Pool {
  readonly reactor: Reactor;
  readonly #max: number;
  readonly #idleMs: number;
  /** The largest response head accepted. */
  readonly maxHeaderBytes: number;
  readonly #pools = new Map<string, HostPool>();

  constructor(reactor: Reactor, maxPerHost: number, idleMs: number, maxHeaderBytes: number) {
    this.reactor = reactor;
    this.#max = maxPerHost;
    this.#idleMs = idleMs;
    this.maxHeaderBytes = maxHeaderBytes;
  }

  /** The host:port entries held now. */
  get hostCount(): number {
    return this.#pools.size;
  }

  /** Connections open now (in use and idle). */
  get connectionCount(): number {
    let n = 0;
    for (const p of this.#pools.values()) n += p.count;
    return n;
  }

  /** Requests waiting for a connection. */
  get waitingCount(): number {
    let n = 0;
    for (const p of this.#pools.values()) n += p.waiting.length;
    return n;
  }

  /** Closes every idle connection; those in use are closed when their exchange ends. */
  closeIdle(): void {
    for (const pool of this.#pools.values()) {
      for (const pc of pool.all) pc.retire = true;
      for (const pc of pool.idle.splice(0)) {
        pc.idleTimer?.cancel();
        pc.conn.destroy();
      }
    }
  }

  /**
   * A connection for `key`: an idle one, a new one, or (at the cap) the next one released, in the order the
   * requests came: a released connection or a freed slot goes to the first waiter, not to whoever asks next.
   * Null when `waiter` is gone (the exchange failed or was aborted) by the time it is handed one, which it then
   * passes on; an aborted waiter leaves the queue at once (`cancelWait`).
   */
  async acquire(host: string, port: number, connectTimeout: number, waiter: Waiter): Promise<PooledConnection | null> {
    const key = `${host}:${port}`;
    let first = false; // wait first in line: what it was handed closed before it could use it
    for (;;) {
      // Looked up on each turn: the entry goes when its last connection closes, which can happen during a hand-off.
      let p = this.#pools.get(key);
      if (p === undefined) this.#pools.set(key, p = { key, idle: [], count: 0, waiting: [], all: new Set() });
      const idle = p.idle.pop();
      if (idle !== undefined) {
        idle.idleTimer?.cancel();
        idle.idleTimer = null;
        if (!idle.conn.destroyed && !idle.conn.readableEnded) return idle;
        continue; // closed by the server while idle: #closed takes it out of the count
      }
      if (p.count < this.#max) {
        p.count++;
        return this.#open(p, host, port, connectTimeout);
      }
      const pool = p;
      const grant = await new Promise<Grant>((resolve) => {
        if (first) pool.waiting.unshift(resolve);
        else pool.waiting.push(resolve);
        waiter.cancelWait = () => {
          const i = pool.waiting.indexOf(resolve);
          if (i >= 0) {
            pool.waiting.splice(i, 1);
            resolve(null);
            this.#prune(pool);
          }
        };
      });
      waiter.cancelWait = null;
      if (grant === null) return null;
      if (waiter.gone) {
        this.#handOn(pool, grant);
        return null;
      }
      // What it was handed is counted in `pool`, so the entry is still in the map.
      if (grant === NEW_SLOT) return this.#open(pool, host, port, connectTimeout);
      if (!grant.conn.destroyed && !grant.conn.readableEnded) return grant;
      first = true; // closed during the hand-off: #closed takes it out of the count
    }
  }

  /** Opens a connection in a slot counted already. */
  #open(pool: HostPool, host: string, port: number, connectTimeout: number): PooledConnection {
    let conn: Connection;
    try {
      conn = connect({ host, port, timeout: connectTimeout, reactor: this.reactor });
    } catch (err) {
      // No connection was made (EMFILE, an fd the backend refuses …): give the slot back.
      this.#freeSlot(pool);
      throw err;
    }
    const pc: PooledConnection = { conn, pool, active: null, idleTimer: null, served: 0, retire: false, closed: null };
    pool.all.add(pc);
    conn.on("close", (err) => this.#closed(pc, err));
    conn.on("error", () => {}); // passed on by "close" to the exchange using it
    // One pair of listeners for the connection's life, passing bytes to the exchange using it.
    // Bytes on an idle connection answer nothing we asked: the connection is out of step, close it.
    conn.on("data", (chunk) => {
      const ex = pc.active;
      if (ex === null) conn.destroy();
      else ex.receive(chunk);
    });
    conn.on("end", () => pc.active?.ended());
    return pc;
  }

  /** A counted slot is free: the first waiter gets it, or the count goes down. */
  #freeSlot(pool: HostPool): void {
    const w = pool.waiting.shift();
    if (w !== undefined) w(NEW_SLOT);
    else {
      pool.count--;
      this.#prune(pool);
    }
  }

  /** Drops the host's entry once nothing hangs on it: no connection (idle, in use or opening), no waiter. */
  #prune(pool: HostPool): void {
    if (pool.count === 0 && pool.waiting.length === 0 && this.#pools.get(pool.key) === pool) {
      this.#pools.delete(pool.key);
    }
  }

  /** A usable connection is free: the first waiter gets it, or it waits idle. */
  #offer(pool: HostPool, pc: PooledConnection): void {
    const w = pool.waiting.shift();
    if (w !== undefined) {
      w(pc);
      return;
    }
    pc.idleTimer = this.reactor.callLater(this.#idleMs, () => pc.conn.destroy());
    pool.idle.push(pc);
  }

  /** A waiter that is gone passes on what it was handed. */
  #handOn(pool: HostPool, grant: PooledConnection | typeof NEW_SLOT): void {
    if (grant === NEW_SLOT) this.#freeSlot(pool);
    else if (!grant.conn.destroyed && !grant.conn.readableEnded) this.#offer(pool, grant);
  }

  /** The exchange on `pc` is over: keep the connection for the next request, or close it. */
  release(pc: PooledConnection, reusable: boolean): void {
    pc.active = null;
    pc.served++;
    const pool = pc.pool;
    if (!reusable || pc.retire || pc.conn.destroyed || pc.conn.readableEnded) {
      pc.conn.destroy();
      return; // #closed wakes a waiter
    }
    this.#offer(pool, pc);
  }

  #closed(pc: PooledConnection, error?: Error): void {
    pc.closed = { error };
    pc.idleTimer?.cancel();
    const pool = pc.pool;
    pool.count--;
    pool.all.delete(pc);
    const i = pool.idle.indexOf(pc);
    if (i >= 0) pool.idle.splice(i, 1);
    pc.active?.connectionClosed(error);
    // Its slot (unless a retry took it just now) goes to the first waiter.
    while (pool.waiting.length > 0 && pool.count < this.#max) {
      pool.count++;
      pool.waiting.shift()!(NEW_SLOT);
    }
    this.#prune(pool); // after the retry above, if any, took a slot in it
  }
}

// Response parser states.
const R_HEAD = 0;
const R_BODY = 1; // Content-Length
const R_CLOSE = 2; // until the server closes
const R_CHUNK_SIZE = 3;
const R_CHUNK_DATA = 4;
const R_CHUNK_DATA_END = 5;
const R_TRAILERS = 6;
const R_DONE = 7;

/** One request on one pooled connection, and the parsing of its response. */
class ClientExchange {
  readonly #pool: Pool;
  readonly #url: URL;
  readonly #options: RequestOptions;
  #release: () => void = () => {};
  /** The request head, blank line excluded, built (and checked) before connecting. */
  readonly #headText: string;
  /** The body as bytes, or null (none, or a stream). */
  readonly #bytes: Uint8Array | null;
  /** The request said `Connection: close`: the connection is not kept. */
  readonly #requestClose: boolean;
  /** Sending it twice does no more than sending it once: it may be retried. */
  readonly #idempotent: boolean;
  #pc: PooledConnection | null = null;
  /** Set by the pool while this exchange waits for a slot: takes it out of the queue. */
  cancelWait: (() => void) | null = null;
  #resolve!: (r: Response) => void;
  #reject!: (e: unknown) => void;
  #settledHead = false;
  #finished = false;
  #controller: ReadableStreamDefaultController<Uint8Array> | null = null;
  /** The reader of a stream request body while it is being sent; cancelled if the exchange ends first. */
  #reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  #state = R_HEAD;
  #head = new Uint8Array(0);
  #remaining = 0;
  #keepAlive = true;
  #status = 0;
  #isHead: boolean;
  #timer: { cancel(): void } | null = null;
  #retried = false;
  #gotBytes = false;
  #requestSent = false;
  /** Bytes followed, in the same read, the point being parsed: past the end of a response they make it unusable. */
  #more = false;
  readonly #onAbort = () => this.#fail(this.#options.signal?.reason ?? new DOMException("Aborted", "AbortError"));

  /** The exchange failed or was aborted: it needs no connection any more. */
  get gone(): boolean {
    return this.#finished;
  }

  /** @throws {TypeError} for a method that is not a token or a header that is not valid. */
  constructor(pool: Pool, url: URL, options: RequestOptions) {
    this.#pool = pool;
    this.#url = url;
    this.#options = options;
    const method = (options.method ?? "GET").toUpperCase();
    if (!TOKEN_RE.test(method)) {
      throw new TypeError(`Invalid method ${JSON.stringify(method)}: it must be a token (RFC 9110 §9.1)`);
    }
    this.#isHead = method === "HEAD";
    this.#idempotent = IDEMPOTENT.has(method);
    let head = `${method} ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n`;
    let hasUserAccept = false;
    let requestClose = false;
    new Headers(options.headers).forEach((value, name) => {
      checkHeader(name, value);
      if (name === "host" || name === "content-length" || name === "transfer-encoding") return;
      if (name === "accept") hasUserAccept = true;
      if (name === "connection" && /(?:^|,)\s*close\s*(?:,|$)/i.test(value)) requestClose = true;
      head += `${name}: ${value}\r\n`;
    });
    if (!hasUserAccept) head += "accept: */*\r\n";
    this.#requestClose = requestClose;
    const body = options.body ?? null;
    if (body instanceof ReadableStream) {
      this.#bytes = null;
      head += "transfer-encoding: chunked\r\n";
    } else {
      const bytes = body === null
        ? null
        : typeof body === "string"
        ? encoder.encode(body)
        : body instanceof ArrayBuffer
        ? new Uint8Array(body)
        : body;
      if (bytes !== null || method === "POST" || method === "PUT" || method === "PATCH") {
        head += `content-length: ${bytes?.byteLength ?? 0}\r\n`;
      }
      this.#bytes = bytes;
    }
    this.#headText = head;
  }

  /** Starts the exchange; `release` is called once it is over. */
  start(release: () => void): Promise<Response> {
    this.#release = release;
    const promise = new Promise<Response>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    const { signal, timeout } = this.#options;
    signal?.addEventListener("abort", this.#onAbort, { once: true });
    if (timeout !== undefined) {
      this.#timer = this.#pool.reactor.callLater(timeout, () => {
        this.#fail(new DOMException(`The request to ${this.#url.href} timed out after ${timeout} ms`, "TimeoutError"));
      });
    }
    void this.#begin();
    return promise;
  }

  async #begin(): Promise<void> {
    const url = this.#url;
    const host = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
    const port = url.port === "" ? 80 : Number(url.port);
    let pc: PooledConnection | null;
    try {
      pc = await this.#pool.acquire(host, port, this.#options.connectTimeout ?? 10_000, this);
    } catch (err) {
      this.#fail(err);
      return;
    }
    if (pc === null) return; // failed (aborted, timed out) while waiting for a slot
    if (this.#finished) {
      this.#pool.release(pc, !pc.conn.connecting && !pc.conn.destroyed);
      return;
    }
    this.#pc = pc;
    pc.active = this;
    this.#state = R_HEAD;
    this.#head = new Uint8Array(0);
    this.#gotBytes = false;
    this.#requestSent = false;
    if (pc.closed !== null) {
      // A new connection whose connect failed at once: its `close` came (a reactor turn can run between
      // acquire() returning it and this continuation), so nothing else will tell this exchange.
      this.connectionClosed(pc.closed.error);
      return;
    }
    try {
      await this.#send(pc.conn);
    } catch (err) {
      this.#fail(err);
    }
  }

  /**
   * Writes the request head and body (a stream is sent chunked, waiting for `drain`). Stops as soon as the
   * connection is gone: its `close` brings the reason (a reset, a broken pipe) to {@linkcode connectionClosed}.
   */
  async #send(conn: Connection): Promise<void> {
    const body = this.#options.body;
    // connect() fails at once at times (ECONNREFUSED on loopback): the connection is destroyed already, and its
    // `close`, queued, brings the connect's error; writing would throw one that hides it.
    if (conn.destroyed) return;
    conn.write(`${this.#headText}\r\n`);
    if (body instanceof ReadableStream) {
      const reader = this.#reader = body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (this.#finished || conn.destroyed) return; // #cleanup cancels the stream
        if (done) break;
        if (value.byteLength === 0) continue;
        // Each piece whole, even when write() asks to wait: a chunk without its CRLF breaks the framing.
        conn.write(`${value.byteLength.toString(16)}\r\n`);
        if (!await this.#writeBytes(conn, value)) return;
        if (!conn.write("\r\n")) await drained(conn);
        if (this.#finished || conn.destroyed) return;
      }
      this.#reader = null;
      conn.write("0\r\n\r\n");
    } else if (this.#bytes !== null && !await this.#writeBytes(conn, this.#bytes)) {
      return;
    }
    this.#requestSent = true;
  }

  /**
   * Writes `bytes` in slices, waiting for `drain` between them: the connection refuses to queue more than its
   * `maxWriteBuffer`. False when the exchange ended or the connection closed meanwhile.
   */
  async #writeBytes(conn: Connection, bytes: Uint8Array): Promise<boolean> {
    for (let at = 0; at < bytes.byteLength;) {
      if (conn.destroyed) return false; // a write failed at once (a reset): the next one would throw
      const end = Math.min(at + BODY_SLICE, bytes.byteLength);
      const ok = conn.write(at === 0 && end === bytes.byteLength ? bytes : bytes.subarray(at, end));
      at = end;
      if (!ok && at < bytes.byteLength) {
        await drained(conn);
        if (this.#finished) return false;
      }
    }
    return !conn.destroyed;
  }

  /** Bytes of the response arrived (a reused view: copied when kept). */
  receive(chunk: Uint8Array): void {
    this.#gotBytes = true;
    try {
      this.#parse(chunk);
    } catch (err) {
      this.#fail(err);
    }
  }

  /** The server half-closed the connection. */
  ended(): void {
    if (this.#state === R_CLOSE) {
      this.#complete(false);
    } else if (!this.#finished) {
      this.connectionClosed();
    }
  }

  /** The connection closed under this exchange (with the error that closed it, if any). */
  connectionClosed(error?: Error): void {
    if (this.#finished) return;
    // A close-delimited body ends at the server's FIN, not at an error such as a reset.
    if (this.#state === R_CLOSE && error === undefined) {
      this.#complete(false);
      return;
    }
    const pc = this.#pc;
    // A reused connection the server closed before answering: try once more on a fresh one, if the
    // method is idempotent (RFC 9110 §9.2.2): the server may have acted on a POST before it closed.
    if (
      pc !== null && pc.served > 0 && !this.#gotBytes && !this.#retried && this.#idempotent &&
      !(this.#options.body instanceof ReadableStream)
    ) {
      this.#retried = true;
      this.#detach();
      this.#pool.release(pc, false);
      void this.#begin();
      return;
    }
    this.#fail(error ?? new Error(`The connection to ${this.#url.host} closed before the response was complete`));
  }

  #parse(chunk: Uint8Array): void {
    let p = 0;
    while (p < chunk.length && !this.#finished) {
      switch (this.#state) {
        case R_HEAD: {
          const joined = this.#head.length === 0 ? chunk.subarray(p) : concat(this.#head, chunk.subarray(p));
          const end = findHeadEnd(joined);
          if (end < 0) {
            if (joined.length > this.#pool.maxHeaderBytes) throw new Error("The response head is too large");
            this.#head = joined.slice();
            return;
          }
          const consumed = end - this.#head.length;
          this.#head = new Uint8Array(0);
          p += consumed;
          this.#more = p < chunk.length;
          // The terminator is CRLF CRLF, or (leniently, RFC 9112 §2.2) any mix with bare LFs: not always 4 bytes.
          this.#onHead(latin1.decode(joined.subarray(0, end)).replace(/\r?\n\r?\n$/, ""));
          break;
        }
        case R_BODY: {
          const n = Math.min(this.#remaining, chunk.length - p);
          this.#deliver(chunk.subarray(p, p + n));
          p += n;
          this.#remaining -= n;
          this.#more = p < chunk.length;
          if (this.#remaining === 0) this.#complete(this.#keepAlive);
          break;
        }
        case R_CLOSE:
          this.#deliver(chunk.subarray(p));
          return;
        case R_CHUNK_SIZE:
        case R_TRAILERS:
        case R_CHUNK_DATA_END: {
          const joined = this.#head.length === 0 ? chunk.subarray(p) : concat(this.#head, chunk.subarray(p));
          const nl = joined.indexOf(10);
          if (nl < 0) {
            if (joined.length > 4096) throw new Error("A chunk line of the response is too long");
            this.#head = joined.slice();
            return;
          }
          p += nl + 1 - this.#head.length;
          this.#head = new Uint8Array(0);
          this.#more = p < chunk.length;
          const line = latin1.decode(joined.subarray(0, nl)).replace(/\r$/, "");
          this.#chunkLine(line);
          break;
        }
        case R_CHUNK_DATA: {
          const n = Math.min(this.#remaining, chunk.length - p);
          this.#deliver(chunk.subarray(p, p + n));
          p += n;
          this.#remaining -= n;
          if (this.#remaining === 0) this.#state = R_CHUNK_DATA_END;
          break;
        }
        default:
          return; // R_DONE: bytes after the response on a connection we close anyway
      }
    }
  }

  #chunkLine(line: string): void {
    if (this.#state === R_CHUNK_DATA_END) {
      if (line !== "") throw new Error("A chunk of the response does not end with CRLF");
      this.#state = R_CHUNK_SIZE;
    } else if (this.#state === R_CHUNK_SIZE) {
      const hex = line.split(";")[0].trim();
      if (!/^[0-9a-fA-F]{1,12}$/.test(hex)) throw new Error(`Bad chunk size in the response: ${JSON.stringify(line)}`);
      const size = parseInt(hex, 16);
      if (size === 0) this.#state = R_TRAILERS;
      else {
        this.#remaining = size;
        this.#state = R_CHUNK_DATA;
      }
    } else if (line === "") {
      this.#complete(this.#keepAlive); // end of trailers
    }
  }

  #onHead(text: string): void {
    const lines = text.split(/\r?\n/);
    const m = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(lines[0]);
    if (m === null) throw new Error(`Bad status line in the response: ${JSON.stringify(lines[0].slice(0, 100))}`);
    const status = Number(m[2]);
    const headers = new Headers();
    for (let i = 1; i < lines.length; i++) {
      const colon = lines[i].indexOf(":");
      if (colon <= 0) throw new Error(`Bad header line in the response: ${JSON.stringify(lines[i].slice(0, 100))}`);
      headers.append(lines[i].slice(0, colon).trim(), lines[i].slice(colon + 1).trim());
    }
    if (status === 101) {
      // The connection now speaks another protocol: no HTTP answer follows on it.
      throw new Error(`${this.#url.host} switched protocols (101); the client does not support Upgrade`);
    }
    if (status >= 100 && status < 200) return; // interim (100 Continue, 103 Early Hints): the real head follows
    this.#status = status;
    const connection = headers.get("connection")?.toLowerCase() ?? "";
    this.#keepAlive = !this.#requestClose &&
      (m[1] === "1" ? !connection.includes("close") : connection.includes("keep-alive"));
    const te = headers.get("transfer-encoding");
    const cl = headers.get("content-length");
    // Both framings: chunked wins, and the connection is not trusted afterwards (RFC 9112 §6.3).
    if (te !== null && cl !== null) this.#keepAlive = false;
    const bodiless = this.#isHead || status === 204 || status === 304;
    let body: ReadableStream<Uint8Array> | null = null;
    if (!bodiless) {
      body = new ReadableStream<Uint8Array>({
        start: (c) => {
          this.#controller = c;
        },
        pull: () => {
          if (this.#pc?.conn.isPaused) this.#pc.conn.resume();
        },
        cancel: () => this.#fail(new DOMException("The response body was cancelled", "AbortError"), true),
      }, { highWaterMark: 4 });
    }
    this.#settledHead = true;
    this.#resolve(new Response(body, { status, statusText: m[3] ?? "", headers }));
    if (bodiless) {
      this.#complete(this.#keepAlive);
    } else if (te !== null) {
      if (te.toLowerCase() !== "chunked") throw new Error(`Unsupported transfer coding in the response: ${te}`);
      this.#state = R_CHUNK_SIZE;
    } else if (cl !== null) {
      if (!/^\d{1,15}$/.test(cl)) throw new Error(`Bad Content-Length in the response: ${cl}`);
      this.#remaining = Number(cl);
      this.#state = R_BODY;
      if (this.#remaining === 0) this.#complete(this.#keepAlive);
    } else {
      this.#state = R_CLOSE;
      this.#keepAlive = false;
    }
  }

  #deliver(bytes: Uint8Array): void {
    const c = this.#controller;
    if (c === null || bytes.byteLength === 0) return;
    c.enqueue(bytes.slice());
    if ((c.desiredSize ?? 1) <= 0) this.#pc?.conn.pause();
  }

  /** The response is complete: close the body, give the connection back (or close it). */
  #complete(reusable: boolean): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#state = R_DONE;
    try {
      this.#controller?.close();
    } catch { /* cancelled by the reader */ }
    // Bytes after the end of the response (in the same read) mean the framing is not what the server sent.
    this.#cleanup(reusable && this.#requestSent && !this.#more);
  }

  /** Fails the exchange: rejects the response promise, or errors its body stream. */
  #fail(err: unknown, cancelled = false): void {
    if (this.#finished) return;
    this.#finished = true;
    if (!this.#settledHead) this.#reject(err);
    else if (!cancelled) {
      try {
        this.#controller?.error(err);
      } catch { /* already closed */ }
    }
    this.#cleanup(false, err);
  }

  #detach(): void {
    const pc = this.#pc;
    if (pc === null) return;
    if (pc.conn.isPaused && !pc.conn.destroyed) pc.conn.resume();
    this.#pc = null;
  }

  #cleanup(reusable: boolean, reason?: unknown): void {
    this.#timer?.cancel();
    // Still waiting for a slot: leave the queue now rather than hold a place (and this exchange) until woken.
    this.cancelWait?.();
    this.#options.signal?.removeEventListener("abort", this.#onAbort);
    // A request body still being sent (the response came first, or the exchange failed): stop reading it.
    const reader = this.#reader;
    this.#reader = null;
    reader?.cancel(reason).catch(() => {});
    const pc = this.#pc;
    this.#detach();
    if (pc !== null) this.#pool.release(pc, reusable);
    this.#release();
  }
}

/** Methods whose requests may be sent again after a connection failed under them (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/** A method, like a header name, is a token (RFC 9110 §5.6.2). */
const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** A byte body, or a piece of a stream body, is queued in slices of this size, each once the previous ones drained. */
const BODY_SLICE = 1024 * 1024;

/** Resolves on the connection's next `drain`, or when it closes. */
function drained(conn: Connection): Promise<void> {
  if (conn.destroyed) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      conn.off("drain", done);
      conn.off("close", done);
      resolve();
    };
    conn.on("drain", done);
    conn.on("close", done);
  });
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** The index just past the blank line ending a head, or -1. */
function findHeadEnd(b: Uint8Array): number {
  for (let i = b.indexOf(10); i >= 0 && i + 2 < b.length + 1; i = b.indexOf(10, i + 1)) {
    if (b[i + 1] === 13 && b[i + 2] === 10) return i + 3;
    if (b[i + 1] === 10) return i + 2;
  }
  return -1;
}

const sharedClients = new WeakMap<Reactor, HttpClient>();

/**
 * Sends an HTTP/1.1 request over the reactor and resolves with a web
 * `Response` (status, headers, streaming body) once the response head
 * arrives, like `fetch` for `http:` URLs. Host names are resolved off the
 * JS thread; connections are kept alive in a pool per host and port.
 *
 * Without a `client` option the requests share one {@linkcode HttpClient}
 * on the default reactor, which runs for as long as requests are in flight.
 *
 * Read the response body to its end or cancel it (`res.body?.cancel()`), as
 * with undici's `fetch`: nothing is left to the garbage collector. Until
 * then the request is in flight: its connection stays taken (a pool at
 * `maxConnectionsPerHost` makes the next request wait) and, once the
 * stream's small queue is full, is no longer read, so the server is held
 * back and memory stays bounded. A body that arrived whole already (small
 * ones, usually) needs nothing: its connection is back in the pool.
 *
 * @throws {TypeError} for an `https:` URL (no TLS yet) or another scheme.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { request, serve } from "@fdloop/fdloop/http";
 * const server = serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, () => new Response("pong"));
 * const res = await request(`http://127.0.0.1:${server.addr.port}/ping`);
 * assert.equal(res.status, 200);
 * assert.equal(await res.text(), "pong");
 * await server.shutdown();
 * ```
 */
export function request(url: string | URL, options: RequestOptions = {}): Promise<Response> {
  let client = options.client;
  if (client === undefined) {
    const reactor = defaultReactor();
    client = sharedClients.get(reactor);
    if (client === undefined) sharedClients.set(reactor, client = new HttpClient());
  }
  return client.request(url, options);
}
