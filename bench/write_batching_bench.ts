/**
 * What gathering small writes is worth: N small chunks handed to the kernel
 * in one call (`sendChunks`, what `Connection`'s flush does with its queue)
 * against one `send` per chunk, against copying the chunks into one buffer
 * and sending that, and against a `writev` over an iovec array, with the
 * pointers taken per call (`fillIovec`: `Deno.UnsafePointer.of` per chunk)
 * and with the iovecs prepared once (the syscall alone).
 *
 *   deno bench --allow-ffi --allow-read --allow-run bench/write_batching_bench.ts
 *
 * Every iteration sends N chunks from one end of a connected pair and drains
 * all N × SIZE bytes from the other end with `read`, synchronously, so the
 * kernel's receive-side cost of many small segments is counted too. The pairs
 * are an `AF_UNIX` socketpair and a loopback TCP connection (Nagle left on, as
 * `Connection` leaves it).
 *
 * The `Connection` groups run the real class on a reactor that is never
 * started (`runOnce(0)` turns it by hand):
 * - on a writable socket every `write()` goes straight to `send` (the fast
 *   path): no batching happens at all;
 * - the queue and its gathered flush only come into play under backpressure.
 *   That is measured in two halves (Deno times one interval per iteration):
 *   queueing N writes behind a full socket, and the flush (`runOnce(0)` →
 *   writable → one `sendmsg`) plus the drain. The socket is filled and the
 *   filler bytes drained outside the timed part.
 *
 * Every call checks its result: a bench that stopped doing the work fails
 * instead of reporting a flattering number.
 *
 * @module
 */

import {
  AF_UNIX,
  close,
  fillIovec,
  IOVEC_SIZE,
  MSG_NOSIGNAL,
  POLLIN,
  read,
  send,
  sendChunks,
  setSockOptInt,
  SO_SNDBUF,
  SOCK_STREAM,
  socketpair,
  SOL_SOCKET,
  WOULD_BLOCK,
  writev,
} from "../ffi/mod.ts";
import { Connection, Reactor } from "../mod.ts";
import { tcpPair, waitFd } from "../tests/_helpers.ts";

/** Chunks per batch (`MAX_GATHER` is 64: one `sendmsg` takes them all). */
const N = 64;
/** Bytes per chunk. */
const SIZE = 128;
const TOTAL = N * SIZE;
// The first few hundred calls of an FFI symbol run unoptimised.
const WARMUP = 2000;

const chunks = Array.from({ length: N }, (_, i) => new Uint8Array(SIZE).fill(0x41 + (i % 26)));
const joined = new Uint8Array(TOTAL);
const iov = new Uint8Array(N * IOVEC_SIZE);
// The chunks never move or change: their iovecs can be written once.
const iovOnce = new Uint8Array(N * IOVEC_SIZE);
fillIovec(iovOnce, chunks, N);
const sink = new Uint8Array(256 * 1024);

function fail(what: string, got: number): never {
  throw new Error(`${what} returned ${got}`);
}

/** Reads exactly `total` bytes from `fd` (waiting with poll when TCP has not delivered yet). */
function drain(fd: number, total: number): void {
  let got = 0;
  while (got < total) {
    const n = read(fd, sink, Math.min(sink.byteLength, total - got));
    if (n === WOULD_BLOCK) {
      if ((waitFd(fd, POLLIN, 1000) & POLLIN) === 0) fail(`drain: read (after ${got} of ${total} bytes)`, n);
      continue;
    }
    if (n === 0) fail("drain: read (end of stream)", n);
    got += n;
  }
}

/** Reads whatever is queued on `fd` until it would block. */
function drainAll(fd: number): number {
  let got = 0;
  for (;;) {
    const n = read(fd, sink);
    if (n === WOULD_BLOCK) return got;
    if (n === 0) fail("drainAll: read (end of stream)", n);
    got += n;
  }
}

const unix = socketpair(AF_UNIX, SOCK_STREAM);
const tcp = tcpPair();
const pairs: { name: string; writer: number; reader: number }[] = [
  { name: "AF_UNIX socketpair", writer: unix[0], reader: unix[1] },
  { name: "TCP loopback", writer: tcp.client, reader: tcp.server },
];

// ---------------------------------------------------------------- ffi: the same bytes three ways

