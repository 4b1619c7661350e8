/**
 * dhx core: Diffie-Hellman key agreement and the DHX/1 records, with no I/O.
 *
 * Everything a DHX/1 session computes lives here, in the order a session
 * happens, each part using only what is defined above it:
 *
 * 1. groups — the RFC 3526 / RFC 7919 groups (their primes are in
 *    `primes.ts`) and the original's toy group;
 * 2. arithmetic — bigint `modpow`, primality, byte conversions and `xor`;
 * 3. keys — custom groups, private and public keys, wire integers;
 * 4. key schedule — transcript hash, HKDF, fingerprint;
 * 5. authentication (revision 3) — the server's Ed25519 host key and its
 *    proof, the room password's generator G;
 * 6. records — the handshake frames and the sealed records of a {@link Session}.
 *
 * No sockets, no console, no timers: the transport (`transport.ts`) and the
 * command line (`console.ts`) are modules of their own; SHA-256, HMAC and
 * HKDF live in `hash.ts`. The primitives are Deno built-ins: bigints for the
 * group arithmetic, synchronous `node:crypto` for AES-256 and Ed25519 (faster
 * than WebCrypto's asynchronous calls for work this small, and nothing to
 * download).
 *
 * @example Agree on a key by hand (the original's numbers)
 * ```ts
 * import { GROUPS, modpow } from "./dh.ts";
 *
 * const { p, g } = GROUPS.toy; // p = 23, g = 5
 * const A = modpow(g, 5n, p); // client: 20
 * const B = modpow(g, 3n, p); // server: 10
 * console.log(modpow(B, 5n, p) === modpow(A, 3n, p)); // true: both get 19
 * ```
 *
 * @module
 */

import { Buffer } from "node:buffer";
import {
  type Cipheriv,
  createCipheriv,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  sign,
  timingSafeEqual,
  verify,
} from "node:crypto";
import { hkdfSha256, HmacSha256, sha256 } from "./hash.ts";
import { RFC_PRIMES, type RfcGroupName } from "./primes.ts";

export { sha256 };

const encoder = new TextEncoder();
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * The one error type of a DHX/1 session: a peer broke the protocol, sent
 * something we refuse, or went away. `message` is written for the person at
 * the keyboard (what happened and, where it helps, what to do about it). It
 * may quote the peer: escape it before it reaches a terminal.
 */
export class ProtocolError extends Error {
  /** True when the peer itself reported the error with an `error` frame. */
  readonly fromPeer: boolean;

  /**
   * Creates the error.
   *
   * @param message what went wrong, phrased for a user
   * @param fromPeer whether the text came from the peer's `error` frame
   */
  constructor(message: string, fromPeer = false) {
    super(message);
    this.name = "ProtocolError";
    this.fromPeer = fromPeer;
  }
}

/** A short description of a JSON value for error messages (not escaped). */
export function describeJson(value: unknown): string {
  if (value === undefined) return "nothing";
  if (typeof value === "number" && !Number.isFinite(value)) return String(value);
  const text = typeof value === "bigint" ? `${value}n` : JSON.stringify(value) ?? String(value);
  return text.length > 40 ? text.slice(0, 37) + "..." : text;
}

// ───────────────────────────────────────────────────────────────────────────
// 1. Groups
// ───────────────────────────────────────────────────────────────────────────

/** Names of the groups this implementation knows (DHX/1 §Handshake 1). */
export type GroupName = "toy" | RfcGroupName;

/** A Diffie-Hellman group: prime modulus `p` and generator `g`. */
export interface DhGroup {
  /** Wire name; `custom` for parameters that are not in {@link GROUPS}. */
  readonly name: GroupName | "custom";
  /** The prime modulus. */
  readonly p: bigint;
  /** The generator. */
  readonly g: bigint;
  /** Bit length of `p`. */
  readonly bits: number;
  /** Byte length of `p`: the width of `Zbytes` in the key schedule. */
  readonly byteLength: number;
  /** `p` in decimal, as it goes on the wire (converted once, not per hello). */
  readonly pDecimal: string;
  /**
   * Private-key size in bits: twice the group's security strength, as
   * RFC 7919 §5.2 / RFC 3526 §8 advise and OpenSSL uses (225 for ffdhe2048).
   * For toy and custom groups: the size of p (keys are drawn below p − 1).
   */
  readonly privateKeyBits: number;
  /** Where the group comes from, for humans. */
  readonly source: string;
}

/** Number of bits of a non-negative bigint (0 for 0). */
export function bitLength(n: bigint): number {
  if (n < 0n) throw new RangeError("bitLength of a negative number");
  return n === 0n ? 0 : n.toString(2).length;
}

function makeGroup(
  name: GroupName | "custom",
  p: bigint,
  g: bigint,
  privateKeyBits: number | undefined,
  source: string,
): DhGroup {
  const bits = bitLength(p);
  return Object.freeze({
    name,
    p,
    g,
    bits,
    byteLength: Math.ceil(bits / 8),
    pDecimal: p.toString(),
    privateKeyBits: privateKeyBits ?? bits,
    source,
  });
}

/**
 * The named groups of DHX/1. `toy` is the original's p = 23, g = 5; all others
 * are RFC safe primes with g = 2. `dh_test.ts` proves every constant against
 * OpenSSL / Node and checks that each p and (p − 1)/2 are prime.
 */
export const GROUPS: Readonly<Record<GroupName, DhGroup>> = Object.freeze({
  toy: makeGroup("toy", 23n, 5n, undefined, "the original dhx (insecure)"),
  modp2048: makeGroup("modp2048", RFC_PRIMES.modp2048, 2n, 225, "RFC 3526 group 14"),
  modp3072: makeGroup("modp3072", RFC_PRIMES.modp3072, 2n, 275, "RFC 3526 group 15"),
  modp4096: makeGroup("modp4096", RFC_PRIMES.modp4096, 2n, 325, "RFC 3526 group 16"),
  ffdhe2048: makeGroup("ffdhe2048", RFC_PRIMES.ffdhe2048, 2n, 225, "RFC 7919"),
  ffdhe3072: makeGroup("ffdhe3072", RFC_PRIMES.ffdhe3072, 2n, 275, "RFC 7919"),
  ffdhe4096: makeGroup("ffdhe4096", RFC_PRIMES.ffdhe4096, 2n, 325, "RFC 7919"),
  ffdhe6144: makeGroup("ffdhe6144", RFC_PRIMES.ffdhe6144, 2n, 375, "RFC 7919"),
  ffdhe8192: makeGroup("ffdhe8192", RFC_PRIMES.ffdhe8192, 2n, 400, "RFC 7919"),
});

/** The groups a client accepts without `--toy`: every RFC group. */
export const SECURE_GROUP_NAMES: readonly GroupName[] = Object.freeze(
  (Object.keys(GROUPS) as GroupName[]).filter((name) => name !== "toy"),
);

/** The default group of the server. */
export const DEFAULT_GROUP: GroupName = "ffdhe2048";

/** Largest modulus accepted anywhere, in bits (that of ffdhe8192). */
export const MAX_GROUP_BITS = 8192;

/** True if `name` is one of {@link GROUPS}' keys. */
export function isGroupName(name: unknown): name is GroupName {
  return typeof name === "string" && Object.hasOwn(GROUPS, name);
}

/** Whether a group is a teaching group (`toy` or `custom`), insecure by design. */
export function isTeachingGroup(group: DhGroup): boolean {
  return group.name === "toy" || group.name === "custom";
}

// ───────────────────────────────────────────────────────────────────────────
// 2. Arithmetic
// ───────────────────────────────────────────────────────────────────────────

// Modular exponentiation. Everything below works on V8's native bigints; the
// choices were measured (bench/modpow_bench.ts, bench/compare.ts), not guessed:
//
// - a 2048-bit `%` costs about 1.35 multiplications, cheaper than Barrett or
//   Montgomery reduction (two full multiplications each in bigint: V8 has no
//   half products); above 2048 bits V8's division gets slower and "folding"
//   the top half first (see foldingReducer) wins by 5–25 % (at 2048 bits it
//   loses by 30 %);
// - sliding windows cut the multiplications of square-and-multiply from
//   bits/2 to about bits/(w + 1) + 2^(w − 1);
// - a fixed base (g of a group) gets a comb table, built once per modulus and
//   base: about bits/4 operations instead of about 1.2 · bits.

/** Reduces a product of two residues (any x ≥ 0) modulo a fixed modulus. */
type Reducer = (x: bigint) => bigint;

