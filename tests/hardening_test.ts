/**
 * Adversarial tests of the DHX/1 server and client: hostile peers on both
 * sides, in memory (no permission needed) except where TCP is the point.
 *
 * The first tests follow the review, one per item, named "item N: …"; the
 * ported classics follow (malformed key frames, framing limits, hostile
 * records, silent and trickling clients, capacity, vanishing clients, hostile
 * hellos and sessions against the client, a slow consumer in room mode).
 *
 * Every hostile case checks the same contract (DHX/1 §Errors): the offender
 * gets an `error` frame naming the problem where that is possible and is
 * closed, and the server keeps serving well-behaved clients.
 *
 * Time bounds appear only where a bound is the requirement (items 1, 2, 4, 6,
 * 7); each says why it cannot flake on a loaded machine. Everything else
 * waits for events, with generous ceilings that only turn a hang into a
 * failure.
 *
 * Run from the repository root: `deno test -P tests/hardening_test.ts`
 * (plain `deno test` runs the in-memory tests and reports the others ignored).
 *
 * @module
 */

import assert from "node:assert/strict";
import net from "node:net";
import { type ClientOptions, parseClientArgs, runClient } from "../client.ts";
import { UsageError } from "../console.ts";
import {
  acceptKey,
  createOffer,
  derivePublicKey,
  GROUPS,
  type Hello,
  MAX_WIRE_DIGITS,
  parseHello,
  respondToHello,
  SECURE_CIPHER,
  Session,
  TOY_CIPHER,
} from "../dh.ts";
import { parseServerArgs, type ServerHandle, type ServerOptions, startServer } from "../server.ts";
import { LineConnection, memoryPipe, serverHandshake } from "../transport.ts";
import {
  CapturingLogger,
  DenoProcess,
  eventually,
  expectAck,
  FAKE_SERVER_KEY,
  fakeServer,
  flipBit,
  type Frame,
  handshakeWith,
  helloWith,
  HOST,
  IndependentRecords,
  lacks,
  linesOf,
  MessageSink,
  OTHER_HOST,
  PrintedLog,
  RAW_CLIENT_KEY,
  type RawClient,
  rawClientHandshake,
  RawPeer,
  runToEnd,
  sendAndExpectAck,
  sleep,
  spawnServer,
  type TestServer,
  testServer,
  textStream,
  tryParse,
  typedClient,
  typedInput,
  unsafeCharacters,
  Waiters,
  withFields,
  within,
} from "./support.ts";

const encoder = new TextEncoder();
const FFDHE2048 = GROUPS.ffdhe2048;
const P = FFDHE2048.p;
const P_DIGITS = P.toString().length;

// ───────────────────────────────────────────────────────────────────────────
// Helpers of these tests (the shared ones are in tests/support.ts)
// ───────────────────────────────────────────────────────────────────────────

/** C1 CSI, ESC, BEL, RIGHT-TO-LEFT OVERRIDE, LEFT-TO-RIGHT ISOLATE: what a hostile peer sends. */
const HOSTILE = "\u009b31m\u001b[2J\u0007\u202e\u2066";
/** Follows HOSTILE in every hostile text, to prove the text reached the screen. */
const MARK = "MARK";

/**
 * The contract for an offending connection: everything up to EOF arrives
 * within `ms`, the last line is an `error` frame whose message matches
 * `pattern`. Returns the lines before it.
 */
async function expectErrorFrame(raw: RawPeer, pattern: RegExp, ms = 5000): Promise<string[]> {
  const lines = await raw.readToEof(ms);
  raw.close();
  const last = tryParse(lines.at(-1));
  assert.ok(
    last?.type === "error" && typeof last.message === "string",
    `expected an error frame then EOF, got ${JSON.stringify(lines).slice(0, 400)}`,
  );
  assert.match(last.message as string, pattern);
  return lines.slice(0, -1);
}

/** The server's error lines about `peer` (its messages name the peer as "peer:", "(peer)" …). */
function errorsAbout(log: CapturingLogger, peer: string): string[] {
  return log.of("error").filter((m) =>
    m.startsWith(`${peer}:`) || m.startsWith(`${peer} `) || m.includes(`(${peer})`)
  );
}

let goodClients = 0;

/**
 * A well-behaved client (runClient, in memory or over TCP) sends `count`
 * lines: exit 0, no `[!]` line, every line delivered in order under one peer.
 */
async function assertGoodClient(
  server: ServerHandle,
  sink: MessageSink,
  count = 3,
  port?: number,
): Promise<void> {
  const id = `good${++goodClients}`;
  const lines = Array.from({ length: count }, (_, i) => `${id} line ${i} ✓ ünïcödé`);
  const log = new PrintedLog();
  const code = await within(
    runClient({
      ...(port === undefined ? { connection: server.connect() } : { port }),
      input: textStream(lines.map((line) => line + "\n").join("")),
      interactive: false,
      logger: log,
      timeoutMs: 5000,
    }),
    15_000,
    "a good client",
  );
  assert.equal(code, 0, `good client failed:\n${log.text()}`);
  assert.deepEqual(log.errors, []);
  const got = sink.messages.filter((m) => m.text.startsWith(`${id} `));
  assert.deepEqual(got.map((m) => m.text), lines, "the good client's lines, in order");
  assert.deepEqual(got.map((m) => m.seq), lines.map((_, i) => i));
  assert.equal(new Set(got.map((m) => m.peer)).size, 1);
}

/** A test of a server over TCP (it needs the network): a fresh {@link testServer}, closed after. */
function tcpServerTest(name: string, fn: (srv: TestServer) => Promise<void>): void {
  Deno.test({
    name,
    ignore: lacks("net"),
    async fn() {
      await using srv = testServer({ tcp: true });
      await fn(srv);
    },
  });
}

/**
 * A good client over TCP sending one line, timed from its connect to its
 * "Session established"; `exitsCleanly` then checks that it ends with exit 0.
 */
async function timedGoodClient(port: number, line: string) {
  const log = new PrintedLog();
  const started = performance.now();
  const run = runClient({
    port,
    input: textStream(line + "\n"),
    interactive: false,
    logger: log,
    timeoutMs: 5000,
  });
  const established = await log.waitFor(/Session established/, 5000);
  return {
    took: established.at - started,
    exitsCleanly: async (what: string) =>
      assert.equal(await within(run, 10_000, what), 0, log.text()),
  };
}

/** A node:net socket from another loopback address (127.0.0.2 by default), read line by line. */
class NodePeer {
  readonly socket: net.Socket;
  readonly lines: string[] = [];
  ended = false;
  #buffer = "";
  #taken = 0;
  readonly #waiters = new Waiters();

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.#buffer += chunk;
      for (let lf = this.#buffer.indexOf("\n"); lf >= 0; lf = this.#buffer.indexOf("\n")) {
        this.lines.push(this.#buffer.slice(0, lf).replace(/\r$/, ""));
        this.#buffer = this.#buffer.slice(lf + 1);
      }
      this.#waiters.notify();
    });
    const end = () => {
      this.ended = true;
      this.#waiters.notify();
    };
    socket.on("end", end);
    socket.on("close", end);
    socket.on("error", end);
  }

  /** Connects to `port` on 127.0.0.1 from `localAddress`. */
  static connect(port: number, localAddress = OTHER_HOST): Promise<NodePeer> {
    const socket = net.connect({ host: HOST, port, localAddress });
    const peer = new NodePeer(socket);
    return within(
      new Promise<NodePeer>((resolve, reject) => {
        socket.once("connect", () => resolve(peer));
        socket.once("error", reject);
      }),
      5000,
      "node:net connect",
    );
  }

  /** "host:port" of this end, as the server names it. */
  get local(): string {
    return `${this.socket.localAddress}:${this.socket.localPort}`;
  }

  /** The next line, or null at EOF. */
  async line(ms = 5000): Promise<string | null> {
    await this.#waiters.until(
      () => this.lines.length > this.#taken || this.ended,
      ms,
      `a line from the server on ${this.local}`,
    );
    return this.lines.length > this.#taken ? this.lines[this.#taken++] : null;
  }

  /** The lines not taken yet, once the server has closed. */
  async toEof(ms = 5000): Promise<string[]> {
    await this.#waiters.until(() => this.ended, ms, `EOF on ${this.local}`);
    const rest = this.lines.slice(this.#taken);
    this.#taken = this.lines.length;
    return rest;
  }

  write(text: string): void {
    this.socket.write(text);
  }

  /** Closes with a RST (SO_LINGER 0). */
  reset(): void {
    if (!this.socket.destroyed) this.socket.resetAndDestroy();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Types a line unless the client has already closed its input (that is the client's choice). */
function typeUnlessClosed(input: ReturnType<typeof typedInput>, line: string): void {
  try {
    input.type(line);
  } catch {
    // the client cancelled its input
  }
}

/** A stream of `lines` lines of `size` bytes each (LF included), made lazily. */
function largeInput(lines: number, size: number, prefix = "x"): ReadableStream<Uint8Array> {
  let made = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (made >= lines) return controller.close();
      const head = `${prefix}${made++} `;
      controller.enqueue(encoder.encode(head + "y".repeat(size - head.length - 1) + "\n"));
    },
  });
}

/** What a run of runClient against a scripted fake server gave. */
interface FakeRun {
  readonly code: number;
  readonly elapsed: number;
  readonly log: PrintedLog;
  /** Every line the client sent to the fake server. */
  readonly received: string[];
}

/**
 * Runs runClient (in memory, two input lines unless `input` says otherwise)
 * against a fake server driven by `script`, then collects what else the
 * client sent until it closed.
 */
async function againstFake(
  script: (server: RawPeer) => Promise<void>,
  options: Parameters<typeof runClient>[0] = {},
  input: ReadableStream<Uint8Array> | "held" = textStream("first line\nsecond line\n"),
): Promise<FakeRun> {
  const fake = fakeServer(script);
  // "held": the two lines are typed, and the input ends only once the script is done.
  const typed = input === "held" ? typedInput() : undefined;
  typed?.type("first line");
  typed?.type("second line");
  const log = new PrintedLog();
  const timeoutMs = options.timeoutMs ?? 2000;
  const started = performance.now();
  const client = runClient({
    connection: fake.connection,
    input: typed?.stream ?? input as ReadableStream<Uint8Array>,
    interactive: false,
    logger: log,
    timeoutMs,
    ...options,
  }).then((code) => ({ code, elapsed: performance.now() - started }));
  try {
    await within(fake.done, timeoutMs + 5000, "the fake server's script");
    // Keep reading while the client ends: it may be writing (an error frame, a bye).
    const rest = fake.peer.eof ? Promise.resolve([]) : fake.peer.readToEof(timeoutMs + 5000);
    // Held input ends once the client has closed the connection, and a moment later, so
    // that the client sees its session end before its input end (not a timing assertion:
    // the other order only costs the client its timeout, the item 7 bug).
    rest.finally(() => sleep(20).then(() => typed?.end())).catch(() => {});
    const { code, elapsed } = await within(client, timeoutMs + 5000, "runClient to resolve");
    await rest;
    return { code, elapsed, log, received: fake.peer.received };
  } finally {
    typed?.end();
    fake.peer.close();
  }
}

/** A fake server that first does the real handshake (ffdhe2048, secure cipher). */
function secureFake(
  then: (server: RawPeer, session: Session) => Promise<void>,
): (server: RawPeer) => Promise<void> {
  return async (server) => {
    const offer = createOffer(FFDHE2048, SECURE_CIPHER);
    await server.writeLine(offer.line);
    const keyLine = await server.readLine();
    assert.ok(keyLine !== null, "the client sent no key");
    await then(server, acceptKey(offer, keyLine));
  };
}

/** Reads the client's next msg and checks its text. */
async function readMsg(server: RawPeer, session: Session, text: string): Promise<void> {
  const line = await server.readLine();
  assert.ok(line !== null, `the client sent no msg (expected ${JSON.stringify(text)})`);
  const record = session.open(line);
  assert.equal(record.type, "msg");
  assert.equal(record.text, text);
}

/** A `[!]` line as the message was written (the logger upper-cases its first letter). */
function uncapitalized(line: string): string {
  const message = line.replace(/^\[!\] /, "");
  return message.charAt(0).toLowerCase() + message.slice(1);
}

function assertFailed(run: FakeRun, reason: RegExp): void {
  assert.equal(run.code, 1, `exit code; printed:\n${run.log.text()}`);
  assert.ok(
    run.log.errors.some((line) => reason.test(line) || reason.test(uncapitalized(line))),
    `no [!] line matches ${reason}; printed:\n${run.log.text()}`,
  );
}

const sentKey = (run: FakeRun) => run.received.some((line) => tryParse(line)?.type === "key");
const sentError = (run: FakeRun) => run.received.some((line) => tryParse(line)?.type === "error");

