/**
 * One suite for every `Selector` backend (CPython's `test_selectors.py` is
 * the model): `selectorSuite(backend)` registers the same steps for epoll,
 * poll and select, plus the steps that only apply to one of them. Every step
 * checks that the process has as many open fds afterwards as before.
 */

import assert from "node:assert/strict";
import { EPOLL_EVENT_SIZE, EPOLL_EVENT_STRIDE, epollWait, OSError, read, write } from "../ffi/mod.ts";
import { createSelector } from "../reactor/default.ts";
import { EpollSelector } from "../reactor/epoll.ts";
import {
  type BackendName,
  EVENT_EDGE,
  EVENT_ONESHOT,
  EVENT_READ,
  EVENT_WRITE,
  type Selector,
  timeoutToInt,
} from "../reactor/selector.ts";
import { assertNoFdLeak, BACKENDS, closedFd, FdScope, SELECTOR_CLASS } from "./_helpers.ts";

const ONE = new Uint8Array([1]);
const scratch = new Uint8Array(1 << 16);

/** Reads everything pending on a non-blocking fd; returns the byte count. */
function drain(fd: number): number {
  let total = 0;
  for (;;) {
    const n = read(fd, scratch);
    if (n <= 0) return total;
    total += n;
  }
}

/** The ready set of the last `select()` as fd → events, checking the arrays agree with `n`. */
function ready<T>(sel: Selector<T>, n: number): Map<number, number> {
  const out = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const key = sel.readyKeys[i];
    assert.ok(key.active, `readyKeys[${i}] (fd ${key.fd}) is not active`);
    assert.ok(!out.has(key.fd), `fd ${key.fd} reported twice`);
    out.set(key.fd, sel.readyEvents[i]);
  }
  return out;
}

/** Asserts `fn` throws an OSError with `code`, and returns it. */
function assertOSError(fn: () => unknown, code: string): OSError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof OSError, `expected OSError ${code}, got ${err}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected OSError ${code}, nothing was thrown`);
}

/**
 * A test body with a fresh selector and fd scope, both released whatever happens,
 * run under the fd leak check.
 */
function withSelector(
  backend: BackendName,
  fn: (sel: Selector<string>, fds: FdScope) => void | Promise<void>,
): () => Promise<void> {
  return () =>
    assertNoFdLeak(async () => {
      using fds = new FdScope();
      const sel = createSelector<string>(backend);
      try {
        await fn(sel, fds);
      } finally {
        sel.close();
      }
    });
}

