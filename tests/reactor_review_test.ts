/**
 * Review tests of the `Reactor` loop, its timers and `holdRunning()`: each
 * pins down one fault found in review (the wake-up eventfd, a clock that
 * goes back, `close()` and the handles it leaves, bad timer arguments, a
 * deferred stop that outlived its run).
 *
 * Nothing here proves an absence by sleeping: loops are bounded by counted
 * turns (a `callSoon` chain that stops itself), timers run on a
 * {@linkcode FakeClock}, and wait timeouts are read from a selector that
 * records them instead of blocking.
 */

import assert from "node:assert/strict";
import { type BackendName, createSelector, Reactor, type Selector, type SelectorKey } from "../reactor/mod.ts";
import { defaultReactor, holdRunning } from "../net/default_reactor.ts";
import { assertNoFdLeak, BACKENDS, openFds } from "./_helpers.ts";
import { close, dupAtLeast, getRlimit, OSError, pipe, RLIMIT_NOFILE, setRlimit } from "../ffi/mod.ts";
import { delay, expectRunToReturn, FakeClock, testEveryBackend, turns, waitFor } from "./_reactor.ts";

const fake = { fakeClock: true };

/** The fd a fresh reactor registered for itself: its wake-up eventfd. */
function wakeFdOf(reactor: Reactor): number {
  for (let fd = 0; fd < 1 << 16; fd++) if (reactor.selector.get(fd) !== undefined) return fd;
  throw new Error("The reactor registered no fd");
}

/**
 * A selector that records every wait's timeout and never blocks (each wait
 * is a zero-timeout poll of a real backend): a test reads what the loop
 * asked for, with no real waiting.
 */
class RecordingSelector<T> implements Selector<T> {
  readonly waits: number[] = [];
  constructor(readonly inner: Selector<T>) {}
  get name(): BackendName {
    return this.inner.name;
  }
  get size(): number {
    return this.inner.size;
  }
  get readyKeys(): SelectorKey<T>[] {
    return this.inner.readyKeys;
  }
  get readyEvents(): Uint32Array {
    return this.inner.readyEvents;
  }
  get interrupted(): boolean {
    return this.inner.interrupted;
  }
  register(fd: number, events: number, data: T): SelectorKey<T> {
    return this.inner.register(fd, events, data);
  }
  modify(fd: number, events: number, data: T): SelectorKey<T> {
    return this.inner.modify(fd, events, data);
  }
  unregister(fd: number): SelectorKey<T> {
    return this.inner.unregister(fd);
  }
  get(fd: number): SelectorKey<T> | undefined {
    return this.inner.get(fd);
  }
  select(timeoutMs: number): number {
    this.waits.push(timeoutMs);
    return this.inner.select(0);
  }
  selectAsync(timeoutMs: number): Promise<number> {
    this.waits.push(timeoutMs);
    return this.inner.selectAsync(0);
  }
  close(): void {
    this.inner.close();
  }
}

// ---------------------------------------------------------------- the wake-up eventfd

testEveryBackend("`Reactor.metrics.events` does not count the loop's own wake-ups", async ({ reactor }) => {
  // A callSoon from a Deno timer wakes the parked loop through the eventfd: no I/O callback of the user's runs.
  const timer = setTimeout(() => reactor.callSoon(() => reactor.stop()), 0);
  try {
    await expectRunToReturn(reactor, 3000, "callSoon while parked");
  } finally {
    clearTimeout(timer);
  }
  const m = reactor.metrics;
  assert.equal(m.parks, 1, "parked once, woken once");
  assert.equal(m.callbacks, 1);
  assert.equal(m.events, 0, "the wake-up's drain is not an I/O event");
});