// ═══════════════════════════════════════════════════════════════════════════
// The review, item by item
// ═══════════════════════════════════════════════════════════════════════════

tcpServerTest(
  "item 1: slot exhaustion — 200 parked connections from 127.0.0.2 (default flags) leave a client from 127.0.0.1 served within 1 s",
  async ({ server, port, serverLog: log, sink }) => {
    // Default flags: only the port (0) and where to log are set.
    const attackers: NodePeer[] = [];
    try {
      const memoryBefore = Deno.memoryUsage();
      // The ten connections 127.0.0.2 may hold, parked three ways.
      for (let i = 0; i < 10; i++) {
        const peer = await NodePeer.connect(port);
        attackers.push(peer);
        const helloLine = await peer.line();
        assert.equal(tryParse(helloLine)?.type, "hello");
        if (i < 4) {
          // A valid key computed properly, then silence.
          const hello = parseHello(helloLine!, { insecure: false });
          peer.write(respondToHello(hello, RAW_CLIENT_KEY + BigInt(i)).keyLine + "\n");
        } else if (i >= 7) {
          peer.write(`{"type":"key","publicKey":"${"7".repeat(100)}`); // a partial line, parked
        } // else: never sends a key
      }
      await eventually(
        () => server.members.length === 4,
        "the 4 silent sessions established",
        5000,
      );
      assert.equal(server.connections, 10);

      // 190 more from the same address: each gets one clear error frame, then EOF.
      const extra = await Promise.all(
        Array.from({ length: 190 }, async () => {
          const peer = await NodePeer.connect(port);
          attackers.push(peer);
          return await peer.toEof();
        }),
      );
      assert.equal(extra.length, 190);
      for (const lines of extra) {
        assert.deepEqual(lines.map(tryParse), [{
          type: "error",
          message: "too many connections from 127.0.0.2 (at most 10 per address)",
        }]);
      }
      assert.equal(server.connections, 10, "the refused connections hold no slot");
      assert.equal(attackers.length, 200);

      // A good client from 127.0.0.1, timed from its connect to the session.
      // Why this cannot flake: the parked connections cost the server no CPU,
      // the handshake takes tens of ms, so 1 s leaves a margin of more than
      // ten times; if the slots were exhausted the client would be refused
      // ("server full") or wait for the 10 s handshake timeout, never pass.
      const good = await timedGoodClient(port, "served despite 200 parked connections");
      const took = good.took;
      await good.exitsCleanly("the good client");
      console.log(`  good client: connect → session established in ${took.toFixed(0)} ms`);
      assert.ok(took < 1000, `session established only after ${took.toFixed(0)} ms`);
      assert.deepEqual(sink.texts(), ["served despite 200 parked connections"]);

      // The parked ones are still parked (the default timeouts have not run out)…
      await eventually(() => server.connections === 10, "the good client's slot freed", 5000);
      assert.ok(
        attackers.slice(0, 10).every((peer) => !peer.ended),
        "parked connections still open",
      );
      // …until they vanish, half closed, half reset: back to the baseline of 0.
      for (const [i, peer] of attackers.entries()) i % 2 === 0 ? peer.destroy() : peer.reset();
      await eventually(
        () => server.connections === 0 && server.members.length === 0,
        () => `connections back to 0 (now ${server.connections})`,
      );
      const refusals = log.of("error").filter((m) => / refused: too many connections/.test(m));
      assert.equal(refusals.length, 190, "one log line per refused connection");

      // Memory: reported, not asserted (no way to force a GC in a plain test run).
      const memoryAfter = Deno.memoryUsage();
      const mb = (n: number) => `${(n / 1048576).toFixed(1)} MB`;
      console.log(
        `  heap used ${mb(memoryBefore.heapUsed)} before, ${mb(memoryAfter.heapUsed)} after ` +
          `the attackers left; rss ${mb(memoryBefore.rss)} → ${mb(memoryAfter.rss)}`,
      );
      await assertGoodClient(server, sink, 3, port);
    } finally {
      for (const peer of attackers) peer.destroy();
    }
  },
);

Deno.test("item 1: a parked partial line is dropped after the record timeout (handshakeTimeoutMs 300)", async () => {
  await using srv = testServer({ handshakeTimeoutMs: 300 });
  const { server, serverLog: log, sink } = srv;

  // Half a key line, parked.
  const raw = new RawPeer(server.connect("partial-key"));
  assert.equal(tryParse(await raw.readLine())?.type, "hello");
  await raw.write(`{"type":"key","publicKey":"12`);
  let started = performance.now();
  await expectErrorFrame(raw, /no key within 0\.3 s|line not finished within 0\.3 s/);
  let elapsed = performance.now() - started;
  assert.ok(elapsed >= 250, `dropped after only ${elapsed.toFixed(0)} ms`);

  // After the handshake: half a record parked. The keepalive (30 s by default)
  // is the only other way out, so an EOF within 5 s is the line timeout's.
  const s = await rawClientHandshake(server.connect("partial-record"));
  await sendAndExpectAck(s, "a whole record first");
  const record = s.session.seal("msg", "never finished");
  await s.raw.write(record.slice(0, record.length >> 1));
  started = performance.now();
  await expectErrorFrame(s.raw, /line not finished within 0\.3 s/);
  elapsed = performance.now() - started;
  assert.ok(elapsed >= 250, `dropped after only ${elapsed.toFixed(0)} ms`);

  // An idle session with no partial line is not dropped by that timeout.
  const idle = await rawClientHandshake(server.connect("idle"));
  await sendAndExpectAck(idle, "before idling");
  await sleep(900);
  await sendAndExpectAck(idle, "after idling three record timeouts");
  idle.raw.close();

  await eventually(() => server.connections === 0, "connections back to 0", 5000);
  assert.equal(errorsAbout(log, "partial-key").length, 1);
  assert.equal(errorsAbout(log, "partial-record").length, 1);
  assert.deepEqual(errorsAbout(log, "idle"), []);
  await assertGoodClient(server, sink);
});

tcpServerTest(
  "item 2: connect-then-reset from 127.0.0.2 at ~200/s for 5 s — good clients are still served within 1 s",
  async ({ server, port, serverLog: log, sink }) => {
    const RATE = 200; // connections per second
    const ATTACK_MS = 5000;
    let opened = 0;
    let resets = 0;
    const sockets: net.Socket[] = [];
    const start = performance.now();
    let attacking = true;
    const attack = (async () => {
      for (let now = 0; now < ATTACK_MS; now = performance.now() - start) {
        const due = Math.floor((now * RATE) / 1000);
        for (; opened < due; opened++) {
          const socket = net.connect({ host: HOST, port, localAddress: OTHER_HOST });
          sockets.push(socket);
          socket.on("connect", () => {
            resets++;
            socket.resetAndDestroy();
          });
          socket.on("error", () => {});
        }
        await sleep(10);
      }
      attacking = false;
    })();

    // Good clients from 127.0.0.1 while the attack runs, each timed from its
    // connect to its session. Why this cannot flake: each connection attempt
    // costs the server one accept and one failed write (microseconds), so the
    // event loop stays free; 1 s is many times a handshake's tens of ms.
    const timings: number[] = [];
    await sleep(500);
    while (attacking && performance.now() - start < ATTACK_MS - 1000) {
      const good = await timedGoodClient(port, `during the reset flood ${timings.length}`);
      assert.ok(attacking, "the attack was still running when the client was served");
      timings.push(good.took);
      await good.exitsCleanly("a good client");
      await sleep(300);
    }
    await attack;
    const rate = resets / (ATTACK_MS / 1000);
    console.log(
      `  ${opened} connections opened, ${resets} reset (${rate.toFixed(0)}/s); ` +
        `good clients served in ${timings.map((t) => t.toFixed(0)).join(", ")} ms`,
    );
    assert.ok(timings.length >= 3, `only ${timings.length} good clients during the attack`);
    assert.ok(timings.every((t) => t < 1000), `a good client waited ${Math.max(...timings)} ms`);
    assert.ok(rate >= 120, `the attack only reached ${rate.toFixed(0)} resets/s`);
    assert.deepEqual(
      sink.texts(),
      timings.map((_, i) => `during the reset flood ${i}`),
      "every good client's line delivered",
    );
    for (const socket of sockets) socket.destroy();
    await eventually(
      () => server.connections === 0,
      () => `connections (${server.connections})`,
      5000,
    );
    const errors = log.of("error");
    assert.ok(errors.length <= opened, "at most one error line per attack connection");
    assert.ok(errors.every((m) => m.startsWith(`${OTHER_HOST}:`)), "errors only about attackers");
    await assertGoodClient(server, sink, 3, port);
  },
);

/**
 * A raw client streaming msgs until its writes fail; collects every line the
 * server sends. With `yieldToTimers` false, writes follow each other on
 * promise jobs alone (in memory: as fast as the server reads), so records
 * keep arriving while the server is shutting down.
 */
function streamUntilClosed(s: RawClient, batch: () => number, yieldToTimers = true) {
  let sent = 0;
  const writing = (async () => {
    for (;;) {
      const n = batch();
      const lines = Array.from({ length: n }, () => s.session.seal("msg", `stream ${sent++}`));
      try {
        await s.raw.write(lines.join("\n") + "\n");
      } catch {
        return; // the server closed
      }
      if (yieldToTimers) await sleep(0);
    }
  })();
  const reading = s.raw.readToEof(10_000);
  return {
    done: Promise.all([writing, reading]).then(([, lines]) => ({ sent, lines })),
  };
}

/** Checks one stream's wire after the server's shutdown; returns how many were delivered. */
function checkShutdownWire(
  s: RawClient,
  peer: string,
  sink: MessageSink,
  lines: string[],
): number {
  assert.ok(lines.length > 0, "nothing at all on the wire");
  const records = lines.map((line) => s.session.open(line)); // authentic, in sequence
  const types = records.map((r) => r.type);
  assert.equal(types.at(-1), "bye", `the last line is not a bye: ${types.slice(-3)}`);
  assert.equal(types.indexOf("bye"), types.length - 1, "nothing follows the bye");
  assert.ok(types.slice(0, -1).every((t) => t === "ack"), `only acks before the bye: ${types}`);
  const acked = records.slice(0, -1).map((r) => Number(r.text));
  const delivered = sink.messages.filter((m) => m.peer === peer).map((m) => m.seq);
  assert.deepEqual(acked, delivered, "exactly the delivered messages were acked, before the bye");
  assert.deepEqual(delivered, delivered.map((_, i) => i), "delivered in order, none skipped");
  return delivered.length;
}

/**
 * Four raw clients stream msgs into an in-memory server; the server is closed
 * once `closeAfter` messages were delivered. Returns how many were delivered
 * and how many were sent but cut off.
 */
async function shutdownRace(round: number, yieldToTimers: boolean) {
  const closeAfter = 8 + round * 7; // messages delivered before the close, over all streams
  await using srv = testServer();
  const { server, sink } = srv;
  let n = round;
  const batch = () => 1 + (n++ % 4); // 1 to 4 records per write
  const sessions = [];
  for (let c = 0; c < 4; c++) {
    const peer = `race-${round}-${c}`;
    sessions.push({ peer, s: await rawClientHandshake(server.connect(peer)) });
  }
  const streams = sessions.map(({ peer, s }) => ({
    peer,
    s,
    run: streamUntilClosed(s, batch, yieldToTimers),
  }));
  await sink.waitForCount(closeAfter, 10_000);
  await within(server.close(), 10_000, "server close during the streams");
  let delivered = 0;
  let cutOff = 0;
  for (const { peer, s, run } of streams) {
    const { sent, lines } = await within(run.done, 10_000, `stream ${peer} to end`);
    const mine = checkShutdownWire(s, peer, sink, lines);
    assert.ok(mine <= sent, `${peer}: ${mine} delivered of ${sent} sent`);
    delivered += mine;
    cutOff += sent - mine;
  }
  return { delivered, cutOff };
}

Deno.test("item 3: shutdown race — every message delivered was acked before the server's bye; nothing follows the bye", async () => {
  let total = 0;
  let cutOff = 0;
  for (let round = 0; round < 8; round++) {
    const result = await shutdownRace(round, true);
    total += result.delivered;
    cutOff += result.cutOff;
  }
  console.log(`  ${total} delivered and acked before the bye, ${cutOff} sent but cut off`);
  assert.ok(total >= 8 * 8, "the streams were under way");
});

Deno.test("item 3: shutdown race while records keep arriving — the bye and the acks still go out", async () => {
  // The writers stream on promise jobs alone (in memory: as fast as the
  // server reads), so records arrive while the server says bye.
  let total = 0;
  for (let round = 0; round < 6; round++) total += (await shutdownRace(round, false)).delivered;
  assert.ok(total >= 6 * 8, "the streams were under way");
});

