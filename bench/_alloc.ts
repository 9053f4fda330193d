/**
 * What the allocation benchmarks (`echo_alloc.ts`, `http_alloc.ts`) share:
 * a forced GC, then `heapUsed` before and after a batch of work. That only
 * measures allocation if no scavenge runs within the batch (it frees the
 * garbage allocated before it, and `heapUsed` reads far too low: with V8's
 * default young generation, a few bytes per message where the truth is
 * hundreds), so the benchmarks run with a young generation that holds a
 * whole sample, and every sample is watched for a GC all the same.
 *
 * @module
 */

import v8 from "node:v8";
import type { Reactor } from "../reactor/mod.ts";
import {
  AF_INET,
  connect as connectFd,
  encodeSockaddr,
  MSG_NOSIGNAL,
  recv,
  send,
  SOCK_STREAM,
  socket,
} from "../ffi/mod.ts";

/** The V8 flags the allocation figures need: `gc()` exposed, and a 64 MiB young generation. */
export const ALLOC_V8_FLAGS = "--expose-gc,--min-semi-space-size=64,--max-semi-space-size=64";

/** Least new-space capacity accepted: a sample must fit in it with room to spare. */
const MIN_NEW_SPACE = 32 * 1024 * 1024;

/**
 * The exposed `gc()` and the new space's capacity in bytes, after checking
 * that it is large enough; exits 2 with the flags to use otherwise.
 */
export function allocationGc(): { gc: () => void; newSpaceBytes: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) {
    console.error(`run with --v8-flags=${ALLOC_V8_FLAGS}`);
    Deno.exit(2);
  }
  gc();
  const space = v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space");
  const bytes = space ? space.space_size + space.space_available_size : 0;
  if (bytes < MIN_NEW_SPACE) {
    console.error(
      `the new space holds ${(bytes / 2 ** 20).toFixed(1)} MiB: a scavenge would run within samples and ` +
        `heapUsed read low. Run with --v8-flags=${ALLOC_V8_FLAGS}`,
    );
    Deno.exit(2);
  }
  return { gc, newSpaceBytes: bytes };
}

/** One sample: heap bytes allocated by `work`, and whether a GC ran meanwhile (the figure then reads low). */
export async function heapSample(
  gc: () => void,
  work: () => void | Promise<void>,
): Promise<{ bytes: number; gc: boolean }> {
  gc();
  const watch = new v8.GCProfiler();
  watch.start();
  const before = Deno.memoryUsage().heapUsed;
  await work();
  const bytes = Deno.memoryUsage().heapUsed - before;
  const seen = watch.stop()?.statistics.length ?? 0;
  return { bytes, gc: seen > 0 || bytes < 0 };
}

/** How a rig runs its reactor for a batch. */
export type LoopMode = "runOnce" | "run" | "runSync";

/**
 * Clients that each keep one message in flight on one reactor, and the loop
 * that drives them: `batch(n)` starts one exchange per client and runs the
 * reactor in `mode` until `n` exchanges in all are done.
 */
export class PingPong {
  readonly reactor: Reactor;
  readonly mode: LoopMode;
  /** Exchanges still to start, and exchanges in flight. */
  #left = 0;
  #inFlight = 0;
  readonly #starters: (() => void)[] = [];

  constructor(reactor: Reactor, mode: LoopMode) {
    this.reactor = reactor;
    this.mode = mode;
  }

  /**
   * Adds a client whose `start` sends its next message; returns what to call
   * when its reply is complete (it starts the next exchange, or ends the batch).
   */
  add(start: () => void): () => void {
    this.#starters.push(start);
    return () => {
      if (this.#left > 0) {
        this.#left--;
        start();
      } else if (--this.#inFlight === 0 && this.mode !== "runOnce") {
        this.reactor.stop();
      }
    };
  }

  async batch(n: number): Promise<void> {
    const first = Math.min(this.#starters.length, n);
    this.#left = n - first;
    this.#inFlight = first;
    for (let i = 0; i < first; i++) this.#starters[i]();
    if (this.mode === "runOnce") {
      while (this.#inFlight > 0) this.reactor.runOnce(100);
    } else if (this.mode === "run") {
      await this.reactor.run();
    } else {
      this.reactor.runSync();
    }
    if (this.#inFlight !== 0) throw new Error(`${this.#inFlight} exchanges still in flight`);
  }
}

/**
 * Opens `conns` bare loopback client sockets to `port` on the reactor of
 * `pingPong`: one `recv` and one `send` per exchange into preallocated
 * buffers, which allocate nothing (`bench/dispatch_alloc.ts`), so a figure
 * is the server's alone. A reply is complete after `replyBytes` bytes; a
 * function learns that from the first read of the rig's first reply, once
 * (it must arrive whole). Returns the fds (the caller closes them).
 */
export function rawClients(
  pingPong: PingPong,
  port: number,
  conns: number,
  message: Uint8Array,
  replyBytes: number | ((first: Uint8Array) => number),
): number[] {
  const reactor = pingPong.reactor;
  const addr = encodeSockaddr({ host: "127.0.0.1", port });
  const buf = new Uint8Array(64 * 1024);
  const fds: number[] = [];
  let want = typeof replyBytes === "number" ? replyBytes : 0;
  for (let i = 0; i < conns; i++) {
    const fd = socket(AF_INET, SOCK_STREAM);
    connectFd(fd, addr.buf, addr.len, `the server on port ${port}`);
    fds.push(fd);
    const replied = pingPong.add(() => send(fd, message, message.byteLength, MSG_NOSIGNAL));
    let got = 0;
    reactor.addReader(fd, () => {
      const n = recv(fd, buf);
      if (n < 0) return; // would block
      if (n === 0) throw new Error(`the server on port ${port} closed a connection`);
      if (want === 0) want = (replyBytes as (first: Uint8Array) => number)(buf.subarray(0, n));
      got += n;
      if (got < want) return;
      if (got > want) throw new Error(`${got} bytes of reply where ${want} were expected`);
      got = 0;
      replied();
    });
  }
  return fds;
}

/** What {@linkcode sampleBatches} measured: heap bytes per operation and operations per second, per sample. */
export interface BatchSamples {
  perOp: number[];
  rates: number[];
  /** Samples during which a GC ran (those read low). */
  gcs: number;
}

/** Runs `samples` batches of `ops` operations, each after a forced GC, measuring each with {@linkcode heapSample}. */
export async function sampleBatches(
  gc: () => void,
  batch: (ops: number) => void | Promise<void>,
  ops: number,
  samples: number,
): Promise<BatchSamples> {
  const out: BatchSamples = { perOp: [], rates: [], gcs: 0 };
  for (let s = 0; s < samples; s++) {
    let ms = 0;
    const sample = await heapSample(gc, async () => {
      const t0 = performance.now();
      await batch(ops);
      ms = performance.now() - t0;
    });
    if (sample.gc) out.gcs++;
    out.perOp.push(sample.bytes / ops);
    out.rates.push((ops / ms) * 1000);
  }
  return out;
}

/**
 * Runs `reactor` in turns of up to 10 ms until `done` settles (a server's
 * `shutdown()` needs the loop to see its connections close); throws naming
 * `what` after 1,000 turns.
 */
export async function runUntilSettled(reactor: Reactor, done: Promise<unknown>, what: string): Promise<void> {
  let settled = false;
  const settling = done.finally(() => settled = true);
  for (let turns = 0; !settled; turns++) {
    if (turns > 1000) throw new Error(`${what} did not finish`);
    reactor.runOnce(10);
    await Promise.resolve();
  }
  await settling;
}
