/**
 * End-to-end tests of the runnable programs in `examples/`: each one is
 * spawned as its own `deno run --allow-ffi` process and driven from outside
 * through real loopback sockets and pipes, the way a user would run it.
 *
 * The interface under test is what the programs print: `listening on
 * HOST:PORT` once they accept, one line per event, a summary line, and the
 * exit code (0 after SIGINT/SIGTERM or end of input, 2 for a bad flag).
 *
 * Every wait is bounded: a child that does not answer in time is killed with
 * SIGKILL and the step fails with what it printed so far.
 *
 * @module
 */

import assert from "node:assert/strict";
import { payload } from "./_helpers.ts";
import { Example, runToExit, within } from "./_examples.ts";

const ROOT = new URL("../", import.meta.url);
const EXAMPLES = new URL("examples/", ROOT);
const DENO = Deno.execPath();
const BACKENDS = ["epoll", "poll", "select"] as const;

// ---------------------------------------------------------------- clients

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.byteLength) off += await conn.write(bytes.subarray(off));
}

/**
 * Sends `data` in chunks of `chunkSize` while reading the echo concurrently,
 * half-closes after the last byte, and checks that exactly `data` comes back
 * before the server closes.
 */
async function echoExchange(conn: Deno.Conn, data: Uint8Array, chunkSize: number, label: string): Promise<void> {
  const sending = (async () => {
    for (let off = 0; off < data.byteLength; off += chunkSize) {
      await writeAll(conn, data.subarray(off, Math.min(off + chunkSize, data.byteLength)));
    }
    await conn.closeWrite();
  })();
  const got = new Uint8Array(data.byteLength);
  let n = 0;
  while (n < got.byteLength) {
    const r = await conn.read(got.subarray(n));
    if (r === null) break;
    n += r;
  }
  const extra = new Uint8Array(256);
  const after = n === got.byteLength ? await conn.read(extra) : null;
  await sending;
  assert.equal(n, data.byteLength, `${label}: the server closed after ${n} of ${data.byteLength} bytes`);
  assert.equal(after, null, `${label}: ${after} bytes more than were sent came back`);
  for (let i = 0; i < n; i++) {
    if (got[i] !== data[i]) assert.fail(`${label}: byte ${i} of ${n} is ${got[i]}, expected ${data[i]}`);
  }
}

// ---------------------------------------------------------------- echo.ts

/** Payload sizes of the echo clients, by `client % SIZES.length`: empty to 1 MiB. */
const SIZES = [0, 1, 100, 1460, 4096, 16_384, 65_535, 131_073, 300_000, 1 << 20];
/** Write chunk sizes of the echo clients, by `client % CHUNKS.length`. */
const CHUNKS = [1 << 20, 65_536, 7919, 1000];
const ECHO_CLIENTS = 200;

for (const backend of BACKENDS) {
  for (const sync of [false, true]) {
    const mode = sync ? "--sync" : "run()";
    Deno.test(
      `examples/echo.ts --backend ${backend} (${mode}) echoes ${ECHO_CLIENTS} concurrent clients exactly, exits 0 on SIGINT`,
      async () => {
        await using child = new Example("echo.ts", ["--port", "0", "--backend", backend, ...(sync ? ["--sync"] : [])]);
        const [port] = await child.listening();

        // All clients connect first, so the server holds every one of them at once.
        const conns: Deno.Conn[] = [];
        try {
          await within(
            10_000,
            `connecting ${ECHO_CLIENTS} clients`,
            (async () => {
              const pending = Array.from({ length: ECHO_CLIENTS }, () => Deno.connect({ hostname: "127.0.0.1", port }));
              for (const p of await Promise.allSettled(pending)) {
                if (p.status === "fulfilled") conns.push(p.value);
              }
              assert.equal(conns.length, ECHO_CLIENTS, `only ${conns.length} of ${ECHO_CLIENTS} clients connected`);
            })(),
          );
          let total = 0;
          const exchanges = conns.map((conn, i) => {
            const size = SIZES[i % SIZES.length];
            total += size;
            return echoExchange(conn, payload(size, i), CHUNKS[i % CHUNKS.length], `client ${i} (${size} bytes)`);
          });
          // A stuck exchange fails the test: killing the server ends every read.
          await within(30_000, "echoing every payload", Promise.all(exchanges), () => child.signal("SIGKILL"));

          child.signal("SIGINT");
          const status = await child.exit();
          assert.equal(status.code, 0, `exit code ${status.code}; ${child.transcript}`);
          const lines = child.lines;
          assert.equal(lines.filter((l) => l.startsWith("listening on")).length, 1, child.transcript);
          const summary = lines.find((l) => l.startsWith("echo: served"));
          assert.ok(summary !== undefined, `no "echo: served" line; ${child.transcript}`);
          assert.match(summary, new RegExp(`^echo: served ${ECHO_CLIENTS} connections, echoed ${total} bytes `));
          assert.match(summary, new RegExp(`\\(${backend}${sync ? ", sync" : ""}\\)$`));
          assert.doesNotMatch(child.stderr, /uncaught|error/i, child.transcript);
        } finally {
          for (const c of conns) {
            try {
              c.close();
            } catch {
              // Already closed.
            }
          }
        }
      },
    );
  }
}

