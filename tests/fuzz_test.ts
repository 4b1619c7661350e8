/**
 * A seeded fuzzer and a soak test of the DHX/1 server and client, in memory
 * (no permission needed).
 *
 * The fuzzer mutates real handshake and record lines (bytes and JSON
 * structure) and, for every mutation, predicts the outcome from the protocol
 * text alone: accepted (an ack, or a key frame from the client), or refused
 * with one specific error, or closed without a reply (an `error` frame sent
 * to the peer). Each case asserts its prediction, so the fuzzer checks the
 * exact judgement, not merely "no crash". The seed is printed; set it in
 * `SEED` to replay a run: both sides use fixed private keys, so every case's
 * bytes follow from the seed.
 *
 * The soak runs 300 clients × 30 messages through one server at once and
 * checks that every message arrives, in order, and is acknowledged.
 *
 * @module
 */

import assert from "node:assert/strict";
import { runClient } from "../client.ts";
import type { Logger } from "../console.ts";
import { GROUPS, SECURE_CIPHER, type Session } from "../dh.ts";
import { startServer } from "../server.ts";
import {
  type CapturingLogger,
  expectAck,
  fakeServer,
  helloWith,
  type Random,
  rawClientHandshake,
  RawPeer,
  seededRandom,
  sendAndExpectAck,
  sleep,
  testServer,
  textStream,
  tryParse,
  within,
} from "./support.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const FFDHE2048 = GROUPS.ffdhe2048;
const P = FFDHE2048.p;
const P_DIGITS = P.toString().length;
/** The longest wire integer anywhere: the digits of an 8192-bit number. */
const MAX_DIGITS = Math.ceil(8192 * Math.log10(2));
/** The server's private key; the raw clients use support's fixed RAW_CLIENT_KEY. */
const SERVER_KEY = 0xfeed_face_cafe_beef_0123_4567_89ab_cdefn;

/** The seed of this run: change it to explore, keep a failing one to replay. */
const SEED = 0x0d4a_2026;

// ───────────────────────────────────────────────────────────────────────────
// Mutations
// ───────────────────────────────────────────────────────────────────────────

/** A JSON object as [key, raw JSON value text] pairs: keys and literals survive as written. */
type Entry = [key: string, value: string];