Deno.test({
  name: "item 3: shutdown race over TCP — acks, then bye, then nothing",
  ignore: lacks("net"),
  async fn() {
    let total = 0;
    for (let round = 0; round < 5; round++) {
      await using srv = testServer({ tcp: true });
      const { server, sink } = srv;
      const streams = await Promise.all(
        Array.from({ length: 3 }, async () => {
          const s = await rawClientHandshake(await RawPeer.connect(srv.port));
          return { peer: s.raw.local, s, run: streamUntilClosed(s, () => 3) };
        }),
      );
      await sink.waitForCount(10 + round * 10, 10_000);
      await within(server.close(), 10_000, "server close during the streams");
      for (const { peer, s, run } of streams) {
        const { lines } = await within(run.done, 10_000, `stream ${peer} to end`);
        total += checkShutdownWire(s, peer, sink, lines);
        s.raw.close();
      }
    }
    assert.ok(total >= 50);
  },
});

/** A fake server that does the handshake, then never reads again (in memory: writes block). */
function neverReadingServer() {
  const { connection, server } = handshakeWith();
  return { connection, handshake: server };
}

Deno.test("item 4: client writes are bounded — against a server that never reads, exit 1 within about two timeouts of the session", async () => {
  const TIMEOUT = 1000;
  const { connection, handshake } = neverReadingServer();
  const log = new PrintedLog();
  const code = await within(
    runClient({
      connection,
      input: largeInput(20_000, 1000), // 20 MB
      interactive: false,
      logger: log,
      timeoutMs: TIMEOUT,
    }),
    20_000,
    () => `runClient against a server that never reads (printed:\n${log.text()})`,
  );
  const ended = performance.now();
  await handshake;
  assert.equal(code, 1, log.text());
  // Timed from the session (the first write starts after it), not from the
  // call: the handshake is not what is bounded, and on a loaded machine it
  // alone can take a second. An unbounded write never ends (the 20 s ceiling
  // above); the bound is one timeout for the stuck write, plus at most one
  // more to count the unsent input, plus 2 s for a loaded machine (timed
  // from the call, 2960 ms was once seen on a busy 2-core machine).
  const established = log.lines.find((l) => /Session established/.test(l.text));
  assert.ok(established, log.text());
  const elapsed = ended - established.at;
  console.log(`  ended ${elapsed.toFixed(0)} ms after the session began (timeout ${TIMEOUT} ms)`);
  assert.ok(elapsed >= TIMEOUT - 50, `gave up after ${elapsed.toFixed(0)} ms, before its timeout`);
  assert.ok(elapsed < 2 * TIMEOUT + 2000, `took ${elapsed.toFixed(0)} ms`);
  assert.ok(log.errors.some((l) => /input lines? not sent/.test(l)), log.errors.join("\n"));
});

Deno.test("item 4: a stuck write is reported as such, not as the server closing (memory)", async () => {
  const { connection, handshake } = neverReadingServer();
  const log = new PrintedLog();
  const code = await within(
    runClient({
      connection,
      input: largeInput(5000, 1000),
      interactive: false,
      logger: log,
      timeoutMs: 500,
    }),
    10_000,
    "runClient",
  );
  await handshake;
  assert.equal(code, 1);
  assert.ok(
    log.errors.some((l) => /write timed out|not reading/.test(l)),
    `no [!] line names the stuck write:\n${log.errors.slice(0, 4).join("\n")}`,
  );
  assert.ok(
    !log.errors.some((l) => /server closed the connection/.test(l)),
    "the server did not close anything",
  );
});

Deno.test({
  name:
    "item 4: client writes are bounded over TCP (the kernel buffers fill, then the bound holds)",
  ignore: lacks("net"),
  async fn() {
    const TIMEOUT = 1000;
    const listener = Deno.listen({ hostname: HOST, port: 0 });
    const accepted = (async () => {
      const conn = await listener.accept();
      const link = new LineConnection(conn);
      await serverHandshake(link, { group: FFDHE2048, cipher: SECURE_CIPHER, timeoutMs: 5000 });
      return link; // never read again
    })();
    const log = new PrintedLog();
    try {
      const code = await within(
        runClient({
          port: (listener.addr as Deno.NetAddr).port,
          input: largeInput(1000, 64 * 1024), // 64 MB, far above any socket buffer
          interactive: false,
          logger: log,
          timeoutMs: TIMEOUT,
        }),
        15_000,
        () => `runClient against a TCP server that never reads:\n${log.text()}`,
      );
      // Timed from the session, as over memory above: the handshake is not what is bounded.
      const established = log.lines.find((l) => /Session established/.test(l.text));
      assert.ok(established, log.text());
      const elapsed = performance.now() - established.at;
      console.log(
        `  ended ${elapsed.toFixed(0)} ms after the session began (timeout ${TIMEOUT} ms)`,
      );
      assert.equal(code, 1, log.text());
      assert.ok(elapsed < 3 * TIMEOUT + 2000, `took ${elapsed.toFixed(0)} ms`);
      assert.ok(log.errors.some((l) => /write timed out|not reading/.test(l)), log.text());
    } finally {
      listener.close();
      (await accepted.catch(() => undefined))?.close();
    }
  },
});

/**
 * A client sending 20 MB to a {@link neverReadingServer}, 200 ms into its
 * session: long enough to fill the pipe and block in a write.
 */
async function stuckWriter(options: Pick<ClientOptions, "timeoutMs" | "signal" | "forceSignal">) {
  const { connection, handshake } = neverReadingServer();
  const log = new PrintedLog();
  const run = runClient({
    connection,
    input: largeInput(20_000, 1000),
    interactive: false,
    logger: log,
    ...options,
  });
  await handshake;
  await log.waitFor(/Session established/);
  await sleep(200); // let it fill the pipe and block
  return { log, run };
}

Deno.test("item 4: two Ctrl-C (signal, then forceSignal) interrupt a client stuck writing, at once", async () => {
  const leave = new AbortController();
  const force = new AbortController();
  const { log, run } = await stuckWriter({
    timeoutMs: 30_000,
    signal: leave.signal,
    forceSignal: force.signal,
  });
  const aborted = performance.now();
  leave.abort();
  force.abort();
  // Why this cannot flake: without the signals it would wait 30 s (its timeout).
  const code = await within(run, 5000, "runClient after two Ctrl-C");
  const elapsed = performance.now() - aborted;
  assert.equal(code, 1);
  assert.ok(elapsed < 2000, `ended ${elapsed.toFixed(0)} ms after the abort`);
  assert.ok(log.errors.some((l) => /not acknowledged/.test(l)), log.errors.join("\n"));
});

Deno.test("item 4: forceSignal alone ('leaves at once, without waiting for acks') interrupts a client stuck writing", async () => {
  const force = new AbortController();
  const { run } = await stuckWriter({ timeoutMs: 4000, forceSignal: force.signal });
  const aborted = performance.now();
  force.abort();
  const code = await within(
    run.then((code) => ({ code, after: performance.now() - aborted })),
    15_000,
    "runClient",
  );
  assert.equal(code.code, 1);
  assert.ok(
    code.after < 2000,
    `forceSignal was ignored: ended ${code.after.toFixed(0)} ms after it (timeout 4 s)`,
  );
});

/**
 * A client on typed input (never ended here) whose first line "one" was
 * acknowledged, after which the server closed: it has sent the client its bye.
 */
async function byeAfterFirstLine(srv: TestServer) {
  const client = typedClient(
    { connection: srv.server.connect(), timeoutMs: 3000 },
    new PrintedLog(),
  );
  client.type("one");
  await client.log.waitFor(/Line 1 acknowledged/);
  await within(srv.server.close(), 5000, "server close");
  return client;
}

Deno.test("item 5: the server's bye before the end of input — exit 1 and the unsent lines are reported", async () => {
  await using srv = testServer();
  const { input, log, run } = await byeAfterFirstLine(srv);
  // `/quit` ends the input: the line after it is not counted as lost.
  for (const line of ["two", "three", "/quit", "after quit"]) typeUnlessClosed(input, line);
  input.end();
  const code = await within(run, 10_000, "runClient");
  assert.equal(code, 1, log.text());
  assert.deepEqual(srv.sink.texts(), ["one"]);
  assert.ok(log.texts().includes("[*] Server ended the session"), log.text());
  assert.ok(
    log.errors.includes("[!] 2 input lines not sent: the session ended first"),
    log.errors.join("\n"),
  );
});

Deno.test("item 5: the server's bye while input stays open — exit 1 at once, the line typed after it reported", async () => {
  await using srv = testServer();
  const { input, log, run } = await byeAfterFirstLine(srv); // a pipe whose writer is still there
  typeUnlessClosed(input, "two");
  // Why this cannot flake: the failure mode is waiting out the 3 s timeout (or for ever).
  const started = performance.now();
  const code = await within(run, 5000, "runClient with its input still open");
  const elapsed = performance.now() - started;
  input.end();
  assert.equal(code, 1, log.text());
  assert.ok(elapsed < 2000, `ended ${elapsed.toFixed(0)} ms after the bye`);
  assert.ok(
    log.errors.includes("[!] 1 input line not sent: the session ended first"),
    log.errors.join("\n"),
  );
});

Deno.test("issue 18 §4: the server's bye while piped input stays open and idle — exit 1, and says so", async () => {
  await using srv = testServer();
  const { input, log, run } = await byeAfterFirstLine(srv);
  const code = await within(run, 5000, "runClient with its input still open");
  input.end();
  assert.equal(code, 1, log.text());
  assert.deepEqual(log.errors, ["[!] The server ended the session before the end of the input"]);
});

Deno.test("issue 18 §4: the server's bye at a terminal — the session simply ends, exit 0", async () => {
  await using srv = testServer();
  const client = typedClient(
    { connection: srv.server.connect(), timeoutMs: 3000, interactive: true },
    new PrintedLog(),
  );
  client.type("one");
  await eventually(() => srv.sink.texts().length === 1, "line one at the server");
  await within(srv.server.close(), 5000, "server close");
  const code = await within(client.run, 5000, "runClient at a terminal");
  client.input.end();
  assert.equal(code, 0, client.log.text());
  assert.deepEqual(client.log.errors, []);
  assert.ok(client.log.texts().includes("[*] Server ended the session"), client.log.text());
});

Deno.test("item 6: Ctrl-C while waiting for the hello (in memory) ends at once, not after the timeout", async () => {
  const [silent, clientEnd] = memoryPipe(); // the server end never writes…
  // …but takes in what the client writes, as a kernel's socket buffer would.
  const drained = new RawPeer(silent).readToEof(10_000).catch(() => []);
  const log = new PrintedLog();
  const leave = new AbortController();
  const run = runClient({
    connection: clientEnd,
    input: textStream("never sent\n"),
    interactive: false,
    logger: log,
    timeoutMs: 10_000,
    signal: leave.signal,
  });
  await log.waitFor(/Connected to the server/);
  const aborted = performance.now();
  leave.abort();
  // Why this cannot flake: the failure mode is the 10 s timeout.
  const code = await within(run, 5000, "runClient after Ctrl-C");
  const elapsed = performance.now() - aborted;
  assert.equal(code, 1);
  assert.ok(elapsed < 1000, `ended ${elapsed.toFixed(0)} ms after Ctrl-C`);
  assert.ok(
    log.errors.includes("[!] Interrupted while waiting for the server's hello"),
    log.text(),
  );
  assert.deepEqual((await drained).map(tryParse), [{
    type: "error",
    message: "interrupted while waiting for the server's hello",
  }]);
});

Deno.test({
  name: "item 6: Ctrl-C while connecting to a listener that never accepts ends at once",
  ignore: lacks("net"),
  async fn() {
    const listener = Deno.listen({ hostname: HOST, port: 0 }); // accept() is never called
    try {
      const port = (listener.addr as Deno.NetAddr).port;
      // Aborted before the connect even started.
      const early = new AbortController();
      early.abort();
      const earlyLog = new PrintedLog();
      const started = performance.now();
      const earlyCode = await within(
        runClient({ port, input: textStream(""), logger: earlyLog, signal: early.signal }),
        5000,
        "runClient aborted before connecting",
      );
      assert.equal(earlyCode, 1);
      assert.ok(performance.now() - started < 1000);
      assert.ok(earlyLog.errors.some((l) => /^\[!\] Cannot connect .*interrupted/.test(l)));

      // Aborted while waiting (the kernel completed the connect; nobody answers).
      const log = new PrintedLog();
      const leave = new AbortController();
      const run = runClient({
        port,
        input: textStream("never sent\n"),
        interactive: false,
        logger: log,
        timeoutMs: 10_000,
        signal: leave.signal,
      });
      await log.waitFor(/Connected to 127\.0\.0\.1/);
      const aborted = performance.now();
      leave.abort();
      const code = await within(run, 5000, "runClient after Ctrl-C");
      const elapsed = performance.now() - aborted;
      assert.equal(code, 1);
      assert.ok(elapsed < 1000, `ended ${elapsed.toFixed(0)} ms after Ctrl-C (timeout 10 s)`);
      assert.ok(log.errors.includes("[!] Interrupted while waiting for the server's hello"));
    } finally {
      listener.close();
    }
  },
});