testEveryBackend(
  "`Reactor.addReader()` and `addWriter()` refuse the reactor's own wake-up fd (a stale fd number)",
  async ({ reactor }) => {
    // A program that closed an fd and later watches its stale number may name the reactor's eventfd:
    // replacing its reader would leave wake-ups undrained, a writer would keep the loop from ever parking.
    const wakeFd = wakeFdOf(reactor);
    assert.throws(() => reactor.addReader(wakeFd, () => {}), /wake-up/);
    assert.throws(() => reactor.addWriter(wakeFd, () => {}), /wake-up/);
    assert.equal(reactor.removeReader(wakeFd), false);
    assert.equal(reactor.selector.size, 1, "nothing else registered");
    // The wake-up still works: one park, one wake.
    const timer = setTimeout(() => reactor.callSoon(() => reactor.stop()), 0);
    try {
      await expectRunToReturn(reactor, 3000, "callSoon while parked");
    } finally {
      clearTimeout(timer);
    }
    assert.equal(reactor.metrics.parks, 1);
  },
);

// ---------------------------------------------------------------- a clock that goes back

/**
 * A chain of `callSoon` callbacks, each moving the fake clock 1 ms on, the
 * first also moving it back by a million first (a substituted clock such as
 * `Date.now` can step back); the 100th stops the loop. `end()` makes the
 * callbacks still queued do nothing.
 */
function backwardClockChain(reactor: Reactor, clock: FakeClock): { readonly turns: number; end(): void } {
  let live = true;
  let turns = 0;
  const soon = () => {
    if (!live) return;
    turns++;
    if (turns === 1) clock.now -= 1_000_000;
    clock.advance(1);
    if (turns >= 100) reactor.stop();
    else reactor.callSoon(soon);
  };
  reactor.callSoon(soon);
  return {
    get turns() {
      return turns;
    },
    end() {
      live = false;
    },
  };
}

testEveryBackend(
  '`Reactor.runSync({ sliceMs })` still returns "yielded" after its clock goes back',
  ({ reactor, clock }) => {
    // A substituted clock (Date.now, say) can step back. The slice must stay a slice, not wait for the clock
    // to catch up: each turn moves the clock 1 ms on, the first moves it back by a million first.
    const chain = backwardClockChain(reactor, clock);
    try {
      assert.equal(reactor.runSync({ sliceMs: 5 }), "yielded", `${chain.turns} turns without a yield`);
      assert.ok(chain.turns <= 10, `yielded after ${chain.turns} turns of 1 ms for a 5 ms slice`);
    } finally {
      chain.end();
    }
  },
  fake,
);

testEveryBackend(
  "`Reactor.run()` under load still yields to Deno after its clock goes back",
  async ({ reactor, clock }) => {
    const chain = backwardClockChain(reactor, clock);
    try {
      await expectRunToReturn(reactor, 5000, "a callSoon chain of 100 turns");
    } finally {
      chain.end();
    }
    assert.equal(chain.turns, 100);
    // 100 turns of 1 ms with a 5 ms interval. How many turns a yield takes depends on when Deno's timer fires
    // (the chain goes on meanwhile), but there is at least one: the loop does not wait for the clock to catch up.
    assert.ok(reactor.metrics.yields >= 1, `${reactor.metrics.yields} yields in 100 turns of 1 ms`);
  },
  { fakeClock: true, yieldIntervalMs: 5 },
);

testEveryBackend(
  "`Reactor.run()` does not yield (nor count a yield) in the turn that stopped it",
  async ({ reactor, clock }) => {
    // One callback uses up the yield interval and stops the loop: run() returns; there is no Deno turn to wait for.
    reactor.callSoon(() => {
      clock.advance(50);
      reactor.stop();
    });
    await expectRunToReturn(reactor, 3000, "stop() from a callSoon");
    assert.equal(reactor.metrics.yields, 0);
  },
  { fakeClock: true, yieldIntervalMs: 5 },
);

