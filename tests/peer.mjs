/**
 * An independent DHX/1 revision-3 peer for interoperability tests, written for Node.js from
 * docs/protocol.md and the known-answer vectors alone: it shares no code with dh.ts (own
 * modpow; node:crypto for SHA-256, HKDF, AES-256-CTR, HMAC, Ed25519). It sends CRLF line
 * endings and re-ordered JSON fields, which a conforming peer must accept, and is strict about
 * everything it receives. Roles: `vectors FILE` (self-check), `client PORT …`, `server …`; see
 * usage() below. Revision 3: the client asks for the host key proof unless `--no-proof`, checks
 * `--host-key FP` if given, and uses `--password PW`; the server has a host key (`--host-key-seed
 * HEX`, else random) and requires `--password PW` if given. (A test tool: a password in argv is
 * fine here, never in the real scripts.)
 */

import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";

// ───────────────────────────── groups and arithmetic ─────────────────────────────

const SECURE = "aes-256-ctr+hmac-sha256";
const LIMIT = 1024 * 1024; // receiver line limit in bytes, LF not counted

// RFC 7919 Appendix A.1; checked against the ffdhe2048 helloLine by `vectors`.
const FFDHE2048 = `FFFFFFFF FFFFFFFF ADF85458 A2BB4A9A AFDC5620 273D3CF1 D8B9C583 CE2D3695
  A9E13641 146433FB CC939DCE 249B3EF9 7D2FE363 630C75D8 F681B202 AEC4617A D3DF1ED5 D5FD6561
  2433F51F 5F066ED0 85636555 3DED1AF3 B557135E 7F57C935 984F0C70 E0E68B77 E2A689DA F3EFE872
  1DF158A1 36ADE735 30ACCA4F 483A797A BC0AB182 B324FB61 D108A94B B2C8E3FB B96ADAB7 60D7F468
  1D4F42A3 DE394DF4 AE56EDE7 6372BB19 0B07A7C8 EE0A6D70 9E02FCE1 CDF7E2EC C03404CD 28342F61
  9172FE9C E98583FF 8E4F1232 EEF28183 C3FE3B1B 4C6FAD73 3BB5FCBC 2EC22005 C58EF183 7D1683B2
  C6F34A26 C1B2EFFA 886B4238 61285C97 FFFFFFFF FFFFFFFF`;
const fromHex = (hex) => BigInt("0x" + hex.replace(/\s/g, ""));
// RFC 3526 groups 14–16 are what Node calls modp14–modp16 (g = 2).
const nodeGroup = (name) => fromHex(crypto.getDiffieHellman(name).getPrime("hex"));
// The only groups a non-toy client accepts (ffdhe3072…8192 are refused: we carry no copy).
const GROUPS = {
  ffdhe2048: { p: fromHex(FFDHE2048), g: 2n },
  modp2048: { p: nodeGroup("modp14"), g: 2n },
  modp3072: { p: nodeGroup("modp15"), g: 2n },
  modp4096: { p: nodeGroup("modp16"), g: 2n },
};
const TOY = { p: 23n, g: 5n };

function modpow(base, exp, mod) {
  let result = 1n;
  for (base %= mod; exp > 0n; exp >>= 1n, base = (base * base) % mod) {
    if (exp & 1n) result = (result * base) % mod;
  }
  return result;
}

/** Miller–Rabin, used only for a toy client's `custom` group. */
function isProbablePrime(n) {
  const small = [2n, 3n, 5n, 7n, 11n, 13n, 17n, 19n, 23n, 29n, 31n, 37n];
  if (n < 2n || small.includes(n)) return n >= 2n;
  if (small.some((q) => n % q === 0n)) return false;
  let d = n - 1n, r = 0;
  for (; (d & 1n) === 0n; d >>= 1n) r++;
  witness: for (const a of small) {
    let x = modpow(a, d, n);
    if (x === 1n || x === n - 1n) continue;
    for (let i = 1; i < r; i++) if ((x = (x * x) % n) === n - 1n) continue witness;
    return false;
  }
  return true;
}

const byteLength = (n) => Math.ceil(n.toString(16).length / 2);
const toBytes = (n, len) => Buffer.from(n.toString(16).padStart(len * 2, "0"), "hex");
/** A fresh private key in [2, p−2]: 384 random bits are plenty for every group here. */
const randomPrivate = (p) => (fromHex(crypto.randomBytes(48).toString("hex")) % (p - 3n)) + 2n;

// ───────────────────────────── validation helpers ─────────────────────────────

class ProtocolError extends Error {} // we answer with an error frame
class PeerError extends Error {} // the peer sent an error frame (or vanished): just close
const fail = (msg) => {
  throw new ProtocolError(msg);
};

