/**
 * The fixed inputs of the modpow benchmarks (bench/modpow_inputs.json), shared
 * by bench/modpow_bench.ts and bench/compare.ts; bench/openssl.mjs reads the
 * same JSON.
 *
 * @module
 */

import { createDiffieHellman } from "node:crypto";
import { bigintToBytes } from "../dh.ts";
import inputs from "./modpow_inputs.json" with { type: "json" };

/** One benchmark case: a group's p, a base and an exponent. */
export interface ModpowCase {
  /** e.g. "ffdhe2048 256-bit x, random base". */
  readonly name: string;
  readonly p: bigint;
  readonly base: bigint;
  readonly exponent: bigint;
}

/** Every case of bench/modpow_inputs.json, once with its random base, once with g = 2. */
export const MODPOW_CASES: readonly ModpowCase[] = inputs.cases.flatMap((c) => {
  const p = BigInt("0x" + c.p);
  const exponent = BigInt("0x" + c.exponent);
  const prefix = `${c.group} ${c.exponentBits}-bit x`;
  return [
    { name: `${prefix}, random base`, p, base: BigInt("0x" + c.base), exponent },
    { name: `${prefix}, g = 2`, p, base: 2n, exponent },
  ];
});

/** Deno's node:crypto: base^exponent mod p via a DiffieHellman object set up once. */
export function denoNodeCryptoPow(c: ModpowCase): () => Uint8Array {
  const bytes = (n: bigint) => bigintToBytes(n, Math.ceil(n.toString(16).length / 2));
  const dh = createDiffieHellman(bytes(c.p), Uint8Array.of(2));
  dh.setPrivateKey(bytes(c.exponent));
  const peer = bytes(c.base);
  return () => new Uint8Array(dh.computeSecret(peer));
}
