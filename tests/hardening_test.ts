/**
 * Adversarial tests of the DHX/1 server and client: hostile peers on raw
 * sockets, fake servers, a seeded fuzzer and a 500-client soak.
 *
 * Every hostile case checks the same contract (DHX/1 §Errors): the offender
 * gets an `error` frame where possible and is closed, the server logs one
 * error line for it, and the server keeps serving a well-behaved client.
 *
 * Run from the repository root: `deno test -P tests/hardening_test.ts`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { once } from "node:events";
import net from "node:net";
import {
  createOffer,
  derivePublicKey,
  GROUPS,
  type Hello,
  type Logger,
  parseHello,
  respondToHello,
  SECURE_CIPHER,
  Session,
  TOY_CIPHER,
} from "../dh.ts";
import {
  type ReceivedMessage,
  type ServerHandle,
  type ServerOptions,
  startServer,
} from "../server.ts";
import { type ClientOptions, runClient } from "../client.ts";
import {
  CapturingLogger,
  FAKE_SERVER_KEY,
  fakeServer,
  flipBit,
  type Frame,
  helloWith,
  HOST,
  MessageSink,
  peerPattern,
  RawPeer,
  serveHandshake,
  textStream,
  tryParse,
  typedInput,
  within,
} from "./support.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const FFDHE2048 = GROUPS.ffdhe2048;
const P = FFDHE2048.p;
const P_DIGITS = P.toString().length;
const LF = 0x0a;

// ───────────────────────────────────────────────────────────────────────────
// Time bounds
// ───────────────────────────────────────────────────────────────────────────

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` (for state with no event, such as `handle.connections`). */
async function until(condition: () => boolean, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(5);
  }
}

// ───────────────────────────────────────────────────────────────────────────
// In-process server
// ───────────────────────────────────────────────────────────────────────────

interface TestServer {
  readonly handle: ServerHandle;
  readonly port: number;
  readonly log: CapturingLogger;
  readonly messages: readonly ReceivedMessage[];
  /** True once the accept loop has returned (it must not before `stop`). */
  readonly acceptLoopEnded: boolean;
  stop(): Promise<void>;
}

function startTestServer(options: ServerOptions = {}): TestServer {
  const log = new CapturingLogger();
  const sink = new MessageSink();
  let stopping = false;
  let acceptLoopEnded = false;
  const handle = startServer({
    port: 0,
    handshakeTimeoutMs: 5000,
    logger: log,
    ...options,
    onMessage: sink.onMessage,
  });
  handle.finished.then(() => {
    if (!stopping) acceptLoopEnded = true;
  });
  return {
    handle,
    port: handle.addr.port,
    log,
    messages: sink.messages,
    get acceptLoopEnded() {
      return acceptLoopEnded;
    },
    async stop() {
      assert.equal(acceptLoopEnded, false, "the accept loop ended before close()");
      stopping = true;
      await within(handle.close(), 5000, "server close");
    },
  };
}

/** The client's whole input: each line and an LF, in one chunk. */
function linesStream(lines: readonly string[]): ReadableStream<Uint8Array> {
  return textStream(lines.map((line) => line + "\n").join(""));
}

let goodClients = 0;

/**
 * Runs a well-behaved client (runClient, not interactive) with `count` lines
 * and asserts exit 0, no error lines, and every line delivered in order.
 */
async function assertGoodClient(
  server: TestServer,
  count = 3,
  options: ClientOptions = {},
): Promise<void> {
  const id = `good${++goodClients}-${crypto.randomUUID().slice(0, 8)}`;
  const lines = Array.from({ length: count }, (_, i) => `${id} line ${i} ✓ ünïcödé`);
  const log = new CapturingLogger();
  const code = await within(
    runClient({
      port: server.port,
      input: linesStream(lines),
      interactive: false,
      logger: log,
      timeoutMs: 5000,
      ...options,
    }),
    15_000,
    "good client",
  );
  assert.equal(code, 0, `good client failed: ${log.errors.join(" | ")}`);
  assert.deepEqual(log.errors, []);
  const got = server.messages.filter((m) => m.text.startsWith(`${id} `));
  assert.deepEqual(got.map((m) => m.text), lines, "good client's messages delivered in order");
  assert.deepEqual(got.map((m) => m.seq), lines.map((_, i) => i));
  assert.equal(new Set(got.map((m) => m.peer)).size, 1);
}

// ───────────────────────────────────────────────────────────────────────────
// Raw sockets
// ───────────────────────────────────────────────────────────────────────────

/** Whether `text` holds a C0 control character (ESC, BEL, …) that could drive a terminal. */
function hasControlCharacter(text: string): boolean {
  return [...text].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);
}

function parseObject(line: string): Frame {
  const value: unknown = JSON.parse(line);
  assert.ok(
    typeof value === "object" && value !== null && !Array.isArray(value),
    `not a JSON object: ${line.slice(0, 80)}`,
  );
  return value as Frame;
}

/** Lines from a node:net socket, one per call. */
function nodeLineReader(socket: net.Socket): (ms?: number) => Promise<string> {
  let buffer = "";
  const queue: string[] = [];
  let waiter: ((line: string) => void) | undefined;
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    buffer += chunk;
    for (let lf = buffer.indexOf("\n"); lf >= 0; lf = buffer.indexOf("\n")) {
      const line = buffer.slice(0, lf);
      buffer = buffer.slice(lf + 1);
      if (waiter) {
        const resolve = waiter;
        waiter = undefined;
        resolve(line);
      } else queue.push(line);
    }
  });
  return (ms = 3000) =>
    queue.length > 0 ? Promise.resolve(queue.shift()!) : within(
      new Promise<string>((resolve) => waiter = resolve),
      ms,
      "a line on the node:net socket",
    );
}

/** A raw client that has done the real DHX/1 handshake (dh.ts, secure policy). */
interface RawSession {
  readonly raw: RawPeer;
  readonly session: Session;
  readonly hello: Hello;
  readonly keyLine: string;
}

async function rawHandshake(port: number, privateKey?: bigint): Promise<RawSession> {
  const raw = await RawPeer.connect(port);
  const helloLine = await raw.readLine();
  assert.ok(helloLine !== null, "the server sent no hello");
  const hello = parseHello(helloLine, { insecure: false });
  const { keyLine, session } = await respondToHello(hello, privateKey);
  await raw.writeLine(keyLine);
  return { raw, session, hello, keyLine };
}

/** Sends one msg and checks the server's ack (tag, seq and plaintext). */
async function sendAndExpectAck(s: RawSession, text: string): Promise<void> {
  const seq = s.session.nextSendSeq;
  await s.raw.writeLine(await s.session.seal("msg", text));
  await expectAck(s, seq);
}

async function expectAck(s: RawSession, seq: number): Promise<void> {
  const line = await s.raw.readLine();
  assert.ok(line !== null, `EOF instead of the ack of ${seq}`);
  const frame = await s.session.open(line);
  assert.equal(frame.type, "ack", `expected an ack, got ${line.slice(0, 120)}`);
  if (frame.type === "ack") assert.equal(frame.text, String(seq));
}

/**
 * The contract for an offending connection: it receives an error frame whose
 * message matches `pattern` as its last line, then EOF; the server logs
 * exactly one error line for it (also matching) and drops it.
 *
 * @returns the frames received before the error frame
 */
async function expectRejected(
  server: TestServer,
  raw: RawPeer,
  pattern: RegExp,
  baseline = 0,
): Promise<Frame[]> {
  const lines = await raw.readToEof(5000);
  raw.close();
  const frames = lines.map(parseObject);
  const last = frames.at(-1);
  assert.ok(
    last !== undefined && last.type === "error",
    `expected an error frame then EOF, got ${JSON.stringify(lines).slice(0, 300)}`,
  );
  assert.equal(typeof last.message, "string");
  assert.match(last.message as string, pattern);
  await expectOneErrorLogged(server, raw.peer, pattern, baseline);
  return frames.slice(0, -1);
}

/** The server dropped `peer` and logged exactly one error line about it. */
async function expectOneErrorLogged(
  server: TestServer,
  peer: string,
  pattern: RegExp,
  baseline = 0,
): Promise<void> {
  await until(() => server.handle.connections <= baseline, 3000, "the server to drop the peer");
  const logged = server.log.about(peer, "error");
  assert.equal(
    logged.length,
    1,
    `expected one error line for ${peer}, got ${JSON.stringify(logged)}`,
  );
  assert.match(logged[0].message, pattern);
}

// ───────────────────────────────────────────────────────────────────────────
// Records built by hand from the key schedule (DHX/1 §Records)
// ───────────────────────────────────────────────────────────────────────────

/**
 * A client→server record sealed independently of dh.ts: AES-256-CTR under
 * okm[0..32] with counter block seq (8 bytes BE) ‖ 8 zero bytes, and
 * HMAC-SHA-256 under okm[32..64] over UTF-8(type) ‖ 0x00 ‖ seq (8 bytes BE) ‖
 * ciphertext.
 */
