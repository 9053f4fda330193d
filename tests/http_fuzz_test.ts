/**
 * A bounded fuzz test of `http/parser.ts`.
 *
 * Requests are generated from a grammar (random methods, targets, header fields, `Content-Length` and chunked
 * bodies with extensions and trailers, pipelines of up to 3), then fed to the parser whole, cut at random points and
 * one byte at a time. Properties:
 * - `execute()` never throws and always returns (the inputs are bounded);
 * - the same bytes give the same events and status however they are split;
 * - a generated request is accepted, with exactly the generated head and body;
 * - a mutated request (bytes flipped, inserted, deleted; CR, LF, NUL, 0x80, SP injected; header lines such as a
 *   second Content-Length or a Transfer-Encoding inserted; truncated) gets the same verdict from the parser as
 *   from `reference()` below: an independent, slow, obviously-written validator of the same rules (lines split on
 *   CRLF, checked with regular expressions). The parser never accepts what the reference rejects, and the statuses
 *   agree (where a size limit falls inside a malformed line, either of the two statuses is accepted).
 *
 * Runs for about 2.5 s; `FDLOOP_FUZZ_SECONDS=60` runs longer (`deno task fuzz`). The seed is printed on failure;
 * `FDLOOP_FUZZ_SEED=<seed>` replays a run and `FDLOOP_FUZZ_CASE=<case seed>` replays one case.
 */

import assert from "node:assert/strict";
import { DEFAULT_LIMITS, type ParserLimits, type RequestHead, RequestParser } from "../http/parser.ts";
import {
  BASE_SEED,
  fuzzSeconds,
  genExtensions,
  genValue,
  HOSTCHARS,
  OBS,
  ONE_CASE,
  ows,
  PCHARS,
  Rng,
  TCHARS,
  trimOws,
  VCHARS,
} from "./_fuzz.ts";

const SECONDS = fuzzSeconds(2.5);

// ---------------------------------------------------------------------------------------------------------------
// Messages, and the parser's view of them.

interface Msg {
  method: string;
  target: string;
  versionMinor: number;
  keepAlive: boolean;
  expectContinue: boolean;
  chunked: boolean;
  contentLength: number;
  headers: [string, string][];
  body: string;
}

type Event = { head: Omit<Msg, "body"> } | { body: string } | { complete: true };

interface Run {
  status: number;
  events: Event[];
}

const latin1 = (b: Uint8Array): string => {
  let s = "";
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
  return s;
};

function toBytes(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
  return b;
}

function asciiLower(s: string): string {
  return s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) | 0x20));
}

/** Checks get() against the header list, so the lookup path is fuzzed too. */
function checkGet(head: RequestHead, headers: [string, string][]): void {
  const joined = new Map<string, string>();
  for (const [n, v] of headers) {
    const k = asciiLower(n);
    joined.set(k, joined.has(k) ? `${joined.get(k)}, ${v}` : v);
  }
  for (const [k, v] of joined) assert.equal(head.get(k), v, `get(${JSON.stringify(k)})`);
  assert.equal(head.get("x-not-sent-by-the-fuzzer"), null);
}

function runParser(input: Uint8Array, cuts: number[], limits: ParserLimits): Run {
  const events: Event[] = [];
  const parser = new RequestParser({
    onHead(head) {
      const headers: [string, string][] = [];
      head.forEachHeader((n, v) => headers.push([n, v]));
      checkGet(head, headers);
      events.push({
        head: {
          method: head.method(),
          target: head.target(),
          versionMinor: head.versionMinor,
          keepAlive: head.keepAlive,
          expectContinue: head.expectContinue,
          chunked: head.chunked,
          contentLength: head.contentLength,
          headers,
        },
      });
    },
    onBody(chunk) {
      const last = events.at(-1);
      if (last && "body" in last) last.body += latin1(chunk);
      else events.push({ body: latin1(chunk) });
    },
    onComplete() {
      events.push({ complete: true });
    },
  }, limits);
  let status = 0;
  let from = 0;
  for (const to of [...cuts, input.length]) {
    status = parser.execute(input.slice(from, to));
    from = to;
    if (status !== 0) break;
  }
  assert.equal(parser.error, status);
  if (status !== 0) assert.ok(parser.errorReason.length > 0, "an error has a reason");
  return { status, events };
}

