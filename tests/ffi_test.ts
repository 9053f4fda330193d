/**
 * Tests of the libc layer (`ffi/`): errors, I/O wrappers, socket addresses
 * and the length guard, on real descriptors and loopback sockets.
 */

import assert from "node:assert/strict";
import {
  AF_INET,
  AF_INET6,
  AF_UNIX,
  assertOpenFd,
  bind,
  check,
  close,
  connect,
  decodeSockaddr,
  dupAtLeast,
  encodeSockaddr,
  EPOLL_CTL_ADD,
  EPOLL_EVENT_SIZE,
  epollCreate,
  epollCtl,
  EPOLLIN,
  epollWaitAsync,
  Errno,
  errnoName,
  eventfd,
  F_GETFD,
  F_GETFL,
  FD_CLOEXEC,
  FD_SET_SIZE,
  fillIovec,
  formatIPv6,
  getPeerName,
  getSockName,
  INTERRUPTED,
  IOVEC_SIZE,
  MAX_IO,
  monotonicMs,
  O_NONBLOCK,
  OSError,
  osError,
  parseIPv4,
  parseIPv6,
  pollAsync,
  POLLERR,
  POLLFD_SIZE,
  POLLIN,
  POLLOUT,
  read,
  readv,
  recv,
  selectAsync,
  send,
  setNonBlocking,
  SOCK_STREAM,
  SOCKADDR_IN6_SIZE,
  SOCKADDR_IN_SIZE,
  socket,
  socketError,
  sym,
  UNIX_PATH_MAX,
  WOULD_BLOCK,
  write,
  writev,
} from "../ffi/mod.ts";
import { assertNoFdLeak, closedFd, FdScope, tcpListener, unusedPort, waitFd } from "./_helpers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Reads whatever is available (at most `max` bytes) as text. */
function readText(fd: number, max = 4096): string {
  const buf = new Uint8Array(max);
  const n = read(fd, buf);
  return n > 0 ? dec.decode(buf.subarray(0, n)) : "";
}

/** A test body that takes the context, wrapped in {@linkcode assertNoFdLeak}. */
function leakChecked(fn: (t: Deno.TestContext) => void | Promise<void>): (t: Deno.TestContext) => Promise<void> {
  return (t) => assertNoFdLeak(() => fn(t));
}

// ---------------------------------------------------------------- OSError and errno

Deno.test("`monotonicMs()` never goes back and advances as `performance.now()` does", async () => {
  // Real clock on purpose. Both read CLOCK_MONOTONIC, so over a 30 ms sleep they advance alike,
  // to within the reads' own spread (0.5 ms of slack for a loaded machine).
  let last = monotonicMs();
  for (let i = 0; i < 10_000; i++) {
    const now = monotonicMs();
    assert.ok(now >= last, `monotonicMs() went back from ${last} to ${now}`);
    last = now;
  }
  const m0 = monotonicMs();
  const p0 = performance.now();
  await new Promise((resolve) => setTimeout(resolve, 30));
  const m1 = monotonicMs();
  const p1 = performance.now();
  assert.ok(p1 - p0 >= 29, `slept ${p1 - p0} ms`);
  assert.ok(Math.abs((m1 - m0) - (p1 - p0)) < 0.5, `monotonicMs() moved ${m1 - m0} ms, performance.now() ${p1 - p0}`);
});

Deno.test("`bind()` on a used port throws an OSError naming the address, errno and call", () =>
  assertNoFdLeak(() => {
    using fds = new FdScope();
    const listener = tcpListener();
    fds.add(listener.fd);
    const sa = encodeSockaddr({ host: "127.0.0.1", port: listener.port });
    const fd = fds.add(socket(AF_INET, SOCK_STREAM));
    let caught: unknown;
    try {
      bind(fd, sa.buf, sa.len, `127.0.0.1:${listener.port}`);
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof OSError);
    assert.ok(caught instanceof Error);
    assert.equal(caught.name, "OSError");
    assert.equal(caught.errno, Errno.EADDRINUSE);
    assert.equal(caught.errno, 98);
    assert.equal(caught.code, "EADDRINUSE");
    assert.equal(caught.syscall, "bind");
    assert.equal(caught.message, `Cannot bind 127.0.0.1:${listener.port}: EADDRINUSE (bind): Address already in use`);
  }));

