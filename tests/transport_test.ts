/**
 * Tests of transport.ts: the bounded line reader (socket and stdin modes),
 * the batched and bounded write queue of LineConnection, bounded(), both
 * handshakes, the ack tracker, and the Channel (acks, ping/pong, keepalive,
 * bye) between two real sessions over in-memory pipes.
 *
 * Needs no permissions: everything runs over memoryPipe or hand-made streams.
 */

import assert from "node:assert/strict";
import vectors from "./dhx1-vectors.json" with { type: "json" };
import {
  acceptKey,
  createOffer,
  customGroup,
  type DhGroup,
  encodeError,
  GROUPS,
  HostKey,
  MAX_WIRE_DIGITS,
  parseHello,
  PROTOCOL,
  ProtocolError,
  type RecordType,
  respondToHello,
  SECURE_CIPHER,
  type Session,
  TOY_CIPHER,
} from "../dh.ts";
import {
  AckTracker,
  bounded,
  Channel,
  type ChannelEnd,
  type ChannelEvent,
  type ChannelOptions,
  clientHandshake,
  type ClientHandshakeOptions,
  DEFAULT_MAX_LINE,
  type Duplex,
  LineConnection,
  type LineConnectionOptions,
  LineError,
  LineReader,
  type LineReaderOptions,
  longestHello,
  maxRecordText,
  memoryPipe,
  serverHandshake,
} from "../transport.ts";
import { IndependentRecords, sleep, within } from "./support.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ───────────────────────────────────────────────────────────────────────────
// Local helpers
// ───────────────────────────────────────────────────────────────────────────

type Chunk = string | number[] | Uint8Array;

function bytesOf(chunk: Chunk): Uint8Array {
  if (typeof chunk === "string") return encoder.encode(chunk);
  return chunk instanceof Uint8Array ? chunk : Uint8Array.from(chunk);
}

/** A pull stream that hands out `chunks` one per read, then closes. */
function streamOf(chunks: Chunk[]): ReadableStream<Uint8Array> {
  const queue = chunks.map(bytesOf);
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = queue.shift();
      if (next === undefined) controller.close();
      else controller.enqueue(next);
    },
  }, { highWaterMark: 0 });
}

function readerOf(chunks: Chunk[], options?: LineReaderOptions): LineReader {
  return new LineReader(streamOf(chunks), options);
}

/** Every line until null. */
async function readAll(reader: LineReader): Promise<string[]> {
  const lines: string[] = [];
  for (;;) {
    const line = await reader.readLine();
    if (line === null) return lines;
    lines.push(line);
  }
}

/** Each readLine outcome until null: a line, or `!` and the error's class and message. */
async function outcomes(reader: LineReader, max = 20): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < max; i++) {
    try {
      const line = await reader.readLine();
      if (line === null) return seen;
      seen.push(line);
    } catch (error) {
      seen.push(`!${(error as Error).name}: ${(error as Error).message}`);
    }
  }
  throw new Error(`no end after ${max} reads: ${JSON.stringify(seen)}`);
}

/** Asserts a rejection with a ProtocolError whose message matches. */
async function rejectsProtocol(
  run: () => Promise<unknown>,
  message: RegExp,
  type: typeof ProtocolError = ProtocolError,
): Promise<ProtocolError> {
  let caught: unknown;
  await assert.rejects(run, (error) => {
    caught = error;
    assert.ok(error instanceof type, `expected a ${type.name}, got ${error}`);
    assert.match((error as Error).message, message);
    return true;
  });
  return caught as ProtocolError;
}

/** Polls `ready` until it holds (bounded). */
async function eventually(ready: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!ready()) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(2);
  }
}

/**
 * A Duplex that records every write it receives (one entry per write) and
 * never produces input. With `hold`, each write stays in flight until
 * `release()` is called.
 */
function recordingDuplex(hold = false) {
  const writes: string[] = [];
  const waiting: (() => void)[] = [];
  const duplex: Duplex = {
    readable: new ReadableStream<Uint8Array>(),
    writable: new WritableStream<Uint8Array>({
      async write(chunk) {
        writes.push(decoder.decode(chunk));
        if (hold) await new Promise<void>((resolve) => waiting.push(resolve));
      },
    }),
  };
  return {
    duplex,
    writes,
    inFlight: () => waiting.length,
    release: () => waiting.shift()?.(),
  };
}

/** A frame as the peer sees it: an opened record, or an `error` frame. */
interface WireFrame {
  readonly type: RecordType | "error";
  readonly seq?: number;
  readonly text: string;
}

/** The hand-driven side of a session: seals and opens records on its own link. */
class WirePeer {
  constructor(readonly link: LineConnection, readonly session: Session) {}

  /** Seals and queues a record. */
  send(type: RecordType, text: string): void {
    this.link.send(this.session.seal(type, text));
  }

  /** The next frame, opened; null at the end of input. */
  async next(ms = 5000): Promise<WireFrame | null> {
    const line = await within(this.link.readLine(), ms, "a frame from the channel");
    if (line === null) return null;
    const frame = JSON.parse(line);
    if (frame.type === "error") return { type: "error", text: frame.message };
    const record = this.session.open(line);
    return { type: record.type, seq: record.seq, text: record.text };
  }

  /** The next `n` frames, opened (null for each one past the end of input). */
  async take(n: number): Promise<(WireFrame | null)[]> {
    const frames: (WireFrame | null)[] = [];
    for (let i = 0; i < n; i++) frames.push(await this.next());
    return frames;
  }

  /** Every frame up to the end of input. */
  async rest(ms = 5000): Promise<WireFrame[]> {
    const frames: WireFrame[] = [];
    for (;;) {
      const frame = await this.next(ms);
      if (frame === null) return frames;
      frames.push(frame);
    }
  }
}

/** Both ends of a real handshake over a memory pipe. */
interface Pair {
  readonly serverLink: LineConnection;
  readonly clientLink: LineConnection;
  readonly serverSession: Session;
  readonly clientSession: Session;
}

interface PairOptions {
  readonly server?: LineConnectionOptions;
  readonly client?: LineConnectionOptions;
  readonly serverKey?: bigint;
  readonly clientKey?: bigint;
}

async function pair(options: PairOptions = {}): Promise<Pair> {
  const [a, b] = memoryPipe();
  const serverLink = new LineConnection(a, options.server);
  const clientLink = new LineConnection(b, options.client);
  const [serverSession, { session: clientSession }] = await within(
    Promise.all([
      serverHandshake(serverLink, {
        group: GROUPS.ffdhe2048,
        cipher: SECURE_CIPHER,
        privateKey: options.serverKey,
        timeoutMs: 10_000,
      }),
      clientHandshake(clientLink, {
        insecure: false,
        privateKey: options.clientKey,
        timeoutMs: 10_000,
      }),
    ]),
    15_000,
    "handshake",
  );
  assert.ok(serverSession);
  return { serverLink, clientLink, serverSession, clientSession };
}

/** A running Channel on one side and a {@link WirePeer} on the other. */
interface ChannelUnderTest {
  readonly channel: Channel;
  readonly peer: WirePeer;
  readonly events: ChannelEvent[];
  readonly ended: Promise<ChannelEnd>;
  /** performance.now() just before the channel was made. */
  readonly createdAt: number;
  readonly pair: Pair;
  /** Closes both links and waits (bounded) for the channel's end. */
  close(): Promise<ChannelEnd>;
}

async function channelUnderTest(
  side: "server" | "client",
  options: ChannelOptions = {},
  react?: (event: ChannelEvent, channel: Channel) => void,
  pairOptions: PairOptions = {},
): Promise<ChannelUnderTest> {
  const p = await pair(pairOptions);
  const [link, session, peerLink, peerSession] = side === "server"
    ? [p.serverLink, p.serverSession, p.clientLink, p.clientSession]
    : [p.clientLink, p.clientSession, p.serverLink, p.serverSession];
  const createdAt = performance.now();
  const channel = new Channel(link, session, options);
  const events: ChannelEvent[] = [];
  const ended = channel.run((event) => {
    events.push(event);
    react?.(event, channel);
  });
  const peer = new WirePeer(peerLink, peerSession);
  return {
    channel,
    peer,
    events,
    ended,
    createdAt,
    pair: p,
    async close() {
      peerLink.close();
      link.close();
      return await within(ended, 5000, "the channel's end");
    },
  };
}

/** A step of `t` that runs `body` on a fresh {@link channelUnderTest}. */
function channelStep(
  t: Deno.TestContext,
  name: string,
  side: "server" | "client",
  options: ChannelOptions,
  body: (c: ChannelUnderTest) => Promise<void>,
): Promise<boolean> {
  return t.step(name, async () => await body(await channelUnderTest(side, options)));
}

/** A link's failure, read without the narrowing of an earlier assertion. */
function failureOf(link: LineConnection): ProtocolError | undefined {
  return link.failure;
}

/**
 * The peer reads one frame, an error frame saying `text`, then EOF; the
 * channel has ended with an error (whose message matches `message`, if given).
 */
async function endsWithErrorFrame(
  c: ChannelUnderTest,
  text: string,
  message?: RegExp,
): Promise<void> {
  assert.deepEqual(await c.peer.rest(), [{ type: "error", text }]);
  const error = errorEnd(await c.close());
  if (message) assert.match(error.message, message);
}

function errorEnd(end: ChannelEnd): ProtocolError | Error {
  assert.equal(end.reason, "error", `expected an error end, got ${JSON.stringify(end)}`);
  return (end as { error: ProtocolError | Error }).error;
}

// ───────────────────────────────────────────────────────────────────────────
// 1. LineReader (socket mode)
// ───────────────────────────────────────────────────────────────────────────

Deno.test("LineReader: lines split across chunks", async () => {
  assert.deepEqual(await readAll(readerOf(["hel", "lo wo", "rld\n"])), ["hello world"]);
  assert.deepEqual(await readAll(readerOf(["a", "b\nc", "d\n"])), ["ab", "cd"]);
  assert.deepEqual(await readAll(readerOf([..."one\ntwo\n"])), ["one", "two"], "a byte a chunk");
});

Deno.test("LineReader: several lines in one chunk", async () => {
  assert.deepEqual(await readAll(readerOf(["one\ntwo\nthree\n"])), ["one", "two", "three"]);
  assert.deepEqual(await readAll(readerOf(["a\nb\nc", "\nd\n"])), ["a", "b", "c", "d"]);
});

