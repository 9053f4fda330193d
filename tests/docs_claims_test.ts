/**
 * What README.md, docs/guide.md and examples/README.md say, checked against the code, so that they cannot rot:
 *
 * - every `deno task NAME` they show exists, and every flag they pass to an example (or list in the README's
 *   examples table) is in that example's `--help`;
 * - every `deno run`, `deno test` and `deno bench` command they show grants FFI (`--allow-ffi` or `-A`);
 * - the HTTP defaults the README states: the parser limits, and the header, body and idle timeouts, the latter
 *   measured on a fake clock (no real waiting);
 * - the transports' write-queue bounds the README states (`highWaterMark`, `maxWriteBuffer`);
 * - the README's benchmark figures: the FFI sentence against `bench/results/ffi_vs_c.json`, the echo and HTTP tables
 *   against the rendered tables of `bench/RESULTS.md` (which `tests/bench_results_test.ts` ties to the JSON).
 *
 * The code blocks themselves are checked elsewhere: README's by `deno check --doc-only README.md` (`deno task check`),
 * the guide's by `deno test --doc docs/guide.md` (`deno task test`).
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect, DEFAULT_LIMITS, listen, listenHttp, OSError, Reactor } from "../mod.ts";
import { runToExit } from "./_examples.ts";

const ROOT = new URL("../", import.meta.url);
const DOCS = ["README.md", "docs/guide.md", "examples/README.md"] as const;
const text = Object.fromEntries(
  await Promise.all(DOCS.map(async (d) => [d, await Deno.readTextFile(new URL(d, ROOT))] as const)),
) as Record<(typeof DOCS)[number], string>;
const readme = text["README.md"];
const tasks = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))).tasks as Record<string, string>;
const decoder = new TextDecoder();

/** The commands a doc shows: its inline code spans and the lines of its `sh` blocks, `# comments` dropped. */
function commands(doc: string): string[] {
  const out: string[] = [];
  for (const block of doc.matchAll(/```sh\n([\s\S]*?)```/g)) {
    for (const l of block[1].split("\n")) out.push(l.replace(/\s#.*$/, "").trim());
  }
  const prose = doc.replace(/```[\s\S]*?```/g, "");
  for (const span of prose.matchAll(/`([^`\n]+)`/g)) out.push(span[1].replace(/\\\|/g, "|"));
  // A `# deno run …` comment in an sh block explains the task before it: a command too.
  for (const c of doc.matchAll(/^deno task [^\n#]*#\s*(deno [^\n]+)$/gm)) out.push(c[1].trim());
  return out.filter((c) => c.startsWith("deno ") || c.includes(" deno "));
}

/** The example file a command runs (through its task or by path), and the arguments that follow it. */
function exampleArgs(cmd: string): { file: string; args: string[] } | null {
  // One command of a pipeline or list: stop at the shell's separators.
  const words = cmd.split(/\s*(?:\||&&|;|&)\s*/)[0].split(/\s+/);
  const task = words.indexOf("task");
  let file: string | undefined;
  let rest: string[] = [];
  if (task >= 0 && words[task - 1] === "deno" && words[task + 1] !== undefined) {
    file = /examples\/(\w+\.ts)/.exec(tasks[words[task + 1]] ?? "")?.[1];
    rest = words.slice(task + 2);
  } else {
    const at = words.findIndex((w) => /^examples\/\w+\.ts$/.test(w));
    if (at >= 0) {
      file = words[at].slice("examples/".length);
      rest = words.slice(at + 1);
    }
  }
  return file === undefined ? null : { file, args: rest };
}

const helpCache = new Map<string, Set<string>>();
/** The flags an example's `--help` lists. */
async function helpFlags(file: string): Promise<Set<string>> {
  let flags = helpCache.get(file);
  if (flags === undefined) {
    const run = await runToExit(file, ["--help"]);
    assert.equal(run.code, 0, `${file} --help exited ${run.code}: ${run.stderr}`);
    flags = new Set([...run.stdout.matchAll(/^\s+(--[a-z][a-z-]*)/gm)].map((m) => m[1]));
    assert.ok(flags.has("--help"), `${file} --help lists no --help:\n${run.stdout}`);
    helpCache.set(file, flags);
  }
  return flags;
}

Deno.test("every `deno task` the docs show exists in deno.json", () => {
  for (const doc of DOCS) {
    for (const m of text[doc].matchAll(/deno task ([\w:]+)/g)) {
      if (m[1] === "NAME") continue; // "deno task NAME [flags]": the pattern, not a task
      assert.ok(tasks[m[1]] !== undefined, `${doc}: \`deno task ${m[1]}\` is not a task of deno.json`);
    }
  }
});

Deno.test("every flag the docs pass to an example is in its --help", async () => {
  const uses: { doc: string; cmd: string; file: string; flag: string }[] = [];
  for (const doc of DOCS) {
    for (const cmd of commands(text[doc])) {
      const run = exampleArgs(cmd);
      if (run === null) continue;
      for (const a of run.args) if (a.startsWith("--")) uses.push({ doc, cmd, file: run.file, flag: a.split("=")[0] });
    }
  }
  // The README's examples table names flags in its prose column: `--ports 8000,8006`, `--backend epoll\|poll\|select`.
  for (const row of readme.split("\n").filter((l) => /^\| `deno task /.test(l))) {
    const file = /`examples\/(\w+\.ts)`/.exec(row)?.[1];
    assert.ok(file, `a row of the README's examples table names no file: ${row}`);
    for (const span of row.matchAll(/`([^`]+)`/g)) {
      if (span[1].startsWith("deno task")) continue; // the task column: checked above
      for (const m of span[1].matchAll(/(?:^|[\s[])(--[a-z][a-z-]*)/g)) {
        uses.push({ doc: "README.md", cmd: row, file, flag: m[1] });
      }
    }
  }
  assert.ok(uses.length >= 20, `only ${uses.length} flags found: the parsing no longer matches the docs`);
  for (const u of uses) {
    const flags = await helpFlags(u.file);
    assert.ok(
      flags.has(u.flag),
      `${u.doc}: ${u.file} has no ${u.flag} (its --help: ${[...flags].join(" ")}), in: ${u.cmd}`,
    );
  }
});

Deno.test("every `deno run`, `deno test` and `deno bench` the docs show grants FFI", () => {
  let seen = 0;
  for (const doc of DOCS) {
    for (const cmd of commands(text[doc])) {
      const m = /\bdeno (run|test|bench)\b(.*)/.exec(cmd);
      // "the `deno run` line": a mention, not a command.
      if (m === null || !/\.(ts|md)\b/.test(m[2])) continue;
      seen++;
      assert.match(m[2], /(^|\s)(-A|--allow-all|--allow-ffi)(\s|$)/, `${doc}: without --allow-ffi (or -A): ${cmd}`);
    }
  }
  assert.ok(seen >= 10, `only ${seen} commands found: the parsing no longer matches the docs`);
});

/** A number the README states, by a pattern with one group. */
function stated(re: RegExp): number {
  const m = re.exec(readme);
  assert.ok(m, `README.md no longer matches ${re}: update this test with it`);
  return Number(m[1]);
}

Deno.test("the README's HTTP limits are DEFAULT_LIMITS", () => {
  assert.equal(stated(/`maxHeaderBytes` \((\d+) KiB\)/) * 1024, DEFAULT_LIMITS.maxHeaderBytes);
  assert.equal(stated(/`maxHeaders` \((\d+)\)/), DEFAULT_LIMITS.maxHeaders);
  assert.equal(stated(/`maxUriBytes` \((\d+) KiB\)/) * 1024, DEFAULT_LIMITS.maxUriBytes);
  assert.equal(stated(/`maxBodyBytes` \((\d+) MiB\)/) * 1024 * 1024, DEFAULT_LIMITS.maxBodyBytes);
});

/**
 * A `listenHttp()` server with default options on a reactor with a fake clock, a client on the same reactor: sends
 * `request` and waits (the clock standing still) until it has reached the server (`read`), its handler (`handled`) or
 * come back answered (`answered`); then moves the clock on in 50 ms steps until `done(received, ended)`. Returns the
 * fake ms from the accept (the clock stands still until the steps) to then.
 */
async function fakeClockDeadline(
  request: string,
  until: "read" | "handled" | "answered",
  done: (received: string, ended: boolean) => boolean,
  limitMs: number,
): Promise<{ ms: number; received: string }> {
  let now = 1_000_000;
  const reactor = new Reactor({ clock: () => now });
  let handled = false;
  const server = listenHttp({ port: 0, reactor }, (req, res) => {
    handled = true;
    if (req.hasBody) req.readAll((body) => res.end(`got ${body.byteLength}`));
    else res.end("ok");
  });
  let received = "";
  let ended = false;
  const client = connect({ host: "127.0.0.1", port: server.port, reactor });
  client.on("data", (chunk) => received += decoder.decode(chunk));
  client.on("end", () => ended = true);
  client.on("error", () => {});
  /** Runs the loop without moving the clock until `until()` (real time: at most 2 s). */
  const settle = (until: () => boolean) => {
    const stop = performance.now() + 2000;
    while (!until() && performance.now() < stop) reactor.runOnce(1);
  };
  try {
    settle(() => server.connectionCount === 1);
    assert.equal(server.connectionCount, 1, "the server did not accept");
    client.write(request);
    if (until === "answered") settle(() => received.length > 0);
    else if (until === "handled") {
      settle(() => handled);
      assert.ok(handled, "the request did not reach its handler");
    } else for (let i = 0; i < 20; i++) reactor.runOnce(1); // the bytes arrive; nothing can show it
    const start = now;
    const seen = () => done(received, ended);
    while (!seen() && !ended && now - start <= limitMs) {
      now += 50;
      reactor.runOnce(0);
      reactor.runOnce(0);
    }
    assert.ok(seen(), `not after ${now - start} fake ms; received: ${JSON.stringify(received)}, ended: ${ended}`);
    return { ms: now - start, received };
  } finally {
    client.destroy();
    const finished = server.shutdown(0);
    const running = reactor.run();
    await finished;
    reactor.stop();
    await running;
    reactor.close();
  }
}

Deno.test("the README's HTTP timeouts are the defaults, met within the sweep interval it states", async (t) => {
  const sweep = stated(/at most 1 s: (\d+) ms by default/);
  const slack = sweep + 100; // the sweep's period, and two steps of the fake clock
  const H = "Host: x\r\n";

  await t.step("headerTimeout: a head still incomplete is answered 408", async () => {
    const limit = stated(/`headerTimeout` \((\d+) s\b/) * 1000;
    const r = await fakeClockDeadline(`GET / HTTP/1.1\r\n${H}X-Slow: `, "read", (s) => s.includes(" 408 "), 2 * limit);
    assert.ok(r.ms >= limit && r.ms <= limit + slack, `408 after ${r.ms} ms, not ${limit}: ${r.received}`);
  });

  await t.step("bodyTimeout: a body still incomplete is answered 408", async () => {
    const limit = stated(/`bodyTimeout` \((\d+) s\)/) * 1000;
    const req = `POST / HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\nab`;
    const r = await fakeClockDeadline(req, "handled", (s) => s.includes(" 408 "), 2 * limit);
    assert.ok(r.ms >= limit && r.ms <= limit + slack, `408 after ${r.ms} ms, not ${limit}: ${r.received}`);
  });

  await t.step("idleTimeout: a keep-alive connection with nothing in flight is closed", async () => {
    const limit = stated(/`idleTimeout` \((\d+) s\b/) * 1000;
    const r = await fakeClockDeadline(`GET / HTTP/1.1\r\n${H}\r\n`, "answered", (_, ended) => ended, 2 * limit);
    assert.match(r.received, /^HTTP\/1\.1 200 OK\r\n/);
    assert.ok(r.ms >= limit && r.ms <= limit + slack, `closed after ${r.ms} ms, not ${limit}`);
  });
});

Deno.test("the README's write-queue bounds are the Connection defaults", () => {
  const high = stated(/`highWaterMark` (\d+) KiB/) * 1024;
  const max = stated(/`maxWriteBuffer` (\d+) MiB/) * 1024 * 1024;
  const reactor = new Reactor();
  const server = listen({ host: "127.0.0.1", port: 0, reactor });
  // Writes made before `connect` are queued whole: nothing is sent until the reactor runs.
  const conn = connect({ host: "127.0.0.1", port: server.port, reactor });
  let error: unknown;
  conn.on("error", (err) => error ??= err);
  try {
    assert.equal(conn.write(new Uint8Array(high - 1)), true, "below highWaterMark");
    assert.equal(conn.write(new Uint8Array(1)), false, "at highWaterMark");
    const chunk = new Uint8Array(1024 * 1024);
    while (conn.bufferedAmount + chunk.byteLength <= max) conn.write(chunk);
    conn.write(new Uint8Array(max - conn.bufferedAmount)); // exactly at the bound
    assert.equal(conn.destroyed, false, `destroyed at ${conn.bufferedAmount} bytes, below maxWriteBuffer`);
    assert.equal(conn.bufferedAmount, max);
    conn.write(new Uint8Array(1));
    assert.equal(conn.destroyed, true, "one byte past maxWriteBuffer");
    reactor.runOnce(0); // the error event
    assert.ok(error instanceof OSError && error.code === "ENOBUFS", `past maxWriteBuffer: ${error}`);
  } finally {
    conn.destroy();
    void server.close({ closeConnections: true });
    reactor.runOnce(0);
    reactor.close();
  }
});

// ---------------------------------------------------------------- benchmark figures

/** The data rows of the first markdown table after `heading` in `doc`, as cells. */
function tableAfter(doc: string, heading: string): string[][] {
  const at = doc.indexOf(heading);
  assert.ok(at >= 0, `no heading ${JSON.stringify(heading)}`);
  const lines = doc.slice(at).split("\n");
  const first = lines.findIndex((l) => l.startsWith("|"));
  const rows: string[][] = [];
  for (const l of lines.slice(first + 2)) {
    if (!l.startsWith("|")) break;
    rows.push(l.slice(1, -1).split(/(?<!\\)\|/).map((c) => c.trim()));
  }
  return rows;
}

/** The figures of a cell: `65,233`, `14.37`, `1.10×`. */
const figures = (cell: string) => [...cell.matchAll(/\d[\d,]*(?:\.\d+)?×?/g)].map((m) => m[0]);

/** Whether `row` (cells joined) holds `figure` as a whole figure, not as part of a longer one. */
const holds = (row: string, figure: string) =>
  new RegExp(`(^|[^\\d.,])${figure.replace(/[.×]/g, (c) => `\\${c}`)}($|[^\\d,]|\\.(?!\\d))`).test(row);

Deno.test("the README's benchmark figures are those of bench/results", async (t) => {
  const results = await Deno.readTextFile(new URL("bench/RESULTS.md", ROOT));

  await t.step("the FFI sentence: epoll_wait from C and through FFI", async () => {
    const json = JSON.parse(await Deno.readTextFile(new URL("bench/results/ffi_vs_c.json", ROOT)));
    const row = json.results.find((r: { call: string }) => r.call.startsWith("epoll_wait("));
    const m = /`epoll_wait` with nothing ready: (\d+) ns from C, (\d+) ns through FFI/.exec(readme);
    assert.ok(m, "README.md no longer states the epoll_wait figures: update this test");
    assert.deepEqual(
      [Number(m[1]), Number(m[2])],
      [Math.round(row.c.median), Math.round(row.deno.median)],
      "README.md's epoll_wait ns (from C, through FFI) against bench/results/ffi_vs_c.json's medians",
    );
  });

  await t.step("the echo table", () => {
    const mine = tableAfter(readme, "### Echo servers");
    const theirs = tableAfter(results, "## Echo servers side by side");
    assert.equal(mine.length, theirs.length, "the README's echo table has another number of servers");
    for (const [i, cells] of mine.entries()) {
      const row = theirs[i].join(" | ");
      for (const f of cells.slice(1).flatMap(figures)) {
        assert.ok(
          holds(row, f),
          `README echo row ${JSON.stringify(cells[0])}: ${f} is not in bench/RESULTS.md: ${row}`,
        );
      }
    }
  });

  await t.step("the HTTP table, plain and pipelined", () => {
    const mine = tableAfter(readme, "### HTTP servers");
    const plain = tableAfter(results, "### `GET /` — `wrk -t1 -c50`");
    const piped = tableAfter(results, "### `GET /`, 16 requests pipelined per connection");
    assert.equal(mine.length, plain.length, "the README's HTTP table has another number of servers");
    for (const [i, cells] of mine.entries()) {
      const row = `${plain[i].join(" | ")} | ${piped[i].join(" | ")}`;
      for (const f of cells.slice(1).flatMap(figures)) {
        assert.ok(
          holds(row, f),
          `README HTTP row ${JSON.stringify(cells[0])}: ${f} is not in bench/RESULTS.md: ${row}`,
        );
      }
    }
  });
});