Deno.test("`connect()` to a closed loopback port fails with ECONNREFUSED", () =>
  assertNoFdLeak(() => {
    using fds = new FdScope();
    const port = unusedPort();
    const what = `127.0.0.1:${port}`;
    const sa = encodeSockaddr({ host: "127.0.0.1", port });
    const fd = fds.add(socket(AF_INET, SOCK_STREAM));
    let err: OSError;
    try {
      // Non-blocking: EINPROGRESS (false), then the refusal arrives as SO_ERROR.
      const connected = connect(fd, sa.buf, sa.len, what);
      assert.equal(connected, false, "a non-blocking connect to a closed port cannot succeed at once");
      const revents = waitFd(fd, POLLOUT, 5000);
      assert.notEqual(revents & (POLLOUT | POLLERR), 0, `no writability within 5 s (revents ${revents})`);
      const errno = socketError(fd);
      assert.equal(errno, Errno.ECONNREFUSED);
      assert.equal(errno, 111);
      assert.equal(socketError(fd), 0, "reading SO_ERROR clears it");
      err = osError(errno, "connect", `Cannot connect to ${what}`);
    } catch (e) {
      // Some kernels refuse synchronously; the wrapper must then throw the same error.
      if (!(e instanceof OSError)) throw e;
      err = e;
    }
    assert.equal(err.code, "ECONNREFUSED");
    assert.equal(err.errno, 111);
    assert.equal(err.syscall, "connect");
    assert.equal(err.message, `Cannot connect to ${what}: ECONNREFUSED (connect): Connection refused`);
  }));

Deno.test("`read()` on an empty non-blocking pipe returns WOULD_BLOCK, then 0 at end of file", () =>
  assertNoFdLeak(() => {
    using fds = new FdScope();
    const [r, w] = fds.pipe();
    const buf = new Uint8Array(16);
    assert.equal(WOULD_BLOCK, -1);
    assert.equal(read(r, buf), WOULD_BLOCK);
    assert.equal(write(w, enc.encode("hi")), 2);
    assert.equal(read(r, buf), 2);
    assert.equal(dec.decode(buf.subarray(0, 2)), "hi");
    assert.equal(read(r, buf), WOULD_BLOCK);
    fds.close(w);
    assert.equal(read(r, buf), 0);
  }));

Deno.test("`recv()` and `send()` on a socket pair: WOULD_BLOCK when empty, bytes otherwise", () =>
  assertNoFdLeak(() => {
    using fds = new FdScope();
    const [a, b] = fds.socketpair();
    const buf = new Uint8Array(16);
    assert.equal(recv(a, buf), WOULD_BLOCK);
    assert.equal(send(b, enc.encode("ping")), 4);
    assert.equal(recv(a, buf), 4);
    assert.equal(dec.decode(buf.subarray(0, 4)), "ping");
  }));

Deno.test("`close()` of a closed fd throws OSError EBADF (close)", () =>
  assertNoFdLeak(() => {
    const fd = closedFd(1500);
    let caught: unknown;
    try {
      close(fd);
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof OSError, `expected an OSError, got ${caught}`);
    assert.equal(caught.errno, Errno.EBADF);
    assert.equal(caught.code, "EBADF");
    assert.equal(caught.syscall, "close");
    assert.equal(caught.message, `Cannot close fd ${fd}: EBADF (close): Bad file descriptor`);
  }));

