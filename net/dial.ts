/**
 * Dialling a host name: resolve it with `getaddrinfo` (off the JS thread),
 * then try each address in the order the resolver gave (RFC 6724), moving
 * to the next when one refuses, until one connects.
 *
 * @module
 */

import {
  close as closeFd,
  connect as connectFd,
  encodeSockaddr,
  getaddrinfo,
  OSError,
  osError,
  SOCK_STREAM,
  socket,
  socketError,
} from "../ffi/mod.ts";
import type { Reactor } from "../reactor/mod.ts";
import { formatHostPort } from "./address.ts";

/** A dial in progress: the connected socket, or the error of the last address tried. */
export interface Dial {
  /** Resolves to a connected non-blocking socket. */
  promise: Promise<number>;
  /** Stops: closes the socket being tried, and the promise never resolves with it. */
  cancel(): void;
}

/**
 * Resolves `host` and connects to `port` on the first address that accepts.
 * Errors name the host: `Cannot connect to example.test:80 ([::1]:80): ECONNREFUSED …`,
 * or the resolver's `GaiError` (`Cannot resolve "nope.invalid": EAI_NONAME …`).
 */
export function dialHost(reactor: Reactor, host: string, port: number): Dial {
  let cancelled = false;
  let current = -1;
  const stopTrying = () => {
    if (current >= 0) {
      reactor.removeWriter(current);
      closeFd(current);
      current = -1;
    }
  };
  const promise = (async () => {
    const addresses = await getaddrinfo(host);
    let last: Error = new OSError(0, "getaddrinfo", `Cannot resolve ${JSON.stringify(host)}`, "no address");
    for (const addr of addresses) {
      if (cancelled) break;
      const what = `${formatHostPort(host, port)} (${formatHostPort(addr.address, port)})`;
      try {
        // `track` hears of the socket while its connect is in progress, and of -1 the moment the attempt settles
        // (in the reactor's callback, before the promise runs on): a cancel() in between must not close it again.
        const fd = await attempt(reactor, addr.address, port, what, (fd) => current = fd);
        if (cancelled) {
          closeFd(fd);
          break;
        }
        return fd;
      } catch (err) {
        if (!(err instanceof OSError)) throw err;
        last = err;
      }
    }
    if (cancelled) throw new Error("The connection was closed while connecting");
    throw last;
  })();
  promise.catch(() => {}); // the connection observes it; never an unhandled rejection
  return {
    promise,
    cancel() {
      cancelled = true;
      stopTrying();
    },
  };
}

/**
 * One non-blocking connect to `address:port`: resolves with the socket once connected.
 * `track(fd)` is called while the connect is in progress, `track(-1)` as soon as it is over.
 */
function attempt(
  reactor: Reactor,
  address: string,
  port: number,
  what: string,
  track: (fd: number) => void,
): Promise<number> {
  const sa = encodeSockaddr({ host: address, port });
  const fd = socket(sa.family, SOCK_STREAM);
  try {
    if (connectFd(fd, sa.buf, sa.len, what)) return Promise.resolve(fd);
  } catch (err) {
    closeFd(fd);
    return Promise.reject(err);
  }
  return new Promise<number>((resolve, reject) => {
    try {
      reactor.addWriter(fd, onWritable);
    } catch (err) {
      // The reactor refuses the fd (select: fd ≥ FD_SETSIZE): this attempt owns it still, so it closes it.
      closeFd(fd);
      reject(err);
      return;
    }
    track(fd);
    function onWritable(): void {
      reactor.removeWriter(fd);
      track(-1); // from here on the socket is this callback's to close or hand over, not cancel()'s
      let err: number;
      try {
        err = socketError(fd);
      } catch (e) {
        closeFd(fd);
        reject(e);
        return;
      }
      if (err === 0) {
        resolve(fd);
      } else {
        closeFd(fd);
        reject(osError(err, "connect", `Cannot connect to ${what}`));
      }
    }
  });
}
