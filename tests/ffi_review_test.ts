/**
 * Review tests of the libc layer (`ffi/`) and the selector backends: memory
 * safety of the length and count arguments handed to libc, the lifetime of
 * the epoll fd under a pending off-thread wait, and the socket address
 * encodings (abstract Unix sockets, IPv6 scope ids, short lengths).
 *
 * Each test that probes for an out-of-bounds access does it through a view
 * into a larger buffer of its own, so a bug writes into that buffer (where
 * the test sees it) and never into memory it does not own.
 */

import assert from "node:assert/strict";
import {
  accept,
  AF_INET,
  AF_INET6,
  AF_UNIX,
  bind,
  connect,
  decodeSockaddr,
  encodeSockaddr,
  EPOLL_CTL_ADD,
  EPOLL_EVENT_SIZE,
  EPOLL_EVENT_STRIDE,
  epollCreate,
  epollCtl,
  EPOLLIN,
  EPOLLONESHOT,
  epollWait,
  F_GETFD,
  FD_SET_SIZE,
  FD_SETSIZE,
  fillIovec,
  getaddrinfo,
  getSockName,
  IOVEC_SIZE,
  parseIPv4,
  poll,
  pollAsync,
  POLLFD_SIZE,
  POLLIN,
  read,
  readv,
  recv,
  select,
  selectAsync,
  send,
  sendTo,
  SOCK_DGRAM,
  SOCK_STREAM,
  SOCKADDR_IN6_SIZE,
  SOCKADDR_IN_SIZE,
  socket,
  sym,
  unlink,
  write,
  writev,
} from "../ffi/mod.ts";
import { createSelector } from "../reactor/default.ts";
import { EpollSelector } from "../reactor/epoll.ts";
import { EVENT_READ } from "../reactor/selector.ts";
import { assertNoFdLeak, BACKENDS, FdScope, SELECTOR_CLASS, waitFd } from "./_helpers.ts";

const ONE = new Uint8Array([1]);

/** Whether `fd` is an open descriptor. */
function isOpen(fd: number): boolean {
  return sym.fcntl(fd, F_GETFD, 0) >= 0;
}

// ---------------------------------------------------------------- lengths and counts handed to libc

Deno.test("`read()`/`recv()` with a negative, NaN or fractional length never reach libc, even once optimised", () =>
  assertNoFdLeak(() => {
    using fds = new FdScope();
    const [r, w] = fds.pipe();
    const [a, b] = fds.socketpair();
    // Warm the wrappers up so V8 compiles them with fast FFI calls: a fast call must not wrap -1 to 2^32-1
    // (it falls back to the slow path, whose u32 check throws a TypeError).
    const warm = new Uint8Array(8);
    for (let i = 0; i < 20_000; i++) {
      read(r, warm, (i & 7) + 1);
      recv(a, warm, (i & 7) + 1);
    }
    write(w, new Uint8Array(16).fill(7));
    send(b, new Uint8Array(16).fill(7));
    const backing = new Uint8Array(64);
    const view = backing.subarray(0, 8);
    const refused = (err: unknown) => err instanceof TypeError || err instanceof RangeError;
    for (const len of [-1, NaN, 1.5, -0.5]) {
      assert.throws(() => read(r, view, len), refused, `read(len ${len})`);
      assert.throws(() => recv(a, view, len), refused, `recv(len ${len})`);
    }
    assert.deepEqual([...backing], new Array(64).fill(0), "nothing was read into or past the view");
    assert.equal(read(r, backing), 16, "the pipe still holds its 16 bytes");
    assert.equal(recv(a, backing), 16, "the socket still holds its 16 bytes");
  }));

Deno.test("`readv()`/`writev()`/`fillIovec()` refuse a count beyond the iovec array", () =>
  assertNoFdLeak(() => {
    using fds = new FdScope();
    const [a, b] = fds.socketpair();
    send(b, new Uint8Array([1, 2, 3, 4]));
    const head = new Uint8Array(2);
    const tail = new Uint8Array(2);
    // Two entries in a view of a three-entry buffer whose third entry is empty (NULL, 0).
    const backing = new Uint8Array(3 * IOVEC_SIZE);
    const iov = backing.subarray(0, 2 * IOVEC_SIZE);
    fillIovec(iov, [head, tail]);
    assert.throws(() => readv(a, iov, 3), RangeError);
    assert.throws(() => writev(a, iov, 3), RangeError);
    assert.throws(() => readv(a, iov, -1), RangeError);
    // fillIovec must not write entries past the view either.
    const before = [...backing.subarray(2 * IOVEC_SIZE)];
    assert.throws(() => fillIovec(iov, [head, tail, head], 3), RangeError);
    assert.deepEqual([...backing.subarray(2 * IOVEC_SIZE)], before);
    assert.throws(() => fillIovec(iov, [head], 2), RangeError, "more entries than chunks");
    assert.equal(readv(a, iov, 2), 4, "the two-entry call still works");
    assert.deepEqual([...head, ...tail], [1, 2, 3, 4]);
  }));

