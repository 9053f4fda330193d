/**
 * The shared default reactor for programs that need only one.
 *
 * @module
 */

import { Reactor } from "../reactor/mod.ts";

let shared: Reactor | undefined;

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
