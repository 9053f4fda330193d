/**
 * Echo fixtures on the bare `Reactor` and the ffi wrappers, for the reactor
 * tests under load: {@linkcode EchoServer} (accept, read into one reused
 * buffer, write what fits, queue the rest behind a writer, pause reading
 * above a high-water mark) and {@linkcode EchoClients} (non-blocking connects
 * on the same reactor, every echoed byte checked).
 *
 * @module
 */

import {
  accept,
  close,
  connect,
  encodeSockaddr,
  MSG_NOSIGNAL,
  recv,
  send,
  setSockOptInt,
  SHUT_WR,
  shutdown,
  SO_RCVBUF,
  SO_SNDBUF,
  SOCK_STREAM,
  socket,
  socketError,
  SOL_SOCKET,
  WOULD_BLOCK,
} from "../ffi/mod.ts";
import type { Reactor } from "../reactor/mod.ts";
import { tcpListener } from "./_helpers.ts";

interface ServerConn {
  /** Bytes read but not yet written back. */
  queue: Uint8Array[];
  queued: number;
  reading: boolean;
  writing: boolean;
  eof: boolean;
}

/**
 * The smallest honest echo server: accept in a reader on the listener, read
 * each connection into one reused buffer, write back what fits, queue the
 * rest and wait for writability (removing the writer once drained), pause
 * reading above a high-water mark, close after the peer's EOF once drained.
 */
export class EchoServer {
  readonly listener: number;
  readonly port: number;
  readonly conns = new Map<number, ServerConn>();
  accepted = 0;
  closedConns = 0;
  /** Times a write would not fit and the writer was armed. */
  blockedWrites = 0;
  /** Times reading was paused because too much was queued. */
  pauses = 0;
  readonly #buf = new Uint8Array(64 * 1024);

  /**
   * @param sndBuf A small `SO_SNDBUF` for accepted sockets (0: the kernel's
   *   default), so that writes are partial and go through the queue.
   */
  constructor(readonly reactor: Reactor, readonly sndBuf = 0, readonly highWater = 256 * 1024) {
    const l = tcpListener("127.0.0.1", 0, 1024);
    this.listener = l.fd;
    this.port = l.port;
    reactor.addReader(this.listener, this.#onAccept);
  }

  #onAccept = (): void => {
    for (let i = 0; i < 128; i++) {
      const fd = accept(this.listener);
      if (fd === WOULD_BLOCK) return;
      this.accepted++;
      if (this.sndBuf > 0) setSockOptInt(fd, SOL_SOCKET, SO_SNDBUF, this.sndBuf);
      this.conns.set(fd, { queue: [], queued: 0, reading: true, writing: false, eof: false });
      this.reactor.addReader(fd, this.#onReadable);
    }
  };

  #onReadable = (fd: number): void => {
    const c = this.conns.get(fd);
    if (c === undefined) throw new Error(`Event for fd ${fd}, which the echo server does not own`);
    const buf = this.#buf;
    for (;;) {
      const n = recv(fd, buf);
      if (n === WOULD_BLOCK) return;
      if (n === 0) {
        c.eof = true;
        c.reading = false;
        this.reactor.removeReader(fd);
        if (c.queued === 0) this.#drop(fd);
        return;
      }
      let off = 0;
      if (c.queued === 0) {
        const m = send(fd, buf, n, MSG_NOSIGNAL);
        if (m > 0) off = m;
      }
      if (off < n) {
        c.queue.push(buf.slice(off, n));
        c.queued += n - off;
        if (!c.writing) {
          c.writing = true;
          this.blockedWrites++;
          this.reactor.addWriter(fd, this.#onWritable);
        }
        if (c.queued >= this.highWater) {
          c.reading = false;
          this.pauses++;
          this.reactor.removeReader(fd);
          return;
        }
      }
    }
  };

  #onWritable = (fd: number): void => {
    const c = this.conns.get(fd);
    if (c === undefined) throw new Error(`Event for fd ${fd}, which the echo server does not own`);
    while (c.queue.length > 0) {
      const chunk = c.queue[0];
      const m = send(fd, chunk, chunk.byteLength, MSG_NOSIGNAL);
      if (m === WOULD_BLOCK) return;
      c.queued -= m;
      if (m < chunk.byteLength) {
        c.queue[0] = chunk.subarray(m);
        return;
      }
      c.queue.shift();
    }
    c.writing = false;
    this.reactor.removeWriter(fd);
    if (c.eof) {
      this.#drop(fd);
    } else if (!c.reading) {
      c.reading = true;
      this.reactor.addReader(fd, this.#onReadable);
    }
  };

  #drop(fd: number): void {
    this.reactor.removeReader(fd);
    this.reactor.removeWriter(fd);
    this.conns.delete(fd);
    close(fd);
    this.closedConns++;
  }

  close(): void {
    for (const fd of [...this.conns.keys()]) this.#drop(fd);
    this.reactor.removeReader(this.listener);
    close(this.listener);
  }
}