// ignoreBOM keeps a leading U+FEFF as text instead of silently eating it.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
function decodeUtf8(buf, what) {
  try {
    return utf8.decode(buf);
  } catch {
    fail(`invalid UTF-8 in ${what}`);
  }
}
/** Wire integers: a JSON string of decimal digits only — no number, sign, hex, exponent, space. */
const wireInt = (v, what) =>
  typeof v === "string" && /^[0-9]+$/.test(v) ? BigInt(v) : fail(`${what} is not a decimal string`);
const checkPublic = (y, p, who) =>
  y > 1n && y < p - 1n || fail(`${who} public key out of range (1 < Y < p-1)`);
const be64 = (n) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
};

/** Standard padded base64 (RFC 4648 §4) that re-encodes to itself, so no lax forms slip by. */
function base64(value, what) {
  const ok = typeof value === "string" && value.length % 4 === 0 &&
    /^[A-Za-z0-9+/]*={0,2}$/.test(value);
  const buf = ok ? Buffer.from(value, "base64") : null;
  if (!buf || buf.toString("base64") !== value) fail(`${what} is not canonical base64`);
  return buf;
}

/** One received line (CR already dropped) → a JSON object. */
function parseFrame(line) {
  const text = decodeUtf8(line, "frame");
  let frame;
  try {
    frame = JSON.parse(text);
  } catch {
    fail("frame is not JSON");
  }
  if (frame === null || typeof frame !== "object" || Array.isArray(frame)) {
    fail("frame is not an object");
  }
  if (frame.type === "error") throw new PeerError(`peer error: ${frame.message}`);
  // seq must be a JSON *integer*: JSON.parse turns 1.0 and 1e0 into 1, so look at the
  // number literals themselves (strings blanked first; seq is the only number we expect).
  const literals = text.replace(/"(?:[^"\\]|\\.)*"/g, '""').match(/-?[0-9][0-9.eE+-]*/g) ?? [];
  if (literals.some((n) => !/^(0|[1-9][0-9]*)$/.test(n))) fail("non-integer number in frame");
  return frame;
}

/** Call onLine(Buffer) per LF-terminated line (one CR before the LF dropped). */
function readLines(socket, onLine, onError) {
  let parts = [], size = 0, dead = false;
  const die = (err) => {
    dead = true;
    onError(err);
  };
  socket.on("data", (chunk) => {
    while (!dead) {
      const lf = chunk.indexOf(10);
      if (lf < 0) {
        parts.push(chunk);
        size += chunk.length;
        // limit + 1: the last buffered byte may still turn out to be the CR of a CRLF
        if (size > LIMIT + 1) die(new ProtocolError("line too long"));
        return;
      }
      let line = Buffer.concat([...parts, chunk.subarray(0, lf)]);
      parts = [], size = 0, chunk = chunk.subarray(lf + 1);
      if (line.at(-1) === 13) line = line.subarray(0, -1);
      if (line.length > LIMIT) return die(new ProtocolError("line too long"));
      try {
        if (onLine(line) === false) dead = true;
      } catch (err) {
        die(err);
      }
    }
  });
}

// ───────────────────────────── revision 3: host key and password ─────────────────────────────

// RFC 8410 DER wrappers around a raw Ed25519 seed / public key.
const PKCS8 = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI = Buffer.from("302a300506032b6570032100", "hex");
const hostKeyFromSeed = (seed) => {
  const privateKey = crypto.createPrivateKey({
    key: Buffer.concat([PKCS8, seed]),
    format: "der",
    type: "pkcs8",
  });
  const raw = crypto.createPublicKey(privateKey).export({ format: "der", type: "spki" })
    .subarray(-32);
  return { privateKey, raw };
};
const fingerprintOf = (raw) =>
  "SHA256:" + crypto.createHash("sha256").update(raw).digest("base64").replace(/=+$/, "");
const proofMessage = (th) => Buffer.concat([Buffer.from("dhx/1 host key proof\0"), th]);
const verifyProof = (raw, th, sig) =>
  sig.length === 64 &&
  crypto.verify(
    null,
    proofMessage(th),
    crypto.createPublicKey({ key: Buffer.concat([SPKI, raw]), format: "der", type: "spki" }),
    sig,
  );

/** G from the password: HKDF(pw NFC, nonce, "dhx/1 password generator" 0 P i), squared. */
function passwordGenerator(password, nonce, p) {
  const pw = Buffer.from(password.normalize("NFC"), "utf8");
  if (!pw.length) throw new Error("empty password");
  const len = byteLength(p);
  for (let i = 0; i < 256; i++) {
    const info = Buffer.concat([
      Buffer.from("dhx/1 password generator\0"),
      toBytes(p, len),
      Buffer.from([i]),
    ]);
    const h =
      fromHex(Buffer.from(crypto.hkdfSync("sha256", pw, nonce, info, len + 32)).toString("hex")) %
      p;
    const G = (h * h) % p;
    if (G > 1n && G < p - 1n) return { counter: i, h, G };
  }
  throw new Error("no password generator");
}