async function handSealed(
  okm: Uint8Array,
  type: string,
  seq: number,
  plaintext: Uint8Array,
): Promise<string> {
  const encryption = await crypto.subtle.importKey("raw", okm.slice(0, 32), "AES-CTR", false, [
    "encrypt",
  ]);
  const mac = await crypto.subtle.importKey(
    "raw",
    okm.slice(32, 64),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const counter = new Uint8Array(16);
  new DataView(counter.buffer).setBigUint64(0, BigInt(seq));
  const keystream = new Uint8Array(
    await crypto.subtle.encrypt(
      { name: "AES-CTR", counter, length: 64 },
      encryption,
      new Uint8Array(plaintext.length),
    ),
  );
  const ciphertext = plaintext.map((byte, i) => byte ^ keystream[i]);
  const typeBytes = encoder.encode(type);
  const input = new Uint8Array(typeBytes.length + 9 + ciphertext.length);
  input.set(typeBytes);
  new DataView(input.buffer).setBigUint64(typeBytes.length + 1, BigInt(seq));
  input.set(ciphertext, typeBytes.length + 9);
  const tag = new Uint8Array(await crypto.subtle.sign("HMAC", mac, input));
  const data = plaintext.length === 0 ? "" : ciphertext.toBase64();
  return JSON.stringify({ type, seq, data, tag: tag.toBase64() });
}

// ═══════════════════════════════════════════════════════════════════════════
// Server: before the key
// ═══════════════════════════════════════════════════════════════════════════

Deno.test("server rejects every malformed key frame and keeps serving", async (t) => {
  const server = startTestServer({ group: FFDHE2048 });
  const keyWith = (publicKey: unknown) => JSON.stringify({ type: "key", publicKey });
  const nested = (depth: number, open: string, close: string) =>
    open.repeat(depth) + close.repeat(depth);
  const cases: [name: string, payload: (helloLine: string) => string, pattern: RegExp][] = [
    ["non-JSON", () => "hello server, here is my key", /not a JSON frame/],
    ["JSON array", () => `["key","12345"]`, /must be a JSON object/],
    ["JSON number", () => "42", /must be a JSON object/],
    ["JSON string", () => `"key"`, /must be a JSON object/],
    ["JSON null", () => "null", /must be a JSON object/],
    ["empty line", () => "", /not a JSON frame/],
    ["unknown type", () => `{"type":"banana","publicKey":"12345"}`, /expected a key frame/],
    ["no type", () => `{"publicKey":"12345"}`, /expected a key frame/],
    ["hello instead of key", (hello) => hello, /expected a key frame.*hello/],
    ["msg instead of key", () => `{"type":"msg","seq":0,"data":"","tag":""}`, /key frame/],
    ["missing publicKey", () => `{"type":"key"}`, /publicKey/],
    ["publicKey as JSON number", () => `{"type":"key","publicKey":12345}`, /publicKey.*string/],
    ["publicKey null", () => keyWith(null), /publicKey.*string/],
    ["publicKey array", () => keyWith(["12345"]), /publicKey.*string/],
    ['publicKey "0"', () => keyWith("0"), /invalid public key/],
    ['publicKey "1"', () => keyWith("1"), /invalid public key/],
    ['publicKey "p-1"', () => keyWith((P - 1n).toString()), /invalid public key/],
    ['publicKey "p"', () => keyWith(P.toString()), /invalid public key/],
    ['publicKey "p+1"', () => keyWith((P + 1n).toString()), /invalid public key/],
    ['publicKey "-5"', () => keyWith("-5"), /publicKey.*decimal digits/],
    ['publicKey "0x10"', () => keyWith("0x10"), /publicKey.*decimal digits/],
    ['publicKey "1e3"', () => keyWith("1e3"), /publicKey.*decimal digits/],
    ['publicKey " 7"', () => keyWith(" 7"), /publicKey.*decimal digits/],
    ['publicKey "7 "', () => keyWith("7 "), /publicKey.*decimal digits/],
    ['publicKey ""', () => keyWith(""), /publicKey.*decimal digits/],
    ["publicKey in Arabic-Indic digits", () => keyWith("٣٤٥"), /publicKey.*decimal digits/],
    ["publicKey with one digit more than p", () => keyWith("9".repeat(P_DIGITS + 1)), /digits/],
    ["publicKey of 100,000 digits", () => keyWith("7".repeat(100_000)), /digits/],
    ["100,000 unclosed [", () => "[".repeat(100_000), /not a JSON frame/],
    ["100,000 nested arrays, balanced", () => nested(100_000, "[", "]"), /JSON object/],
    [
      "publicKey nested 100,000 objects deep",
      () => `{"type":"key","publicKey":${'{"a":'.repeat(100_000)}1${"}".repeat(100_000)}}`,
      /publicKey.*string/,
    ],
    [
      "type nested 100,000 arrays deep",
      () => `{"type":${nested(100_000, "[", "]")}}`,
      /expected a key frame/,
    ],
  ];
  try {
    for (const [name, payload, pattern] of cases) {
      await t.step(name, async () => {
        const raw = await RawPeer.connect(server.port);
        try {
          const hello = await raw.readLine();
          assert.ok(hello !== null);
          assert.equal(parseObject(hello).type, "hello");
          await raw.writeLine(payload(hello));
          const before = await expectRejected(server, raw, pattern);
          assert.deepEqual(before, [], "nothing but the error frame after hello");
        } finally {
          raw.close();
        }
      });
    }
    await t.step(
      "an error frame instead of the key: closed, one error line, no reply",
      async () => {
        const raw = await RawPeer.connect(server.port);
        try {
          await raw.readLine();
          await raw.writeLine(`{"type":"error","message":"\\u001b[2Jgoodbye"}`);
          assert.deepEqual(await raw.readToEof(), [], "no frame in answer to an error frame");
          await expectOneErrorLogged(server, raw.peer, /peer reported an error/);
          const [line] = server.log.about(raw.peer, "error");
          assert.ok(!line.message.includes("\x1b"), "terminal escapes are neutralised in the log");
        } finally {
          raw.close();
        }
      },
    );
    await t.step("the server still serves a good client", () => assertGoodClient(server));
    assert.equal(server.log.errors.length, cases.length + 1, "one error line per offender");
  } finally {
    await server.stop();
  }
});

// ═══════════════════════════════════════════════════════════════════════════
// Server: framing limits
// ═══════════════════════════════════════════════════════════════════════════

Deno.test("server bounds lines by maxLine and handles partial lines", async (t) => {
  const MAX = 4096;
  const server = startTestServer({ group: FFDHE2048, maxLine: MAX });
  try {
    await t.step("a key frame padded to exactly maxLine bytes is accepted", async () => {
      for (const terminator of ["\n", "\r\n"]) {
        const raw = await RawPeer.connect(server.port);
        try {
          const hello = parseHello((await raw.readLine())!, { insecure: false });
          const privateKey = 0x1234_5678_9abc_def1n;
          const publicKey = derivePublicKey(hello.group, privateKey).toString();
          const keyLine = JSON.stringify({ type: "key", publicKey });
          const padded = keyLine.slice(0, -1) + " ".repeat(MAX - keyLine.length) + "}";
          assert.equal(encoder.encode(padded).length, MAX);
          const session = await sessionFor(hello, privateKey, padded);
          await raw.write(padded + terminator);
          await sendAndExpectAck({ raw, session, hello, keyLine: padded }, "padded key ok");
        } finally {
          raw.close();
        }
      }
      await until(() => server.handle.connections === 0, 3000, "padded sessions to end");
      assert.deepEqual(server.log.errors, []);
    });

    await t.step("maxLine + 1 bytes before LF is refused", async () => {
      const raw = await RawPeer.connect(server.port);
      try {
        await raw.readLine();
        await raw.writeLine("7".repeat(MAX + 1));
        await expectRejected(server, raw, /line longer than 4096 bytes/);
      } finally {
        raw.close();
      }
    });

    await t.step("maxLine + 1 bytes in a record line after the handshake is refused", async () => {
      const s = await rawHandshake(server.port);
      try {
        await sendAndExpectAck(s, "short is fine");
        const record = parseObject(await s.session.seal("msg", "x"));
        const line = JSON.stringify({ ...record, pad: "" });
        await s.raw.writeLine(
          line.replace(`"pad":""`, `"pad":"${"p".repeat(MAX + 1 - line.length)}"`),
        );
        await expectRejected(server, s.raw, /line longer than 4096 bytes/);
      } finally {
        s.raw.close();
      }
    });

    await t.step("several MB without LF: closed after about maxLine bytes", async () => {
      const raw = await RawPeer.connect(server.port);
      try {
        await raw.readLine();
        const LIMIT = 8 * 1024 * 1024;
        let written = 0;
        let refusedAt: number | undefined;
        let writeError: unknown;
        server.log.waitFor((e) => peerPattern(raw.peer).test(e.message), 10_000, "refusal")
          .then(() => refusedAt = written, () => {});
        const reading = raw.readToEof(10_000);
        const small = encoder.encode("7".repeat(1024));
        const big = encoder.encode("7".repeat(64 * 1024));
        while (written < LIMIT) {
          const part = refusedAt === undefined ? small : big;
          try {
            await raw.write(part);
          } catch (error) {
            writeError = error;
            break;
          }
          written += part.length;
          // Writes to loopback complete without a macrotask turn, which would
          // starve the in-process server of reads until the kernel buffers
          // (~4 MB) fill; yield so it reads as a remote server would.
          if (refusedAt === undefined) await sleep(0);
        }
        const lines = await reading;
        console.log(
          `  overlong line: refused after ${refusedAt} bytes written; ` +
            `writes failed after ${written} bytes (${(writeError as Error)?.name})`,
        );
        assert.ok(writeError !== undefined, `all ${LIMIT} bytes were accepted by the server`);
        assert.ok(written < LIMIT);
        assert.ok(refusedAt !== undefined, "the server never logged the refusal");
        assert.ok(refusedAt <= 64 * 1024, `refused only after ${refusedAt} bytes (maxLine ${MAX})`);
        assert.equal(lines.length, 1, `expected one error frame, got ${lines.length} lines`);
        assert.match(String(parseObject(lines[0]).message), /line longer than 4096 bytes/);
        await expectOneErrorLogged(server, raw.peer, /line longer than 4096 bytes/);
      } finally {
        raw.close();
      }
    });

    await t.step("a partial key line, then half-close: the error frame still arrives", async () => {
      const raw = await RawPeer.connect(server.port);
      try {
        await raw.readLine();
        await raw.write(`{"type":"key","publicKey":"12`);
        // Half-close (`printf … | nc -N`): our read side stays open, so the
        // error frame is possible and DHX/1 §Errors asks for it.
        await raw.conn.closeWrite();
        await expectRejected(server, raw, /middle of a line/);
      } finally {
        raw.close();
      }
    });

    await t.step("a partial key line, then close", async () => {
      const raw = await RawPeer.connect(server.port);
      const peer = raw.peer;
      try {
        await raw.readLine();
        await raw.write(`{"type":"key","publicKey":"12`);
      } finally {
        raw.close();
      }
      await expectOneErrorLogged(server, peer, /middle of a line/);
    });

    await t.step("the server still serves a good client", () => assertGoodClient(server));
  } finally {
    await server.stop();
  }
});

/**
 * A client session for a hand-made key line (e.g. one padded with spaces),
 * derived exactly as respondToHello does but over `keyLine` as written.
 */
function sessionFor(hello: Hello, privateKey: bigint, keyLine: string): Promise<Session> {
  return Session.create({
    role: "client",
    group: hello.group,
    cipher: hello.cipher,
    privateKey,
    publicKey: derivePublicKey(hello.group, privateKey),
    peerPublicKey: hello.publicKey,
    helloLine: hello.line,
    keyLine,
  });
}

// ═══════════════════════════════════════════════════════════════════════════
// Server: after the handshake
// ═══════════════════════════════════════════════════════════════════════════

Deno.test("server rejects forged, replayed and malformed records and keeps serving", async (t) => {
  const server = startTestServer({ group: FFDHE2048 });
  let offenders = 0;

  /** Handshake, optionally send `warmup` good msgs, then `attack`; expect rejection. */
  const attackCase = (
    name: string,
    attack: (s: RawSession) => Promise<void>,
    pattern: RegExp,
    warmup = 1,
  ) =>
    t.step(name, async () => {
      const s = await rawHandshake(server.port);
      try {
        for (let i = 0; i < warmup; i++) await sendAndExpectAck(s, `${name} warmup ${i}`);
        await attack(s);
        const before = await expectRejected(server, s.raw, pattern);
        offenders++;
        assert.ok(
          before.every((f) => f.type === "ack"),
          `only acks may precede the error: ${JSON.stringify(before)}`,
        );
      } finally {
        s.raw.close();
      }
    });

  /** Seals a msg, lets `mutate` edit its JSON fields, sends it. */
  const mutated = (mutate: (record: Frame) => void, text = "payload") => async (s: RawSession) => {
    const record = parseObject(await s.session.seal("msg", text));
    mutate(record);
    await s.raw.writeLine(JSON.stringify(record));
  };

  try {
    await t.step("hand-built records match dh.ts byte for byte", async () => {
      const s = await rawHandshake(server.port);
      try {
        const mine = await handSealed(s.session.keySchedule, "msg", 0, encoder.encode("hi ✓"));
        assert.equal(mine, await s.session.seal("msg", "hi ✓"));
        await s.raw.writeLine(mine);
        await expectAck(s, 0);
        await s.raw.writeLine(await s.session.seal("bye", ""));
        assert.deepEqual(await s.raw.readToEof(), []);
      } finally {
        s.raw.close();
      }
    });

    await t.step("key and first record pipelined in one write are served", async () => {
      const raw = await RawPeer.connect(server.port);
      try {
        const hello = parseHello((await raw.readLine())!, { insecure: false });
        const { keyLine, session } = await respondToHello(hello);
        await raw.write(`${keyLine}\n${await session.seal("msg", "pipelined")}\n`);
        await expectAck({ raw, session, hello, keyLine }, 0);
      } finally {
        raw.close();
      }
    });

    await t.step("control characters in a msg are neutralised in the server log", async () => {
      const s = await rawHandshake(server.port);
      try {
        await sendAndExpectAck(s, "\x1b[2J\x1b]0;pwned\x07 hi");
        const line = server.log.entries.find((e) => e.message.includes("pwned"));
        assert.ok(line && !hasControlCharacter(line.message), JSON.stringify(line));
      } finally {
        s.raw.close();
      }
    });

    /** A step: its name, an edit of a sealed msg's JSON fields, the rejection expected. */
    type Mutation = [name: string, mutate: (record: Frame) => void, pattern: RegExp];
    const tagAndData: Mutation[] = [
      [
        "bad tag (one bit flipped)",
        (r) => r.tag = flipBit(r.tag as string, 9, 5),
        /authentication failed/,
      ],
      [
        "bad ciphertext (one bit flipped, tag intact)",
        (r) => r.data = flipBit(r.data as string, 0, 3),
        /authentication failed/,
      ],
      [
        "type changed msg → bye under the msg's tag",
        (r) => r.type = "bye",
        /authentication failed/,
      ],
      [
        "tag truncated to 16 bytes",
        (r) => r.tag = Uint8Array.fromBase64(r.tag as string).subarray(0, 16).toBase64(),
        /authentication failed/,
      ],
      ["empty tag", (r) => r.tag = "", /authentication failed/],
      ["missing tag", (r) => delete r.tag, /tag is not standard padded base64/],
    ];
    for (const [name, mutate, pattern] of tagAndData) {
      await attackCase(name, mutated(mutate), pattern);
    }
    await attackCase("record sealed with the server→client keys", async (s) => {
      const reflected = await handSealed(
        s.session.keySchedule.slice(64),
        "msg",
        s.session.nextSendSeq,
        encoder.encode("reflected"),
      );
      await s.raw.writeLine(reflected);
    }, /authentication failed/);
    await attackCase("replayed seq (same sealed line twice)", async (s) => {
      const line = await s.session.seal("msg", "once");
      await s.raw.writeLine(line);
      await s.raw.writeLine(line);
    }, /wrong sequence number 1, expected 2/);
    await attackCase("skipped seq (sealed two, sent only the second)", async (s) => {
      await s.session.seal("msg", "lost");
      await s.raw.writeLine(await s.session.seal("msg", "second"));
    }, /wrong sequence number 2, expected 1/);
    const badBase64 = [
      "!!!!",
      "QQ",
      "QR==",
      "QQ== ",
      "QQ==\n",
      "Q Q==",
      "QQ==QQ==",
      "-_8=",
      12,
      null,
    ];
    const seqAndBase64: Mutation[] = [
      ["seq as a string", (r) => r.seq = String(r.seq), /wrong sequence number "1"/],
      ...[null, 0.5, -1, 1e300, true, [1]].map((seq): Mutation => [
        `seq ${JSON.stringify(seq)}`,
        (r) => r.seq = seq,
        /wrong sequence number/,
      ]),
      ["seq missing", (r) => delete r.seq, /wrong sequence number nothing/],
      ...badBase64.map((data): Mutation => [
        `bad base64 data ${JSON.stringify(data)}`,
        (r) => r.data = data,
        /data is not (standard padded|canonical) base64/,
      ]),
    ];
    for (const [name, mutate, pattern] of seqAndBase64) {
      await attackCase(name, mutated(mutate), pattern);
    }
    const invalidUtf8: [string, number[]][] = [
      ["lone 0xFF", [0xff]],
      ["overlong NUL C0 80", [0x68, 0xc0, 0x80]],
      ["UTF-16 surrogate ED A0 80", [0xed, 0xa0, 0x80]],
      ["truncated sequence E2 82", [0x41, 0xe2, 0x82]],
      ["above U+10FFFF F4 90 80 80", [0xf4, 0x90, 0x80, 0x80]],
    ];
    for (const [name, bytes] of invalidUtf8) {
      await attackCase(`invalid UTF-8 under a valid tag: ${name}`, async (s) => {
        const seq = s.session.nextSendSeq;
        await s.raw.writeLine(
          await handSealed(s.session.keySchedule, "msg", seq, Uint8Array.from(bytes)),
        );
      }, /not valid UTF-8/);
    }
    await attackCase("an ack sent by a client (validly sealed)", async (s) => {
      await s.raw.writeLine(await s.session.seal("ack", "0"));
    }, /client may not send ack/);
    await attackCase("a bye with content (validly sealed)", async (s) => {
      await s.raw.writeLine(await s.session.seal("bye", "not empty"));
    }, /bye record must be empty/);
    await attackCase("a second key frame", async (s) => {
      await s.raw.writeLine(s.keyLine);
    }, /unexpected frame type "key"/);
    await attackCase("a hello frame after the handshake", async (s) => {
      await s.raw.writeLine(s.hello.line);
    }, /unexpected frame type "hello"/);
    await attackCase("a JSON array after the handshake", async (s) => {
      await s.raw.writeLine("[1,2,3]");
    }, /must be a JSON object/);
    await attackCase("non-JSON after the handshake", async (s) => {
      await s.raw.writeLine("GET / HTTP/1.1");
    }, /not a JSON frame/);
    await attackCase(
      "an attack before any good record (seq 0 forged)",
      mutated((r) => r.tag = flipBit(r.tag as string, 31, 7)),
      /authentication failed/,
      0,
    );

    await t.step("the server still serves a good client", () => assertGoodClient(server, 5));
    assert.equal(server.log.errors.length, offenders, "one error line per offender, none other");
  } finally {
    await server.stop();
  }
});

// ═══════════════════════════════════════════════════════════════════════════
// Server: silence, slowloris, capacity, vanishing clients
// ═══════════════════════════════════════════════════════════════════════════

Deno.test("server closes a silent or trickling client after handshakeTimeoutMs", async (t) => {
  const server = startTestServer({ group: FFDHE2048, handshakeTimeoutMs: 300 });
  try {
    await t.step("connect and say nothing", async () => {
      const started = performance.now();
      const raw = await RawPeer.connect(server.port);
      try {
        assert.equal(parseObject((await raw.readLine())!).type, "hello");
        await expectRejected(server, raw, /handshake timeout/);
        const elapsed = performance.now() - started;
        assert.ok(elapsed >= 250 && elapsed < 1500, `closed after ${elapsed.toFixed(0)} ms`);
      } finally {
        raw.close();
      }
    });

    await t.step("half a key line, then stall", async () => {
      const started = performance.now();
      const raw = await RawPeer.connect(server.port);
      try {
        await raw.readLine();
        await raw.write(`{"type":"key","publicKey":"1234`);
        await expectRejected(server, raw, /handshake timeout/);
        const elapsed = performance.now() - started;
        assert.ok(elapsed >= 250 && elapsed < 1500, `closed after ${elapsed.toFixed(0)} ms`);
      } finally {
        raw.close();
      }
    });

    await t.step(
      "one byte every 50 ms (slowloris): the timeout covers the whole line",
      async () => {
        const started = performance.now();
        const raw = await RawPeer.connect(server.port);
        try {
          await raw.readLine();
          let done = false;
          const reading = raw.readToEof(3000).finally(() => done = true);
          const trickle = `{"type":"key","publicKey":"${"7".repeat(200)}"}`;
          for (let i = 0; !done && i < trickle.length; i++) {
            try {
              await raw.write(trickle[i]);
            } catch {
              break;
            }
            await sleep(50); // the pacing is the attack under test
          }
          const lines = await reading;
          const elapsed = performance.now() - started;
          assert.equal(lines.length, 1);
          assert.match(String(parseObject(lines[0]).message), /handshake timeout/);
          assert.ok(elapsed >= 250 && elapsed < 1500, `closed after ${elapsed.toFixed(0)} ms`);
          await expectOneErrorLogged(server, raw.peer, /handshake timeout/);
        } finally {
          raw.close();
        }
      },
    );

    await t.step("the server still serves a good client", () => assertGoodClient(server));
    assert.equal(server.log.errors.length, 3);
  } finally {
    await server.stop();
  }
});

Deno.test("50 silent connections do not block a good client", async () => {
  const TIMEOUT = 1500;
  const server = startTestServer({
    group: FFDHE2048,
    handshakeTimeoutMs: TIMEOUT,
    maxClients: 100,
  });
  const silent: RawPeer[] = [];
  try {
    const opened = performance.now();
    for (let i = 0; i < 50; i++) silent.push(await RawPeer.connect(server.port));
    for (const raw of silent) assert.equal(parseObject((await raw.readLine())!).type, "hello");
    assert.equal(server.handle.connections, 50);
    const started = performance.now();
    await assertGoodClient(server, 5);
    const took = performance.now() - started;
    assert.ok(
      performance.now() - opened < TIMEOUT,
      `good client needed ${took.toFixed(0)} ms: it waited for the silent ones to time out`,
    );
    assert.ok(server.handle.connections >= 50, "the silent connections are still open");
    const results = await Promise.all(silent.map((raw) => raw.readToEof(TIMEOUT + 3000)));
    const closedAfter = performance.now() - opened;
    for (const lines of results) {
      assert.equal(lines.length, 1);
      assert.match(String(parseObject(lines[0]).message), /handshake timeout/);
    }
    assert.ok(closedAfter >= TIMEOUT - 50, `closed early: ${closedAfter.toFixed(0)} ms`);
    await until(() => server.handle.connections === 0, 3000, "all silent connections dropped");
    for (const raw of silent) {
      assert.equal(server.log.about(raw.peer, "error").length, 1, `one error line for ${raw.peer}`);
    }
    assert.equal(server.log.errors.length, 50);
    await assertGoodClient(server);
  } finally {
    for (const raw of silent) raw.close();
    await server.stop();
  }
});

Deno.test("maxClients: the extra connection is told the server is full; sessions live on", async () => {
  const server = startTestServer({ group: FFDHE2048, maxClients: 3 });
  const sessions: RawSession[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const s = await rawHandshake(server.port);
      sessions.push(s);
      await server.log.waitFor(
        (e) => e.message.startsWith(`Session with ${s.raw.peer}:`),
        3000,
        "session established",
      );
    }
    assert.equal(server.handle.connections, 3);

    const extra = await RawPeer.connect(server.port);
    try {
      const frames = await expectRejected(server, extra, /full/, 3);
      assert.deepEqual(frames, [], "no hello for a refused connection");
    } finally {
      extra.close();
    }
    assert.equal(server.handle.connections, 3);

    for (const [i, s] of sessions.entries()) await sendAndExpectAck(s, `held session ${i} ok`);
    for (const [i, s] of sessions.entries()) await sendAndExpectAck(s, `held session ${i} again`);

    // A freed slot is reusable.
    const leaving = sessions.pop()!;
    await leaving.raw.writeLine(await leaving.session.seal("bye", ""));
    assert.deepEqual(await leaving.raw.readToEof(), []);
    leaving.raw.close();
    await until(() => server.handle.connections === 2, 3000, "the slot to be freed");
    const again = await rawHandshake(server.port);
    sessions.push(again);
    await sendAndExpectAck(again, "took the freed slot");

    assert.equal(server.log.errors.length, 1, JSON.stringify(server.log.errors));
  } finally {
    for (const s of sessions) s.raw.close();
  }
  try {
    await until(() => server.handle.connections === 0, 3000, "held sessions to end");
    await assertGoodClient(server);
  } finally {
    await server.stop();
  }
});

