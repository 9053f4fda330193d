/**
 * Tests of the `Reactor`'s timers (`callLater`, `callAt`, `callEvery`,
 * `callSoon`, cancellation, the loop's clock) on every backend, and of the
 * `TimerHeap` itself.
 *
 * Timers are tested on a substituted clock, like std's `FakeTime`: the test
 * moves a {@linkcode FakeClock} and calls `runOnce(0)`, so due times are
 * exact and nothing waits in real time. A few tests keep the real clock
 * because real waiting is what they test (each says so); they assert lower
 * bounds, or upper bounds with seconds of slack.
 */

import assert from "node:assert/strict";
import { read, write } from "../ffi/mod.ts";
import type { TimerHandle } from "../reactor/mod.ts";
import { Timer, TimerHeap } from "../reactor/timers.ts";
import { delay, ONE, reactorTest, runSyncBounded, testEveryBackend, waitFor } from "./_reactor.ts";

const fake = { fakeClock: true };

// ---------------------------------------------------------------- on a fake clock

testEveryBackend(
  "`Reactor` on a substituted clock fires timers in order without real waiting: 10 minutes in well under a second",
  ({ reactor, clock }) => {
    const MINUTE = 60_000;
    const start = reactor.time();
    assert.equal(start, clock.now, "time() reads the substituted clock");
    const fired: string[] = [];
    const at = (name: string) => () => fired.push(`${name} at ${(reactor.time() - start) / 1000} s`);
    reactor.callLater(10 * MINUTE, at("10 min"));
    reactor.callLater(MINUTE, at("1 min"));
    reactor.callAt(start + 9.5 * MINUTE, at("9.5 min"));
    reactor.callLater(30_000, at("30 s"));
    const every = reactor.callEvery(3 * MINUTE, at("every 3 min"));
    const realStart = performance.now();
    clock.runFor(reactor, 10 * MINUTE, 1000); // 600 turns, one fake second each
    const realMs = performance.now() - realStart;
    every.cancel();
    assert.deepEqual(fired, [
      "30 s at 30 s",
      "1 min at 60 s",
      "every 3 min at 180 s",
      "every 3 min at 360 s",
      "every 3 min at 540 s",
      "9.5 min at 570 s",
      "10 min at 600 s",
    ]);
    assert.equal(reactor.metrics.blockedMs, 0, "no wait blocked");
    // A proof, not a race: real waiting would take 10 minutes; 600 zero-timeout turns take milliseconds.
    assert.ok(realMs < 1000, `10 fake minutes took ${realMs.toFixed(0)} real ms`);
  },
  fake,
);

testEveryBackend(
  "`Reactor.callLater()` runs timers in due order, on time and never early; negative delays count as 0",
  ({ reactor, clock }) => {
    const start = reactor.time();
    const fired: string[] = [];
    const track = (name: string, delay: number) => {
      const handle: TimerHandle = reactor.callLater(delay, () => {
        // Stepping 1 ms at a time, a timer must run in the first turn at or after its due time.
        const late = reactor.time() - handle.when;
        fired.push(late >= 0 && late < 1 ? name : `${name} (${late} ms late)`);
      });
      assert.equal(handle.when, start + Math.max(0, delay));
    };
    track("30", 30);
    track("10a", 10);
    track("20", 20);
    track("10b", 10);
    track("0", 0);
    track("-5", -5);
    assert.equal(reactor.runOnce(0), 0);
    assert.deepEqual(fired, ["0", "-5"], "due now: the first turn runs them");
    clock.runFor(reactor, 9);
    assert.deepEqual(fired, ["0", "-5"], "nothing is due before 10 ms");
    clock.runFor(reactor, 31);
    assert.deepEqual(fired, ["0", "-5", "10a", "10b", "20", "30"]);
  },
  fake,
);