Deno.test("`poll()`/`pollAsync()` refuse nfds beyond the pollfd array", () =>
  assertNoFdLeak(async () => {
    using fds = new FdScope();
    const [r, w] = fds.pipe();
    write(w, ONE);
    // A one-entry view of a two-entry buffer whose second entry asks for a readable fd.
    const backing = new Uint8Array(2 * POLLFD_SIZE);
    const i32 = new Int32Array(backing.buffer);
    const i16 = new Int16Array(backing.buffer);
    i32[0] = -1; // ignored entry
    i32[2] = r;
    i16[6] = POLLIN;
    const view = backing.subarray(0, POLLFD_SIZE);
    assert.throws(() => poll(view, 2, 0), RangeError);
    await assert.rejects(pollAsync(view, 2, 0), RangeError);
    assert.throws(() => poll(view, -1, 0), RangeError);
    assert.equal(i16[7], 0, "no revents were written past the view");
    assert.equal(poll(view, 1, 0), 0);
  }));

Deno.test("`select()`/`selectAsync()` refuse nfds above FD_SETSIZE or beyond the fd_set buffers", () =>
  assertNoFdLeak(async () => {
    using fds = new FdScope();
    const [r] = fds.pipe();
    const big = new Uint8Array(2 * FD_SET_SIZE);
    const rset = big.subarray(0, FD_SET_SIZE);
    const wset = new Uint8Array(FD_SET_SIZE);
    const zero = () => new Uint8Array(16); // a zero timeval: a bug here returns at once instead of hanging
    assert.throws(() => select(FD_SETSIZE + 1, rset, wset, zero()), RangeError);
    assert.throws(() => select(FD_SETSIZE + 1, rset, wset, zero()), /FD_SETSIZE/);
    await assert.rejects(selectAsync(FD_SETSIZE + 64, rset, wset, zero()), RangeError);
    // A set smaller than nfds needs (the kernel reads and writes whole 64-bit words).
    const small = new Uint8Array(16).subarray(0, 8);
    assert.throws(() => select(65, small, new Uint8Array(16), zero()), RangeError);
    assert.throws(() => select(1, rset, wset, new Uint8Array(8)), RangeError, "a timeval is 16 bytes");
    assert.deepEqual([...big.subarray(FD_SET_SIZE)], new Array(FD_SET_SIZE).fill(0));
    // nfds within bounds still works.
    rset[r >> 3] |= 1 << (r & 7);
    assert.equal(select(r + 1, rset, wset, new Uint8Array(16)), 0);
  }));

Deno.test("`bind()`/`connect()`/`sendTo()` refuse an address length beyond the address buffer", () =>
  assertNoFdLeak(() => {
    using fds = new FdScope();
    const udp = fds.add(socket(AF_INET, SOCK_DGRAM));
    const sa = encodeSockaddr({ host: "127.0.0.1", port: 9 });
    const short = sa.buf.subarray(0, 8);
    assert.throws(() => bind(udp, short, SOCKADDR_IN_SIZE, "x"), RangeError);
    assert.throws(() => connect(udp, short, SOCKADDR_IN_SIZE, "x"), RangeError);
    assert.throws(() => sendTo(udp, ONE, short, SOCKADDR_IN_SIZE), RangeError);
    // accept(): the length buffer says how much the kernel may write into the address buffer.
    const lenBuf = new Uint8Array(new Uint32Array([SOCKADDR_IN_SIZE]).buffer);
    assert.throws(() => accept(udp, short, lenBuf), RangeError);
    assert.throws(() => accept(udp, sa.buf, null), RangeError);
  }));

Deno.test("`epollCtl()` refuses an event buffer shorter than `struct epoll_event`", () =>
  assertNoFdLeak(() => {
    using fds = new FdScope();
    const [r] = fds.pipe();
    const ep = fds.add(epollCreate());
    const backing = new Uint8Array(16);
    new Uint32Array(backing.buffer)[0] = EPOLLIN;
    assert.throws(() => epollCtl(ep, EPOLL_CTL_ADD, r, backing.subarray(0, 4)), RangeError);
    const out = new Uint8Array(4 * EPOLL_EVENT_SIZE);
    assert.equal(epollWait(ep, Deno.UnsafePointer.of(out), 4, 0), 0, "nothing was registered");
  }));

// ---------------------------------------------------------------- selectors: close and pending waits

