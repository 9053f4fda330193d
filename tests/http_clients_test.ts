/**
 * The HTTP server against real clients: curl (keep-alive, HTTP/1.0, a chunked
 * upload from stdin), python3's `http.client`, ApacheBench with keep-alive,
 * and headless Chromium rendering a page.
 *
 * Each client runs as a child process against a `listenHttp()` server on a
 * fresh reactor in this process. The reactor runs cooperatively (`run()`), so
 * the clients are spawned with the async `Deno.Command#output()`/`spawn()`:
 * a sync spawn would block the very loop that must answer them.
 *
 * Every client runs under a time limit and its output is checked. A test is
 * ignored only when its tool is not installed (the reason is printed when
 * this module loads); `.ci/run` installs the tools when it can.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { HttpHandler } from "../http/mod.ts";
import type { BackendName } from "../reactor/mod.ts";
import { httpTest } from "./_http.ts";

// ---------------------------------------------------------------- tools

/** The full path of `name` on PATH, or null. */
function which(name: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    const path = `${dir}/${name}`;
    try {
      const info = Deno.statSync(path);
      if (info.isFile && info.mode !== null && (info.mode & 0o111) !== 0) return path;
    } catch { /* not here */ }
  }
  return null;
}

/** The first of `names` installed, or null. */
function firstOf(...names: string[]): string | null {
  for (const n of names) {
    const path = which(n);
    if (path) return path;
  }
  return null;
}

const CURL = which("curl");
const PYTHON = firstOf("python3");
const AB = which("ab");
/** The old headless shell needs no `--headless`; a full chromium is run with `--headless` too. */
const CHROMIUM = firstOf("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome");

/** `ignore:` for a test that needs `tool`: true (and the reason printed once) when it is missing. */
const reported = new Set<string>();
function missing(tool: string | null, what: string, pkg: string): boolean {
  if (tool) return false;
  if (!reported.has(what)) {
    reported.add(what);
    console.warn(`http_clients_test: skipping the ${what} tests: ${what} is not installed (Debian package: ${pkg})`);
  }
  return true;
}

/** What a client process did. */
interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `cmd args` with `stdin` (if any) and a time limit; throws, with what it
 * printed, when it is killed for taking too long.
 */
