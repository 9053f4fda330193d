/**
 * `PollSelector`: poll(2) over an array of `struct pollfd` kept in step with
 * the registrations (append on register, swap-remove on unregister), so a
 * wait costs one call and one scan of the array.
 *
 * @module
 */

import {
  INTERRUPTED,
  poll,
  pollAsync,
  POLLERR,
  POLLFD_SIZE,
  POLLHUP,
  POLLIN,
  POLLNVAL,
  POLLOUT,
  POLLPRI,
  POLLRDHUP,
} from "../ffi/mod.ts";
import { BaseSelector, EVENT_READ, EVENT_WRITE, type SelectorKey, timeoutToInt } from "./selector.ts";

const READ_MASK = POLLIN | POLLPRI | POLLRDHUP | POLLHUP | POLLERR | POLLNVAL;
const WRITE_MASK = POLLOUT | POLLHUP | POLLERR | POLLNVAL;

/** Maps `EVENT_*` interest to poll flags (the one place that does). */
function interestsToPoll(events: number): number {
  return (events & EVENT_READ ? POLLIN : 0) | (events & EVENT_WRITE ? POLLOUT : 0);
}

/**
 * The poll backend: no fd limit, O(registered fds) per wait.
 *
 * @example
 * ```ts
 * import { PollSelector } from "@fdloop/fdloop/reactor";
 * import assert from "node:assert/strict";
 * const sel = new PollSelector();
 * assert.equal(sel.name, "poll");
 * assert.equal(sel.select(0), 0);
 * sel.close();
 * ```
 */
export class PollSelector<T = unknown> extends BaseSelector<T> {
  /** `"poll"`. */
  readonly name = "poll" as const;
  #bytes = new Uint8Array(64 * POLLFD_SIZE);
  #fds = new Int32Array(this.#bytes.buffer);
  #ev = new Int16Array(this.#bytes.buffer);
  #order: SelectorKey<T>[] = [];
  #count = 0;
  #parked = new Uint8Array(0);

  /** Creates an empty pollfd array. */
  constructor() {
    super(64);
  }

  /** Adds a key (see `BaseSelector`). */
  protected add(key: SelectorKey<T>): void {
    this.checkOpen(key.fd);
    const i = this.#count;
    if ((i + 1) * POLLFD_SIZE > this.#bytes.byteLength) {
      const bigger = new Uint8Array(this.#bytes.byteLength * 2);
      bigger.set(this.#bytes);
      this.#bytes = bigger;
      this.#fds = new Int32Array(bigger.buffer);
      this.#ev = new Int16Array(bigger.buffer);
    }
    this.#fds[2 * i] = key.fd;
    this.#ev[4 * i + 2] = interestsToPoll(key.events);
    this.#ev[4 * i + 3] = 0;
    this.#order[i] = key;
    key.index = i;
    this.#count = i + 1;
  }

  /** Applies a key's new events (see `BaseSelector`). */
  protected change(key: SelectorKey<T>): void {
    this.#ev[4 * key.index + 2] = interestsToPoll(key.events);
  }

  /** Removes a key (see `BaseSelector`). */
  protected remove(key: SelectorKey<T>): void {
    const i = key.index;
    const last = --this.#count;
    if (i !== last) {
      const moved = this.#order[last];
      this.#fds[2 * i] = this.#fds[2 * last];
      this.#ev[4 * i + 2] = this.#ev[4 * last + 2];
      this.#order[i] = moved;
      moved.index = i;
    }
    this.#order.length = last;
    key.index = -1;
  }

  /** Frees the backend's resources. */
  protected release(): void {
    this.#order = [];
    this.#count = 0;
  }

  /** Waits on the JS thread; see {@linkcode Selector.select}. */
  select(timeoutMs: number): number {
    if (this.closed) this.checkNotClosed();
    const n = poll(this.#bytes, this.#count, timeoutToInt(timeoutMs));
    this.interrupted = n === INTERRUPTED;
    return n > 0 ? this.#collect(this.#ev, this.#order, this.#count, n) : 0;
  }

  /** Waits off the JS thread; see {@linkcode Selector.selectAsync}. */
  async selectAsync(timeoutMs: number): Promise<number> {
    // Only one wait at a time: the pending call owns #parked until it returns.
    this.beginAsyncWait();
    let n: number, parked: Uint8Array, order: SelectorKey<T>[], count: number;
    try {
      // The pending call owns its copy: registrations may change while it waits.
      count = this.#count;
      const size = count * POLLFD_SIZE;
      if (this.#parked.byteLength < size) this.#parked = new Uint8Array(this.#bytes.byteLength);
      parked = this.#parked;
      parked.set(this.#bytes.subarray(0, size));
      order = this.#order.slice(0, count);
      n = await pollAsync(parked, count, timeoutToInt(timeoutMs));
    } finally {
      this.endAsyncWait();
    }
    this.interrupted = n === INTERRUPTED;
    if (n <= 0 || this.closed) return 0;
    return this.#collect(new Int16Array(parked.buffer), order, count, n);
  }

  #collect(ev: Int16Array, order: SelectorKey<T>[], count: number, n: number): number {
    let j = 0;
    for (let i = 0; i < count && n > 0; i++) {
      const re = ev[4 * i + 3];
      if (re === 0) continue;
      n--;
      const key = order[i];
      if (!key.active) continue;
      let mask = 0;
      if (re & READ_MASK) mask |= EVENT_READ;
      if (re & WRITE_MASK) mask |= EVENT_WRITE;
      j = this.pushReady(j, key, mask);
    }
    return j;
  }
}
