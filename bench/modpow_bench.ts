/**
 * modpow benchmarks: ours (sliding windows; the fixed-base comb for g = 2),
 * the naive square-and-multiply, `@noble/curves` `mod.pow` and Deno's own
 * node:crypto (`createDiffieHellman(p, 2).setPrivateKey(x).computeSecret(y)`,
 * a Rust implementation, not OpenSSL). Inputs are fixed: bench/modpow_inputs.json.
 *
 * ```sh
 * deno task bench                 # this file and records_bench.ts
 * deno task bench:compare         # ratios against OpenSSL (node) and noble
 * ```
 *
 * OpenSSL itself runs under node: `node bench/openssl.mjs`.
 *
 * @module
 */

import { pow as noblePow } from "npm:@noble/curves@1/abstract/modular";
import { fixedBaseModpow, modpow, modpowNaive } from "../dh.ts";
import { denoNodeCryptoPow, MODPOW_CASES } from "./modpow_cases.ts";

for (const c of MODPOW_CASES) {
  const { p, base, exponent } = c;
  const fixed = base === 2n;
  if (fixed) fixedBaseModpow(base, exponent, p); // build the comb outside the timing
  Deno.bench(fixed ? "ours: fixedBaseModpow (derivePublicKey)" : "ours: modpow", {
    group: c.name,
    baseline: true,
  }, () => {
    fixed ? fixedBaseModpow(base, exponent, p) : modpow(base, exponent, p);
  });
  if (fixed) {
    Deno.bench("ours: modpow (generic)", { group: c.name }, () => void modpow(base, exponent, p));
  }
  Deno.bench("naive square-and-multiply", { group: c.name }, () => {
    modpowNaive(base, exponent, p);
  });
  Deno.bench("@noble/curves mod.pow", { group: c.name }, () => void noblePow(base, exponent, p));
  const computeSecret = denoNodeCryptoPow(c);
  Deno.bench("Deno node:crypto computeSecret (not OpenSSL)", { group: c.name }, () => {
    computeSecret();
  });
}
