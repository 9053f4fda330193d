/**
 * Helpers shared by the reactor tests: a reactor that records callback
 * errors, and runs bounded by watchdogs so a bug fails instead of hanging.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type BackendName, type ErrorContext, Reactor } from "../reactor/mod.ts";

export interface Reported {
  error: unknown;
  context: ErrorContext;
}

/** A reactor on `backend` whose `onError` records into `errors`. */
export function newReactor(backend: BackendName, yieldIntervalMs?: number): { reactor: Reactor; errors: Reported[] } {
  const errors: Reported[] = [];
  const reactor = new Reactor({
    backend,
    yieldIntervalMs,
    onError: (error, context) => errors.push({ error, context }),
  });
  return { reactor, errors };
}

/** Fails with the first error a callback threw (assertions inside callbacks land there). */
export function assertNoErrors(errors: Reported[]): void {
  if (errors.length === 0) return;
  const { error, context } = errors[0];
  const where = context.fd === undefined ? context.source : `${context.source} callback of fd ${context.fd}`;
  throw new Error(`${errors.length} callback error(s), the first in the ${where}: ${error}`, { cause: error });
}

/** `runSync()` until stopped; a reactor timer stops it after `limitMs` and the call fails. */
export function runSyncBounded(reactor: Reactor, limitMs: number, what: string): void {
  let expired = false;
  const watchdog = reactor.callLater(limitMs, () => {
    expired = true;
    reactor.stop();
  });
  try {
    while (reactor.runSync() !== "stopped") {
      // A signal interrupted a wait: go on.
    }
  } finally {
    watchdog.cancel();
  }
  if (expired) throw new Error(`${what}: the reactor was still running after ${limitMs} ms`);
}

/**
 * `await run()` until stopped; after `limitMs` a Deno timer (and, unless
 * `reactorWatchdog` is false, a reactor timer too) stops it and the call fails.
 * Pass `reactorWatchdog: false` where the loop must be idle with no timers.
 */
export async function runBounded(
  reactor: Reactor,
  limitMs: number,
  what: string,
  reactorWatchdog = true,
): Promise<void> {
  let expired = false;
  const expire = () => {
    expired = true;
    reactor.stop();
  };
  const denoWatchdog = setTimeout(expire, limitMs);
  const watchdog = reactorWatchdog ? reactor.callLater(limitMs, expire) : null;
  try {
    await reactor.run();
  } finally {
    clearTimeout(denoWatchdog);
    watchdog?.cancel();
  }
  if (expired) throw new Error(`${what}: the reactor was still running after ${limitMs} ms`);
}

/** Whether `p` settles within `ms` (a Deno timer races it; the timer is always cleared). */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Starts `run()` and fails unless it returns within `ms` (it is stopped and awaited either way). */
export async function expectRunToReturn(reactor: Reactor, ms: number, what: string): Promise<void> {
  const running = reactor.run();
  const ok = await settlesWithin(running, ms);
  if (!ok) reactor.stop();
  await running;
  assert.ok(ok, `${what}: run() did not return within ${ms} ms`);
}

export const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export const ONE = new Uint8Array([1]);