testEveryBackend(
  "`Reactor.callAt()` timers due at the same time run in scheduling order",
  ({ reactor, clock }) => {
    const order: number[] = [];
    const when = reactor.time() + 5;
    for (let i = 0; i < 50; i++) reactor.callAt(when, () => order.push(i));
    // Scheduled later but due earlier: these run first, also in scheduling order.
    for (let i = 100; i < 105; i++) reactor.callAt(when - 1, () => order.push(i));
    clock.advance(5);
    reactor.runOnce(0);
    assert.deepEqual(order, [100, 101, 102, 103, 104, ...Array.from({ length: 50 }, (_, i) => i)]);
  },
  fake,
);

testEveryBackend("`Reactor.callAt()` in the past runs on the next iteration", ({ reactor }) => {
  let ran = 0;
  reactor.callAt(reactor.time() - 1000, () => ran++);
  assert.equal(reactor.runOnce(0), 0);
  assert.equal(ran, 1);
}, fake);

testEveryBackend("`Reactor.callAt()`, `callLater()` and `callEvery()` refuse bad arguments", ({ reactor }) => {
  assert.throws(() => reactor.callAt(NaN, () => {}), RangeError);
  assert.throws(() => reactor.callLater(NaN, () => {}), RangeError);
  assert.throws(() => reactor.callEvery(0, () => {}), RangeError);
  assert.throws(() => reactor.callEvery(0.5, () => {}), RangeError);
  assert.throws(() => reactor.callEvery(NaN, () => {}), RangeError);
  // @ts-expect-error: not a function
  assert.throws(() => reactor.callLater(1, "nope"), TypeError);
  // @ts-expect-error: not a function
  assert.throws(() => reactor.callEvery(1, undefined), TypeError);
  assert.equal(reactor.runOnce(0), 0);
  assert.equal(reactor.metrics.timersFired, 0, "nothing refused was scheduled");
});

testEveryBackend(
  "`Reactor.time()` in a callback is its iteration's time; elsewhere it reads the clock afresh",
  ({ reactor, clock }) => {
    const t0 = clock.now;
    assert.equal(reactor.time(), t0);
    clock.advance(7);
    assert.equal(reactor.time(), t0 + 7, "outside callbacks: a fresh read");
    const seen: number[] = [];
    let later: TimerHandle | undefined;
    reactor.callSoon(() => {
      seen.push(reactor.time());
      clock.advance(500); // time passes while callbacks run...
      seen.push(reactor.time()); // ...but the iteration's time stands
      later = reactor.callLater(10, () => seen.push(reactor.time()));
    });
    reactor.runOnce(0);
    assert.deepEqual(seen, [t0 + 7, t0 + 7]);
    assert.equal(later!.when, t0 + 17, "callLater(d) in a callback is due d ms after the iteration's time");
    assert.equal(reactor.time(), t0 + 507);
    reactor.runOnce(0);
    assert.deepEqual(seen, [t0 + 7, t0 + 7, t0 + 507], "due long ago by the clock: runs on the next turn");
  },
  fake,
);

testEveryBackend(
  "`Reactor` reads its clock again after a blocking wait: a timer due by then runs in that iteration",
  ({ reactor, clock }) => {
    const t0 = clock.now;
    let fired = 0;
    reactor.callLater(50, () => fired++);
    clock.autoAdvanceMs = 100; // from now on, each read of the clock moves it 100 ms on
    // A zero-timeout poll does not block: the loop keeps the time it read before it.
    reactor.runOnce(0);
    assert.equal(fired, 0, "not due at the time read before the poll");
    // Back to 50 ms before the timer. A wait that may block (10 real ms here: runOnce's limit, below
    // the timer's 50) reads the clock again when it returns, 100 ms later: the timer runs now.
    clock.now = t0;
    reactor.runOnce(10);
    assert.equal(fired, 1, "due by the read after the wait: ran in the same iteration");
  },
  fake,
);

