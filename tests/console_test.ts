/**
 * Tests of console.ts: printable() (the one escaping function), the logger
 * built on it, strict flag parsing, the descriptions (errors, counts,
 * numbers, the --verbose lesson), and piped input lines.
 *
 * Needs no permissions.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import vectors from "./dhx1-vectors.json" with { type: "json" };
import {
  count,
  describeBigint,
  describeError,
  explainSession,
  Flags,
  type InputLine,
  inputLines,
  parseFlags,
  printable,
  sentence,
  type Stream,
  UsageError,
} from "../console.ts";
import {
  acceptKey,
  createOffer,
  GROUPS,
  MAX_WIRE_DIGITS,
  parseHello,
  ProtocolError,
  respondToHello,
  type Session,
  TOY_CIPHER,
} from "../dh.ts";
import { LineError } from "../transport.ts";
import {
  isUnsafeCodePoint,
  PrintedLog,
  seededRandom,
  textStream,
  typedInput,
  unsafeCharacters,
  within,
} from "./support.ts";

// ───────────────────────────────────────────────────────────────────────────
// The independent detector of characters unsafe at a terminal (support.ts)
// ───────────────────────────────────────────────────────────────────────────

const hex = (cp: number) => cp.toString(16);
const range = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

const C0 = range(0x00, 0x1f);
const C1 = range(0x80, 0x9f);
const FORMAT = [
  0x2028,
  0x2029,
  ...range(0x202a, 0x202e),
  ...range(0x2066, 0x2069),
  ...range(0x200b, 0x200f),
  0x061c,
  0xfeff,
];

Deno.test("the unsafe-character detector of these tests covers C0, DEL, C1, U+2028/9 and every Cf character", () => {
  assert.equal([...C0, 0x7f, ...C1, ...FORMAT].filter(isUnsafeCodePoint).length, 32 + 1 + 32 + 18);
  for (const c of [0, 0x07, 0x1b, 0x1f, 0x7f, 0x80, 0x9b, 0x9f, 0x2028, 0x2029, 0xd800]) {
    assert.ok(isUnsafeCodePoint(c), `U+${c.toString(16)}`);
  }
  for (const c of [0x20, 0x41, 0x7e, 0xa0, 0xe9, 0x2027, 0x202f, 0x1f600]) {
    assert.ok(!isUnsafeCodePoint(c), `U+${c.toString(16)} is printable`);
  }
  const format = /\p{Cf}/u;
  const missed: string[] = [];
  for (let c = 0; c <= 0x10ffff; c++) {
    if (c >= 0xd800 && c <= 0xdfff) continue;
    if (format.test(String.fromCodePoint(c)) && !isUnsafeCodePoint(c)) missed.push(c.toString(16));
  }
  assert.deepEqual(missed, [], "format characters the detector misses");
  assert.deepEqual(unsafeCharacters("ok \u009b x \ud800 y 🙂"), ["U+009B", "U+D800"]);
  assert.deepEqual(unsafeCharacters("a\u009b31m\u001b[2J\u0007\u202e\u2066b"), [
    "U+009B",
    "U+001B",
    "U+0007",
    "U+202E",
    "U+2066",
  ]);
  assert.deepEqual(unsafeCharacters("plain ASCII ~ and café 世界 🙂"), []);
});

// ───────────────────────────────────────────────────────────────────────────
// 1. printable
// ───────────────────────────────────────────────────────────────────────────

Deno.test("printable: every C0 control, DEL and every C1 control is escaped", () => {
  let checked = 0;
  for (const cp of [...C0, 0x7f, ...C1]) {
    const c = String.fromCodePoint(cp);
    assert.equal(printable(c), `\\u{${hex(cp)}}`, `U+${hex(cp)}`);
    assert.equal(printable(`a${c}b`), `a\\u{${hex(cp)}}b`, `U+${hex(cp)} inside text`);
    checked++;
  }
  assert.equal(checked, 65);
  assert.equal(printable("\x1b[2J\x1b]0;pwned\x07"), "\\u{1b}[2J\\u{1b}]0;pwned\\u{7}");
  assert.equal(printable("\u009b31m"), "\\u{9b}31m", "the 8-bit CSI");
  assert.equal(printable("a\r\nb\tc"), "a\\u{d}\\u{a}b\\u{9}c");
});

Deno.test("printable: separators, bidi controls and zero-width characters are escaped", () => {
  for (const cp of FORMAT) {
    const c = String.fromCodePoint(cp);
    assert.equal(printable(c), `\\u{${hex(cp)}}`, `U+${hex(cp)}`);
    assert.equal(printable(`x${c}y`), `x\\u{${hex(cp)}}y`, `U+${hex(cp)} inside text`);
  }
  assert.equal(printable("user\u202Egnp.exe"), "user\\u{202e}gnp.exe");
  assert.equal(printable("\u2066isolated\u2069"), "\\u{2066}isolated\\u{2069}");
});

Deno.test("printable: lone surrogates are escaped, pairs are not", () => {
  const cases: [string, string][] = [
    ["\ud800", "\\u{d800}"],
    ["\udbff", "\\u{dbff}"],
    ["\udc00", "\\u{dc00}"],
    ["\udfff", "\\u{dfff}"],
    ["a\ud83d", "a\\u{d83d}"],
    ["\ude00b", "\\u{de00}b"],
    ["\ude00\ud83d", "\\u{de00}\\u{d83d}"],
    ["\ud83d\ude00", "😀"],
  ];
  for (const [input, expected] of cases) {
    assert.equal(printable(input), expected, JSON.stringify(input));
  }
});

const ORDINARY = [
  String.fromCodePoint(...range(0x20, 0x7e)),
  String.fromCodePoint(...range(0xa0, 0xff).filter((cp) => cp !== 0xad)),
  "café naïve Grüße façade",
  "e\u0301 (a combining accent)",
  "日本語のテキスト, 中文, 한국어",
  "مرحبا بالعالم, שלום",
  "emoji 🙂🎉👍🏽❤️🇫🇷",
  "Ελληνικά, русский",
  "math ∑ ≤ ∞ — “quotes” … ‘single’",
];

Deno.test("printable: ordinary text, accents, CJK and emoji are untouched", () => {
  for (const text of ORDINARY) {
    assert.equal(printable(text), text);
    assert.deepEqual(unsafeCharacters(text), [], "the sample itself is safe");
  }
});

Deno.test("printable: seeded random mixtures escape exactly the unsafe characters", () => {
  const random = seededRandom(20_241_126);
  const safe = [..."aZ09 ~é世🙂€ß\u00a0", "\u0301", "👍🏽"];
  const unsafe = [...C0, 0x7f, ...C1, ...FORMAT].map((cp) => String.fromCodePoint(cp))
    .concat(["\ud800", "\udfff"]);
  for (let round = 0; round < 300; round++) {
    let input = "";
    const length = 1 + random.int(20);
    for (let i = 0; i < length; i++) {
      const pool = random.int(3) === 0 ? unsafe : safe;
      input += pool[random.int(pool.length)];
    }
    // Two lone surrogates side by side may pair up: the expectation is per code point.
    const expected = [...input].map((c) =>
      isUnsafeCodePoint(c.codePointAt(0)!) ? `\\u{${hex(c.codePointAt(0)!)}}` : c
    ).join("");
    const output = printable(input);
    assert.equal(output, expected, JSON.stringify(input));
    assert.deepEqual(unsafeCharacters(output), []);
    assert.equal(printable(output), output, "escaping is idempotent");
  }
});

// ───────────────────────────────────────────────────────────────────────────
// 2. createLogger
// ───────────────────────────────────────────────────────────────────────────

/** What createLogger printed through support's PrintedLog (its capturing `write`): [line, stream]. */
function printed(log: PrintedLog): [string, Stream][] {
  return log.lines.map(({ text, stream }) => [text, stream]);
}

