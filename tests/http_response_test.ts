/**
 * http/response.ts: the byte buffer response heads and small bodies are
 * written into. Its text() copies short ASCII strings by hand and hands the
 * rest to TextEncoder: both must give TextEncoder's bytes.
 */

import assert from "node:assert/strict";
import { dateHeader, OutBuffer } from "../http/response.ts";

const encoder = new TextEncoder();

Deno.test("OutBuffer.text() writes the UTF-8 of ASCII, mixed, non-ASCII, long and surrogate-pair strings", () => {
  const cases = [
    "",
    "Hello, World!",
    "é",
    "héllo",
    "abc\u0080def",
    "日本語",
    "x".repeat(255) + "é",
    "y".repeat(300),
    "z".repeat(299) + "ü",
    "emoji 😀 pair",
    "\u007f\u0000 edges",
  ];
  for (const s of cases) {
    const out = new OutBuffer(4);
    out.text("<");
    out.text(s);
    out.text(">");
    assert.deepEqual(out.view(), encoder.encode(`<${s}>`), JSON.stringify(s));
  }
});

Deno.test("OutBuffer grows, keeping what it holds, and writes decimals and hex", () => {
  const out = new OutBuffer(2);
  out.text("len=");
  out.decimal(0);
  out.text(",");
  out.decimal(1234567890);
  out.text(",");
  out.hex(255);
  out.crlf();
  out.put(encoder.encode("tail"));
  assert.equal(new TextDecoder().decode(out.view()), "len=0,1234567890,ff\r\ntail");
  out.clear();
  assert.equal(out.view().byteLength, 0);
});

Deno.test("dateHeader() reads the wall clock again after 10 ms of loop time or 256 uses, and formats once per second", () => {
  const realNow = Date.now;
  let wall = Date.UTC(2026, 10, 26, 1, 2, 3, 500);
  Date.now = () => wall;
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  const at = (ms: number) => ({ time: () => ms }); // a loop whose time() reads ms
  try {
    assert.equal(text(dateHeader()), "Date: Thu, 26 Nov 2026 01:02:03 GMT\r\n");
    assert.equal(text(dateHeader(at(1000))), "Date: Thu, 26 Nov 2026 01:02:03 GMT\r\n");
    wall += 1000; // the next second, but the loop time has not moved: the line is reused…
    assert.equal(text(dateHeader(at(1005))), "Date: Thu, 26 Nov 2026 01:02:03 GMT\r\n");
    assert.equal(text(dateHeader(at(1010))), "Date: Thu, 26 Nov 2026 01:02:04 GMT\r\n", "…until 10 ms of loop time");
    wall += 1000;
    let line = "";
    for (let i = 0; i < 256; i++) line = text(dateHeader(at(1010))); // a loop whose clock stands still
    assert.equal(line, "Date: Thu, 26 Nov 2026 01:02:05 GMT\r\n", "…or 256 uses");
    wall += 1000;
    assert.equal(
      text(dateHeader(at(5))),
      "Date: Thu, 26 Nov 2026 01:02:06 GMT\r\n",
      "…or another reactor's clock, behind",
    );
  } finally {
    Date.now = realNow;
  }
});
