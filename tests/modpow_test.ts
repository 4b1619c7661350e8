/**
 * modpow and the fixed-base comb (fixedBaseModpow, derivePublicKey) against
 * real OpenSSL: Node's `crypto.createDiffieHellman(p, 2).setPrivateKey(x)
 * .computeSecret(y)` (OpenSSL's BN_mod_exp), run as a `node` child process,
 * on seeded random inputs for every RFC group, with short (private-key size)
 * and full-length exponents.
 *
 * Needs `run: node` (`deno test -P tests/modpow_test.ts`). Without it, or
 * without Node.js installed (then Deno runs itself for `node`: comparing Deno
 * with Deno would prove nothing), the test is reported as ignored and a line
 * says so; with DHX_REQUIRE_TOOLS=1 (CI) a missing Node.js fails it.
 *
 * dh_test.ts checks the same functions against Deno's in-process node:crypto
 * on other inputs (its own seed, plus fixed edge cases); no case is shared.
 */

import assert from "node:assert/strict";
import { derivePublicKey, type DhGroup, fixedBaseModpow, GROUPS, modpow } from "../dh.ts";
import { checkNode, seededRandom } from "./support.ts";

/** This file's seed (dh_test.ts uses another): failures reproduce. */
const SEED = 0x6f70_656e;
const random = seededRandom(SEED);

const RFC_GROUPS: readonly DhGroup[] = Object.values(GROUPS).filter((g) => g.name !== "toy");

// ── Is `node` Node.js with OpenSSL? ─────────────────────────────────────────

const NODE = checkNode("modpow against OpenSSL (tests/modpow_test.ts)");

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