Deno.test("clients that vanish mid-session or mid-line are logged; the server serves on", async (t) => {
  const server = startTestServer({ group: FFDHE2048 });
  try {
    await t.step("socket closed between records, no bye", async () => {
      const s = await rawHandshake(server.port);
      const peer = s.raw.peer;
      await sendAndExpectAck(s, "about to vanish");
      s.raw.close();
      await server.log.waitFor(
        (e) => e.message === `${peer} disconnected without bye`,
        3000,
        "vanished client logged",
      );
      await until(() => server.handle.connections === 0, 3000, "connection dropped");
      assert.deepEqual(server.log.about(peer, "error"), [], "a vanished client is no error");
    });

    await t.step("connection reset (TCP RST) mid-session", async () => {
      // Deno.Conn cannot send a RST; node:net's resetAndDestroy (SO_LINGER 0) can.
      const socket = net.connect(server.port, HOST);
      try {
        const readLine = nodeLineReader(socket);
        await within(once(socket, "connect"), 3000, "node:net connect");
        const peer = `${socket.localAddress}:${socket.localPort}`;
        const hello = parseHello(await readLine(), { insecure: false });
        const { keyLine, session } = await respondToHello(hello);
        socket.write(`${keyLine}\n${await session.seal("msg", "before the reset")}\n`);
        const ack = await session.open(await readLine());
        assert.equal(ack.type, "ack");
        socket.resetAndDestroy();
        await expectOneErrorLogged(server, peer, /connection reset by peer/);
      } finally {
        socket.destroy();
      }
    });

    await t.step("half a record, then close", async () => {
      const s = await rawHandshake(server.port);
      const peer = s.raw.peer;
      await sendAndExpectAck(s, "before the half record");
      const line = await s.session.seal("msg", "never finished");
      await s.raw.write(line.slice(0, line.length >> 1));
      s.raw.close();
      await expectOneErrorLogged(server, peer, /middle of a line/);
    });

    await t.step("half a record, then half-close: the error frame still arrives", async () => {
      const s = await rawHandshake(server.port);
      await sendAndExpectAck(s, "before the half record (half-close)");
      const line = await s.session.seal("msg", "never finished");
      await s.raw.write(line.slice(0, line.length >> 1));
      await s.raw.conn.closeWrite(); // our read side stays open for the error frame
      await expectRejected(server, s.raw, /middle of a line/);
    });

    await t.step("the server still serves a good client", () => assertGoodClient(server));
  } finally {
    await server.stop();
  }
});

