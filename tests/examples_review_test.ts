/**
 * The examples as programs users (and scripts) run: what the review of their
 * command-line interface found, one test per defect, each of which failed
 * before its fix.
 *
 * The interface: `--help` exits 0; a bad flag or value exits 2 with one line
 * on stderr; a server prints exactly one `listening on HOST:PORT` line per
 * listening socket (IPv6 hosts in brackets), serves until SIGINT/SIGTERM,
 * prints one summary line and exits 0; a failure to start (an address in
 * use) is one line on stderr and a non-zero exit, never a stack trace; and a
 * reader that goes away (`| head -1`) does not send a program into a loop of
 * errors.
 *
 * Every wait is bounded; everything runs on loopback.
 *
 * @module
 */

import assert from "node:assert/strict";
import { payload } from "./_helpers.ts";
import { Example, runToExit, within } from "./_examples.ts";

const ROOT = new URL("../", import.meta.url);
const EXAMPLES = new URL("examples/", ROOT);
const DENO = Deno.execPath();
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** The programs of `examples/` (every `*.ts` not starting with `_`). */
const PROGRAMS = [...Deno.readDirSync(EXAMPLES)]
  .filter((e) => e.isFile && e.name.endsWith(".ts") && !e.name.startsWith("_"))
  .map((e) => e.name)
  .sort();

/** A stack trace line (`    at foo (file:///…)`), which a user-facing error must not print. */
const STACK = /^\s+at /m;

/** Asserts that `stderr` is exactly one line matching `re`, without a stack trace. */
function assertOneLine(stderr: string, re: RegExp, label: string): void {
  const lines = stderr.trimEnd().split("\n");
  assert.equal(
    lines.length,
    1,
    `${label}: expected one line on stderr, got ${lines.length}: ${JSON.stringify(stderr)}`,
  );
  assert.match(lines[0], re, label);
  assert.doesNotMatch(stderr, STACK, label);
}

// ---------------------------------------------------------------- bad flags: one line, exit 2

Deno.test("a bad flag or value exits 2 with exactly one line on stderr", async (t) => {
  const cases: [string, string[], RegExp][] = [
    ...PROGRAMS.map((name): [string, string[], RegExp] => [name, ["--no-such-flag"], /no-such-flag/]),
    ["echo.ts", ["--port", "70000"], /Port must be an integer/],
    ["echo.ts", ["--sync=yes"], /sync/],
    ["echo.ts", ["8000"], /8000/],
    ["http_client.ts", [], /URL/],
    ["http_client.ts", ["--count", "0", "http://127.0.0.1:1/"], /--count/],
    ["http_client.ts", ["not a url"], /URL/],
  ];
  const results = await Promise.all(cases.map(([name, args]) => runToExit(name, args)));
  for (let i = 0; i < cases.length; i++) {
    const [name, args, re] = cases[i];
    await t.step(`${name} ${args.join(" ")}`, () => {
      assert.equal(results[i].code, 2, `exit code ${results[i].code}: ${results[i].stderr}`);
      assertOneLine(results[i].stderr, re, `${name} ${args.join(" ")}`);
      assert.equal(results[i].stdout, "");
    });
  }
});

// ---------------------------------------------------------------- --host and the address in use

/** The listening servers and how each is asked for a host and a port. */
const SERVERS: { name: string; args: (host: string, port: number) => string[] }[] = [
  { name: "echo.ts", args: (host, port) => ["--host", host, "--port", String(port)] },
  { name: "multi_port.ts", args: (host, port) => ["--host", host, "--ports", String(port)] },
  { name: "udp_echo.ts", args: (host, port) => ["--host", host, "--port", String(port)] },
  { name: "http_server.ts", args: (host, port) => ["--host", host, "--port", String(port)] },
  { name: "http_server.ts", args: (host, port) => ["--host", host, "--port", String(port), "--api", "fetch"] },
];

