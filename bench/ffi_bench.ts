/**
 * The cost of crossing into libc: each group puts a raw `sym.*` call beside
 * the checked wrapper from `ffi/syscalls.ts` (errno read, EINTR/EAGAIN
 * handling). `bench/ffi_vs_c.ts` times the same calls from C.
 *
 *   deno bench --allow-ffi --allow-read --allow-run bench/ffi_bench.ts
 *
 * Every call checks its result, so a bench that silently stopped doing the
 * work (a full socket buffer, a closed fd) fails instead of reporting a
 * flattering number.
 *
 * @module
 */

import {
  AF_UNIX,
  close,
  EPOLL_EVENT_SIZE,
  epollCreate,
  epollWait,
  F_GETFD,
  read,
  SOCK_STREAM,
  socketpair,
  sym,
  WOULD_BLOCK,
  write,
} from "../ffi/mod.ts";

// Warm-up beyond Deno's own: the first few hundred calls of an FFI symbol run unoptimised.
const WARMUP = 10_000;

const ep = epollCreate();
const events = new Uint8Array(64 * EPOLL_EVENT_SIZE);
const eventsPtr = Deno.UnsafePointer.of(events); // taken once, as EpollSelector does
const [a, b] = socketpair(AF_UNIX, SOCK_STREAM);
const out = new Uint8Array(64).fill(0x61);
const into = new Uint8Array(64);

addEventListener("unload", () => {
  close(ep);
  close(a);
  close(b);
});

function fail(what: string, got: number): never {
  throw new Error(`${what} returned ${got}`);
}

// ---------------------------------------------------------------- epoll_wait

Deno.bench({
  name: "sym.epoll_wait(ep, buf, 64, 0)",
  group: "epoll_wait(ep, buf, 64, 0), empty set",
  baseline: true,
  warmup: WARMUP,
  fn() {
    const n = sym.epoll_wait(ep, eventsPtr, 64, 0);
    if (n !== 0) fail("epoll_wait", n);
  },
});

Deno.bench({
  name: "epollWait() wrapper",
  group: "epoll_wait(ep, buf, 64, 0), empty set",
  warmup: WARMUP,
  fn() {
    const n = epollWait(ep, eventsPtr, 64, 0);
    if (n !== 0) fail("epollWait", n);
  },
});

// ---------------------------------------------------------------- read/write

Deno.bench({
  name: "sym.write + sym.read",
  group: "write 64 B + read 64 B on a socketpair",
  baseline: true,
  warmup: WARMUP,
  fn() {
    let n = sym.write(a, out, 64);
    if (n !== 64) fail("write", n);
    n = sym.read(b, into, 64);
    if (n !== 64) fail("read", n);
  },
});

Deno.bench({
  name: "write() + read() wrappers",
  group: "write 64 B + read 64 B on a socketpair",
  warmup: WARMUP,
  fn() {
    let n = write(a, out, 64);
    if (n !== 64) fail("write", n);
    n = read(b, into, 64);
    if (n !== 64) fail("read", n);
  },
});

Deno.bench({
  name: "sym.read (returns -1, errno unread)",
  group: "read 64 B on an empty socket (EAGAIN)",
  baseline: true,
  warmup: WARMUP,
  fn() {
    const n = sym.read(b, into, 64);
    if (n !== -1) fail("read", n);
  },
});

Deno.bench({
  name: "read() wrapper (reads errno, returns WOULD_BLOCK)",
  group: "read 64 B on an empty socket (EAGAIN)",
  warmup: WARMUP,
  fn() {
    const n = read(b, into, 64);
    if (n !== WOULD_BLOCK) fail("read", n);
  },
});

// ---------------------------------------------------------------- a near no-op

Deno.bench({
  name: "sym.fcntl(fd, F_GETFD, 0)",
  group: "near no-op syscall",
  baseline: true,
  warmup: WARMUP,
  fn() {
    const n = sym.fcntl(a, F_GETFD, 0);
    if (n < 0) fail("fcntl", n);
  },
});