// ═══════════════════════════════════════════════════════════════════════════
// Client: hostile servers
// ═══════════════════════════════════════════════════════════════════════════

interface FakeRun {
  readonly code: number;
  readonly elapsed: number;
  readonly log: CapturingLogger;
  /** Every line the client sent to the fake server. */
  readonly received: string[];
}

/**
 * Runs runClient (two input lines) against a fake server driven by `script`,
 * then collects whatever else the client sends until it closes.
 */
async function againstFakeServer(
  script: (server: RawPeer) => Promise<void>,
  options: ClientOptions = {},
  input: readonly string[] | ReadableStream<Uint8Array> = ["first line", "second line"],
): Promise<FakeRun> {
  const fake = fakeServer(script);
  const log = new CapturingLogger();
  const timeoutMs = options.timeoutMs ?? 2000;
  const started = performance.now();
  const client = runClient({
    port: fake.port,
    input: input instanceof ReadableStream ? input : linesStream(input),
    interactive: false,
    logger: log,
    timeoutMs,
    ...options,
  }).then((code) => ({ code, elapsed: performance.now() - started }));
  try {
    await fake.done;
    const { code, elapsed } = await within(client, timeoutMs + 2000, "runClient to resolve");
    const peer = fake.peer!;
    if (!peer.closed) await peer.readToEof(3000);
    return { code, elapsed, log, received: peer.received };
  } finally {
    fake.close();
  }
}

