/**
 * End-to-end tests of `examples/http_server.ts`: the program is spawned as
 * its own `deno run --allow-ffi` process and driven over loopback with
 * `fetch` and raw TCP, under both handler APIs and every backend.
 *
 * Every route is checked in each variant: `/`, `/json`, `/page`, `/sleep`
 * (three concurrent 300 ms sleeps overlap, and `/` answers while they
 * wait), `POST /echo` with a `Content-Length` body and a 1 MiB chunked one,
 * 404s; then SIGINT must give exit code 0 and the summary line.
 *
 * Every wait is bounded: a child that does not answer in time is killed with
 * SIGKILL and the step fails with what it printed so far.
 *
 * @module
 */

import assert from "node:assert/strict";
import { payload } from "./_helpers.ts";
import { Example, runToExit as runExample, within } from "./_examples.ts";

/** Runs `examples/http_server.ts` to its exit (for flag handling). */
const runToExit = (args: string[]) => runExample("http_server.ts", args);

// ---------------------------------------------------------------- clients

function assertSameBytes(got: Uint8Array, want: Uint8Array, label: string): void {
  assert.equal(got.byteLength, want.byteLength, `${label}: ${got.byteLength} bytes came back, ${want.byteLength} sent`);
  for (let i = 0; i < want.byteLength; i++) {
    if (got[i] !== want[i]) assert.fail(`${label}: byte ${i} is ${got[i]}, expected ${want[i]}`);
  }
}

/** One request on its own HTTP client (closed afterwards, so no pooled socket outlives the test). */
async function request(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; headers: Headers; body: Uint8Array; ms: number }> {
  const client = Deno.createHttpClient({});
  const t0 = performance.now();
  try {
    const res = await fetch(url, { ...init, client });
    const body = new Uint8Array(await res.arrayBuffer());
    return { status: res.status, headers: res.headers, body, ms: performance.now() - t0 };
  } finally {
    client.close();
  }
}

const decoder = new TextDecoder();

/** Checks every route of the server on `port`; returns how many requests it made. */
async function checkRoutes(port: number, label: string): Promise<number> {
  const base = `http://127.0.0.1:${port}`;
  let count = 0;
  const get = (path: string, init?: RequestInit) => {
    count++;
    return request(base + path, init);
  };

  const hello = await get("/");
  assert.equal(hello.status, 200, label);
  assert.equal(decoder.decode(hello.body), "Hello, World!", label);
  assert.match(hello.headers.get("content-type") ?? "", /^text\/plain/, label);
  assert.equal(hello.headers.get("content-length"), "13", label);

  const json = await get("/json");
  assert.equal(json.status, 200, label);
  assert.equal(decoder.decode(json.body), '{"code":200,"msg":"success"}', label);
  assert.equal(json.headers.get("content-type"), "application/json", label);

  const page = await get("/page");
  assert.equal(page.status, 200, label);
  assert.match(page.headers.get("content-type") ?? "", /^text\/html/, label);
  const html = decoder.decode(page.body);
  assert.match(html, /^<!DOCTYPE html>/i, label);
  assert.match(html, /<title>fdloop<\/title>/, label);
  assert.match(html, /<h1>[^<]+<\/h1>/, label);
  assert.match(html, /<p>[^<]+<\/p>/, label);

  const head = await get("/", { method: "HEAD" });
  assert.equal(head.status, 200, label);
  assert.equal(head.body.byteLength, 0, `${label}: HEAD has no body`);

  for (const [method, path] of [["GET", "/nope"], ["GET", "/echo"], ["POST", "/"], ["GET", "/json/x"]]) {
    const r = await get(path, { method, body: method === "POST" ? "x" : undefined });
    assert.equal(r.status, 404, `${label}: ${method} ${path}`);
  }
  const badSleep = await get("/sleep?ms=soon");
  assert.equal(badSleep.status, 400, label);

  // POST /echo with a Content-Length body: the same length comes back.
  const small = payload(10_000, 1);
  const echoed = await get("/echo", { method: "POST", body: small });
  assert.equal(echoed.status, 200, label);
  assertSameBytes(echoed.body, small, `${label}: POST /echo 10 000 bytes`);
  const empty = await get("/echo", { method: "POST", body: "" });
  assert.equal(empty.status, 200, label);
  assert.equal(empty.body.byteLength, 0, label);

  // POST /echo with a 1 MiB chunked body (a stream body has no length: fetch sends it chunked), in uneven pieces.
  const big = payload(1 << 20, 2);
  const sizes = [1, 100, 7919, 65_536, 1000, 300_000];
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      for (let off = 0, i = 0; off < big.byteLength; i++) {
        const n = Math.min(sizes[i % sizes.length], big.byteLength - off);
        controller.enqueue(big.slice(off, off + n));
        off += n;
      }
      controller.close();
    },
  });
  const bigEcho = await get("/echo", { method: "POST", body: stream });
  assert.equal(bigEcho.status, 200, label);
  assertSameBytes(bigEcho.body, big, `${label}: POST /echo 1 MiB chunked`);

  // /sleep: three 300 ms sleeps at once overlap, and / answers while they wait.
  const t0 = performance.now();
  const sleeps = [0, 1, 2].map(() => get("/sleep?ms=300"));
  await new Promise((r) => setTimeout(r, 50));
  const meanwhile = await get("/");
  const slept = await Promise.all(sleeps);
  const total = performance.now() - t0;
  for (const r of slept) {
    assert.equal(r.status, 200, label);
    assert.equal(decoder.decode(r.body), "OK", label);
    assert.ok(r.ms >= 290, `${label}: /sleep?ms=300 answered after ${r.ms.toFixed(0)} ms`);
  }
  assert.ok(total < 800, `${label}: three concurrent /sleep?ms=300 took ${total.toFixed(0)} ms, they do not overlap`);
  assert.equal(meanwhile.status, 200, label);
  assert.ok(
    meanwhile.ms < 250,
    `${label}: / took ${meanwhile.ms.toFixed(0)} ms while /sleep requests were waiting: the sleeps block the loop`,
  );
  return count;
}

