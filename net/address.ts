/**
 * Addresses: numeric hosts, `localhost`, and Unix paths.
 *
 * @module
 */

import { encodeSockaddr, parseIPv4, parseIPv6, type SocketAddress } from "../ffi/mod.ts";

export type { SocketAddress };

/** A TCP/UDP endpoint. */
export interface HostPort {
  /** A numeric IPv4/IPv6 address or `localhost`. */
  host?: string;
  /** The port; 0 asks the kernel for a free one when listening. */
  port: number;
}

/** A Unix socket endpoint. */
export interface UnixPath {
  /** The socket file's path (at most 107 bytes), or an abstract name: a leading NUL (`"\0name"`), no file. */
  path: string;
}

/**
 * Turns a host into a numeric address. Numeric IPv4/IPv6 pass through;
 * `localhost` is 127.0.0.1. Anything else is refused at once: this is the
 * synchronous path of `listen()`, `bindUdp()` and `send()`, which never wait
 * on a resolver (`connect()` resolves names itself, off the JS thread).
 *
 * @throws {TypeError} for a name that would need DNS.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveHost } from "@fdloop/fdloop/net";
 * assert.equal(resolveHost("localhost"), "127.0.0.1");
 * assert.equal(resolveHost("[::1]"), "::1");
 * ```
 */
export function resolveHost(host: string): string {
  if (host === "localhost") return "127.0.0.1";
  if (parseIPv4(host)) return host;
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  const zone = bare.indexOf("%"); // a link-local scope, `fe80::1%lo`: encodeSockaddr checks the interface
  if (parseIPv6(zone < 0 ? bare : bare.slice(0, zone))) return bare;
  throw new TypeError(
    `Cannot use host ${
      JSON.stringify(host)
    } here: a numeric address or localhost is needed (connect() resolves names; bind and sendto do not)`,
  );
}

/** An encoded socket address for bind/connect/sendto, with a printable form for messages. */
export interface Endpoint {
  /** The `struct sockaddr_*` bytes. */
  buf: Uint8Array;
  /** Its length. */
  len: number;
  /** `AF_INET`, `AF_INET6` or `AF_UNIX`. */
  family: number;
  /** `127.0.0.1:80`, `[::1]:80` or the Unix path. */
  text: string;
}

/** Encodes an endpoint for bind/connect/sendto. Internal: not exported from the package. */
export function endpoint(addr: HostPort | UnixPath, defaultHost = "127.0.0.1"): Endpoint {
  if ("path" in addr && typeof addr.path === "string") {
    return { ...encodeSockaddr({ path: addr.path }), text: addr.path };
  }
  const { host = defaultHost, port } = addr as HostPort;
  const numeric = resolveHost(host);
  const enc = encodeSockaddr({ host: numeric, port });
  return { ...enc, text: formatHostPort(numeric, port) };
}

/** `127.0.0.1:80` or `[::1]:80`. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** A printable form of a decoded address. */
export function formatAddress(addr: SocketAddress): string {
  return addr.family === "unix" ? addr.path : formatHostPort(addr.address, addr.port);
}
