/**
 * The lesson made visible: the worked steps of the handshake on each side
 * (toy numbers in full, big numbers as formula and digest), and the `--wire`
 * view of every frame, with each toy record's XOR step by step.
 *
 * Every expected line is computed here independently: powers with `**`,
 * XOR and hex byte by byte, base64 with `atob`, digests with node:crypto.
 * Needs no permissions.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import vectors from "./dhx1-vectors.json" with { type: "json" };
import {
  describeHandshake,
  describeOwnKey,
  describeWireLine,
  describeWorkedPower,
  WireView,
} from "../console.ts";
import {
  acceptKey,
  createOffer,
  customGroup,
  type DhGroup,
  GROUPS,
  parseHello,
  respondToHello,
  type Session,
  TOY_CIPHER,
  workedPower,
} from "../dh.ts";
import { runClient } from "../client.ts";
import { startServer } from "../server.ts";
import { CapturingLogger, LONG_NUMBER } from "./support.ts";

const TOY = vectors[0];
const SECURE = vectors[1];

/** Both sessions of a handshake on `group` with the given keys, through dh.ts. */
function sessions(group: DhGroup, cipher: typeof TOY_CIPHER, a: bigint, b: bigint) {
  const offer = createOffer(group, cipher, b);
  const hello = parseHello(offer.line, { insecure: true });
  const { keyLine, session: client } = respondToHello(hello, a);
  return { client, server: acceptKey(offer, keyLine) };
}

function vectorSessions(v: typeof TOY): { client: Session; server: Session } {
  return sessions(
    GROUPS[v.group as keyof typeof GROUPS],
    v.cipher as typeof TOY_CIPHER,
    BigInt(v.clientPrivateKey),
    BigInt(v.serverPrivateKey),
  );
}

/** `x = base^e mod p = … = result`, worked with `**` and `%`, not with dh.ts. */
function step(name: string, base: bigint, e: bigint, p: bigint): string {
  return `${name} = ${base}^${e} mod ${p} = ${base ** e} mod ${p} = ${(base ** e) % p}`;
}

/** The short digest describeBigint shows for a hidden number. */
function digest(n: bigint): string {
  const sha = createHash("sha256").update(n.toString(16)).digest("hex").slice(0, 8);
  return `${n.toString(2).length}-bit number, sha256 ${sha}…`;
}

/** Bytes as lower-case hex pairs, by hand. */
function hexOf(bytes: Iterable<number>): string {
  return [...bytes].map((b) => (b < 16 ? "0" : "") + b.toString(16)).join(" ");
}

Deno.test("lesson: workedPower keeps the unreduced power only while it is small", () => {
  assert.deepEqual(workedPower(10n, 5n, 23n), {
    base: 10n,
    exponent: 5n,
    modulus: 23n,
    power: 100_000n,
    result: 19n,
  });
  assert.equal(workedPower(5n, 5n, 23n).power, 3125n);
  const big = workedPower(2n, 1000n, GROUPS.ffdhe2048.p);
  assert.equal(big.power, undefined, "2^1000 is over 256 bits");
  assert.equal(big.result, 2n ** 1000n % GROUPS.ffdhe2048.p);
  // The bound is exponent × the base's bit length: 128 × 2 bits is kept, 129 × 2 is not.
  assert.equal(workedPower(3n, 128n, 1000003n).power, 3n ** 128n);
  assert.equal(workedPower(3n, 129n, 1000003n).power, undefined);
  assert.equal(workedPower(3n, 129n, 1000003n).result, 3n ** 129n % 1000003n);
});

/** The client's worked steps for small p, g, a, b, computed with `**`. */
function clientSteps(p: bigint, g: bigint, a: bigint, b: bigint): string[] {
  const [A, B] = [(g ** a) % p, (g ** b) % p];
  return [
    `Received server public key: ${B}`,
    `Private key a = ${a}`,
    step("A = g^a mod p", g, a, p),
    `Sending public key: ${A}`,
    step("Z = B^a mod p", B, a, p),
    `Shared key calculated: ${(B ** a) % p}`,
  ];
}

