/**
 * Core tests of dh.ts: the DHX/1 known-answer vectors, node:crypto and OpenSSL
 * as oracles for the arithmetic and the groups, every refusal the protocol
 * demands, and the bounded line reader.
 *
 * Run with `deno test -P` (permissions from deno.json: read ".", run openssl).
 *
 * Nothing here is hard-coded except the vector file and facts from the RFCs /
 * the protocol text; everything else is computed by an independent oracle
 * (node:crypto, OpenSSL, naive arithmetic, or the protocol's own formulas).
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  checkPrimeSync,
  createCipheriv,
  createDiffieHellman,
  createHash,
  createHmac,
  getDiffieHellman,
  hkdfSync,
  randomBytes,
} from "node:crypto";
import {
  acceptKey,
  bigintToBytes,
  bitLength,
  bytesToBigint,
  checkAck,
  type CipherName,
  computeSharedSecret,
  createOffer,
  customGroup,
  DEFAULT_MAX_LINE,
  deriveKeySchedule,
  derivePublicKey,
  encodeError,
  formatFingerprint,
  generatePrivateKey,
  type GroupName,
  GROUPS,
  isGroupName,
  KEY_SCHEDULE_LENGTH,
  LineReader,
  type LineReaderOptions,
  MAX_GROUP_BITS,
  modpow,
  parseFrame,
  parseHello,
  parseWireInteger,
  ProtocolError,
  respondToHello,
  SECURE_CIPHER,
  SECURE_GROUP_NAMES,
  Session,
  TOY_CIPHER,
  transcriptHash,
  validatePublicKey,
  xor,
} from "./dh.ts";
import { flipBit, withFields } from "./tests/support.ts";

// ───────────────────────────────────────────────────────────────────────────
// Fixtures and helpers
// ───────────────────────────────────────────────────────────────────────────

type Direction = "client->server" | "server->client";

interface VectorRecord {
  direction: Direction;
  plaintext: string;
  line: string;
}

interface Vector {
  group: GroupName;
  cipher: CipherName;
  clientPrivateKey: string;
  serverPrivateKey: string;
  clientPublicKey: string;
  serverPublicKey: string;
  sharedSecret: string;
  helloLine: string;
  keyLine: string;
  transcriptHashHex: string;
  keyScheduleHex: string;
  fingerprint: string;
  records: VectorRecord[];
}

const VECTORS: Vector[] = JSON.parse(
  await Deno.readTextFile(new URL("./tests/dhx1-vectors.json", import.meta.url)),
);

function vectorFor(group: GroupName): Vector {
  const vector = VECTORS.find((v) => v.group === group);
  assert.ok(vector, `the vector file has a ${group} vector`);
  return vector;
}

/** The RFC group names of DHX/1 (protocol §Handshake 1). */
const RFC_GROUPS: readonly GroupName[] = [
  "modp2048",
  "modp3072",
  "modp4096",
  "ffdhe2048",
  "ffdhe3072",
  "ffdhe4096",
  "ffdhe6144",
  "ffdhe8192",
];

const utf8Encoder = new TextEncoder();

/** Big-endian bytes of n, minimal length (independent of dh.ts). */
function toBuffer(n: bigint): Buffer {
  let hex = n.toString(16);
  if (hex.length % 2) hex = "0" + hex;
  return Buffer.from(hex, "hex");
}

/** Big-endian bytes of n, left-padded to `length` (independent of dh.ts). */
function toPaddedBuffer(n: bigint, length: number): Buffer {
  const hex = n.toString(16).padStart(length * 2, "0");
  assert.equal(hex.length, length * 2, "value fits the requested width");
  return Buffer.from(hex, "hex");
}

/** The unsigned big-endian integer in `bytes` (independent of dh.ts). */
function fromBytes(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt("0x" + Buffer.from(bytes).toString("hex"));
}

/** Uniform random integer with exactly `bits` bits (top bit set). */
function randomExactBits(bits: number): bigint {
  const bytes = crypto.getRandomValues(new Uint8Array(Math.ceil(bits / 8)));
  const n = fromBytes(bytes) >> BigInt(bytes.length * 8 - bits);
  return n | (1n << BigInt(bits - 1));
}

/** Uniform random integer in [low, high). */
function randomBetween(low: bigint, high: bigint): bigint {
  const range = high - low;
  const bits = range.toString(2).length;
  for (;;) {
    const bytes = crypto.getRandomValues(new Uint8Array(Math.ceil(bits / 8)));
    const candidate = fromBytes(bytes) >> BigInt(bytes.length * 8 - bits);
    if (candidate < range) return low + candidate;
  }
}

/** Validator for assert.throws/rejects: a ProtocolError whose message matches. */
function protocolError(message: RegExp, fromPeer = false): (error: unknown) => true {
  return (error: unknown) => {
    assert.ok(
      error instanceof ProtocolError,
      `expected a ProtocolError, got ${error instanceof Error ? error.name : typeof error}: ${
        String(error)
      }`,
    );
    assert.match(error.message, message);
    assert.equal(error.fromPeer, fromPeer, "fromPeer");
    return true;
  };
}

function throwsProtocol(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, protocolError(message));
}

/** Works whether `fn` throws synchronously or returns a rejected promise. */
async function rejectsProtocol(fn: () => unknown, message: RegExp): Promise<void> {
  await assert.rejects(async () => await fn(), protocolError(message));
}

/** Both sessions of a vector, built straight from its lines and keys. */
async function vectorSessions(v: Vector): Promise<{ client: Session; server: Session }> {
  const common = {
    group: GROUPS[v.group],
    cipher: v.cipher,
    helloLine: v.helloLine,
    keyLine: v.keyLine,
  };
  const client = await Session.create({
    ...common,
    role: "client",
    privateKey: BigInt(v.clientPrivateKey),
    publicKey: BigInt(v.clientPublicKey),
    peerPublicKey: BigInt(v.serverPublicKey),
  });
  const server = await Session.create({
    ...common,
    role: "server",
    privateKey: BigInt(v.serverPrivateKey),
    publicKey: BigInt(v.serverPublicKey),
    peerPublicKey: BigInt(v.clientPublicKey),
  });
  return { client, server };
}

/** The record type of a record line. */
function typeOf(line: string): "msg" | "ack" | "bye" {
  return JSON.parse(line).type;
}

/**
 * A record sealed from the protocol text alone, with node:crypto:
 * AES-256-CTR (counter block = seq ‖ 8 zero bytes) and
 * HMAC-SHA-256(type ‖ 0x00 ‖ seq ‖ ciphertext) under the direction's keys.
 */
function independentSeal(
  okm: Uint8Array,
  direction: Direction,
  type: string,
  seq: number,
  plaintext: Uint8Array,
): string {
  const base = direction === "client->server" ? 0 : 64;
  const counter = Buffer.alloc(16);
  counter.writeBigUInt64BE(BigInt(seq), 0);
  const cipher = createCipheriv("aes-256-ctr", okm.subarray(base, base + 32), counter);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  const header = Buffer.alloc(9); // 0x00 then seq as 8 bytes big-endian
  header.writeBigUInt64BE(BigInt(seq), 1);
  const tag = createHmac("sha256", okm.subarray(base + 32, base + 64))
    .update(Buffer.from(type, "utf8"))
    .update(header)
    .update(ciphertext)
    .digest();
  return JSON.stringify({
    type,
    seq,
    data: ciphertext.toString("base64"),
    tag: tag.toString("base64"),
  });
}

/** An xor8 record from the protocol text: every byte XOR (Z mod 256). */
function independentXorSeal(
  sharedSecret: bigint,
  type: string,
  seq: number,
  plaintext: Uint8Array,
): string {
  const key = Number(sharedSecret % 256n);
  const data = Buffer.from(plaintext.map((b) => b ^ key)).toString("base64");
  return JSON.stringify({ type, seq, data });
}

/** The 136-byte key schedule from the protocol text, with node:crypto. */
function independentKeySchedule(
  p: bigint,
  sharedSecret: bigint,
  helloLine: string,
  keyLine: string,
): { th: Buffer; okm: Uint8Array } {
  const pBytes = Math.ceil(p.toString(2).length / 8);
  const th = createHash("sha256").update(`${helloLine}\n${keyLine}\n`, "utf8").digest();
  const okm = new Uint8Array(
    hkdfSync("sha256", toPaddedBuffer(sharedSecret, pBytes), th, "dhx/1 key schedule", 136),
  );
  return { th, okm };
}

/** The fingerprint format of the protocol: 16 uppercase hex digits in groups of four. */
function independentFingerprint(bytes: Uint8Array): string {
  const hex = Buffer.from(bytes).toString("hex").toUpperCase();
  return [0, 4, 8, 12].map((i) => hex.slice(i, i + 4)).join("-");
}

// ───────────────────────────────────────────────────────────────────────────
// 1. Vectors
// ───────────────────────────────────────────────────────────────────────────

Deno.test("vectors: the file covers toy/xor8, ffdhe2048 and modp3072 with records", () => {
  const seen = VECTORS.map((v) => `${v.group}/${v.cipher}`);
  assert.ok(seen.includes("toy/xor8"), seen.join(", "));
  assert.ok(seen.includes("ffdhe2048/aes-256-ctr+hmac-sha256"), seen.join(", "));
  assert.ok(seen.includes("modp3072/aes-256-ctr+hmac-sha256"), seen.join(", "));
  for (const v of VECTORS) {
    assert.ok(isGroupName(v.group), v.group);
    assert.ok(v.records.length > 0, `${v.group} has records`);
  }
});