Deno.test({
  name: "item 6: SIGINT to client.ts while it waits for a silent server ends it at once, exit 1",
  ignore: lacks("net", "run"),
  async fn() {
    const listener = Deno.listen({ hostname: HOST, port: 0 });
    const conns: Deno.Conn[] = [];
    const accepting = (async () => {
      for await (const conn of listener) conns.push(conn); // accepts, never answers
    })().catch(() => {});
    try {
      const port = String((listener.addr as Deno.NetAddr).port);
      await using client = new DenoProcess(
        "client.ts",
        ["--port", port, "--timeout", "30"],
        "piped",
      );
      await client.waitFor(/Connected to 127\.0\.0\.1/);
      await sleep(100); // the signal listener is installed before connecting; be safe anyway
      const signalled = performance.now();
      client.child.kill("SIGINT");
      const { code, stderr } = await client.finish(10_000);
      const elapsed = performance.now() - signalled;
      assert.equal(code, 1, stderr);
      assert.ok(elapsed < 3000, `exited ${elapsed.toFixed(0)} ms after SIGINT (timeout 30 s)`);
      assert.match(stderr, /^\[!\] Interrupted while waiting for the server's hello$/m);
    } finally {
      listener.close();
      for (const conn of conns) conn.close();
      await accepting;
    }
  },
});

Deno.test("item 7: leaving with unacknowledged messages takes at most about one timeout in total", async () => {
  const TIMEOUT = 2000;
  for (const serverReadsBye of [false, true]) {
    let readBoth!: () => void;
    const bothRead = new Promise<void>((resolve) => readBoth = resolve);
    const fake = fakeServer(secureFake(async (server, session) => {
      await readMsg(server, session, "first");
      await readMsg(server, session, "second");
      readBoth();
      // Never acks; then either reads the bye or reads nothing more (the bye's write blocks).
      if (serverReadsBye) await server.readToEof(10_000);
    }));
    const { input, log, run } = typedClient(
      { connection: fake.connection, timeoutMs: TIMEOUT },
      new PrintedLog(),
    );
    input.type("first");
    input.type("second");
    await within(bothRead, 5000, "the fake server to read both lines");
    const ended = performance.now();
    input.end();
    const code = await within(run, 10_000, "runClient leaving");
    const elapsed = performance.now() - ended;
    fake.peer.close();
    await fake.done.catch(() => {});
    console.log(`  leaving took ${elapsed.toFixed(0)} ms (timeout ${TIMEOUT} ms)`);
    assert.equal(code, 1);
    assert.ok(
      log.errors.includes("[!] 2 messages not acknowledged by the server (seq 0, 1)"),
      log.text(),
    );
    // Lower bound: it did wait for the acks (a timer cannot fire early).
    // Upper bound: one timeout for acks and bye together, with 1500 ms of
    // slack for a loaded machine (two CPU hogs on 2 cores added ~200 ms);
    // waiting for the acks and then for the bye each with its own timeout
    // would take 2 × 2000 ms, above the bound.
    assert.ok(elapsed >= TIMEOUT - 100, `left after only ${elapsed.toFixed(0)} ms`);
    assert.ok(elapsed < TIMEOUT + 1500, `leaving took ${elapsed.toFixed(0)} ms`);
  }
});

Deno.test("item 7: a session the server has already ended is left at once, not after the timeout", async () => {
  // The server answers the last line with an error frame (or closes) just as
  // the input ends: nothing is left to wait for.
  for (const ending of ["an error frame", "a close"]) {
    const run = await againstFake(
      secureFake(async (server, session) => {
        await readMsg(server, session, "the only line");
        if (ending === "a close") server.close();
        else await server.writeLine(JSON.stringify({ type: "error", message: "no thanks" }));
      }),
      { timeoutMs: 2000 },
      textStream("the only line\n"),
    );
    assert.equal(run.code, 1);
    // Why this cannot flake: the failure mode is the whole 2 s timeout.
    assert.ok(
      run.elapsed < 1000,
      `after ${ending}, the client waited ${run.elapsed.toFixed(0)} ms (timeout 2000 ms)`,
    );
  }
});

// Item 8 (one bad stdin line is refused with a [!] line; the rest is sent; exit 1) runs with
// the other stdin refusals in session_test.ts: "stdin lines too long for a record or not …".

/** The client's public key, as a server doing a real handshake with it sees it. */
async function clientPublicKey(
  group: typeof FFDHE2048,
  cipher: typeof SECURE_CIPHER,
  options: Parameters<typeof runClient>[0],
): Promise<bigint> {
  const [serverEnd, clientEnd] = memoryPipe();
  const link = new LineConnection(serverEnd);
  const handshake = serverHandshake(link, { group, cipher, timeoutMs: 5000 });
  const log = new PrintedLog();
  const run = runClient({
    ...options,
    connection: clientEnd,
    input: textStream(""),
    interactive: false,
    logger: log,
  });
  const session = await within(handshake, 5000, "the handshake");
  assert.ok(session, "no key from the client");
  const bye = await link.readLine();
  assert.equal(session.open(bye!).type, "bye");
  link.close();
  assert.equal(await within(run, 5000, "runClient"), 0, log.text());
  return session.peerPublicKey;
}

Deno.test("item 9: a --toy client facing an ffdhe2048 server draws a fresh random key (not 5) unless one is given", async () => {
  const five = derivePublicKey(FFDHE2048, 5n);
  const first = await clientPublicKey(FFDHE2048, SECURE_CIPHER, { toy: true });
  const second = await clientPublicKey(FFDHE2048, SECURE_CIPHER, { toy: true });
  assert.notEqual(first, five, "the toy key 5 used on a real group");
  assert.notEqual(second, five, "the toy key 5 used on a real group");
  assert.notEqual(first, second, "the same key twice");
  // Given explicitly, the key is used whatever the group …
  assert.equal(
    await clientPublicKey(FFDHE2048, SECURE_CIPHER, { toy: true, privateKey: 5n }),
    five,
  );
  // … and on the toy group itself, 5 is the lesson: A = 5^5 mod 23 = 20.
  assert.equal(await clientPublicKey(GROUPS.toy, TOY_CIPHER, { toy: true }), 20n);
});

/** Every check of item 10: a hostile text through one path, the printed output inspected. */
interface TerminalCase {
  readonly name: string;
  /** Drives the path; returns what was printed. */
  run(): Promise<PrintedLog>;
}

/** A server on memory whose log is printed; `drive` plays a raw client. */
function serverSide(
  name: string,
  drive: (s: { server: ServerHandle; raw: RawPeer }) => Promise<void>,
  options: Omit<ServerOptions, "listen" | "logger"> = {},
): TerminalCase {
  return {
    name: `server: ${name}`,
    async run() {
      const log = new PrintedLog();
      const server = startServer({ ...options, listen: false, logger: log });
      const raw = new RawPeer(server.connect());
      try {
        // Read on while the server handles it (its error frame or, at the close, its bye).
        const rest = drive({ server, raw }).then(() => raw.readToEof(5000)).catch(() => []);
        await log.waitFor(new RegExp(MARK));
        await within(server.close(), 5000, "server close");
        await rest;
      } finally {
        raw.close();
      }
      return log;
    },
  };
}

/** runClient's printed log against a fake server script. */
function clientSide(name: string, script: (server: RawPeer) => Promise<void>): TerminalCase {
  return {
    name: `client: ${name}`,
    async run() {
      const run = await againstFake(script, { timeoutMs: 600 }, textStream("first line\n"));
      return run.log;
    },
  };
}

Deno.test("item 10: terminal safety — peer text on every error path is printed escaped", async (t) => {
  const hostile = HOSTILE + MARK;
  const cases: TerminalCase[] = [
    serverSide("a key line that is not JSON (not a JSON frame)", async ({ raw }) => {
      await raw.readLine();
      await raw.writeLine(hostile);
    }),
    serverSide("a publicKey that is not decimal digits", async ({ raw }) => {
      await raw.readLine();
      await raw.writeLine(JSON.stringify({ type: "key", publicKey: `12${hostile}` }));
    }),
    serverSide("a key frame of a hostile type", async ({ raw }) => {
      await raw.readLine();
      await raw.writeLine(JSON.stringify({ type: hostile, publicKey: "12" }));
    }),
    serverSide("the client's error frame", async ({ raw }) => {
      await raw.readLine();
      await raw.writeLine(JSON.stringify({ type: "error", message: hostile }));
    }),
    serverSide("a chat line", async ({ raw }) => {
      const s = await rawClientHandshake(raw);
      await sendAndExpectAck(s, `hello ${hostile}`);
    }),
    serverSide("an unknown command (the notice quotes it; the log names it)", async ({ raw }) => {
      const s = await rawClientHandshake(raw);
      await sendAndExpectAck(s, `/${hostile}`);
    }),
    serverSide("a record of a hostile type after the handshake", async ({ raw }) => {
      await rawClientHandshake(raw);
      await raw.writeLine(JSON.stringify({ type: hostile, seq: 0, data: "", tag: "" }));
    }),
    clientSide(
      "a hello that is not JSON (not a JSON frame)",
      (server) => server.writeLine(hostile),
    ),
    clientSide(
      "a hello whose p is not decimal digits",
      (server) => server.writeLine(helloWith({ p: `12${hostile}` })),
    ),
    clientSide(
      "a hello naming a hostile group",
      (server) => server.writeLine(helloWith({ group: hostile })),
    ),
    clientSide(
      "a hello with a hostile protocol",
      (server) => server.writeLine(helloWith({ protocol: hostile })),
    ),
    clientSide(
      "the server's error frame instead of a hello",
      (server) => server.writeLine(JSON.stringify({ type: "error", message: hostile })),
    ),
    clientSide(
      "a chat line from a hostile name",
      secureFake(async (server, session) => {
        await readMsg(server, session, "first line");
        await server.writeLine(
          session.seal("chat", JSON.stringify({ from: hostile, text: hostile })),
        );
        await server.writeLine(session.seal("ack", "0"));
      }),
    ),
    clientSide(
      "a notice",
      secureFake(async (server, session) => {
        await readMsg(server, session, "first line");
        await server.writeLine(session.seal("notice", `you are now ${hostile}`));
        await server.writeLine(session.seal("ack", "0"));
      }),
    ),
    clientSide(
      "the server's error frame mid-session",
      secureFake(async (server, session) => {
        await readMsg(server, session, "first line");
        await server.writeLine(JSON.stringify({ type: "error", message: hostile }));
      }),
    ),
    clientSide(
      "a record of a hostile type mid-session",
      secureFake(async (server, session) => {
        await readMsg(server, session, "first line");
        await server.writeLine(JSON.stringify({ type: hostile, seq: 0, data: "" }));
      }),
    ),
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const log = await c.run();
      assert.ok(
        log.lines.some((l) => l.text.includes(MARK)),
        `the hostile text never reached the screen:\n${log.text()}`,
      );
      for (const { text } of log.lines) {
        assert.deepEqual(unsafeCharacters(text), [], `printed raw: ${JSON.stringify(text)}`);
      }
    });
  }
});

// customGroup itself refuses the same numbers: dh_test.ts ("groups: customGroup refuses …").
Deno.test("item 11: toy groups must be real groups — --prime/--generator refuse non-primes and bad generators", () => {
  // 3317044064679887385961981 is a strong pseudoprime to every base from 2 to 41.
  for (const p of [1_000_000n, 24n, 561n, 3_317_044_064_679_887_385_961_981n]) {
    assert.throws(
      () => parseServerArgs(["--toy", "--prime", String(p), "--generator", "2"]),
      (error: Error) =>
        error instanceof UsageError &&
        /bad --prime\/--generator: .*is not a prime/.test(error.message),
      `--prime ${p}`,
    );
  }
  for (const g of ["0", "1", "22", "23", "1000"]) {
    assert.throws(
      () => parseServerArgs(["--toy", "--generator", g]),
      (error: Error) =>
        error instanceof UsageError && /generator must lie in 2 … p − 2 = 21/.test(error.message),
      `--generator ${g}`,
    );
  }
  for (const g of ["2", "21"]) {
    assert.equal(parseServerArgs(["--toy", "--generator", g]).options.group?.g, BigInt(g));
  }
  assert.equal(
    parseServerArgs(["--toy", "--prime", "47", "--generator", "45"]).options.group?.p,
    47n,
  );
  assert.throws(() => parseServerArgs(["--toy", "--prime", "47", "--generator", "46"]), UsageError);
});

