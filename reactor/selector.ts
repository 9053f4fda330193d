/**
 * The `Selector` interface and the base class its backends share.
 *
 * Modelled on Python's `selectors`: register an fd with the events you want
 * (`EVENT_READ`, `EVENT_WRITE`) and any `data`, then `select()` tells which
 * are ready. Unlike Python, `select()` allocates nothing per event: it
 * returns a count and leaves the ready keys in `readyKeys[0..n)` and their
 * events in `readyEvents[0..n)`, arrays the selector owns and reuses.
 *
 * @module
 */

import { assertOpenFd, Errno, OSError } from "../ffi/mod.ts";

/** Interest in readability. */
export const EVENT_READ = 1;
/** Interest in writability. */
export const EVENT_WRITE = 2;
/** epoll only: edge-triggered (`EPOLLET`): an event is reported once per change, so drain to `EAGAIN`. */
export const EVENT_EDGE = 4;
/** epoll only: one-shot (`EPOLLONESHOT`): after one event the fd is disarmed until `modify()`. */
export const EVENT_ONESHOT = 8;

const EVENT_MASK = EVENT_READ | EVENT_WRITE | EVENT_EDGE | EVENT_ONESHOT;

/** The backends fdloop ships. */
export type BackendName = "epoll" | "poll" | "select";

/**
 * One registration: the fd, the events wanted and the caller's data.
 * The object is created by `register()` and lives until `unregister()`.
 */
export class SelectorKey<T = unknown> {
  /** Whether the key is still registered; false once unregistered (stale events are dropped). */
  active = true;
  /** Backend bookkeeping: the slot of this key in a poll array. */
  index: number = -1;
  /**
   * Makes a key; selectors do this in `register()`.
   *
   * @param fd The file descriptor.
   * @param events The wanted events (`EVENT_*` bits).
   * @param data The caller's data.
   * @param token A number unique to this registration, written into `epoll_event.data`.
   */
  constructor(public readonly fd: number, public events: number, public data: T, public readonly token: number) {}
}

/**
 * What every backend offers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSelector, EVENT_READ } from "@fdloop/fdloop/reactor";
 * import { close, pipe, write } from "@fdloop/fdloop/ffi";
 * const sel = createSelector<string>();
 * const [r, w] = pipe();
 * sel.register(r, EVENT_READ, "the pipe");
 * write(w, new Uint8Array([1]));
 * const n = sel.select(100);
 * assert.equal(n, 1);
 * assert.equal(sel.readyKeys[0].data, "the pipe");
 * assert.equal(sel.readyEvents[0], EVENT_READ);
 * sel.close();
 * close(r);
 * close(w);
 * ```
 */
export interface Selector<T = unknown> {
  /** The backend's name. */
  readonly name: BackendName;
  /** Number of registered fds. */
  readonly size: number;
  /** Keys of the last `select()`, valid in `[0, n)`. */
  readonly readyKeys: SelectorKey<T>[];
  /** Ready events (`EVENT_READ | EVENT_WRITE`) of the last `select()`, valid in `[0, n)`. */
  readonly readyEvents: Uint32Array;
  /** True when the last wait was interrupted by a signal (`EINTR`) or its errno was lost. */
  readonly interrupted: boolean;
  /**
   * Starts watching `fd`.
   * @throws {OSError} EEXIST if already registered, EBADF for a closed fd.
   */
  register(fd: number, events: number, data: T): SelectorKey<T>;
  /**
   * Changes the events or data of a registered fd.
   * @throws {OSError} ENOENT if `fd` is not registered.
   */
  modify(fd: number, events: number, data: T): SelectorKey<T>;
  /**
   * Stops watching `fd`. Call it before closing the fd: with epoll, a file
   * still open elsewhere (a `dup`, a child process) keeps its kernel
   * registration after `close`, and its events are only filtered out.
   * Unregistering an fd that is already closed does not throw.
   * @throws {OSError} ENOENT if `fd` is not registered.
   */
  unregister(fd: number): SelectorKey<T>;
  /** The key of `fd`, if registered. */
  get(fd: number): SelectorKey<T> | undefined;
  /**
   * Waits up to `timeoutMs` (rounded up to whole ms; negative = forever; 0 = poll) and
   * returns the number of ready keys. Blocks the JS thread.
   */
  select(timeoutMs: number): number;
  /**
   * The same wait on Deno's blocking thread pool, so the JS thread stays free.
   * Only one may be pending; nothing may register while it is for poll/select
   * without waking it (the `Reactor` does this through an eventfd).
   */
  selectAsync(timeoutMs: number): Promise<number>;
  /** Releases the backend's resources; registered fds are not closed. */
  close(): void;
}