Deno.test("`check()` turns -1 into an OSError with the errno of the failed call", () =>
  assertNoFdLeak(() => {
    const fd = closedFd(1500);
    assert.throws(
      () => check(sym.fcntl(fd, F_GETFD, 0), "fcntl"),
      (e: unknown) => e instanceof OSError && e.code === "EBADF" && e.syscall === "fcntl",
    );
    assert.equal(check(7, "fcntl"), 7);
    assert.equal(check(0, "fcntl"), 0);
  }));

Deno.test("`errnoName()` names every Errno entry and falls back to E<number>", () => {
  assert.equal(errnoName(98), "EADDRINUSE");
  assert.equal(errnoName(111), "ECONNREFUSED");
  assert.equal(errnoName(11), "EAGAIN");
  assert.equal(errnoName(9999), "E9999");
  assert.equal(errnoName(0), "E0");
  for (const [name, value] of Object.entries(Errno)) assert.equal(errnoName(value), name);
});

Deno.test("`OSError` message without context or description is just code and call", () => {
  const err = new OSError(9, "close");
  assert.equal(err.message, "EBADF (close)");
  assert.equal(new OSError(9, "close", "Cannot close fd 3").message, "Cannot close fd 3: EBADF (close)");
  assert.equal(new OSError(4242, "frob").code, "E4242");
});

// ---------------------------------------------------------------- descriptors

Deno.test(
  "`setNonBlocking()`, `dupAtLeast()` and `eventfd()` set the flags they promise",
  leakChecked(async (t) => {
    using fds = new FdScope();
    await t.step("setNonBlocking() toggles O_NONBLOCK", () => {
      const [a, b] = fds.socketpair();
      void b;
      setNonBlocking(a, false);
      assert.equal(sym.fcntl(a, F_GETFL, 0) & O_NONBLOCK, 0);
      setNonBlocking(a, true);
      assert.equal(sym.fcntl(a, F_GETFL, 0) & O_NONBLOCK, O_NONBLOCK);
    });
    await t.step("setNonBlocking() returns whether O_NONBLOCK was set before", () => {
      const [a] = fds.socketpair();
      setNonBlocking(a, false);
      assert.equal(setNonBlocking(a, true), false);
      assert.equal(setNonBlocking(a, true), true);
      assert.equal(setNonBlocking(a, false), true);
      assert.equal(setNonBlocking(a, false), false);
    });
    await t.step("dupAtLeast() returns a close-on-exec fd at or above min", () => {
      const [r] = fds.pipe();
      const high = fds.dupAtLeast(r, 1500);
      assert.ok(high >= 1500, `got ${high}`);
      assert.equal(sym.fcntl(high, F_GETFD, 0) & FD_CLOEXEC, FD_CLOEXEC);
      const again = dupAtLeast(high, 1500);
      assert.ok(again > high);
      close(again);
    });
    await t.step("eventfd() is non-blocking and counts writes", () => {
      const fd = fds.add(eventfd());
      const buf = new Uint8Array(8);
      assert.equal(read(fd, buf), WOULD_BLOCK);
      assert.equal(write(fd, new Uint8Array([2, 0, 0, 0, 0, 0, 0, 0])), 8);
      assert.equal(write(fd, new Uint8Array([3, 0, 0, 0, 0, 0, 0, 0])), 8);
      assert.equal(read(fd, buf), 8);
      assert.equal(buf[0], 5);
      assert.equal(read(fd, buf), WOULD_BLOCK);
    });
  }),
);

// ---------------------------------------------------------------- socket addresses

Deno.test("`encodeSockaddr()` / `decodeSockaddr()` round-trip IPv4", () => {
  const sa = encodeSockaddr({ host: "127.0.0.1", port: 8080 });
  assert.equal(sa.family, AF_INET);
  assert.equal(sa.len, SOCKADDR_IN_SIZE);
  // sin_family little-endian, sin_port big-endian, sin_addr in network order.
  assert.deepEqual([...sa.buf.subarray(0, 8)], [AF_INET, 0, 0x1f, 0x90, 127, 0, 0, 1]);
  assert.deepEqual(decodeSockaddr(sa.buf, sa.len), { family: "IPv4", address: "127.0.0.1", port: 8080 });
  for (const [host, port] of [["0.0.0.0", 0], ["255.255.255.255", 65535], ["10.1.2.3", 1]] as const) {
    const e = encodeSockaddr({ host, port });
    assert.deepEqual(decodeSockaddr(e.buf, e.len), { family: "IPv4", address: host, port });
  }
});