Deno.test("item 11: a toy client refuses a custom non-prime p in a hello, before sending its key", async (t) => {
  for (const p of ["1000000", "24", "561", "3317044064679887385961981"]) {
    await t.step(`p = ${p}`, async () => {
      const run = await againstFake(
        (server) =>
          server.writeLine(
            helloWith({ group: "custom", p, g: "5", publicKey: "7", cipher: TOY_CIPHER }),
          ),
        { toy: true },
      );
      assertFailed(run, /server's group is unusable: .*is not a prime/);
      assert.ok(!sentKey(run), "a key frame was sent");
      assert.ok(sentError(run), "no error frame sent");
    });
  }
  await t.step("control: a custom prime p (2^31 − 1) is accepted by a toy client", async () => {
    const run = await againstFake(async (server) => {
      await server.writeLine(
        helloWith({ group: "custom", p: "2147483647", g: "7", publicKey: "5", cipher: TOY_CIPHER }),
      );
      await server.readLine(); // the key
    }, { toy: true, timeoutMs: 600 });
    assert.ok(sentKey(run), `no key frame:\n${run.log.text()}`);
  });
});

Deno.test("item 12: --max-line below the group's hello is refused with the minimum, which suffices", async () => {
  /** Revision 3: a host key and a password nonce, 32 bytes each in base64. */
  const revision3 = {
    hostKey: "A".repeat(43) + "=",
    auth: "password",
    nonce: "A".repeat(43) + "=",
  };
  /** The longest hello of a group, computed here from the protocol text. */
  const longest = (group: typeof FFDHE2048) =>
    JSON.stringify({
      type: "hello",
      protocol: "dhx/1",
      group: group.name,
      p: group.p.toString(),
      g: group.g.toString(),
      publicKey: "9".repeat(group.p.toString().length),
      cipher: SECURE_CIPHER,
      ...revision3,
    }).length;
  const least = longest(FFDHE2048);
  assert.throws(
    () => parseServerArgs(["--max-line", String(least - 1)]),
    (error: Error) =>
      error instanceof UsageError &&
      error.message ===
        `--max-line ${least - 1} cannot carry a ffdhe2048 hello: use at least ${least}`,
  );
  assert.equal(parseServerArgs(["--max-line", String(least)]).options.maxLine, least);
  const least8192 = longest(GROUPS.ffdhe8192);
  assert.throws(
    () => parseServerArgs(["--group", "ffdhe8192", "--max-line", String(least8192 - 1)]),
    new RegExp(`use at least ${least8192}$`),
  );
  const toyLeast = JSON.stringify({
    type: "hello",
    protocol: "dhx/1",
    group: "toy",
    p: "23",
    g: "5",
    publicKey: "99",
    cipher: SECURE_CIPHER,
    ...revision3,
  }).length;
  assert.throws(
    () => parseServerArgs(["--toy", "--max-line", String(toyLeast - 1)]),
    new RegExp(`use at least ${toyLeast}$`),
  );
  // The client must carry the longest hello of any group it accepts.
  assert.throws(
    () => parseClientArgs(["--max-line", String(least8192 - 1)]),
    new RegExp(`use at least ${least8192}$`),
  );
  assert.equal(parseClientArgs(["--max-line", String(least8192)]).options.maxLine, least8192);
  const customLeast = JSON.stringify({
    type: "hello",
    protocol: "dhx/1",
    group: "ffdhe8192",
    p: "9".repeat(MAX_WIRE_DIGITS),
    g: "9".repeat(MAX_WIRE_DIGITS),
    publicKey: "9".repeat(MAX_WIRE_DIGITS),
    cipher: SECURE_CIPHER,
    ...revision3,
  }).length;
  assert.throws(
    () => parseClientArgs(["--toy", "--max-line", String(customLeast - 1)]),
    new RegExp(`use at least ${customLeast}$`),
  );

  // The minimum suffices: a server and a client at exactly that limit talk.
  await using srv = testServer({ maxLine: least });
  const { server, sink } = srv;
  const log = new PrintedLog();
  const code = await runClient({
    connection: server.connect(),
    input: textStream("at the least line limit\n"),
    interactive: false,
    logger: log,
    maxLine: least,
  });
  assert.equal(code, 0, log.text());
  assert.deepEqual(sink.texts(), ["at the least line limit"]);
});

Deno.test("item 12: durations that round to 0 ms are refused; --port -1 is refused like --port abc", () => {
  const refused = (parse: () => unknown, pattern: RegExp) =>
    assert.throws(parse, (e: Error) => e instanceof UsageError && pattern.test(e.message));
  for (const flag of ["--handshake-timeout", "--write-timeout", "--keepalive"]) {
    for (const value of ["0.0004", "0.0001", "0.00049"]) {
      refused(() => parseServerArgs([flag, value]), new RegExp(`^${flag} must be a number`));
    }
  }
  refused(() => parseServerArgs(["--handshake-timeout", "0"]), /^--handshake-timeout must be/);
  assert.equal(parseServerArgs(["--keepalive", "0"]).options.keepaliveMs, 0, "0: keepalive off");
  assert.equal(parseServerArgs(["--handshake-timeout", "0.001"]).options.handshakeTimeoutMs, 1);
  for (const flag of ["--timeout", "--keepalive"]) {
    refused(() => parseClientArgs([flag, "0.0004"]), new RegExp(`^${flag} must be a number`));
  }
  assert.equal(parseClientArgs(["--timeout", "0.001"]).options.timeoutMs, 1);

  const message = (parse: (args: string[]) => unknown, args: string[]) => {
    try {
      parse(args);
    } catch (error) {
      assert.ok(error instanceof UsageError, String(error));
      return error.message;
    }
    assert.fail(`${args.join(" ")} was accepted`);
  };
  for (const parse of [parseServerArgs, parseClientArgs]) {
    const abc = message(parse, ["--port", "abc"]);
    assert.match(abc, /^--port must be a whole number from [01] to 65535, got "abc"$/);
    for (const bad of ["-1", "-0.5", "65536"]) {
      assert.equal(message(parse, ["--port", bad]), abc.replace('"abc"', JSON.stringify(bad)));
    }
    assert.equal(message(parse, ["--port=-1"]), abc.replace('"abc"', '"-1"'));
  }
});

Deno.test("item 12: a full server says 'server full (1 client)', and '(2 clients)'", async () => {
  for (const [max, words] of [[1, "1 client"], [2, "2 clients"]] as const) {
    await using srv = testServer({ maxClients: max });
    const { server, serverLog: log } = srv;
    const held = [];
    for (let i = 0; i < max; i++) held.push(await rawClientHandshake(server.connect(`held-${i}`)));
    // Sessions, not handshakes: a handshake would be dropped for the newcomer.
    await eventually(() => server.members.length === max, "the sessions established", 5000);
    const extra = new RawPeer(server.connect("extra"));
    const before = await expectErrorFrame(extra, /./);
    assert.deepEqual(before, [], "no hello for a refused connection");
    assert.deepEqual(tryParse(extra.received.at(-1)), {
      type: "error",
      message: `server full (${words}); try again later`,
    });
    assert.deepEqual(log.of("error"), [`extra refused: server full (${words}); try again later`]);
    for (const s of held) {
      await sendAndExpectAck(s, "still served");
      s.raw.close();
    }
  }
});

Deno.test("item 12: a record whose seq is 1e999 (or another non-integer) gets an error naming the problem", async (t) => {
  await using srv = testServer();
  const { server, sink } = srv;
  const cases: [seq: string, pattern: RegExp][] = [
    ["1e999", /^seq must be a JSON integer \(0 expected\), got Infinity$/],
    ["-1e999", /^seq must be a JSON integer \(0 expected\), got -Infinity$/],
    ["1e300", /^seq must be a JSON integer \(0 expected\), got 1e\+300$/],
    ["0.5", /^seq must be a JSON integer \(0 expected\), got 0\.5$/],
    ['"0"', /^seq must be a JSON integer \(0 expected\), got "0"$/],
    ["null", /^seq must be a JSON integer \(0 expected\), got null$/],
    ["9007199254740993", /^seq must be a JSON integer \(0 expected\), got 9007199254740992$/],
    ["1", /^wrong sequence number 1, expected 0/],
  ];
  for (const [seq, pattern] of cases) {
    await t.step(`seq ${seq}`, async () => {
      const s = await rawClientHandshake(server.connect());
      const line = s.session.seal("msg", "payload").replace(/"seq":0,/, `"seq":${seq},`);
      assert.ok(line.includes(`"seq":${seq},`));
      await s.raw.writeLine(line);
      await expectErrorFrame(s.raw, pattern);
    });
  }
  assert.deepEqual(sink.texts(), []);
});

Deno.test({
  name: "item 12: --quiet prints what the help text says, on both scripts",
  ignore: lacks("net", "run"),
  async fn() {
    const help = async (script: string) =>
      (await runToEnd(new DenoProcess(script, ["--help"]))).stdout;
    assert.match(
      await help("server.ts"),
      /--quiet +print only errors, the host key and the\s+listening\/stopped lines/,
    );
    assert.match(await help("client.ts"), /--quiet +print only errors and what others write/);

    const { proc: server, port } = await spawnServer(["--quiet", "--room"], "piped");
    await using _server = server;
    await using watcher = new DenoProcess(
      "client.ts",
      ["--port", String(port), "--quiet"],
      "piped",
    );
    // A quiet watcher shows no sign of being in session: writers speak until it hears one.
    const writer = await (async () => {
      for (let attempt = 0; attempt < 10; attempt++) {
        await using probe = new DenoProcess(
          "client.ts",
          ["--port", String(port), "--quiet", "--name", `writer${attempt}`],
          "piped",
        );
        await probe.write(`hello from the writer ${attempt}\n`);
        await probe.closeStdin();
        const result = await probe.finish();
        const heard = new RegExp(`hello from the writer ${attempt}$`, "m");
        if (await watcher.waitFor(heard, 2000).then(() => true, () => false)) return result;
      }
      assert.fail(`the watcher never saw a line:\n${watcher.stdout}\n${watcher.stderr}`);
    })();
    assert.equal(writer.code, 0, writer.stderr);
    assert.equal(writer.stdout, "", "the writer printed something nobody else wrote");
    assert.equal(writer.stderr, "");
    await server.write("a line from the operator\n");
    await watcher.waitFor(/\[\+\] server: a line from the operator/);
    // An error on the server side, which --quiet must still show.
    const raw = await RawPeer.connect(port);
    await raw.readLine();
    await raw.writeLine("not json");
    await raw.readToEof();
    await watcher.closeStdin();
    const watched = await watcher.finish();
    assert.equal(watched.code, 0, watched.stderr);
    const watchedLines = linesOf(watched.stdout);
    assert.ok(watchedLines.length >= 2, watched.stdout);
    assert.ok(
      watchedLines.every((line) =>
        /^\[\+\] writer\d+: hello from the writer \d+$/.test(line) ||
        line === "[+] server: a line from the operator"
      ),
      `the quiet client printed more than what others wrote:\n${watched.stdout}`,
    );
    assert.equal(watched.stderr, "");
    await server.waitFor(/not a JSON frame/i, 5000, "stderr");
    server.child.kill("SIGINT");
    const served = await server.finish();
    assert.equal(served.code, 0, served.stderr);
    const hostKeyLine = linesOf(served.stdout).find((line) => line.startsWith("[*] Host key "));
    assert.match(hostKeyLine ?? "", /^\[\*\] Host key SHA256:[A-Za-z0-9+/]{43}$/, served.stdout);
    assert.deepEqual(linesOf(served.stdout), [
      `[*] Server listening on 127.0.0.1:${port}`,
      hostKeyLine,
      "[*] Server stopped",
    ]);
    const errors = linesOf(served.stderr);
    assert.ok(errors.length >= 1 && errors.every((line) => line.startsWith("[!] ")), served.stderr);
  },
});

// ═══════════════════════════════════════════════════════════════════════════
// Classics: the server before the key
// ═══════════════════════════════════════════════════════════════════════════

Deno.test("classic: every malformed key frame is refused with an error frame; the server serves on", async (t) => {
  await using srv = testServer();
  const { server, serverLog: log, sink } = srv;
  const keyWith = (publicKey: unknown) => JSON.stringify({ type: "key", publicKey });
  const nested = (depth: number, open: string, close: string) =>
    open.repeat(depth) + close.repeat(depth);
  const cases: [name: string, payload: (hello: string) => string, pattern: RegExp][] = [
    ["non-JSON", () => "hello server, here is my key", /^not a JSON frame/],
    ["JSON array", () => `["key","12345"]`, /^a frame must be a JSON object/],
    ["JSON number", () => "42", /^a frame must be a JSON object, got 42/],
    ["JSON string", () => `"key"`, /^a frame must be a JSON object/],
    ["JSON null", () => "null", /^a frame must be a JSON object, got null/],
    ["empty line", () => "", /^not a JSON frame/],
    ["unknown type", () => `{"type":"banana","publicKey":"12345"}`, /expected a key frame/],
    ["no type", () => `{"publicKey":"12345"}`, /expected a key frame, got type nothing/],
    ["hello instead of key", (hello) => hello, /expected a key frame, got type "hello"/],
    ["msg instead of key", () => `{"type":"msg","seq":0,"data":"","tag":""}`, /key frame/],
    ["missing publicKey", () => `{"type":"key"}`, /^publicKey must be a string.*got nothing/],
    ["publicKey as a JSON number", () => `{"type":"key","publicKey":12345}`, /string of decimal/],
    ["publicKey null", () => keyWith(null), /^publicKey must be a string/],
    ["publicKey array", () => keyWith(["12345"]), /^publicKey must be a string/],
    ['publicKey "0"', () => keyWith("0"), /^invalid public key \(0\)/],
    ['publicKey "1"', () => keyWith("1"), /^invalid public key \(1\)/],
    ['publicKey "p - 1"', () => keyWith((P - 1n).toString()), /^invalid public key \(p - 1\)/],
    ['publicKey "p"', () => keyWith(P.toString()), /^invalid public key \(≥ p\)/],
    ['publicKey "p + 1"', () => keyWith((P + 1n).toString()), /^invalid public key \(≥ p\)/],
    ['publicKey "-5"', () => keyWith("-5"), /^publicKey must contain only decimal digits/],
    ['publicKey "0x10"', () => keyWith("0x10"), /only decimal digits/],
    ['publicKey "1e3"', () => keyWith("1e3"), /only decimal digits/],
    ['publicKey " 7"', () => keyWith(" 7"), /only decimal digits/],
    ['publicKey "7 "', () => keyWith("7 "), /only decimal digits/],
    ['publicKey ""', () => keyWith(""), /only decimal digits/],
    ["publicKey in Arabic-Indic digits", () => keyWith("٣٤٥"), /only decimal digits/],
    [
      "publicKey one digit longer than p",
      () => keyWith("9".repeat(P_DIGITS + 1)),
      new RegExp(`^publicKey has ${P_DIGITS + 1} digits; at most ${P_DIGITS} are possible`),
    ],
    ["publicKey of 100,000 digits", () => keyWith("7".repeat(100_000)), /has 100000 digits/],
    ["100,000 unclosed [", () => "[".repeat(100_000), /^not a JSON frame/],
    ["100,000 nested arrays, balanced", () => nested(100_000, "[", "]"), /JSON object/],
    [
      "publicKey nested 100,000 objects deep",
      () => `{"type":"key","publicKey":${'{"a":'.repeat(100_000)}1${"}".repeat(100_000)}}`,
      /^publicKey must be a string/,
    ],
    [
      "type nested 100,000 arrays deep",
      () => `{"type":${nested(100_000, "[", "]")}}`,
      /expected a key frame/,
    ],
    ["invalid UTF-8", () => "\u0000", /./], // replaced below by raw bytes
  ];
  for (const [i, [name, payload, pattern]] of cases.entries()) {
    await t.step(name, async () => {
      const peer = `key-case-${i}.`;
      const raw = new RawPeer(server.connect(peer));
      const hello = await raw.readLine();
      assert.equal(tryParse(hello)?.type, "hello");
      if (name === "invalid UTF-8") {
        await raw.write(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d, 0x0a]));
        await expectErrorFrame(raw, /^line is not valid UTF-8$/);
      } else {
        await raw.writeLine(payload(hello!));
        assert.deepEqual(await expectErrorFrame(raw, pattern), [], "only the error frame");
      }
      await eventually(() => errorsAbout(log, peer).length > 0, "the server's log line", 3000);
      assert.equal(errorsAbout(log, peer).length, 1, "one error line per offender");
    });
  }
  await t.step(
    "an error frame instead of the key: closed without a reply, one log line",
    async () => {
      const raw = new RawPeer(server.connect("errorframe."));
      await raw.readLine();
      await raw.writeLine(`{"type":"error","message":"goodbye"}`);
      assert.deepEqual(await raw.readToEof(), [], "no frame in answer to an error frame");
      await eventually(() => errorsAbout(log, "errorframe.").length > 0, "the log line", 3000);
      assert.match(errorsAbout(log, "errorframe.")[0], /peer reported an error: goodbye/);
    },
  );
  await t.step("the server still serves a good client", () => assertGoodClient(server, sink));
  assert.equal(log.of("error").length, cases.length + 1, "one error line per offender, no other");
});