Deno.test("LineReader: readLines hands out every line of a chunk at once", async () => {
  const reader = readerOf(["a\nb\nc\n", "d\ne", "f\n"]);
  assert.deepEqual(await reader.readLines(), ["a", "b", "c"]);
  assert.deepEqual(await reader.readLines(), ["d"]);
  assert.deepEqual(await reader.readLines(), ["ef"]);
  assert.equal(await reader.readLines(), null);
  assert.equal(await reader.readLines(), null);

  const mixed = readerOf(["1\n2\n3\n4\n"]);
  assert.equal(await mixed.readLine(), "1", "readLine takes one line");
  assert.deepEqual(await mixed.readLines(), ["2", "3", "4"], "readLines takes the rest");
  assert.equal(await mixed.readLines(), null);

  const crlf = readerOf(["x\r\ny\r\n\r\n"]);
  assert.deepEqual(await crlf.readLines(), ["x", "y", ""]);
});

Deno.test("LineReader: CR stripped only directly before LF", async () => {
  assert.deepEqual(await readAll(readerOf(["one\r\ntwo\r\n"])), ["one", "two"]);
  assert.deepEqual(await readAll(readerOf(["one\r", "\ntwo\n"])), ["one", "two"], "CR | LF");
  assert.deepEqual(await readAll(readerOf(["a\rb\n"])), ["a\rb"], "inner CR kept");
  assert.deepEqual(await readAll(readerOf(["a\r\r\n"])), ["a\r"], "only one CR stripped");
  assert.deepEqual(await readAll(readerOf(["\rab\n"])), ["\rab"], "leading CR kept");
  assert.deepEqual(await readAll(readerOf(["\r\n"])), [""]);
  assert.deepEqual(await readAll(readerOf(["a\r", "b\n"])), ["a\rb"], "CR | not LF");
});

Deno.test("LineReader: empty lines", async () => {
  assert.deepEqual(await readAll(readerOf(["\n\n\n"])), ["", "", ""]);
  assert.deepEqual(await readAll(readerOf(["a\n\nb\n", "\n"])), ["a", "", "b", ""]);
});

Deno.test("LineReader: null at end of input, and again after it", async () => {
  const empty = readerOf([]);
  assert.equal(await empty.readLine(), null);
  assert.equal(await empty.readLine(), null);
  const reader = readerOf(["x\n", new Uint8Array(0)]);
  assert.equal(await reader.readLine(), "x");
  assert.equal(await reader.readLine(), null);
  assert.equal(await reader.readLine(), null);
  assert.equal(await reader.readLines(), null);
});

Deno.test("LineReader: maxLine is inclusive, LF and a CR before it excluded", async (t) => {
  const maxLine = 16;
  const exact = "x".repeat(maxLine);
  const over = "x".repeat(maxLine + 1);
  const options = { maxLine };
  await t.step("exactly maxLine bytes, LF and CRLF, one chunk or split", async () => {
    assert.deepEqual(await readAll(readerOf([`${exact}\n`], options)), [exact]);
    assert.deepEqual(await readAll(readerOf([`${exact}\r\n`], options)), [exact]);
    assert.deepEqual(await readAll(readerOf([exact, "\r", "\n"], options)), [exact]);
    assert.deepEqual(await readAll(readerOf([exact, "\r\n"], options)), [exact]);
    assert.deepEqual(
      await readAll(readerOf([exact.slice(0, 5), exact.slice(5), "\n"], options)),
      [exact],
    );
    assert.deepEqual(
      await readAll(readerOf([`${exact}\n${exact}\r\n${exact}\n`], options)),
      [exact, exact, exact],
      "the limit is per line, not per chunk",
    );
    const multibyte = "é".repeat(maxLine / 2); // 16 bytes, 8 characters
    assert.deepEqual(await readAll(readerOf([`${multibyte}\n`], options)), [multibyte]);
  });
  await t.step("maxLine + 1 bytes refused, LF and CRLF, one chunk or split", async () => {
    const cases: Chunk[][] = [
      [`${over}\n`],
      [`${over}\r\n`],
      [over, "\n"],
      [over, "\r\n"],
      [exact, "x\n"],
      [exact, "\r", "x\n"],
      [`${exact}\rx\n`],
      [exact.slice(0, 8), exact.slice(8) + "x", "\n"],
      ["é".repeat(maxLine / 2) + "x\n"],
    ];
    for (const chunks of cases) {
      await rejectsProtocol(
        () => readerOf(chunks, options).readLine(),
        /^line longer than 16 bytes$/,
        LineError,
      );
    }
  });
  await t.step("the default limit is 1 MiB", async () => {
    assert.equal(DEFAULT_MAX_LINE, 1_048_576);
    const mib = "y".repeat(DEFAULT_MAX_LINE);
    const chunked = (s: string) =>
      Array.from(
        { length: Math.ceil(s.length / 65536) },
        (_, i) => s.slice(i * 65536, (i + 1) * 65536),
      );
    assert.equal((await readerOf([...chunked(mib), "\r\n"]).readLine())?.length, DEFAULT_MAX_LINE);
    assert.equal((await readerOf([mib + "\n"]).readLine())?.length, DEFAULT_MAX_LINE);
    await rejectsProtocol(
      () => readerOf([...chunked(mib + "y"), "\n"]).readLine(),
      /line longer than 1048576 bytes/,
    );
    await rejectsProtocol(
      () => readerOf([mib + "y\n"]).readLine(),
      /line longer than 1048576 bytes/,
    );
  });
});

Deno.test("LineReader: an endless line is refused after at most maxLine + 1 + a chunk", async () => {
  const cases = [[10_000, 1000], [10_000, 4096], [100, 1], [64, 4096], [1, 1], [5000, 5000]];
  for (const [maxLine, chunkSize] of cases) {
    for (const kind of ["stream", "function"]) {
      let pulled = 0;
      let pulls = 0;
      const next = (): Uint8Array => {
        pulls++;
        if (pulled > 50 * (maxLine + chunkSize)) throw new Error(`kept pulling: ${pulled} bytes`);
        pulled += chunkSize;
        return new Uint8Array(chunkSize).fill(0x61);
      };
      const reader = kind === "stream"
        ? new LineReader(
          new ReadableStream<Uint8Array>({
            pull: (controller) => controller.enqueue(next()),
          }, { highWaterMark: 0 }),
          { maxLine },
        )
        : new LineReader(() => Promise.resolve(next()), { maxLine });
      await rejectsProtocol(
        () => reader.readLine(),
        new RegExp(`^line longer than ${maxLine} bytes$`),
        LineError,
      );
      const label =
        `${kind}, maxLine ${maxLine}, chunks of ${chunkSize}: ${pulled} bytes in ${pulls}`;
      // It must see more than maxLine + 1 bytes (one byte could be a CR) …
      assert.ok(pulled > maxLine + 1, label);
      // … and must stop within one chunk after that.
      assert.ok(pulled <= maxLine + 1 + chunkSize, label);
      reader.cancel();
    }
  }
});

Deno.test("LineReader: end of input in the middle of a line", async (t) => {
  await t.step("a ProtocolError by default, and it is final", async () => {
    const reader = readerOf(["one\ntw", "o"]);
    assert.equal(await reader.readLine(), "one");
    const first = await rejectsProtocol(() => reader.readLine(), /closed in the middle of a line/);
    assert.ok(!(first instanceof LineError), "not a per-line error");
    const again = await rejectsProtocol(() => reader.readLine(), /closed in the middle of a line/);
    assert.equal(again, first, "the same error again");
    await rejectsProtocol(() => readerOf(["\r"]).readLine(), /middle of a line/);
  });
  await t.step("a final line with allowUnterminated", async () => {
    const options = { allowUnterminated: true };
    assert.deepEqual(await readAll(readerOf(["one\ntw", "o"], options)), ["one", "two"]);
    assert.deepEqual(await readAll(readerOf(["one\n"], options)), ["one"], "no extra empty line");
    assert.deepEqual(await readAll(readerOf(["solo"], options)), ["solo"]);
    assert.deepEqual(await readAll(readerOf(["a\r"], options)), ["a"], "a CR at the very end");
  });
  await t.step("the limit applies to the final line too", async () => {
    const options = { allowUnterminated: true, maxLine: 4 };
    assert.deepEqual(await readAll(readerOf(["abcd"], options)), ["abcd"]);
    assert.deepEqual(await readAll(readerOf(["ab", "cd"], options)), ["abcd"]);
    await rejectsProtocol(() => readerOf(["abcde"], options).readLine(), /longer than 4 bytes/);
    await rejectsProtocol(() => readerOf(["abc", "de"], options).readLine(), /longer than 4/);
  });
});

Deno.test("LineReader: invalid UTF-8 is refused", async () => {
  const invalid = [
    [0x61, 0xff, 0x0a],
    [0xc3, 0x0a], // truncated two-byte sequence
    [0xe4, 0xb8, 0x0a], // truncated three-byte sequence
    [0xc0, 0xaf, 0x0a], // overlong
    [0xed, 0xa0, 0x80, 0x0a], // surrogate
    [0xf4, 0x90, 0x80, 0x80, 0x0a], // above U+10FFFF
  ];
  for (const bytes of invalid) {
    await rejectsProtocol(
      () => readerOf([bytes]).readLine(),
      /^line is not valid UTF-8$/,
      LineError,
    );
  }
  // A valid line before the bad one is still delivered.
  const reader = readerOf(["ok\n", [0xff, 0x0a], "later\n"]);
  assert.equal(await reader.readLine(), "ok");
  const first = await rejectsProtocol(() => reader.readLine(), /not valid UTF-8/);
  // Socket mode: the error is final, the line after it is never handed out.
  assert.equal(await reader.readLine().catch((e) => e), first);
  // A BOM is content, not dropped.
  assert.deepEqual(await readAll(readerOf([[0xef, 0xbb, 0xbf, 0x61, 0x0a]])), ["\ufeffa"]);
});

Deno.test("LineReader: errors are final in socket mode", async () => {
  const reader = readerOf(["x".repeat(20) + "\n", "fine\n"], { maxLine: 10 });
  const first = await rejectsProtocol(() => reader.readLine(), /longer than 10 bytes/);
  const second = await reader.readLine().then(() => undefined, (e) => e);
  assert.equal(second, first, "the same error, not the next line");
  const third = await reader.readLines().then(() => undefined, (e) => e);
  assert.equal(third, first);
});

