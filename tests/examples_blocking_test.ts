/**
 * `examples/blocking_handler.ts` run as a child process: the figures it prints
 * must show the lesson. Five clients of a `callLater()` handler finish
 * together after about one delay. Five clients of a blocking handler finish
 * one after the other, the last after about five delays.
 *
 * The margins are generous, because these VMs are shared and have two cores.
 * The test checks the shape of the result. It does not check speed.
 *
 * @module
 */

import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);
const EXAMPLE = new URL("examples/blocking_handler.ts", ROOT).pathname;
const SECONDS = 0.2;
const CLIENTS = 5;

/** Runs the example with `args` (bounded by a timeout) and returns its exit code and output. */
async function runExample(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const signal = AbortSignal.timeout(30_000);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-ffi", "--allow-net=127.0.0.1", EXAMPLE, ...args],
    cwd: ROOT.pathname,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
    signal,
  }).output();
  const text = new TextDecoder();
  const result = { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
  if (signal.aborted) throw new Error(`blocking_handler.ts was killed after 30 s: ${JSON.stringify(result)}`);
  return result;
}

/** The "/route: N clients done in T s (waits a, b, … s)" line of `route`, as seconds. */
function figures(stdout: string, route: string): { total: number; waits: number[] } {
  const m = stdout.match(new RegExp(`^${route}: (\\d+) clients done in ([\\d.]+) s \\(waits ([\\d., ]+) s\\)$`, "m"));
  assert.ok(m, `no ${route} line in: ${stdout}`);
  assert.equal(Number(m[1]), CLIENTS);
  const waits = m[3].split(", ").map(Number);
  assert.equal(waits.length, CLIENTS);
  return { total: Number(m[2]), waits };
}

for (const backend of ["epoll", "poll", "select"] as const) {
  Deno.test(`\`blocking_handler.ts\` (${backend}): a blocking handler serialises the clients, callLater() does not`, async () => {
    const run = await runExample(["--backend", backend, "--seconds", String(SECONDS)]);
    const transcript = `stdout: ${run.stdout}\nstderr: ${run.stderr}`;
    assert.equal(run.code, 0, transcript);
    assert.match(run.stdout, new RegExp(`^listening on 127\\.0\\.0\\.1:\\d+ \\(${backend}\\)$`, "m"), transcript);

    const sleep = figures(run.stdout, "/sleep");
    const block = figures(run.stdout, "/block");

    // callLater(): all together, after about one delay (each at least the delay).
    assert.ok(sleep.total < 3 * SECONDS, `/sleep took ${sleep.total} s; ${transcript}`);
    for (const w of sleep.waits) assert.ok(w >= SECONDS * 0.9 && w < 3 * SECONDS, `a /sleep wait of ${w} s`);

    // Blocking: one after the other, the last after about CLIENTS delays.
    assert.ok(block.total >= CLIENTS * SECONDS * 0.9, `/block took only ${block.total} s; ${transcript}`);
    assert.ok(block.total > 1.5 * sleep.total, transcript);
    const sorted = block.waits.toSorted((a, b) => a - b);
    assert.ok(sorted[0] < 3 * SECONDS, `the first /block client waited ${sorted[0]} s; ${transcript}`);
    assert.ok(
      sorted[CLIENTS - 1] - sorted[0] >= (CLIENTS - 2) * SECONDS,
      `the /block waits should be spread out one delay apart: ${sorted.join(", ")}`,
    );
    assert.match(run.stdout, /^one blocking handler stalls every client: /m);
  });
}

Deno.test("`blocking_handler.ts` refuses --sync and a bad --seconds with exit code 2, and prints --help", async () => {
  let run = await runExample(["--sync"]);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /--sync makes no sense here/);
  run = await runExample(["--seconds=0"]);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /--seconds must be a number above 0/);
  run = await runExample(["--help"]);
  assert.equal(run.code, 0);
  assert.match(run.stdout, /^Usage: .*blocking_handler\.ts/);
  assert.match(run.stdout, /--seconds <seconds>/);
});
