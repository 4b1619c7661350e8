/**
 * Helpers shared by the test files: which permissions the run has, time
 * bounds, the known-answer constants, an independent detector of characters
 * unsafe at a terminal, capturing loggers (messages as given, or as printed),
 * client input streams, JSON frame editing, a seeded random generator, an
 * independent record sealer, raw clients and fake servers, child processes,
 * and the one server fixture.
 *
 * Not a test file itself (`deno test` does not pick it up).
 *
 * @module
 */

import assert from "node:assert/strict";
import { createCipheriv, createHmac } from "node:crypto";
import { createLogger, type Logger, type LoggerOptions, type Stream } from "../console.ts";
import {
  derivePublicKey,
  GROUPS,
  type Hello,
  KEY_SCHEDULE_LAYOUT,
  parseHello,
  respondToHello,
  type Role,
  SECURE_CIPHER,
  type Session,
} from "../dh.ts";
import { type ClientOptions, runClient } from "../client.ts";
import {
  type ReceivedMessage,
  type ServerHandle,
  type ServerOptions,
  startServer,
} from "../server.ts";
import { type Connection, LineConnection, memoryPipe, serverHandshake } from "../transport.ts";

/** Where every test server and fake server listens. */
export const HOST = "127.0.0.1";

/** A second loopback address, to play a different client machine. */
export const OTHER_HOST = "127.0.0.2";

/** The toy session's fingerprint (tests/dhx1-vectors.json, group toy). */
export const TOY_FINGERPRINT = "90B9-A4D2-25F0-BE47";

/** A decimal number long enough to be a secret of a real group: never printed unasked. */
export const LONG_NUMBER = /\d{30,}/;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const LF = 0x0a;

// ───────────────────────────────────────────────────────────────────────────
// Permissions
// ───────────────────────────────────────────────────────────────────────────

function granted(descriptor: Deno.PermissionDescriptor): boolean {
  return Deno.permissions.querySync(descriptor).state === "granted";
}

/** What this run may do: plain `deno test` grants nothing, `deno test -P` the set in deno.json. */
export const CAN = Object.freeze({
  net: granted({ name: "net", host: HOST }),
  run: granted({ name: "run", command: "deno" }) && granted({ name: "run", command: "node" }),
  openssl: granted({ name: "run", command: "openssl" }),
  read: granted({ name: "read", path: "." }),
});

/**
 * For `Deno.test({ ignore })`: true (ignore) unless every permission named is
 * granted. Tests that need more than plain `deno test` gives are reported as
 * ignored, never as passed.
 */
export function lacks(...needs: (keyof typeof CAN)[]): boolean {
  return !needs.every((need) => CAN[need]);
}

// Every test file loads this module in an isolate of its own, so nothing here
// can tell a run's first file from the others: the banner is printed by the
// file a whole run starts with (dh_test.ts), once instead of once per file.
if ((!CAN.net || !CAN.run) && Deno.mainModule.endsWith("/dh_test.ts")) {
  console.log(
    "[*] Tests that need the network or subprocesses are ignored in this run; `deno test -P` runs them all.",
  );
}

// ───────────────────────────────────────────────────────────────────────────
// Optional tools (node, openssl)
// ───────────────────────────────────────────────────────────────────────────

/**
 * Whether a missing optional tool must fail its tests instead of having them
 * ignored: `DHX_REQUIRE_TOOLS=1`, which CI (.ci/run) sets, where the tools
 * are installed and must be used.
 */
export const REQUIRE_TOOLS: boolean = granted({ name: "env", variable: "DHX_REQUIRE_TOOLS" }) &&
  Deno.env.get("DHX_REQUIRE_TOOLS") === "1";

/** Whether an optional tool can serve the tests that need it. */
export interface ToolCheck {
  /** Report those tests as ignored: no permission to run it, or it is missing and not required. */
  readonly ignore: boolean;
  /** Why those tests must fail instead: missing under DHX_REQUIRE_TOOLS=1, or not what it claims. */
  readonly problem?: string;
  /** What was found ("Node v20.11.1, OpenSSL 3.0.13"; "OpenSSL 3.0.13 …"). */
  readonly version?: string;
}

/** A missing tool: one line saying so and the tests ignored, or a failure under DHX_REQUIRE_TOOLS=1. */
function missingTool(reason: string, tests: string): ToolCheck {
  if (REQUIRE_TOOLS) {
    return { ignore: false, problem: `${reason} (DHX_REQUIRE_TOOLS=1 requires it)` };
  }
  console.log(`[!] ${tests} IGNORED, not passed: ${reason}`);
  return { ignore: true };
}

