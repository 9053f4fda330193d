/**
 * `Connection`: a buffered, non-blocking stream socket (TCP or Unix).
 *
 * @module
 */

import {
  close as closeFd,
  Errno,
  getPeerName,
  getSockName,
  IPPROTO_TCP,
  MAX_GATHER,
  MSG_NOSIGNAL,
  OSError,
  osError,
  recv,
  send,
  sendChunks,
  setSockOptInt,
  SHUT_WR,
  shutdown,
  SO_KEEPALIVE,
  type SocketAddress,
  socketError,
  SOL_SOCKET,
  TCP_KEEPIDLE,
  TCP_NODELAY,
  WOULD_BLOCK,
} from "../ffi/mod.ts";
import type { Reactor, TimerHandle } from "../reactor/mod.ts";
import { soon } from "./default_reactor.ts";
import { Emitter } from "./emitter.ts";

/** Events of a {@linkcode Connection}. */
export interface ConnectionEvents {
  /** Connected (client connections only). */
  connect: () => void;
  /**
   * Bytes arrived. `chunk` is a view into a buffer the reactor reuses: it is
   * valid only during the call — copy it (`chunk.slice()`) to keep it.
   */
  data: (chunk: Uint8Array) => void;
  /** The peer half-closed: no more data will arrive. */
  end: () => void;
  /** The write queue fell to the low-water mark (or below) after `write()` returned false. */
  drain: () => void;
  /** An error; `close` follows. */
  error: (error: Error) => void;
  /** Closed, exactly once; `error` is set when an error closed it. */
  close: (error?: Error) => void;
}

/** Options of a {@linkcode Connection}. */
export interface ConnectionOptions {
  /** `write()` returns false at or above this many queued bytes (default 64 KiB). */
  highWaterMark?: number;
  /** `drain` fires when the queue falls to this many bytes (default 16 KiB). */
  lowWaterMark?: number;
  /**
   * Hard limit of queued bytes (default 16 MiB). A writer that ignores
   * `write()` returning false and goes past it gets the connection destroyed
   * with `ENOBUFS`, instead of growing memory without bound.
   */
  maxWriteBuffer?: number;
  /** Keep the writable side open after the peer's `end` (default false: `end()` is called for you). */
  allowHalfOpen?: boolean;
}

/**
 * How `new Connection()` was given its socket: a connect still in progress
 * (made by `connect()`), with the target for messages and an optional timeout.
 */
export interface ConnectingOptions {
  /** The target as text (`127.0.0.1:80`, `[::1]:80`, a path), named in connect errors. */
  target: string;
  /** Give up after this many ms with `ETIMEDOUT`. */
  timeout?: number;
  /**
   * For a connection made before it has a socket (pass fd -1): the socket,
   * connected, once a name is resolved and an address answered. Rejecting
   * destroys the connection with that error; `cancel()` is called if the
   * connection is destroyed first.
   */
  socket?: { promise: Promise<number>; cancel(): void };
}

/** Options of `new Connection()`: buffering, and whether the socket is still connecting. */
export interface ConnectionInit extends ConnectionOptions {
  /** Set when a non-blocking connect is in progress on the socket (see {@linkcode connect}). */
  connecting?: ConnectingOptions;
}

/** The buffering options out of a `connect()` or `listen()` options object. Internal. */
export function bufferOptions(options: ConnectionOptions): ConnectionOptions {
  return {
    highWaterMark: options.highWaterMark,
    lowWaterMark: options.lowWaterMark,
    maxWriteBuffer: options.maxWriteBuffer,
    allowHalfOpen: options.allowHalfOpen,
  };
}

/** A connection's watermarks and half-open policy, as {@linkcode ConnectionOptions} asks, defaults filled in. */
interface Limits {
  readonly high: number;
  readonly low: number;
  readonly max: number;
  readonly allowHalfOpen: boolean;
}

/** The last limits made: connections with the same settings share one object (most use the defaults). */
let lastLimits: Limits | null = null;

function limitsOf(options: ConnectionOptions): Limits {
  const high = options.highWaterMark ?? 64 * 1024;
  const low = Math.min(options.lowWaterMark ?? 16 * 1024, high);
  const max = Math.max(options.maxWriteBuffer ?? 16 * 1024 * 1024, high);
  const allowHalfOpen = options.allowHalfOpen ?? false;
  const l = lastLimits;
  if (l !== null && l.high === high && l.low === low && l.max === max && l.allowHalfOpen === allowHalfOpen) return l;
  return lastLimits = Object.freeze({ high, low, max, allowHalfOpen });
}

/** Bytes read per `recv` (one buffer shared by every connection of the thread). */
const READ_SIZE = 64 * 1024;
const readBuf = new Uint8Array(READ_SIZE);
/** The last `data` view handed out (reads of one size in a row reuse it: a typed array view costs ~25-50 ns). */
let readView = readBuf.subarray(0, 0);

