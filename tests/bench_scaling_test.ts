/**
 * The backend scaling bench (`bench/scaling.ts`): the chart renderer on fixed
 * data, the chart in headless Chromium, a tiny real measurement on every
 * backend, the CPython side on tiny sizes, and the `getRlimit`/`setRlimit`
 * wrappers the bench raises `RLIMIT_NOFILE` with.
 *
 * Nothing here asserts a time: the bench reports speed, the tests only check
 * that it measures, draws and cleans up.
 *
 * Run with `--allow-ffi --allow-read --allow-write --allow-run --allow-env`.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type ChartInput,
  formatNs,
  formatTable,
  median,
  openFdSet,
  renderScalingSvg,
  roundRatio,
  sampleBackend,
  type Series,
  seriesLabel,
  SIZES,
} from "../bench/scaling.ts";
import { FD_SETSIZE, getRlimit, OSError, RLIMIT_NOFILE, setRlimit } from "../ffi/mod.ts";
import { assertNoFdLeak, BACKENDS, FdScope } from "./_helpers.ts";

// ---------------------------------------------------------------- tools

function which(name: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    try {
      const info = Deno.statSync(`${dir}/${name}`);
      if (info.isFile && info.mode !== null && (info.mode & 0o111) !== 0) return `${dir}/${name}`;
    } catch { /* not here */ }
  }
  return null;
}

const PYTHON = which("python3");
/** The old headless shell needs no `--headless`; a full chromium is run with `--headless` too. */
const CHROMIUM = ["chromium-headless-shell", "chromium", "chromium-browser", "google-chrome"].map(which)
  .find((p) => p !== null) ?? null;
if (!CHROMIUM) {
  console.warn("bench_scaling_test: skipping the Chromium screenshot: no chromium on PATH (chromium-headless-shell)");
}
if (!PYTHON) console.warn("bench_scaling_test: skipping the CPython script test: python3 is not on PATH");

// ---------------------------------------------------------------- fixed data

/** Six lines like a real run: epoll flat, poll linear, select stopping at 256. */
function fixture(): ChartInput {
  const line = (impl: Series["impl"], mechanism: Series["mechanism"], base: number, perFd: number, upTo = 16384) => ({
    impl,
    mechanism,
    points: SIZES.filter((n) => n <= upTo).map((n) => ({ n, ns: base + perFd * n })),
  });
  return {
    subtitle: "median of 7 rounds · Test CPU <&> · 2026-01-01",
    series: [
      line("fdloop", "epoll", 400, 0),
      line("fdloop", "poll", 450, 60),
      line("fdloop", "select", 500, 70, 256),
      line("CPython", "epoll", 1500, 0.01),
      line("CPython", "poll", 1800, 60),
      line("CPython", "select", 2500, 75, 256),
    ],
  };
}

function count(text: string, re: RegExp): number {
  return [...text.matchAll(re)].length;
}

