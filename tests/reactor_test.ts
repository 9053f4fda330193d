/**
 * Tests of the `Reactor`'s core: I/O registration and dispatch, what
 * `runOnce()` returns, stopping and closing, callback errors, stale events
 * in a batch, a TCP echo server under load, fd accounting and metrics. Each
 * test runs once per backend (epoll, poll, select).
 *
 * Running cooperatively (`run()`, parking, yielding to Deno) is tested in
 * `reactor_run_test.ts`; timers in `reactor_timers_test.ts`.
 *
 * Every test gets a fresh reactor from {@linkcode testEveryBackend}: its
 * `onError` records what callbacks throw (an assertion failing inside a
 * callback lands there, not in the test), and the harness fails the test if
 * any error is left, or if the process's fd count changed.
 */

import assert from "node:assert/strict";
import { OSError, read, write } from "../ffi/mod.ts";
import { EVENT_READ, EVENT_WRITE, Reactor } from "../reactor/mod.ts";
import { closedFd, openFds } from "./_helpers.ts";
import { EchoClients, EchoServer, loadPayload, SOURCE } from "./_echo.ts";
import { delay, ONE, runBounded, runSyncBounded, testEveryBackend, waitFor } from "./_reactor.ts";

// ---------------------------------------------------------------- registration and dispatch

testEveryBackend(
  "`Reactor.addReader()` and `addWriter()` on one fd dispatch both; removing one keeps the other",
  ({ reactor, fds }) => {
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
  },
);

testEveryBackend("`Reactor.addReader()` on a watched fd replaces its reader", ({ reactor, fds }) => {
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
  assert.equal(reactor.removeReader(r), true);
});

testEveryBackend(
  "`Reactor.addReader()` refuses a non-function and a closed fd, and leaves nothing registered",
  ({ reactor, fds }) => {
    const base = reactor.selector.size;
    const [r] = fds.pipe();
    // @ts-expect-error: not a function
    assert.throws(() => reactor.addReader(r, null), TypeError);
    // @ts-expect-error: not a function
    assert.throws(() => reactor.addWriter(r, "nope"), TypeError);
    assert.equal(reactor.selector.size, base);
    const gone = closedFd();
    assert.throws(() => reactor.addReader(gone, () => {}), (e) => e instanceof OSError && e.code === "EBADF");
    assert.throws(() => reactor.addWriter(gone, () => {}), (e) => e instanceof OSError && e.code === "EBADF");
    assert.equal(reactor.removeReader(gone), false, "a refused registration leaves nothing behind");
    assert.equal(reactor.selector.size, base);
  },
);

testEveryBackend("`Reactor` calls a reader at end of file and for a hung-up peer", ({ reactor, fds }) => {
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
});

// ---------------------------------------------------------------- runOnce()

testEveryBackend(
  "`Reactor.runOnce()` returns the number of I/O callbacks dispatched, readers and writers, not timers",
  ({ reactor, fds }) => {
    const pipes = [fds.pipe(), fds.pipe(), fds.pipe()];
    const buf = new Uint8Array(8);
    for (const [r] of pipes) reactor.addReader(r, (fd) => read(fd, buf));
    assert.equal(reactor.runOnce(0), 0);
    write(pipes[0][1], ONE);
    write(pipes[2][1], ONE);
    assert.equal(reactor.runOnce(1000), 2);
    // A writer counts too: three readers and the writer of a pipe's write end.
    for (const [, w] of pipes) write(w, ONE);
    reactor.addWriter(pipes[1][1], () => {});
    assert.equal(reactor.runOnce(1000), 4);
    assert.equal(reactor.removeWriter(pipes[1][1]), true);
    // A due timer runs in the iteration but is not counted.
    let fired = false;
    reactor.callLater(0, () => fired = true);
    assert.equal(reactor.runOnce(0), 0);
    assert.ok(fired);
  },
);

testEveryBackend(
  "`Reactor.runOnce(20)` with nothing ready waits at least the timeout, then returns 0",
  ({ reactor, fds }) => {
    // Real clock on purpose: the wait is what is tested. A lower bound only: a slow machine waits longer, not less.
    const [r] = fds.pipe();
    reactor.addReader(r, () => {});
    const start = performance.now();
    assert.equal(reactor.runOnce(20), 0);
    const elapsed = performance.now() - start;
    assert.ok(elapsed >= 15, `a quiet runOnce(20) returned after ${elapsed.toFixed(2)} ms (timeouts round up)`);
  },
);