// ---------------------------------------------------------------- the tests

const VARIANTS: string[][] = [
  ["--api", "raw", "--backend", "epoll"],
  ["--api", "raw", "--backend", "poll"],
  ["--api", "raw", "--backend", "select"],
  ["--api", "raw", "--backend", "epoll", "--sync"],
  ["--api", "raw", "--backend", "select", "--sync"],
  ["--api", "fetch", "--backend", "epoll"],
  ["--api", "fetch", "--backend", "poll"],
];

Deno.test("examples/http_server.ts serves every route under each API and backend, exits 0 on SIGINT", async (t) => {
  for (const args of VARIANTS) {
    await t.step(args.join(" "), async () => {
      await using child = new Example("http_server.ts", ["--port", "0", ...args]);
      const [port] = await child.listening();
      let count = 0;
      try {
        count = await within(15_000, "the route checks", checkRoutes(port, args.join(" ")));
      } catch (err) {
        child.signal("SIGKILL");
        await child.done;
        throw new Error(`${(err as Error).message}; ${child.transcript}`, { cause: err });
      }
      child.signal("SIGINT");
      const status = await child.exit();
      assert.equal(status.code, 0, child.transcript);
      const lines = child.stdout.trimEnd().split("\n");
      assert.equal(lines.filter((l) => l.startsWith("listening on")).length, 1, child.transcript);
      const backend = args[args.indexOf("--backend") + 1];
      const api = args[args.indexOf("--api") + 1];
      const mode = args.includes("--sync") ? ", sync" : "";
      assert.equal(lines.at(-1), `http_server: served ${count} requests (${backend}, --api ${api}${mode})`);
      assert.equal(child.stderr, "", child.transcript);
    });
  }
});

Deno.test("examples/http_server.ts answers a request in flight before exiting 0 on SIGTERM, in both run modes", async (t) => {
  for (const args of [["--api", "raw"], ["--api", "raw", "--sync"], ["--api", "fetch"]]) {
    await t.step(args.join(" "), async () => {
      await using child = new Example("http_server.ts", ["--port", "0", ...args]);
      const [port] = await child.listening();
      const sleeping = request(`http://127.0.0.1:${port}/sleep?ms=400`);
      await new Promise((r) => setTimeout(r, 100));
      child.signal("SIGTERM");
      const status = await child.exit();
      const r = await within(5000, "the /sleep answer", sleeping);
      assert.equal(status.code, 0, child.transcript);
      assert.equal(r.status, 200, child.transcript);
      assert.equal(decoder.decode(r.body), "OK");
      // The listener is closed: a new connection is refused.
      await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }).then((c) => c.close()));
    });
  }
});

Deno.test("examples/http_server.ts refuses bad flags with exit code 2", async (t) => {
  const cases: [string[], RegExp][] = [
    [["--api", "grpc"], /Unknown API "grpc"/],
    [["--api", "fetch", "--sync"], /--sync needs --api raw/],
    [["--port", "http"], /Port must be an integer/],
    [["--backend", "kqueue"], /Unknown backend "kqueue"/],
  ];
  const results = await Promise.all(cases.map(([args]) => runToExit(args)));
  for (let i = 0; i < cases.length; i++) {
    const [args, message] = cases[i];
    await t.step(args.join(" "), () => {
      assert.equal(results[i].code, 2, results[i].stderr);
      assert.match(results[i].stderr, message);
      assert.doesNotMatch(results[i].stdout, /listening on/);
    });
  }
  const help = await runToExit(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: .*examples\/http_server\.ts/);
  for (const flag of ["--host", "--port", "--api", "--backend", "--sync", "--help"]) {
    assert.match(help.stdout, new RegExp(flag));
  }
});
