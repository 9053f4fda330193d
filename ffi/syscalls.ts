/**
 * Checked wrappers over the libc symbols: the one place where `-1` becomes an
 * {@linkcode OSError}.
 *
 * Conventions, the same for every wrapper:
 * - `EINTR` is retried (PEP 475), except in the waits (`epoll_wait`, `poll`,
 *   `select`), which return {@linkcode INTERRUPTED} so the caller can
 *   recompute its timeout and notice signals.
 * - `EAGAIN`/`EWOULDBLOCK` is not an error: the I/O wrappers return
 *   {@linkcode WOULD_BLOCK} (`-1`).
 * - Any other failure throws an `OSError` naming the errno and the call.
 * - errno is read from {@linkcode errnoView} on the line after the call, before
 *   anything allocates.
 *
 * Why each wrapper spells out its own `do { … } while (n === RETRY)` loop
 * instead of sharing one `retryOnEintr(() => sym.read(…))`: the shared form
 * needs a closure per call, and these wrappers run once per event on the hot
 * path, where a closure is an allocation and a call V8 may not inline. What
 * is shared is the classification of the result (`ioResult()`); the
 * three-line loop is repeated on purpose.
 *
 * The `nonblocking: true` symbols (the `*_nb` waits) run on Deno's blocking
 * thread pool, so their errno is lost on that thread: their wrappers
 * ({@linkcode epollWaitAsync}, {@linkcode pollAsync}, {@linkcode selectAsync})
 * report any failure as {@linkcode INTERRUPTED}, and the caller's next
 * synchronous wait, which can read errno, raises a real error if one persists.
 *
 * @module
 */

import { errnoView, sym } from "./libc.ts";
import { Errno, OSError } from "./errno.ts";
import {
  CLOCK_MONOTONIC,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  EPOLL_CLOEXEC,
  EPOLL_CTL_ADD,
  EPOLL_CTL_DEL,
  F_DUPFD_CLOEXEC,
  F_GETFD,
  F_GETFL,
  F_SETFL,
  FD_SETSIZE,
  IPPROTO_IPV6,
  IPV6_V6ONLY,
  O_CLOEXEC,
  O_NONBLOCK,
  SO_ERROR,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOL_SOCKET,
} from "./constants.ts";
import {
  decodeSockaddr,
  EPOLL_EVENT_SIZE,
  IOVEC_SIZE,
  MSGHDR_SIZE,
  POLLFD_SIZE,
  RLIMIT_SIZE,
  SOCKADDR_STORAGE_SIZE,
  type SocketAddress,
  TIMESPEC_SIZE,
  TIMEVAL_SIZE,
} from "./structs.ts";

const { EINTR, EAGAIN, EINPROGRESS, ECONNABORTED } = Errno;

/**
 * Errors `accept4` passes on from a connection that failed while it waited to
 * be accepted (accept(2), "Error handling": Linux reports the new socket's
 * pending network error, and TCP/IP's are these): that connection is gone,
 * the next one may be fine, so the call is made again, as for `ECONNABORTED`.
 */
const ACCEPT_RETRY = new Set<number>([
  EINTR,
  ECONNABORTED,
  Errno.ENETDOWN,
  Errno.EPROTO,
  Errno.ENOPROTOOPT,
  Errno.EHOSTDOWN,
  Errno.ENONET,
  Errno.EHOSTUNREACH,
  Errno.EOPNOTSUPP,
  Errno.ENETUNREACH,
]);

/** Returned by the I/O wrappers when the call would block (`EAGAIN`). Distinct from {@linkcode INTERRUPTED}. */
export const WOULD_BLOCK = -1;

/** Largest length passed to a `u32` size parameter: the `i32` result must hold it. */
export const MAX_IO = 0x7fffffff;

function strerror(errno: number): string {
  const p = sym.strerror(errno);
  return p ? Deno.UnsafePointerView.getCString(p) : "";
}

/**
 * Builds the {@linkcode OSError} for an errno value already read.
 *
 * @param errno The errno value, read straight after the failing call.
 * @param syscall The name of the libc call.
 * @param context What was being done, such as `"Cannot register fd 7"`.
 */
export function osError(errno: number, syscall: string, context?: string): OSError {
  return new OSError(errno, syscall, context, strerror(errno));
}

