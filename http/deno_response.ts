/**
 * Reading a web `Response` without its stream, where Deno allows it: the one
 * corner of fdloop that looks at Deno's own fields (as Hono keeps its
 * runtime-specific code in `src/adapter/deno/`).
 *
 * A body read through `response.body.getReader()` costs about 4.7 µs per
 * response, and `await response.bytes()` 1.4 µs; a hello-world request costs
 * the engine about 4 µs of user CPU in all. Deno's `Response` keeps, for its
 * own `Deno.serve`, the status, body and content type of a plain response
 * (status 200, a string or `Uint8Array` body, no header but a content type)
 * under symbols described `serve fast …`. This module finds those symbols
 * once, checks on probe responses that they mean what they meant when this
 * was written (Deno 2.9), and otherwise turns itself off: {@linkcode
 * plainResponse} then returns null and `serve()` reads every response
 * through the public API. Either way the bytes on the wire are the same;
 * tests/http_serve_test.ts runs its cases both ways.
 *
 * @module
 */

/** A plain response's parts: status 200, a static body, and at most a content type. */
export interface PlainResponse {
  /** The body as given to the constructor. */
  body: string | Uint8Array;
  /** The `Content-Type` value, or null for none. */
  contentType: string | null;
}

interface FastKeys {
  status: symbol;
  body: symbol;
  kind: symbol;
  type: symbol;
  consumed: symbol;
  lazyBody: symbol;
  inner: symbol;
}

/** `serve fast header kind` values: no header, the default text type, or the type in `serve fast content type`. */
const KIND_NONE = 0;
const KIND_DEFAULT_TEXT = 1;
const KIND_CONTENT_TYPE = 2;
const DEFAULT_TEXT = "text/plain;charset=UTF-8";

/** The one object {@linkcode plainResponse} returns: a response is written before the next one is read. */
const plainParts: PlainResponse = { body: "", contentType: null };

let keys: FastKeys | null = null;
keys = findKeys();

function findKeys(): FastKeys | null {
  try {
    const probe = new Response("probe");
    const byName = new Map<string, symbol>();
    for (const s of Object.getOwnPropertySymbols(probe)) if (s.description) byName.set(s.description, s);
    const found = {
      status: byName.get("serve fast status"),
      body: byName.get("serve fast body"),
      kind: byName.get("serve fast header kind"),
      type: byName.get("serve fast content type"),
      consumed: byName.get("serve fast consumed"),
      lazyBody: byName.get("lazy static body"),
      inner: byName.get("response"),
    };
    if (Object.values(found).some((s) => s === undefined)) return null;
    const k = found as FastKeys;
    return agrees(k) ? k : null;
  } catch {
    return null;
  }
}

/** Whether the fields read as this module expects on responses of each shape. */
function agrees(k: FastKeys): boolean {
  const read = (r: Response) => {
    const saved = keys;
    keys = k;
    try {
      const plain = plainResponse(r);
      return plain === null ? null : { ...plain }; // a copy: the next call reuses the object
    } finally {
      keys = saved;
    }
  };
  const bytes = new Uint8Array([1, 2, 3]);
  const text = read(new Response("a"));
  const typed = read(new Response(bytes, { headers: { "content-type": "application/x-probe" } }));
  const json = read(Response.json({ a: 1 }));
  const mutated = new Response("b");
  mutated.headers.set("x-probe", "1");
  const consumed = new Response("c");
  void consumed.text();
  return text?.body === "a" && text.contentType === DEFAULT_TEXT &&
    typed?.body instanceof Uint8Array && typed.body.join() === "1,2,3" && typed.contentType === "application/x-probe" &&
    json?.body === '{"a":1}' && json.contentType === "application/json" &&
    read(new Response("d", { status: 201 })) === null &&
    read(new Response(new ReadableStream())) === null &&
    read(new Response(null)) === null &&
    read(mutated) === null &&
    read(consumed) === null;
}

/**
 * The parts of `response` if it is plain (status 200, a string or bytes body
 * not yet read, no header but a content type), marking its body used as
 * reading it would; null otherwise, or when this Deno keeps no such fields.
 * The object returned is the same on every call: use it before the next.
 */
export function plainResponse(response: Response): PlainResponse | null {
  const k = keys;
  if (k === null) return null;
  const r = response as unknown as Record<symbol, unknown>;
  if (r[k.status] !== 200 || r[k.consumed] !== false || !unread(r, k)) return null;
  const body = r[k.body];
  if (typeof body !== "string" && !(body instanceof Uint8Array)) return null;
  const kind = r[k.kind];
  let contentType: string | null;
  if (kind === KIND_NONE) contentType = null;
  else if (kind === KIND_DEFAULT_TEXT) contentType = DEFAULT_TEXT;
  else if (kind === KIND_CONTENT_TYPE && typeof r[k.type] === "string") contentType = r[k.type] as string;
  else return null;
  r[k.consumed] = true;
  plainParts.body = body;
  plainParts.contentType = contentType;
  return plainParts;
}

/** Whether the body is still unread, as Deno's own `bodyUsed` decides, without building the body `bodyUsed` would. */
function unread(r: Record<symbol, unknown>, k: FastKeys): boolean {
  const lazy = r[k.lazyBody];
  if (lazy !== null && lazy !== undefined) return true;
  const body = (r[k.inner] as { body?: { streamOrStatic?: { consumed?: unknown } } | null } | undefined)?.body;
  return body?.streamOrStatic?.consumed === false;
}

/** Turns the fast path off (`false`) or back on: for tests that check both paths give the same bytes. */
export function usePlainResponses(on: boolean): void {
  keys = on ? findKeys() : null;
}
