/**
 * Tests of how the `Reactor` runs beside Deno's own event loop: `run()`
 * yielding under load and parking off-thread when idle, wake-ups of a parked
 * loop (`callSoon`, `callLater`, `addReader`, `removeReader`, `stop()` from
 * promises and Deno timers), and `runSync()` slices. Each test runs once per
 * backend (epoll, poll, select).
 *
 * "The loop is parked" is not guessed with a sleep: `run()` with nothing to
 * do reaches its off-thread wait before it first returns to the caller, so
 * any later macrotask runs while it is parked; and a wait that must be
 * proven empty is followed by counted loop turns (`turns()`).
 */

import assert from "node:assert/strict";
import { read, write } from "../ffi/mod.ts";
import { Reactor } from "../reactor/mod.ts";
import { delay, expectRunToReturn, ONE, runBounded, testEveryBackend, turns, waitFor } from "./_reactor.ts";

// ---------------------------------------------------------------- cooperating with Deno

testEveryBackend(
  "`Reactor.run()` under sustained I/O load lets setInterval tick and promises resolve",
  async ({ reactor, fds }) => {
    const [a, b] = fds.socketpair();
    const buf = new Uint8Array(64);
    let rounds = 0;
    // A ping-pong over the socket pair: there is always a ready fd, so the loop never parks idle.
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
    // Counted, not timed: the loop runs until Deno's timers have ticked 20 times and 10
    // promises have resolved, however long that takes on a loaded machine (the watchdog
    // fails the test after 10 s, where a starving loop would end).
    const roundsAtTick: number[] = [];
    let resolved = 0;
    let promisesDone = false;
    const enough = () => roundsAtTick.length >= 20 && resolved >= 10;
    const interval = setInterval(() => {
      roundsAtTick.push(rounds);
      if (enough()) reactor.stop();
    }, 5);
    const promises = (async () => {
      while (!promisesDone) {
        await delay(2);
        resolved++;
        if (enough()) reactor.stop();
      }
    })();
    try {
      await runBounded(reactor, 10_000, "ping-pong under load");
    } finally {
      clearInterval(interval);
      promisesDone = true;
      await promises;
    }
    const m = reactor.metrics;
    assert.ok(enough(), `${roundsAtTick.length} ticks, ${resolved} promises`);
    // The I/O went on between the timer ticks: they were served while the load lasted, not after it.
    assert.ok(roundsAtTick.at(-1)! > roundsAtTick[0], `ping-pong rounds at the ticks: ${roundsAtTick.join(", ")}`);
    // Under load run() yields to Deno every yieldIntervalMs through a real setTimeout(0),
    // serving I/O through parked waits until it fires; an idle park would show in `parks`.
    // The loop is never idle here: 0 parks are expected, 5 allowed. Deno's timers run only
    // while the loop yields (or parks), at most a few ticks per yield: 20 ticks took 11 to 20
    // yields in every run measured, on an idle machine and under a two-core CPU hog (worst:
    // 1.8 ticks per yield), so at least 5 leaves a margin of more than 2x.
    assert.ok(m.parks <= 5, `the busy loop parked ${m.parks} times`);
    assert.ok(m.yields >= 5, `run() yielded to Deno only ${m.yields} times for ${roundsAtTick.length} ticks`);
    reactor.removeReader(a);
    reactor.removeReader(b);
  },
);

testEveryBackend(
  "`Reactor.run()` under sustained I/O load lets Deno's own I/O through: a local `fetch` and a file read take a few yields",
  async ({ reactor, fds }) => {
    const [a, b] = fds.socketpair();
    const buf = new Uint8Array(64);
    // The ping-pong of the test above: the loop never parks idle, so Deno's event loop turns only when it yields.
    reactor.addReader(a, (fd) => {
      const n = read(fd, buf);
      if (n > 0) write(fd, buf, n);
    });
    reactor.addReader(b, (fd) => {
      const n = read(fd, buf);
      if (n > 0) write(fd, buf, n);
    });
    write(a, ONE);
    // Counted, not timed: a fetch spans about a hundred turns of Deno's event loop, and a yield that
    // gave Deno one turn made it take about a hundred yields (1.2 s); serving I/O through parked
    // waits while a yield lasts gives Deno a turn per park, and the fetch takes one or two yields.
    const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, () => new Response("ok"));
    const client = Deno.createHttpClient({}); // its own pool, closed below (the fd-leak check counts sockets)
    const yields: number[] = [];
    const work = (async () => {
      try {
        for (let i = 0; i < 3; i++) {
          const before = reactor.metrics.yields;
          assert.equal(await (await fetch(`http://127.0.0.1:${server.addr.port}/`, { client })).text(), "ok");
          await Deno.readTextFile(new URL(import.meta.url));
          yields.push(reactor.metrics.yields - before);
        }
      } finally {
        reactor.stop();
      }
    })();
    try {
      await runBounded(reactor, 20_000, "fetch and readTextFile under load");
      await work;
    } finally {
      client.close();
      await server.shutdown();
    }
    assert.ok(yields.every((y) => y <= 20), `yields per fetch + file read: ${yields.join(", ")}`);
    reactor.removeReader(a);
    reactor.removeReader(b);
  },
);

