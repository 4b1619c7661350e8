/**
 * Helpers shared by the test files: time bounds, a capturing {@link Logger},
 * a sink for the server's messages, client input streams, JSON frame editing,
 * a hand-driven TCP peer and one-connection fake DHX/1 servers.
 *
 * Not a test file itself (`deno test` does not pick it up).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  acceptKey,
  createOffer,
  derivePublicKey,
  GROUPS,
  type Logger,
  SECURE_CIPHER,
  type Session,
} from "../dh.ts";
import type { ReceivedMessage } from "../server.ts";

/** Where every test server and fake server listens. */
export const HOST = "127.0.0.1";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const LF = 0x0a;

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
// Capturing logger and message sink
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

/** The server names a connection "127.0.0.1:PORT"; match it without matching PORT0. */
export function peerPattern(peer: string): RegExp {
  return new RegExp(`^${peer.replaceAll(".", "\\.")}(?![0-9])`);
}

/** A {@link Logger} that records every line, by level and in order, and lets a test await one. */
export class CapturingLogger implements Logger {
  /** Every line in order, with its level. */
  readonly entries: LogEntry[] = [];
  /** Every line in order as printed: `[*] message`, `[+] …`, `[!] …`. */
  readonly lines: string[] = [];
  readonly infos: string[] = [];
  readonly successes: string[] = [];
  readonly notices: string[] = [];
  readonly errors: string[] = [];
  readonly #waiters = new Waiters();

  info = (m: string) => this.#push("info", this.infos, m);
  success = (m: string) => this.#push("success", this.successes, m);
  notice = (m: string) => this.#push("notice", this.notices, m);
  error = (m: string) => this.#push("error", this.errors, m);

