/**
 * What the HTTP fuzz tests share: their environment knobs, a seeded PRNG and
 * the character classes of RFC 9110/9112 they draw from.
 *
 * @module
 */

/** An environment variable, or undefined (also without `--allow-env`: the defaults then apply). */
export function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** How long a fuzz test runs: `FDLOOP_FUZZ_SECONDS`, else `defaultSeconds`. */
export function fuzzSeconds(defaultSeconds: number): number {
  return Number(env("FDLOOP_FUZZ_SECONDS") ?? defaultSeconds);
}

/** The run's seed: `FDLOOP_FUZZ_SEED` to replay a run, else a fresh one (printed on failure). */
export const BASE_SEED: number = env("FDLOOP_FUZZ_SEED") !== undefined
  ? Number(env("FDLOOP_FUZZ_SEED"))
  : (Date.now() ^ (Math.random() * 0x7fffffff)) >>> 0;

/** `FDLOOP_FUZZ_CASE`: one case's seed, to replay it alone. */
export const ONE_CASE: string | undefined = env("FDLOOP_FUZZ_CASE");

/** A seeded PRNG (mulberry32), so that a failure replays from its seed. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
  chars(alphabet: string, lo: number, hi: number): string {
    let s = "";
    for (let n = this.range(lo, hi); n > 0; n--) s += alphabet[this.int(alphabet.length)];
    return s;
  }
  randomCase(s: string): string {
    return [...s].map((c) => (this.chance(0.3) ? c.toUpperCase() : c)).join("");
  }
}

/** tchar (RFC 9110 §5.6.2). */
export const TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
export const ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
/** What a path may hold (pchar and `/`). */
export const PCHARS: string = ALNUM + "-._~!$&'()*+,;=:@%/";
export const HOSTCHARS: string = ALNUM + "-.";
/** Visible ASCII, 0x21–0x7e. */
export const VCHARS: string = Array.from({ length: 0x5e }, (_, i) => String.fromCharCode(0x21 + i)).join("");
/** obs-text, 0x80–0xff. */
export const OBS: string = Array.from({ length: 0x80 }, (_, i) => String.fromCharCode(0x80 + i)).join("");
/** qdtext of a quoted string, less obs-text. */
export const QDCHARS: string = VCHARS.replace('"', "").replace("\\", "") + " \t";

/** A string without its leading and trailing optional whitespace (spaces and tabs). */
export const trimOws = (s: string): string => s.replace(/^[ \t]+/, "").replace(/[ \t]+$/, "");

/** Optional whitespace, mostly none. */
export const ows = (rng: Rng): string => rng.pick(["", "", "", " ", " ", "\t", "  ", " \t "]);

/** A header field value: visible ASCII, some spaces, tabs and obs-text, trimmed of OWS, up to `max` bytes. */
export function genValue(rng: Rng, max = 24): string {
  let v = "";
  for (let n = rng.range(0, max); n > 0; n--) {
    const r = rng.next();
    v += r < 0.84 ? rng.pick([...VCHARS]) : r < 0.92 ? " " : r < 0.95 ? "\t" : rng.pick([...OBS]);
  }
  return trimOws(v);
}

/** Chunk extensions per the grammar: none most of the time, else 1-3 names with a token or quoted value. */
export function genExtensions(rng: Rng): string {
  let e = "";
  for (let n = rng.chance(0.7) ? 0 : rng.range(1, 3); n > 0; n--) {
    e += ";" + rng.chars(TCHARS, 1, 6);
    if (rng.chance(0.5)) {
      if (rng.chance(0.5)) e += "=" + rng.chars(TCHARS, 1, 6);
      else {
        let q = "";
        for (let k = rng.range(0, 8); k > 0; k--) {
          q += rng.chance(0.15) ? "\\" + rng.pick([...VCHARS, " ", "\t", "\x80"]) : rng.pick([...QDCHARS, "\xe9"]);
        }
        e += `="${q}"`;
      }
    }
  }
  return e;
}
