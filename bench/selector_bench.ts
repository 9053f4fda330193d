/**
 * `Selector.select(0)` per backend with N idle registered fds and one ready
 * fd: how the cost of a non-blocking wait grows with the registration count.
 * epoll's wait should stay flat (it only walks its ready list), poll and
 * select grow with N (they ask every fd).
 *
 *   deno bench --allow-ffi --allow-read bench/selector_bench.ts      (a deno bench file)
 *   deno run -A bench/selector_bench.ts [--rounds=11] [--sample-ms=20]   (script mode)
 *
 * Script mode times the same selectors in rounds (rotated backend order,
 * alternating direction of N; each sample lasts about `--sample-ms`, its
 * call count set by a warm-up, as in `bench/scaling.ts`), prints the median
 * ns per call with min–max as a Markdown table (coloured on a terminal) and
 * writes them with the run's metadata to `bench/results/selectors.json`
 * (rendered into `bench/RESULTS.md`).
 *
 * The idle fds are the read end of one pipe and duplicates of it (their
 * writer stays open, so they never report end of file); the ready fd is a pipe
 * holding one unread byte. The select backend needs every registered fd below
 * FD_SETSIZE (1024), so the registered fds are opened first, on the lowest
 * numbers, and the writers are moved above 1024. If this process already holds
 * too many low fds for N = 1000, that select bench is skipped and says why.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { close, dupAtLeast, F_GETFD, FD_SETSIZE, pipe, sym, write } from "../ffi/mod.ts";
import { BACKENDS, createSelector } from "../reactor/default.ts";
import { type BackendName, EVENT_READ, type Selector } from "../reactor/selector.ts";
import { Progress, runMeta, spreadOf } from "./_meta.ts";
import { RESULTS_DIR, type SelectorRow, selectorTable, writeResults } from "./results.ts";
import { timeSelect, type Timing } from "./scaling.ts";

const SIZES = [10, 100, 1000];
const MAX = Math.max(...SIZES);

const fds: number[] = [];

/** How many fd numbers below FD_SETSIZE were taken before this module opened any. */
const lowBefore = (() => {
  let n = 0;
  for (let fd = 0; fd < FD_SETSIZE; fd++) if (sym.fcntl(fd, F_GETFD, 0) >= 0) n++;
  return n;
})();

/** A pipe whose read end stays on its low number and whose write end moves to ≥ 2048. */
function lowReaderHighWriter(): [number, number] {
  const [r, w] = pipe();
  const high = dupAtLeast(w, 2048);
  close(w);
  fds.push(r, high);
  return [r, high];
}

// The ready fd first, so it has a low number and select's bitmap scan for small N stays small.
const [ready, readyWriter] = lowReaderHighWriter();
write(readyWriter, new Uint8Array([1])); // never read: level-triggered, always ready

const [idle0] = lowReaderHighWriter();
const idle = [idle0];
while (idle.length < MAX) {
  const fd = dupAtLeast(idle0, 0);
  fds.push(fd);
  idle.push(fd);
}

const selectors: Selector<number>[] = [];

addEventListener("unload", () => {
  for (const sel of selectors) sel.close();
  for (const fd of fds) close(fd);
});

/** One (N, backend) pair: its registered selector, or why it was skipped. */
interface Case {
  n: number;
  backend: BackendName;
  group: string;
  sel?: Selector<number>;
  skipped?: string;
}

const cases: Case[] = [];
for (const n of SIZES) {
  for (const backend of BACKENDS) {
    const registered = [...idle.slice(0, n), ready];
    const tooHigh = backend === "select" && registered.some((fd) => fd >= FD_SETSIZE);
    const group = `select(0) with ${n} idle fds + 1 ready`;
    if (tooHigh) {
      const why = `needs ${registered.length} registered fds below FD_SETSIZE (${FD_SETSIZE}), ` +
        `but this process already held ${lowBefore} of the numbers below ${FD_SETSIZE}`;
      cases.push({ n, backend, group, skipped: why });
      continue;
    }
    const sel = createSelector<number>(backend);
    selectors.push(sel);
    for (const fd of registered) sel.register(fd, EVENT_READ, fd);
    cases.push({ n, backend, group, sel });
  }
}