Deno.test("classic: framing limits — exactly maxLine is accepted, maxLine + 1 refused, MBs without LF refused after about maxLine bytes", async (t) => {
  const MAX = 4096;
  await using srv = testServer({ maxLine: MAX });
  const { server, sink } = srv;

  await t.step(
    "a key frame padded to exactly maxLine bytes (LF and CRLF) is accepted",
    async () => {
      for (const terminator of ["\n", "\r\n"]) {
        const raw = new RawPeer(server.connect());
        const hello = parseHello((await raw.readLine())!, { insecure: false });
        const keyLine = respondToHello(hello, RAW_CLIENT_KEY).keyLine;
        const padded = keyLine.slice(0, -1) + " ".repeat(MAX - keyLine.length) + "}";
        assert.equal(encoder.encode(padded).length, MAX);
        const session = sessionFor(hello, RAW_CLIENT_KEY, padded);
        await raw.write(padded + terminator);
        await sendAndExpectAck({ raw, session, hello, keyLine: padded }, "padded key accepted");
        raw.close();
      }
    },
  );

  await t.step("maxLine + 1 bytes before the LF is refused", async () => {
    const raw = new RawPeer(server.connect());
    await raw.readLine();
    await raw.writeLine("7".repeat(MAX + 1));
    await expectErrorFrame(raw, /^line longer than 4096 bytes$/);
  });

  await t.step("maxLine + 1 bytes in a record after the handshake is refused", async () => {
    const s = await rawClientHandshake(server.connect());
    await sendAndExpectAck(s, "short is fine");
    const record = s.session.seal("msg", "x");
    const padded = record.slice(0, -1) + `,"pad":"${"p".repeat(MAX - record.length - 8)}"}`;
    assert.equal(padded.length, MAX + 1);
    await s.raw.writeLine(padded);
    await expectErrorFrame(s.raw, /^line longer than 4096 bytes$/);
  });

  await t.step("8 MB without LF: refused once about maxLine bytes were read", async () => {
    // A memory pipe has no buffer: a write completes only when the server
    // reads it, so the bytes written count the bytes the server took in.
    const raw = new RawPeer(server.connect());
    await raw.readLine();
    const chunk = encoder.encode("7".repeat(1024));
    const reading = raw.readToEof(10_000);
    let written = 0;
    while (written < 8 * 1024 * 1024) {
      try {
        await raw.write(chunk);
      } catch {
        break;
      }
      written += chunk.length;
    }
    const lines = await reading;
    console.log(`  the server took ${written} bytes of an endless line (maxLine ${MAX})`);
    assert.ok(written <= MAX + 4 * chunk.length, `${written} bytes read before the refusal`);
    assert.equal(lines.length, 1);
    assert.equal(tryParse(lines[0])?.message, "line longer than 4096 bytes");
  });

  await t.step("the server still serves a good client", () => assertGoodClient(server, sink));
});