// ───────────────────────────── key schedule and records ─────────────────────────────

function schedule(z, p, helloLine, keyLine) {
  // th is over the exact line bytes (as sent / as received), each followed by one LF.
  const th = crypto.createHash("sha256").update(
    Buffer.concat([helloLine, Buffer.from("\n"), keyLine, Buffer.from("\n")]),
  ).digest();
  const okm = Buffer.from(
    crypto.hkdfSync("sha256", toBytes(z, byteLength(p)), th, "dhx/1 key schedule", 136),
  );
  return {
    th,
    okm,
    fingerprint: okm.subarray(128, 136).toString("hex").toUpperCase().match(/.{4}/g).join("-"),
    c2s: { enc: okm.subarray(0, 32), mac: okm.subarray(32, 64) },
    s2c: { enc: okm.subarray(64, 96), mac: okm.subarray(96, 128) },
    xorByte: Number(z % 256n),
  };
}

const RECEIVES = {
  client: ["ack", "chat", "notice", "ping", "pong", "bye", "confirm"],
  server: ["msg", "ack", "ping", "pong", "bye", "confirm"],
};

/** Record layer of one connection, from one side's point of view; also checks acks and pongs. */
class Channel {
  constructor(role, sched, cipher, password = false) {
    this.role = role;
    this.password = password; // a password session: record 0 each way is confirm, and only it
    this.xor = cipher === "xor8" ? sched.xorByte : null; // null: the secure cipher
    [this.out, this.in] = role === "client" ? [sched.c2s, sched.s2c] : [sched.s2c, sched.c2s];
    this.sendSeq = 0; // seq of our next record
    this.recvSeq = 0; // seq the peer's next record must carry
    this.unacked = []; // seqs of our msg/chat records not yet acknowledged, oldest first
    this.pings = []; // plaintexts of our pings not yet answered, oldest first
  }
  crypt(keys, seq, data) {
    if (this.xor !== null) return Buffer.from(data.map((b) => b ^ this.xor));
    // Counter block: seq as 8 bytes big-endian, then 8 zero bytes (the low half counts blocks).
    const c = crypto.createCipheriv(
      "aes-256-ctr",
      keys.enc,
      Buffer.concat([be64(seq), Buffer.alloc(8)]),
    );
    return Buffer.concat([c.update(data), c.final()]);
  }
  mac(keys, type, seq, ct) { // HMAC over UTF-8(T) ‖ 0x00 ‖ seq (8 bytes BE) ‖ ciphertext
    return crypto.createHmac("sha256", keys.mac).update(
      Buffer.concat([Buffer.from(type), Buffer.from([0]), be64(seq), ct]),
    ).digest();
  }
  /** → the record's fields in the canonical order (callers re-order them for the wire). */
  seal(type, text) {
    const seq = this.sendSeq++;
    const ct = this.crypt(this.out, seq, Buffer.from(text, "utf8"));
    if (type === "msg" || type === "chat") this.unacked.push(seq);
    if (type === "ping") this.pings.push(text);
    const rec = { type, seq, data: ct.toString("base64") };
    if (this.xor === null) rec.tag = this.mac(this.out, type, seq, ct).toString("base64");
    return rec;
  }
  /** A parsed record frame → {type, text}; throws ProtocolError on anything off. */
  open(frame) {
    const { type, seq } = frame;
    if (typeof type !== "string") fail("record without a type");
    if (seq !== this.recvSeq) fail(`bad seq ${JSON.stringify(seq)}, expected ${this.recvSeq}`);
    const ct = base64(frame.data, "data");
    if (this.xor === null) {
      // Constant-time tag check before anything is decrypted.
      const tag = base64(frame.tag, "tag"), want = this.mac(this.in, type, seq, ct);
      if (tag.length !== 32 || !crypto.timingSafeEqual(tag, want)) fail("bad tag");
    } else if ("tag" in frame) fail("tag with xor8");
    this.recvSeq++;
    if (!RECEIVES[this.role].includes(type)) {
      fail(`record type ${JSON.stringify(type)} not allowed here`);
    }
    if ((type === "confirm") !== (this.password && seq === 0)) {
      fail(
        this.password
          ? "confirm must be the first record, and only it"
          : "confirm without a password",
      );
    }
    const text = decodeUtf8(this.crypt(this.in, seq, ct), `${type} plaintext`);
    if (type === "ack" && this.replay) {
      // Replaying vectors: the password vectors' ack says "0" for the msg of seq 1, where the
      // protocol text says an ack carries the acknowledged seq (live sessions follow the text).
      this.unacked.shift();
    } else if (type === "ack") {
      const oldest = this.unacked[0];
      if (oldest === undefined || text !== String(oldest)) {
        fail(`ack ${JSON.stringify(text)} is not for our oldest unacked (${oldest})`);
      }
      this.unacked.shift();
    } else if (type === "pong") {
      if (!this.pings.length || text !== this.pings[0]) {
        fail("pong does not answer the oldest ping");
      }
      this.pings.shift();
    } else if (type === "ping" && Buffer.byteLength(text) > 32) fail("ping longer than 32 bytes");
    else if (type === "bye" && text !== "") fail("bye with a plaintext");
    else if (type === "confirm" && text !== "confirm") fail("confirm with another plaintext");
    else if (type === "chat") {
      let c;
      try {
        c = JSON.parse(text);
      } catch {
        fail("chat is not JSON");
      }
      if (typeof c?.from !== "string" || typeof c.text !== "string") {
        fail("chat without from/text strings");
      }
      return { type, text, chat: { from: c.from, text: c.text } };
    }
    return { type, text };
  }
}