/** Starts `command args` and collects its output; null if it is not installed. */
function runTool(command: string, args: string[]): Deno.CommandOutput | null {
  try {
    return new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).outputSync();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

const NODE_PROBE = "process.stdout.write(JSON.stringify({deno: typeof Deno, " +
  "node: process.version, openssl: process.versions.openssl ?? null}))";

/**
 * Whether `node` is Node.js with OpenSSL, for the tests named by `tests`.
 * Deno runs itself for `node` when Node.js is not installed: that counts as
 * missing (comparing Deno with Deno would prove nothing).
 */
export function checkNode(tests: string): ToolCheck {
  if (!CAN.run) return { ignore: true };
  const output = runTool("node", ["-e", NODE_PROBE]);
  if (output === null) return missingTool("Node.js (`node`) is not installed", tests);
  const stdout = new TextDecoder().decode(output.stdout);
  let info: { deno?: unknown; node?: unknown; openssl?: unknown } = {};
  try {
    info = JSON.parse(stdout);
  } catch {
    // judged below
  }
  if (output.success && info.deno !== "undefined") {
    return missingTool("Node.js is not installed (`node` runs Deno itself)", tests);
  }
  const problem = !output.success
    ? `node exited with ${output.code}: ${new TextDecoder().decode(output.stderr).trim()}`
    : typeof info.openssl !== "string" || !/^\d+\.\d+\.\d+/.test(info.openssl)
    ? `\`node\` reports no OpenSSL version (${JSON.stringify(info.openssl)}): ${stdout}`
    : undefined;
  if (problem) return { ignore: false, problem };
  return { ignore: false, version: `Node ${info.node}, OpenSSL ${info.openssl}` };
}

/** Whether the `openssl` command can be run, for the tests named by `tests`. */
export function checkOpenssl(tests: string): ToolCheck {
  if (!CAN.openssl) {
    // `deno test -P` grants `openssl` by name, which Deno cannot grant when
    // it finds no such binary: with the rest granted, it is missing.
    return CAN.net && CAN.read
      ? missingTool("openssl is not installed (not on PATH)", tests)
      : { ignore: true };
  }
  const output = runTool("openssl", ["version"]);
  if (output === null) return missingTool("openssl is not installed", tests);
  const version = new TextDecoder().decode(output.stdout).trim();
  return output.success
    ? { ignore: false, version }
    : { ignore: false, problem: `openssl version exited with ${output.code}` };
}

// ───────────────────────────────────────────────────────────────────────────
// Time bounds
// ───────────────────────────────────────────────────────────────────────────

/** What a wait is for; a function is called at timeout, to show the state then. */
export type Description = string | (() => string);

/** `promise`, or a rejection naming `what` after `ms`: nothing in a test may hang. */
export async function within<T>(promise: Promise<T>, ms: number, what: Description): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const text = typeof what === "string" ? what : what();
      reject(new Error(`timed out after ${ms} ms: ${text}`));
    }, ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Resolves once `ready()` holds, checking every 2 ms: for state that has no
 * event of its own (`server.connections`, the n-th occurrence of a log line).
 */
export async function eventually(
  ready: () => boolean,
  what: Description,
  ms = 5000,
): Promise<void> {
  const end = performance.now() + ms;
  while (!ready()) {
    if (performance.now() > end) {
      throw new Error(`timed out after ${ms} ms: ${typeof what === "string" ? what : what()}`);
    }
    await sleep(2);
  }
}

/** Calls the waiters whose condition became true; used by logs, sinks and processes. */
export class Waiters {
  #waiters: { ready: () => boolean; resolve: () => void }[] = [];

  /** Resolves once `ready()` holds, checked now and after each `notify`. */
  until(ready: () => boolean, ms: number, what: Description): Promise<void> {
    if (ready()) return Promise.resolve();
    const waiter = { ready, resolve: () => {} };
    const reached = new Promise<void>((resolve) => waiter.resolve = resolve);
    this.#waiters.push(waiter);
    return within(reached, ms, what).finally(() => {
      this.#waiters = this.#waiters.filter((w) => w !== waiter);
    });
  }

