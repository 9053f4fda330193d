/**
 * Building response heads: the byte buffer they are written into, cached
 * status lines, the `Date` header formatted once per second, and header
 * validation (no CR, LF or NUL may reach the wire, so a handler cannot split
 * a response).
 *
 * @module
 */

import { reasonPhrase } from "./status.ts";

const encoder = new TextEncoder();
/** Strings up to this long are copied by hand while they are ASCII. */
const ASCII_COPY_MAX = 256;

const NO_BYTES = new Uint8Array(0);
/** `keep` when there is no bound: past any buffer made here, and a small integer (V8 Smi), so reading it never boxes. */
const KEEP_ALL = 2 ** 30 - 1;

/**
 * A growable byte buffer that response heads and small bodies are written
 * into, then handed to the connection in one `write()`.
 *
 * A buffer shared by every response (the engine's are module-wide) is given a
 * `keep` bound: one large response may grow it, and `clear()` then gives that
 * memory back instead of keeping it for the life of the process.
 */
export class OutBuffer {
  /** The bytes; valid in `[0, length)`. */
  bytes: Uint8Array;
  /** Bytes used. */
  length = 0;
  #view: Uint8Array = NO_BYTES;
  /** The `bytes` that `#view` is a view of. */
  #viewOf: Uint8Array | null = null;
  readonly #initial: number;
  readonly #keep: number;

  /**
   * @param capacity Initial size in bytes.
   * @param keep The most bytes of memory `clear()` keeps (default: all it grew to).
   */
  constructor(capacity = 16 * 1024, keep = KEEP_ALL) {
    this.bytes = new Uint8Array(capacity);
    this.#initial = capacity;
    this.#keep = keep;
  }

  /** Bytes that still fit without growing. */
  room(): number {
    return this.bytes.byteLength - this.length;
  }

  /** Makes room for `n` more bytes. */
  reserve(n: number): void {
    const need = this.length + n;
    if (need <= this.bytes.byteLength) return;
    let size = Math.max(this.bytes.byteLength * 2, 64);
    while (size < need) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.bytes.subarray(0, this.length));
    this.bytes = next;
  }

  /** Appends bytes. */
  put(bytes: Uint8Array): void {
    this.reserve(bytes.byteLength);
    this.bytes.set(bytes, this.length);
    this.length += bytes.byteLength;
  }

  /** Appends a string as UTF-8. */
  text(s: string): void {
    // UTF-8 takes at most 3 bytes per UTF-16 unit.
    this.reserve(s.length * 3);
    const n = s.length;
    if (n <= ASCII_COPY_MAX) {
      // Short strings are copied by hand while they are ASCII: encodeInto is an op call (~150 ns).
      const b = this.bytes;
      const at = this.length;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        b[at + i] = c;
      }
      this.length = at + i;
      if (i === n) return;
      s = s.slice(i);
    }
    this.length += encoder.encodeInto(s, this.bytes.subarray(this.length)).written;
  }

  /** Appends a non-negative integer in decimal. */
  decimal(n: number): void {
    this.reserve(16);
    if (n === 0) {
      this.bytes[this.length++] = 0x30;
      return;
    }
    let digits = 0;
    for (let m = n; m >= 1; m = Math.floor(m / 10)) digits++;
    let at = this.length + digits;
    this.length = at;
    for (let m = n; m >= 1; m = Math.floor(m / 10)) this.bytes[--at] = 0x30 + (m % 10);
  }

  /** Appends a non-negative integer in hex (chunk sizes). */
  hex(n: number): void {
    this.text(n.toString(16));
  }

  /** Appends CRLF. */
  crlf(): void {
    this.reserve(2);
    this.bytes[this.length++] = 13;
    this.bytes[this.length++] = 10;
  }

  /** The bytes written so far (a view: valid until the next write). */
  view(): Uint8Array {
    // Responses of one size in a row share one view object (a typed array view costs ~25-50 ns).
    if (this.#view.byteLength !== this.length || this.#viewOf !== this.bytes) {
      this.#view = this.bytes.subarray(0, this.length);
      this.#viewOf = this.bytes;
    }
    return this.#view;
  }

  /**
   * Forgets the contents. The memory is kept for the next use, unless the
   * buffer grew past its `keep` bound: then it goes back to its initial
   * capacity (views taken before stay valid: they keep the old memory alive
   * until they are dropped).
   */
  clear(): void {
    this.length = 0;
    if (this.bytes.byteLength > this.#keep) this.#shrink();
  }

  #shrink(): void {
    this.bytes = new Uint8Array(this.#initial);
    // The cached view would keep the large memory alive.
    this.#view = NO_BYTES;
    this.#viewOf = null;
  }
}