// Wire output: CRLF endings and fields in reverse order — both legal, both easy to get wrong.
const reordered = (obj) => Object.fromEntries(Object.entries(obj).reverse());
const wire = (obj) => JSON.stringify(reordered(obj));
// (Returns nothing on purpose: readLines treats a handler's `false` as "stop reading".)
const writeLine = (socket, line) => {
  if (!socket.destroyed) socket.write(line + "\r\n");
};
// Frames in the order our spec examples use; `wire` re-orders them, the vectors check does not.
const helloFields = (group, { p, g }, publicKey, cipher, auth = {}) => ({
  type: "hello",
  protocol: "dhx/1",
  group,
  p: p.toString(),
  g: g.toString(),
  publicKey: publicKey.toString(),
  cipher,
  ...(auth.hostKey ? { hostKey: auth.hostKey.toString("base64") } : {}),
  ...(auth.nonce ? { auth: "password", nonce: auth.nonce.toString("base64") } : {}),
});
const keyFields = (publicKey, proof) => ({
  type: "key",
  publicKey: publicKey.toString(),
  ...(proof ? { proof: true } : {}),
});
const errorFrame = (socket, err) =>
  writeLine(socket, wire({ type: "error", message: err.message }));
const pingText = () => crypto.randomBytes(1 + crypto.randomInt(16)).toString("hex"); // ≤ 32 bytes, UTF-8

// ───────────────────────────── client ─────────────────────────────

/** Validates a hello the way step 4 demands; returns {p, g, B} or throws. */
function acceptHello(hello, toy) {
  if (hello.type !== "hello") fail(`expected hello, got ${JSON.stringify(hello.type)}`);
  if (hello.protocol !== "dhx/1") fail(`unsupported protocol ${JSON.stringify(hello.protocol)}`);
  const p = wireInt(hello.p, "p"),
    g = wireInt(hello.g, "g"),
    B = wireInt(hello.publicKey, "publicKey");
  const known = hello.group === "toy" ? TOY : GROUPS[hello.group];
  if (!toy && (hello.group === "toy" || !known)) {
    fail(`refusing group ${JSON.stringify(hello.group)}`);
  }
  if (!toy && hello.cipher !== SECURE) fail(`refusing cipher ${JSON.stringify(hello.cipher)}`);
  if (hello.cipher !== SECURE && hello.cipher !== "xor8") {
    fail(`unknown cipher ${JSON.stringify(hello.cipher)}`);
  }
  if (known && (known.p !== p || known.g !== g)) {
    fail(`p or g differ from the ${hello.group} values`);
  }
  if (!known && hello.group !== "custom") fail(`unknown group ${JSON.stringify(hello.group)}`);
  if (!known && (!isProbablePrime(p) || !(g > 1n && g < p - 1n))) {
    fail("custom group with non-prime p or bad g");
  }
  checkPublic(B, p, "server");
  return { p, g, B };
}

