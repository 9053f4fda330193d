/**
 * An incremental, strict HTTP/1.1 request parser (RFC 9110, RFC 9112) with no I/O.
 *
 * Feed it the bytes of a connection as they arrive, in any split down to one byte per call; it calls
 * {@linkcode ParserHandler.onHead}, {@linkcode ParserHandler.onBody} and {@linkcode ParserHandler.onComplete} for
 * every request, pipelined ones included, in order.
 *
 * The common case, a whole head in one read, is parsed in place: {@linkcode RequestHead.bytes} is the caller's
 * buffer and the head is a set of offsets into it, kept in a typed array reused across requests, with one
 * {@linkcode RequestHead} object per parser. Nothing is decoded until asked for. Only a head that is split across
 * reads is copied, into a parser-owned buffer bounded by {@linkcode ParserLimits.maxHeaderBytes}.
 *
 * The parser is strict where a lenient one lets requests be smuggled: lines end in CRLF only, no obs-fold, no
 * whitespace before a colon, no control characters, one plain-digit `Content-Length` (identical repeats allowed),
 * never both `Content-Length` and `Transfer-Encoding`, `chunked` as the only transfer coding. Each rejection
 * carries the status to answer with (400, 413, 414, 431, 501 or 505) and a short reason.
 *
 * Where RFC 9110/9112 leave the choice to the server:
 * - `Content-Length` repeated in several lines with the same value is accepted (as Go does); a list in one line
 *   (`5, 5`) is not plain digits: 400. Plain digits above 2^53 - 1 are over any body limit: 413 (two different
 *   such values are still a 400).
 * - `Transfer-Encoding`: exactly one `chunked` (any case) is accepted; `chunked` twice (in one list or two lines) or
 *   an empty list element is a 400; any other coding (`gzip`, `gzip, chunked`, `chunked;q=1`) is a 501. In an
 *   HTTP/1.0 request it is a 400.
 * - `Host`: required once in HTTP/1.1, never repeated (400); it may be empty (RFC 9112 §3.2); its bytes must be
 *   those of an RFC 3986 host and port (letters, digits, `-._~!$&'()*+,;=:[]%`).
 * - Targets: origin-form (`/…`), absolute-form (`scheme:…`), authority-form (any target for CONNECT) and
 *   asterisk-form (`*`, OPTIONS only); visible ASCII only. `Expect: 100-continue` is ignored in HTTP/1.0.
 * - Up to 4 empty lines before a request line are skipped (RFC 9112 §2.2); a fifth is a 400.
 * - Trailers are validated like header lines and dropped; they count toward `maxHeaders` and, with the head,
 *   toward `maxHeaderBytes` (431). Chunk extensions may total `maxHeaderBytes` per message, past that 413.
 * - Chunk lines follow the grammar without its BWS (which senders must not generate, RFC 9110 §5.6.3): whitespace
 *   anywhere in a chunk line (`5 `, `5 ;a=b`, `5; a = b`) is a 400, as is a bare LF or a bare CR.
 * - Header values decode as ISO-8859-1 (one char per byte), as `Headers` does.
 * - The parser does not know about CONNECT tunnels or `Upgrade`: after a `2xx` to a CONNECT or a `101`, the bytes
 *   are no longer HTTP and the caller must stop feeding it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * const seen: string[] = [];
 * const parser = new RequestParser({
 *   onHead(head) {
 *     seen.push(`${head.method()} ${head.path()} ${head.query()} host=${head.get("host")}`);
 *   },
 *   onBody(chunk) {
 *     seen.push(new TextDecoder().decode(chunk));
 *   },
 *   onComplete() {
 *     seen.push("done");
 *   },
 * });
 * const wire = "GET /sleep?ms=10 HTTP/1.1\r\nHost: a\r\n\r\n" +
 *   "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi";
 * assert.equal(parser.execute(new TextEncoder().encode(wire)), 0);
 * assert.deepEqual(seen, ["GET /sleep ms=10 host=a", "done", "POST /echo  host=a", "hi", "done"]);
 * assert.equal(parser.execute(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n")), 400);
 * assert.equal(parser.errorReason, "A header line ends in a bare LF");
 * ```
 *
 * @module
 */

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;
const COMMA = 0x2c;
const SEMI = 0x3b;
const EQUALS = 0x3d;
const DQUOTE = 0x22;
const BACKSLASH = 0x5c;
const QMARK = 0x3f;
const DEL = 0x7f;

/** tchar (RFC 9110 §5.6.2): 1 for the bytes of a token. */
const TCHAR = new Uint8Array(256);
/** qdtext (RFC 9110 §5.6.4): 1 for the bytes allowed unescaped in a quoted-string. */
const QDTEXT = new Uint8Array(256);
/** Bytes of a Host value: RFC 3986 reg-name / IP-literal / IPv4 plus ":" port. */
const HOST = new Uint8Array(256);
/** Hex digit value, or -1. */
const HEX = new Int8Array(256).fill(-1);
/** ASCII lowercase. */
const LOWER = new Uint8Array(256);
{
  for (let c = 0; c < 256; c++) LOWER[c] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
  for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = HOST[c] = 1;
  for (let c = 0x41; c <= 0x5a; c++) {
    TCHAR[c] =
      TCHAR[c | 0x20] =
      HOST[c] =
      HOST[c | 0x20] =
        1;
  }
  for (const ch of "!#$%&'*+-.^_`|~") TCHAR[ch.charCodeAt(0)] = 1;
  for (const ch of "-._~!$&'()*+,;=:[]%") HOST[ch.charCodeAt(0)] = 1;
  QDTEXT[HTAB] = 1;
  for (let c = 0x20; c < 0x7f; c++) QDTEXT[c] = 1;
  for (let c = 0x80; c < 0x100; c++) QDTEXT[c] = 1;
  QDTEXT[DQUOTE] = QDTEXT[BACKSLASH] = 0;
  for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
  for (let c = 0; c < 6; c++) HEX[0x41 + c] = HEX[0x61 + c] = 10 + c;
}

const ascii = (s: string): Uint8Array => Uint8Array.from(s, (ch) => ch.charCodeAt(0));
const L_HOST = ascii("host");
const L_EXPECT = ascii("expect");
const L_CONNECTION = ascii("connection");
const L_CONTENT_LENGTH = ascii("content-length");
const L_TRANSFER_ENCODING = ascii("transfer-encoding");
const L_CHUNKED = ascii("chunked");
const L_CLOSE = ascii("close");
const L_KEEP_ALIVE = ascii("keep-alive");
const L_UPGRADE = ascii("upgrade");
const L_100_CONTINUE = ascii("100-continue");