testEveryBackend(
  "`Reactor.run()` while idle (parked) lets setInterval tick and promises resolve",
  async ({ reactor }) => {
    // Counted, not timed: stop once the interval ticked 10 times and 20 promises resolved.
    let ticks = 0;
    let resolved = 0;
    const enough = () => ticks >= 10 && resolved >= 20;
    const interval = setInterval(() => {
      ticks++;
      if (enough()) reactor.stop();
    }, 5);
    const promises = (async () => {
      for (let i = 0; i < 20; i++) {
        await delay(2);
        resolved++;
      }
      if (enough()) reactor.stop();
    })();
    const far = reactor.callLater(60_000, () => {});
    try {
      await runBounded(reactor, 10_000, "idle run");
    } finally {
      clearInterval(interval);
      far.cancel();
      await promises;
    }
    assert.ok(ticks >= 10, `setInterval(5) ticked ${ticks} times`);
    assert.equal(resolved, 20);
    assert.ok(reactor.metrics.parks >= 1);
  },
);

testEveryBackend("`Reactor.stop()` from a Deno timer ends an idle `run()` promptly", async ({ reactor }) => {
  const timer = setTimeout(() => reactor.stop(), 20);
  try {
    await expectRunToReturn(reactor, 5000, "stop() from setTimeout");
  } finally {
    clearTimeout(timer);
  }
  assert.equal(reactor.running, false);
  assert.ok(reactor.metrics.parks >= 1, "the loop parked while idle");
});

testEveryBackend(
  "`Reactor.run()` counts in `blockedMs` only its waits, not callbacks run between the parks of a yield",
  async ({ reactor }) => {
    // Real clock on purpose: blockedMs is measured time. Timer callbacks that each busy-wait 3 ms keep the loop
    // loaded, so it yields every 5 ms and serves them through parked waits; the waits and the busy time are
    // disjoint, so together they cannot exceed the wall time (they did by ~25% when a park started its count
    // at the time read before the callbacks). The 20 ms margin is for clock reads at the edges.
    const r = new Reactor({ backend: reactor.selector.name, yieldIntervalMs: 5 });
    let busy = 0;
    r.callEvery(1, () => {
      const t = performance.now();
      while (performance.now() - t < 3) { /* busy */ }
      busy += performance.now() - t;
    });
    const start = performance.now();
    const stopper = setTimeout(() => r.stop(), 300);
    try {
      await runBounded(r, 5000, "busy timers under yields");
    } finally {
      clearTimeout(stopper);
      r.close();
    }
    const wall = performance.now() - start;
    const m = r.metrics;
    assert.ok(m.yields >= 5, `${m.yields} yields`);
    assert.ok(busy + m.blockedMs <= wall + 20, `busy ${busy} + blocked ${m.blockedMs} ms in ${wall} ms of wall time`);
  },
);

testEveryBackend(
  "`Reactor.run()` with a `callSoon` chain that reschedules forever still lets a Deno timer stop it",
  async ({ reactor }) => {
    // Real clock on purpose: the Deno timer must get its turn while the loop spins.
    let live = true;
    let soons = 0;
    const soon = () => {
      if (!live) return;
      soons++;
      reactor.callSoon(soon);
    };
    reactor.callSoon(soon);
    const stopper = setTimeout(() => reactor.stop(), 50);
    try {
      await runBounded(reactor, 5000, "setTimeout(stop, 50) never ran while the reactor spun");
    } finally {
      live = false;
      clearTimeout(stopper);
    }
    // At least 50 ms of spinning: thousands of turns on any machine; 100 leaves two orders of magnitude.
    assert.ok(soons > 100, `${soons} callSoon turns`);
    assert.ok(reactor.metrics.yields >= 1);
  },
);

testEveryBackend("`Reactor.run()` with only a timer parks until it is due", async ({ reactor }) => {
  // Real clock on purpose: parking off-thread for the timer's real delay is what is tested.
  let firedAt = -1;
  const h = reactor.callLater(30, () => {
    firedAt = reactor.time();
    reactor.stop();
  });
  await runBounded(reactor, 5000, "one timer");
  assert.ok(firedAt >= h.when, "the timer ran, not early");
  const m = reactor.metrics;
  // Not a speed bound: one park and one iteration are expected; the slack covers a wait cut short by a signal.
  assert.ok(m.parks >= 1 && m.iterations <= 5, `${m.iterations} iterations, ${m.parks} parks for one timer`);
});

// ---------------------------------------------------------------- waking a parked loop