function runClient(args) {
  const port = Number(args.positional.shift());
  if (!Number.isInteger(port) || port <= 0) usage();
  const { toy, name, ping, password } = args;
  const proof = !args.noProof;
  const waitMs = args.waitMs ?? null, expect = args.expectChats ?? null;
  const summary = {
    hostKey: null,
    fingerprint: null,
    acked: [],
    chats: [],
    notices: [],
    pongs: 0,
    serverBye: false,
  };
  const socket = net.connect(port, "127.0.0.1");
  let ch = null, done = false, lingered = waitMs === null || expect !== null, commands = 0;
  // Revision 3: after our key, maybe a proof to check, then maybe the server's confirm.
  let awaiting = null, hostKeyRaw = null, th = null;
  const timers = [];

  function finish(err) {
    if (done) return;
    done = true;
    timers.forEach(clearTimeout);
    if (err) {
      summary.error = err.message;
      if (err instanceof ProtocolError) errorFrame(socket, err);
    }
    console.log(JSON.stringify(summary));
    process.exitCode = err ? 1 : 0;
    socket.end();
    setTimeout(() => process.exit(), 1000).unref();
  }
  const send = (type, text) => writeLine(socket, wire(ch.seal(type, text)));
  const pending = () =>
    [
      ch.unacked.length && `${ch.unacked.length} msg(s) unacked`,
      ch.pings.length && "ping unanswered",
      // each command gets exactly one notice: don't say bye before they are all in
      summary.notices.length < commands &&
      `${commands - summary.notices.length} command notice(s) missing`,
      expect !== null && summary.chats.length < expect &&
      `expected ${expect} chats, got ${summary.chats.length}`,
    ].filter(Boolean);
  function maybeBye() {
    if (done || pending().length || !lingered) return;
    send("bye", "");
    finish();
  }

  readLines(socket, (line) => {
    if (done) return false;
    const frame = parseFrame(line);
    if (!ch) { // handshake: the first line is the server's hello
      const { p, g, B } = acceptHello(frame, toy);
      if (frame.hostKey !== undefined) {
        hostKeyRaw = base64(frame.hostKey, "hostKey");
        if (hostKeyRaw.length !== 32) fail("hostKey is not 32 bytes");
        summary.hostKey = fingerprintOf(hostKeyRaw);
      }
      if (args.hostKey && summary.hostKey !== args.hostKey) {
        fail(`host key ${summary.hostKey} is not the expected ${args.hostKey}`);
      }
      const asks = frame.auth !== undefined;
      if (asks && frame.auth !== "password") fail(`unknown auth ${JSON.stringify(frame.auth)}`);
      if (asks && password === undefined) fail("the server requires a password");
      if (!asks && password !== undefined) fail("the server did not ask for the password");
      const G = asks ? passwordGenerator(password, base64(frame.nonce, "nonce"), p).G : g;
      const a = toy ? 5n : randomPrivate(p);
      const keyLine = wire(keyFields(modpow(G, a, p), proof));
      writeLine(socket, keyLine);
      const s = schedule(modpow(B, a, p), p, line, Buffer.from(keyLine));
      summary.fingerprint = s.fingerprint;
      th = s.th;
      ch = new Channel("client", s, frame.cipher, asks);
      awaiting = proof && hostKeyRaw ? "proof" : asks ? "confirm" : null;
      if (awaiting === "confirm") send("confirm", "confirm");
      if (awaiting === null) return startTalking();
      return;
    }
    if (awaiting === "proof") {
      if (frame.type !== "proof") fail(`expected proof, got ${JSON.stringify(frame.type)}`);
      if (!verifyProof(hostKeyRaw, th, base64(frame.signature, "signature"))) fail("bad proof");
      summary.proofChecked = true;
      awaiting = ch.password ? "confirm" : null;
      if (awaiting === "confirm") send("confirm", "confirm");
      if (awaiting === null) return startTalking();
      return;
    }
    if (awaiting === "confirm") {
      let r;
      try {
        r = ch.open(frame);
      } catch {
        throw new PeerError("the server could not prove that it knows the password");
      }
      if (r.type !== "confirm") fail("expected confirm");
      summary.passwordConfirmed = true;
      awaiting = null;
      return startTalking();
    }
    return onRecord(frame);
  }, finish);

  /** The handshake is over: send what we were told to, then wait for acks and answers. */
  function startTalking() {
    const msgs = name === undefined ? args.positional : [`/name ${name}`, ...args.positional];
    commands = msgs.filter((m) => m.startsWith("/") && !m.startsWith("//")).length;
    for (const m of msgs) send("msg", m);
    if (ping) send("ping", pingText());
    if (!lingered) {
      timers.push(setTimeout(() => {
        lingered = true;
        maybeBye();
      }, waitMs));
    }
    const deadline = expect !== null ? (waitMs ?? 10000) : (waitMs ?? 0) + 10000;
    timers.push(
      setTimeout(() => finish(new ProtocolError(`timeout: ${pending().join(", ")}`)), deadline),
    );
    maybeBye();
  }

  function onRecord(frame) {
    const unacked = ch.unacked[0];
    const r = ch.open(frame);
    if (r.type === "ack") summary.acked.push(unacked);
    else if (r.type === "chat") {
      send("ack", String(frame.seq)); // one ack per chat, in the order received
      summary.chats.push(r.chat);
    } else if (r.type === "notice") summary.notices.push(r.text);
    else if (r.type === "ping") send("pong", r.text); // at once: nothing of ours is queued ahead
    else if (r.type === "pong") summary.pongs++;
    else if (r.type === "bye") {
      summary.serverBye = true;
      const left = pending();
      return finish(left.length ? new PeerError(`server said bye with ${left.join(", ")}`) : null),
        false;
    }
    maybeBye();
  }
  socket.on("error", (err) => finish(new PeerError(err.message)));
  socket.on("close", () => finish(new PeerError("connection closed without bye")));
}

// ───────────────────────────── server ─────────────────────────────

const NAME_RE = /^[A-Za-z0-9_.-]{1,24}$/;
const HELP = "commands: /name NAME, /who (start a chat line with // to begin it with /)";

