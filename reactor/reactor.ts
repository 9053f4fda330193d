/**
 * The `Reactor`: a callback loop over a {@linkcode Selector}, with timers.
 *
 * @module
 */

import { close, eventfd, monotonicMs, read, write } from "../ffi/mod.ts";
import { createSelector } from "./default.ts";
import { type BackendName, EVENT_READ, EVENT_WRITE, type Selector, type SelectorKey } from "./selector.ts";
import { Timer, type TimerHandle, TimerHeap } from "./timers.ts";

/** An I/O callback: the fd and the ready events (`EVENT_READ` / `EVENT_WRITE`). */
export type IOCallback = (fd: number, events: number) => void;

/** Where an error passed to `onError` came from. */
export interface ErrorContext {
  /** The fd concerned: whose I/O callback threw, or whose transport failed. */
  fd?: number;
  /**
   * `"io"`, `"timer"` or `"callSoon"`: a callback of that kind threw.
   * `"transport"`: a connection, server or UDP socket failed and its
   * `error` event had no listener (see {@linkcode Reactor.reportError}).
   * `"run"`: the loop itself failed (a `run()` that nobody awaits, such as
   * the one `serve()` or the HTTP client starts, rejected).
   */
  source: "io" | "timer" | "callSoon" | "transport" | "run";
}

/** Options of {@linkcode Reactor}. */
export interface ReactorOptions {
  /** Backend to use (default: the best available, epoll on Linux). */
  backend?: BackendName;
  /**
   * A selector made elsewhere (your own backend, say); the reactor takes
   * ownership, stores its own records as each key's `data`, and closes it.
   */
  // deno-lint-ignore no-explicit-any
  selector?: Selector<any>;
  /**
   * Called with every exception a callback throws, and with transport
   * errors nobody listened for; the loop keeps running. Default: one line on
   * stderr naming the fd and the errno (a stack trace for exceptions that are
   * not `OSError`s).
   */
  onError?: (error: unknown, context: ErrorContext) => void;
  /** `run()` yields to Deno's event loop after this many ms of continuous work (default 10). */
  yieldIntervalMs?: number;
  /**
   * The clock, in ms (default: `performance.now()`'s time, read with
   * `clock_gettime(CLOCK_MONOTONIC)` at about half its cost). The loop reads it at fixed
   * points (see {@linkcode Reactor.time}); a test can substitute a fake one and
   * drive the loop with `runOnce(0)` to fire timers without waiting. The
   * selector's waits still take real time: only the timer arithmetic moves.
   * A clock that steps back (`Date.now`) delays timers until it catches up,
   * but not `run()`'s yields nor `runSync()`'s slices, which start over.
   */
  clock?: () => number;
}

/** Loop counters, read with {@linkcode Reactor.metrics}. */
export interface ReactorMetrics {
  /** Loop iterations. */
  iterations: number;
  /** I/O callbacks dispatched. */
  events: number;
  /** Timer callbacks run (each periodic tick counts). */
  timersFired: number;
  /** `callSoon` callbacks run. */
  callbacks: number;
  /** Errors passed to `onError`: exceptions thrown by callbacks, and transport errors (`reportError()`). */
  errors: number;
  /** Milliseconds spent waiting in the selector with a non-zero timeout. */
  blockedMs: number;
  /** Times `run()` went idle and parked on a wait off the JS thread. */
  parks: number;
  /** Times `run()` yielded to Deno's event loop under sustained load. */
  yields: number;
}

/** What the reactor stores as the `data` of each registered fd. Not exported. */
interface IOEntry {
  reader: IOCallback | null;
  writer: IOCallback | null;
}

const WAKE_VALUE = new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]);
/**
 * Microtask checkpoints `run()` takes after each turn: each `await` lets every
 * pending promise chain advance one step, and a fetch handler's answer takes a
 * few (reading the `Response` body), so it is written before the next wait.
 */
const MICROTASK_TURNS = 4;
/**
 * What `run()` awaits for each microtask checkpoint: an already-resolved
 * promise takes the same one turn as `await undefined` without a new promise
 * each time (echo at 50 connections: 17.9 -> 16.7 bytes per round trip).
 */