testEveryBackend(
  "`Reactor.runOnce(5000)` returns when a timer falls due, and runs it in the same iteration",
  ({ reactor }) => {
    // Real clock on purpose: the wait must end at the timer's due time. The bound
    // (under 4 s for a 5 ms timer) leaves seconds of slack for a loaded machine.
    let fired = false;
    reactor.callLater(5, () => fired = true);
    const t0 = performance.now();
    assert.equal(reactor.runOnce(5000), 0);
    assert.ok(fired, "the timer ran in the same iteration");
    assert.ok(performance.now() - t0 < 4000, "the wait ended when the timer was due");
  },
);

// ---------------------------------------------------------------- stop() and close()

testEveryBackend(
  '`Reactor.stop()` from a reader ends `runSync()` with "stopped"; the loop can run again',
  ({ reactor, fds }) => {
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
  },
);

testEveryBackend(
  '`Reactor.stop()` from a timer or a `callSoon` callback ends `runSync()` with "stopped"',
  ({ reactor }) => {
    reactor.callLater(5, () => reactor.stop());
    assert.equal(reactor.runSync(), "stopped");
    reactor.callSoon(() => reactor.stop());
    assert.equal(reactor.runSync(), "stopped");
    assert.equal(reactor.metrics.timersFired, 1);
    assert.equal(reactor.metrics.callbacks, 1);
  },
);

testEveryBackend("`Reactor.stop()` before `runSync()` makes it return at once", ({ reactor }) => {
  reactor.stop();
  assert.equal(reactor.runSync(), "stopped");
  assert.equal(reactor.metrics.iterations, 0);
  // The request is used up: the next run goes on until stopped again.
  reactor.callSoon(() => reactor.stop());
  assert.equal(reactor.runSync(), "stopped");
  assert.equal(reactor.metrics.callbacks, 1);
});

testEveryBackend("`Reactor.runSync()` inside a running loop is refused", ({ reactor }) => {
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
  assert.ok(nested instanceof Error && /already running/.test(nested.message), String(nested));
});

testEveryBackend(
  "`Reactor.close()` runs the `callSoon` callbacks still pending as microtasks, and drops the timers",
  async ({ reactor, errors }) => {
    const ran: string[] = [];
    reactor.callSoon(() => ran.push("soon"));
    reactor.callSoon(() => {
      throw new Error("thrown after close");
    });
    reactor.callSoon(() => ran.push("cancelled")).cancel();
    reactor.callLater(0, () => ran.push("timer"));
    reactor.close();
    assert.deepEqual(ran, [], "not during close()");
    await null; // the microtasks close() queued run before this continuation
    assert.deepEqual(ran, ["soon"]);
    assert.deepEqual(errors.map((e) => [e.context.source, (e.error as Error).message]), [
      ["callSoon", "thrown after close"],
    ]);
    errors.length = 0;
  },
);

testEveryBackend(
  "`Reactor.close()` is refused while running, idempotent, and later use throws",
  async ({ reactor }) => {
    const running = reactor.run();
    assert.throws(() => reactor.close(), /running/);
    await assert.rejects(reactor.run(), /already running/);
    reactor.stop();
    await running;
    assert.equal(reactor.closed, false);
    reactor.close();
    reactor.close();
    assert.equal(reactor.closed, true);
    assert.throws(() => reactor.addReader(0, () => {}), /closed/);
    assert.throws(() => reactor.callLater(1, () => {}), /closed/);
    assert.throws(() => reactor.callSoon(() => {}), /closed/);
    assert.throws(() => reactor.runOnce(0), /closed/);
    assert.throws(() => reactor.runSync(), /closed/);
    await assert.rejects(reactor.run(), /closed/);
  },
);

// ---------------------------------------------------------------- errors

testEveryBackend(
  "`Reactor` hands a throwing I/O, timer or `callSoon` callback to `onError` and runs the rest of the batch",
  ({ reactor, errors, fds }) => {
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
    errors.length = 0;
  },
);