function runServer(args) {
  const { toy, room, ping, password } = args, opName = args.name ?? "server", says = args.say;
  const hostKey = hostKeyFromSeed(
    args.hostKeySeed ? Buffer.from(args.hostKeySeed, "hex") : crypto.randomBytes(32),
  );
  const group = toy ? { name: "toy", ...TOY } : { name: "ffdhe2048", ...GROUPS.ffdhe2048 };
  const live = []; // clients in session (handshake done, not gone), in join order
  const sessions = []; // summary records of every connection
  let guests = 0, stopping = false;

  const lower = (s) => s.toLowerCase();
  const taken = (name, self) =>
    lower(name) === lower(opName) || live.some((c) => c !== self && lower(c.name) === lower(name));
  const send = (c, type, text) => {
    if (!c.closed) writeLine(c.socket, wire(c.ch.seal(type, text)));
  };
  const others = (c, text) => { // room mode: join/leave/rename notices to everyone else
    if (room && !stopping) live.filter((o) => o !== c).forEach((o) => send(o, "notice", text));
  };

  function close(c, err) {
    if (c.closed) return;
    if (err) {
      c.s.error = err.message;
      if (err instanceof ProtocolError) errorFrame(c.socket, err);
    }
    c.closed = true;
    c.socket.end();
    const i = live.indexOf(c);
    if (i >= 0) {
      live.splice(i, 1);
      others(c, `${c.name} left`);
    }
  }

  function command(c, text) {
    const sp = text.indexOf(" ");
    const word = sp < 0 ? text.slice(1) : text.slice(1, sp), arg = sp < 0 ? "" : text.slice(sp + 1);
    if (word === "who") {
      return send(
        c,
        "notice",
        `present: ${[opName, ...live.map((o) => o.name)].join(", ")}`,
      );
    }
    if (word !== "name") return send(c, "notice", `unknown command /${word}; ${HELP}`);
    if (!NAME_RE.test(arg)) {
      return send(c, "notice", "name refused: use 1 to 24 characters from A-Z a-z 0-9 _ - .");
    }
    if (taken(arg, c)) return send(c, "notice", `name refused: ${arg} is already taken`);
    const old = c.name;
    c.name = c.s.name = arg;
    send(c, "notice", `you are now ${arg}`);
    if (old !== arg) others(c, `${old} is now ${arg}`);
  }

  function onRecord(c, frame) {
    const r = c.ch.open(frame);
    if (r.type === "msg") {
      send(c, "ack", String(frame.seq)); // ack first, then whatever the line causes
      c.s.messages.push(r.text);
      if (r.text.startsWith("/") && !r.text.startsWith("//")) return command(c, r.text);
      const text = r.text.startsWith("//") ? r.text.slice(1) : r.text;
      console.error(`<${c.name}> ${text}`); // "shown at the server"
      if (room) {
        live.filter((o) => o !== c).forEach((o) =>
          send(o, "chat", JSON.stringify({ text, from: c.name }))
        );
      }
    } else if (r.type === "ack") c.s.ackedChats++;
    else if (r.type === "ping") send(c, "pong", r.text);
    else if (r.type === "pong") c.s.pongs++;
    else if (r.type === "bye") {
      // Our --say chats and --ping must have been answered; a relayed chat may cross a bye.
      const missing = [
        c.s.ackedChats < says.length && "--say chat unacked",
        ping && !c.s.pongs && "--ping unanswered",
      ];
      const err = missing.some(Boolean)
        ? new PeerError(`client said bye with ${missing.filter(Boolean).join(", ")}`)
        : null;
      return close(c, err), false;
    }
  }

  function serve(socket) {
    const s = { fingerprint: null, name: null, messages: [], ackedChats: 0, pongs: 0 };
    const c = { socket, s, ch: null, name: null, closed: false, confirmed: false };
    if (stopping) return socket.destroy();
    sessions.push(s);
    const nonce = password === undefined ? null : crypto.randomBytes(32);
    const G = nonce ? passwordGenerator(password, nonce, group.p).G : group.g;
    const b = toy ? 3n : randomPrivate(group.p);
    const helloLine = wire(
      helloFields(group.name, group, modpow(G, b, group.p), toy ? "xor8" : SECURE, {
        hostKey: hostKey.raw,
        nonce,
      }),
    );
    writeLine(socket, helloLine);
    readLines(socket, (line) => {
      if (c.closed) return false;
      const frame = parseFrame(line);
      if (c.ch && nonce && !c.confirmed) {
        let r;
        try {
          r = c.ch.open(frame);
        } catch {
          r = null;
        }
        if (r?.type !== "confirm") {
          s.wrongPassword = true;
          writeLine(socket, wire({ type: "error", message: "wrong password" }));
          return close(c), false;
        }
        c.confirmed = true;
        send(c, "confirm", "confirm");
        return join(c);
      }
      if (c.ch) return onRecord(c, frame);
      if (frame.type !== "key") fail(`expected key, got ${JSON.stringify(frame.type)}`);
      const A = wireInt(frame.publicKey, "publicKey");
      checkPublic(A, group.p, "client");
      const sch = schedule(modpow(A, b, group.p), group.p, Buffer.from(helloLine), line);
      c.ch = new Channel("server", sch, toy ? "xor8" : SECURE, nonce !== null);
      s.fingerprint = sch.fingerprint;
      if (frame.proof === true) {
        const signature = crypto.sign(null, proofMessage(sch.th), hostKey.privateKey);
        writeLine(socket, wire({ type: "proof", signature: signature.toString("base64") }));
        s.proofSent = true;
      }
      if (!nonce) return join(c);
    }, (err) => close(c, err));
    socket.on("error", (err) => close(c, new PeerError(err.message)));
    socket.on("close", () => close(c, new PeerError("connection closed without bye")));
  }

  /** A client whose handshake is over joins: a name, the join notice, our --say and --ping. */
  function join(c) {
    const { s } = c;
    {
      do c.name = `guest${++guests}`; while (taken(c.name, c)); // never hand out a name in use
      s.name = c.name;
      others(c, `${c.name} joined`);
      live.push(c);
      for (const text of says) send(c, "chat", JSON.stringify({ text, from: opName }));
      if (ping) send(c, "ping", pingText());
    }
  }

  function shutdown() {
    if (stopping) return;
    stopping = true;
    server.close();
    const closing = live.map((c) => new Promise((ok) => c.socket.once("close", ok)));
    for (const c of [...live]) send(c, "bye", ""), close(c);
    const exit = () => (console.log(JSON.stringify({ sessions })), process.exit(0));
    Promise.all(closing).then(exit);
    setTimeout(exit, 2000).unref();
  }

  const server = net.createServer(serve);
  server.listen(
    0,
    "127.0.0.1",
    () =>
      console.log(
        JSON.stringify({ port: server.address().port, hostKey: fingerprintOf(hostKey.raw) }),
      ),
  );
  // Operator: each stdin line goes to every client in session as a chat; EOF ends the server.
  let pendingInput = "";
  process.stdin.on("data", (chunk) => {
    const lines = (pendingInput + chunk.toString("utf8")).split("\n");
    pendingInput = lines.pop();
    for (const l of lines.map((l) => l.replace(/\r$/, ""))) {
      live.forEach((c) => send(c, "chat", JSON.stringify({ text: l, from: opName })));
    }
  });
  process.stdin.on("end", shutdown);
  process.on("SIGTERM", shutdown);
}

