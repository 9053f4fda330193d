/**
 * Tests of the `Reactor`'s timers (`callLater`, `callAt`, `callEvery`,
 * `callSoon`, cancellation) on every backend, and of the `TimerHeap` itself.
 *
 * Each reactor records what its callbacks throw (an assertion failing in a
 * callback would otherwise only be reported to `onError`), and every run is
 * bounded by a watchdog timer.
 */

import assert from "node:assert/strict";
import { read, write } from "../ffi/mod.ts";
import type { BackendName, TimerHandle } from "../reactor/mod.ts";
import { Timer, TimerHeap } from "../reactor/timers.ts";
import { assertNoFdLeak, BACKENDS, FdScope } from "./_helpers.ts";
import { assertNoErrors, newReactor, ONE, runSyncBounded } from "./_reactor.ts";

function timerSuite(backend: BackendName): (t: Deno.TestContext) => Promise<void> {
  return async (t) => {
    await t.step("callLater runs timers in due order, never early; negative delays count as 0", () => {
      const { reactor, errors } = newReactor(backend);
      using _ = reactor;
      const order: string[] = [];
      const early: string[] = [];
      const track = (name: string, delay: number) => {
        const handle: TimerHandle = reactor.callLater(delay, () => {
          order.push(name);
          if (reactor.time() < handle.when) early.push(name);
        });
      };
      track("30", 30);
      track("10a", 10);
      track("20", 20);
      track("10b", 10);
      track("0", 0);
      track("-5", -5);
      reactor.callLater(40, () => reactor.stop());
      runSyncBounded(reactor, 5000, "callLater order");
      assert.deepEqual(order, ["0", "-5", "10a", "10b", "20", "30"]);
      assert.deepEqual(early, [], "no timer runs before its due time");
      assertNoErrors(errors);
    });

    await t.step("timers due at the same time run in scheduling order (callAt)", () => {
      const { reactor, errors } = newReactor(backend);
      using _ = reactor;
      const order: number[] = [];
      const when = reactor.time() + 5;
      for (let i = 0; i < 50; i++) reactor.callAt(when, () => order.push(i));
      // Scheduled later but due earlier: these run first, also in scheduling order.
      for (let i = 100; i < 105; i++) reactor.callAt(when - 1, () => order.push(i));
      reactor.callAt(when, () => reactor.stop());
      runSyncBounded(reactor, 5000, "equal due times");
      assert.deepEqual(order, [100, 101, 102, 103, 104, ...Array.from({ length: 50 }, (_, i) => i)]);
      assertNoErrors(errors);
    });

    await t.step("callAt in the past runs on the next iteration; bad arguments are refused", () => {
      const { reactor, errors } = newReactor(backend);
      using _ = reactor;
      let ran = 0;
      reactor.callAt(reactor.time() - 1000, () => ran++);
      assert.equal(reactor.runOnce(0), 0);
      assert.equal(ran, 1);
      assert.throws(() => reactor.callAt(NaN, () => {}), RangeError);
      assert.throws(() => reactor.callLater(NaN, () => {}), RangeError);
      assert.throws(() => reactor.callEvery(0, () => {}), RangeError);
      assert.throws(() => reactor.callEvery(NaN, () => {}), RangeError);
      // @ts-expect-error: not a function
      assert.throws(() => reactor.callLater(1, "nope"), TypeError);
      // @ts-expect-error: not a function
      assert.throws(() => reactor.callEvery(1, undefined), TypeError);
      const t0 = performance.now();
      const r0 = reactor.time();
      assert.ok(r0 >= t0 && r0 - t0 < 1000, "time() is on the performance.now() clock");
      assertNoErrors(errors);
    });

    await t.step("a waiting runSync() sleeps until the timer is due instead of spinning", () => {
      const { reactor, errors } = newReactor(backend);
      using _ = reactor;
      reactor.callLater(30.4, () => reactor.stop());
      runSyncBounded(reactor, 5000, "sleep until due");
      const m = reactor.metrics;
      assert.ok(m.iterations <= 3, `${m.iterations} iterations for one 30.4 ms timer (timeouts must round up)`);
      assert.ok(m.blockedMs >= 25, `blocked ${m.blockedMs} ms`);
      assert.equal(m.timersFired, 1);
      assertNoErrors(errors);
    });

    await t.step("callEvery repeats on schedule until cancelled, from inside or from outside", () => {
      const { reactor, errors } = newReactor(backend);
      using _ = reactor;
      const times: number[] = [];
      const a: TimerHandle = reactor.callEvery(2, () => {
        times.push(reactor.time());
        if (times.length === 5) a.cancel();
      });
      const firstDue = a.when;
      let b = 0;
      let bAtCancel = -1;
      const hb = reactor.callEvery(3, () => b++);
      reactor.callLater(40, () => {
        hb.cancel();
        bAtCancel = b;
      });
      reactor.callLater(80, () => reactor.stop());
      const fired0 = reactor.metrics.timersFired;
      runSyncBounded(reactor, 5000, "callEvery");
      assert.equal(times.length, 5, "cancelled from its own callback after 5 ticks");
      for (let k = 0; k < 5; k++) assert.ok(times[k] >= firstDue + 2 * k, `tick ${k} came early`);
      assert.ok(a.cancelled && hb.cancelled);
      assert.ok(bAtCancel >= 3, `a 3 ms interval ticked ${bAtCancel} times in 40 ms`);
      assert.equal(b, bAtCancel, "no tick after cancel()");
      assert.equal(reactor.metrics.timersFired - fired0, 5 + b + 2, "each periodic tick counts");
      assertNoErrors(errors);
    });

    await t.step("a cancelled timer or callSoon never runs; cancel() twice or after running is harmless", () => {
      const { reactor, errors } = newReactor(backend);
      using _ = reactor;
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
      reactor.callLater(30, () => reactor.stop());
      runSyncBounded(reactor, 5000, "cancel");
      assert.deepEqual(ran, ["once"]);
      assert.equal(once.cancelled, true, "a one-shot timer counts as cancelled once it ran");
      once.cancel();
      assertNoErrors(errors);
    });

    await t.step("cancelling thousands of timers (heap compaction) still fires the live ones in order", () => {
      const { reactor, errors } = newReactor(backend);
      using _ = reactor;
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
      reactor.callAt(base + 45, () => reactor.stop());
      runSyncBounded(reactor, 5000, "thousands of cancellations");
      const expected = Array.from({ length: N }, (_, i) => i)
        .filter((i) => i % 10 === 0 && !lateVictims.has(i))
        .sort((x, y) => offsetOf(x) - offsetOf(y) || x - y);
      assert.equal(fired.length, expected.length);
      assert.deepEqual(fired, expected);
      assertNoErrors(errors);
    });

    await t.step("callSoon callbacks scheduled during a batch run on the next iteration", () => {
      const { reactor, errors } = newReactor(backend);
      using _ = reactor;
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
      // The same for timers: a callLater(0) from a timer waits for the next iteration.
      log.length = 0;
      reactor.callLater(0, () => {
        log.push("t1");
        reactor.callLater(0, () => log.push("t2"));
      });
      reactor.runOnce(0);
      assert.deepEqual(log, ["t1"]);
      reactor.runOnce(0);
      assert.deepEqual(log, ["t1", "t2"]);
      // A pending callSoon makes runOnce() not wait.
      reactor.callSoon(() => log.push("soon"));
      const t0 = performance.now();
      reactor.runOnce(5000);
      assert.ok(performance.now() - t0 < 4000);
      assert.equal(log.at(-1), "soon");
      assertNoErrors(errors);
    });

    await t.step(
      "callLater(0) and callSoon chains that reschedule forever starve neither I/O nor timers",
      () =>
        assertNoFdLeak(() => {
          using fds = new FdScope();
          const { reactor, errors } = newReactor(backend);
          using _ = reactor;
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
            runSyncBounded(reactor, 5000, "forever chains");
          } finally {
            live = false;
            reactor.removeReader(r);
          }
          assert.ok(readAt >= 100 && readAt <= 101, `the reader ran at spin ${readAt}, the data came at spin 100`);
          assert.ok(timerAt >= 0, "the 20 ms timer ran");
          assert.ok(Math.abs(soons - spins) <= 2, `one step of each chain per iteration: ${soons} vs ${spins}`);
          assertNoErrors(errors);
        }),
    );

    await t.step(
      "a callSoon chain that reschedules forever does not keep run() from a Deno timer's stop()",
      async () => {
        const { reactor, errors } = newReactor(backend);
        using _ = reactor;
        let live = true;
        let soons = 0;
        const soon = () => {
          if (!live) return;
          soons++;
          reactor.callSoon(soon);
        };
        reactor.callSoon(soon);
        const stopper = setTimeout(() => reactor.stop(), 50);
        let expired = false;
        const watchdog = reactor.callLater(5000, () => {
          expired = true;
          reactor.stop();
        });
        try {
          await reactor.run();
        } finally {
          live = false;
          clearTimeout(stopper);
          watchdog.cancel();
        }
        assert.equal(expired, false, "setTimeout(stop, 50) never ran while the reactor spun");
        assert.ok(soons > 100);
        assertNoErrors(errors);
      },
    );

    await t.step("run() with only a timer parks until it is due", async () => {
      const { reactor, errors } = newReactor(backend);
      using _ = reactor;
      let firedAt = -1;
      const h = reactor.callLater(30, () => {
        firedAt = reactor.time();
        reactor.stop();
      });
      const guard = setTimeout(() => reactor.stop(), 5000);
      try {
        await reactor.run();
      } finally {
        clearTimeout(guard);
      }
      assert.ok(firedAt >= h.when, "the timer ran, not early");
      const m = reactor.metrics;
      assert.ok(m.parks >= 1 && m.iterations <= 5, `${m.iterations} iterations, ${m.parks} parks for one timer`);
      assertNoErrors(errors);
    });
  };
}

for (const backend of BACKENDS) {
  Deno.test(`\`Reactor\` (${backend}) timers: callLater, callAt, callEvery, callSoon and cancel`, timerSuite(backend));
}

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