for (const v of VECTORS) {
  const label = `${v.group}/${v.cipher}`;
  Deno.test(`vectors: ${label} is reproduced byte for byte`, async (t) => {
    const group = GROUPS[v.group];
    const serverKey = BigInt(v.serverPrivateKey);
    const clientKey = BigInt(v.clientPrivateKey);
    const insecure = v.group === "toy";

    await t.step("public keys (derivePublicKey)", () => {
      assert.equal(derivePublicKey(group, serverKey), BigInt(v.serverPublicKey));
      assert.equal(derivePublicKey(group, clientKey), BigInt(v.clientPublicKey));
    });

    await t.step("shared secret, from both ends (computeSharedSecret)", () => {
      const z = BigInt(v.sharedSecret);
      assert.equal(computeSharedSecret(group, BigInt(v.clientPublicKey), serverKey), z);
      assert.equal(computeSharedSecret(group, BigInt(v.serverPublicKey), clientKey), z);
    });

    const offer = createOffer(group, v.cipher, serverKey);
    await t.step("hello line (createOffer with the fixed server key)", () => {
      assert.equal(offer.line, v.helloLine);
      assert.equal(offer.publicKey, BigInt(v.serverPublicKey));
      assert.equal(offer.privateKey, serverKey);
    });

    const hello = parseHello(v.helloLine, { insecure });
    await t.step(`parseHello accepts it (insecure: ${insecure})`, () => {
      assert.equal(hello.group, group, "the client's own table entry");
      assert.equal(hello.cipher, v.cipher);
      assert.equal(hello.publicKey, BigInt(v.serverPublicKey));
      assert.equal(hello.line, v.helloLine);
      if (insecure) {
        throwsProtocol(() => parseHello(v.helloLine, { insecure: false }), /toy/);
      } else {
        // A permissive (toy-mode) client accepts the secure vectors as well.
        assert.equal(parseHello(v.helloLine, { insecure: true }).group, group);
      }
    });

    const { keyLine, session: client } = await respondToHello(hello, clientKey);
    await t.step("key line (respondToHello with the fixed client key)", () => {
      assert.equal(keyLine, v.keyLine);
      assert.equal(client.publicKey, BigInt(v.clientPublicKey));
    });

    const server = await acceptKey(offer, keyLine);
    await t.step("transcript hash, key schedule and fingerprint, both sessions", async () => {
      for (const session of [client, server]) {
        assert.equal(session.group, group);
        assert.equal(session.cipher, v.cipher);
        assert.equal(session.sharedSecret, BigInt(v.sharedSecret));
        assert.equal(session.transcriptHash.toHex(), v.transcriptHashHex);
        assert.equal(session.keySchedule.length, KEY_SCHEDULE_LENGTH);
        assert.equal(session.keySchedule.toHex(), v.keyScheduleHex);
        assert.equal(session.fingerprint, v.fingerprint);
      }
      assert.equal(client.role, "client");
      assert.equal(server.role, "server");
      assert.equal(server.peerPublicKey, BigInt(v.clientPublicKey));
      assert.equal(client.peerPublicKey, BigInt(v.serverPublicKey));
      // The standalone functions give the same values.
      const th = await transcriptHash(v.helloLine, v.keyLine);
      assert.equal(th.toHex(), v.transcriptHashHex);
      const okm = await deriveKeySchedule(group, BigInt(v.sharedSecret), th);
      assert.equal(okm.toHex(), v.keyScheduleHex);
      assert.equal(formatFingerprint(okm.subarray(128, 136)), v.fingerprint);
    });

    await t.step("every record sealed in order and opened by the other side", async () => {
      const expectedSeq = { "client->server": 0, "server->client": 0 };
      for (const record of v.records) {
        const [sender, receiver] = record.direction === "client->server"
          ? [client, server]
          : [server, client];
        const type = typeOf(record.line);
        const seq = expectedSeq[record.direction]++;
        assert.equal(JSON.parse(record.line).seq, seq, "vector seq numbering");
        assert.equal(sender.nextSendSeq, seq);
        const line = await sender.seal(type, record.plaintext);
        assert.equal(line, record.line, `${record.direction} #${seq}`);
        assert.deepEqual(await receiver.open(line), { type, seq, text: record.plaintext });
      }
    });

    await t.step("the vector's own lines open on fresh sessions", async () => {
      const fresh = await vectorSessions(v);
      assert.equal(fresh.client.fingerprint, v.fingerprint);
      assert.equal(fresh.server.fingerprint, v.fingerprint);
      const seqs = { "client->server": 0, "server->client": 0 };
      for (const record of v.records) {
        const receiver = record.direction === "client->server" ? fresh.server : fresh.client;
        assert.deepEqual(await receiver.open(record.line), {
          type: typeOf(record.line),
          seq: seqs[record.direction]++,
          text: record.plaintext,
        });
      }
    });
  });
}

// ───────────────────────────────────────────────────────────────────────────
// 2. Oracles
// ───────────────────────────────────────────────────────────────────────────

/** y^x mod p computed by node:crypto's Diffie-Hellman. */
function nodeModpow(p: bigint, y: bigint, x: bigint): bigint {
  const dh = createDiffieHellman(toBuffer(p), toBuffer(2n));
  dh.setPrivateKey(toBuffer(x));
  return fromBytes(dh.computeSecret(toBuffer(y)));
}

Deno.test("oracle: modpow equals node:crypto computeSecret on random inputs", async (t) => {
  const cases: [GroupName, number][] = [
    ["modp2048", 3],
    ["ffdhe2048", 3],
    ["modp3072", 2],
    ["ffdhe3072", 2],
    ["ffdhe4096", 2],
  ];
  for (const [name, iterations] of cases) {
    const { p } = GROUPS[name];
    const bits = bitLengthOf(p);
    await t.step(`${name}: 256-, 320-bit and full ${bits}-bit exponents`, () => {
      for (let i = 0; i < iterations; i++) {
        for (const exponentBits of [256, 320, bits]) {
          const y = randomBetween(2n, p - 1n);
          const x = exponentBits === bits ? randomBetween(1n, p) : randomExactBits(exponentBits);
          assert.equal(modpow(y, x, p), nodeModpow(p, y, x), `${exponentBits}-bit exponent`);
        }
      }
    });
  }
});

function bitLengthOf(n: bigint): number {
  return n.toString(2).length;
}

Deno.test("oracle: derivePublicKey equals node:crypto's modp14/15/16 public keys", () => {
  const cases: [GroupName, string, number][] = [
    ["modp2048", "modp14", 3],
    ["modp3072", "modp15", 1],
    ["modp4096", "modp16", 1],
  ];
  for (const [name, nodeName, iterations] of cases) {
    const group = GROUPS[name];
    // node's DiffieHellmanGroup has no setPrivateKey, so its prime and
    // generator go into a DiffieHellman object that has one.
    const named = getDiffieHellman(nodeName);
    for (let i = 0; i < iterations; i++) {
      const x = randomExactBits(group.privateKeyBits);
      const dh = createDiffieHellman(named.getPrime(), named.getGenerator());
      dh.setPrivateKey(toBuffer(x));
      dh.generateKeys(); // keeps the private key we set, computes g^x mod p
      assert.equal(fromBytes(dh.getPrivateKey()), x, "node kept our private key");
      assert.equal(derivePublicKey(group, x), fromBytes(dh.getPublicKey()), `${name} #${i}`);
    }
  }
});

Deno.test("oracle: derivePublicKey equals node:crypto for every RFC group and exponent size", () => {
  for (const name of RFC_GROUPS) {
    const group = GROUPS[name];
    const exponents = [
      1n,
      2n,
      255n,
      1n << 64n,
      (1n << 200n) - 1n,
      randomExactBits(8),
      randomExactBits(group.privateKeyBits - 1),
      randomExactBits(group.privateKeyBits),
      randomExactBits(group.privateKeyBits + 1),
      ...(group.bits <= 4096 ? [group.p - 2n, randomBetween(1n, group.p)] : []),
    ];
    for (const x of exponents) {
      assert.equal(derivePublicKey(group, x), nodeModpow(group.p, group.g, x), `${name}, x = ${x}`);
    }
  }
  // An RFC prime with another generator (`--prime … --generator 3`) is a different base.
  const custom = customGroup(GROUPS.ffdhe2048.p, 3n);
  assert.equal(custom.name, "custom");
  for (const x of [randomExactBits(225), randomExactBits(2047)]) {
    assert.equal(derivePublicKey(GROUPS.ffdhe2048, x), nodeModpow(custom.p, 2n, x));
    assert.equal(derivePublicKey(custom, x), nodeModpow(custom.p, 3n, x), "g = 3");
  }
});

/** Right-to-left square and multiply, the textbook way (independent of dh.ts). */
function naiveModpow(base: bigint, exponent: bigint, modulus: bigint): bigint {
  let result = 1n % modulus;
  let square = base % modulus;
  for (let e = exponent; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * square) % modulus;
    square = (square * square) % modulus;
  }
  return result;
}

