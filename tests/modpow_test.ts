/**
 * modpow and the fixed-base comb (fixedBaseModpow, derivePublicKey) against
 * real OpenSSL: Node's `crypto.createDiffieHellman(p, 2).setPrivateKey(x)
 * .computeSecret(y)` (OpenSSL's BN_mod_exp), run as a `node` child process,
 * on seeded random inputs for every RFC group, with short (private-key size)
 * and full-length exponents.
 *
 * Needs `run: node` (`deno test -P tests/modpow_test.ts`). Without it, or
 * without Node installed, the test is reported as ignored and a line says so.
 * A `node` that is not Node.js with OpenSSL (under Deno, `node` may resolve
 * to Deno itself) fails the test: comparing Deno with Deno proves nothing.
 *
 * dh_test.ts checks the same functions against Deno's in-process node:crypto
 * on other inputs (its own seed, plus fixed edge cases); no case is shared.
 */

import assert from "node:assert/strict";
import { derivePublicKey, type DhGroup, fixedBaseModpow, GROUPS, modpow } from "../dh.ts";
import { lacks, seededRandom } from "./support.ts";

/** This file's seed (dh_test.ts uses another): failures reproduce. */
const SEED = 0x6f70_656e;
const random = seededRandom(SEED);

const RFC_GROUPS: readonly DhGroup[] = Object.values(GROUPS).filter((g) => g.name !== "toy");

// ── Is `node` Node.js with OpenSSL? ─────────────────────────────────────────

const PROBE = "process.stdout.write(JSON.stringify({deno: typeof Deno, " +
  "node: process.version, openssl: process.versions.openssl ?? null}))";

interface NodeCheck {
  /** Report the test as ignored: node cannot be run at all. */
  readonly ignore: boolean;
  /** Why the test must fail (node runs but is not usable as the oracle). */
  readonly problem?: string;
  /** "Node v20…, OpenSSL 3…" once confirmed. */
  readonly version?: string;
}

function loud(message: string): void {
  console.log(`\n[!] tests/modpow_test.ts: ${message}\n`);
}

function checkNode(): NodeCheck {
  if (lacks("run")) {
    loud(
      "node may not be run here (no run permission, or not on PATH): the OpenSSL comparison is " +
        "IGNORED, not passed (deno test -P)",
    );
    return { ignore: true };
  }
  let output: Deno.CommandOutput;
  try {
    output = new Deno.Command("node", { args: ["-e", PROBE], stdout: "piped", stderr: "piped" })
      .outputSync();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      loud("`node` is not installed: the OpenSSL comparison is IGNORED, not passed");
      return { ignore: true };
    }
    if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
      loud(`\`node\` cannot be run (${error.name}): the OpenSSL comparison is IGNORED, not passed`);
      return { ignore: true };
    }
    return { ignore: false, problem: `starting node failed: ${error}` };
  }
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr);
  let info: { deno?: unknown; node?: unknown; openssl?: unknown } = {};
  try {
    info = JSON.parse(stdout);
  } catch {
    // judged below
  }
  const problem = !output.success
    ? `node exited with ${output.code}: ${stderr.trim() || stdout.trim()}`
    : info.deno !== "undefined"
    ? `\`node\` is not Node.js (typeof Deno is ${JSON.stringify(info.deno)}): ` +
      "it would compare Deno with Deno"
    : typeof info.openssl !== "string" || !/^\d+\.\d+\.\d+/.test(info.openssl)
    ? `\`node\` reports no OpenSSL version (${JSON.stringify(info.openssl)}): ${stdout}`
    : undefined;
  if (problem) {
    loud(`${problem} — the OpenSSL comparison FAILS`);
    return { ignore: false, problem };
  }
  return { ignore: false, version: `Node ${info.node}, OpenSSL ${info.openssl}` };
}

const NODE = checkNode();

// ── Cases ───────────────────────────────────────────────────────────────────

type Kind = "modpow" | "fixedBaseModpow";

interface Case {
  readonly kind: Kind;
  readonly group: DhGroup;
  readonly label: string;
  readonly base: bigint;
  readonly exponent: bigint;
}