const RESOLVED: Promise<void> = Promise.resolve();

/**
 * Extra zero-timeout polls the loop makes before it waits with a timeout:
 * before `run()` parks and before `runSync()`/`runOnce()` block. A park costs
 * a thread hop (~10-20 µs of CPU and two futex wake-ups), a blocking
 * `epoll_wait` a sleep and a wake-up; four polls cost ~5 µs here and, under
 * load, often find the next event. Measured on the echo benchmark (50
 * connections): `run()` futex calls per round trip 0.09 -> 0.04, CPU per
 * round trip 1.06x -> 1.04x the C server's (0 vs 4 polls; 12 polls gave 0.02
 * and 0.96x); `runSync()` round trips/s 0.85x -> 0.99x `run()`'s at 0.99x ->
 * 0.94x the C server's CPU per round trip. An idle loop pays them once per
 * wake-up.
 */
const SPIN_POLLS = 4;

/**
 * Where `performance.now()` starts on `CLOCK_MONOTONIC`, the clock it reads:
 * from the tightest of a few `monotonicMs()` pairs around a `performance.now()`
 * (the first calls are slow, and a call can be interrupted).
 */
const PERFORMANCE_ORIGIN = ((): number => {
  let best = Infinity;
  let origin = 0;
  for (let i = 0; i < 8; i++) {
    const before = monotonicMs();
    const now = performance.now();
    const after = monotonicMs();
    if (after - before < best) {
      best = after - before;
      origin = (before + after) / 2 - now;
    }
  }
  return origin;
})();

/**
 * The default clock: `performance.now()`, read through `clock_gettime`. The
 * loop reads its clock once or twice per iteration, and `performance.now()`
 * (an op) cost 6% of `runSync()`'s user time on the echo benchmark.
 */
function performanceTime(): number {
  return monotonicMs() - PERFORMANCE_ORIGIN;
}

/**
 * The default `onError`: one line for an OS error nobody listened for
 * (`fdloop: unhandled error on fd 7: Cannot connect to 127.0.0.1:9: ECONNREFUSED (connect): Connection refused`),
 * the stack trace for an exception a callback threw.
 */
function logError(error: unknown, context: ErrorContext): void {
  const fd = context.fd !== undefined && context.fd >= 0 ? ` on fd ${context.fd}` : "";
  if (context.source === "transport") {
    const text = error instanceof Error ? error.message : String(error);
    console.error(`fdloop: unhandled error${fd} (no "error" listener): ${text}`);
    return;
  }
  if (context.source === "run") {
    console.error("fdloop: the reactor's run() failed:", error);
    return;
  }
  const where = fd ? `the ${context.source} callback${fd}` : `a ${context.source} callback`;
  console.error(`fdloop: uncaught exception in ${where}:`, error);
}

/**
 * A reactor: watches fds for readiness and runs your callbacks, runs timers,
 * and stops when asked.
 *
 * Contract of the I/O callbacks (the same as mio's and asyncio's):
 * - **Level-triggered.** A callback is called on every iteration while its fd
 *   stays ready; read or write until `WOULD_BLOCK`, or as much as you like.
 * - **Spurious events happen.** A callback may be called when the fd is not
 *   ready any more (another callback drained it, a peer changed its mind):
 *   treat `WOULD_BLOCK` as "not now", never as an error.
 * - **Removal is immediate.** After `removeReader(fd)` (or `removeWriter`),
 *   no event already collected for that registration reaches its callback,
 *   even in the same batch, and even if the fd number is reused at once.
 *   Remove an fd before closing it.
 * - **Errors stay inside.** An exception from any callback goes to `onError`
 *   and the loop goes on.
 *
 * Two ways to run: `await run()` cooperates with Deno's own event loop
 * (promises, `setTimeout`, `fetch` and signal listeners keep working), and
 * `runSync()` blocks the thread for programs that are nothing but the reactor.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Reactor } from "@fdloop/fdloop/reactor";
 * const reactor = new Reactor();
 * const ticks: number[] = [];
 * reactor.callLater(10, () => {
 *   ticks.push(reactor.time());
 *   reactor.stop();
 * });
 * await reactor.run();
 * reactor.close();
 * assert.equal(ticks.length, 1);
 * ```
 */