Deno.test("lesson: the toy handshake's worked steps on each side, in the order they happen", () => {
  const { client, server } = vectorSessions(TOY);
  const [p, g] = [23n, 5n];
  const [a, b] = [BigInt(TOY.clientPrivateKey), BigInt(TOY.serverPrivateKey)];
  const [A, B] = [(g ** a) % p, (g ** b) % p];
  const Z = (B ** a) % p;
  assert.deepEqual([a, b, A, B, Z], [5n, 3n, 20n, 10n, 19n], "the original's numbers");
  assert.deepEqual(describeHandshake(client, true), clientSteps(p, g, a, b));
  // The issue's own words, to the character.
  assert.equal(step("A = g^a mod p", g, a, p), "A = g^a mod p = 5^5 mod 23 = 3125 mod 23 = 20");
  assert.equal(step("Z = B^a mod p", B, a, p), "Z = B^a mod p = 10^5 mod 23 = 100000 mod 23 = 19");
  const serverSteps = [
    `Sending public key: ${B}`,
    `Received client public key: ${A}`,
    step("Z = A^b mod p", A, b, p),
    `Shared key calculated: ${Z}`,
  ];
  // A fixed key (toy mode) is shown once at start: then not per client.
  assert.deepEqual(describeHandshake(server, true, true), serverSteps);
  const own = [`Private key b = ${b}`, step("B = g^b mod p", g, b, p)];
  assert.deepEqual(describeOwnKey("server", GROUPS.toy, b, true), own);
  assert.deepEqual(describeHandshake(server, true), [...own, ...serverSteps]);
});

Deno.test("lesson: --prime 29 --generator 2 works the same steps with other numbers", () => {
  const [p, g, a, b] = [29n, 2n, 5n, 3n];
  const { client, server } = sessions(customGroup(p, g), TOY_CIPHER, a, b);
  const [A, B] = [(g ** a) % p, (g ** b) % p];
  assert.deepEqual(describeHandshake(client, true), clientSteps(p, g, a, b));
  assert.equal(describeHandshake(server, true, true)[2], step("Z = A^b mod p", A, b, p));
  assert.equal((A ** b) % p, (B ** a) % p, "both sides agree");
});

Deno.test("lesson: big numbers: formula and digests in the steps, digits never without reveal", () => {
  const { client, server } = vectorSessions(SECURE);
  const A = BigInt(SECURE.clientPublicKey);
  const B = BigInt(SECURE.serverPublicKey);
  const Z = BigInt(SECURE.sharedSecret);
  // Default (secure, not --verbose): the three key lines, as digests; no steps.
  const hidden = describeHandshake(client, false);
  assert.deepEqual(hidden, [
    `Received server public key: ${digest(B)}`,
    `Sending public key: ${digest(A)}`,
    `Shared key calculated: ${digest(Z)}`,
  ]);
  assert.deepEqual(describeHandshake(server, false), [
    `Received client public key: ${digest(A)}`,
    `Shared key calculated: ${digest(Z)}`,
  ]);
  // --verbose: the steps too, each a formula and a digest (explainSession has the digits).
  const a = BigInt(SECURE.clientPrivateKey);
  const shown = describeHandshake(client, true);
  assert.deepEqual(shown, [
    `Received server public key: ${B}`,
    `Private key a: a ${a.toString(2).length}-bit number, kept secret`,
    `A = g^a mod p = ${digest(A)}`,
    `Sending public key: ${A}`,
    `Z = B^a mod p = ${digest(Z)}`,
    `Shared key calculated: ${Z}`,
  ]);
  for (const line of [...hidden, shown[1], shown[2], shown[4]]) {
    assert.doesNotMatch(line, LONG_NUMBER, line);
  }
  assert.equal(
    describeWorkedPower("A = g^a mod p", workedPower(5n, 5n, 23n), false),
    `A = g^a mod p = ${digest(20n)}`,
    "not revealed: a digest even for toy numbers",
  );
});