for (const { name, writer, reader } of pairs) {
  const group = `${N} × ${SIZE} B, ffi, ${name}`;

  Deno.bench({
    name: `send() × ${N}`,
    group,
    baseline: true,
    warmup: WARMUP,
    fn() {
      for (let i = 0; i < N; i++) {
        const n = send(writer, chunks[i], SIZE, MSG_NOSIGNAL);
        if (n !== SIZE) fail("send", n);
      }
      drain(reader, TOTAL);
    },
  });

  Deno.bench({
    name: `sendChunks(chunks, 0, ${N}) from ffi/syscalls.ts`,
    group,
    warmup: WARMUP,
    fn() {
      const n = sendChunks(writer, chunks, 0, N, MSG_NOSIGNAL);
      if (n !== TOTAL) fail("sendChunks", n);
      drain(reader, TOTAL);
    },
  });

  Deno.bench({
    name: `fillIovec (UnsafePointer.of × ${N}) + one writev`,
    group,
    warmup: WARMUP,
    fn() {
      fillIovec(iov, chunks, N);
      const n = writev(writer, iov, N);
      if (n !== TOTAL) fail("writev", n);
      drain(reader, TOTAL);
    },
  });

  Deno.bench({
    name: `one writev, iovecs filled once (the syscall alone)`,
    group,
    warmup: WARMUP,
    fn() {
      const n = writev(writer, iovOnce, N);
      if (n !== TOTAL) fail("writev", n);
      drain(reader, TOTAL);
    },
  });

  Deno.bench({
    name: `copy into one buffer + send() × 1`,
    group,
    warmup: WARMUP,
    fn() {
      for (let i = 0; i < N; i++) joined.set(chunks[i], i * SIZE);
      const n = send(writer, joined, TOTAL, MSG_NOSIGNAL);
      if (n !== TOTAL) fail("send", n);
      drain(reader, TOTAL);
    },
  });
}

// ---------------------------------------------------------------- Connection on a reactor that is not running

// The Connection owns its fd and closes it on destroy(): give it its own pairs.
const reactor = new Reactor();
const fastUnix = socketpair(AF_UNIX, SOCK_STREAM);
const fastTcp = tcpPair();
const fastConns = [
  { name: "AF_UNIX socketpair", conn: new Connection(reactor, fastUnix[0]), reader: fastUnix[1] },
  { name: "TCP loopback", conn: new Connection(reactor, fastTcp.client), reader: fastTcp.server },
];

for (const { name, conn, reader } of fastConns) {
  Deno.bench({
    name: `Connection.write() × ${N}, socket writable (each is a send)`,
    group: `${N} × ${SIZE} B, ffi, ${name}`,
    warmup: WARMUP,
    fn() {
      for (let i = 0; i < N; i++) if (!conn.write(chunks[i])) fail("Connection.write", 0);
      if (conn.bufferedAmount !== 0) fail("Connection.bufferedAmount", conn.bufferedAmount);
      drain(reader, TOTAL);
    },
  });
}

// Backpressure: a socketpair whose writer has a small send buffer, so filling it is quick.
const slow = socketpair(AF_UNIX, SOCK_STREAM);
setSockOptInt(slow[0], SOL_SOCKET, SO_SNDBUF, 64 * 1024);
const slowConn = new Connection(reactor, slow[0]);
const slowReader = slow[1];
const filler = new Uint8Array(16 * 1024);

/** Fills the kernel's buffer behind `slowConn` (raw sends on its fd) until it would block. */
function fill(): void {
  for (let i = 0; i < 10_000; i++) {
    if (send(slowConn.fd, filler, filler.byteLength, MSG_NOSIGNAL) === WOULD_BLOCK) return;
  }
  fail("fill: send never blocked", 0);
}

/** Queues N writes behind a full socket; returns with the queue holding TOTAL bytes. */
function queueAll(): void {
  for (let i = 0; i < N; i++) slowConn.write(chunks[i]);
  if (slowConn.bufferedAmount !== TOTAL) fail("Connection.bufferedAmount", slowConn.bufferedAmount);
}

/** Turns the reactor until the queue is flushed. */
function flush(): void {
  for (let i = 0; i < 100 && slowConn.bufferedAmount > 0; i++) reactor.runOnce(0);
  if (slowConn.bufferedAmount !== 0) fail("flush: Connection.bufferedAmount", slowConn.bufferedAmount);
}

const queuedGroup = `${N} × ${SIZE} B, Connection under backpressure, AF_UNIX socketpair`;

Deno.bench({
  name: `Connection.write() × ${N}, socket full (queued)`,
  group: queuedGroup,
  warmup: 200,
  fn(b) {
    fill();
    b.start();
    queueAll();
    b.end();
    drainAll(slowReader);
    flush();
    drain(slowReader, TOTAL);
  },
});

Deno.bench({
  name: `runOnce(0): flush ${N} queued chunks (one sendChunks call) + drain`,
  group: queuedGroup,
  warmup: 200,
  fn(b) {
    fill();
    queueAll();
    drainAll(slowReader);
    b.start();
    flush();
    drain(slowReader, TOTAL);
    b.end();
  },
});

Deno.bench({
  name: `(reference) send() × ${N} + drain, same socket`,
  group: queuedGroup,
  baseline: true,
  warmup: WARMUP,
  fn() {
    for (let i = 0; i < N; i++) {
      const n = send(slowConn.fd, chunks[i], SIZE, MSG_NOSIGNAL);
      if (n !== SIZE) fail("send", n);
    }
    drain(slowReader, TOTAL);
  },
});

addEventListener("unload", () => {
  for (const { conn } of fastConns) conn.destroy();
  slowConn.destroy();
  reactor.runOnce(0); // the close events
  reactor.close();
  for (const fd of [unix[0], unix[1], tcp.client, tcp.server, fastUnix[1], fastTcp.server, slowReader]) close(fd);
});