/** SGR colour sequences, built without a control character in a regex literal. */
const SGR = new RegExp(String.fromCharCode(0x1b) + "\\[\\d+m", "g");

const HOSTILE = "peer says \x1b[2J\x07\u009b31m\u202Edesrever\u2028next\ud800 end";
const LEVELS = ["info", "success", "notice", "error"] as const;

Deno.test("createLogger: every level escapes its message", () => {
  for (const color of [false, true]) {
    const logger = new PrintedLog({ color });
    for (const level of LEVELS) logger[level](HOSTILE);
    const lines = printed(logger);
    assert.equal(lines.length, 4);
    for (const [line] of lines) {
      // Colour may wrap the prefix, nothing else.
      const text = color ? line.replace(SGR, "") : line;
      assert.equal(line.indexOf("\x1b", line.indexOf(" ")), -1, "no ESC after the prefix");
      assert.deepEqual(unsafeCharacters(text), [], JSON.stringify(line));
      for (const escape of ["\\u{1b}[2J", "\\u{7}", "\\u{9b}31m", "\\u{202e}", "\\u{2028}"]) {
        assert.ok(text.includes(escape), `${JSON.stringify(line)} lacks ${escape}`);
      }
      assert.ok(text.endsWith("\\u{d800} end"));
    }
  }
});