function toEntries(line: string): Entry[] {
  return Object.entries(JSON.parse(line) as Record<string, unknown>).map((
    [k, v],
  ) => [k, JSON.stringify(v)]);
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

const pick = <T>(r: Random, items: readonly T[]): T => items[r.int(items.length)];

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
const FIELD_NAMES = ["Type", "typ", "seq ", "SEQ", "dat", "Data", "tag2", "", "type\u0000"];
const MORE_FIELD_NAMES = ["__proto__", "constructor", "publickey", "PublicKey", "protocol"];
const TYPE_NAMES = [
  "ack",
  "bye",
  "key",
  "KEY",
  "error",
  "hello",
  "MSG",
  "msg ",
  "",
  "ping",
  "chat",
];
const BASE64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

type Mutator = (line: string, r: Random) => string | Uint8Array;

function splice(bytes: Uint8Array, at: number, remove: number, insert: number[]): Uint8Array {
  const out = new Uint8Array(bytes.length - remove + insert.length);
  out.set(bytes.subarray(0, at));
  out.set(insert, at);
  out.set(bytes.subarray(at + remove), at + insert.length);
  return out;
}

/** `text` as a JSON string literal with one character written as a \uXXXX escape. */
function escapeOneChar(text: string, r: Random): string {
  if (text.length === 0) return `""`;
  const at = r.int(text.length);
  const hex = text.charCodeAt(at).toString(16).padStart(4, "0");
  return `${JSON.stringify(text.slice(0, at)).slice(0, -1)}\\u${hex}${
    JSON.stringify(text.slice(at + 1)).slice(1)
  }`;
}

const BYTE_MUTATORS: Record<string, Mutator> = {
  bitflip: (line, r) => {
    const bytes = encoder.encode(line);
    for (let i = 0, n = 1 + r.int(3); i < n; i++) bytes[r.int(bytes.length)] ^= 1 << r.int(8);
    return bytes;
  },
  truncate: (line, r) => encoder.encode(line).subarray(0, r.int(line.length)),
  insertByte: (line, r) => {
    const bytes = encoder.encode(line);
    return splice(bytes, r.int(bytes.length + 1), 0, [r.int(256)]);
  },
  deleteByte: (line, r) => {
    const bytes = encoder.encode(line);
    return splice(bytes, r.int(bytes.length), 1, []);
  },
  duplicateLine: (line) => `${line}\n${line}`,
  insertLf: (line, r) => {
    const at = r.int(line.length + 1);
    return `${line.slice(0, at)}\n${line.slice(at)}`;
  },
  trailingCr: (line) => `${line}\r`,
  doubleCr: (line) => `${line}\r\r`,
};

const STRUCTURE_MUTATORS: Record<string, Mutator> = {
  swapValues: (line, r) => {
    const entries = toEntries(line);
    const i = r.int(entries.length);
    let j = r.int(entries.length - 1);
    if (j >= i) j++;
    [entries[i][1], entries[j][1]] = [entries[j][1], entries[i][1]];
    return fromEntries(entries);
  },
  renameField: (line, r) => {
    const entries = toEntries(line);
    entries[r.int(entries.length)][0] = pick(r, [...FIELD_NAMES, ...MORE_FIELD_NAMES]);
    return fromEntries(entries);
  },
  retypeValue: (line, r) => {
    const entries = toEntries(line);
    entries[r.int(entries.length)][1] = pick(r, JSON_LITERALS);
    return fromEntries(entries);
  },
  removeField: (line, r) => {
    const entries = toEntries(line);
    entries.splice(r.int(entries.length), 1);
    return fromEntries(entries);
  },
  addField: (line, r) => {
    const entries = toEntries(line);
    entries.splice(r.int(entries.length + 1), 0, [
      pick(r, ["x", "extra", "Type", "tags", "__proto__"]),
      pick(r, JSON_LITERALS),
    ]);
    return fromEntries(entries);
  },
  duplicateKey: (line, r) => {
    const entries = toEntries(line);
    const [key, value] = entries[r.int(entries.length)];
    entries.splice(r.int(entries.length + 1), 0, [
      key,
      r.int(2) === 0 ? value : pick(r, JSON_LITERALS),
    ]);
    return fromEntries(entries);
  },
  shuffle: (line, r) => {
    const entries = toEntries(line);
    for (let i = entries.length - 1; i > 0; i--) {
      const j = r.int(i + 1);
      [entries[i], entries[j]] = [entries[j], entries[i]];
    }
    return fromEntries(entries);
  },
  whitespace: (line, r) =>
    fromEntries(toEntries(line), () => pick(r, ["", " ", "\t", "\r", " \t "])),
  unicodeEscape: (line, r) => {
    const entries = toEntries(line);
    const entry = pick(r, entries.filter(([, v]) => v.startsWith('"')));
    entry[1] = escapeOneChar(JSON.parse(entry[1]), r);
    return fromEntries(entries);
  },
  setType: (line, r) => editField(line, "type", () => JSON.stringify(pick(r, TYPE_NAMES))),
};

function base64Edit(text: string, r: Random): string {
  const at = r.int(Math.max(1, text.length));
  const edits = [
    () => text.slice(0, -1),
    () => text + "=",
    () => text.replaceAll("=", ""),
    () => text.slice(0, at) + pick(r, [...BASE64_CHARS]) + text.slice(at + 1),
    () => text.slice(0, at) + " " + text.slice(at),
    () => "AAAA" + text,
    () => text + "AAAA",
    () => text.slice(0, at) + (text[at] ?? "").toLowerCase() + text.slice(at + 1),
    () => text.replaceAll("+", "-").replaceAll("/", "_"),
    () => text.slice(0, -2) + pick(r, ["B=", "C=", "R=", "=="]),
    () => "",
  ];
  return pick(r, edits)();
}

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
        `${seq}E+0`,
      ]);
    }),
  base64: (line, r) => {
    const field = r.int(2) === 0 ? "data" : "tag";
    return editField(line, field, (raw) => JSON.stringify(base64Edit(JSON.parse(raw), r)));
  },
};

function wireIntegerEdit(y: string, r: Random, p: bigint): string {
  const at = r.int(y.length);
  const digits = () => Array.from({ length: 1 + r.int(800) }, () => String(r.int(10))).join("");
  const edits = [
    () => JSON.stringify(pick(r, ["0", "1", "2", (p - 2n).toString()])),
    () => JSON.stringify((p - 1n).toString()),
    () => JSON.stringify(p.toString()),
    () => JSON.stringify((p + 1n).toString()),
    () => JSON.stringify("0" + y),
    () => JSON.stringify(y.slice(0, at) + String(r.int(10)) + y.slice(at + 1)),
    () => JSON.stringify(y + "0"),
    () => JSON.stringify(y.slice(1)),
    () => JSON.stringify(pick(r, ["-", "+", " ", "0x"]) + y),
    () => JSON.stringify(y + pick(r, [".0", " ", "e0", "n"])),
    () => y, // a bare JSON number
    () => JSON.stringify(digits()),
    () => `"${escapeOneChar(y, r).slice(1, -1)}"`,
    () => JSON.stringify(y.replace(/[0-9]/, "٣")),
  ];
  return pick(r, edits)();
}