/**
 * Returns `res` when it is not negative; otherwise reads errno at once and
 * throws an `OSError` for `syscall`.
 *
 * Pass only a constant string (no template literal): anything that allocates
 * between the call and this function risks clobbering errno.
 *
 * @example
 * ```ts
 * import { check, sym } from "@fdloop/fdloop/ffi";
 * const fd = check(sym.eventfd(0, 0), "eventfd");
 * check(sym.close(fd), "close");
 * ```
 */
export function check(res: number, syscall: string): number {
  if (res < 0) throw osError(errnoView[0], syscall);
  return res;
}

function guardLength(len: number, size: number): void {
  if (len > MAX_IO || len < 0) throw new RangeError(`I/O length must be 0 to ${MAX_IO} bytes, got ${len}`);
  if (len > size) throw new RangeError(`I/O length ${len} exceeds the buffer's ${size} bytes`);
}

/** Throws unless `count` entries of `size` bytes fit in `buf` (`what` names the array). */
function guardCount(count: number, size: number, buf: Uint8Array | null, what: string): void {
  const room = buf === null ? 0 : buf.byteLength;
  if ((count >>> 0) !== count || count * size > room || count > 0x7fffffff) {
    throw new RangeError(`${what} count must be an integer from 0 to ${Math.floor(room / size)}, got ${count}`);
  }
}

/** Throws unless `len` bytes of a socket address fit in `addr`. */
function guardAddrLen(len: number, addr: Uint8Array): void {
  if ((len >>> 0) !== len || len > addr.byteLength) {
    throw new RangeError(`Socket address length must be an integer from 0 to ${addr.byteLength}, got ${len}`);
  }
}

// ---------------------------------------------------------------- epoll

/** `epoll_create1(EPOLL_CLOEXEC)`. */
export function epollCreate(): number {
  const fd = sym.epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) throw osError(errnoView[0], "epoll_create1", "Cannot create an epoll instance");
  return fd;
}

const CTL_VERB = ["", "register", "unregister", "modify"];

/** `epoll_ctl(ep, op, fd, event)`; throws e.g. "Cannot register fd 7: EEXIST (epoll_ctl)". */
export function epollCtl(ep: number, op: number, fd: number, event: Uint8Array): void {
  if (event.byteLength < EPOLL_EVENT_SIZE) {
    throw new RangeError(`An epoll_event needs ${EPOLL_EVENT_SIZE} bytes, got a buffer of ${event.byteLength}`);
  }
  if (sym.epoll_ctl(ep, op, fd, event) < 0) {
    const e = errnoView[0];
    throw osError(e, "epoll_ctl", `Cannot ${CTL_VERB[op] ?? `op ${op}`} fd ${fd}`);
  }
}

/**
 * Returned by the waits (`epoll_wait`, `poll`, `select`) when a signal
 * interrupted them (`EINTR`). Distinct from {@linkcode WOULD_BLOCK}, so a
 * result can never be misread.
 */
export const INTERRUPTED = -2;

/** `epoll_wait`: the number of events, or {@linkcode INTERRUPTED}. */
export function epollWait(ep: number, events: Deno.PointerValue, max: number, timeoutMs: number): number {
  const n = sym.epoll_wait(ep, events, max, timeoutMs);
  if (n >= 0) return n;
  const e = errnoView[0];
  if (e === EINTR) return INTERRUPTED;
  throw osError(e, "epoll_wait", `Cannot wait on epoll fd ${ep}`);
}

/** `poll(fds, nfds, timeout)`: the number of ready entries, or {@linkcode INTERRUPTED}. */
export function poll(fds: Uint8Array, nfds: number, timeoutMs: number): number {
  if ((nfds >>> 0) !== nfds || nfds * POLLFD_SIZE > fds.byteLength) guardCount(nfds, POLLFD_SIZE, fds, "pollfd");
  const n = sym.poll(fds, nfds, timeoutMs);
  if (n >= 0) return n;
  const e = errnoView[0];
  if (e === EINTR) return INTERRUPTED;
  throw osError(e, "poll", `Cannot poll ${nfds} fds`);
}

/**
 * Throws unless `nfds` is at most FD_SETSIZE and each set holds the 64-bit
 * words the kernel reads and writes for it (`ceil(nfds / 64) * 8` bytes), and
 * a timeout is a whole `struct timeval`. Allocation-free when they are.
 */
