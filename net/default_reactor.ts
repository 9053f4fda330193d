/**
 * The shared default reactor for programs that need only one.
 *
 * @module
 */

import { Reactor } from "../reactor/mod.ts";

let shared: Reactor | undefined;

/**
 * Runs `fn` on the reactor's next iteration, or in a microtask if the
 * reactor is already closed, so a transport closed during clean-up still
 * emits its `close` event exactly once. An exception from `fn` goes to the
 * reactor's `onError` either way.
 */
export function soon(reactor: Reactor, fn: () => void): void {
  if (!reactor.closed) {
    reactor.callSoon(fn);
    return;
  }
  queueMicrotask(() => {
    try {
      fn();
    } catch (err) {
      reactor.reportError(err, { source: "callSoon" });
    }
  });
}

/**
 * The process-wide default {@linkcode Reactor}, created on first use (and
 * again after someone closed it). Every `net` call without a `reactor`
 * option uses it.
 *
 * @example
 * ```ts
 * import { defaultReactor } from "@fdloop/fdloop/net";
 * const reactor = defaultReactor();
 * reactor.callLater(1, () => reactor.stop());
 * await reactor.run();
 * ```
 */
export function defaultReactor(): Reactor {
  // A closed one is of no use to anybody: every later listen(), serve() or request() would throw.
  if (shared === undefined || shared.closed) shared = new Reactor();
  return shared;
}

interface Hold {
  count: number;
  running: Promise<void> | null;
}
const holds = new WeakMap<Reactor, Hold>();

/**
 * Keeps `reactor` running (its cooperative `run()`) while at least one hold
 * is taken, for APIs that work without the caller running a loop (`serve()`,
 * the HTTP client, like `Deno.serve` and `fetch`). If the reactor was
 * already running (the caller runs it), holding does nothing more. The
 * returned function releases the hold (once); when the last is released the
 * loop the holds started is stopped, so the process can exit.
 */
export function holdRunning(reactor: Reactor): () => void {
  let h = holds.get(reactor);
  if (h === undefined) holds.set(reactor, h = { count: 0, running: null });
  const hold = h;
  hold.count++;
  if (hold.running === null && !reactor.running) startRun(reactor, hold);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    hold.count--;
    const run = hold.running;
    if (hold.count === 0 && run !== null) {
      // On the loop's next turn, so a hold taken meanwhile (a request right after another) keeps it going.
      // Only that run: a check left queued when it ended otherwise (stop() in its last turn) would stop
      // the next run of the reactor, the program's own or one a later hold started.
      reactor.callSoon(() => {
        if (hold.count === 0 && hold.running === run) reactor.stop();
      });
    }
  };
}

function startRun(reactor: Reactor, hold: Hold): void {
  hold.running = reactor.run().then(() => {
    hold.running = null;
    // Taken again while the loop was stopping: run on, unless the program runs it itself by now.
    if (hold.count > 0 && !reactor.closed && !reactor.running) startRun(reactor, hold);
  }, (err) => {
    hold.running = null;
    reactor.reportError(err, { source: "run" });
  });
}