/** The client session for a hand-made key line (e.g. one padded with spaces). */
function sessionFor(hello: Hello, privateKey: bigint, keyLine: string): Session {
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
// Classics: the server after the handshake
// ═══════════════════════════════════════════════════════════════════════════

Deno.test("classic: hostile records — forged, replayed, malformed — are refused with a named error; the server serves on", async (t) => {
  await using srv = testServer();
  const { server, serverLog: log, sink } = srv;
  let offenders = 0;

  /** Handshake, `warmup` good msgs, then `attack`; expect an error frame matching `pattern`. */
  const attackCase = (
    name: string,
    attack: (s: RawClient) => Promise<void>,
    pattern: RegExp,
    warmup = 1,
  ) =>
    t.step(name, async () => {
      const peer = `record-case-${offenders++}.`;
      const s = await rawClientHandshake(server.connect(peer));
      for (let i = 0; i < warmup; i++) await sendAndExpectAck(s, `${name} warmup ${i}`);
      await attack(s);
      const before = await expectErrorFrame(s.raw, pattern);
      assert.deepEqual(before, [], "nothing between the last ack and the error frame");
      await eventually(() => errorsAbout(log, peer).length > 0, "the server's log line", 3000);
      assert.equal(errorsAbout(log, peer).length, 1, "one error line per offender");
      // "guestN (peer): reason"
      assert.match(errorsAbout(log, peer)[0].split(`(${peer}): `)[1], pattern);
    });

  /** Seals a msg, lets `mutate` edit its JSON fields, sends it. */
  const mutated = (mutate: (record: Frame) => void) => async (s: RawClient) => {
    const record = tryParse(s.session.seal("msg", "payload"))!;
    mutate(record);
    await s.raw.writeLine(JSON.stringify(record));
  };
  /** A client→server record built with node:crypto from the key schedule (not dh.ts). */
  const independent = (s: RawClient, type: string, plaintext: string | Uint8Array) =>
    new IndependentRecords(s.session.keySchedule, "client").seal(
      type,
      s.session.nextSendSeq,
      plaintext,
    );
  const AUTH = /^record authentication failed \(tampered or forged record\)$/;

  await t.step(
    "control: independently sealed records are acked, a ping gets its pong",
    async () => {
      const s = await rawClientHandshake(server.connect("control."));
      await s.raw.writeLine(independent(s, "msg", "hi ✓"));
      s.session.seal("msg", ""); // keep dh.ts's send counter in step
      await expectAck(s, 0);
      await s.raw.writeLine(s.session.seal("ping", "are you there"));
      const pong = s.session.open((await s.raw.readLine())!);
      assert.deepEqual([pong.type, pong.text], ["pong", "are you there"]);
      await s.raw.writeLine(s.session.seal("bye", ""));
      assert.deepEqual(await s.raw.readToEof(), [], "nothing after our bye");
      assert.deepEqual(errorsAbout(log, "control."), []);
    },
  );

  await attackCase(
    "bad tag (one bit flipped)",
    mutated((r) => r.tag = flipBit(r.tag as string, 9, 5)),
    AUTH,
  );
  await attackCase(
    "bad ciphertext (one bit flipped, tag intact)",
    mutated((r) => r.data = flipBit(r.data as string, 0, 3)),
    AUTH,
  );
  await attackCase("type msg → bye under the msg's tag", mutated((r) => r.type = "bye"), AUTH);
  await attackCase("type msg → ack under the msg's tag", mutated((r) => r.type = "ack"), AUTH);
  await attackCase(
    "tag truncated to 16 bytes",
    mutated((r) => r.tag = Uint8Array.fromBase64(r.tag as string).subarray(0, 16).toBase64()),
    AUTH,
  );
  await attackCase("empty tag", mutated((r) => r.tag = ""), AUTH);
  await attackCase(
    "missing tag",
    mutated((r) => delete r.tag),
    /^tag is not standard padded base64$/,
  );
  await attackCase("record sealed with the server→client keys", async (s) => {
    const reflected = new IndependentRecords(s.session.keySchedule, "server");
    await s.raw.writeLine(reflected.seal("msg", s.session.nextSendSeq, "reflected"));
  }, AUTH);
  await attackCase("replayed record (the same line twice)", async (s) => {
    const line = s.session.seal("msg", "once");
    await s.raw.writeLine(line);
    await expectAck(s, 1);
    await s.raw.writeLine(line);
  }, /^wrong sequence number 1, expected 2 \(replayed, reordered or lost record\)$/);
  await attackCase("skipped seq (two sealed, only the second sent)", async (s) => {
    s.session.seal("msg", "lost");
    await s.raw.writeLine(s.session.seal("msg", "second"));
  }, /^wrong sequence number 2, expected 1/);
  await attackCase(
    "seq as a string",
    mutated((r) => r.seq = "1"),
    /^seq must be a JSON integer \(1 expected\), got "1"$/,
  );
  await attackCase("seq -1", mutated((r) => r.seq = -1), /^wrong sequence number -1, expected 1/);
  for (const seq of [null, 0.5, 1e300, true, [1]]) {
    await attackCase(
      `seq ${JSON.stringify(seq)}`,
      mutated((r) => r.seq = seq),
      /^seq must be a JSON integer \(1 expected\), got /,
    );
  }
  await attackCase(
    "seq missing",
    mutated((r) => delete r.seq),
    /^seq must be a JSON integer \(1 expected\), got nothing$/,
  );
  for (const data of ["!!!!", "QQ", "QQ== ", "Q Q==", "QQ==QQ==", "-_8=", 12, null]) {
    await attackCase(
      `data ${JSON.stringify(data)}`,
      mutated((r) => r.data = data),
      /^data is not standard padded base64$/,
    );
  }
  await attackCase(
    "data not canonical (QR==)",
    mutated((r) => r.data = "QR=="),
    /^data is not canonical base64$/,
  );
  const invalidUtf8: [string, number[]][] = [
    ["lone 0xFF", [0xff]],
    ["overlong NUL C0 80", [0x68, 0xc0, 0x80]],
    ["UTF-16 surrogate ED A0 80", [0xed, 0xa0, 0x80]],
    ["truncated sequence E2 82", [0x41, 0xe2, 0x82]],
    ["above U+10FFFF F4 90 80 80", [0xf4, 0x90, 0x80, 0x80]],
  ];
  for (const [name, bytes] of invalidUtf8) {
    await attackCase(`invalid UTF-8 under a valid tag: ${name}`, async (s) => {
      await s.raw.writeLine(independent(s, "msg", Uint8Array.from(bytes)));
    }, /^record plaintext is not valid UTF-8$/);
  }
  await attackCase("an ack for a record never sent", async (s) => {
    await s.raw.writeLine(s.session.seal("ack", "0"));
  }, /^peer acknowledged record 0, which was never sent$/);
  for (const type of ["chat", "notice"]) {
    await attackCase(`a ${type} record from a client (validly sealed)`, async (s) => {
      await s.raw.writeLine(independent(s, type, "{}"));
    }, new RegExp(`^a client may not send ${type} records$`));
  }
  await attackCase("a bye with content", async (s) => {
    await s.raw.writeLine(s.session.seal("bye", "not empty"));
  }, /^a bye record must be empty$/);
  await attackCase("a ping of 33 bytes", async (s) => {
    await s.raw.writeLine(s.session.seal("ping", "p".repeat(33)));
  }, /^a ping carries at most 32 bytes$/);
  await attackCase("a pong for no ping", async (s) => {
    await s.raw.writeLine(s.session.seal("pong", "00000001"));
  }, /^pong does not answer the oldest ping sent$/);
  await attackCase("a record type that does not exist", async (s) => {
    await s.raw.writeLine(independent(s, "banana", "x"));
  }, /^unexpected frame type "banana" after the handshake$/);
  await attackCase(
    "a second key frame",
    (s) => s.raw.writeLine(s.keyLine),
    /^unexpected frame type "key"/,
  );
  await attackCase("a hello after the handshake", (s) => s.raw.writeLine(s.hello.line), /"hello"/);
  await attackCase(
    "a JSON array",
    (s) => s.raw.writeLine("[1,2,3]"),
    /^a frame must be a JSON object/,
  );
  await attackCase("non-JSON", (s) => s.raw.writeLine("GET / HTTP/1.1"), /^not a JSON frame/);
  await attackCase(
    "a forged first record (seq 0)",
    mutated((r) => r.tag = flipBit(r.tag as string, 31, 7)),
    AUTH,
    0,
  );
  await t.step("an error frame mid-session: closed without a reply", async () => {
    const s = await rawClientHandshake(server.connect("peer-error."));
    await sendAndExpectAck(s, "before the error frame");
    await s.raw.writeLine(`{"type":"error","message":"client gives up"}`);
    assert.deepEqual(await s.raw.readToEof(), []);
    await eventually(() => errorsAbout(log, "peer-error.").length > 0, "the log line", 3000);
    assert.match(errorsAbout(log, "peer-error.")[0], /peer reported an error: client gives up/);
    offenders++;
  });
  await t.step("the server still serves a good client", () => assertGoodClient(server, sink, 5));
  assert.equal(log.of("error").length, offenders, "one error line per offender, no other");
});

// ═══════════════════════════════════════════════════════════════════════════
// Classics: silence, trickles, capacity, vanishing clients
// ═══════════════════════════════════════════════════════════════════════════

Deno.test("classic: silent and trickling clients are dropped within the handshake timeout; keepalive drops a silent session", async (t) => {
  await using srv = testServer({ handshakeTimeoutMs: 300, keepaliveMs: 300 });
  const { server, serverLog: log, sink } = srv;

  await t.step("connect and say nothing", async () => {
    const started = performance.now();
    const raw = new RawPeer(server.connect("silent."));
    assert.equal(tryParse(await raw.readLine())?.type, "hello");
    await expectErrorFrame(raw, /^no key within 0\.3 s \(handshake timeout\)$/);
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 250, `dropped after ${elapsed.toFixed(0)} ms`);
  });

  await t.step("one byte every 50 ms (slowloris): the timeout covers the whole line", async () => {
    const raw = new RawPeer(server.connect("trickle."));
    await raw.readLine();
    const started = performance.now();
    const trickle = `{"type":"key","publicKey":"${"7".repeat(200)}"}`;
    let sent = 0;
    const reading = raw.readToEof(5000);
    let closed = false;
    reading.finally(() => closed = true).catch(() => {});
    for (; sent < trickle.length && !closed; sent++) {
      try {
        await raw.write(trickle[sent]);
      } catch {
        break;
      }
      await sleep(50); // the pacing is the attack under test
    }
    const lines = await reading;
    const elapsed = performance.now() - started;
    assert.ok(sent < trickle.length, "the whole trickle was accepted");
    assert.equal(lines.length, 1);
    assert.match(String(tryParse(lines[0])?.message), /within 0\.3 s/);
    assert.ok(elapsed >= 250, `dropped after ${elapsed.toFixed(0)} ms`);
  });

  await t.step("a silent session is pinged, then dropped", async () => {
    const s = await rawClientHandshake(server.connect("mute."));
    await sendAndExpectAck(s, "then silence");
    const ping = s.session.open((await s.raw.readLine(5000))!);
    assert.equal(ping.type, "ping");
    const rest = await s.raw.readToEof(5000);
    assert.equal(rest.length, 1, JSON.stringify(rest));
    const frame = tryParse(rest[0]);
    assert.equal(frame?.type, "error", rest[0]);
    assert.match(String(frame?.message), /^no answer to keepalive ping: silent for [0-9.]+ s$/);
    const reported = await log.waitFor(/^\[!\] guest\d+ \(mute\.\): /);
    assert.match(reported, /no answer to keepalive ping/);
    assert.equal(server.members.length, 0);
  });

  await t.step("a session that answers every ping lives on", async () => {
    const s = await rawClientHandshake(server.connect("alive."));
    const started = performance.now();
    let pongs = 0;
    while (performance.now() - started < 1500) {
      const line = await s.raw.readLine(5000);
      assert.ok(line !== null, "dropped although it answered");
      const ping = s.session.open(line);
      assert.equal(ping.type, "ping");
      await s.raw.writeLine(s.session.seal("pong", ping.text));
      pongs++;
    }
    assert.ok(pongs >= 2, `only ${pongs} pings in 1.5 s`);
    await sendAndExpectAck(s, "still here");
    await s.raw.writeLine(s.session.seal("bye", ""));
    s.raw.close();
  });

  await t.step("the server still serves a good client", () => assertGoodClient(server, sink));
  assert.equal(log.of("error").length, 3, log.dump());
});

Deno.test("classic: max clients — one more is told the server is full; sessions live on; a freed slot is reused", async () => {
  await using srv = testServer({ maxClients: 3 });
  const { server, serverLog: log, sink } = srv;
  const sessions: RawClient[] = [];
  for (let i = 0; i < 3; i++) sessions.push(await rawClientHandshake(server.connect(`held-${i}.`)));
  await eventually(() => server.members.length === 3, "three sessions", 3000);
  const extra = new RawPeer(server.connect("extra."));
  assert.deepEqual(
    await expectErrorFrame(extra, /^server full \(3 clients\); try again later$/),
    [],
    "no hello for a refused connection",
  );
  assert.equal(server.connections, 3);
  for (const [i, s] of sessions.entries()) await sendAndExpectAck(s, `held session ${i}`);
  const leaving = sessions.pop()!;
  await leaving.raw.writeLine(leaving.session.seal("bye", ""));
  assert.deepEqual(await leaving.raw.readToEof(), []);
  await eventually(() => server.connections === 2, "the slot freed", 3000);
  sessions.push(await rawClientHandshake(server.connect("again.")));
  for (const [i, s] of sessions.entries()) await sendAndExpectAck(s, `after the refusal ${i}`);
  assert.equal(log.of("error").length, 1, log.dump());
  for (const s of sessions) s.raw.close();
  await eventually(() => server.connections === 0, "all closed", 3000);
  await assertGoodClient(server, sink);
});

Deno.test("classic: vanishing clients (close, half a record, during the handshake) — logged, no slot kept", async (t) => {
  await using srv = testServer();
  const { server, serverLog: log, sink } = srv;

  await t.step("closed between records, no bye: an info line, not an error", async () => {
    const s = await rawClientHandshake(server.connect("vanish."));
    await sendAndExpectAck(s, "about to vanish");
    s.raw.close();
    await log.waitFor(/vanish\.\) disconnected without bye$/);
    assert.deepEqual(errorsAbout(log, "vanish."), []);
  });

  await t.step("closed after the hello, before the key", async () => {
    const raw = new RawPeer(server.connect("early."));
    await raw.readLine();
    raw.close();
    await log.waitFor(/early\. disconnected before the handshake/);
    assert.deepEqual(errorsAbout(log, "early."), []);
  });

  await t.step("half a record, then close", async () => {
    const s = await rawClientHandshake(server.connect("half."));
    await sendAndExpectAck(s, "before the half record");
    const line = s.session.seal("msg", "never finished");
    await s.raw.write(line.slice(0, line.length >> 1));
    s.raw.close();
    await eventually(() => errorsAbout(log, "half.").length > 0, "the log line", 3000);
    assert.deepEqual(
      errorsAbout(log, "half.").map((m) => m.replace(/^.*: /, "")),
      ["connection closed in the middle of a line"],
    );
  });

  await eventually(() => server.connections === 0, "no slot kept", 3000);
  await t.step("the server still serves a good client", () => assertGoodClient(server, sink));
});

tcpServerTest(
  "classic: vanishing clients over TCP — a reset mid-session; half a record then half-close still gets the error frame",
  async ({ server, port, serverLog: log, sink }) => {
    // A RST (SO_LINGER 0) from node:net, mid-session.
    const peer = await NodePeer.connect(port);
    const hello = parseHello((await peer.line())!, { insecure: false });
    const { keyLine, session } = respondToHello(hello, RAW_CLIENT_KEY);
    peer.write(`${keyLine}\n${session.seal("msg", "before the reset")}\n`);
    const ack = session.open((await peer.line())!);
    assert.deepEqual([ack.type, ack.text], ["ack", "0"]);
    const resetPeer = peer.local;
    peer.reset();
    await eventually(() => errorsAbout(log, resetPeer).length > 0, "the reset logged", 5000);
    assert.equal(errorsAbout(log, resetPeer).length, 1, log.dump());
    assert.match(errorsAbout(log, resetPeer)[0], /reset|lost|closed/);

    // Half a record, then half-close (`nc -N`): our read side stays open for the error frame.
    const conn = await within(Deno.connect({ hostname: HOST, port }), 3000, "connect");
    const s = await rawClientHandshake(new RawPeer(conn));
    await sendAndExpectAck(s, "before the half record");
    const line = s.session.seal("msg", "never finished");
    await s.raw.write(line.slice(0, line.length >> 1));
    await conn.closeWrite();
    await expectErrorFrame(s.raw, /^connection closed in the middle of a line$/);

    await eventually(() => server.connections === 0, "no slot kept", 5000);
    await assertGoodClient(server, sink, 3, port);
  },
);

Deno.test("classic: a slow consumer in room mode is dropped at the queue bound; the others keep getting every line", async () => {
  await using srv = testServer({ room: true, maxQueuedRecords: 64, writeTimeoutMs: 2000 });
  const { server, serverLog: log, sink } = srv;
  // The slow one: handshake, then never reads again.
  const slow = await rawClientHandshake(server.connect("slow."));
  await eventually(() => server.members.length === 1, "the slow client in session", 3000);
  // A listener that reads everything.
  const listener = typedClient(
    { connection: server.connect("listener."), name: "listener" },
    new PrintedLog(),
  );
  const listenerLog = listener.log;
  await eventually(() => server.members.length === 2, "the listener in session", 3000);
  // A writer with 300 lines: each is relayed to the slow one and the listener.
  const LINES = 300;
  const lines = Array.from({ length: LINES }, (_, i) => `relayed line ${i}`);
  const writerLog = new PrintedLog();
  const writer = await within(
    runClient({
      connection: server.connect("writer."),
      input: textStream(lines.map((l) => l + "\n").join("")),
      interactive: false,
      logger: writerLog,
      name: "writer",
    }),
    15_000,
    "the writer",
  );
  assert.equal(writer, 0, writerLog.text());
  assert.deepEqual(sink.texts().filter((t) => t.startsWith("relayed")), lines);
  await listenerLog.waitFor(new RegExp(`writer: relayed line ${LINES - 1}$`), 10_000);
  const heard = listenerLog.lines.map((l) => l.text).filter((t) => t.includes("relayed line"));
  assert.deepEqual(heard, lines.map((l) => `[+] writer: ${l}`), "every line, in order");
  // The slow one was dropped at a bound, with a reason.
  await eventually(() => errorsAbout(log, "slow.").length > 0, () => log.dump(), 10_000);
  assert.match(errorsAbout(log, "slow.")[0], /too far behind|write timed out/);
  await eventually(() => !server.members.some((m) => m.address === "slow."), "slow removed", 5000);
  listener.end();
  assert.equal(await within(listener.run, 10_000, "the listener"), 0, listenerLog.text());
  slow.raw.close();
  assert.deepEqual(
    log.of("error").filter((m) => !m.includes("slow.")),
    [],
    "no one else had trouble",
  );
});