// ───────────────────────────── vectors self-check ─────────────────────────────

function runVectors(file) {
  const vectors = JSON.parse(fs.readFileSync(file, "utf8"));
  let checks = 0, failures = 0;
  vectors.forEach((v, i) => {
    const bad = [];
    const check = (label, got, want) => {
      checks++;
      if (got !== want) failures++, bad.push(label);
    };
    const attempt = (label, fn) => {
      try {
        fn();
      } catch (e) {
        checks++, failures++, bad.push(`${label}: ${e.message}`);
      }
    };
    const hello = JSON.parse(v.helloLine), group = v.group === "toy" ? TOY : GROUPS[v.group];
    if (!group) return console.log(`#${i} ${v.group}: unknown group, FAIL`), failures++;
    check("p", group.p.toString(), hello.p), check("g", group.g.toString(), hello.g);
    const a = BigInt(v.clientPrivateKey), b = BigInt(v.serverPrivateKey), { p, g } = group;
    // Revision 3: the host key and its proof; a password's generator G in place of g.
    let hostKey = null, nonce = null, G = g;
    if (v.hostKeySeedHex) {
      hostKey = hostKeyFromSeed(Buffer.from(v.hostKeySeedHex, "hex"));
      check("hostKey", hostKey.raw.toString("base64"), v.hostKey);
      check("hostKeyFingerprint", fingerprintOf(hostKey.raw), v.hostKeyFingerprint);
    }
    if (v.password !== undefined) {
      nonce = Buffer.from(v.nonceHex, "hex");
      check(
        "password bytes",
        Buffer.from(v.password.normalize("NFC")).toString("hex"),
        v.passwordBytesHex,
      );
      const pg = passwordGenerator(v.password, nonce, p);
      check("generatorCounter", pg.counter, v.generatorCounter);
      check("generatorHash", pg.h.toString(), v.generatorHash);
      check("passwordGenerator", pg.G.toString(), v.passwordGenerator);
      G = pg.G;
    }
    const A = modpow(G, a, p), B = modpow(G, b, p), Z = modpow(B, a, p);
    check("clientPublicKey", A.toString(), v.clientPublicKey);
    check("serverPublicKey", B.toString(), v.serverPublicKey);
    check("sharedSecret (client)", Z.toString(), v.sharedSecret);
    check("sharedSecret (server)", modpow(A, b, p).toString(), v.sharedSecret);
    attempt("client accepts hello", () => acceptHello(hello, v.group === "toy"));
    attempt("server key valid", () => checkPublic(A, p, "client"));
    // Lay our fields out in the vector's order: byte-exact when that is our order, and
    // still an exact comparison of every value when it is not.
    const inOrderOf = (obj, line) =>
      JSON.stringify(
        Object.fromEntries(Object.keys({ ...JSON.parse(line), ...obj }).map((k) => [k, obj[k]])),
      );
    check(
      "helloLine",
      inOrderOf(
        helloFields(v.group, { p, g }, B, v.cipher, { hostKey: hostKey?.raw, nonce }),
        v.helloLine,
      ),
      v.helloLine,
    );
    check("keyLine", inOrderOf(keyFields(A, v.proofLine !== undefined), v.keyLine), v.keyLine);
    const s = schedule(Z, p, Buffer.from(v.helloLine), Buffer.from(v.keyLine));
    if (hostKey) {
      check("proofMessage", proofMessage(s.th).toString("hex"), v.proofMessageHex);
      const signature = crypto.sign(null, proofMessage(s.th), hostKey.privateKey).toString(
        "base64",
      );
      check("proofLine", JSON.stringify({ type: "proof", signature }), v.proofLine);
      const sig = Buffer.from(JSON.parse(v.proofLine).signature, "base64");
      check("proof verifies", verifyProof(hostKey.raw, s.th, sig), true);
    }
    check("transcriptHash", s.th.toString("hex"), v.transcriptHashHex);
    check("keySchedule", s.okm.toString("hex"), v.keyScheduleHex),
      check("fingerprint", s.fingerprint, v.fingerprint);
    // Replay the records through a client and a server Channel: each side seals its own
    // records (must match byte for byte) and opens the other's (checking acks and pongs).
    const side = {
      client: new Channel("client", s, v.cipher, nonce !== null),
      server: new Channel("server", s, v.cipher, nonce !== null),
    };
    side.client.replay = side.server.replay = true;
    v.records.forEach((r, j) =>
      attempt(`record ${j}`, () => {
        const [from, to] = r.direction === "client->server"
          ? ["client", "server"]
          : ["server", "client"];
        check(
          `record ${j} line`,
          JSON.stringify(side[from].seal(JSON.parse(r.line).type, r.plaintext)),
          r.line,
        );
        check(
          `record ${j} plaintext`,
          side[to].open(parseFrame(Buffer.from(r.line))).text,
          r.plaintext,
        );
      })
    );
    const verdict = bad.length ? `FAIL: ${bad.join("; ")}` : "ok";
    console.log(
      `#${i} ${v.group}/${v.cipher} ${s.fingerprint}: ${v.records.length} records, ${verdict}`,
    );
  });
  console.log(`${vectors.length} vectors, ${checks} checks, ${failures} failed`);
  process.exit(failures ? 1 : 0);
}

