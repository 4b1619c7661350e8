/**
 * The load generator of bench/load.ts and bench/room.ts: a Node.js process that
 * drives one server at a time over loopback, on commands it reads from stdin.
 *
 * It speaks three protocols, all as JSON lines over TCP:
 *
 * - `dhx`: DHX/1 (revision 3) as a client, written on node:crypto alone (OpenSSL's
 *   DH, HKDF, AES-256-CTR, HMAC-SHA-256 and Ed25519), so the generator spends far
 *   less CPU per session and per record than the server under test does with
 *   bigints and WebCrypto. One client key pair per group is made at start and
 *   reused by every connection: each handshake then costs the generator one modpow
 *   (Z = B^a). Target options: `proof: true` asks for the host key proof and checks
 *   it; `password: "…"` answers a password server (G from the password, one more
 *   modpow per connection, and the `confirm` exchange).
 * - `plain`: `{"type":"msg","seq":N,"data":…}` answered by `{"type":"ack","seq":N}`
 *   (bench/plain_echo.ts);
 * - `tls`: the same lines inside TLS 1.3 (bench/tls_echo.mjs); every connection
 *   does a full handshake (no session resumption).
 *
 * Protocol with the orchestrator: one JSON command per stdin line, one JSON answer
 * per stdout line, `{"id":N,"ok":true,"result":{…}}` or `{"id":N,"ok":false,
 * "error":"…"}`. Every answer carries `wallMs` and `cpuMs` (this process's own CPU
 * over the command), so the orchestrator can show whether the generator itself
 * was saturated. Commands: `handshakes`, `open`, `traffic`, `close`, `room`,
 * `exit` (see {@link COMMANDS}). Diagnostics go to stderr.
 *
 * ```sh
 * node bench/loadgen.mjs          # then e.g.
 * {"id":1,"cmd":"open","target":{"kind":"dhx","port":4444},"count":10,"concurrency":4}
 * ```
 *
 * @module
 */

import crypto from "node:crypto";
import { readFileSync } from "node:fs";
import net from "node:net";
import readline from "node:readline";
import tls from "node:tls";
import { pathToFileURL } from "node:url";

// ───────────────────────────────────────────────────────────────────────────
// Small helpers
// ───────────────────────────────────────────────────────────────────────────

const LF = 0x0a;
const CR = 0x0d;
const ZERO_BYTE = Buffer.from([0]);
const KEY_SCHEDULE_INFO = "dhx/1 key schedule";

/** Loopback only: this generator must never send traffic anywhere else. */
function checkLoopback(host) {
  if (!/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)) {
    throw new Error(`refusing host ${JSON.stringify(host)}: only 127.0.0.0/8 is allowed`);
  }
}

/**
 * One TLS client context that trusts bench/cert.pem only. Made once: passing
 * `ca` to every tls.connect builds a new context (and certificate store) per
 * connection, which costs the generator more than the TLS handshake itself.
 */