  /** Re-checks every waiter's condition (call after each change of state). */
  notify(): void {
    for (const waiter of this.#waiters) if (waiter.ready()) waiter.resolve();
  }
}

// ───────────────────────────────────────────────────────────────────────────
// Terminal safety, judged independently of console.ts
// ───────────────────────────────────────────────────────────────────────────

/**
 * The Unicode format characters (Cf), listed here rather than taken from
 * console.ts: soft hyphen, Arabic number signs, zero-width characters, the
 * bidi embeddings, overrides and isolates, invisible operators, BOM,
 * interlinear annotation, tag characters, … (console_test.ts checks the list
 * against `\p{Cf}`).
 */
export const FORMAT_CHARACTERS: readonly (readonly [number, number])[] = [
  [0xad, 0xad],
  [0x600, 0x605],
  [0x61c, 0x61c],
  [0x6dd, 0x6dd],
  [0x70f, 0x70f],
  [0x890, 0x891],
  [0x8e2, 0x8e2],
  [0x180e, 0x180e],
  [0x200b, 0x200f],
  [0x202a, 0x202e],
  [0x2060, 0x2064],
  [0x2066, 0x206f],
  [0xfeff, 0xfeff],
  [0xfff9, 0xfffb],
  [0x110bd, 0x110bd],
  [0x110cd, 0x110cd],
  [0x13430, 0x1343f],
  [0x1bca0, 0x1bca3],
  [0x1d173, 0x1d17a],
  [0xe0001, 0xe0001],
  [0xe0020, 0xe007f],
];

/**
 * Whether a code point must never reach a terminal raw: C0 controls, DEL, C1
 * controls (U+009B being the 8-bit CSI), the line and paragraph separators,
 * surrogates (only lone ones survive string iteration) and the format
 * characters.
 */
export function isUnsafeCodePoint(c: number): boolean {
  return c < 0x20 || c === 0x7f || (c >= 0x80 && c <= 0x9f) || c === 0x2028 || c === 0x2029 ||
    (c >= 0xd800 && c <= 0xdfff) || FORMAT_CHARACTERS.some(([lo, hi]) => c >= lo && c <= hi);
}

/** The unsafe characters in `text`, in order, as U+XXXX names (empty when it is safe to print). */
export function unsafeCharacters(text: string): string[] {
  const found: string[] = [];
  for (const char of text) {
    const c = char.codePointAt(0)!;
    if (isUnsafeCodePoint(c)) found.push(`U+${c.toString(16).toUpperCase().padStart(4, "0")}`);
  }
  return found;
}

// ───────────────────────────────────────────────────────────────────────────
// Capturing loggers and message sink
// ───────────────────────────────────────────────────────────────────────────

/** A session fingerprint as the server and client print it. */
export const FINGERPRINT = /fingerprint ([0-9A-F]{4}(?:-[0-9A-F]{4}){3})\b/;

/** The four {@link Logger} levels. */
export type Level = "info" | "success" | "notice" | "error";

/** One logged line: its level and message (without prefix). */
export interface LogEntry {
  readonly level: Level;
  readonly message: string;
}

const PREFIX: Record<Level, string> = { info: "[*]", success: "[+]", notice: "[*]", error: "[!]" };

/**
 * A {@link Logger} that records every line, by level and in order, and lets a
 * test await one. It records messages as given, before escaping: tests of
 * escaping use `createLogger` with a `write` of their own.
 */
export class CapturingLogger implements Logger {
  readonly quiet: boolean;
  /** Every line in order, with its level. */
  readonly entries: LogEntry[] = [];
  /** Every line in order as printed: `[*] message`, `[+] …`, `[!] …`. */
  readonly lines: string[] = [];
  readonly #waiters = new Waiters();

  /** @param quiet drop info and success lines, as `--quiet` does */
  constructor(quiet = false) {
    this.quiet = quiet;
  }

  info = (m: string) => this.quiet || this.#push("info", m);
  success = (m: string) => this.quiet || this.#push("success", m);
  line = (m: string) => this.#push("success", m);
  notice = (m: string) => this.#push("notice", m);
  error = (m: string) => this.#push("error", m);

  /** The messages of one level, in order. */
  of(level: Level): string[] {
    return this.entries.filter((e) => e.level === level).map((e) => e.message);
  }

  #push(level: Level, message: string): void {
    this.entries.push({ level, message });
    this.lines.push(`${PREFIX[level]} ${message}`);
    this.#waiters.notify();
  }

  /** The first line matching `match` (tested against the printed line), now or once logged. */
  async waitFor(match: RegExp, ms = 5000): Promise<string> {
    let found: string | undefined;
    await this.#waiters.until(
      () => (found = this.lines.find((line) => match.test(line))) !== undefined,
      ms,
      () => `log line ${match} (log so far:\n${this.dump()})`,
    );
    return found!;
  }

  /** The fingerprint printed in a success line. */
  fingerprint(): string | undefined {
    for (const line of this.of("success")) {
      const match = FINGERPRINT.exec(line);
      if (match) return match[1];
    }
    return undefined;
  }

  /** The whole log as printed, for assertion messages. */
  dump(): string {
    return this.lines.join("\n");
  }
}

/** One line as printed by console.ts's logger: after escaping, with its prefix. */
export interface PrintedLine {
  readonly stream: Stream;
  readonly text: string;
  /** When it was printed (performance.now()). */
  readonly at: number;
}

/**
 * A {@link Logger} that is console.ts's own `createLogger` (no colour unless
 * asked) with a capturing `write`: it records what would reach the terminal,
 * escaping included, unlike {@link CapturingLogger}, which records messages
 * before escaping.
 */
export class PrintedLog implements Logger {
  /** Every line printed, in order. */
  readonly lines: PrintedLine[] = [];
  readonly #waiters = new Waiters();
  readonly #logger: Logger;

  /** @param options createLogger's (`quiet`, `color`), without `write` */
  constructor(options: Omit<LoggerOptions, "write"> = {}) {
    this.#logger = createLogger({
      color: false,
      ...options,
      write: (text, stream) => {
        this.lines.push({ stream, text, at: performance.now() });
        this.#waiters.notify();
      },
    });
  }

  get quiet(): boolean {
    return this.#logger.quiet;
  }
  info = (m: string) => this.#logger.info(m);
  success = (m: string) => this.#logger.success(m);
  line = (m: string) => this.#logger.line(m);
  notice = (m: string) => this.#logger.notice(m);
  error = (m: string) => this.#logger.error(m);

  /** The `[!]` lines as printed. */
  get errors(): string[] {
    return this.texts().filter((text) => text.startsWith("[!] "));
  }

  /** Every line as printed, without stream or time. */
  texts(): string[] {
    return this.lines.map((l) => l.text);
  }

  /** Everything printed, one line each. */
  text(): string {
    return this.texts().join("\n");
  }

  /** The first printed line matching `match`, now or once printed. */
  async waitFor(match: RegExp, ms = 5000): Promise<PrintedLine> {
    let found: PrintedLine | undefined;
    await this.#waiters.until(
      () => (found = this.lines.find((l) => match.test(l.text))) !== undefined,
      ms,
      () => `printed line ${match}; printed so far:\n${this.text()}`,
    );
    return found!;
  }
}

