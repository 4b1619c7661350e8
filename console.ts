/**
 * dhx console: what the two commands share at the terminal.
 *
 * 1. exit codes and usage errors;
 * 2. output — {@link printable}, the one escaping function for anything a
 *    peer wrote, and the `[*]`/`[+]`/`[!]` {@link Logger} over a buffered
 *    {@link Output} that keeps a prompt intact;
 * 3. input — {@link inputLines}: lines typed at a terminal (`node:readline`:
 *    line editing, history) or piped in (the transport's bounded reader);
 * 4. flags — strict parsing with typed accessors;
 * 5. descriptions — errors, counts, numbers and the `--verbose` lesson.
 *
 * @module
 */

import process from "node:process";
import { EventEmitter } from "node:events";
import { createInterface, type Interface } from "node:readline";
import { parseArgs, styleText } from "node:util";
import {
  bitLength,
  type DhGroup,
  KEY_SCHEDULE_LAYOUT,
  MAX_WIRE_DIGITS,
  PROTOCOL,
  ProtocolError,
  type Role,
  type Session,
  sha256,
  TOY_CIPHER,
  type WorkedPower,
  workedPower,
  xor8Record,
} from "./dh.ts";
import { LineError, LineReader } from "./transport.ts";
import denoJson from "./deno.json" with { type: "json" };

const encoder = new TextEncoder();

// ───────────────────────────────────────────────────────────────────────────
// 1. Exit codes and usage errors
// ───────────────────────────────────────────────────────────────────────────

/** Exit codes of both scripts: 0 ok, 1 failure, 2 usage error. */
export const EXIT: Readonly<{ OK: 0; FAILURE: 1; USAGE: 2 }> = Object.freeze({
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
});

