/**
 * Helpers shared by the test files (and the benchmarks): fd leak checks,
 * a scope that closes fds even when an assertion fails, and loopback TCP
 * sockets made straight through the ffi wrappers.
 *
 * Deno's resource sanitizer cannot see descriptors opened through FFI, so the
 * tests count the entries of `/proc/self/fd` instead (libuv's
 * `MAKE_VALGRIND_HAPPY` in spirit), or probe fd numbers with `fcntl` when Deno
 * refuses `/proc/self` (it does without `--allow-all`): wrap each test or step
 * in {@linkcode assertNoFdLeak}.
 *
 * The count is process-wide: it is only meaningful when one test runs at a
 * time, so do not run these tests with `deno test --parallel` (test modules
 * then share the process and see each other's fds).
 *
 * @module
 */

import { AssertionError } from "node:assert/strict";
import {
  accept,
  AF_UNIX,
  close,
  connect,
  dupAtLeast,
  encodeSockaddr,
  F_GETFD,
  pipe,
  poll,
  POLLFD_SIZE,
  POLLIN,
  POLLOUT,
  SOCK_STREAM,
  socket,
  socketError,
  socketpair,
  sym,
} from "../ffi/mod.ts";

export { BACKENDS } from "../reactor/default.ts";
import { endpoint } from "../net/address.ts";
import { openBoundSocket } from "../net/socket.ts";

/** The class name of each backend, for test names such as "`EpollSelector` ...". */
export const SELECTOR_CLASS = { epoll: "EpollSelector", poll: "PollSelector", select: "SelectSelector" } as const;

// ---------------------------------------------------------------- fd accounting

/** Highest fd number + 1 that the fallback probe looks at. */
const PROBE_LIMIT = 65536;

/**
 * Whether `/proc/self/fd` can be listed. Deno grants it only with `--allow-all`
 * (it guards `/proc/self` as a whole); with narrower permissions the helpers
 * below probe each fd number with `fcntl(fd, F_GETFD)` instead.
 */
function canListProc(): boolean {
  try {
    Deno.readDirSync("/proc/self/fd");
    return true;
  } catch {
    return false;
  }
}

const PROC_FD = canListProc();

/**
 * The open descriptors of this process, fd → what it points at (`readlink`).
 *
 * Reads `/proc/self/fd` when Deno allows it (`-A`); otherwise probes fd numbers
 * below 65536 with `fcntl(F_GETFD)` and leaves the targets empty. Either way the
 * count is consistent from one call to the next, which is what the leak check needs.
 */
export function openFds(): Map<number, string> {
  const out = new Map<number, string>();
  if (PROC_FD) {
    for (const entry of Deno.readDirSync("/proc/self/fd")) {
      let target = "?";
      try {
        target = Deno.readLinkSync(`/proc/self/fd/${entry.name}`);
      } catch {
        // The directory handle used for the listing itself is gone by now.
      }
      out.set(Number(entry.name), target);
    }
  } else {
    for (let fd = 0; fd < PROBE_LIMIT; fd++) if (sym.fcntl(fd, F_GETFD, 0) >= 0) out.set(fd, "");
  }
  return out;
}

/** The number of open descriptors of this process: entries of `/proc/self/fd` (see {@linkcode openFds}). */
export function openFdCount(): number {
  if (!PROC_FD) return openFds().size;
  let n = 0;
  for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
  return n;
}

/**
 * Runs `fn` and fails if the process has a different number of open fds
 * afterwards. The message lists the fds that appeared or disappeared.
 *
 * @param fn The test body; may be async.
 * @returns What `fn` returned.
 * @throws {AssertionError} when the fd count changed (after `fn` itself succeeded).
 * @example
 * ```ts ignore
 * Deno.test("pipe() and close()", () => assertNoFdLeak(() => { const [r, w] = pipe(); close(r); close(w); }));
 * ```
 */
export async function assertNoFdLeak<R>(fn: () => R | Promise<R>): Promise<R> {
  const before = openFds();
  const result = await fn();
  const after = openFds();
  if (after.size !== before.size) {
    const added = [...after].filter(([fd]) => !before.has(fd)).map(([fd, t]) => (t ? `${fd} -> ${t}` : `${fd}`));
    const removed = [...before].filter(([fd]) => !after.has(fd)).map(([fd, t]) => (t ? `${fd} -> ${t}` : `${fd}`));
    throw new AssertionError({
      message: `fd count changed from ${before.size} to ${after.size}; ` +
        `opened: [${added.join(", ")}]; closed: [${removed.join(", ")}]`,
      actual: after.size,
      expected: before.size,
      operator: "strictEqual",
    });
  }
  return result;
}

/**
 * Owns fds for the length of a test and closes whatever is left on dispose,
 * so a failed assertion does not leak into the next test's fd count.
 * Close tracked fds through {@linkcode FdScope.close} (never close an fd
 * number twice: it may have been reused).
 *
 * @example
 * ```ts ignore
 * using fds = new FdScope();
 * const [r, w] = fds.pipe();
 * fds.close(w); // closed now, not again on dispose
 * ```
 */
export class FdScope implements Disposable {
  readonly #open = new Set<number>();

  /** Tracks `fd` and returns it. */
  add(fd: number): number {
    this.#open.add(fd);
    return fd;
  }

  /** A tracked non-blocking pipe: `[readEnd, writeEnd]`. */
  pipe(): [number, number] {
    const [r, w] = pipe();
    this.add(r);
    this.add(w);
    return [r, w];
  }

  /** A tracked non-blocking `AF_UNIX`/`SOCK_STREAM` socket pair. */
  socketpair(): [number, number] {
    const [a, b] = socketpair(AF_UNIX, SOCK_STREAM);
    this.add(a);
    this.add(b);
    return [a, b];
  }