/** `readBuf[0, n)`. */
function readChunk(n: number): Uint8Array {
  if (readView.byteLength !== n) readView = readBuf.subarray(0, n);
  return readView;
}
/** Queued writes up to this size are copied into a shared staging chunk instead of a copy of their own. */
const COALESCE_MAX = 4096;
const STAGING_SIZE = 16 * 1024;
const encoder = new TextEncoder();
/** Takes the place of a sent chunk in the queue, so the queue holds no reference to it. */
const SENT = new Uint8Array(0);
/** The write queue of every connection that has nothing queued (never pushed to: see `#ownQueue`). */
const NO_QUEUE: Uint8Array[] = [];

/** The fields of a `Connection` that only some connections use, kept apart so that an idle one stays small. */
interface RareState {
  dialing: { cancel(): void } | null;
  connectTimer: TimerHandle | null;
  target: string | undefined;
  readableStream: ReadableStream<Uint8Array> | undefined;
  writableStream: WritableStream<Uint8Array> | undefined;
  /** Called once the FIN is sent: the writable stream's `close()` waiting for it. */
  onWriteShut: (() => void) | null;
  local: SocketAddress | undefined;
  remote: SocketAddress | undefined;
  /** Socket options set while a name is dialled (no socket yet): level, name, value, … applied once it exists. */
  pendingOptions: number[] | null;
}

function newRareState(): RareState {
  return {
    dialing: null,
    connectTimer: null,
    target: undefined,
    readableStream: undefined,
    writableStream: undefined,
    onWriteShut: null,
    local: undefined,
    remote: undefined,
    pendingOptions: null,
  };
}

/** What `observeClose()` tells of a connection. */
export interface CloseObserver {
  /** `conn` closed (called before its `close` listeners run). */
  connectionClosed(conn: Connection): void;
}

/**
 * Has `observer` told when `conn` closes: one field instead of a `close`
 * listener (a closure) per connection. Internal to `net/` (for `Server`).
 */
export let observeClose: (conn: Connection, observer: CloseObserver) => void;

/**
 * Keeps `owner` (the state a layer above holds for `conn`, such as the HTTP
 * engine's) on the connection, for {@linkcode ownerOf}: listeners run with
 * the connection as `this`, so one function can find its owner instead of a
 * closure per connection holding it. Internal to fdloop (not in `mod.ts`).
 */
export let setOwner: (conn: Connection, owner: object) => void;

/** The owner {@linkcode setOwner} kept on `conn`, or null. */
export let ownerOf: (conn: Connection) => object | null;

// State bits of a connection (`#flags`).
const F_NEED_DRAIN = 1;
const F_CONNECTING = 2;
const F_READING = 4;
const F_PAUSED = 8;
const F_WRITING = 16;
const F_ENDING = 32;
const F_WRITE_SHUT = 64;
const F_READ_ENDED = 128;
const F_DESTROYED = 256;

let connectionCount = 0;

/**
 * A stream connection driven by a {@linkcode Reactor}: reads are delivered as
 * `data` events, writes are queued and flushed when the socket is writable
 * (several chunks gathered in one `sendmsg`), with backpressure through
 * `write()`'s return value and `drain`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { listen } from "@fdloop/fdloop/net";
 * const server = listen({ port: 0 }, (conn) => {
 *   conn.on("data", (chunk) => conn.write(chunk)); // echo
 *   conn.on("end", () => conn.end());
 * });
 * assert.equal(server.connections.size, 0);
 * await server.close();
 * ```
 */
export class Connection extends Emitter<ConnectionEvents> {
  /** The reactor driving this connection. */
  readonly reactor: Reactor;
  #fd: number;
  /** The fd this connection had, kept after close to name it in error reports. */
  #fdForReports: number;
  #bytesRead = 0;
  #bytesWritten = 0;
  /** Watermarks and half-open policy: one object shared by the connections made with the same options. */
  readonly #limits: Limits;
  /** Chunks waiting for the socket, from `#head` on; the shared `NO_QUEUE` until the first write that waits. */
  #queue: Uint8Array[] = NO_QUEUE;
  #head = 0;
  /** The staging chunk being filled: `#queue[#tailIndex]`, of which `#tailLen` bytes are used. */
  #tail: Uint8Array | null = null;
  #tailIndex = 0;
  #tailLen = 0;
  /** What a sealed staging chunk left unused, for the next one: sealing never wastes memory. */
  #spare: Uint8Array | null = null;
  #queued = 0;
  /**
   * The connection's state bits (`F_*`), read and written through the boolean accessors below: one field instead of
   * nine, for a server that holds thousands of idle connections.
   */
  #flags = 0;
  /** What only some connections need (connecting, streams, addresses asked for): made on first use. */
  #rare: RareState | null = null;
  /** Told of the close before the `close` listeners (a `Server` keeping count), without a listener of its own. */
  #observer: CloseObserver | null = null;
  #owner: object | null = null;