testEveryBackend(
  "`Reactor.callEvery()` repeats on schedule until cancelled, from inside or from outside",
  ({ reactor, clock }) => {
    const start = reactor.time();
    const ticksA: number[] = [];
    const a: TimerHandle = reactor.callEvery(2, () => {
      ticksA.push(reactor.time() - start);
      if (ticksA.length === 5) a.cancel();
    });
    let b = 0;
    let bAtCancel = -1;
    const hb = reactor.callEvery(3, () => b++);
    reactor.callLater(40, () => {
      hb.cancel();
      bAtCancel = b;
    });
    clock.runFor(reactor, 80);
    assert.deepEqual(ticksA, [2, 4, 6, 8, 10], "cancelled from its own callback after 5 ticks, each on time");
    assert.ok(a.cancelled && hb.cancelled);
    assert.equal(bAtCancel, 13, "a 3 ms interval ticks 13 times in 40 ms");
    assert.equal(b, bAtCancel, "no tick after cancel()");
    assert.equal(reactor.metrics.timersFired, 5 + 13 + 1, "each periodic tick counts");
  },
  fake,
);

testEveryBackend(
  "`TimerHandle.cancel()`: a cancelled timer or `callSoon` never runs; cancelling twice or after running is harmless",
  ({ reactor, clock }) => {
    const ran: string[] = [];
    const h = reactor.callLater(5, () => ran.push("cancelled early"));
    h.cancel();
    h.cancel();
    assert.equal(h.cancelled, true);
    const once = reactor.callLater(1, () => ran.push("once"));
    assert.equal(once.cancelled, false);
    // Cancelled by a timer due at the same time, earlier in the same batch.
    const when = reactor.time() + 10;
    let victim: TimerHandle | null = null;
    reactor.callAt(when, () => victim!.cancel());
    victim = reactor.callAt(when, () => ran.push("victim"));
    const soon = reactor.callSoon(() => ran.push("soon"));
    soon.cancel();
    clock.runFor(reactor, 30);
    assert.deepEqual(ran, ["once"]);
    assert.equal(once.cancelled, true, "a one-shot timer counts as cancelled once it ran");
    once.cancel();
    assert.equal(reactor.metrics.callbacks, 0, "the cancelled callSoon did not run");
  },
  fake,
);

testEveryBackend(
  "`Reactor` still fires the live timers in order after thousands are cancelled (heap compaction)",
  ({ reactor, clock }) => {
    const N = 5000;
    const base = reactor.time() + 5;
    const offsetOf = (i: number) => (i * 7919) % 40;
    const handles: TimerHandle[] = [];
    const fired: number[] = [];
    for (let i = 0; i < N; i++) handles.push(reactor.callAt(base + offsetOf(i), () => fired.push(i)));
    // Cancel 90 %, then, from the first live timer to run, 25 more live ones due later.
    for (let i = 0; i < N; i++) if (i % 10 !== 0) handles[i].cancel();
    const lateVictims = new Set<number>();
    for (let i = 0; i < N && lateVictims.size < 25; i += 10) if (offsetOf(i) >= 30) lateVictims.add(i);
    reactor.callAt(base - 1, () => {
      for (const i of lateVictims) handles[i].cancel();
    });
    clock.runFor(reactor, 50);
    const expected = Array.from({ length: N }, (_, i) => i)
      .filter((i) => i % 10 === 0 && !lateVictims.has(i))
      .sort((x, y) => offsetOf(x) - offsetOf(y) || x - y);
    assert.equal(fired.length, expected.length);
    assert.deepEqual(fired, expected);
  },
  fake,
);

// ---------------------------------------------------------------- order within an iteration

testEveryBackend(
  "`Reactor.callLater(0)` runs after the I/O of the same turn, and before `callSoon`",
  ({ reactor, fds }) => {
    const [r, w] = fds.pipe();
    const order: string[] = [];
    reactor.callSoon(() => order.push("soon"));
    reactor.callLater(0, () => order.push("timer"));
    reactor.addReader(r, (fd) => {
      read(fd, new Uint8Array(8));
      order.push("io");
    });
    write(w, ONE);
    assert.equal(reactor.runOnce(0), 1);
    assert.deepEqual(order, ["io", "timer", "soon"]);
    assert.equal(reactor.metrics.iterations, 1, "all in one turn");
    reactor.removeReader(r);
  },
  fake,
);