/** Moduli longer than this reduce by folding first (measured crossover). */
const FOLDING_MIN_BITS = 2049;

/** Reducers and comb tables kept per modulus (oldest dropped first). */
const REDUCER_CACHE_SIZE = 32;
const COMB_CACHE_SIZE = 8;

/**
 * Comb teeth: 2^10 table entries, the exponent read 10 bits per step (a
 * 225-bit key: 24 squarings and 24 multiplications; 8 teeth took 32 of each).
 */
const COMB_TEETH = 10;

/** Throws the RangeError of the modpow contract. */
function checkModpowArgs(base: bigint, exponent: bigint, modulus: bigint): void {
  if (base < 0n || exponent < 0n) {
    throw new RangeError("modpow: base and exponent must be non-negative");
  }
  if (modulus < 2n) throw new RangeError("modpow: modulus must be at least 2");
}

/** `cache.get(key)`, built and stored on a miss; the oldest entry goes first. */
function memoize<K, V>(cache: Map<K, V>, key: K, limit: number, build: () => V): V {
  let value = cache.get(key);
  if (value === undefined) {
    value = build();
    if (cache.size >= limit) cache.delete(cache.keys().next().value as K);
    cache.set(key, value);
  }
  return value;
}

/**
 * Reduction by folding: with x = hi · 2^s + lo and s = 1.5 · bits(m),
 * x ≡ hi · (2^s mod m) + lo. One half-size multiplication shrinks a product
 * from 2 to 1.5 moduli long, so the final `%` divides half as many digits.
 */
function foldingReducer(modulus: bigint): Reducer {
  const split = Math.floor((bitLength(modulus) * 3) / 2);
  const shift = BigInt(split);
  const fold = (1n << shift) % modulus;
  return (x) => ((x >> shift) * fold + BigInt.asUintN(split, x)) % modulus;
}

const reducers = new Map<bigint, Reducer>();

/** The fastest exact reducer for `modulus`, cached. */
function reducerFor(modulus: bigint): Reducer {
  return memoize(
    reducers,
    modulus,
    REDUCER_CACHE_SIZE,
    () =>
      bitLength(modulus) >= FOLDING_MIN_BITS ? foldingReducer(modulus) : (x: bigint) => x % modulus,
  );
}

/**
 * The sliding-window width for an exponent of `bits` bits: the w that
 * minimises bits/(w + 1) multiplications plus 2^(w − 1) precomputed powers.
 */
function windowSize(bits: number): number {
  const cost = (w: number) => bits / (w + 1) + 2 ** (w - 1);
  let best = 1;
  for (let w = 2; w <= 8; w++) if (cost(w) < cost(best)) best = w;
  return best;
}

/** [b, b^3, b^5, …, b^(2·count − 1)] for a reduced base b. */
function oddPowers(base: bigint, count: number, reduce: Reducer): bigint[] {
  const powers = [base];
  if (count === 1) return powers;
  const square = reduce(base * base);
  for (let i = 1; i < count; i++) powers.push(reduce(powers[i - 1] * square));
  return powers;
}

/**
 * Splits an exponent (binary digits, most significant first) into windows:
 * pairs [squarings, digit] meaning "square that many times, then multiply by
 * base^digit" (digit odd and below 2^width, or 0 for trailing zeros).
 */
function slidingWindows(bits: string, width: number): [number, number][] {
  const windows: [number, number][] = [];
  let zeros = 0;
  for (let i = 0; i < bits.length;) {
    if (bits[i] === "0") {
      zeros++;
      i++;
      continue;
    }
    let end = Math.min(i + width, bits.length);
    while (bits[end - 1] === "0") end--;
    windows.push([zeros + end - i, parseInt(bits.slice(i, end), 2)]);
    zeros = 0;
    i = end;
  }
  if (zeros > 0) windows.push([zeros, 0]);
  return windows;
}

/**
 * `base ** exponent mod modulus` for bigints: left-to-right sliding-window
 * exponentiation with a reducer cached per modulus. Not constant-time (no
 * bigint code is).
 *
 * @example
 * ```ts
 * import { modpow } from "./dh.ts";
 *
 * modpow(5n, 3n, 23n); // 10n: the original's server public key, 5³ mod 23
 * ```
 *
 * @param base any value ≥ 0 (reduced modulo `modulus` first)
 * @param exponent ≥ 0; `modpow(x, 0n, m)` is 1
 * @param modulus ≥ 2
 * @returns a value in [0, modulus)
 * @throws {RangeError} on a negative argument or a modulus below 2
 */
export function modpow(base: bigint, exponent: bigint, modulus: bigint): bigint {
  checkModpowArgs(base, exponent, modulus);
  const reduce = reducerFor(modulus);
  const bits = exponent.toString(2);
  const width = windowSize(bits.length);
  const odd = oddPowers(base % modulus, 2 ** (width - 1), reduce);
  let result = 1n;
  for (const [squarings, digit] of slidingWindows(bits, width)) {
    for (let i = 0; i < squarings; i++) result = reduce(result * result);
    if (digit !== 0) result = reduce(result * odd[digit >> 1]);
  }
  return result;
}

/**
 * The reference `modpow`: plain right-to-left square and multiply with `%`.
 * Slow; kept for tests and benchmarks. Same contract as {@link modpow}.
 *
 * @throws {RangeError} on a negative argument or a modulus below 2
 */
export function modpowNaive(base: bigint, exponent: bigint, modulus: bigint): bigint {
  checkModpowArgs(base, exponent, modulus);
  let result = 1n;
  let square = base % modulus;
  let e = exponent;
  while (e > 0n) {
    if (e & 1n) result = (result * square) % modulus;
    square = (square * square) % modulus;
    e >>= 1n;
  }
  return result;
}

/** A fixed-base comb: entries[i] = ∏ base^(2^(j·spacing)) over the bits j of i. */
interface CombTable {
  /** Distance between teeth in exponent bits; covers exponents < 2^(teeth·spacing). */
  readonly spacing: number;
  /** 2^COMB_TEETH powers of the base. */
  readonly entries: readonly bigint[];
}

/** Builds the comb of `base` (reduced) for exponents of up to teeth · spacing bits. */
function buildComb(base: bigint, spacing: number, reduce: Reducer): CombTable {
  const teeth = [base]; // teeth[j] = base^(2^(j·spacing))
  for (let j = 1; j < COMB_TEETH; j++) {
    let power = teeth[j - 1];
    for (let k = 0; k < spacing; k++) power = reduce(power * power);
    teeth.push(power);
  }
  const entries = [1n];
  for (let i = 1; i < 2 ** COMB_TEETH; i++) {
    const lowest = 31 - Math.clz32(i & -i);
    const rest = i & (i - 1);
    entries.push(rest === 0 ? teeth[lowest] : reduce(entries[rest] * teeth[lowest]));
  }
  return { spacing, entries };
}

/** Combs by modulus, then by base and spacing (bigints are compared by value). */
const combs = new Map<bigint, Map<string, CombTable>>();

/**
 * `base ** exponent mod modulus` like {@link modpow}, for a base used again
 * and again (a group's generator): the first call per modulus, base and
 * exponent size (rounded up to a multiple of 80 bits) builds a comb of 1024
 * powers of the base (256 KiB at 2048 bits, 1 MiB at 8192); later calls cost
 * about bits/10 squarings and bits/10 multiplications. Combs for at most 8
 * moduli are kept, the oldest dropped first.
 *
 * @param base any value ≥ 0 (reduced modulo `modulus` first)
 * @param exponent ≥ 0
 * @param modulus ≥ 2
 * @throws {RangeError} on a negative argument or a modulus below 2
 */
export function fixedBaseModpow(base: bigint, exponent: bigint, modulus: bigint): bigint {
  checkModpowArgs(base, exponent, modulus);
  const reduce = reducerFor(modulus);
  const bits = exponent.toString(2);
  const spacing = Math.ceil(bits.length / (COMB_TEETH * 8)) * 8;
  const byBase = memoize(combs, modulus, COMB_CACHE_SIZE, () => new Map<string, CombTable>());
  const { entries } = memoize(
    byBase,
    `${spacing}:${base}`,
    COMB_CACHE_SIZE,
    () => buildComb(base % modulus, spacing, reduce),
  );
  const bit = (position: number) => bits.charCodeAt(bits.length - 1 - position) === 49 ? 1 : 0;
  let result = 1n;
  for (let column = spacing - 1; column >= 0; column--) {
    let index = 0; // bit `column` of each tooth's slice of the exponent
    for (let j = COMB_TEETH - 1; j >= 0; j--) index = 2 * index + bit(j * spacing + column);
    result = reduce(result * result);
    if (index !== 0) result = reduce(result * entries[index]);
  }
  return result;
}