const KEY_MUTATORS: Record<string, Mutator> = {
  ...BYTE_MUTATORS,
  ...STRUCTURE_MUTATORS,
  publicKey: (line, r) =>
    editField(line, "publicKey", (raw) => wireIntegerEdit(JSON.parse(raw), r, P)),
};

const HELLO_MUTATORS: Record<string, Mutator> = {
  ...BYTE_MUTATORS,
  ...STRUCTURE_MUTATORS,
  wireInteger: (line, r) => {
    const field = pick(r, ["p", "g", "publicKey"]);
    return editField(line, field, (raw) => wireIntegerEdit(JSON.parse(raw), r, P));
  },
  names: (line, r) => {
    const field = pick(r, ["group", "cipher", "protocol"]);
    const values: Record<string, string[]> = {
      group: ["ffdhe3072", "modp2048", "toy", "custom", "ffdhe1024", "FFDHE2048", ""],
      cipher: ["xor8", "aes-128-ecb", "AES-256-CTR+HMAC-SHA256", ""],
      protocol: ["dhx/2", "dhx/0", "DHX/1", "dhx/1 ", ""],
    };
    return editField(line, field, () => JSON.stringify(pick(r, values[field])));
  },
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
HELLO_MUTATORS.chain = chained(HELLO_MUTATORS);

// ───────────────────────────────────────────────────────────────────────────
// The predictor, written from docs/protocol.md
// ───────────────────────────────────────────────────────────────────────────

/**
 * The lines a receiver sees for `bytes` + LF: split at each LF, one CR before
 * it dropped; undefined for a line that is not UTF-8.
 */
function receivedLines(bytes: Uint8Array): (string | undefined)[] {
  const lines: (string | undefined)[] = [];
  let start = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] !== 0x0a) continue;
    let line = bytes.subarray(start, i);
    if (line.at(-1) === 0x0d) line = line.subarray(0, -1);
    try {
      lines.push(strictUtf8.decode(line));
    } catch {
      lines.push(undefined);
    }
    start = i + 1;
  }
  return lines;
}

/** What a receiver does with one line. */
type Judgement =
  | { readonly kind: "accepted" }
  | { readonly kind: "refused"; readonly error: RegExp }
  /** The line is the peer's `error` frame: close without a reply. */
  | { readonly kind: "peer-error" };

const refused = (error: RegExp): Judgement => ({ kind: "refused", error });

/** The frame in a line, or the judgement that ends it before any field is read. */
function frameOf(
  line: string | undefined,
): { frame: Record<string, unknown> } | { judgement: Judgement } {
  if (line === undefined) return { judgement: refused(/^line is not valid UTF-8$/) };
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { judgement: refused(/^not a JSON frame/) };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { judgement: refused(/^a frame must be a JSON object/) };
  }
  const frame = value as Record<string, unknown>;
  if (frame.type === "error") return { judgement: { kind: "peer-error" } };
  return { frame };
}

/** Why a wire integer is refused, if it is (DHX/1 §Framing: decimal digits in a string). */
function wireIntegerError(value: unknown, field: string, maxDigits: number): RegExp | undefined {
  if (typeof value !== "string") return new RegExp(`^${field} must be a string of decimal digits`);
  if (value.length > maxDigits) {
    return new RegExp(`^${field} has ${value.length} digits; at most ${maxDigits} are possible$`);
  }
  if (!/^[0-9]+$/.test(value)) return new RegExp(`^${field} must contain only decimal digits`);
  return undefined;
}

/** Why a base64 field is refused, if it is (RFC 4648 §4, padded, canonical). */
function base64Error(value: unknown, field: string): RegExp | undefined {
  const standard = typeof value === "string" && value.length % 4 === 0 &&
    /^[A-Za-z0-9+/]*={0,2}$/.test(value);
  if (!standard) return new RegExp(`^${field} is not standard padded base64$`);
  if (Uint8Array.fromBase64(value as string).toBase64() !== value) {
    return new RegExp(`^${field} is not canonical base64$`);
  }
  return undefined;
}