testEveryBackend("`Reactor.callSoon()` from a Deno timer wakes a parked `run()`", async ({ reactor }) => {
  let ran = false;
  const timer = setTimeout(() => reactor.callSoon(() => (ran = true, reactor.stop())), 0);
  try {
    await expectRunToReturn(reactor, 3000, "callSoon while parked");
  } finally {
    clearTimeout(timer);
  }
  assert.ok(ran);
  assert.equal(reactor.metrics.parks, 1, "parked once, woken once");
});

testEveryBackend(
  "`Reactor.callLater()` from a Deno timer wakes a parked `run()` to wait for the new timer",
  async ({ reactor }) => {
    for (const ms of [0, 10]) {
      let ran = false;
      const timer = setTimeout(() => reactor.callLater(ms, () => (ran = true, reactor.stop())), 0);
      try {
        await expectRunToReturn(reactor, 3000, `callLater(${ms}) while parked`);
      } finally {
        clearTimeout(timer);
      }
      assert.ok(ran, `callLater(${ms})`);
    }
  },
);

testEveryBackend(
  "`Reactor.addReader()` from a Deno timer, for a ready fd, wakes a parked `run()`",
  async ({ reactor, fds }) => {
    const [r, w] = fds.pipe();
    write(w, ONE);
    let ran = -1;
    const timer = setTimeout(() =>
      reactor.addReader(r, (fd) => {
        read(fd, new Uint8Array(8));
        ran = fd;
        reactor.stop();
      }), 0);
    try {
      await expectRunToReturn(reactor, 3000, "addReader (ready fd) while parked");
    } finally {
      clearTimeout(timer);
    }
    assert.equal(ran, r);
    reactor.removeReader(r);
  },
);

/**
 * Waits until a parked `run()` waits with the registrations made just before:
 * epoll's pending wait sees them at once (no wake-up); poll and select wait
 * on a copy of their set, so the change wakes them and they park again.
 */
async function untilParkedWithChanges(
  reactor: Reactor,
  iterationsBefore: number,
): Promise<void> {
  if (reactor.selector.name === "epoll") {
    assert.equal(reactor.metrics.iterations, iterationsBefore, "epoll needs no wake-up for a registration change");
    return;
  }
  // The woken loop runs an iteration and parks again before it yields to any macrotask.
  await waitFor(() => reactor.metrics.iterations > iterationsBefore, "the loop to park again");
}

testEveryBackend(
  "`Reactor.addReader()` while `run()` is parked: the parked wait watches the new fd",
  async ({ reactor, fds }) => {
    const [r, w] = fds.pipe();
    let ran = -1;
    const running = runBounded(reactor, 5000, "addReader (later ready) while parked");
    try {
      // run() parked before returning its promise: this code runs while the loop is parked.
      assert.equal(reactor.metrics.parks, 1);
      const before = reactor.metrics.iterations;
      reactor.addReader(r, (fd) => {
        read(fd, new Uint8Array(8));
        ran = fd;
        reactor.stop();
      });
      await untilParkedWithChanges(reactor, before);
      write(w, ONE);
    } finally {
      await running;
    }
    assert.equal(ran, r);
    reactor.removeReader(r);
  },
);

testEveryBackend(
  "`Reactor.removeReader()` while `run()` is parked: a later write does not call the removed reader",
  async ({ reactor, fds }) => {
    const [r, w] = fds.pipe();
    let removedCalls = 0;
    reactor.addReader(r, () => removedCalls++);
    const running = runBounded(reactor, 5000, "removeReader while parked");
    try {
      const before = reactor.metrics.iterations;
      assert.equal(reactor.removeReader(r), true);
      await untilParkedWithChanges(reactor, before);
      write(w, ONE);
      // Three more loop turns, each a full wait and dispatch after the write: the removed reader would have run.
      const iterations = reactor.metrics.iterations;
      await turns(reactor, 3);
      assert.ok(reactor.metrics.iterations >= iterations + 3);
      assert.equal(removedCalls, 0);
    } finally {
      reactor.stop();
      await running;
    }
  },
);

// ---------------------------------------------------------------- runSync() slices

testEveryBackend(
  '`Reactor.runSync({ sliceMs })` returns "yielded" when the slice is over, even while busy',
  ({ reactor, clock }) => {
    // On the fake clock: each callSoon turn moves the time 1 ms, so a 5 ms slice is exactly 5 turns.
    let live = true;
    let soons = 0;
    const soon = () => {
      if (!live) return;
      soons++;
      clock.advance(1);
      reactor.callSoon(soon);
    };
    reactor.callSoon(soon);
    assert.equal(reactor.runSync({ sliceMs: 5 }), "yielded");
    assert.equal(soons, 5);
    assert.equal(reactor.runSync({ sliceMs: 3 }), "yielded", "the next slice runs again");
    assert.equal(soons, 8);
    live = false;
    reactor.callSoon(() => reactor.stop());
    assert.equal(reactor.runSync({ sliceMs: 1000 }), "stopped");
  },
  { fakeClock: true },
);