function assertFailed(run: FakeRun, reason: RegExp, limit: number): void {
  assert.equal(run.code, 1, `exit code (log: ${JSON.stringify(run.log.entries)})`);
  assert.ok(run.elapsed < limit, `runClient took ${run.elapsed.toFixed(0)} ms (limit ${limit})`);
  assert.ok(
    run.log.errors.some((line) => reason.test(line)),
    `no error line matches ${reason}: ${JSON.stringify(run.log.errors)}`,
  );
}

Deno.test("client refuses hostile hellos before sending its key", async (t) => {
  const toyB = (b: bigint) => derivePublicKey(GROUPS.toy, b).toString();
  const cases: [name: string, line: string, reason: RegExp, options?: ClientOptions][] = [
    ["g = 1 (secure client)", helloWith({ g: "1" }), /differ from RFC 7919/],
    ["g = 1 (toy client)", helloWith({ g: "1" }), /unusable.*generator/, { toy: true }],
    ["g = p - 1 (toy client)", helloWith({ g: (P - 1n).toString() }), /unusable/, { toy: true }],
    ["p = 23 under the name ffdhe2048", helloWith({ p: "23", g: "5", publicKey: "8" }), /differ/],
    ["p = p - 2 under the name ffdhe2048", helloWith({ p: (P - 2n).toString() }), /differ/],
    [
      "custom group",
      helloWith({ group: "custom", p: "2147483647", g: "7", publicKey: "5" }),
      /custom parameters/,
    ],
    [
      "custom group carrying the exact ffdhe2048 numbers",
      helloWith({ group: "custom" }),
      /custom parameters/,
    ],
    ["toy group", helloWith({ group: "toy", p: "23", g: "5", publicKey: toyB(3n) }), /toy/],
    ["xor8 cipher", helloWith({ cipher: TOY_CIPHER }), /xor8/],
    ["unknown cipher", helloWith({ cipher: "aes-128-ecb" }), /unknown cipher/],
    ["unknown group", helloWith({ group: "ffdhe1024" }), /unknown group/],
    ['protocol "dhx/9"', helloWith({ protocol: "dhx/9" }), /protocol/],
    ['protocol "dhx/9" (toy client)', helloWith({ protocol: "dhx/9" }), /protocol/, { toy: true }],
    ["protocol missing", helloWith({ protocol: undefined }), /protocol/],
    ["server public key 0", helloWith({ publicKey: "0" }), /invalid public key/],
    ["server public key 1", helloWith({ publicKey: "1" }), /invalid public key/],
    ["server public key p - 1", helloWith({ publicKey: (P - 1n).toString() }), /invalid public/],
    ["server public key p", helloWith({ publicKey: P.toString() }), /invalid public key/],
    [
      "server public key p - 1 in the toy group (toy client)",
      helloWith({ group: "toy", p: "23", g: "5", publicKey: "22" }),
      /invalid public key/,
      { toy: true },
    ],
    ["server public key as a JSON number", helloWith({ publicKey: 12345 }), /publicKey/],
    ['server public key "0x10"', helloWith({ publicKey: "0x10" }), /publicKey/],
    ["p of 100,000 digits", helloWith({ p: "9".repeat(100_000) }), /digits/],
    ["garbage instead of hello", "HTTP/1.1 400 Bad Request", /not a JSON frame/],
    ["a JSON array instead of hello", `["hello"]`, /JSON object/],
    ["a key frame instead of hello", `{"type":"key","publicKey":"${FAKE_SERVER_KEY}"}`, /hello/],
    ["an ack record instead of hello", `{"type":"ack","seq":0,"data":"","tag":""}`, /hello/],
  ];
  for (const [name, line, reason, options] of cases) {
    await t.step(name, async () => {
      const run = await againstFakeServer((server) => server.writeLine(line), options);
      assertFailed(run, reason, 1500);
      const frames = run.received.map(tryParse);
      assert.ok(!frames.some((f) => f?.type === "key"), "a key frame reached the fake server");
      assert.ok(
        frames.some((f) => f?.type === "error"),
        `the client sent no error frame: ${JSON.stringify(run.received)}`,
      );
    });
  }

  await t.step("an error frame with terminal escapes instead of hello", async () => {
    const run = await againstFakeServer((server) =>
      server.writeLine(JSON.stringify({ type: "error", message: "\x1b[2J\x1b]0;owned\x07full" }))
    );
    assertFailed(run, /peer reported an error: .*full/, 1500);
    assert.ok(!run.log.errors.some(hasControlCharacter), "escapes neutralised");
    assert.ok(!run.received.map(tryParse).some((f) => f?.type === "key"));
  });

  await t.step("a hello longer than the client's maxLine, without LF", async () => {
    const run = await againstFakeServer(async (server) => {
      await server.write(helloWith({ padding: "x".repeat(20_000) }));
    }, { maxLine: 4096 });
    assertFailed(run, /line longer than 4096 bytes/, 1500);
    assert.ok(!run.received.map(tryParse).some((f) => f?.type === "key"));
  });

  await t.step("the server closes before hello", async () => {
    const run = await againstFakeServer((server) => {
      server.close();
      return Promise.resolve();
    });
    assertFailed(run, /closed the connection before hello/, 1500);
  });

  await t.step("silence: no hello within timeoutMs 300", async () => {
    const run = await againstFakeServer(() => Promise.resolve(), { timeoutMs: 300 });
    assertFailed(run, /no hello from the server within 0.3 s/, 1000);
    assert.ok(run.elapsed >= 280, `gave up after only ${run.elapsed.toFixed(0)} ms`);
    assert.ok(!run.received.map(tryParse).some((f) => f?.type === "key"));
  });
});

/** A fake server that does the real handshake; `then` plays the session. */
function secureFake(
  then: (server: RawPeer, session: Session) => Promise<void>,
): (server: RawPeer) => Promise<void> {
  return async (server) => await then(server, await serveHandshake(server));
}

async function readMsg(server: RawPeer, session: Session, text: string): Promise<void> {
  const line = await server.readLine();
  assert.ok(line !== null, "the client sent no msg");
  const frame = await session.open(line);
  assert.equal(frame.type, "msg");
  if (frame.type === "msg") assert.equal(frame.text, text);
}