/** Collects the server's `onMessage` calls and lets a test await them. */
export class MessageSink {
  readonly messages: ReceivedMessage[] = [];
  readonly #waiters = new Waiters();

  /** Pass as `onMessage` to startServer. */
  onMessage = (message: ReceivedMessage) => {
    this.messages.push(message);
    this.#waiters.notify();
  };

  /** The texts received, in arrival order. */
  texts(): string[] {
    return this.messages.map((m) => m.text);
  }

  /** Resolves once `count` messages have arrived. */
  waitForCount(count: number, ms = 5000): Promise<void> {
    return this.#waiters.until(
      () => this.messages.length >= count,
      ms,
      () => `${count} messages (got ${JSON.stringify(this.texts())})`,
    );
  }
}

// ───────────────────────────────────────────────────────────────────────────
// Client input
// ───────────────────────────────────────────────────────────────────────────

/** A stream holding `text` as the client's whole input, in one chunk (none for ""). */
export function textStream(text: string | Uint8Array): ReadableStream<Uint8Array> {
  const bytes = typeof text === "string" ? encoder.encode(text) : text;
  return ReadableStream.from(bytes.length === 0 ? [] : [bytes]);
}

/** Input the test types line by line and that stays open until `end()` (Ctrl-D). */
export interface TypedInput {
  /** The client's stdin. */
  readonly stream: ReadableStream<Uint8Array>;
  /** Sends `line` and an LF. */
  type(line: string): void;
  /** Ends the input (idempotent). */
  end(): void;
}

/** A {@link TypedInput}. */
export function typedInput(): TypedInput {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const stream = new ReadableStream<Uint8Array>({ start: (c) => controller = c });
  return {
    stream,
    type(line) {
      controller.enqueue(encoder.encode(line + "\n"));
    },
    end() {
      try {
        controller.close();
      } catch {
        // already closed, or the client cancelled its input
      }
    },
  };
}

// ───────────────────────────────────────────────────────────────────────────
// Frames
// ───────────────────────────────────────────────────────────────────────────

/** A parsed JSON frame. */
export type Frame = Record<string, unknown>;

/** The JSON object in `line`, or undefined for non-JSON, arrays, other values and no line. */
export function tryParse(line: string | null | undefined): Frame | undefined {
  if (line === undefined || line === null) return undefined;
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? value as Frame
      : undefined;
  } catch {
    return undefined;
  }
}

/** A copy of a JSON line with some fields replaced (undefined deletes). */
export function withFields(line: string, changes: Record<string, unknown>): string {
  const frame = JSON.parse(line);
  for (const [key, value] of Object.entries(changes)) {
    if (value === undefined) delete frame[key];
    else frame[key] = value;
  }
  return JSON.stringify(frame);
}

/** A base64 text with bit `bit` of byte `byteIndex` flipped. */
export function flipBit(base64: string, byteIndex: number, bit = 0): string {
  const bytes = Uint8Array.fromBase64(base64);
  bytes[byteIndex] ^= 1 << bit;
  return bytes.toBase64();
}

/** The public key in {@link helloWith}'s hello (ffdhe2048, a fixed private key). */
export const FAKE_SERVER_KEY = derivePublicKey(GROUPS.ffdhe2048, 0xdead_beef_cafe_f00dn)
  .toString();

/** A server hello offering ffdhe2048 + the secure cipher, with `changes` applied (undefined deletes). */
export function helloWith(changes: Record<string, unknown> = {}): string {
  return withFields(
    JSON.stringify({
      type: "hello",
      protocol: "dhx/1",
      group: "ffdhe2048",
      p: GROUPS.ffdhe2048.p.toString(),
      g: "2",
      publicKey: FAKE_SERVER_KEY,
      cipher: SECURE_CIPHER,
    }),
    changes,
  );
}

// ───────────────────────────────────────────────────────────────────────────
// Random numbers
// ───────────────────────────────────────────────────────────────────────────

/** A seeded xorshift generator, so that failures reproduce. */
export interface Random {
  /** A random number of exactly `bits` bits (top bit set), 0 for 0 bits. */
  exactBits(bits: number): bigint;
  /** Uniform-ish in [lo, hi]. */
  between(lo: bigint, hi: bigint): bigint;
  /** An integer in [0, n). */
  int(n: number): number;
  /** `length` random bytes. */
  bytes(length: number): Uint8Array;
}