/**
 * `n` as `length` big-endian bytes, left-padded with zeros.
 *
 * @throws {RangeError} if n is negative or does not fit
 */
export function bigintToBytes(n: bigint, length: number): Uint8Array {
  if (n < 0n) throw new RangeError("bigintToBytes: negative number");
  const hex = n.toString(16);
  if (hex.length > length * 2) {
    throw new RangeError(`bigintToBytes: number does not fit ${length} bytes`);
  }
  return Uint8Array.fromHex(hex.padStart(length * 2, "0"));
}

/** The big-endian unsigned integer in `bytes` (0 for no bytes). */
export function bytesToBigint(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt("0x" + bytes.toHex());
}

/** `bits` uniformly random bits as a bigint, from `crypto.getRandomValues`. */
function randomBits(bits: number): bigint {
  const bytes = crypto.getRandomValues(new Uint8Array(Math.ceil(bits / 8)));
  return bytesToBigint(bytes) >> BigInt(bytes.length * 8 - bits);
}

/** A uniformly random integer in [low, high] (rejection sampling). */
function randomBetween(low: bigint, high: bigint): bigint {
  const range = high - low + 1n;
  const bits = bitLength(range);
  for (;;) {
    const candidate = randomBits(bits);
    if (candidate < range) return low + candidate;
  }
}

const SMALL_PRIMES = [2n, 3n, 5n, 7n, 11n, 13n, 17n, 19n, 23n, 29n, 31n, 37n, 41n];

/**
 * Miller–Rabin: true if `n` is (very probably) prime. Below 3.3 · 10^24 the
 * bases 2 … 41 make the answer exact; above, random bases are added, so a
 * composite crafted against fixed bases still fails: each random round lets a
 * composite through with probability at most 1/4. Big numbers get fewer
 * rounds (each costs a full-size modpow): 24 up to 1024 bits, 12 up to 4096,
 * 6 above.
 */
export function isProbablePrime(n: bigint): boolean {
  if (n < 2n) return false;
  for (const small of SMALL_PRIMES) {
    if (n === small) return true;
    if (n % small === 0n) return false;
  }
  let d = n - 1n;
  let s = 0;
  while ((d & 1n) === 0n) {
    d >>= 1n;
    s++;
  }
  const witnessesComposite = (a: bigint): boolean => {
    let x = modpow(a, d, n);
    if (x === 1n || x === n - 1n) return false;
    for (let i = 1; i < s; i++) {
      x = (x * x) % n;
      if (x === n - 1n) return false;
    }
    return true;
  };
  if (SMALL_PRIMES.some(witnessesComposite)) return false;
  if (n < 3_317_044_064_679_887_385_961_981n) return true;
  const bits = bitLength(n);
  const rounds = bits <= 1024 ? 24 : bits <= 4096 ? 12 : 6;
  for (let i = 0; i < rounds; i++) {
    if (witnessesComposite(randomBetween(2n, n - 2n))) return false;
  }
  return true;
}

/** True if `p` is a safe prime: p and q = (p − 1)/2 both prime. */
export function isSafePrime(p: bigint): boolean {
  return p > 4n && isProbablePrime(p) && isProbablePrime((p - 1n) / 2n);
}

/**
 * XOR `data` with `key` repeated: `out[i] = data[i] ^ key[i % key.length]`.
 *
 * The encryption step of both ciphers: a one-byte key is the original's
 * scheme (`xor8`), a keystream as long as the data is a stream cipher
 * (AES-CTR). Returns a new array; the inputs are not modified.
 *
 * @example
 * ```ts
 * import { xor } from "./dh.ts";
 *
 * const secret = xor(new TextEncoder().encode("hi"), Uint8Array.of(19));
 * new TextDecoder().decode(xor(secret, Uint8Array.of(19))); // "hi"
 * ```
 *
 * @throws {RangeError} on an empty key
 */
export function xor(data: Uint8Array, key: Uint8Array): Uint8Array {
  if (key.length === 0) throw new RangeError("xor: empty key");
  const out = new Uint8Array(data.length);
  if (key.length >= data.length) {
    // A keystream as long as the data: skip the per-byte modulo.
    for (let i = 0; i < data.length; i++) out[i] = data[i] ^ key[i];
  } else {
    for (let i = 0; i < data.length; i++) out[i] = data[i] ^ key[i % key.length];
  }
  return out;
}

// ───────────────────────────────────────────────────────────────────────────
// 3. Keys
// ───────────────────────────────────────────────────────────────────────────

/**
 * A group from explicit parameters (the teaching flags `--prime` and
 * `--generator`, or a `custom` hello). Parameters equal to a named group get
 * that group's name.
 *
 * @throws {RangeError} unless p is a prime of 5 … 8192 bits (checked with
 *   {@link isProbablePrime}) and 2 ≤ g ≤ p − 2
 */
export function customGroup(p: bigint, g: bigint): DhGroup {
  if (p < 5n) throw new RangeError("the prime must be at least 5");
  if (bitLength(p) > MAX_GROUP_BITS) {
    throw new RangeError(`the prime must have at most ${MAX_GROUP_BITS} bits`);
  }
  if (!(g >= 2n && g <= p - 2n)) {
    throw new RangeError(`the generator must lie in 2 … p − 2 = ${p - 2n}`);
  }
  for (const group of Object.values(GROUPS)) {
    if (group.p === p && group.g === g) return group;
  }
  if (!isProbablePrime(p)) {
    throw new RangeError(`${p} is not a prime, so it does not make a DH group`);
  }
  return makeGroup("custom", p, g, undefined, "custom parameters (insecure)");
}

/**
 * The public key g^x mod p for private key `x`, or G^x mod p for another
 * generator G (a room password's, revision 3).
 */
export function derivePublicKey(
  group: DhGroup,
  privateKey: bigint,
  generator: bigint = group.g,
): bigint {
  // Every handshake raises the same g: its comb table is built once per group.
  // A password's G is new with every nonce: a comb would never be used twice.
  return generator === group.g
    ? fixedBaseModpow(group.g, privateKey, group.p)
    : modpow(generator, privateKey, group.p);
}

/**
 * A fresh random private key for `group`.
 *
 * RFC groups: exactly `group.privateKeyBits` bits (top bit set), which is far
 * below q = (p − 1)/2. Toy and custom groups: uniform in [2, p − 2].
 */
export function generatePrivateKey(group: DhGroup, generator: bigint = group.g): bigint {
  if (group.privateKeyBits < group.bits) {
    const bits = group.privateKeyBits;
    return randomBits(bits) | (1n << BigInt(bits - 1));
  }
  // In a small group g^x may be 1 or p − 1, which every peer refuses: draw again.
  for (;;) {
    const key = randomBetween(2n, group.p - 2n);
    const publicKey = derivePublicKey(group, key, generator);
    if (publicKey > 1n && publicKey < group.p - 1n) return key;
  }
}

/**
 * Checks a private key given by hand (`--private-key`): 1 ≤ x ≤ p − 2, and
 * its public key must be one a peer accepts (not 1 or p − 1).
 *
 * @throws {RangeError} with a reason otherwise
 */
export function checkPrivateKey(
  group: DhGroup,
  privateKey: bigint,
  generator: bigint = group.g,
): void {
  if (privateKey < 1n || privateKey > group.p - 2n) {
    throw new RangeError(`the private key must lie in 1 … p − 2 = ${group.p - 2n}`);
  }
  const publicKey = derivePublicKey(group, privateKey, generator);
  if (publicKey <= 1n || publicKey >= group.p - 1n) {
    throw new RangeError(
      `private key ${privateKey} gives the public key ${publicKey}, which every peer refuses`,
    );
  }
}

/**
 * Rejects a peer public key outside 1 < Y < p − 1 (RFC 7919 §5.1): 0, 1 and
 * p − 1 would force the shared secret into a tiny set.
 *
 * @throws {ProtocolError}
 */
export function validatePublicKey(group: DhGroup, publicKey: bigint): void {
  if (publicKey <= 1n || publicKey >= group.p - 1n) {
    const shown = publicKey === group.p - 1n
      ? "p - 1"
      : publicKey >= group.p
      ? "≥ p"
      : publicKey.toString();
    throw new ProtocolError(`invalid public key (${shown}): it must satisfy 1 < key < p - 1`);
  }
}