async function runTool(
  cmd: string,
  args: string[],
  options: { stdin?: Uint8Array; timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<Run> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const signal = AbortSignal.timeout(timeoutMs);
  const child = new Deno.Command(cmd, {
    args,
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
    signal,
    env: options.env,
  }).spawn();
  if (options.stdin) {
    const writer = child.stdin.getWriter();
    // Write without awaiting first: the child reads stdin while its output is collected below.
    const writing = writer.write(options.stdin).then(() => writer.close()).catch(() => {});
    const out = await child.output();
    await writing;
    return finish(cmd, out, signal, timeoutMs);
  }
  return finish(cmd, await child.output(), signal, timeoutMs);
}

function finish(cmd: string, out: Deno.CommandOutput, signal: AbortSignal, timeoutMs: number): Run {
  const text = new TextDecoder();
  const run = { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
  if (signal.aborted) {
    throw new Error(
      `${cmd} was killed after ${timeoutMs} ms; stdout: ${run.stdout.slice(-1500)}; stderr: ${run.stderr.slice(-1500)}`,
    );
  }
  return run;
}

/** Asserts a zero exit code, with the output in the message. */
function assertOk(run: Run, what: string): void {
  assert.equal(run.code, 0, `${what} exited with ${run.code}; stdout: ${run.stdout}; stderr: ${run.stderr}`);
}

// ---------------------------------------------------------------- the server

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>fdloop page</title></head>
<body><h1 id="greeting">Hello from fdloop</h1>
<p id="js">JavaScript did not run</p>
<script>document.getElementById("js").textContent = "rendered by " + navigator.userAgent.split(" ")[0];</script>
</body></html>
`;

/** What the server saw of the uploads to /echo. */
interface Seen {
  echo: { method: string; transferEncoding: string | null; bytes: number }[];
  /** The client ports of every request, in order. */
  ports: number[];
}

/** GET / → "Hello, World!"; POST or PUT /echo → the body back; GET /page → a small HTML page. */
function routes(seen: Seen): () => HttpHandler {
  return () => (req, res) => {
    seen.ports.push(req.remoteAddress?.port ?? -1);
    if (req.path === "/" && req.method === "GET") {
      res.setHeader("content-type", "text/plain");
      res.end("Hello, World!");
    } else if (req.path === "/echo" && (req.method === "POST" || req.method === "PUT")) {
      const transferEncoding = req.header("transfer-encoding");
      req.readAll((body) => {
        seen.echo.push({ method: req.method, transferEncoding, bytes: body.byteLength });
        res.setHeader("content-type", "application/octet-stream");
        res.end(body);
      });
    } else if (req.path === "/page" && req.method === "GET") {
      res.setHeader("content-type", "text/html; charset=utf-8");
      res.end(PAGE);
    } else {
      res.status = 404;
      res.end("not found");
    }
  };
}

/** Runs `body` against the routes on `backend`. */
function withServer(
  backend: BackendName,
  body: (base: string, seen: Seen) => Promise<void>,
): Promise<void> {
  const seen: Seen = { echo: [], ports: [] };
  return httpTest(backend, {}, routes(seen), ({ port }) => body(`http://127.0.0.1:${port}`, seen));
}

// ---------------------------------------------------------------- curl

for (const backend of ["epoll", "poll", "select"] as const) {
  Deno.test({
    name: `curl (${backend}) fetches two URLs over one keep-alive connection`,
    ignore: missing(CURL, "curl", "curl"),
    fn: () =>
      withServer(backend, async (base, seen) => {
        const run = await runTool(CURL!, [
          "-sS",
          "-v",
          "--max-time",
          "20",
          "-w",
          "\n[%{http_code} %{num_connects}]\n",
          `${base}/`,
          `${base}/`,
        ]);
        assertOk(run, "curl");
        assert.equal(
          run.stdout,
          "Hello, World!\n[200 1]\nHello, World!\n[200 0]\n",
          "the second transfer made no new connection",
        );
        assert.match(run.stderr, /Re-?using existing connection/i);
        assert.equal(seen.ports.length, 2);
        assert.equal(seen.ports[0], seen.ports[1], "both requests came from one client port");
      }),
  });
}

Deno.test({
  name: "curl --http1.0 gets HTTP/1.0 answers: a connection per request, or one with Connection: keep-alive",
  ignore: missing(CURL, "curl", "curl"),
  fn: () =>
    withServer("epoll", async (base, seen) => {
      const args = ["-sS", "-v", "--http1.0", "--max-time", "20", "-w", "\n[%{http_code} %{num_connects}]\n"];
      let run = await runTool(CURL!, [...args, `${base}/`, `${base}/page`]);
      assertOk(run, "curl --http1.0");
      assert.match(run.stderr, /> GET \/ HTTP\/1\.0\r?\n/);
      assert.match(run.stderr, /> GET \/page HTTP\/1\.0\r?\n/);
      assert.equal(run.stderr.match(/< HTTP\/1\.0 200 OK/g)?.length, 2, run.stderr);
      assert.equal(run.stderr.match(/< Connection: close/gi)?.length, 2, "the server says it closes");
      assert.doesNotMatch(run.stderr, /Re-?using existing connection/i);
      assert.ok(run.stdout.startsWith("Hello, World!\n[200 1]\n"), run.stdout);
      assert.ok(run.stdout.includes('<h1 id="greeting">Hello from fdloop</h1>'), run.stdout);
      assert.ok(run.stdout.endsWith("</html>\n\n[200 1]\n"), "a second connection for the second URL");
      assert.equal(seen.ports.length, 2);
      assert.notEqual(seen.ports[0], seen.ports[1]);

      run = await runTool(CURL!, [...args, "-H", "Connection: keep-alive", `${base}/`, `${base}/`]);
      assertOk(run, "curl --http1.0 -H 'Connection: keep-alive'");
      assert.equal(run.stdout, "Hello, World!\n[200 1]\nHello, World!\n[200 0]\n", "the connection was reused");
      assert.equal(run.stderr.match(/< Connection: keep-alive/gi)?.length, 2, run.stderr);
      assert.equal(seen.ports[2], seen.ports[3]);
    }),
});

Deno.test({
  name: "curl -T - uploads stdin chunked and gets it echoed",
  ignore: missing(CURL, "curl", "curl"),
  fn: () =>
    withServer("epoll", async (base, seen) => {
      // 200 KiB of lines, so the upload takes several chunks.
      const lines: string[] = [];
      for (let i = 0; lines.length < 4000; i++) lines.push(`line ${String(i).padStart(6, "0")} ${"=".repeat(38)}`);
      const upload = new TextEncoder().encode(lines.join("\n") + "\n");
      const run = await runTool(
        CURL!,
        ["-sS", "-v", "--max-time", "20", "-T", "-", "-X", "POST", `${base}/echo`],
        { stdin: upload },
      );
      assertOk(run, "curl -T -");
      assert.match(run.stderr, /> Transfer-Encoding: chunked\r?\n/i, "curl sent a chunked body");
      assert.equal(run.stdout.length, upload.length);
      assert.equal(run.stdout, new TextDecoder().decode(upload));
      assert.deepEqual(seen.echo, [{ method: "POST", transferEncoding: "chunked", bytes: upload.length }]);
    }),
});

// ---------------------------------------------------------------- python3 http.client

const PY_CLIENT = `
import http.client, json, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=20)
out = []
conn.request("GET", "/")
r = conn.getresponse()
out.append({"status": r.status, "body": r.read().decode(), "port": conn.sock.getsockname()[1],
            "version": r.version, "type": r.getheader("content-type")})
body = ("post body " * 1000).encode()
conn.request("POST", "/echo", body=body, headers={"Content-Type": "text/plain"})
r = conn.getresponse()
echoed = r.read()
out.append({"status": r.status, "same": echoed == body, "length": len(echoed), "port": conn.sock.getsockname()[1]})
conn.request("GET", "/missing")
r = conn.getresponse()
out.append({"status": r.status, "body": r.read().decode(), "port": conn.sock.getsockname()[1]})
conn.close()
print(json.dumps(out))
`;

Deno.test({
  name: "python3 http.client sends GET, POST and a 404 on one keep-alive HTTPConnection",
  ignore: missing(PYTHON, "python3", "python3"),
  fn: () =>
    withServer("epoll", async (base, seen) => {
      const port = new URL(base).port;
      const run = await runTool(PYTHON!, ["-c", PY_CLIENT, port]);
      assertOk(run, "python3");
      const [get, post, notFound] = JSON.parse(run.stdout);
      assert.deepEqual(
        { status: get.status, body: get.body, version: get.version, type: get.type },
        { status: 200, body: "Hello, World!", version: 11, type: "text/plain" },
      );
      assert.deepEqual({ status: post.status, same: post.same, length: post.length }, {
        status: 200,
        same: true,
        length: 10_000,
      });
      assert.deepEqual({ status: notFound.status, body: notFound.body }, { status: 404, body: "not found" });
      assert.ok(get.port === post.port && post.port === notFound.port, "one socket for all three requests");
      assert.deepEqual(seen.ports, [get.port, get.port, get.port], "the server saw one client port");
      assert.deepEqual(seen.echo, [{ method: "POST", transferEncoding: null, bytes: 10_000 }]);
    }),
});

// ---------------------------------------------------------------- ApacheBench

/** A numeric field of ab's report, such as "Complete requests:      2000". */
function abField(report: string, name: string): number {
  const m = report.match(new RegExp(`^${name}:\\s+(\\d+)`, "m"));
  assert.ok(m, `ab's report has no "${name}:" line; report: ${report}`);
  return Number(m[1]);
}

for (const backend of ["epoll", "poll", "select"] as const) {
  Deno.test({
    name: `ab -k -n 2000 -c 20 (${backend}): every request completes, all on keep-alive connections`,
    ignore: missing(AB, "ab", "apache2-utils"),
    fn: () =>
      withServer(backend, async (base) => {
        const run = await runTool(AB!, ["-k", "-n", "2000", "-c", "20", "-s", "20", `${base}/`], {
          timeoutMs: 60_000,
        });
        assertOk(run, "ab");
        const report = run.stdout;
        assert.equal(abField(report, "Complete requests"), 2000, report);
        assert.equal(abField(report, "Failed requests"), 0, report);
        assert.equal(abField(report, "Keep-Alive requests"), 2000, report);
        assert.doesNotMatch(report, /Non-2xx responses/, "ab prints that line only when some status was not 2xx");
        assert.equal(abField(report, "Document Length"), "Hello, World!".length, report);
      }),
  });
}

// ---------------------------------------------------------------- headless Chromium

Deno.test({
  name: "headless Chromium renders /page (--dump-dom shows the heading and the script's work)",
  ignore: missing(CHROMIUM, "headless Chromium", "chromium-headless-shell"),
  fn: () =>
    withServer("epoll", async (base) => {
      const profile = await Deno.makeTempDir({ prefix: "fdloop-chromium-" });
      try {
        const run = await runTool(CHROMIUM!, [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-quic",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
          "--disable-dev-shm-usage",
          `--user-data-dir=${profile}`,
          "--dump-dom",
          `${base}/page`,
        ], { timeoutMs: 60_000 });
        assertOk(run, "chromium");
        assert.match(run.stdout, /<h1 id="greeting">Hello from fdloop<\/h1>/, run.stdout + run.stderr);
        assert.match(run.stdout, /<p id="js">rendered by Mozilla\/5\.0<\/p>/, "the page's script ran");
        assert.match(run.stdout, /<title>fdloop page<\/title>/);
      } finally {
        await Deno.remove(profile, { recursive: true }).catch(() => {});
      }
    }),
});
