/**
 * `examples/http_client.ts` as a child process: three requests to a
 * 1-second endpoint take about 1 s with the reactor client, about 3 s with
 * blocking sockets.
 */

import assert from "node:assert/strict";

const EXAMPLE = new URL("../examples/http_client.ts", import.meta.url).pathname;

async function runExample(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-ffi", "--allow-net", EXAMPLE, ...args],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

Deno.test("examples/http_client.ts fetches three 1-second pages in about 1 s concurrently and about 3 s blocking", async () => {
  const ac = new AbortController();
  // A server whose /sleep answers after `ms`, running on Deno's own loop beside the test.
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", signal: ac.signal, onListen() {} }, async (req) => {
    const ms = Number(new URL(req.url).searchParams.get("ms") ?? "0");
    await new Promise((r) => setTimeout(r, ms));
    return new Response("OK");
  });
  try {
    const url = `http://127.0.0.1:${server.addr.port}/sleep?ms=1000`;
    const r = await runExample([url, url, url]);
    assert.equal(r.code, 0, r.stderr);
    const concurrent = Number(/concurrent \(reactor client\): 3 requests in ([\d.]+) s/.exec(r.stdout)?.[1]);
    const sequential = Number(/sequential \(blocking sockets\): 3 requests in ([\d.]+) s/.exec(r.stdout)?.[1]);
    assert.ok(concurrent >= 0.99 && concurrent <= 1.6, `concurrent took ${concurrent} s:\n${r.stdout}`);
    assert.ok(sequential >= 2.99 && sequential <= 6, `sequential took ${sequential} s:\n${r.stdout}`);
    assert.match(r.stdout, /speed-up: [\d.]+×/);
  } finally {
    ac.abort();
    await server.finished;
  }
});

Deno.test("examples/http_client.ts --count repeats each URL, and bad arguments exit 2 with usage", async () => {
  const ac = new AbortController();
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", signal: ac.signal, onListen() {} },
    () => new Response("x"),
  );
  try {
    const r = await runExample([`http://127.0.0.1:${server.addr.port}/`, "--count", "4"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /concurrent \(reactor client\): 4 requests in/);
    assert.equal((await runExample([])).code, 2);
    assert.equal((await runExample(["--count", "0", "http://127.0.0.1:1/"])).code, 2);
    const help = await runExample(["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage:/);
  } finally {
    ac.abort();
    await server.finished;
  }
});

Deno.test("examples/http_client.ts exits 1 naming the error when the server refuses", async () => {
  const probe = Deno.listen({ port: 0, hostname: "127.0.0.1" });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const r = await runExample([`http://127.0.0.1:${port}/`]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /ECONNREFUSED/);
});