Deno.test("client rejects hostile sessions", async (t) => {
  await t.step("control: an honest fake server gets exit 0", async () => {
    const run = await againstFakeServer(secureFake(async (server, session) => {
      await readMsg(server, session, "first line");
      await readMsg(server, session, "second line");
      await server.writeLine(await session.seal("ack", "0"));
      await server.writeLine(await session.seal("ack", "1"));
      const bye = await session.open((await server.readLine())!);
      assert.equal(bye.type, "bye");
    }));
    assert.equal(run.code, 0, JSON.stringify(run.log.errors));
    assert.deepEqual(run.log.errors, []);
  });

  await t.step("a tampered ack (tag bit flipped)", async () => {
    const run = await againstFakeServer(secureFake(async (server, session) => {
      await readMsg(server, session, "first line");
      const ack = parseObject(await session.seal("ack", "0"));
      ack.tag = flipBit(ack.tag as string, 12, 4);
      await server.writeLine(JSON.stringify(ack));
    }));
    assertFailed(run, /authentication failed/, 2000);
    assert.ok(run.received.map(tryParse).some((f) => f?.type === "error"), "no error frame sent");
  });

  await t.step("a tampered ack (ciphertext bit flipped)", async () => {
    const run = await againstFakeServer(secureFake(async (server, session) => {
      await readMsg(server, session, "first line");
      const ack = parseObject(await session.seal("ack", "0"));
      ack.data = flipBit(ack.data as string, 0);
      await server.writeLine(JSON.stringify(ack));
    }));
    assertFailed(run, /authentication failed/, 2000);
  });

  await t.step("reordered acks (seq 1 on the wire before seq 0)", async () => {
    const run = await againstFakeServer(secureFake(async (server, session) => {
      await readMsg(server, session, "first line");
      await readMsg(server, session, "second line");
      const ack0 = await session.seal("ack", "0");
      const ack1 = await session.seal("ack", "1");
      await server.writeLine(ack1);
      await server.writeLine(ack0);
    }));
    assertFailed(run, /wrong sequence number 1, expected 0/, 2000);
    assert.ok(run.log.errors.some((line) => /not acknowledged/.test(line)));
  });

  await t.step("acks for the wrong messages (validly sealed, 1 before 0)", async () => {
    const run = await againstFakeServer(secureFake(async (server, session) => {
      await readMsg(server, session, "first line");
      await readMsg(server, session, "second line");
      await server.writeLine(await session.seal("ack", "1"));
      await server.writeLine(await session.seal("ack", "0"));
    }));
    assertFailed(run, /acknowledged message 1, expected 0/, 2000);
  });

  await t.step("a replayed ack", async () => {
    const run = await againstFakeServer(secureFake(async (server, session) => {
      await readMsg(server, session, "first line");
      await readMsg(server, session, "second line");
      const ack0 = await session.seal("ack", "0");
      await server.writeLine(ack0);
      await server.writeLine(ack0);
    }));
    assertFailed(run, /wrong sequence number 0, expected 1/, 2000);
  });

  await t.step("an ack for a message never sent", async () => {
    // Input that stays open after one line, so the session is alive when the
    // extra ack arrives (no race with the client's bye).
    const input = typedInput();
    input.type("first line");
    const run = await againstFakeServer(
      secureFake(async (server, session) => {
        await readMsg(server, session, "first line");
        await server.writeLine(await session.seal("ack", "0"));
        await server.writeLine(await session.seal("ack", "1"));
      }),
      {},
      input.stream,
    );
    assertFailed(run, /acknowledged message 1, which was never sent/, 2000);
  });

  await t.step("the server reflects the client's own records back", async () => {
    const run = await againstFakeServer(async (server) => {
      const offer = createOffer(FFDHE2048, SECURE_CIPHER);
      await server.writeLine(offer.line);
      await server.readLine(); // key
      const msg = await server.readLine();
      assert.ok(msg !== null);
      await server.writeLine(msg);
      await server.writeLine(msg.replace('"type":"msg"', '"type":"ack"'));
    });
    assertFailed(run, /authentication failed/, 2000);
  });

  await t.step("the server sends an error frame mid-session", async () => {
    const run = await againstFakeServer(secureFake(async (server, session) => {
      await readMsg(server, session, "first line");
      await server.writeLine(JSON.stringify({ type: "error", message: "gone \x1b[31mred" }));
      server.close();
    }));
    assertFailed(run, /peer reported an error: gone/, 2000);
    assert.ok(!run.log.errors.some(hasControlCharacter), "escapes neutralised");
  });

  await t.step("the server closes the socket mid-session", async () => {
    const run = await againstFakeServer(secureFake(async (server, session) => {
      await readMsg(server, session, "first line");
      server.close();
    }));
    assertFailed(run, /server closed the connection/, 2000);
    assert.ok(run.log.errors.some((line) => /not acknowledged/.test(line)));
  });

  await t.step("the server says bye with messages unacknowledged", async () => {
    const run = await againstFakeServer(secureFake(async (server, session) => {
      await readMsg(server, session, "first line");
      await server.writeLine(await session.seal("bye", ""));
      server.close();
    }));
    assertFailed(run, /not acknowledged/, 2000);
  });

  await t.step("the server goes silent after the handshake (timeoutMs 300)", async () => {
    const run = await againstFakeServer(
      secureFake(async (server, session) => {
        await readMsg(server, session, "first line");
      }),
      { timeoutMs: 300 },
    );
    assertFailed(run, /not acknowledged/, 1500);
  });

  await t.step("the server sends half a record, then closes", async () => {
    const run = await againstFakeServer(secureFake(async (server, session) => {
      await readMsg(server, session, "first line");
      const ack = await session.seal("ack", "0");
      await server.write(ack.slice(0, 30));
      server.close();
    }));
    assertFailed(run, /middle of a line|closed/, 2000);
  });
});

// ═══════════════════════════════════════════════════════════════════════════
// Fuzz: seeded mutations of valid frames against one live server
// ═══════════════════════════════════════════════════════════════════════════

type Rng = () => number;

/** mulberry32: a tiny seeded PRNG, so a failing mutation can be replayed. */
function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const int = (r: Rng, n: number) => Math.floor(r() * n);
const pick = <T>(r: Rng, items: readonly T[]): T => items[int(r, items.length)];

/** A JSON object as [key, raw JSON value text] pairs, so keys and literals survive as written. */
type Entry = [key: string, value: string];

function toEntries(line: string): Entry[] {
  return Object.entries(parseObject(line)).map(([k, v]) => [k, JSON.stringify(v)]);
}

function fromEntries(entries: Entry[], ws: () => string = () => ""): string {
  const fields = entries.map(([k, v]) => `${JSON.stringify(k)}${ws()}:${ws()}${v}`);
  return `{${ws()}${fields.join(`${ws()},${ws()}`)}${ws()}}`;
}

/** The line with the raw JSON text of field `key` replaced by `edit(raw)`. */
function editField(line: string, key: string, edit: (raw: string) => string): string {
  const entries = toEntries(line);
  const entry = entries.find(([k]) => k === key)!;
  entry[1] = edit(entry[1]);
  return fromEntries(entries);
}

const JSON_LITERALS = [
  "null",
  "true",
  "false",
  "0",
  "-1",
  "1.5",
  "1e308",
  "-0",
  `""`,
  `"0"`,
  `"msg"`,
  "[]",
  "{}",
  "[0]",
  `{"a":1}`,
  "9007199254740993",
  `"AAAA"`,
  `"="`,
];
const FIELD_NAMES = [
  "Type",
  "typ",
  "seq ",
  "SEQ",
  "dat",
  "Data",
  "tag2",
  "",
  "type\u0000",
  "__proto__",
  "constructor",
  "publickey",
];
const TYPE_NAMES = ["ack", "bye", "key", "error", "hello", "MSG", "msg ", "", " msg", "msg\u0000"];
const BASE64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

type Mutator = (line: string, r: Rng) => string | Uint8Array;

function spliceBytes(bytes: Uint8Array, at: number, remove: number, insert: number[]): Uint8Array {
  const out = new Uint8Array(bytes.length - remove + insert.length);
  out.set(bytes.subarray(0, at));
  out.set(insert, at);
  out.set(bytes.subarray(at + remove), at + insert.length);
  return out;
}

/** `text` as a JSON string literal with one character written as a \uXXXX escape. */
function escapeOneChar(text: string, r: Rng): string {
  if (text.length === 0) return `""`;
  const at = int(r, text.length);
  const hex = text.charCodeAt(at).toString(16).padStart(4, "0");
  return `${JSON.stringify(text.slice(0, at)).slice(0, -1)}\\u${hex}${
    JSON.stringify(text.slice(at + 1)).slice(1)
  }`;
}

const BYTE_MUTATORS: Record<string, Mutator> = {
  bitflip: (line, r) => {
    const bytes = encoder.encode(line);
    for (let i = 0, n = 1 + int(r, 3); i < n; i++) bytes[int(r, bytes.length)] ^= 1 << int(r, 8);
    return bytes;
  },
  truncate: (line, r) => encoder.encode(line).subarray(0, int(r, line.length)),
  insertByte: (line, r) => {
    const bytes = encoder.encode(line);
    return spliceBytes(bytes, int(r, bytes.length + 1), 0, [int(r, 256)]);
  },
  deleteByte: (line, r) => {
    const bytes = encoder.encode(line);
    return spliceBytes(bytes, int(r, bytes.length), 1, []);
  },
  duplicateLine: (line) => `${line}\n${line}`,
  insertLf: (line, r) => {
    const at = int(r, line.length + 1);
    return `${line.slice(0, at)}\n${line.slice(at)}`;
  },
  trailingCr: (line) => `${line}\r`,
};

const STRUCTURE_MUTATORS: Record<string, Mutator> = {
  swapValues: (line, r) => {
    const entries = toEntries(line);
    const i = int(r, entries.length);
    let j = int(r, entries.length - 1);
    if (j >= i) j++;
    [entries[i][1], entries[j][1]] = [entries[j][1], entries[i][1]];
    return fromEntries(entries);
  },
  renameField: (line, r) => {
    const entries = toEntries(line);
    entries[int(r, entries.length)][0] = pick(r, FIELD_NAMES);
    return fromEntries(entries);
  },
  retypeValue: (line, r) => {
    const entries = toEntries(line);
    entries[int(r, entries.length)][1] = pick(r, JSON_LITERALS);
    return fromEntries(entries);
  },
  removeField: (line, r) => {
    const entries = toEntries(line);
    entries.splice(int(r, entries.length), 1);
    return fromEntries(entries);
  },
  addField: (line, r) => {
    const entries = toEntries(line);
    entries.splice(int(r, entries.length + 1), 0, [
      pick(r, ["x", "extra", "Type", "tags"]),
      pick(r, JSON_LITERALS),
    ]);
    return fromEntries(entries);
  },
  duplicateKey: (line, r) => {
    const entries = toEntries(line);
    const [key, value] = entries[int(r, entries.length)];
    entries.splice(int(r, entries.length + 1), 0, [
      key,
      r() < 0.5 ? value : pick(r, JSON_LITERALS),
    ]);
    return fromEntries(entries);
  },
  shuffle: (line, r) => {
    const entries = toEntries(line);
    for (let i = entries.length - 1; i > 0; i--) {
      const j = int(r, i + 1);
      [entries[i], entries[j]] = [entries[j], entries[i]];
    }
    return fromEntries(entries);
  },
  whitespace: (line, r) =>
    fromEntries(toEntries(line), () => pick(r, ["", " ", "\t", "\r", " \t "])),
  unicodeEscape: (line, r) => {
    const entries = toEntries(line);
    const strings = entries.filter(([, v]) => v.startsWith('"'));
    const entry = pick(r, strings);
    entry[1] = escapeOneChar(JSON.parse(entry[1]), r);
    return fromEntries(entries);
  },
  setType: (line, r) => editField(line, "type", () => JSON.stringify(pick(r, TYPE_NAMES))),
};