Deno.test("LineReader: multi-byte UTF-8 split across chunks", async () => {
  const text = "Grüße, 世界 🙂";
  const bytes = encoder.encode(`${text}\n`);
  for (let cut = 1; cut < bytes.length; cut++) {
    const lines = await readAll(readerOf([bytes.subarray(0, cut), bytes.subarray(cut)]));
    assert.deepEqual(lines, [text], `split at byte ${cut}`);
  }
  const byByte = Array.from(bytes, (b) => Uint8Array.of(b));
  assert.deepEqual(await readAll(readerOf(byByte)), [text], "one byte per chunk");
});

Deno.test("LineReader: a partial line is copied, not referenced", async () => {
  // A source may reuse its buffer once a chunk has been handed over.
  const buffer = new Uint8Array(3);
  let pulls = 0;
  const reader = new LineReader(() => {
    pulls++;
    if (pulls === 1) buffer.set(encoder.encode("abc"));
    else if (pulls === 2) buffer.set(encoder.encode("de\n"));
    else return Promise.resolve(null);
    return Promise.resolve(buffer);
  });
  assert.equal(await reader.readLine(), "abcde");
  assert.equal(await reader.readLine(), null);
  assert.equal(pulls, 3);
});

// ───────────────────────────────────────────────────────────────────────────
// 2. LineReader (stdin mode: skipBadLines) and lineTimeoutMs
// ───────────────────────────────────────────────────────────────────────────

Deno.test("LineReader skipBadLines: a bad line throws LineError, reading goes on", async () => {
  const options = { maxLine: 10, skipBadLines: true, allowUnterminated: true };
  const reader = readerOf([
    "ok\n",
    "x".repeat(20) + "\n",
    "after\n",
    [0xff, 0xfe, 0x0a],
    "exactly10!\n",
    "x".repeat(11) + "\nnext\n",
    "end",
  ], options);
  assert.equal(await reader.readLine(), "ok");
  await rejectsProtocol(() => reader.readLine(), /^line longer than 10 bytes$/, LineError);
  assert.equal(await reader.readLine(), "after");
  await rejectsProtocol(() => reader.readLine(), /^line is not valid UTF-8$/, LineError);
  assert.equal(await reader.readLine(), "exactly10!");
  await rejectsProtocol(() => reader.readLine(), /longer than 10/, LineError);
  assert.equal(await reader.readLine(), "next");
  assert.equal(await reader.readLine(), "end");
  assert.equal(await reader.readLine(), null);
  assert.equal(await reader.readLine(), null);
});

Deno.test("LineReader skipBadLines: a line overlong by chunks before its LF is skipped", async () => {
  // The excess arrives before the LF: the rest is discarded as it comes.
  const options = { maxLine: 10, skipBadLines: true };
  assert.deepEqual(
    await outcomes(readerOf(["x".repeat(15), "y".repeat(15), "z\nnext\n"], options)),
    ["!LineError: line longer than 10 bytes", "next"],
  );
  assert.deepEqual(
    await outcomes(readerOf(["x".repeat(12), "\n", "next\n"], options)),
    ["!LineError: line longer than 10 bytes", "next"],
  );
});

Deno.test("LineReader skipBadLines: an overlong line whose excess comes with its LF", async () => {
  // The start of the line is held (under the limit); the chunk that ends it
  // brings the excess. Expected: the line is refused, the next one delivered.
  const options = { maxLine: 10, skipBadLines: true };
  const cases: Chunk[][] = [
    ["abc", "defghijklmn\nnext\n"],
    ["abcdefgh", "ijklmnopqrstuvwxyz\nnext\n"],
    ["abc", "defghijklmn\n", "next\n"],
  ];
  for (const chunks of cases) {
    assert.deepEqual(
      await outcomes(readerOf(chunks, options)),
      ["!LineError: line longer than 10 bytes", "next"],
      `chunks ${JSON.stringify(chunks)}`,
    );
  }
});

Deno.test("LineReader skipBadLines: an overlong line is discarded, never buffered", async () => {
  const maxLine = 1000;
  const chunk = new Uint8Array(65_536).fill(0x61); // one buffer, handed out again and again
  const total = 32 * 1024 * 1024;
  let pulled = 0;
  let heldWhilePulling = Infinity;
  const before = Deno.memoryUsage().external;
  const reader = new LineReader(() => {
    if (pulled < total) {
      pulled += chunk.length;
      return Promise.resolve(chunk);
    }
    if (pulled === total) {
      pulled++;
      // Whatever the reader holds of the line now, it holds in ArrayBuffers.
      heldWhilePulling = Deno.memoryUsage().external - before;
      return Promise.resolve(encoder.encode("\nnext\n"));
    }
    return Promise.resolve(null);
  }, { maxLine, skipBadLines: true });
  await rejectsProtocol(() => reader.readLine(), /longer than 1000 bytes/, LineError);
  assert.equal(pulled, total + 1, "the whole line was pulled (and skipped)");
  assert.ok(
    heldWhilePulling < 8 * 1024 * 1024,
    `${(heldWhilePulling / 2 ** 20).toFixed(1)} MiB held after pulling 32 MiB of one line`,
  );
  assert.equal(await reader.readLine(), "next");
  assert.equal(await reader.readLine(), null);
});

Deno.test("LineReader skipBadLines: an overlong last line at the end of input", async () => {
  for (const allowUnterminated of [true, false]) {
    const options = { maxLine: 4, skipBadLines: true, allowUnterminated };
    assert.deepEqual(
      await outcomes(readerOf(["ok\n", "toolong"], options)),
      ["ok", "!LineError: line longer than 4 bytes"],
      `allowUnterminated ${allowUnterminated}, one chunk`,
    );
    assert.deepEqual(
      await outcomes(readerOf(["ok\n", "too", "long", "er"], options)),
      ["ok", "!LineError: line longer than 4 bytes"],
      `allowUnterminated ${allowUnterminated}, split`,
    );
  }
  // An unterminated line within the limit is a line in stdin mode.
  assert.deepEqual(
    await outcomes(
      readerOf(["ok\n", "abcd"], { maxLine: 4, skipBadLines: true, allowUnterminated: true }),
    ),
    ["ok", "abcd"],
  );
});

Deno.test("LineReader lineTimeoutMs: a started line must end in time", async (t) => {
  await t.step("a line that never ends fails, and the failure is final", async () => {
    let pulls = 0;
    const reader = new LineReader(() => {
      pulls++;
      return pulls === 1 ? Promise.resolve(encoder.encode("partial")) : new Promise(() => {});
    }, { lineTimeoutMs: 50 });
    const error = await within(
      rejectsProtocol(() => reader.readLine(), /^line not finished within 0\.05 s$/),
      5000,
      "the line timeout",
    );
    assert.equal(await reader.readLine().catch((e) => e), error);
  });
  await t.step("the bound counts from the line's start, not per chunk", async () => {
    const pending: Promise<unknown>[] = [];
    const parts = ["a", "b", "c", "d", "\n"];
    let pulls = 0;
    const reader = new LineReader(() => {
      const part = parts[pulls++];
      if (part === undefined) return Promise.resolve(null);
      const delayed = sleep(pulls === 1 ? 0 : 40).then(() => encoder.encode(part));
      pending.push(delayed);
      return delayed;
    }, { lineTimeoutMs: 70 });
    await within(rejectsProtocol(() => reader.readLine(), /not finished within/), 5000, "timeout");
    await Promise.all(pending);
  });
  await t.step("a line finished in time passes; waiting between lines is not bounded", async () => {
    /** A reader whose chunks come each after its delay (ms). */
    const paced = (parts: [number, string][], lineTimeoutMs: number) =>
      new LineReader(async () => {
        const part = parts.shift();
        if (!part) return null;
        await sleep(part[0]);
        return encoder.encode(part[1]);
      }, { lineTimeoutMs });
    const parts: [number, string][] = [[0, "one\n"], [150, "tw"], [0, "o\n"], [0, "thr"], [
      10,
      "ee\n",
    ]];
    assert.deepEqual(await readAll(paced(parts, 5000)), ["one", "two", "three"]);

    // Idle time before a line starts does not count, even far beyond the bound.
    const idle: [number, string][] = [[0, "a\n"], [120, "b\n"]];
    assert.deepEqual(await readAll(paced(idle, 30)), ["a", "b"]);
  });
});

// ───────────────────────────────────────────────────────────────────────────
// 3. LineConnection
// ───────────────────────────────────────────────────────────────────────────

Deno.test("LineConnection: lines queued in one turn leave in one write, in order", async () => {
  const { duplex, writes } = recordingDuplex();
  const link = new LineConnection(duplex);
  assert.equal(link.peer, "memory");
  assert.equal(link.hostname, "memory");
  link.send("one");
  link.send("two");
  link.send("three");
  assert.equal(writes.length, 0, "nothing is written synchronously");
  await link.drain();
  assert.deepEqual(writes, ["one\ntwo\nthree\n"]);
  assert.equal(link.queuedBytes, 0);

  link.send("four");
  await link.drain();
  link.send("five");
  link.send("six");
  await link.drain();
  assert.deepEqual(writes, ["one\ntwo\nthree\n", "four\n", "five\nsix\n"]);
  link.close();
  assert.equal(new LineConnection(recordingDuplex().duplex, { peer: "p:1" }).peer, "p:1");
});

Deno.test("LineConnection: lines queued during a write leave together in the next", async () => {
  const { duplex, writes, inFlight, release } = recordingDuplex(true);
  const link = new LineConnection(duplex);
  link.send("first");
  await eventually(() => inFlight() === 1, "the first write");
  link.send("a");
  await sleep(1);
  link.send("b");
  await sleep(1);
  link.send("c");
  assert.equal(link.queuedBytes, "first\na\nb\nc\n".length, "queued plus in flight");
  assert.deepEqual(writes, ["first\n"]);
  release();
  await eventually(() => inFlight() === 1, "the second write");
  assert.deepEqual(writes, ["first\n", "a\nb\nc\n"], "three turns, one write");
  release();
  await within(link.drain(), 5000, "drain");
  assert.equal(link.queuedBytes, 0);
  link.close();
});

Deno.test("LineConnection: a last line seals the queue", async () => {
  const { duplex, writes } = recordingDuplex();
  const link = new LineConnection(duplex);
  link.send("x");
  link.send("bye", true);
  link.send("after the bye");
  await link.drain();
  link.send("later still");
  await link.fail("an error after the bye");
  assert.deepEqual(writes, ["x\nbye\n"]);
  assert.ok(link.closed);
});