function guardSelect(
  nfds: number,
  readFds: Uint8Array | null,
  writeFds: Uint8Array | null,
  timeout: Uint8Array | null,
): void {
  if ((nfds >>> 0) !== nfds || nfds > FD_SETSIZE) {
    throw new RangeError(`select() nfds must be an integer from 0 to FD_SETSIZE (${FD_SETSIZE}), got ${nfds}`);
  }
  const need = ((nfds + 63) >>> 6) << 3;
  if ((readFds !== null && readFds.byteLength < need) || (writeFds !== null && writeFds.byteLength < need)) {
    throw new RangeError(`select() with nfds ${nfds} needs fd_set buffers of at least ${need} bytes`);
  }
  if (timeout !== null && timeout.byteLength < TIMEVAL_SIZE) {
    throw new RangeError(`A struct timeval needs ${TIMEVAL_SIZE} bytes, got a buffer of ${timeout.byteLength}`);
  }
}

/** `select(nfds, r, w, null, timeout)`: the number of ready fds, or {@linkcode INTERRUPTED}. */
export function select(
  nfds: number,
  readFds: Uint8Array,
  writeFds: Uint8Array,
  timeout: Uint8Array | null,
): number {
  guardSelect(nfds, readFds, writeFds, timeout);
  const n = sym.select(nfds, readFds, writeFds, null, timeout);
  if (n >= 0) return n;
  const e = errnoView[0];
  if (e === EINTR) return INTERRUPTED;
  throw osError(e, "select", `Cannot select on ${nfds} fds`);
}

/**
 * `epoll_wait` on Deno's blocking thread pool (`nonblocking: true` FFI), so
 * the JS thread stays free: the number of events, or {@linkcode INTERRUPTED}
 * for any failure (errno is lost on the worker thread; see the module doc).
 * `events` must not be touched until the promise settles.
 */
export async function epollWaitAsync(
  ep: number,
  events: Deno.PointerValue,
  max: number,
  timeoutMs: number,
): Promise<number> {
  const n = await sym.epoll_wait_nb(ep, events, max, timeoutMs);
  return n < 0 ? INTERRUPTED : n;
}

/**
 * `poll` on Deno's blocking thread pool: the number of ready entries, or
 * {@linkcode INTERRUPTED} for any failure. `fds` must not be touched until the promise settles.
 */
export async function pollAsync(fds: Uint8Array, nfds: number, timeoutMs: number): Promise<number> {
  guardCount(nfds, POLLFD_SIZE, fds, "pollfd");
  const n = await sym.poll_nb(fds, nfds, timeoutMs);
  return n < 0 ? INTERRUPTED : n;
}

/**
 * `select(nfds, r, w, null, timeout)` on Deno's blocking thread pool: the
 * number of ready fds, or {@linkcode INTERRUPTED} for any failure. The sets
 * must not be touched until the promise settles.
 */
export async function selectAsync(
  nfds: number,
  readFds: Uint8Array,
  writeFds: Uint8Array,
  timeout: Uint8Array | null,
): Promise<number> {
  guardSelect(nfds, readFds, writeFds, timeout);
  const n = await sym.select_nb(nfds, readFds, writeFds, null, timeout);
  return n < 0 ? INTERRUPTED : n;
}

export { EPOLL_CTL_ADD, EPOLL_CTL_DEL };

// ---------------------------------------------------------------- descriptors

/** What {@linkcode ioResult} returns for `EINTR`: make the call again. Never leaves this module. */
const RETRY = -3;

/**
 * Classifies the result of an I/O call: `n ≥ 0` as is, {@linkcode WOULD_BLOCK}
 * for `EAGAIN`, `RETRY` for `EINTR`, and an {@linkcode OSError} thrown for the
 * rest ("Cannot <verb> fd N"). Pass the call itself as `n`, with constant
 * strings, so errno is read before anything allocates.
 */
function ioResult(n: number, syscall: string, verb: string, fd: number): number {
  if (n >= 0) return n;
  const e = errnoView[0];
  if (e === EINTR) return RETRY;
  if (e === EAGAIN) return WOULD_BLOCK;
  throw osError(e, syscall, `Cannot ${verb} fd ${fd}`);
}

/** `close(fd)`. Never retried: on Linux the fd is gone even after EINTR. */
export function close(fd: number): void {
  if (sym.close(fd) < 0) {
    const e = errnoView[0];
    if (e === EINTR) return;
    throw osError(e, "close", `Cannot close fd ${fd}`);
  }
}

