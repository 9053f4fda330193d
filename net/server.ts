/**
 * `listen()` and `Server`: accepting stream connections (TCP over IPv4/IPv6, Unix).
 *
 * @module
 */

import {
  accept,
  close as closeFd,
  eventfd,
  OSError,
  SOCK_STREAM,
  type SocketAddress,
  unlink,
  WOULD_BLOCK,
} from "../ffi/mod.ts";
import type { Reactor, TimerHandle } from "../reactor/mod.ts";
import { endpoint, type HostPort, type UnixPath } from "./address.ts";
import { bufferOptions, type CloseObserver, Connection, type ConnectionOptions, observeClose } from "./connection.ts";
import { openBoundSocket } from "./socket.ts";
import { defaultReactor } from "./default_reactor.ts";
import { Emitter } from "./emitter.ts";

/** Options of {@linkcode listen}. */
export interface ListenOptions extends ConnectionOptions {
  /** Host to bind (default `127.0.0.1`); `::` binds IPv6 and, unless `ipv6Only`, IPv4 too. */
  host?: string;
  /** Port (0 = a free port, see `server.address`). */
  port?: number;
  /** A Unix socket path instead of host/port; the file is removed on close. */
  path?: string;
  /** `listen()` backlog (default 511). */
  backlog?: number;
  /** `SO_REUSEADDR` (default true for TCP). */
  reuseAddr?: boolean;
  /** `SO_REUSEPORT`: several listeners on one port, the kernel spreads connections. */
  reusePort?: boolean;
  /** `IPV6_V6ONLY` for an IPv6 host (default false: `::` is dual-stack). */
  ipv6Only?: boolean;
  /** The reactor (default: {@linkcode defaultReactor}). */
  reactor?: Reactor;
  /** Most connections accepted per readiness event, for fairness (default 64). */
  acceptBatch?: number;
}

/** Events of a {@linkcode Server}. */
export interface ServerEvents {
  /** A new connection. */
  connection: (conn: Connection) => void;
  /**
   * The process ran out of fds (`EMFILE`/`ENFILE`): `shed` pending
   * connections were accepted and closed at once, and accepting pauses for a
   * moment if even that failed. Emitted once per episode, at its start: the
   * connections shed until one is accepted again count in
   * {@linkcode Server.shed}, not in events (a crowd retrying against a full
   * fd table would otherwise make one report per attempt). With no
   * `overload` listener, the error goes to `error` instead, once per episode
   * too: running out of fds is never silent.
   */
  overload: (error: OSError, shed: number) => void;
  /** An accept error other than running out of fds (or that one, when nobody listens for `overload`). */
  error: (error: Error) => void;
  /** The listener closed and, if `close()` waited, every connection too. */
  close: () => void;
}

const RETRY_MS = 100;

/**
 * A listening socket that accepts connections on its reactor.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { listen } from "@fdloop/fdloop/net";
 * const server = listen({ host: "127.0.0.1", port: 0 }, (conn) => conn.end("hello\n"));
 * assert.equal(server.address.family, "IPv4");
 * assert.ok(server.port > 0); // the port the kernel picked
 * await server.close();
 * ```
 */
