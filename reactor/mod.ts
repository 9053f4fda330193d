/**
 * Selectors (epoll, poll, select) and the `Reactor` loop.
 *
 * @example
 * ```ts
 * import { Reactor } from "@fdloop/fdloop/reactor";
 * const reactor = new Reactor({ backend: "poll" });
 * reactor.callLater(5, () => reactor.stop());
 * await reactor.run();
 * reactor.close();
 * ```
 *
 * @module
 */

export {
  type BackendName,
  BaseSelector,
  EVENT_EDGE,
  EVENT_ONESHOT,
  EVENT_READ,
  EVENT_WRITE,
  type Selector,
  SelectorKey,
} from "./selector.ts";
export { type EpollOptions, EpollSelector } from "./epoll.ts";
export { PollSelector } from "./poll.ts";
export { SelectSelector } from "./select.ts";
export { BACKENDS, createSelector, defaultSelector } from "./default.ts";
export type { TimerHandle } from "./timers.ts";
export { type ErrorContext, type IOCallback, Reactor, type ReactorMetrics, type ReactorOptions } from "./reactor.ts";