  #push(level: Level, list: string[], message: string): void {
    this.entries.push({ level, message });
    list.push(message);
    this.lines.push(`${PREFIX[level]} ${message}`);
    this.#waiters.notify();
  }

  /**
   * The first line matching `match` (a pattern tested against the printed
   * line, or a test of the entry), now or once it is logged.
   */
  async waitFor(
    match: RegExp | ((entry: LogEntry) => boolean),
    ms = 5000,
    what?: string,
  ): Promise<LogEntry> {
    const test = match instanceof RegExp
      ? (e: LogEntry) => match.test(`${PREFIX[e.level]} ${e.message}`)
      : match;
    let found: LogEntry | undefined;
    await this.#waiters.until(
      () => (found = this.entries.find(test)) !== undefined,
      ms,
      () => `log line ${what ?? match} (log so far:\n${this.dump()})`,
    );
    return found!;
  }

  /** Lines about one connection (as the server names it), optionally of one level. */
  about(peer: string, level?: Level): LogEntry[] {
    const pattern = peerPattern(peer);
    return this.entries.filter((e) => pattern.test(e.message) && (!level || e.level === level));
  }

  /** The fingerprint printed in a success line. */
  fingerprint(): string | undefined {
    for (const line of this.successes) {
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

  /** Texts grouped by the peer that sent them, in arrival order. */
  byPeer(): Map<string, string[]> {
    const peers = new Map<string, string[]>();
    for (const { peer, text } of this.messages) {
      peers.set(peer, [...peers.get(peer) ?? [], text]);
    }
    return peers;
  }
}

// ───────────────────────────────────────────────────────────────────────────
// Client input
// ───────────────────────────────────────────────────────────────────────────

/** A stream holding `text` as the client's whole input, in one chunk (none for ""). */
export function textStream(text: string): ReadableStream<Uint8Array> {
  return ReadableStream.from(text === "" ? [] : [encoder.encode(text)]);
}

/** Input the test types line by line and that stays open until `end()` (Ctrl-D). */
export function typedInput() {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const stream = new ReadableStream<Uint8Array>({ start: (c) => controller = c });
  return {
    stream,
    /** Sends `line` and an LF. */
    type(line: string) {
      controller.enqueue(encoder.encode(line + "\n"));
    },
    /** Ends the input (idempotent). */
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
export function tryParse(line: string | undefined): Frame | undefined {
  if (line === undefined) return undefined;
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
// Raw peers and fake servers
// ───────────────────────────────────────────────────────────────────────────

/** A hand-driven TCP peer: a hostile client, or the connection of a fake server. */
export class RawPeer {
  readonly conn: Deno.Conn;
  /** Every line read so far (LF and a CR before it removed). */
  readonly received: string[] = [];
  eof = false;
  #buffer = new Uint8Array(0);
  #closed = false;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  /** Connects to `port` on {@link HOST} (bounded). */
  static async connect(port: number): Promise<RawPeer> {
    return new RawPeer(await within(Deno.connect({ hostname: HOST, port }), 3000, "connect"));
  }

  /** How the server names this (client) connection in its log: "127.0.0.1:PORT". */
  get peer(): string {
    const addr = this.conn.localAddr as Deno.NetAddr;
    return `${addr.hostname}:${addr.port}`;
  }

  get closed(): boolean {
    return this.#closed;
  }

  async #fill(ms: number): Promise<void> {
    const chunk = new Uint8Array(65_536);
    let n: number | null;
    try {
      n = await within(this.conn.read(chunk), ms, "read from socket");
    } catch (error) {
      if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
      n = null;
    }
    if (n === null) {
      this.eof = true;
      return;
    }
    const next = new Uint8Array(this.#buffer.length + n);
    next.set(this.#buffer);
    next.set(chunk.subarray(0, n), this.#buffer.length);
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
    let bytes = typeof data === "string" ? encoder.encode(data) : data;
    while (bytes.length > 0) {
      const n = await within(this.conn.write(bytes), 3000, "write to socket");
      bytes = bytes.subarray(n);
    }
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
      this.conn.close();
    } catch {
      // already closed
    }
  }
}

/** A fake DHX/1 server for one connection; see {@link fakeServer}. */
export interface FakeServer {
  readonly port: number;
  /** Settles when the script has finished; rejects with its error. */
  readonly done: Promise<void>;
  /** The accepted connection, once the client has connected. */
  readonly peer: RawPeer | undefined;
  /** Every line the client sent, as read so far. */
  readonly received: string[];
  /** Closes the connection and the listener (idempotent). */
  close(): void;
}

/**
 * Listens on {@link HOST} port 0, accepts one connection (within `acceptMs`)
 * and runs `script` with it. The connection stays open after the script
 * unless the script fails; `close()` always releases it.
 */
export function fakeServer(
  script: (peer: RawPeer) => Promise<void>,
  acceptMs = 3000,
): FakeServer {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  let peer: RawPeer | undefined;
  const done = (async () => {
    peer = new RawPeer(await within(listener.accept(), acceptMs, "the client to connect"));
    try {
      await script(peer);
    } catch (error) {
      peer.close();
      throw error;
    }
  })();
  done.catch(() => {}); // awaited by the test; never unhandled
  return {
    port: (listener.addr as Deno.NetAddr).port,
    done,
    get peer() {
      return peer;
    },
    get received() {
      return peer?.received ?? [];
    },
    close() {
      peer?.close();
      try {
        listener.close();
      } catch {
        // already closed
      }
    },
  };
}

/**
 * Plays the server's side of a real handshake (ffdhe2048, secure cipher,
 * dh.ts) on `peer` and returns the agreed session.
 */
export async function serveHandshake(peer: RawPeer, ms = 5000): Promise<Session> {
  const offer = createOffer(GROUPS.ffdhe2048, SECURE_CIPHER);
  await peer.writeLine(offer.line);
  const keyLine = await peer.readLine(ms);
  assert.ok(keyLine !== null, "the client sent no key");
  return await acceptKey(offer, keyLine);
}