Deno.test("LineConnection: too many queued lines fail it; the peer reads an error frame", async () => {
  const [a, b] = memoryPipe();
  const link = new LineConnection(a, { maxQueuedLines: 3 });
  for (const line of ["l1", "l2", "l3"]) link.send(line);
  assert.equal(failureOf(link), undefined, "three lines are within the bound");
  link.send("l4");
  assert.ok(link.failure instanceof ProtocolError);
  assert.match(link.failure.message, /^peer too far behind: 4 lines \(\d+ bytes\) unsent$/);
  link.send("l5 is never sent");
  const peer = new LineConnection(b);
  const frames = [];
  for (;;) {
    const line = await within(peer.readLine(), 5000, "peer read");
    if (line === null) break;
    frames.push(JSON.parse(line));
  }
  assert.deepEqual(frames, [{ type: "error", message: link.failure.message }]);
  await eventually(() => link.closed, "the link to close");
  peer.close();
});

Deno.test("LineConnection: too many queued bytes fail it, after the write in flight", async () => {
  const [a, b] = memoryPipe();
  const link = new LineConnection(a, { maxQueuedBytes: 100 });
  const big = "b".repeat(60);
  link.send(big); // in flight until the peer reads
  await sleep(1);
  assert.equal(failureOf(link), undefined);
  link.send("c".repeat(60)); // 61 + 61 bytes > 100
  assert.match(link.failure?.message ?? "", /^peer too far behind: .* unsent$/);
  const peer = new LineConnection(b);
  assert.equal(await within(peer.readLine(), 5000, "first line"), big);
  const error = JSON.parse((await within(peer.readLine(), 5000, "error frame"))!);
  assert.deepEqual(error, { type: "error", message: link.failure!.message });
  assert.equal(await within(peer.readLine(), 5000, "end"), null);
  assert.ok(link.closed);
  peer.close();
});

Deno.test("LineConnection: a write that does not finish in time fails the link", async () => {
  const [a, b] = memoryPipe(); // b never reads
  const link = new LineConnection(a, { writeTimeoutMs: 50 });
  link.send("nobody reads this");
  await within(link.drain(), 5000, "the write timeout");
  assert.ok(link.failure instanceof ProtocolError);
  assert.equal(link.failure.message, "write timed out after 0.05 s: the peer is not reading");
  assert.ok(link.closed);
  const before = link.queuedBytes;
  link.send("ignored");
  assert.equal(link.queuedBytes, before, "nothing is queued after the failure");
  void b;
});

Deno.test("LineConnection: a pending read ends with the link's failure", async (t) => {
  await t.step("write timeout", async () => {
    const [a] = memoryPipe();
    const link = new LineConnection(a, { writeTimeoutMs: 50 });
    const read = link.readLine().then((line) => ({ line }), (error: Error) => ({ error }));
    link.send("nobody reads this");
    const outcome = await within(read, 5000, "the pending read");
    assert.ok(link.failure, "the link failed");
    assert.ok(
      "error" in outcome,
      `the read resolved ${JSON.stringify(outcome)}, as if the peer had closed cleanly`,
    );
    assert.equal(outcome.error, link.failure);
  });
  await t.step("queue overflow", async () => {
    const [a, b] = memoryPipe();
    const link = new LineConnection(a, { maxQueuedLines: 1 });
    const read = link.readLine().then((line) => ({ line }), (error: Error) => ({ error }));
    link.send("1");
    link.send("2");
    const peer = new LineConnection(b);
    await within(peer.readLine(), 5000, "the error frame");
    const outcome = await within(read, 5000, "the pending read");
    peer.close();
    assert.ok(link.failure, "the link failed");
    assert.ok("error" in outcome, `the read resolved ${JSON.stringify(outcome)}`);
    assert.equal(outcome.error, link.failure);
  });
  await t.step("a channel whose peer stops reading ends with that failure", async () => {
    const c = await channelUnderTest("server", {}, undefined, { server: { writeTimeoutMs: 50 } });
    c.channel.send("notice", "the peer never reads this");
    const end = await within(c.ended, 5000, "the channel's end");
    await c.close();
    assert.equal(
      c.pair.serverLink.failure?.message,
      "write timed out after 0.05 s: the peer is not reading",
    );
    assert.equal(end.reason, "error", `the channel ended ${JSON.stringify(end)}`);
  });
});

Deno.test("LineConnection: drain waits for the peer to read", async () => {
  const [a, b] = memoryPipe();
  const link = new LineConnection(a);
  link.send("one");
  link.send("two");
  let drained = false;
  const draining = link.drain().then(() => drained = true);
  await sleep(30);
  assert.equal(drained, false, "drained before anyone read");
  assert.ok(link.queuedBytes > 0);
  const peer = new LineConnection(b);
  assert.equal(await within(peer.readLine(), 5000, "one"), "one");
  assert.equal(await within(peer.readLine(), 5000, "two"), "two");
  await within(draining, 5000, "drain");
  assert.equal(link.queuedBytes, 0);
  await within(link.drain(), 1000, "drain with nothing queued");
  link.close();
  peer.close();
});

Deno.test("LineConnection: fail() sends an error frame after the queue, then closes", async () => {
  const [a, b] = memoryPipe();
  const link = new LineConnection(a);
  const peer = new LineConnection(b);
  link.send("queued first");
  const failing = link.fail("something went wrong");
  assert.equal(await within(peer.readLine(), 5000, "line"), "queued first");
  assert.deepEqual(JSON.parse((await within(peer.readLine(), 5000, "frame"))!), {
    type: "error",
    message: "something went wrong",
  });
  assert.equal(await within(peer.readLine(), 5000, "end"), null);
  await within(failing, 5000, "fail()");
  assert.ok(link.closed);
  assert.equal(link.failure, undefined, "our own refusal is not a link failure");
  await within(link.fail("again"), 1000, "fail() on a closed link");
  peer.close();
});

Deno.test("LineConnection: fail() gives up when the peer does not read", async () => {
  const [a, b] = memoryPipe();
  const link = new LineConnection(a); // a stuck write would take 10 s to time out
  await within(link.fail("nobody listens"), 5000, "fail()");
  assert.ok(link.closed);
  assert.equal(link.failure, undefined);
  await b.readable.cancel(); // ends the stuck write (and its timer)
  await within(link.drain(), 5000, "the stuck write to end");
});

Deno.test("LineConnection: close() is idempotent and ends both sides", async () => {
  const [a, b] = memoryPipe();
  const link = new LineConnection(a);
  const peer = new LineConnection(b);
  const pending = link.readLine();
  link.close();
  link.close();
  assert.ok(link.closed);
  assert.equal(await within(pending, 5000, "pending read"), null);
  link.send("after close");
  assert.equal(link.queuedBytes, 0);
  assert.equal(await within(peer.readLine(), 5000, "peer end"), null);
  assert.equal(await within(link.readLine(), 1000, "read after close"), null);
  peer.close();
});

Deno.test("LineConnection: incoming lines are bounded by maxLine", async () => {
  const [a, b] = memoryPipe();
  const link = new LineConnection(a, { maxLine: 8 });
  const peer = new LineConnection(b);
  peer.send("12345678");
  peer.send("123456789");
  assert.equal(await within(link.readLine(), 5000, "line"), "12345678");
  await rejectsProtocol(() => within(link.readLine(), 5000, "long"), /longer than 8 bytes/);
  link.close();
  peer.close();
});

// ───────────────────────────────────────────────────────────────────────────
// 4. bounded()
// ───────────────────────────────────────────────────────────────────────────

Deno.test("bounded: resolves, rejects with the original error, or passes through", async () => {
  assert.equal(await bounded(Promise.resolve(5), { ms: 1000 }), 5);
  const controller = new AbortController();
  assert.equal(
    await bounded(sleep(5).then(() => "late"), { ms: 5000, signal: controller.signal }),
    "late",
  );
  const original = new Error("original");
  await assert.rejects(bounded(Promise.reject(original), { ms: 1000 }), (e) => e === original);
  const promise = Promise.resolve(1);
  assert.equal(bounded(promise, {}), promise, "no bounds: the promise itself");
});

Deno.test("bounded: a deadline rejects with a ProtocolError", async () => {
  const never = new Promise<never>(() => {});
  const error = await rejectsProtocol(
    () => bounded(never, { ms: 20, timeout: "too slow" }),
    /^too slow$/,
  );
  assert.equal(error.fromPeer, false);
  await rejectsProtocol(() => bounded(never, { ms: 1 }), /^timed out$/);
});

Deno.test("bounded: a signal aborts the wait", async () => {
  const never = new Promise<never>(() => {});
  const controller = new AbortController();
  const waiting = bounded(never, { ms: 10_000, signal: controller.signal, aborted: "stopped" });
  setTimeout(() => controller.abort(), 5);
  await rejectsProtocol(() => within(waiting, 5000, "abort"), /^stopped$/);
  await rejectsProtocol(() => bounded(never, { signal: AbortSignal.abort() }), /^interrupted$/);
});

Deno.test("bounded: a late rejection of the loser is not unhandled", async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (event: PromiseRejectionEvent) => {
    unhandled.push(event.reason);
    event.preventDefault();
  };
  globalThis.addEventListener("unhandledrejection", onUnhandled);
  try {
    const lateFailure = (ms: number) =>
      sleep(ms).then(() => {
        throw new Error(`late failure after ${ms} ms`);
      });
    // Lost to the deadline.
    await rejectsProtocol(() => bounded(lateFailure(30), { ms: 1 }), /timed out/);
    // Lost to a signal that had already fired.
    await rejectsProtocol(
      () => bounded(lateFailure(30), { signal: AbortSignal.abort() }),
      /interrupted/,
    );
    // Lost to a signal that fires during the wait.
    const controller = new AbortController();
    const waiting = bounded(lateFailure(30), { signal: controller.signal });
    controller.abort();
    await rejectsProtocol(() => waiting, /interrupted/);
    await sleep(80);
    // The probe: an unhandled rejection is seen by this listener.
    Promise.reject(new Error("probe"));
    await sleep(10);
    assert.deepEqual(unhandled.map((e) => (e as Error).message), ["probe"]);
  } finally {
    globalThis.removeEventListener("unhandledrejection", onUnhandled);
  }
});

// ───────────────────────────────────────────────────────────────────────────
// 5. Handshakes
// ───────────────────────────────────────────────────────────────────────────

interface ServerSide {
  readonly group: DhGroup;
  readonly cipher?: typeof SECURE_CIPHER;
  readonly privateKey?: bigint;
}