/** The server's judgement of a key line (handshake step 2 and 3). */
function judgeKey(line: string | undefined): Judgement {
  const parsed = frameOf(line);
  if ("judgement" in parsed) return parsed.judgement;
  const frame = parsed.frame;
  if (frame.type !== "key") return refused(/^expected a key frame, got type /);
  const error = wireIntegerError(frame.publicKey, "publicKey", P_DIGITS);
  if (error) return refused(error);
  const y = BigInt(frame.publicKey as string);
  if (y <= 1n || y >= P - 1n) return refused(/^invalid public key/);
  return { kind: "accepted" };
}

/** The record the test sealed, as its fields. */
interface Sealed {
  readonly type: string;
  readonly seq: number;
  readonly data: string;
  readonly tag: string;
}

/**
 * The server's judgement of a line after the handshake, expecting `seq`;
 * `sealed` is the one record whose tag is valid (none if the keys differ).
 */
function judgeRecord(line: string | undefined, seq: number, sealed?: Sealed): Judgement {
  const parsed = frameOf(line);
  if ("judgement" in parsed) return parsed.judgement;
  const frame = parsed.frame;
  const type = frame.type;
  const known = ["msg", "chat", "ack", "notice", "ping", "pong", "bye"];
  if (typeof type !== "string" || !known.includes(type)) {
    return refused(/^unexpected frame type .* after the handshake$/);
  }
  if (type === "chat" || type === "notice") {
    return refused(new RegExp(`^a client may not send ${type} records$`));
  }
  if (frame.seq !== seq) {
    return refused(
      Number.isSafeInteger(frame.seq)
        ? new RegExp(`^wrong sequence number ${frame.seq}, expected ${seq}`)
        : new RegExp(`^seq must be a JSON integer \\(${seq} expected\\), got `),
    );
  }
  const dataError = base64Error(frame.data, "data");
  if (dataError) return refused(dataError);
  const tagError = base64Error(frame.tag, "tag");
  if (tagError) return refused(tagError);
  const authentic = sealed !== undefined && type === sealed.type && frame.seq === sealed.seq &&
    frame.data === sealed.data && frame.tag === sealed.tag;
  if (!authentic) return refused(/^record authentication failed/);
  return { kind: "accepted" }; // our plaintext: valid UTF-8, a msg
}

/** What the server does with a mutated write, line by line. */
interface Prediction {
  /** Acks expected before the end. */
  readonly acks: number;
  /** How it ends: still open, refused with an error, or closed on our error frame. */
  readonly end: Judgement;
  /** Key case only: whether the server took a key line other than ours (a different transcript). */
  readonly otherKey?: boolean;
}

function predictKey(keyLine: string, bytes: Uint8Array): Prediction {
  const [first, ...rest] = receivedLines(bytes);
  const judgement = judgeKey(first);
  if (judgement.kind !== "accepted") return { acks: 0, end: judgement };
  const otherKey = first !== keyLine;
  // Later lines are records; none can carry a valid tag.
  for (const [i, line] of rest.entries()) {
    const next = judgeRecord(line, i);
    if (next.kind !== "accepted") return { acks: 0, end: next, otherKey };
  }
  return { acks: 0, end: { kind: "accepted" }, otherKey };
}

function predictRecord(sealed: Sealed, bytes: Uint8Array): Prediction {
  let acks = 0;
  for (const [i, line] of receivedLines(bytes).entries()) {
    const judgement = judgeRecord(line, sealed.seq + i, sealed);
    if (judgement.kind !== "accepted") return { acks, end: judgement };
    acks++;
  }
  return { acks, end: { kind: "accepted" } };
}

/** The client's judgement of a hello line (secure policy, handshake steps 1, 3, 4). */
function judgeHello(line: string | undefined): Judgement {
  const parsed = frameOf(line);
  if ("judgement" in parsed) return parsed.judgement;
  const frame = parsed.frame;
  if (frame.type !== "hello") return refused(/^expected a hello frame from the server/);
  if (frame.protocol !== "dhx/1") return refused(/^server speaks protocol /);
  const cipher = frame.cipher;
  if (cipher !== SECURE_CIPHER && cipher !== "xor8") {
    return refused(/^server offered unknown cipher/);
  }
  const names = [
    "toy",
    "modp2048",
    "modp3072",
    "modp4096",
    "ffdhe2048",
    "ffdhe3072",
    "ffdhe4096",
    "ffdhe6144",
    "ffdhe8192",
  ];
  const name = frame.group;
  const named = typeof name === "string" && names.includes(name);
  if (!named && name !== "custom") return refused(/^server offered unknown group/);
  const pError = wireIntegerError(frame.p, "p", MAX_DIGITS);
  if (pError) return refused(pError);
  const gError = wireIntegerError(frame.g, "g", MAX_DIGITS);
  if (gError) return refused(gError);
  const p = BigInt(frame.p as string);
  const g = BigInt(frame.g as string);
  const group = named ? GROUPS[name as keyof typeof GROUPS] : undefined;
  if (!group || group.p !== p || group.g !== g) {
    return refused(name === "custom" ? /^server offered custom parameters/ : /differ from/);
  }
  if (group.name === "toy") return refused(/^server offered the toy group/);
  if (cipher !== SECURE_CIPHER) return refused(/^server offered cipher xor8/);
  const yError = wireIntegerError(frame.publicKey, "publicKey", group.p.toString().length);
  if (yError) return refused(yError);
  const y = BigInt(frame.publicKey as string);
  if (y <= 1n || y >= group.p - 1n) return refused(/^invalid public key/);
  return { kind: "accepted" };
}