Deno.test("examples/echo.ts exits 0 on SIGTERM with clients still connected, in both run modes", async (t) => {
  for (const sync of [false, true]) {
    await t.step(sync ? "--sync" : "run()", async () => {
      await using child = new Example("echo.ts", ["--port", "0", ...(sync ? ["--sync"] : [])]);
      const [port] = await child.listening();
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        const hello = new TextEncoder().encode("hello");
        await writeAll(conn, hello);
        const buf = new Uint8Array(16);
        const n = await within(5000, "the echo of hello", conn.read(buf));
        assert.equal(n, 5);
        child.signal("SIGTERM");
        const status = await child.exit();
        assert.equal(status.code, 0, child.transcript);
        // The server closed our connection on its way out.
        assert.equal(await within(5000, "EOF after shutdown", conn.read(buf)), null);
        assert.ok(child.lines.some((l) => l.startsWith("echo: served 1 connections")), child.transcript);
      } finally {
        conn.close();
      }
    });
  }
});

Deno.test("examples/echo.ts exits 0 on SIGINT that arrives while it is busy, in both run modes", async (t) => {
  // A signal that lands while the loop runs callbacks interrupts no wait: the loop must still notice it.
  // Two clients stream as fast as they can, so the server is nearly always busy, not waiting.
  for (const sync of [false, true]) {
    await t.step(sync ? "--sync" : "run()", async () => {
      await using child = new Example("echo.ts", ["--port", "0", ...(sync ? ["--sync"] : [])]);
      const [port] = await child.listening();
      const conns = await Promise.all(Array.from({ length: 2 }, () => Deno.connect({ hostname: "127.0.0.1", port })));
      let stop = false;
      let echoed = 0;
      const deadline = performance.now() + 8000;
      const block = payload(256 * 1024, 7);
      const loops = conns.flatMap((conn) => [
        (async () => {
          try {
            while (!stop && performance.now() < deadline) await writeAll(conn, block);
          } catch {
            // Reset by the server as it shuts down.
          }
        })(),
        (async () => {
          const buf = new Uint8Array(256 * 1024);
          try {
            for (;;) {
              const n = await conn.read(buf);
              if (n === null) return;
              echoed += n;
            }
          } catch {
            // Reset by the server as it shuts down.
          }
        })(),
      ]);
      try {
        await within(
          5000,
          "the first echoed megabytes",
          (async () => {
            while (echoed < 4 << 20) await new Promise((r) => setTimeout(r, 5));
          })(),
        );
        child.signal("SIGINT");
        const status = await child.exit(5000);
        assert.equal(status.code, 0, child.transcript);
        assert.ok(child.lines.some((l) => l.startsWith("echo: served 2 connections")), child.transcript);
      } finally {
        stop = true;
        for (const c of conns) {
          try {
            c.close();
          } catch {
            // Already closed.
          }
        }
        await Promise.all(loops);
      }
    });
  }
});

// ---------------------------------------------------------------- flags

/** The runnable examples: every `examples/*.ts` not starting with `_`. */
const PROGRAMS = [...Deno.readDirSync(EXAMPLES)]
  .filter((e) => e.isFile && e.name.endsWith(".ts") && !e.name.startsWith("_"))
  .map((e) => e.name)
  .sort();

Deno.test("every example prints usage on --help and exits 0", async () => {
  assert.ok(
    PROGRAMS.includes("echo.ts") && PROGRAMS.includes("multi_port.ts") && PROGRAMS.includes("stdin_monitor.ts"),
  );
  const results = await Promise.all(PROGRAMS.map((name) => runToExit(name, ["--help"])));
  results.forEach((r, i) => {
    const name = PROGRAMS[i];
    assert.equal(r.code, 0, `${name} --help exited ${r.code}: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^Usage: .*examples/${name.replace(".", "\\.")}`), `${name} --help`);
    assert.match(r.stdout, /--help/, `${name} --help lists --help`);
  });
});

