/**
 * A small typed event emitter shared by the transports.
 *
 * @module
 */

/** Any listener function. */
// deno-lint-ignore no-explicit-any
export type Listener = (...args: any[]) => void;

/**
 * Typed `on`/`off`/`once` listeners. Listeners run synchronously in the order
 * they were added, with the emitter as `this` (as in Node), so one function
 * can serve every connection instead of a closure per connection; an
 * exception propagates to the caller of `emit` (inside the reactor, that is
 * the reactor's `onError` hook).
 *
 * An `error` event is never dropped: emitted with no listener, it goes to
 * {@linkcode Emitter.unhandledError}, which the transports (`Connection`,
 * `Server`, `UdpSocket`) route to their reactor's `onError`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Emitter } from "@fdloop/fdloop/net";
 * class Bell extends Emitter<{ ring: (times: number) => void }> {
 *   ring(): void {
 *     this.emit("ring", 2);
 *   }
 * }
 * const heard: number[] = [];
 * new Bell().on("ring", (n) => heard.push(n)).ring();
 * assert.deepEqual(heard, [2]);
 * ```
 */
export class Emitter<E extends { [K in keyof E]: Listener }> {
  /**
   * Per event: its one listener, or an array when there are several (a new array on each change, so `emit` never
   * sees one change under it). Most events of a connection have one listener, and a server holds thousands of
   * connections: a function alone costs no array.
   */
  #listeners: { [K in keyof E]?: E[K] | E[K][] } = {};

  /** Adds `listener` for `event`. */
  on<K extends keyof E>(event: K, listener: E[K]): this {
    const had: E[K] | E[K][] | undefined = this.#listeners[event];
    this.#listeners[event] = had === undefined ? listener : Array.isArray(had) ? [...had, listener] : [had, listener];
    return this;
  }

  /** Adds `listener` for the next `event` only; `off(event, listener)` removes it too. */
  once<K extends keyof E>(event: K, listener: E[K]): this {
    const wrapper = ((...args: Parameters<E[K]>) => {
      this.off(event, wrapper);
      listener.apply(this, args);
    }) as E[K] & { listener?: E[K] };
    wrapper.listener = listener;
    return this.on(event, wrapper);
  }

  /** Removes `listener` (added with `on` or `once`) from `event`. */
  off<K extends keyof E>(event: K, listener: E[K]): this {
    const list = this.#list(event);
    const i = list.findIndex((l) => l === listener || (l as { listener?: unknown }).listener === listener);
    if (i < 0) return this;
    const rest = list.filter((_, j) => j !== i);
    this.#listeners[event] = rest.length === 0 ? undefined : rest.length === 1 ? rest[0] : rest;
    return this;
  }

  /** Number of listeners of `event`. */
  listenerCount<K extends keyof E>(event: K): number {
    return this.#list(event).length;
  }

  /**
   * Calls the listeners of `event` with `args`. Returns whether there were any.
   * An `"error"` event with no listener is passed to
   * {@linkcode Emitter.unhandledError} instead of being dropped.
   */
  protected emit<K extends keyof E>(event: K, ...args: Parameters<E[K]>): boolean {
    const l: E[K] | E[K][] | undefined = this.#listeners[event];
    if (l === undefined) {
      if (event === "error") this.unhandledError(args[0]);
      return false;
    }
    if (!Array.isArray(l)) {
      (l as E[K]).apply(this, args);
      return true;
    }
    for (let i = 0; i < l.length; i++) l[i].apply(this, args);
    return true;
  }

  #list<K extends keyof E>(event: K): readonly E[K][] {
    const l: E[K] | E[K][] | undefined = this.#listeners[event];
    return l === undefined ? [] : Array.isArray(l) ? l : [l as E[K]];
  }

  /**
   * What happens to an `"error"` event nobody listens for. The default throws
   * it, as Node's `EventEmitter` does; the transports override it to hand the
   * error to their reactor's `onError`, which logs it by default.
   */
  protected unhandledError(error: unknown): void {
    throw error;
  }

  /**
   * The listeners of `event` as stored, for allocation-free hot paths: undefined, the one listener, or an array of
   * several (do not mutate it).
   */
  protected listeners<K extends keyof E>(event: K): E[K] | readonly E[K][] | undefined {
    return this.#listeners[event];
  }
}