function withLf(mutated: string | Uint8Array): Uint8Array {
  const bytes = typeof mutated === "string" ? encoder.encode(mutated) : mutated;
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  out[bytes.length] = 0x0a;
  return out;
}

const describe = (bytes: Uint8Array) => JSON.stringify(decoder.decode(bytes)).slice(0, 300);
const outcomeName = (p: Prediction) =>
  `${p.acks > 0 ? "ack+" : ""}${p.end.kind}${p.otherKey ? " (other key)" : ""}`;

// ───────────────────────────────────────────────────────────────────────────
// Running the cases
// ───────────────────────────────────────────────────────────────────────────

interface CaseResult {
  readonly peer: string;
  readonly mutator: string;
  readonly outcome: string;
  /** The server must log exactly one error line for this peer (matching), or none. */
  readonly logged?: RegExp;
}

/** The server's error message for a peer, without its "who: " prefix. */
function loggedError(log: CapturingLogger, peer: string): string[] {
  return log.of("error")
    .filter((m) => m.startsWith(`${peer}: `) || m.includes(`(${peer}): `))
    .map((m) => m.slice(m.indexOf(`${peer}`) + peer.length).replace(/^\)?: /, ""));
}

/** Reads to EOF and checks the end the prediction names; `session` opens the acks. */
async function expectEnd(
  raw: RawPeer,
  prediction: Prediction,
  session: Session | undefined,
  firstAck: number,
): Promise<void> {
  const lines = await raw.readToEof(5000);
  const acks = lines.slice(0, prediction.acks);
  assert.equal(acks.length, prediction.acks, `acks: ${JSON.stringify(lines)}`);
  for (const [i, line] of acks.entries()) {
    const ack = session!.open(line);
    assert.deepEqual([ack.type, ack.text], ["ack", String(firstAck + i)]);
  }
  const rest = lines.slice(prediction.acks);
  if (prediction.end.kind === "peer-error") {
    assert.deepEqual(rest, [], "no reply to an error frame");
  } else if (prediction.end.kind === "refused") {
    assert.equal(rest.length, 1, `one error frame, got ${JSON.stringify(rest)}`);
    const frame = tryParse(rest[0]);
    assert.equal(frame?.type, "error");
    assert.match(String(frame?.message), prediction.end.error);
  }
}

/** A case's result: the log line its end calls for (one naming the error, or none). */
function caseResult(
  peer: string,
  mutator: string,
  prediction: Prediction,
  end: Judgement,
): CaseResult {
  const logged = end.kind === "refused"
    ? end.error
    : end.kind === "peer-error"
    ? /^peer reported/
    : undefined;
  return { peer, mutator, outcome: outcomeName(prediction), logged };
}

/** One fuzz case on its own connection, as {@link fuzzCase} hands it to its body. */
interface FuzzConnection {
  readonly raw: RawPeer;
  /** How the server names this connection. */
  readonly peer: string;
  /** The case's number. */
  readonly index: number;
  /** The case's own generator. */
  readonly r: Random;
  /**
   * Mutates `line` with a mutator picked from `table`, predicts the outcome,
   * sends the bytes; the case's errors then name the mutation.
   */
  mutate(
    table: Record<string, Mutator>,
    line: string,
    predict: (bytes: Uint8Array) => Prediction,
  ): Promise<{ mutator: string; prediction: Prediction }>;
}

/** Runs case `index` against `server`, drawing from `r`. */
type FuzzRun = (
  server: ReturnType<typeof startServer>,
  index: number,
  r: Random,
) => Promise<CaseResult>;

