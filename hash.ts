/**
 * dhx hashes: SHA-256, HMAC-SHA-256 (RFC 2104) and HKDF-SHA-256 (RFC 5869),
 * the primitives under the DHX/1 key schedule, record tags and the room
 * password generator. No I/O; `dh.ts` builds the protocol on them.
 *
 * @example The HKDF of RFC 5869, test case 1
 * ```ts
 * import { hkdfSha256 } from "./hash.ts";
 *
 * const ikm = new Uint8Array(22).fill(0x0b);
 * const salt = Uint8Array.fromHex("000102030405060708090a0b0c");
 * const info = Uint8Array.fromHex("f0f1f2f3f4f5f6f7f8f9");
 * hkdfSha256(ikm, salt, info, 42).toHex(); // "3cb25f25faacd57a90434f64d0362f2a…"
 * ```
 *
 * @module
 */

import { hash } from "node:crypto";

/** SHA-256 of `data`. */
export function sha256(data: Uint8Array | string): Uint8Array {
  return new Uint8Array(hash("sha256", data, "buffer"));
}

// SHA-256 (FIPS 180-4) for short HMAC inputs (record tags, the key schedule),
// in JavaScript: one call
// into native code costs more than hashing a few blocks here (measured: 1.5 µs
// against 7–10 µs for a 100-byte tag). Longer inputs go to node:crypto. It is
// constant-time by construction: additions, shifts and logic on 32-bit words,
// no table indexed by secret data. dh_test.ts checks it against node:crypto.

const SHA256_K = Int32Array.from([
  0x428a2f98,
  0x71374491,
  0xb5c0fbcf,
  0xe9b5dba5,
  0x3956c25b,
  0x59f111f1,
  0x923f82a4,
  0xab1c5ed5,
  0xd807aa98,
  0x12835b01,
  0x243185be,
  0x550c7dc3,
  0x72be5d74,
  0x80deb1fe,
  0x9bdc06a7,
  0xc19bf174,
  0xe49b69c1,
  0xefbe4786,
  0x0fc19dc6,
  0x240ca1cc,
  0x2de92c6f,
  0x4a7484aa,
  0x5cb0a9dc,
  0x76f988da,
  0x983e5152,
  0xa831c66d,
  0xb00327c8,
  0xbf597fc7,
  0xc6e00bf3,
  0xd5a79147,
  0x06ca6351,
  0x14292967,
  0x27b70a85,
  0x2e1b2138,
  0x4d2c6dfc,
  0x53380d13,
  0x650a7354,
  0x766a0abb,
  0x81c2c92e,
  0x92722c85,
  0xa2bfe8a1,
  0xa81a664b,
  0xc24b8b70,
  0xc76c51a3,
  0xd192e819,
  0xd6990624,
  0xf40e3585,
  0x106aa070,
  0x19a4c116,
  0x1e376c08,
  0x2748774c,
  0x34b0bcb5,
  0x391c0cb3,
  0x4ed8aa4a,
  0x5b9cca4f,
  0x682e6ff3,
  0x748f82ee,
  0x78a5636f,
  0x84c87814,
  0x8cc70208,
  0x90befffa,
  0xa4506ceb,
  0xbef9a3f7,
  0xc67178f2,
]);
const SHA256_IV = Int32Array.from([
  0x6a09e667,
  0xbb67ae85,
  0x3c6ef372,
  0xa54ff53a,
  0x510e527f,
  0x9b05688c,
  0x1f83d9ab,
  0x5be0cd19,
]);

/** Working memory of the SHA-256 functions (synchronous, so shared). */
const sha256Schedule = new Int32Array(64);
const sha256State = new Int32Array(8);
const sha256Tail = new Uint8Array(128);

/** Absorbs the 64-byte block at `offset` of `bytes` into `state`. */
function sha256Block(state: Int32Array, bytes: Uint8Array, offset: number): void {
  const w = sha256Schedule;
  for (let i = 0; i < 16; i++, offset += 4) {
    w[i] = (bytes[offset] << 24) | (bytes[offset + 1] << 16) | (bytes[offset + 2] << 8) |
      bytes[offset + 3];
  }
  for (let i = 16; i < 64; i++) {
    const x = w[i - 15];
    const y = w[i - 2];
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
  }
  let [a, b, c, d, e, f, g, h] = state;
  for (let i = 0; i < 64; i++) {
    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + s1 + ((e & f) ^ (~e & g)) + SHA256_K[i] + w[i]) | 0;
    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  state[0] += a;
  state[1] += b;
  state[2] += c;
  state[3] += d;
  state[4] += e;
  state[5] += f;
  state[6] += g;
  state[7] += h;
}

