/**
 * Tests of console.ts's output: the bounded queue that never waits for the
 * terminal (a writer that never completes, dropped lines counted and
 * reported, partial writes), lines cut to a sane length, and the redraw of a
 * prompt and a wrapped half-typed line under incoming lines, checked on a
 * small terminal emulator (60 columns, wide characters and emoji).
 *
 * Needs no permissions.
 */

import assert from "node:assert/strict";
import { createInterface, type Interface } from "node:readline";
import { PassThrough } from "node:stream";
import {
  createLogger,
  grouped,
  MAX_SHOWN_CHARS,
  Output,
  printable,
  shown,
  type Sink,
  type Stream,
} from "../console.ts";
import { GROUPS } from "../dh.ts";
import { unsafeCharacters, within } from "./support.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ───────────────────────────────────────────────────────────────────────────
// Lines cut to a sane length
// ───────────────────────────────────────────────────────────────────────────

Deno.test("shown: a short line is only escaped", () => {
  for (const text of ["", "hello", "Grüße 🙂 界", "a\x1b[2Jb", "x".repeat(MAX_SHOWN_CHARS)]) {
    assert.equal(shown(text), printable(text));
  }
});

Deno.test("shown: a long line is cut, and says its whole size in bytes", () => {
  const text = "\x01".repeat(786_300);
  const line = shown(text);
  const suffix = "… (786,300 bytes)";
  assert.ok(line.endsWith(suffix), line.slice(-40));
  const kept = line.slice(0, -suffix.length);
  assert.ok(kept.length <= MAX_SHOWN_CHARS, `${kept.length} characters kept`);
  assert.ok(kept.length > MAX_SHOWN_CHARS - 10, "cut near the limit, not far before");
  // Whole escapes only: the kept part is the escape of a prefix of the text.
  assert.equal(kept, printable("\x01".repeat(kept.length / "\\u{1}".length)));
  assert.deepEqual(unsafeCharacters(line), []);
});

Deno.test("shown: the limit counts escapes; a cut never splits an emoji or an escape", () => {
  for (const unit of ["🙂", "\u202e", "a", "界", "\x01"]) {
    for (const max of [1, 2, 7, 10, 11, 100]) {
      const text = unit.repeat(200);
      const line = shown(text, max);
      const bytes = encoder.encode(text).length;
      const suffix = `… (${grouped(bytes)} bytes)`;
      assert.ok(line.endsWith(suffix), `${JSON.stringify(unit)} max ${max}: ${line}`);
      const kept = line.slice(0, -suffix.length);
      assert.ok(kept.length <= max, `${JSON.stringify(unit)} max ${max}: ${kept}`);
      assert.ok(text.startsWith(unit.repeat(kept.length / printable(unit).length)));
      assert.equal(kept, printable(unit).repeat(kept.length / printable(unit).length));
    }
  }
  assert.equal(grouped(1234), "1,234");
  assert.equal(grouped(7), "7");
});

Deno.test("shown: every number --verbose shows is shown whole, up to ffdhe8192's", () => {
  const largest = (GROUPS.ffdhe8192.p - 1n).toString();
  // The longest --verbose line: the server's, with the peer's address before it.
  const line = `[2001:db8::1234:5678]:65535: shared secret Z = A^b mod p = ${largest}`;
  assert.equal(shown(line), line);
});

Deno.test("createLogger: every level cuts a long message to maxChars", () => {
  const lines: string[] = [];
  const log = createLogger({ color: false, maxChars: 50, write: (line) => lines.push(line) });
  const text = "y".repeat(10_000);
  log.info(text);
  log.line(`bob: ${text}`);
  log.error(text);
  assert.deepEqual(lines, [
    `[*] ${"y".repeat(50)}… (10,000 bytes)`,
    `[+] bob: ${"y".repeat(45)}… (10,005 bytes)`,
    `[!] ${"y".repeat(50)}… (10,000 bytes)`,
  ]);
});

// ───────────────────────────────────────────────────────────────────────────
// The bounded queue
// ───────────────────────────────────────────────────────────────────────────

/** A terminal that takes bytes only while open; what it took, per stream. */
class FakeTerminal {
  readonly taken: Record<Stream, string> = { stdout: "", stderr: "" };
  writes = 0;
  #open: boolean;
  #waiting: (() => void)[] = [];
  /** Most bytes taken per write (a partial write takes fewer than given). */
  readonly chunk: number;

  constructor(open = true, chunk = Infinity) {
    this.#open = open;
    this.chunk = chunk;
  }