/** A kind of case: `body` on a fresh connection; its errors say which case and mutation. */
const fuzzCase = (
  kind: "key" | "record",
  body: (c: FuzzConnection) => Promise<CaseResult>,
): FuzzRun =>
async (server, index, r) => {
  const peer = `fuzz-${kind}-${index}.`;
  const raw = new RawPeer(server.connect(peer));
  let detail = "";
  try {
    return await body({
      raw,
      peer,
      index,
      r,
      async mutate(table, line, predict) {
        const mutator = pick(r, Object.keys(table));
        const bytes = withLf(table[mutator](line, r));
        const prediction = predict(bytes);
        detail = `${mutator}: ${describe(bytes)} → ${outcomeName(prediction)}`;
        await raw.write(bytes);
        return { mutator, prediction };
      },
    });
  } catch (error) {
    throw new Error(`${kind} case ${index} ${detail}: ${(error as Error).message}`);
  } finally {
    raw.close();
  }
};

const fuzzKey = fuzzCase("key", async ({ raw, peer, mutate }) => {
  const client = await rawClientHandshake(raw, { sendKey: false });
  const { keyLine, session } = client;
  const { mutator, prediction } = await mutate(
    KEY_MUTATORS,
    keyLine,
    (bytes) => predictKey(keyLine, bytes),
  );
  let end = prediction.end;
  if (end.kind === "accepted") {
    // Our next record proves which key the server took.
    await raw.writeLine(session.seal("msg", "after the key"));
    if (prediction.otherKey) {
      end = refused(/^record authentication failed/);
    } else {
      await expectAck(client, 0);
      await raw.writeLine(session.seal("bye", ""));
    }
  }
  await expectEnd(raw, { acks: 0, end }, session, 0);
  return caseResult(peer, mutator, prediction, end);
});

const fuzzRecord = fuzzCase("record", async ({ raw, peer, index, r, mutate }) => {
  const client = await rawClientHandshake(raw);
  const { session } = client;
  const warmup = r.int(3);
  for (let i = 0; i < warmup; i++) await sendAndExpectAck(client, `warmup ${i}`);
  const line = session.seal("msg", `fuzz ${index} ✓ ${"é".repeat(r.int(20))}`);
  const sealed = JSON.parse(line) as Sealed;
  const { mutator, prediction } = await mutate(
    RECORD_MUTATORS,
    line,
    (bytes) => predictRecord(sealed, bytes),
  );
  if (prediction.end.kind === "accepted") {
    for (let i = 0; i < prediction.acks; i++) await expectAck(client, warmup + i);
    await raw.writeLine(session.seal("bye", ""));
    await expectEnd(raw, { acks: 0, end: prediction.end }, session, 0);
  } else {
    await expectEnd(raw, prediction, session, warmup);
  }
  return caseResult(peer, mutator, prediction, prediction.end);
});

const silentLogger = (errors: string[]): Logger => ({
  quiet: true,
  info: () => {},
  success: () => {},
  line: () => {},
  notice: () => {},
  error: (message) => errors.push(message),
});

Deno.test("fuzz: seeded mutations of key and record lines, each outcome predicted, against one server", async () => {
  const KEY_CASES = 700;
  const RECORD_CASES = 1100;
  const WORKERS = 6;
  console.log(`  fuzz seed ${SEED} (0x${SEED.toString(16)})`);
  await using srv = testServer({
    // Fixed keys on both sides: every case's bytes follow from the seed alone.
    privateKey: SERVER_KEY,
  });
  const { server, serverLog: log, sink } = srv;
  const started = performance.now();
  // A good client chatting for the whole run.
  let fuzzing = true;
  const alongside: string[] = [];
  const goodErrors: string[] = [];
  const good = runClient({
    connection: server.connect("alongside."),
    input: new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (!fuzzing) return controller.close();
        await sleep(10);
        const line = `alongside the fuzzer ${alongside.length}`;
        alongside.push(line);
        controller.enqueue(encoder.encode(line + "\n"));
      },
    }),
    interactive: false,
    logger: silentLogger(goodErrors),
    timeoutMs: 10_000,
  });

  const rng = seededRandom(SEED);
  const jobs = Array.from(
    { length: KEY_CASES + RECORD_CASES },
    (_, index) => ({ index, seed: rng.int(2 ** 31), key: index % 5 < 2 }),
  );
  const results: CaseResult[] = [];
  let next = 0;
  await within(
    Promise.all(Array.from({ length: WORKERS }, async () => {
      while (next < jobs.length) {
        const job = jobs[next++];
        const r = seededRandom(job.seed);
        const run = job.key ? fuzzKey : fuzzRecord;
        results.push(await within(run(server, job.index, r), 10_000, `case ${job.index}`));
        // Memory pipes run on promise jobs alone: let timers (the good client's) run too.
        await sleep(0);
      }
    })),
    60_000,
    "the fuzz cases",
  );
  fuzzing = false;
  assert.equal(await within(good, 15_000, "the good client"), 0, goodErrors.join("\n"));
  const goodMessages = sink.messages.filter((m) => m.peer === "alongside.");
  assert.deepEqual(goodMessages.map((m) => m.text), alongside);
  assert.ok(alongside.length >= 10, `only ${alongside.length} lines alongside`);
  assert.equal(results.length, jobs.length);

  // One error line per refused connection, naming the same problem; none for the others.
  for (const result of results) {
    const logged = loggedError(log, result.peer);
    if (result.logged) {
      assert.equal(logged.length, 1, `${result.peer} (${result.mutator}): ${logged}`);
      assert.match(logged[0], result.logged, `${result.peer} (${result.mutator})`);
    } else {
      assert.deepEqual(logged, [], `${result.peer} (${result.mutator})`);
    }
  }
  const histogram = (key: (r: CaseResult) => string) =>
    Object.entries(Object.groupBy(results, key)).map(([k, v]) => `${k} ${v!.length}`).join(", ");
  console.log(`  ${results.length} cases in ${(performance.now() - started).toFixed(0)} ms`);
  console.log(`  outcomes: ${histogram((r) => r.outcome)}`);
  console.log(`  mutators: ${histogram((r) => r.mutator)}`);
  // The fuzzer must exercise both sides of every judgement.
  const outcomes = new Set(results.map((r) => r.outcome));
  for (
    const needed of ["accepted", "refused", "peer-error", "ack+refused", "accepted (other key)"]
  ) {
    assert.ok(outcomes.has(needed), `no case ended "${needed}": ${[...outcomes]}`);
  }
});