const RECORD_MUTATORS: Record<string, Mutator> = {
  ...BYTE_MUTATORS,
  ...STRUCTURE_MUTATORS,
  seq: (line, r) =>
    editField(line, "seq", (raw) => {
      const seq = Number(raw);
      return pick(r, [
        `${seq + 1}`,
        `${seq - 1}`,
        `${seq}.0`,
        `${seq}e0`,
        `${seq}.000000000000000001`,
        `${seq + 2 ** 32}`,
        `${seq + 2 ** 53}`,
        `"${seq}"`,
        "1e400",
        "-0",
      ]);
    }),
  base64: (line, r) => {
    const field = r() < 0.5 ? "data" : "tag";
    return editField(line, field, (raw) => {
      const text: string = JSON.parse(raw);
      const at = int(r, text.length);
      const edits = [
        () => text.slice(0, -1),
        () => text + "=",
        () => text.replaceAll("=", ""),
        () => text.slice(0, at) + pick(r, [...BASE64_CHARS]) + text.slice(at + 1),
        () => text.slice(0, at) + " " + text.slice(at),
        () => "AAAA" + text,
        () => text + "AAAA",
        () => text.slice(0, at) + text[at]?.toLowerCase() + text.slice(at + 1),
        () => text.replaceAll("+", "-").replaceAll("/", "_"),
      ];
      return JSON.stringify(pick(r, edits)());
    });
  },
};

const KEY_MUTATORS: Record<string, Mutator> = {
  ...BYTE_MUTATORS,
  ...STRUCTURE_MUTATORS,
  publicKey: (line, r) =>
    editField(line, "publicKey", (raw) => {
      const y: string = JSON.parse(raw);
      const at = int(r, y.length);
      const randomDigits = () =>
        Array.from({ length: 1 + int(r, 700) }, () => String(int(r, 10))).join("");
      const edits = [
        () => JSON.stringify(pick(r, ["0", "1", "2", (P - 2n).toString()])),
        () => JSON.stringify((P - 1n).toString()),
        () => JSON.stringify(P.toString()),
        () => JSON.stringify((P + 1n).toString()),
        () => JSON.stringify("0" + y),
        () => JSON.stringify(y.slice(0, at) + String(int(r, 10)) + y.slice(at + 1)),
        () => JSON.stringify(y + "0"),
        () => JSON.stringify(y.slice(1)),
        () => JSON.stringify(pick(r, ["-", "+", " ", "0x"]) + y),
        () => JSON.stringify(y + pick(r, [".0", " ", "e0", "n"])),
        () => y, // a bare JSON number
        () => JSON.stringify(randomDigits()),
        () => `"${escapeOneChar(y, r).slice(1, -1)}"`,
      ];
      return pick(r, edits)();
    }),
};

/** Two mutations in a row (structure first: it needs a parsable line). */
function chained(table: Record<string, Mutator>): Mutator {
  const structural = Object.keys(table).filter((name) => !(name in BYTE_MUTATORS));
  const bytewise = Object.keys(BYTE_MUTATORS);
  return (line, r) => {
    const first = table[pick(r, structural)](line, r);
    const text = typeof first === "string" ? first : decoder.decode(first);
    return BYTE_MUTATORS[pick(r, bytewise)](text, r);
  };
}
RECORD_MUTATORS.chain = chained(RECORD_MUTATORS);
KEY_MUTATORS.chain = chained(KEY_MUTATORS);

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** The lines the server will see for `bytes` + LF (one CR before each LF dropped). */
function splitLines(bytes: Uint8Array): (string | undefined)[] {
  const lines: (string | undefined)[] = [];
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === LF) {
      let line = bytes.subarray(start, i);
      if (line.at(-1) === 0x0d) line = line.subarray(0, -1);
      try {
        lines.push(strictUtf8.decode(line));
      } catch {
        lines.push(undefined); // invalid UTF-8: a protocol error
      }
      start = i + 1;
    }
  }
  return lines;
}

type RecordOutcome = { acks: number; end: "open" | "error" | "silent" };

/**
 * The oracle for a mutated record: the server acks a line iff it parses to
 * the very same type, seq, data and tag (JSON semantics: key order, spaces,
 * escapes and extra fields do not matter); an `error`-typed object closes
 * without a reply; anything else earns an error frame.
 */
function predictRecord(original: Frame, bytes: Uint8Array): RecordOutcome {
  const lines = splitLines(bytes);
  let acks = 0;
  for (const [i, text] of lines.entries()) {
    const value = tryParse(text);
    if (value?.type === "error") return { acks, end: "silent" };
    const same = value !== undefined && value.type === original.type &&
      value.seq === original.seq && value.data === original.data && value.tag === original.tag;
    if (i === 0 && same) {
      acks++;
      continue;
    }
    return { acks, end: "error" };
  }
  return { acks, end: "open" };
}

function validKeyFrame(value: Frame | undefined): boolean {
  if (value?.type !== "key" || typeof value.publicKey !== "string") return false;
  const y = value.publicKey;
  if (!/^[0-9]+$/.test(y) || y.length > P_DIGITS) return false;
  return BigInt(y) > 1n && BigInt(y) < P - 1n;
}

/**
 * The oracle for a mutated key line: "ack" when the server sees our exact key
 * line; "auth" when it accepts a different valid key line (the transcript
 * differs, so our next record must fail authentication); "key-error" when it
 * must refuse the key itself; "error" when a later line is refused;
 * "silent" for an `error`-typed frame.
 */
function predictKey(
  keyLine: string,
  bytes: Uint8Array,
): "ack" | "auth" | "key-error" | "error" | "silent" {
  const lines = splitLines(bytes);
  const first = tryParse(lines[0]);
  if (first?.type === "error") return "silent";
  const same = lines[0] === keyLine;
  if (!same && !validKeyFrame(first)) return "key-error";
  if (lines.length > 1) return tryParse(lines[1])?.type === "error" ? "silent" : "error";
  return same ? "ack" : "auth";
}

function withLf(mutated: string | Uint8Array): Uint8Array {
  const bytes = typeof mutated === "string" ? encoder.encode(mutated) : mutated;
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  out[bytes.length] = LF;
  return out;
}

interface FuzzResult {
  readonly peer: string;
  readonly mutator: string;
  readonly outcome: string;
  readonly errorLogged: boolean;
}

/** A 64-bit private key keeps the test's side of each handshake cheap. */
const FUZZ_PRIVATE_KEY = 0x5eed_f00d_1234_5678n;

async function fuzzRecord(port: number, index: number, seed: number): Promise<FuzzResult> {
  const r = mulberry32(seed);
  const s = await rawHandshake(port, FUZZ_PRIVATE_KEY);
  let detail = "";
  try {
    const warmup = int(r, 3);
    for (let i = 0; i < warmup; i++) await sendAndExpectAck(s, `fuzz ${index} warmup ${i}`);
    const original = await s.session.seal("msg", `fuzz ${index} ✓ ${"é".repeat(int(r, 20))}`);
    const mutator = pick(r, Object.keys(RECORD_MUTATORS));
    detail = `${mutator} of ${original}`;
    const bytes = withLf(RECORD_MUTATORS[mutator](original, r));
    const expected = predictRecord(parseObject(original), bytes.subarray(0, -1));
    detail = `${mutator}: ${JSON.stringify(new TextDecoder().decode(bytes))} → ${
      JSON.stringify(expected)
    }`;
    await s.raw.write(bytes);
    for (let i = 0; i < expected.acks; i++) await expectAck(s, warmup);
    if (expected.end === "open") {
      await s.raw.writeLine(await s.session.seal("bye", ""));
      assert.deepEqual(await s.raw.readToEof(), [], "nothing after bye");
    } else {
      const rest = await s.raw.readToEof();
      if (expected.end === "silent") assert.deepEqual(rest, [], "no reply to an error frame");
      else {
        assert.equal(rest.length, 1, `one error frame, got ${JSON.stringify(rest)}`);
        assert.equal(parseObject(rest[0]).type, "error");
      }
    }
    const outcome = `${expected.acks ? "ack+" : ""}${expected.end}`;
    return { peer: s.raw.peer, mutator, outcome, errorLogged: expected.end !== "open" };
  } catch (error) {
    throw new Error(`record job ${index} (seed ${seed}) ${detail}: ${(error as Error).message}`);
  } finally {
    s.raw.close();
  }
}