/** Converts a timeout in ms (fractions rounded up, never down; negative = forever) to an int. Backends only: not exported from the package. */
export function timeoutToInt(timeoutMs: number): number {
  if (!(timeoutMs >= 0)) return -1;
  const t = Math.ceil(timeoutMs);
  return t > 0x7fffffff ? 0x7fffffff : t;
}

/**
 * The bookkeeping every backend shares: the fd → key table, the checks and
 * error messages, rollback when the kernel refuses a change, and the ready
 * arrays. A backend implements the four `protected` hooks and the two waits.
 *
 * Public for one use: writing a backend of your own (a completion-based one,
 * or a test double) to pass as `new Reactor({ selector })`. Programs that only
 * use the shipped backends never need it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BaseSelector, Reactor, type SelectorKey } from "@fdloop/fdloop/reactor";
 * // A selector that watches nothing: every wait returns at once with no events.
 * class NullSelector<T> extends BaseSelector<T> {
 *   readonly name = "poll" as const;
 *   constructor() {
 *     super(16);
 *   }
 *   protected add(_key: SelectorKey<T>): void {}
 *   protected change(_key: SelectorKey<T>, _old: number): void {}
 *   protected remove(_key: SelectorKey<T>): void {}
 *   protected release(): void {}
 *   select(_timeoutMs: number): number {
 *     return 0;
 *   }
 *   selectAsync(_timeoutMs: number): Promise<number> {
 *     return Promise.resolve(0);
 *   }
 * }
 * const reactor = new Reactor({ selector: new NullSelector() });
 * assert.equal(reactor.runOnce(0), 0);
 * reactor.close();
 * ```
 */
export abstract class BaseSelector<T = unknown> implements Selector<T> {
  abstract readonly name: BackendName;
  readyKeys: SelectorKey<T>[] = [];
  readyEvents: Uint32Array;
  interrupted = false;
  /** Keys indexed by fd. */
  protected keys: (SelectorKey<T> | undefined)[] = [];
  #size = 0;
  #nextToken = 1;
  #asyncPending = false;
  /** Set by `close()`. */
  protected closed = false;

  /**
   * Sets up the shared bookkeeping.
   *
   * @param capacity Initial size of the ready arrays.
   */
  constructor(capacity: number) {
    this.readyEvents = new Uint32Array(capacity);
  }

  get size(): number {
    return this.#size;
  }

  get(fd: number): SelectorKey<T> | undefined {
    return this.keys[fd];
  }

