/**
 * modpow and the fixed-base path against two oracles: OpenSSL (Node's
 * `crypto.createDiffieHellman(p, 2).setPrivateKey(x).computeSecret(y)`, run
 * under `node`, and Deno's own node:crypto) and the plain square-and-multiply
 * `modpowNaive`.
 *
 * Run: `deno test -P tests/modpow_test.ts` (permissions from deno.json).
 */

import assert from "node:assert/strict";
import { createDiffieHellman } from "node:crypto";
import {
  bigintToBytes,
  bitLength,
  bytesToBigint,
  derivePublicKey,
  type DhGroup,
  fixedBaseModpow,
  GROUPS,
  modpow,
  modpowNaive,
} from "../dh.ts";

// ── Inputs ──────────────────────────────────────────────────────────────────

/** A seeded xorshift generator, so that failures reproduce. */
function rng(seed: number) {
  let s = BigInt(seed) | 1n;
  const next64 = () => {
    s ^= (s << 13n) & 0xffffffffffffffffn;
    s ^= s >> 7n;
    s ^= (s << 17n) & 0xffffffffffffffffn;
    return s;
  };
  /** A random number of exactly `bits` bits (top bit set), 0 for 0 bits. */
  const exactBits = (bits: number): bigint => {
    if (bits <= 0) return 0n;
    let n = 0n;
    for (let i = 0; i < bits; i += 64) n = (n << 64n) | next64();
    return BigInt.asUintN(bits, n) | (1n << BigInt(bits - 1));
  };
  /** Uniform-ish in [lo, hi]. */
  const between = (lo: bigint, hi: bigint): bigint => {
    const range = hi - lo + 1n;
    return lo + exactBits(bitLength(range) + 64) % range;
  };
  return { exactBits, between, int: (n: number) => Number(next64() % BigInt(n)) };
}

const SEED = 20240611;
const random = rng(SEED);

const RFC_GROUPS: DhGroup[] = Object.values(GROUPS).filter((g) => g.name !== "toy");

interface Case {
  label: string;
  p: bigint;
  base: bigint;
  exponent: bigint;
}

/** Random base in [2, p − 2] (what OpenSSL accepts as a peer key) with a short
 *  (private-key size) and a full-length exponent. */
function groupCases(group: DhGroup, full = true): Case[] {
  const base = () => random.between(2n, group.p - 2n);
  const cases = [
    {
      label: `${group.name} short`,
      p: group.p,
      base: base(),
      exponent: random.exactBits(group.privateKeyBits),
    },
    { label: `${group.name} 256-bit`, p: group.p, base: base(), exponent: random.exactBits(256) },
  ];
  if (full) {
    cases.push({
      label: `${group.name} full`,
      p: group.p,
      base: base(),
      exponent: random.exactBits(group.bits - 1),
    });
  }
  return cases;
}

const OPENSSL_CASES: Case[] = [
  ...groupCases(GROUPS.ffdhe2048),
  ...groupCases(GROUPS.modp2048),
  ...groupCases(GROUPS.ffdhe3072),
  ...groupCases(GROUPS.ffdhe4096),
  ...groupCases(GROUPS.modp4096, false),
  ...groupCases(GROUPS.ffdhe6144, false),
  ...groupCases(GROUPS.ffdhe8192),
];

// ── Oracles ─────────────────────────────────────────────────────────────────

const NODE_SCRIPT = `
const crypto = require("node:crypto");
const cases = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
const hex = (s) => Buffer.from(s.length % 2 ? "0" + s : s, "hex");
console.log(JSON.stringify(cases.map(([p, y, x]) => {
  const dh = crypto.createDiffieHellman(hex(p), 2);
  dh.setPrivateKey(hex(x));
  return dh.computeSecret(hex(y)).toString("hex");
})));
`;