Deno.test("oracle: modpow and derivePublicKey on random odd and even moduli of 5 … 4100 bits", () => {
  const sizes = [5, 64, 127, 521, 2047, 2048, 2049, 3000, 4100];
  const moduli: bigint[] = [];
  for (const bits of sizes) {
    const m = randomExactBits(bits);
    moduli.push(m | 1n, m & ~1n || 6n);
  }
  // More moduli than any per-modulus cache is likely to hold, then the first ones again.
  for (let i = 0; i < 40; i++) moduli.push(randomExactBits(80 + i));
  moduli.push(...moduli.slice(0, 6));
  for (const m of moduli) {
    const exponents = [0n, 1n, 2n, 3n, 1n << 70n, (1n << 70n) - 1n, randomExactBits(300)];
    if (m.toString(2).length <= 2100) exponents.push(randomBetween(1n, m));
    const base = randomBetween(0n, m);
    for (const x of exponents) {
      const expected = naiveModpow(base, x, m);
      assert.equal(modpow(base, x, m), expected, `modpow, ${m.toString(2).length}-bit m`);
      assert.equal(modpow(base + m, x, m), expected, "base ≥ m");
    }
    if (m > 8n) {
      // Two generators over the same modulus: nothing may be shared between them.
      for (const g of [randomBetween(2n, m - 1n), randomBetween(2n, m - 1n)]) {
        const group = customGroup(m, g);
        for (const x of exponents) {
          assert.equal(derivePublicKey(group, x), naiveModpow(g, x, m), `derivePublicKey, ${m}`);
        }
      }
    }
  }
});

Deno.test("oracle: modpow edge cases", async (t) => {
  const p = GROUPS.ffdhe2048.p;
  await t.step("exponent 0 gives 1, whatever the base", () => {
    for (const m of [2n, 3n, 23n, p]) {
      for (const b of [0n, 1n, 2n, m - 1n, m, m + 5n]) assert.equal(modpow(b, 0n, m), 1n);
    }
  });
  await t.step("base 0 gives 0 for a positive exponent", () => {
    for (const m of [2n, 3n, 23n, p]) {
      for (const e of [1n, 2n, 255n, p - 1n]) assert.equal(modpow(0n, e, m), 0n);
    }
  });
  await t.step("exponent 1 gives the base reduced", () => {
    assert.equal(modpow(7n, 1n, 23n), 7n);
    assert.equal(modpow(30n, 1n, 23n), 7n);
    assert.equal(modpow(p + 12345n, 1n, p), 12345n);
    assert.equal(modpow(p, 1n, p), 0n);
  });
  await t.step("a base ≥ the modulus is reduced first", () => {
    const y = randomBetween(2n, p - 1n);
    const x = randomExactBits(256);
    const expected = nodeModpow(p, y, x);
    assert.equal(modpow(y + p, x, p), expected);
    assert.equal(modpow(y + 7n * p, x, p), expected);
    assert.equal(modpow(y + p * p, x, p), expected);
    assert.equal(modpow(30n, 3n, 23n), 343n % 23n);
  });
  await t.step("moduli 2 and 3", () => {
    for (let b = 0n; b < 10n; b++) {
      for (let e = 0n; e < 10n; e++) {
        assert.equal(modpow(b, e, 2n), b ** e % 2n, `${b}^${e} mod 2`);
        assert.equal(modpow(b, e, 3n), b ** e % 3n, `${b}^${e} mod 3`);
      }
    }
  });
  await t.step("RangeError on negative base or exponent, modulus below 2", () => {
    assert.throws(() => modpow(-1n, 3n, 23n), RangeError);
    assert.throws(() => modpow(-24n, 3n, 23n), RangeError);
    assert.throws(() => modpow(5n, -1n, 23n), RangeError);
    assert.throws(() => modpow(5n, 3n, 1n), RangeError);
    assert.throws(() => modpow(5n, 3n, 0n), RangeError);
    assert.throws(() => modpow(5n, 3n, -23n), RangeError);
    assert.throws(() => modpow(0n, 0n, 1n), RangeError);
  });
});

Deno.test("oracle: modpow equals repeated multiplication for every tiny case", () => {
  for (let m = 2n; m <= 24n; m++) {
    for (let b = 0n; b <= 2n * m + 1n; b++) {
      let naive = 1n % m; // b^0
      for (let e = 0n; e <= 2n * m + 2n; e++) {
        assert.equal(modpow(b, e, m), naive, `${b}^${e} mod ${m}`);
        naive = (naive * b) % m;
      }
    }
  }
});

Deno.test("oracle: key schedule and records equal an independent node:crypto implementation", async (t) => {
  for (const v of VECTORS) {
    await t.step(`${v.group}/${v.cipher}: the vector follows the protocol text`, () => {
      const { p } = GROUPS[v.group];
      const { th, okm } = independentKeySchedule(
        p,
        BigInt(v.sharedSecret),
        v.helloLine,
        v.keyLine,
      );
      assert.equal(th.toString("hex"), v.transcriptHashHex);
      assert.equal(Buffer.from(okm).toString("hex"), v.keyScheduleHex);
      assert.equal(independentFingerprint(okm.subarray(128, 136)), v.fingerprint);
      const seqs = { "client->server": 0, "server->client": 0 };
      for (const record of v.records) {
        const seq = seqs[record.direction]++;
        const plaintext = utf8Encoder.encode(record.plaintext);
        const line = v.cipher === TOY_CIPHER
          ? independentXorSeal(BigInt(v.sharedSecret), typeOf(record.line), seq, plaintext)
          : independentSeal(okm, record.direction, typeOf(record.line), seq, plaintext);
        assert.equal(line, record.line);
      }
    });
  }

  await t.step("random messages, multi-block and empty, both directions", async () => {
    const v = vectorFor("ffdhe2048");
    const { client, server } = await vectorSessions(v);
    const okm = client.keySchedule;
    const alphabet = ["a", "Z", "0", " ", "é", "ß", "世", "界", "🙂", "\u0000", "\\", '"', "\n"];
    const lengths = [0, 1, 15, 16, 17, 31, 32, 33, 100, 1000, 70_000];
    for (const [seq, length] of lengths.entries()) {
      const chars = randomBytes(length);
      const text = Array.from(chars, (c) => alphabet[c % alphabet.length]).join("");
      const plaintext = utf8Encoder.encode(text);
      const up = await client.seal("msg", text);
      assert.equal(up, independentSeal(okm, "client->server", "msg", seq, plaintext));
      assert.deepEqual(await server.open(up), { type: "msg", seq, text });
      const down = await server.seal("msg", text);
      assert.equal(down, independentSeal(okm, "server->client", "msg", seq, plaintext));
      assert.deepEqual(await client.open(down), { type: "msg", seq, text });
    }
  });

  await t.step("Zbytes is left-padded to the byte length of p", async () => {
    const th = new Uint8Array(32).fill(7);
    for (const name of ["toy", "ffdhe2048", "modp3072"] as const) {
      const group = GROUPS[name];
      const secrets = [2n, 5n, 259n, group.p >> 9n, group.p - 2n];
      for (const z of secrets.filter((z) => z > 1n && z < group.p)) {
        const expected = hkdfSync(
          "sha256",
          toPaddedBuffer(z, group.byteLength),
          th,
          "dhx/1 key schedule",
          136,
        );
        const okm = await deriveKeySchedule(group, z, th);
        assert.equal(okm.toHex(), Buffer.from(expected).toString("hex"), `${name}, Z = ${z}`);
      }
    }
  });
});

// ───────────────────────────────────────────────────────────────────────────
// 3. Groups
// ───────────────────────────────────────────────────────────────────────────