Deno.test("`encodeSockaddr()` / `decodeSockaddr()` round-trip IPv6", () => {
  for (const host of ["::1", "::", "fe80::1:2", "::ffff:1.2.3.4", "2001:db8::1:0:0:1", "1:2:3:4:5:6:7:8"]) {
    const sa = encodeSockaddr({ host, port: 443 });
    assert.equal(sa.family, AF_INET6, host);
    assert.equal(sa.len, SOCKADDR_IN6_SIZE, host);
    assert.deepEqual(decodeSockaddr(sa.buf, sa.len), { family: "IPv6", address: host, port: 443 }, host);
  }
  const loop = encodeSockaddr({ host: "[::1]", port: 1 });
  assert.deepEqual([...loop.buf.subarray(8, 24)], [...new Array(15).fill(0), 1]);
  // Canonical text (RFC 5952): lower case, longest zero run compressed, first on a tie, single 0 kept.
  const canon = (text: string) => {
    const sa = encodeSockaddr({ host: text, port: 0 });
    const d = decodeSockaddr(sa.buf, sa.len);
    return d.family === "IPv6" ? d.address : "";
  };
  assert.equal(canon("FE80:0:0:0:0:0:0:1"), "fe80::1");
  assert.equal(canon("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
  assert.equal(canon("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
  assert.equal(canon("0:0:0:0:0:ffff:102:304"), "::ffff:1.2.3.4");
  assert.equal(formatIPv6(new Uint8Array(16)), "::");
});

Deno.test("`encodeSockaddr()` / `decodeSockaddr()` round-trip a Unix socket path", () => {
  const path = "/tmp/fdloop-test.sock";
  const sa = encodeSockaddr({ path });
  assert.equal(sa.family, AF_UNIX);
  assert.equal(sa.len, 2 + path.length + 1);
  assert.deepEqual(decodeSockaddr(sa.buf, sa.len), { family: "unix", path });
  const longest = "/" + "x".repeat(UNIX_PATH_MAX - 1);
  const e = encodeSockaddr({ path: longest });
  assert.deepEqual(decodeSockaddr(e.buf, e.len), { family: "unix", path: longest });
  assert.throws(() => encodeSockaddr({ path: longest + "x" }), TypeError);
  assert.throws(() => encodeSockaddr({ path: "" }), TypeError);
  assert.throws(() => encodeSockaddr({ path: "/tmp/a\0b" }), TypeError);
});

Deno.test("`encodeSockaddr()` rejects names, bad ports and bad addresses with TypeError", () => {
  for (const host of ["localhost", "1.2.3", "1.2.3.4.5", "256.1.1.1", "::g", "[::1", ""]) {
    assert.throws(() => encodeSockaddr({ host, port: 80 }), TypeError, host);
  }
  for (const port of [-1, 65536, 1.5, NaN]) {
    assert.throws(() => encodeSockaddr({ host: "127.0.0.1", port }), TypeError, String(port));
  }
});

Deno.test("`parseIPv4()` and `parseIPv6()` reject malformed input", () => {
  assert.deepEqual(parseIPv4("1.2.3.4"), new Uint8Array([1, 2, 3, 4]));
  for (const bad of ["", "1.2.3", "1.2.3.4.", "1.2.3.256", "1.2.3.-1", "01234.1.1.1", "a.b.c.d", " 1.2.3.4"]) {
    assert.equal(parseIPv4(bad), null, JSON.stringify(bad));
  }
  const bad6 = [
    "",
    ":",
    ":::",
    "1::2::3",
    "12345::",
    "g::1",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:8::",
    "::1:2:3:4:5:6:7:8",
    ":1::",
    "1::2:",
    "::ffff:1.2.3.256",
    "::1.2.3",
    "1:2:3:4:5:6:7:1.2.3.4",
    "fe80::1%eth0",
    "0".repeat(46),
  ];
  for (const bad of bad6) assert.equal(parseIPv6(bad), null, JSON.stringify(bad));
  assert.ok(parseIPv6("1:2:3:4:5:6:7::"));
  assert.ok(parseIPv6("::2:3:4:5:6:7:8"));
  assert.ok(parseIPv6("1:2:3:4:5:6:1.2.3.4"));
});

Deno.test({
  name: "`parseIPv6()` rejects an IPv4 part before `::`",
  fn() {
    assert.equal(parseIPv6("1.2.3.4::"), null);
    assert.equal(parseIPv6("1.2.3.4::1"), null);
  },
});

Deno.test(
  "`getSockName()` / `getPeerName()` decode what the kernel reports (IPv4, IPv6, Unix)",
  leakChecked(async (t) => {
    using fds = new FdScope();
    await t.step("IPv4 loopback pair", () => {
      const { client, server, port } = fds.tcpPair("127.0.0.1");
      assert.deepEqual(getPeerName(client), { family: "IPv4", address: "127.0.0.1", port });
      assert.deepEqual(getSockName(client), getPeerName(server));
      assert.equal(send(client, enc.encode("over tcp")), 8);
      assert.equal(waitFd(server, POLLIN) & POLLIN, POLLIN);
      assert.equal(readText(server), "over tcp");
    });
    await t.step("IPv6 loopback pair", () => {
      const { client, server, port } = fds.tcpPair("::1");
      assert.deepEqual(getPeerName(client), { family: "IPv6", address: "::1", port });
      assert.deepEqual(getSockName(client), getPeerName(server));
      assert.equal(getSockName(server).family, "IPv6");
    });
    await t.step("Unix socket bound to a path", async () => {
      const dir = await Deno.makeTempDir({ prefix: "fdloop_ffi_" });
      try {
        const path = `${dir}/s.sock`;
        const sa = encodeSockaddr({ path });
        const fd = fds.add(socket(AF_UNIX, SOCK_STREAM));
        bind(fd, sa.buf, sa.len, path);
        assert.deepEqual(getSockName(fd), { family: "unix", path });
        fds.close(fd);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }),
);

// ---------------------------------------------------------------- vectored I/O and the length guard

Deno.test("`writev()` with `fillIovec()` writes several chunks in one call; `readv()` scatters", () =>
  assertNoFdLeak(() => {
    using fds = new FdScope();
    const [a, b] = fds.socketpair();
    const chunks = ["hello, ", "", "vectored ", "world", "!"].map((s) => enc.encode(s));
    const total = chunks.reduce((n, c) => n + c.byteLength, 0);
    const iov = new Uint8Array(chunks.length * IOVEC_SIZE);
    fillIovec(iov, chunks);
    assert.equal(writev(a, iov, chunks.length), total);
    // Exactly one write happened: the peer sees all the bytes at once.
    const head = new Uint8Array(4);
    const tail = new Uint8Array(64);
    const riov = new Uint8Array(2 * IOVEC_SIZE);
    fillIovec(riov, [head, tail]);
    assert.equal(readv(b, riov, 2), total);
    assert.equal(dec.decode(head) + dec.decode(tail.subarray(0, total - 4)), "hello, vectored world!");
    assert.equal(readv(b, riov, 2), WOULD_BLOCK);
    // Only the first `count` entries are used.
    fillIovec(iov, chunks, 1);
    assert.equal(writev(a, iov, 1), chunks[0].byteLength);
    assert.equal(readText(b), "hello, ");
  }));

Deno.test("I/O wrappers refuse lengths above MAX_IO (2 GiB - 1) with RangeError before calling libc", () =>
  assertNoFdLeak(() => {
    using fds = new FdScope();
    const [a, b] = fds.socketpair();
    const buf = new Uint8Array(8);
    assert.equal(MAX_IO, 2 ** 31 - 1);
    const tooBig = MAX_IO + 1;
    const msg = /I\/O length must be 0 to 2147483647 bytes, got 2147483648/;
    assert.throws(() => read(a, buf, tooBig), RangeError);
    assert.throws(() => read(a, buf, tooBig), msg);
    assert.throws(() => write(a, buf, tooBig), msg);
    assert.throws(() => recv(a, buf, tooBig), msg);
    assert.throws(() => send(a, buf, tooBig), msg);
    assert.throws(() => read(a, buf, 2 ** 32), RangeError);
    // A negative length never reaches libc either (the u32 parameter rejects it).
    assert.throws(() => read(a, buf, -1), TypeError);
    // Nothing was sent by the refused calls.
    assert.equal(recv(b, buf), WOULD_BLOCK);
  }));

Deno.test({
  name: "`read()` refuses a len larger than the buffer",
  fn: () =>
    assertNoFdLeak(() => {
      using fds = new FdScope();
      const [r, w] = fds.pipe();
      write(w, new Uint8Array(16).fill(7));
      const backing = new Uint8Array(16);
      assert.throws(() => read(r, backing.subarray(0, 8), 16), RangeError);
      assert.deepEqual([...backing.subarray(8)], new Array(8).fill(0));
    }),
});

Deno.test("`WOULD_BLOCK` and `INTERRUPTED` are distinct, so a result can never be misread", () => {
  assert.notEqual(WOULD_BLOCK, INTERRUPTED);
  assert.ok(WOULD_BLOCK < 0 && INTERRUPTED < 0, "both are impossible as byte or event counts");
});

Deno.test("the off-thread waits (`epollWaitAsync`, `pollAsync`, `selectAsync`) return the ready count", () =>
  assertNoFdLeak(async () => {
    using fds = new FdScope();
    const [r, w] = fds.pipe();
    write(w, enc.encode("x"));
    // epoll
    const ep = epollCreate();
    try {
      const ev = new Uint8Array(EPOLL_EVENT_SIZE);
      new Uint32Array(ev.buffer)[0] = EPOLLIN;
      epollCtl(ep, EPOLL_CTL_ADD, r, ev);
      const out = new Uint8Array(4 * EPOLL_EVENT_SIZE);
      assert.equal(await epollWaitAsync(ep, Deno.UnsafePointer.of(out), 4, 1000), 1);
    } finally {
      close(ep);
    }
    // poll
    const pfd = new Uint8Array(POLLFD_SIZE);
    new Int32Array(pfd.buffer)[0] = r;
    new Int16Array(pfd.buffer)[2] = POLLIN;
    assert.equal(await pollAsync(pfd, 1, 1000), 1);
    // select
    const set = new Uint8Array(FD_SET_SIZE);
    set[r >> 3] |= 1 << (r & 7);
    assert.equal(await selectAsync(r + 1, set, new Uint8Array(FD_SET_SIZE), null), 1);
  }));

Deno.test("`assertOpenFd()` throws EBADF from fcntl with the given context, and passes an open fd", () =>
  assertNoFdLeak(() => {
    using fds = new FdScope();
    const [r] = fds.pipe();
    assertOpenFd(r, "unused");
    const bad = closedFd();
    assert.throws(() => assertOpenFd(bad, `Cannot register fd ${bad}`), (err: unknown) => {
      assert.ok(err instanceof OSError);
      assert.equal(err.code, "EBADF");
      assert.equal(err.syscall, "fcntl");
      assert.ok(err.message.startsWith(`Cannot register fd ${bad}: EBADF (fcntl)`), err.message);
      return true;
    });
  }));