Deno.test("fuzz: seeded mutations of the server's hello against the client, each outcome predicted", async () => {
  const CASES = 1000;
  const seed = SEED ^ 0x4e11_0;
  console.log(`  hello fuzz seed ${seed}`);
  const rng = seededRandom(seed);
  const hello = helloWith();
  const outcomes: Record<string, number> = {};
  for (let index = 0; index < CASES; index++) {
    const r = seededRandom(rng.int(2 ** 31));
    const mutator = pick(r, Object.keys(HELLO_MUTATORS));
    const bytes = withLf(HELLO_MUTATORS[mutator](hello, r));
    const [first] = receivedLines(bytes);
    const judgement = judgeHello(first);
    const detail = `hello case ${index} ${mutator}: ${describe(bytes)} → ${judgement.kind}`;
    const fake = fakeServer(async (server) => {
      await server.write(bytes);
      await server.readToEof(5000);
    });
    const errors: string[] = [];
    try {
      const code = await within(
        runClient({
          connection: fake.connection,
          input: textStream(""),
          interactive: false,
          logger: silentLogger(errors),
          timeoutMs: 1000,
        }),
        5000,
        detail,
      ).catch((error) => {
        throw new Error(`${detail}: ${error.message}`);
      });
      fake.peer.close();
      await fake.done.catch(() => {});
      const sent = fake.peer.received.map(tryParse);
      const key = sent.some((frame) => frame?.type === "key");
      const errorFrame = sent.find((frame) => frame?.type === "error");
      if (judgement.kind === "accepted") {
        assert.ok(key, `${detail}: no key sent; errors: ${errors}`);
      } else {
        assert.equal(code, 1, detail);
        assert.ok(!key, `${detail}: a key was sent`);
        if (judgement.kind === "refused") {
          assert.ok(errorFrame, `${detail}: no error frame sent`);
          assert.match(String(errorFrame.message), judgement.error, detail);
          // Printed as a sentence: the frame's reason with its first letter upper-case.
          const first = (errors[0] ?? "").replace(/^./, (c) => c.toLowerCase());
          assert.ok(judgement.error.test(first), `${detail}: printed ${JSON.stringify(errors)}`);
        } else {
          assert.equal(errorFrame, undefined, `${detail}: an error frame answered an error frame`);
          assert.match(errors[0] ?? "", /^Peer reported an error/, detail);
        }
      }
      const name = judgement.kind === "refused" ? "refused" : judgement.kind;
      outcomes[name] = (outcomes[name] ?? 0) + 1;
    } finally {
      fake.peer.close();
    }
  }
  console.log(`  hello outcomes: ${JSON.stringify(outcomes)}`);
  assert.ok(outcomes.accepted > 0 && outcomes.refused > 0, JSON.stringify(outcomes));
});