Deno.test("`renderScalingSvg()` draws a well-formed log-log chart from fixed data", async (t) => {
  const input = fixture();
  const svg = renderScalingSvg(input);

  await t.step("one standalone SVG document whose tags balance", () => {
    assert.match(svg, /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.ok(svg.trimEnd().endsWith("</svg>"));
    // Every opened element is closed or self-closing, in order.
    const stack: string[] = [];
    for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)([^>]*?)(\/?)>/g)) {
      const [, closing, name, , self] = m;
      if (self) continue;
      if (closing) assert.equal(stack.pop(), name, `</${name}> closes <${stack.at(-1)}>`);
      else stack.push(name);
    }
    assert.deepEqual(stack, []);
    assert.doesNotMatch(svg, /NaN|undefined|Infinity/);
  });

  await t.step("one path per series, solid for fdloop and dashed for CPython", () => {
    const paths = [...svg.matchAll(/<path class="series (\w+) (\w+)"[^>]*>/g)];
    assert.equal(paths.length, 6);
    for (const [tag, impl] of paths) {
      if (impl === "CPython") assert.match(tag, /stroke-dasharray/);
      else assert.doesNotMatch(tag, /stroke-dasharray/);
    }
    // The same colour per mechanism for both implementations.
    const colour = (impl: string, mech: string) =>
      new RegExp(`class="series ${impl} ${mech}"[^>]*stroke="(#\\w+)"`).exec(svg)![1];
    for (const mech of ["epoll", "poll", "select"]) assert.equal(colour("fdloop", mech), colour("CPython", mech));
    assert.notEqual(colour("fdloop", "epoll"), colour("fdloop", "poll"));
  });

  await t.step("one marker per point, circles for fdloop and squares for CPython", () => {
    const points = input.series.reduce((a, s) => a + s.points.length, 0);
    assert.equal(count(svg, /class="marker"/g), points);
    assert.equal(count(svg, /<circle class="marker"/g), 6 + 6 + 3);
    assert.equal(count(svg, /<rect class="marker"/g), 6 + 6 + 3);
    assert.match(svg, /<title>fdloop epoll, N=16: 400 ns<\/title>/);
  });

  await t.step("labelled axes with tick labels, a legend, a title and the FD_SETSIZE marker", () => {
    assert.match(svg, /N: registered idle fds \(log scale\)/);
    assert.match(svg, /time per select\(0\) call \(log scale\)/);
    assert.match(svg, /Cost of one select\(0\) with 1 ready fd among N idle fds/);
    for (const n of [16, 64, 256, 1024, 4096, 16384]) assert.match(svg, new RegExp(`>${n}</text>`));
    for (const tick of ["100 ns", "1 µs", "10 µs", "100 µs", "1 ms"]) assert.match(svg, new RegExp(`>${tick}</text>`));
    for (const s of input.series) assert.match(svg, new RegExp(`>${seriesLabel(s.impl, s.mechanism)}</text>`));
    assert.match(svg, /class="fd-setsize"/);
    assert.match(svg, /FD_SETSIZE 1024/);
  });

  await t.step("text is escaped and the output is deterministic", () => {
    assert.match(svg, /Test CPU &lt;&amp;&gt;/);
    assert.equal(renderScalingSvg(fixture()), svg);
  });

  await t.step("refuses what it cannot plot", () => {
    assert.throws(() => renderScalingSvg({ series: [] }), RangeError);
    assert.throws(
      () => renderScalingSvg({ series: [{ impl: "fdloop", mechanism: "epoll", points: [{ n: 16, ns: 0 }] }] }),
      /Cannot plot n=16, ns=0/,
    );
  });
});

Deno.test("bench helpers: median, per-round ratios, unit formatting, the table", () => {
  assert.equal(median([3, 1, 2]), 2);
  // Round 2 was disturbed on both sides alike: the per-round ratio ignores it.
  assert.equal(roundRatio({ rounds: [100, 300, 110] }, { rounds: [200, 600, 200] }), 2);
  assert.equal(median([4, 1, 2, 3]), 2.5);
  assert.equal(formatNs(412.3), "412 ns");
  assert.equal(formatNs(1234), "1.23 µs");
  assert.equal(formatNs(2_750_000), "2.75 ms");
  const series = fixture().series.map((s) => ({
    ...s,
    points: s.points.map((p) => ({ ...p, min: p.ns, max: p.ns, rounds: [p.ns] })),
  }));
  const table = formatTable(series, SIZES);
  assert.match(table, /fdloop \(Deno FFI\)/);
  assert.match(table, /CPython ÷ fdloop/);
  const row16 = table.split("\n").find((l) => l.trimStart().startsWith("16 "))!;
  assert.match(row16, /400 ns/);
  assert.match(row16, /3\.75×/, "CPython epoll ÷ fdloop epoll at N = 16");
  assert.equal(table.split("\n").filter((l) => /^\s+16384 /.test(l)).length, 1);
});

// ---------------------------------------------------------------- Chromium

/** Width and height from a PNG's IHDR chunk. */
function pngSize(png: Uint8Array): { width: number; height: number } {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

Deno.test({
  name: "headless Chromium renders the chart to a PNG screenshot",
  ignore: CHROMIUM === null,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "fdloop-scaling-" });
    try {
      const svgPath = `${dir}/scaling.svg`, pngPath = `${dir}/scaling.png`;
      await Deno.writeTextFile(svgPath, renderScalingSvg(fixture()));
      const out = await new Deno.Command(CHROMIUM!, {
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
          "--disable-dev-shm-usage",
          "--hide-scrollbars",
          `--user-data-dir=${dir}/profile`,
          `--screenshot=${pngPath}`,
          "--window-size=860,500",
          `file://${svgPath}`,
        ],
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(60_000),
      }).output();
      const log = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, `chromium exited with ${out.code}: ${log}`);
      const png = await Deno.readFile(pngPath);
      assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "PNG signature");
      assert.deepEqual(pngSize(png), { width: 860, height: 500 });
      // A blank 860×500 page compresses to ~2 KB; six lines, labels and markers take far more.
      assert.ok(png.byteLength > 15_000, `the screenshot is only ${png.byteLength} bytes: did the SVG render?`);
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