/** `read(fd, buf, len)`: bytes read, 0 at end of file, or {@linkcode WOULD_BLOCK}. */
export function read(fd: number, buf: Uint8Array, len: number = buf.byteLength): number {
  if (len > MAX_IO || len > buf.byteLength) guardLength(len, buf.byteLength);
  let n: number;
  do {
    n = ioResult(sym.read(fd, buf, len), "read", "read", fd);
  } while (n === RETRY);
  return n;
}

/** `write(fd, buf, len)`: bytes written or {@linkcode WOULD_BLOCK}. */
export function write(fd: number, buf: Uint8Array, len: number = buf.byteLength): number {
  if (len > MAX_IO || len > buf.byteLength) guardLength(len, buf.byteLength);
  let n: number;
  do {
    n = ioResult(sym.write(fd, buf, len), "write", "write", fd);
  } while (n === RETRY);
  return n;
}

/** `recv(fd, buf, len, flags)`: bytes read, 0 at end of stream, or {@linkcode WOULD_BLOCK}. */
export function recv(fd: number, buf: Uint8Array, len: number = buf.byteLength, flags = 0): number {
  if (len > MAX_IO || len > buf.byteLength) guardLength(len, buf.byteLength);
  let n: number;
  do {
    n = ioResult(sym.recv(fd, buf, len, flags), "recv", "receive on", fd);
  } while (n === RETRY);
  return n;
}

/** `send(fd, buf, len, flags)`: bytes sent or {@linkcode WOULD_BLOCK}. Pass `MSG_NOSIGNAL` for sockets. */
export function send(fd: number, buf: Uint8Array, len: number = buf.byteLength, flags = 0): number {
  if (len > MAX_IO || len > buf.byteLength) guardLength(len, buf.byteLength);
  let n: number;
  do {
    n = ioResult(sym.send(fd, buf, len, flags), "send", "send on", fd);
  } while (n === RETRY);
  return n;
}

/** `writev(fd, iov, count)` over a prepared iovec array: bytes written or {@linkcode WOULD_BLOCK}. */
export function writev(fd: number, iov: Uint8Array, count: number): number {
  if ((count >>> 0) !== count || count * IOVEC_SIZE > iov.byteLength) guardCount(count, IOVEC_SIZE, iov, "iovec");
  let n: number;
  do {
    n = ioResult(sym.writev(fd, iov, count), "writev", "write", fd);
  } while (n === RETRY);
  return n;
}

/** `readv(fd, iov, count)` over a prepared iovec array: bytes read, 0 at end, or {@linkcode WOULD_BLOCK}. */
export function readv(fd: number, iov: Uint8Array, count: number): number {
  if ((count >>> 0) !== count || count * IOVEC_SIZE > iov.byteLength) guardCount(count, IOVEC_SIZE, iov, "iovec");
  let n: number;
  do {
    n = ioResult(sym.readv(fd, iov, count), "readv", "read", fd);
  } while (n === RETRY);
  return n;
}

/**
 * Fills `iov` (an iovec array of `count` entries) with the address and
 * length of `chunks[start .. start+count)`, for {@linkcode writev} /
 * {@linkcode readv}. The chunks must stay alive and unmoved until the call returns.
 */
export function fillIovec(
  iov: Uint8Array,
  chunks: readonly Uint8Array[],
  count: number = chunks.length,
  start = 0,
): void {
  guardCount(count, IOVEC_SIZE, iov, "iovec");
  if ((start >>> 0) !== start || start + count > chunks.length) {
    throw new RangeError(`Cannot take ${count} chunks from index ${start} of ${chunks.length}`);
  }
  const words = new BigUint64Array(iov.buffer, iov.byteOffset, count * 2);
  for (let i = 0; i < count; i++) {
    const c = chunks[start + i];
    const p = Deno.UnsafePointer.value(Deno.UnsafePointer.of(c as Uint8Array<ArrayBuffer>));
    words[2 * i] = BigInt(p);
    words[2 * i + 1] = BigInt(c.byteLength);
  }
}

/** Most chunks {@linkcode sendChunks} gathers into one call. */
export const MAX_GATHER = 64;
/** Leading chunks adding up to at most this many bytes are copied into one buffer rather than gathered. */
export const GATHER_COPY_LIMIT = 64 * 1024;
const gatherCopy = new Uint8Array(GATHER_COPY_LIMIT);
const gatherIov = new Uint8Array(MAX_GATHER * IOVEC_SIZE);
const gatherMsg = new Uint8Array(MSGHDR_SIZE);
const gatherMsgWords = new BigUint64Array(gatherMsg.buffer);
gatherMsgWords[2] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(gatherIov)));