Deno.test("fuzz: the predictor itself, on hand-made lines", () => {
  const sealed: Sealed = { type: "msg", seq: 2, data: "AAAA", tag: "A".repeat(43) + "=" };
  const record = (changes: Record<string, unknown>) =>
    encoder.encode(JSON.stringify({ ...sealed, ...changes }) + "\n");
  const judged = (bytes: Uint8Array) => predictRecord(sealed, bytes).end;
  assert.equal(judged(record({})).kind, "accepted");
  assert.equal(predictRecord(sealed, record({})).acks, 1);
  assert.match((judged(record({ seq: 3 })) as { error: RegExp }).error.source, /wrong sequence/);
  assert.match((judged(record({ seq: 1e400 })) as { error: RegExp }).error.source, /JSON integer/);
  assert.match((judged(record({ data: "QR==" })) as { error: RegExp }).error.source, /canonical/);
  assert.match((judged(record({ data: "QQ" })) as { error: RegExp }).error.source, /standard/);
  assert.match((judged(record({ type: "chat" })) as { error: RegExp }).error.source, /chat/);
  assert.equal(judged(record({ type: "error" })).kind, "peer-error");
  assert.match(
    (judged(encoder.encode(`{"type":"msg","seq":2.0,"data":"AAAB","tag":"${sealed.tag}"}\n`)) as {
      error: RegExp;
    }).error.source,
    /authentication/,
  );
  assert.equal(
    judged(encoder.encode(`{"tag":"${sealed.tag}","seq":2.0,"data":"AAAA","type":"msg"}\r\n`)).kind,
    "accepted",
  );
  assert.equal(judgeKey(JSON.stringify({ type: "key", publicKey: "2" })).kind, "accepted");
  assert.equal(judgeKey(JSON.stringify({ type: "key", publicKey: "1" })).kind, "refused");
  assert.equal(judgeHello(helloWith()).kind, "accepted");
  assert.equal(judgeHello(helloWith({ cipher: "xor8" })).kind, "refused");
  assert.deepEqual(receivedLines(encoder.encode("a\r\nb\n\xff")), ["a", "b"]);
});

// ───────────────────────────────────────────────────────────────────────────
// Soak
// ───────────────────────────────────────────────────────────────────────────

Deno.test("soak: 300 concurrent clients × 30 messages through one server, none lost, all in order", async () => {
  const CLIENTS = 300;
  const MESSAGES = 30;
  const serverErrors: string[] = [];
  let delivered = 0;
  const nextSeq = new Map<string, number>();
  const disorder: string[] = [];
  const server = startServer({
    listen: false,
    maxClients: CLIENTS,
    // All at once on purpose: every handshake may wait its turn (no eviction).
    maxHandshakes: CLIENTS,
    handshakeTimeoutMs: 60_000,
    logger: silentLogger(serverErrors),
    onMessage: ({ peer, seq, text }) => {
      delivered++;
      const expected = nextSeq.get(peer) ?? 0;
      if (seq !== expected || text !== `soak ${peer} m${expected}`) {
        disorder.push(`${peer} seq ${seq} (expected ${expected}): ${text}`);
      }
      nextSeq.set(peer, seq + 1);
    },
  });
  const clientErrors: string[] = [];
  const started = performance.now();
  try {
    const codes = await within(
      Promise.all(Array.from({ length: CLIENTS }, (_, c) => {
        const peer = `soak-${c}`;
        const input = Array.from({ length: MESSAGES }, (_, m) => `soak ${peer} m${m}\n`).join("");
        return runClient({
          connection: server.connect(peer),
          input: textStream(input),
          interactive: false,
          logger: silentLogger(clientErrors),
          timeoutMs: 30_000,
        });
      })),
      60_000,
      "the soak clients",
    );
    const elapsed = performance.now() - started;
    console.log(
      `  ${CLIENTS} clients × ${MESSAGES} messages in ${elapsed.toFixed(0)} ms ` +
        `(${(delivered / (elapsed / 1000)).toFixed(0)} msg/s)`,
    );
    assert.deepEqual(clientErrors.slice(0, 5), [], `${clientErrors.length} client errors`);
    assert.deepEqual(serverErrors.slice(0, 5), [], `${serverErrors.length} server errors`);
    assert.equal(codes.length, CLIENTS);
    assert.equal(codes.filter((code) => code !== 0).length, 0, "clients that did not exit 0");
    assert.equal(delivered, CLIENTS * MESSAGES, "messages delivered");
    assert.deepEqual(disorder.slice(0, 5), [], `${disorder.length} out of order`);
    assert.equal(nextSeq.size, CLIENTS);
    assert.ok([...nextSeq.values()].every((n) => n === MESSAGES));
  } finally {
    await within(server.close(), 10_000, "server close");
  }
  assert.equal(server.connections, 0);
});
