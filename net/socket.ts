/**
 * Opening a bound socket: the one place that does socket → setsockopt →
 * bind → (listen) → getsockname, and gives everything back on failure.
 *
 * @module
 */

import {
  AF_INET6,
  AF_UNIX,
  bind,
  close as closeFd,
  getSockName,
  listen as listenFd,
  setSockOptInt,
  setV6Only,
  SO_REUSEADDR,
  SO_REUSEPORT,
  socket,
  type SocketAddress,
  SOL_SOCKET,
  unlink,
} from "../ffi/mod.ts";
import type { Endpoint } from "./address.ts";

/** Socket options applied before `bind`. */
export interface BindOptions {
  /** `SO_REUSEADDR` (IP sockets only). */
  reuseAddr?: boolean;
  /** `SO_REUSEPORT` (IP sockets only). */
  reusePort?: boolean;
  /** `IPV6_V6ONLY` for an IPv6 endpoint (default false: `::` is dual-stack). */
  ipv6Only?: boolean;
  /** Also `listen()` with this backlog. */
  backlog?: number;
}

/**
 * Makes a non-blocking socket of `type` bound to `ep` (and listening, when
 * `backlog` is given) and returns it with the address the kernel gave it.
 * On any failure the socket is closed, a Unix socket file it created is
 * removed, and the `OSError` is rethrown.
 */
export function openBoundSocket(
  ep: Endpoint,
  type: number,
  options: BindOptions = {},
): { fd: number; address: SocketAddress } {
  const fd = socket(ep.family, type);
  let bound = false;
  try {
    if (ep.family !== AF_UNIX) {
      if (options.reuseAddr) setSockOptInt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
      if (options.reusePort) setSockOptInt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
      if (ep.family === AF_INET6) setV6Only(fd, options.ipv6Only ?? false);
    }
    bind(fd, ep.buf, ep.len, ep.text);
    bound = true;
    if (options.backlog !== undefined) listenFd(fd, options.backlog);
    return { fd, address: getSockName(fd) };
  } catch (err) {
    closeFd(fd);
    if (bound && ep.family === AF_UNIX) unlink(ep.text);
    throw err;
  }
}
