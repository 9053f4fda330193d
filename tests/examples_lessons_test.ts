/**
 * The lesson examples run as child processes: `edge_vs_level.ts` must print
 * that a level-triggered fd is reported on every turn and an edge-triggered
 * one once, and that a partial read strands data under edge triggering;
 * `select_limit.ts` must print that select refuses an fd ≥ FD_SETSIZE while
 * poll and epoll register every fd. And `examples/README.md` must list every
 * example, so its table cannot rot.
 *
 * The times `select_limit.ts` prints are not checked: speed is measured in
 * benchmarks, never asserted in a test.
 *
 * @module
 */

import assert from "node:assert/strict";
import { runToExit } from "./_examples.ts";

const ROOT = new URL("../", import.meta.url);
const EXAMPLES = new URL("examples/", ROOT);

/** The one stdout line matching `re` (anchored by the caller), as its match. */
function line(stdout: string, re: RegExp): RegExpMatchArray {
  const lines = stdout.split("\n").filter((l) => re.test(l));
  assert.equal(lines.length, 1, `expected one line matching ${re} in:\n${stdout}`);
  return lines[0].match(re)!;
}

/** Runs an example and asserts exit code 0; returns its stdout. */
async function runOk(name: string, args: string[]): Promise<string> {
  const run = await runToExit(name, args);
  assert.equal(run.code, 0, `${name} ${args.join(" ")} exited ${run.code}: ${run.stdout}\n${run.stderr}`);
  assert.equal(run.stderr, "", `${name} wrote to stderr: ${run.stderr}`);
  return run.stdout;
}