/** The shared secret Z = peerPublic^x mod p (validate the peer key first). */
export function computeSharedSecret(
  group: DhGroup,
  peerPublicKey: bigint,
  privateKey: bigint,
): bigint {
  return modpow(peerPublicKey, privateKey, group.p);
}

/** One modular power worked out for the lesson: `base^exponent mod modulus = power mod modulus = result`. */
export interface WorkedPower {
  /** The base (g, or the peer's public key). */
  readonly base: bigint;
  /** The exponent (a private key). */
  readonly exponent: bigint;
  /** The modulus p. */
  readonly modulus: bigint;
  /** `base ** exponent` before reduction, when exponent × the base's bit length is at most `maxPowerBits`. */
  readonly power: bigint | undefined;
  /** `base ** exponent mod modulus`. */
  readonly result: bigint;
}

/**
 * Works out `base^exponent mod modulus` as the lesson shows it: with the
 * unreduced power when it is small enough to print (toy numbers: 5^5 =
 * 3125), without it otherwise (a real exponent's power would not fit in
 * memory).
 *
 * @example
 * ```ts
 * import { workedPower } from "./dh.ts";
 *
 * const step = workedPower(10n, 5n, 23n); // the toy client's Z = B^a mod p
 * [step.power, step.result]; // [100000n, 19n]
 * ```
 *
 * @param maxPowerBits the largest power computed (default 256 bits)
 */
export function workedPower(
  base: bigint,
  exponent: bigint,
  modulus: bigint,
  maxPowerBits = 256,
): WorkedPower {
  const result = modpow(base, exponent, modulus);
  const small = exponent * BigInt(Math.max(1, bitLength(base))) <= BigInt(maxPowerBits);
  return { base, exponent, modulus, power: small ? base ** exponent : undefined, result };
}

/** Decimal digits of the largest supported modulus: bounds any wire integer. */
export const MAX_WIRE_DIGITS: number = Math.ceil(MAX_GROUP_BITS * Math.log10(2));

/**
 * Parses a DHX/1 wire integer: a JSON string of ASCII decimal digits only.
 * Rejects JSON numbers, signs, `0x…`, exponents, spaces, the empty string and
 * anything longer than `maxDigits` (before converting, so huge inputs cost
 * nothing).
 *
 * @param value the decoded JSON value
 * @param field name used in the error message
 * @param maxDigits most digits allowed (default: those of an 8192-bit number)
 * @throws {ProtocolError}
 */
export function parseWireInteger(
  value: unknown,
  field: string,
  maxDigits: number = MAX_WIRE_DIGITS,
): bigint {
  if (typeof value !== "string") {
    throw new ProtocolError(
      `${field} must be a string of decimal digits, got ${describeJson(value)}`,
    );
  }
  if (value.length > maxDigits) {
    throw new ProtocolError(
      `${field} has ${value.length} digits; at most ${maxDigits} are possible`,
    );
  }
  if (!/^[0-9]+$/.test(value)) {
    throw new ProtocolError(
      `${field} must contain only decimal digits, got ${describeJson(value)}`,
    );
  }
  return BigInt(value);
}

// ───────────────────────────────────────────────────────────────────────────
// 4. Key schedule
// ───────────────────────────────────────────────────────────────────────────

/** The protocol version string of the hello frame. */
export const PROTOCOL = "dhx/1";

/** The ciphers of DHX/1. */
export type CipherName = "aes-256-ctr+hmac-sha256" | "xor8";

/** The secure cipher, the default. */
export const SECURE_CIPHER: CipherName = "aes-256-ctr+hmac-sha256";

/** The original's one-byte XOR, only with `--toy`. */
export const TOY_CIPHER: CipherName = "xor8";

/** HKDF `info` of DHX/1. */
const KEY_SCHEDULE_INFO = encoder.encode("dhx/1 key schedule");

/** Bytes of key material: 4 keys of 32 bytes and an 8-byte fingerprint. */
export const KEY_SCHEDULE_LENGTH = 136;

/**
 * Where each key sits in the 136 bytes of key material, as [start, end)
 * byte offsets (DHX/1 §Handshake 7).
 */
export const KEY_SCHEDULE_LAYOUT: Readonly<
  Record<
    "clientEncryption" | "clientMac" | "serverEncryption" | "serverMac" | "fingerprint",
    readonly [number, number]
  >
> = Object.freeze({
  clientEncryption: [0, 32],
  clientMac: [32, 64],
  serverEncryption: [64, 96],
  serverMac: [96, 128],
  fingerprint: [128, 136],
});

/**
 * The transcript hash th = SHA-256(helloLine ‖ LF ‖ keyLine ‖ LF) over the
 * lines exactly as sent, without their terminators.
 */
export function transcriptHash(helloLine: string, keyLine: string): Uint8Array {
  return sha256(`${helloLine}\n${keyLine}\n`);
}

/**
 * The 136 bytes of DHX/1 key material: HKDF-SHA-256 with IKM = Z as
 * big-endian bytes padded to the length of p, salt = th, info =
 * `dhx/1 key schedule`.
 */
export function deriveKeySchedule(
  group: DhGroup,
  sharedSecret: bigint,
  th: Uint8Array,
): Uint8Array {
  const ikm = bigintToBytes(sharedSecret, group.byteLength);
  return hkdfSha256(ikm, th, KEY_SCHEDULE_INFO, KEY_SCHEDULE_LENGTH);
}

/** Formats 8 bytes as the fingerprint `90B9-A4D2-25F0-BE47`. */
export function formatFingerprint(bytes: Uint8Array): string {
  if (bytes.length !== 8) throw new RangeError("a fingerprint has 8 bytes");
  return bytes.toHex().toUpperCase().match(/.{4}/g)!.join("-");
}

// ───────────────────────────────────────────────────────────────────────────
// 5. Authentication (revision 3)
// ───────────────────────────────────────────────────────────────────────────

/** HKDF `info` prefix of the password generator: the ASCII text ‖ 0x00. */
const PASSWORD_GENERATOR_INFO = encoder.encode("dhx/1 password generator\0");

/** What a host key signs before th: the ASCII text ‖ 0x00. */
const HOST_KEY_PROOF_PREFIX = encoder.encode("dhx/1 host key proof\0");

/** Bytes of the nonce in a password hello. */
export const NONCE_LENGTH = 32;

/** Bytes of a raw Ed25519 public key (and of the seed of its private key). */
export const HOST_KEY_LENGTH = 32;

/** Bytes of an Ed25519 signature. */
export const SIGNATURE_LENGTH = 64;

/** The password generator of one connection, with how it was found (for teaching). */
export interface PasswordGenerator {
  /** The counter i that gave the first usable G. */
  readonly counter: number;
  /** h: the HKDF output as an integer mod p. */
  readonly hash: bigint;
  /** G = h² mod p, used in place of g. */
  readonly generator: bigint;
}

/**
 * The bytes a password stands for: UTF-8 after Unicode NFC normalization, so
 * that "ü" typed as one code point or as u + ◌̈ is the same password.
 *
 * @throws {RangeError} for an empty password
 */
export function passwordBytes(password: string): Uint8Array {
  const bytes = encoder.encode(password.normalize("NFC"));
  if (bytes.length === 0) throw new RangeError("a room password cannot be empty");
  return bytes;
}

/**
 * The room password's generator G (revision 3): for i = 0, 1, 2, … h =
 * HKDF-SHA-256(IKM = password, salt = nonce, info = `dhx/1 password
 * generator` ‖ 0x00 ‖ p ‖ i, L = byte length of p + 32) mod p, G = h² mod p;
 * the first G with 1 < G < p − 1. Squaring puts G in the subgroup of order q.
 * G changes with every nonce, so the fixed-base comb of g cannot serve it:
 * public keys with G cost one plain {@link modpow}.
 *
 * @throws {RangeError} for an empty password, or a group with no usable square
 */
export function derivePasswordGenerator(
  group: DhGroup,
  password: string,
  nonce: Uint8Array,
): PasswordGenerator {
  const ikm = passwordBytes(password);
  const pBytes = bigintToBytes(group.p, group.byteLength);
  const info = new Uint8Array(PASSWORD_GENERATOR_INFO.length + pBytes.length + 1);
  info.set(PASSWORD_GENERATOR_INFO);
  info.set(pBytes, PASSWORD_GENERATOR_INFO.length);
  for (let counter = 0; counter < 256; counter++) {
    info[info.length - 1] = counter;
    const okm = hkdfSha256(ikm, nonce, info, group.byteLength + 32);
    const hash = bytesToBigint(okm) % group.p;
    const generator = modpow(hash, 2n, group.p);
    if (generator > 1n && generator < group.p - 1n) return { counter, hash, generator };
  }
  throw new RangeError(`p = ${group.p} has no usable password generator`);
}