  /** A tracked duplicate of `fd` on the lowest free number ≥ `min`. */
  dupAtLeast(fd: number, min: number): number {
    return this.add(dupAtLeast(fd, min));
  }

  /** A tracked connected TCP pair on loopback, see {@linkcode tcpPair}. */
  tcpPair(host?: string): TcpPair {
    const pair = tcpPair(host);
    this.add(pair.client);
    this.add(pair.server);
    return pair;
  }

  /** Closes a tracked fd now. */
  close(fd: number): void {
    if (!this.#open.delete(fd)) throw new Error(`fd ${fd} is not tracked by this scope`);
    close(fd);
  }

  /** Stops tracking `fd` (someone else closed or will close it). */
  forget(fd: number): void {
    this.#open.delete(fd);
  }

  /** Closes every fd still tracked. */
  [Symbol.dispose](): void {
    for (const fd of this.#open) {
      try {
        close(fd);
      } catch {
        // Already reported by the test that failed; keep closing the rest.
      }
    }
    this.#open.clear();
  }
}

/**
 * A number that is not an open fd right now: a duplicate at or above `min`
 * (default 900, below FD_SETSIZE), closed again. Nothing else in the process
 * takes such a high number while lower ones are free, so it stays closed.
 */
export function closedFd(min = 900): number {
  const [r, w] = pipe();
  const fd = dupAtLeast(r, min);
  close(fd);
  close(r);
  close(w);
  return fd;
}

// ---------------------------------------------------------------- waiting and sockets

const pollBuf = new Uint8Array(POLLFD_SIZE);
const pollFd = new Int32Array(pollBuf.buffer);
const pollEv = new Int16Array(pollBuf.buffer);

/**
 * Waits with `poll(2)` until `fd` reports one of `events` (`POLLIN`, `POLLOUT`, …) or `timeoutMs` passes.
 *
 * @returns The `revents` (0 on timeout); `POLLERR`/`POLLHUP` are always included when set.
 */
export function waitFd(fd: number, events: number, timeoutMs = 5000): number {
  pollFd[0] = fd;
  pollEv[2] = events;
  pollEv[3] = 0;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const n = poll(pollBuf, 1, Math.max(0, Math.ceil(deadline - performance.now())));
    if (n > 0) return pollEv[3];
    if (n === 0) return 0;
  }
}

/** Takes every free fd number below `limit` (duplicates of `fd`), so the next one opened lands at or above it; close them all. */
export function occupyBelow(fd: number, limit: number): number[] {
  const taken: number[] = [];
  try {
    for (;;) {
      const d = dupAtLeast(fd, 0);
      if (d >= limit) {
        close(d);
        return taken;
      }
      taken.push(d);
    }
  } catch (err) {
    for (const d of taken) close(d);
    throw err;
  }
}

/** A listening TCP socket (non-blocking) on `host` and the port the kernel picked. */
export function tcpListener(host = "127.0.0.1", port = 0, backlog = 16): { fd: number; port: number } {
  const { fd, address } = openBoundSocket(endpoint({ host, port }), SOCK_STREAM, { reuseAddr: true, backlog });
  if (address.family === "unix") throw new Error("unexpected unix address");
  return { fd, port: address.port };
}

/**
 * A TCP port on `host` with nothing listening: bound to port 0, read, closed.
 * (Another process could take it in between; on a test machine that does not happen.)
 */
export function unusedPort(host = "127.0.0.1"): number {
  const { fd, address } = openBoundSocket(endpoint({ host, port: 0 }), SOCK_STREAM);
  close(fd);
  if (address.family === "unix") throw new Error("unexpected unix address");
  return address.port;
}

/** Both ends of a connected TCP connection. */
export interface TcpPair {
  /** The connecting end. */
  client: number;
  /** The accepted end. */
  server: number;
  /** The port the (now closed) listener had. */
  port: number;
}

/**
 * A connected, non-blocking TCP pair on loopback, made with the ffi wrappers
 * (socket, bind, listen, connect, accept). The listener is closed before
 * returning; close both ends when done. Fails after 5 s rather than hanging.
 *
 * @param host `"127.0.0.1"` (default) or `"::1"`.
 */
export function tcpPair(host = "127.0.0.1"): TcpPair {
  const listener = tcpListener(host, 0, 1);
  let client = -1;
  let server = -1;
  try {
    const sa = encodeSockaddr({ host, port: listener.port });
    client = socket(sa.family, SOCK_STREAM);
    const what = `${host}:${listener.port}`;
    if (!connect(client, sa.buf, sa.len, what)) {
      if ((waitFd(client, POLLOUT) & POLLOUT) === 0) throw new Error(`Timed out connecting to ${what}`);
      const err = socketError(client);
      if (err !== 0) throw new Error(`Cannot connect to ${what}: errno ${err}`);
    }
    if ((waitFd(listener.fd, POLLIN) & POLLIN) === 0) throw new Error(`Timed out accepting on ${what}`);
    server = accept(listener.fd);
    if (server < 0) throw new Error(`accept() on ${what} would block after POLLIN`);
    return { client, server, port: listener.port };
  } catch (err) {
    if (client >= 0) close(client);
    if (server >= 0) close(server);
    throw err;
  } finally {
    close(listener.fd);
  }
}

/** Deterministic bytes for `seed` (xorshift32), so a reordering, a lost piece or a mix-up between connections shows. */
export function payload(size: number, seed: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  let x = (seed * 2654435761 + 1) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** The pieces joined into one array. */
export function concatBytes(pieces: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(pieces.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of pieces) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