/** A wrong flag or value: one `[!]` line and exit code 2. */
export class UsageError extends Error {
  /**
   * Creates the error.
   *
   * @param message what is wrong with the command line
   */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

// ───────────────────────────────────────────────────────────────────────────
// 2. Output
// ───────────────────────────────────────────────────────────────────────────

/**
 * Characters that must not reach a terminal raw: C0 and C1 controls and DEL
 * (Cc: they move the cursor, recolour, retitle), format characters (Cf: the
 * bidi overrides and isolates U+202A–202E and U+2066–2069, U+061C, zero-width
 * U+200B–200F, U+FEFF), the line and paragraph separators U+2028/U+2029, and
 * lone surrogates.
 */
const UNSAFE_CHARACTERS = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu;

/**
 * Makes text safe for a terminal: every character that could move the
 * cursor, recolour the screen or reorder what is shown becomes a visible
 * `\u{…}` escape. Everything printed goes through it (the {@link Logger}
 * applies it to every line), so a peer's text, names and error messages
 * cannot drive the terminal.
 */
export function printable(text: string): string {
  return text.replace(UNSAFE_CHARACTERS, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}

/** Which stream a line goes to. */
export type Stream = "stdout" | "stderr";

/**
 * Longest message a log line shows, in characters after escaping (the rest is
 * cut, its size given): room for every number `--verbose` shows, up to an
 * 8192-bit one in decimal (2,467 digits).
 */
export const MAX_SHOWN_CHARS = 4096;

/** Most bytes of log lines waiting for a slow terminal; past it, lines are dropped and counted. */
export const MAX_PENDING_BYTES = 1024 * 1024;

/** At exit, how long what is still waiting may take to reach the terminal, in ms. */
export const EXIT_FLUSH_MS = 2000;

/**
 * {@link printable}, cut to `maxChars` characters: a longer message ends in
 * `… (786,300 bytes)`, its whole size in UTF-8. Only the part shown is
 * escaped, so a huge line costs no more than a short one.
 */
export function shown(text: string, maxChars: number = MAX_SHOWN_CHARS): string {
  if (text.length <= maxChars) {
    const escaped = printable(text);
    if (escaped.length <= maxChars) return escaped;
  }
  let kept = "";
  for (const c of text) {
    const piece = printable(c);
    if (kept.length + piece.length > maxChars) break;
    kept += piece;
  }
  return `${kept}… (${grouped(encoder.encode(text).length)} bytes)`;
}

/** 786300 → "786,300". */
export function grouped(n: number): string {
  return n.toLocaleString("en-US");
}

/** Where the bytes of a stream go: resolves with how many were written (a write may be partial). */
export type Sink = (stream: Stream, bytes: Uint8Array) => Promise<number>;

/** The prompt an {@link Output} keeps below what it prints: a `node:readline` interface. */
export type Prompt = Pick<Interface, "getPrompt" | "getCursorPos" | "line" | "cursor">;

/** Options of {@link Output}. */
export interface OutputOptions {
  /** Most bytes of log lines waiting to be written (default {@link MAX_PENDING_BYTES}). */
  readonly maxPendingBytes?: number;
  /** Where bytes go (default: async writes to stdout and stderr). */
  readonly sink?: Sink;
  /** Width of the terminal, for the prompt's rows (default: the console's). */
  readonly columns?: () => number;
}

const writeStdio: Sink = (stream, bytes) =>
  (stream === "stdout" ? Deno.stdout : Deno.stderr).write(bytes);

function consoleColumns(): number {
  try {
    return Deno.consoleSize().columns;
  } catch {
    return 80;
  }
}

/**
 * Console output that never makes the program wait for the terminal. Lines
 * written in the same turn of the event loop are queued together, in order,
 * and leave through asynchronous writes; a slow or stopped reader (a paused
 * terminal, a pipe nobody reads) only makes the queue grow. Past
 * `maxPendingBytes` new lines are dropped and counted, and once the queue has
 * drained one `[!]` line says how many were lost.
 *
 * At a terminal with a prompt, each batch first clears every row the prompt
 * and the half-typed line occupy, then prints the lines, then draws the prompt
 * and the half-typed line again below them, cursor where it was. The prompt's
 * own writes (`node:readline` echo) go through the same queue, see
 * {@link Output.terminal}, so nothing reaches the screen out of order.
 */
export class Output {
  readonly #maxPendingBytes: number;
  readonly #sink: Sink;
  readonly #columns: () => number;
  #lines: [Stream, string][] = [];
  #scheduled = false;
  #prompt: Prompt | undefined;
  /** Bytes waiting to be written, in order. */
  #queue: [Stream, Uint8Array][] = [];
  #pendingBytes = 0;
  #writing = false;
  #dropped = 0;
  /** Dropped lines already reported. */
  #reported = 0;
  #broken = new Set<Stream>();
  #idle: (() => void)[] = [];

  /**
   * Creates the output.
   *
   * @param options the bound, where bytes go, the terminal's width
   */
  constructor(options: OutputOptions = {}) {
    this.#maxPendingBytes = options.maxPendingBytes ?? MAX_PENDING_BYTES;
    this.#sink = options.sink ?? writeStdio;
    this.#columns = options.columns ?? consoleColumns;
  }

  /** Queues one line (LF added). */
  write(line: string, stream: Stream = "stdout"): void {
    this.#lines.push([stream, line]);
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Log lines dropped so far because the terminal was too slow. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Bytes waiting for the terminal. */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /** Hands everything written so far to the writer (it never waits for the terminal). */
  flush(): void {
    this.#scheduled = false;
    if (this.#lines.length === 0) return;
    const lines = this.#lines;
    this.#lines = [];
    const batch: [Stream, string][] = [];
    let room = this.#maxPendingBytes - this.#pendingBytes;
    for (const [stream, line] of lines) {
      const text = line + "\n";
      const size = encoder.encode(text).length;
      if (this.#broken.has(stream)) continue;
      if (size > room) {
        this.#dropped++;
        continue;
      }
      room -= size;
      if (batch.at(-1)?.[0] === stream) batch.at(-1)![1] += text;
      else batch.push([stream, text]);
    }
    if (batch.length === 0) return;
    if (this.#prompt) {
      batch.unshift(["stdout", this.#clearPrompt()]);
      batch.push(["stdout", this.#drawPrompt()]);
    }
    for (const [stream, text] of batch) this.#enqueue(stream, text);
  }

  /**
   * Resolves once everything queued has been written, or after `ms`
   * (a terminal that stays stuck must not keep the program from ending).
   */
  async settle(ms: number = EXIT_FLUSH_MS): Promise<void> {
    this.flush();
    if (!this.#writing) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.#idle.push(resolve)),
      new Promise<void>((resolve) => timer = setTimeout(resolve, ms)),
    ]);
    clearTimeout(timer);
  }

  /** Keeps `prompt` (a readline interface writing to {@link Output.terminal}) drawn below the output. */
  attachPrompt(prompt: Prompt): void {
    this.#prompt = prompt;
  }

  /** Stops drawing the prompt, and clears the rows it was on. */
  detachPrompt(): void {
    if (!this.#prompt) return;
    this.flush();
    this.#enqueue("stdout", this.#clearPrompt());
    this.#prompt = undefined;
  }

  /**
   * Ctrl-C with a half-typed line, as in a shell: `^C` after the line, which
   * stays on screen, and a fresh prompt below. Returns false (nothing done)
   * when no line was half-typed.
   */
  dropTypedLine(): boolean {
    const prompt = this.#prompt as (Prompt & { line: string; cursor: number }) | undefined;
    if (!prompt || prompt.line === "") return false;
    this.flush();
    // From the cursor to the end of the typed text, then below it.
    const end = this.#endOfLine();
    const cursor = prompt.getCursorPos();
    let text = `\x1b[${end.cols + 1}G`;
    if (end.rows > cursor.rows) text += `\x1b[${end.rows - cursor.rows}B`;
    text += "^C\r\n";
    prompt.line = "";
    prompt.cursor = 0;
    this.#enqueue("stdout", text + this.#drawPrompt());
    return true;
  }

  /**
   * A stream for `node:readline`'s `output`: its writes join the queue, so
   * the prompt, its echo and the log lines reach the terminal in order, and
   * never block. Its `columns` are the terminal's.
   */
  terminal(): NodeJS.WritableStream & { columns: number } {
    const stream = new EventEmitter() as EventEmitter & {
      columns: number;
      write(s: string): boolean;
    };
    Object.defineProperty(stream, "columns", { get: () => this.#columns() });
    stream.write = (text: string) => {
      this.#enqueue("stdout", text);
      return true;
    };
    return stream as unknown as NodeJS.WritableStream & { columns: number };
  }

  /** Where the end of the prompt and its line is, in rows and columns from the prompt's start. */
  #endOfLine(): { rows: number; cols: number } {
    const prompt = this.#prompt! as Prompt & { cursor: number };
    // readline measures wide characters and emoji as two columns: ask it where the end is.
    const saved = prompt.cursor;
    prompt.cursor = prompt.line.length;
    const end = prompt.getCursorPos();
    prompt.cursor = saved;
    return end;
  }

  /** Up to the prompt's first row, column 0, and clear to the end of the screen. */
  #clearPrompt(): string {
    const rows = this.#prompt!.getCursorPos().rows;
    return (rows > 0 ? `\x1b[${rows}A` : "") + "\r\x1b[J";
  }

  /** The prompt and the half-typed line, cursor put back where it was (as readline draws them). */
  #drawPrompt(): string {
    const prompt = this.#prompt!;
    const end = this.#endOfLine();
    const cursor = prompt.getCursorPos();
    let text = prompt.getPrompt() + prompt.line;
    // A line that ends exactly at the margin leaves the cursor there: a space moves it down.
    if (end.cols === 0 && end.rows > 0) text += " ";
    text += `\x1b[${cursor.cols + 1}G`;
    if (end.rows > cursor.rows) text += `\x1b[${end.rows - cursor.rows}A`;
    (prompt as { prevRows?: number }).prevRows = cursor.rows;
    return text;
  }

  #enqueue(stream: Stream, text: string): void {
    if (text === "" || this.#broken.has(stream)) return;
    const bytes = encoder.encode(text);
    this.#queue.push([stream, bytes]);
    this.#pendingBytes += bytes.length;
    if (!this.#writing) void this.#pump();
  }

  /** Writes the queue out, one chunk at a time; the only place that waits for the terminal. */
  async #pump(): Promise<void> {
    this.#writing = true;
    for (;;) {
      const head = this.#queue[0];
      if (!head) {
        if (this.#dropped > this.#reported && !this.#broken.has("stderr")) {
          const lost = this.#dropped - this.#reported;
          this.#reported = this.#dropped;
          this.write(
            `[!] ${grouped(lost)} log ${
              lost === 1 ? "line" : "lines"
            } dropped: the terminal is too slow`,
            "stderr",
          );
          this.flush();
          continue;
        }
        break;
      }
      const [stream, bytes] = head;
      let n: number;
      try {
        n = await this.#sink(stream, bytes);
      } catch {
        // Closed (`| head`): nothing more can be shown there.
        this.#broken.add(stream);
        this.#queue = this.#queue.filter(([s]) => s !== stream);
        this.#pendingBytes = this.#queue.reduce((sum, [, b]) => sum + b.length, 0);
        continue;
      }
      this.#pendingBytes -= n;
      if (n >= bytes.length) this.#queue.shift();
      else head[1] = bytes.subarray(n);
    }
    this.#writing = false;
    for (const resolve of this.#idle.splice(0)) resolve();
  }
}

/** The printer of both scripts: `[*]` info, `[+]` success, `[!]` problems. */
export interface Logger {
  /** True when info and success lines are dropped: skip work done only to print them. */
  readonly quiet: boolean;
  /** `[*]` progress; hidden by `--quiet`. */
  info(message: string): void;
  /** `[+]` success; hidden by `--quiet`. */
  success(message: string): void;
  /** `[+]` a line someone wrote, shown even with `--quiet`. */
  line(message: string): void;
  /** `[*]` a line shown even with `--quiet` (where the server listens). */
  notice(message: string): void;
  /** `[!]` to stderr, always. */
  error(message: string): void;
}

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Print only errors and notices. */
  readonly quiet?: boolean;
  /** Colour the prefixes (default: stdout is a terminal and NO_COLOR unset). */
  readonly color?: boolean;
  /** The buffered output to use (default: a new one). */
  readonly output?: Output;
  /** Where lines go instead (tests); overrides `output`. */
  readonly write?: (line: string, stream: Stream) => void;
  /** Longest message shown, in characters (default {@link MAX_SHOWN_CHARS}); see {@link shown}. */
  readonly maxChars?: number;
}

/** Whether stdout is a terminal that wants colour (`NO_COLOR` unset). */
export function wantsColor(): boolean {
  return Deno.stdout.isTerminal() && !Deno.noColor;
}

/**
 * A {@link Logger}. Every message passes through {@link shown} here, at the
 * one place text reaches the screen: escaped by {@link printable}, and cut to
 * `maxChars` with its size given.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const color = options.color ?? wantsColor();
  const output = options.output ?? new Output();
  const write = options.write ?? ((line: string, stream: Stream) => output.write(line, stream));
  const paint = (prefix: string, hue: "cyan" | "green" | "red") =>
    color ? styleText(hue, prefix, { validateStream: false }) : prefix;
  const [info, success, error] = [paint("[*]", "cyan"), paint("[+]", "green"), paint("[!]", "red")];
  const quiet = options.quiet ?? false;
  const maxChars = options.maxChars ?? MAX_SHOWN_CHARS;
  const safe = (m: string) => shown(m, maxChars);
  return {
    quiet,
    info: (m) => quiet || write(`${info} ${safe(m)}`, "stdout"),
    success: (m) => quiet || write(`${success} ${safe(m)}`, "stdout"),
    line: (m) => write(`${success} ${safe(m)}`, "stdout"),
    notice: (m) => write(`${info} ${safe(m)}`, "stdout"),
    error: (m) => write(`${error} ${safe(m)}`, "stderr"),
  };
}

// ───────────────────────────────────────────────────────────────────────────
// 3. Input
// ───────────────────────────────────────────────────────────────────────────

/** One line of input: its text, or why it was refused (too long, not UTF-8). */
export type InputLine = { readonly text: string } | { readonly refused: string };

/** Lines typed or piped in, one at a time. */
export interface LineSource {
  /** The next line, or `null` at the end of input (Ctrl-D, end of the pipe). */
  next(): Promise<InputLine | null>;
  /** Stops reading (idempotent). */
  close(): void;
}

/** Options of {@link inputLines}. */
export interface InputOptions {
  /** Longest line accepted, in UTF-8 bytes; longer ones are refused one by one. */
  readonly maxBytes: number;
  /** Bytes to read; default stdin. */
  readonly stream?: ReadableStream<Uint8Array>;
  /** Use line editing with this prompt (a terminal); default: plain lines. */
  readonly prompt?: string;
  /** Where output goes, so that the prompt stays below it. */
  readonly output?: Output;
  /** Ctrl-C typed at the prompt (a terminal in raw mode sends no SIGINT). */
  readonly onInterrupt?: () => void;
}

/**
 * The user's lines. At a terminal (`prompt` set), `node:readline` gives line
 * editing, history (Up arrow) and a prompt redrawn under incoming output;
 * otherwise the transport's bounded {@link LineReader} reads the stream.
 * Either way a line over `maxBytes` is refused on its own and reading goes on.
 */
export function inputLines(options: InputOptions): LineSource {
  return options.prompt === undefined ? pipedLines(options) : typedLines(options);
}

function pipedLines(options: InputOptions): LineSource {
  const reader = new LineReader(options.stream ?? Deno.stdin.readable, {
    maxLine: options.maxBytes,
    allowUnterminated: true,
    skipBadLines: true,
  });
  return {
    async next() {
      try {
        const text = await reader.readLine();
        return text === null ? null : { text };
      } catch (error) {
        if (error instanceof LineError) return { refused: error.message };
        throw error;
      }
    },
    close: () => reader.cancel(),
  };
}

function typedLines(options: InputOptions): LineSource {
  const lines: (InputLine | null)[] = [];
  let wake: (() => void) | undefined;
  const push = (line: InputLine | null) => {
    lines.push(line);
    wake?.();
  };
  const prompt = createInterface({
    input: process.stdin,
    // Through the output's queue: the echo never blocks, and stays in order with the log.
    output: options.output?.terminal() ?? process.stdout,
    prompt: options.prompt,
    terminal: true,
    historySize: 500,
  });
  options.output?.attachPrompt(prompt);
  prompt.on("line", (text: string) => {
    const bytes = encoder.encode(text).length;
    push(
      bytes > options.maxBytes
        ? { refused: `line of ${bytes} bytes is longer than ${options.maxBytes} bytes` }
        : { text },
    );
    prompt.prompt();
  });
  prompt.on("SIGINT", () => {
    // As in a shell: Ctrl-C first drops a half-typed line; on an empty line it leaves.
    if (options.output?.dropTypedLine()) return;
    if (options.onInterrupt) options.onInterrupt();
    else push(null);
  });
  prompt.on("close", () => push(null));
  prompt.prompt();
  let closed = false;
  return {
    async next() {
      while (lines.length === 0) await new Promise<void>((resolve) => wake = resolve);
      return lines.shift()!;
    },
    close() {
      if (closed) return;
      closed = true;
      options.output?.detachPrompt();
      prompt.close();
      process.stdin.pause?.();
    },
  };
}

// ───────────────────────────────────────────────────────────────────────────
// 4. Flags
// ───────────────────────────────────────────────────────────────────────────

/** Flag definitions in `node:util` `parseArgs` form. */
export type FlagSpec = Record<string, { type: "string" | "boolean"; short?: string }>;

/** The flags both scripts take. */
export const COMMON_FLAGS: FlagSpec = Object.freeze({
  host: { type: "string" },
  port: { type: "string" },
  "max-line": { type: "string" },
  keepalive: { type: "string" },
  name: { type: "string" },
  toy: { type: "boolean" },
  wire: { type: "boolean" },
  "private-key": { type: "string" },
  password: { type: "boolean" },
  "password-file": { type: "string" },
  quiet: { type: "boolean" },
  verbose: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean" },
});

/** A parsed command line: options for the library call, plus `--quiet` and `--help`. */
export interface ParsedCommand<T> {
  /** Options for `startServer` / `runClient`. */
  options: T;
  /** `--quiet`. */
  quiet: boolean;
  /** `--help`. */
  help: boolean;
  /** `--version`. */
  version?: boolean;
}

/** The package's version, from deno.json. */
export const VERSION: string = denoJson.version;

/** Each script's installed command: bin/dhx-server.ts and bin/dhx-client.ts run them under these names. */
export const INSTALLED_NAMES: Readonly<{ "server.ts": string; "client.ts": string }> = Object
  .freeze({ "server.ts": "dhx-server", "client.ts": "dhx-client" });

/** One of the two scripts. */
export type Script = keyof typeof INSTALLED_NAMES;

/**
 * The command that runs `script`, as `--help` shows it: the installed name
 * when the entry module is bin/dhx-server.ts or bin/dhx-client.ts (what `deno install
 * -g` installs), otherwise `deno run --allow-net server.ts`.
 *
 * @param mainModule the entry module's URL (default: this process's)
 */
export function commandName(script: Script, mainModule: string = Deno.mainModule): string {
  const installed = INSTALLED_NAMES[script];
  const file = mainModule.slice(mainModule.lastIndexOf("/") + 1);
  return file === `${installed}.ts` ? installed : `deno run --allow-net ${script}`;
}

/** What `--version` prints: `dhx-server 0.1.0 (protocol dhx/1, Deno 2.9.6)`. */
export function versionLine(script: Script): string {
  return `${INSTALLED_NAMES[script]} ${VERSION} (protocol ${PROTOCOL}, Deno ${Deno.version.deno})`;
}

/**
 * Parsed flag values with typed, checked accessors. Each accessor returns
 * `undefined` for an absent flag and throws {@link UsageError} for a bad value.
 */
export class Flags {
  readonly #values: Record<string, string | boolean | undefined>;

  /**
   * Wraps parsed values.
   *
   * @param values the output of `parseArgs`
   */
  constructor(values: Record<string, string | boolean | undefined>) {
    this.#values = values;
  }

  /** Whether the flag was given. */
  has(name: string): boolean {
    return this.#values[name] !== undefined;
  }

  /** A boolean flag. */
  boolean(name: string): boolean {
    return this.#values[name] === true;
  }

  /** A string flag as given. */
  string(name: string): string | undefined {
    const value = this.#values[name];
    return typeof value === "string" ? value : undefined;
  }

  /**
   * A host name or address (`--host`); an IPv6 address may come in brackets,
   * as in a URL (`[::1]`), or without (`::1`).
   */
  host(name: string): string | undefined {
    const value = this.string(name);
    if (value === undefined) return undefined;
    const host = /^\[.*\]$/.test(value) ? value.slice(1, -1) : value;
    if (host === "" || /[\s/\[\]]/.test(host)) {
      throw new UsageError(
        `--${name} must be a host name or an address (127.0.0.1, ::1, 0.0.0.0), got ${
          JSON.stringify(value)
        }`,
      );
    }
    return host;
  }

  /** A whole number within [min, max]. */
  integer(name: string, min: number, max: number): number | undefined {
    const value = this.string(name);
    if (value === undefined) return undefined;
    const n = /^[0-9]+$/.test(value) ? Number(value) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new UsageError(
        `--${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`,
      );
    }
    return n;
  }

  /**
   * A duration in seconds (decimals allowed, at most a day), as whole
   * milliseconds. It must come to at least 1 ms; with `allowZero`, exactly 0
   * is accepted too (it turns the feature off).
   */
  milliseconds(name: string, allowZero = false): number | undefined {
    const value = this.string(name);
    if (value === undefined) return undefined;
    const seconds = /^[0-9]+(\.[0-9]+)?$/.test(value) ? Number(value) : NaN;
    const ms = Math.round(seconds * 1000);
    if (allowZero && seconds === 0) return 0;
    if (!(ms >= 1 && seconds <= 86_400)) {
      throw new UsageError(
        `--${name} must be a number of seconds from 0.001 to 86400${
          allowZero ? " (or 0 for off)" : ""
        }, got ${JSON.stringify(value)}`,
      );
    }
    return ms;
  }

  /** A big decimal integer (`--prime`, `--private-key`), at most as long as an 8192-bit number. */
  bigint(name: string): bigint | undefined {
    const value = this.string(name);
    if (value === undefined) return undefined;
    if (!/^[0-9]+$/.test(value) || value.length > MAX_WIRE_DIGITS) {
      throw new UsageError(
        `--${name} must be a decimal number of at most ${MAX_WIRE_DIGITS} digits, got ${
          JSON.stringify(value.length > 40 ? value.slice(0, 37) + "..." : value)
        }`,
      );
    }
    return BigInt(value);
  }
}

/**
 * Parses a command line strictly against {@link COMMON_FLAGS} plus `extra`:
 * unknown flags and stray arguments are errors, and so is `--quiet` with
 * `--verbose`. A negative number after a flag (`--port -1`) is taken as its
 * value, so that it is refused for what it is.
 *
 * @throws {UsageError}
 */
export function parseFlags(args: string[], extra: FlagSpec): Flags {
  const options = { ...COMMON_FLAGS, ...extra };
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = args[i].startsWith("--") ? args[i].slice(2) : "";
    if (options[name]?.type === "string" && /^-[0-9.]/.test(args[i + 1] ?? "")) {
      joined.push(`${args[i]}=${args[++i]}`);
    } else {
      joined.push(args[i]);
    }
  }
  let flags: Flags;
  try {
    const { values } = parseArgs({ args: joined, options, strict: true, allowPositionals: false });
    flags = new Flags(values as Record<string, string | boolean | undefined>);
  } catch (error) {
    throw new UsageError((error as Error).message.split("\n")[0]);
  }
  if (flags.boolean("quiet") && flags.boolean("verbose")) {
    throw new UsageError("--quiet and --verbose exclude each other");
  }
  return flags;
}

/**
 * The start of both scripts' `main`: parses `args` with `parse`; prints a
 * usage error (one `[!]` line), the `--help` text (`usage` of the command
 * actually run, see {@link commandName}) or the `--version` line. Returns
 * the command to run, or the exit code when there is nothing to run.
 */
export function readCommand<C extends ParsedCommand<unknown>>(
  args: string[],
  parse: (args: string[]) => C,
  usage: (command: string) => string,
  output: Output,
  script: Script,
): C | number {
  let command: C;
  try {
    command = parse(args);
  } catch (error) {
    createLogger({ output }).error(`${sentence(describeError(error))} (see --help)`);
    output.flush();
    return EXIT.USAGE;
  }
  if (command.help) console.log(usage(commandName(script)));
  else if (command.version) console.log(versionLine(script));
  else return command;
  return EXIT.OK;
}

// ───────────────────────────────────────────────────────────────────────────
// 5. Descriptions
// ───────────────────────────────────────────────────────────────────────────

/** `text` with its first letter upper-case: error texts are written to follow a colon. */
export function sentence(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** "1 client", "2 clients". */
export function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

/**
 * A one-line reason for an error of the network layer or the protocol, for
 * the `[!]` line (never a stack trace).
 */
export function describeError(error: unknown): string {
  if (error instanceof ProtocolError || error instanceof UsageError) return error.message;
  if (error instanceof Deno.errors.ConnectionRefused) return "connection refused";
  if (error instanceof Deno.errors.ConnectionReset) return "connection reset by peer";
  if (error instanceof Deno.errors.BrokenPipe) return "connection closed by peer";
  if (error instanceof Deno.errors.AddrInUse) return "address already in use";
  if (error instanceof Deno.errors.PermissionDenied) {
    return "permission denied (run with --allow-net)";
  }
  if (error instanceof Error) return error.message.split("\n")[0];
  return String(error);
}

/**
 * Why listening on `host`:`port` failed, with what to do about it: an
 * address that is not this machine's, a port in use, a port that needs
 * administrator rights, a name that does not resolve.
 */
export function describeListenError(error: unknown, host: string, port: number): string {
  const message = String((error as Error)?.message);
  if (error instanceof Deno.errors.AddrNotAvailable || /os error (99|49)\b/.test(message)) {
    return `${host} is not an address of this machine; use 0.0.0.0 to listen on all (:: for IPv6 too)`;
  }
  if (error instanceof Deno.errors.AddrInUse) {
    return `port ${port} is already in use on ${host} (another server?); choose another with --port, or --port 0 for any free one`;
  }
  if (error instanceof Deno.errors.PermissionDenied && port < 1024) {
    return `port ${port} is below 1024 and needs administrator rights; choose one from 1024 up with --port`;
  }
  if (/failed to lookup address|name or service not known|nodename nor servname/i.test(message)) {
    return `no address found for ${
      JSON.stringify(host)
    }; use an address of this machine (127.0.0.1, ::1, or 0.0.0.0 for all)`;
  }
  return describeError(error);
}

/**
 * A bigint for people: in full when `reveal` (toy mode, `--verbose`),
 * otherwise its size and a short digest, so secrets never reach a log.
 */
export function describeBigint(n: bigint, reveal: boolean): string {
  if (reveal) return n.toString();
  const digest = sha256(n.toString(16)).subarray(0, 4).toHex();
  return `${bitLength(n)}-bit number, sha256 ${digest}…`;
}

/** Where the room password comes from: never the command line, where `ps` shows it. */
export type PasswordSource = { readonly terminal: true } | { readonly file: string };

/**
 * `--password` (ask at the terminal) or `--password-file FILE`; undefined for neither.
 *
 * @throws {UsageError} for both
 */
export function passwordSource(flags: Flags): PasswordSource | undefined {
  const file = flags.string("password-file");
  if (file !== undefined && flags.boolean("password")) {
    throw new UsageError("--password and --password-file exclude each other");
  }
  if (file !== undefined) return { file };
  return flags.boolean("password") ? { terminal: true } : undefined;
}

/**
 * Reads the room password: the first line of the file, or, at a terminal,
 * twice with hidden input.
 *
 * @param confirm ask twice (a server setting the password)
 * @throws {UsageError} for `--password` when stdin is not a terminal
 * @throws {Error} for an unreadable file, an empty password, two different entries
 */
export async function readPassword(source: PasswordSource, confirm: boolean): Promise<string> {
  if ("file" in source) {
    let text: string;
    try {
      text = await Deno.readTextFile(source.file);
    } catch (error) {
      throw new Error(`cannot read the password file ${source.file}: ${describeError(error)}`);
    }
    const password = text.split(/\r?\n/)[0];
    if (password === "") throw new Error(`the first line of ${source.file} is empty`);
    return password;
  }
  if (!Deno.stdin.isTerminal()) {
    throw new UsageError(
      "--password asks at a terminal, and stdin is not one: use --password-file FILE",
    );
  }
  const password = await readHidden("Room password: ");
  if (password === "") throw new Error("the password is empty");
  if (confirm && await readHidden("Same password again: ") !== password) {
    throw new Error("the two passwords differ");
  }
  return password;
}

/** One line typed at the terminal without echo (Backspace edits; Ctrl-C gives up). */
async function readHidden(prompt: string): Promise<string> {
  const encoder = new TextEncoder();
  Deno.stderr.writeSync(encoder.encode(prompt));
  const bytes: number[] = [];
  const buffer = new Uint8Array(256);
  Deno.stdin.setRaw(true);
  try {
    for (;;) {
      const n = await Deno.stdin.read(buffer);
      if (n === null) break;
      for (const byte of buffer.subarray(0, n)) {
        if (byte === 0x0d || byte === 0x0a) return new TextDecoder().decode(Uint8Array.from(bytes));
        if (byte === 0x03) throw new Error("interrupted while reading the password");
        if (byte === 0x7f || byte === 0x08) {
          // Drop the last character, with all its UTF-8 continuation bytes.
          while (bytes.length > 0 && (bytes.pop()! & 0xc0) === 0x80);
        } else if (byte >= 0x20) bytes.push(byte);
      }
    }
    return new TextDecoder().decode(Uint8Array.from(bytes));
  } finally {
    Deno.stdin.setRaw(false);
    Deno.stderr.writeSync(encoder.encode("\n"));
  }
}

/**
 * The whole computation of a session, one step a line, for `--verbose` and
 * toy mode: a lesson in Diffie-Hellman. Prints secrets; never call it
 * otherwise.
 *
 * @param hostKey the server's host key fingerprint, when a proof was made or checked
 */
export function explainSession(session: Session, hostKey?: string): string[] {
  const [mine, theirs] = session.role === "server" ? ["b", "A"] : ["a", "B"];
  const okm = session.keySchedule;
  const part = (name: keyof typeof KEY_SCHEDULE_LAYOUT) =>
    okm.subarray(...KEY_SCHEDULE_LAYOUT[name]).toHex();
  const [password, proof] = [explainPassword(session), explainProof(session, hostKey)];
  const base = session.passwordGenerator ? "G" : "g";
  const lines = [
    `p = ${session.group.p}`,
    `g = ${session.group.g}`,
    ...password,
    `private key ${mine} = ${session.privateKey}`,
    `public key ${mine.toUpperCase()} = ${base}^${mine} mod p = ${session.publicKey}`,
    `peer public key ${theirs} = ${session.peerPublicKey}`,
    `shared secret Z = ${theirs}^${mine} mod p = ${session.sharedSecret}`,
    `transcript hash th = SHA-256(hello LF key LF) = ${session.transcriptHash.toHex()}`,
    ...proof,
    `key schedule = HKDF-SHA-256(Z, th, "dhx/1 key schedule", 136 bytes):`,
  ];
  if (session.cipher === TOY_CIPHER) {
    lines.push(`  xor8 key byte = Z mod 256 = ${session.sharedSecret % 256n}`);
  } else {
    lines.push(
      `  client→server encryption key ${part("clientEncryption")}`,
      `  client→server MAC key        ${part("clientMac")}`,
      `  server→client encryption key ${part("serverEncryption")}`,
      `  server→client MAC key        ${part("serverMac")}`,
    );
  }
  lines.push(`  fingerprint = ${session.fingerprint}`);
  return lines;
}

/**
 * Revision 3 for the lesson (`--toy`, `--verbose`): how the room password
 * became the generator G, h and then G = h² mod p, which replaces g. Empty
 * without a password. Prints h and G: only where secrets may be shown.
 */
export function explainPassword(session: Session): string[] {
  const password = session.passwordGenerator;
  if (!password) return [];
  return [
    `room password: h = HKDF-SHA-256(password, nonce, "dhx/1 password generator" ‖ 0 ‖ p ‖ ${password.counter}) mod p = ${password.hash}`,
    `G = h² mod p = ${password.generator}: the password's G replaces g, so without the password no one gets the same Z`,
  ];
}

/**
 * Revision 3 for the lesson: the host key proof, made by the server and
 * checked by the client (empty if none was asked for).
 *
 * @param hostKey the server's host key fingerprint
 */
export function explainProof(session: Session, hostKey?: string): string[] {
  if (!session.proofRequested || !hostKey) return [];
  return [
    `host key proof = Ed25519 signature of "dhx/1 host key proof" ‖ 0 ‖ th with host key ${hostKey}: ${
      session.role === "server" ? "made and sent" : "checked"
    }`,
  ];
}

/** Numbers of at most this many bits are shown in full in the worked steps; longer ones as digests. */
const SMALL_NUMBER_BITS = 64;

/**
 * One worked step of the lesson, e.g. `A = g^a mod p = 5^5 mod 23 = 3125 mod
 * 23 = 20`. With big numbers, or without `reveal`, the formula and the
 * result's size and short digest instead of digits.
 *
 * @param formula the step's name and formula, e.g. "A = g^a mod p"
 */
export function describeWorkedPower(formula: string, step: WorkedPower, reveal: boolean): string {
  if (!reveal || bitLength(step.modulus) > SMALL_NUMBER_BITS) {
    return `${formula} = ${describeBigint(step.result, false)}`;
  }
  const power = step.power === undefined ? "" : ` = ${step.power} mod ${step.modulus}`;
  return `${formula} = ${step.base}^${step.exponent} mod ${step.modulus}${power} = ${step.result}`;
}

/**
 * The private key line of the lesson: `a = 5` for small numbers shown
 * (`reveal`), its size only otherwise.
 *
 * @param name "a" (client) or "b" (server)
 */
export function describePrivateKey(
  name: string,
  privateKey: bigint,
  p: bigint,
  reveal: boolean,
): string {
  return reveal && bitLength(p) <= SMALL_NUMBER_BITS
    ? `Private key ${name} = ${privateKey}`
    : `Private key ${name}: a ${bitLength(privateKey)}-bit number, kept secret`;
}

/** Most bytes shown in hex on one `--wire` line; longer records show their start. */
const WIRE_BYTES = 16;

/** Most characters of a frame or a text shown on one `--wire` line. */
const WIRE_CHARS = 200;

function shorten(text: string, max = WIRE_CHARS): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} characters)`;
}

function hexBytes(bytes: Uint8Array): string {
  const shown = [...bytes.subarray(0, WIRE_BYTES)].map((b) => b.toString(16).padStart(2, "0"));
  return shown.join(" ") + (bytes.length > WIRE_BYTES ? ` … (${bytes.length} bytes)` : "");
}

/**
 * One `--wire` line: a frame as it crosses the network (what an eavesdropper
 * sees). With `sharedSecret` (toy mode: the xor8 cipher), a record's
 * encryption step by step: text → bytes → XOR key → bytes on the wire →
 * frame when sent, and the reverse when received.
 *
 * @param peer who is at the other end, on a server's lines ("sent to 127.0.0.1:5555")
 */
export function describeWireLine(
  direction: "sent" | "received",
  line: string,
  sharedSecret?: bigint,
  peer?: string,
): string {
  const who = peer === undefined
    ? direction
    : `${direction} ${direction === "sent" ? "to" : "from"} ${peer}`;
  const record = sharedSecret === undefined ? undefined : xor8Record(line, sharedSecret);
  if (!record) return `${who}: ${shorten(line)}`;
  const text = shorten(JSON.stringify(new TextDecoder().decode(record.plaintext)), 60);
  const plain = `bytes ${hexBytes(record.plaintext)}`;
  const xor = `XOR ${record.key}`;
  const cipher = hexBytes(record.ciphertext);
  if (record.plaintext.length === 0) {
    return `${who}: ${text} (no bytes to encrypt) ↔ ${shorten(line)}`;
  }
  return direction === "sent"
    ? `${who}: ${text} → ${plain} → ${xor} → ${cipher} → ${shorten(line)}`
    : `${who}: ${shorten(line)} → ${cipher} → ${xor} → ${plain} → ${text}`;
}

/**
 * The `--wire` view of one connection: every line sent and received, as
 * {@link describeWireLine} shows it, through a logger. Give it to the
 * connection's `onLine`; once the handshake is done, set {@link session} so
 * that toy records are taken apart.
 */
export class WireView {
  readonly #log: Logger;
  #sharedSecret: bigint | undefined;
  /** Who is at the other end, for a server's lines ("127.0.0.1:5555"); none for a client. */
  peer: string | undefined;

  /**
   * Makes the view of one connection.
   *
   * @param log where the lines go (as info lines)
   */
  constructor(log: Logger) {
    this.#log = log;
  }

  /** The session agreed: with xor8, records are shown being encrypted and decrypted. */
  set session(session: Session) {
    this.#sharedSecret = session.cipher === TOY_CIPHER ? session.sharedSecret : undefined;
  }

  /** Shows one line (for `LineConnectionOptions.onLine`). */
  line = (direction: "sent" | "received", line: string): void => {
    if (this.#log.quiet) return;
    this.#log.info(describeWireLine(direction, line, this.#sharedSecret, this.peer));
  };
}

/**
 * One side's own key as the lesson shows it: `Private key b = 3` and
 * `B = g^b mod p = 5^3 mod 23 = 125 mod 23 = 10` (size and digest for big
 * numbers); with a room password's generator, `B = G^b mod p = …`.
 *
 * @param role whose key: the client's is a, the server's b
 * @param generator a room password's G, which replaces g (revision 3)
 */
export function describeOwnKey(
  role: Role,
  group: DhGroup,
  privateKey: bigint,
  reveal: boolean,
  generator?: bigint,
): string[] {
  const [x, X] = role === "client" ? ["a", "A"] : ["b", "B"];
  const [base, name] = generator === undefined ? [group.g, "g"] : [generator, "G"];
  return [
    describePrivateKey(x, privateKey, group.p, reveal),
    describeWorkedPower(
      `${X} = ${name}^${x} mod p`,
      workedPower(base, privateKey, group.p),
      reveal,
    ),
  ];
}

/**
 * The handshake as it happens on one side, a line a step. Always the key
 * lines (received, sent, shared key: digits with `reveal`, digests
 * otherwise); with `reveal` (toy mode, `--verbose`) the worked steps too:
 * the client's a and `A = g^a mod p` before it sends A, then `Z = B^a mod p`;
 * the server's `Z = A^b mod p` (and its b and B, unless `ownKeyShown`: a
 * fixed key is shown once at start).
 */
export function describeHandshake(
  session: Session,
  reveal: boolean,
  ownKeyShown = false,
): string[] {
  const { group, role } = session;
  const [x, peerKey, peer] = role === "client" ? ["a", "B", "server"] : ["b", "A", "client"];
  const received = `Received ${peer} public key: ${describeBigint(session.peerPublicKey, reveal)}`;
  const sending = `Sending public key: ${describeBigint(session.publicKey, reveal)}`;
  const shared = `Shared key calculated: ${describeBigint(session.sharedSecret, reveal)}`;
  // A password's G changes with every connection: the own key is worked out again.
  const generator = session.passwordGenerator?.generator;
  const own = reveal && (!ownKeyShown || generator !== undefined)
    ? describeOwnKey(role, group, session.privateKey, true, generator)
    : [];
  const secret = reveal
    ? [
      describeWorkedPower(
        `Z = ${peerKey}^${x} mod p`,
        workedPower(session.peerPublicKey, session.privateKey, group.p),
        true,
      ),
    ]
    : [];
  // The client hears B first; the server sends B first (in its hello).
  if (role === "client") return [received, ...own, sending, ...secret, shared];
  return [...own, ...(reveal ? [sending] : []), received, ...secret, shared];
}
