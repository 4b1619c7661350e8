/**
 * An independent DHX/1 peer for interoperability tests, written for Node.js
 * from the protocol section of README.md alone: it shares no code with dh.ts
 * (own modpow, node:crypto for HKDF, AES-256-CTR and HMAC) and speaks with
 * CRLF line endings and re-ordered JSON fields, which a conforming peer must
 * accept.
 *
 * ```sh
 * node tests/peer.mjs client PORT [--toy] [MESSAGE…]   # prints a JSON summary
 * node tests/peer.mjs server [--toy]                   # prints {"port":N}, then a summary
 * ```
 *
 * @module
 */

import crypto from "node:crypto";
import net from "node:net";

const [role, ...rest] = process.argv.slice(2);
const toy = rest.includes("--toy");
const words = rest.filter((a) => a !== "--toy");

// RFC 7919 ffdhe2048, from Node's own OpenSSL would be nicer, but Node exposes
// only the modp groups by name: modp14 (RFC 3526 group 14) is an RFC group too.
const modp14 = crypto.getDiffieHellman("modp14");
const GROUP = toy
  ? { name: "toy", p: 23n, g: 5n }
  : { name: "modp2048", p: BigInt("0x" + modp14.getPrime("hex")), g: 2n };
const CIPHER = toy ? "xor8" : "aes-256-ctr+hmac-sha256";

function modpow(base, exponent, modulus) {
  let result = 1n;
  base %= modulus;
  for (; exponent > 0n; exponent >>= 1n) {
    if (exponent & 1n) result = (result * base) % modulus;
    base = (base * base) % modulus;
  }
  return result;
}

const byteLength = (n) => Math.ceil(n.toString(2).length / 8);
const toBytes = (n, length) => Buffer.from(n.toString(16).padStart(length * 2, "0"), "hex");

function privateKey() {
  if (toy) return role === "client" ? 5n : 3n;
  return BigInt("0x" + crypto.randomBytes(32).toString("hex")) | (1n << 255n);
}

function schedule(z, helloLine, keyLine) {
  const th = crypto.createHash("sha256").update(`${helloLine}\n${keyLine}\n`).digest();
  const okm = Buffer.from(
    crypto.hkdfSync("sha256", toBytes(z, byteLength(GROUP.p)), th, "dhx/1 key schedule", 136),
  );
  const hex = okm.subarray(128, 136).toString("hex").toUpperCase();
  return {
    fingerprint: hex.match(/.{4}/g).join("-"),
    c2s: { enc: okm.subarray(0, 32), mac: okm.subarray(32, 64) },
    s2c: { enc: okm.subarray(64, 96), mac: okm.subarray(96, 128) },
    xorByte: Number(z % 256n),
  };
}

function header(type, seq, ciphertext) {
  const seqBytes = Buffer.alloc(8);
  seqBytes.writeBigUInt64BE(BigInt(seq));
  return Buffer.concat([Buffer.from(type, "utf8"), Buffer.from([0]), seqBytes, ciphertext]);
}

function crypt(keys, xorByte, seq, data) {
  if (toy) return Buffer.from(data.map((b) => b ^ xorByte));
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(seq));
  const cipher = crypto.createCipheriv("aes-256-ctr", keys.enc, iv);
  return Buffer.concat([cipher.update(data), cipher.final()]);
}

function seal(keys, xorByte, type, seq, text) {
  const ct = crypt(keys, xorByte, seq, Buffer.from(text, "utf8"));
  // Fields deliberately in another order than dh.ts writes them.
  const record = { data: ct.toString("base64"), seq, type };
  if (!toy) {
    record.tag = crypto.createHmac("sha256", keys.mac).update(header(type, seq, ct)).digest(
      "base64",
    );
  }
  return JSON.stringify(record);
}

