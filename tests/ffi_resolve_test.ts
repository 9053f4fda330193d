/**
 * Tests of `ffi/resolve.ts`: `getaddrinfo()` on a machine whose only network
 * is loopback. Expectations for `localhost` come from `/etc/hosts`; a name
 * that needs DNS fails with `EAI_NONAME` or `EAI_AGAIN` (sometimes only after
 * the resolver's 5 s timeout), so those lookups are raced against a generous
 * bound rather than timed.
 *
 * Run with `-A` (the fd leak check lists `/proc/self/fd`; one step starts a
 * child process).
 */

import assert from "node:assert/strict";
import {
  EAI_ADDRFAMILY,
  EAI_AGAIN,
  EAI_NODATA,
  EAI_NONAME,
  GaiError,
  getaddrinfo,
  type GetAddrInfoOptions,
} from "../ffi/resolve.ts";
import { formatIPv6, parseIPv4, parseIPv6 } from "../ffi/structs.ts";
import { assertNoFdLeak } from "./_helpers.ts";

/** Upper bound for a lookup that may go to DNS: two resolver timeouts of 5 s, and room to spare. */
const SETTLE_MS = 30_000;

const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;

/** `p`, or a rejection naming `what` when it has not settled after `ms` (the timer is cleared either way). */
async function within<T>(p: Promise<T>, what: string, ms = SETTLE_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The rejection of `p` as a `GaiError` (fails if it resolves or rejects with something else). */
async function gaiFailure(p: Promise<unknown>, what: string): Promise<GaiError> {
  let failure: unknown;
  try {
    const value = await within(p, what);
    assert.fail(`${what} should fail, resolved to ${JSON.stringify(value)}`);
  } catch (err) {
    failure = err;
  }
  assert.ok(failure instanceof GaiError, `${what} should reject with a GaiError, got ${failure}`);
  return failure;
}

/** The addresses `/etc/hosts` gives `name`, normalised the way `getaddrinfo()` formats them. */
function hostsFileAddresses(name: string): { v4: string[]; v6: string[] } {
  const v4 = new Set<string>();
  const v6 = new Set<string>();
  for (const line of Deno.readTextFileSync("/etc/hosts").split("\n")) {
    const [address, ...names] = line.replace(/#.*/, "").trim().split(/\s+/);
    if (!address || !names.map((n) => n.toLowerCase()).includes(name)) continue;
    if (parseIPv4(address)) v4.add(address);
    const bytes = parseIPv6(address);
    if (bytes) v6.add(formatIPv6(bytes));
  }
  return { v4: [...v4].sort(), v6: [...v6].sort() };
}

const LOCALHOST = hostsFileAddresses("localhost");

/** Codes for "this name has no address of that family": from the files backend, or DNS when asked after it. */
const NO_ADDRESS_OF_FAMILY = [EAI_NONAME, EAI_ADDRFAMILY, EAI_NODATA, EAI_AGAIN];

function sortedAddresses(addrs: { address: string }[]): string[] {
  return addrs.map((a) => a.address).sort();
}

Deno.test("`getaddrinfo()` resolves names from /etc/hosts and numeric addresses", async (t) => {
  await t.step("localhost resolves to the addresses /etc/hosts lists, each once, with port 0", async () => {
    await assertNoFdLeak(async () => {
      const addrs = await within(getaddrinfo("localhost"), "lookup of localhost");
      assert.ok(addrs.length > 0);
      assert.ok(addrs.every((a) => a.port === 0));
      const expected = [...LOCALHOST.v4, ...LOCALHOST.v6].sort();
      if (expected.length > 0) assert.deepEqual(sortedAddresses(addrs), expected);
      else assert.ok(addrs.every((a) => a.address === "127.0.0.1" || a.address === "::1"), JSON.stringify(addrs));
      assert.equal(new Set(addrs.map((a) => a.address)).size, addrs.length, "duplicates");
      for (const a of addrs) assert.equal(a.family, a.address.includes(":") ? "IPv6" : "IPv4");
    });
  });

  await t.step("{ family: 4 } keeps IPv4 addresses only", async () => {
    await assertNoFdLeak(async () => {
      const addrs = await within(getaddrinfo("localhost", { family: 4 }), "IPv4 lookup of localhost");
      assert.ok(addrs.every((a) => a.family === "IPv4"), JSON.stringify(addrs));
      if (LOCALHOST.v4.length > 0) assert.deepEqual(sortedAddresses(addrs), LOCALHOST.v4);
    });
  });

  await t.step("{ family: 6 } keeps IPv6 addresses only, or fails when /etc/hosts has none", async () => {
    await assertNoFdLeak(async () => {
      const lookup = getaddrinfo("localhost", { family: 6 });
      if (LOCALHOST.v6.length > 0) {
        const addrs = await within(lookup, "IPv6 lookup of localhost");
        assert.ok(addrs.every((a) => a.family === "IPv6"), JSON.stringify(addrs));
        assert.deepEqual(sortedAddresses(addrs), LOCALHOST.v6);
      } else {
        // This machine's /etc/hosts has no ::1 line: glibc does not invent one, and then asks DNS.
        const err = await gaiFailure(lookup, "IPv6 lookup of localhost");
        assert.ok(NO_ADDRESS_OF_FAMILY.includes(err.gaiCode), err.message);
      }
    });
  });

  await t.step("numeric addresses resolve to themselves", async () => {
    await assertNoFdLeak(async () => {
      assert.deepEqual(await getaddrinfo("::1"), [{ family: "IPv6", address: "::1", port: 0 }]);
      assert.deepEqual(await getaddrinfo("::1", { family: 6 }), [{ family: "IPv6", address: "::1", port: 0 }]);
      assert.deepEqual(await getaddrinfo("127.0.0.1"), [{ family: "IPv4", address: "127.0.0.1", port: 0 }]);
      assert.deepEqual(await getaddrinfo("0:0:0:0:0:0:0:1"), [{ family: "IPv6", address: "::1", port: 0 }]);
      assert.deepEqual(await getaddrinfo("::ffff:127.0.0.1"), [
        { family: "IPv6", address: "::ffff:127.0.0.1", port: 0 },
      ]);
    });
  });

  await t.step("a numeric address of the other family fails with EAI_ADDRFAMILY", async () => {
    await assertNoFdLeak(async () => {
      const err = await gaiFailure(getaddrinfo("::1", { family: 4 }), "IPv4 lookup of ::1");
      assert.equal(err.code, "EAI_ADDRFAMILY");
      assert.equal(err.gaiCode, EAI_ADDRFAMILY);
      assert.equal(
        err.message,
        'Cannot resolve "::1": EAI_ADDRFAMILY (getaddrinfo): Address family for hostname not supported',
      );
      const err6 = await gaiFailure(getaddrinfo("127.0.0.1", { family: 6 }), "IPv6 lookup of 127.0.0.1");
      assert.equal(err6.code, "EAI_ADDRFAMILY");
    });
  });
});

Deno.test("`getaddrinfo()` failures", async (t) => {
  await t.step("a name that cannot resolve rejects with a GaiError naming the host", async () => {
    await assertNoFdLeak(async () => {
      const host = "nonexistent.invalid"; // .invalid is reserved (RFC 2606): it never resolves
      const err = await gaiFailure(getaddrinfo(host), `lookup of ${host}`);
      assert.ok(["EAI_NONAME", "EAI_AGAIN"].includes(err.code), err.message);
      assert.equal(err.gaiCode, err.code === "EAI_NONAME" ? EAI_NONAME : EAI_AGAIN);
      assert.equal(err.name, "GaiError");
      assert.equal(err.host, host);
      assert.equal(err.syscall, "getaddrinfo");
      assert.equal(err.errno, undefined);
      assert.match(err.message, /^Cannot resolve "nonexistent\.invalid": EAI_(NONAME|AGAIN) \(getaddrinfo\): \S/);
    });
  });

  await t.step("an empty host is a TypeError, before any lookup", async () => {
    await assert.rejects(getaddrinfo(""), {
      name: "TypeError",
      message: 'Cannot resolve "": the host name is empty',
    });
  });

  await t.step("a host with a NUL byte is a TypeError", async () => {
    await assert.rejects(getaddrinfo("localhost\0.evil"), {
      name: "TypeError",
      message: 'Cannot resolve "localhost\\u0000.evil": the host contains a NUL byte',
    });
  });

  await t.step("an unknown family is a TypeError", async () => {
    await assert.rejects(getaddrinfo("localhost", { family: 5 } as unknown as GetAddrInfoOptions), {
      name: "TypeError",
      message: "Address family must be 0, 4 or 6, got 5",
    });
  });

  await t.step("GaiError describes EAI_SYSTEM without pretending to know errno", () => {
    const err = new GaiError(-11, "example.test", "System error");
    assert.equal(err.code, "EAI_SYSTEM");
    assert.equal(err.errno, undefined);
    assert.equal(
      err.message,
      'Cannot resolve "example.test": EAI_SYSTEM (getaddrinfo): System error (errno unknown: the lookup ran on another thread)',
    );
    const known = new GaiError(-11, "example.test", "System error", 24);
    assert.equal(known.errno, 24);
    assert.equal(known.message, 'Cannot resolve "example.test": EAI_SYSTEM (getaddrinfo): System error (EMFILE)');
    assert.equal(new GaiError(-100, "x").code, "EAI-100");
  });
});

Deno.test("`getaddrinfo()` under concurrency", async (t) => {
  await t.step("50 lookups at once all settle, each with its own result", async () => {
    await assertNoFdLeak(async () => {
      // No DNS here: names from /etc/hosts and numeric addresses, every fifth one failing with EAI_ADDRFAMILY.
      const hosts = ["localhost", "127.0.0.1", "::1", "localhost", "::1"];
      const lookups = Array.from({ length: 50 }, (_, i) => {
        const host = hosts[i % hosts.length];
        const failing = i % 5 === 4;
        return { host, failing, settled: getaddrinfo(host, { family: failing ? 4 : 0 }) };
      });
      const results = await within(Promise.allSettled(lookups.map((l) => l.settled)), "50 concurrent lookups");
      results.forEach((r, i) => {
        const { host, failing } = lookups[i];
        if (failing) {
          assert.equal(r.status, "rejected", `#${i} ${host}`);
          assert.ok(r.reason instanceof GaiError && r.reason.code === "EAI_ADDRFAMILY", `#${i}: ${r.reason}`);
        } else {
          assert.equal(r.status, "fulfilled", `#${i} ${host}: ${r.status === "rejected" ? r.reason : ""}`);
          const got = sortedAddresses(r.value);
          if (host === "localhost") assert.deepEqual(got, [...LOCALHOST.v4, ...LOCALHOST.v6].sort());
          else assert.deepEqual(got, [host]);
        }
      });
    });
  });
});

function onPath(cmd: string): boolean {
  return (Deno.env.get("PATH") ?? "").split(":").some((dir) => {
    try {
      return dir !== "" && Deno.statSync(`${dir}/${cmd}`).isFile;
    } catch {
      return false;
    }
  });
}

/** Whether glibc's DNS backend is consulted for host names, which the blocking fixture relies on. */
function nsswitchUsesDns(): boolean {
  try {
    const hosts = Deno.readTextFileSync("/etc/nsswitch.conf").split("\n").find((l) => /^\s*hosts:/.test(l));
    return hosts !== undefined && /\bdns\b/.test(hosts);
  } catch {
    return false;
  }
}

Deno.test({
  name: "`getaddrinfo()` leaves the JS thread free while a lookup is pending",
  ignore: !onPath("mkfifo") || !nsswitchUsesDns(),
  async fn() {
    // tests/fixtures/gai_blocked.ts holds a lookup inside getaddrinfo (opening a FIFO named by HOSTALIASES)
    // until its own setTimeout(0) callbacks have run: a lookup on the JS thread would hang it for good.
    await assertNoFdLeak(async () => {
      const dir = await Deno.makeTempDir({ prefix: "fdloop_gai_" });
      const fifo = `${dir}/aliases`;
      try {
        const mk = await new Deno.Command("mkfifo", { args: [fifo], stderr: "piped" }).output();
        assert.equal(mk.code, 0, new TextDecoder().decode(mk.stderr));
        const child = new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "--allow-ffi",
            "--allow-env=HOSTALIASES",
            `--allow-read=${dir}`,
            `--allow-write=${dir}`,
            `${FIXTURES}gai_blocked.ts`,
            fifo,
          ],
          env: { HOSTALIASES: fifo, NO_COLOR: "1" },
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        let out: Deno.CommandOutput;
        try {
          out = await within(child.output(), "the blocked-lookup fixture");
        } catch (err) {
          child.kill("SIGKILL");
          await child.status;
          throw err;
        }
        const stderr = new TextDecoder().decode(out.stderr);
        assert.equal(out.code, 0, stderr);
        const report = JSON.parse(new TextDecoder().decode(out.stdout));
        assert.equal(report.pendingAfterTimers, true, "the lookup settled before the FIFO was opened");
        assert.equal(report.ticks, 5);
        assert.match(report.outcome, /^EAI_[A-Z]+$/, `the lookup should fail after the FIFO opens: ${report.outcome}`);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  },
});
