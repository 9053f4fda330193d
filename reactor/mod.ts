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
  timeoutToInt,
} from "./selector.ts";
export { type EpollOptions, EpollSelector } from "./epoll.ts";
export { PollSelector } from "./poll.ts";
export { SelectSelector } from "./select.ts";
export { BACKENDS, defaultSelector } from "./default.ts";
export { TimerHandle, TimerHeap } from "./timers.ts";
export {
  type ErrorContext,
  type IOCallback,
  type IOEntry,
  Reactor,
  type ReactorMetrics,
  type ReactorOptions,
} from "./reactor.ts";