export class Reactor {
  readonly #selector: Selector<IOEntry>;
  readonly #onError: (error: unknown, context: ErrorContext) => void;
  readonly #yieldMs: number;
  readonly #clock: () => number;
  /**
   * The loop's time, read from `#clock` at the points listed on {@linkcode Reactor.time}.
   * A number from the start (a field that starts `undefined` keeps its numbers boxed, and
   * each store then allocates 16 bytes: once per loop iteration).
   */
  #now = 0;
  readonly #timers = new TimerHeap();
  #seq = 0;
  #soon: Timer[] = [];
  #soonNext: Timer[] = [];
  #running = false;
  /** True while the loop runs callbacks: `time()` then answers the iteration's cached time. */
  #inCallbacks = false;
  #stopping = false;
  #closed = false;
  #parked = false;
  /** When the parked wait ends by itself, on the loop's clock (Infinity while not parked: any timer wakes). */
  #parkUntil = Infinity;
  #wakePending = false;
  readonly #wakeFd: number;
  readonly #wakeBuf = new Uint8Array(8);
  readonly #cancelTimer = (h: Timer) => this.#timers.noteCancelled(h);
  readonly #metrics: ReactorMetrics = {
    iterations: 0,
    events: 0,
    timersFired: 0,
    callbacks: 0,
    errors: 0,
    blockedMs: 0,
    parks: 0,
    yields: 0,
  };

  /**
   * Makes a reactor with its own selector and wake-up eventfd.
   *
   * @param options Backend, error hook and cooperation settings.
   */
  constructor(options: ReactorOptions = {}) {
    const selector: Selector<IOEntry> = options.selector ?? createSelector<IOEntry>(options.backend);
    this.#selector = selector;
    this.#onError = options.onError ?? logError;
    this.#yieldMs = options.yieldIntervalMs ?? 10;
    this.#clock = options.clock ?? performanceTime;
    this.#now = this.#clock();
    let wakeFd = -1;
    try {
      wakeFd = eventfd();
      selector.register(wakeFd, EVENT_READ, { reader: this.#drainWake, writer: null });
    } catch (err) {
      // Out of fds, most likely: give back what was made.
      if (wakeFd >= 0) close(wakeFd);
      selector.close();
      throw err;
    }
    this.#wakeFd = wakeFd;
  }

  /**
   * The selector this reactor drives, for inspection (`reactor.selector.name`,
   * `.size`). Register fds through `addReader`/`addWriter`, not here.
   */
  get selector(): Selector {
    return this.#selector;
  }

  /**
   * The loop's time in ms, on the reactor's clock (`performance.now()` unless
   * `clock` was given). One clock decides and schedules, as in libuv: the
   * loop reads it before computing each wait's timeout and after each wait,
   * and every timer, timeout and yield decision of that iteration uses the
   * value read. Callbacks see the time their iteration started dispatching,
   * so `callLater(d)` from a callback is due `d` ms after that, and so do
   * the promise continuations `run()` lets run right after the callbacks.
   * Anywhere else (before `run()`, from a promise while `run()` is parked)
   * the clock is read afresh.
   */
  time(): number {
    return this.#inCallbacks ? this.#now : this.#updateTime();
  }

  /** True once `close()` has been called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Whether `run()` or `runSync()` is in progress. */
  get running(): boolean {
    return this.#running;
  }

  /** A snapshot of the loop counters. */
  get metrics(): ReactorMetrics {
    return { ...this.#metrics };
  }

  // ------------------------------------------------------------------ I/O

  /**
   * Calls `callback(fd, events)` whenever `fd` is readable (or at end of file,
   * or in error). Replaces an earlier reader of `fd`.
   *
   * @throws {OSError} EBADF if `fd` is not open.
   */
  addReader(fd: number, callback: IOCallback): void {
    this.#watch(fd, callback, EVENT_READ);
  }

  /**
   * Calls `callback(fd, events)` whenever `fd` is writable (or in error).
   * Replaces an earlier writer of `fd`.
   *
   * @throws {OSError} EBADF if `fd` is not open.
   */
  addWriter(fd: number, callback: IOCallback): void {
    this.#watch(fd, callback, EVENT_WRITE);
  }

  /** Stops watching `fd` for reading. Returns whether it was watched. */
  removeReader(fd: number): boolean {
    return this.#unwatch(fd, EVENT_READ);
  }

  /** Stops watching `fd` for writing. Returns whether it was watched. */
  removeWriter(fd: number): boolean {
    return this.#unwatch(fd, EVENT_WRITE);
  }

  /** Adds `event` to the interest of `fd` (registering it if new) with `callback` for it. */
  #watch(fd: number, callback: IOCallback, event: number): void {
    this.#checkOpen();
    if (typeof callback !== "function") throw new TypeError("callback must be a function");
    if (fd === this.#wakeFd) {
      // A stale fd number (closed, then reused by this reactor): taking over the eventfd would leave wake-ups
      // undrained, or (a writer) keep the loop from ever parking.
      throw new Error(`Cannot watch fd ${fd}: it is this reactor's own wake-up eventfd (was the fd closed?)`);
    }
    const sel = this.#selector;
    const key = sel.get(fd);
    if (key === undefined) {
      const entry: IOEntry = event === EVENT_READ
        ? { reader: callback, writer: null }
        : { reader: null, writer: callback };
      sel.register(fd, event, entry);
    } else {
      const entry = key.data;
      if (event === EVENT_READ) entry.reader = callback;
      else entry.writer = callback;
      if ((key.events & event) === 0) sel.modify(fd, key.events | event, entry);
    }
    this.#registrationChanged();
  }

  /** Drops `event` from the interest of `fd` (unregistering it when nothing is left). */
  #unwatch(fd: number, event: number): boolean {
    const key = this.#selector.get(fd);
    if (key === undefined || fd === this.#wakeFd || (key.events & event) === 0) return false;
    const entry = key.data;
    if (event === EVENT_READ) entry.reader = null;
    else entry.writer = null;
    const rest = key.events & ~event;
    if (rest === 0) this.#selector.unregister(fd);
    else this.#selector.modify(fd, rest, entry);
    this.#registrationChanged();
    return true;
  }

  #registrationChanged(): void {
    // epoll sees interest changes in a pending wait; poll and select work on a copy.
    if (this.#parked && this.#selector.name !== "epoll") this.#wake();
  }

  // ------------------------------------------------------------------ timers

  /**
   * Runs `callback` on the next loop iteration, after the I/O callbacks of
   * the current one. Callbacks scheduled while these run wait for the next
   * iteration, so a chain of `callSoon` cannot starve I/O.
   */
  callSoon(callback: () => void): TimerHandle {
    this.#checkOpen();
    const h = new Timer(0, this.#seq++, callback, 0, null);
    this.#soon.push(h);
    this.#wake();
    return h;
  }

  /** Runs `callback` once, `delayMs` from now (negative counts as 0). */
  callLater(delayMs: number, callback: () => void): TimerHandle {
    return this.callAt(this.time() + Math.max(0, delayMs), callback);
  }

  /** Runs `callback` once at `when` on the {@linkcode Reactor.time} clock. */
  callAt(when: number, callback: () => void): TimerHandle {
    return this.#schedule(when, callback, 0);
  }

  /** Runs `callback` every `intervalMs` (≥ 1) until the handle is cancelled. */
  callEvery(intervalMs: number, callback: () => void): TimerHandle {
    if (typeof intervalMs !== "number") throw new TypeError(`Interval must be a number, got ${typeof intervalMs}`);
    if (!(intervalMs >= 1)) throw new RangeError(`Interval must be at least 1 ms, got ${intervalMs}`);
    return this.#schedule(this.time() + intervalMs, callback, intervalMs);
  }

  #schedule(when: number, callback: () => void, interval: number): TimerHandle {
    this.#checkOpen();
    if (typeof callback !== "function") throw new TypeError("callback must be a function");
    // A time that compares with nothing (undefined, a string) would sit at the top of the heap and block every timer.
    if (typeof when !== "number") throw new TypeError(`Timer time must be a number, got ${typeof when}`);
    if (Number.isNaN(when)) throw new RangeError("Timer time must be a number, got NaN");
    const h = new Timer(when, this.#seq++, callback, interval, this.#cancelTimer);
    this.#timers.push(h);
    // A parked wait ends by itself before a timer due after it: waking it would cost a thread hop for nothing.
    if (when < this.#parkUntil) this.#wake();
    return h;
  }

  // ------------------------------------------------------------------ running

  /**
   * Asks the running loop to return after the current iteration. Safe to call
   * from callbacks, promises and signal listeners. Called while the loop is
   * not running, it makes the next `run()`/`runSync()` return at once (so a
   * signal handled between two `runSync()` slices is not lost).
   *
   * As asyncio's `loop.stop()`, a stop is taken only by `run()`/`runSync()`
   * (which clear it when they return): `runOnce()` leaves it pending, so a
   * `stop()` made before or during a `runOnce()` still makes the next
   * `run()`/`runSync()` return at once.
   */
  stop(): void {
    this.#stopping = true;
    this.#wake();
  }

  /**
   * Runs one iteration: waits up to `timeoutMs` for I/O (less if a timer is
   * due sooner, 0 if callbacks are pending), then runs the ready I/O
   * callbacks, the due timers and the pending `callSoon` callbacks.
   * Blocks the JS thread while waiting.
   *
   * A pending `stop()` does not end it early but makes it wait no longer
   * than 0 ms, and it is left pending for the next `run()`/`runSync()`
   * (asyncio's semantics: `stop()` only ends `run_forever()`).
   *
   * @returns The number of I/O callbacks dispatched.
   */
  runOnce(timeoutMs = -1): number {
    this.#enter();
    try {
      this.#updateTime();
      // NaN waits forever, as a negative timeout does, but still no longer than the next timer.
      const limit = timeoutMs >= 0 ? timeoutMs : -1;
      // What metrics.events counted: the I/O callbacks, not this loop's own wake-up (see #drainWake).
      const events = this.#metrics.events;
      this.#runCallbacks(this.#wait(this.#timeout(limit)));
      return this.#metrics.events - events;
    } finally {
      this.#running = false; // a stop() stays pending: it is for run()/runSync()
    }
  }

  /**
   * Runs the loop, cooperating with Deno's event loop, until `stop()`.
   *
   * While there is work it polls the selector without blocking and
   * dispatches, letting pending promise continuations (microtasks) run after
   * each turn; when idle it parks on a wait that runs off the JS thread
   * (Deno's `nonblocking` FFI), so promises, timers and signal listeners keep
   * running, and an eventfd wakes the parked wait whenever JS code schedules
   * reactor work. Under sustained load it yields to Deno every
   * `yieldIntervalMs`.
   */
  async run(): Promise<void> {
    this.#enter();
    try {
      let lastYield = this.#updateTime();
      while (!this.#stopping) {
        const t = this.#timeout(-1);
        let n = t === 0 ? this.#selector.select(0) : this.#poll();
        if (n === 0 && t !== 0 && !this.#stopping) {
          // Idle: park off-thread until I/O, the next timer, or a wake-up.
          this.#metrics.parks++;
          n = await this.#park(t);
          lastYield = this.#now;
        }
        this.#runCallbacks(n);
        // Let the promise continuations these callbacks started run now, as Node runs its
        // microtasks after each callback: a fetch handler's response is written on this turn
        // or the next, not at the next park or yield. They belong to this iteration: time() is its time.
        this.#inCallbacks = true;
        try {
          for (let i = 0; i < MICROTASK_TURNS; i++) await RESOLVED;
        } finally {
          this.#inCallbacks = false;
        }
        const sinceYield = this.#updateTime() - lastYield;
        // A clock that went back (a substituted one) counts as due: never wait for it to catch up.
        if (sinceYield >= this.#yieldMs || sinceYield < 0) {
          await this.#yieldToDeno();
          lastYield = this.#updateTime();
        }
      }
    } finally {
      this.#leave();
    }
  }

  /**
   * Runs the loop on the JS thread, blocking in the selector, until `stop()`
   * is called from a callback or a signal interrupts a wait. This is the
   * fastest mode, but nothing else in the program runs meanwhile: promises,
   * `setTimeout` and signal listeners wait until it returns.
   *
   * A signal interrupts only a wait in progress: one that arrives while
   * callbacks run is taken by Deno's handler and interrupts nothing, and a
   * busy loop may never wait at all. Pass `sliceMs` to have the loop also
   * return `"yielded"` after that long, so the caller can let Deno deliver
   * what is pending and call `runSync()` again:
   *
   * ```ts ignore
   * while (reactor.runSync({ sliceMs: 100 }) !== "stopped") {
   *   await new Promise((resolve) => setTimeout(resolve, 0)); // signals, timers, promises
   * }
   * ```
   *
   * @param options `returnOnSignal` (default true): return `"interrupted"`
   *   when a signal breaks a wait. `sliceMs` (default: none): return
   *   `"yielded"` after running this long.
   * @returns `"stopped"` after `stop()`, `"interrupted"` after a signal,
   *   `"yielded"` when the slice is over.
   */
  runSync(
    options: { returnOnSignal?: boolean; sliceMs?: number } = {},
  ): "stopped" | "interrupted" | "yielded" {
    const returnOnSignal = options.returnOnSignal ?? true;
    const sliceMs = options.sliceMs;
    if (sliceMs !== undefined && (typeof sliceMs !== "number" || Number.isNaN(sliceMs))) {
      throw new TypeError(`sliceMs must be a number of milliseconds, got ${sliceMs}`);
    }
    const slice = sliceMs === undefined ? -1 : Math.max(1, sliceMs);
    this.#enter();
    try {
      let deadline = this.#updateTime() + slice;
      while (!this.#stopping) {
        let t = this.#timeout(-1);
        if (slice > 0) {
          let left = deadline - this.#now;
          if (left > slice) {
            // The clock went back: a slice is a slice, not a wait until the clock catches up.
            deadline = this.#now + slice;
            left = slice;
          }
          if (left <= 0) return "yielded";
          if (t < 0 || t > left) t = left;
        }
        const n = this.#wait(t);
        if (returnOnSignal && this.#selector.interrupted) return "interrupted";
        this.#runCallbacks(n);
        this.#updateTime();
      }
      return "stopped";
    } finally {
      this.#leave();
    }
  }

  /**
   * Stops using the selector and the wake-up eventfd and closes them.
   * Registered fds are not closed: they belong to their owners. Timers that
   * have not fired are dropped; `callSoon()` callbacks that have not run yet
   * are due already, so they run as microtasks after the close (exceptions go
   * to `onError`; `cancel()` before then still cancels): a transport destroyed
   * just before `close()` still emits its `close` event.
   */
  close(): void {
    if (this.#closed) return;
    if (this.#running) throw new Error("Cannot close a running reactor: call stop() and wait for run() to return");
    this.#closed = true;
    this.#selector.close();
    close(this.#wakeFd);
    this.#timers.clear();
    const pending = this.#soon;
    this.#soon = [];
    this.#soonNext = [];
    // Checked again when each runs: cancel() after close() still means "not run".
    for (const h of pending) if (!h.cancelled) queueMicrotask(() => this.#runSoon(h));
  }

  /** Closes the reactor (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Hands `error` to the `onError` hook, as the loop does with exceptions
   * from callbacks. Transports call it for an `error` event that has no
   * listener, so no failure is silent (asyncio's `call_exception_handler`).
   * Works on a closed reactor too. Counts in `metrics.errors`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Reactor } from "@fdloop/fdloop/reactor";
   * const seen: string[] = [];
   * const reactor = new Reactor({ onError: (err, ctx) => seen.push(`${ctx.source}: ${(err as Error).message}`) });
   * reactor.reportError(new Error("lost"), { source: "transport", fd: 7 });
   * assert.deepEqual(seen, ["transport: lost"]);
   * reactor.close();
   * ```
   */
  reportError(error: unknown, context: ErrorContext): void {
    this.#metrics.errors++;
    try {
      this.#onError(error, context);
    } catch (hookError) {
      console.error("fdloop: the onError hook threw:", hookError, "while reporting:", error);
    }
  }

  #enter(): void {
    this.#checkOpen();
    if (this.#running) throw new Error("The reactor is already running");
    this.#running = true;
  }

  #leave(): void {
    this.#running = false;
    this.#stopping = false;
  }

  #checkOpen(): void {
    if (this.#closed) throw new Error("The reactor is closed");
  }

  /** Reads the clock into the loop's time and returns it. */
  #updateTime(): number {
    return this.#now = this.#clock();
  }

  /** The wait timeout: 0 with callbacks pending, else until the next timer, capped by `limit` (-1 = none). */
  #timeout(limit: number): number {
    if (this.#soon.length > 0 || this.#stopping) return 0;
    const next = this.#timers.peek();
    if (next === undefined) return limit;
    const until = next.when - this.#now;
    if (until <= 0) return 0;
    return limit < 0 ? until : Math.min(limit, until);
  }

  /** Waits off the JS thread (a wake-up through the eventfd ends it early). */
  async #park(timeout: number): Promise<number> {
    this.#parked = true;
    const start = this.#clock(); // blockedMs counts the wait, not the polls before it
    this.#parkUntil = timeout < 0 ? Infinity : start + timeout;
    try {
      return await this.#selector.selectAsync(timeout);
    } finally {
      this.#parked = false;
      this.#parkUntil = Infinity;
      const blocked = this.#updateTime() - start;
      if (blocked > 0) this.#metrics.blockedMs += blocked; // a clock that went back measured nothing
    }
  }

  /**
   * Lets Deno's event loop run under sustained load: its timers, its ops
   * (signals, Deno's own I/O) and their promises. A `setTimeout(0)` is
   * scheduled and I/O goes on through parked waits until it fires (its
   * callback wakes the pending wait): each park is a turn of Deno's loop, and
   * Deno's I/O (a `fetch`, a file read) takes many turns. One `setImmediate`
   * turn instead cost ~45 µs against ~1.8 ms, but a local `fetch` took 1.2 s
   * under load (one turn per yield) against 11 ms.
   */
  async #yieldToDeno(): Promise<void> {
    if (this.#stopping) return; // run() returns now: Deno gets its turn anyway
    this.#metrics.yields++;
    let fired = false;
    const timer = setTimeout(() => {
      fired = true;
      this.#wake();
    }, 0);
    try {
      while (!fired && !this.#stopping) {
        this.#updateTime(); // after the callbacks: the next timeout and the park's blocked time start now
        this.#runCallbacks(await this.#park(this.#timeout(-1)));
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** Waits on the JS thread; a wait that may block reads the clock again when it returns. */
  #wait(timeout: number): number {
    if (timeout === 0) return this.#selector.select(0);
    const ready = this.#poll();
    if (ready !== 0 || this.#stopping) return ready;
    const start = this.#clock(); // blockedMs counts the blocking wait, not the polls before it
    const n = this.#selector.select(timeout);
    const blocked = this.#updateTime() - start;
    if (blocked > 0) this.#metrics.blockedMs += blocked; // a clock that went back measured nothing
    return n;
  }

  /** Polls the selector without blocking, up to 1 + SPIN_POLLS times, until something is ready. */
  #poll(): number {
    const sel = this.#selector;
    let n = sel.select(0);
    for (let i = 0; i < SPIN_POLLS && n === 0 && !this.#stopping; i++) n = sel.select(0);
    return n;
  }

  /**
   * The phases after a wait, in order: dispatch the `n` ready I/O callbacks,
   * run the timers due at the loop's time, run the `callSoon` batch.
   * Returns the number of I/O callbacks dispatched, the wake-up's drain
   * included (`metrics.events` and `runOnce()` leave it out).
   */
  #runCallbacks(n: number): number {
    this.#metrics.iterations++;
    this.#inCallbacks = true;
    try {
      const dispatched = this.#dispatchIO(n);
      this.#runDueTimers();
      this.#runSoonQueue();
      return dispatched;
    } finally {
      this.#inCallbacks = false;
    }
  }

  /** Calls the reader and writer of each ready key, skipping registrations removed earlier in the batch. */
  #dispatchIO(n: number): number {
    const sel = this.#selector;
    const keys = sel.readyKeys;
    const events = sel.readyEvents;
    let dispatched = 0;
    for (let i = 0; i < n; i++) {
      const key = keys[i];
      if (!key.active) continue; // removed by an earlier callback of this batch
      const ev = events[i] & key.events;
      const entry = key.data;
      if ((ev & EVENT_READ) !== 0 && entry.reader !== null) {
        dispatched++;
        this.#callIO(entry.reader, key, ev);
      }
      if ((ev & EVENT_WRITE) !== 0 && key.active && (key.events & EVENT_WRITE) !== 0 && entry.writer !== null) {
        dispatched++;
        this.#callIO(entry.writer, key, ev);
      }
    }
    this.#metrics.events += dispatched;
    return dispatched;
  }

  #callIO(callback: IOCallback, key: SelectorKey<IOEntry>, events: number): void {
    try {
      callback(key.fd, events);
    } catch (err) {
      this.reportError(err, { source: "io", fd: key.fd });
    }
  }

  /** Runs the timers due at the loop's time; timers they schedule wait for the next iteration. */
  #runDueTimers(): void {
    const timers = this.#timers;
    let top = timers.peek();
    if (top === undefined) return;
    const now = this.#now;
    const seqLimit = this.#seq;
    while (top !== undefined && top.when <= now && top.seq < seqLimit) {
      timers.pop();
      if (top.interval > 0) {
        // Keep the period; a loop that ran late by a whole period reschedules from now (libuv), never for now.
        const next = top.when + top.interval;
        top.when = next > now ? next : now + top.interval;
        top.seq = this.#seq++;
        timers.push(top);
      } else {
        top.cancelled = true;
      }
      this.#metrics.timersFired++;
      try {
        top.callback();
      } catch (err) {
        this.reportError(err, { source: "timer" });
      }
      top = timers.peek();
    }
  }

  /** Runs the `callSoon` callbacks queued before this phase; ones they queue wait for the next iteration. */
  #runSoonQueue(): void {
    const batch = this.#soon;
    if (batch.length === 0) return;
    this.#soon = this.#soonNext;
    for (let i = 0; i < batch.length; i++) this.#runSoon(batch[i]);
    batch.length = 0;
    this.#soonNext = batch;
  }

  /** Runs one `callSoon` callback unless it was cancelled; an exception goes to `onError`. */
  #runSoon(h: Timer): void {
    if (h.cancelled) return;
    h.cancelled = true;
    this.#metrics.callbacks++;
    try {
      h.callback();
    } catch (err) {
      this.reportError(err, { source: "callSoon" });
    }
  }

  #wake(): void {
    if (!this.#parked || this.#wakePending) return;
    this.#wakePending = true;
    write(this.#wakeFd, WAKE_VALUE);
  }

  /**
   * The eventfd's reader. Not an I/O event of the user's: `#dispatchIO` counted it in the batch's
   * `dispatched`, which it adds to `metrics.events` after the batch, so it is taken back here (no
   * cost on the hot path, where a wake-up is rare and already costs two syscalls).
   */
  readonly #drainWake = (): void => {
    this.#metrics.events--;
    this.#wakePending = false;
    read(this.#wakeFd, this.#wakeBuf);
  };
}
