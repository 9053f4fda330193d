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
 * The process-wide default {@linkcode Reactor}, created on first use. Every
 * `net` call without a `reactor` option uses it.
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
  return shared ??= new Reactor();
}