/** The completed messages of a run. */
function completed(events: Event[]): Msg[] {
  const msgs: Msg[] = [];
  let cur: Msg | undefined;
  for (const e of events) {
    if ("head" in e) cur = { ...e.head, body: "" };
    else if ("body" in e) cur!.body += e.body;
    else msgs.push(cur!);
  }
  return msgs;
}

// ---------------------------------------------------------------------------------------------------------------
// The reference: a slow, independent validator of the same rules.

const TC = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]";
const TOKEN_RE = new RegExp(`^${TC}+$`);
const IS_TCHAR = new RegExp(`^${TC}$`);
const FIELD_VALUE_RE = /^[\t\x20-\x7e\x80-\xff]*$/;
const HOST_RE = /^[A-Za-z0-9\-._~!$&'()*+,;=:[\]%]*$/;
const QUOTED = '"(?:[\\t \\x21\\x23-\\x5b\\x5d-\\x7e\\x80-\\xff]|\\\\[\\t \\x21-\\x7e\\x80-\\xff])*"';
const EXT_RE = new RegExp(`^(?:;${TC}+(?:=(?:${TC}+|${QUOTED}))?)*$`);
const VERSION_RE = /^HTTP\/([0-9])\.([0-9])$/;
const ABSOLUTE_RE = /^[A-Za-z][A-Za-z0-9+.-]*:/;
const isVchar = (c: string) => c > " " && c < "\x7f";

interface Verdict {
  /** Messages accepted in full. */
  msgs: Msg[];
  /** Acceptable error statuses; empty when there is no error. */
  statuses: number[];
  /** No error, but the input ends inside a message. */
  incomplete: boolean;
}

type Line = { name: string; value: string } | 400;

function headerLine(line: string): Line {
  if (line[0] === " " || line[0] === "\t") return 400; // obs-fold
  const colon = line.indexOf(":");
  if (colon <= 0 || !TOKEN_RE.test(line.slice(0, colon))) return 400;
  const raw = line.slice(colon + 1);
  if (!FIELD_VALUE_RE.test(raw)) return 400;
  return { name: line.slice(0, colon), value: trimOws(raw) };
}

function requestLine(line: string, lim: ParserLimits): { method: string; target: string; minor: number } | number {
  let i = 0;
  while (i < line.length && IS_TCHAR.test(line[i])) i++;
  if (i === 0 || line[i] !== " ") return 400;
  const method = line.slice(0, i);
  let j = i + 1;
  while (j < line.length && isVchar(line[j])) j++;
  if (j - (i + 1) > lim.maxUriBytes) return 414;
  if (line[j] !== " " || j === i + 1) return 400;
  const target = line.slice(i + 1, j);
  const formOk = target[0] === "/" || method === "CONNECT" ||
    (target === "*" ? method === "OPTIONS" : ABSOLUTE_RE.test(target));
  if (!formOk) return 400;
  const v = VERSION_RE.exec(line.slice(j + 1));
  if (!v) return 400;
  if (v[1] !== "1" || Number(v[2]) > 1) return 505;
  return { method, target, minor: Number(v[2]) };
}

function reference(s: string, lim: ParserLimits): Verdict {
  const msgs: Msg[] = [];
  const fail = (...statuses: number[]): Verdict => ({ msgs, statuses, incomplete: false });
  const incomplete = (): Verdict => ({ msgs, statuses: [], incomplete: true });
  let pos = 0;
  while (pos < s.length) {
    // Up to 4 empty lines before a request line.
    let empty = 0;
    while (s[pos] === "\r" || s[pos] === "\n") {
      if (s[pos] === "\n") return fail(400);
      if (empty === 4) return fail(400);
      if (pos + 1 === s.length) return incomplete();
      if (s[pos + 1] !== "\n") return fail(400);
      empty++;
      pos += 2;
    }
    if (pos === s.length) return incomplete();

    // The head.
    const hs = pos;
    const headLimit = hs + lim.maxHeaderBytes;
    let eol = s.indexOf("\r\n", pos);
    if (eol < 0) return incomplete();
    if (eol + 2 > headLimit) return fail(400, 414, 431);
    const rl = requestLine(s.slice(pos, eol), lim);
    if (typeof rl === "number") return fail(rl);
    const { method, target, minor } = rl;
    const headers: [string, string][] = [];
    let hosts = 0, clSeen = false, cl = 0, teSeen = false, teEmpty = false, teChunked = 0, teOther = false;
    let close = false, keep = false, expect = false;
    pos = eol + 2;
    for (;;) {
      eol = s.indexOf("\r\n", pos);
      if (eol < 0) return incomplete();
      const text = s.slice(pos, eol);
      if (eol + 2 > headLimit) return text === "" || headerLine(text) !== 400 ? fail(431) : fail(400, 431);
      pos = eol + 2;
      if (text === "") break;
      const h = headerLine(text);
      if (h === 400) return fail(400);
      if (headers.length + 1 > lim.maxHeaders) return fail(431);
      headers.push([h.name, h.value]);
      const v = h.value;
      switch (asciiLower(h.name)) {
        case "host":
          if (++hosts > 1 || !HOST_RE.test(v)) return fail(400);
          break;
        case "content-length": {
          if (!/^[0-9]+$/.test(v)) return fail(400);
          const n = BigInt(v) > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(v);
          if (clSeen && n !== cl) return fail(400);
          clSeen = true;
          cl = n;
          break;
        }
        case "transfer-encoding":
          teSeen = true;
          for (const el of v.split(",").map(trimOws)) {
            if (el === "") teEmpty = true;
            else if (asciiLower(el) === "chunked") teChunked++;
            else teOther = true;
          }
          break;
        case "connection":
          for (const el of v.split(",").map((e) => asciiLower(trimOws(e)))) {
            if (el === "close") close = true;
            if (el === "keep-alive") keep = true;
          }
          break;
        case "expect":
          if (asciiLower(v) === "100-continue") expect = true;
          break;
      }
    }
    const headLen = pos - hs;
    if (hosts === 0 && minor === 1) return fail(400);
    if (teSeen) {
      if (clSeen || minor === 0 || teEmpty || teChunked > 1) return fail(400);
      if (teOther) return fail(501);
    }
    const contentLength = clSeen ? cl : -1;
    if (contentLength > lim.maxBodyBytes || contentLength === Infinity) return fail(413);
    const msg: Msg = {
      method,
      target,
      versionMinor: minor,
      keepAlive: !close && (minor === 1 || keep),
      expectContinue: minor === 1 && expect,
      chunked: teSeen,
      contentLength,
      headers,
      body: "",
    };

    // The body.
    if (teSeen) {
      let total = 0;
      let extBytes = 0;
      for (;;) {
        eol = s.indexOf("\r\n", pos);
        if (eol < 0) return incomplete();
        const line = s.slice(pos, eol);
        let k = 0;
        while (k < line.length && /[0-9a-fA-F]/.test(line[k])) k++;
        if (k === 0 || k > 16) return fail(400);
        const size = BigInt("0x" + line.slice(0, k));
        if (size > 2n ** 53n) return fail(400);
        total += Number(size);
        if (total > lim.maxBodyBytes) return fail(413);
        const ext = line.slice(k);
        if (ext !== "") {
          const valid = ext[0] === ";" && EXT_RE.test(ext);
          if (extBytes + ext.length + 1 > lim.maxHeaderBytes) return valid ? fail(413) : fail(400, 413);
          if (!valid) return fail(400);
          extBytes += ext.length + 1;
        }
        pos = eol + 2;
        if (size === 0n) break;
        const n = Number(size);
        if (s.length - pos < n) return incomplete();
        msg.body += s.slice(pos, pos + n);
        pos += n;
        if (pos === s.length) return incomplete();
        if (s[pos] !== "\r") return fail(400);
        if (pos + 1 === s.length) return incomplete();
        if (s[pos + 1] !== "\n") return fail(400);
        pos += 2;
      }
      // Trailers: validated like header lines, counted toward the header limits, dropped.
      const budgetEnd = pos + lim.maxHeaderBytes - headLen + 2;
      let fields = headers.length;
      for (;;) {
        eol = s.indexOf("\r\n", pos);
        if (eol < 0) return incomplete();
        const text = s.slice(pos, eol);
        if (eol + 2 > budgetEnd) return text === "" || headerLine(text) !== 400 ? fail(431) : fail(400, 431);
        pos = eol + 2;
        if (text === "") break;
        if (headerLine(text) === 400) return fail(400);
        if (++fields > lim.maxHeaders) return fail(431);
      }
    } else if (contentLength > 0) {
      if (s.length - pos < contentLength) return incomplete();
      msg.body = s.slice(pos, pos + contentLength);
      pos += contentLength;
    }
    msgs.push(msg);
  }
  return { msgs, statuses: [], incomplete: false };
}

// ---------------------------------------------------------------------------------------------------------------
// The generator.

const METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "PROPFIND", "get"];
const SPECIAL = new Set(["host", "content-length", "transfer-encoding", "connection", "expect"]);

