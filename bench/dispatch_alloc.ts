/**
 * Heap bytes allocated per dispatched event, per backend: drives N events
 * through `Reactor.runOnce(0)` (a pipe written one byte at a time; the
 * reader callback reads it into a reused buffer) and compares `heapUsed`
 * before and after, with a forced GC before each sample. The target is 0:
 * the dispatch path allocates nothing per event.
 *
 *   deno run --allow-ffi --v8-flags=--expose-gc,--min-semi-space-size=64,--max-semi-space-size=64 bench/dispatch_alloc.ts
 *
 * The young generation must hold a whole sample (see `bench/_alloc.ts`): with
 * V8's default, scavenges within the samples hid the 16 bytes each loop
 * iteration allocated (the loop's time stored in a field that started
 * `undefined`, so each store boxed the number).
 *
 * @module
 */

import { Reactor } from "../reactor/mod.ts";
import { BACKENDS } from "../reactor/default.ts";
import { close, pipe, read, write } from "../ffi/mod.ts";
import { allocationGc, sampleBatches } from "./_alloc.ts";
import { median } from "./_meta.ts";

const { gc } = allocationGc();

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
  const run = (n: number): void => {
    for (let i = 0; i < n; i++) {
      write(w, one);
      reactor.runOnce(0);
    }
  };
  run(EVENTS); // warm up: let V8 optimise the FFI calls and the loop
  const { perOp, rates, gcs } = await sampleBatches(gc, run, EVENTS, SAMPLES);
  if (got !== EVENTS * (SAMPLES + 1)) throw new Error(`lost events: ${got}`);
  console.log(
    `| ${backend} | ${median(perOp).toFixed(2)}${gcs ? ` [GC in ${gcs} samples: reads low]` : ""} | ${
      Math.round(Math.max(...rates)).toLocaleString("en-US")
    } |`,
  );
  reactor.removeReader(r);
  reactor.close();
  close(r);
  close(w);
}
