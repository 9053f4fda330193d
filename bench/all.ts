/**
 * Every benchmark that writes `bench/results/`, one after the other, each
 * with the settings of its committed figures, then `bench/RESULTS.md`
 * rendered anew. Takes about ten minutes; run it on a quiet machine.
 *
 *   deno task bench:all                    (deno run -A bench/all.ts)
 *   deno run -A bench/all.ts --only scaling,echo_alloc,http_alloc
 *   deno run -A bench/all.ts --dry-run     (prints the commands)
 *
 * Progress (which benchmark runs, how long each took) goes to stderr; each
 * benchmark's own output is passed through. Stops at the first benchmark that
 * fails (the ones before it have written their files).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { paint, Progress, shellQuote } from "./_meta.ts";
import { ALLOC_V8_FLAGS } from "./_alloc.ts";
import { list, pinned, ROOT } from "./load/_proc.ts";

/** The benchmarks in the order they run: name (as `--only` takes it) and the command, from the repository root. */
const STEPS: { name: string; argv: string[] }[] = [
  // Pinned as its committed figures were: one core, away from whatever else runs on CPU 0.
  { name: "ffi_vs_c", argv: pinned("1", ["deno", "run", "-A", "bench/ffi_vs_c.ts"]).flat() },
  { name: "selectors", argv: ["deno", "run", "-A", "bench/selector_bench.ts"] },
  { name: "scaling", argv: ["deno", "run", "-A", "bench/scaling.ts"] },
  { name: "echo_load", argv: ["deno", "run", "-A", "bench/load/run.ts"] },
  { name: "http_load", argv: ["deno", "run", "-A", "bench/load/http_run.ts"] },
  { name: "echo_alloc", argv: ["deno", "run", "-A", `--v8-flags=${ALLOC_V8_FLAGS}`, "bench/echo_alloc.ts"] },
  { name: "http_alloc", argv: ["deno", "run", "-A", `--v8-flags=${ALLOC_V8_FLAGS}`, "bench/http_alloc.ts"] },
  {
    name: "echo_idle_memory",
    argv: [
      "deno",
      "run",
      "-A",
      "bench/load/idle_memory.ts",
      "--only",
      "fdloop,fdloop-sync,node,deno,c",
      "--repeat",
      "2",
    ],
  },
  { name: "results", argv: ["deno", "run", "-A", "bench/results.ts"] },
];

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    only: { type: "string", default: "" },
    "dry-run": { type: "boolean" },
    help: { type: "boolean" },
  },
});
if (flags.help) {
  console.log(`Usage: deno run -A bench/all.ts [options]

Options:
  --only <list>   Comma-separated subset of: ${STEPS.map((s) => s.name).join(", ")}
  --dry-run       Print the commands without running them`);
  Deno.exit(0);
}
const only = list(flags.only);
for (const n of only) {
  if (!STEPS.some((s) => s.name === n)) {
    console.error(`Unknown benchmark ${JSON.stringify(n)}: use some of ${STEPS.map((s) => s.name).join(", ")}`);
    Deno.exit(2);
  }
}
const steps = STEPS.filter((s) => only.length === 0 || only.includes(s.name));

const progress = new Progress("bench:all");
const took: string[] = [];
for (const [i, step] of steps.entries()) {
  const text = step.argv.map(shellQuote).join(" ");
  progress.step(paint("bold", `[${i + 1}/${steps.length}] ${step.name}: ${text}`, Deno.stderr.isTerminal()));
  if (flags["dry-run"]) continue;
  const t0 = performance.now();
  // `deno` is this executable, whatever PATH holds.
  const [cmd, ...args] = step.argv.map((a) => (a === "deno" ? Deno.execPath() : a));
  const status = await new Deno.Command(cmd, { args, cwd: ROOT.pathname, stdin: "null" }).spawn().status;
  const seconds = (performance.now() - t0) / 1000;
  took.push(`${step.name} ${seconds.toFixed(0)} s`);
  if (!status.success) {
    progress.step(paint("red", `${step.name} failed (exit code ${status.code}): stopping`, Deno.stderr.isTerminal()));
    Deno.exit(1);
  }
}
if (!flags["dry-run"]) progress.step(`done: ${took.join(", ")}`);
