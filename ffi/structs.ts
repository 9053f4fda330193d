/**
 * Struct layouts shared with the kernel, in one place: `epoll_event`,
 * `pollfd`, `fd_set`, `timeval`, `iovec` and the socket addresses.
 *
 * @module
 */

import { AF_INET, AF_INET6, AF_UNIX, FD_SETSIZE } from "./constants.ts";
import { sym } from "./libc.ts";

/**
 * Size of `struct epoll_event`: 12 bytes on x86_64, where the kernel declares
 * it `__attribute__((packed))`, and 16 on aarch64, where `data` is aligned.
 */
export const EPOLL_EVENT_SIZE: number = Deno.build.arch === "x86_64" ? 12 : 16;

/**
 * Stride of one `epoll_event` in a `Uint32Array` over the event array: the
 * event mask is at `[stride * i]`, the low 32 bits of `data` at
 * `[stride * i + 1]` and the high 32 bits at `[stride * i + 2]`.
 */
export const EPOLL_EVENT_STRIDE: number = EPOLL_EVENT_SIZE / 4;

/** Size of `struct pollfd` (`int fd; short events; short revents`). */
export const POLLFD_SIZE = 8;

/** Size of `fd_set`: FD_SETSIZE bits. */
export const FD_SET_SIZE: number = FD_SETSIZE / 8;

/** Size of `struct timeval` (two `long`s). */
export const TIMEVAL_SIZE = 16;

/** Size of `struct iovec` (`void *iov_base; size_t iov_len`). */
export const IOVEC_SIZE = 16;

/** Size of `struct msghdr` (LP64): name@0, namelen@8, iov@16, iovlen@24, control@32, controllen@40, flags@48. */
export const MSGHDR_SIZE = 56;

/** Size of `struct rlimit` (`rlim_t rlim_cur; rlim_t rlim_max`, two 64-bit words). */
export const RLIMIT_SIZE = 16;

/** `sizeof(struct timespec)` on 64-bit Linux: `tv_sec` and `tv_nsec`, 8 bytes each. */
export const TIMESPEC_SIZE = 16;

/** Size of `struct sockaddr_in`. */
export const SOCKADDR_IN_SIZE = 16;
/** Size of `struct sockaddr_in6`. */
export const SOCKADDR_IN6_SIZE = 28;
/** Size of `struct sockaddr_un`. */
export const SOCKADDR_UN_SIZE = 110;
/** Longest `sun_path` fdloop accepts for a path name (108 bytes, one kept for the NUL). */
export const UNIX_PATH_MAX = 107;
/** Longest abstract socket name (its leading NUL included): all 108 bytes of `sun_path`, no terminator. */
const UNIX_ABSTRACT_MAX = 108;
/** Size of `struct sockaddr_storage`. */
export const SOCKADDR_STORAGE_SIZE = 128;

/** A decoded socket address. */
export type SocketAddress =
  | { family: "IPv4" | "IPv6"; address: string; port: number }
  | { family: "unix"; path: string };

/** Parses a dotted-quad IPv4 address into 4 bytes, or returns null. */
export function parseIPv4(text: string): Uint8Array | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i];
    // No leading zeros: inet_aton() (and so getaddrinfo) reads "010" as octal 8 (CVE-2021-29921).
    if (!/^(?:0|[1-9]\d{0,2})$/.test(p)) return null;
    const v = Number(p);
    if (v > 255) return null;
    out[i] = v;
  }
  return out;
}

/** Parses a textual IPv6 address (RFC 4291 forms, with `::` and a trailing IPv4) into 16 bytes, or null. */
export function parseIPv6(text: string): Uint8Array | null {
  if (text.length === 0 || text.length > 45) return null;
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const groups = (s: string, last: boolean): number[] | null => {
    if (s === "") return [];
    const out: number[] = [];
    const parts = s.split(":");
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      if (last && i === parts.length - 1 && p.includes(".")) {
        const v4 = parseIPv4(p);
        if (!v4) return null;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return null;
        out.push(parseInt(p, 16));
      }
    }
    return out;
  };
  // A dotted IPv4 tail is allowed only at the very end of the address.
  const head = groups(halves[0], halves.length === 1);
  const tail = halves.length === 2 ? groups(halves[1], true) : [];
  if (!head || !tail) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const all = [...head, ...new Array(halves.length === 2 ? missing : 0).fill(0), ...tail];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = all[i] >> 8;
    out[2 * i + 1] = all[i] & 0xff;
  }
  return out;
}

/** Formats 16 bytes as an IPv6 address the way RFC 5952 asks (lower case, longest zero run as `::`). */
export function formatIPv6(b: Uint8Array): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[2 * i] << 8) | b[2 * i + 1]);
  // IPv4-mapped ::ffff:a.b.c.d
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  }
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(":");
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

/**
 * The `sin6_scope_id` of a zone: a decimal interface index or an interface
 * name (`lo`, `eth0`), or null when there is no such interface.
 */
function scopeId(zone: string): number | null {
  if (/^\d{1,10}$/.test(zone)) {
    const v = Number(zone);
    return v <= 0xffffffff ? v : null;
  }
  if (zone.length === 0 || zone.length > 15 || zone.includes("\0")) return null; // IFNAMSIZ is 16
  const index = sym.if_nametoindex(new TextEncoder().encode(`${zone}\0`));
  return index === 0 ? null : index;
}