// ═══════════════════════════════════════════════════════════════════════════
// Classics: hostile servers against the client
// ═══════════════════════════════════════════════════════════════════════════

Deno.test("classic: the client refuses hostile hellos before sending its key", async (t) => {
  const cases: [name: string, line: string, reason: RegExp, toy?: boolean][] = [
    ["g = 1 (secure client)", helloWith({ g: "1" }), /differ from RFC 7919: refusing/],
    ["g = 1 (toy client)", helloWith({ g: "1" }), /unusable: the generator must lie in/, true],
    ["g = p - 1 (toy client)", helloWith({ g: (P - 1n).toString() }), /unusable/, true],
    ["p = 23 under the name ffdhe2048", helloWith({ p: "23", g: "5", publicKey: "8" }), /differ/],
    ["p - 2 under the name ffdhe2048", helloWith({ p: (P - 2n).toString() }), /differ/],
    [
      "a custom group",
      helloWith({ group: "custom", p: "2147483647", g: "7", publicKey: "5" }),
      /server offered custom parameters \(a 31-bit prime\); rerun with --toy/,
    ],
    ["a custom group with the ffdhe2048 numbers", helloWith({ group: "custom" }), /custom/],
    [
      "the toy group",
      helloWith({ group: "toy", p: "23", g: "5", publicKey: "10", cipher: TOY_CIPHER }),
      /server offered the toy group/,
    ],
    ["the xor8 cipher", helloWith({ cipher: TOY_CIPHER }), /server offered cipher xor8/],
    ["an unknown cipher", helloWith({ cipher: "aes-128-ecb" }), /unknown cipher "aes-128-ecb"/],
    ["an unknown group", helloWith({ group: "ffdhe1024" }), /unknown group "ffdhe1024"/],
    ['protocol "dhx/9"', helloWith({ protocol: "dhx/9" }), /server speaks protocol "dhx\/9"/],
    ['protocol "dhx/9" (toy client)', helloWith({ protocol: "dhx/9" }), /protocol/, true],
    ["no protocol", helloWith({ protocol: undefined }), /server speaks protocol nothing/],
    ["server public key 0", helloWith({ publicKey: "0" }), /invalid public key \(0\)/],
    ["server public key 1", helloWith({ publicKey: "1" }), /invalid public key \(1\)/],
    ["server public key p - 1", helloWith({ publicKey: (P - 1n).toString() }), /\(p - 1\)/],
    ["server public key p", helloWith({ publicKey: P.toString() }), /invalid public key \(≥ p\)/],
    [
      "server public key p - 1 in the toy group (toy client)",
      helloWith({ group: "toy", p: "23", g: "5", publicKey: "22", cipher: TOY_CIPHER }),
      /invalid public key \(p - 1\)/,
      true,
    ],
    [
      "a public key as a JSON number",
      helloWith({ publicKey: 12345 }),
      /publicKey must be a string/,
    ],
    ['a public key "0x10"', helloWith({ publicKey: "0x10" }), /publicKey must contain only/],
    ["p of 100,000 digits", helloWith({ p: "9".repeat(100_000) }), /p has 100000 digits/],
    ["garbage instead of a hello", "HTTP/1.1 400 Bad Request", /not a JSON frame/],
    ["a JSON array instead of a hello", `["hello"]`, /a frame must be a JSON object/],
    [
      "a key frame instead of a hello",
      `{"type":"key","publicKey":"${FAKE_SERVER_KEY}"}`,
      /expected a hello frame from the server, got type "key"/,
    ],
    ["invalid UTF-8", "\u0000", /line is not valid UTF-8/],
  ];
  for (const [name, line, reason, toy] of cases) {
    await t.step(name, async () => {
      const run = await againstFake(async (server) => {
        if (name === "invalid UTF-8") await server.write(new Uint8Array([0x7b, 0xc3, 0x28, 0x0a]));
        else await server.writeLine(line);
      }, { toy });
      assertFailed(run, reason);
      assert.ok(!sentKey(run), "a key frame reached the fake server");
      assert.ok(sentError(run), `no error frame sent back: ${JSON.stringify(run.received)}`);
    });
  }
  await t.step("control: the same hello with CRLF and re-ordered fields is accepted", async () => {
    const hello = tryParse(helloWith())!;
    const reordered = JSON.stringify(Object.fromEntries(Object.entries(hello).reverse()));
    const run = await againstFake(async (server) => {
      await server.write(reordered + "\r\n");
      await server.readLine();
    }, { timeoutMs: 600 });
    assert.ok(sentKey(run), run.log.text());
  });
  await t.step("an error frame instead of a hello: reported, nothing sent back", async () => {
    const run = await againstFake((server) =>
      server.writeLine(JSON.stringify({ type: "error", message: "server full (1 client)" }))
    );
    assertFailed(run, /^\[!\] Peer reported an error: server full \(1 client\)$/);
    assert.deepEqual(run.received, []);
  });
  await t.step("a hello longer than the client's maxLine, without LF", async () => {
    const run = await againstFake(
      (server) => server.write(helloWith({ padding: "x".repeat(20_000) })),
      { maxLine: 4096 },
    );
    assertFailed(run, /line longer than 4096 bytes/);
    assert.ok(!sentKey(run));
  });
  await t.step("the server closes before its hello", async () => {
    const run = await againstFake((server) => {
      server.close();
      return Promise.resolve();
    });
    assertFailed(run, /server closed the connection before its hello/);
  });
  await t.step("silence: no hello within the client's timeout (300 ms)", async () => {
    const run = await againstFake(() => Promise.resolve(), { timeoutMs: 300 });
    assertFailed(run, /no hello from the server within 0\.3 s/);
    assert.ok(run.elapsed >= 280, `gave up after ${run.elapsed.toFixed(0)} ms`);
    assert.ok(!sentKey(run));
  });
});

Deno.test("classic: the client refuses hostile sessions", async (t) => {
  await t.step("control: an honest fake server gets exit 0", async () => {
    const run = await againstFake(secureFake(async (server, session) => {
      await readMsg(server, session, "first line");
      await readMsg(server, session, "second line");
      await server.writeLine(session.seal("ack", "0"));
      await server.writeLine(session.seal("ack", "1"));
      assert.equal(session.open((await server.readLine())!).type, "bye");
    }));
    assert.equal(run.code, 0, run.log.text());
    // A revision-2 fake (no host key): the one warning that it cannot be verified.
    assert.deepEqual(run.log.errors, [
      "[!] The server sent no host key (an older server): it cannot be verified; nothing remembered",
    ]);
  });
  type Script = (server: RawPeer, session: Session) => Promise<void>;
  /** Reads the client's first line, then sends the line `make` makes. */
  const sends = (make: (session: Session) => string): Script => async (server, session) => {
    await readMsg(server, session, "first line");
    await server.writeLine(make(session));
  };
  const cases: [name: string, script: Script, reason: RegExp, options?: { timeoutMs: number }][] = [
    [
      "a tampered ack (tag bit flipped)",
      sends((session) => {
        const ack = tryParse(session.seal("ack", "0"))!;
        return JSON.stringify({ ...ack, tag: flipBit(ack.tag as string, 12, 4) });
      }),
      /record authentication failed/,
    ],
    [
      "a tampered ack (ciphertext bit flipped)",
      sends((session) =>
        withFields(session.seal("ack", "0"), {
          data: flipBit(tryParse(session.seal("ack", "x"))!.data as string, 0),
        })
      ),
      /record authentication failed/,
    ],
    ["reordered acks (seq 1 on the wire first)", async (server, session) => {
      await readMsg(server, session, "first line");
      await readMsg(server, session, "second line");
      const ack0 = session.seal("ack", "0");
      await server.write(`${session.seal("ack", "1")}\n${ack0}\n`);
    }, /wrong sequence number 1, expected 0/],
    ["acks for the wrong messages (validly sealed, 1 first)", async (server, session) => {
      await readMsg(server, session, "first line");
      await readMsg(server, session, "second line");
      await server.writeLine(session.seal("ack", "1"));
    }, /peer acknowledged record 1, expected 0/],
    ["a replayed ack", async (server, session) => {
      await readMsg(server, session, "first line");
      await readMsg(server, session, "second line");
      const ack0 = session.seal("ack", "0");
      await server.write(`${ack0}\n${ack0}\n`);
    }, /wrong sequence number 0, expected 1/],
    ["the client's own record reflected back", async (server) => {
      await server.readLine(); // the msg
      const msg = server.received.at(-1)!;
      await server.writeLine(msg);
    }, /a server may not send msg records/],
    [
      "a msg record from the server",
      sends((session) =>
        new IndependentRecords(session.keySchedule, "server").seal("msg", 0, "hi")
      ),
      /a server may not send msg records/,
    ],
    [
      "a chat that is not JSON",
      sends((session) => session.seal("chat", "not json")),
      /a chat record must hold a JSON object/,
    ],
    [
      "a chat without a sender",
      sends((session) => session.seal("chat", `{"text":"anonymous"}`)),
      /a chat record must hold \{"from": string, "text": string\}/,
    ],
    [
      "a ping of 33 bytes",
      sends((session) => session.seal("ping", "p".repeat(33))),
      /a ping carries at most 32 bytes/,
    ],
    [
      "a pong for no ping",
      sends((session) => session.seal("pong", "00000001")),
      /pong does not answer the oldest ping sent/,
    ],
    [
      "a second hello mid-session",
      sends(() => helloWith()),
      /unexpected frame type "hello" after the handshake/,
    ],
    ["an error frame mid-session", async (server, session) => {
      await readMsg(server, session, "first line");
      await server.writeLine(JSON.stringify({ type: "error", message: "gone" }));
      server.close();
    }, /The server dropped this session: gone/],
    ["the server closes mid-session", async (server, session) => {
      await readMsg(server, session, "first line");
      await readMsg(server, session, "second line");
      server.close();
    }, /server closed the connection without bye/],
    ["the server says bye with messages unacknowledged", async (server, session) => {
      await readMsg(server, session, "first line");
      await server.writeLine(session.seal("bye", ""));
      server.close();
    }, /messages? not acknowledged by the server/],
    ["half a record, then close", async (server, session) => {
      await readMsg(server, session, "first line");
      await readMsg(server, session, "second line");
      await server.write(session.seal("ack", "0").slice(0, 30));
      server.close();
    }, /connection closed in the middle of a line/],
    [
      "silence after the handshake (timeout 300 ms)",
      async (server, session) => {
        await readMsg(server, session, "first line");
        await readMsg(server, session, "second line");
      },
      /2 messages not acknowledged by the server \(seq 0, 1\)/,
      { timeoutMs: 300 },
    ],
  ];
  for (const [name, script, reason, options] of cases) {
    await t.step(name, async () => {
      // The input ends only after the script: a client whose input ends as its session
      // ends waits out its timeout for nothing (the item 7 bug), 2 s a case.
      const run = await againstFake(
        secureFake(script),
        options,
        options ? textStream("first line\nsecond line\n") : "held",
      );
      assertFailed(run, reason);
    });
  }
  await t.step(
    "control: a ping from the server gets its pong; chat and notice are shown",
    async () => {
      const run = await againstFake(secureFake(async (server, session) => {
        await readMsg(server, session, "first line");
        await readMsg(server, session, "second line");
        await server.writeLine(session.seal("ping", "abc"));
        const pong = session.open((await server.readLine())!);
        assert.deepEqual([pong.type, pong.text], ["pong", "abc"]);
        await server.writeLine(session.seal("chat", JSON.stringify({ from: "op", text: "hi" })));
        const ack = session.open((await server.readLine())!);
        assert.deepEqual([ack.type, ack.text], ["ack", "1"]);
        await server.writeLine(session.seal("notice", "a notice"));
        await server.writeLine(session.seal("ack", "0"));
        await server.writeLine(session.seal("ack", "1"));
        assert.equal(session.open((await server.readLine())!).type, "bye");
      }));
      assert.equal(run.code, 0, run.log.text());
      assert.ok(run.log.lines.some((l) => l.text === "[+] op: hi"), run.log.text());
      assert.ok(run.log.lines.some((l) => l.text === "[*] a notice"), run.log.text());
    },
  );
});