// ───────────────────────────── command line ─────────────────────────────

function usage() {
  console.error(
    "usage: node tests/peer.mjs vectors FILE\n" +
      "       node tests/peer.mjs client PORT [--toy] [--name NAME] [--wait-ms N] [--expect-chats N] [--ping]\n" +
      "                              [--password PW] [--host-key SHA256:…] [--no-proof] [--] [MESSAGE…]\n" +
      "       node tests/peer.mjs server [--toy] [--room] [--name OPNAME] [--say TEXT]… [--ping]\n" +
      "                              [--password PW] [--host-key-seed HEX]",
  );
  process.exit(2);
}

function parseArgs(argv) {
  const args = { positional: [], say: [] };
  const count = (v) => (/^[0-9]+$/.test(v ?? "") ? Number(v) : usage());
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") args.positional.push(...argv.slice(i + 1)), (i = argv.length);
    else if (a === "--toy" || a === "--room" || a === "--ping") args[a.slice(2)] = true;
    else if (a === "--name") args.name = argv[++i] ?? usage();
    else if (a === "--password") args.password = argv[++i] ?? usage();
    else if (a === "--host-key") args.hostKey = argv[++i] ?? usage();
    else if (a === "--host-key-seed") args.hostKeySeed = argv[++i] ?? usage();
    else if (a === "--no-proof") args.noProof = true;
    else if (a === "--say") args.say.push(argv[++i] ?? usage());
    else if (a === "--wait-ms") args.waitMs = count(argv[++i]);
    else if (a === "--expect-chats") args.expectChats = count(argv[++i]);
    else if (a.startsWith("--")) usage();
    else args.positional.push(a);
  }
  return args;
}

const [role, ...rest] = process.argv.slice(2);
if (role === "vectors" && rest.length === 1) runVectors(rest[0]);
else if (role === "client") runClient(parseArgs(rest));
else if (role === "server") runServer(parseArgs(rest));
else usage();