Deno.test("a --host that is not a numeric address or localhost exits 2 with one line, not a stack trace", async (t) => {
  const results = await Promise.all(SERVERS.map((s) => runToExit(s.name, s.args("nope.invalid", 0))));
  for (let i = 0; i < SERVERS.length; i++) {
    const label = `${SERVERS[i].name} ${SERVERS[i].args("nope.invalid", 0).join(" ")}`;
    await t.step(label, () => {
      assert.equal(results[i].code, 2, `${label}: exit code ${results[i].code}: ${results[i].stderr}`);
      assertOneLine(results[i].stderr, /nope\.invalid/, label);
      assert.doesNotMatch(results[i].stdout, /listening on/);
    });
  }
});

Deno.test("a port in use (EADDRINUSE) is one line on stderr and exit code 1, not a stack trace", async (t) => {
  const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const tcpPort = (tcp.addr as Deno.NetAddr).port;
  // A UDP port in use: a first udp_echo holds it.
  await using udp = new Example("udp_echo.ts", ["--port", "0"]);
  const [udpPort] = await udp.listening();
  try {
    for (const s of SERVERS) {
      const port = s.name === "udp_echo.ts" ? udpPort : tcpPort;
      const args = s.args("127.0.0.1", port);
      await t.step(`${s.name} ${args.join(" ")}`, async () => {
        const r = await runToExit(s.name, args);
        assert.equal(r.code, 1, `exit code ${r.code}: ${r.stderr}`);
        assertOneLine(r.stderr, /EADDRINUSE/, s.name);
        assert.doesNotMatch(r.stdout, /listening on/);
      });
    }
    await t.step("multi_port.ts --ports 0,PORT: the second port in use, after the first listened", async () => {
      const r = await runToExit("multi_port.ts", ["--ports", `0,${tcpPort}`]);
      assert.equal(r.code, 1, `exit code ${r.code}: ${r.stderr}`);
      assertOneLine(r.stderr, /EADDRINUSE/, "multi_port.ts");
    });
  } finally {
    tcp.close();
    udp.signal("SIGINT");
    assert.equal((await udp.exit()).code, 0, udp.transcript);
  }
});

// ---------------------------------------------------------------- a signal right after `listening on`

Deno.test("a signal sent as soon as `listening on` is read gives the summary and exit 0, not death by signal", async (t) => {
  // The race is narrow (it was lost ~1 time in 10): several rounds per server.
  const ROUNDS = 8;
  for (const s of SERVERS) {
    const args = s.args("127.0.0.1", 0);
    await t.step(`${s.name} ${args.join(" ")}`, async () => {
      for (let round = 0; round < ROUNDS; round++) {
        await using child = new Example(s.name, args);
        await child.listening();
        child.signal(round % 2 ? "SIGINT" : "SIGTERM");
        const status = await child.exit();
        assert.equal(status.code, 0, `round ${round}: killed by ${status.signal}; ${child.transcript}`);
        assert.match(child.lines.at(-1) ?? "", /^(echo|multi_port|udp_echo|http_server): /, child.transcript);
      }
    });
  }
});

// ---------------------------------------------------------------- IPv6 hosts in brackets

Deno.test("every server prints an IPv6 host in single brackets, however --host spelled it", async (t) => {
  for (const s of SERVERS) {
    for (const host of ["::1", "[::1]"]) {
      const args = s.args(host, 0);
      await t.step(`${s.name} ${args.join(" ")}`, async () => {
        await using child = new Example(s.name, args);
        const [port] = await child.listening();
        assert.deepEqual(child.lines.filter((l) => l.startsWith("listening on")), [`listening on [::1]:${port}`]);
        child.signal("SIGTERM");
        assert.equal((await child.exit()).code, 0, child.transcript);
      });
    }
  }
});

// ---------------------------------------------------------------- tcp_client.ts

Deno.test("tcp_client.ts refuses a bad --timeout with exit code 2 and one line", async (t) => {
  for (const value of ["abc", "-1", "1.5", ""]) {
    await t.step(`--timeout=${value}`, async () => {
      const r = await runToExit("tcp_client.ts", ["--port", "1", `--timeout=${value}`]);
      assert.equal(r.code, 2, `exit code ${r.code}: ${r.stderr}`);
      assertOneLine(r.stderr, /--timeout/, `--timeout ${value}`);
    });
  }
});