/**
 * Sends `chunks[start .. start+count)` (at most {@linkcode MAX_GATHER}) in
 * one call, and may send only a leading part of them: the result says how
 * many bytes went.
 *
 * Small chunks are copied end to end into a preallocated buffer and sent
 * with one `send`: a copy costs nanoseconds where taking each chunk's
 * address for an iovec costs a fraction of a microsecond. Large ones are
 * gathered with `sendmsg` (a `writev` that takes flags, so `MSG_NOSIGNAL`
 * works).
 *
 * @returns Bytes sent, or {@linkcode WOULD_BLOCK}.
 */
export function sendChunks(
  fd: number,
  chunks: readonly Uint8Array[],
  start: number,
  count: number,
  flags: number,
): number {
  if (count > MAX_GATHER) count = MAX_GATHER;
  let copied = 0, small = 0;
  while (small < count && copied + chunks[start + small].byteLength <= GATHER_COPY_LIMIT) {
    copied += chunks[start + small].byteLength;
    small++;
  }
  if (small >= 2) {
    for (let i = 0, at = 0; i < small; i++) {
      const c = chunks[start + i];
      gatherCopy.set(c, at);
      at += c.byteLength;
    }
    return send(fd, gatherCopy, copied, flags);
  }
  fillIovec(gatherIov, chunks, count, start);
  gatherMsgWords[3] = BigInt(count);
  let n: number;
  do {
    n = ioResult(sym.sendmsg(fd, gatherMsg, flags), "sendmsg", "send on", fd);
  } while (n === RETRY);
  return n;
}

/**
 * Sets or clears `O_NONBLOCK` on `fd` (`fcntl(fd, F_SETFL, …)`), and returns
 * whether it was set before, so that a caller borrowing a shared descriptor
 * (stdin, whose flag the parent shell sees too) can put it back.
 *
 * @returns Whether `O_NONBLOCK` was set before the call.
 * @throws {OSError} `EBADF` (from `fcntl`) when `fd` is not open.
 */
export function setNonBlocking(fd: number, on = true): boolean {
  const flags = sym.fcntl(fd, F_GETFL, 0);
  if (flags < 0) throw osError(errnoView[0], "fcntl", `Cannot get flags of fd ${fd}`);
  const next = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
  if (next !== flags && sym.fcntl(fd, F_SETFL, next) < 0) {
    throw osError(errnoView[0], "fcntl", `Cannot set flags of fd ${fd}`);
  }
  return (flags & O_NONBLOCK) !== 0;
}

/**
 * Throws `EBADF` (as an {@linkcode OSError} from `fcntl`, with `context` in
 * the message) unless `fd` is an open descriptor. A cheap probe:
 * `fcntl(fd, F_GETFD)`.
 */
export function assertOpenFd(fd: number, context: string): void {
  if (sym.fcntl(fd, F_GETFD, 0) < 0) {
    const e = errnoView[0];
    throw osError(e, "fcntl", context);
  }
}

/** Duplicates `fd` onto the lowest free descriptor ≥ `min` (close-on-exec). Handy for high fds in tests. */
export function dupAtLeast(fd: number, min: number): number {
  const res = sym.fcntl(fd, F_DUPFD_CLOEXEC, min);
  if (res < 0) throw osError(errnoView[0], "fcntl", `Cannot duplicate fd ${fd}`);
  return res;
}

/** `eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)`. */
export function eventfd(): number {
  const fd = sym.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) throw osError(errnoView[0], "eventfd", "Cannot create an eventfd");
  return fd;
}

/** `pipe2(fds, O_CLOEXEC | O_NONBLOCK?)`: `[readEnd, writeEnd]`. */
export function pipe(nonBlocking = true): [number, number] {
  const fds = new Int32Array(2);
  if (sym.pipe2(new Uint8Array(fds.buffer), O_CLOEXEC | (nonBlocking ? O_NONBLOCK : 0)) < 0) {
    throw osError(errnoView[0], "pipe2", "Cannot create a pipe");
  }
  return [fds[0], fds[1]];
}