async function fuzzKey(port: number, index: number, seed: number): Promise<FuzzResult> {
  const r = mulberry32(seed);
  const raw = await RawPeer.connect(port);
  let detail = "";
  try {
    const helloLine = await raw.readLine();
    assert.ok(helloLine !== null);
    const hello = parseHello(helloLine, { insecure: false });
    const { keyLine, session } = await respondToHello(hello, FUZZ_PRIVATE_KEY);
    const mutator = pick(r, Object.keys(KEY_MUTATORS));
    detail = `${mutator} of ${keyLine}`;
    const bytes = withLf(KEY_MUTATORS[mutator](keyLine, r));
    const expected = predictKey(keyLine, bytes.subarray(0, -1));
    detail = `${mutator}: ${
      JSON.stringify(new TextDecoder().decode(bytes)).slice(0, 300)
    } → ${expected}`;
    await raw.write(bytes);
    if (expected === "ack" || expected === "auth") {
      await raw.writeLine(await session.seal("msg", "after the key"));
    }
    if (expected === "ack") {
      await expectAck({ raw, session, hello, keyLine }, 0);
      await raw.writeLine(await session.seal("bye", ""));
      assert.deepEqual(await raw.readToEof(), []);
    } else {
      const rest = await raw.readToEof();
      if (expected === "silent") assert.deepEqual(rest, []);
      else {
        assert.equal(rest.length, 1, `one error frame, got ${JSON.stringify(rest)}`);
        const frame = parseObject(rest[0]);
        assert.equal(frame.type, "error");
        if (expected === "auth") assert.match(String(frame.message), /authentication failed/);
        if (expected === "key-error") {
          assert.doesNotMatch(String(frame.message), /authentication/, "refused at the key");
        }
      }
    }
    return { peer: raw.peer, mutator, outcome: expected, errorLogged: expected !== "ack" };
  } catch (error) {
    throw new Error(`key job ${index} (seed ${seed}) ${detail}: ${(error as Error).message}`);
  } finally {
    raw.close();
  }
}

Deno.test("fuzz: 2,200 seeded mutations of key frames and records", async () => {
  const SEED = 0x0d4a_2024;
  const RECORD_JOBS = 1200;
  const KEY_JOBS = 1000;
  const WORKERS = 8;
  console.log(`  fuzz seed ${SEED} (0x${SEED.toString(16)})`);
  const server = startTestServer({ group: FFDHE2048, maxClients: 64 });
  const started = performance.now();
  try {
    // A good client chatting for the whole run, one line every 20 ms.
    let fuzzing = true;
    const alongside: string[] = [];
    const goodLog = new CapturingLogger();
    const good = runClient({
      port: server.port,
      input: new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (!fuzzing) return controller.close();
          await sleep(20);
          const line = `alongside the fuzzer ${alongside.length}`;
          alongside.push(line);
          controller.enqueue(encoder.encode(line + "\n"));
        },
      }),
      interactive: false,
      logger: goodLog,
      timeoutMs: 10_000,
    });

    const rng = mulberry32(SEED);
    const jobs = Array.from({ length: RECORD_JOBS + KEY_JOBS }, (_, index) => ({
      index,
      seed: Math.floor(rng() * 2 ** 32),
      kind: index < RECORD_JOBS ? "record" : "key",
    }));
    const results: FuzzResult[] = [];
    let next = 0;
    await within(
      Promise.all(Array.from({ length: WORKERS }, async () => {
        while (next < jobs.length) {
          const job = jobs[next++];
          const run = job.kind === "record" ? fuzzRecord : fuzzKey;
          results.push(
            await within(run(server.port, job.index, job.seed), 10_000, `job ${job.index}`),
          );
        }
      })),
      60_000,
      "fuzz jobs",
    );
    fuzzing = false;
    const code = await within(good, 15_000, "the good client alongside the fuzzer");
    assert.equal(code, 0, `good client: ${goodLog.errors.join(" | ")}`);
    const goodMessages = server.messages.filter((m) => m.text.startsWith("alongside the fuzzer"));
    assert.deepEqual(goodMessages.map((m) => m.text), alongside);
    assert.deepEqual(goodMessages.map((m) => m.seq), alongside.map((_, i) => i));
    assert.ok(alongside.length > 10, `only ${alongside.length} lines alongside`);

    await until(() => server.handle.connections === 0, 5000, "every fuzz connection dropped");
    assert.equal(server.acceptLoopEnded, false);
    // One error line per offending connection, none for the others.
    const expectedPerPeer = new Map<string, number>();
    for (const result of results) {
      const n = expectedPerPeer.get(result.peer) ?? 0;
      expectedPerPeer.set(result.peer, n + (result.errorLogged ? 1 : 0));
    }
    const loggedPerPeer = new Map<string, number>();
    for (const line of server.log.errors) {
      const peer = /^127\.0\.0\.1:[0-9]+/.exec(line)?.[0] ?? "?";
      loggedPerPeer.set(peer, (loggedPerPeer.get(peer) ?? 0) + 1);
    }
    for (const [peer, n] of expectedPerPeer) {
      assert.equal(loggedPerPeer.get(peer) ?? 0, n, `error lines for ${peer}`);
    }
    assert.equal(
      server.log.errors.length,
      results.filter((result) => result.errorLogged).length,
    );
    const fuzzTime = performance.now() - started;
    await assertGoodClient(server);

    const histogram = (key: (r: FuzzResult) => string) =>
      Object.entries(Object.groupBy(results, key)).map(([k, v]) => `${k} ${v!.length}`).join(
        ", ",
      );
    console.log(`  ${results.length} mutations in ${fuzzTime.toFixed(0)} ms`);
    console.log(`  outcomes: ${histogram((r) => r.outcome)}`);
    console.log(`  mutators: ${histogram((r) => r.mutator)}`);
    console.log(`  ${alongside.length} lines from the good client alongside, all acknowledged`);
    assert.equal(results.length, RECORD_JOBS + KEY_JOBS);
  } finally {
    await server.stop();
  }
});

// ═══════════════════════════════════════════════════════════════════════════
// Soak: 500 concurrent clients × 50 messages through one server
// ═══════════════════════════════════════════════════════════════════════════

Deno.test("soak: 500 concurrent clients × 50 messages, none lost, all in order", async () => {
  const CLIENTS = 500;
  const MESSAGES = 50;
  const serverErrors: string[] = [];
  let sessions = 0;
  let allSessionsAt = 0;
  const started = performance.now();
  const serverLog: Logger = {
    info: () => {},
    success: (message) => {
      if (message.startsWith("Session with ") && ++sessions === CLIENTS) {
        allSessionsAt = performance.now() - started;
      }
    },
    notice: () => {},
    error: (message) => serverErrors.push(message),
  };
  let delivered = 0;
  const nextSeqByPeer = new Map<string, number>();
  const nextLineByClient = new Map<number, number>();
  const disorder: string[] = [];
  const handle = startServer({
    port: 0,
    group: FFDHE2048,
    maxClients: CLIENTS + 100,
    handshakeTimeoutMs: 60_000,
    logger: serverLog,
    onMessage: ({ peer, seq, text }) => {
      delivered++;
      const expectedSeq = nextSeqByPeer.get(peer) ?? 0;
      const [, client, line] = /^soak c(\d+) m(\d+)$/.exec(text) ?? [];
      const expectedLine = nextLineByClient.get(Number(client)) ?? 0;
      if (seq !== expectedSeq || Number(line) !== expectedLine || seq !== expectedLine) {
        disorder.push(`${peer} seq ${seq} (expected ${expectedSeq}): ${text}`);
      }
      nextSeqByPeer.set(peer, seq + 1);
      nextLineByClient.set(Number(client), Number(line) + 1);
    },
  });
  const clientErrors: string[] = [];
  const clientLog: Logger = {
    info: () => {},
    success: () => {},
    notice: () => {},
    error: (message) => clientErrors.push(message),
  };
  try {
    const codes = await within(
      Promise.all(Array.from({ length: CLIENTS }, (_, c) =>
        runClient({
          port: handle.addr.port,
          input: linesStream(Array.from({ length: MESSAGES }, (_, m) => `soak c${c} m${m}`)),
          interactive: false,
          logger: clientLog,
          timeoutMs: 60_000,
        }))),
      120_000,
      "500 clients to finish",
    );
    const elapsed = performance.now() - started;
    console.log(
      `  ${CLIENTS} clients × ${MESSAGES} messages: all handshakes done after ` +
        `${allSessionsAt.toFixed(0)} ms, all acknowledged after ${elapsed.toFixed(0)} ms ` +
        `(${(delivered / (elapsed / 1000)).toFixed(0)} msg/s)`,
    );
    assert.deepEqual(clientErrors.slice(0, 5), [], `${clientErrors.length} client errors`);
    assert.deepEqual(serverErrors.slice(0, 5), [], `${serverErrors.length} server errors`);
    assert.equal(codes.filter((code) => code !== 0).length, 0, "clients that did not exit 0");
    assert.equal(delivered, CLIENTS * MESSAGES, "messages delivered");
    assert.deepEqual(disorder.slice(0, 5), [], `${disorder.length} out of order`);
    assert.equal(nextSeqByPeer.size, CLIENTS);
    assert.ok([...nextSeqByPeer.values()].every((n) => n === MESSAGES));
    assert.ok([...nextLineByClient.values()].every((n) => n === MESSAGES));
    await until(() => handle.connections === 0, 10_000, "every soak connection closed");
  } finally {
    await within(handle.close(), 10_000, "server close");
  }
});