export class Server extends Emitter<ServerEvents> {
  /** The reactor accepting for this server. */
  readonly reactor: Reactor;
  /** The bound address (with the real port when 0 was asked). */
  readonly address: SocketAddress;
  /** Connections accepted and still open. */
  readonly connections: Set<Connection> = new Set();
  #fd: number;
  readonly #fdForReports: number;
  #accepted = 0;
  #shed = 0;
  readonly #options: ConnectionOptions;
  readonly #batch: number;
  readonly #path: string | undefined;
  #reserveFd: number;
  #paused = false;
  /** In an episode of running out of fds, reported already: from the first `EMFILE` until an accept succeeds. */
  #overloaded = false;
  #retry: TimerHandle | null = null;
  #closed = false;
  #closeWaiters: (() => void)[] = [];
  #closeEmitted = false;
  readonly #onAcceptable = (): void => this.#accept();
  readonly #closeObserver: CloseObserver = {
    connectionClosed: (conn) => {
      this.connections.delete(conn);
      this.#maybeClosed();
    },
  };

  /** Prefer {@linkcode listen}. */
  constructor(options: ListenOptions) {
    super();
    this.reactor = options.reactor ?? defaultReactor();
    this.#options = bufferOptions(options);
    this.#batch = options.acceptBatch ?? 64;
    const ep = endpoint(
      options.path !== undefined ? { path: options.path } : { host: options.host, port: options.port ?? 0 },
    );
    const { fd, address } = openBoundSocket(ep, SOCK_STREAM, {
      reuseAddr: options.reuseAddr ?? true,
      reusePort: options.reusePort,
      ipv6Only: options.ipv6Only,
      backlog: options.backlog ?? 511,
    });
    let reserve = -1;
    try {
      // A spare fd to give back when the table is full, so pending connections can be shed (libuv's trick).
      reserve = eventfd();
      this.reactor.addReader(fd, this.#onAcceptable);
    } catch (err) {
      if (reserve >= 0) closeFd(reserve);
      closeFd(fd);
      if (options.path !== undefined) unlink(options.path);
      throw err;
    }
    this.address = address;
    this.#fd = this.#fdForReports = fd;
    this.#path = options.path;
    this.#reserveFd = reserve;
  }

  /** The listening fd, or -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  /** Connections accepted in total. */
  get accepted(): number {
    return this.#accepted;
  }

  /** Connections accepted and closed at once because fds ran out. */
  get shed(): number {
    return this.#shed;
  }

  /** The bound TCP port (0 for a Unix socket). */
  get port(): number {
    return this.address.family === "unix" ? 0 : this.address.port;
  }

  /** Whether accepting is paused after running out of fds. */
  get paused(): boolean {
    return this.#paused;
  }

  /**
   * Stops accepting and closes the listener (a Unix socket file is removed).
   * Open connections are left to finish unless `closeConnections` is set.
   *
   * @returns A promise that resolves once the listener and every connection are closed
   *   (the reactor must be running for connections to finish).
   */
  close(options: { closeConnections?: boolean } = {}): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#retry?.cancel();
      if (!this.#paused) this.reactor.removeReader(this.#fd);
      closeFd(this.#fd);
      this.#fd = -1;
      if (this.#reserveFd >= 0) closeFd(this.#reserveFd);
      this.#reserveFd = -1;
      if (this.#path !== undefined) unlink(this.#path);
    }
    if (options.closeConnections) { for (const c of [...this.connections]) c.destroy(); }
    const done = new Promise<void>((resolve) => this.#closeWaiters.push(resolve));
    this.#maybeClosed();
    return done;
  }

  #maybeClosed(): void {
    if (!this.#closed || this.connections.size > 0 || this.#closeWaiters.length === 0) return;
    const waiters = this.#closeWaiters;
    this.#closeWaiters = [];
    // The promises first: a close listener that throws must not leave them pending (they settle in microtasks).
    for (const w of waiters) w();
    if (!this.#closeEmitted) {
      this.#closeEmitted = true;
      this.emit("close");
    }
  }

  /** An `error` nobody listens for goes to the reactor's `onError`, naming the listening fd. */
  protected override unhandledError(error: unknown): void {
    this.reactor.reportError(error, { source: "transport", fd: this.#fdForReports });
  }

  #accept(): void {
    for (let i = 0; i < this.#batch && !this.#closed; i++) {
      let fd: number;
      try {
        fd = accept(this.#fd);
      } catch (err) {
        if (err instanceof OSError && (err.code === "EMFILE" || err.code === "ENFILE")) {
          this.#overload(err);
        } else {
          // ENOBUFS, ENOMEM…: the listener stays readable, so back off instead of spinning.
          this.#pause();
          this.emit("error", err as Error);
        }
        return;
      }
      if (fd === WOULD_BLOCK) return;
      this.#overloaded = false; // an fd again: the episode is over
      this.#adopt(fd);
    }
  }

  #adopt(fd: number): void {
    let conn: Connection;
    try {
      conn = new Connection(this.reactor, fd, this.#options);
    } catch (err) {
      // The reactor cannot watch this fd (select: fd ≥ FD_SETSIZE): drop the connection, keep accepting.
      closeFd(fd);
      this.emit("error", err as Error);
      return;
    }
    this.#accepted++;
    this.connections.add(conn);
    observeClose(conn, this.#closeObserver);
    try {
      this.emit("connection", conn);
    } catch (err) {
      // A throwing handler must not leak the connection it was given. The exception goes on to the reactor's
      // onError, once: destroy(err) would report it a second time as an error nobody listened for.
      conn.destroy();
      throw err;
    }
  }

  /** Out of fds: shed pending connections through the reserve fd, or pause accepting for a while. */
  #overload(error: OSError): void {
    let shed = 0;
    if (this.#reserveFd >= 0) {
      closeFd(this.#reserveFd);
      this.#reserveFd = -1;
      for (let i = 0; i < this.#batch; i++) {
        let fd: number;
        try {
          fd = accept(this.#fd);
        } catch {
          break;
        }
        if (fd === WOULD_BLOCK) break;
        closeFd(fd);
        shed++;
      }
      this.#takeReserve();
    }
    this.#shed += shed;
    if (this.#reserveFd < 0 || shed === 0) this.#pause();
    if (this.#overloaded) return; // reported at the start of this episode
    this.#overloaded = true;
    if (!this.emit("overload", error, shed)) this.emit("error", error);
  }

  #pause(): void {
    if (this.#paused || this.#closed) return;
    this.#paused = true;
    this.reactor.removeReader(this.#fd);
    this.#retry = this.reactor.callLater(RETRY_MS, () => {
      this.#retry = null;
      this.#paused = false;
      if (this.#closed) return;
      // Still full? Accepting resumes anyway; the next EMFILE pauses again.
      if (this.#reserveFd < 0) this.#takeReserve();
      this.reactor.addReader(this.#fd, this.#onAcceptable);
    });
  }

  /** Opens the reserve fd (an eventfd) if the table has room; leaves -1 if not. */
  #takeReserve(): void {
    try {
      this.#reserveFd = eventfd();
    } catch {
      this.#reserveFd = -1;
    }
  }
}

/**
 * Listens for stream connections on TCP (IPv4 or IPv6) or a Unix socket.
 *
 * @param options Where to listen, and how to buffer connections.
 * @param onConnection Called with each new connection.
 * @returns The listening server; `server.port` tells the port when 0 was asked.
 * @throws {OSError} `EADDRINUSE` when the address is taken, `EACCES` for a privileged port, …
 * @example
 * ```ts
 * import { listen } from "@fdloop/fdloop/net";
 * const server = listen({ port: 0 }, (conn) => {
 *   conn.on("data", (chunk) => conn.write(chunk));
 * });
 * await server.close();
 * ```
 */
export function listen(
  options: ListenOptions | (HostPort & Omit<ListenOptions, "port">) | (UnixPath & Omit<ListenOptions, "path">),
  onConnection?: (conn: Connection) => void,
): Server {
  const server = new Server(options as ListenOptions);
  if (onConnection) server.on("connection", onConnection);
  return server;
}