/** Largest chunk size accepted before the body limit applies is 2^53: 2^53 / 16. */
const MAX_CHUNK_DIV16 = 2 ** 49;
/** Empty lines (CRLF) tolerated before a request line (RFC 9112 §2.2). */
const MAX_EMPTY_LINES = 4;

/**
 * Case-insensitive comparison of `lit.length` bytes at `b[s]` against a lowercase literal made of letters, digits
 * and `-`. `| 0x20` only folds letters here: the other bytes it could confuse with a digit or `-` are controls,
 * which never reach this point (names are tokens, values exclude CTLs).
 */
function eqLit(b: Uint8Array, s: number, lit: Uint8Array): boolean {
  for (let i = 0; i < lit.length; i++) if ((b[s + i] | 0x20) !== lit[i]) return false;
  return true;
}

const isOws = (c: number): boolean => c === SP || c === HTAB;

/** Decodes `b[s..e)` as ISO-8859-1 (the ByteString rule of `Headers`): one code unit per byte. */
function latin1(b: Uint8Array, s: number, e: number): string {
  if (e - s <= 0) return "";
  if (e - s <= 4096) return String.fromCharCode.apply(null, b.subarray(s, e) as unknown as number[]);
  let r = "";
  for (let i = s; i < e; i += 4096) {
    r += String.fromCharCode.apply(null, b.subarray(i, Math.min(e, i + 4096)) as unknown as number[]);
  }
  return r;
}

const CACHE_SLOTS = 256; // a power of two
const CACHE_MAX = 64;

/**
 * Recently decoded short strings (header names and values), looked up by content, shared by all parsers:
 * keep-alive clients send the same `Host`, `User-Agent` and `Accept` on every request, so a lookup (a hash and a
 * compare of the bytes) replaces decoding and allocating. Direct-mapped; a collision just decodes again.
 */
const stringCache = {
  bytes: new Uint8Array(CACHE_SLOTS * CACHE_MAX),
  lens: new Int32Array(CACHE_SLOTS).fill(-1),
  strs: new Array<string>(CACHE_SLOTS).fill(""),
};

/** {@linkcode latin1}, through {@linkcode stringCache} for strings of up to CACHE_MAX bytes. */
function decode(b: Uint8Array, s: number, e: number): string {
  const n = e - s;
  if (n > CACHE_MAX || n <= 0) return latin1(b, s, e);
  let h = n;
  for (let i = s; i < e; i++) h = (Math.imul(h, 31) + b[i]) | 0;
  const slot = (h ^ (h >>> 11)) & (CACHE_SLOTS - 1);
  const base = slot * CACHE_MAX;
  const cb = stringCache.bytes;
  if (stringCache.lens[slot] === n) {
    let i = 0;
    while (i < n && cb[base + i] === b[s + i]) i++;
    if (i === n) return stringCache.strs[slot];
  }
  const str = latin1(b, s, e);
  for (let i = 0; i < n; i++) cb[base + i] = b[s + i];
  stringCache.lens[slot] = n;
  stringCache.strs[slot] = str;
  return str;
}

/** Limits enforced by {@linkcode RequestParser}; each has the status it rejects with. */
export interface ParserLimits {
  /** The whole head, request line and final CRLF included, in bytes; past it → 431. Trailers count toward it. */
  maxHeaderBytes: number;
  /** The request target, in bytes; past it → 414, detected while the target is still arriving. */
  maxUriBytes: number;
  /**
   * The body, in bytes; past it → 413. A `Content-Length` is checked when the head ends, a chunked body as soon as
   * a chunk size takes the running total past it.
   */
  maxBodyBytes: number;
  /** Header fields in a head; past it → 431. Trailer fields count toward it. */
  maxHeaders: number;
}

/** The default {@linkcode ParserLimits}: 16 KiB of head, 8 KiB of target, 8 MiB of body, 100 header fields. */
export const DEFAULT_LIMITS: Readonly<ParserLimits> = Object.freeze({
  maxHeaderBytes: 16 * 1024,
  maxUriBytes: 8 * 1024,
  maxBodyBytes: 8 * 1024 * 1024,
  maxHeaders: 100,
});

const TARGET_SLOTS = 64; // a power of two
const TARGET_MAX = 128;

/**
 * Recently decoded request targets with their path and query, by content, shared by all parsers (clients repeat
 * targets: a load test asks for `/` a million times). Direct-mapped, like {@linkcode stringCache}.
 */
const targetCache = {
  bytes: new Uint8Array(TARGET_SLOTS * TARGET_MAX),
  lens: new Int32Array(TARGET_SLOTS).fill(-1),
  targets: new Array<string>(TARGET_SLOTS).fill(""),
  paths: new Array<string>(TARGET_SLOTS).fill(""),
  queries: new Array<string>(TARGET_SLOTS).fill(""),
};

// What a new head holds until the parser fills it (typed arrays cost ~0.2–1 µs each to allocate in Deno).
const NO_BYTES = new Uint8Array(0);
const NO_OFFSETS = new Uint32Array(0);

/**
 * A parsed request head: offsets into {@linkcode RequestHead.bytes}, decoded only on demand.
 *
 * A parser reuses one `RequestHead` for every request, and `bytes` is usually a view of the caller's read buffer,
 * so a head is valid only until the `execute()` call that delivered it returns (and no longer than the caller's
 * buffer stays unchanged). To keep it longer, call {@linkcode RequestHead.detach} during `onHead` or before that
 * `execute()` returns: the head then owns a copy of its bytes, and the parser uses a fresh object for the next
 * request.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * let kept: RequestHead | undefined;
 * const parser = new RequestParser({
 *   onHead(head) {
 *     head.detach(); // keep it past this read
 *     kept = head;
 *   },
 *   onBody() {},
 *   onComplete() {},
 * });
 * const wire = "GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: text/html\r\naccept: text/plain\r\n\r\n";
 * assert.equal(parser.execute(new TextEncoder().encode(wire)), 0);
 * assert.ok(kept);
 * assert.equal(kept.method(), "GET");
 * assert.equal(kept.target(), "/a?x=1");
 * assert.equal(kept.path(), "/a");
 * assert.equal(kept.query(), "x=1");
 * assert.equal(kept.get("accept"), "text/html, text/plain");
 * assert.equal(kept.headerName(1), "Accept");
 * assert.equal(kept.keepAlive, true);
 * ```
 */