/** DER headers that make a raw Ed25519 key a PKCS #8 / SPKI key for node:crypto. */
const ED25519_PKCS8_HEADER = Uint8Array.fromHex("302e020100300506032b657004220420");
const ED25519_SPKI_HEADER = Uint8Array.fromHex("302a300506032b6570032100");

/** `header` ‖ `key`. */
function derKey(header: Uint8Array, key: Uint8Array): Uint8Array {
  const der = new Uint8Array(header.length + key.length);
  der.set(header);
  der.set(key, header.length);
  return der;
}

/**
 * The fingerprint people compare and clients remember: `SHA256:` and the
 * unpadded standard base64 of SHA-256(the 32 raw public key bytes).
 */
export function hostKeyFingerprint(publicKey: Uint8Array): string {
  return `SHA256:${sha256(publicKey).toBase64({ omitPadding: true })}`;
}

/** What a host key signs in a session: `dhx/1 host key proof` ‖ 0x00 ‖ th. */
export function hostKeyProofMessage(th: Uint8Array): Uint8Array {
  return derKey(HOST_KEY_PROOF_PREFIX, th);
}

/**
 * A server's long-term Ed25519 key pair (RFC 8032), made from its 32-byte
 * seed (the private key as stored).
 */
export class HostKey {
  /** The 32 raw bytes of the public key, as the hello carries them. */
  readonly publicKey: Uint8Array;
  /** Its fingerprint, {@link hostKeyFingerprint}. */
  readonly fingerprint: string;
  readonly #seed: Uint8Array;
  readonly #privateKey: KeyObject;

  /**
   * A host key from its stored seed.
   *
   * @param seed the 32-byte private key
   * @throws {RangeError} for a seed of another length
   */
  constructor(seed: Uint8Array) {
    if (seed.length !== HOST_KEY_LENGTH) {
      throw new RangeError(
        `an Ed25519 private key has ${HOST_KEY_LENGTH} bytes, not ${seed.length}`,
      );
    }
    this.#seed = seed.slice();
    this.#privateKey = createPrivateKey({
      key: Buffer.from(derKey(ED25519_PKCS8_HEADER, seed)),
      format: "der",
      type: "pkcs8",
    });
    const spki = createPublicKey(this.#privateKey).export({ format: "der", type: "spki" });
    this.publicKey = new Uint8Array(spki.subarray(spki.length - HOST_KEY_LENGTH));
    this.fingerprint = hostKeyFingerprint(this.publicKey);
  }

  /** A fresh random host key. */
  static generate(): HostKey {
    return new HostKey(crypto.getRandomValues(new Uint8Array(HOST_KEY_LENGTH)));
  }

  /** The seed to store (a copy): whoever has it can be this server. */
  exportSeed(): Uint8Array {
    return this.#seed.slice();
  }

  /** The 64-byte Ed25519 signature of `message`. */
  sign(message: Uint8Array): Uint8Array {
    return new Uint8Array(sign(null, message, this.#privateKey));
  }
}

/** Whether `signature` is `publicKey`'s Ed25519 signature of `message`. */
export function verifyHostKeySignature(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): boolean {
  if (publicKey.length !== HOST_KEY_LENGTH || signature.length !== SIGNATURE_LENGTH) return false;
  try {
    const key = createPublicKey({
      key: Buffer.from(derKey(ED25519_SPKI_HEADER, publicKey)),
      format: "der",
      type: "spki",
    });
    return verify(null, message, key, signature);
  } catch {
    return false; // not a point on the curve
  }
}

// ───────────────────────────────────────────────────────────────────────────
// 6. Records
// ───────────────────────────────────────────────────────────────────────────

/** Which end of the connection a session belongs to. */
export type Role = "client" | "server";

/** Record types carried after the handshake (DHX/1 §Record types). */
export type RecordType = "msg" | "chat" | "ack" | "notice" | "ping" | "pong" | "bye" | "confirm";

/** Who may send each record type; anything else is a protocol error. */
export const RECORD_SENDERS: Readonly<Record<RecordType, readonly Role[]>> = Object.freeze({
  msg: ["client"],
  chat: ["server"],
  ack: ["client", "server"],
  notice: ["server"],
  ping: ["client", "server"],
  pong: ["client", "server"],
  bye: ["client", "server"],
  confirm: ["client", "server"],
});

/** The plaintext of a `confirm` record (revision 3, password sessions only). */
export const CONFIRM_TEXT = "confirm";

/** The record types the peer acknowledges, one `ack` each. */
export const ACKED_TYPES: readonly RecordType[] = Object.freeze(["msg", "chat"]);

/** Longest `ping` plaintext, in bytes. */
export const MAX_PING_BYTES = 32;

/** True if `type` is a DHX/1 record type. */
export function isRecordType(type: unknown): type is RecordType {
  return typeof type === "string" && Object.hasOwn(RECORD_SENDERS, type);
}

/**
 * Parses one frame line into a JSON object. Arrays, numbers, strings and null
 * are refused; a peer's `error` frame becomes a thrown error with `fromPeer`
 * set, so every caller stops on it the same way.
 *
 * @throws {ProtocolError}
 */
export function parseFrame(line: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new ProtocolError(`not a JSON frame: ${describeJson(line)}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError(`a frame must be a JSON object, got ${describeJson(value)}`);
  }
  const frame = value as Record<string, unknown>;
  if (frame.type === "error") {
    const message = typeof frame.message === "string" ? frame.message : "(no message)";
    throw new ProtocolError(`peer reported an error: ${message}`, true);
  }
  return frame;
}

/** The `error` frame line carrying `message`. */
export function encodeError(message: string): string {
  return JSON.stringify({ type: "error", message });
}

/** A hello frame as parsed by the client. */
export interface Hello {
  /** The group, from the client's own table when named. */
  readonly group: DhGroup;
  /** The offered cipher. */
  readonly cipher: CipherName;
  /** The server's public key B. */
  readonly publicKey: bigint;
  /** The line exactly as received (for the transcript hash). */
  readonly line: string;
  /** The server's raw Ed25519 host key (revision 3); undefined from older servers. */
  readonly hostKey?: Uint8Array;
  /** The nonce of a server that requires the room password; undefined otherwise. */
  readonly passwordNonce?: Uint8Array;
}

/** What a server needs to remember between its hello and the client's key. */
export interface ServerOffer {
  /** The group offered. */
  readonly group: DhGroup;
  /** The cipher offered. */
  readonly cipher: CipherName;
  /** The server's private key b. */
  readonly privateKey: bigint;
  /** B = g^b mod p (G^b with a password). */
  readonly publicKey: bigint;
  /** The hello line to send. */
  readonly line: string;
  /** The host key announced (and used for proofs), if any. */
  readonly hostKey?: HostKey;
  /** The generator derived from the room password and this hello's nonce, if any. */
  readonly passwordGenerator?: PasswordGenerator;
}

/** Revision-3 parts of a server's hello. */
export interface OfferAuth {
  /** Announce this host key in the hello (`hostKey`). */
  readonly hostKey?: HostKey;
  /** Require this room password (`auth`, `nonce`). */
  readonly password?: string;
  /** The nonce (fresh and random when omitted; fixed only for known-answer tests). */
  readonly nonce?: Uint8Array;
}

/**
 * Server, handshake step 1: the hello line and the state to finish with.
 * With a password, B = G^b for the generator G of a fresh nonce.
 *
 * @param privateKey fixed key (toy mode); a fresh random one when omitted
 * @param auth revision 3: the host key to announce, the room password
 * @throws {RangeError} for a fixed private key whose public key no peer accepts
 */
export function createOffer(
  group: DhGroup,
  cipher: CipherName,
  privateKey?: bigint,
  auth: OfferAuth = {},
): ServerOffer {
  let passwordGenerator: PasswordGenerator | undefined;
  let nonce: Uint8Array | undefined;
  if (auth.password !== undefined) {
    nonce = auth.nonce ?? crypto.getRandomValues(new Uint8Array(NONCE_LENGTH));
    passwordGenerator = derivePasswordGenerator(group, auth.password, nonce);
  }
  const generator = passwordGenerator?.generator;
  const key = privateKey ?? generatePrivateKey(group, generator);
  if (generator !== undefined && privateKey !== undefined) checkPrivateKey(group, key, generator);
  const publicKey = derivePublicKey(group, key, generator);
  const line = JSON.stringify({
    type: "hello",
    protocol: PROTOCOL,
    group: group.name,
    p: group.pDecimal,
    g: group.g.toString(),
    publicKey: publicKey.toString(),
    cipher,
    ...(auth.hostKey ? { hostKey: auth.hostKey.publicKey.toBase64() } : {}),
    ...(nonce ? { auth: "password", nonce: nonce.toBase64() } : {}),
  });
  return {
    group,
    cipher,
    privateKey: key,
    publicKey,
    line,
    hostKey: auth.hostKey,
    passwordGenerator,
  };
}

/** How strict a client is about the server's hello. */
export interface HelloPolicy {
  /**
   * Accept toy and custom groups and the `xor8` cipher (`--toy`). Without it,
   * only a named RFC group with exactly our p and g and the secure cipher.
   */
  readonly insecure: boolean;
}

/**
 * Client, handshake steps 1, 3 and 4: parses and judges the server's hello.
 * Everything refused is refused here, before the client sends its key.
 *
 * @throws {ProtocolError} with a reason a user can act on
 */
export function parseHello(line: string, policy: HelloPolicy): Hello {
  const frame = parseFrame(line);
  if (frame.type !== "hello") {
    throw new ProtocolError(
      `expected a hello frame from the server, got type ${describeJson(frame.type)}`,
    );
  }
  if (frame.protocol !== PROTOCOL) {
    throw new ProtocolError(
      `server speaks protocol ${describeJson(frame.protocol)}; this client speaks ${PROTOCOL}`,
    );
  }
  const cipher = frame.cipher as CipherName;
  if (cipher !== SECURE_CIPHER && cipher !== TOY_CIPHER) {
    throw new ProtocolError(`server offered unknown cipher ${describeJson(cipher)}`);
  }
  const name = frame.group;
  if (!isGroupName(name) && name !== "custom") {
    throw new ProtocolError(`server offered unknown group ${describeJson(name)}`);
  }
  const p = parseWireInteger(frame.p, "p");
  const g = parseWireInteger(frame.g, "g");
  const hint = "rerun with --toy to accept insecure parameters";
  let group: DhGroup;
  if (isGroupName(name) && GROUPS[name].p === p && GROUPS[name].g === g) {
    group = GROUPS[name];
  } else if (!policy.insecure) {
    throw new ProtocolError(
      name === "custom"
        ? `server offered custom parameters (a ${bitLength(p)}-bit prime); ${hint}`
        : `server's p or g for ${name} differ from ${
          GROUPS[name as GroupName].source
        }: refusing (a downgrade attempt or a broken server); ${hint}`,
    );
  } else {
    try {
      group = customGroup(p, g);
    } catch (error) {
      throw new ProtocolError(`server's group is unusable: ${(error as Error).message}`);
    }
  }
  if (!policy.insecure && group.name === "toy") {
    throw new ProtocolError(`server offered the toy group (a ${group.bits}-bit prime); ${hint}`);
  }
  if (!policy.insecure && cipher !== SECURE_CIPHER) {
    throw new ProtocolError(
      `server offered cipher ${cipher} (one-byte XOR, no integrity); ${hint}`,
    );
  }
  const publicKey = parseWireInteger(frame.publicKey, "publicKey", group.pDecimal.length);
  validatePublicKey(group, publicKey);
  // Revision 3; members we do not know are ignored (they still count in th).
  let hostKey: Uint8Array | undefined;
  if (frame.hostKey !== undefined) {
    hostKey = decodeBase64(frame.hostKey, "hostKey");
    if (hostKey.length !== HOST_KEY_LENGTH) {
      throw new ProtocolError(`hostKey must hold ${HOST_KEY_LENGTH} bytes, not ${hostKey.length}`);
    }
  }
  let passwordNonce: Uint8Array | undefined;
  if (frame.auth !== undefined) {
    if (frame.auth !== "password") {
      throw new ProtocolError(`server asks for unknown authentication ${describeJson(frame.auth)}`);
    }
    passwordNonce = decodeBase64(frame.nonce, "nonce");
    if (passwordNonce.length !== NONCE_LENGTH) {
      throw new ProtocolError(`nonce must hold ${NONCE_LENGTH} bytes, not ${passwordNonce.length}`);
    }
  }
  return { group, cipher, publicKey, line, hostKey, passwordNonce };
}