Deno.test("lesson: --wire in toy mode shows each record encrypted, and the receiver the reverse", () => {
  const Z = BigInt(TOY.sharedSecret);
  const key = Number(Z % 256n);
  assert.equal(key, 19);
  let checked = 0;
  for (const record of TOY.records) {
    const plain = new TextEncoder().encode(record.plaintext);
    const cipher = Uint8Array.from(atob(JSON.parse(record.line).data), (c) => c.charCodeAt(0));
    assert.deepEqual(
      [...cipher],
      [...plain].map((byte: number): number => byte ^ key),
      "the vector is XOR 19",
    );
    const text = JSON.stringify(record.plaintext);
    if (plain.length === 0) {
      assert.equal(
        describeWireLine("sent", record.line, Z),
        `sent: "" (no bytes to encrypt) ↔ ${record.line}`,
      );
      continue;
    }
    assert.equal(
      describeWireLine("sent", record.line, Z),
      `sent: ${text} → bytes ${hexOf(plain)} → XOR 19 → ${hexOf(cipher)} → ${record.line}`,
    );
    assert.equal(
      describeWireLine("received", record.line, Z, "127.0.0.1:5555"),
      `received from 127.0.0.1:5555: ${record.line} → ${hexOf(cipher)} → XOR 19 → bytes ${
        hexOf(plain)
      } → ${text}`,
    );
    checked++;
  }
  assert.equal(checked, 4);
  // The example, to the character.
  assert.equal(
    describeWireLine("sent", TOY.records[0].line, Z),
    `sent: "hello" → bytes 68 65 6c 6c 6f → XOR 19 → 7b 76 7f 7f 7c → ${TOY.records[0].line}`,
  );
});

Deno.test("lesson: --wire without the toy cipher shows frames as they are, long ones cut", () => {
  const record = SECURE.records[0].line;
  assert.equal(describeWireLine("sent", record), `sent: ${record}`);
  assert.equal(describeWireLine("received", SECURE.helloLine).length < 300, true);
  assert.ok(
    describeWireLine("received", SECURE.helloLine, undefined, "memory:1").startsWith(
      `received from memory:1: ${
        SECURE.helloLine.slice(0, 200)
      }… (${SECURE.helloLine.length} characters)`,
    ),
  );
  const error = JSON.stringify({ type: "error", message: "no" });
  assert.equal(describeWireLine("received", error, 19n), `received: ${error}`);
  // A long toy record shows the start of its bytes and how many there are.
  const { client } = vectorSessions(TOY);
  const long = client.seal("msg", "x".repeat(100));
  const line = describeWireLine("sent", long, 19n);
  assert.ok(line.includes(`bytes ${hexOf(Array(16).fill(0x78))} … (100 bytes) → XOR 19`), line);
});

Deno.test("lesson: WireView prints through the logger once the session is known, not when quiet", () => {
  const { client, server } = vectorSessions(TOY);
  const log = new CapturingLogger();
  const view = new WireView(log);
  view.line("sent", TOY.keyLine);
  view.session = client;
  const sealed = client.seal("msg", "hello");
  view.line("sent", sealed);
  assert.deepEqual(log.lines, [
    `[*] sent: ${TOY.keyLine}`,
    `[*] sent: "hello" → bytes 68 65 6c 6c 6f → XOR 19 → 7b 76 7f 7f 7c → ${sealed}`,
  ]);
  assert.equal(server.open(sealed).text, "hello");
  const quiet = new CapturingLogger(true);
  new WireView(quiet).line("sent", sealed);
  assert.deepEqual(quiet.lines, []);
});

Deno.test("library: a logger of one's own receives every line of server and client", async () => {
  const serverLog = new CapturingLogger();
  const clientLog = new CapturingLogger();
  const server = startServer({ listen: false, logger: serverLog });
  const input = ReadableStream.from([new TextEncoder().encode("hello\n")]);
  assert.equal(await runClient({ connection: server.connect(), input, logger: clientLog }), 0);
  await server.close();
  assert.ok(serverLog.lines.includes("[+] guest1 (memory:1): hello"), serverLog.dump());
  assert.ok(clientLog.lines.includes("[+] Line 1 acknowledged (seq 0)"), clientLog.dump());
  assert.ok(clientLog.lines.includes("[*] Session closed"), clientLog.dump());
});