export class RequestHead {
  /**
   * The buffer the offsets refer to: in the common case the caller's own buffer (the one given to `execute()`),
   * else the parser's buffer for split heads, or after {@linkcode RequestHead.detach} a copy of just the head.
   */
  bytes: Uint8Array = NO_BYTES;
  /** The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1. */
  versionMinor: 0 | 1 = 1;
  /** The `Content-Length`, or -1 when absent. */
  contentLength: number = -1;
  /** Whether the body is chunked (`Transfer-Encoding: chunked`). */
  chunked: boolean = false;
  /**
   * Whether the client wants the connection kept open: HTTP/1.1 unless `Connection` lists `close`, HTTP/1.0 only
   * when `Connection` lists `keep-alive` (and not `close`).
   */
  keepAlive: boolean = true;
  /**
   * Whether `Connection` lists `upgrade`: the client asks to switch protocols
   * (`Upgrade: websocket`, `h2c`). The parser reads on as HTTP; the server,
   * which switches to nothing, answers and closes.
   */
  upgrade: boolean = false;
  /** Whether an HTTP/1.1 request carries `Expect: 100-continue` (ignored in HTTP/1.0, RFC 9110 §10.1.1). */
  expectContinue: boolean = false;
  /** The number of header fields (trailers excluded). */
  headerCount: number = 0;

  // Internal state, written by RequestParser. Offsets are absolute indexes into `bytes`.
  /** @ignore */
  _off: Uint32Array = NO_OFFSETS;
  /** @ignore */
  _start = 0;
  /** @ignore */
  _end = 0;
  /** @ignore */
  _methodEnd = 0;
  /** @ignore */
  _targetEnd = 0;
  /** @ignore */
  _method: string | null = null;
  /** @ignore */
  _target: string | null = null;
  /** @ignore */
  _path = "";
  /** @ignore */
  _query = "";
  /** @ignore */
  _detached = false;

  /**
   * The method, case-sensitive as sent. The nine methods of RFC 9110 and PATCH come back as constants, without
   * allocating; others are decoded once per head.
   */
  method(): string {
    if (this._method !== null) return this._method;
    const b = this.bytes;
    const s = this._start;
    switch (this._methodEnd - s) {
      case 3:
        if (b[s] === 0x47 && b[s + 1] === 0x45 && b[s + 2] === 0x54) return "GET";
        if (b[s] === 0x50 && b[s + 1] === 0x55 && b[s + 2] === 0x54) return "PUT";
        break;
      case 4:
        if (b[s + 1] === 0x4f && b[s] === 0x50 && b[s + 2] === 0x53 && b[s + 3] === 0x54) return "POST";
        if (b[s] === 0x48 && b[s + 1] === 0x45 && b[s + 2] === 0x41 && b[s + 3] === 0x44) return "HEAD";
        break;
      case 5:
        if (isAscii(b, s, "PATCH")) return "PATCH";
        if (isAscii(b, s, "TRACE")) return "TRACE";
        break;
      case 6:
        if (isAscii(b, s, "DELETE")) return "DELETE";
        break;
      case 7:
        if (isAscii(b, s, "OPTIONS")) return "OPTIONS";
        if (isAscii(b, s, "CONNECT")) return "CONNECT";
        break;
    }
    return this._method = decode(b, s, this._methodEnd);
  }

  /**
   * The request target as sent: origin-form (`/sleep?ms=10`), absolute-form (`http://host/x`), authority-form
   * (`host:443`, CONNECT) or asterisk-form (`*`, OPTIONS). Decoded once per head, and a target decoded recently
   * (by any parser) comes from a small cache, with no decoding or allocation.
   */
  target(): string {
    if (this._target !== null) return this._target;
    const b = this.bytes;
    const s = this._methodEnd + 1;
    const e = this._targetEnd;
    const n = e - s;
    const tc = targetCache;
    const cb = tc.bytes;
    let slot = -1;
    if (n <= TARGET_MAX) {
      let h = n;
      for (let i = s; i < e; i++) h = (Math.imul(h, 31) + b[i]) | 0;
      slot = (h ^ (h >>> 11)) & (TARGET_SLOTS - 1);
      const base = slot * TARGET_MAX;
      if (tc.lens[slot] === n) {
        let i = 0;
        while (i < n && cb[base + i] === b[s + i]) i++;
        if (i === n) {
          this._path = tc.paths[slot];
          this._query = tc.queries[slot];
          return this._target = tc.targets[slot];
        }
      }
    }
    const t = latin1(b, s, e);
    let q = s;
    while (q < e && b[q] !== QMARK) q++;
    this._path = q === e ? t : t.slice(0, q - s);
    this._query = q === e ? "" : t.slice(q - s + 1);
    if (slot >= 0) {
      const base = slot * TARGET_MAX;
      for (let i = 0; i < n; i++) cb[base + i] = b[s + i];
      tc.lens[slot] = n;
      tc.targets[slot] = t;
      tc.paths[slot] = this._path;
      tc.queries[slot] = this._query;
    }
    return this._target = t;
  }

  /** The target up to the first `?` (all of it when there is none). */
  path(): string {
    if (this._target === null) this.target();
    return this._path;
  }

  /** The target after the first `?`, or `""` when there is none. */
  query(): string {
    if (this._target === null) this.target();
    return this._query;
  }

  /**
   * A header's value, looked up case-insensitively.
   *
   * @param name The field name in lowercase (`"content-type"`); it is compared without allocating.
   * @returns The value with surrounding whitespace trimmed, the values of repeated fields joined with `", "`
   * (RFC 9110 §5.3), or `null` when absent. Bytes ≥ 0x80 decode as ISO-8859-1, as in `Headers`.
   */
  get(name: string): string | null {
    const b = this.bytes;
    const off = this._off;
    const n = name.length;
    let result: string | null = null;
    for (let j = 0, end = this.headerCount * 4; j < end; j += 4) {
      const s = off[j];
      if (off[j + 1] - s !== n) continue;
      let k = 0;
      while (k < n && LOWER[b[s + k]] === name.charCodeAt(k)) k++;
      if (k !== n) continue;
      const v = decode(b, off[j + 2], off[j + 3]);
      result = result === null ? v : result + ", " + v;
    }
    return result;
  }

  /**
   * The name of header field `i`, as sent.
   *
   * @param i From 0 to {@linkcode RequestHead.headerCount} - 1.
   * @throws {RangeError} When `i` is out of range.
   */
  headerName(i: number): string {
    this.#check(i);
    return decode(this.bytes, this._off[i * 4], this._off[i * 4 + 1]);
  }

  /**
   * The value of header field `i`, with surrounding whitespace trimmed.
   *
   * @param i From 0 to {@linkcode RequestHead.headerCount} - 1.
   * @throws {RangeError} When `i` is out of range.
   */
  headerValue(i: number): string {
    this.#check(i);
    return decode(this.bytes, this._off[i * 4 + 2], this._off[i * 4 + 3]);
  }

  /**
   * Calls `fn` with each header field in order, names as sent and values trimmed; repeated fields come one by one.
   *
   * @param fn Receives the name and the value.
   */
  forEachHeader(fn: (name: string, value: string) => void): void {
    const b = this.bytes;
    const off = this._off;
    for (let j = 0, end = this.headerCount * 4; j < end; j += 4) {
      fn(decode(b, off[j], off[j + 1]), decode(b, off[j + 2], off[j + 3]));
    }
  }

