/**
 * Picking a backend.
 *
 * @module
 */

import { EpollSelector } from "./epoll.ts";
import { PollSelector } from "./poll.ts";
import { SelectSelector } from "./select.ts";
import type { BackendName, Selector } from "./selector.ts";
import { OSError } from "../ffi/mod.ts";

/** Errors of `epoll_create1` that say nothing about epoll itself. */
const OUT_OF_RESOURCES = new Set(["EMFILE", "ENFILE", "ENOMEM"]);

/** Every backend name, best first. */
export const BACKENDS: readonly BackendName[] = ["epoll", "poll", "select"];

/**
 * Creates a selector: the named backend, or the best this system has
 * (epoll, then poll, then select). Without a name, an epoll that cannot be
 * made for want of fds or memory (`EMFILE`, `ENFILE`, `ENOMEM`) throws that
 * `OSError` rather than falling back to poll.
 *
 * @param name `"epoll"`, `"poll"` or `"select"`; omit for the best available.
 * @returns A new selector; `close()` it when done.
 * @throws {TypeError} for an unknown name.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSelector } from "@fdloop/fdloop/reactor";
 * const sel = createSelector("poll");
 * assert.equal(sel.name, "poll");
 * sel.close();
 * ```
 */
export function createSelector<T = unknown>(name?: BackendName): Selector<T> {
  switch (name) {
    case "epoll":
      return new EpollSelector<T>();
    case "poll":
      return new PollSelector<T>();
    case "select":
      return new SelectSelector<T>();
    case undefined:
      try {
        return new EpollSelector<T>();
      } catch (err) {
        // Out of fds or memory is the caller's problem, which poll would only hide until the next socket;
        // anything else (ENOSYS, EPERM from a sandbox) means no epoll here.
        if (err instanceof OSError && OUT_OF_RESOURCES.has(err.code)) throw err;
        return new PollSelector<T>();
      }
    default:
      throw new TypeError(`Unknown backend ${JSON.stringify(name)}: use one of ${BACKENDS.join(", ")}`);
  }
}

/**
 * The old name of {@linkcode createSelector}.
 *
 * @deprecated Use {@linkcode createSelector}: the name suggests one shared default, but this makes a new selector
 * on every call, as `createSelector` does.
 */
export const defaultSelector: typeof createSelector = createSelector;