/** `socketpair(domain, type | SOCK_CLOEXEC | SOCK_NONBLOCK?, 0)`. */
export function socketpair(domain: number, type: number, nonBlocking = true): [number, number] {
  const fds = new Int32Array(2);
  const flags = SOCK_CLOEXEC | (nonBlocking ? SOCK_NONBLOCK : 0);
  if (sym.socketpair(domain, type | flags, 0, new Uint8Array(fds.buffer)) < 0) {
    throw osError(errnoView[0], "socketpair", "Cannot create a socket pair");
  }
  return [fds[0], fds[1]];
}

// ---------------------------------------------------------------- sockets

/** `socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol)`. */
export function socket(domain: number, type: number, protocol = 0): number {
  const fd = sym.socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (fd < 0) throw osError(errnoView[0], "socket", "Cannot create a socket");
  return fd;
}

/** `bind(fd, addr, len)`; `what` names the address in the message. */
export function bind(fd: number, addr: Uint8Array, len: number, what: string): void {
  guardAddrLen(len, addr);
  if (sym.bind(fd, addr, len) < 0) throw osError(errnoView[0], "bind", `Cannot bind ${what}`);
}

/** `listen(fd, backlog)`. */
export function listen(fd: number, backlog: number): void {
  if (sym.listen(fd, backlog) < 0) throw osError(errnoView[0], "listen", `Cannot listen on fd ${fd}`);
}

/**
 * `accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC)`: the new fd, or
 * {@linkcode WOULD_BLOCK}. `ECONNABORTED` (a peer gone before accept) and the
 * network errors Linux passes on from such a connection (`EPROTO`,
 * `ENETUNREACH`, …) are skipped: the call is made again.
 * `EMFILE`/`ENFILE` throw: the caller must shed or pause (see net/).
 */
export function accept(fd: number, addr: Uint8Array | null = null, lenBuf: Uint8Array | null = null): number {
  if (addr !== null) {
    // The kernel writes up to *lenBuf bytes of address into addr, and the length back into lenBuf.
    const room = lenBuf === null || lenBuf.byteLength < 4
      ? -1
      : (lenBuf[0] | (lenBuf[1] << 8) | (lenBuf[2] << 16) | (lenBuf[3] << 24)) >>> 0;
    if (room < 0 || room > addr.byteLength) {
      throw new RangeError(
        `accept() needs a 4-byte length buffer holding at most the address buffer's ${addr.byteLength} bytes`,
      );
    }
  }
  for (;;) {
    const res = sym.accept4(fd, addr, lenBuf, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (res >= 0) return res;
    const e = errnoView[0];
    if (e === EAGAIN) return WOULD_BLOCK;
    if (ACCEPT_RETRY.has(e)) continue;
    throw osError(e, "accept4", `Cannot accept on fd ${fd}`);
  }
}

/**
 * `connect(fd, addr, len)` on a non-blocking socket: `true` when connected at
 * once, `false` when in progress (`EINPROGRESS`; wait for writability, then
 * read `SO_ERROR`).
 */
export function connect(fd: number, addr: Uint8Array, len: number, what: string): boolean {
  guardAddrLen(len, addr);
  if (sym.connect(fd, addr, len) === 0) return true;
  const e = errnoView[0];
  if (e === EINPROGRESS || e === EINTR) return false;
  throw osError(e, "connect", `Cannot connect to ${what}`);
}

/** `shutdown(fd, how)`. */
export function shutdown(fd: number, how: number): void {
  if (sym.shutdown(fd, how) < 0) throw osError(errnoView[0], "shutdown", `Cannot shut down fd ${fd}`);
}

const intBuf = new Int32Array(2);
const intBytes = new Uint8Array(intBuf.buffer);
const lenBuf = new Uint32Array(1);
const lenBytes = new Uint8Array(lenBuf.buffer);

/** `setsockopt(fd, level, name, &int, 4)`. */
export function setSockOptInt(fd: number, level: number, name: number, value: number): void {
  intBuf[0] = value;
  if (sym.setsockopt(fd, level, name, intBytes, 4) < 0) {
    throw osError(errnoView[0], "setsockopt", `Cannot set option ${level}/${name} on fd ${fd}`);
  }
}

/** `setsockopt(fd, level, name, buf, len)` for struct options such as `SO_LINGER`. */
export function setSockOpt(fd: number, level: number, name: number, value: Uint8Array): void {
  if (sym.setsockopt(fd, level, name, value, value.byteLength) < 0) {
    throw osError(errnoView[0], "setsockopt", `Cannot set option ${level}/${name} on fd ${fd}`);
  }
}

/** `getsockopt(fd, level, name, &int, &len)`. */
export function getSockOptInt(fd: number, level: number, name: number): number {
  lenBuf[0] = 4;
  if (sym.getsockopt(fd, level, name, intBytes, lenBytes) < 0) {
    throw osError(errnoView[0], "getsockopt", `Cannot get option ${level}/${name} of fd ${fd}`);
  }
  return intBuf[0];
}

/** The pending socket error (`SO_ERROR`), cleared by reading it; 0 when none. */
export function socketError(fd: number): number {
  return getSockOptInt(fd, SOL_SOCKET, SO_ERROR);
}

/** Sets `IPV6_V6ONLY`. */
export function setV6Only(fd: number, on: boolean): void {
  setSockOptInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, on ? 1 : 0);
}

