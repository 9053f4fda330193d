/**
 * `connect()`: non-blocking client connections.
 *
 * @module
 */

import { close as closeFd, connect as connectFd, OSError, SOCK_STREAM, socket } from "../ffi/mod.ts";
import type { Reactor } from "../reactor/mod.ts";
import { endpoint, type HostPort, type UnixPath } from "./address.ts";
import { bufferOptions, Connection, type ConnectionOptions } from "./connection.ts";
import { defaultReactor } from "./default_reactor.ts";

/** Options of {@linkcode connect}. */
export interface ConnectOptions extends ConnectionOptions {
  /** Give up after this many ms with `ETIMEDOUT` (default: the kernel's own limit). */
  timeout?: number;
  /** The reactor (default: {@linkcode defaultReactor}). */
  reactor?: Reactor;
}

/**
 * Opens a stream connection to `{ host, port }` (numeric or `localhost`) or
 * `{ path }` (Unix socket). Returns at once; the connection emits `connect`
 * when established, or `error` (`ECONNREFUSED`, `ETIMEDOUT`, …) then `close`.
 * Writes made before `connect` are queued.
 *
 * @throws {TypeError} for a host name that would need DNS, or a bad port/path.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, listen } from "@fdloop/fdloop/net";
 * const server = listen({ port: 0 }, (conn) => conn.end("hi\n"));
 * const conn = connect({ host: "127.0.0.1", port: server.port });
 * let got = "";
 * conn.on("data", (chunk) => got += new TextDecoder().decode(chunk));
 * conn.on("close", () => server.close().then(() => conn.reactor.stop()));
 * await conn.reactor.run();
 * assert.equal(got, "hi\n");
 * ```
 */
export function connect(target: (HostPort | UnixPath) & ConnectOptions): Connection {
  const reactor = target.reactor ?? defaultReactor();
  const ep = endpoint(target);
  const fd = socket(ep.family, SOCK_STREAM);
  let failure: Error | undefined;
  try {
    connectFd(fd, ep.buf, ep.len, ep.text);
  } catch (err) {
    if (!(err instanceof OSError)) {
      closeFd(fd);
      throw err;
    }
    failure = err;
  }
  // Success, failure or in progress, the outcome reaches the caller through the
  // reactor (`connect`, or `error` + `close`), so it is the same for TCP and Unix sockets.
  let conn: Connection;
  try {
    conn = new Connection(reactor, fd, {
      ...bufferOptions(target),
      connecting: { target: ep.text, timeout: failure ? undefined : target.timeout },
    });
  } catch (err) {
    // e.g. a RangeError from the select backend for fd ≥ FD_SETSIZE: do not leak the socket.
    closeFd(fd);
    throw err;
  }
  if (failure) conn.destroy(failure);
  return conn;
}