Deno.test("createLogger: prefixes and streams; a message is printed as given (names keep their case)", () => {
  const logger = new PrintedLog();
  logger.info("working");
  logger.success("done");
  logger.line("alice: hi");
  logger.notice("listening");
  logger.error("alice (memory:1): peer too far behind");
  logger.error(sentence("connection refused"));
  logger.error(sentence("éclair"));
  logger.error("");
  logger.error("\x1bsneaky");
  assert.deepEqual(printed(logger), [
    ["[*] working", "stdout"],
    ["[+] done", "stdout"],
    ["[+] alice: hi", "stdout"],
    ["[*] listening", "stdout"],
    ["[!] alice (memory:1): peer too far behind", "stderr"],
    ["[!] Connection refused", "stderr"],
    ["[!] Éclair", "stderr"],
    ["[!] ", "stderr"],
    ["[!] \\u{1b}sneaky", "stderr"],
  ]);
  assert.equal(logger.quiet, false);
});

Deno.test("createLogger: quiet drops info and success only", () => {
  const logger = new PrintedLog({ quiet: true });
  assert.equal(logger.quiet, true);
  logger.info("hidden");
  logger.success("hidden too");
  logger.line("bob: a line someone wrote");
  logger.notice("shown");
  logger.error("shown on stderr");
  assert.deepEqual(printed(logger), [
    ["[+] bob: a line someone wrote", "stdout"],
    ["[*] shown", "stdout"],
    ["[!] shown on stderr", "stderr"],
  ]);
});

Deno.test("createLogger: colour only when asked", () => {
  const [plain, coloured] = [false, true].map((color) => {
    const logger = new PrintedLog({ color });
    logger.info("i");
    logger.success("s");
    logger.notice("n");
    logger.error("e");
    return printed(logger);
  });
  assert.equal(plain.length, 4);
  for (const [line] of plain) assert.ok(!line.includes("\x1b"), JSON.stringify(line));
  assert.equal(coloured.length, 4);
  for (let i = 0; i < 4; i++) {
    const [line, stream] = coloured[i];
    assert.notEqual(line, plain[i][0], "coloured");
    assert.equal(line.replace(SGR, ""), plain[i][0], "only colour codes added");
    assert.equal(stream, plain[i][1]);
    const message = line.slice(line.indexOf(" ") + 1);
    assert.ok(!message.includes("\x1b"), "the message itself is not coloured");
  }
});

// ───────────────────────────────────────────────────────────────────────────
// 3. Flags
// ───────────────────────────────────────────────────────────────────────────

function usageError(run: () => unknown, message: RegExp | string): UsageError {
  let caught: unknown;
  assert.throws(run, (error) => {
    caught = error;
    assert.ok(error instanceof UsageError, `expected a UsageError, got ${error}`);
    if (typeof message === "string") assert.equal(error.message, message);
    else assert.match(error.message, message);
    assert.ok(!error.message.includes("\n"), "one line");
    return true;
  });
  return caught as UsageError;
}

Deno.test("parseFlags: unknown flags, stray arguments and --quiet with --verbose", () => {
  usageError(() => parseFlags(["--bogus"], {}), /bogus/);
  usageError(() => parseFlags(["-x"], {}), /-x/);
  usageError(() => parseFlags(["stray"], {}), /stray/);
  usageError(() => parseFlags(["--port", "4444", "extra"], {}), /extra/);
  usageError(() => parseFlags(["--quiet=yes"], {}), /quiet/);
  usageError(() => parseFlags(["--toy", "-1"], {}), /-1/);
  usageError(
    () => parseFlags(["--quiet", "--verbose"], {}),
    "--quiet and --verbose exclude each other",
  );
  usageError(() => parseFlags(["--room"], {}), /room/);

  const flags = parseFlags(["--quiet", "--port", "80", "-h", "--room"], {
    room: { type: "boolean" },
  });
  assert.equal(flags.boolean("quiet"), true);
  assert.equal(flags.boolean("verbose"), false);
  assert.equal(flags.boolean("help"), true);
  assert.equal(flags.boolean("room"), true);
  assert.equal(flags.has("port"), true);
  assert.equal(flags.has("host"), false);
  assert.equal(flags.string("port"), "80");
  assert.equal(flags.string("host"), undefined);
  assert.equal(parseFlags(["--verbose"], {}).boolean("verbose"), true);
});