/**
 * Echo clients on the same reactor: each connects without blocking, sends
 * its payload (buffering nothing: it resends from the payload), half-closes,
 * reads the echo and checks every byte, and closes at EOF. At most
 * `maxInFlight` are open at once; `onDone` runs when all have finished.
 */
export class EchoClients {
  started = 0;
  finished = 0;
  bytesVerified = 0;
  readonly failures: string[] = [];
  readonly #scratch = new Uint8Array(64 * 1024);
  readonly #addr: { buf: Uint8Array; len: number; family: number };
  readonly #open = new Map<number, { i: number; payload: Uint8Array; sent: number; received: number }>();

  constructor(
    readonly reactor: Reactor,
    port: number,
    readonly total: number,
    readonly maxInFlight: number,
    readonly payloadFor: (i: number) => Uint8Array,
    readonly onDone: () => void,
    /** A small `SO_RCVBUF` for client `i`, to force the server into partial writes. */
    readonly rcvBufFor: (i: number) => number = () => 0,
  ) {
    this.#addr = encodeSockaddr({ host: "127.0.0.1", port });
  }

  get inFlight(): number {
    return this.#open.size;
  }

  start(): void {
    while (this.started < this.total && this.#open.size < this.maxInFlight) this.#startOne();
  }

  #startOne(): void {
    const i = this.started++;
    const fd = socket(this.#addr.family, SOCK_STREAM);
    const rcv = this.rcvBufFor(i);
    if (rcv > 0) setSockOptInt(fd, SOL_SOCKET, SO_RCVBUF, rcv);
    this.#open.set(fd, { i, payload: this.payloadFor(i), sent: 0, received: 0 });
    connect(fd, this.#addr.buf, this.#addr.len, "the echo server"); // true or in progress: wait for writable
    this.reactor.addWriter(fd, this.#onWritable);
    this.reactor.addReader(fd, this.#onReadable);
  }

  #onWritable = (fd: number): void => {
    const c = this.#open.get(fd);
    if (c === undefined) throw new Error(`Event for fd ${fd}, which no echo client owns`);
    if (c.sent === 0) {
      const err = socketError(fd);
      if (err !== 0) return this.#finish(fd, `client ${c.i}: connect failed with errno ${err}`);
    }
    const p = c.payload;
    while (c.sent < p.byteLength) {
      const m = send(fd, p.subarray(c.sent), p.byteLength - c.sent, MSG_NOSIGNAL);
      if (m === WOULD_BLOCK) return;
      c.sent += m;
    }
    this.reactor.removeWriter(fd);
    shutdown(fd, SHUT_WR);
  };

  #onReadable = (fd: number): void => {
    const c = this.#open.get(fd);
    if (c === undefined) throw new Error(`Event for fd ${fd}, which no echo client owns`);
    const buf = this.#scratch;
    const p = c.payload;
    for (;;) {
      const n = recv(fd, buf);
      if (n === WOULD_BLOCK) return;
      if (n === 0) {
        if (c.received !== p.byteLength) {
          return this.#finish(fd, `client ${c.i}: EOF after ${c.received} of ${p.byteLength} bytes`);
        }
        return this.#finish(fd, null);
      }
      if (c.received + n > p.byteLength) {
        return this.#finish(fd, `client ${c.i}: ${c.received + n} bytes echoed for ${p.byteLength} sent`);
      }
      const base = c.received;
      for (let k = 0; k < n; k++) {
        if (buf[k] !== p[base + k]) {
          return this.#finish(fd, `client ${c.i}: byte ${base + k} is ${buf[k]}, sent ${p[base + k]}`);
        }
      }
      c.received += n;
      this.bytesVerified += n;
    }
  };

  #finish(fd: number, failure: string | null): void {
    if (failure !== null) this.failures.push(failure);
    this.reactor.removeReader(fd);
    this.reactor.removeWriter(fd);
    this.#open.delete(fd);
    close(fd);
    this.finished++;
    if (this.finished === this.total) this.onDone();
    else this.start();
  }

  /** Closes whatever is still open (after a failed run). */
  abort(): void {
    for (const fd of [...this.#open.keys()]) this.#finish(fd, "aborted");
  }
}

/** `size` pseudo-random bytes (xorshift32), so misrouted or shifted data shows. */
export function randomBytes(size: number, seed = 0x9e3779b9): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed | 0;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export const MiB = 1024 * 1024;
export const SOURCE = randomBytes(2 * MiB);

/** Payload `i` of the load test: a distinct window of SOURCE, sizes from 0 bytes to 1 MiB. */
export function loadPayload(i: number): Uint8Array {
  const sizes = [0, 1, 17, 1000, 4096, 65536, 65537, 200_000, 300_001];
  const size = i % 10 === 0 ? MiB : sizes[i % sizes.length];
  const offset = (i * 104_729) % MiB;
  return SOURCE.subarray(offset, offset + size);
}