/** A server end and a client end of a fresh memory pipe, as line connections. */
function linkPair(): { server: LineConnection; client: LineConnection } {
  const [a, b] = memoryPipe();
  return { server: new LineConnection(a), client: new LineConnection(b) };
}

/** The server's side of a handshake on ffdhe2048 with the secure cipher. */
function secureServerHandshake(link: LineConnection, timeoutMs: number) {
  return serverHandshake(link, { group: GROUPS.ffdhe2048, cipher: SECURE_CIPHER, timeoutMs });
}

/** Runs both handshakes over a memory pipe. */
async function handshake(server: ServerSide, client: Partial<ClientHandshakeOptions>) {
  const { server: serverLink, client: clientLink } = linkPair();
  const serverResult = serverHandshake(serverLink, {
    group: server.group,
    cipher: server.cipher ?? (server.group === GROUPS.toy ? TOY_CIPHER : SECURE_CIPHER),
    privateKey: server.privateKey,
    timeoutMs: 10_000,
  });
  serverResult.catch(() => {});
  try {
    const result = await within(
      clientHandshake(clientLink, { insecure: false, timeoutMs: 10_000, ...client }),
      15_000,
      "client handshake",
    );
    const serverSession = await within(serverResult, 15_000, "server handshake");
    assert.ok(serverSession);
    return { ...result, serverSession };
  } catch (error) {
    clientLink.close(); // a client that refused never sends its key
    assert.equal(await within(serverResult, 5000, "server end"), null, "the server got no key");
    throw error;
  } finally {
    clientLink.close();
    serverLink.close();
  }
}

/** g^x mod p by square-and-multiply, independent of dh.ts. */
function power(g: bigint, x: bigint, p: bigint): bigint {
  let result = 1n;
  let base = g % p;
  for (let e = x; e > 0n; e >>= 1n) {
    if (e & 1n) result = result * base % p;
    base = base * base % p;
  }
  return result;
}

Deno.test("handshake: both sides agree, and match the known-answer vectors", async () => {
  const plain = await handshake({ group: GROUPS.ffdhe2048 }, {});
  assert.equal(plain.session.fingerprint, plain.serverSession.fingerprint);
  assert.match(plain.session.fingerprint, /^[0-9A-F]{4}(-[0-9A-F]{4}){3}$/);
  assert.equal(plain.session.role, "client");
  assert.equal(plain.serverSession.role, "server");
  assert.equal(plain.hello.group, GROUPS.ffdhe2048);
  assert.equal(plain.session.sharedSecret, plain.serverSession.sharedSecret);

  // Revision-1/2 vectors (no host key): the revision-3 ones are replayed in the auth tests.
  for (const v of vectors.filter((v) => !("hostKey" in v))) {
    const group = GROUPS[v.group as keyof typeof GROUPS];
    const result = await handshake(
      { group, privateKey: BigInt(v.serverPrivateKey) },
      { insecure: v.cipher === TOY_CIPHER, privateKey: BigInt(v.clientPrivateKey) },
    );
    assert.equal(result.hello.line, v.helloLine, `${v.group}: hello line`);
    assert.equal(result.session.fingerprint, v.fingerprint, `${v.group}: client fingerprint`);
    assert.equal(result.serverSession.fingerprint, v.fingerprint, `${v.group}: server`);
    assert.equal(result.session.publicKey.toString(), v.clientPublicKey);
  }
});

Deno.test("handshake: a client refuses a toy server unless insecure", async () => {
  await rejectsProtocol(
    () => handshake({ group: GROUPS.toy }, {}),
    /toy group.*rerun with --toy/,
  );
  await rejectsProtocol(
    () => handshake({ group: customGroup(2039n, 7n), cipher: SECURE_CIPHER }, {}),
    /custom parameters/,
  );
  const toy = await handshake({ group: GROUPS.toy, privateKey: 3n }, {
    insecure: true,
    privateKey: 4n,
  });
  assert.equal(toy.hello.group.name, "toy");
  assert.equal(toy.session.cipher, TOY_CIPHER);
  assert.equal(toy.session.fingerprint, toy.serverSession.fingerprint);
});

Deno.test("handshake: the teaching key is used for toy and custom groups only", async () => {
  const toy = await handshake({ group: GROUPS.toy, privateKey: 3n }, {
    insecure: true,
    teachingKey: 5n,
  });
  assert.equal(toy.session.privateKey, 5n);
  assert.equal(toy.session.publicKey, 20n, "5^5 mod 23");
  assert.equal(toy.session.fingerprint, vectors[0].fingerprint);

  const custom = customGroup(2039n, 7n);
  assert.equal(custom.name, "custom");
  const taught = await handshake({ group: custom, cipher: SECURE_CIPHER, privateKey: 3n }, {
    insecure: true,
    teachingKey: 5n,
  });
  assert.equal(taught.session.privateKey, 5n);
  assert.equal(taught.session.publicKey, power(7n, 5n, 2039n));

  const keys = new Set<bigint>();
  for (let i = 0; i < 2; i++) {
    const real = await handshake({ group: GROUPS.ffdhe2048 }, { insecure: true, teachingKey: 5n });
    assert.notEqual(real.session.privateKey, 5n, "--toy facing a real group draws a random key");
    assert.notEqual(real.session.publicKey, 32n, "g^5 = 32 would be the teaching key's");
    assert.equal(real.session.privateKey.toString(2).length, GROUPS.ffdhe2048.privateKeyBits);
    keys.add(real.session.privateKey);
  }
  assert.equal(keys.size, 2, "two handshakes, two fresh keys");
});

Deno.test("handshake: an explicit private key is used on any group", async () => {
  const key = 123_456_789_123_456_789n;
  const real = await handshake({ group: GROUPS.ffdhe2048 }, { privateKey: key });
  assert.equal(real.session.privateKey, key);
  assert.equal(real.session.publicKey, power(2n, key, GROUPS.ffdhe2048.p));
  const both = await handshake({ group: GROUPS.toy, privateKey: 3n }, {
    insecure: true,
    privateKey: 7n,
    teachingKey: 5n,
  });
  assert.equal(both.session.privateKey, 7n, "an explicit key beats the teaching key");
  assert.equal(both.session.publicKey, power(5n, 7n, 23n));
  const edge = await handshake({ group: GROUPS.toy, privateKey: 3n }, {
    insecure: true,
    privateKey: 21n,
  });
  assert.equal(edge.session.privateKey, 21n, "p - 2 is allowed");
});

Deno.test("handshake: a private key outside 1 … p − 2 is a ProtocolError", async () => {
  const p = GROUPS.ffdhe2048.p;
  for (const privateKey of [0n, p - 1n, p, -1n]) {
    await rejectsProtocol(
      () => handshake({ group: GROUPS.ffdhe2048 }, { privateKey }),
      /^cannot use this private key: /,
    );
  }
  await rejectsProtocol(
    () => handshake({ group: GROUPS.toy, privateKey: 3n }, { insecure: true, privateKey: 22n }),
    /cannot use this private key/,
  );
});

Deno.test("handshake: random keys on the toy group always make a session", async () => {
  // Drawn uniformly from 2 … p − 2, a key of 11 gives 5^11 mod 23 = 22 = p − 1,
  // a public key the peer must refuse: about one handshake in twenty fails.
  const failures: string[] = [];
  for (let round = 0; round < 100; round++) {
    try {
      await handshake({ group: GROUPS.toy }, { insecure: true });
    } catch (error) {
      failures.push((error as Error).message);
    }
  }
  assert.deepEqual(failures, [], `${failures.length} of 100 toy handshakes failed`);
});

