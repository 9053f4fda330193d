/**
 * fdloop: a reactor for Deno that talks to the kernel through FFI to libc —
 * epoll, poll and select selectors, a callback loop with timers, and
 * buffered TCP/Unix/UDP transports with backpressure.
 *
 * Run with `--allow-ffi` (plain, not `--allow-ffi=libc.so.6`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, listen, Reactor } from "@fdloop/fdloop";
 * const reactor = new Reactor();
 * const server = listen({ host: "127.0.0.1", port: 0, reactor }, (conn) => {
 *   conn.on("data", (chunk) => conn.write(chunk)); // echo
 * });
 * const client = connect({ host: "127.0.0.1", port: server.port, reactor });
 * let echoed = "";
 * client.on("data", (chunk) => {
 *   echoed += new TextDecoder().decode(chunk);
 *   client.destroy();
 *   server.close({ closeConnections: true }).then(() => reactor.stop());
 * });
 * client.write("ping");
 * await reactor.run();
 * reactor.close();
 * assert.equal(echoed, "ping");
 * ```
 *
 * @module
 */

export {
  type BackendName,
  BACKENDS,
  BaseSelector,
  createSelector,
  defaultSelector,
  type EpollOptions,
  EpollSelector,
  type ErrorContext,
  EVENT_EDGE,
  EVENT_ONESHOT,
  EVENT_READ,
  EVENT_WRITE,
  type IOCallback,
  PollSelector,
  Reactor,
  type ReactorMetrics,
  type ReactorOptions,
  type Selector,
  SelectorKey,
  SelectSelector,
  type TimerHandle,
} from "./reactor/mod.ts";
export * from "./net/mod.ts";
export * from "./http/mod.ts";
export { Errno, errnoName, OSError } from "./ffi/mod.ts";