Deno.test("tcp_client.ts exits 1 (not 2, the bad-flag code) when the host name does not resolve", async () => {
  const r = await runToExit("tcp_client.ts", ["--host", "nope.invalid", "--port", "80", "--timeout", "3000"]);
  assert.equal(r.code, 1, `exit code ${r.code}: ${r.stderr}`);
  assertOneLine(r.stderr, /nope\.invalid/, "tcp_client.ts");
});

Deno.test("tcp_client.ts --backend epoll with a file on stdin (/dev/null) half-closes and exits 0 instead of hanging", async () => {
  await using server = new Example("echo.ts", ["--port", "0"]);
  const [port] = await server.listening();
  await using client = new Example("tcp_client.ts", ["--port", String(port), "--backend", "epoll"], "null");
  const status = await client.exit(5000);
  assert.equal(status.code, 0, client.transcript);
  assert.doesNotMatch(client.stderr, STACK, client.transcript);
  assert.match(client.stderr, /connected to 127\.0\.0\.1:/, client.transcript);
  server.signal("SIGINT");
  assert.equal((await server.exit()).code, 0, server.transcript);
});

// ---------------------------------------------------------------- stdout closed (`| head -1`)

/** A child whose stdout the test reads line by line and then closes, as `| head -N` does. */
class Headed implements AsyncDisposable {
  readonly proc: Deno.ChildProcess;
  readonly stderr: Promise<string>;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  #buffer = "";

  constructor(name: string, args: string[], stdin: "piped" | "null" = "null") {
    this.proc = new Deno.Command(DENO, {
      args: ["run", "--allow-ffi", new URL(name, EXAMPLES).pathname, ...args],
      cwd: ROOT.pathname,
      stdin,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.#reader = this.proc.stdout.getReader();
    this.stderr = new Response(this.proc.stderr).text();
  }

  /** Reads the first `n` lines of stdout, then closes the pipe: later writes of the child fail with EPIPE. */
  async head(n: number): Promise<string[]> {
    const lines = await within(
      10_000,
      `the first ${n} line(s)`,
      (async () => {
        for (;;) {
          const lines = this.#buffer.split("\n");
          if (lines.length > n) return lines.slice(0, n);
          const r = await this.#reader.read();
          if (r.done) throw new Error(`stdout ended before ${n} lines: ${JSON.stringify(this.#buffer)}`);
          this.#buffer += decoder.decode(r.value, { stream: true });
        }
      })(),
    );
    await this.#reader.cancel();
    return lines;
  }

  /** The exit status, or a kill and a failure after `ms`. */
  async exit(ms = 10_000): Promise<{ code: number; stderr: string }> {
    const status = await within(ms, "the exit", this.proc.status, () => this.proc.kill("SIGKILL"));
    return { code: status.code, stderr: await this.stderr };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.proc.kill("SIGKILL");
    } catch {
      // Exited.
    }
    try {
      await this.proc.stdin?.close();
    } catch {
      // Not piped, or closed.
    }
    await this.proc.status;
    await this.stderr;
  }
}

/** Connects to `port`, sends `data`, half-closes and returns what comes back before the server closes. */
async function roundTrip(port: number, data: Uint8Array): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const sending = (async () => {
      let off = 0;
      while (off < data.byteLength) off += await conn.write(data.subarray(off));
      await conn.closeWrite();
    })();
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    await sending;
    const out = new Uint8Array(chunks.reduce((s, c) => s + c.byteLength, 0));
    let at = 0;
    for (const c of chunks) out.set(c, (at += c.byteLength) - c.byteLength);
    return out;
  } finally {
    conn.close();
  }
}

/** The port of a `listening on HOST:PORT` line. */
function portOf(line: string): number {
  const m = /^listening on .+:(\d+)$/.exec(line);
  assert.ok(m, `not a listening line: ${line}`);
  return Number(m[1]);
}