/** Registers the steps every backend must pass, plus the backend-specific ones. */
async function selectorSuite(t: Deno.TestContext, backend: BackendName): Promise<void> {
  const step = (name: string, fn: (sel: Selector<string>, fds: FdScope) => void | Promise<void>) =>
    t.step(name, withSelector(backend, fn));

  await step("has the backend's name and starts empty", (sel) => {
    assert.equal(sel.name, backend);
    assert.equal(sel.size, 0);
    assert.equal(sel.select(0), 0);
  });

  // ------------------------------------------------------------ bookkeeping

  await step("register() returns a key with fd, events and data; get() finds it", (sel, fds) => {
    const [r, w] = fds.pipe();
    const key = sel.register(r, EVENT_READ, "reader");
    assert.equal(key.fd, r);
    assert.equal(key.events, EVENT_READ);
    assert.equal(key.data, "reader");
    assert.equal(key.active, true);
    assert.equal(sel.get(r), key);
    assert.equal(sel.get(w), undefined);
    assert.equal(sel.size, 1);
    const wkey = sel.register(w, EVENT_WRITE, "writer");
    assert.equal(sel.size, 2);
    assert.notEqual(wkey.token, key.token, "each registration gets its own token");
  });

  await step("modify() changes events and data on the same key", (sel, fds) => {
    const [a] = fds.socketpair();
    const key = sel.register(a, EVENT_READ, "before");
    const same = sel.modify(a, EVENT_READ | EVENT_WRITE, "after");
    assert.equal(same, key);
    assert.equal(key.events, EVENT_READ | EVENT_WRITE);
    assert.equal(key.data, "after");
    assert.equal(sel.modify(a, EVENT_READ | EVENT_WRITE, "data only").data, "data only");
    assert.equal(sel.size, 1);
  });

  await step("unregister() returns the key, deactivates it and forgets the fd", (sel, fds) => {
    const [r, w] = fds.pipe();
    const key = sel.register(r, EVENT_READ, "r");
    write(w, ONE);
    assert.equal(sel.unregister(r), key);
    assert.equal(key.active, false);
    assert.equal(sel.get(r), undefined);
    assert.equal(sel.size, 0);
    assert.equal(sel.select(0), 0, "an unregistered fd is not reported");
    const again = sel.register(r, EVENT_READ, "r again");
    assert.notEqual(again, key);
    assert.equal(sel.select(0), 1);
    assert.equal(sel.readyKeys[0], again);
  });

  // ------------------------------------------------------------ errors

  await step("register() throws EEXIST for a registered fd", (sel, fds) => {
    const [r] = fds.pipe();
    const key = sel.register(r, EVENT_READ, "first");
    const err = assertOSError(() => sel.register(r, EVENT_READ, "second"), "EEXIST");
    assert.equal(err.errno, 17);
    assert.match(err.message, new RegExp(`fd ${r}`));
    assert.equal(sel.get(r), key, "the first registration is untouched");
    assert.equal(key.data, "first");
    assert.equal(sel.size, 1);
  });

  await step("modify() and unregister() throw ENOENT for an unknown fd", (sel, fds) => {
    const [r] = fds.pipe();
    assertOSError(() => sel.modify(r, EVENT_READ, "x"), "ENOENT");
    assertOSError(() => sel.unregister(r), "ENOENT");
    assertOSError(() => sel.unregister(-1), "ENOENT");
    sel.register(r, EVENT_READ, "x");
    sel.unregister(r);
    assertOSError(() => sel.unregister(r), "ENOENT");
    assert.equal(sel.size, 0);
  });

  await step("register() throws EBADF for a closed fd and rolls back", (sel, fds) => {
    const fd = closedFd(900);
    const err = assertOSError(() => sel.register(fd, EVENT_READ, "gone"), "EBADF");
    assert.equal(err.errno, 9);
    assert.equal(sel.get(fd), undefined, "a failed register leaves no key");
    assert.equal(sel.size, 0);
    assert.equal(sel.select(0), 0, "and nothing for the wait to trip over");
    // The number is usable again once it names an open fd.
    const [r, w] = fds.pipe();
    const high = fds.dupAtLeast(r, fd);
    assert.equal(high, fd);
    const key = sel.register(high, EVENT_READ, "open now");
    write(w, ONE);
    assert.equal(sel.select(0), 1);
    assert.equal(sel.readyKeys[0], key);
  });

  await step("register() and modify() throw TypeError for bad events or fds", (sel, fds) => {
    const [r] = fds.pipe();
    for (const events of [0, 16, -1, 1.5, NaN, EVENT_EDGE & ~EVENT_READ]) {
      assert.throws(() => sel.register(r, events, "bad"), TypeError, `events ${events}`);
    }
    for (const fd of [-1, 1.5, NaN, 2 ** 31]) {
      assert.throws(() => sel.register(fd, EVENT_READ, "bad"), TypeError, `fd ${fd}`);
    }
    assert.equal(sel.size, 0);
    assert.equal(sel.get(r), undefined);
    const key = sel.register(r, EVENT_READ, "ok");
    assert.throws(() => sel.modify(r, 0, "bad"), TypeError);
    assert.throws(() => sel.modify(r, 32, "bad"), TypeError);
    assert.equal(key.events, EVENT_READ, "a refused modify changes nothing");
    assert.equal(key.data, "ok");
  });

  // ------------------------------------------------------------ readiness

  await step("reports a pipe's read end readable once data is written", (sel, fds) => {
    const [r, w] = fds.pipe();
    const key = sel.register(r, EVENT_READ, "r");
    assert.equal(sel.select(0), 0);
    write(w, ONE);
    assert.equal(sel.select(0), 1);
    assert.equal(sel.readyKeys[0], key);
    assert.equal(sel.readyEvents[0], EVENT_READ);
  });

  await step("reports a pipe's write end writable, and not when the pipe is full", (sel, fds) => {
    const [r, w] = fds.pipe();
    const key = sel.register(w, EVENT_WRITE, "w");
    assert.equal(sel.select(0), 1);
    assert.equal(sel.readyKeys[0], key);
    assert.equal(sel.readyEvents[0], EVENT_WRITE);
    while (write(w, scratch) > 0) { /* fill the pipe */ }
    assert.equal(sel.select(0), 0, "a full pipe is not writable");
    drain(r);
    assert.equal(sel.select(0), 1);
  });

  await step("level-triggered: unread data is reported on every select()", (sel, fds) => {
    const [r, w] = fds.pipe();
    sel.register(r, EVENT_READ, "r");
    write(w, new Uint8Array(10));
    for (let i = 0; i < 3; i++) {
      assert.equal(sel.select(0), 1, `select #${i + 1}`);
      assert.equal(sel.readyEvents[0], EVENT_READ);
    }
    assert.equal(read(r, new Uint8Array(4)), 4);
    assert.equal(sel.select(0), 1, "still 6 bytes unread");
    assert.equal(drain(r), 6);
    assert.equal(sel.select(0), 0);
  });

  await step("reports only the events of interest", (sel, fds) => {
    // `a` is both readable (data pending) and writable.
    const [a, b] = fds.socketpair();
    write(b, ONE);
    sel.register(a, EVENT_READ, "a");
    assert.equal(sel.select(0), 1);
    assert.equal(sel.readyEvents[0], EVENT_READ);
    sel.modify(a, EVENT_WRITE, "a");
    assert.equal(sel.select(0), 1);
    assert.equal(sel.readyEvents[0], EVENT_WRITE);
    sel.modify(a, EVENT_READ | EVENT_WRITE, "a");
    assert.equal(sel.select(0), 1);
    assert.equal(sel.readyEvents[0], EVENT_READ | EVENT_WRITE);
    // A pipe's read end never becomes writable: write interest alone reports nothing.
    const [r, w] = fds.pipe();
    write(w, ONE);
    sel.register(r, EVENT_WRITE, "r");
    assert.deepEqual(ready(sel, sel.select(0)), new Map([[a, EVENT_READ | EVENT_WRITE]]));
  });

  await step("modify() from EVENT_READ to EVENT_WRITE switches what is reported", (sel, fds) => {
    const [a, b] = fds.socketpair();
    const key = sel.register(a, EVENT_READ, "a");
    assert.equal(sel.select(0), 0, "no data yet");
    sel.modify(a, EVENT_WRITE, "a");
    assert.equal(sel.select(0), 1);
    assert.equal(sel.readyKeys[0], key);
    assert.equal(sel.readyEvents[0], EVENT_WRITE);
    write(b, ONE);
    sel.modify(a, EVENT_READ, "a");
    assert.equal(sel.select(0), 1);
    assert.equal(sel.readyEvents[0], EVENT_READ);
    drain(a);
    assert.equal(sel.select(0), 0);
  });

  await step("unregister() of an fd that was already closed does not throw", (sel, fds) => {
    const [r] = fds.pipe();
    const [r2, w2] = fds.pipe();
    const key = sel.register(r, EVENT_READ, "r");
    const other = sel.register(r2, EVENT_READ, "r2");
    fds.close(r);
    assert.equal(sel.unregister(r), key);
    assert.equal(key.active, false);
    assert.equal(sel.size, 1);
    write(w2, ONE);
    assert.equal(sel.select(0), 1, "the remaining registration still works");
    assert.equal(sel.readyKeys[0], other);
  });

  await step("close() releases the backend; later calls throw and a second close() is a no-op", (sel, fds) => {
    const [r] = fds.pipe();
    const key = sel.register(r, EVENT_READ, "r");
    sel.close();
    assert.equal(key.active, false);
    assert.equal(sel.size, 0);
    assert.throws(() => sel.register(r, EVENT_READ, "r"), /closed/);
    sel.close();
  });

  // ------------------------------------------------------------ timeouts and async

  await step("select(timeout) with nothing ready returns 0 after at least the timeout", (sel, fds) => {
    const [r] = fds.pipe();
    sel.register(r, EVENT_READ, "idle");
    let t0 = performance.now();
    assert.equal(sel.select(50), 0);
    const elapsed = performance.now() - t0;
    assert.ok(elapsed >= 49, `returned after ${elapsed.toFixed(2)} ms`);
    // Fractions round up: 0.2 ms waits a whole millisecond instead of polling.
    t0 = performance.now();
    assert.equal(sel.select(0.2), 0);
    const fraction = performance.now() - t0;
    assert.ok(fraction >= 0.9, `select(0.2) returned after ${fraction.toFixed(3)} ms`);
  });

  await step("selectAsync() keeps the JS thread free while it waits", async (sel, fds) => {
    const [r] = fds.pipe();
    sel.register(r, EVENT_READ, "idle");
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    try {
      const t0 = performance.now();
      const n = await sel.selectAsync(200);
      const elapsed = performance.now() - t0;
      assert.equal(n, 0);
      assert.ok(elapsed >= 199, `returned after ${elapsed.toFixed(2)} ms`);
      // setInterval(10) ticks about 20 times in 200 ms; 3 is enough to show the thread was free,
      // and leaves room for a loaded machine that delays Deno's timers.
      assert.ok(ticks >= 3, `only ${ticks} timer ticks during a 200 ms selectAsync()`);
    } finally {
      clearInterval(timer);
    }
  });

  await step("selectAsync() reports data written by a timer while it waits", async (sel, fds) => {
    const [r, w] = fds.pipe();
    const key = sel.register(r, EVENT_READ, "r");
    let fired = false;
    const timer = setTimeout(() => {
      fired = true;
      write(w, ONE);
    }, 20);
    try {
      const n = await sel.selectAsync(5000);
      assert.ok(fired, "the timer ran while selectAsync() was pending");
      assert.equal(n, 1);
      assert.equal(sel.readyKeys[0], key);
      assert.equal(sel.readyEvents[0], EVENT_READ);
    } finally {
      clearTimeout(timer);
    }
  });

  // ------------------------------------------------------------ stale events

  await step("a key closed and replaced within a batch is inactive and its successor not reported", (sel, fds) => {
    const [a, aw] = fds.pipe();
    const [b, bw] = fds.pipe();
    sel.register(a, EVENT_READ, "a");
    sel.register(b, EVENT_READ, "b");
    write(aw, ONE);
    write(bw, ONE);
    const n = sel.select(0);
    assert.equal(n, 2);
    // Handling the first event closes the other fd and opens a new one on the same number.
    const first = sel.readyKeys[0];
    const victim = sel.readyKeys[1];
    const victimFd = victim.fd;
    sel.unregister(victimFd);
    fds.close(victimFd);
    const [c] = fds.pipe();
    const reused = c === victimFd ? c : fds.dupAtLeast(c, victimFd);
    if (reused !== c) fds.close(c);
    assert.equal(reused, victimFd, "the new fd reuses the number");
    const successor = sel.register(reused, EVENT_READ, "successor");
    // The rest of the batch: the old key says it is gone.
    assert.equal(sel.readyKeys[1], victim);
    assert.equal(victim.active, false);
    assert.notEqual(successor, victim);
    // The next wait reports the first fd (still unread), never the empty successor.
    assert.deepEqual(ready(sel, sel.select(0)), new Map([[first.fd, EVENT_READ]]));
    assert.equal(successor.active, true);
  });

  await t.step({
    name: "selectAsync() drops an fd that became ready and was replaced before the result was collected",
    fn: withSelector(backend, async (sel, fds) => {
      const [a, aw] = fds.pipe();
      sel.register(a, EVENT_READ, "old");
      // Ready before the wait starts, so the wait returns on its thread as soon as it runs.
      write(aw, ONE);
      const pending = sel.selectAsync(1000);
      // Keep the JS thread busy so the wait returns on its thread before the swap below is seen by JS.
      // Not a race the test can lose: should the wait start only after the swap (a starved thread),
      // it sees the empty successor and times out, and the assertion below holds all the same.
      const spinUntil = performance.now() + 100;
      while (performance.now() < spinUntil) { /* spin */ }
      sel.unregister(a);
      fds.close(a);
      const [c] = fds.pipe();
      const reused = c === a ? c : fds.dupAtLeast(c, a);
      if (reused !== c) fds.close(c);
      assert.equal(reused, a);
      sel.register(reused, EVENT_READ, "new");
      const n = await pending;
      const reported = sel.readyKeys.slice(0, n).map((k) => k.data);
      assert.deepEqual(reported, [], "the empty successor pipe must not be reported");
    }),
  });

  // ------------------------------------------------------------ high fds and many fds

  if (backend === "select") {
    await step("register() refuses an fd >= FD_SETSIZE with a RangeError naming FD_SETSIZE", (sel, fds) => {
      const [r, w] = fds.pipe();
      const high = fds.dupAtLeast(r, 1500);
      assert.throws(() => sel.register(high, EVENT_READ, "high"), RangeError);
      assert.throws(() => sel.register(high, EVENT_READ, "high"), /FD_SETSIZE \(1024\)/);
      assert.throws(() => sel.register(high, EVENT_READ, "high"), new RegExp(`fd ${high}`));
      const at = fds.dupAtLeast(r, 1024);
      assert.equal(at >= 1024, true);
      assert.throws(() => sel.register(at, EVENT_WRITE, "1024"), RangeError);
      assert.equal(sel.get(high), undefined);
      assert.equal(sel.get(at), undefined);
      assert.equal(sel.size, 0);
      // The selector still works for low fds.
      const key = sel.register(r, EVENT_READ, "low");
      write(w, ONE);
      assert.equal(sel.select(0), 1);
      assert.equal(sel.readyKeys[0], key);
    });
  } else {
    await step("register() accepts an fd above FD_SETSIZE and reports it ready", (sel, fds) => {
      const [r, w] = fds.pipe();
      const high = fds.dupAtLeast(r, 1500);
      assert.ok(high >= 1500);
      const key = sel.register(high, EVENT_READ, "high");
      const wkey = sel.register(fds.dupAtLeast(w, 1500), EVENT_WRITE, "high writer");
      assert.deepEqual(ready(sel, sel.select(0)), new Map([[wkey.fd, EVENT_WRITE]]));
      write(w, ONE);
      assert.deepEqual(ready(sel, sel.select(0)), new Map([[high, EVENT_READ], [wkey.fd, EVENT_WRITE]]));
      assert.ok(sel.readyKeys.slice(0, 2).includes(key));
    });
  }

  await step("works with 250 registered pipes", (sel, fds) => {
    const pipes: [number, number][] = [];
    for (let i = 0; i < 250; i++) pipes.push(fds.pipe());
    for (const [i, [r]] of pipes.entries()) sel.register(r, EVENT_READ, `pipe ${i}`);
    assert.equal(sel.size, 250);
    assert.equal(sel.select(0), 0);
    const expected = new Map<number, number>();
    for (let i = 0; i < 250; i += 7) {
      write(pipes[i][1], ONE);
      expected.set(pipes[i][0], EVENT_READ);
    }
    const n = sel.select(0);
    assert.equal(n, expected.size);
    assert.deepEqual(ready(sel, n), expected);
    for (let i = 0; i < n; i++) {
      assert.equal(
        sel.readyKeys[i].data,
        `pipe ${pipes.findIndex(([r]) => r === sel.readyKeys[i].fd)}`,
      );
    }
    // Unregister every other pipe, including ready ones; the rest must still be reported.
    for (let i = 0; i < 250; i += 2) sel.unregister(pipes[i][0]);
    assert.equal(sel.size, 125);
    const odd = new Map([...expected].filter(([fd]) => pipes.findIndex(([r]) => r === fd) % 2 === 1));
    assert.deepEqual(ready(sel, sel.select(0)), odd);
    for (let i = 1; i < 250; i += 2) sel.unregister(pipes[i][0]);
    assert.equal(sel.size, 0);
    assert.equal(sel.select(0), 0);
  });

  // ------------------------------------------------------------ epoll-only modes

  if (backend === "epoll") {
    await step(
      "edge-triggered: EVENT_READ|EVENT_EDGE reports unread data once, again after more arrives",
      (sel, fds) => {
        const [r, w] = fds.pipe();
        const key = sel.register(r, EVENT_READ | EVENT_EDGE, "edge");
        write(w, ONE);
        assert.equal(sel.select(0), 1);
        assert.equal(sel.readyKeys[0], key);
        assert.equal(sel.readyEvents[0], EVENT_READ);
        assert.equal(sel.select(0), 0, "no new edge: the unread byte is not reported again");
        assert.equal(sel.select(0), 0);
        write(w, ONE);
        assert.equal(sel.select(0), 1, "more data is a new edge");
        assert.equal(sel.select(0), 0);
        assert.equal(drain(r), 2);
      },
    );

    await step("one-shot: EVENT_ONESHOT reports once until modify() re-arms it", (sel, fds) => {
      const [r, w] = fds.pipe();
      const key = sel.register(r, EVENT_READ | EVENT_ONESHOT, "once");
      write(w, ONE);
      assert.equal(sel.select(0), 1);
      assert.equal(sel.readyKeys[0], key);
      assert.equal(sel.select(0), 0, "disarmed after one event, data still unread");
      write(w, ONE);
      assert.equal(sel.select(0), 0, "more data does not re-arm it");
      sel.modify(r, EVENT_READ | EVENT_ONESHOT, "once");
      assert.equal(sel.select(0), 1, "modify() with the same events re-arms");
      assert.equal(sel.select(0), 0);
      sel.modify(r, EVENT_READ, "level");
      assert.equal(sel.select(0), 1);
      assert.equal(sel.select(0), 1, "back to level-triggered");
    });

    await step("drops events of a registration whose fd was closed without unregister (token check)", (sel, fds) => {
      if (!(sel instanceof EpollSelector)) throw new Error("expected an EpollSelector");
      // A registration lives in the kernel as long as its open file does, even after close(fd):
      // keep the file alive through a dup, close the registered number, and reuse it.
      const [r, w] = fds.pipe();
      write(w, ONE);
      const alias = fds.dupAtLeast(r, 0);
      const old = sel.register(r, EVENT_READ, "old");
      fds.close(r);
      sel.unregister(r); // EPOLL_CTL_DEL fails with EBADF, swallowed: the kernel keeps the ghost
      assert.equal(old.active, false);
      const [c] = fds.pipe();
      const reused = c === r ? c : fds.dupAtLeast(c, r);
      if (reused !== c) fds.close(c);
      assert.equal(reused, r, "the new pipe reuses the registered number");
      const successor = sel.register(reused, EVENT_READ, "successor");
      assert.notEqual(successor.token, old.token);

      // The kernel still reports the ghost: same fd number, the old token.
      const raw = new Uint8Array(8 * EPOLL_EVENT_SIZE);
      const words = new Uint32Array(raw.buffer);
      const d = EPOLL_EVENT_STRIDE === 3 ? 1 : 2;
      const n = epollWait(sel.epfd, Deno.UnsafePointer.of(raw), 8, 0);
      assert.equal(n, 1, "the ghost registration is ready (this step exercises the token check)");
      assert.equal(words[d + 1], r, "event data carries the fd");
      assert.equal(words[d], old.token, "event data carries the old token");

      // The selector must drop it rather than report the empty successor.
      assert.equal(sel.select(0), 0);
      write(fds.pipe()[1], ONE); // unrelated activity changes nothing
      assert.equal(sel.select(0), 0);
      fds.close(alias); // the last reference: the kernel drops the ghost
      assert.equal(epollWait(sel.epfd, Deno.UnsafePointer.of(raw), 8, 0), 0);
    });
  } else {
    await step("EVENT_EDGE and EVENT_ONESHOT throw TypeError (epoll only)", (sel, fds) => {
      const [r] = fds.pipe();
      assert.throws(() => sel.register(r, EVENT_READ | EVENT_EDGE, "edge"), TypeError);
      assert.throws(() => sel.register(r, EVENT_READ | EVENT_ONESHOT, "once"), /need the epoll backend/);
      assert.equal(sel.get(r), undefined);
      sel.register(r, EVENT_READ, "level");
      assert.throws(() => sel.modify(r, EVENT_READ | EVENT_EDGE, "edge"), TypeError);
      assert.equal(sel.get(r)?.events, EVENT_READ);
    });
  }
}

for (const backend of BACKENDS) {
  Deno.test(`\`${SELECTOR_CLASS[backend]}\` passes the shared selector suite (${backend} backend)`, async (t) => {
    await assertNoFdLeak(() => selectorSuite(t, backend));
  });
}

Deno.test("`timeoutToInt()` rounds fractions up, maps negative and NaN to forever and caps at 2^31-1", () => {
  assert.equal(timeoutToInt(0), 0);
  assert.equal(timeoutToInt(0.2), 1);
  assert.equal(timeoutToInt(1.0001), 2);
  assert.equal(timeoutToInt(5), 5);
  assert.equal(timeoutToInt(-1), -1);
  assert.equal(timeoutToInt(-0.5), -1);
  assert.equal(timeoutToInt(NaN), -1);
  assert.equal(timeoutToInt(Infinity), 0x7fffffff);
  assert.equal(timeoutToInt(1e12), 0x7fffffff);
});