Deno.test("every example refuses a bad flag with exit code 2 and a message", async (t) => {
  // edge_vs_level and select_limit compare the backends themselves and take no --backend: ask each program's --help.
  const helps = await Promise.all(PROGRAMS.map((name) => runToExit(name, ["--help"])));
  const withBackend = PROGRAMS.filter((_, i) => helps[i].stdout.includes("--backend"));
  assert.ok(withBackend.includes("echo.ts") && withBackend.includes("http_server.ts"));
  const cases: [string, string[], RegExp][] = [
    ["echo.ts", ["--port", "abc"], /Port must be an integer.*"abc"/],
    ["echo.ts", ["--port", "70000"], /Port must be an integer.*"70000"/],
    ["multi_port.ts", ["--ports", "x,0"], /Port must be an integer.*"x"/],
    ["multi_port.ts", ["--ports", "0,x"], /Port must be an integer.*"x"/],
    ["stdin_monitor.ts", ["--interval", "0"], /--interval must be/],
    ["stdin_monitor.ts", ["--interval", "soon"], /--interval must be/],
    ...withBackend.map((name): [string, string[], RegExp] => [name, ["--backend", "nope"], /Unknown backend "nope"/]),
    ...PROGRAMS.map((name): [string, string[], RegExp] => [name, ["--no-such-flag"], /no-such-flag/]),
  ];
  const results = await Promise.all(cases.map(([name, args]) => runToExit(name, args)));
  for (let i = 0; i < cases.length; i++) {
    const [name, args, message] = cases[i];
    const r = results[i];
    await t.step(`${name} ${args.join(" ")}`, () => {
      assert.equal(r.code, 2, `exit code ${r.code}; stderr: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stdout, /listening on/);
    });
  }
});

// ---------------------------------------------------------------- multi_port.ts

Deno.test("examples/multi_port.ts --ports 0,0 listens twice, logs each peer with its port, exits 0 on SIGTERM", async (t) => {
  for (const sync of [false, true]) {
    await t.step(sync ? "--sync" : "run()", async () => {
      await using child = new Example("multi_port.ts", ["--ports", "0,0", ...(sync ? ["--sync"] : [])]);
      const ports = await child.listening(2);
      assert.equal(ports.length, 2, child.transcript);
      assert.notEqual(ports[0], ports[1]);
      const conns: Deno.Conn[] = [];
      try {
        // Two connections per port, in an interleaved order.
        for (const port of [ports[0], ports[1], ports[1], ports[0]]) {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port });
          conns.push(conn);
          const peer = `127.0.0.1:${(conn.localAddr as Deno.NetAddr).port}`;
          const line = await child.waitFor(
            `accepted ${peer}`,
            (lines) => lines.find((l) => l.startsWith(`accepted ${peer} `)),
          );
          assert.equal(line, `accepted ${peer} on port ${port}`);
        }
        await within(
          10_000,
          "echo on both ports",
          Promise.all(conns.map((c, i) => echoExchange(c, payload(100_000 + i, 1000 + i), 4096, `conn ${i}`))),
          () => child.signal("SIGKILL"),
        );
        child.signal("SIGTERM");
        const status = await child.exit();
        assert.equal(status.code, 0, child.transcript);
        const lines = child.lines;
        assert.equal(lines.filter((l) => l.startsWith("listening on")).length, 2, child.transcript);
        assert.equal(lines.filter((l) => l.startsWith("accepted ")).length, 4, child.transcript);
        assert.ok(lines.includes("multi_port: served 4 connections on 2 ports"), child.transcript);
      } finally {
        for (const c of conns) {
          try {
            c.close();
          } catch {
            // Already closed.
          }
        }
      }
    });
  }
});

// ---------------------------------------------------------------- stdin_monitor.ts

const encoder = new TextEncoder();

async function feedStdin(child: Example, backendArgs: string[]): Promise<void> {
  const writer = child.proc.stdin.getWriter();
  try {
    await writer.write(encoder.encode("alpha\nbeta\n"));
    await child.waitFor("stdin: beta", (lines) => (lines.includes("stdin: beta") ? true : undefined));
    // Ticks go on while input is idle.
    await child.waitFor("tick 2", (lines) => (lines.includes("tick 2") ? true : undefined));
    // A character split across two writes, then a last line without a newline.
    const e = encoder.encode("é");
    await writer.write(e.subarray(0, 1));
    // Kept as a sleep: it gives the child time to read the first byte alone, which cannot be
    // observed from here. Nothing is proven by it: if both writes arrive together the test
    // still passes, it just does not exercise the split.
    await new Promise((r) => setTimeout(r, 20));
    await writer.write(new Uint8Array([...e.subarray(1), ...encoder.encode("\nlast line, no newline")]));
  } finally {
    await writer.close();
  }
  const status = await child.exit();
  assert.equal(status.code, 0, `${backendArgs.join(" ")}: ${child.transcript}`);
  const lines = child.lines;
  assert.deepEqual(lines.filter((l) => l.startsWith("stdin: ")), [
    "stdin: alpha",
    "stdin: beta",
    "stdin: é",
    "stdin: last line, no newline",
  ]);
  const ticks = lines.filter((l) => l.startsWith("tick ")).map((l) => Number(l.slice(5)));
  assert.ok(ticks.length >= 2, child.transcript);
  assert.deepEqual(ticks, ticks.map((_, i) => i + 1), "ticks are numbered 1, 2, 3, …");
  assert.equal(lines.at(-1), `stdin_monitor: 4 lines, ${ticks.length} ticks`);
  assert.equal(child.stderr, "", child.transcript);
}

Deno.test("examples/stdin_monitor.ts --interval 50 prints each stdin line and ticks, exits 0 at EOF", async (t) => {
  const variants: string[][] = [[], ["--sync"], ["--backend", "poll"], ["--backend", "select", "--sync"]];
  for (const args of variants) {
    await t.step(args.length ? args.join(" ") : "run()", async () => {
      await using child = new Example("stdin_monitor.ts", ["--interval", "50", ...args], "piped");
      await feedStdin(child, args);
    });
  }
});

Deno.test("examples/stdin_monitor.ts falls back to poll for /dev/null on stdin and exits 0", async (t) => {
  for (const sync of [false, true]) {
    await t.step(sync ? "--sync" : "run()", async () => {
      await using child = new Example("stdin_monitor.ts", ["--interval", "50", ...(sync ? ["--sync"] : [])], "null");
      const status = await child.exit();
      assert.equal(status.code, 0, child.transcript);
      assert.match(child.stderr, /using the poll backend/);
      assert.equal(child.lines.at(-1), "stdin_monitor: 0 lines, 0 ticks");
    });
  }
});

Deno.test("examples/stdin_monitor.ts exits 0 on SIGINT while stdin stays open", async (t) => {
  for (const sync of [false, true]) {
    await t.step(sync ? "--sync" : "run()", async () => {
      await using child = new Example("stdin_monitor.ts", ["--interval", "50", ...(sync ? ["--sync"] : [])], "piped");
      await child.waitFor("tick 1", (lines) => (lines.includes("tick 1") ? true : undefined));
      child.signal("SIGINT");
      const status = await child.exit();
      assert.equal(status.code, 0, child.transcript);
      assert.match(child.lines.at(-1) ?? "", /^stdin_monitor: 0 lines, \d+ ticks$/);
    });
  }
});

// ---------------------------------------------------------------- udp_echo.ts, tcp_client.ts

Deno.test("examples/udp_echo.ts echoes datagrams and exits 0 on SIGINT", async () => {
  await using child = new Example("udp_echo.ts", ["--port", "0"]);
  const [port] = await child.listening();
  const script = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
for i in range(20):
    msg = ("datagram %d " % i).encode() * (i + 1)
    s.sendto(msg, ("127.0.0.1", ${port}))
    data, addr = s.recvfrom(65536)
    if data != msg or addr[1] != ${port}:
        sys.exit("bad echo %r from %r" % (data, addr))
print("ok")
`;
  const py = await new Deno.Command("python3", { args: ["-c", script], stdout: "piped", stderr: "piped" }).output();
  assert.equal(py.code, 0, new TextDecoder().decode(py.stderr) + child.transcript);
  child.proc.kill("SIGINT");
  const status = await child.exit();
  assert.equal(status.code, 0, child.transcript);
  assert.ok(child.lines.includes("udp_echo: echoed 20 datagrams"), child.transcript);
});

Deno.test("examples/tcp_client.ts sends stdin lines to echo.ts, prints the replies and exits 0 at EOF", async () => {
  await using server = new Example("echo.ts", ["--port", "0"]);
  const [port] = await server.listening();
  const client = new Deno.Command(DENO, {
    args: ["run", "--allow-ffi", new URL("tcp_client.ts", EXAMPLES).pathname, "--port", String(port)],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = client.stdin.getWriter();
  await w.write(new TextEncoder().encode("first line\nsecond line\n"));
  await w.close();
  const out = await client.output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  assert.equal(new TextDecoder().decode(out.stdout), "first line\nsecond line\n");
  assert.ok(stderr.includes(`connected to 127.0.0.1:${port}`), stderr);
  server.proc.kill("SIGINT");
  assert.equal((await server.exit()).code, 0, server.transcript);
});

Deno.test("examples/tcp_client.ts reports a refused connection and exits 1", async () => {
  const out = await new Deno.Command(DENO, {
    args: ["run", "--allow-ffi", new URL("tcp_client.ts", EXAMPLES).pathname, "--port", "1"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 1);
  assert.match(new TextDecoder().decode(out.stderr), /ECONNREFUSED \(connect\)/);
});