function genMessage(rng: Rng): { wire: string; msg: Msg } {
  const minor = rng.chance(0.8) ? 1 : 0;
  const method = rng.chance(0.1) ? rng.chars(TCHARS, 1, 8) : rng.pick(METHODS);
  let target: string;
  if (method === "CONNECT") target = rng.chars(HOSTCHARS, 1, 12) + ":" + rng.range(1, 65535);
  else if (method === "OPTIONS" && rng.chance(0.3)) target = "*";
  else {
    target = "/" + rng.chars(PCHARS, 0, 20);
    if (rng.chance(0.3)) target += "?" + rng.chars(PCHARS + "?", 0, 20);
    if (rng.chance(0.1)) target = "http://" + rng.chars(HOSTCHARS, 1, 12) + target;
  }

  const fields: { name: string; raw: string; value: string }[] = [];
  const add = (name: string, value: string) => fields.push({ name, raw: ows(rng) + value + ows(rng), value });
  let close = false, keep = false, expect = false;
  if (minor === 1 || rng.chance(0.5)) {
    add(rng.randomCase("host"), rng.pick(["", "[::1]:8080", rng.chars(HOSTCHARS, 1, 16) + ":" + rng.range(1, 9999)]));
  }
  for (let n = rng.range(0, 8); n > 0; n--) {
    let name = rng.chars(TCHARS, 1, 12);
    while (SPECIAL.has(asciiLower(name))) name += "x";
    add(name, genValue(rng));
  }
  if (rng.chance(0.3)) {
    const toks = Array.from({ length: rng.range(1, 3) }, () => rng.pick(["close", "keep-alive", "Upgrade", "TE"]));
    for (const t of toks) {
      if (t === "close") close = true;
      if (t === "keep-alive") keep = true;
    }
    add(rng.randomCase("connection"), toks.map((t) => rng.randomCase(t)).join(rng.pick([",", ", ", " , "])));
  }
  if (rng.chance(0.1)) {
    add("Expect", rng.randomCase("100-continue"));
    expect = true;
  }
  let body = "";
  let wireBody = "";
  let contentLength = -1;
  const kind = rng.next();
  const chunked = minor === 1 && kind > 0.8;
  if (chunked) {
    add(rng.randomCase("transfer-encoding"), rng.randomCase("chunked"));
    for (let n = rng.range(0, 4); n > 0; n--) {
      const data = rng.chars(VCHARS + OBS + "\r\n\0 ", 1, 20);
      const hex = data.length.toString(16);
      wireBody += "0".repeat(rng.range(0, 2)) + (rng.chance(0.5) ? hex.toUpperCase() : hex) + genExtensions(rng);
      wireBody += "\r\n" + data + "\r\n";
      body += data;
    }
    wireBody += "0".repeat(rng.range(1, 3)) + genExtensions(rng) + "\r\n";
    for (let n = rng.chance(0.7) ? 0 : rng.range(1, 2); n > 0; n--) {
      wireBody += rng.chars(TCHARS, 1, 8) + ":" + ows(rng) + genValue(rng) + ows(rng) + "\r\n";
    }
    wireBody += "\r\n";
  } else if (kind > 0.5) {
    body = rng.chars(VCHARS + OBS + "\r\n\0 ", 0, 40);
    contentLength = body.length;
    add(rng.randomCase("content-length"), "0".repeat(rng.chance(0.2) ? 1 : 0) + body.length);
    wireBody = body;
  }
  // Shuffle the fields.
  for (let i = fields.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [fields[i], fields[j]] = [fields[j], fields[i]];
  }
  const lead = rng.chance(0.1) ? "\r\n".repeat(rng.range(1, 2)) : "";
  const wire = lead + `${method} ${target} HTTP/1.${minor}\r\n` +
    fields.map((f) => `${f.name}:${f.raw}\r\n`).join("") + "\r\n" + wireBody;
  return {
    wire,
    msg: {
      method,
      target,
      versionMinor: minor,
      keepAlive: !close && (minor === 1 || keep),
      expectContinue: minor === 1 && expect,
      chunked,
      contentLength,
      headers: fields.map((f) => [f.name, f.value]),
      body,
    },
  };
}