const statusLines11: (Uint8Array | undefined)[] = [];
const statusLines10: (Uint8Array | undefined)[] = [];

/**
 * `HTTP/1.1 200 OK\r\n` (or `HTTP/1.0 …`), built once per status: the line
 * of a final response.
 *
 * @throws {RangeError} for a status outside 200–599. A 1xx is interim: a
 * client waits on for the final response, so one sent as the answer would
 * make it take the next request's answer for this one's (the engine sends
 * `100 Continue` itself), and a `101` would switch the connection to a
 * protocol the engine does not speak.
 */
export function statusLine(status: number, minor: number): Uint8Array {
  const cache = minor === 0 ? statusLines10 : statusLines11;
  const hit = cache[status];
  if (hit !== undefined) return hit;
  if (!Number.isInteger(status) || status < 200 || status > 599) {
    throw new RangeError(`Status must be a final status, an integer from 200 to 599, got ${status}`);
  }
  const line = encoder.encode(`HTTP/1.${minor === 0 ? 0 : 1} ${status} ${reasonPhrase(status)}\r\n`);
  cache[status] = line;
  return line;
}

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
let dateSecond = -1;
let dateLine = new Uint8Array(0);

function pad2(n: number): string {
  return n < 10 ? `0${n}` : `${n}`;
}

/** An IMF-fixdate (RFC 9110 §5.6.7): `Thu, 26 Nov 2026 01:54:05 GMT`. */
export function httpDate(ms: number): string {
  const d = new Date(ms);
  return `${DAYS[d.getUTCDay()]}, ${pad2(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${
    pad2(d.getUTCHours())
  }:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())} GMT`;
}

/** How long (in the caller's loop time) a `Date` line is used before the wall clock is read again. */
const DATE_RECHECK_MS = 10;
/** …and at most this many responses in a row (a loop whose clock stands still still gets a fresh date). */
const DATE_RECHECK_EVERY = 256;
let dateCheckedAt = -Infinity;
let dateUses = 0;

/**
 * `Date: <now>\r\n`, formatted at most once per second. With `loop` (a
 * reactor, whose `time()` is cached per iteration), the wall clock is read
 * only when the loop time moved on by 10 ms or after 256 uses: `Date.now()`
 * costs ~50 ns, more than the rest of a cached head. (The loop, not its time,
 * is passed: a number handed to a function that is not inlined is boxed,
 * 16 bytes a response.)
 */
export function dateHeader(loop?: { time(): number }): Uint8Array {
  if (loop !== undefined) {
    const loopTime = loop.time();
    // (Reactors may run different clocks: time going backwards also means a fresh read.)
    const since = loopTime - dateCheckedAt;
    if (since >= 0 && since < DATE_RECHECK_MS && ++dateUses < DATE_RECHECK_EVERY) return dateLine;
    dateCheckedAt = loopTime;
    dateUses = 0;
  }
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateLine = encoder.encode(`Date: ${httpDate(now)}\r\n`);
  }
  return dateLine;
}

/** Whether `c` may appear in a header name (an RFC 9110 token character). */
export function isTokenChar(c: number): boolean {
  return TOKEN[c] === 1;
}

const TOKEN = new Uint8Array(128);
for (let c = 0x21; c < 0x7f; c++) TOKEN[c] = 1;
for (const c of '"(),/:;<=>?@[\\]{}') TOKEN[c.charCodeAt(0)] = 0;

/**
 * Checks a header name (a token) and value (visible ASCII, spaces and tabs:
 * no CR, LF, NUL or other control characters, and no non-ASCII text, which
 * has no single encoding on the wire).
 *
 * @throws {TypeError} naming the header, so a handler cannot split a response.
 */
export function checkHeader(name: string, value: string): void {
  if (name.length === 0) throw new TypeError("Header name must not be empty");
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 128 || TOKEN[c] !== 1) {
      throw new TypeError(`Invalid header name ${JSON.stringify(name)}: it must be a token (RFC 9110 §5.1)`);
    }
  }
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < 0x20 && c !== 9) || c >= 0x7f) {
      throw new TypeError(
        `Invalid value for header ${JSON.stringify(name)}: ${JSON.stringify(value)} has a forbidden character`,
      );
    }
  }
}