function open(keys, xorByte, expectedSeq, line) {
  const r = JSON.parse(line);
  if (r.type === "error") throw new Error(`peer error: ${r.message}`);
  if (r.seq !== expectedSeq) throw new Error(`bad seq ${r.seq}, expected ${expectedSeq}`);
  const ct = Buffer.from(r.data, "base64");
  if (!toy) {
    const want = crypto.createHmac("sha256", keys.mac).update(header(r.type, r.seq, ct)).digest();
    const got = Buffer.from(r.tag, "base64");
    if (got.length !== 32 || !crypto.timingSafeEqual(want, got)) throw new Error("bad tag");
  }
  return { type: r.type, text: crypt(keys, xorByte, r.seq, ct).toString("utf8") };
}

/** Lines of a socket, without LF and a CR before it. */
async function* lines(socket) {
  let buffer = "";
  for await (const chunk of socket) {
    buffer += chunk.toString("utf8");
    let lf;
    while ((lf = buffer.indexOf("\n")) >= 0) {
      yield buffer.slice(0, lf).replace(/\r$/, "");
      buffer = buffer.slice(lf + 1);
    }
  }
}

const send = (socket, line) => socket.write(line + "\r\n");

async function runClient(port) {
  const socket = net.connect(port, "127.0.0.1");
  const input = lines(socket);
  const helloLine = (await input.next()).value;
  const hello = JSON.parse(helloLine);
  const p = BigInt(hello.p);
  if (hello.protocol !== "dhx/1" || p !== GROUP.p || BigInt(hello.g) !== GROUP.g) {
    throw new Error(`unexpected hello ${helloLine.slice(0, 80)}`);
  }
  const B = BigInt(hello.publicKey);
  if (!(B > 1n && B < p - 1n)) throw new Error("bad server key");
  const a = privateKey();
  const keyLine = JSON.stringify({ publicKey: modpow(GROUP.g, a, p).toString(), type: "key" });
  send(socket, keyLine);
  const s = schedule(modpow(B, a, p), helloLine, keyLine);
  const acked = [];
  let seq = 0;
  for (const word of words) send(socket, seal(s.c2s, s.xorByte, "msg", seq++, word));
  for (let i = 0; i < words.length; i++) {
    const { value } = await input.next();
    const ack = open(s.s2c, s.xorByte, i, value);
    if (ack.type !== "ack") throw new Error(`expected ack, got ${ack.type}`);
    acked.push(ack.text);
  }
  send(socket, seal(s.c2s, s.xorByte, "bye", seq, ""));
  socket.end();
  console.log(JSON.stringify({ fingerprint: s.fingerprint, acked }));
}

function runServer() {
  const server = net.createServer(async (socket) => {
    server.close();
    const input = lines(socket);
    const b = privateKey();
    const helloLine = JSON.stringify({
      cipher: CIPHER,
      g: GROUP.g.toString(),
      group: GROUP.name,
      p: GROUP.p.toString(),
      protocol: "dhx/1",
      publicKey: modpow(GROUP.g, b, GROUP.p).toString(),
      type: "hello",
    });
    send(socket, helloLine);
    const keyLine = (await input.next()).value;
    const A = BigInt(JSON.parse(keyLine).publicKey);
    if (!(A > 1n && A < GROUP.p - 1n)) throw new Error("bad client key");
    const s = schedule(modpow(A, b, GROUP.p), helloLine, keyLine);
    const messages = [];
    for (let seq = 0;; seq++) {
      const { value, done } = await input.next();
      if (done) break;
      const record = open(s.c2s, s.xorByte, seq, value);
      if (record.type === "bye") break;
      messages.push(record.text);
      send(socket, seal(s.s2c, s.xorByte, "ack", seq, String(seq)));
    }
    socket.end();
    console.log(JSON.stringify({ fingerprint: s.fingerprint, messages }));
  });
  server.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ port: server.address().port })));
}

if (role === "client") await runClient(Number(words.shift()));
else if (role === "server") runServer();
else {
  console.error("usage: node tests/peer.mjs client PORT [--toy] [MESSAGE…] | server [--toy]");
  process.exit(2);
}