Deno.test("Flags.integer: bounds, and one message for every bad value", () => {
  const port = (value: string) => parseFlags(["--port", value], {}).integer("port", 0, 65535);
  assert.equal(port("0"), 0);
  assert.equal(port("65535"), 65535);
  assert.equal(port("4444"), 4444);
  assert.equal(port("00080"), 80);
  assert.equal(parseFlags([], {}).integer("port", 0, 65535), undefined);
  const bad = [
    "-1",
    "abc",
    "65536",
    "1.5",
    "+1",
    " 1",
    "1 ",
    "0x10",
    "1e3",
    "",
    "-0",
    "٣",
    "99999999999999999999",
  ];
  for (const value of bad) {
    usageError(
      () => port(value),
      `--port must be a whole number from 0 to 65535, got ${JSON.stringify(value)}`,
    );
  }
  usageError(
    () => parseFlags(["--port=-1"], {}).integer("port", 0, 65535),
    '--port must be a whole number from 0 to 65535, got "-1"',
  );
  usageError(
    () => parseFlags(["--max-line", "-5"], {}).integer("max-line", 100, 1000),
    '--max-line must be a whole number from 100 to 1000, got "-5"',
  );
  usageError(
    () => parseFlags(["--max-line", "99"], {}).integer("max-line", 100, 1000),
    /from 100 to 1000, got "99"/,
  );
});

Deno.test("Flags.milliseconds: decimals, rounding, zero and the one-day bound", () => {
  const ms = (value: string, allowZero = false) =>
    parseFlags(["--keepalive", value], {}).milliseconds("keepalive", allowZero);
  assert.equal(ms("1.5"), 1500);
  assert.equal(ms("0.001"), 1);
  assert.equal(ms("0.0015"), 2);
  assert.equal(ms("30"), 30_000);
  assert.equal(ms("86400"), 86_400_000);
  assert.equal(ms("0", true), 0);
  assert.equal(ms("0.000", true), 0);
  assert.equal(ms("2.5", true), 2500);
  assert.equal(parseFlags([], {}).milliseconds("keepalive"), undefined);
  for (
    const value of [
      "0.0001",
      "0.0004",
      "0",
      "86400.5",
      "86401",
      "-1",
      "1e3",
      ".5",
      "5.",
      "abc",
      "",
      " 1",
    ]
  ) {
    usageError(
      () => ms(value),
      `--keepalive must be a number of seconds from 0.001 to 86400, got ${JSON.stringify(value)}`,
    );
  }
  for (const value of ["0.0001", "86401", "-1"]) {
    usageError(
      () => ms(value, true),
      `--keepalive must be a number of seconds from 0.001 to 86400 (or 0 for off), got ${
        JSON.stringify(value)
      }`,
    );
  }
});

Deno.test("Flags.bigint: decimal digits, at most as many as an 8192-bit number", () => {
  const key = (value: string) => parseFlags(["--private-key", value], {}).bigint("private-key");
  const longest = "7".repeat(MAX_WIRE_DIGITS);
  assert.equal(key(longest), BigInt(longest));
  assert.equal(key("0"), 0n);
  assert.equal(key("12345"), 12345n);
  assert.equal(parseFlags([], {}).bigint("private-key"), undefined);
  const tooLong = usageError(() => key(longest + "7"), /at most 2467 digits, got "7{37}\.\.\."$/);
  assert.ok(tooLong.message.length < 200, "the value is not repeated in full");
  for (const value of ["-5", "12a", "0x10", "", " 1", "1e5"]) {
    usageError(
      () => key(value),
      `--private-key must be a decimal number of at most ${MAX_WIRE_DIGITS} digits, got ${
        JSON.stringify(value)
      }`,
    );
  }
  assert.equal(new Flags({ prime: "23" }).bigint("prime"), 23n);
});