for (const backend of BACKENDS) {
  const cls = SELECTOR_CLASS[backend];

  Deno.test(`\`${cls}.select()\` and \`selectAsync()\` throw after \`close()\``, () =>
    assertNoFdLeak(async () => {
      using fds = new FdScope();
      const sel = createSelector<string>(backend);
      sel.close();
      // epoll: the closed epoll fd's number is free for the next epoll instance. A wait on it
      // would consume that instance's one-shot events. Take the number and arm one.
      let ep = -1;
      if (sel instanceof EpollSelector) {
        ep = fds.add(epollCreate());
        assert.equal(ep, sel.epfd, "the new epoll instance reuses the closed number");
        const [r, w] = fds.pipe();
        const ev = new Uint8Array(16);
        const words = new Uint32Array(ev.buffer);
        words[0] = EPOLLIN | EPOLLONESHOT;
        words[EPOLL_EVENT_STRIDE === 3 ? 1 : 2] = 42;
        epollCtl(ep, EPOLL_CTL_ADD, r, ev);
        write(w, ONE);
      }
      assert.throws(() => sel.select(0), /closed/);
      await assert.rejects(sel.selectAsync(0), /closed/);
      if (ep >= 0) {
        const out = new Uint8Array(4 * EPOLL_EVENT_SIZE);
        assert.equal(epollWait(ep, Deno.UnsafePointer.of(out), 4, 0), 1, "the one-shot event was not stolen");
      }
    }));

  Deno.test(`\`${cls}.selectAsync()\` refuses a second wait while one is pending`, () =>
    assertNoFdLeak(async () => {
      using fds = new FdScope();
      const [r, w] = fds.pipe();
      const sel = createSelector<string>(backend);
      try {
        sel.register(r, EVENT_READ, "r");
        const first = sel.selectAsync(5000);
        await assert.rejects(sel.selectAsync(0), /already pending/);
        write(w, ONE);
        assert.equal(await first, 1);
        assert.equal(sel.readyKeys[0].data, "r");
        // Once settled, another wait is fine.
        assert.equal(await sel.selectAsync(0), 1);
      } finally {
        sel.close();
      }
    }));
}

Deno.test("`EpollSelector.close()` during a pending `selectAsync()` wakes it and closes the epoll fd after it returns", () =>
  assertNoFdLeak(async () => {
    using fds = new FdScope();
    const [r] = fds.pipe();
    const sel = new EpollSelector<string>();
    sel.register(r, EVENT_READ, "r");
    const epfd = sel.epfd;
    const t0 = performance.now();
    const pending = sel.selectAsync(3000);
    sel.close();
    // Closed now, its number could be taken by the next epoll instance while the wait still runs on it.
    assert.ok(isOpen(epfd), "the epoll fd stays open while the wait is pending");
    assert.equal(await pending, 0);
    const elapsed = performance.now() - t0;
    assert.ok(elapsed < 2000, `the pending wait was not woken: it returned after ${elapsed.toFixed(0)} ms`);
    assert.ok(!isOpen(epfd), "the epoll fd is closed once the wait has returned");
  }));

Deno.test("`new EpollSelector({ maxEvents })` refuses a count that is not a positive integer, without leaking an fd", () =>
  assertNoFdLeak(() => {
    for (const maxEvents of [0, -1, 1.5, NaN, 2 ** 31]) {
      assert.throws(() => new EpollSelector({ maxEvents }), RangeError, `maxEvents ${maxEvents}`);
    }
    const sel = new EpollSelector({ maxEvents: 1 });
    assert.equal(sel.select(0), 0);
    sel.close();
  }));

// ---------------------------------------------------------------- socket addresses

Deno.test("`parseIPv4()` refuses leading zeros, which inet_aton() reads as octal (CVE-2021-29921)", () => {
  assert.equal(parseIPv4("010.0.0.1"), null);
  assert.equal(parseIPv4("127.000.000.001"), null);
  assert.deepEqual(parseIPv4("10.0.0.1"), new Uint8Array([10, 0, 0, 1]));
  assert.deepEqual(parseIPv4("0.0.0.0"), new Uint8Array([0, 0, 0, 0]));
  assert.throws(() => encodeSockaddr({ host: "010.0.0.1", port: 80 }), TypeError);
});

Deno.test("abstract Unix sockets (a leading NUL) encode without a trailing NUL and decode with their name", () =>
  assertNoFdLeak(() => {
    using fds = new FdScope();
    const name = `\0fdloop-review-${Deno.pid}-${Math.random().toString(36).slice(2)}`;
    const sa = encodeSockaddr({ path: name });
    assert.equal(sa.family, AF_UNIX);
    assert.equal(sa.len, 2 + new TextEncoder().encode(name).length, "no trailing NUL: it would be part of the name");
    const fd = fds.add(socket(AF_UNIX, SOCK_STREAM));
    bind(fd, sa.buf, sa.len, "the abstract name");
    assert.deepEqual(getSockName(fd), { family: "unix", path: name });
    // The 108-byte limit applies to the whole name, its leading NUL included.
    assert.throws(() => encodeSockaddr({ path: "\0" + "x".repeat(108) }), TypeError);
    encodeSockaddr({ path: "\0" + "x".repeat(107) });
    // A NUL anywhere but first is still refused for a path name.
    assert.throws(() => encodeSockaddr({ path: "/tmp/a\0b" }), TypeError);
    // unlink() has no file to remove for an abstract name, and never cuts a path short at a NUL.
    unlink(name);
    assert.throws(() => unlink("/tmp/fdloop-review\0x"), TypeError);
  }));