const addrBuf = new Uint8Array(SOCKADDR_STORAGE_SIZE);

function nameOf(fd: number, peer: boolean): SocketAddress {
  lenBuf[0] = SOCKADDR_STORAGE_SIZE;
  const res = peer ? sym.getpeername(fd, addrBuf, lenBytes) : sym.getsockname(fd, addrBuf, lenBytes);
  if (res < 0) {
    const e = errnoView[0];
    throw osError(e, peer ? "getpeername" : "getsockname", `Cannot get the address of fd ${fd}`);
  }
  return decodeSockaddr(addrBuf, lenBuf[0]);
}

/** `getsockname(fd)`, decoded. */
export function getSockName(fd: number): SocketAddress {
  return nameOf(fd, false);
}

/** `getpeername(fd)`, decoded. */
export function getPeerName(fd: number): SocketAddress {
  return nameOf(fd, true);
}

/**
 * `unlink(path)`; a missing file is not an error. An abstract Unix socket
 * name (a leading NUL) has no file: nothing to do.
 *
 * @throws {TypeError} for a path with a NUL byte elsewhere, which C would cut short there.
 */
export function unlink(path: string): void {
  if (path.startsWith("\0")) return;
  if (path.includes("\0")) throw new TypeError(`Cannot remove ${JSON.stringify(path)}: the path contains a NUL byte`);
  const bytes = new TextEncoder().encode(path + "\0");
  if (sym.unlink(bytes) < 0) {
    const e = errnoView[0];
    if (e === Errno.ENOENT) return;
    throw osError(e, "unlink", `Cannot remove ${path}`);
  }
}

/**
 * `recvfrom(fd, buf, len, 0, addr, &addrlen)`: bytes received or
 * {@linkcode WOULD_BLOCK}; the sender's address is left in `addr` with its
 * length in `addrLen[0]`.
 */
export function recvFrom(fd: number, buf: Uint8Array, addr: Uint8Array, addrLen: Uint32Array): number {
  if (buf.byteLength > MAX_IO) guardLength(buf.byteLength, buf.byteLength);
  let n: number;
  do {
    lenBuf[0] = addr.byteLength;
    n = ioResult(sym.recvfrom(fd, buf, buf.byteLength, 0, addr, lenBytes), "recvfrom", "receive on", fd);
  } while (n === RETRY);
  addrLen[0] = lenBuf[0];
  return n;
}

/** `sendto(fd, buf, len, flags, addr, addrlen)`: bytes sent or {@linkcode WOULD_BLOCK}. */
export function sendTo(fd: number, buf: Uint8Array, addr: Uint8Array, addrLen: number, flags = 0): number {
  if (buf.byteLength > MAX_IO) guardLength(buf.byteLength, buf.byteLength);
  if ((addrLen >>> 0) !== addrLen || addrLen > addr.byteLength) guardAddrLen(addrLen, addr);
  let n: number;
  do {
    n = ioResult(sym.sendto(fd, buf, buf.byteLength, flags, addr, addrLen), "sendto", "send on", fd);
  } while (n === RETRY);
  return n;
}

// ---------------------------------------------------------------- resource limits

/** A resource limit: soft (enforced) and hard (the ceiling for the soft one); `Infinity` is `RLIM_INFINITY`. */
export interface ResourceLimit {
  /** `rlim_cur`: the limit the kernel enforces. */
  soft: number;
  /** `rlim_max`: how high an unprivileged process may raise `soft`. */
  hard: number;
}

