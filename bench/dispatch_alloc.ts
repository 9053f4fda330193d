/**
 * Heap bytes allocated per dispatched event, per backend: drives N events
 * through `Reactor.runOnce(0)` (a pipe written one byte at a time; the
 * reader callback reads it into a reused buffer) and compares `heapUsed`
 * before and after, with a forced GC before each sample. The target is 0:
 * the dispatch path allocates nothing per event.
 *
 *   deno run --allow-ffi --v8-flags=--expose-gc bench/dispatch_alloc.ts
 *
 * @module
 */

import { Reactor } from "../reactor/mod.ts";
import { BACKENDS } from "../reactor/default.ts";
import { close, pipe, read, write } from "../ffi/mod.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  console.error("run with --v8-flags=--expose-gc");
  Deno.exit(2);
}

const EVENTS = 20_000;
const SAMPLES = 5;
const one = new Uint8Array([1]);
const buf = new Uint8Array(64);

console.log("| backend | bytes allocated per event (median of 5 × 20,000) | events/s |");
console.log("| --- | --- | --- |");
for (const backend of BACKENDS) {
  const reactor = new Reactor({ backend });
  const [r, w] = pipe();
  let got = 0;
  reactor.addReader(r, (fd) => {
    if (read(fd, buf) > 0) got++;
  });
  const run = (n: number) => {
    for (let i = 0; i < n; i++) {
      write(w, one);
      reactor.runOnce(0);
    }
  };
  run(EVENTS); // warm up: let V8 optimise the FFI calls and the loop
  const perEvent: number[] = [];
  let rate = 0;
  for (let s = 0; s < SAMPLES; s++) {
    gc!();
    const before = Deno.memoryUsage().heapUsed;
    const t0 = performance.now();
    run(EVENTS);
    const ms = performance.now() - t0;
    const after = Deno.memoryUsage().heapUsed;
    perEvent.push((after - before) / EVENTS);
    rate = Math.max(rate, EVENTS / ms * 1000);
  }
  perEvent.sort((a, b) => a - b);
  if (got !== EVENTS * (SAMPLES + 1)) throw new Error(`lost events: ${got}`);
  console.log(`| ${backend} | ${perEvent[2].toFixed(2)} | ${Math.round(rate).toLocaleString("en-US")} |`);
  reactor.removeReader(r);
  reactor.close();
  close(r);
  close(w);
}