Deno.test("handshake: timeouts on both sides", async () => {
  {
    const { server: silentServer, client } = linkPair();
    await rejectsProtocol(
      () => clientHandshake(client, { insecure: false, timeoutMs: 50 }),
      /^no hello from the server within 0\.05 s$/,
    );
    client.close();
    silentServer.close();
  }
  {
    const { server, client: silentClient } = linkPair();
    const handshaking = secureServerHandshake(server, 50);
    const hello = await within(silentClient.readLine(), 5000, "hello");
    assert.match(hello ?? "", /^\{"type":"hello"/);
    await rejectsProtocol(() => handshaking, /^no key within 0\.05 s \(handshake timeout\)$/);
    server.close();
    silentClient.close();
  }
});

Deno.test("handshake: the server closes before its hello; the client leaves before its key", async () => {
  {
    const { server, client } = linkPair();
    server.close();
    await rejectsProtocol(
      () => clientHandshake(client, { insecure: false, timeoutMs: 5000 }),
      /^server closed the connection before its hello$/,
    );
    client.close();
  }
  {
    const { server, client } = linkPair();
    const handshaking = secureServerHandshake(server, 5000);
    await within(client.readLine(), 5000, "hello");
    client.close();
    assert.equal(await within(handshaking, 5000, "server handshake"), null);
    server.close();
  }
});

Deno.test("handshake: a signal aborts the client's wait for the hello", async () => {
  const { server, client } = linkPair();
  const controller = new AbortController();
  const waiting = clientHandshake(client, {
    insecure: false,
    timeoutMs: 10_000,
    signal: controller.signal,
  });
  setTimeout(() => controller.abort(), 10);
  await rejectsProtocol(
    () => within(waiting, 5000, "abort"),
    /^interrupted while waiting for the server's hello$/,
  );
  await rejectsProtocol(
    () =>
      clientHandshake(client, { insecure: false, timeoutMs: 10_000, signal: AbortSignal.abort() }),
    /interrupted/,
  );
  client.close();
  server.close();
});

// ───────────────────────────────────────────────────────────────────────────
// 6. AckTracker
// ───────────────────────────────────────────────────────────────────────────

Deno.test("AckTracker: acks in order drop records; wrong or extra acks throw", () => {
  const acks = new AckTracker();
  acks.track(0, "first");
  acks.track(1, "second");
  acks.track(5, "sixth");
  assert.equal(acks.pending, 3);
  assert.deepEqual(acks.pendingSeqs(), [0, 1, 5]);
  const first = acks.acknowledge("0");
  assert.equal(first.seq, 0);
  assert.equal(first.note, "first");
  assert.throws(
    () => acks.acknowledge("5"),
    (e) => e instanceof ProtocolError && e.message === "peer acknowledged record 5, expected 1",
  );
  assert.throws(() => acks.acknowledge("01"), /acknowledged record 01, expected 1/);
  assert.throws(() => acks.acknowledge(" 1"), ProtocolError);
  assert.equal(acks.pending, 2, "a refused ack drops nothing");
  assert.equal(acks.acknowledge("1").note, "second");
  assert.equal(acks.acknowledge("5").seq, 5);
  assert.equal(acks.pending, 0);
  assert.deepEqual(acks.pendingSeqs(), []);
  assert.throws(
    () => acks.acknowledge("6"),
    (e) =>
      e instanceof ProtocolError &&
      e.message === "peer acknowledged record 6, which was never sent",
  );
});

Deno.test("AckTracker: after a confirm, an ack may name seq − 1 (vectors 6-7); otherwise only the seq", () => {
  const strict = new AckTracker();
  strict.track(1);
  assert.throws(() => strict.acknowledge("0"), /acknowledged record 0, expected 1/);
  const afterConfirm = new AckTracker(0, undefined, true);
  for (const seq of [1, 2, 3, 4]) afterConfirm.track(seq);
  assert.equal(afterConfirm.acknowledge("0").seq, 1, "vector 6: msg seq 1 acked with 0");
  assert.equal(afterConfirm.acknowledge("2").seq, 2, "the text's own form still works");
  assert.throws(() => afterConfirm.acknowledge("1"), /acknowledged record 1, expected 3/);
  assert.throws(() => afterConfirm.acknowledge("4"), /acknowledged record 4, expected 3/);
  assert.equal(afterConfirm.pending, 2);
});

Deno.test("AckTracker: thousands of records acknowledged in order", () => {
  const acks = new AckTracker();
  for (let seq = 0; seq < 3000; seq++) acks.track(seq);
  for (let seq = 0; seq < 2500; seq++) assert.equal(acks.acknowledge(String(seq)).seq, seq);
  assert.equal(acks.pending, 500);
  assert.deepEqual(acks.pendingSeqs(), Array.from({ length: 500 }, (_, i) => 2500 + i));
  for (let seq = 3000; seq < 3100; seq++) acks.track(seq);
  for (let seq = 2500; seq < 3100; seq++) assert.equal(acks.acknowledge(String(seq)).seq, seq);
  assert.equal(acks.pending, 0);
  assert.throws(() => acks.acknowledge("3100"), /never sent/);
});

Deno.test("AckTracker: drained()", async () => {
  const acks = new AckTracker();
  assert.equal(await acks.drained({ ms: 1 }), true, "nothing pending");
  acks.track(0);
  acks.track(1);
  assert.equal(await acks.drained({ ms: 20 }), false, "deadline");
  assert.equal(await acks.drained({ signal: AbortSignal.abort() }), false, "aborted");
  const controller = new AbortController();
  const aborting = acks.drained({ signal: controller.signal });
  controller.abort();
  assert.equal(await aborting, false);
  let settled = false;
  const waiting = acks.drained({ ms: 10_000 }).then((value) => (settled = true, value));
  acks.acknowledge("0");
  await sleep(5);
  assert.equal(settled, false, "one record still pending");
  acks.acknowledge("1");
  assert.equal(await within(waiting, 5000, "drained"), true);
});

Deno.test("AckTracker: an overdue episode is reported once, after timeoutMs", async () => {
  const timeoutMs = 200;
  const reports: { seq: number; pending: number; age: number }[] = [];
  const acks = new AckTracker(timeoutMs, (oldest, pending) => {
    reports.push({ seq: oldest.seq, pending, age: performance.now() - oldest.sentAt });
  });
  acks.track(0, "zero");
  acks.track(1, "one");
  acks.acknowledge("0");
  acks.acknowledge("1");
  for (let seq = 2; seq < 2002; seq++) acks.track(seq, `line ${seq}`);
  assert.equal(reports.length, 0, "nothing is overdue at once");
  await eventually(() => reports.length >= 1, "the report");
  await sleep(3 * timeoutMs);
  assert.equal(reports.length, 1, "2,000 records overdue: one report");
  assert.equal(reports[0].seq, 2, "about the oldest");
  assert.equal(reports[0].pending, 2000);
  assert.ok(reports[0].age >= timeoutMs, `reported at ${reports[0].age} ms`);
  // Acks that leave some records waiting do not end the episode.
  for (let seq = 2; seq < 2001; seq++) acks.acknowledge(String(seq));
  acks.track(2002, "still in the episode");
  await sleep(3 * timeoutMs);
  assert.equal(reports.length, 1, "the episode goes on");
  // Every record acknowledged: the episode is over, a new one is reported in its turn.
  acks.acknowledge("2001");
  acks.acknowledge("2002");
  acks.track(2003, "a new episode");
  await eventually(() => reports.length === 2, "the second report");
  assert.deepEqual([reports[1].seq, reports[1].pending], [2003, 1]);
  acks.stop();
});

Deno.test("AckTracker: records acked in time start no episode", async () => {
  const reports: number[] = [];
  const acks = new AckTracker(150, (oldest) => void reports.push(oldest.seq));
  acks.track(0);
  await sleep(20);
  acks.track(1);
  acks.acknowledge("0");
  acks.acknowledge("1");
  await sleep(400);
  assert.deepEqual(reports, []);
  acks.stop();
});

Deno.test("AckTracker: stop() ends the timer and releases waiters", async () => {
  let reports = 0;
  const acks = new AckTracker(30, () => void reports++);
  acks.track(0);
  const waiting = acks.drained();
  acks.stop();
  await within(waiting, 1000, "a waiter released by stop()");
  await sleep(100);
  assert.equal(reports, 0, "no report after stop()");
  const silent = new AckTracker(0, () => void reports++);
  silent.track(0);
  await sleep(40);
  assert.equal(reports, 0, "timeoutMs 0: never overdue");
  silent.stop();
});

// ───────────────────────────────────────────────────────────────────────────
// 7. Channel
// ───────────────────────────────────────────────────────────────────────────

Deno.test("Channel: the chat vector, byte for byte: ack, then the notice", async () => {
  const v = vectors[3];
  const records = v.records;
  const t = await channelUnderTest("server", {}, (event, channel) => {
    if (event.type === "msg" && event.text === "/name alice") {
      channel.send("notice", "you are now alice");
    }
  }, { serverKey: BigInt(v.serverPrivateKey), clientKey: BigInt(v.clientPrivateKey) });
  try {
    assert.equal(t.pair.serverSession.fingerprint, v.fingerprint);
    t.peer.link.send(records[0].line);
    assert.equal(await within(t.peer.link.readLine(), 5000, "ack"), records[1].line);
    assert.equal(await within(t.peer.link.readLine(), 5000, "notice"), records[2].line);
    assert.deepEqual(t.events, [{ type: "msg", seq: 0, text: "/name alice" }]);
  } finally {
    await t.close();
  }
});

Deno.test("Channel: a msg is acked before the server's onEvent sees it", async () => {
  let queuedAtEvent = -1;
  const t = await channelUnderTest("server", {}, (event, channel) => {
    if (event.type !== "msg") return;
    queuedAtEvent = channel.session.nextSendSeq;
    channel.send("notice", `got ${event.text}`);
  });
  try {
    t.peer.send("msg", "first");
    t.peer.send("msg", "second");
    assert.deepEqual(await t.peer.take(4), [
      { type: "ack", seq: 0, text: "0" },
      { type: "notice", seq: 1, text: "got first" },
      { type: "ack", seq: 2, text: "1" },
      { type: "notice", seq: 3, text: "got second" },
    ]);
    assert.equal(queuedAtEvent, 3, "the second ack was sealed before onEvent ran");
    assert.deepEqual(t.events.map((e) => e.type === "msg" && e.text), ["first", "second"]);
  } finally {
    await t.close();
  }
});

Deno.test("Channel: a chat is acked before the client's onEvent sees it", async () => {
  const t = await channelUnderTest("client", {}, (event, channel) => {
    if (event.type === "chat") channel.send("msg", `re: ${event.line.text}`);
  });
  try {
    t.peer.send("chat", JSON.stringify({ from: "bob", text: "hi 👋", extra: 1 }));
    assert.deepEqual(await t.peer.next(), { type: "ack", seq: 0, text: "0" });
    assert.deepEqual(await t.peer.next(), { type: "msg", seq: 1, text: "re: hi 👋" });
    assert.deepEqual(t.events, [{ type: "chat", seq: 0, line: { from: "bob", text: "hi 👋" } }]);
  } finally {
    await t.close();
  }
});

Deno.test("Channel: our msgs are tracked until acked; ack events carry the record", async () => {
  const t = await channelUnderTest("client");
  try {
    assert.equal(t.channel.send("msg", "one", "note one"), true);
    assert.equal(t.channel.send("msg", "two", "note two"), true);
    assert.equal(t.channel.acks.pending, 2);
    assert.deepEqual(await t.peer.next(), { type: "msg", seq: 0, text: "one" });
    assert.deepEqual(await t.peer.next(), { type: "msg", seq: 1, text: "two" });
    t.peer.send("ack", "0");
    t.peer.send("ack", "1");
    await eventually(() => t.events.length === 2, "two ack events");
    assert.deepEqual(
      t.events.map((e) => e.type === "ack" && [e.acked.seq, e.acked.note]),
      [[0, "note one"], [1, "note two"]],
    );
    assert.equal(t.channel.acks.pending, 0);
    assert.equal(await t.channel.acks.drained({ ms: 1 }), true);
  } finally {
    await t.close();
  }
});

Deno.test("Channel: a wrong or extra ack ends the session with an error frame", async (t) => {
  await channelStep(t, "wrong ack", "client", {}, async (c) => {
    c.channel.send("msg", "zero");
    c.channel.send("msg", "one");
    c.peer.send("ack", "1");
    const frames = await c.peer.rest();
    assert.equal(frames.at(-1)?.type, "error");
    assert.equal(frames.at(-1)?.text, "peer acknowledged record 1, expected 0");
    const error = errorEnd(await c.close());
    assert.equal(error.message, "peer acknowledged record 1, expected 0");
    assert.equal((error as ProtocolError).fromPeer, false);
    assert.equal(c.events.length, 0);
  });
  await channelStep(t, "extra ack", "server", {}, async (c) => {
    c.peer.send("ack", "0");
    await endsWithErrorFrame(c, "peer acknowledged record 0, which was never sent", /never sent/);
  });
});

Deno.test("Channel: notices are delivered and not acked", async () => {
  const t = await channelUnderTest("client");
  try {
    t.peer.send("notice", "alice joined");
    t.peer.send("notice", "présent: ✓");
    await eventually(() => t.events.length === 2, "two notices");
    assert.deepEqual(t.events, [
      { type: "notice", text: "alice joined" },
      { type: "notice", text: "présent: ✓" },
    ]);
    assert.equal(t.channel.session.nextSendSeq, 0, "nothing was sent back");
  } finally {
    await t.close();
  }
});

Deno.test("Channel: a ping is answered by a pong with its plaintext, first", async () => {
  const t = await channelUnderTest("server", {}, (event, channel) => {
    if (event.type === "msg") channel.send("notice", "answer");
  });
  try {
    // One chunk: a ping, then a msg whose handler queues a notice, then two more pings.
    const sent = [["ping", "p-1"], ["msg", "m"], ["ping", ""], ["ping", "x".repeat(32)]] as const;
    for (const [type, text] of sent) t.peer.send(type, text);
    assert.deepEqual(await t.peer.take(5), [
      { type: "pong", seq: 0, text: "p-1" },
      { type: "ack", seq: 1, text: "1" },
      { type: "notice", seq: 2, text: "answer" },
      { type: "pong", seq: 3, text: "" },
      { type: "pong", seq: 4, text: "x".repeat(32) },
    ]);
    assert.deepEqual(t.events.map((e) => e.type), ["msg"], "pings are not events");
  } finally {
    await t.close();
  }
});

Deno.test("Channel: a pong must answer the oldest ping", async (t) => {
  /** A step on a client channel that pings every 30 ms, its peer known to answer. */
  const pinging = (name: string, body: (c: ChannelUnderTest) => Promise<void>) =>
    channelStep(t, name, "client", { keepaliveMs: 30, peerKnowsPing: true }, body);
  await channelStep(t, "an unsolicited pong", "server", {}, async (c) => {
    c.peer.send("pong", "00000001");
    await endsWithErrorFrame(
      c,
      "pong does not answer the oldest ping sent",
      /pong does not answer the oldest ping/,
    );
  });
  await pinging("a pong with other text", async (c) => {
    const ping = await c.peer.next();
    assert.deepEqual(ping, { type: "ping", seq: 0, text: "00000001" });
    c.peer.send("pong", "00000002");
    await endsWithErrorFrame(c, "pong does not answer the oldest ping sent");
  });
  await pinging("two pings out: the newer answered first", async (c) => {
    assert.equal((await c.peer.next())?.text, "00000001");
    c.peer.send("notice", "alive, but no pong");
    assert.deepEqual(await c.peer.next(), { type: "ping", seq: 1, text: "00000002" });
    c.peer.send("pong", "00000002");
    assert.equal((await c.peer.next())?.type, "error");
    errorEnd(await c.close());
  });
  await pinging("two pings out, answered in order: the session lives", async (c) => {
    assert.equal((await c.peer.next())?.text, "00000001");
    c.peer.send("notice", "alive, but no pong");
    assert.equal((await c.peer.next())?.text, "00000002");
    c.peer.send("pong", "00000001");
    c.peer.send("pong", "00000002");
    assert.deepEqual(await c.peer.next(), { type: "ping", seq: 2, text: "00000003" });
    assert.equal(c.channel.stopped, false);
    c.peer.send("bye", "");
    assert.deepEqual(await within(c.ended, 5000, "end"), { reason: "bye" });
    await c.close();
  });
});

Deno.test("Channel keepalive: a silent peer is pinged, then dropped after another interval", async () => {
  const keepaliveMs = 40;
  const t = await channelUnderTest("server", { keepaliveMs });
  try {
    const ping = await t.peer.next();
    const pingSeenAt = performance.now();
    assert.deepEqual(ping, { type: "ping", seq: 0, text: "00000001" });
    assert.ok(pingSeenAt - t.createdAt >= keepaliveMs, "pinged before an interval of silence");
    const error = await t.peer.next();
    const droppedAt = performance.now();
    assert.equal(error?.type, "error");
    assert.match(error?.text ?? "", /^no answer to keepalive ping: silent for \d+(\.\d)? s$/);
    assert.ok(droppedAt - t.createdAt >= 2 * keepaliveMs, "dropped before two intervals");
    assert.equal(await t.peer.next(), null, "closed after the error frame");
    const end = await within(t.ended, 5000, "end");
    assert.equal(errorEnd(end).message, error?.text);
  } finally {
    await t.close();
  }
});

Deno.test("Channel keepalive: a live idle peer that answers pings survives", async () => {
  const t = await channelUnderTest("server", { keepaliveMs: 25 });
  try {
    const pings: string[] = [];
    while (pings.length < 10) {
      const frame = await t.peer.next();
      assert.equal(frame?.type, "ping", `frame ${JSON.stringify(frame)}`);
      pings.push(frame!.text);
      t.peer.send("pong", frame!.text);
    }
    assert.deepEqual(
      pings,
      Array.from({ length: 10 }, (_, i) => (i + 1).toString(16).padStart(8, "0")),
    );
    assert.equal(t.channel.stopped, false);
    t.peer.send("bye", "");
    assert.deepEqual(await within(t.ended, 5000, "end"), { reason: "bye" });
    assert.equal(await t.peer.next(), null);
  } finally {
    await t.close();
  }
});

Deno.test("Channel keepalive: a peer that keeps talking is not pinged", async () => {
  const keepaliveMs = 100;
  const t = await channelUnderTest("server", { keepaliveMs });
  try {
    let pings = 0;
    const reading = (async () => {
      for (;;) {
        const frame = await t.peer.next(10_000);
        if (frame === null) return;
        if (frame.type === "ping") {
          pings++;
          t.peer.send("pong", frame.text);
        }
      }
    })();
    // A msg every 10 ms for five intervals: never an interval of silence.
    const sent = 50;
    for (let i = 0; i < sent; i++) {
      t.peer.send("msg", `m${i}`);
      await sleep(10);
    }
    await eventually(() => t.events.length === sent, `${sent} msgs delivered`);
    // Only a stall of a whole interval could justify a ping; allow two.
    assert.ok(pings <= 2, `${pings} pings to a peer that never fell silent`);
    assert.equal(t.channel.stopped, false);
    t.peer.send("bye", "");
    assert.deepEqual(await within(t.ended, 5000, "end"), { reason: "bye" });
    await within(reading, 5000, "the reader");
  } finally {
    await t.close();
  }
});

Deno.test("Channel keepalive: a client pings only a peer that has shown revision 2", async (t) => {
  const triggers: [RecordType, string, WireFrame[]][] = [
    ["notice", "welcome", []],
    ["chat", JSON.stringify({ from: "op", text: "hi" }), [{ type: "ack", seq: 0, text: "0" }]],
    ["ping", "abc", [{ type: "pong", seq: 0, text: "abc" }]],
  ];
  for (const [type, text, answers] of triggers) {
    await t.step(`until it receives a ${type}`, async () => {
      const c = await channelUnderTest("client", { keepaliveMs: 20 });
      try {
        assert.equal(c.channel.peerKnowsPing, false);
        await sleep(200); // ten intervals of silence
        assert.equal(c.channel.session.nextSendSeq, 0, "the client sent nothing");
        assert.equal(c.channel.stopped, false, "nor dropped the silent peer");
        c.peer.send(type, text);
        for (const answer of answers) assert.deepEqual(await c.peer.next(), answer);
        const ping = await c.peer.next();
        assert.deepEqual(ping, { type: "ping", seq: answers.length, text: "00000001" });
        assert.equal(c.channel.peerKnowsPing, true);
        c.peer.send("pong", "00000001");
        c.peer.send("bye", "");
        assert.deepEqual(await within(c.ended, 5000, "end"), { reason: "bye" });
      } finally {
        await c.close();
      }
    });
  }
  await t.step("a msg-only server (revision 1) is never pinged", async () => {
    const c = await channelUnderTest("client", { keepaliveMs: 20 });
    try {
      c.channel.send("msg", "hello");
      assert.deepEqual(await c.peer.next(), { type: "msg", seq: 0, text: "hello" });
      c.peer.send("ack", "0");
      await sleep(150);
      assert.equal(c.channel.session.nextSendSeq, 1, "only the msg was sent");
      assert.equal(c.channel.peerKnowsPing, false);
    } finally {
      await c.close();
    }
  });
});

Deno.test("Channel: a full ack window holds records unsealed until acks come back", async () => {
  const t = await channelUnderTest("client", { maxUnacked: 3 });
  try {
    for (let i = 0; i < 5; i++) assert.equal(t.channel.send("msg", `m${i}`), true);
    assert.equal(t.channel.acks.pending, 3, "three sealed: the window");
    assert.equal(t.channel.link.deferredLines, 2, "two wait unsealed");
    assert.equal(t.channel.backlog, 5);
    assert.equal(t.channel.windowOpen, false);
    let writable = false;
    const waiting = t.channel.whenWritable().then((ok) => (writable = ok));
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(await t.peer.next(), { type: "msg", seq: i, text: `m${i}` });
    }
    await sleep(50);
    assert.equal(writable, false, "flow control: the sender waits");
    assert.equal(t.channel.stopped, false, "a full window is no failure");
    // The peer answers a ping meanwhile: control records are never held by the window.
    t.peer.send("ping", "00000001");
    assert.deepEqual(await t.peer.next(), { type: "pong", seq: 3, text: "00000001" });
    t.peer.send("ack", "0");
    // The deferred records are sealed when their turn comes: their seqs follow the pong.
    assert.deepEqual(await t.peer.next(), { type: "msg", seq: 4, text: "m3" });
    t.peer.send("ack", "1");
    t.peer.send("ack", "2");
    assert.deepEqual(await t.peer.next(), { type: "msg", seq: 5, text: "m4" });
    assert.equal(await within(waiting, 5000, "whenWritable"), true);
    t.peer.send("ack", "4");
    t.peer.send("ack", "5");
    assert.equal(await t.channel.settled({ ms: 5000 }), true);
    assert.equal(t.channel.backlog, 0);
  } finally {
    await t.close();
  }
});