  static {
    observeClose = (conn, observer) => {
      conn.#observer = observer;
    };
    setOwner = (conn, owner) => {
      conn.#owner = owner;
    };
    ownerOf = (conn) => conn.#owner;
  }

  // One reader and one writer callback for every connection, finding it by fd: two closures per connection would
  // cost ~0.1 KiB each of the thousands a server may hold. fds are unique in the process, so one table serves all.
  static readonly #byFd: (Connection | undefined)[] = [];
  static readonly #onReadable = (fd: number): void => {
    const c = Connection.#byFd[fd];
    if (c !== undefined) c.#read();
  };
  static readonly #onWritable = (fd: number): void => {
    const c = Connection.#byFd[fd];
    if (c !== undefined) c.#writable();
  };

  get #needDrain(): boolean {
    return (this.#flags & F_NEED_DRAIN) !== 0;
  }
  set #needDrain(on: boolean) {
    this.#flags = on ? this.#flags | F_NEED_DRAIN : this.#flags & ~F_NEED_DRAIN;
  }
  get #connecting(): boolean {
    return (this.#flags & F_CONNECTING) !== 0;
  }
  set #connecting(on: boolean) {
    this.#flags = on ? this.#flags | F_CONNECTING : this.#flags & ~F_CONNECTING;
  }
  get #reading(): boolean {
    return (this.#flags & F_READING) !== 0;
  }
  set #reading(on: boolean) {
    this.#flags = on ? this.#flags | F_READING : this.#flags & ~F_READING;
  }
  get #paused(): boolean {
    return (this.#flags & F_PAUSED) !== 0;
  }
  set #paused(on: boolean) {
    this.#flags = on ? this.#flags | F_PAUSED : this.#flags & ~F_PAUSED;
  }
  get #writing(): boolean {
    return (this.#flags & F_WRITING) !== 0;
  }
  set #writing(on: boolean) {
    this.#flags = on ? this.#flags | F_WRITING : this.#flags & ~F_WRITING;
  }
  get #ending(): boolean {
    return (this.#flags & F_ENDING) !== 0;
  }
  set #ending(on: boolean) {
    this.#flags = on ? this.#flags | F_ENDING : this.#flags & ~F_ENDING;
  }
  get #writeShut(): boolean {
    return (this.#flags & F_WRITE_SHUT) !== 0;
  }
  set #writeShut(on: boolean) {
    this.#flags = on ? this.#flags | F_WRITE_SHUT : this.#flags & ~F_WRITE_SHUT;
  }
  get #readEnded(): boolean {
    return (this.#flags & F_READ_ENDED) !== 0;
  }
  set #readEnded(on: boolean) {
    this.#flags = on ? this.#flags | F_READ_ENDED : this.#flags & ~F_READ_ENDED;
  }
  get #destroyed(): boolean {
    return (this.#flags & F_DESTROYED) !== 0;
  }
  set #destroyed(on: boolean) {
    this.#flags = on ? this.#flags | F_DESTROYED : this.#flags & ~F_DESTROYED;
  }

  /** A socket still being resolved and dialled (see `ConnectingOptions.socket`). */
  get #dialing(): { cancel(): void } | null {
    return this.#rare === null ? null : this.#rare.dialing;
  }
  set #dialing(v: { cancel(): void } | null) {
    if (this.#rare !== null) this.#rare.dialing = v;
    else if (v !== null) (this.#rare = newRareState()).dialing = v;
  }
  get #connectTimer(): TimerHandle | null {
    return this.#rare === null ? null : this.#rare.connectTimer;
  }
  set #connectTimer(v: TimerHandle | null) {
    if (this.#rare !== null) this.#rare.connectTimer = v;
    else if (v !== null) (this.#rare = newRareState()).connectTimer = v;
  }
  get #target(): string | undefined {
    return this.#rare === null ? undefined : this.#rare.target;
  }
  set #target(v: string | undefined) {
    if (this.#rare !== null) this.#rare.target = v;
    else if (v !== undefined) (this.#rare = newRareState()).target = v;
  }
  get #readableStream(): ReadableStream<Uint8Array> | undefined {
    return this.#rare === null ? undefined : this.#rare.readableStream;
  }
  set #readableStream(v: ReadableStream<Uint8Array> | undefined) {
    if (this.#rare !== null) this.#rare.readableStream = v;
    else if (v !== undefined) (this.#rare = newRareState()).readableStream = v;
  }
  get #writableStream(): WritableStream<Uint8Array> | undefined {
    return this.#rare === null ? undefined : this.#rare.writableStream;
  }
  set #writableStream(v: WritableStream<Uint8Array> | undefined) {
    if (this.#rare !== null) this.#rare.writableStream = v;
    else if (v !== undefined) (this.#rare = newRareState()).writableStream = v;
  }
  get #local(): SocketAddress | undefined {
    return this.#rare === null ? undefined : this.#rare.local;
  }
  set #local(v: SocketAddress | undefined) {
    if (this.#rare !== null) this.#rare.local = v;
    else if (v !== undefined) (this.#rare = newRareState()).local = v;
  }
  get #remote(): SocketAddress | undefined {
    return this.#rare === null ? undefined : this.#rare.remote;
  }
  set #remote(v: SocketAddress | undefined) {
    if (this.#rare !== null) this.#rare.remote = v;
    else if (v !== undefined) (this.#rare = newRareState()).remote = v;
  }

  /** Makes `fd` this connection's in the table the shared callbacks look in. */
  #own(fd: number): void {
    const table = Connection.#byFd;
    while (table.length <= fd) table.push(undefined); // a dense array: fds are small integers
    table[fd] = this;
  }

  /**
   * Wraps a connected (or connecting) non-blocking socket. Usually made by
   * `listen()` or `connect()`, not directly.
   *
   * @param reactor The reactor to register with.
   * @param fd A non-blocking stream socket; the connection owns it from now on.
   * @param options Buffering options, and `connecting` while a non-blocking connect is in progress.
   */
  constructor(reactor: Reactor, fd: number, options: ConnectionInit = {}) {
    super();
    this.reactor = reactor;
    this.#fd = this.#fdForReports = fd;
    this.#limits = limitsOf(options);
    const connecting = options.connecting;
    if (connecting !== undefined) {
      this.#connecting = true;
      this.#target = connecting.target;
      if (connecting.socket !== undefined) {
        this.#awaitSocket(connecting.socket);
      } else {
        reactor.addWriter(fd, Connection.#onWritable);
        this.#writing = true;
      }
      if (connecting.timeout !== undefined) this.#armConnectTimeout(connecting.target, connecting.timeout);
    } else {
      this.#startReading();
    }
    // Only once registered: a constructor that throws made no connection (and left nothing in the fd table).
    if (fd >= 0) this.#own(fd);
    connectionCount++;
  }

  /** The socket's fd, or -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  /** Bytes received so far. */
  get bytesRead(): number {
    return this.#bytesRead;
  }

  /** Bytes handed to the kernel so far. */
  get bytesWritten(): number {
    return this.#bytesWritten;
  }

  /** Number of connections open in this process (all reactors). */
  static get openCount(): number {
    return connectionCount;
  }

  /** Bytes queued and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.#queued;
  }

  /** The most bytes the write queue may hold ({@linkcode ConnectionOptions.maxWriteBuffer}, defaults applied). */
  get maxWriteBuffer(): number {
    return this.#limits.max;
  }

  /** True once destroyed or fully closed. */
  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** True while a client connect is in progress. */
  get connecting(): boolean {
    return this.#connecting;
  }

  /** True after `end()` was called (writes are refused from then on). */
  get writableEnded(): boolean {
    return this.#ending;
  }

  /** True after the peer's `end` was read. */
  get readableEnded(): boolean {
    return this.#readEnded;
  }

  /** The local address (`getsockname`). */
  get localAddress(): SocketAddress | undefined {
    if (this.#local === undefined && this.#fd >= 0) this.#local = getSockName(this.#fd);
    return this.#local;
  }

  /** The peer's address (`getpeername`); cached once known, so it survives close. */
  get remoteAddress(): SocketAddress | undefined {
    if (this.#remote === undefined && this.#fd >= 0 && !this.#connecting) {
      try {
        this.#remote = getPeerName(this.#fd);
      } catch (err) {
        if (!(err instanceof OSError) || err.code !== "ENOTCONN") throw err;
      }
    }
    return this.#remote;
  }

  /**
   * Queues `data` and flushes what the socket takes now.
   *
   * @returns false when the queue is at or above the high-water mark: wait
   *   for `drain` before writing more.
   * @throws {Error} (code `ERR_WRITE_AFTER_END`) after `end()` or `destroy()`.
   */
  write(data: Uint8Array | string): boolean {
    this.#assertWritable();
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    let sent = 0;
    if (this.#queued === 0 && !this.#connecting && bytes.byteLength > 0) {
      sent = this.#sendNow(bytes);
      if (this.#destroyed) return false;
      if (sent === bytes.byteLength) return true;
    }
    if (sent < bytes.byteLength && !this.#enqueue(bytes, sent, typeof data === "string")) return false;
    return this.#belowHighWater();
  }

  /** Throws `ERR_WRITE_AFTER_END` once the connection is ending or destroyed. */
  #assertWritable(): void {
    if (!this.#ending && !this.#destroyed) return;
    const err = new Error(
      this.#destroyed ? "Cannot write to a destroyed connection" : "Cannot write after end()",
    ) as Error & { code: string };
    err.code = "ERR_WRITE_AFTER_END";
    throw err;
  }

  /** Hands `bytes` to the kernel with one `send`; returns how many it took (the connection is destroyed on error). */
  #sendNow(bytes: Uint8Array): number {
    let n: number;
    try {
      n = send(this.#fd, bytes, bytes.byteLength, MSG_NOSIGNAL);
    } catch (err) {
      this.destroy(err as Error);
      return 0;
    }
    if (n === WOULD_BLOCK) return 0;
    this.#bytesWritten += n;
    return n;
  }

  /**
   * Queues a copy of `bytes[offset..]` (the caller may reuse its buffer; a
   * string's fresh encoding is `owned` and kept as is) and watches for
   * writability. Returns false, destroying the connection with `ENOBUFS`,
   * when the queue would pass `maxWriteBuffer`.
   */
  #enqueue(bytes: Uint8Array, offset: number, owned: boolean): boolean {
    const len = bytes.byteLength - offset;
    if (this.#queued + len > this.#limits.max) {
      this.destroy(
        new OSError(
          Errno.ENOBUFS,
          "write",
          `Cannot queue ${len} more bytes on fd ${this.#fd}`,
          `the write buffer holds ${this.#queued} bytes, its limit is ${this.#limits.max} (wait for "drain")`,
        ),
      );
      return false;
    }
    const rest = offset === 0 ? bytes : bytes.subarray(offset);
    if (len <= COALESCE_MAX) {
      this.#stage(rest);
    } else {
      this.#sealTail();
      this.#ownQueue().push(owned && offset === 0 ? bytes : rest.slice());
    }
    this.#queued += len;
    if (!this.#writing && !this.#connecting) {
      this.reactor.addWriter(this.#fd, Connection.#onWritable);
      this.#writing = true;
    }
    return true;
  }

  /** The write queue, made this connection's own (an idle connection shares the empty `NO_QUEUE`). */
  #ownQueue(): Uint8Array[] {
    if (this.#queue === NO_QUEUE) this.#queue = [];
    return this.#queue;
  }

  /** Copies a small write into the staging chunk, starting a new one when it is full. */
  #stage(bytes: Uint8Array): void {
    const len = bytes.byteLength;
    let tail = this.#tail;
    if (tail === null || this.#tailLen + len > tail.byteLength) {
      this.#sealTail();
      const spare = this.#spare;
      this.#spare = null;
      tail = this.#tail = spare !== null && spare.byteLength >= len ? spare : new Uint8Array(STAGING_SIZE);
      this.#tailIndex = this.#queue.length;
      this.#tailLen = 0;
      this.#ownQueue().push(tail);
    }
    tail.set(bytes, this.#tailLen);
    this.#tailLen += len;
  }

  /** Backpressure: whether the queue is below the high-water mark; if not, `drain` is owed. */
  #belowHighWater(): boolean {
    const below = this.#queued < this.#limits.high;
    if (!below) this.#needDrain = true;
    return below;
  }

  /**
   * Half-closes: writes `data` if given, then sends FIN (`shutdown(SHUT_WR)`)
   * once the queue is flushed. Reading goes on until the peer ends too.
   */
  end(data?: Uint8Array | string): void {
    if (this.#ending || this.#destroyed) return;
    if (data !== undefined) this.write(data);
    this.#ending = true;
    if (this.#queued === 0 && !this.#connecting) this.#shutWrite();
  }

  /** Closes at once: drops the queue, closes the fd, emits `error` (if given) and `close`. */
  destroy(error?: Error): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#connectTimer?.cancel();
    const fd = this.#fd;
    if (this.#reading) this.reactor.removeReader(fd);
    if (this.#writing) this.reactor.removeWriter(fd);
    this.#reading = this.#writing = false;
    this.#queue = NO_QUEUE;
    this.#head = 0;
    this.#queued = 0;
    this.#tail = this.#spare = null;
    this.#fd = -1;
    if (fd >= 0 && Connection.#byFd[fd] === this) Connection.#byFd[fd] = undefined;
    connectionCount--;
    if (this.#dialing !== null) {
      this.#dialing.cancel();
      this.#dialing = null;
    }
    if (fd >= 0) {
      try {
        closeFd(fd);
      } catch (err) {
        // EBADF would be a bug elsewhere; the fd is gone either way, but say so.
        this.reactor.reportError(err, { source: "transport", fd });
      }
    }
    soon(this.reactor, () => this.#emitClose(error));
  }

  /**
   * Tells the observer, then emits `error` (if any) and `close`: `close` comes even if what runs before it throws
   * (reported to `onError`), so it is never lost.
   */
  #emitClose(error: Error | undefined): void {
    // The observer (a Server) first, as its close listener used to be: listeners see the server without it.
    try {
      this.#observer?.connectionClosed(this);
    } catch (err) {
      this.reactor.reportError(err, { source: "callSoon", fd: this.#fdForReports });
    }
    if (error) {
      try {
        this.emit("error", error);
      } catch (err) {
        this.reactor.reportError(err, { source: "callSoon", fd: this.#fdForReports });
      }
    }
    this.emit("close", error);
  }

  /** An `error` nobody listens for goes to the reactor's `onError`, naming the fd. */
  protected override unhandledError(error: unknown): void {
    this.reactor.reportError(error, { source: "transport", fd: this.#fdForReports });
  }

  /** Stops reading (and so stops `data` events) until `resume()`. */
  pause(): void {
    this.#paused = true;
    if (this.#reading) {
      this.reactor.removeReader(this.#fd);
      this.#reading = false;
    }
  }

  /** Resumes reading after `pause()`. */
  resume(): void {
    this.#paused = false;
    this.#startReading();
  }

  /** Whether reading is paused. */
  get isPaused(): boolean {
    return this.#paused;
  }

  /**
   * Sets `TCP_NODELAY` (disables Nagle's algorithm). TCP only. While a host name is being dialled (no socket yet)
   * it applies once the socket exists; once closed it does nothing.
   */
  setNoDelay(on = true): this {
    this.#setOption(IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0);
    return this;
  }

  /**
   * Sets `SO_KEEPALIVE`, and `TCP_KEEPIDLE` (seconds, rounded up) when `initialDelayMs` > 0. TCP only. Like
   * {@linkcode Connection.setNoDelay}, it waits for the socket of a name being dialled and does nothing once closed.
   */
  setKeepAlive(on = true, initialDelayMs = 0): this {
    this.#setOption(SOL_SOCKET, SO_KEEPALIVE, on ? 1 : 0);
    if (on && initialDelayMs > 0) this.#setOption(IPPROTO_TCP, TCP_KEEPIDLE, Math.ceil(initialDelayMs / 1000));
    return this;
  }

  /** `setsockopt` now, or once the socket of a name being dialled exists; nothing once closed. */
  #setOption(level: number, name: number, value: number): void {
    if (this.#fd >= 0) setSockOptInt(this.#fd, level, name, value);
    else if (!this.#destroyed) ((this.#rare ??= newRareState()).pendingOptions ??= []).push(level, name, value);
  }

  /**
   * The incoming bytes as a web `ReadableStream` (created on first use). Reading
   * pauses while the stream's queue is full, so `pipeTo` has backpressure.
   * Use with `reactor.run()`, which lets promises run beside the loop.
   * Bytes read before it was made are not in it (make it in the `connection`
   * callback); made after the peer's end or `destroy()`, it is closed. Its
   * chunks are copies. It pauses and resumes the connection, so `data`
   * listeners beside it see the same pauses. `cancel()` destroys the connection.
   *
   * @example
   * ```ts ignore
   * await conn.readable.pipeTo(conn.writable); // echo
   * ```
   */
  get readable(): ReadableStream<Uint8Array> {
    if (this.#readableStream !== undefined) return this.#readableStream;
    let open = true; // false once closed, errored or cancelled: the controller then throws on close()
    return this.#readableStream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        // Made after the peer's end or after destroy(): those events are gone, so end the stream now (not hang).
        if (this.#readEnded || this.#destroyed) {
          open = false;
          return controller.close();
        }
        this.on("data", (chunk) => {
          controller.enqueue(chunk.slice());
          if ((controller.desiredSize ?? 1) <= 0) this.pause();
        });
        this.on("end", () => {
          if (!open) return;
          open = false;
          controller.close();
        });
        this.on("close", (error) => {
          if (!open) return;
          open = false;
          if (error) controller.error(error);
          else controller.close();
        });
      },
      pull: () => {
        if (this.#paused && !this.#destroyed) this.resume();
      },
      cancel: () => {
        open = false;
        this.destroy();
      },
    }, new ByteLengthQueuingStrategy({ highWaterMark: this.#limits.high }));
  }

  /**
   * The outgoing side as a web `WritableStream` (created on first use): each
   * write resolves once the connection's queue is below the high-water mark;
   * closing the stream calls `end()` and resolves once the queue is flushed and
   * the FIN sent (rejects if the connection closes first); aborting it calls
   * `destroy()` at once, even while a write waits for `drain`. Once it exists
   * the stream owns the write side's end: the peer's `end` no longer ends
   * the connection for you (a `pipeTo` still writing would fail), closing
   * the stream does.
   */
  get writable(): WritableStream<Uint8Array> {
    return this.#writableStream ??= new WritableStream<Uint8Array>({
      write: (chunk, controller) => {
        if (this.write(chunk)) return;
        return new Promise<void>((resolve, reject) => {
          // abort() waits for the write in flight, and the drain may never come: settle on its signal, so that the
          // stream calls `abort` (with the caller's reason) at once.
          const signal = controller.signal;
          const onAbort = () => {
            this.off("drain", onDrain);
            this.off("close", onClose);
            reject(signal.reason);
          };
          const onDrain = () => {
            this.off("close", onClose);
            signal.removeEventListener("abort", onAbort);
            resolve();
          };
          const onClose = (error?: Error) => {
            this.off("drain", onDrain);
            signal.removeEventListener("abort", onAbort);
            reject(error ?? new Error("The connection closed before its data was written"));
          };
          this.once("drain", onDrain);
          this.once("close", onClose);
          signal.addEventListener("abort", onAbort, { once: true });
        });
      },
      // Resolves once the queue is flushed and the FIN sent; rejects if the connection closes first.
      close: () => {
        this.end();
        if (this.#writeShut) return;
        if (this.#destroyed) return Promise.reject(new Error("The connection closed before its FIN was sent"));
        return new Promise<void>((resolve, reject) => {
          const rare = this.#rare!;
          const onClose = (error?: Error) => {
            rare.onWriteShut = null;
            reject(error ?? new Error("The connection closed before its FIN was sent"));
          };
          rare.onWriteShut = () => {
            rare.onWriteShut = null;
            this.off("close", onClose);
            resolve();
          };
          this.once("close", onClose);
        });
      },
      abort: (reason) => this.destroy(reason instanceof Error ? reason : undefined),
    });
  }

  /**
   * Waits for the socket of a connection made before it had one, then adopts it as a connect in progress is: the
   * writable callback completes it (`connect`, queued writes, the FIN), so a throwing `connect` listener goes to
   * `onError` like any callback's exception, never into a promise nobody awaits, and a socket the reactor refuses
   * (select: fd ≥ FD_SETSIZE) destroys the connection instead of leaving it open and deaf.
   */
  #awaitSocket(socket: { promise: Promise<number>; cancel(): void }): void {
    this.#dialing = socket;
    socket.promise.then((fd) => {
      this.#dialing = null;
      if (this.#destroyed) {
        closeFd(fd);
        return;
      }
      this.#fd = this.#fdForReports = fd;
      this.#own(fd);
      try {
        const options = this.#rare?.pendingOptions;
        if (options) {
          this.#rare!.pendingOptions = null;
          for (let i = 0; i < options.length; i += 3) setSockOptInt(fd, options[i], options[i + 1], options[i + 2]);
        }
        this.reactor.addWriter(fd, Connection.#onWritable);
        this.#writing = true;
      } catch (err) {
        this.destroy(err as Error);
      }
    }, (err) => {
      this.#dialing = null;
      this.destroy(err instanceof Error ? err : new Error(String(err)));
    });
  }

  /**
   * The connect completed: start reading, say so, then flush what was queued meanwhile (or the FIN), even if a
   * `connect` listener threw (its exception propagates after).
   */
  #connected(): void {
    this.#connecting = false;
    this.#connectTimer?.cancel();
    this.#connectTimer = null;
    this.#startReading();
    try {
      this.emit("connect");
    } finally {
      this.#afterConnect();
    }
  }

  /** What follows `connect`: watch writability for what was queued meanwhile, or send the FIN `end()` asked for. */
  #afterConnect(): void {
    if (this.#destroyed) return;
    if (this.#queued > 0) {
      if (!this.#writing) {
        this.reactor.addWriter(this.#fd, Connection.#onWritable);
        this.#writing = true;
      }
      return;
    }
    if (this.#writing) {
      this.reactor.removeWriter(this.#fd);
      this.#writing = false;
    }
    if (this.#ending) this.#shutWrite();
  }

  /** Destroys the connection with `ETIMEDOUT` if the connect to `what` has not completed within `ms`. */
  #armConnectTimeout(what: string, ms: number): void {
    this.#connectTimer = this.reactor.callLater(ms, () => {
      if (this.#connecting) {
        this.destroy(new OSError(Errno.ETIMEDOUT, "connect", `Cannot connect to ${what}`, `no answer within ${ms} ms`));
      }
    });
  }

  #startReading(): void {
    if (this.#reading || this.#paused || this.#readEnded || this.#destroyed || this.#connecting) return;
    this.reactor.addReader(this.#fd, Connection.#onReadable);
    this.#reading = true;
  }

  #read(): void {
    let n: number;
    try {
      n = recv(this.#fd, readBuf, READ_SIZE, 0);
    } catch (err) {
      this.destroy(err as Error);
      return;
    }
    if (n === WOULD_BLOCK) return;
    if (n === 0) {
      this.#ended();
      return;
    }
    this.#bytesRead += n;
    const listeners = this.listeners("data");
    if (listeners === undefined) return;
    const chunk = readChunk(n);
    if (!Array.isArray(listeners)) {
      (listeners as (this: Connection, chunk: Uint8Array) => void).call(this, chunk);
      return;
    }
    for (let i = 0; i < listeners.length && !this.#destroyed; i++) listeners[i].call(this, chunk);
  }

  /**
   * The peer's FIN: stop reading, emit `end`, then close (our side is shut too) or end our side (unless half-open
   * is allowed), even if an `end` listener threw (its exception propagates after).
   */
  #ended(): void {
    this.#readEnded = true;
    this.reactor.removeReader(this.#fd);
    this.#reading = false;
    try {
      this.emit("end");
    } finally {
      if (!this.#destroyed) {
        if (this.#writeShut) this.destroy();
        else if (!this.#limits.allowHalfOpen && this.#writableStream === undefined) this.end();
      }
    }
  }

  #writable(): void {
    if (this.#connecting) {
      let err = 0;
      try {
        err = socketError(this.#fd);
      } catch (e) {
        this.destroy(e as Error);
        return;
      }
      if (err !== 0) {
        this.destroy(osError(err, "connect", `Cannot connect to ${this.#target ?? `fd ${this.#fd}`}`));
        return;
      }
      this.#connected();
      if (this.#destroyed || this.#queued === 0) return;
    }
    this.#flush();
  }

  /** Trims the staging chunk to what it holds; later small writes start a new one. */
  #sealTail(): void {
    if (this.#tail === null) return;
    this.#queue[this.#tailIndex] = this.#tail.subarray(0, this.#tailLen);
    this.#spare = this.#tail.subarray(this.#tailLen);
    this.#tail = null;
  }

  /**
   * Sends what the socket takes from the queue, then settles the state:
   * stop watching writability once empty, owe or emit `drain`, and send the
   * FIN that `end()` asked for.
   */
  #flush(): void {
    this.#sealTail();
    while (this.#head < this.#queue.length) {
      const n = this.#sendQueued();
      if (n === WOULD_BLOCK || this.#destroyed) break;
      this.#bytesWritten += n;
      this.#consume(n);
    }
    if (this.#destroyed) return;
    if (this.#head === this.#queue.length) this.#resetQueue();
    else if (this.#head > 1024) this.#compactQueue();
    // drain before FIN: a writer waiting for it learns its bytes went out before the connection may close.
    if (this.#needDrain && this.#queued <= this.#limits.low) this.#drained();
    else if (this.#ending && this.#queued === 0) this.#shutWrite();
  }

  /** Emits the `drain` owed, then sends the FIN `end()` asked for once the queue is empty, even if a listener threw. */
  #drained(): void {
    this.#needDrain = false;
    try {
      this.emit("drain");
    } finally {
      // Checked after drain: its listener may have queued more, and the FIN must wait for that too.
      if (this.#ending && this.#queued === 0 && !this.#destroyed) this.#shutWrite();
    }
  }

  /** One `send` (one chunk) or `sendChunks` (up to `MAX_GATHER`) from the head of the queue: bytes sent or `WOULD_BLOCK`. */
  #sendQueued(): number {
    const queue = this.#queue;
    const head = this.#head;
    const count = Math.min(queue.length - head, MAX_GATHER);
    try {
      return count === 1
        ? send(this.#fd, queue[head], queue[head].byteLength, MSG_NOSIGNAL)
        : sendChunks(this.#fd, queue, head, count, MSG_NOSIGNAL);
    } catch (err) {
      this.destroy(err as Error);
      return WOULD_BLOCK;
    }
  }

  /** Drops `n` sent bytes from the head of the queue: whole chunks, then the front of a partly sent one. */
  #consume(n: number): void {
    const queue = this.#queue;
    this.#queued -= n;
    while (n > 0) {
      const c = queue[this.#head];
      if (n >= c.byteLength) {
        n -= c.byteLength;
        queue[this.#head++] = SENT;
      } else {
        queue[this.#head] = c.subarray(n);
        n = 0;
      }
    }
  }

  /** Empties the flushed queue and stops watching writability. */
  #resetQueue(): void {
    this.#queue = NO_QUEUE; // an idle connection keeps no array of its own
    this.#head = 0;
    this.reactor.removeWriter(this.#fd);
    this.#writing = false;
  }

  /** Drops the sent slots in front of the queue so it does not grow without bound. */
  #compactQueue(): void {
    this.#queue.splice(0, this.#head);
    this.#head = 0;
  }

  #shutWrite(): void {
    if (this.#writeShut || this.#destroyed) return;
    this.#writeShut = true;
    try {
      shutdown(this.#fd, SHUT_WR);
    } catch (err) {
      // ENOTCONN: the peer is already gone; anything else is reported.
      if (!(err instanceof OSError) || err.code !== "ENOTCONN") {
        this.destroy(err as Error);
        return;
      }
    }
    this.#rare?.onWriteShut?.();
    if (this.#readEnded) this.destroy();
  }
}