Deno.test("`examples/edge_vs_level.ts`", async (t) => {
  for (
    const { turns, bytes, chunk, args } of [
      { turns: 5, bytes: 12, chunk: 4, args: [] },
      { turns: 8, bytes: 30, chunk: 5, args: ["--turns", "8", "--bytes", "30", "--chunk", "5"] },
    ]
  ) {
    await t.step(`turns=${turns} bytes=${bytes} chunk=${chunk}: LT reported every turn, ET once`, async () => {
      const out = await runOk("edge_vs_level.ts", args);
      const lt = line(out, /^level-triggered: reported (\d+) of (\d+) turns$/);
      const et = line(out, /^edge-triggered: reported (\d+) of (\d+) turns$/);
      assert.deepEqual([Number(lt[1]), Number(lt[2])], [turns, turns], out);
      assert.deepEqual([Number(et[1]), Number(et[2])], [1, turns], out);
    });

    await t.step(
      `turns=${turns} bytes=${bytes} chunk=${chunk}: a partial read strands data under ET only`,
      async () => {
        const out = await runOk("edge_vs_level.ts", args);
        const tail = String.raw`reported (\d+) of \d+ turns, read (\d+) of (\d+) bytes`;
        const nums = (m: RegExpMatchArray) => m.slice(1).map(Number);

        // LT calls the partial-read handler again while bytes remain, until all are read (turns ≥ bytes / chunk here).
        const lt = nums(line(out, new RegExp(`^level-triggered, partial reads: ${tail}, (\\d+) left unread$`)));
        assert.deepEqual(lt, [Math.ceil(bytes / chunk), bytes, bytes, 0], out);

        // ET reports once: one chunk read, the rest stranded.
        const et = nums(line(out, new RegExp(`^edge-triggered, partial reads: ${tail}, (\\d+) left unread$`)));
        assert.deepEqual(et, [1, chunk, bytes, bytes - chunk], out);

        // A later write (1 byte) is a new edge: reported once more, one more chunk read, still not drained.
        const later = nums(
          line(
            out,
            new RegExp(`^edge-triggered, partial reads, after a later write of 1 byte: ${tail}, (\\d+) left unread$`),
          ),
        );
        assert.deepEqual(later, [1, 2 * chunk, bytes + 1, bytes + 1 - 2 * chunk], out);

        // Reading until WOULD_BLOCK drains everything on the one report.
        const drain = nums(
          line(
            out,
            new RegExp(
              `^edge-triggered, read until WOULD_BLOCK: ${tail} in (\\d+) reads \\(the last WOULD_BLOCK\\), (\\d+) left unread$`,
            ),
          ),
        );
        assert.deepEqual(drain, [1, bytes, bytes, Math.ceil(bytes / chunk) + 1, 0], out);

        // poll and select refuse edge-triggered mode.
        for (const name of ["poll", "select"]) {
          line(out, new RegExp(`^${name}: level-triggered only: .*epoll.*$`));
        }
      },
    );
  }

  await t.step("--help exits 0 and says edge-triggered mode is epoll-only", async () => {
    const run = await runToExit("edge_vs_level.ts", ["--help"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^Usage: deno run --allow-ffi examples\/edge_vs_level\.ts/);
    assert.match(run.stdout, /--turns/);
    assert.match(run.stdout, /epoll-only/);
  });

  await t.step("a bad flag or value exits 2", async () => {
    for (const args of [["--bogus"], ["--turns", "0"], ["--turns", "x"], ["--bytes", "8", "--chunk", "8"]]) {
      const run = await runToExit("edge_vs_level.ts", args);
      assert.equal(run.code, 2, `${args.join(" ")}: ${run.stdout}${run.stderr}`);
      assert.notEqual(run.stderr, "", `${args.join(" ")}: nothing on stderr`);
    }
  });
});

Deno.test("`examples/select_limit.ts`", async (t) => {
  for (const fds of [1100, 10]) {
    await t.step(`--fds ${fds}: select refuses at FD_SETSIZE, poll and epoll register every fd`, async () => {
      const out = await runOk("select_limit.ts", ["--fds", String(fds), "--rounds", "1"]);
      const opened = line(out, /^select_limit: opened (\d+) fds .*highest fd (\d+), FD_SETSIZE 1024; 1 fd ready$/);
      assert.equal(Number(opened[1]), fds, out);
      assert.ok(Number(opened[2]) >= 1024, `no fd ≥ 1024 was opened: ${out}`);

      const refused = line(out, /^select: refused fd (\d+): (.*)$/);
      assert.ok(Number(refused[1]) >= 1024, `select refused fd ${refused[1]}: ${out}`);
      assert.match(refused[2], /FD_SETSIZE \(1024\)/);

      const sel = line(out, /^select: registered (\d+) of (\d+) fds \((\d+) refused\), one wait [\d.]+ µs$/);
      const [registered, total, nRefused] = sel.slice(1).map(Number);
      assert.equal(total, fds);
      assert.ok(nRefused >= 1, out);
      assert.equal(registered + nRefused, fds, out);

      for (const name of ["poll", "epoll"]) {
        const m = line(out, new RegExp(`^${name}: registered (\\d+) of (\\d+) fds, one wait [\\d.]+ µs$`));
        assert.deepEqual([Number(m[1]), Number(m[2])], [fds, fds], out);
        assert.doesNotMatch(out, new RegExp(`^${name}: refused`, "m"));
      }
      line(out, new RegExp(`^closed ${fds} fds$`));
    });
  }

  await t.step("--help exits 0 and names FD_SETSIZE", async () => {
    const run = await runToExit("select_limit.ts", ["--help"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^Usage: deno run --allow-ffi examples\/select_limit\.ts/);
    assert.match(run.stdout, /--fds/);
    assert.match(run.stdout, /FD_SETSIZE/);
  });

  await t.step("a bad flag or value exits 2", async () => {
    for (const args of [["--bogus"], ["--fds", "1"], ["--fds", "many"], ["--rounds", "0"]]) {
      const run = await runToExit("select_limit.ts", args);
      assert.equal(run.code, 2, `${args.join(" ")}: ${run.stdout}${run.stderr}`);
      assert.notEqual(run.stderr, "", `${args.join(" ")}: nothing on stderr`);
    }
  });
});

Deno.test("`examples/README.md` lists every example in its table, with tasks that exist", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", EXAMPLES));
  const tasks = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))).tasks as Record<string, string>;
  const rows = readme.split("\n").filter((l) => l.startsWith("| [`"));
  const listed = new Map<string, string>();
  for (const row of rows) {
    const m = /^\| \[`(\w+\.ts)`\]\(\1\)/.exec(row);
    assert.ok(m, `a table row does not start with [\`NAME.ts\`](NAME.ts): ${row}`);
    listed.set(m[1], row);
  }

  const files: string[] = [];
  for await (const e of Deno.readDir(EXAMPLES)) {
    if (e.isFile && e.name.endsWith(".ts") && e.name !== "_cli.ts") files.push(e.name);
  }
  files.sort();
  assert.ok(files.length >= 10, `only ${files.length} examples found`);
  const missing = files.filter((f) => !listed.has(f));
  assert.deepEqual(missing, [], `examples/README.md does not list: ${missing.join(", ")}`);
  const stale = [...listed.keys()].filter((f) => !files.includes(f));
  assert.deepEqual(stale, [], `examples/README.md lists examples that do not exist: ${stale.join(", ")}`);

  // Each row's commands run that row's file: its `deno task` exists and points at it, its `deno run` names it.
  for (const [file, row] of listed) {
    const taskNames = [...row.matchAll(/`deno task ([\w:]+)/g)].map((m) => m[1]);
    assert.ok(taskNames.length > 0, `${file}: no \`deno task\` command in its row`);
    for (const name of taskNames) {
      assert.ok(tasks[name] !== undefined, `${file}: deno.json has no task ${name}`);
      assert.match(tasks[name], new RegExp(`examples/${file.replace(".", "\\.")}`), `task ${name} runs another file`);
    }
    for (const m of row.matchAll(/`deno run [^`]*?examples\/(\w+\.ts)/g)) {
      assert.equal(m[1], file, `${file}: its deno run line runs ${m[1]}`);
    }
  }
});