function genPipeline(rng: Rng): { wire: string; msgs: Msg[] } {
  const parts = Array.from({ length: rng.range(1, 3) }, () => genMessage(rng));
  return { wire: parts.map((p) => p.wire).join(""), msgs: parts.map((p) => p.msg) };
}

// ---------------------------------------------------------------------------------------------------------------
// Mutations.

const INTERESTING = ["\r", "\n", "\0", "\x80", "\xff", " ", "\t", ":", ";", "=", '"', "\\", "\x7f", ",", "0", "a", "/"];
const INSERTED_LINES = [
  "Content-Length: 5\r\n",
  "Content-Length: 0\r\n",
  "Content-Length: +3\r\n",
  "Content-Length: 3, 3\r\n",
  "Content-Length: 99999999999999999999\r\n",
  "Transfer-Encoding: chunked\r\n",
  "Transfer-Encoding: gzip\r\n",
  "transfer-encoding: chunked, chunked\r\n",
  "Transfer-Encoding:\r\n",
  "Host: dup\r\n",
  "Host: a b\r\n",
  "X : y\r\n",
  " folded\r\n",
  "\tfolded\r\n",
  "NoColon\r\n",
  ": empty\r\n",
  "Connection: close\r\n",
  "Expect: 100-continue\r\n",
  "\r\n",
  "0\r\n\r\n",
  '5;a="b"\r\nhello\r\n',
];