/** Revision-3 choices of a client answering a hello. */
export interface KeyAuth {
  /** Ask the server to prove its host key (`"proof":true`). */
  readonly proof?: boolean;
  /** The room password, if the user gave one. */
  readonly password?: string;
}

/**
 * Client, before its key: whether the hello and our password agree. A
 * password we know but the server does not ask for is refused (an impostor
 * who does not know it would simply not ask), and a password the server asks
 * for but we lack stops us before we send a key.
 *
 * @throws {ProtocolError}
 */
export function checkPasswordHello(hello: Hello, password: string | undefined): void {
  if (password !== undefined && hello.passwordNonce === undefined) {
    throw new ProtocolError(
      "the server did not ask for the room password: refusing (a downgrade, or the wrong server)",
    );
  }
  if (password === undefined && hello.passwordNonce !== undefined) {
    throw new ProtocolError("the server requires a room password: rerun with --password");
  }
}

/**
 * Client, handshake steps 2 and 5–7: the key line to send and the session.
 *
 * @param privateKey fixed key (teaching); a fresh random one when omitted
 * @param auth revision 3: ask for a proof, use the room password
 * @throws {RangeError} if a given private key is outside 1 … p − 2
 * @throws {ProtocolError} if the password and the hello disagree ({@link checkPasswordHello})
 */
export function respondToHello(
  hello: Hello,
  privateKey?: bigint,
  auth: KeyAuth = {},
): { keyLine: string; session: Session } {
  checkPasswordHello(hello, auth.password);
  const passwordGenerator = auth.password === undefined
    ? undefined
    : derivePasswordGenerator(hello.group, auth.password, hello.passwordNonce!);
  const generator = passwordGenerator?.generator;
  const key = privateKey ?? generatePrivateKey(hello.group, generator);
  checkPrivateKey(hello.group, key, generator);
  const publicKey = derivePublicKey(hello.group, key, generator);
  const keyLine = JSON.stringify({
    type: "key",
    publicKey: publicKey.toString(),
    ...(auth.proof ? { proof: true } : {}),
  });
  const session = Session.create({
    role: "client",
    group: hello.group,
    cipher: hello.cipher,
    privateKey: key,
    publicKey,
    peerPublicKey: hello.publicKey,
    helloLine: hello.line,
    keyLine,
    proofRequested: auth.proof === true,
    passwordGenerator,
  });
  return { keyLine, session };
}

/**
 * Server, handshake steps 2, 3 and 5–7: checks the client's key line and
 * derives the session.
 *
 * @throws {ProtocolError}
 */
export function acceptKey(offer: ServerOffer, keyLine: string): Session {
  const frame = parseFrame(keyLine);
  if (frame.type !== "key") {
    throw new ProtocolError(`expected a key frame, got type ${describeJson(frame.type)}`);
  }
  const peerPublicKey = parseWireInteger(
    frame.publicKey,
    "publicKey",
    offer.group.pDecimal.length,
  );
  validatePublicKey(offer.group, peerPublicKey);
  return Session.create({
    role: "server",
    group: offer.group,
    cipher: offer.cipher,
    privateKey: offer.privateKey,
    publicKey: offer.publicKey,
    peerPublicKey,
    helloLine: offer.line,
    keyLine,
    proofRequested: frame.proof === true,
    passwordGenerator: offer.passwordGenerator,
  });
}

/**
 * Server, revision 3: the `proof` frame, the host key's signature of
 * `dhx/1 host key proof` ‖ 0x00 ‖ th (send it only if the client asked).
 */
export function encodeProof(hostKey: HostKey, session: Session): string {
  const signature = hostKey.sign(hostKeyProofMessage(session.transcriptHash));
  return JSON.stringify({ type: "proof", signature: signature.toBase64() });
}

/**
 * Client, revision 3: checks the server's `proof` line against the hello's
 * host key and this session's th.
 *
 * @throws {ProtocolError} for anything but a valid signature
 */