testEveryBackend(
  "`Reactor` keeps the registration of a reader that threw, and later events reach it",
  ({ reactor, errors, fds }) => {
    const [r1, w1] = fds.pipe();
    const [r2, w2] = fds.pipe();
    const buf = new Uint8Array(8);
    let thrower = 0;
    let good = 0;
    reactor.addReader(r1, (fd) => {
      read(fd, buf);
      thrower++;
      throw new Error("boom from a reader");
    });
    reactor.addReader(r2, (fd) => {
      read(fd, buf);
      good++;
    });
    for (let round = 1; round <= 2; round++) {
      write(w1, ONE);
      write(w2, ONE);
      assert.equal(reactor.runOnce(0), 2);
      assert.equal(thrower, round);
      assert.equal(good, round);
    }
    assert.deepEqual(errors.map((e) => e.context), [{ source: "io", fd: r1 }, { source: "io", fd: r1 }]);
    errors.length = 0;
  },
);

testEveryBackend(
  "`Reactor.runSync()` goes on after a writer and a periodic timer throw, until stopped",
  ({ reactor, errors, fds }) => {
    const [, w] = fds.pipe();
    reactor.addWriter(w, () => {
      reactor.removeWriter(w);
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
      { source: "io", fd: w },
      { source: "timer" },
      { source: "timer" },
      { source: "timer" },
    ]);
    errors.length = 0;
  },
);

testEveryBackend("the default `onError` logs an uncaught exception with the fd", ({ fds, backend }) => {
  const [r, w] = fds.pipe();
  using reactor = new Reactor({ backend });
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
  assert.equal(reactor.metrics.errors, 1);
  reactor.removeReader(r);
});

// ---------------------------------------------------------------- stale events

testEveryBackend(
  "`Reactor` gives no stale event to a reader removed, nor to the new fd that reused its number, in the same batch",
  ({ reactor, fds }) => {
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
  },
);

testEveryBackend(
  "`Reactor` gives no stale event to a writer removed, nor to the ready fd that reused its number, in the same batch",
  ({ reactor, fds }) => {
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
  },
);

// ---------------------------------------------------------------- a TCP echo server under load

testEveryBackend(
  "`Reactor` serves 200 concurrent TCP echo clients, payloads up to 1 MiB, every byte checked",
  ({ reactor }) => {
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
    assert.deepEqual(clients.failures, []);
    assert.equal(clients.finished, total);
    assert.equal(server.accepted, total);
    assert.equal(server.closedConns, total);
    let expected = 0;
    for (let i = 0; i < total; i++) expected += loadPayload(i).byteLength;
    assert.equal(clients.bytesVerified, expected);
    assert.ok(server.blockedWrites > 0, "some server writes were partial and waited for writability");
  },
);

testEveryBackend(
  "`Reactor` leaves no fd behind after 1,000 connections through the echo server (nor after `close()`)",
  async ({ reactor }) => {
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
    // The harness counts the process's fds around the whole test: reactor.close() must release
    // the selector and the wake-up eventfd too.
  },
);

// ---------------------------------------------------------------- metrics

testEveryBackend(
  "`Reactor.metrics` counts iterations, I/O events, timers, callbacks and errors",
  ({ reactor, errors, fds }) => {
    assert.deepEqual(reactor.metrics, {
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
    for (let i = 0; i < 5; i++) reactor.runOnce(0);
    assert.equal(reactor.metrics.iterations, 6, "one iteration per runOnce(), with or without work");
    reactor.removeReader(r);
  },
);

testEveryBackend("`Reactor.metrics` is a snapshot", ({ reactor }) => {
  const snapshot = reactor.metrics;
  snapshot.events = 1e9;
  assert.notEqual(reactor.metrics.events, 1e9);
});

testEveryBackend(
  "`Reactor.metrics.blockedMs` counts blocking waits and parked time, in real milliseconds",
  async ({ reactor }) => {
    // Real clock on purpose: blockedMs measures real waiting. Only lower bounds are asserted,
    // which a slow or loaded machine can only exceed.
    reactor.runOnce(15);
    const m1 = reactor.metrics;
    assert.equal(m1.iterations, 1);
    assert.ok(m1.blockedMs >= 10, `blockedMs ${m1.blockedMs} after a 15 ms quiet wait`);

    // Idle run(): wait until the loop has parked, then stop it 30 ms (real) later.
    const running = runBounded(reactor, 5000, "metrics park", false);
    await waitFor(() => reactor.metrics.parks >= 1, "the idle loop to park");
    await delay(30);
    reactor.stop();
    await running;
    const m2 = reactor.metrics;
    assert.ok(m2.iterations > m1.iterations);
    assert.ok(
      m2.blockedMs - m1.blockedMs >= 25,
      `parked time counts as blocked: ${(m2.blockedMs - m1.blockedMs).toFixed(2)} ms for a park of at least 30 ms`,
    );
  },
);