function mutate(rng: Rng, wire: string): string {
  let s = wire;
  for (let n = rng.range(1, 3); n > 0; n--) {
    const at = rng.int(s.length + 1);
    switch (rng.int(9)) {
      case 0: // replace a byte with a random one
        s = s.slice(0, at) + String.fromCharCode(rng.int(256)) + s.slice(at + 1);
        break;
      case 1: // replace a byte with an interesting one
        s = s.slice(0, at) + rng.pick(INTERESTING) + s.slice(at + 1);
        break;
      case 2: // insert an interesting byte
        s = s.slice(0, at) + rng.pick(INTERESTING) + s.slice(at);
        break;
      case 3: // delete a few bytes
        s = s.slice(0, at) + s.slice(at + rng.range(1, 3));
        break;
      case 4: { // duplicate a slice
        const len = rng.range(1, 30);
        s = s.slice(0, at) + s.slice(at, at + len) + s.slice(at);
        break;
      }
      case 5:
      case 6: { // insert a line at the start of a line
        const starts = [...s.matchAll(/\r\n/g)].map((m) => m.index! + 2);
        const p = starts.length ? rng.pick(starts) : at;
        s = s.slice(0, p) + rng.pick(INSERTED_LINES) + s.slice(p);
        break;
      }
      case 7: { // turn a CRLF into a bare LF or a bare CR
        const crlfs = [...s.matchAll(/\r\n/g)].map((m) => m.index!);
        if (crlfs.length) {
          const p = rng.pick(crlfs);
          s = s.slice(0, p) + rng.pick(["\n", "\r"]) + s.slice(p + 2);
        }
        break;
      }
      default: // truncate
        s = s.slice(0, at);
    }
  }
  return s;
}

// ---------------------------------------------------------------------------------------------------------------
// The properties.

const SMALL_LIMITS: ParserLimits = { maxHeaderBytes: 160, maxUriBytes: 24, maxBodyBytes: 40, maxHeaders: 6 };

function randomCuts(rng: Rng, n: number, k: number): number[] {
  return Array.from({ length: k }, () => rng.int(n + 1)).sort((a, b) => a - b);
}

/** Runs one input whole and split; asserts every split gives the same run. */
function runSplits(rng: Rng, input: Uint8Array, limits: ParserLimits): Run {
  const whole = runParser(input, [], limits);
  assert.deepEqual(runParser(input, randomCuts(rng, input.length, 1), limits), whole, "one random cut");
  assert.deepEqual(runParser(input, randomCuts(rng, input.length, rng.range(2, 6)), limits), whole, "random cuts");
  if (rng.chance(0.2)) {
    const bytes = Array.from({ length: Math.max(0, input.length - 1) }, (_, i) => i + 1);
    assert.deepEqual(runParser(input, bytes, limits), whole, "one byte at a time");
  }
  return whole;
}

