/**
 * What a web `Request` costs per request, for `serve()`: the pieces of
 * turning a parsed head into `new Request(url, { method, headers })`, beside
 * reading the same fields lazily from the raw API's parsed bytes.
 *
 *   deno bench bench/http_request_bench.ts
 *
 * @module
 */

import { type RequestHead, RequestParser } from "../http/parser.ts";

const wire = new TextEncoder().encode(
  "GET /hello?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n",
);
let head!: RequestHead;
const parser = new RequestParser({ onHead: (h) => head = h, onBody() {}, onComplete() {} });
parser.execute(wire);
head.detach();

Deno.bench("raw: method + path + header(host) from the parsed bytes", { group: "request", baseline: true }, () => {
  if (head.method().length + head.path().length + (head.get("host")?.length ?? 0) === 0) throw new Error();
});

Deno.bench("new Headers() filled from the head", { group: "request" }, () => {
  const h = new Headers();
  head.forEachHeader((n, v) => h.append(n, v));
});

Deno.bench("new Request(url, { method, headers: Headers })", { group: "request" }, () => {
  const h = new Headers();
  head.forEachHeader((n, v) => h.append(n, v));
  const r = new Request(`http://${head.get("host")}${head.target()}`, { method: head.method(), headers: h });
  if (r.method !== "GET") throw new Error();
});

Deno.bench("new Request(url, { headers: pairs }) (what serve() builds for a GET)", { group: "request" }, () => {
  const pairs: [string, string][] = [];
  head.forEachHeader((n, v) => pairs.push([n, v]));
  const r = new Request(`http://${head.get("host")}${head.target()}`, { headers: pairs });
  if (r.method !== "GET") throw new Error();
});

Deno.bench("new Response(string) + read its body (what serve() writes)", { group: "response" }, async () => {
  const res = new Response("Hello, World!");
  const reader = res.body!.getReader();
  await reader.read();
  await reader.read();
});