// ───────────────────────────────────────────────────────────────────────────
// 4. Descriptions
// ───────────────────────────────────────────────────────────────────────────

Deno.test("count: singular and plural", () => {
  assert.equal(count(0, "client"), "0 clients");
  assert.equal(count(1, "client"), "1 client");
  assert.equal(count(2, "client"), "2 clients");
  assert.equal(count(1, "line"), "1 line");
  assert.equal(count(1000, "message"), "1000 messages");
});

Deno.test("describeError: one line, no stack trace", () => {
  const cases: [unknown, string][] = [
    [new ProtocolError("record authentication failed"), "record authentication failed"],
    [new ProtocolError("peer reported an error: bye", true), "peer reported an error: bye"],
    [new LineError("line longer than 10 bytes"), "line longer than 10 bytes"],
    [new UsageError("--port must be a whole number"), "--port must be a whole number"],
    [new Deno.errors.ConnectionRefused("Connection refused (os error 111)"), "connection refused"],
    [
      new Deno.errors.ConnectionReset("Connection reset by peer (os error 104)"),
      "connection reset by peer",
    ],
    [new Deno.errors.BrokenPipe("Broken pipe (os error 32)"), "connection closed by peer"],
    [new Deno.errors.AddrInUse("Address already in use (os error 98)"), "address already in use"],
    [
      new Deno.errors.PermissionDenied('Requires net access to "127.0.0.1:4444"'),
      "permission denied (run with --allow-net)",
    ],
    [new Error("first line\nsecond line\n    at somewhere (file.ts:1:1)"), "first line"],
    [new TypeError("bad type"), "bad type"],
    ["a plain string", "a plain string"],
    [42, "42"],
    [undefined, "undefined"],
  ];
  for (const [error, expected] of cases) {
    const text = describeError(error);
    assert.equal(text, expected);
    assert.ok(!text.includes("\n") && !/\bat .*:\d+:\d+/.test(text), "no stack trace");
  }
});

Deno.test("describeBigint: hidden unless revealed", () => {
  const numbers = [GROUPS.ffdhe2048.p, 2n ** 255n + 12345n, 123_456_789_012_345_678_901n, 23n];
  const seen = new Set<string>();
  for (const n of numbers) {
    assert.equal(describeBigint(n, true), n.toString());
    const hidden = describeBigint(n, false);
    const digest = createHash("sha256").update(n.toString(16)).digest("hex").slice(0, 8);
    assert.equal(hidden, `${n.toString(2).length}-bit number, sha256 ${digest}…`);
    assert.ok(!/[0-9]{9,}/.test(hidden), `long digits in ${hidden}`);
    if (n > 10n ** 9n) assert.ok(!hidden.includes(n.toString().slice(0, 9)));
    seen.add(hidden);
  }
  assert.equal(seen.size, numbers.length, "different numbers, different descriptions");
});

/** Both sessions of a vector, made with dh.ts's handshake functions. */
function vectorSessions(index: number): { client: Session; server: Session } {
  const v = vectors[index];
  const group = GROUPS[v.group as keyof typeof GROUPS];
  const offer = createOffer(group, v.cipher as typeof TOY_CIPHER, BigInt(v.serverPrivateKey));
  const hello = parseHello(offer.line, { insecure: true });
  const { keyLine, session: client } = respondToHello(hello, BigInt(v.clientPrivateKey));
  return { client, server: acceptKey(offer, keyLine) };
}

Deno.test("explainSession: the toy session's own numbers, both sides", () => {
  const v = vectors[0];
  const { client, server } = vectorSessions(0);
  const tail = [
    `transcript hash th = SHA-256(hello LF key LF) = ${v.transcriptHashHex}`,
    `key schedule = HKDF-SHA-256(Z, th, "dhx/1 key schedule", 136 bytes):`,
    `  xor8 key byte = Z mod 256 = ${BigInt(v.sharedSecret) % 256n}`,
    `  fingerprint = ${v.fingerprint}`,
  ];
  /** One side's lesson: its own key letter (a or b) and numbers, then the other's. */
  const lesson = (mine: "a" | "b", theirs: "a" | "b", own: string[], peerKey: string) => {
    const [privateKey, publicKey] = own;
    const [MINE, THEIRS] = [mine.toUpperCase(), theirs.toUpperCase()];
    return [
      "p = 23",
      "g = 5",
      `private key ${mine} = ${privateKey}`,
      `public key ${MINE} = g^${mine} mod p = ${publicKey}`,
      `peer public key ${THEIRS} = ${peerKey}`,
      `shared secret Z = ${THEIRS}^${mine} mod p = ${v.sharedSecret}`,
      ...tail,
    ];
  };
  assert.deepEqual(
    explainSession(client),
    lesson("a", "b", [v.clientPrivateKey, v.clientPublicKey], v.serverPublicKey),
  );
  assert.deepEqual(
    explainSession(server),
    lesson("b", "a", [v.serverPrivateKey, v.serverPublicKey], v.clientPublicKey),
  );
  assert.equal(v.sharedSecret, "19");
});

