/**
 * `connect()`: non-blocking client connections.
 *
 * @module
 */

import {
  close as closeFd,
  connect as connectFd,
  OSError,
  parseIPv4,
  parseIPv6,
  SOCK_STREAM,
  socket,
} from "../ffi/mod.ts";
import type { Reactor } from "../reactor/mod.ts";
import { endpoint, formatHostPort, type HostPort, type UnixPath } from "./address.ts";
import { dialHost } from "./dial.ts";
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
 * Opens a stream connection to `{ host, port }` or `{ path }` (Unix socket).
 * Returns at once; the connection emits `connect` when established, or
 * `error` (`ECONNREFUSED`, `ETIMEDOUT`, `EAI_NONAME` …) then `close`.
 * Writes made before `connect` are queued.
 *
 * A host name (anything but a numeric address or `localhost`) is resolved
 * with `getaddrinfo` off the JS thread, and its addresses are tried in turn
 * until one accepts; `timeout` covers the lookup and every attempt.
 *
 * @throws {TypeError} for a bad port or path; {@linkcode OSError} `EMFILE`/`ENFILE` when no socket can be made (errors of
 * the connect itself arrive as an `error` event).
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
  if (!("path" in target) && target.host !== undefined && isName(target.host)) return connectByName(target, reactor);
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

/** A host that is neither numeric nor `localhost` (which is always 127.0.0.1, without a lookup). */
function isName(host: string): boolean {
  if (host === "localhost") return false;
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  return parseIPv4(bare) === null && parseIPv6(bare) === null;
}

/** A connection whose socket comes from resolving the name and dialling its addresses in turn. */
function connectByName(target: HostPort & ConnectOptions, reactor: Reactor): Connection {
  const host = target.host!;
  if (!Number.isInteger(target.port) || target.port < 0 || target.port > 65535) {
    throw new TypeError(`Port must be an integer from 0 to 65535, got ${target.port}`);
  }
  return new Connection(reactor, -1, {
    ...bufferOptions(target),
    connecting: {
      target: formatHostPort(host, target.port),
      timeout: target.timeout,
      socket: dialHost(reactor, host, target.port),
    },
  });
}