let tlsContext;
function clientTlsContext() {
  tlsContext ??= tls.createSecureContext({
    ca: readFileSync(new URL("cert.pem", import.meta.url)),
    minVersion: "TLSv1.3",
  });
  return tlsContext;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Latencies in ms, rounded to the µs: what the orchestrator merges and ranks. */
function rounded(values) {
  return Array.from(values, (v) => Math.round(v * 1000) / 1000);
}

/** Keeps the first few distinct error messages and counts all of them. */
class ErrorLog {
  count = 0;
  samples = [];

  add(error) {
    this.count++;
    const text = error instanceof Error ? error.message : String(error);
    if (this.samples.length < 5 && !this.samples.includes(text)) this.samples.push(text);
  }

  toJSON() {
    return { count: this.count, samples: this.samples };
  }
}

// ───────────────────────────────────────────────────────────────────────────
// DHX/1 crypto (node:crypto)
// ───────────────────────────────────────────────────────────────────────────

/** The client's key pair and OpenSSL DH object for one group, keyed by p's decimal. */
const dhCache = new Map();

function decimalToBuffer(decimal) {
  let hex = BigInt(decimal).toString(16);
  if (hex.length % 2) hex = "0" + hex;
  return Buffer.from(hex, "hex");
}

/**
 * The (reused) client key pair for prime `p`. A 256-bit private key: what
 * tests/peer.mjs uses too, and the server's cost does not depend on it.
 */
function clientKeys(pDecimal, gDecimal) {
  const key = `${pDecimal}/${gDecimal}`;
  let entry = dhCache.get(key);
  if (!entry) {
    const p = decimalToBuffer(pDecimal);
    const dh = crypto.createDiffieHellman(p, decimalToBuffer(gDecimal));
    dh.setPrivateKey(crypto.randomBytes(32));
    dh.generateKeys(); // keeps the private key set above, computes g^a mod p
    entry = {
      dh,
      pBig: BigInt(pDecimal),
      byteLength: p.length,
      publicDecimal: BigInt("0x" + dh.getPublicKey("hex")).toString(),
    };
    dhCache.set(key, entry);
  }
  return entry;
}

/** Key schedule (DHX/1 §Handshake 6–7) from Z, the hello line and the key line. */
function keySchedule(zBytes, helloLine, keyLine) {
  const th = crypto.createHash("sha256").update(`${helloLine}\n${keyLine}\n`).digest();
  const okm = Buffer.from(crypto.hkdfSync("sha256", zBytes, th, KEY_SCHEDULE_INFO, 136));
  return {
    th,
    send: { enc: okm.subarray(0, 32), mac: okm.subarray(32, 64) },
    receive: { enc: okm.subarray(64, 96), mac: okm.subarray(96, 128) },
  };
}

/** Revision 3: checks the server's Ed25519 proof over "dhx/1 host key proof" ‖ 0 ‖ th. */
function checkProof(hostKeyBase64, th, frame) {
  if (frame.type !== "proof") throw new Error(`expected a proof, got ${frame.type}`);
  const key = crypto.createPublicKey({
    key: Buffer.concat([
      Buffer.from("302a300506032b6570032100", "hex"),
      Buffer.from(hostKeyBase64, "base64"),
    ]),
    format: "der",
    type: "spki",
  });
  const message = Buffer.concat([Buffer.from("dhx/1 host key proof\0"), th]);
  if (!crypto.verify(null, message, key, Buffer.from(frame.signature, "base64"))) {
    throw new Error("the server's host key proof does not verify");
  }
}

/** Revision 3: the password generator G = h² mod p, as a big-endian buffer. */
function passwordGenerator(password, nonceBase64, pDecimal) {
  const p = BigInt(pDecimal);
  const pBytes = decimalToBuffer(pDecimal);
  for (let i = 0; i < 256; i++) {
    const info = Buffer.concat([Buffer.from("dhx/1 password generator\0"), pBytes, Buffer.of(i)]);
    const okm = crypto.hkdfSync(
      "sha256",
      Buffer.from(password.normalize("NFC")),
      Buffer.from(nonceBase64, "base64"),
      info,
      pBytes.length + 32,
    );
    const h = BigInt("0x" + Buffer.from(okm).toString("hex")) % p;
    const g = (h * h) % p;
    if (g > 1n && g < p - 1n) return decimalToBuffer(g.toString());
  }
  throw new Error("no password generator");
}

function seqBytes(seq) {
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64BE(BigInt(seq));
  return bytes;
}

/** AES-256-CTR from counter block "seq (8 bytes BE) ‖ 8 zero bytes". */
function ctr(key, seqBuffer, data) {
  const iv = Buffer.alloc(16);
  seqBuffer.copy(iv);
  return crypto.createCipheriv("aes-256-ctr", key, iv).update(data);
}

function tag(key, type, seqBuffer, ciphertext) {
  return crypto.createHmac("sha256", key).update(type).update(ZERO_BYTE).update(seqBuffer)
    .update(ciphertext).digest();
}

function sealRecord(keys, type, seq, text) {
  const seqBuffer = seqBytes(seq);
  const ciphertext = ctr(keys.enc, seqBuffer, Buffer.from(text, "utf8"));
  const mac = tag(keys.mac, type, seqBuffer, ciphertext).toString("base64");
  return `{"type":"${type}","seq":${seq},"data":"${ciphertext.toString("base64")}","tag":"${mac}"}`;
}

/** Checks seq and tag, then decrypts; returns { type, text }. */
function openRecord(keys, expectedSeq, frame) {
  if (frame.seq !== expectedSeq) {
    throw new Error(`server record seq ${frame.seq}, expected ${expectedSeq}`);
  }
  if (typeof frame.data !== "string" || typeof frame.tag !== "string") {
    throw new Error(`server record without data or tag (type ${frame.type})`);
  }
  const seqBuffer = seqBytes(expectedSeq);
  const ciphertext = Buffer.from(frame.data, "base64");
  const want = tag(keys.mac, frame.type, seqBuffer, ciphertext);
  const got = Buffer.from(frame.tag, "base64");
  if (got.length !== 32 || !crypto.timingSafeEqual(want, got)) {
    throw new Error(`bad tag on server record ${expectedSeq}`);
  }
  return { type: frame.type, text: ctr(keys.enc, seqBuffer, ciphertext).toString("utf8") };
}

// ───────────────────────────────────────────────────────────────────────────
// Connections
// ───────────────────────────────────────────────────────────────────────────

/**
 * One client connection of any kind. `ready` resolves when it can send
 * messages (dhx: hello received, key sent). Each `send` is timed until its ack:
 * `onAck(latencyMs)` fires per ack, `onChat(text)` per relayed chat line (dhx
 * room mode; acked here), `onNotice(text)` per notice.
 */
export class Client {
  /** Callbacks, replaced by whichever command drives the session. */
  onAck = () => {};
  onChat = () => {};
  onNotice = () => {};
  onError = () => {};
  /** `ping` records answered. */
  pings = 0;
  /** `pong` records received. */
  pongs = 0;
  /** `notice` records received. */
  notices = 0;
  /** Send times of the messages not yet acked, oldest first, and their seqs. */
  #pendingTimes = [];
  #pendingSeqs = [];
  #pendingHead = 0;
  /** Messages sent so far: the seq of a baseline's next msg. */
  #messages = 0;
  /** Bytes after the last LF of the previous chunk. */
  #buffer = null;
  #failed = false;
  /** Set by close(): the server's closing is then expected, not an error. */
  #closing = false;
  #resolveReady;
  #rejectReady;
  /** dhx only: per-direction seqs and the keys (null until the hello). */
  #sendSeq = 0;
  #receiveSeq = 0;
  #keys = null;
  /** dhx revision 3: what the handshake still waits for ("proof", "confirm" or null). */
  #awaiting = null;
  #hostKey = null;
  #password = false;

  /**
   * Starts connecting: `socket` is the net or TLS socket, `ready` and `closed`
   * are promises of the session being usable and of the socket being closed.
   */
  constructor(kind, target) {
    this.kind = kind;
    this.target = target;
    this.socket = kind === "tls"
      ? tls.connect({
        host: target.host,
        port: target.port,
        secureContext: clientTlsContext(),
        servername: "localhost",
      })
      : net.connect({ host: target.host, port: target.port, localAddress: target.localAddress });
    this.socket.setNoDelay(true);
    this.closed = new Promise((resolve) => this.socket.once("close", resolve));
    this.ready = new Promise((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    this.ready.catch(() => {});
    if (kind === "plain") this.socket.once("connect", () => this.#resolveReady());
    if (kind === "tls") this.socket.once("secureConnect", () => this.#resolveReady());
    this.socket.on("data", (chunk) => this.#onData(chunk));
    this.socket.on("error", (error) => this.#fail(error));
    this.socket.on("end", () => this.#fail(new Error("server closed the connection")));
  }

  /** Messages sent and not yet acked. */
  get outstanding() {
    return this.#pendingTimes.length - this.#pendingHead;
  }

  /** Sends one `msg` and starts its latency clock. */
  send(text) {
    const seq = this.kind === "dhx" ? this.#sendSeq : this.#messages;
    this.#messages++;
    this.#pendingTimes.push(performance.now());
    this.#pendingSeqs.push(seq);
    if (this.kind === "dhx") this.#writeRecord("msg", text);
    else this.socket.write(`{"type":"msg","seq":${seq},"data":${JSON.stringify(text)}}\n`);
  }

  /** dhx: sends a `ping` (its `pong` is counted in `pongs`). */
  ping(text) {
    this.#writeRecord("ping", text);
  }

  /** Says bye (dhx: sealed; baselines: a plain bye line) and half-closes. */
  close() {
    if (this.socket.destroyed) return;
    if (this.kind === "dhx" && this.#keys) this.#writeRecord("bye", "");
    else if (this.kind !== "dhx") this.socket.write('{"type":"bye"}\n');
    this.#closing = true;
    this.socket.end();
  }

  destroy() {
    this.socket.destroy();
  }

  #writeRecord(type, text) {
    this.socket.write(sealRecord(this.#keys.send, type, this.#sendSeq++, text) + "\n");
  }

  #fail(error) {
    if (this.#failed) return;
    this.#failed = true;
    this.#rejectReady(error);
    // A server closing after our bye, or us destroying the socket, is no failure.
    if (!this.#closing) this.onError(error);
    this.socket.destroy();
  }

  #onData(chunk) {
    // One write syscall for all the answers this chunk provokes.
    this.socket.cork();
    try {
      let start = 0;
      let data = chunk;
      if (this.#buffer) {
        data = Buffer.concat([this.#buffer, chunk]);
        this.#buffer = null;
      }
      for (let lf = data.indexOf(LF); lf >= 0; lf = data.indexOf(LF, start)) {
        const end = lf > start && data[lf - 1] === CR ? lf - 1 : lf;
        this.#onLine(data.toString("utf8", start, end));
        start = lf + 1;
      }
      if (start < data.length) this.#buffer = data.subarray(start);
    } catch (error) {
      this.#fail(error);
    } finally {
      process.nextTick(() => this.socket.uncork());
    }
  }

  #onLine(line) {
    if (this.#failed) return;
    const frame = JSON.parse(line);
    if (frame.type === "error") throw new Error(`server error frame: ${frame.message}`);
    if (this.kind !== "dhx") {
      if (frame.type !== "ack") throw new Error(`expected ack, got ${frame.type}`);
      this.#acked(frame.seq);
    } else if (!this.#keys) {
      this.#onHello(line, frame);
    } else if (this.#awaiting === "proof") {
      checkProof(this.#hostKey, this.#keys.th, frame);
      this.#afterProof();
    } else if (this.#awaiting === "confirm") {
      const record = openRecord(this.#keys.receive, this.#receiveSeq++, frame);
      if (record.type !== "confirm" || record.text !== "confirm") {
        throw new Error("the server's confirm does not open");
      }
      this.#awaiting = null;
      this.#resolveReady();
    } else {
      this.#onRecord(openRecord(this.#keys.receive, this.#receiveSeq++, frame));
    }
  }

  #onHello(helloLine, hello) {
    if (hello.type !== "hello" || hello.protocol !== "dhx/1") {
      throw new Error(`expected a dhx/1 hello, got ${helloLine.slice(0, 80)}`);
    }
    if (hello.cipher !== "aes-256-ctr+hmac-sha256") {
      throw new Error(
        `the load generator only speaks aes-256-ctr+hmac-sha256, not ${hello.cipher}`,
      );
    }
    const group = clientKeys(hello.p, hello.g);
    const serverKey = BigInt(hello.publicKey);
    if (!(serverKey > 1n && serverKey < group.pBig - 1n)) throw new Error("bad server public key");
    const { password } = this.target;
    if ((password !== undefined) !== (hello.auth === "password")) {
      throw new Error(`password given: ${password !== undefined}; server asks: ${hello.auth}`);
    }
    let { publicDecimal } = group;
    if (password !== undefined) {
      // G is new with every nonce: A = G^a is one more modpow, done by OpenSSL as
      // "the secret with peer key G" (a new DH object per connection would check p).
      const generator = passwordGenerator(password, hello.nonce, hello.p);
      publicDecimal = BigInt("0x" + group.dh.computeSecret(generator).toString("hex")).toString();
    }
    const proof = this.target.proof === true && hello.hostKey !== undefined;
    const keyLine = `{"type":"key","publicKey":"${publicDecimal}"${proof ? ',"proof":true' : ""}}`;
    this.socket.write(keyLine + "\n");
    const z = group.dh.computeSecret(decimalToBuffer(hello.publicKey));
    const zBytes = z.length === group.byteLength
      ? z
      : Buffer.concat([Buffer.alloc(group.byteLength - z.length), z]);
    this.#keys = keySchedule(zBytes, helloLine, keyLine);
    this.#hostKey = hello.hostKey;
    this.#password = password !== undefined;
    if (proof) this.#awaiting = "proof";
    else this.#afterProof();
  }

  /** After the proof (or without one): the password's confirm, or ready. */
  #afterProof() {
    if (this.#password) {
      this.#writeRecord("confirm", "confirm");
      this.#awaiting = "confirm";
    } else {
      this.#awaiting = null;
      this.#resolveReady();
    }
  }

  #onRecord({ type, text }) {
    switch (type) {
      case "ack":
        return this.#acked(Number(text));
      case "ping":
        this.pings++;
        return this.#writeRecord("pong", text);
      case "chat": {
        // Ack first (the protocol's order), then count the delivery.
        this.#writeRecord("ack", String(this.#receiveSeq - 1));
        return this.onChat(JSON.parse(text).text);
      }
      case "notice":
        this.notices++;
        return this.onNotice(text);
      case "pong":
        this.pongs++;
        return;
      case "bye":
        throw new Error("server said bye");
      default:
        throw new Error(`unexpected record type ${type}`);
    }
  }

  #acked(seq) {
    if (this.#pendingHead >= this.#pendingTimes.length) throw new Error(`unexpected ack ${seq}`);
    const expected = this.#pendingSeqs[this.#pendingHead];
    if (seq !== expected) throw new Error(`ack for ${seq}, expected ${expected}`);
    const latency = performance.now() - this.#pendingTimes[this.#pendingHead++];
    // Keep the arrays short on long-lived connections.
    if (this.#pendingHead > 4096 && this.#pendingHead * 2 > this.#pendingTimes.length) {
      this.#pendingTimes = this.#pendingTimes.slice(this.#pendingHead);
      this.#pendingSeqs = this.#pendingSeqs.slice(this.#pendingHead);
      this.#pendingHead = 0;
    }
    this.onAck(latency);
  }
}

/** Resolves with the next ack latency of `client`, rejects on its failure. */
function nextAck(client) {
  return new Promise((resolve, reject) => {
    client.onAck = resolve;
    client.onError = reject;
  });
}

/**
 * Connects, waits until ready, then does one msg → ack round trip: the ack
 * proves the server holds the session (dhx: derived the same keys).
 * Resolves with the client and the connect → ack latency.
 */
async function establish(kind, target, text) {
  const started = performance.now();
  const client = new Client(kind, target);
  try {
    await client.ready;
    const acked = nextAck(client);
    client.send(text);
    await acked;
  } catch (error) {
    client.destroy();
    throw error;
  }
  client.onError = () => {};
  return { client, latency: performance.now() - started };
}

// ───────────────────────────────────────────────────────────────────────────
// Commands
// ───────────────────────────────────────────────────────────────────────────

/** Sessions held between `open` and `close`. */
let held = [];

/** A message text of exactly `size` bytes (ASCII). */
function message(size) {
  return "m".padEnd(size, "x");
}

function resolveTarget(target) {
  const host = target.host ?? "127.0.0.1";
  checkLoopback(host);
  if (!["dhx", "plain", "tls"].includes(target.kind)) {
    throw new Error(`unknown kind ${target.kind}`);
  }
  return { ...target, host };
}

/** Says bye on every client and waits until each is closed, destroying stragglers after `ms`. */
async function closeAll(clients, ms = 5000) {
  for (const client of clients) client.close();
  const all = Promise.all(clients.map((c) => c.closed));
  if (await Promise.race([all, sleep(ms).then(() => "timeout")]) === "timeout") {
    for (const client of clients) client.destroy();
    await all;
  }
}

/**
 * Case a: `concurrency` loops of connect → handshake → one msg/ack → bye, for
 * `seconds`. `wallMs` ends when the last loop's last session is acked (before
 * the closes are awaited), so completed / wallMs is the session rate.
 */
async function handshakes({ target, concurrency, seconds, size = 64 }) {
  const spec = resolveTarget(target);
  const text = message(size);
  const latencies = [];
  const errors = new ErrorLog();
  const closing = [];
  const started = performance.now();
  const deadline = started + seconds * 1000;
  async function loop() {
    while (performance.now() < deadline) {
      try {
        const { client, latency } = await establish(spec.kind, spec, text);
        latencies.push(latency);
        client.close();
        closing.push(client.closed);
      } catch (error) {
        errors.add(error);
        await sleep(10); // a refusing server must not turn this into a busy loop
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, loop));
  const wallMs = performance.now() - started;
  await Promise.race([Promise.all(closing), sleep(5000)]);
  return { completed: latencies.length, wallMs, latencies: rounded(latencies), errors };
}

/**
 * Cases b, c and d: opens `count` sessions, at most `concurrency` handshakes at a
 * time (all at once would overflow the server's listen backlog and stall on SYN
 * retries), each confirmed by one msg/ack; holds them for `traffic`, `room`
 * and `close`.
 */
async function open({ target, count, concurrency, size = 64 }) {
  if (held.length > 0) throw new Error("sessions are already open; close them first");
  const spec = resolveTarget(target);
  const text = message(size);
  const latencies = [];
  const errors = new ErrorLog();
  let started = 0;
  const t0 = performance.now();
  async function opener() {
    while (started < count) {
      started++;
      try {
        const { client, latency } = await establish(spec.kind, spec, text);
        latencies.push(latency);
        held.push(client);
      } catch (error) {
        errors.add(error);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, opener));
  const wallMs = performance.now() - t0;
  for (const client of held) client.onError = (error) => errors.add(error);
  return { opened: held.length, wallMs, latencies: rounded(latencies), errors };
}

/**
 * Cases b and c: every held session sends `messages` messages of `size` bytes,
 * at most `window` unacked each, all sessions at once. Gives up when no ack
 * arrives for `stallSeconds`; lost = sent − acked.
 */
function traffic({ messages, window, size = 64, stallSeconds = 30 }) {
  if (held.length === 0) throw new Error("no open sessions");
  const text = message(size);
  const latencies = new Float64Array(held.length * messages);
  const errors = new ErrorLog();
  let sent = 0;
  let acked = 0;
  let finished = 0;
  let lastProgress = performance.now();
  const started = performance.now();
  return new Promise((resolve) => {
    let resolved = false;
    const done = (stalled) => {
      if (resolved) return;
      resolved = true;
      clearInterval(watchdog);
      resolve({
        sessions: held.length,
        sent,
        acked,
        lost: sent - acked,
        wallMs: performance.now() - started,
        latencies: rounded(latencies.subarray(0, acked)),
        stalled,
        errors,
      });
    };
    const watchdog = setInterval(() => {
      if (performance.now() - lastProgress > stallSeconds * 1000) done(true);
    }, 250);
    for (const client of held) {
      let queued = 0;
      let over = false; // counted in `finished` (once, whether it completed or failed)
      const finish = () => {
        if (over) return;
        over = true;
        if (++finished === held.length) done(false);
      };
      const fill = () => {
        for (; queued < messages && client.outstanding < window; queued++, sent++) {
          client.send(text);
        }
      };
      client.onAck = (latency) => {
        latencies[acked++] = latency;
        lastProgress = performance.now();
        fill();
        if (queued === messages && client.outstanding === 0) finish();
      };
      client.onError = (error) => {
        errors.add(error);
        finish();
      };
      fill();
    }
  });
}

/** Says bye on every held session and waits until the server has closed them. */
async function close() {
  const clients = held;
  held = [];
  const pings = clients.reduce((sum, c) => sum + c.pings, 0);
  const started = performance.now();
  await closeAll(clients);
  return { closed: clients.length, pings, wallMs: performance.now() - started };
}

/** Milliseconds since the epoch, sub-ms: comparable across generator processes. */
const wallClock = () => performance.timeOrigin + performance.now();

/**
 * Room mode (bench/room.ts): each held dhx session sends a line every 1/`rate` s
 * for `seconds` (open loop, start times spread evenly over one period); each
 * line starts with its send time, so the members that receive it as `chat`
 * (and ack it) know its delivery latency. Then waits until no chat has arrived
 * for `quietMs` (at most `drainSeconds`). The orchestrator knows every
 * generator's lines and works out the expected deliveries.
 */
function room({ rate, seconds, size = 64, quietMs = 500, drainSeconds = 10 }) {
  if (held.length === 0) throw new Error("no open sessions");
  const periodMs = 1000 / rate;
  const latencies = [];
  const errors = new ErrorLog();
  const counts = { linesSent: 0, linesAcked: 0, delivered: 0, notices: 0 };
  const started = performance.now();
  let lastDelivery = started;
  const pad = "x".repeat(size);
  const due = held.map((_, index) => started + (index / held.length) * periodMs);
  for (const client of held) {
    client.onChat = (text) => {
      lastDelivery = performance.now();
      const sentAt = Number(text.slice(0, text.indexOf(" ")));
      if (Number.isFinite(sentAt)) latencies.push(wallClock() - sentAt);
      counts.delivered++;
    };
    client.onAck = () => counts.linesAcked++;
    client.onNotice = () => counts.notices++;
    client.onError = (error) => errors.add(error);
  }
  return new Promise((resolve) => {
    const finish = (sendMs) => {
      resolve({
        ...counts,
        members: held.length,
        sendMs,
        // Until the last chat arrived: the rate is deliveries over this span.
        deliveryMs: Math.max(sendMs, lastDelivery - started),
        wallMs: performance.now() - started,
        latencies: rounded(latencies),
        errors,
      });
    };
    // One 5 ms tick for all members: a timer per member would cost the generator more.
    const tick = setInterval(() => {
      const now = performance.now();
      if (now - started >= seconds * 1000) {
        clearInterval(tick);
        const sendMs = now - started;
        const poll = setInterval(() => {
          const quiet = performance.now() - Math.max(lastDelivery, started + sendMs);
          if (quiet > quietMs || performance.now() - started - sendMs > drainSeconds * 1000) {
            clearInterval(poll);
            finish(sendMs);
          }
        }, 20);
        return;
      }
      held.forEach((client, index) => {
        for (; due[index] <= now && !client.socket.destroyed; due[index] += periodMs) {
          client.send(`${wallClock().toFixed(3)} ${pad}`.slice(0, Math.max(size, 24)));
          counts.linesSent++;
        }
      });
    }, 5);
  });
}

/**
 * Waits until no notice (a room's join notices) has arrived for `quietMs`, at
 * most `maxMs`; answers how many notices the held sessions have received in all.
 */
async function settle({ quietMs = 300, maxMs = 10_000 }) {
  let last = performance.now();
  for (const client of held) client.onNotice = () => last = performance.now();
  const started = performance.now();
  while (performance.now() - last < quietMs && performance.now() - started < maxMs) {
    await sleep(20);
  }
  const notices = held.reduce((sum, client) => sum + client.notices, 0);
  return { notices, wallMs: performance.now() - started };
}

/** The commands, by name; each answer also gets genWallMs, genCpuMs and genSystemMs. */
const COMMANDS = { handshakes, open, traffic, close, room, settle };

// ───────────────────────────────────────────────────────────────────────────
// Main: one command at a time from stdin
// ───────────────────────────────────────────────────────────────────────────

function reply(answer) {
  process.stdout.write(JSON.stringify(answer) + "\n");
}

async function run(command) {
  const handler = COMMANDS[command.cmd];
  if (!handler) throw new Error(`unknown command ${JSON.stringify(command.cmd)}`);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const result = await handler(command);
  const cpu = process.cpuUsage(cpu0);
  return {
    ...result,
    genWallMs: performance.now() - t0,
    genCpuMs: (cpu.user + cpu.system) / 1000,
    genSystemMs: cpu.system / 1000,
  };
}

async function main() {
  const { node, openssl } = process.versions;
  reply({ id: 0, ok: true, result: { pid: process.pid, node, openssl } });
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() === "") continue;
    let command;
    try {
      command = JSON.parse(line);
      if (command.cmd === "exit") break;
      reply({ id: command.id, ok: true, result: await run(command) });
    } catch (error) {
      reply({ id: command?.id, ok: false, error: error?.stack ?? String(error) });
    }
  }
  for (const client of held) client.destroy();
  process.exit(0);
}

// Imported (bench/abuse_load.mjs uses Client), it does not read commands.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
