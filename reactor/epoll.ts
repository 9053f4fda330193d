/**
 * `EpollSelector`: epoll(7), level-triggered by default, with edge-triggered
 * and one-shot registrations on request.
 *
 * Each registration gets a token, written into `epoll_event.data` with the
 * fd; an event whose token no longer matches the fd's key is stale (the fd was
 * closed and its number reused) and is dropped.
 *
 * @module
 */

import {
  close,
  EPOLL_CTL_ADD,
  EPOLL_CTL_DEL,
  EPOLL_CTL_MOD,
  EPOLL_EVENT_SIZE,
  EPOLL_EVENT_STRIDE,
  epollCreate,
  epollCtl,
  EPOLLERR,
  EPOLLET,
  EPOLLHUP,
  EPOLLIN,
  EPOLLONESHOT,
  EPOLLOUT,
  EPOLLPRI,
  EPOLLRDHUP,
  epollWait,
  epollWaitAsync,
  eventfd,
  INTERRUPTED,
  OSError,
  write,
} from "../ffi/mod.ts";
import {
  BaseSelector,
  EVENT_EDGE,
  EVENT_ONESHOT,
  EVENT_READ,
  EVENT_WRITE,
  type SelectorKey,
  timeoutToInt,
} from "./selector.ts";

const READ_MASK = EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLHUP | EPOLLERR;
const WRITE_MASK = EPOLLOUT | EPOLLHUP | EPOLLERR;

/** Maps `EVENT_*` interest to epoll flags (the one place that does). */
function interestsToEpoll(events: number): number {
  let ev = 0;
  if (events & EVENT_READ) ev |= EPOLLIN;
  if (events & EVENT_WRITE) ev |= EPOLLOUT;
  if (events & EVENT_EDGE) ev |= EPOLLET;
  if (events & EVENT_ONESHOT) ev |= EPOLLONESHOT;
  return ev >>> 0;
}

/** Most events one `epoll_wait` may return (the kernel's `EP_MAX_EVENTS`: INT_MAX / sizeof(struct epoll_event)). */
const MAX_EVENTS_LIMIT = Math.floor(0x7fffffff / EPOLL_EVENT_SIZE);

/** `maxEvents`, checked: a positive integer the kernel accepts. */
function checkMaxEvents(max: number): number {
  if (!Number.isInteger(max) || max < 1 || max > MAX_EVENTS_LIMIT) {
    throw new RangeError(`maxEvents must be an integer from 1 to ${MAX_EVENTS_LIMIT}, got ${max}`);
  }
  return max;
}

/** Options of {@linkcode EpollSelector}. */
export interface EpollOptions {
  /** Most events returned by one wait (default 1024). */
  maxEvents?: number;
}

/**
 * The epoll backend.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EpollSelector } from "@fdloop/fdloop/reactor";
 * const sel = new EpollSelector();
 * assert.equal(sel.select(0), 0); // nothing registered
 * sel.close();
 * ```
 */
export class EpollSelector<T = unknown> extends BaseSelector<T> {
  /** `"epoll"`. */
  readonly name = "epoll" as const;
  /** The epoll instance's fd. */
  readonly epfd: number;
  readonly #max: number;
  // The event arrays and their addresses (taken once: the arrays live as long as the selector).
  readonly #events: Uint8Array;
  readonly #eventsPtr: Deno.PointerValue;
  readonly #words: Uint32Array;
  readonly #parked: Uint8Array;
  readonly #parkedPtr: Deno.PointerValue;
  readonly #parkedWords: Uint32Array;
  readonly #ctl = new Uint8Array(16);
  readonly #ctlWords = new Uint32Array(this.#ctl.buffer);
  /** An eventfd that `close()` adds to wake a pending `selectAsync()`; closed with `epfd`. */
  #closeWakeFd = -1;

  /**
   * Creates the epoll instance (`epoll_create1`).
   *
   * @throws {RangeError} if `maxEvents` is not an integer from 1 to INT_MAX / sizeof(struct epoll_event).
   */
  constructor(options: EpollOptions = {}) {
    const max = checkMaxEvents(options.maxEvents ?? 1024);
    super(max);
    this.#max = max;
    // The buffers first: nothing to clean up if one cannot be allocated.
    this.#events = new Uint8Array(max * EPOLL_EVENT_SIZE);
    this.#eventsPtr = Deno.UnsafePointer.of(this.#events);
    this.#words = new Uint32Array(this.#events.buffer);
    this.#parked = new Uint8Array(max * EPOLL_EVENT_SIZE);
    this.#parkedPtr = Deno.UnsafePointer.of(this.#parked);
    this.#parkedWords = new Uint32Array(this.#parked.buffer);
    this.epfd = epollCreate();
  }