  /**
   * Copies the head's bytes (one slice of just the head) and offsets so that it outlives the read that delivered it.
   * The parser then leaves this object alone and uses a new one for the next request. Idempotent.
   */
  detach(): void {
    if (this._detached) return;
    this._detached = true;
    const start = this._start;
    this.bytes = this.bytes.slice(start, this._end);
    const off = this._off.slice(0, this.headerCount * 4);
    for (let j = 0; j < off.length; j++) off[j] -= start;
    this._off = off;
    this._start = 0;
    this._end -= start;
    this._methodEnd -= start;
    this._targetEnd -= start;
  }

  #check(i: number): void {
    if (!(i >= 0 && i < this.headerCount && Number.isInteger(i))) {
      throw new RangeError(`Header index ${i} is out of range: the head has ${this.headerCount} fields`);
    }
  }
}

function isAscii(b: Uint8Array, s: number, lit: string): boolean {
  for (let i = 0; i < lit.length; i++) if (b[s + i] !== lit.charCodeAt(i)) return false;
  return true;
}

/** Receives a {@linkcode RequestParser}'s events. An exception thrown here propagates out of `execute()`. */
export interface ParserHandler {
  /**
   * The whole head has been parsed and validated. The head (and its bytes) is valid until `execute()` returns:
   * call {@linkcode RequestHead.detach} to keep it.
   */
  onHead(head: RequestHead): void;
  /** Body bytes (de-chunked payload): a view into the input, valid until `execute()` returns; copy to keep. */
  onBody(chunk: Uint8Array): void;
  /** The end of this request (after the trailers of a chunked body, which are validated and dropped). */
  onComplete(): void;
}

// Top-level states.
const S_HEAD = 0;
const S_BODY = 1;
const S_CHUNK_SIZE = 2;
const S_CHUNK_EXT = 3;
const S_CHUNK_SIZE_LF = 4;
const S_CHUNK_DATA = 5;
const S_CHUNK_DATA_CR = 6;
const S_CHUNK_DATA_LF = 7;
const S_TRAILERS = 8;
const S_FAILED = 9;

// Phases of a head (and of a trailer section, from P_LINE).
const P_START = 0; // before the request line: empty lines are skipped
const P_START_LF = 1; // a CR seen before the request line
const P_METHOD = 2;
const P_TARGET = 3;
const P_VERSION = 4;
const P_LINE = 5; // at the start of a header line
const P_NAME = 6;
const P_OWS = 7;
const P_VALUE = 8;
const P_VALUE_LF = 9;
const P_END_LF = 10;
const P_DONE = 11;

// Chunk extension sub-states: *( ";" token [ "=" ( token / quoted-string ) ] ).
const E_NAME_START = 0;
const E_NAME = 1;
const E_VALUE_START = 2;
const E_TOKEN = 3;
const E_QUOTED = 4;
const E_ESCAPE = 5;
const E_AFTER_QUOTE = 6;

/**
 * An incremental HTTP/1.1 request parser with no I/O: see the module documentation for the rules it enforces.
 *
 * Feed each read to {@linkcode RequestParser.execute}. It parses every request in the bytes (pipelining) and calls
 * the handler in order. It returns 0 while all is well, or an HTTP status (400, 413, 414, 431, 501, 505) on the
 * first error, after which the parser stays failed until {@linkcode RequestParser.reset}. It never throws on any
 * input; an exception thrown by a handler propagates, and leaves the parser in an unspecified state (reset it or
 * drop the connection).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 *
 * const bodies: string[] = [];
 * const parser = new RequestParser({
 *   onHead(head) {
 *     assert.equal(head.method(), "POST");
 *     assert.equal(head.chunked, true);
 *   },
 *   onBody(chunk) {
 *     bodies.push(new TextDecoder().decode(chunk));
 *   },
 *   onComplete() {
 *     bodies.push("<end>");
 *   },
 * }, { maxBodyBytes: 1024 });
 * const wire = new TextEncoder().encode(
 *   "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n",
 * );
 * // Any split gives the same events: here one byte at a time.
 * for (let i = 0; i < wire.length; i++) assert.equal(parser.execute(wire.subarray(i, i + 1)), 0);
 * assert.equal(bodies.join(""), "hello<end>");
 * assert.equal(parser.idle, true);
 *
 * const strict = new RequestParser({ onHead() {}, onBody() {}, onComplete() {} });
 * const smuggle = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
 * assert.equal(strict.execute(new TextEncoder().encode(smuggle)), 400);
 * assert.equal(strict.errorReason, "Both Content-Length and Transfer-Encoding");
 * ```
 */
export class RequestParser {
  #handler: ParserHandler;
  #maxHead: number;
  #maxUri: number;
  #maxBody: number;
  #maxHeaders: number;

  #error = 0;
  #reason = "";
  #state = S_HEAD;

  // The head being scanned. Positions are absolute in the buffer being scanned (the input, or #acc).
  #phase = P_START;
  #empty = 0; // empty lines seen before this request line
  #hs = 0; // head start (the method's first byte)
  #mark = 0; // start of the current token: method, target, version, header name
  #methodEnd = 0;
  #targetEnd = 0;
  #nameEnd = 0;
  #valueStart = 0;
  #valueEnd = 0;
  #minor = 1;
  #head = new RequestHead();
  #off: Uint32Array;
  // Head semantics, gathered as fields are recorded.
  #clSeen = false;
  #cl = 0;
  #clField = 0; // the index of the first Content-Length field
  #teSeen = false;
  #teChunked = 0;
  #teOther = false;
  #teEmpty = false;
  #hosts = 0;
  #connClose = false;
  #connKeepAlive = false;
  #connUpgrade = false;
  #expect = false;

  // A head split across reads, copied here from its first byte.
  // Shared and empty until #reserve() replaces it before the first write: an empty typed array per parser
  // (per connection) costs ~200 bytes of heap.
  #acc: Uint8Array = NO_BYTES;
  #accLen = 0;
  #pos = 0; // scan position in #acc

  // Body.
  #remaining = 0;
  #total = 0; // chunked: sum of the chunk sizes so far
  #size = 0;
  #digits = 0;
  #ext = E_NAME_START;
  #extBytes = 0;
  #budget = 0; // trailers: header bytes left
  #fields = 0; // trailers: header fields so far, head included