testEveryBackend("`Reactor.metrics.blockedMs` never goes negative when the clock goes back", ({ reactor, clock }) => {
  clock.autoAdvanceMs = -100; // every read moves the clock 100 ms back
  reactor.runOnce(1); // nothing registered: the polls find nothing, then a blocking wait of 1 real ms
  assert.ok(reactor.metrics.blockedMs >= 0, `blockedMs ${reactor.metrics.blockedMs}`);
  clock.autoAdvanceMs = 0;
}, fake);

// ---------------------------------------------------------------- close()

testEveryBackend(
  "`Reactor.close()`: a pending `callSoon` cancelled after the close does not run; dropped timers read as cancelled",
  async ({ reactor }) => {
    let cancelledRan = 0;
    let keptRan = 0;
    const cancelled = reactor.callSoon(() => cancelledRan++);
    const kept = reactor.callSoon(() => keptRan++);
    const later = reactor.callLater(10, () => assert.fail("a dropped timer ran"));
    const every = reactor.callEvery(10, () => assert.fail("a dropped timer ran"));
    reactor.close();
    assert.equal(later.cancelled, true, "a dropped timer will never run");
    assert.equal(every.cancelled, true, "a dropped periodic timer will never run");
    assert.equal(cancelled.cancelled, false, "due, not run yet");
    cancelled.cancel();
    await delay(0); // every microtask queued by close() has run
    assert.equal(cancelledRan, 0, "cancel() after close() still cancels");
    assert.equal(keptRan, 1);
    assert.equal(kept.cancelled, true, "run");
    assert.equal(reactor.metrics.callbacks, 1, "counted like any callSoon callback");
  },
);

// ---------------------------------------------------------------- bad arguments

testEveryBackend(
  "`Reactor.callAt()` and `callEvery()` refuse a time that is not a number; no timer is blocked",
  ({ reactor, clock }) => {
    // From JavaScript: a timer due at `undefined` compares neither before nor after any other. At the top of the
    // heap it never fell due, kept every later timer from running, and made the loop wait forever.
    // @ts-expect-error: not a number
    assert.throws(() => reactor.callAt(undefined, () => {}), TypeError);
    // @ts-expect-error: not a number ("10" >= 1, and now + "10" is a string)
    assert.throws(() => reactor.callEvery("10", () => {}), TypeError);
    let fired = 0;
    reactor.callLater(5, () => fired++);
    clock.advance(10);
    reactor.runOnce(0);
    assert.equal(fired, 1);
  },
  fake,
);

for (const backend of BACKENDS) {
  Deno.test(`\`Reactor.runOnce(NaN)\` waits for the next timer, not forever (${backend})`, () =>
    assertNoFdLeak(() => {
      const clock = new FakeClock();
      const selector = new RecordingSelector(createSelector<never>(backend));
      const reactor = new Reactor({ selector, clock: clock.read });
      try {
        reactor.callLater(10, () => {});
        reactor.runOnce(NaN);
        // The polls first (0), then the wait that may block: until the timer, as runOnce(-1) would.
        assert.equal(selector.waits.at(-1), 10, `waits: ${selector.waits.join(", ")}`);
        selector.waits.length = 0;
        reactor.runOnce(-1);
        assert.equal(selector.waits.at(-1), 10, `waits: ${selector.waits.join(", ")}`);
      } finally {
        reactor.close();
      }
    }));
}

// ---------------------------------------------------------------- holdRunning()

testEveryBackend(
  "`holdRunning()`: the last release in the loop's final turn does not stop a later run of the reactor",
  async ({ reactor }) => {
    const release = holdRunning(reactor);
    assert.equal(reactor.running, true, "the hold started run()");
    await turns(reactor, 1);
    // One callback stops the loop (its owner shutting down) and gives back the last hold: the loop ends
    // after this turn, before the deferred stop the release queued can run.
    reactor.callSoon(() => {
      reactor.stop();
      release();
    });
    await waitFor(() => !reactor.running, "the held loop to stop");
    await delay(0); // holdRunning's own continuation of run() has run: nothing restarted it
    assert.equal(reactor.running, false);
    // Later the program runs the reactor itself: only its own stop() may end that run.
    let ticks = 0;
    const tick = () => {
      if (++ticks < 5) reactor.callSoon(tick);
      else reactor.stop();
    };
    reactor.callSoon(tick);
    assert.equal(reactor.runSync(), "stopped");
    assert.equal(ticks, 5, "stopped by the stale release of an earlier run");
  },
);