function check(c: Case, k: number): void {
  if (k !== 1 || c.sel!.readyKeys[0].fd !== ready) throw new Error(`${c.backend}: select(0) returned ${k}`);
}

if (!import.meta.main) {
  for (const c of cases) {
    if (c.skipped) {
      // deno bench does not list ignored benches, so say it out loud as well.
      console.log(`note: ${c.group}: ${c.backend} skipped: ${c.skipped}`);
      Deno.bench({ name: `${c.backend} (skipped: ${c.skipped})`, group: c.group, ignore: true, fn() {} });
      continue;
    }
    const sel = c.sel!;
    Deno.bench({
      name: c.backend,
      group: c.group,
      baseline: c.backend === "epoll",
      warmup: 1000,
      fn() {
        check(c, sel.select(0));
      },
    });
  }
} else {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      rounds: { type: "string", default: "11" },
      "sample-ms": { type: "string", default: "20" },
      "warmup-ms": { type: "string", default: "5" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    console.log("usage: deno run -A bench/selector_bench.ts [--rounds=11] [--sample-ms=20] [--warmup-ms=5]");
    Deno.exit(0);
  }
  const rounds = Number(values.rounds);
  const timing: Timing = { sampleMs: Number(values["sample-ms"]), warmupMs: Number(values["warmup-ms"]) };
  for (const [k, v] of [["rounds", rounds], ["sample-ms", timing.sampleMs], ["warmup-ms", timing.warmupMs]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new TypeError(`--${k} needs a positive integer, got ${v}`);
  }
  const meta = runMeta();
  const progress = new Progress("selectors");
  const live = cases.filter((c) => c.sel);
  const ns = new Map<Case, number[]>(live.map((c) => [c, []]));
  for (const c of cases) if (c.skipped) console.log(`note: ${c.group}: ${c.backend} skipped: ${c.skipped}`);
  progress.step("warming up every selector");
  for (const c of live) {
    check(c, c.sel!.select(0));
    timeSelect(c.sel!, { sampleMs: 5, warmupMs: 20 });
  }
  for (let r = 0; r < rounds; r++) {
    // Rotate the backends and alternate the direction of N, so no case is always measured first.
    const order = BACKENDS.map((_, i) => BACKENDS[(i + r) % BACKENDS.length]);
    const sizes = r % 2 ? [...SIZES].reverse() : SIZES;
    progress.round(r + 1, rounds, `${order.join(", ")} at N = ${sizes.join(", ")}`);
    for (const n of sizes) {
      for (const b of order) {
        const c = live.find((x) => x.n === n && x.backend === b);
        if (c) ns.get(c)!.push(timeSelect(c.sel!, timing).ns);
      }
    }
  }
  const results: SelectorRow[] = cases.map((c) =>
    c.skipped
      ? { n: c.n, backend: c.backend, skipped: c.skipped, short: "needs fds < 1024" }
      : { n: c.n, backend: c.backend, ns: { ...spreadOf(ns.get(c)!), rounds: ns.get(c)! } }
  );
  console.log(
    `Selector.select(0), 1 ready fd among N idle; median (min–max) of ${rounds} rounds of ${timing.sampleMs} ms`,
  );
  console.log(selectorTable(results, SIZES, [...BACKENDS]));
  await writeResults(new URL("selectors.json", RESULTS_DIR), {
    ...meta,
    settings: {
      sizes: SIZES,
      backends: BACKENDS,
      rounds,
      sampleMs: timing.sampleMs,
      warmupMs: timing.warmupMs,
      method: "N idle fds = the read end of one pipe and dups of it (writer open), plus 1 ready fd (a pipe holding 1 " +
        "unread byte), all registered on one selector per (N, backend) below FD_SETSIZE; each sample calls " +
        "select(0) for warmupMs, then times as many calls as take sampleMs at the warm-up's rate; rounds rotate " +
        "the backend order and alternate the direction of N; median over rounds",
    },
    results,
  });
}