  register(fd: number, events: number, data: T): SelectorKey<T> {
    this.checkArgs(fd, events);
    if (this.keys[fd] !== undefined) {
      throw new OSError(Errno.EEXIST, "register", `Cannot register fd ${fd}`, "already registered");
    }
    const key = new SelectorKey<T>(fd, events, data, this.#nextToken);
    this.#nextToken = (this.#nextToken + 1) >>> 0 || 1;
    this.keys[fd] = key;
    this.#size++;
    try {
      this.add(key);
    } catch (err) {
      this.keys[fd] = undefined;
      this.#size--;
      key.active = false;
      throw err;
    }
    if (this.#size > this.readyEvents.length) this.grow(this.#size * 2);
    return key;
  }

  modify(fd: number, events: number, data: T): SelectorKey<T> {
    this.checkArgs(fd, events);
    const key = this.keys[fd];
    if (key === undefined) {
      throw new OSError(Errno.ENOENT, "modify", `Cannot modify fd ${fd}`, "not registered");
    }
    if (events !== key.events || (events & EVENT_ONESHOT) !== 0) {
      const old = key.events;
      key.events = events;
      try {
        this.change(key, old);
      } catch (err) {
        key.events = old;
        throw err;
      }
    }
    key.data = data;
    return key;
  }

  unregister(fd: number): SelectorKey<T> {
    const key = Number.isInteger(fd) && fd >= 0 ? this.keys[fd] : undefined;
    if (key === undefined) {
      throw new OSError(Errno.ENOENT, "unregister", `Cannot unregister fd ${fd}`, "not registered");
    }
    this.keys[fd] = undefined;
    this.#size--;
    key.active = false;
    this.remove(key);
    return key;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const key of this.keys) if (key) key.active = false;
    this.keys = [];
    this.#size = 0;
    this.release();
  }

  abstract select(timeoutMs: number): number;
  abstract selectAsync(timeoutMs: number): Promise<number>;

  /** Adds a key to the kernel's or the backend's set. Throw to refuse (the table is rolled back). */
  protected abstract add(key: SelectorKey<T>): void;
  /** Applies `key.events` (was `old`). Throw to refuse (the events are rolled back). */
  protected abstract change(key: SelectorKey<T>, old: number): void;
  /** Removes a key; must not throw for an fd closed behind the selector's back. */
  protected abstract remove(key: SelectorKey<T>): void;
  /** Frees backend resources. */
  protected abstract release(): void;

  /**
   * Records `key` as ready at slot `j` with the events it still wants out of
   * `mask` (a backend's mapped `EVENT_*` bits); returns the next free slot.
   */
  protected pushReady(j: number, key: SelectorKey<T>, mask: number): number {
    mask &= key.events;
    if (mask === 0) return j;
    this.readyKeys[j] = key;
    this.readyEvents[j] = mask;
    return j + 1;
  }

  /** Grows the ready arrays to hold `capacity` entries. */
  protected grow(capacity: number): void {
    const next = new Uint32Array(capacity);
    next.set(this.readyEvents);
    this.readyEvents = next;
  }

  /** True while a `selectAsync()` is pending (between {@linkcode beginAsyncWait} and {@linkcode endAsyncWait}). */
  protected get asyncPending(): boolean {
    return this.#asyncPending;
  }

  /**
   * Throws when the selector is closed: a wait must not run on released
   * resources (for epoll, a closed fd number that another epoll instance may
   * have taken, whose events the wait would consume).
   */
  protected checkNotClosed(): void {
    if (this.closed) throw new Error(`The ${this.name} selector is closed`);
  }

  /**
   * Call first in `selectAsync()`: throws if the selector is closed or a wait
   * is already pending (its buffers belong to the kernel until it returns),
   * else marks one as pending. Pair it with {@linkcode endAsyncWait} in a `finally`.
   */
  protected beginAsyncWait(): void {
    this.checkNotClosed();
    if (this.#asyncPending) {
      throw new Error(
        `selectAsync() is already pending on this ${this.name} selector: only one wait may be pending at a time`,
      );
    }
    this.#asyncPending = true;
  }

  /** Marks the pending `selectAsync()` as returned. */
  protected endAsyncWait(): void {
    this.#asyncPending = false;
  }

  /** Throws EBADF if `fd` is not an open descriptor (poll and select learn it only at wait time). */
  protected checkOpen(fd: number): void {
    assertOpenFd(fd, `Cannot register fd ${fd}`);
  }

  /** Validates `fd` and `events`, naming the bad value. */
  private checkArgs(fd: number, events: number): void {
    if (this.closed) throw new Error(`The ${this.name} selector is closed`);
    if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
      throw new TypeError(`fd must be a non-negative integer, got ${fd}`);
    }
    if (!Number.isInteger(events) || (events & ~EVENT_MASK) !== 0 || (events & (EVENT_READ | EVENT_WRITE)) === 0) {
      throw new TypeError(`events must include EVENT_READ and/or EVENT_WRITE, got ${events}`);
    }
    if ((events & (EVENT_EDGE | EVENT_ONESHOT)) !== 0 && this.name !== "epoll") {
      throw new TypeError(`Edge-triggered and one-shot modes need the epoll backend, not ${this.name}`);
    }
  }
}