Deno.test("Channel: bye() stops delivery, and bye is the last thing on the wire", async (t) => {
  await t.step("a line after the one that says bye, in the same chunk", async () => {
    let byeing: Promise<void> | undefined;
    const c = await channelUnderTest("server", {}, (event, channel) => {
      if (event.type === "msg" && event.text === "quit") {
        channel.send("notice", "leaving");
        byeing = channel.bye(5000);
      }
    });
    c.peer.send("msg", "hello");
    c.peer.send("msg", "quit");
    c.peer.send("msg", "after the bye");
    const frames = await c.peer.rest();
    assert.deepEqual(frames, [
      { type: "ack", seq: 0, text: "0" },
      { type: "ack", seq: 1, text: "1" },
      { type: "notice", seq: 2, text: "leaving" },
      { type: "bye", seq: 3, text: "" },
    ]);
    assert.deepEqual(c.events.map((e) => e.type === "msg" && e.text), ["hello", "quit"]);
    await within(byeing!, 5000, "bye()");
    assert.deepEqual(await within(c.ended, 5000, "end"), { reason: "local" });
    assert.equal(c.channel.send("notice", "too late"), false);
    await c.close();
  });
  await channelStep(t, "a line that arrives after bye()", "server", {}, async (c) => {
    c.peer.send("msg", "before");
    await eventually(() => c.events.length === 1, "the first msg");
    c.channel.send("notice", "queued before bye");
    const byeing = c.channel.bye(5000);
    assert.equal(c.channel.stopped, true);
    assert.equal(c.channel.send("notice", "after bye"), false);
    c.peer.send("msg", "after");
    await within(c.peer.link.drain(), 5000, "the peer's write to be read");
    const frames = await c.peer.rest();
    assert.deepEqual(frames, [
      { type: "ack", seq: 0, text: "0" },
      { type: "notice", seq: 1, text: "queued before bye" },
      { type: "bye", seq: 2, text: "" },
    ]);
    await within(byeing, 5000, "bye()");
    assert.deepEqual(c.events.map((e) => e.type === "msg" && e.text), ["before"]);
    assert.deepEqual(await within(c.ended, 5000, "end"), { reason: "local" });
    await c.close();
  });
});