/**
 * Encodes a numeric IP address and port, or a Unix socket path, as a
 * `struct sockaddr_*`.
 *
 * An IPv6 address may carry a zone (`fe80::1%eth0`, `fe80::1%2`): it becomes
 * `sin6_scope_id`, which a link-local address needs. A Unix path starting
 * with a NUL (`"\0name"`) is an abstract socket name (Linux): no file, and no
 * trailing NUL in the address, as every byte of the name counts.
 *
 * @throws {TypeError} if the host is not a numeric IPv4/IPv6 address, the zone names no interface, the port is out
 * of range or the path too long.
 */
export function encodeSockaddr(
  addr: { host: string; port: number } | { path: string },
): { buf: Uint8Array; len: number; family: number } {
  if ("path" in addr) {
    const bytes = new TextEncoder().encode(addr.path);
    if (bytes.length > 0 && bytes[0] === 0) {
      if (bytes.length > UNIX_ABSTRACT_MAX) {
        throw new TypeError(
          `Abstract Unix socket name must be at most ${UNIX_ABSTRACT_MAX} bytes with its leading NUL, got ${bytes.length}`,
        );
      }
      const buf = new Uint8Array(SOCKADDR_UN_SIZE);
      new DataView(buf.buffer).setUint16(0, AF_UNIX, true);
      buf.set(bytes, 2);
      return { buf, len: 2 + bytes.length, family: AF_UNIX };
    }
    if (bytes.length === 0 || bytes.length > UNIX_PATH_MAX) {
      throw new TypeError(
        `Unix socket path must be 1 to ${UNIX_PATH_MAX} bytes, got ${bytes.length}: ${JSON.stringify(addr.path)}`,
      );
    }
    if (bytes.includes(0)) throw new TypeError(`Unix socket path contains a NUL byte: ${JSON.stringify(addr.path)}`);
    const buf = new Uint8Array(SOCKADDR_UN_SIZE);
    new DataView(buf.buffer).setUint16(0, AF_UNIX, true);
    buf.set(bytes, 2);
    return { buf, len: 2 + bytes.length + 1, family: AF_UNIX };
  }
  const { host, port } = addr;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new TypeError(`Port must be an integer from 0 to 65535, got ${port}`);
  }
  const v4 = parseIPv4(host);
  if (v4) {
    const buf = new Uint8Array(SOCKADDR_IN_SIZE);
    const dv = new DataView(buf.buffer);
    dv.setUint16(0, AF_INET, true);
    dv.setUint16(2, port, false);
    buf.set(v4, 4);
    return { buf, len: SOCKADDR_IN_SIZE, family: AF_INET };
  }
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  const pct = bare.indexOf("%");
  const v6 = parseIPv6(pct < 0 ? bare : bare.slice(0, pct));
  if (v6) {
    const scope = pct < 0 ? 0 : scopeId(bare.slice(pct + 1));
    if (scope === null) {
      throw new TypeError(`Not a known IPv6 zone (interface name or index) in ${JSON.stringify(host)}`);
    }
    const buf = new Uint8Array(SOCKADDR_IN6_SIZE);
    const dv = new DataView(buf.buffer);
    dv.setUint16(0, AF_INET6, true);
    dv.setUint16(2, port, false);
    buf.set(v6, 8);
    dv.setUint32(24, scope, true); // sin6_scope_id, host order
    return { buf, len: SOCKADDR_IN6_SIZE, family: AF_INET6 };
  }
  throw new TypeError(`Not a numeric IPv4 or IPv6 address: ${JSON.stringify(host)}`);
}

/**
 * Decodes a `struct sockaddr_*` of `len` bytes, as the kernel reported it.
 *
 * `len` is clamped to the buffer (the kernel reports the full size of an
 * address it truncated). An IPv6 address with a `sin6_scope_id` reads
 * `fe80::1%2` (the interface index); an abstract Unix socket name keeps its
 * leading NUL; an unnamed Unix socket has the path `""`.
 *
 * @throws {TypeError} for a length too short for the family (such as the 0 that
 * `recvfrom` reports on a connected stream socket, leaving the buffer as it was)
 * or an unsupported family.
 */
export function decodeSockaddr(buf: Uint8Array, len: number): SocketAddress {
  const n = len < buf.byteLength ? len : buf.byteLength;
  if (!(n >= 2)) throw new TypeError(`A socket address of ${len} bytes has no address family`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const family = dv.getUint16(0, true);
  if (family === AF_INET) {
    if (n < 8) throw new TypeError(`An IPv4 socket address needs 8 bytes, got ${n}`);
    return { family: "IPv4", address: `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`, port: dv.getUint16(2, false) };
  }
  if (family === AF_INET6) {
    if (n < 24) throw new TypeError(`An IPv6 socket address needs 24 bytes, got ${n}`);
    const scope = n >= SOCKADDR_IN6_SIZE ? dv.getUint32(24, true) : 0;
    const address = formatIPv6(buf.subarray(8, 24));
    return { family: "IPv6", address: scope === 0 ? address : `${address}%${scope}`, port: dv.getUint16(2, false) };
  }
  if (family === AF_UNIX) {
    if (n > 2 && buf[2] === 0) {
      return { family: "unix", path: `\0${new TextDecoder().decode(buf.subarray(3, n))}` }; // abstract
    }
    let end = 2;
    while (end < n && buf[end] !== 0) end++;
    return { family: "unix", path: new TextDecoder().decode(buf.subarray(2, end)) };
  }
  throw new TypeError(`Unsupported address family ${family}`);
}