testEveryBackend("`Reactor.callSoon()` callbacks queued during a batch run on the next iteration", ({ reactor }) => {
  const log: string[] = [];
  reactor.callSoon(() => {
    log.push("a");
    reactor.callSoon(() => log.push("c"));
  });
  reactor.callSoon(() => log.push("b"));
  assert.equal(reactor.runOnce(0), 0);
  assert.deepEqual(log, ["a", "b"]);
  reactor.runOnce(0);
  assert.deepEqual(log, ["a", "b", "c"]);
}, fake);

testEveryBackend("`Reactor.callLater(0)` from a timer waits for the next iteration", ({ reactor }) => {
  const log: string[] = [];
  reactor.callLater(0, () => {
    log.push("t1");
    reactor.callLater(0, () => log.push("t2"));
  });
  reactor.runOnce(0);
  assert.deepEqual(log, ["t1"]);
  reactor.runOnce(0);
  assert.deepEqual(log, ["t1", "t2"]);
}, fake);

testEveryBackend(
  "`Reactor` runs `callLater(0)` and `callSoon` chains that reschedule forever without starving I/O or timers",
  ({ reactor, clock, fds }) => {
    const [r, w] = fds.pipe();
    let live = true;
    let spins = 0;
    let soons = 0;
    let readAt = -1;
    let timerAt = -1;
    const done = () => {
      if (readAt >= 0 && timerAt >= 0) reactor.stop();
    };
    const spin = () => {
      if (!live) return;
      spins++;
      clock.advance(1); // each turn takes 1 fake ms, so the 20 ms timer falls due after 20 turns
      if (spins === 100) write(w, ONE);
      reactor.callLater(0, spin);
    };
    const soon = () => {
      if (!live) return;
      soons++;
      reactor.callSoon(soon);
    };
    reactor.callLater(0, spin);
    reactor.callSoon(soon);
    reactor.addReader(r, (fd) => {
      read(fd, new Uint8Array(8));
      readAt = spins;
      done();
    });
    reactor.callLater(20, () => {
      timerAt = spins;
      done();
    });
    try {
      runSyncBounded(reactor, 5000, "forever chains"); // the watchdog is 5,000 fake ms: 5,000 turns
    } finally {
      live = false;
      reactor.removeReader(r);
    }
    assert.ok(readAt >= 100 && readAt <= 101, `the reader ran at spin ${readAt}, the data came at spin 100`);
    assert.ok(timerAt >= 20 && timerAt <= 21, `the 20 ms timer ran at spin ${timerAt}`);
    assert.ok(Math.abs(soons - spins) <= 2, `one step of each chain per iteration: ${soons} vs ${spins}`);
  },
  fake,
);

// ---------------------------------------------------------------- on the real clock