Deno.test("`decodeSockaddr()` refuses a length shorter than its family needs instead of decoding stale bytes", () => {
  const sa = encodeSockaddr({ host: "10.1.2.3", port: 8080 });
  assert.deepEqual(decodeSockaddr(sa.buf, SOCKADDR_IN_SIZE), { family: "IPv4", address: "10.1.2.3", port: 8080 });
  // recvfrom() on a connected stream socket returns addrlen 0 and leaves the buffer as it was.
  assert.throws(() => decodeSockaddr(sa.buf, 0), TypeError);
  assert.throws(() => decodeSockaddr(sa.buf, 4), TypeError);
  const six = encodeSockaddr({ host: "2001:db8::1", port: 1 });
  assert.throws(() => decodeSockaddr(six.buf, 16), TypeError);
  // A length larger than the buffer (the kernel reports the full size of a truncated address) is clamped.
  const un = encodeSockaddr({ path: "/tmp/x" });
  assert.deepEqual(decodeSockaddr(un.buf.subarray(0, 5), 110), { family: "unix", path: "/tm" });
  // AF_UNIX with only the family is an unnamed socket.
  assert.deepEqual(decodeSockaddr(un.buf, 2), { family: "unix", path: "" });
});

Deno.test("IPv6 scope ids: `fe80::1%1` / `%lo` encode `sin6_scope_id`, decode as `%<index>`, and getaddrinfo keeps them", async () => {
  const numeric = encodeSockaddr({ host: "fe80::1%1", port: 80 });
  assert.equal(numeric.family, AF_INET6);
  assert.equal(numeric.len, SOCKADDR_IN6_SIZE);
  const dv = new DataView(numeric.buf.buffer);
  assert.equal(dv.getUint32(24, true), 1, "sin6_scope_id");
  assert.equal(dv.getUint32(4, true), 0, "sin6_flowinfo");
  assert.deepEqual(decodeSockaddr(numeric.buf, numeric.len), { family: "IPv6", address: "fe80::1%1", port: 80 });
  const named = encodeSockaddr({ host: "[fe80::1%lo]", port: 80 });
  assert.equal(new DataView(named.buf.buffer).getUint32(24, true), 1, "lo is interface 1");
  assert.throws(() => encodeSockaddr({ host: "fe80::1%no-such-if0", port: 80 }), TypeError);
  assert.throws(() => encodeSockaddr({ host: "fe80::1%", port: 80 }), TypeError);
  // An address without a scope decodes as before.
  const plain = encodeSockaddr({ host: "::1", port: 80 });
  assert.deepEqual(decodeSockaddr(plain.buf, plain.len), { family: "IPv6", address: "::1", port: 80 });
  assert.deepEqual(await getaddrinfo("fe80::1%lo"), [{ family: "IPv6", address: "fe80::1%1", port: 0 }]);
});

Deno.test("a UDP datagram from an IPv6 sender decodes with its port in network order", () =>
  assertNoFdLeak(() => {
    using fds = new FdScope();
    const rx = fds.add(socket(AF_INET6, SOCK_DGRAM));
    const bound = encodeSockaddr({ host: "::1", port: 0 });
    bind(rx, bound.buf, bound.len, "[::1]:0");
    const port = (getSockName(rx) as { port: number }).port;
    const tx = fds.add(socket(AF_INET6, SOCK_DGRAM));
    const dst = encodeSockaddr({ host: "::1", port });
    assert.equal(sendTo(tx, ONE, dst.buf, dst.len), 1);
    const from = getSockName(tx) as { address: string; port: number };
    const addr = new Uint8Array(128);
    const addrLen = new Uint32Array(1);
    const buf = new Uint8Array(8);
    assert.ok(waitFd(rx, POLLIN) & POLLIN, "the datagram arrived");
    addrLen[0] = addr.byteLength;
    assert.equal(sym.recvfrom(rx, buf, 8, 0, addr, new Uint8Array(addrLen.buffer)), 1);
    assert.equal(addrLen[0], SOCKADDR_IN6_SIZE);
    assert.deepEqual(decodeSockaddr(addr, addrLen[0]), { family: "IPv6", address: "::1", port: from.port });
  }));