const HAVE_OPENSSL = (() => {
  try {
    return new Deno.Command("openssl", { args: ["version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
})();

/** p and g of `openssl genpkey -genparam -algorithm DH -pkeyopt group:NAME`, parsed from DER. */
async function opensslGroup(name: string): Promise<{ p: bigint; g: bigint }> {
  const output = await new Deno.Command("openssl", {
    args: ["genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", `group:${name}`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
  const pem = new TextDecoder().decode(output.stdout);
  const match = pem.match(/-----BEGIN DH PARAMETERS-----([^-]+)-----END DH PARAMETERS-----/);
  assert.ok(match, `PEM DH parameters from openssl for ${name}:\n${pem}`);
  const der = Uint8Array.from(Buffer.from(match[1].replace(/\s+/g, ""), "base64"));
  // DHParameter ::= SEQUENCE { prime INTEGER, base INTEGER, privateValueLength INTEGER OPTIONAL }
  let pos = 0;
  const readLength = () => {
    let length = der[pos++];
    if (length & 0x80) {
      const count = length & 0x7f;
      length = 0;
      for (let i = 0; i < count; i++) length = length * 256 + der[pos++];
    }
    return length;
  };
  assert.equal(der[pos++], 0x30, "SEQUENCE");
  const end = readLength() + pos;
  assert.equal(end, der.length);
  const integers: bigint[] = [];
  while (pos < end) {
    assert.equal(der[pos++], 0x02, "INTEGER");
    const length = readLength();
    integers.push(fromBytes(der.subarray(pos, pos + length)));
    pos += length;
  }
  assert.ok(integers.length >= 2, "p and g");
  return { p: integers[0], g: integers[1] };
}

/** Miller–Rabin with the given bases (modpow from dh.ts). */
function millerRabin(n: bigint, bases: readonly bigint[]): boolean {
  if (n < 4n) return n === 2n || n === 3n;
  if (n % 2n === 0n) return false;
  let d = n - 1n;
  let s = 0;
  while (d % 2n === 0n) {
    d /= 2n;
    s++;
  }
  next: for (const a of bases) {
    if (a % n === 0n) continue; // only for tiny n
    let x = modpow(a, d, n);
    if (x === 1n || x === n - 1n) continue;
    for (let i = 1; i < s; i++) {
      x = (x * x) % n;
      if (x === n - 1n) continue next;
    }
    return false;
  }
  return true;
}

/** Base 2 and `rounds - 1` random bases in [3, n − 2]. */
function millerRabinBases(n: bigint, rounds: number): bigint[] {
  return [2n, ...Array.from({ length: rounds - 1 }, () => randomBetween(3n, n - 1n))];
}

Deno.test("groups: GROUPS has exactly the DHX/1 group names", () => {
  assert.deepEqual(Object.keys(GROUPS).sort(), ["toy", ...RFC_GROUPS].sort());
  assert.ok(Object.isFrozen(GROUPS), "GROUPS is frozen");
  assert.deepEqual([...SECURE_GROUP_NAMES].sort(), [...RFC_GROUPS].sort());
  for (const [name, group] of Object.entries(GROUPS)) {
    assert.equal(group.name, name);
    assert.ok(isGroupName(name));
    assert.ok(Object.isFrozen(group), `${name} is frozen`);
  }
  for (const notAGroup of ["custom", "modp1536", "FFDHE2048", "__proto__", "toString", 5]) {
    assert.equal(isGroupName(notAGroup), false, String(notAGroup));
  }
});

Deno.test("groups: toy is p = 23, g = 5", () => {
  assert.equal(GROUPS.toy.p, 23n);
  assert.equal(GROUPS.toy.g, 5n);
  assert.equal(GROUPS.toy.bits, 5);
  assert.equal(GROUPS.toy.byteLength, 1);
});

Deno.test("groups: bits and byteLength match p", () => {
  for (const group of Object.values(GROUPS)) {
    assert.equal(group.bits, bitLengthOf(group.p), group.name);
    assert.equal(group.byteLength, Math.ceil(bitLengthOf(group.p) / 8), group.name);
    if (group.name !== "toy") assert.equal(group.bits, Number(group.name.slice(-4)), group.name);
  }
});

Deno.test("groups: modp2048/3072/4096 equal node:crypto's modp14/15/16", () => {
  const pairs: [GroupName, string][] = [
    ["modp2048", "modp14"],
    ["modp3072", "modp15"],
    ["modp4096", "modp16"],
  ];
  for (const [name, nodeName] of pairs) {
    const node = getDiffieHellman(nodeName);
    assert.equal(GROUPS[name].p, fromBytes(node.getPrime()), `${name} p`);
    assert.equal(GROUPS[name].g, fromBytes(node.getGenerator()), `${name} g`);
  }
});

Deno.test({
  name: "groups: every ffdhe (and modp) group equals OpenSSL's encoding",
  ignore: !HAVE_OPENSSL,
  fn: async () => {
    const names: [GroupName, string][] = [
      ["ffdhe2048", "ffdhe2048"],
      ["ffdhe3072", "ffdhe3072"],
      ["ffdhe4096", "ffdhe4096"],
      ["ffdhe6144", "ffdhe6144"],
      ["ffdhe8192", "ffdhe8192"],
      ["modp2048", "modp_2048"],
      ["modp3072", "modp_3072"],
      ["modp4096", "modp_4096"],
    ];
    const fromOpenssl = await Promise.all(names.map(([, openssl]) => opensslGroup(openssl)));
    for (const [i, [name]] of names.entries()) {
      assert.equal(GROUPS[name].p, fromOpenssl[i].p, `${name} p`);
      assert.equal(GROUPS[name].g, fromOpenssl[i].g, `${name} g`);
    }
  },
});

Deno.test("groups: the Miller–Rabin helper separates primes from composites", () => {
  const isPrimeNaive = (n: number) => {
    if (n < 2) return false;
    for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
    return true;
  };
  for (let n = 0; n < 2000; n++) {
    assert.equal(millerRabin(BigInt(n), [2n, 3n, 5n, 7n]), isPrimeNaive(n), String(n));
  }
  // A product of two large primes is caught.
  const composite = GROUPS.modp2048.p * GROUPS.ffdhe2048.p;
  assert.equal(millerRabin(composite, millerRabinBases(composite, 2)), false);
});

Deno.test("groups: every RFC group is a safe prime with g = 2 of order q = (p − 1)/2", async (t) => {
  // Miller–Rabin rounds per size, bounded by run time: each round is one
  // full-size modpow (15 ms at 2048 bits, 650 ms at 8192). A typo in a constant
  // yields a random-looking composite, which a single round already rejects
  // with overwhelming probability; the small groups get many more.
  const rounds: Record<number, { q: number; p: number }> = {
    2048: { q: 16, p: 4 },
    3072: { q: 4, p: 2 },
    4096: { q: 2, p: 1 },
    6144: { q: 1, p: 1 },
    8192: { q: 1, p: 1 },
  };
  for (const name of RFC_GROUPS) {
    await t.step(name, () => {
      const { p, g, bits } = GROUPS[name];
      const q = (p - 1n) / 2n;
      assert.equal(g, 2n, "g = 2");
      assert.equal(p % 8n, 7n, "p ≡ 7 (mod 8), so 2 is a square mod p");
      assert.ok(millerRabin(q, millerRabinBases(q, rounds[bits].q)), "q = (p − 1)/2 is prime");
      // p − 1 = 2q, so p's Miller–Rabin round to base 2 is 2^q mod p ∈ {1, p − 1}.
      // For these groups it is 1: g = 2 generates the subgroup of prime order
      // q. Given q prime, 2^(p−1) ≡ 1 and gcd(2² − 1, p) = 1 are also
      // Pocklington's proof that p is prime.
      assert.equal(modpow(2n, q, p), 1n, "2^q ≡ 1 (mod p)");
      assert.notEqual(p % 3n, 0n);
      const randomBases = millerRabinBases(p, rounds[bits].p + 1).slice(1);
      assert.ok(millerRabin(p, randomBases), "p is prime");
    });
  }
  await t.step("node:crypto agrees on ffdhe2048", () => {
    const { p } = GROUPS.ffdhe2048;
    assert.ok(checkPrimeSync(p, { checks: 1 }), "node says p is prime");
    assert.ok(checkPrimeSync((p - 1n) / 2n, { checks: 1 }), "node says q is prime");
  });
});

Deno.test("groups: privateKeyBits are OpenSSL's (twice the security strength)", () => {
  const expected: Record<GroupName, number> = {
    toy: 5, // toy and custom groups: the size of p
    modp2048: 225,
    modp3072: 275,
    modp4096: 325,
    ffdhe2048: 225,
    ffdhe3072: 275,
    ffdhe4096: 325,
    ffdhe6144: 375,
    ffdhe8192: 400,
  };
  for (const name of Object.keys(expected) as GroupName[]) {
    assert.equal(GROUPS[name].privateKeyBits, expected[name], name);
  }
});

Deno.test("groups: generatePrivateKey sizes and ranges", async (t) => {
  await t.step("RFC groups: exactly privateKeyBits bits, fresh every call", () => {
    for (const name of RFC_GROUPS) {
      const group = GROUPS[name];
      const keys = new Set<bigint>();
      for (let i = 0; i < 16; i++) {
        const key = generatePrivateKey(group);
        assert.equal(bitLengthOf(key), group.privateKeyBits, `${name} key size`);
        assert.ok(key < group.p - 1n);
        keys.add(key);
      }
      assert.equal(keys.size, 16, `${name}: two calls gave the same key`);
      assert.notEqual(generatePrivateKey(group), generatePrivateKey(group));
    }
  });
  await t.step("toy: uniform over [2, p − 2], every value reached", () => {
    const seen = new Map<bigint, number>();
    for (let i = 0; i < 4000; i++) {
      const key = generatePrivateKey(GROUPS.toy);
      assert.ok(key >= 2n && key <= 21n, `toy key ${key} outside [2, 21]`);
      seen.set(key, (seen.get(key) ?? 0) + 1);
    }
    assert.equal(seen.size, 20, "all of 2 … 21 appear");
    // 200 expected per value; a value below 100 or above 300 means bias.
    for (const [key, count] of seen) assert.ok(count > 100 && count < 300, `${key}: ${count}`);
  });
  await t.step("custom groups: [2, p − 2]", () => {
    const group = customGroup(47n, 5n);
    assert.equal(group.name, "custom");
    for (let i = 0; i < 2000; i++) {
      const key = generatePrivateKey(group);
      assert.ok(key >= 2n && key <= 45n, `custom key ${key}`);
    }
  });
});

Deno.test("groups: customGroup names known parameters and checks its input", () => {
  assert.equal(customGroup(23n, 5n), GROUPS.toy);
  assert.equal(customGroup(GROUPS.ffdhe3072.p, 2n), GROUPS.ffdhe3072);
  assert.equal(customGroup(GROUPS.ffdhe3072.p, 3n).name, "custom");
  assert.throws(() => customGroup(3n, 2n), RangeError);
  assert.throws(() => customGroup(23n, 1n), RangeError);
  assert.throws(() => customGroup(23n, 22n), RangeError);
  assert.throws(() => customGroup(1n << BigInt(MAX_GROUP_BITS), 2n), RangeError);
});

// ───────────────────────────────────────────────────────────────────────────
// 4. Rejection
// ───────────────────────────────────────────────────────────────────────────

Deno.test("reject: validatePublicKey enforces 1 < Y < p − 1", () => {
  for (const group of Object.values(GROUPS)) {
    const { p } = group;
    for (const bad of [0n, 1n, p - 1n, p, p + 1n, 2n * p]) {
      throwsProtocol(() => validatePublicKey(group, bad), /invalid public key/);
    }
    for (const good of [2n, p - 2n, (p - 1n) / 2n]) {
      assert.doesNotThrow(() => validatePublicKey(group, good), `${group.name}: ${good}`);
    }
  }
});

Deno.test("reject: parseWireInteger accepts only decimal-digit strings", () => {
  assert.equal(parseWireInteger("23", "p"), 23n);
  assert.equal(parseWireInteger("0", "p"), 0n);
  const p = GROUPS.ffdhe8192.p.toString();
  assert.equal(parseWireInteger(p, "p"), GROUPS.ffdhe8192.p);
  const largest = ((1n << BigInt(MAX_GROUP_BITS)) - 1n).toString(); // every 8192-bit number fits
  assert.equal(parseWireInteger(largest, "p"), BigInt(largest));

  const refused: [unknown, RegExp][] = [
    ["-5", /p must contain only decimal digits/],
    ["+5", /only decimal digits/],
    ["0x10", /only decimal digits/],
    ["0x17", /only decimal digits/],
    ["1e3", /only decimal digits/],
    ["1.0", /only decimal digits/],
    [" 5", /only decimal digits/],
    ["5 ", /only decimal digits/],
    ["5\n", /only decimal digits/],
    ["", /only decimal digits/],
    ["１２", /only decimal digits/], // full-width digits
    ["١٢", /only decimal digits/], // Arabic-Indic digits
    [5, /p must be a string of decimal digits/],
    [null, /must be a string/],
    [undefined, /must be a string/],
    [["5"], /must be a string/],
    [{ value: "5" }, /must be a string/],
    [largest + "0", /digits/],
    ["9".repeat(100_000), /100000 digits/],
  ];
  for (const [value, message] of refused) {
    throwsProtocol(() => parseWireInteger(value, "p"), message);
  }
  // An explicit bound.
  assert.equal(parseWireInteger("99", "x", 2), 99n);
  throwsProtocol(() => parseWireInteger("100", "x", 2), /x has 3 digits; at most 2/);
});

const FFDHE2048_HELLO = vectorFor("ffdhe2048").helloLine;

Deno.test("reject: parseHello refusals of a secure client (insecure: false)", async (t) => {
  const secure = { insecure: false };
  const p = GROUPS.ffdhe2048.p;
  const cases: [string, string, RegExp][] = [
    ["the toy group", vectorFor("toy").helloLine, /toy group/],
    [
      "the toy group with the secure cipher",
      withFields(vectorFor("toy").helloLine, { cipher: SECURE_CIPHER }),
      /toy group/,
    ],
    [
      "a custom group",
      withFields(FFDHE2048_HELLO, { group: "custom", p: "1019", g: "2", publicKey: "4" }),
      /custom parameters/,
    ],
    [
      "a custom group carrying ffdhe2048's own numbers",
      withFields(FFDHE2048_HELLO, { group: "custom" }),
      /custom parameters/,
    ],
    [
      "ffdhe2048 with a modified p",
      withFields(FFDHE2048_HELLO, { p: (p - 2n).toString() }),
      /differ from RFC 7919/,
    ],
    [
      "ffdhe2048 with another group's p",
      withFields(FFDHE2048_HELLO, { p: GROUPS.modp2048.p.toString() }),
      /differ/,
    ],
    ["ffdhe2048 with g = 5", withFields(FFDHE2048_HELLO, { g: "5" }), /p or g .*differ/],
    ["the xor8 cipher", withFields(FFDHE2048_HELLO, { cipher: TOY_CIPHER }), /cipher xor8/],
    ["protocol dhx/2", withFields(FFDHE2048_HELLO, { protocol: "dhx/2" }), /protocol "dhx\/2"/],
    ["no protocol", withFields(FFDHE2048_HELLO, { protocol: undefined }), /protocol/],
    [
      "an unknown cipher",
      withFields(FFDHE2048_HELLO, { cipher: "aes-128-gcm" }),
      /unknown cipher "aes-128-gcm"/,
    ],
    ["no cipher", withFields(FFDHE2048_HELLO, { cipher: undefined }), /unknown cipher/],
    ["an unknown group", withFields(FFDHE2048_HELLO, { group: "ffdhe1024" }), /unknown group/],
    ["a non-JSON line", "hello there", /not a JSON frame/],
    ["a truncated line", FFDHE2048_HELLO.slice(0, -1), /not a JSON frame/],
    ["a JSON array", JSON.stringify([JSON.parse(FFDHE2048_HELLO)]), /must be a JSON object/],
    ["JSON null", "null", /must be a JSON object/],
    ["a JSON string", '"hello"', /must be a JSON object/],
    ["a JSON number", "42", /must be a JSON object/],
    ["another frame type", withFields(FFDHE2048_HELLO, { type: "key" }), /expected a hello/],
    ["public key 0", withFields(FFDHE2048_HELLO, { publicKey: "0" }), /invalid public key/],
    ["public key 1", withFields(FFDHE2048_HELLO, { publicKey: "1" }), /invalid public key/],
    [
      "public key p − 1",
      withFields(FFDHE2048_HELLO, { publicKey: (p - 1n).toString() }),
      /invalid public key \(p - 1\)/,
    ],
    [
      "public key p",
      withFields(FFDHE2048_HELLO, { publicKey: p.toString() }),
      /invalid public key/,
    ],
    [
      "public key with more digits than p",
      withFields(FFDHE2048_HELLO, { publicKey: p.toString() + "0" }),
      /publicKey has \d+ digits/,
    ],
    [
      "public key as a JSON number",
      withFields(FFDHE2048_HELLO, { publicKey: 4 }),
      /publicKey must be a string/,
    ],
    ["p as a JSON number", withFields(FFDHE2048_HELLO, { p: 23 }), /p must be a string/],
    ["g as hex", withFields(FFDHE2048_HELLO, { g: "0x2" }), /g must contain only decimal/],
  ];
  for (const [name, line, message] of cases) {
    await t.step(name, () => throwsProtocol(() => parseHello(line, secure), message));
  }
  await t.step("the unmodified hello is accepted (the cases above differ only as named)", () => {
    assert.equal(parseHello(FFDHE2048_HELLO, secure).group, GROUPS.ffdhe2048);
  });
});

Deno.test("reject: parseHello in toy mode still refuses what no mode accepts", async (t) => {
  const toy = { insecure: true };
  const hello = vectorFor("toy").helloLine;
  await t.step("toy mode accepts toy/xor8 and custom groups", () => {
    assert.equal(parseHello(hello, toy).group, GROUPS.toy);
    const custom = parseHello(withFields(hello, { group: "custom", p: "47", g: "5" }), toy);
    assert.equal(custom.group.name, "custom");
    assert.equal(custom.group.p, 47n);
  });
  const cases: [string, string, RegExp][] = [
    ["protocol dhx/2", withFields(hello, { protocol: "dhx/2" }), /protocol/],
    ["an unknown cipher", withFields(hello, { cipher: "rot13" }), /unknown cipher/],
    ["an unknown group", withFields(hello, { group: "big" }), /unknown group/],
    ["public key 1", withFields(hello, { publicKey: "1" }), /invalid public key/],
    ["public key p − 1", withFields(hello, { publicKey: "22" }), /invalid public key/],
    ["public key 0", withFields(hello, { publicKey: "0" }), /invalid public key/],
    ["an unusable custom p", withFields(hello, { group: "custom", p: "3" }), /unusable/],
    ["a custom g of 1", withFields(hello, { group: "custom", g: "1" }), /unusable/],
  ];
  for (const [name, line, message] of cases) {
    await t.step(name, () => throwsProtocol(() => parseHello(line, toy), message));
  }
});

Deno.test("reject: an error frame is a ProtocolError from the peer", async (t) => {
  const errorLine = encodeError("server is full");
  assert.deepEqual(JSON.parse(errorLine), { type: "error", message: "server is full" });
  await t.step("parseFrame and parseHello", () => {
    for (const policy of [{ insecure: false }, { insecure: true }]) {
      assert.throws(() => parseHello(errorLine, policy), protocolError(/server is full/, true));
    }
    assert.throws(() => parseFrame(errorLine), protocolError(/server is full/, true));
    assert.throws(
      () => parseFrame('{"type":"error"}'),
      protocolError(/no message/, true),
    );
  });
  await t.step("acceptKey", async () => {
    const offer = createOffer(GROUPS.ffdhe2048, SECURE_CIPHER);
    await assert.rejects(
      async () => await acceptKey(offer, encodeError("bad client")),
      protocolError(/bad client/, true),
    );
  });
  await t.step("Session.open returns it as an error frame", async () => {
    const { server } = await vectorSessions(vectorFor("ffdhe2048"));
    const frame = await server.open(encodeError("bye now"));
    assert.equal(frame.type, "error");
    assert.match((frame as { message: string }).message, /bye now/);
  });
  await t.step("its text is made safe for a terminal", () => {
    assert.throws(
      () => parseFrame(encodeError("\u001b[31mred\u0007")),
      (error: unknown) => {
        protocolError(/red/, true)(error);
        const message = (error as Error).message;
        assert.ok([...message].every((c) => c.charCodeAt(0) >= 0x20), JSON.stringify(message));
        return true;
      },
    );
  });
});

Deno.test("reject: acceptKey refuses bad key frames", async (t) => {
  const v = vectorFor("ffdhe2048");
  const group = GROUPS.ffdhe2048;
  const offer = createOffer(group, SECURE_CIPHER, BigInt(v.serverPrivateKey));
  const p = group.p;
  const cases: [string, string, RegExp][] = [
    ["a hello frame", v.helloLine, /expected a key frame/],
    ["no type", withFields(v.keyLine, { type: undefined }), /expected a key frame/],
    ["a msg frame", v.records[0].line, /expected a key frame/],
    ["non-JSON", "key 12345", /not a JSON frame/],
    ["a JSON array", "[]", /must be a JSON object/],
    ["a JSON number key", withFields(v.keyLine, { publicKey: 12345 }), /must be a string/],
    ["no key", withFields(v.keyLine, { publicKey: undefined }), /must be a string/],
    ["a negative key", withFields(v.keyLine, { publicKey: "-5" }), /only decimal digits/],
    ["a hex key", withFields(v.keyLine, { publicKey: "0x10" }), /only decimal digits/],
    ["an exponent key", withFields(v.keyLine, { publicKey: "1e3" }), /only decimal digits/],
    ["an empty key", withFields(v.keyLine, { publicKey: "" }), /only decimal digits/],
    ["a padded key", withFields(v.keyLine, { publicKey: " 12345" }), /only decimal digits/],
    ["key 0", withFields(v.keyLine, { publicKey: "0" }), /invalid public key/],
    ["key 1", withFields(v.keyLine, { publicKey: "1" }), /invalid public key/],
    ["key p − 1", withFields(v.keyLine, { publicKey: (p - 1n).toString() }), /p - 1/],
    ["key p", withFields(v.keyLine, { publicKey: p.toString() }), /invalid public key/],
    ["key p + 1", withFields(v.keyLine, { publicKey: (p + 1n).toString() }), /invalid/],
    ["a key too long", withFields(v.keyLine, { publicKey: "1".repeat(700) }), /digits/],
  ];
  for (const [name, line, message] of cases) {
    await t.step(name, () => rejectsProtocol(() => acceptKey(offer, line), message));
  }
  await t.step("the vector key line is accepted", async () => {
    assert.equal((await acceptKey(offer, v.keyLine)).fingerprint, v.fingerprint);
  });
});

Deno.test("reject: Session.open refuses every deviation", async (t) => {
  const v = vectorFor("ffdhe2048");
  const fresh = () => vectorSessions(v);

  await t.step("a flipped bit in the tag", async () => {
    const { client, server } = await fresh();
    const line = await client.seal("msg", "hello");
    const { tag } = JSON.parse(line);
    for (const [index, bit] of [[0, 0], [13, 5], [31, 7]]) {
      const tampered = withFields(line, { tag: flipBit(tag, index, bit) });
      await rejectsProtocol(() => server.open(tampered), /authentication failed/);
    }
  });

  await t.step("a flipped bit in the data", async () => {
    const { client, server } = await fresh();
    const line = await client.seal("msg", "hello");
    const tampered = withFields(line, { data: flipBit(JSON.parse(line).data, 2, 3) });
    await rejectsProtocol(() => server.open(tampered), /authentication failed/);
    // Bit 7 of "h" would decrypt to 0xE8, invalid UTF-8: the tag is checked first.
    const garbled = withFields(line, { data: flipBit(JSON.parse(line).data, 0, 7) });
    await rejectsProtocol(() => server.open(garbled), /authentication failed/);
  });

  await t.step("appended or truncated data", async () => {
    const { client, server } = await fresh();
    const line = await client.seal("msg", "hello");
    const data = Buffer.from(JSON.parse(line).data, "base64");
    for (const changed of [Buffer.concat([data, Buffer.of(0)]), data.subarray(0, 4)]) {
      const tampered = withFields(line, { data: changed.toString("base64") });
      await rejectsProtocol(() => server.open(tampered), /authentication failed/);
    }
  });

  await t.step("a changed type (the type is authenticated)", async () => {
    const { client, server } = await fresh();
    const line = await client.seal("bye", "");
    await rejectsProtocol(
      () => server.open(withFields(line, { type: "msg" })),
      /authentication failed/,
    );
  });

  await t.step("a changed seq (the seq is authenticated)", async () => {
    const { client, server } = await fresh();
    await client.seal("msg", "first");
    const second = await client.seal("msg", "second");
    await rejectsProtocol(
      () => server.open(withFields(second, { seq: 0 })),
      /authentication failed/,
    );
  });

  await t.step("a replayed record", async () => {
    const { client, server } = await fresh();
    const line = await client.seal("msg", "hello");
    assert.deepEqual(await server.open(line), { type: "msg", seq: 0, text: "hello" });
    await rejectsProtocol(() => server.open(line), /wrong sequence number 0, expected 1/);
  });

  await t.step("a skipped record", async () => {
    const { client, server } = await fresh();
    const first = await client.seal("msg", "one");
    await client.seal("msg", "two");
    const third = await client.seal("msg", "three");
    assert.equal((await server.open(first)).type, "msg");
    await rejectsProtocol(() => server.open(third), /wrong sequence number 2, expected 1/);
  });

  await t.step("reordered records", async () => {
    const { client, server } = await fresh();
    await client.seal("msg", "one");
    const second = await client.seal("msg", "two");
    await rejectsProtocol(() => server.open(second), /wrong sequence number 1, expected 0/);
  });

  await t.step("a record reflected back to its sender", async () => {
    const { server } = await fresh();
    const line = await server.seal("msg", "echo");
    await rejectsProtocol(() => server.open(line), /authentication failed/);
  });

  await t.step("a seq that is not the JSON integer", async () => {
    const { client, server } = await fresh();
    const line = await client.seal("msg", "hello");
    for (const seq of ["0", null, undefined, -1, 0.5, [0], true]) {
      await rejectsProtocol(
        () => server.open(withFields(line, { seq })),
        /wrong sequence number/,
      );
    }
    assert.deepEqual(await server.open(line), { type: "msg", seq: 0, text: "hello" }, "genuine");
  });

  await t.step("data that is not standard padded base64", async () => {
    const { client, server } = await fresh();
    const line = await client.seal("msg", "hi!!"); // 4 bytes: 8 base64 characters, "=="
    const data: string = JSON.parse(line).data;
    assert.match(data, /==$/);
    const bad = [
      data.replace(/^./, "*"), // outside the alphabet
      data.replace(/^./, "-"), // base64url alphabet
      data.replace(/==$/, ""), // missing padding
      data.replace(/==$/, "="), // half the padding
      ` ${data}`, // leading whitespace
      `${data}\n`, // trailing newline
      `${data.slice(0, 4)} ${data.slice(4)}`, // inner space
      `${data}====`, // too much padding
      5,
      null,
    ];
    for (const value of bad) {
      await rejectsProtocol(
        () => server.open(withFields(line, { data: value })),
        /data is not standard padded base64/,
      );
    }
    // The last character before "==" carries 2 data bits and 4 zero bits;
    // setting one of the zero bits keeps the alphabet but breaks canonicity.
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const noncanonical = data.slice(0, 5) + alphabet[alphabet.indexOf(data[5]) ^ 1] + "==";
    assert.deepEqual(
      Buffer.from(noncanonical, "base64"),
      Buffer.from(data, "base64"),
      "a lenient decoder reads the same bytes",
    );
    await rejectsProtocol(
      () => server.open(withFields(line, { data: noncanonical })),
      /data is not .*base64/,
    );
  });

  await t.step("a tag that is not base64, missing, or not 32 bytes", async () => {
    const { client, server } = await fresh();
    const line = await client.seal("msg", "hello");
    const tag = Buffer.from(JSON.parse(line).tag, "base64");
    await rejectsProtocol(
      () => server.open(withFields(line, { tag: "!" + JSON.parse(line).tag.slice(1) })),
      /tag is not standard padded base64/,
    );
    await rejectsProtocol(
      () => server.open(withFields(line, { tag: undefined })),
      /tag is not standard padded base64/,
    );
    for (const short of [tag.subarray(0, 16), tag.subarray(0, 31), Buffer.concat([tag, tag])]) {
      await rejectsProtocol(
        () => server.open(withFields(line, { tag: short.toString("base64") })),
        /authentication failed/,
      );
    }
    await rejectsProtocol(
      () => server.open(withFields(line, { tag: "" })),
      /authentication failed/,
    );
  });

  await t.step("invalid UTF-8 under a valid tag", async () => {
    const invalid = [
      Uint8Array.of(0xff),
      Uint8Array.of(0x68, 0x69, 0xc3), // truncated sequence
      Uint8Array.of(0xc0, 0xaf), // overlong "/"
      Uint8Array.of(0xed, 0xa0, 0x80), // a UTF-16 surrogate
    ];
    for (const bytes of invalid) {
      const { server } = await fresh();
      const okm = server.keySchedule;
      // The construction is genuine: with valid text it opens on a twin session.
      const twin = (await fresh()).server;
      const valid = independentSeal(okm, "client->server", "msg", 0, utf8Encoder.encode("ok"));
      assert.deepEqual(await twin.open(valid), { type: "msg", seq: 0, text: "ok" });
      const forged = independentSeal(okm, "client->server", "msg", 0, bytes);
      await rejectsProtocol(() => server.open(forged), /not valid UTF-8/);
    }
  });

  await t.step("invalid UTF-8 in an xor8 record", async () => {
    const toy = vectorFor("toy");
    const { server } = await vectorSessions(toy);
    const line = independentXorSeal(BigInt(toy.sharedSecret), "msg", 0, Uint8Array.of(0xff, 0x41));
    await rejectsProtocol(() => server.open(line), /not valid UTF-8/);
  });

  await t.step("an ack sent by a client", async () => {
    const { client, server } = await fresh();
    const line = await client.seal("ack", "0");
    await rejectsProtocol(() => server.open(line), /a client may not send ack/);
  });

  await t.step("a bye that is not empty", async () => {
    const { client, server } = await fresh();
    await rejectsProtocol(
      async () => server.open(await client.seal("bye", "x")),
      /bye record must be empty/,
    );
    await rejectsProtocol(
      async () => client.open(await server.seal("bye", "see you")),
      /bye record must be empty/,
    );
  });

  await t.step("frames that are not records", async () => {
    const { server, client } = await fresh();
    await rejectsProtocol(() => server.open(v.keyLine), /unexpected frame type "key"/);
    await rejectsProtocol(() => client.open(v.helloLine), /unexpected frame type "hello"/);
    await rejectsProtocol(
      () => server.open('{"seq":0,"data":"","tag":""}'),
      /unexpected frame type/,
    );
    await rejectsProtocol(() => server.open("not json"), /not a JSON frame/);
    await rejectsProtocol(() => server.open("[0]"), /must be a JSON object/);
  });

  await t.step("the same deviations in xor8 (no tag)", async () => {
    const toy = vectorFor("toy");
    const { client, server } = await vectorSessions(toy);
    const line = await client.seal("msg", "hello");
    assert.deepEqual(await server.open(line), { type: "msg", seq: 0, text: "hello" });
    await rejectsProtocol(() => server.open(line), /wrong sequence number/);
    await rejectsProtocol(
      () => server.open(withFields(line, { seq: "1", data: "aGk" })),
      /wrong sequence number/,
    );
    await rejectsProtocol(
      () => server.open(withFields(line, { seq: 1, data: "aGk" })),
      /not standard padded base64/,
    );
    await rejectsProtocol(async () => server.open(await client.seal("ack", "0")), /may not send/);
  });
});

Deno.test("reject: checkAck accepts only the oldest pending seq", () => {
  assert.doesNotThrow(() => checkAck("0", 0));
  assert.doesNotThrow(() => checkAck("17", 17));
  throwsProtocol(() => checkAck("1", 0), /acknowledged message 1, expected 0/);
  throwsProtocol(() => checkAck("0", 1), /expected 1/);
  throwsProtocol(() => checkAck("0", undefined), /never sent/);
  for (const text of ["00", " 0", "0 ", "+0", "0.0", "", "zero"]) {
    throwsProtocol(() => checkAck(text, 0), /expected 0/);
  }
  throwsProtocol(() => checkAck("\u001b[2J", 0), /\\u\{1b\}/); // shown escaped
});

// ───────────────────────────────────────────────────────────────────────────
// 5. xor, byte conversions, fingerprint
// ───────────────────────────────────────────────────────────────────────────

Deno.test("xor: one-byte key, full keystream, empty key, inputs untouched", () => {
  const data = crypto.getRandomValues(new Uint8Array(100));
  const dataCopy = data.slice();

  const key1 = Uint8Array.of(0x5a);
  const out1 = xor(data, key1);
  assert.equal(out1.length, data.length);
  for (let i = 0; i < data.length; i++) assert.equal(out1[i], data[i] ^ 0x5a);

  const stream = crypto.getRandomValues(new Uint8Array(100));
  const streamCopy = stream.slice();
  const out2 = xor(data, stream);
  for (let i = 0; i < data.length; i++) assert.equal(out2[i], data[i] ^ stream[i]);
  assert.deepEqual(xor(out2, stream), data, "xor is its own inverse");

  const key3 = Uint8Array.of(1, 2, 3);
  const out3 = xor(data, key3);
  for (let i = 0; i < data.length; i++) assert.equal(out3[i], data[i] ^ key3[i % 3]);

  assert.deepEqual(xor(new Uint8Array(0), key1), new Uint8Array(0));
  assert.throws(() => xor(data, new Uint8Array(0)), RangeError);

  assert.deepEqual(data, dataCopy, "data not mutated");
  assert.deepEqual(stream, streamCopy, "key not mutated");
  assert.deepEqual(key1, Uint8Array.of(0x5a));
  assert.notEqual(xor(data, key1), data, "a new array");
});

Deno.test("xor: subarray inputs are read at their offsets", () => {
  const buffer = Uint8Array.from({ length: 32 }, (_, i) => i);
  const data = buffer.subarray(8, 16);
  const key = buffer.subarray(20, 21);
  const out = xor(data, key);
  assert.deepEqual(out, Uint8Array.from({ length: 8 }, (_, i) => (i + 8) ^ 20));
});

Deno.test("bytes: bigintToBytes and bytesToBigint round trip and pad", () => {
  assert.deepEqual(bigintToBytes(1n, 4), Uint8Array.of(0, 0, 0, 1));
  assert.deepEqual(bigintToBytes(0n, 3), Uint8Array.of(0, 0, 0));
  assert.deepEqual(bigintToBytes(0x0102n, 2), Uint8Array.of(1, 2));
  assert.deepEqual(bigintToBytes(0xabcn, 2), Uint8Array.of(0x0a, 0xbc)); // odd hex length
  assert.deepEqual(bigintToBytes(255n, 1), Uint8Array.of(255));
  assert.throws(() => bigintToBytes(256n, 1), RangeError);
  assert.throws(() => bigintToBytes(-1n, 4), RangeError);
  assert.equal(bytesToBigint(new Uint8Array(0)), 0n);
  assert.equal(bytesToBigint(Uint8Array.of(0, 0, 1, 0)), 256n);

  for (const length of [1, 2, 7, 32, 256, 384, 1024]) {
    for (let i = 0; i < 5; i++) {
      const bytes = crypto.getRandomValues(new Uint8Array(length));
      if (i === 0) bytes.fill(0, 0, Math.ceil(length / 2)); // leading zeros
      const n = bytesToBigint(bytes);
      assert.equal(n, fromBytes(bytes));
      const back = bigintToBytes(n, length);
      assert.deepEqual(back, bytes);
      assert.deepEqual(Buffer.from(bigintToBytes(n, length + 3)), toPaddedBuffer(n, length + 3));
    }
  }
  // Zbytes of every group: Z padded to the byte length of p.
  for (const group of Object.values(GROUPS)) {
    const z = group.p - 2n;
    assert.equal(bigintToBytes(z, group.byteLength).length, group.byteLength);
    assert.equal(bigintToBytes(2n, group.byteLength).length, group.byteLength);
    assert.equal(bytesToBigint(bigintToBytes(z, group.byteLength)), z);
  }
});

Deno.test("bytes: bitLength", () => {
  assert.equal(bitLength(0n), 0);
  assert.equal(bitLength(1n), 1);
  assert.equal(bitLength(255n), 8);
  assert.equal(bitLength(256n), 9);
  assert.equal(bitLength(GROUPS.ffdhe8192.p), 8192);
  assert.throws(() => bitLength(-1n), RangeError);
});

Deno.test("fingerprint: formatFingerprint is four groups of four uppercase hex digits", () => {
  assert.equal(
    formatFingerprint(Uint8Array.of(0x90, 0xb9, 0xa4, 0xd2, 0x25, 0xf0, 0xbe, 0x47)),
    "90B9-A4D2-25F0-BE47", // the example of the protocol text
  );
  assert.equal(formatFingerprint(new Uint8Array(8)), "0000-0000-0000-0000");
  for (let i = 0; i < 20; i++) {
    const bytes = crypto.getRandomValues(new Uint8Array(8));
    const fingerprint = formatFingerprint(bytes);
    assert.match(fingerprint, /^[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}$/);
    assert.equal(fingerprint, independentFingerprint(bytes));
  }
  assert.throws(() => formatFingerprint(new Uint8Array(7)), RangeError);
  assert.throws(() => formatFingerprint(new Uint8Array(9)), RangeError);
});

// ───────────────────────────────────────────────────────────────────────────
// 6. Line reader
// ───────────────────────────────────────────────────────────────────────────

type Chunk = string | number[] | Uint8Array;

/** A pull stream that hands out `chunks` one per read, then closes. */
function streamOf(chunks: Chunk[]): ReadableStream<Uint8Array> {
  const queue = chunks.map((chunk) =>
    typeof chunk === "string"
      ? utf8Encoder.encode(chunk)
      : chunk instanceof Uint8Array
      ? chunk
      : Uint8Array.from(chunk)
  );
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = queue.shift();
      if (next === undefined) controller.close();
      else controller.enqueue(next);
    },
  }, { highWaterMark: 0 });
}

function readerOf(chunks: Chunk[], options?: LineReaderOptions): LineReader {
  return new LineReader(streamOf(chunks), options);
}

/** Every line until null. */
async function readAll(reader: LineReader): Promise<string[]> {
  const lines: string[] = [];
  for (;;) {
    const line = await reader.readLine();
    if (line === null) return lines;
    lines.push(line);
  }
}

Deno.test("line reader: lines split across chunks", async () => {
  assert.deepEqual(await readAll(readerOf(["hel", "lo wo", "rld\n"])), ["hello world"]);
  assert.deepEqual(await readAll(readerOf(["a", "b\nc", "d\n"])), ["ab", "cd"]);
  assert.deepEqual(
    await readAll(readerOf([..."one\ntwo\n"].map((c) => c))),
    ["one", "two"],
    "one byte per chunk",
  );
});

Deno.test("line reader: several lines in one chunk", async () => {
  assert.deepEqual(await readAll(readerOf(["one\ntwo\nthree\n"])), ["one", "two", "three"]);
  assert.deepEqual(await readAll(readerOf(["a\nb\nc", "\nd\n"])), ["a", "b", "c", "d"]);
});

Deno.test("line reader: CR stripped only directly before LF", async () => {
  assert.deepEqual(await readAll(readerOf(["one\r\ntwo\r\n"])), ["one", "two"]);
  assert.deepEqual(await readAll(readerOf(["one\r", "\ntwo\n"])), ["one", "two"], "CR | LF");
  assert.deepEqual(await readAll(readerOf(["a\rb\n"])), ["a\rb"], "inner CR kept");
  assert.deepEqual(await readAll(readerOf(["a\r\r\n"])), ["a\r"], "only one CR stripped");
  assert.deepEqual(await readAll(readerOf(["\rab\n"])), ["\rab"], "leading CR kept");
  assert.deepEqual(await readAll(readerOf(["\r\n"])), [""]);
});

Deno.test("line reader: empty lines", async () => {
  assert.deepEqual(await readAll(readerOf(["\n\n\n"])), ["", "", ""]);
  assert.deepEqual(await readAll(readerOf(["a\n\nb\n", "\n"])), ["a", "", "b", ""]);
});

Deno.test("line reader: null at end of input, and again after it", async () => {
  const empty = readerOf([]);
  assert.equal(await empty.readLine(), null);
  assert.equal(await empty.readLine(), null);
  const reader = readerOf(["x\n", new Uint8Array(0)]);
  assert.equal(await reader.readLine(), "x");
  assert.equal(await reader.readLine(), null);
  assert.equal(await reader.readLine(), null);
});

Deno.test("line reader: maxLine is inclusive, LF and a CR before it excluded", async (t) => {
  const maxLine = 16;
  const exact = "x".repeat(maxLine);
  const over = "x".repeat(maxLine + 1);
  const options = { maxLine };
  await t.step("exactly maxLine bytes, LF and CRLF, one chunk or split", async () => {
    assert.deepEqual(await readAll(readerOf([`${exact}\n`], options)), [exact]);
    assert.deepEqual(await readAll(readerOf([`${exact}\r\n`], options)), [exact]);
    assert.deepEqual(await readAll(readerOf([exact, "\r", "\n"], options)), [exact]);
    assert.deepEqual(await readAll(readerOf([exact.slice(0, 5), exact.slice(5), "\n"], options)), [
      exact,
    ]);
    assert.deepEqual(
      await readAll(readerOf([`${exact}\n${exact}\r\n${exact}\n`], options)),
      [exact, exact, exact],
      "the limit is per line, not per chunk",
    );
    const multibyte = "é".repeat(maxLine / 2); // 16 bytes, 8 characters
    assert.deepEqual(await readAll(readerOf([`${multibyte}\n`], options)), [multibyte]);
  });
  await t.step("maxLine + 1 bytes rejected, LF and CRLF, one chunk or split", async () => {
    for (
      const chunks of [
        [`${over}\n`],
        [`${over}\r\n`],
        [over, "\n"],
        [over, "\r\n"],
        [exact, "x\n"],
        [exact, "\r", "x\n"],
        [`${exact}\rx\n`],
        ["é".repeat(maxLine / 2) + "x\n"],
      ]
    ) {
      await rejectsProtocol(
        () => readerOf(chunks, options).readLine(),
        /line longer than 16 bytes/,
      );
    }
  });
  await t.step("the default limit is 1 MiB", async () => {
    assert.equal(DEFAULT_MAX_LINE, 1_048_576);
    const mib = "y".repeat(DEFAULT_MAX_LINE);
    const chunked = (s: string) =>
      Array.from(
        { length: Math.ceil(s.length / 65536) },
        (_, i) => s.slice(i * 65536, (i + 1) * 65536),
      );
    assert.equal((await readerOf([...chunked(mib), "\r\n"]).readLine())?.length, DEFAULT_MAX_LINE);
    await rejectsProtocol(
      () => readerOf([...chunked(mib + "y"), "\n"]).readLine(),
      /line longer than 1048576 bytes/,
    );
  });
});

Deno.test("line reader: an endless line is refused without buffering past the limit", async () => {
  for (const [maxLine, chunkSize] of [[10_000, 1000], [10_000, 4096], [100, 1], [64, 4096]]) {
    let pulled = 0;
    let pulls = 0;
    const source = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulls++;
        if (pulled > 50 * (maxLine + chunkSize)) {
          controller.error(new Error(`reader kept pulling: ${pulled} bytes`));
          return;
        }
        pulled += chunkSize;
        controller.enqueue(new Uint8Array(chunkSize).fill(0x61));
      },
    }, { highWaterMark: 0 });
    const reader = new LineReader(source, { maxLine });
    await rejectsProtocol(() => reader.readLine(), new RegExp(`line longer than ${maxLine} bytes`));
    const label = `maxLine ${maxLine}, chunks of ${chunkSize}: ${pulled} bytes in ${pulls} pulls`;
    // It must see more than maxLine + 1 bytes (one byte could be a CR) …
    assert.ok(pulled > maxLine + 1, label);
    // … and must stop within one chunk after that.
    assert.ok(pulled <= maxLine + 1 + chunkSize, label);
    await reader.cancel();
  }
});

Deno.test("line reader: end of input in the middle of a line", async (t) => {
  await t.step("a ProtocolError by default", async () => {
    const reader = readerOf(["one\ntw", "o"]);
    assert.equal(await reader.readLine(), "one");
    await rejectsProtocol(() => reader.readLine(), /closed in the middle of a line/);
    // An error is final: the reader keeps reporting it rather than resyncing.
    await rejectsProtocol(() => reader.readLine(), /closed in the middle of a line/);
    await rejectsProtocol(() => readerOf(["\r"]).readLine(), /middle of a line/);
  });
  await t.step("a final line with allowUnterminated", async () => {
    const options = { allowUnterminated: true };
    assert.deepEqual(await readAll(readerOf(["one\ntw", "o"], options)), ["one", "two"]);
    assert.deepEqual(await readAll(readerOf(["one\n"], options)), ["one"], "no extra empty line");
    assert.deepEqual(await readAll(readerOf(["solo"], options)), ["solo"]);
  });
  await t.step("the limit applies to the final line too", async () => {
    const options = { allowUnterminated: true, maxLine: 4 };
    assert.deepEqual(await readAll(readerOf(["abcd"], options)), ["abcd"]);
    await rejectsProtocol(() => readerOf(["abcde"], options).readLine(), /longer than 4 bytes/);
  });
});

Deno.test("line reader: invalid UTF-8 is refused", async () => {
  const invalid = [
    [0x61, 0xff, 0x0a],
    [0xc3, 0x0a], // truncated two-byte sequence
    [0xe4, 0xb8, 0x0a], // truncated three-byte sequence
    [0xc0, 0xaf, 0x0a], // overlong
    [0xed, 0xa0, 0x80, 0x0a], // surrogate
    [0xf4, 0x90, 0x80, 0x80, 0x0a], // above U+10FFFF
  ];
  for (const bytes of invalid) {
    await rejectsProtocol(() => readerOf([bytes]).readLine(), /not valid UTF-8/);
  }
  // A valid line before the bad one is still delivered.
  const reader = readerOf(["ok\n", [0xff, 0x0a]]);
  assert.equal(await reader.readLine(), "ok");
  await rejectsProtocol(() => reader.readLine(), /not valid UTF-8/);
});

Deno.test("line reader: multi-byte UTF-8 split across chunks", async () => {
  const text = "Grüße, 世界 🙂";
  const bytes = utf8Encoder.encode(`${text}\n`);
  for (let cut = 1; cut < bytes.length; cut++) {
    const lines = await readAll(readerOf([bytes.subarray(0, cut), bytes.subarray(cut)]));
    assert.deepEqual(lines, [text], `split at byte ${cut}`);
  }
  const byByte = Array.from(bytes, (b) => Uint8Array.of(b));
  assert.deepEqual(await readAll(readerOf(byByte)), [text], "one byte per chunk");
});

Deno.test("line reader: a partial line is copied, not referenced", async () => {
  // A source may reuse its buffer once a chunk has been handed over.
  const first = utf8Encoder.encode("abc");
  let pulls = 0;
  const source = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulls++;
      if (pulls === 1) controller.enqueue(first);
      else if (pulls === 2) {
        first.fill(0x7a);
        controller.enqueue(utf8Encoder.encode("def\n"));
      } else controller.close();
    },
  }, { highWaterMark: 0 });
  assert.equal(await new LineReader(source).readLine(), "abcdef");
});
