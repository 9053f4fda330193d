/**
 * Helpers shared by the reactor tests: the {@linkcode reactorTest} harness,
 * a substitutable {@linkcode FakeClock}, counted loop turns
 * ({@linkcode turns}), and runs bounded by watchdogs so a bug fails instead
 * of hanging.
 *
 * Two ways to prove that something did *not* happen, without sleeping and
 * hoping: drive the loop yourself (`reactor.runOnce(0)` n times), or, when
 * `run()` is going in the background, await {@linkcode turns}, which resolves
 * after n more loop iterations have run. Timers are tested on a
 * {@linkcode FakeClock}: advance it and call `runOnce(0)`, no real waiting.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type BackendName, type ErrorContext, Reactor } from "../reactor/mod.ts";
import { assertNoFdLeak, BACKENDS, FdScope } from "./_helpers.ts";

export interface Reported {
  error: unknown;
  context: ErrorContext;
}

/** A reactor on `backend` whose `onError` records into `errors`. */
export function newReactor(
  backend: BackendName,
  yieldIntervalMs?: number,
  clock?: () => number,
): { reactor: Reactor; errors: Reported[] } {
  const errors: Reported[] = [];
  const reactor = new Reactor({
    backend,
    yieldIntervalMs,
    clock,
    onError: (error, context) => errors.push({ error, context }),
  });
  return { reactor, errors };
}

/** Fails with the first error a callback threw (assertions inside callbacks land there). */
export function assertNoErrors(errors: Reported[]): void {
  if (errors.length === 0) return;
  const { error, context } = errors[0];
  const where = context.fd === undefined ? context.source : `${context.source} callback of fd ${context.fd}`;
  throw new Error(`${errors.length} callback error(s), the first in the ${where}: ${error}`, { cause: error });
}

/**
 * Stops a reactor running in the background (`running` is what its `run()`
 * returned), lets it flush the closes it still owes, and closes it.
 */
export async function stopAndClose(reactor: Reactor, running: Promise<void>): Promise<void> {
  reactor.stop();
  await running;
  for (let i = 0; i < 3; i++) reactor.runOnce(0);
  reactor.close();
}

// ---------------------------------------------------------------- the harness

/**
 * A clock for `new Reactor({ clock })` that only moves when told to, like
 * std's `FakeTime`. Pass {@linkcode FakeClock.read} as the clock, move it with
 * {@linkcode FakeClock.advance}, then `reactor.runOnce(0)`: the timers due by
 * then fire, at once.
 */
export class FakeClock {
  /** The time the reactor reads, in ms. */
  now: number;
  /** How many times the reactor read the clock. */
  reads = 0;
  /** Moves the time on by this much after each read (default 0: only {@linkcode FakeClock.advance} moves it). */
  autoAdvanceMs = 0;

  /** @param start The first time read (not 0, so a timer "due at 0" is not confused with one never set). */
  constructor(start = 1_000_000) {
    this.now = start;
  }

  /** The clock function to hand to the reactor. */
  readonly read = (): number => {
    this.reads++;
    const now = this.now;
    this.now += this.autoAdvanceMs;
    return now;
  };

  /** Moves the time forward by `ms`. */
  advance(ms: number): void {
    this.now += ms;
  }

  /** Advances `stepMs` at a time for `ms` ms, running one zero-timeout loop turn (`runOnce(0)`) after each step. */
  runFor(reactor: Reactor, ms: number, stepMs = 1): void {
    for (let t = 0; t < ms; t += stepMs) {
      this.advance(stepMs);
      reactor.runOnce(0);
    }
  }
}

/** What a {@linkcode reactorTest} body gets. */
export interface ReactorContext {
  /** A fresh reactor on the backend under test; closed after the body. */
  reactor: Reactor;
  /** The backend under test. */
  backend: BackendName;
  /**
   * What the reactor's `onError` received. The harness fails the test if any
   * are left at the end: a body that expects errors checks and clears them.
   */
  errors: Reported[];
  /** Fds the body opens; closed after the reactor. */
  fds: FdScope;
  /** The reactor's clock when the test asked for `{ fakeClock: true }` (unused otherwise). */
  clock: FakeClock;
}

/** Options of {@linkcode reactorTest}. */
export interface ReactorTestOptions {
  /** Substitute a {@linkcode FakeClock} for `performance.now` (default false: the real clock). */
  fakeClock?: boolean;
  /** The reactor's `yieldIntervalMs`. */
  yieldIntervalMs?: number;
}

/**
 * Registers `Deno.test` "`name` (`backend`)": a fresh reactor (recording its
 * callback errors, on a fake clock if asked), an fd scope, the body, then the
 * reactor closed, the fds closed, a check that no callback error is left, and
 * the process's fd count checked around it all (the reactor's own selector
 * and wake-up fd included, so `close()` releasing them is checked too).
 *
 * @example
 * ```ts ignore
 * for (const backend of BACKENDS) {
 *   reactorTest(backend, "`Reactor.runOnce(0)` with nothing ready dispatches nothing", ({ reactor }) => {
 *     assert.equal(reactor.runOnce(0), 0);
 *   });
 * }
 * ```
 */