// struct rlimit { rlim_t rlim_cur; rlim_t rlim_max; }: two u64 words. RLIM_INFINITY is all ones.
const rlimitWords = new BigUint64Array(RLIMIT_SIZE / 8);
const rlimitBytes = new Uint8Array(rlimitWords.buffer);
const RLIM_INFINITY = 0xffff_ffff_ffff_ffffn;

function fromRlim(v: bigint): number {
  return v === RLIM_INFINITY ? Infinity : Number(v);
}

function toRlim(v: number, what: string): bigint {
  if (v === Infinity) return RLIM_INFINITY;
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new RangeError(`${what} must be a non-negative integer or Infinity, got ${v}`);
  }
  return BigInt(v);
}

/**
 * `getrlimit(resource)`: the soft and hard limits, e.g. of `RLIMIT_NOFILE`.
 *
 * @param resource An `RLIMIT_*` constant.
 * @returns The limits; `Infinity` stands for `RLIM_INFINITY`.
 * @throws {OSError} EINVAL for an unknown resource.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { getRlimit, RLIMIT_NOFILE } from "@fdloop/fdloop/ffi";
 * const { soft, hard } = getRlimit(RLIMIT_NOFILE);
 * assert.ok(soft <= hard);
 * ```
 */
export function getRlimit(resource: number): ResourceLimit {
  if (sym.getrlimit(resource, rlimitBytes) < 0) {
    throw osError(errnoView[0], "getrlimit", `Cannot get resource limit ${resource}`);
  }
  return { soft: fromRlim(rlimitWords[0]), hard: fromRlim(rlimitWords[1]) };
}

/**
 * `setrlimit(resource, {soft, hard})`. An unprivileged process may move
 * `soft` anywhere up to `hard` and may lower `hard`, never raise it.
 *
 * @param resource An `RLIMIT_*` constant.
 * @param limit The new limits; `Infinity` stands for `RLIM_INFINITY`.
 * @throws {OSError} EPERM when raising `hard` without privilege, EINVAL when `soft > hard`.
 * @throws {RangeError} for a negative or fractional limit.
 * @example
 * ```ts
 * import { getRlimit, RLIMIT_NOFILE, setRlimit } from "@fdloop/fdloop/ffi";
 * const limit = getRlimit(RLIMIT_NOFILE);
 * setRlimit(RLIMIT_NOFILE, { soft: limit.hard, hard: limit.hard }); // as many fds as allowed
 * setRlimit(RLIMIT_NOFILE, limit); // and back
 * ```
 */
export function setRlimit(resource: number, limit: ResourceLimit): void {
  rlimitWords[0] = toRlim(limit.soft, "The soft limit");
  rlimitWords[1] = toRlim(limit.hard, "The hard limit");
  if (sym.setrlimit(resource, rlimitBytes) < 0) {
    const e = errnoView[0];
    throw osError(e, "setrlimit", `Cannot set resource limit ${resource} to soft ${limit.soft}, hard ${limit.hard}`);
  }
}

// ---------------------------------------------------------------- clock

// struct timespec { time_t tv_sec; long tv_nsec; }: read as 32-bit words (little-endian), so no BigInt.
const timespecWords = new Uint32Array(TIMESPEC_SIZE / 4);
const timespecBytes = new Uint8Array(timespecWords.buffer);

/**
 * `clock_gettime(CLOCK_MONOTONIC)` in milliseconds: the clock behind
 * `performance.now()` (Deno reads `CLOCK_MONOTONIC` too), from a different
 * origin (the boot), at less than half the cost of `performance.now()`
 * here (44 vs 101 ns: one fast FFI call into the vDSO against an op). The
 * reactor's default clock is this, shifted to `performance.now()`'s origin.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { monotonicMs } from "@fdloop/fdloop/ffi";
 * const a = monotonicMs();
 * const b = monotonicMs();
 * assert.ok(b >= a);
 * ```
 */
export function monotonicMs(): number {
  if (sym.clock_gettime(CLOCK_MONOTONIC, timespecBytes) < 0) {
    throw osError(errnoView[0], "clock_gettime", "Cannot read CLOCK_MONOTONIC");
  }
  const w = timespecWords;
  return (w[0] + w[1] * 0x1_0000_0000) * 1000 + w[2] / 1e6;
}