function checkValid(caseSeed: number): void {
  const rng = new Rng(caseSeed);
  const { wire, msgs } = genPipeline(rng);
  const run = runSplits(rng, toBytes(wire), DEFAULT_LIMITS);
  assert.equal(run.status, 0, "a generated request is accepted");
  assert.deepEqual(completed(run.events), msgs, "heads and bodies as generated");
  const ref = reference(wire, DEFAULT_LIMITS);
  assert.deepEqual(ref, { msgs, statuses: [], incomplete: false }, "the reference accepts it too");
}

function checkMutated(caseSeed: number): void {
  const rng = new Rng(caseSeed);
  const limits = rng.chance(0.25) ? SMALL_LIMITS : DEFAULT_LIMITS;
  const wire = mutate(rng, genPipeline(rng).wire);
  const run = runSplits(rng, toBytes(wire), limits);
  const ref = reference(wire, limits);
  const msgs = completed(run.events);
  assert.deepEqual(msgs, ref.msgs, "the parser completes exactly the requests the reference accepts");
  if (ref.statuses.length > 0) {
    assert.ok(
      ref.statuses.includes(run.status),
      `the parser answers ${run.status}, the reference ${ref.statuses.join(" or ")}`,
    );
  } else if (!ref.incomplete) {
    assert.equal(run.status, 0, "the parser rejects what the reference accepts");
  } // else: the input ends inside a request; the parser may already have seen an error in it.
}

function escape(s: string): string {
  return JSON.stringify(s).replace(/[\x7f-\xff]/g, (c) => `\\x${c.charCodeAt(0).toString(16)}`);
}

function fuzz(name: string, seconds: number, check: (caseSeed: number) => void, show: (caseSeed: number) => string) {
  const deadline = performance.now() + seconds * 1000;
  let cases = 0;
  for (let i = 0; ONE_CASE === undefined ? performance.now() < deadline : i < 1; i++) {
    const caseSeed = ONE_CASE !== undefined ? Number(ONE_CASE) : (BASE_SEED + Math.imul(i, 0x9e3779b1)) >>> 0;
    try {
      check(caseSeed);
    } catch (e) {
      throw new Error(
        `${name}: case ${i} failed (FDLOOP_FUZZ_SEED=${BASE_SEED}, FDLOOP_FUZZ_CASE=${caseSeed})\n` +
          `input: ${show(caseSeed)}\n${(e as Error).message}`,
        { cause: e },
      );
    }
    cases++;
  }
  return cases;
}

Deno.test("fuzz: generated requests are accepted as generated, at any split", () => {
  const cases = fuzz("valid", SECONDS * 0.35, checkValid, (seed) => escape(genPipeline(new Rng(seed)).wire));
  console.log(`  ${cases} generated pipelines (seed ${BASE_SEED})`);
});

Deno.test("fuzz: mutated requests get the reference's verdict, never throw, and do not depend on the split", () => {
  const cases = fuzz("mutated", SECONDS * 0.65, checkMutated, (seed) => {
    const rng = new Rng(seed);
    rng.chance(0.25);
    return escape(mutate(rng, genPipeline(rng).wire));
  });
  console.log(`  ${cases} mutated inputs (seed ${BASE_SEED})`);
});

Deno.test("fuzz: random bytes never make the parser throw", () => {
  const rng = new Rng(BASE_SEED);
  const parser = new RequestParser({ onHead() {}, onBody() {}, onComplete() {} }, SMALL_LIMITS);
  const alphabet = "GET /HTP1.\r\n:;\0\x80 \tHost0aF";
  for (let i = 0; i < 2000; i++) {
    parser.reset();
    const s = rng.chance(0.5) ? rng.chars(alphabet, 0, 200) : String.fromCharCode(...randomBytes(rng, 200));
    const input = toBytes(s);
    for (let p = 0; p < input.length;) {
      const q = p + rng.range(1, 16);
      const status = parser.execute(input.subarray(p, q));
      assert.ok([0, 400, 413, 414, 431, 501, 505].includes(status), `status ${status}`);
      if (status !== 0) break;
      p = q;
    }
  }
});

function randomBytes(rng: Rng, max: number): number[] {
  return Array.from({ length: rng.int(max) }, () => rng.int(256));
}