/** A short exponent (the group's private-key size) or a full-length one in [2^(bits−2), p − 2]. */
function exponent(group: DhGroup, size: "short" | "full"): bigint {
  return size === "short"
    ? random.exactBits(group.privateKeyBits)
    : random.between(1n << BigInt(group.bits - 2), group.p - 2n);
}

/** Per group: modpow with random bases; the comb with g (as derivePublicKey uses it) and random bases. */
function groupCases(group: DhGroup): Case[] {
  const randomBase = () => random.between(2n, group.p - 2n);
  const plan: [Kind, "g" | "random", "short" | "full"][] = [
    ["modpow", "random", "short"],
    ["modpow", "random", "short"],
    ["modpow", "random", "full"],
    ["fixedBaseModpow", "g", "short"],
    ["fixedBaseModpow", "g", "short"], // the cached comb
    ["fixedBaseModpow", "g", "full"],
    ["fixedBaseModpow", "random", "short"],
    ["fixedBaseModpow", "random", "full"],
  ];
  return plan.map(([kind, base, size], i) => ({
    kind,
    group,
    label: `${group.name} #${i} ${kind}, ${base === "g" ? "g" : "random base"}, ${size} exponent`,
    base: base === "g" ? group.g : randomBase(),
    exponent: exponent(group, size),
  }));
}

const CASES: readonly Case[] = RFC_GROUPS.flatMap(groupCases);

// ── The oracle ──────────────────────────────────────────────────────────────

/** Reads [[p, y, x], …] in hex on stdin; writes [y^x mod p, …] in hex (OpenSSL via node:crypto). */
const NODE_SCRIPT = `
const crypto = require("node:crypto");
const cases = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
const bytes = (hex) => Buffer.from(hex.length % 2 ? "0" + hex : hex, "hex");
process.stdout.write(JSON.stringify(cases.map(([p, y, x]) => {
  const dh = crypto.createDiffieHellman(bytes(p), 2);
  dh.setPrivateKey(bytes(x));
  return dh.computeSecret(bytes(y)).toString("hex");
})));
`;

async function opensslResults(cases: readonly Case[]): Promise<bigint[]> {
  const child = new Deno.Command("node", {
    args: ["-e", NODE_SCRIPT],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const input = cases.map((c) => [c.group.p, c.base, c.exponent].map((n) => n.toString(16)));
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(input)));
  await writer.close();
  const { success, code, stdout, stderr } = await child.output();
  assert.ok(success, `node exited with ${code}: ${new TextDecoder().decode(stderr)}`);
  const hexes: unknown = JSON.parse(new TextDecoder().decode(stdout));
  assert.ok(Array.isArray(hexes) && hexes.length === cases.length, "one result per case");
  return hexes.map((hex) => BigInt("0x" + hex));
}

// ── The test ────────────────────────────────────────────────────────────────

Deno.test({
  name:
    "modpow and fixedBaseModpow equal OpenSSL (node) on every RFC group, short and full exponents",
  ignore: NODE.ignore,
  fn: async (t) => {
    if (NODE.problem) assert.fail(NODE.problem);
    assert.equal(CASES.length, 8 * 8);
    // Every case is distinct: no input is checked twice.
    const keys = new Set(CASES.map((c) => `${c.group.name}:${c.base}:${c.exponent}`));
    assert.equal(keys.size, CASES.length);

    const expected = await opensslResults(CASES);
    let checked = 0;
    for (const group of RFC_GROUPS) {
      await t.step(`${group.name} (${NODE.version})`, () => {
        for (const [i, c] of CASES.entries()) {
          if (c.group !== group) continue;
          assert.ok(expected[i] > 1n && expected[i] < group.p, `${c.label}: OpenSSL's result`);
          const actual = c.kind === "modpow"
            ? modpow(c.base, c.exponent, group.p)
            : fixedBaseModpow(c.base, c.exponent, group.p);
          assert.equal(actual, expected[i], c.label);
          if (c.base === group.g) {
            assert.equal(
              derivePublicKey(group, c.exponent),
              expected[i],
              `${c.label}: derivePublicKey`,
            );
          }
          checked++;
        }
      });
    }
    assert.equal(checked, CASES.length);
  },
});