export function reactorTest(
  backend: BackendName,
  name: string,
  body: (ctx: ReactorContext) => void | Promise<void>,
  options: ReactorTestOptions = {},
): void {
  Deno.test(`${name} (${backend})`, () =>
    assertNoFdLeak(async () => {
      using fds = new FdScope();
      const clock = new FakeClock();
      const { reactor, errors } = newReactor(
        backend,
        options.yieldIntervalMs,
        options.fakeClock ? clock.read : undefined,
      );
      let failure: unknown;
      try {
        await body({ reactor, backend, errors, fds, clock });
      } catch (err) {
        failure = err ?? new Error("The test body threw a nullish value");
      }
      if (reactor.running) {
        // A body that left run() going (it failed, most likely): stop it; closing would throw.
        reactor.stop();
        throw failure ?? new Error("The test body returned while the reactor was still running");
      }
      reactor.close();
      if (failure !== undefined && errors.length > 0) {
        // Either may be the cause: an assertion failing in a callback often makes the body fail later.
        throw new AggregateError(
          [failure, ...errors.map((e) => e.error)],
          `The test failed, and callbacks reported ${errors.length} error(s)`,
        );
      }
      if (failure !== undefined) throw failure;
      assertNoErrors(errors);
    }));
}

/**
 * {@linkcode reactorTest} once for every backend (epoll, poll, select): one
 * `Deno.test` per backend, named "`name` (`backend`)".
 */
export function testEveryBackend(
  name: string,
  body: (ctx: ReactorContext) => void | Promise<void>,
  options: ReactorTestOptions = {},
): void {
  for (const backend of BACKENDS) reactorTest(backend, name, body, options);
}

// ---------------------------------------------------------------- counted turns

/**
 * Resolves after `n` more loop iterations of a reactor that is running
 * (`run()` in the background): each turn queues a `callSoon` (which wakes a
 * parked loop) and waits until the loop has run it, so everything the loop
 * would do in those iterations has been done. This is counting, not hoping:
 * use it to show that an event did *not* come. Rejects after `timeoutMs`
 * (the loop is not running) or when `signal` aborts.
 */
export async function turns(reactor: Reactor, n = 3, timeoutMs = 5000, signal?: AbortSignal): Promise<void> {
  for (let i = 0; i < n; i++) {
    await new Promise<void>((resolve, reject) => {
      const finish = (err?: Error) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        handle?.cancel();
        if (err) reject(err);
        else resolve();
      };
      const onAbort = () => finish(new Error("The test was aborted: its reactor stopped early"));
      const timer = setTimeout(
        () => finish(new Error(`Timed out after ${timeoutMs} ms waiting for loop turn ${i + 1} of ${n}`)),
        timeoutMs,
      );
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort);
      const handle = reactor.callSoon(() => finish());
    });
  }
}

// ---------------------------------------------------------------- bounded runs

/** `runSync()` until stopped; a reactor timer stops it after `limitMs` and the call fails. */
export function runSyncBounded(reactor: Reactor, limitMs: number, what: string): void {
  let expired = false;
  const watchdog = reactor.callLater(limitMs, () => {
    expired = true;
    reactor.stop();
  });
  try {
    while (reactor.runSync() !== "stopped") {
      // A signal interrupted a wait: go on.
    }
  } finally {
    watchdog.cancel();
  }
  if (expired) throw new Error(`${what}: the reactor was still running after ${limitMs} ms`);
}

/**
 * `await run()` until stopped; after `limitMs` a Deno timer (and, unless
 * `reactorWatchdog` is false, a reactor timer too) stops it and the call fails.
 * Pass `reactorWatchdog: false` where the loop must be idle with no timers.
 */
export async function runBounded(
  reactor: Reactor,
  limitMs: number,
  what: string,
  reactorWatchdog = true,
): Promise<void> {
  let expired = false;
  const expire = () => {
    expired = true;
    reactor.stop();
  };
  const denoWatchdog = setTimeout(expire, limitMs);
  const watchdog = reactorWatchdog ? reactor.callLater(limitMs, expire) : null;
  try {
    await reactor.run();
  } finally {
    clearTimeout(denoWatchdog);
    watchdog?.cancel();
  }
  if (expired) throw new Error(`${what}: the reactor was still running after ${limitMs} ms`);
}

/** Whether `p` settles within `ms` (a Deno timer races it; the timer is always cleared). */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Starts `run()` and fails unless it returns within `ms` (it is stopped and awaited either way). */
export async function expectRunToReturn(reactor: Reactor, ms: number, what: string): Promise<void> {
  const running = reactor.run();
  const ok = await settlesWithin(running, ms);
  if (!ok) reactor.stop();
  await running;
  assert.ok(ok, `${what}: run() did not return within ${ms} ms`);
}

/**
 * Resolves once `predicate()` is true, checking on every macrotask turn
 * (`setTimeout(0)`); rejects after `timeoutMs` naming `what`.
 */
export async function waitFor(predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!predicate()) {
    if (performance.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(1);
  }
}

export const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export const ONE = new Uint8Array([1]);
