/**
 * `SelectSelector`: select(2) over `fd_set` bitmaps of FD_SETSIZE (1024)
 * bits. An fd ≥ 1024 cannot be represented; `register()` refuses it before
 * anything touches the bitmaps (C programs that don't check write past the
 * `fd_set` and smash their stack).
 *
 * @module
 */

import {
  FD_SET_SIZE,
  FD_SETSIZE,
  INTERRUPTED,
  select,
  selectAsync as selectOffThread,
  TIMEVAL_SIZE,
} from "../ffi/mod.ts";
import { BaseSelector, EVENT_READ, EVENT_WRITE, type SelectorKey, timeoutToInt } from "./selector.ts";

const WORDS = FD_SET_SIZE / 4;

/**
 * The select backend: portable, limited to fds below 1024.
 *
 * @example
 * ```ts
 * import { SelectSelector } from "@fdloop/fdloop/reactor";
 * import assert from "node:assert/strict";
 * const sel = new SelectSelector();
 * assert.equal(sel.name, "select");
 * assert.equal(sel.select(0), 0);
 * sel.close();
 * ```
 */
export class SelectSelector<T = unknown> extends BaseSelector<T> {
  /** `"select"`. */
  readonly name = "select" as const;
  // The wanted sets, and the working copies the kernel overwrites (sync and parked).
  readonly #wantR = new Uint32Array(WORDS);
  readonly #wantW = new Uint32Array(WORDS);
  readonly #r = new Uint32Array(WORDS);
  readonly #w = new Uint32Array(WORDS);
  readonly #rBytes = new Uint8Array(this.#r.buffer);
  readonly #wBytes = new Uint8Array(this.#w.buffer);
  readonly #pr = new Uint32Array(WORDS);
  readonly #pw = new Uint32Array(WORDS);
  readonly #prBytes = new Uint8Array(this.#pr.buffer);
  readonly #pwBytes = new Uint8Array(this.#pw.buffer);
  readonly #tv = new Uint8Array(TIMEVAL_SIZE);
  readonly #tvWords = new Int32Array(this.#tv.buffer);
  readonly #ptv = new Uint8Array(TIMEVAL_SIZE);
  readonly #ptvWords = new Int32Array(this.#ptv.buffer);
  #maxFd = -1;

  /** Creates empty fd sets. */
  constructor() {
    super(64);
  }

  /** Adds a key (see `BaseSelector`). */
  protected add(key: SelectorKey<T>): void {
    if (key.fd >= FD_SETSIZE) {
      throw new RangeError(
        `Cannot register fd ${key.fd} with the select backend: select() handles only fds below FD_SETSIZE (${FD_SETSIZE}); use the epoll or poll backend`,
      );
    }
    this.checkOpen(key.fd);
    this.#apply(key.fd, key.events);
    if (key.fd > this.#maxFd) this.#maxFd = key.fd;
  }

  /** Applies a key's new events (see `BaseSelector`). */
  protected change(key: SelectorKey<T>): void {
    this.#apply(key.fd, key.events);
  }

  /** Removes a key (see `BaseSelector`). */
  protected remove(key: SelectorKey<T>): void {
    this.#apply(key.fd, 0);
    if (key.fd === this.#maxFd) {
      let m = key.fd - 1;
      while (m >= 0 && this.keys[m] === undefined) m--;
      this.#maxFd = m;
    }
  }

  /** Frees the backend's resources. */
  protected release(): void {
    this.#wantR.fill(0);
    this.#wantW.fill(0);
    this.#maxFd = -1;
  }

  #apply(fd: number, events: number): void {
    const word = fd >>> 5, bit = 1 << (fd & 31);
    this.#wantR[word] = events & EVENT_READ ? this.#wantR[word] | bit : this.#wantR[word] & ~bit;
    this.#wantW[word] = events & EVENT_WRITE ? this.#wantW[word] | bit : this.#wantW[word] & ~bit;
  }

  /** Fills a `struct timeval` (two little-endian longs) for `timeoutMs`; null means wait forever. */
  #timeval(tv: Uint8Array, words: Int32Array, timeoutMs: number): Uint8Array | null {
    const t = timeoutToInt(timeoutMs);
    if (t < 0) return null;
    words[0] = (t / 1000) | 0; // tv_sec
    words[2] = (t % 1000) * 1000; // tv_usec
    return tv;
  }

  /** Waits on the JS thread; see {@linkcode Selector.select}. */
  select(timeoutMs: number): number {
    if (this.closed) this.checkNotClosed();
    this.#r.set(this.#wantR);
    this.#w.set(this.#wantW);
    const tv = this.#timeval(this.#tv, this.#tvWords, timeoutMs);
    const n = select(this.#maxFd + 1, this.#rBytes, this.#wBytes, tv);
    this.interrupted = n === INTERRUPTED;
    return n > 0 ? this.#collect(this.#r, this.#w) : 0;
  }

  /** Waits off the JS thread; see {@linkcode Selector.selectAsync}. */
  async selectAsync(timeoutMs: number): Promise<number> {
    // Only one wait at a time: the pending call owns the parked sets and timeval until it returns.
    this.beginAsyncWait();
    let n: number, keys: (SelectorKey<T> | undefined)[], maxFd: number;
    try {
      this.#pr.set(this.#wantR);
      this.#pw.set(this.#wantW);
      const tv = this.#timeval(this.#ptv, this.#ptvWords, timeoutMs);
      // The pending call owns a snapshot of the keys: registrations may change while it waits.
      maxFd = this.#maxFd;
      keys = this.keys.slice(0, maxFd + 1);
      n = await selectOffThread(maxFd + 1, this.#prBytes, this.#pwBytes, tv);
    } finally {
      this.endAsyncWait();
    }
    this.interrupted = n === INTERRUPTED;
    return n > 0 && !this.closed ? this.#collect(this.#pr, this.#pw, keys, maxFd) : 0;
  }

  #collect(r: Uint32Array, w: Uint32Array, keys = this.keys, maxFd = this.#maxFd): number {
    const words = maxFd < 0 ? 0 : (maxFd >>> 5) + 1;
    let j = 0;
    for (let word = 0; word < words; word++) {
      let bits = r[word] | w[word];
      while (bits !== 0) {
        const low = bits & -bits;
        const fd = (word << 5) + 31 - Math.clz32(low);
        bits ^= low;
        const key = keys[fd];
        if (key === undefined || !key.active) continue; // unregistered (or replaced) while a wait was pending
        let mask = 0;
        if (r[word] & low) mask |= EVENT_READ;
        if (w[word] & low) mask |= EVENT_WRITE;
        j = this.pushReady(j, key, mask);
      }
    }
    return j;
  }
}