  sink: Sink = async (stream, bytes) => {
    this.writes++;
    while (!this.#open) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    const n = Math.min(bytes.length, this.chunk);
    this.taken[stream] += decoder.decode(bytes.subarray(0, n), { stream: true });
    return n;
  };

  /** Starts taking bytes (a reader comes back). */
  open(): void {
    this.#open = true;
    for (const resolve of this.#waiting.splice(0)) resolve();
  }
}

Deno.test("Output: a terminal that never reads never makes a write wait; past the bound, lines are dropped and counted", async () => {
  const terminal = new FakeTerminal(false); // never opened: every write stays pending
  const output = new Output({ maxPendingBytes: 10_000, sink: terminal.sink });
  const line = "z".repeat(99); // 100 bytes with its LF
  for (let i = 0; i < 1000; i++) output.write(line);
  output.flush();
  assert.equal(output.pendingBytes, 10_000, "exactly the bound is held");
  assert.equal(output.dropped, 900);
  assert.equal(terminal.writes, 1, "one write under way, the rest waits in the queue");
  // More lines while stuck: dropped at once, nothing more held.
  for (let i = 0; i < 10; i++) output.write("more", "stderr");
  output.flush();
  assert.equal(output.dropped, 910);
  assert.equal(output.pendingBytes, 10_000);
  // settle() is bounded: a stuck terminal does not keep a program from ending.
  const started = performance.now();
  await within(output.settle(200), 5000, "settle on a stuck terminal");
  assert.ok(performance.now() - started >= 150, "settle waited for the terminal a while");
});

Deno.test("Output: once the terminal catches up, one line says how many lines were dropped", async () => {
  const terminal = new FakeTerminal(false);
  const output = new Output({ maxPendingBytes: 1000, sink: terminal.sink });
  for (let i = 0; i < 1244; i++) output.write(`line ${i}`);
  output.flush();
  const kept = 1244 - output.dropped;
  assert.ok(output.dropped >= 1000 && kept > 0, `dropped ${output.dropped}`);
  terminal.open();
  await within(output.settle(5000), 6000, "settle");
  const shownLines = terminal.taken.stdout.split("\n").filter((l) => l !== "");
  assert.deepEqual(shownLines, Array.from({ length: kept }, (_, i) => `line ${i}`));
  assert.equal(
    terminal.taken.stderr,
    `[!] ${grouped(output.dropped)} log lines dropped: the terminal is too slow\n`,
  );
  // Reported once: new lines flow, no second report.
  output.write("after");
  await within(output.settle(5000), 6000, "settle");
  assert.ok(terminal.taken.stdout.endsWith("line " + (kept - 1) + "\nafter\n"));
  assert.equal(terminal.taken.stderr.split("\n").length, 2);
});

Deno.test("Output: partial writes go on where they stopped; order across streams is kept", async () => {
  const terminal = new FakeTerminal(true, 7);
  const taken: string[] = [];
  const sink: Sink = async (stream, bytes) => {
    const n = await terminal.sink(stream, bytes);
    taken.push(stream);
    return n;
  };
  const output = new Output({ sink });
  const expected: Record<Stream, string> = { stdout: "", stderr: "" };
  for (let i = 0; i < 50; i++) {
    const stream: Stream = i % 3 === 0 ? "stderr" : "stdout";
    const line = `${i}: Grüße 🙂 ${"w".repeat(i)}`;
    output.write(line, stream);
    expected[stream] += line + "\n";
    if (i % 10 === 9) await output.settle(5000);
  }
  await within(output.settle(5000), 6000, "settle");
  assert.deepEqual(terminal.taken, expected);
  assert.equal(output.dropped, 0);
  assert.equal(output.pendingBytes, 0);
});

Deno.test("Output: a closed stream (| head) drops its lines without failing; the other goes on", async () => {
  const taken: Record<Stream, string> = { stdout: "", stderr: "" };
  const output = new Output({
    sink: (stream, bytes) => {
      if (stream === "stdout") return Promise.reject(new Deno.errors.BrokenPipe("closed"));
      taken[stream] += decoder.decode(bytes);
      return Promise.resolve(bytes.length);
    },
  });
  output.write("lost");
  output.write("error one", "stderr");
  await within(output.settle(5000), 6000, "settle");
  output.write("lost too");
  output.write("error two", "stderr");
  await within(output.settle(5000), 6000, "settle");
  assert.equal(taken.stderr, "error one\nerror two\n");
  assert.equal(output.pendingBytes, 0);
});

// ───────────────────────────────────────────────────────────────────────────
// The prompt kept below incoming lines, on a small terminal emulator
// ───────────────────────────────────────────────────────────────────────────

/** A control sequence these tests know, built without a control character in a regex literal. */
const CSI = new RegExp("^" + String.fromCharCode(0x1b) + "\\[(\\d*)([ABCDGJ])");

/** Columns a character takes, as terminals (and readline) count them: the test's characters only. */
function widthOf(c: string): number {
  return c.codePointAt(0)! >= 0x1100 ? 2 : 1;
}

/**
 * Just enough of a VT100 for these tests: printable characters with
 * autowrap (the cursor waits at the margin until the next character),
 * CR, LF (as CR LF: the tty's output processing), and CSI A, B, C, D, G, J.
 */
class Screen {
  readonly rows: string[][] = [[]];
  row = 0;
  col = 0;
  #pendingWrap = false;
  readonly width: number;

  constructor(width: number) {
    this.width = width;
  }

  feed(text: string): void {
    for (let i = 0; i < text.length;) {
      if (text[i] === "\x1b") {
        const match = CSI.exec(text.slice(i));
        assert.ok(match, `unexpected escape ${JSON.stringify(text.slice(i, i + 8))}`);
        const n = match[1] === "" ? 1 : Number(match[1]);
        this.#pendingWrap = false;
        if (match[2] === "A") this.row = Math.max(0, this.row - n);
        if (match[2] === "B") this.row += n;
        if (match[2] === "C") this.col = Math.min(this.col + n, this.width - 1);
        if (match[2] === "D") this.col = Math.max(0, this.col - n);
        if (match[2] === "G") this.col = Math.min(n - 1, this.width - 1);
        if (match[2] === "J") {
          this.#line().length = Math.min(this.#line().length, this.col);
          this.rows.length = this.row + 1;
        }
        i += match[0].length;
        continue;
      }
      const c = String.fromCodePoint(text.codePointAt(i)!);
      i += c.length;
      if (c === "\r") {
        this.col = 0;
        this.#pendingWrap = false;
      } else if (c === "\n") {
        this.row++;
        this.col = 0;
        this.#pendingWrap = false;
      } else {
        const w = widthOf(c);
        if (this.#pendingWrap || this.col + w > this.width) {
          this.row++;
          this.col = 0;
          this.#pendingWrap = false;
        }
        const line = this.#line();
        while (line.length < this.col) line.push(" ");
        line[this.col] = c;
        if (w === 2) line[this.col + 1] = "";
        this.col += w;
        if (this.col >= this.width) {
          this.col = this.width - 1;
          this.#pendingWrap = true;
        }
      }
    }
  }

  #line(): string[] {
    while (this.rows.length <= this.row) this.rows.push([]);
    return this.rows[this.row];
  }

  /** The screen's rows as text, trailing blanks and empty rows at the end dropped. */
  text(): string[] {
    const rows = this.rows.map((row) => row.join("").trimEnd());
    while (rows.length > 0 && rows.at(-1) === "") rows.pop();
    return rows;
  }
}

/** An Output on a {@link Screen} of `columns`, with a readline prompt typed into by the test. */
function terminalWithPrompt(columns = 60) {
  const screen = new Screen(columns);
  const failures: unknown[] = [];
  let raw = "";
  const output = new Output({
    columns: () => columns,
    sink: (_stream, bytes) => {
      const text = decoder.decode(bytes);
      raw += text;
      try {
        screen.feed(text);
      } catch (error) {
        failures.push(error); // Output would take a throw for a closed terminal
      }
      return Promise.resolve(bytes.length);
    },
  });
  const input = new PassThrough();
  const rl = createInterface({
    input,
    output: output.terminal(),
    prompt: "> ",
    terminal: true,
  }) as Interface & { line: string; cursor: number };
  output.attachPrompt(rl);
  rl.prompt();
  return {
    screen,
    output,
    rl,
    /** Types characters one at a time, as keys. */
    type(text: string) {
      for (const c of text) rl.write(c);
    },
    /** A key: "left", or a control key ("ctrl-a": home). */
    key(name: string) {
      const ctrl = name.startsWith("ctrl-");
      rl.write(null, { ctrl, name: ctrl ? name.slice(5) : name });
    },
    /** What was written since the last call. */
    takeRaw(): string {
      const taken = raw;
      raw = "";
      return taken;
    },
    async settle() {
      await within(output.settle(5000), 6000, "output settle");
      if (failures.length > 0) throw failures[0];
    },
    close() {
      output.detachPrompt();
      rl.close();
      input.destroy();
    },
  };
}

const IMPORTANT = "[+] server: IMPORTANT: meeting moved to 3pm";

Deno.test("redraw: 75 characters half-typed at 60 columns; an incoming line is printed above them, nothing erased", async () => {
  const t = terminalWithPrompt(60);
  try {
    t.output.write("[*] earlier line");
    await t.settle();
    t.type("x".repeat(75));
    await t.settle();
    assert.deepEqual(t.screen.text(), ["[*] earlier line", "> " + "x".repeat(58), "x".repeat(17)]);
    t.takeRaw();
    t.output.write(IMPORTANT);
    await t.settle();
    // Up one row (the typed line's first), clear down, the line, the prompt, cursor at column 18.
    assert.equal(
      t.takeRaw(),
      `\x1b[1A\r\x1b[J${IMPORTANT}\n> ${"x".repeat(75)}\x1b[18G`,
    );
    assert.deepEqual(t.screen.text(), [
      "[*] earlier line",
      IMPORTANT,
      "> " + "x".repeat(58),
      "x".repeat(17),
    ]);
    assert.deepEqual([t.screen.row, t.screen.col], [3, 17]);
    // Typing goes on where it was.
    t.type("yz");
    await t.settle();
    assert.equal(t.screen.text().at(-1), "x".repeat(17) + "yz");
    assert.equal(t.rl.line, "x".repeat(75) + "yz");
  } finally {
    t.close();
  }
});

Deno.test("redraw: the cursor inside a wrapped line stays where it was; several lines and both streams", async () => {
  const t = terminalWithPrompt(60);
  try {
    t.type("a".repeat(130)); // "> " + 130: three rows, the cursor on the third
    for (let i = 0; i < 100; i++) t.key("left"); // back to column 32 of the first row
    await t.settle();
    assert.deepEqual([t.screen.row, t.screen.col], [0, 32]);
    t.takeRaw();
    t.output.write("[+] one");
    t.output.write("[!] two", "stderr");
    t.output.write("[+] three");
    await t.settle();
    assert.equal(
      t.takeRaw(),
      `\r\x1b[J[+] one\n[!] two\n[+] three\n> ${"a".repeat(130)}\x1b[33G\x1b[2A`,
    );
    assert.deepEqual(t.screen.text(), [
      "[+] one",
      "[!] two",
      "[+] three",
      "> " + "a".repeat(58),
      "a".repeat(60),
      "a".repeat(12),
    ]);
    assert.deepEqual([t.screen.row, t.screen.col], [3, 32]);
  } finally {
    t.close();
  }
});

Deno.test("redraw: emoji and wide characters count two columns; a line ending at the margin", async () => {
  for (
    const [typed, rows] of [
      ["🙂".repeat(35) + "界界界abc", ["> " + "🙂".repeat(29), "🙂".repeat(6) + "界界界abc"]],
      ["x".repeat(58), ["> " + "x".repeat(58)]], // exactly 60 columns: the cursor moves below
      ["界".repeat(89), ["> " + "界".repeat(29), "界".repeat(30), "界".repeat(30)]],
    ] as const
  ) {
    const t = terminalWithPrompt(60);
    try {
      t.output.write("[*] before");
      await t.settle();
      t.type(typed);
      await t.settle();
      const at = [t.screen.row, t.screen.col];
      for (let i = 1; i <= 3; i++) {
        t.output.write(`[+] line ${i}`);
        await t.settle();
      }
      assert.deepEqual(
        t.screen.text(),
        ["[*] before", "[+] line 1", "[+] line 2", "[+] line 3", ...rows],
        typed,
      );
      assert.deepEqual([t.screen.row, t.screen.col], [at[0] + 3, at[1]], typed);
    } finally {
      t.close();
    }
  }
});

Deno.test("Ctrl-C with a half-typed line: ^C after it, a fresh prompt below, the line dropped", async () => {
  const t = terminalWithPrompt(60);
  try {
    t.type("q".repeat(75));
    t.key("ctrl-a"); // the cursor at the start, as after Home
    await t.settle();
    assert.equal(t.output.dropTypedLine(), true);
    await t.settle();
    assert.equal(t.rl.line, "");
    assert.deepEqual(t.screen.text(), ["> " + "q".repeat(58), "q".repeat(17) + "^C", ">"]);
    assert.deepEqual([t.screen.row, t.screen.col], [2, 2]);
    // An empty line: nothing to drop, the caller leaves.
    assert.equal(t.output.dropTypedLine(), false);
    // The next line typed is the only one.
    t.output.write("[+] bob: hi");
    await t.settle();
    t.type("new");
    await t.settle();
    assert.deepEqual(t.screen.text().slice(-2), ["[+] bob: hi", "> new"]);
  } finally {
    t.close();
  }
});
