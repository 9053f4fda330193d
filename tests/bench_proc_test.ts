/**
 * The pure parts of `bench/load/_proc.ts` that the load benchmarks' CPU
 * figures rest on: `/proc/PID/stat` and `/proc/stat` parsing, `getconf
 * CLK_TCK`, wrk's report, and the idle servers' CPU. No benchmark runs.
 *
 * Run with `-A` (importing `_proc.ts` runs `getconf` and `taskset`).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  busyTicks,
  CLK_TCK,
  effectiveCpu,
  haveTaskset,
  idleDuringOthers,
  parseClkTck,
  parsePidStat,
  parseWrk,
} from "../bench/load/_proc.ts";

Deno.test("`parsePidStat()` reads utime and stime after the last parenthesis of the command name", () => {
  // Fields 14 and 15 of proc(5); a name with spaces and ")" must not shift them.
  const tail = "S 1 2 3 4 5 6 7 8 9 10 1234 567 11 12 20 0 9 0 100 200 300";
  assert.deepEqual(parsePidStat(`42 (deno) ${tail}\n`), { utime: 1234, stime: 567 });
  assert.deepEqual(parsePidStat(`42 (a) b (c)) ${tail}`), { utime: 1234, stime: 567 });
  assert.throws(() => parsePidStat("42 (deno) S 1 2"), /not a \/proc\/PID\/stat line/);
});

Deno.test("`parsePidStat()` reads this process's own /proc/PID/stat", () => {
  const { utime, stime } = parsePidStat(Deno.readTextFileSync(`/proc/${Deno.pid}/stat`));
  assert.ok(Number.isInteger(utime) && utime >= 0 && Number.isInteger(stime) && stime >= 0);
});

Deno.test("`busyTicks()` counts user, nice, system, irq and softirq: not idle, iowait or steal", () => {
  //          user nice system idle iowait irq softirq steal guest guest_nice
  assert.equal(busyTicks("cpu0 100 2 30 5000 40 6 7 800 50 0"), 100 + 2 + 30 + 6 + 7);
  // guest time is inside user already: counting it again would double it.
  assert.equal(busyTicks("cpu  10 0 10 10 10 0 0 0 1000 1000"), 20);
  // Older kernels' shorter lines.
  assert.equal(busyTicks("cpu1 1 2 3 4"), 6);
  assert.throws(() => busyTicks("intr 1 2 3"), /not a \/proc\/stat cpu line/);
  const live = Deno.readTextFileSync("/proc/stat").split("\n").find((l) => l.startsWith("cpu0 "));
  if (live) assert.ok(busyTicks(live) >= 0);
});

Deno.test("`parseClkTck()` takes a positive integer and nothing else", () => {
  assert.equal(parseClkTck("100\n"), 100);
  assert.equal(parseClkTck("250"), 250);
  for (const bad of ["", "0", "-1", "1e2", "undefined", "getconf: not found"]) assert.equal(parseClkTck(bad), null);
  assert.ok(CLK_TCK > 0);
});

Deno.test("`effectiveCpu()` is what `taskset` pins to", () => {
  if (!haveTaskset) return assert.equal(effectiveCpu("1"), null);
  assert.equal(effectiveCpu("1"), navigator.hardwareConcurrency < 2 ? "0" : "1");
});

Deno.test("`parseWrk()` counts 2xx/3xx responses as requests and reports the rest", () => {
  const clean = `Running 1s test @ http://127.0.0.1:8000/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   670.12us  100.00us   2.00ms   90.00%
  74076 requests in 1.00s, 9.18MB read
Requests/sec:  74076.00
Transfer/sec:      9.18MB
`;
  assert.deepEqual(parseWrk(clean), {
    requests: 74076,
    responses: 74076,
    seconds: 1,
    rate: 74076,
    errors: 0,
    non2xx: 0,
  });
  const bad = `  1000 requests in 500.00ms, 1.00MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 400
Requests/sec:   2000.00
`;
  const r = parseWrk(bad)!;
  assert.equal(r.responses, 1000);
  assert.equal(r.requests, 600); // the 400 error responses are no requests served
  assert.equal(r.seconds, 0.5);
  assert.equal(r.rate, 1200);
  assert.equal(r.errors, 10);
  assert.equal(r.non2xx, 400);
  assert.equal(parseWrk("unable to connect to 127.0.0.1:1 Connection refused"), null);
});

Deno.test("`idleDuringOthers()` averages each server's CPU over the other servers' slices only", () => {
  const slices: { server: string; idleByServer: Record<string, number> }[] = [
    { server: "a", idleByServer: { b: 2, c: 0 } },
    { server: "b", idleByServer: { a: 1, c: 4 } },
    { server: "c", idleByServer: { a: 3, b: 0 } },
  ];
  assert.deepEqual(idleDuringOthers(["a", "b", "c"], slices), {
    a: { mean: 2, max: 3 },
    b: { mean: 1, max: 2 },
    c: { mean: 2, max: 4 },
  });
});