Deno.test("the servers go on serving when their stdout is closed, and exit 0 on SIGTERM without an error", async (t) => {
  const cases: [string, string[]][] = [
    ["echo.ts", ["--port", "0"]],
    ["multi_port.ts", ["--ports", "0"]],
    ["http_server.ts", ["--port", "0"]],
    ["http_server.ts", ["--port", "0", "--api", "fetch"]],
  ];
  for (const [name, args] of cases) {
    await t.step(`${name} ${args.join(" ")}`, async () => {
      await using child = new Headed(name, args);
      const [line] = await child.head(1);
      const port = portOf(line);
      // Two connections: multi_port.ts logs each one on the closed stdout.
      for (let i = 0; i < 2; i++) {
        if (name === "http_server.ts") {
          const got = decoder.decode(
            await within(5000, "an HTTP answer", roundTrip(port, encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))),
          );
          assert.match(got, /^HTTP\/1\.1 200 OK\r\n[^]*Hello, World!$/, got);
        } else {
          const data = payload(10_000, i);
          assert.deepEqual(await within(5000, "the echo", roundTrip(port, data)), data);
        }
      }
      child.proc.kill("SIGTERM");
      const r = await child.exit();
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /BrokenPipe|uncaught|error/i, r.stderr);
    });
  }
});

Deno.test("tcp_client.ts ends quietly when its stdout is closed", async () => {
  await using server = new Example("echo.ts", ["--port", "0"]);
  const [port] = await server.listening();
  await using child = new Headed("tcp_client.ts", ["--port", String(port)], "piped");
  const writer = child.proc.stdin.getWriter();
  try {
    await writer.write(encoder.encode("one\n"));
    assert.deepEqual(await child.head(1), ["one"]);
    // The replies to these find stdout closed.
    await writer.write(encoder.encode("two\nthree\n"));
    const r = await child.exit(5000);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /BrokenPipe|uncaught/i, r.stderr);
  } finally {
    await writer.close().catch(() => {});
    server.signal("SIGINT");
    assert.equal((await server.exit()).code, 0, server.transcript);
  }
});

Deno.test("the one-shot examples finish and exit 0 when their stdout is closed after the first line", async (t) => {
  const cases: [string, string[]][] = [
    ["edge_vs_level.ts", []],
    ["select_limit.ts", ["--fds", "64", "--rounds", "1"]],
  ];
  for (const [name, args] of cases) {
    await t.step(`${name} ${args.join(" ")}`, async () => {
      await using child = new Headed(name, args);
      await child.head(1);
      const r = await child.exit();
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /BrokenPipe|uncaught/i, r.stderr);
    });
  }
});

// ---------------------------------------------------------------- select past FD_SETSIZE

/** Waits until `child`'s stderr matches `re`. */
async function stderrMatches(child: Example, re: RegExp, ms = 10_000): Promise<void> {
  await within(
    ms,
    `stderr matching ${re}`,
    (async () => {
      while (!re.test(child.stderr)) await new Promise((r) => setTimeout(r, 20));
    })(),
  );
}

Deno.test("--backend select past FD_SETSIZE: one line per refused connection, and the server stays up", async (t) => {
  const cases: [string, string[]][] = [
    ["echo.ts", ["--port", "0", "--backend", "select"]],
    ["http_server.ts", ["--port", "0", "--backend", "select"]],
    ["http_server.ts", ["--port", "0", "--backend", "select", "--api", "fetch"]],
  ];
  for (const [name, args] of cases) {
    await t.step(`${name} ${args.join(" ")}`, async () => {
      await using child = new Example(name, args);
      const [port] = await child.listening();
      const conns: Deno.Conn[] = [];
      try {
        // The child holds ~20 fds of its own: 1040 connections take it past fd 1024.
        await within(
          20_000,
          "1040 connections",
          (async () => {
            for (let i = 0; i < 1040; i += 40) {
              conns.push(
                ...await Promise.all(Array.from({ length: 40 }, () => Deno.connect({ hostname: "127.0.0.1", port }))),
              );
            }
          })(),
        );
        await stderrMatches(child, /FD_SETSIZE/);
      } finally {
        for (const c of conns) c.close();
      }
      // Refused connections are closed by the server; the rest by us. A new one is served.
      if (name === "http_server.ts") {
        const got = decoder.decode(
          await within(5000, "an HTTP answer", roundTrip(port, encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))),
        );
        assert.match(got, /Hello, World!$/, got);
      } else {
        const data = payload(1000, 3);
        assert.deepEqual(await within(5000, "the echo", roundTrip(port, data)), data);
      }
      child.signal("SIGINT");
      const status = await child.exit();
      assert.equal(status.code, 0, child.transcript);
      assert.match(child.lines.at(-1) ?? "", /served/, child.transcript);
      const errors = child.stderr.trimEnd().split("\n");
      assert.ok(errors.length >= 1);
      for (const l of errors) assert.match(l, /FD_SETSIZE/, `not one line per refused connection: ${child.transcript}`);
      assert.doesNotMatch(child.stderr, STACK, child.transcript);
    });
  }
});