export function checkProof(hostKey: Uint8Array, session: Session, line: string): void {
  const frame = parseFrame(line);
  if (frame.type !== "proof") {
    throw new ProtocolError(
      `expected the server's host key proof, got type ${describeJson(frame.type)}`,
    );
  }
  const signature = decodeBase64(frame.signature, "signature");
  const message = hostKeyProofMessage(session.transcriptHash);
  if (!verifyHostKeySignature(hostKey, message, signature)) {
    throw new ProtocolError(
      "the server's host key proof does not verify (someone in between, or a broken server)",
    );
  }
}

// Records are small and many: allocating typed arrays costs more than the AES
// and hash calls themselves, so record crypto reuses working memory. Sealing
// and opening are synchronous, so one scratch area can serve every session.

/** Working memory of the record functions, grown on demand up to 64 KiB. */
let scratch = new Uint8Array(1024);

/** `length` bytes of scratch memory (fresh memory above 64 KiB). */
function scratchBytes(length: number): Uint8Array {
  if (length > 65_536) return new Uint8Array(length);
  if (scratch.length < length) scratch = new Uint8Array(Math.max(length, scratch.length * 2));
  return scratch;
}

/**
 * AES-256-CTR as the protocol defines it: the keystream of record N is
 * AES-256 of the counter blocks (N, 0), (N, 1), … (two 64-bit big-endian
 * halves). One keyed AES block cipher (ECB over the counter blocks is CTR
 * by definition) serves every record of a direction, so no cipher is set
 * up per record.
 */
class AesCtr {
  readonly #blockCipher: Cipheriv;
  readonly #counters = new Uint8Array(256); // reused; bytes 8–11 of every block stay zero
  readonly #view = new DataView(this.#counters.buffer);

  constructor(key: Uint8Array) {
    this.#blockCipher = createCipheriv("aes-256-ecb", key, null).setAutoPadding(false);
  }

  /** `data` XOR the keystream of record `seq`, as a new array. */
  apply(seq: number, data: Uint8Array): Uint8Array {
    const blocks = Math.ceil(data.length / 16);
    // Long records get counters of their own: the kept buffer stays small.
    const counters = blocks * 16 <= this.#counters.length
      ? this.#counters
      : new Uint8Array(blocks * 16);
    const view = counters === this.#counters ? this.#view : new DataView(counters.buffer);
    const seqHigh = Math.floor(seq / 2 ** 32);
    const seqLow = seq >>> 0;
    for (let i = 0; i < blocks; i++) {
      view.setUint32(i * 16, seqHigh);
      view.setUint32(i * 16 + 4, seqLow);
      view.setUint32(i * 16 + 12, i); // a record below 64 GiB never needs the high word
    }
    // update() returns fresh memory: the XOR happens in place.
    const out = this.#blockCipher.update(counters.subarray(0, blocks * 16));
    for (let i = 0; i < data.length; i++) out[i] ^= data[i];
    return out.subarray(0, data.length);
  }
}

/** One direction's record protection: encryption and, for the secure cipher, a tag. */
interface DirectionKeys {
  /** Plaintext ↔ ciphertext of record `seq` (XOR: the same both ways), as a new array. */
  crypt(seq: number, data: Uint8Array): Uint8Array;
  /** The 32-byte tag over type, seq and ciphertext; undefined for xor8. */
  tag(type: RecordType, seq: number, ciphertext: Uint8Array): Uint8Array | undefined;
}

/** UTF-8(type) ‖ 0x00 for every record type, encoded once. */
const TYPE_PREFIX = Object.fromEntries(
  Object.keys(RECORD_SENDERS).map((type) => [type, encoder.encode(`${type}\0`)]),
) as Record<RecordType, Uint8Array>;

/** Keys of one direction of `aes-256-ctr+hmac-sha256`. */
function secureKeys(
  okm: Uint8Array,
  encryption: readonly [number, number],
  mac: readonly [
    number,
    number,
  ],
): DirectionKeys {
  const aes = new AesCtr(okm.subarray(...encryption));
  const hmac = new HmacSha256(okm.subarray(...mac));
  return {
    crypt: (seq, data) => data.length === 0 ? new Uint8Array(0) : aes.apply(seq, data),
    tag(type, seq, ciphertext) {
      // The MAC input: UTF-8(T) ‖ 0x00 ‖ N as 8 bytes big-endian ‖ ciphertext,
      // written after the 64 bytes the HMAC pad goes in.
      const prefix = TYPE_PREFIX[type];
      const length = 64 + prefix.length + 8 + ciphertext.length;
      const input = scratchBytes(length);
      input.set(prefix, 64);
      const view = new DataView(input.buffer, input.byteOffset);
      view.setUint32(64 + prefix.length, Math.floor(seq / 2 ** 32));
      view.setUint32(64 + prefix.length + 4, seq >>> 0);
      input.set(ciphertext, 64 + prefix.length + 8);
      return hmac.digestAfterPad(input.subarray(0, length));
    },
  };
}

/** Keys of `xor8`: one byte, Z mod 256, both directions; no tag. */
function xor8Keys(sharedSecret: bigint): DirectionKeys {
  const key = Uint8Array.of(Number(sharedSecret % 256n));
  return { crypt: (_seq, data) => xor(data, key), tag: () => undefined };
}

/** An `xor8` record line taken apart for the lesson's wire view: what an eavesdropper sees and what it means. */
export interface Xor8Record {
  /** The record type. */
  readonly type: string;
  /** The sequence number. */
  readonly seq: number;
  /** The key byte, Z mod 256. */
  readonly key: number;
  /** The bytes on the wire (base64 in the frame). */
  readonly ciphertext: Uint8Array;
  /** The bytes of the text: ciphertext XOR key. */
  readonly plaintext: Uint8Array;
}

/**
 * Takes an `xor8` record line apart with the shared secret: its bytes before
 * and after the XOR. Nothing is checked (xor8 has no tag); undefined for a
 * line that is not a record (a hello, a key or an error frame).
 */
export function xor8Record(line: string, sharedSecret: bigint): Xor8Record | undefined {
  let frame: Record<string, unknown>;
  try {
    frame = parseFrame(line);
  } catch {
    return undefined;
  }
  const { type, seq, data } = frame;
  if (!isRecordType(type) || typeof seq !== "number" || typeof data !== "string") return undefined;
  let ciphertext: Uint8Array;
  try {
    ciphertext = decodeBase64(data, "data");
  } catch {
    return undefined;
  }
  const key = Number(sharedSecret % 256n);
  return { type, seq, key, ciphertext, plaintext: xor(ciphertext, Uint8Array.of(key)) };
}

const STRICT_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Standard padded base64 (RFC 4648 §4), strictly: no whitespace, canonical. */
function decodeBase64(text: unknown, field: string): Uint8Array {
  if (typeof text !== "string" || !STRICT_BASE64.test(text)) {
    throw new ProtocolError(`${field} is not standard padded base64`);
  }
  try {
    return Uint8Array.fromBase64(text, { lastChunkHandling: "strict" });
  } catch {
    throw new ProtocolError(`${field} is not canonical base64`);
  }
}

/** A record after authentication and decryption. */
export interface ReceivedRecord {
  /** Its type. */
  readonly type: RecordType;
  /** Its sequence number. */
  readonly seq: number;
  /** The decrypted plaintext. */
  readonly text: string;
}

/** The line's content of a `chat` record. */
export interface ChatLine {
  /** Who wrote it: a client's name, or the server operator's. */
  readonly from: string;
  /** What they wrote. */
  readonly text: string;
}

/** The plaintext of a `chat` record: `{"from":NAME,"text":TEXT}`. */
export function encodeChat(line: ChatLine): string {
  return JSON.stringify({ from: line.from, text: line.text });
}

/**
 * Parses the plaintext of a `chat` record; other members are ignored.
 *
 * @throws {ProtocolError} unless it is a JSON object with string `from` and `text`
 */
export function parseChat(plaintext: string): ChatLine {
  let value: unknown;
  try {
    value = JSON.parse(plaintext);
  } catch {
    throw new ProtocolError("a chat record must hold a JSON object");
  }
  const { from, text } = (value ?? {}) as Record<string, unknown>;
  if (typeof from !== "string" || typeof text !== "string") {
    throw new ProtocolError('a chat record must hold {"from": string, "text": string}');
  }
  return { from, text };
}