/** The one seeded generator of the tests. */
export function seededRandom(seed: number): Random {
  let s = BigInt(seed) | 1n;
  const next64 = () => {
    s ^= (s << 13n) & 0xffffffffffffffffn;
    s ^= s >> 7n;
    s ^= (s << 17n) & 0xffffffffffffffffn;
    return s;
  };
  const exactBits = (bits: number): bigint => {
    if (bits <= 0) return 0n;
    let n = 0n;
    for (let i = 0; i < bits; i += 64) n = (n << 64n) | next64();
    return BigInt.asUintN(bits, n) | (1n << BigInt(bits - 1));
  };
  const bitsOf = (n: bigint) => n.toString(2).length;
  return {
    exactBits,
    between(lo, hi) {
      const range = hi - lo + 1n;
      return lo + exactBits(bitsOf(range) + 64) % range;
    },
    int: (n) => Number(next64() % BigInt(n)),
    bytes(length) {
      const out = new Uint8Array(length);
      for (let i = 0; i < length; i++) out[i] = Number(next64() & 0xffn);
      return out;
    },
  };
}

// ───────────────────────────────────────────────────────────────────────────
// An independent record sealer
// ───────────────────────────────────────────────────────────────────────────

/**
 * DHX/1 records for one direction built straight from the protocol text with
 * node:crypto's own AES-256-CTR and HMAC (not dh.ts's): seals lines a real
 * peer would send, with any seq, type or plaintext a test needs.
 */
export class IndependentRecords {
  readonly #encryptionKey: Uint8Array;
  readonly #macKey: Uint8Array;

  /**
   * @param keySchedule the 136 bytes of a session's key material
   * @param sender whose records these are: "client" (client→server keys) or "server"
   */
  constructor(keySchedule: Uint8Array, sender: Role) {
    const [enc, mac] = sender === "client"
      ? [KEY_SCHEDULE_LAYOUT.clientEncryption, KEY_SCHEDULE_LAYOUT.clientMac]
      : [KEY_SCHEDULE_LAYOUT.serverEncryption, KEY_SCHEDULE_LAYOUT.serverMac];
    this.#encryptionKey = keySchedule.slice(...enc);
    this.#macKey = keySchedule.slice(...mac);
  }