/**
 * Writes into `out` the SHA-256 of one 64-byte block already absorbed into
 * `start` (an HMAC pad) followed by `data`.
 */
function sha256AfterBlock(start: Int32Array, data: Uint8Array, out: Uint8Array): void {
  const state = sha256State;
  state.set(start);
  const whole = data.length - (data.length % 64);
  for (let offset = 0; offset < whole; offset += 64) sha256Block(state, data, offset);
  // Padding: 0x80, zeros, and the bit length of everything hashed (pad block included).
  const rest = data.length - whole;
  const tail = sha256Tail;
  const end = rest < 56 ? 64 : 128;
  tail.fill(0, 0, end);
  tail.set(data.subarray(whole));
  tail[rest] = 0x80;
  const bits = (64 + data.length) * 8;
  new DataView(tail.buffer).setUint32(end - 8, Math.floor(bits / 2 ** 32));
  new DataView(tail.buffer).setUint32(end - 4, bits >>> 0);
  sha256Block(state, tail, 0);
  if (end === 128) sha256Block(state, tail, 64);
  const view = new DataView(out.buffer, out.byteOffset);
  for (let i = 0; i < 8; i++) view.setInt32(i * 4, state[i]);
}

/** Inputs longer than this are hashed by node:crypto (measured crossover). */
const JS_SHA256_MAX = 1024;

/**
 * HMAC-SHA-256 (RFC 2104): H(opad ‖ H(ipad ‖ m)). The hash states after each
 * pad are kept, so a short tag costs three SHA-256 blocks.
 */
export class HmacSha256 {
  readonly #innerPad = new Uint8Array(64);
  readonly #outerPad = new Uint8Array(96); // opad ‖ room for the inner hash
  readonly #innerStart = SHA256_IV.slice();
  readonly #outerStart = SHA256_IV.slice();

  /**
   * Keys the HMAC once; every digest reuses the padded states.
   *
   * @param key the MAC key (hashed first if longer than 64 bytes)
   */
  constructor(key: Uint8Array) {
    const block = new Uint8Array(64); // keys up to the block size are zero-padded
    block.set(key.length > 64 ? sha256(key) : key);
    for (let i = 0; i < 64; i++) {
      this.#innerPad[i] = block[i] ^ 0x36;
      this.#outerPad[i] = block[i] ^ 0x5c;
    }
    sha256Block(this.#innerStart, this.#innerPad, 0);
    sha256Block(this.#outerStart, this.#outerPad, 0);
  }

  /** The tag of `message`. */
  digest(message: Uint8Array): Uint8Array {
    const input = new Uint8Array(64 + message.length);
    input.set(message, 64);
    return this.digestAfterPad(input);
  }

  /**
   * The tag of the message in `input` after its first 64 bytes (room the
   * native path uses for the pad): no copy of the message is made.
   */
  digestAfterPad(input: Uint8Array): Uint8Array {
    const tag = new Uint8Array(32);
    if (input.length - 64 > JS_SHA256_MAX) {
      input.set(this.#innerPad);
      this.#outerPad.set(hash("sha256", input, "buffer"), 64);
      tag.set(hash("sha256", this.#outerPad, "buffer"));
      return tag;
    }
    const inner = this.#outerPad.subarray(64);
    sha256AfterBlock(this.#innerStart, input.subarray(64), inner);
    sha256AfterBlock(this.#outerStart, inner, tag);
    return tag;
  }
}

/**
 * HKDF-SHA-256 (RFC 5869): extract PRK = HMAC(salt, IKM), then expand
 * T(i) = HMAC(PRK, T(i − 1) ‖ info ‖ i) until `length` bytes.
 */
export function hkdfSha256(
  ikm: Uint8Array,
  salt: Uint8Array,
  info: Uint8Array,
  length: number,
): Uint8Array {
  const expand = new HmacSha256(new HmacSha256(salt).digest(ikm));
  const out = new Uint8Array(length);
  let block: Uint8Array = new Uint8Array(0);
  for (let i = 1, offset = 0; offset < length; i++, offset += 32) {
    const input = new Uint8Array(block.length + info.length + 1);
    input.set(block);
    input.set(info, block.length);
    input[input.length - 1] = i;
    block = expand.digest(input);
    out.set(block.subarray(0, Math.min(32, length - offset)), offset);
  }
  return out;
}