// ---------------------------------------------------------------- signals while shutting down

Deno.test("http_server.ts: a second signal while requests drain closes them now, prints the summary and exits 0", async (t) => {
  for (const args of [["--api", "raw"], ["--api", "raw", "--sync"], ["--api", "fetch"]]) {
    await t.step(args.join(" "), async () => {
      await using child = new Example("http_server.ts", ["--port", "0", ...args]);
      const [port] = await child.listening();
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await conn.write(encoder.encode("GET /sleep?ms=10000 HTTP/1.1\r\nHost: x\r\n\r\n"));
        await new Promise((r) => setTimeout(r, 200));
        child.signal("SIGINT");
        await new Promise((r) => setTimeout(r, 200));
        const t0 = performance.now();
        child.signal("SIGINT");
        const status = await child.exit();
        const ms = performance.now() - t0;
        assert.equal(status.code, 0, child.transcript);
        assert.match(child.lines.at(-1) ?? "", /^http_server: served 1 requests/, child.transcript);
        assert.ok(ms < 1500, `exited ${ms.toFixed(0)} ms after the second SIGINT: it waited out the grace period`);
      } finally {
        conn.close();
      }
    });
  }
});

// ---------------------------------------------------------------- the http_client demo of the README

Deno.test("the README's demo: http_client.ts against http_server.ts, 3 × /sleep?ms=1000 in ≈1 s concurrently, ≈3 s blocking", async (t) => {
  for (const api of ["raw", "fetch"]) {
    await t.step(`http_server.ts --api ${api}`, async () => {
      await using server = new Example("http_server.ts", ["--port", "0", "--api", api]);
      const [port] = await server.listening();
      const url = `http://127.0.0.1:${port}/sleep?ms=1000`;
      // The README's `deno run` line: --allow-ffi only.
      const out = await new Deno.Command(DENO, {
        args: ["run", "--allow-ffi", new URL("http_client.ts", EXAMPLES).pathname, url, url, url],
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(30_000),
      }).output();
      const stdout = decoder.decode(out.stdout);
      const stderr = decoder.decode(out.stderr);
      assert.equal(out.code, 0, `${stdout}\n${stderr}`);
      const concurrent = Number(/^concurrent \(reactor client\): 3 requests in ([\d.]+) s$/m.exec(stdout)?.[1]);
      const sequential = Number(/^sequential \(blocking sockets\): 3 requests in ([\d.]+) s$/m.exec(stdout)?.[1]);
      assert.ok(concurrent >= 0.99 && concurrent < 1.8, `concurrent: ${stdout}`);
      assert.ok(sequential >= 2.99 && sequential < 5, `sequential: ${stdout}`);
      assert.match(stdout, /^speed-up: [\d.]+×$/m);
      server.signal("SIGINT");
      assert.equal((await server.exit()).code, 0, server.transcript);
    });
  }
});

// ---------------------------------------------------------------- examples/README.md

Deno.test("examples/README.md names the permission beyond --allow-ffi that blocking_handler.ts needs", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", EXAMPLES));
  const intro = readme.slice(0, readme.indexOf("\n| "));
  // blocking_handler.ts fetches from its own server: without --allow-net it fails (NotCapable).
  assert.match(intro, /blocking_handler\.ts[^.]*--allow-net=127\.0\.0\.1/, intro);
});