/** The parts of a finished handshake, as both sides see them: a {@link Session}'s fields. */
export type SessionParams = Pick<
  Session,
  | "role"
  | "group"
  | "cipher"
  | "privateKey"
  | "publicKey"
  | "peerPublicKey"
  | "sharedSecret"
  | "transcriptHash"
  | "keySchedule"
  | "fingerprint"
  | "proofRequested"
  | "passwordGenerator"
>;

/** What {@link Session.create} needs: both public keys and the two handshake lines as sent. */
export type SessionInit =
  & Pick<SessionParams, "role" | "group" | "cipher" | "privateKey" | "publicKey" | "peerPublicKey">
  & Partial<Pick<SessionParams, "proofRequested" | "passwordGenerator">>
  & { readonly helloLine: string; readonly keyLine: string };

/**
 * An established DHX/1 session: seals outgoing records and opens incoming
 * ones, enforcing who may send which type and the per-direction sequence
 * numbers (0, 1, 2, … each way). Synchronous: records are numbered in the
 * order `seal` and `open` are called.
 *
 * @example Both ends of a toy session, in memory
 * ```ts
 * import { acceptKey, createOffer, GROUPS, parseHello, respondToHello, TOY_CIPHER } from "./dh.ts";
 *
 * const offer = createOffer(GROUPS.toy, TOY_CIPHER, 3n); // server: b = 3
 * const hello = parseHello(offer.line, { insecure: true });
 * const { keyLine, session: client } = respondToHello(hello, 5n); // client: a = 5
 * const server = acceptKey(offer, keyLine);
 * const line = client.seal("msg", "hello"); // {"type":"msg","seq":0,"data":"e3Z/f3w="}
 * server.open(line).text; // "hello"
 * ```
 */
export class Session {
  /** Our end. */
  declare readonly role: Role;
  /** The agreed group. */
  declare readonly group: DhGroup;
  /** The agreed cipher. */
  declare readonly cipher: CipherName;
  /** Our private key. */
  declare readonly privateKey: bigint;
  /** Our public key. */
  declare readonly publicKey: bigint;
  /** The peer's public key. */
  declare readonly peerPublicKey: bigint;
  /** Z. */
  declare readonly sharedSecret: bigint;
  /** The transcript hash th. */
  declare readonly transcriptHash: Uint8Array;
  /** The 136 bytes of key material. */
  declare readonly keySchedule: Uint8Array;
  /** The fingerprint both people compare. */
  declare readonly fingerprint: string;
  /** Whether the client asked the server to prove its host key (revision 3). */
  declare readonly proofRequested: boolean;
  /** The room password's generator, in a password session; undefined otherwise. */
  declare readonly passwordGenerator: PasswordGenerator | undefined;
  readonly #peerRole: Role;
  readonly #send: DirectionKeys;
  readonly #receive: DirectionKeys;
  #sendSeq = 0;
  #receiveSeq = 0;

  private constructor(params: SessionParams, send: DirectionKeys, receive: DirectionKeys) {
    Object.assign(this, params);
    this.#peerRole = params.role === "client" ? "server" : "client";
    this.#send = send;
    this.#receive = receive;
  }

  /**
   * Derives a session from both public keys and the two handshake lines
   * (steps 5–7). The peer key must already be validated.
   */
  static create(init: SessionInit): Session {
    const sharedSecret = computeSharedSecret(init.group, init.peerPublicKey, init.privateKey);
    const th = transcriptHash(init.helloLine, init.keyLine);
    const okm = deriveKeySchedule(init.group, sharedSecret, th);
    const layout = KEY_SCHEDULE_LAYOUT;
    const [clientToServer, serverToClient] = init.cipher === TOY_CIPHER
      ? [xor8Keys(sharedSecret), xor8Keys(sharedSecret)]
      : [
        secureKeys(okm, layout.clientEncryption, layout.clientMac),
        secureKeys(okm, layout.serverEncryption, layout.serverMac),
      ];
    const params: SessionParams = {
      role: init.role,
      group: init.group,
      cipher: init.cipher,
      privateKey: init.privateKey,
      publicKey: init.publicKey,
      peerPublicKey: init.peerPublicKey,
      sharedSecret,
      transcriptHash: th,
      keySchedule: okm,
      fingerprint: formatFingerprint(okm.subarray(...layout.fingerprint)),
      proofRequested: init.proofRequested ?? false,
      passwordGenerator: init.passwordGenerator,
    };
    return init.role === "client"
      ? new Session(params, clientToServer, serverToClient)
      : new Session(params, serverToClient, clientToServer);
  }

  /**
   * Why a record of `type` cannot be record `seq` of a direction: in a
   * password session record 0 is `confirm` and only it; elsewhere there is
   * no `confirm` at all. Undefined when it can.
   */
  #confirmMisplaced(type: RecordType, seq: number): string | undefined {
    if (this.passwordGenerator === undefined) {
      return type === "confirm" ? "a confirm record in a session without a password" : undefined;
    }
    if (seq === 0 && type !== "confirm") {
      return `a password session begins with a confirm record, not ${type}`;
    }
    if (seq !== 0 && type === "confirm") return "a confirm record anywhere but first";
    return undefined;
  }

  /** Sequence number the next sealed record will carry. */
  get nextSendSeq(): number {
    return this.#sendSeq;
  }

  /**
   * Seals `text` as the next record of type `type`; returns its line.
   *
   * @throws {RangeError} for a type our role may not send
   */
  seal(type: RecordType, text: string): string {
    if (!isRecordType(type) || !RECORD_SENDERS[type].includes(this.role)) {
      throw new RangeError(`a ${this.role} may not send ${type}`);
    }
    const misplaced = this.#confirmMisplaced(type, this.#sendSeq);
    if (misplaced) throw new RangeError(misplaced);
    const seq = this.#sendSeq++;
    // The plaintext is only read by crypt: encode it into scratch memory.
    const buffer = scratchBytes(text.length * 3);
    const { written } = encoder.encodeInto(text, buffer);
    const ciphertext = this.#send.crypt(seq, buffer.subarray(0, written));
    const data = ciphertext.toBase64();
    const tag = this.#send.tag(type, seq, ciphertext);
    return tag
      ? JSON.stringify({ type, seq, data, tag: tag.toBase64() })
      : JSON.stringify({ type, seq, data });
  }

  /**
   * Opens one received line: checks type, direction and sequence number, the
   * tag (in constant time, before decrypting), then the plaintext: UTF-8, an
   * empty `bye`, a `ping` of at most 32 bytes.
   *
   * @throws {ProtocolError} on any deviation, and for a peer's `error` frame
   */
  open(line: string): ReceivedRecord {
    const frame = parseFrame(line);
    const { type, seq } = frame;
    if (!isRecordType(type)) {
      throw new ProtocolError(`unexpected frame type ${describeJson(type)} after the handshake`);
    }
    if (!RECORD_SENDERS[type].includes(this.#peerRole)) {
      throw new ProtocolError(`a ${this.#peerRole} may not send ${type} records`);
    }
    if (seq !== this.#receiveSeq) {
      throw new ProtocolError(
        Number.isSafeInteger(seq)
          ? `wrong sequence number ${seq}, expected ${this.#receiveSeq} (replayed, reordered or lost record)`
          : `seq must be a JSON integer (${this.#receiveSeq} expected), got ${describeJson(seq)}`,
      );
    }
    const misplaced = this.#confirmMisplaced(type, seq);
    if (misplaced) throw new ProtocolError(misplaced);
    const ciphertext = decodeBase64(frame.data, "data");
    const expectedTag = this.#receive.tag(type, seq, ciphertext);
    if (expectedTag) {
      const tag = decodeBase64(frame.tag, "tag");
      if (tag.length !== expectedTag.length || !timingSafeEqual(tag, expectedTag)) {
        throw new ProtocolError("record authentication failed (tampered or forged record)");
      }
    }
    this.#receiveSeq++;
    const plaintext = this.#receive.crypt(seq, ciphertext);
    let text: string;
    try {
      text = utf8.decode(plaintext);
    } catch {
      throw new ProtocolError("record plaintext is not valid UTF-8");
    }
    if (type === "bye" && text !== "") throw new ProtocolError("a bye record must be empty");
    if (type === "confirm" && text !== CONFIRM_TEXT) {
      throw new ProtocolError("the confirm record does not hold the text confirm");
    }
    if (type === "ping" && plaintext.length > MAX_PING_BYTES) {
      throw new ProtocolError(`a ping carries at most ${MAX_PING_BYTES} bytes`);
    }
    return { type, seq, text };
  }
}