/**
 * A header block built once and reused for many responses: validated when
 * made, written verbatim (`Name: value\r\n` lines).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PreparedHeaders } from "@fdloop/fdloop/http";
 * const plain = new PreparedHeaders({ "content-type": "text/plain; charset=utf-8", server: "fdloop" });
 * assert.equal(new TextDecoder().decode(plain.bytes), "content-type: text/plain; charset=utf-8\r\nserver: fdloop\r\n");
 * assert.throws(() => new PreparedHeaders({ "x-bad": "a\r\nInjected: 1" }), TypeError);
 * ```
 */
export class PreparedHeaders {
  /** The encoded lines. */
  readonly bytes: Uint8Array;
  /** Lower-cased names in the block, so the engine knows which of its own headers to leave out. */
  readonly names: ReadonlySet<string>;

  /**
   * Validates and encodes the block once.
   *
   * @param headers Name → value pairs (names as you want them sent).
   * @throws {TypeError} for a name that is not a token or a value with a forbidden character.
   */
  constructor(headers: Record<string, string> | Iterable<[string, string]>) {
    const entries = Symbol.iterator in headers
      ? [...(headers as Iterable<[string, string]>)]
      : Object.entries(headers as Record<string, string>);
    let text = "";
    const names = new Set<string>();
    let flags = 0;
    let length = -1;
    for (const entry of entries) {
      // What is checked must be what is sent: a non-string is checked as the text it becomes.
      const name = String(entry[0]);
      const value = String(entry[1]);
      checkHeader(name, value);
      text += `${name}: ${value}\r\n`;
      const lower = name.toLowerCase();
      if (lower === "content-length") {
        if (length >= 0) throw new TypeError("Content-Length must be set once");
        length = contentLength(value);
      }
      names.add(lower);
      flags |= headerFlags(lower, value);
    }
    this.bytes = encoder.encode(text);
    this.names = names;
    this._flags = flags;
    this._length = length;
  }

  /** @ignore What the engine must know about these headers (`F_*` bits of {@linkcode headerFlags}), computed once. */
  readonly _flags: number;
  /** @ignore The `Content-Length` of the block, or -1. */
  readonly _length: number;
}

/**
 * The body length a handler's `Content-Length` value declares.
 *
 * @throws {TypeError} unless it is one decimal number (a list, a sign or an exponent would frame the body
 * differently for different clients).
 */
export function contentLength(value: string): number {
  const n = value.length > 0 && value.length <= 15 && /^[0-9]+$/.test(value) ? Number(value) : -1;
  if (n < 0) throw new TypeError(`Invalid Content-Length ${JSON.stringify(value)}: it must be one decimal length`);
  return n;
}

const decoder = new TextDecoder();
const FRAMING_LINE = /^(?:content-length|transfer-encoding):/i;

/**
 * `lines` (`Name: value\r\n` lines, as a handler set them) without `Content-Length` and `Transfer-Encoding`, for a
 * 204: RFC 9110 §8.6 and RFC 9112 §6.1 forbid both there. They are dropped, not refused, as Go's net/http and hyper
 * (`Deno.serve`) drop them: a handler that sets `Content-Length: 0` on a 204 means no harm. Returns `lines` itself
 * when it has neither.
 */
export function withoutFraming(lines: Uint8Array): Uint8Array {
  const all = decoder.decode(lines).split("\r\n"); // ASCII: checkHeader() let nothing else in
  const kept = all.filter((line) => !FRAMING_LINE.test(line));
  return kept.length === all.length ? lines : encoder.encode(kept.join("\r\n"));
}

/** The handler set `Connection`. */
export const F_CONNECTION = 1;
/** The handler's `Connection` lists `close`. */
export const F_CLOSE = 2;
/** The handler framed the body itself (`Content-Length` or `Transfer-Encoding`). */
export const F_LENGTH = 4;
/** The handler set `Date`. */
export const F_DATE = 8;
/** The handler set `Content-Type`. */
export const F_TYPE = 16;

/** What a header line the handler sets means to the engine: a set of `F_*` bits (0 for most names). */
export function headerFlags(lowerName: string, value: string): number {
  switch (lowerName) {
    case "connection":
      return /\bclose\b/i.test(value) ? F_CONNECTION | F_CLOSE : F_CONNECTION;
    case "content-length":
    case "transfer-encoding":
      return F_LENGTH;
    case "date":
      return F_DATE;
    case "content-type":
      return F_TYPE;
    default:
      return 0;
  }
}
