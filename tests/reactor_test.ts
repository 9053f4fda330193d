/**
 * Tests of the `Reactor` (I/O registration, running and stopping, errors,
 * stale events, cooperation with Deno's event loop, wake-ups, a TCP echo
 * server under load, fd accounting and metrics), run against every backend.
 *
 * Timers have their own file: `reactor_timers_test.ts`.
 *
 * Every reactor here gets an `onError` hook that records what callbacks
 * throw, because an assertion failing inside a callback would otherwise be
 * reported by the loop and not fail the test; each step checks the record.
 * Every run is bounded by a watchdog, so a bug shows as a failure, not a hang.
 */

import assert from "node:assert/strict";
import {
  accept,
  close,
  connect,
  encodeSockaddr,
  MSG_NOSIGNAL,
  OSError,
  read,
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
  write,
} from "../ffi/mod.ts";
import { type BackendName, EVENT_READ, EVENT_WRITE, Reactor } from "../reactor/mod.ts";
import { assertNoFdLeak, BACKENDS, closedFd, FdScope, openFdCount, openFds, tcpListener } from "./_helpers.ts";
import { assertNoErrors, delay, expectRunToReturn, newReactor, ONE, runBounded, runSyncBounded } from "./_reactor.ts";

// ---------------------------------------------------------------- a TCP echo server on Reactor + ffi

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
class EchoServer {
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
class EchoClients {
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
function randomBytes(size: number, seed = 0x9e3779b9): Uint8Array {
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

const MiB = 1024 * 1024;
const SOURCE = randomBytes(2 * MiB);

/** Payload `i` of the load test: a distinct window of SOURCE, sizes from 0 bytes to 1 MiB. */
function loadPayload(i: number): Uint8Array {
  const sizes = [0, 1, 17, 1000, 4096, 65536, 65537, 200_000, 300_001];
  const size = i % 10 === 0 ? MiB : sizes[i % sizes.length];
  const offset = (i * 104_729) % MiB;
  return SOURCE.subarray(offset, offset + size);
}

// ---------------------------------------------------------------- the suite

function reactorSuite(backend: BackendName): (t: Deno.TestContext) => Promise<void> {
  return async (t) => {
    await t.step(
      "addReader/addWriter on one fd dispatch both; removing one keeps the other",
      () =>
        assertNoFdLeak(() => {
          using fds = new FdScope();
          const { reactor, errors } = newReactor(backend);
          using _ = reactor;
          const base = reactor.selector.size;
          const [a, b] = fds.socketpair();
          const buf = new Uint8Array(16);
          const calls: string[] = [];
          const reader = (fd: number, ev: number) => {
            assert.equal(fd, a);
            assert.ok(ev & EVENT_READ, `reader got events ${ev}`);
            read(fd, buf);
            calls.push("r");
          };
          const writer = (fd: number, ev: number) => {
            assert.equal(fd, a);
            assert.ok(ev & EVENT_WRITE, `writer got events ${ev}`);
            calls.push("w");
          };

          assert.equal(reactor.removeReader(a), false, "nothing registered yet");
          assert.equal(reactor.removeWriter(a), false, "nothing registered yet");
          reactor.addReader(a, reader);
          reactor.addWriter(a, writer);
          assert.equal(reactor.selector.size, base + 1, "one registration per fd");

          write(b, ONE);
          assert.equal(reactor.runOnce(0), 2, "readable and writable: two callbacks");
          assert.deepEqual(calls.splice(0), ["r", "w"]);

          // Not readable any more: only the writer.
          assert.equal(reactor.runOnce(0), 1);
          assert.deepEqual(calls.splice(0), ["w"]);

          assert.equal(reactor.removeWriter(a), true);
          assert.equal(reactor.removeWriter(a), false, "already removed");
          assert.equal(reactor.selector.size, base + 1, "the reader keeps the fd registered");
          write(b, ONE);
          assert.equal(reactor.runOnce(0), 1);
          assert.deepEqual(calls.splice(0), ["r"]);
          assert.equal(reactor.runOnce(0), 0, "drained, and no writer");

          // The other way round: remove the reader, keep the writer.
          reactor.addWriter(a, writer);
          assert.equal(reactor.removeReader(a), true);
          assert.equal(reactor.removeReader(a), false);
          write(b, ONE);
          assert.equal(reactor.runOnce(0), 1);
          assert.deepEqual(calls.splice(0), ["w"], "the removed reader is not called though the fd is readable");

          assert.equal(reactor.removeWriter(a), true);
          assert.equal(reactor.selector.size, base, "no interest left: the fd is unregistered");
          assert.equal(reactor.runOnce(0), 0);
          assert.deepEqual(calls, []);
          assertNoErrors(errors);
        }),
    );

    await t.step("addReader replaces the reader; bad arguments and closed fds are refused", () =>
      assertNoFdLeak(() => {
        using fds = new FdScope();
        const { reactor, errors } = newReactor(backend);
        using _ = reactor;
        const base = reactor.selector.size;
        const [r, w] = fds.pipe();
        const calls: string[] = [];
        reactor.addReader(r, () => calls.push("first"));
        reactor.addReader(r, (fd) => {
          read(fd, new Uint8Array(8));
          calls.push("second");
        });
        write(w, ONE);
        assert.equal(reactor.runOnce(0), 1);
        assert.deepEqual(calls, ["second"]);

        // @ts-expect-error: not a function
        assert.throws(() => reactor.addReader(r, null), TypeError);
        const gone = closedFd();
        assert.throws(() => reactor.addReader(gone, () => {}), (e) => e instanceof OSError && e.code === "EBADF");
        assert.throws(() => reactor.addWriter(gone, () => {}), (e) => e instanceof OSError && e.code === "EBADF");
        assert.equal(reactor.removeReader(gone), false, "a refused registration leaves nothing behind");
        assert.equal(reactor.selector.size, base + 1);
        assert.equal(reactor.removeReader(r), true);
        assertNoErrors(errors);
      }));

    await t.step("a reader is called at end of file and for a hung-up peer", () =>
      assertNoFdLeak(() => {
        using fds = new FdScope();
        const { reactor, errors } = newReactor(backend);
        using _ = reactor;
        const [r, w] = fds.pipe();
        const [a, b] = fds.socketpair();
        const got: number[] = [];
        const buf = new Uint8Array(8);
        const onRead = (fd: number) => {
          got.push(fd, read(fd, buf));
          reactor.removeReader(fd);
        };
        reactor.addReader(r, onRead);
        reactor.addReader(a, onRead);
        fds.close(w);
        fds.close(b);
        assert.equal(reactor.runOnce(1000), 2);
        assert.deepEqual(new Set([`${got[0]}:${got[1]}`, `${got[2]}:${got[3]}`]), new Set([`${r}:0`, `${a}:0`]));
        assertNoErrors(errors);
      }));

    await t.step(
      "runOnce(timeout) returns the number of callbacks dispatched, 0 after a quiet timeout",
      () =>
        assertNoFdLeak(() => {
          using fds = new FdScope();
          const { reactor, errors } = newReactor(backend);
          using _ = reactor;
          const pipes = [fds.pipe(), fds.pipe(), fds.pipe()];
          const buf = new Uint8Array(8);
          for (const [r] of pipes) reactor.addReader(r, (fd) => read(fd, buf));
          assert.equal(reactor.runOnce(0), 0);
          const start = performance.now();
          assert.equal(reactor.runOnce(20), 0);
          assert.ok(performance.now() - start >= 15, "a quiet runOnce(20) waits (timeouts round up, never down)");
          write(pipes[0][1], ONE);
          write(pipes[2][1], ONE);
          assert.equal(reactor.runOnce(1000), 2);
          // A writer counts too: three readers and the writer of a pipe's write end.
          for (const [, w] of pipes) write(w, ONE);
          reactor.addWriter(pipes[1][1], () => {});
          assert.equal(reactor.runOnce(1000), 4);
          assert.equal(reactor.removeWriter(pipes[1][1]), true);
          // A due timer ends a long wait; timers are not counted.
          let fired = false;
          reactor.callLater(5, () => fired = true);
          const t0 = performance.now();
          assert.equal(reactor.runOnce(5000), 0);
          assert.ok(fired, "the timer ran in the same iteration");
          assert.ok(performance.now() - t0 < 4000, "the wait ended when the timer was due");
          assertNoErrors(errors);
        }),
    );

    await t.step(
      'stop() from a callback ends runSync() with "stopped"; the loop can run again',
      () =>
        assertNoFdLeak(() => {
          using fds = new FdScope();
          const { reactor, errors } = newReactor(backend);
          using _ = reactor;
          const [r, w] = fds.pipe();
          let reads = 0;
          reactor.addReader(r, (fd) => {
            read(fd, new Uint8Array(8));
            reads++;
            assert.equal(reactor.running, true);
            reactor.stop();
          });
          write(w, ONE);
          assert.equal(reactor.running, false);
          assert.equal(reactor.runSync(), "stopped");
          assert.equal(reactor.running, false);
          assert.equal(reads, 1);
          write(w, ONE);
          assert.equal(reactor.runSync(), "stopped", "a second run after stop() works");
          assert.equal(reads, 2);
          // stop() from a timer and from callSoon.
          reactor.callLater(5, () => reactor.stop());
          assert.equal(reactor.runSync(), "stopped");
          reactor.callSoon(() => reactor.stop());
          assert.equal(reactor.runSync(), "stopped");
          // runSync() inside a running loop is refused.
          let nested: unknown;
          reactor.callSoon(() => {
            try {
              reactor.runSync();
            } catch (err) {
              nested = err;
            }
            reactor.stop();
          });
          runSyncBounded(reactor, 5000, "nested runSync");
          assert.ok(nested instanceof Error && /already running/.test(nested.message));
          assertNoErrors(errors);
        }),
    );

    await t.step("stop() from a setTimeout ends an idle run() promptly", async () => {
      await assertNoFdLeak(async () => {
        const { reactor, errors } = newReactor(backend);
        using _ = reactor;
        const timer = setTimeout(() => reactor.stop(), 20);
        try {
          await expectRunToReturn(reactor, 5000, "stop() from setTimeout");
        } finally {
          clearTimeout(timer);
        }
        assert.equal(reactor.running, false);
        assert.ok(reactor.metrics.parks >= 1, "the loop parked while idle");
        assertNoErrors(errors);
      });
    });

    await t.step("close() is refused while running, idempotent, and rejects later use", async () => {
      await assertNoFdLeak(async () => {
        const { reactor } = newReactor(backend);
        const running = reactor.run();
        assert.throws(() => reactor.close(), /running/);
        await assert.rejects(reactor.run(), /already running/);
        reactor.stop();
        await running;
        reactor.close();
        reactor.close();
        assert.throws(() => reactor.addReader(0, () => {}), /closed/);
        assert.throws(() => reactor.callLater(1, () => {}), /closed/);
        assert.throws(() => reactor.callSoon(() => {}), /closed/);
        assert.throws(() => reactor.runOnce(0), /closed/);
        await assert.rejects(reactor.run(), /closed/);
      });
    });

    await t.step(
      "a throwing I/O, timer or callSoon callback goes to onError and the loop goes on",
      () =>
        assertNoFdLeak(() => {
          using fds = new FdScope();
          const { reactor, errors } = newReactor(backend);
          using _ = reactor;
          const [r1, w1] = fds.pipe();
          const [r2, w2] = fds.pipe();
          const buf = new Uint8Array(8);
          let good = 0;
          let timers = 0;
          let soons = 0;
          const boom = new Error("boom from a reader");
          reactor.addReader(r1, (fd) => {
            read(fd, buf);
            throw boom;
          });
          reactor.addReader(r2, (fd) => {
            read(fd, buf);
            good++;
          });
          reactor.callLater(0, () => {
            throw new Error("boom from a timer");
          });
          reactor.callLater(0, () => timers++);
          reactor.callSoon(() => {
            throw new Error("boom from callSoon");
          });
          reactor.callSoon(() => soons++);
          write(w1, ONE);
          write(w2, ONE);
          assert.equal(reactor.runOnce(0), 2, "both readers were dispatched");
          assert.equal(good, 1, "the other reader of the batch ran");
          assert.equal(timers, 1, "the next timer ran");
          assert.equal(soons, 1, "the next callSoon ran");
          const contexts = errors.map((e) => e.context);
          assert.deepEqual(contexts, [{ source: "io", fd: r1 }, { source: "timer" }, { source: "callSoon" }]);
          assert.equal(errors[0].error, boom);
          assert.equal(reactor.metrics.errors, 3);

          // Later events still reach both readers, and the thrower keeps its registration.
          errors.length = 0;
          write(w1, ONE);
          write(w2, ONE);
          assert.equal(reactor.runOnce(0), 2);
          assert.equal(good, 2);
          assert.deepEqual(errors.map((e) => e.context), [{ source: "io", fd: r1 }]);

          // A throwing writer, and a run that keeps going after errors until stop().
          errors.length = 0;
          reactor.addWriter(w2, () => {
            reactor.removeWriter(w2);
            throw new Error("boom from a writer");
          });
          let ticks = 0;
          const every = reactor.callEvery(1, () => {
            ticks++;
            if (ticks === 3) reactor.stop();
            throw new Error("boom from a periodic timer");
          });
          runSyncBounded(reactor, 5000, "throwing callbacks");
          every.cancel();
          assert.equal(ticks, 3, "a periodic timer keeps ticking after it throws");
          assert.deepEqual(errors.map((e) => e.context), [
            { source: "io", fd: w2 },
            { source: "timer" },
            { source: "timer" },
            { source: "timer" },
          ]);
          reactor.removeReader(r1);
          reactor.removeReader(r2);
        }),
    );

    await t.step("the default onError logs the error with the fd", () =>
      assertNoFdLeak(() => {
        using fds = new FdScope();
        using reactor = new Reactor({ backend });
        const [r, w] = fds.pipe();
        reactor.addReader(r, (fd) => {
          read(fd, new Uint8Array(8));
          throw new Error("logged boom");
        });
        write(w, ONE);
        const logged: unknown[][] = [];
        const original = console.error;
        console.error = (...args: unknown[]) => void logged.push(args);
        try {
          assert.equal(reactor.runOnce(0), 1);
        } finally {
          console.error = original;
        }
        assert.equal(logged.length, 1);
        assert.match(String(logged[0][0]), new RegExp(`fd ${r}\\b`));
        assert.ok(logged[0].some((x) => x instanceof Error && x.message === "logged boom"));
        reactor.removeReader(r);
      }));

    await t.step(
      "a reader removed and its fd number reused in the same batch gets no stale event",
      () =>
        assertNoFdLeak(() => {
          using fds = new FdScope();
          const { reactor, errors } = newReactor(backend);
          using _ = reactor;
          const [r1, w1] = fds.pipe();
          const [r2, w2] = fds.pipe();
          const buf = new Uint8Array(8);
          const calls: string[] = [];
          let victim = -1;
          let fresh: [number, number] = [-1, -1];
          const old = (fd: number) => {
            calls.push(`old ${fd}`);
            read(fd, buf);
            if (victim !== -1) return;
            // The first of the two to run removes and closes the other, and
            // takes its number at once with a new pipe (the kernel gives the lowest free fd).
            victim = fd === r1 ? r2 : r1;
            assert.equal(reactor.removeReader(victim), true);
            fds.close(victim);
            fresh = fds.pipe();
            reactor.addReader(fresh[0], (fd) => {
              calls.push(`new ${fd}`);
              read(fd, buf);
            });
          };
          reactor.addReader(r1, old);
          reactor.addReader(r2, old);
          write(w1, ONE);
          write(w2, ONE);
          const n = reactor.runOnce(0);
          assertNoErrors(errors);
          assert.equal(fresh[0], victim, "the new pipe reused the closed fd number");
          const first = victim === r2 ? r1 : r2;
          assert.deepEqual(calls, [`old ${first}`], "neither the old reader nor the new one got the old event");
          assert.equal(n, 1);
          // The new fd is not ready: nothing more. Once it is, its own reader runs.
          assert.equal(reactor.runOnce(0), 0);
          write(fresh[1], ONE);
          assert.equal(reactor.runOnce(0), 1);
          assert.deepEqual(calls, [`old ${first}`, `new ${victim}`]);
          reactor.removeReader(first);
          reactor.removeReader(fresh[0]);
          assertNoErrors(errors);
        }),
    );

    await t.step(
      "a writer removed and its fd reused by a ready fd in the same batch gets no stale event",
      () =>
        assertNoFdLeak(() => {
          using fds = new FdScope();
          const { reactor, errors } = newReactor(backend);
          using _ = reactor;
          const [r, w] = fds.pipe();
          const [a, b] = fds.socketpair();
          const calls: string[] = [];
          let fresh: [number, number] = [-1, -1];
          // `a` is writable and, once `b` writes, readable. Whichever of `r`'s reader
          // and `a`'s callbacks runs first decides; make `r`'s reader the only
          // actor: it swaps `a` for a new socket pair, which is writable at once.
          let actor = "";
          const swap = (who: string) => {
            if (actor !== "") return;
            actor = who;
            assert.equal(reactor.removeWriter(a), true);
            assert.equal(reactor.removeReader(a), true);
            fds.close(a);
            fds.close(b);
            fresh = fds.socketpair();
            reactor.addWriter(fresh[0], (fd) => calls.push(`new writer ${fd}`));
          };
          reactor.addReader(r, (fd) => {
            calls.push(`reader ${fd}`);
            read(fd, new Uint8Array(8));
            swap("reader");
          });
          reactor.addReader(a, (fd) => calls.push(`old reader ${fd}`));
          reactor.addWriter(a, (fd) => calls.push(`old writer ${fd}`));
          write(w, ONE);
          write(b, ONE);
          // Run the batch; the old callbacks of `a` may run before `r`'s reader (backend order), but never after it.
          reactor.runOnce(0);
          assertNoErrors(errors);
          assert.equal(actor, "reader");
          const at = calls.indexOf(`reader ${r}`);
          assert.ok(at >= 0);
          assert.deepEqual(calls.slice(at), [`reader ${r}`], `stale calls after the swap: ${calls.join(", ")}`);
          assert.equal(fresh[0], a, "the new socket reused the closed fd number");
          calls.length = 0;
          assert.equal(reactor.runOnce(0), 1);
          assert.deepEqual(calls, [`new writer ${a}`]);
          reactor.removeReader(r);
          reactor.removeWriter(fresh[0]);
          assertNoErrors(errors);
        }),
    );

    await t.step("run() under sustained load lets setInterval tick and promises resolve", async () => {
      await assertNoFdLeak(async () => {
        using fds = new FdScope();
        const { reactor, errors } = newReactor(backend);
        using _ = reactor;
        const [a, b] = fds.socketpair();
        const buf = new Uint8Array(64);
        let rounds = 0;
        // A ping-pong over the socket pair: there is always a ready fd, so the loop never parks.
        reactor.addReader(a, (fd) => {
          const n = read(fd, buf);
          if (n > 0) {
            rounds++;
            write(fd, buf, n);
          }
        });
        reactor.addReader(b, (fd) => {
          const n = read(fd, buf);
          if (n > 0) write(fd, buf, n);
        });
        write(a, ONE);
        let ticks = 0;
        const interval = setInterval(() => ticks++, 5);
        let resolved = 0;
        let promisesDone = false;
        const promises = (async () => {
          while (!promisesDone) {
            await delay(2);
            resolved++;
          }
        })();
        const stopper = setTimeout(() => reactor.stop(), 300);
        try {
          await runBounded(reactor, 10_000, "ping-pong under load");
        } finally {
          clearInterval(interval);
          clearTimeout(stopper);
          promisesDone = true;
          await promises;
        }
        const parks = reactor.metrics.parks;
        // Under load run() yields to Deno every yieldIntervalMs through a real setTimeout(0),
        // serving I/O through parked waits until it fires; an idle park would show in `parks`.
        assert.ok(ticks >= 10, `setInterval(5) ticked ${ticks} times in ~300 ms of load`);
        assert.ok(resolved >= 10, `${resolved} promises resolved in ~300 ms of load`);
        assert.ok(rounds >= 1000, `only ${rounds} ping-pong rounds in ~300 ms`);
        assert.ok(parks <= 5, `the busy loop parked ${parks} times`);
        assert.ok(reactor.metrics.yields >= 5, `run() yielded to Deno only ${reactor.metrics.yields} times`);
        reactor.removeReader(a);
        reactor.removeReader(b);
        assertNoErrors(errors);
      });
    });

    await t.step("run() while idle (parked) lets setInterval tick and promises resolve", async () => {
      await assertNoFdLeak(async () => {
        const { reactor, errors } = newReactor(backend);
        using _ = reactor;
        let ticks = 0;
        const interval = setInterval(() => ticks++, 5);
        let resolved = 0;
        const promises = (async () => {
          for (let i = 0; i < 20; i++) {
            await delay(2);
            resolved++;
          }
        })();
        const far = reactor.callLater(60_000, () => {});
        const stopper = setTimeout(() => reactor.stop(), 200);
        try {
          await runBounded(reactor, 10_000, "idle run");
        } finally {
          clearInterval(interval);
          clearTimeout(stopper);
          far.cancel();
          await promises;
        }
        assert.ok(ticks >= 10, `setInterval(5) ticked ${ticks} times in ~200 ms of idle run()`);
        assert.equal(resolved, 20);
        assert.ok(reactor.metrics.parks >= 1);
        assertNoErrors(errors);
      });
    });

    await t.step("run() parked with nothing to do wakes up for callSoon, callLater and addReader", async () => {
      await assertNoFdLeak(async () => {
        using fds = new FdScope();
        const { reactor, errors } = newReactor(backend);
        using _ = reactor;
        const timers: ReturnType<typeof setTimeout>[] = [];
        const later = (ms: number, fn: () => void) => timers.push(setTimeout(fn, ms));
        try {
          // callSoon from a Deno timer.
          let ran = "";
          later(30, () => reactor.callSoon(() => (ran = "soon", reactor.stop())));
          await expectRunToReturn(reactor, 3000, "callSoon while parked");
          assert.equal(ran, "soon");

          // callLater(0) and callLater(10) from a Deno timer.
          later(30, () => reactor.callLater(0, () => (ran = "later0", reactor.stop())));
          await expectRunToReturn(reactor, 3000, "callLater(0) while parked");
          assert.equal(ran, "later0");
          later(30, () => reactor.callLater(10, () => (ran = "later10", reactor.stop())));
          await expectRunToReturn(reactor, 3000, "callLater(10) while parked");
          assert.equal(ran, "later10");

          // addReader for an fd that is already readable.
          const [r1, w1] = fds.pipe();
          write(w1, ONE);
          later(30, () =>
            reactor.addReader(r1, (fd) => {
              read(fd, new Uint8Array(8));
              ran = `reader ${fd}`;
              reactor.stop();
            }));
          await expectRunToReturn(reactor, 3000, "addReader (ready fd) while parked");
          assert.equal(ran, `reader ${r1}`);
          reactor.removeReader(r1);

          // addReader for an fd that becomes readable later: the parked wait must watch it.
          const [r2, w2] = fds.pipe();
          later(20, () =>
            reactor.addReader(r2, (fd) => {
              read(fd, new Uint8Array(8));
              ran = `reader ${fd}`;
              reactor.stop();
            }));
          later(80, () => write(w2, ONE));
          await expectRunToReturn(reactor, 3000, "addReader (later ready) while parked");
          assert.equal(ran, `reader ${r2}`);
          reactor.removeReader(r2);

          // removeReader while parked: a later write must not call the removed reader.
          const [r3, w3] = fds.pipe();
          let removedCalls = 0;
          reactor.addReader(r3, () => removedCalls++);
          later(20, () => reactor.removeReader(r3));
          later(60, () => write(w3, ONE));
          later(150, () => reactor.stop());
          await expectRunToReturn(reactor, 3000, "removeReader while parked");
          assert.equal(removedCalls, 0);
        } finally {
          for (const id of timers) clearTimeout(id);
        }
        assertNoErrors(errors);
      });
    });

    await t.step(
      "echo: 200 concurrent TCP clients, payloads up to 1 MiB, every byte checked",
      () =>
        assertNoFdLeak(() => {
          const { reactor, errors } = newReactor(backend);
          using _ = reactor;
          // Small socket buffers on both sides, so that the server's writes are partial and wait for writability.
          const server = new EchoServer(reactor, 16 * 1024);
          const total = 200;
          const clients = new EchoClients(
            reactor,
            server.port,
            total,
            total,
            loadPayload,
            () => reactor.stop(),
            // The 1 MiB clients read through a small window.
            (i) => (i % 10 === 0 ? 16 * 1024 : 0),
          );
          clients.start();
          assert.equal(clients.inFlight, total, "all clients connect at once");
          try {
            runSyncBounded(reactor, 30_000, "200-client echo");
          } finally {
            clients.abort();
            server.close();
          }
          assertNoErrors(errors);
          assert.deepEqual(clients.failures, []);
          assert.equal(clients.finished, total);
          assert.equal(server.accepted, total);
          assert.equal(server.closedConns, total);
          let expected = 0;
          for (let i = 0; i < total; i++) expected += loadPayload(i).byteLength;
          assert.equal(clients.bytesVerified, expected);
          assert.ok(server.blockedWrites > 0, "some server writes were partial and waited for writability");
        }),
    );

    await t.step("1,000 connections through the echo server leave no fd behind, nor does close()", async () => {
      const before = openFdCount();
      const { reactor, errors } = newReactor(backend);
      const server = new EchoServer(reactor);
      const baseline = openFds();
      const total = 1000;
      const clients = new EchoClients(
        reactor,
        server.port,
        total,
        100,
        (i) => SOURCE.subarray(i, i + 1 + ((i * 37) % 3000)),
        () => reactor.stop(),
      );
      clients.start();
      try {
        await runBounded(reactor, 30_000, "1,000 connections");
      } finally {
        clients.abort();
      }
      assertNoErrors(errors);
      assert.deepEqual(clients.failures, []);
      assert.equal(clients.finished, total);
      assert.equal(server.accepted, total);
      assert.equal(server.conns.size, 0);
      const after = openFds();
      assert.deepEqual(
        [...after.keys()].filter((fd) => !baseline.has(fd)),
        [],
        "fds opened during the run are all closed",
      );
      assert.equal(after.size, baseline.size);
      server.close();
      reactor.close();
      assert.equal(openFdCount(), before, "reactor.close() released the selector and the wake-up eventfd");
    });

    await t.step("metrics count iterations, events, timers, callbacks, errors, parks and blocked time", async () => {
      await assertNoFdLeak(async () => {
        using fds = new FdScope();
        const { reactor, errors } = newReactor(backend);
        using _ = reactor;
        const m0 = reactor.metrics;
        assert.deepEqual(m0, {
          iterations: 0,
          events: 0,
          timersFired: 0,
          callbacks: 0,
          errors: 0,
          blockedMs: 0,
          parks: 0,
          yields: 0,
        });
        const [r, w] = fds.pipe();
        reactor.addReader(r, (fd) => read(fd, new Uint8Array(8)));
        write(w, ONE);
        reactor.callLater(0, () => {});
        reactor.callSoon(() => {});
        reactor.callSoon(() => {
          throw new Error("counted");
        });
        assert.equal(reactor.runOnce(0), 1);
        const m1 = reactor.metrics;
        assert.equal(m1.iterations, 1);
        assert.equal(m1.events, 1);
        assert.equal(m1.timersFired, 1);
        assert.equal(m1.callbacks, 2);
        assert.equal(m1.errors, 1);
        assert.equal(m1.blockedMs, 0, "a zero-timeout poll is not blocking");
        assert.equal(errors.length, 1);
        errors.length = 0;

        reactor.runOnce(15);
        const m2 = reactor.metrics;
        assert.equal(m2.iterations, 2);
        assert.ok(m2.blockedMs >= 10, `blockedMs ${m2.blockedMs} after a 15 ms quiet wait`);

        const timer = setTimeout(() => reactor.stop(), 30);
        try {
          await runBounded(reactor, 5000, "metrics park", false);
        } finally {
          clearTimeout(timer);
        }
        const m3 = reactor.metrics;
        assert.ok(m3.parks >= 1);
        assert.ok(m3.iterations > m2.iterations);
        assert.ok(m3.blockedMs > m2.blockedMs + 10, "parked time counts as blocked");
        const snapshot = reactor.metrics;
        snapshot.events = 1e9;
        assert.notEqual(reactor.metrics.events, 1e9, "metrics is a snapshot");
        reactor.removeReader(r);
        assertNoErrors(errors);
      });
    });
  };
}

for (const backend of BACKENDS) {
  Deno.test(`\`Reactor\` (${backend}) dispatches I/O, stops, reports errors, cooperates and echoes TCP`, {
    sanitizeOps: true,
    sanitizeResources: true,
  }, reactorSuite(backend));
}