  /** The ciphertext of `plaintext` as record `seq`. */
  encrypt(seq: number, plaintext: Uint8Array): Uint8Array {
    const iv = new Uint8Array(16);
    new DataView(iv.buffer).setBigUint64(0, BigInt(seq));
    return new Uint8Array(createCipheriv("aes-256-ctr", this.#encryptionKey, iv).update(plaintext));
  }

  /** The 32-byte tag of a record. */
  tag(type: string, seq: number, ciphertext: Uint8Array): Uint8Array {
    const header = new Uint8Array(9);
    new DataView(header.buffer).setBigUint64(1, BigInt(seq));
    return new Uint8Array(
      createHmac("sha256", this.#macKey).update(encoder.encode(type)).update(header)
        .update(ciphertext).digest(),
    );
  }

  /** A whole record line. */
  seal(type: string, seq: number, plaintext: string | Uint8Array): string {
    const bytes = typeof plaintext === "string" ? encoder.encode(plaintext) : plaintext;
    const ciphertext = this.encrypt(seq, bytes);
    return JSON.stringify({
      type,
      seq,
      data: ciphertext.toBase64(),
      tag: this.tag(type, seq, ciphertext).toBase64(),
    });
  }
}

// ───────────────────────────────────────────────────────────────────────────
// Raw peers and fake servers
// ───────────────────────────────────────────────────────────────────────────

/**
 * A hand-driven peer over any connection (a TCP socket or a memory pipe end):
 * a hostile client that writes raw bytes, or reads what it is sent.
 */
export class RawPeer {
  /** Every line read so far (LF and a CR before it removed). */
  readonly received: string[] = [];
  /** Whether the other end closed. */
  eof = false;
  /** "host:port" of this end as the other side names it, for TCP ("memory" otherwise). */
  readonly local: string;
  readonly #read: () => Promise<Uint8Array | null>;
  readonly #write: (bytes: Uint8Array) => Promise<void>;
  readonly #close: () => void;
  #buffer = new Uint8Array(0);
  #closed = false;

  constructor(conn: Connection) {
    if (typeof (conn as Deno.Conn).read === "function") {
      const socket = conn as Deno.Conn;
      const chunk = new Uint8Array(65_536);
      this.#read = async () => {
        const n = await socket.read(chunk);
        return n === null ? null : chunk.slice(0, n);
      };
      this.#write = async (bytes) => {
        for (let done = 0; done < bytes.length;) done += await socket.write(bytes.subarray(done));
      };
      this.#close = () => socket.close();
      const addr = socket.localAddr as Deno.NetAddr;
      this.local = `${addr.hostname}:${addr.port}`;
    } else {
      const reader = conn.readable.getReader();
      const writer = conn.writable.getWriter();
      this.#read = async () => {
        const { value, done } = await reader.read();
        return done ? null : value;
      };
      this.#write = (bytes) => writer.write(bytes);
      this.#close = () => {
        writer.close().catch(() => {});
        reader.cancel().catch(() => {});
      };
      this.local = "memory";
    }
  }

  /** Connects to `port` on `hostname` over TCP (bounded). */
  static async connect(port: number, hostname = HOST): Promise<RawPeer> {
    return new RawPeer(await within(Deno.connect({ hostname, port }), 3000, "connect"));
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  async #fill(ms: number): Promise<void> {
    let chunk: Uint8Array | null;
    try {
      chunk = await within(this.#read(), ms, "read from the connection");
    } catch (error) {
      if (error instanceof Error && error.message.startsWith("timed out")) throw error;
      chunk = null; // reset or closed under us
    }
    if (chunk === null) {
      this.eof = true;
      return;
    }
    const next = new Uint8Array(this.#buffer.length + chunk.length);
    next.set(this.#buffer);
    next.set(chunk, this.#buffer.length);
    this.#buffer = next;
  }

  /** The next line, or null at EOF (an unterminated tail is returned as a line). */
  async readLine(ms = 3000): Promise<string | null> {
    const end = performance.now() + ms;
    for (;;) {
      const lf = this.#buffer.indexOf(LF);
      if (lf >= 0 || (this.eof && this.#buffer.length > 0)) {
        let bytes = this.#buffer.subarray(0, lf >= 0 ? lf : this.#buffer.length);
        this.#buffer = this.#buffer.subarray(lf >= 0 ? lf + 1 : this.#buffer.length);
        if (bytes.at(-1) === 0x0d) bytes = bytes.subarray(0, -1);
        const line = decoder.decode(bytes);
        this.received.push(line);
        return line;
      }
      if (this.eof) return null;
      await this.#fill(Math.max(1, end - performance.now()));
    }
  }

  /** Every remaining line up to EOF; fails if EOF does not come within `ms`. */
  async readToEof(ms = 3000): Promise<string[]> {
    const end = performance.now() + ms;
    const lines: string[] = [];
    for (;;) {
      const line = await this.readLine(Math.max(1, end - performance.now()));
      if (line === null) return lines;
      lines.push(line);
    }
  }

  /** Writes `data` exactly as given (no LF added). */
  async write(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    await within(this.#write(bytes), 3000, "write to the connection");
  }

  /** Writes `line` and an LF. */
  writeLine(line: string): Promise<void> {
    return this.write(line + "\n");
  }

  /** Closes the connection (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#close();
    } catch {
      // already closed
    }
  }
}

/** The private key of {@link rawClientHandshake} unless told otherwise: 64 bits, cheap. */
export const RAW_CLIENT_KEY = 0x5eed_f00d_1234_5678n;

/** A raw client that has done a real DHX/1 handshake (dh.ts) and does only what the test makes it do. */
export interface RawClient {
  readonly raw: RawPeer;
  readonly session: Session;
  readonly hello: Hello;
  /** The key line computed for the hello (sent unless `sendKey: false`). */
  readonly keyLine: string;
}

/**
 * Reads the hello on `conn` and answers it with a key computed properly
 * (dh.ts's parseHello and respondToHello). With `sendKey: false` the key line
 * is only computed: the test sends it, or something made from it.
 */
export async function rawClientHandshake(
  conn: Connection | RawPeer,
  options: { privateKey?: bigint; insecure?: boolean; sendKey?: boolean } = {},
): Promise<RawClient> {
  const raw = conn instanceof RawPeer ? conn : new RawPeer(conn);
  const helloLine = await raw.readLine(5000);
  assert.ok(helloLine !== null, "the server sent no hello");
  const hello = parseHello(helloLine, { insecure: options.insecure ?? false });
  const { keyLine, session } = respondToHello(hello, options.privateKey ?? RAW_CLIENT_KEY);
  if (options.sendKey ?? true) await raw.writeLine(keyLine);
  return { raw, session, hello, keyLine };
}

/** Reads one line and checks that it is the ack of `seq` (tag, seq and plaintext). */
export async function expectAck(s: RawClient, seq: number): Promise<void> {
  const line = await s.raw.readLine();
  assert.ok(line !== null, `EOF instead of the ack of ${seq}`);
  const record = s.session.open(line);
  assert.equal(record.type, "ack", `expected an ack, got ${line.slice(0, 120)}`);
  assert.equal(record.text, String(seq));
}

/** Sends one msg and checks its ack. */
export async function sendAndExpectAck(s: RawClient, text: string): Promise<void> {
  const seq = s.session.nextSendSeq;
  await s.raw.writeLine(s.session.seal("msg", text));
  await expectAck(s, seq);
}

/** A fake DHX/1 server for one in-memory connection; see {@link fakeServer}. */
export interface FakeServer {
  /** The client's end: pass as `connection` to runClient. */
  readonly connection: Connection;
  /** Settles when the script has finished; rejects with its error. */
  readonly done: Promise<void>;
  /** The server's end. */
  readonly peer: RawPeer;
}

/**
 * A scripted server on one in-memory connection: `script` gets the raw
 * server end (send any bytes, read what the client sent). For a real
 * handshake first, use {@link handshakeWith}.
 */
export function fakeServer(script: (peer: RawPeer) => Promise<void>): FakeServer {
  const [serverEnd, clientEnd] = memoryPipe();
  const peer = new RawPeer(serverEnd);
  const done = script(peer).catch((error) => {
    peer.close();
    throw error;
  });
  done.catch(() => {}); // awaited by the test; never unhandled
  return { connection: clientEnd, done, peer };
}

/**
 * The server side of a real handshake (ffdhe2048, secure cipher) over a fresh
 * in-memory connection, through transport.ts's own {@link serverHandshake}:
 * returns the client's end and a promise of the server's link and session.
 */
export function handshakeWith(): {
  connection: Connection;
  server: Promise<{ link: LineConnection; session: Session }>;
} {
  const [serverEnd, clientEnd] = memoryPipe();
  const link = new LineConnection(serverEnd);
  const server = serverHandshake(link, {
    group: GROUPS.ffdhe2048,
    cipher: SECURE_CIPHER,
    timeoutMs: 5000,
  }).then((session) => {
    assert.ok(session, "the client sent no key");
    return { link, session };
  });
  server.catch(() => {});
  return { connection: clientEnd, server };
}

// ───────────────────────────────────────────────────────────────────────────
// Script processes
// ───────────────────────────────────────────────────────────────────────────

/** The repository's root directory. */
export const ROOT: string = new URL("..", import.meta.url).pathname;

/** How a child process ended. */
export interface ProcessResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** DENO_DIR of the scripts run by tests: their localStorage, apart from the user's. */
export const TEST_DENO_DIR: string = `${ROOT}tests/.state/deno-dir`;

/** A child process (cwd: the repository root) with its output collected as it comes. */
export class TestProcess implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  exited = false;
  readonly status: Promise<Deno.CommandStatus>;
  readonly #pumps: Promise<void>[];
  readonly #stdin?: WritableStreamDefaultWriter<Uint8Array>;
  readonly #waiters = new Waiters();

  /**
   * @param command "deno" or "node"
   * @param args its arguments
   * @param stdin "piped" to write to it, "null" for /dev/null
   */
  constructor(command: string, args: string[], stdin: "piped" | "null" = "null") {
    this.child = new Deno.Command(command, {
      args,
      cwd: ROOT,
      // The scripts keep host keys and known hosts in Deno's localStorage, which lives in
      // DENO_DIR: the children get one of their own, never the user's.
      env: { DENO_DIR: TEST_DENO_DIR },
      stdin,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (stdin === "piped") this.#stdin = this.child.stdin.getWriter();
    this.#pumps = [
      this.#pump(this.child.stdout, (text) => this.stdout += text),
      this.#pump(this.child.stderr, (text) => this.stderr += text),
    ];
    this.status = this.child.status.then((status) => {
      this.exited = true;
      this.#waiters.notify();
      return status;
    });
  }

  async #pump(stream: ReadableStream<Uint8Array>, append: (text: string) => void) {
    const streamDecoder = new TextDecoder();
    for await (const chunk of stream) {
      append(streamDecoder.decode(chunk, { stream: true }));
      this.#waiters.notify();
    }
    append(streamDecoder.decode());
    this.#waiters.notify();
  }

  /** Resolves once stdout (or stderr) matches `pattern`; fails early if the process exits. */
  async waitFor(pattern: RegExp, ms = 10_000, stream: "stdout" | "stderr" = "stdout") {
    const text = () => stream === "stdout" ? this.stdout : this.stderr;
    await this.#waiters.until(
      () => pattern.test(text()) || this.exited,
      ms,
      () => `${stream} ${pattern}; stdout so far:\n${this.stdout}\nstderr:\n${this.stderr}`,
    );
    const match = pattern.exec(text());
    if (!match) {
      throw new Error(
        `process exited before printing ${pattern}\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`,
      );
    }
    return match;
  }

  /** Writes to stdin. */
  async write(text: string | Uint8Array): Promise<void> {
    await this.#stdin!.write(typeof text === "string" ? encoder.encode(text) : text);
  }

  /** Closes stdin (end of input). */
  async closeStdin(): Promise<void> {
    await this.#stdin?.close().catch(() => {});
  }

  /** Waits for the exit (bounded) and for all output. */
  async finish(ms = 15_000): Promise<ProcessResult> {
    const status = await within(
      this.status,
      ms,
      () => `exit of pid ${this.child.pid}\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`,
    );
    await Promise.all(this.#pumps);
    return { code: status.code, stdout: this.stdout, stderr: this.stderr };
  }

  /** Kills the process if it still runs and releases every pipe. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.exited) {
      try {
        this.child.kill("SIGKILL");
      } catch {
        // exited meanwhile
      }
    }
    await this.closeStdin();
    await this.status;
    await Promise.all(this.#pumps);
  }
}

/** A `deno run --allow-net SCRIPT ARGS` child with its output collected. */
export class DenoProcess extends TestProcess {
  /**
   * @param script "server.ts" or "client.ts"
   * @param args its flags
   * @param stdin "piped" to write to it, "null" for /dev/null
   */
  constructor(script: string, args: string[], stdin: "piped" | "null" = "null") {
    super("deno", ["run", "--allow-net", script, ...args], stdin);
  }
}

/** Waits for `proc` to end by itself (bounded), then releases it; returns how it ended. */
export async function runToEnd(proc: TestProcess, ms = 15_000): Promise<ProcessResult> {
  await using owned = proc;
  return await owned.finish(ms);
}

/** A server process on a free port; resolves once it printed where it listens. */
export async function spawnServer(
  args: string[],
  stdin: "piped" | "null" = "null",
): Promise<{ proc: DenoProcess; port: number }> {
  const proc = new DenoProcess("server.ts", ["--port", "0", ...args], stdin);
  try {
    const match = await proc.waitFor(/^\[\*\] Server listening on 127\.0\.0\.1:(\d+)$/m);
    const port = Number(match[1]);
    assert.ok(port > 0 && port !== 4444, `listening port ${port}`);
    return { proc, port };
  } catch (error) {
    await proc[Symbol.asyncDispose]();
    throw error;
  }
}

/** Runs a client process against `port` with `text` piped to its stdin; returns how it ended. */
export async function pipedClient(
  port: number,
  args: string[],
  text: string,
): Promise<ProcessResult> {
  await using client = new DenoProcess("client.ts", ["--port", String(port), ...args], "piped");
  await client.write(text);
  await client.closeStdin();
  return await client.finish();
}

/** A port nothing listens on: bound, then released. */
export function closedPort(): number {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Non-empty lines of some output. */
export function linesOf(text: string): string[] {
  return text.split("\n").filter((line) => line.trim() !== "");
}

// ───────────────────────────────────────────────────────────────────────────
// The server fixture
// ───────────────────────────────────────────────────────────────────────────

/** An in-process client (runClient) reading {@link typedInput}; see {@link typedClient}. */
export interface TypedClient<L extends Logger = CapturingLogger> {
  /** Its logger. */
  readonly log: L;
  /** Its input. */
  readonly input: TypedInput;
  /** Sends `line` and an LF. */
  type(line: string): void;
  /** Ends the input (Ctrl-D). */
  end(): void;
  /** runClient's exit code. */
  readonly run: Promise<number>;
}

/** Options of one typed client: runClient's, without input and logger. */
export type TypedClientOptions = Omit<ClientOptions, "input" | "logger">;

/** Options of one fixture client (runClient's, without connection, input and logger). */
export type FixtureClientOptions = Omit<TypedClientOptions, "connection">;

/**
 * Starts runClient (not interactive unless asked) on {@link typedInput},
 * logging to `logger` (a new {@link CapturingLogger} by default).
 */
export function typedClient<L extends Logger = CapturingLogger>(
  options: TypedClientOptions,
  logger?: L,
): TypedClient<L> {
  const input = typedInput();
  const log = logger ?? new CapturingLogger() as Logger as L;
  const run = runClient({ interactive: false, ...options, input: input.stream, logger: log });
  return { log, input, type: input.type, end: input.end, run };
}

/** Options of the fixture's server (startServer's, but where it logs), and `tcp` to listen. */
export type TestServerOptions =
  & Omit<ServerOptions, "port" | "logger" | "onMessage" | "listen">
  & { tcp?: boolean };

/**
 * The one server fixture: a server in memory (over TCP on port 0 with `tcp`)
 * logging to `serverLog`, its messages to `sink`. `await using` closes it
 * (bounded); {@link withServer} runs a body with clients against it.
 */
export interface TestServer extends AsyncDisposable {
  readonly server: ServerHandle;
  readonly serverLog: CapturingLogger;
  /** The server's onMessage calls. */
  readonly sink: MessageSink;
  /** The TCP port it listens on (0 in memory). */
  readonly port: number;
}

/** Starts a {@link TestServer}. */
export function testServer(options: TestServerOptions = {}): TestServer {
  const { tcp, ...serverOptions } = options;
  const serverLog = new CapturingLogger();
  const sink = new MessageSink();
  const server = startServer({
    ...serverOptions,
    listen: tcp === true,
    port: 0,
    logger: serverLog,
    onMessage: sink.onMessage,
  });
  return {
    server,
    serverLog,
    sink,
    port: server.addr?.port ?? 0,
    [Symbol.asyncDispose]: () => within(server.close(), 10_000, "server close"),
  };
}

/** What {@link withServer} hands its body. */
export interface ServerFixture extends Omit<TestServer, typeof Symbol.asyncDispose> {
  /** Starts runClient against the server, over memory (or TCP with `tcp`), on typed input. */
  client(options?: FixtureClientOptions): TypedClient;
}

/**
 * Starts a {@link testServer}, runs `body`, then always ends the clients'
 * input, closes the server and waits for the clients. Returns the fixture,
 * for checks after.
 */
export async function withServer(
  options: TestServerOptions,
  body: (fixture: ServerFixture) => Promise<void>,
): Promise<ServerFixture> {
  const served = testServer(options);
  const { server } = served;
  const clients: TypedClient[] = [];
  const fixture: ServerFixture = {
    server,
    serverLog: served.serverLog,
    sink: served.sink,
    port: served.port,
    client(clientOptions = {}) {
      const client = typedClient({
        ...clientOptions,
        ...(options.tcp ? { port: served.port } : { connection: server.connect() }),
      });
      clients.push(client);
      return client;
    },
  };
  try {
    await body(fixture);
  } finally {
    for (const client of clients) client.end();
    await served[Symbol.asyncDispose]();
    for (const client of clients) await client.run.catch(() => {});
  }
  return fixture;
}