// ---------------------------------------------------------------- real measurements

Deno.test("`sampleBackend()` measures select(0) with 1 ready fd on every backend and closes what it opens", async (t) => {
  await assertNoFdLeak(async () => {
    const fds = openFdSet(16);
    try {
      assert.equal(fds.idle.length, 16);
      for (const backend of BACKENDS) {
        await t.step(`${backend}: a finite time per call for N = 16`, () => {
          const s = sampleBackend(backend, fds, 16, { sampleMs: 2, warmupMs: 1 });
          assert.ok("ns" in s, JSON.stringify(s));
          assert.ok(s.ns > 0 && Number.isFinite(s.ns));
          assert.ok(s.calls >= 3);
        });
      }
    } finally {
      fds.close();
    }
  });
});

Deno.test("`sampleBackend()` reports the select backend's refusal of an fd at FD_SETSIZE", async () => {
  await assertNoFdLeak(() => {
    using scope = new FdScope();
    const [a] = scope.socketpair();
    const [ready, writer] = scope.socketpair();
    const high = scope.dupAtLeast(a, FD_SETSIZE);
    // Only the idle fd is ≥ FD_SETSIZE; the scope owns and closes every fd.
    const fds = { ready, readyWriter: writer, idle: [high], close() {} };
    const s = sampleBackend("select", fds, 1, { sampleMs: 1, warmupMs: 1 });
    assert.ok("error" in s);
    assert.match(s.error, new RegExp(`^RangeError: Cannot register fd ${high} .*FD_SETSIZE \\(${FD_SETSIZE}\\)`));
  });
});

Deno.test({
  name: "bench/scaling_selectors.py measures CPython's selectors and stops select at FD_SETSIZE",
  ignore: PYTHON === null,
  async fn() {
    const script = new URL("../bench/scaling_selectors.py", import.meta.url).pathname;
    const out = await new Deno.Command(PYTHON!, {
      args: [script, "--sizes=16,1024", "--sample-ms=2", "--warmup-ms=1"],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(60_000),
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const res = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.match(res.python, /^3\./);
    for (const kind of ["epoll", "poll"]) {
      for (const n of ["16", "1024"]) {
        assert.equal(res.results[kind][n].length, 1);
        assert.ok(res.results[kind][n][0] > 0);
      }
    }
    assert.equal(res.results.select["16"].length, 1);
    assert.equal(res.results.select["1024"], undefined);
    assert.deepEqual(res.stopped.select, { n: 1024, error: "ValueError: filedescriptor out of range in select()" });
  },
});

// ---------------------------------------------------------------- rlimit

Deno.test("`getRlimit()` and `setRlimit()` read and change RLIMIT_NOFILE", async (t) => {
  const start = getRlimit(RLIMIT_NOFILE);
  try {
    await t.step("the soft limit is at most the hard one", () => {
      assert.ok(start.soft > 0 && start.soft <= start.hard, JSON.stringify(start));
    });
    await t.step("the soft limit can be lowered and raised back", () => {
      setRlimit(RLIMIT_NOFILE, { soft: start.soft - 1, hard: start.hard });
      assert.deepEqual(getRlimit(RLIMIT_NOFILE), { soft: start.soft - 1, hard: start.hard });
      setRlimit(RLIMIT_NOFILE, start);
      assert.deepEqual(getRlimit(RLIMIT_NOFILE), start);
    });
    await t.step("soft above hard is EINVAL, as an OSError naming setrlimit", () => {
      assert.throws(
        () => setRlimit(RLIMIT_NOFILE, { soft: start.hard === Infinity ? Infinity : start.hard + 1, hard: 1024 }),
        (err: unknown) => err instanceof OSError && err.code === "EINVAL" && /setrlimit/.test(err.message),
      );
    });
    await t.step("a negative or fractional limit is a RangeError", () => {
      assert.throws(() => setRlimit(RLIMIT_NOFILE, { soft: -1, hard: start.hard }), RangeError);
      assert.throws(() => setRlimit(RLIMIT_NOFILE, { soft: 1.5, hard: start.hard }), RangeError);
    });
  } finally {
    setRlimit(RLIMIT_NOFILE, start);
  }
});