  #ctlOp(op: number, key: SelectorKey<T>): void {
    const w = this.#ctlWords;
    // epoll_event: u32 events at byte 0, u64 data at byte 4 (x86_64) or 8 (aarch64).
    const d = EPOLL_EVENT_STRIDE === 3 ? 1 : 2;
    w[0] = interestsToEpoll(key.events);
    w[d] = key.token;
    w[d + 1] = key.fd;
    epollCtl(this.epfd, op, key.fd, this.#ctl);
  }

  /** Adds a key (see `BaseSelector`). */
  protected add(key: SelectorKey<T>): void {
    this.#ctlOp(EPOLL_CTL_ADD, key);
  }

  /** Applies a key's new events (see `BaseSelector`). */
  protected change(key: SelectorKey<T>): void {
    this.#ctlOp(EPOLL_CTL_MOD, key);
  }

  /** Removes a key (see `BaseSelector`). */
  protected remove(key: SelectorKey<T>): void {
    try {
      this.#ctlOp(EPOLL_CTL_DEL, key);
    } catch (err) {
      // Closed before unregister (EBADF), or closed and reused (ENOENT): the kernel already forgot it.
      if (!(err instanceof OSError) || (err.code !== "EBADF" && err.code !== "ENOENT")) throw err;
    }
  }

  /**
   * Frees the backend's resources. With a `selectAsync()` pending, the epoll
   * fd stays open until that wait returns: closed now, its number could be
   * reused by another epoll instance before the wait starts on its thread, and
   * the wait would consume that instance's events (edge-triggered and one-shot
   * ones are then lost). An eventfd added to the set wakes the wait at once.
   */
  protected release(): void {
    if (!this.asyncPending) {
      close(this.epfd);
      return;
    }
    try {
      const wake = eventfd();
      this.#closeWakeFd = wake;
      const w = this.#ctlWords;
      w.fill(0); // data 0: token 0 belongs to no key
      w[0] = EPOLLIN;
      epollCtl(this.epfd, EPOLL_CTL_ADD, wake, this.#ctl);
      this.#ctl.fill(0);
      this.#ctl[0] = 1; // an eventfd counter is a u64; 1 in little-endian
      write(wake, this.#ctl, 8);
    } catch {
      // No fd to spare (EMFILE): the wait returns at its timeout or on the next event instead.
    }
  }

  /** Closes what `release()` left open for a pending wait, once that wait has returned. */
  #releaseDeferred(): void {
    close(this.epfd);
    if (this.#closeWakeFd >= 0) close(this.#closeWakeFd);
    this.#closeWakeFd = -1;
  }

  /** Waits on the JS thread; see {@linkcode Selector.select}. */
  select(timeoutMs: number): number {
    if (this.closed) this.checkNotClosed();
    const n = epollWait(this.epfd, this.#eventsPtr, this.#max, timeoutToInt(timeoutMs));
    this.interrupted = n === INTERRUPTED;
    return n > 0 ? this.#collect(this.#words, n) : 0;
  }

  /** Waits off the JS thread; see {@linkcode Selector.selectAsync}. */
  async selectAsync(timeoutMs: number): Promise<number> {
    // Only one wait at a time: the pending call owns #parked until it returns.
    this.beginAsyncWait();
    let n: number;
    try {
      n = await epollWaitAsync(this.epfd, this.#parkedPtr, this.#max, timeoutToInt(timeoutMs));
    } finally {
      this.endAsyncWait();
      if (this.closed) this.#releaseDeferred(); // close() ran while the wait was pending
    }
    this.interrupted = n === INTERRUPTED;
    return n > 0 && !this.closed ? this.#collect(this.#parkedWords, n) : 0;
  }

  #collect(words: Uint32Array, n: number): number {
    const s = EPOLL_EVENT_STRIDE;
    const d = s === 3 ? 1 : 2;
    const keys = this.keys;
    let j = 0;
    for (let i = 0; i < n; i++) {
      const base = s * i;
      const key = keys[words[base + d + 1]];
      if (key === undefined || key.token !== words[base + d]) continue; // stale: fd closed or reused
      const ev = words[base];
      let mask = 0;
      if (ev & READ_MASK) mask |= EVENT_READ;
      if (ev & WRITE_MASK) mask |= EVENT_WRITE;
      j = this.pushReady(j, key, mask);
    }
    return j;
  }
}