Deno.test("explainSession: the secure session's keys are the key schedule's slices", () => {
  const v = vectors[1];
  const { client } = vectorSessions(1);
  const okm = v.keyScheduleHex;
  const lines = explainSession(client);
  assert.equal(lines[0], `p = ${GROUPS.ffdhe2048.p}`);
  assert.equal(lines[4], `peer public key B = ${v.serverPublicKey}`);
  assert.equal(lines[5], `shared secret Z = B^a mod p = ${v.sharedSecret}`);
  assert.deepEqual(lines.slice(8), [
    `  client→server encryption key ${okm.slice(0, 64)}`,
    `  client→server MAC key        ${okm.slice(64, 128)}`,
    `  server→client encryption key ${okm.slice(128, 192)}`,
    `  server→client MAC key        ${okm.slice(192, 256)}`,
    `  fingerprint = ${v.fingerprint}`,
  ]);
});

// ───────────────────────────────────────────────────────────────────────────
// 5. inputLines (piped)
// ───────────────────────────────────────────────────────────────────────────

async function allInput(stream: ReadableStream<Uint8Array>, maxBytes: number) {
  const input = inputLines({ maxBytes, stream });
  const lines: (InputLine | null)[] = [];
  for (let i = 0; i < 50; i++) {
    const line = await within(input.next(), 5000, "an input line");
    lines.push(line);
    if (line === null) break;
  }
  lines.push(await within(input.next(), 5000, "after the end"));
  input.close();
  return lines;
}

Deno.test("inputLines: lines, refused lines on their own, and the end", async () => {
  const bytes = new Uint8Array([
    ...new TextEncoder().encode("hello\n" + "x".repeat(11) + "\nafter\n"),
    0xff,
    0xfe,
    0x0a,
    ...new TextEncoder().encode("exactly 10\r\n\nlast"),
  ]);
  assert.deepEqual(await allInput(textStream(bytes), 10), [
    { text: "hello" },
    { refused: "line longer than 10 bytes" },
    { text: "after" },
    { refused: "line is not valid UTF-8" },
    { text: "exactly 10" },
    { text: "" },
    { text: "last" },
    null,
    null,
  ]);
});

Deno.test("inputLines: lines typed over time, an overlong one refused as it arrives", async () => {
  const typed = typedInput();
  const input = inputLines({ maxBytes: 8, stream: typed.stream });
  typed.type("one");
  assert.deepEqual(await within(input.next(), 5000, "one"), { text: "one" });
  typed.type("é".repeat(5)); // 10 bytes
  assert.deepEqual(await within(input.next(), 5000, "refused"), {
    refused: "line longer than 8 bytes",
  });
  typed.type("two");
  assert.deepEqual(await within(input.next(), 5000, "two"), { text: "two" });
  typed.end();
  assert.equal(await within(input.next(), 5000, "end"), null);
  input.close();
  input.close();
});

function chunkedStream(chunks: string[]): ReadableStream<Uint8Array> {
  return ReadableStream.from(chunks.map((c) => new TextEncoder().encode(c)));
}

Deno.test("inputLines: an overlong line in several chunks is refused; the next line comes", async () => {
  // The excess arrives before the LF.
  assert.deepEqual(await allInput(chunkedStream(["x".repeat(15), "yy\nok\n"]), 10), [
    { refused: "line longer than 10 bytes" },
    { text: "ok" },
    null,
    null,
  ]);
  // The excess arrives with the LF.
  assert.deepEqual(await allInput(chunkedStream(["hello ", "wonderful world\nok\n"]), 10), [
    { refused: "line longer than 10 bytes" },
    { text: "ok" },
    null,
    null,
  ]);
});