  /**
   * Creates a parser for one connection.
   *
   * @param handler Receives the events.
   * @param limits Overrides of {@linkcode DEFAULT_LIMITS}.
   * @throws {RangeError} When a limit is not a positive number.
   */
  constructor(handler: ParserHandler, limits: Partial<ParserLimits> = {}) {
    this.#handler = handler;
    const lim = { ...DEFAULT_LIMITS, ...limits };
    for (const [k, v] of Object.entries(lim)) {
      if (!(typeof v === "number" && v >= 1)) throw new RangeError(`Parser limit ${k} must be a number ≥ 1, got ${v}`);
    }
    this.#maxHead = Math.floor(lim.maxHeaderBytes);
    this.#maxUri = Math.floor(lim.maxUriBytes);
    this.#maxBody = lim.maxBodyBytes;
    this.#maxHeaders = Math.floor(lim.maxHeaders);
    this.#off = new Uint32Array(4 * Math.min(this.#maxHeaders, 32));
    this.#head._off = this.#off;
  }

  /** 0, or the status of the error that stopped the parser. */
  get error(): number {
    return this.#error;
  }

  /** `""`, or a short sentence saying why the parser failed, fit for a log line or a response body. */
  get errorReason(): string {
    return this.#reason;
  }

  /** Whether the parser is between requests with no byte of the next one received (the keep-alive idle state). */
  get idle(): boolean {
    return this.#state === S_HEAD && this.#phase === P_START && this.#empty === 0;
  }

  /** Whether a head has been partly received (the header timeout applies). */
  get inHead(): boolean {
    return this.#state === S_HEAD && !(this.#phase === P_START && this.#empty === 0);
  }

  /** Forgets all state, errors included, as for a new connection. */
  reset(): void {
    this.#error = 0;
    this.#reason = "";
    this.#state = S_HEAD;
    this.#phase = P_START;
    this.#empty = 0;
    this.#accLen = 0;
  }

  /**
   * Feeds the next bytes of the connection.
   *
   * @param data The bytes; only read. Views of it are handed to the handler and are valid until this call returns.
   * @returns 0 when all the bytes were consumed, or the HTTP status of the first error (400, 413, 414, 431, 501,
   * 505). Once failed, the parser consumes nothing and returns the same status until reset.
   */
  execute(data: Uint8Array): number {
    if (this.#error !== 0) return this.#error;
    const end = data.length;
    let p = 0;
    if (this.#accLen !== 0) {
      p = this.#resume(data);
      if (p < 0) return this.#error;
    }
    while (p < end) {
      switch (this.#state) {
        case S_HEAD: {
          if (this.#phase <= P_START_LF) {
            p = this.#skipEmptyLines(data, p, end);
            if (p < 0) return this.#error;
            if (p === end) return 0;
          }
          const q = this.#scan(data, p, end, this.#hs + this.#maxHead, false);
          if (q < 0) return this.#error;
          if (this.#phase !== P_DONE) {
            this.#save(data, q);
            return 0;
          }
          if (!this.#headDone(data, q)) return this.#error;
          p = q;
          break;
        }
        case S_BODY: {
          const r = this.#remaining;
          const s = p;
          if (end - p < r) {
            this.#remaining = r - (end - p);
            p = end;
            this.#handler.onBody(data.subarray(s, end));
          } else {
            p += r;
            this.#remaining = 0;
            this.#state = S_HEAD;
            this.#phase = P_START;
            this.#handler.onBody(data.subarray(s, p));
            this.#handler.onComplete();
          }
          break;
        }
        case S_CHUNK_SIZE: {
          let size = this.#size;
          let digits = this.#digits;
          let c = 0;
          let h = 0;
          while (p < end && (h = HEX[c = data[p]]) >= 0) {
            if (++digits > 16) return this.#failStatus(400, "A chunk size has more than 16 hex digits");
            // size * 16 + h > 2^53, decided before it is computed (past 2^53 a double rounds).
            if (size >= MAX_CHUNK_DIV16 && (size > MAX_CHUNK_DIV16 || h > 0)) {
              return this.#failStatus(400, "A chunk size is too large");
            }
            size = size * 16 + h;
            p++;
          }
          this.#size = size;
          this.#digits = digits;
          if (p === end) break;
          if (digits === 0) {
            return this.#failStatus(
              400,
              c === CR || c === LF || c === SEMI ? "A chunk size is empty" : "A chunk size is not hexadecimal",
            );
          }
          if ((this.#total += size) > this.#maxBody) {
            return this.#failStatus(413, "The chunked body exceeds the body limit");
          }
          if (c === CR) {
            this.#state = S_CHUNK_SIZE_LF;
          } else if (c === SEMI) {
            this.#state = S_CHUNK_EXT;
            this.#ext = E_NAME_START;
            if (++this.#extBytes > this.#maxHead) return this.#failStatus(413, "The chunk extensions are too large");
          } else {
            return this.#failStatus(
              400,
              isOws(c)
                ? "Whitespace after a chunk size"
                : c === LF
                ? "A chunk line ends in a bare LF"
                : "A chunk size is not hexadecimal",
            );
          }
          p++;
          break;
        }
        case S_CHUNK_EXT: {
          const q = this.#chunkExt(data, p, end);
          if (q < 0) return this.#error;
          p = q;
          break;
        }
        case S_CHUNK_SIZE_LF: {
          if (data[p] !== LF) return this.#failStatus(400, "Bare CR in a chunk line");
          p++;
          if (this.#size === 0) {
            this.#state = S_TRAILERS;
            this.#phase = P_LINE;
          } else {
            this.#state = S_CHUNK_DATA;
            this.#remaining = this.#size;
          }
          break;
        }
        case S_CHUNK_DATA: {
          const r = this.#remaining;
          const s = p;
          if (end - p < r) {
            this.#remaining = r - (end - p);
            p = end;
          } else {
            p += r;
            this.#remaining = 0;
            this.#state = S_CHUNK_DATA_CR;
          }
          this.#handler.onBody(data.subarray(s, p));
          break;
        }
        case S_CHUNK_DATA_CR:
          if (data[p] !== CR) return this.#failStatus(400, "Chunk data is not followed by CRLF");
          p++;
          this.#state = S_CHUNK_DATA_LF;
          break;
        case S_CHUNK_DATA_LF:
          if (data[p] !== LF) return this.#failStatus(400, "Chunk data is not followed by CRLF");
          p++;
          this.#state = S_CHUNK_SIZE;
          this.#size = 0;
          this.#digits = 0;
          break;
        case S_TRAILERS: {
          const q = this.#scan(data, p, end, p + this.#budget, true);
          if (q < 0) return this.#error;
          this.#budget -= q - p;
          p = q;
          if (this.#phase === P_DONE) {
            this.#state = S_HEAD;
            this.#phase = P_START;
            this.#handler.onComplete();
          }
          break;
        }
        default:
          return this.#error;
      }
    }
    return 0;
  }

  /** Fails and returns the status (for execute()). */
  #failStatus(status: number, reason: string): number {
    this.#fail(status, reason);
    return status;
  }

  #fail(status: number, reason: string): -1 {
    this.#error = status;
    this.#reason = reason;
    this.#state = S_FAILED;
    this.#accLen = 0;
    return -1;
  }

