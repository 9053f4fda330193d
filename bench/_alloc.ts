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
export async function heapSample(gc: () => void, work: () => Promise<void>): Promise<{ bytes: number; gc: boolean }> {
  gc();
  const watch = new v8.GCProfiler();
  watch.start();
  const before = Deno.memoryUsage().heapUsed;
  await work();
  const bytes = Deno.memoryUsage().heapUsed - before;
  const seen = watch.stop()?.statistics.length ?? 0;
  return { bytes, gc: seen > 0 || bytes < 0 };
}