Deno.test("Channel: the peer's error frame, bye, or close ends the session", async (t) => {
  await channelStep(t, "error frame", "client", {}, async (c) => {
    c.peer.link.send(encodeError("kicked by the server's operator"));
    const end = await within(c.ended, 5000, "end");
    const error = errorEnd(end);
    assert.ok(error instanceof ProtocolError);
    assert.equal(error.fromPeer, true);
    assert.equal(error.message, "peer reported an error: kicked by the server's operator");
    assert.deepEqual(await c.peer.rest(), [], "no error frame is sent back");
    await c.close();
  });
  await channelStep(t, "bye", "server", {}, async (c) => {
    c.peer.send("msg", "last words");
    c.peer.send("bye", "");
    assert.deepEqual(await within(c.ended, 5000, "end"), { reason: "bye" });
    // The channel closes at once: the ack may or may not have left, nothing else may.
    const frames = await c.peer.rest();
    assert.ok(frames.length <= 1, JSON.stringify(frames));
    for (const frame of frames) assert.deepEqual(frame, { type: "ack", seq: 0, text: "0" });
    assert.deepEqual(c.events, [{ type: "msg", seq: 0, text: "last words" }]);
    await c.close();
  });
  await channelStep(t, "close", "server", {}, async (c) => {
    c.peer.link.close();
    assert.deepEqual(await within(c.ended, 5000, "end"), { reason: "closed" });
    assert.equal(c.channel.stopped, true);
    await c.close();
  });
  await channelStep(t, "a forged record", "server", {}, async (c) => {
    const line = JSON.parse(c.pair.clientSession.seal("msg", "forged"));
    line.tag = line.tag.startsWith("A") ? "B" + line.tag.slice(1) : "A" + line.tag.slice(1);
    c.peer.link.send(JSON.stringify(line));
    await endsWithErrorFrame(
      c,
      "record authentication failed (tampered or forged record)",
      /authentication failed/,
    );
    assert.equal(c.events.length, 0);
  });
});

Deno.test("Channel: fail() sends the reason as an error frame", async () => {
  const t = await channelUnderTest("server");
  const failing = t.channel.fail("kicked by the server's operator");
  assert.equal(t.channel.stopped, true);
  assert.equal(t.channel.send("notice", "after fail"), false);
  assert.deepEqual(await t.peer.rest(), [{
    type: "error",
    text: "kicked by the server's operator",
  }]);
  await within(failing, 5000, "fail()");
  const end = await within(t.ended, 5000, "end");
  assert.equal(errorEnd(end).message, "kicked by the server's operator");
  await t.close();
});

Deno.test("Channel: records sealed independently (node:crypto) are accepted", async () => {
  const t = await channelUnderTest("server");
  try {
    const records = new IndependentRecords(t.pair.clientSession.keySchedule, "client");
    t.peer.link.send(records.seal("msg", 0, "independent"));
    t.peer.link.send(records.seal("ping", 1, "p"));
    t.peer.link.send(records.seal("msg", 2, "ünïcödé 🙂"));
    const frames = await t.peer.take(3);
    assert.deepEqual(frames, [
      { type: "ack", seq: 0, text: "0" },
      { type: "pong", seq: 1, text: "p" },
      { type: "ack", seq: 2, text: "2" },
    ]);
    assert.deepEqual(t.events, [
      { type: "msg", seq: 0, text: "independent" },
      { type: "msg", seq: 2, text: "ünïcödé 🙂" },
    ]);
  } finally {
    await t.close();
  }
});

// ───────────────────────────────────────────────────────────────────────────
// 8. Size bounds: longestHello, maxRecordText
// ───────────────────────────────────────────────────────────────────────────

/** Standard base64 of 32 bytes: a host key, a nonce. */
const BASE64_32 = new Uint8Array(32).fill(0xff).toBase64();

function helloLine(group: DhGroup, publicKey: bigint, cipher = SECURE_CIPHER): string {
  return JSON.stringify({
    type: "hello",
    protocol: PROTOCOL,
    group: group.name,
    p: group.p.toString(),
    g: group.g.toString(),
    publicKey: publicKey.toString(),
    cipher,
    hostKey: BASE64_32, // revision 3: a host key and a room password
    auth: "password",
    nonce: BASE64_32,
  });
}

Deno.test("longestHello: every hello of a group fits, and the bound is tight", async () => {
  const groups = [...Object.values(GROUPS), customGroup(2039n, 7n)];
  for (const group of groups) {
    const limit = longestHello(group);
    const longest = helloLine(group, group.p - 2n); // the largest valid public key
    assert.equal(longest.length, limit, `${group.name}: the longest hello`);
    for (const cipher of [SECURE_CIPHER, TOY_CIPHER]) {
      const offer = createOffer(group, cipher, undefined, {
        hostKey: HostKey.generate(),
        password: "pw",
      });
      assert.ok(offer.line.length <= limit, `${group.name} ${cipher}: a real hello`);
    }
    assert.deepEqual(await readAll(readerOf([longest + "\n"], { maxLine: limit })), [longest]);
    await rejectsProtocol(
      () => readerOf([longest + "\n"], { maxLine: limit - 1 }).readLine(),
      /longer than/,
    );
    assert.ok(limit <= longestHello(), `${group.name}: within the bound of any hello`);
  }
  const digits = "9".repeat(MAX_WIRE_DIGITS);
  const widest = JSON.stringify({
    type: "hello",
    protocol: PROTOCOL,
    group: "ffdhe8192",
    p: digits,
    g: digits,
    publicKey: digits,
    cipher: SECURE_CIPHER,
    hostKey: BASE64_32,
    auth: "password",
    nonce: BASE64_32,
  });
  assert.equal(longestHello(), widest.length);
});

Deno.test("maxRecordText: that much text fits a line of n bytes, one byte more does not", () => {
  const records = new IndependentRecords(new Uint8Array(136).fill(7), "server");
  const widestSeq = Number.MAX_SAFE_INTEGER; // 16 digits, as many as a seq can have
  const types: RecordType[] = ["notice", "chat", "msg", "ack", "ping", "pong", "bye"];
  const sizes = [100, 101, 102, 103, 104, 200, 1000, 4096, 65_536, DEFAULT_MAX_LINE];
  for (let n = 100; n < 160; n++) sizes.push(n);
  let checked = 0;
  for (const n of sizes) {
    const m = maxRecordText(n);
    if (m === 0) continue;
    for (const type of types) {
      for (const text of ["x".repeat(m), "€".repeat(m / 3)]) {
        const line = records.seal(type, widestSeq, text);
        assert.ok(line.length <= n, `${type}, n = ${n}: ${line.length} bytes`);
      }
    }
    const over = records.seal("notice", widestSeq, "x".repeat(m + 1));
    assert.ok(over.length > n, `n = ${n}: ${m + 1} bytes of text fit in ${over.length}`);
    checked++;
  }
  assert.ok(checked >= 50, `${checked} sizes checked`);
  // The records measured above have the shape of the product's own records.
  const v = vectors[3];
  const offer = createOffer(GROUPS.ffdhe2048, SECURE_CIPHER, BigInt(v.serverPrivateKey));
  const hello = parseHello(offer.line, { insecure: false });
  const { keyLine } = respondToHello(hello, BigInt(v.clientPrivateKey));
  const server = acceptKey(offer, keyLine);
  const same = new IndependentRecords(server.keySchedule, "server");
  assert.equal(server.seal("notice", "x".repeat(30)), same.seal("notice", 0, "x".repeat(30)));
  assert.equal(maxRecordText(10), 0, "nothing fits a tiny line");
  assert.equal(maxRecordText(0), 0);
});

Deno.test("Channel: the peer's bye with a msg and a ping in its chunk, while our write is in flight: the ack and pong still go out before the close", async () => {
  const c = await channelUnderTest("server");
  try {
    // Our notice is written, but the peer does not read yet: in memory the
    // write stays in flight until it does.
    c.channel.send("notice", "in flight");
    await eventually(() => c.channel.link.queuedBytes > 0, "the notice's write under way");
    await sleep(20);
    assert.ok(c.channel.link.queuedBytes > 0, "the write is still in flight");
    // One chunk from the peer: msg, ping, bye.
    c.peer.send("msg", "last words");
    c.peer.send("ping", "p-1");
    c.peer.send("bye", "");
    await within(c.peer.link.drain(), 5000, "the peer's chunk to be read");
    assert.deepEqual(await c.peer.rest(), [
      { type: "notice", seq: 0, text: "in flight" },
      { type: "ack", seq: 1, text: "0" },
      { type: "pong", seq: 2, text: "p-1" },
    ]);
    assert.deepEqual(await within(c.ended, 5000, "the channel's end"), { reason: "bye" });
    assert.deepEqual(c.events, [{ type: "msg", seq: 0, text: "last words" }]);
  } finally {
    await c.close();
  }
});
