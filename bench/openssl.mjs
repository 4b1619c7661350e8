/**
 * OpenSSL's modular exponentiation for the cases of bench/modpow_inputs.json,
 * under Node.js: `crypto.createDiffieHellman(p, 2).setPrivateKey(x)
 * .computeSecret(y)` (OpenSSL's constant-time Montgomery exponentiation).
 *
 * ```sh
 * node bench/openssl.mjs            # a table, µs per operation
 * node bench/openssl.mjs --json     # [{ name, us }] for bench/compare.ts
 * node bench/openssl.mjs --rounds 5 --min-ms 300
 * ```
 *
 * Each case runs `rounds` times for at least `min-ms` milliseconds; the
 * fastest round counts (the least disturbed by the rest of the machine).
 */

import crypto from "node:crypto";
import { readFileSync } from "node:fs";
import { microsecondsPerCall } from "./timing.mjs";

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const json = args.includes("--json");
const rounds = option("--rounds", 3);
const minMs = option("--min-ms", 200);

const inputs = JSON.parse(readFileSync(new URL("./modpow_inputs.json", import.meta.url), "utf8"));
const hex = (s) => Buffer.from(s.length % 2 ? "0" + s : s, "hex");

/** Microseconds per call of `f`: the best of `rounds` timed loops. */
function measure(f) {
  f();
  let best = Infinity;
  for (let round = 0; round < rounds; round++) best = Math.min(best, microsecondsPerCall(f, minMs));
  return best;
}

const results = [];
for (const c of inputs.cases) {
  const dh = crypto.createDiffieHellman(hex(c.p), 2);
  dh.setPrivateKey(hex(c.exponent));
  const prefix = `${c.group} ${c.exponentBits}-bit x`;
  for (const [label, base] of [["random base", hex(c.base)], ["g = 2", Buffer.from([2])]]) {
    results.push({ name: `${prefix}, ${label}`, us: measure(() => dh.computeSecret(base)) });
  }
}

if (json) {
  console.log(
    JSON.stringify({ node: process.version, openssl: process.versions.openssl, results }),
  );
} else {
  console.log(`Node ${process.version}, OpenSSL ${process.versions.openssl}: computeSecret`);
  for (const { name, us } of results) {
    console.log(`${name.padEnd(36)} ${us.toFixed(1).padStart(10)} µs`);
  }
}