  #reject(status: number, reason: string): false {
    this.#fail(status, reason);
    return false;
  }

  /** Skips the empty lines allowed before a request line; at its first byte, starts a head. */
  #skipEmptyLines(b: Uint8Array, p: number, end: number): number {
    while (p < end) {
      const c = b[p];
      if (this.#phase === P_START_LF) {
        if (c !== LF) return this.#fail(400, "Bare CR before the request line");
        this.#phase = P_START;
        this.#empty++;
      } else if (c === CR) {
        if (this.#empty >= MAX_EMPTY_LINES) return this.#fail(400, "Too many empty lines before the request line");
        this.#phase = P_START_LF;
      } else if (c === LF) {
        return this.#fail(400, "Bare LF before the request line");
      } else {
        this.#begin(p);
        return p;
      }
      p++;
    }
    return p;
  }

  #begin(p: number): void {
    if (this.#head._detached) {
      const head = new RequestHead();
      head._off = this.#off;
      this.#head = head;
    }
    this.#head.headerCount = 0;
    this.#phase = P_METHOD;
    this.#empty = 0;
    this.#hs = this.#mark = p;
    this.#clSeen =
      this.#teSeen =
      this.#teOther =
      this.#teEmpty =
        false;
    this.#connClose =
      this.#connKeepAlive =
      this.#connUpgrade =
      this.#expect =
        false;
    this.#teChunked = this.#hosts = 0;
  }

  /** Copies a partial head into #acc, rebasing its offsets to 0. */
  #save(b: Uint8Array, end: number): void {
    const hs = this.#hs;
    const n = end - hs;
    this.#reserve(n);
    this.#acc.set(b.subarray(hs, end), 0);
    this.#accLen = n;
    this.#pos = n;
    this.#hs = 0;
    this.#mark -= hs;
    this.#methodEnd -= hs;
    this.#targetEnd -= hs;
    this.#nameEnd -= hs;
    this.#valueStart -= hs;
    this.#valueEnd -= hs;
    const off = this.#off;
    for (let j = 0, e = this.#head.headerCount * 4; j < e; j++) off[j] -= hs;
  }

  #reserve(n: number): void {
    if (this.#acc.length >= n) return;
    const next = new Uint8Array(Math.min(this.#maxHead, Math.max(n, 1024, this.#acc.length * 2)));
    next.set(this.#acc.subarray(0, this.#accLen));
    this.#acc = next;
  }

  /** Continues a head split across reads: appends to #acc and scans on. Returns the index in `data` after the head. */
  #resume(data: Uint8Array): number {
    const old = this.#accLen;
    const room = this.#maxHead - old;
    const n = data.length < room ? data.length : room;
    this.#reserve(old + n);
    const acc = this.#acc;
    acc.set(n === data.length ? data : data.subarray(0, n), old);
    this.#accLen = old + n;
    const q = this.#scan(acc, this.#pos, old + n, this.#maxHead, false);
    if (q < 0) return -1;
    if (this.#phase !== P_DONE) {
      this.#pos = q;
      return -1;
    }
    this.#accLen = 0;
    if (!this.#headDone(acc, q)) return -1;
    return q - old;
  }

  /**
   * Scans a head (or, with `trailer`, a trailer section) from the current phase, up to `end` but never past
   * `limit`. Returns the position reached (the phase is P_DONE when the section is complete), or -1 on error.
   */
  #scan(b: Uint8Array, p: number, end: number, limit: number, trailer: boolean): number {
    const stop = end < limit ? end : limit;
    let phase = this.#phase;
    let mark = this.#mark;
    let c = 0;
    outer: for (;;) {
      switch (phase) {
        case P_METHOD: {
          while (p < stop && TCHAR[b[p]] === 1) p++;
          if (p === stop) break outer;
          if (b[p] !== SP) {
            return this.#fail(
              400,
              b[p] === CR || b[p] === LF ? "The request line has no target" : "The method is not a token",
            );
          }
          if (p === mark) return this.#fail(400, "The request line has an empty method");
          this.#methodEnd = p;
          mark = ++p;
          phase = P_TARGET;
        }
        // falls through
        case P_TARGET: {
          const tooLong = mark + this.#maxUri + 1;
          const ts = stop < tooLong ? stop : tooLong;
          while (p < ts && (c = b[p]) > SP && c < DEL) p++;
          if (p === ts) {
            if (p === tooLong) return this.#fail(414, "The request target is longer than the limit");
            break outer;
          }
          if (c !== SP) {
            return this.#fail(
              400,
              c === CR || c === LF ? "The request line has no HTTP version" : "Invalid byte in the request target",
            );
          }
          if (p === mark) return this.#fail(400, "The request target is empty");
          this.#targetEnd = p;
          if (!this.#checkForm(b, mark, p)) return -1;
          mark = ++p;
          phase = P_VERSION;
        }
        // falls through
        case P_VERSION: {
          const ve = mark + 10; // "HTTP/1.1\r\n"
          const vs = stop < ve ? stop : ve;
          if (
            vs === ve && p === mark && b[p] === 0x48 && b[p + 1] === 0x54 && b[p + 2] === 0x54 && b[p + 3] === 0x50 &&
            b[p + 4] === 0x2f && b[p + 5] === 0x31 && b[p + 6] === 0x2e && b[p + 8] === CR && b[p + 9] === LF &&
            (b[p + 7] === 0x31 || b[p + 7] === 0x30)
          ) {
            p = ve; // the fast path: a whole "HTTP/1.x\r\n"
          }
          for (; p < vs; p++) {
            c = b[p];
            let ok: boolean;
            switch (p - mark) {
              case 0:
                ok = c === 0x48; // H
                break;
              case 1:
              case 2:
                ok = c === 0x54; // T
                break;
              case 3:
                ok = c === 0x50; // P
                break;
              case 4:
                ok = c === 0x2f; // /
                break;
              case 6:
                ok = c === 0x2e; // .
                break;
              case 8:
                if (c === LF) return this.#fail(400, "The request line ends in a bare LF");
                ok = c === CR;
                break;
              case 9:
                if (c !== LF) return this.#fail(400, "Bare CR in the request line");
                ok = true;
                break;
              default: // 5, 7
                ok = c >= 0x30 && c <= 0x39;
            }
            if (!ok) return this.#fail(400, "Malformed HTTP version");
          }
          if (p < ve) break outer;
          const major = b[mark + 5] - 0x30;
          const minor = b[mark + 7] - 0x30;
          if (major !== 1 || minor > 1) return this.#fail(505, `HTTP/${major}.${minor} is not supported`);
          this.#minor = minor;
          phase = P_LINE;
        }
        // falls through
        case P_LINE: {
          if (p === stop) break outer;
          c = b[p];
          if (TCHAR[c] !== 1) {
            if (c === CR) {
              p++;
              phase = P_END_LF;
              continue;
            }
            return this.#fail(
              400,
              isOws(c)
                ? "A header line starts with whitespace (obsolete line folding)"
                : c === LF
                ? "A header line ends in a bare LF"
                : "Invalid character in a header name",
            );
          }
          mark = p++;
          phase = P_NAME;
        }
        // falls through
        case P_NAME: {
          while (p < stop && TCHAR[b[p]] === 1) p++;
          if (p === stop) break outer;
          c = b[p];
          if (c !== COLON) {
            return this.#fail(
              400,
              isOws(c)
                ? "Whitespace between a header name and the colon"
                : c === CR || c === LF
                ? "A header line has no colon"
                : "Invalid character in a header name",
            );
          }
          this.#nameEnd = p++;
          phase = P_OWS;
        }
        // falls through
        case P_OWS: {
          while (p < stop && ((c = b[p]) === SP || c === HTAB)) p++;
          if (p === stop) break outer;
          this.#valueStart = p;
          phase = P_VALUE;
        }
        // falls through
        case P_VALUE: {
          // field-vchar / obs-text / SP / HTAB (RFC 9110 §5.5): any byte but CTLs other than HTAB, and DEL.
          while (p < stop && ((c = b[p]) > 0x1f ? c !== DEL : c === HTAB)) p++;
          if (p === stop) break outer;
          c = b[p];
          if (c !== CR) {
            return this.#fail(
              400,
              c === LF
                ? "A header line ends in a bare LF"
                : c === DEL
                ? "DEL in a header value"
                : "Control character in a header value",
            );
          }
          if (!trailer) {
            let ve = p;
            const vs = this.#valueStart;
            while (ve > vs && isOws(b[ve - 1])) ve--;
            this.#valueEnd = ve;
          }
          p++;
          phase = P_VALUE_LF;
        }
        // falls through
        case P_VALUE_LF: {
          if (p === stop) break outer;
          if (b[p] !== LF) return this.#fail(400, "Bare CR in a header line");
          p++;
          if (trailer) {
            if (++this.#fields > this.#maxHeaders) return this.#fail(431, "Too many header and trailer fields");
          } else if (!this.#record(b, mark)) {
            return -1;
          }
          phase = P_LINE;
          continue;
        }
        case P_END_LF: {
          if (p === stop) break outer;
          if (b[p] !== LF) return this.#fail(400, trailer ? "Bare CR in a trailer section" : "Bare CR in the head");
          p++;
          phase = P_DONE;
          break outer;
        }
        default:
          break outer;
      }
    }
    this.#phase = phase;
    this.#mark = mark;
    if (phase !== P_DONE && p === limit) {
      return this.#fail(
        431,
        trailer ? "The trailers exceed the header size limit" : "The head is larger than the limit",
      );
    }
    return p;
  }

  /** Records the header field whose name starts at `ns`; its other bounds are in #nameEnd, #valueStart, #valueEnd. */
  #record(b: Uint8Array, ns: number): boolean {
    const ne = this.#nameEnd;
    const vs = this.#valueStart;
    const ve = this.#valueEnd;
    const head = this.#head;
    const i = head.headerCount;
    if (i >= this.#maxHeaders) return this.#reject(431, "Too many header fields");
    let off = this.#off;
    const j = i * 4;
    if (j + 4 > off.length) off = this.#growOffsets();
    off[j] = ns;
    off[j + 1] = ne;
    off[j + 2] = vs;
    off[j + 3] = ve;
    head.headerCount = i + 1;
    switch (ne - ns) {
      case 4:
        if (eqLit(b, ns, L_HOST)) return this.#host(b, vs, ve);
        break;
      case 6:
        if (eqLit(b, ns, L_EXPECT) && ve - vs === 12 && eqLit(b, vs, L_100_CONTINUE)) this.#expect = true;
        break;
      case 10:
        if (eqLit(b, ns, L_CONNECTION)) this.#connection(b, vs, ve);
        break;
      case 14:
        if (eqLit(b, ns, L_CONTENT_LENGTH)) return this.#contentLength(b, vs, ve);
        break;
      case 17:
        if (eqLit(b, ns, L_TRANSFER_ENCODING)) this.#transferEncoding(b, vs, ve);
        break;
    }
    return true;
  }

  #growOffsets(): Uint32Array {
    const next = new Uint32Array(Math.min(this.#maxHeaders * 4, this.#off.length * 2));
    next.set(this.#off);
    this.#off = next;
    this.#head._off = next;
    return next;
  }

  #host(b: Uint8Array, vs: number, ve: number): boolean {
    if (++this.#hosts > 1) return this.#reject(400, "More than one Host header");
    for (let i = vs; i < ve; i++) {
      if (HOST[b[i]] !== 1) return this.#reject(400, "Invalid character in the Host header");
    }
    return true;
  }

  #contentLength(b: Uint8Array, vs: number, ve: number): boolean {
    if (vs === ve) return this.#reject(400, "Empty Content-Length");
    let v = 0;
    for (let i = vs; i < ve; i++) {
      const d = b[i] - 0x30;
      if (d < 0 || d > 9) return this.#reject(400, "Content-Length is not a plain decimal number");
      v = v * 10 + d;
    }
    if (v > Number.MAX_SAFE_INTEGER) v = Infinity; // too large for any limit: 413 when the head ends
    if (this.#clSeen) {
      // Past 2^53 every value is Infinity here: tell two of them apart by their digits.
      if (v !== this.#cl || (v === Infinity && !this.#sameDigits(b, vs, ve))) {
        return this.#reject(400, "Differing Content-Length values");
      }
      return true;
    }
    this.#clSeen = true;
    this.#cl = v;
    this.#clField = this.#head.headerCount - 1;
    return true;
  }

  /** Whether the digits at `b[vs..ve)` are the same number as the first Content-Length's (leading zeros aside). */
  #sameDigits(b: Uint8Array, vs: number, ve: number): boolean {
    const off = this.#off;
    let s = off[this.#clField * 4 + 2];
    const e = off[this.#clField * 4 + 3];
    while (s < e - 1 && b[s] === 0x30) s++;
    while (vs < ve - 1 && b[vs] === 0x30) vs++;
    if (e - s !== ve - vs) return false;
    for (let i = 0; i < ve - vs; i++) if (b[s + i] !== b[vs + i]) return false;
    return true;
  }

  /** Counts the codings of a Transfer-Encoding list: `chunked` once and nothing else is the only valid outcome. */
  #transferEncoding(b: Uint8Array, vs: number, ve: number): void {
    this.#teSeen = true;
    for (let i = vs; i <= ve;) {
      let e = i;
      while (e < ve && b[e] !== COMMA) e++;
      let s = i;
      let t = e;
      while (s < t && isOws(b[s])) s++;
      while (t > s && isOws(b[t - 1])) t--;
      if (s === t) this.#teEmpty = true;
      else if (t - s === 7 && eqLit(b, s, L_CHUNKED)) this.#teChunked++;
      else this.#teOther = true;
      i = e + 1;
    }
  }

  /** Looks for `close`, `keep-alive` and `upgrade` in a Connection list (case-insensitive; empty elements ignored). */
  #connection(b: Uint8Array, vs: number, ve: number): void {
    for (let i = vs; i < ve;) {
      let e = i;
      while (e < ve && b[e] !== COMMA) e++;
      let s = i;
      let t = e;
      while (s < t && isOws(b[s])) s++;
      while (t > s && isOws(b[t - 1])) t--;
      if (t - s === 5 && eqLit(b, s, L_CLOSE)) this.#connClose = true;
      else if (t - s === 10 && eqLit(b, s, L_KEEP_ALIVE)) this.#connKeepAlive = true;
      else if (t - s === 7 && eqLit(b, s, L_UPGRADE)) this.#connUpgrade = true;
      i = e + 1;
    }
  }

  /** The request-target forms of RFC 9112 §3.2, told apart by their first bytes. */
  #checkForm(b: Uint8Array, s: number, e: number): boolean {
    const c = b[s];
    if (c === 0x2f) return true; // origin-form
    const ms = this.#hs;
    const mlen = this.#methodEnd - ms;
    if (mlen === 7 && isAscii(b, ms, "CONNECT")) return true; // authority-form
    if (c === 0x2a && e - s === 1) {
      if (mlen === 7 && isAscii(b, ms, "OPTIONS")) return true; // asterisk-form
      return this.#reject(400, "The asterisk-form target is only for OPTIONS");
    }
    // absolute-form: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"
    if (LOWER[c] >= 0x61 && LOWER[c] <= 0x7a) {
      let i = s + 1;
      for (; i < e; i++) {
        const d = LOWER[b[i]];
        if (!((d >= 0x61 && d <= 0x7a) || (d >= 0x30 && d <= 0x39) || d === 0x2b || d === 0x2d || d === 0x2e)) break;
      }
      if (i < e && b[i] === COLON) return true;
    }
    return this.#reject(400, "Malformed request target");
  }

  /** Checks the head as a whole, fills the RequestHead, calls onHead (and onComplete when there is no body). */
  #headDone(b: Uint8Array, end: number): boolean {
    const minor = this.#minor;
    if (this.#hosts === 0 && minor === 1) return this.#reject(400, "HTTP/1.1 request without a Host header");
    if (this.#teSeen) {
      if (this.#clSeen) return this.#reject(400, "Both Content-Length and Transfer-Encoding");
      if (minor === 0) return this.#reject(400, "Transfer-Encoding in an HTTP/1.0 request");
      if (this.#teEmpty) return this.#reject(400, "Empty element in Transfer-Encoding");
      if (this.#teChunked > 1) return this.#reject(400, "The chunked coding is applied more than once");
      if (this.#teOther) return this.#reject(501, "Unsupported transfer coding (only chunked is)");
    }
    const cl = this.#clSeen ? this.#cl : -1;
    if (cl > this.#maxBody || cl === Infinity) return this.#reject(413, "Content-Length exceeds the body limit");

    const head = this.#head;
    head.bytes = b;
    head._start = this.#hs;
    head._end = end;
    head._methodEnd = this.#methodEnd;
    head._targetEnd = this.#targetEnd;
    head._method = null;
    head._target = null;
    head.versionMinor = minor as 0 | 1;
    head.contentLength = cl;
    head.chunked = this.#teSeen;
    head.keepAlive = !this.#connClose && (minor === 1 || this.#connKeepAlive);
    head.upgrade = this.#connUpgrade;
    head.expectContinue = minor === 1 && this.#expect;

    if (this.#teSeen) {
      this.#state = S_CHUNK_SIZE;
      this.#size =
        this.#digits =
        this.#total =
        this.#extBytes =
          0;
      this.#budget = this.#maxHead - (end - this.#hs) + 2; // the trailer fields count; the final CRLF is free
      this.#fields = head.headerCount;
      this.#handler.onHead(head);
    } else if (cl > 0) {
      this.#state = S_BODY;
      this.#remaining = cl;
      this.#handler.onHead(head);
    } else {
      this.#state = S_HEAD;
      this.#phase = P_START;
      this.#handler.onHead(head);
      this.#handler.onComplete();
    }
    return true;
  }

  /** Validates chunk extensions up to the CR ending the chunk line. */
  #chunkExt(b: Uint8Array, p: number, end: number): number {
    let st = this.#ext;
    const s0 = p;
    const room = this.#maxHead - this.#extBytes; // every byte from ';' to CR counts, per message
    const stop = end - p > room ? p + room : end;
    let done = false;
    for (; p < stop && !done; p++) {
      const c = b[p];
      switch (st) {
        case E_NAME_START:
          if (TCHAR[c] !== 1) return this.#failExt(c);
          st = E_NAME;
          break;
        case E_NAME:
        case E_TOKEN:
          if (TCHAR[c] === 1) break;
          if (c === SEMI) st = E_NAME_START;
          else if (c === EQUALS && st === E_NAME) st = E_VALUE_START;
          else if (c === CR) done = true;
          else return this.#failExt(c);
          break;
        case E_VALUE_START:
          if (TCHAR[c] === 1) st = E_TOKEN;
          else if (c === DQUOTE) st = E_QUOTED;
          else return this.#failExt(c);
          break;
        case E_QUOTED:
          if (QDTEXT[c] === 1) break;
          if (c === DQUOTE) st = E_AFTER_QUOTE;
          else if (c === BACKSLASH) st = E_ESCAPE;
          else return this.#failExt(c);
          break;
        case E_ESCAPE:
          if (c === HTAB || (c >= SP && c !== DEL)) st = E_QUOTED;
          else return this.#failExt(c);
          break;
        default: // E_AFTER_QUOTE
          if (c === SEMI) st = E_NAME_START;
          else if (c === CR) done = true;
          else return this.#failExt(c);
      }
    }
    this.#ext = st;
    this.#extBytes += p - s0;
    if (!done && p === s0 + room && p < end) return this.#fail(413, "The chunk extensions are too large");
    if (done) this.#state = S_CHUNK_SIZE_LF;
    return p;
  }

  #failExt(c: number): -1 {
    return this.#fail(
      400,
      c === LF
        ? "A chunk line ends in a bare LF"
        : isOws(c)
        ? "Whitespace in a chunk extension"
        : "Malformed chunk extension",
    );
  }
}
