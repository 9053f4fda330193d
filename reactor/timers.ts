/**
 * Timers: a binary min-heap ordered by due time, then by scheduling order.
 * Cancellation is lazy (O(1)): a cancelled timer stays in the heap until it
 * reaches the top, and the heap is compacted when most of it is cancelled.
 *
 * @module
 */

/**
 * A scheduled callback: returned by `callSoon`, `callLater`, `callAt` and
 * `callEvery`. Call {@linkcode TimerHandle.cancel} to drop it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Reactor } from "@fdloop/fdloop/reactor";
 * const reactor = new Reactor();
 * const handle = reactor.callLater(1000, () => assert.fail("a cancelled timer ran"));
 * handle.cancel();
 * assert.equal(handle.cancelled, true);
 * reactor.close();
 * ```
 */
export interface TimerHandle {
  /** True once cancelled (or, for a one-shot timer, once it has run; or dropped by the reactor's `close()`). */
  readonly cancelled: boolean;
  /** Due time on the reactor's clock, in ms (0 for `callSoon`). */
  readonly when: number;
  /** Cancels the timer; running it is skipped. Cancelling twice is harmless. O(1). */
  cancel(): void;
}

/** The reactor's record of a scheduled callback; users see it as a {@linkcode TimerHandle}. */
export class Timer implements TimerHandle {
  /** True once cancelled (or, for a one-shot timer, once it has run; or dropped by the reactor's `close()`). */
  cancelled = false;
  /** Position in the heap, or -1. */
  heapIndex = -1;
  /** Made by the reactor's scheduling methods. */
  constructor(
    /** Due time on the reactor's clock, in ms. */
    public when: number,
    /** Tie-breaker: timers due at the same time run in scheduling order. */
    public seq: number,
    /** The callback. */
    public readonly callback: () => void,
    /** Period in ms for `callEvery`, 0 for one-shot. */
    public readonly interval: number,
    private readonly onCancel: ((h: Timer) => void) | null,
  ) {}

  /** Cancels the timer; running it is skipped. Cancelling twice is harmless. */
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.onCancel?.(this);
  }
}

function before(a: Timer, b: Timer): boolean {
  return a.when < b.when || (a.when === b.when && a.seq < b.seq);
}

/** A min-heap of {@linkcode Timer}s with lazy cancellation. */
export class TimerHeap {
  #heap: Timer[] = [];
  #cancelled = 0;

  /** Number of entries, cancelled ones included. */
  get size(): number {
    return this.#heap.length;
  }

  /** Number of live (not cancelled) timers. */
  get live(): number {
    return this.#heap.length - this.#cancelled;
  }

  /** Adds a timer. */
  push(h: Timer): void {
    const heap = this.#heap;
    heap.push(h);
    this.#up(heap.length - 1);
  }

  /** The earliest live timer, dropping cancelled ones from the top. */
  peek(): Timer | undefined {
    const heap = this.#heap;
    while (heap.length > 0 && heap[0].cancelled) {
      this.pop();
      this.#cancelled--;
    }
    return heap[0];
  }

  /** Removes and returns the top entry (cancelled or not). */
  pop(): Timer | undefined {
    const heap = this.#heap;
    const top = heap[0];
    if (top === undefined) return undefined;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      last.heapIndex = 0;
      this.#down(0);
    }
    top.heapIndex = -1;
    return top;
  }

  /** Records a cancellation; compacts when more than half the heap is dead. */
  noteCancelled(h: Timer): void {
    if (h.heapIndex < 0) return;
    this.#cancelled++;
    if (this.#cancelled > 64 && this.#cancelled * 2 > this.#heap.length) this.#compact();
  }

  /** Drops every timer: their handles read as cancelled, since none will run. */
  clear(): void {
    for (const h of this.#heap) {
      h.heapIndex = -1;
      h.cancelled = true;
    }
    this.#heap = [];
    this.#cancelled = 0;
  }

  #compact(): void {
    const live = this.#heap.filter((h) => {
      if (h.cancelled) h.heapIndex = -1;
      return !h.cancelled;
    });
    this.#heap = live;
    this.#cancelled = 0;
    for (let i = 0; i < live.length; i++) live[i].heapIndex = i;
    for (let i = (live.length >> 1) - 1; i >= 0; i--) this.#down(i);
  }

  #up(i: number): void {
    const heap = this.#heap;
    const h = heap[i];
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(h, heap[p])) break;
      heap[i] = heap[p];
      heap[i].heapIndex = i;
      i = p;
    }
    heap[i] = h;
    h.heapIndex = i;
  }

  #down(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const h = heap[i];
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && before(heap[c + 1], heap[c])) c++;
      if (!before(heap[c], h)) break;
      heap[i] = heap[c];
      heap[i].heapIndex = i;
      i = c;
    }
    heap[i] = h;
    h.heapIndex = i;
  }
}
