/**
 * `RequestParser.execute()` on typical requests: the cost of parsing, per request, with no I/O.
 *
 *   deno bench bench/http_parser_bench.ts
 *
 * Each request arrives whole in one read (the common case, parsed in place) unless the name says otherwise. The
 * "+ fields" variants also read what a server reads in `onHead` (`method()`, `path()`, `get("host")`), which is
 * where strings get decoded. The pipelined bench parses 16 requests per iteration: divide by 16 for ns/request.
 *
 * @module
 */

import { type RequestHead, RequestParser } from "../http/parser.ts";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

/** What curl sends (wrk sends only the Host line). */
const CURL_GET = enc("GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n");

/** A browser navigation: 10 header fields, ~600 bytes. */
const BROWSER_GET = enc(
  "GET /page?lang=en HTTP/1.1\r\n" +
    "Host: 127.0.0.1:8000\r\n" +
    "Connection: keep-alive\r\n" +
    'sec-ch-ua: "Chromium";v="124", "Not-A.Brand";v="99"\r\n' +
    "sec-ch-ua-mobile: ?0\r\n" +
    "Upgrade-Insecure-Requests: 1\r\n" +
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 " +
    "Safari/537.36\r\n" +
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n" +
    "Sec-Fetch-Site: none\r\n" +
    "Accept-Encoding: gzip, deflate, br\r\n" +
    "Accept-Language: en-US,en;q=0.9\r\n\r\n",
);

/** 16 wrk-style GETs in one read, as a 16-deep pipelining client sends them. */
const PIPELINED = enc("GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n".repeat(16));

/** A chunked upload: 3 chunks of 64 bytes, one with an extension, and a trailer. */
const CHUNKED_POST = enc(
  "POST /echo HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n" +
    "Transfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n" +
    ("40\r\n" + "x".repeat(64) + "\r\n").repeat(2) + "40;last\r\n" + "y".repeat(64) + "\r\n" +
    "0\r\nX-Checksum: 1234\r\n\r\n",
);

/** A Content-Length POST with a 1 KiB body. */
const CL_POST = enc(
  "POST /echo HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: application/json\r\nContent-Length: 1024\r\n\r\n" +
    "z".repeat(1024),
);

let requests = 0;
let sink = 0;

function parser(readFields: boolean): RequestParser {
  return new RequestParser({
    onHead(head: RequestHead) {
      if (readFields) sink += head.method().length + head.path().length + (head.get("host")?.length ?? 0);
    },
    onBody(chunk) {
      sink += chunk.length;
    },
    onComplete() {
      requests++;
    },
  });
}

function check(p: RequestParser, input: Uint8Array): void {
  const status = p.execute(input);
  if (status !== 0) throw new Error(`Bench input rejected: ${status} ${p.errorReason}`);
}

for (const readFields of [false, true]) {
  const suffix = readFields ? " + fields" : "";
  const p = parser(readFields);
  Deno.bench({
    name: `curl GET, 1 read${suffix}`,
    group: "get" + suffix,
    baseline: !readFields,
    fn: () => check(p, CURL_GET),
  });
  Deno.bench({
    name: `browser GET (10 fields), 1 read${suffix}`,
    group: "get" + suffix,
    fn: () => check(p, BROWSER_GET),
  });
  Deno.bench({
    name: `16 pipelined GETs, 1 read${suffix} (÷16)`,
    group: "pipe" + suffix,
    fn: () => check(p, PIPELINED),
  });
}

{
  const p = parser(true);
  Deno.bench({
    name: "chunked POST (3×64 B + trailer), 1 read + fields",
    group: "body",
    fn: () => check(p, CHUNKED_POST),
  });
  Deno.bench({ name: "Content-Length POST (1 KiB), 1 read + fields", group: "body", fn: () => check(p, CL_POST) });
  const cut = 30;
  const a = CURL_GET.subarray(0, cut);
  const b = CURL_GET.subarray(cut);
  Deno.bench({
    name: "curl GET split in 2 reads + fields (head copied)",
    group: "body",
    fn: () => {
      check(p, a);
      check(p, b);
    },
  });
}

globalThis.addEventListener("unload", () => {
  if (sink < 0) console.log(requests);
});