testEveryBackend("`Reactor.time()` is on the `performance.now()` clock by default", async ({ reactor }) => {
  // Real clock on purpose: the default clock is what is tested. It reads CLOCK_MONOTONIC, shifted to
  // performance.now()'s origin when the module loads (to within a microsecond: 0.1 ms of slack), and
  // must not drift from it. The 1 s bound on the bracket is for a loaded machine.
  const SLACK = 0.1;
  for (let round = 0; round < 3; round++) {
    const t0 = performance.now();
    const r0 = reactor.time();
    const t1 = performance.now();
    assert.ok(t1 - t0 < 1000, `performance.now() took ${t1 - t0} ms`);
    assert.ok(r0 >= t0 - SLACK && r0 <= t1 + SLACK, `round ${round}: time() ${r0} outside [${t0}, ${t1}]`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
});

testEveryBackend("a waiting `Reactor.runSync()` sleeps until the timer is due instead of spinning", ({ reactor }) => {
  // Real clock on purpose: the blocking wait is what is tested. The iteration count does not depend
  // on speed (1 expected; timeouts round up, so a wait never ends just before the timer is due;
  // 3 allows for a wait cut short by a signal); blockedMs is a lower bound, which slowness only raises.
  reactor.callLater(30.4, () => reactor.stop());
  runSyncBounded(reactor, 5000, "sleep until due");
  const m = reactor.metrics;
  assert.ok(m.iterations <= 3, `${m.iterations} iterations for one 30.4 ms timer (timeouts must round up)`);
  assert.ok(m.blockedMs >= 25, `blocked ${m.blockedMs} ms`);
  assert.equal(m.timersFired, 1);
});

testEveryBackend("`Reactor.runOnce()` does not wait while a `callSoon` callback is pending", ({ reactor }) => {
  // Real clock on purpose: no real waiting is what is tested. blockedMs counts only waits that may
  // block; the elapsed bound leaves 4 s of slack against a 5 s wait.
  let ran = false;
  reactor.callSoon(() => ran = true);
  const t0 = performance.now();
  reactor.runOnce(5000);
  assert.ok(performance.now() - t0 < 4000);
  assert.ok(ran);
  assert.equal(reactor.metrics.blockedMs, 0, "a zero-timeout poll");
});

// ---------------------------------------------------------------- TimerHeap

Deno.test("`TimerHeap` compacts when most entries are cancelled and pops the rest in order", () => {
  const heap = new TimerHeap();
  const handles: Timer[] = [];
  for (let i = 0; i < 1000; i++) {
    const h = new Timer((i * 7919) % 100, i, () => {}, 0, (x) => heap.noteCancelled(x));
    handles.push(h);
    heap.push(h);
  }
  assert.equal(heap.size, 1000);
  for (let i = 0; i < 1000; i++) if (i % 10 !== 0) handles[i].cancel();
  assert.equal(heap.live, 100);
  assert.ok(heap.size <= 200, `${heap.size} entries left for 100 live timers: no compaction`);
  const popped: Timer[] = [];
  for (let h = heap.peek(); h !== undefined; h = heap.peek()) popped.push(heap.pop()!);
  assert.equal(popped.length, 100);
  assert.ok(popped.every((h) => !h.cancelled));
  for (let i = 1; i < popped.length; i++) {
    const a = popped[i - 1], b = popped[i];
    assert.ok(a.when < b.when || (a.when === b.when && a.seq < b.seq), `out of order at ${i}`);
  }
  assert.equal(heap.size, 0);
  assert.equal(heap.live, 0);
});

reactorTest(
  "epoll",
  "a `callEvery` whose loop ran late by whole periods fires once, then keeps its period",
  ({ reactor, clock }) => {
    const start = reactor.time();
    const ticks: number[] = [];
    reactor.callEvery(2, () => ticks.push(reactor.time() - start));
    clock.advance(10);
    for (let i = 0; i < 3; i++) reactor.runOnce(0);
    assert.deepEqual(ticks, [10], "late by five periods: one tick, not a burst");
    clock.advance(2);
    reactor.runOnce(0);
    assert.deepEqual(ticks, [10, 12], "then every 2 ms from the late tick");
  },
  { fakeClock: true },
);

testEveryBackend(
  "a timer scheduled while `run()` is parked wakes it only when due before the park would end",
  async ({ reactor }) => {
    const fired: string[] = [];
    reactor.callLater(300, () => {
      fired.push("300");
      reactor.stop();
    });
    const running = reactor.run();
    await waitFor(() => reactor.metrics.parks === 1, "the loop to park until the 300 ms timer");
    reactor.callLater(10_000, () => fired.push("far")); // due after the park ends: no wake-up
    // A wake-up would end the park and start another within a thread hop; 50 ms is a wide margin for that.
    await delay(50);
    assert.equal(reactor.metrics.parks, 1, "the far timer woke the parked loop");
    reactor.callLater(20, () => fired.push("20")); // due before: wakes the park
    await running;
    assert.deepEqual(fired, ["20", "300"]);
    // The first park (woken), one until the 20 ms timer, one until 300.
    assert.equal(reactor.metrics.parks, 3);
  },
);