testEveryBackend(
  "`holdRunning()`: holds from several users keep the loop running until the last is released (once each)",
  async ({ reactor }) => {
    const a = holdRunning(reactor);
    const b = holdRunning(reactor);
    assert.equal(reactor.running, true);
    a();
    a(); // a second release of the same hold changes nothing
    await turns(reactor, 3);
    assert.equal(reactor.running, true, "b still holds it");
    b();
    await waitFor(() => !reactor.running, "the loop to stop after the last release");
    await delay(0);
    assert.equal(reactor.running, false);
  },
);

testEveryBackend(
  "`holdRunning()`: a program that runs the reactor itself as soon as the held loop stops gets no error",
  async ({ reactor }) => {
    const release = holdRunning(reactor);
    await turns(reactor, 1);
    let own: Promise<void> | undefined;
    reactor.callSoon(() => {
      reactor.stop(); // the hold is still taken: holdRunning would run the loop again...
      void (async () => {
        while (reactor.running) await Promise.resolve();
        own = reactor.run(); // ...but the program took it over first (holding then does nothing more)
      })();
    });
    await waitFor(() => own !== undefined, "the program's own run()");
    await turns(reactor, 2);
    release();
    reactor.stop();
    await own;
    // The harness fails the test on any error reported: "The reactor is already running" from a second run().
  },
);

// ---------------------------------------------------------------- the default reactor

Deno.test("`defaultReactor()` after the default reactor was closed makes a new one", () =>
  assertNoFdLeak(() => {
    const first = defaultReactor();
    assert.equal(defaultReactor(), first, "one default reactor while it is open");
    first.close();
    // Every net call without a `reactor` option (listen, connect, serve, request) would fail for good.
    const second = defaultReactor();
    try {
      assert.notEqual(second, first);
      assert.equal(second.closed, false);
      assert.equal(defaultReactor(), second);
    } finally {
      second.close();
    }
  }));

Deno.test("`createSelector()` out of fds throws EMFILE instead of falling back to poll", () => {
  const limit = getRlimit(RLIMIT_NOFILE);
  const taken: number[] = [];
  const [r, w] = pipe();
  try {
    // A soft limit a little above the highest open fd, then every fd below it taken: epoll_create1 has none left.
    setRlimit(RLIMIT_NOFILE, { soft: Math.max(...openFds().keys()) + 8, hard: limit.hard });
    for (;;) {
      try {
        taken.push(dupAtLeast(r, 0));
      } catch (err) {
        assert.ok(err instanceof OSError && err.code === "EMFILE", String(err));
        break;
      }
    }
    assert.throws(() => createSelector(), (err) => err instanceof OSError && err.code === "EMFILE");
    const poll = createSelector("poll");
    assert.equal(poll.name, "poll", "poll needs no fd, so the caller may still choose it");
    poll.close();
  } finally {
    for (const d of taken) close(d);
    close(r);
    close(w);
    setRlimit(RLIMIT_NOFILE, limit);
  }
});

testEveryBackend("`Reactor.runSync({ sliceMs: NaN })` is refused, not run without a slice", ({ reactor }) => {
  assert.throws(() => reactor.runSync({ sliceMs: NaN }), TypeError);
  assert.throws(() => reactor.runSync({ sliceMs: "5" as unknown as number }), TypeError);
  assert.equal(reactor.running, false);
  assert.equal(reactor.runSync({ sliceMs: 1 }), "yielded");
});