/** [base^exponent mod p] for each case, from OpenSSL under `node`; null without node. */
async function opensslResults(cases: Case[]): Promise<bigint[] | null> {
  let child;
  try {
    child = new Deno.Command("node", {
      args: ["-e", NODE_SCRIPT],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
  const writer = child.stdin.getWriter();
  const input = cases.map((c) => [c.p, c.base, c.exponent].map((n) => n.toString(16)));
  await writer.write(new TextEncoder().encode(JSON.stringify(input)));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  if (code !== 0) throw new Error(`node failed: ${new TextDecoder().decode(stderr)}`);
  const hexes: string[] = JSON.parse(new TextDecoder().decode(stdout));
  return hexes.map((h) => BigInt("0x" + h));
}

/** base^exponent mod p from Deno's node:crypto (p prime, 1 < base < p − 1). */
function denoNodeCrypto(c: Case): bigint {
  const bytes = (n: bigint) => bigintToBytes(n, Math.max(1, Math.ceil(bitLength(n) / 8)));
  const dh = createDiffieHellman(bytes(c.p), Uint8Array.of(2));
  dh.setPrivateKey(bytes(c.exponent));
  return bytesToBigint(new Uint8Array(dh.computeSecret(bytes(c.base))));
}

// ── Tests ───────────────────────────────────────────────────────────────────

Deno.test("modpow equals OpenSSL (node) on RFC groups, short and full exponents", async (t) => {
  const expected = await opensslResults(OPENSSL_CASES);
  if (expected === null) {
    // No node on this machine: Deno's node:crypto is the oracle instead.
    console.warn("node not found; using Deno's node:crypto as the oracle");
  }
  for (const [i, c] of OPENSSL_CASES.entries()) {
    await t.step(c.label, () => {
      const want = expected?.[i] ?? denoNodeCrypto(c);
      assert.equal(modpow(c.base, c.exponent, c.p), want);
    });
  }
});

Deno.test("modpow equals Deno's node:crypto on 2048/3072/4096-bit groups", () => {
  for (const group of [GROUPS.ffdhe2048, GROUPS.modp3072, GROUPS.ffdhe4096]) {
    for (const c of groupCases(group, group.bits === 2048)) {
      assert.equal(modpow(c.base, c.exponent, c.p), denoNodeCrypto(c), c.label);
    }
  }
});

Deno.test("modpow equals modpowNaive on random 2048/3072/4096-bit moduli", () => {
  for (const bits of [2048, 3072, 4096]) {
    for (const odd of [true, false]) {
      const p = odd ? random.exactBits(bits) | 1n : random.exactBits(bits) & ~1n;
      const base = random.exactBits(bits + 8); // ≥ modulus: reduced first
      for (const exponentBits of [256, 320, bits]) {
        if (exponentBits === bits && bits > 2048 && !odd) continue; // time budget
        const exponent = random.exactBits(exponentBits);
        assert.equal(
          modpow(base, exponent, p),
          modpowNaive(base, exponent, p),
          `${bits}-bit ${odd ? "odd" : "even"} modulus, ${exponentBits}-bit exponent`,
        );
      }
    }
  }
});

Deno.test("modpow equals modpowNaive on small and medium moduli, odd and even", () => {
  for (let i = 0; i < 600; i++) {
    const p = random.exactBits(1 + random.int(i < 300 ? 40 : 700)) + 2n;
    const base = random.exactBits(random.int(bitLength(p) + 20));
    const exponent = random.exactBits(random.int(i % 3 === 0 ? 1200 : 90));
    assert.equal(
      modpow(base, exponent, p),
      modpowNaive(base, exponent, p),
      `${base}^${exponent} % ${p}`,
    );
  }
  for (let p = 2n; p < 40n; p++) {
    for (let base = 0n; base < 2n * p + 2n; base++) {
      for (let exponent = 0n; exponent < 20n; exponent++) {
        assert.equal(modpow(base, exponent, p), (base ** exponent) % p);
      }
    }
  }
});

Deno.test("modpow and fixedBaseModpow: edge cases", () => {
  const cases: [bigint, bigint][] = [];
  for (const p of [GROUPS.ffdhe2048.p, GROUPS.ffdhe4096.p, random.exactBits(3000) & ~1n]) {
    const x = random.exactBits(300);
    cases.push(
      [0n, 0n],
      [0n, 1n],
      [0n, x],
      [1n, x],
      [p - 1n, 0n],
      [p - 1n, 1n],
      [p - 1n, 2n],
      [p - 1n, x],
      [p - 1n, x | 1n],
      [p, x],
      [p, 0n],
      [p + 5n, x],
      [3n * p + 7n, 1n],
      [p * p + 2n, x],
      [2n, 1n],
      [2n, x],
    );
    for (const [base, exponent] of cases) {
      const want = modpowNaive(base, exponent, p);
      assert.equal(modpow(base, exponent, p), want, `modpow(${base}, ${exponent})`);
      assert.equal(
        fixedBaseModpow(base, exponent, p),
        want,
        `fixedBaseModpow(${base}, ${exponent})`,
      );
    }
    cases.length = 0;
  }
  assert.equal(modpow(5n, 0n, 2n), 1n);
  assert.equal(modpow(0n, 0n, 7n), 1n);
  assert.equal(modpow(7n, 1n, 7n), 0n);
  assert.equal(modpow(6n, 1n, 7n), 6n);
  assert.equal(modpow(6n, 2n, 7n), 1n);
  assert.equal(fixedBaseModpow(5n, 0n, 2n), 1n);
  assert.equal(fixedBaseModpow(3n, 1n, 2n), 1n);
  for (const f of [modpow, fixedBaseModpow, modpowNaive]) {
    assert.throws(() => f(-1n, 2n, 7n), RangeError);
    assert.throws(() => f(2n, -1n, 7n), RangeError);
    assert.throws(() => f(2n, 3n, 1n), RangeError);
    assert.throws(() => f(2n, 3n, 0n), RangeError);
    assert.throws(() => f(2n, 3n, -7n), RangeError);
  }
});

Deno.test("fixed-base path: every named group's g, short and full exponents", () => {
  for (const group of Object.values(GROUPS)) {
    const exponents = [
      random.exactBits(group.privateKeyBits),
      random.exactBits(256),
      1n,
      2n,
    ];
    // Full-length exponents build a comb 8× wider: only up to 4096 bits (time).
    if (group.bits <= 4096) exponents.push(group.p - 2n, random.exactBits(group.bits - 1));
    for (const x of exponents) {
      const want = modpow(group.g, x, group.p); // checked against OpenSSL above
      assert.equal(
        fixedBaseModpow(group.g, x, group.p),
        want,
        `${group.name}, ${bitLength(x)} bits`,
      );
      if (x >= 1n && x <= group.p - 2n) assert.equal(derivePublicKey(group, x), want, group.name);
    }
  }
});

Deno.test("fixed-base path equals OpenSSL (node) for g = 2 of the RFC groups", async () => {
  const cases = RFC_GROUPS.map((group) => ({
    label: group.name,
    p: group.p,
    base: 2n,
    exponent: random.exactBits(group.privateKeyBits),
  }));
  const expected = await opensslResults(cases) ?? cases.map(denoNodeCrypto);
  for (const [i, c] of cases.entries()) {
    const group = RFC_GROUPS[i];
    assert.equal(derivePublicKey(group, c.exponent), expected[i], c.label);
  }
});

Deno.test("fixed-base path: random bases, odd and even moduli, many tables", () => {
  // More (modulus, base) pairs than the caches hold: evictions must not matter.
  for (let i = 0; i < 40; i++) {
    const bits = [17, 64, 255, 512, 1024, 2048, 2500][i % 7];
    const p = random.exactBits(bits) + (i % 2 === 0 ? 1n : 0n);
    if (p < 2n) continue;
    const base = random.exactBits(bits + 3);
    for (const exponentBits of [1, 7, 64, 65, 200, 513]) {
      const x = random.exactBits(exponentBits);
      assert.equal(fixedBaseModpow(base, x, p), modpowNaive(base, x, p), `${bits} bits, i=${i}`);
    }
  }
});
