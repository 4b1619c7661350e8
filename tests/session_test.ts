/**
 * End-to-end sessions in one process: `startServer` and `runClient` over
 * in-memory connections (`server.connect()`), plus raw and fake peers built
 * from tests/support.ts. Nothing here needs a permission: plain `deno test`
 * runs every test.
 *
 * What crosses a connection is observed with a {@link WireTap}: frame types
 * travel in clear JSON, so a test can count acks, pings and errors without
 * the session keys.
 *
 * Run: `deno test tests/session_test.ts` (or with -P).
 */

import assert from "node:assert/strict";
import { runClient } from "../client.ts";
import { encodeChat, GROUPS, type Session, TOY_CIPHER } from "../dh.ts";
import { type ServerHandle, startServer } from "../server.ts";
import { type Connection, type Duplex, type LineConnection, maxRecordText } from "../transport.ts";
import {
  CapturingLogger,
  eventually,
  type FixtureClientOptions,
  handshakeWith,
  IndependentRecords,
  LONG_NUMBER,
  PrintedLog,
  rawClientHandshake,
  RawPeer,
  type ServerFixture,
  sleep,
  testServer,
  type TestServerOptions,
  TOY_FINGERPRINT,
  tryParse,
  type TypedClient,
  typedClient,
  unsafeCharacters,
  Waiters,
  within,
  withServer,
} from "./support.ts";

const encoder = new TextEncoder();

// ───────────────────────────────────────────────────────────────────────────
// Local helpers
// ───────────────────────────────────────────────────────────────────────────

/** A pass-through stream that reports each LF-terminated line, and the end. */
function lineTap(onLine: (line: string) => void, onEnd: () => void) {
  const decoder = new TextDecoder();
  let pending = "";
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      pending += decoder.decode(chunk, { stream: true });
      for (let lf = pending.indexOf("\n"); lf >= 0; lf = pending.indexOf("\n")) {
        onLine(pending.slice(0, lf));
        pending = pending.slice(lf + 1);
      }
      controller.enqueue(chunk);
    },
    flush: onEnd,
    cancel: onEnd,
  });
}

/**
 * Watches both directions of an in-memory connection: every line each way,
 * and when each side stops sending. Pass {@link conn} to the client.
 */
class WireTap {
  /** Lines the client sent. */
  readonly toServer: string[] = [];
  /** Lines the server sent. */
  readonly toClient: string[] = [];
  /** The client closed its sending side. */
  clientEnded = false;
  /** The server's side ended (closed or cancelled). */
  serverEnded = false;
  /** The client's end of the connection. */
  readonly conn: Duplex;
  readonly #waiters = new Waiters();

  constructor(inner: Duplex) {
    const up = lineTap((line) => this.#push(this.toServer, line), () => {
      this.clientEnded = true;
      this.#waiters.notify();
    });
    up.readable.pipeTo(inner.writable).catch(() => {});
    const down = lineTap((line) => this.#push(this.toClient, line), () => {
      this.serverEnded = true;
      this.#waiters.notify();
    });
    this.conn = { readable: inner.readable.pipeThrough(down), writable: up.writable };
  }

  #push(lines: string[], line: string): void {
    lines.push(line);
    this.#waiters.notify();
  }

  /** The frame types of one direction, in order. */
  types(direction: "toServer" | "toClient"): string[] {
    return this[direction].map((line) => String(tryParse(line)?.type));
  }

  /** How many frames of `type` went one way. */
  count(direction: "toServer" | "toClient", type: string): number {
    return this.types(direction).filter((t) => t === type).length;
  }

  /** Resolves once `ready()` holds. */
  until(ready: () => boolean, what: string, ms = 8000): Promise<void> {
    return this.#waiters.until(ready, ms, () => `${what}; wire so far:\n${this.dump()}`);
  }

  /** Both directions' frame types, for messages. */
  dump(): string {
    return `to server: ${this.types("toServer").join(" ")}\nto client: ${
      this.types("toClient").join(" ")
    }`;
  }
}

/** An in-process client on typed input, over a tapped in-memory connection. */
interface Client extends TypedClient {
  readonly tap: WireTap;
}

/** {@link ServerFixture} plus tapped clients. */
interface Fixture extends ServerFixture {
  /** Starts a client on the fixture's server through a {@link WireTap}. */
  open(options?: FixtureClientOptions): Client;
}

/**
 * {@link withServer} whose body may also start tapped clients: their input is
 * ended before the server closes, and their runs awaited after.
 */
async function withRoom(
  options: TestServerOptions,
  body: (fixture: Fixture) => Promise<void>,
): Promise<void> {
  const clients: Client[] = [];
  try {
    await withServer(options, async (fixture) => {
      const open: Fixture["open"] = (clientOptions = {}) => {
        const tap = new WireTap(fixture.server.connect());
        const client = { ...typedClient({ ...clientOptions, connection: tap.conn }), tap };
        clients.push(client);
        return client;
      };
      try {
        await body({ ...fixture, open });
      } finally {
        for (const client of clients) client.end();
      }
    });
  } finally {
    for (const client of clients) {
      await within(client.run, 15_000, () => `client run\n${client.log.dump()}`).catch(() => {});
    }
  }
}

/** The exit code of a client, bounded, with its log on failure. */
function exitOf(client: { run: Promise<number>; log: CapturingLogger }, ms = 10_000) {
  return within(client.run, ms, () => `client exit; its log:\n${client.log.dump()}`);
}

/** Reads and records every line a raw peer receives until EOF, in the background. */
function drain(peer: RawPeer, ms = 15_000): Promise<string[]> {
  const reading = peer.readToEof(ms);
  reading.catch(() => {});
  return reading;
}

/**
 * A fake server on one in-memory connection that completes a real handshake
 * (transport.ts's serverHandshake, via support's handshakeWith) and then runs
 * `script` with its link and session.
 */
function scriptedServer(
  script: (link: LineConnection, session: Session) => Promise<void>,
): { connection: Connection; done: Promise<void> } {
  const { connection, server } = handshakeWith();
  const done = server.then(({ link, session }) =>
    script(link, session).finally(() => link.close())
  );
  done.catch(() => {});
  return { connection, done };
}

// ───────────────────────────────────────────────────────────────────────────
// Sessions
// ───────────────────────────────────────────────────────────────────────────

Deno.test("secure session: lines arrive in order and are acked; same fingerprint; secrets hidden", async () => {
  await withRoom({}, async ({ server, serverLog, sink, open }) => {
    const client = open();
    const lines = ["hello", "second line", "ünïcödé ✓ 🙂", "", "  spaced  ", "last"];
    for (const line of lines) client.type(line);
    client.end();
    assert.equal(await exitOf(client), 0, client.log.dump());
    assert.deepEqual(sink.texts(), lines);
    assert.deepEqual(sink.messages.map((m) => m.seq), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(sink.messages.map((m) => m.name), lines.map(() => "guest1"));
    for (let i = 0; i < lines.length; i++) {
      assert.ok(
        client.log.of("success").includes(`Line ${i + 1} acknowledged (seq ${i})`),
        `ack of line ${i + 1}:\n${client.log.dump()}`,
      );
    }
    assert.ok(client.log.of("info").includes("Session closed"), client.log.dump());
    assert.deepEqual(client.log.of("error"), [], client.log.dump());
    // The wire: key, six msgs, bye; hello, six acks.
    assert.deepEqual(client.tap.types("toServer"), ["key", ...lines.map(() => "msg"), "bye"]);
    assert.deepEqual(client.tap.types("toClient"), ["hello", "proof", ...lines.map(() => "ack")]);
    const fingerprint = client.log.fingerprint();
    assert.ok(fingerprint, client.log.dump());
    assert.notEqual(fingerprint, TOY_FINGERPRINT);
    assert.equal(serverLog.fingerprint(), fingerprint, serverLog.dump());
    // ffdhe2048 + the secure cipher, and no secret printed in full on either side.
    assert.ok(
      client.log.of("info").includes(
        "Server offers ffdhe2048 (2048-bit p, g = 2), aes-256-ctr+hmac-sha256",
      ),
      client.log.dump(),
    );
    for (const log of [client.log, serverLog]) {
      assert.ok(
        log.lines.some((l) =>
          /Shared key calculated: \d+-bit number, sha256 [0-9a-f]{8}…$/.test(l)
        ),
        log.dump(),
      );
      assert.deepEqual(log.lines.filter((l) => LONG_NUMBER.test(l)), [], log.dump());
    }
    await serverLog.waitFor(/^\[\*\] guest1 \(memory:1\) disconnected$/);
    assert.deepEqual(serverLog.of("error"), [], serverLog.dump());
    assert.equal(server.connections, 0);
  });
});

Deno.test("toy session: the original's numbers and the vector's fingerprint", async () => {
  // No host key, as a revision-2 server: the handshake lines are the vector's, byte for byte.
  const toy = { group: GROUPS.toy, cipher: TOY_CIPHER, privateKey: 3n, hostKey: null };
  await withRoom(toy, async ({ serverLog, sink, open }) => {
    const client = open({ toy: true });
    client.type("hello");
    client.type("exit?");
    client.end();
    assert.equal(await exitOf(client), 0, client.log.dump());
    assert.deepEqual(sink.texts(), ["hello", "exit?"]);
    for (
      const line of [
        "Received client public key: 20",
        "Shared key calculated: 19",
      ]
    ) assert.ok(serverLog.of("info").includes(line), `${line}:\n${serverLog.dump()}`);
    for (
      const line of [
        "Server shares p = 23, g = 5 (toy, cipher xor8)",
        "Received server public key: 10",
        "Sending public key: 20",
        "Shared key calculated: 19",
      ]
    ) assert.ok(client.log.of("info").includes(line), `${line}:\n${client.log.dump()}`);
    assert.equal(serverLog.fingerprint(), TOY_FINGERPRINT, serverLog.dump());
    assert.equal(client.log.fingerprint(), TOY_FINGERPRINT, client.log.dump());
    assert.ok(client.log.of("error").some((e) => /^Toy mode/.test(e)), client.log.dump());
    // xor8 records carry no tag.
    const records = client.tap.toServer.slice(1).map(tryParse);
    assert.equal(records.length, 3, client.tap.dump());
    for (const record of records) assert.equal(record?.tag, undefined, JSON.stringify(record));
    // The toy vector's first message: "hello" XOR 19.
    assert.equal(client.tap.toServer[1], '{"type":"msg","seq":0,"data":"e3Z/f3w="}');
  });
});

Deno.test("both directions: operator line reaches the client and is acked; client lines shown with name and address", async () => {
  await withRoom({}, async ({ server, serverLog, sink, open }) => {
    const client = open();
    await serverLog.waitFor(/Session with memory:1 \(guest1\)/);
    client.type("from the client");
    await sink.waitForCount(1);
    await serverLog.waitFor(/^\[\+\] guest1 \(memory:1\): from the client$/);
    server.operator("from the operator");
    await client.log.waitFor(/^\[\+\] server: from the operator$/);
    assert.ok(serverLog.of("info").includes("Sent to 1 client"), serverLog.dump());
    // The client acks the chat: exactly one ack for the one chat record.
    await client.tap.until(() => client.tap.count("toServer", "ack") === 1, "the client's ack");
    assert.equal(client.tap.count("toClient", "chat"), 1, client.tap.dump());
    client.type("and back");
    await sink.waitForCount(2);
    client.end();
    assert.equal(await exitOf(client), 0, client.log.dump());
    assert.deepEqual(sink.texts(), ["from the client", "and back"]);
    assert.equal(client.tap.count("toServer", "ack"), 1, client.tap.dump());
    assert.deepEqual(serverLog.of("error"), [], serverLog.dump());
    // The server reported no overdue ack and nothing went to anyone else.
    assert.ok(!serverLog.lines.some((l) => /no acknowledgement/.test(l)), serverLog.dump());
  });
});

Deno.test("room of three: lines with names, join/leave/rename notices, never one's own line", async () => {
  await withRoom({ room: true }, async ({ server, serverLog, sink, open }) => {
    const a = open();
    await serverLog.waitFor(/Session with memory:1 \(guest1\)/);
    const b = open();
    await a.log.waitFor(/^\[\*\] guest2 joined$/);
    const c = open();
    await a.log.waitFor(/^\[\*\] guest3 joined$/);
    await b.log.waitFor(/^\[\*\] guest3 joined$/);
    assert.deepEqual(server.members.map((m) => m.name), ["guest1", "guest2", "guest3"]);

    a.type("/name alice");
    await b.log.waitFor(/^\[\*\] guest1 is now alice$/);
    await c.log.waitFor(/^\[\*\] guest1 is now alice$/);
    await a.log.waitFor(/^\[\*\] you are now alice$/);
    b.type("/name bob");
    await a.log.waitFor(/^\[\*\] guest2 is now bob$/);
    await c.log.waitFor(/^\[\*\] guest2 is now bob$/);

    a.type("hello from alice");
    b.type("hello from bob");
    c.type("hello from guest3");
    await b.log.waitFor(/^\[\+\] alice: hello from alice$/);
    await c.log.waitFor(/^\[\+\] alice: hello from alice$/);
    await a.log.waitFor(/^\[\+\] bob: hello from bob$/);
    await c.log.waitFor(/^\[\+\] bob: hello from bob$/);
    await a.log.waitFor(/^\[\+\] guest3: hello from guest3$/);
    await b.log.waitFor(/^\[\+\] guest3: hello from guest3$/);
    await sink.waitForCount(5);

    c.end();
    assert.equal(await exitOf(c), 0, c.log.dump());
    await a.log.waitFor(/^\[\*\] guest3 left$/);
    await b.log.waitFor(/^\[\*\] guest3 left$/);

    // Nobody sees their own line, and each sees each other line exactly once.
    const chats = (client: Client) =>
      client.log.of("success").filter((l) => /: hello from/.test(l));
    assert.deepEqual(chats(a).sort(), ["bob: hello from bob", "guest3: hello from guest3"]);
    assert.deepEqual(chats(b).sort(), ["alice: hello from alice", "guest3: hello from guest3"]);
    assert.deepEqual(chats(c).sort(), ["alice: hello from alice", "bob: hello from bob"]);
    // Notices: the joins after each one's own, the renames of the others, the leave.
    const notices = (client: Client) =>
      client.log.of("info").filter((l) => /^(guest\d|alice|bob) (joined|left|is now)/.test(l));
    assert.deepEqual(notices(a), [
      "guest2 joined",
      "guest3 joined",
      "guest2 is now bob",
      "guest3 left",
    ]);
    assert.deepEqual(notices(b), [
      "guest3 joined",
      "guest1 is now alice",
      "guest3 left",
    ]);
    assert.deepEqual(notices(c), ["guest1 is now alice", "guest2 is now bob"]);
    // Every relayed chat was acked by its receiver: two chats each, two acks each.
    for (const client of [a, b]) {
      await client.tap.until(
        () => client.tap.count("toServer", "ack") === 2,
        "two acks of relayed chats",
      );
      assert.equal(client.tap.count("toClient", "chat"), 2, client.tap.dump());
    }
    // The server shows each line with name and address.
    for (
      const line of [
        "[+] alice (memory:1): hello from alice",
        "[+] bob (memory:2): hello from bob",
        "[+] guest3 (memory:3): hello from guest3",
      ]
    ) assert.ok(serverLog.lines.includes(line), `${line}:\n${serverLog.dump()}`);
    a.end();
    b.end();
    assert.deepEqual(await Promise.all([exitOf(a), exitOf(b)]), [0, 0]);
  });
});

Deno.test("room notices: 'bob joined' under --name, 'present:', a taken name, a removal told as such", async () => {
  await withRoom({ room: true }, async ({ server, serverLog, open }) => {
    const alice = open({ name: "alice" });
    await alice.log.waitFor(/^\[\*\] you are now alice$/);
    await alice.log.waitFor(/^\[\*\] present: server$/);
    const bob = open({ name: "bob" });
    await bob.log.waitFor(/^\[\*\] present: server, alice$/);
    await alice.log.waitFor(/^\[\*\] bob joined$/);
    // A taken --name: told which guest it is; the others see that guest join, once.
    const late = open({ name: "alice" });
    await late.log.waitFor(
      /^\[\*\] name "alice" is taken; you are guest3 \(choose another with \/name\)$/,
    );
    await alice.log.waitFor(/^\[\*\] guest3 joined$/);
    await bob.log.waitFor(/^\[\*\] guest3 joined$/);
    // /kick: the others are told of a removal, not of a leave; the server says it once.
    server.operator("/kick bob");
    await alice.log.waitFor(/^\[\*\] bob was removed by the operator$/);
    await bob.tap.until(() => bob.tap.clientEnded, "bob's client to close");
    bob.end();
    assert.equal(await exitOf(bob), 1, bob.log.dump());
    assert.ok(
      bob.log.of("error").some((l) => l === "You were removed by the server's operator"),
      `the kicked client shows the operator's words alone:\n${bob.log.dump()}`,
    );
    await eventually(() => server.members.length === 2, "bob gone");
    late.end();
    await alice.log.waitFor(/^\[\*\] guest3 left$/);
    const seen = alice.log.of("info").filter((l) => /joined|left|removed|is now|present/.test(l));
    assert.deepEqual(seen, [
      "present: server",
      "bob joined",
      "guest3 joined",
      "bob was removed by the operator",
      "guest3 left",
    ]);
    assert.deepEqual(
      serverLog.lines.filter((l) => /\bbob\b/.test(l) && !/is now|Session with/.test(l)),
      ["[*] Kicked bob (memory:2)"],
    );
    alice.end();
    assert.equal(await exitOf(alice), 0, alice.log.dump());
  });
});

Deno.test("default mode: no relay and no join/leave notices between clients", async () => {
  await withRoom({}, async ({ serverLog, sink, open }) => {
    const a = open();
    await serverLog.waitFor(/Session with memory:1/);
    const b = open();
    await serverLog.waitFor(/Session with memory:2/);
    a.type("only for the server");
    await sink.waitForCount(1);
    b.end();
    assert.equal(await exitOf(b), 0, b.log.dump());
    a.type("/who");
    await a.log.waitFor(/^\[\*\] present: /);
    a.end();
    assert.equal(await exitOf(a), 0, a.log.dump());
    assert.deepEqual(b.tap.types("toClient").filter((t) => t !== "ack"), ["hello", "proof"]);
    // a got its one /who notice and nothing else: no "joined", no "left", no chat.
    assert.deepEqual(a.tap.types("toClient").filter((t) => t !== "ack"), [
      "hello",
      "proof",
      "notice",
    ]);
    assert.ok(!b.log.lines.some((l) => /only for the server/.test(l)), b.log.dump());
  });
});

Deno.test("commands: /name conflicts and invalid names, /who, // escaping, unknown commands", async () => {
  await withRoom({ room: true, name: "Boss" }, async ({ serverLog, sink, open }) => {
    const a = open();
    await serverLog.waitFor(/Session with memory:1/);
    const b = open();
    await a.log.waitFor(/guest2 joined/);
    const answers: [Client, string, string][] = [
      [a, "/name boss", `name "boss" is taken; you are guest1 (choose another with /name)`],
      [
        a,
        "/name b0ss.",
        `name "b0ss." is too like "Boss"; you are guest1 (choose another with /name)`,
      ],
      [a, "/name Alice", "you are now Alice"],
      [b, "/name ALICE", `name "ALICE" is taken; you are guest2 (choose another with /name)`],
      [b, "/name alice", `name "alice" is taken; you are guest2 (choose another with /name)`],
      [
        b,
        "/name bad name",
        "name not changed: a name is 1 to 24 characters from A-Z a-z 0-9 _ - .",
      ],
      [
        b,
        "/name " + "x".repeat(25),
        "name not changed: a name is 1 to 24 characters from A-Z a-z 0-9 _ - .",
      ],
      [b, "/name", "name not changed: a name is needed: /name NAME"],
      [b, "/name émile", "name not changed: a name is 1 to 24 characters from A-Z a-z 0-9 _ - ."],
      [b, "/name " + "y".repeat(24), "you are now " + "y".repeat(24)],
      [b, "/name ALICE_", `name not changed: "ALICE_" is too like "Alice"`],
      [
        b,
        "/name guest9",
        `name not changed: "guest9" is not yours: guest names are given by the server`,
      ],
      [b, "/name b.o-b_2", "you are now b.o-b_2"],
      [a, "/name Alice", "you are now Alice"], // its own name again: allowed
      [a, "/who", "present: Boss, Alice, b.o-b_2"],
      [
        b,
        "/foo bar",
        "unknown command /foo; commands: /name NAME, /who (start a line with // to send one that begins with /)",
      ],
      [
        b,
        "/kick Alice",
        "unknown command /kick; commands: /name NAME, /who (start a line with // to send one that begins with /)",
      ],
    ];
    let commands = 0;
    for (const [client, line, answer] of answers) {
      const before = client.log.of("info").length;
      client.type(line);
      commands++;
      await sink.waitForCount(commands);
      await eventually(
        () => client.log.of("info").slice(before).includes(answer),
        () => `${line} → ${answer}:\n${client.log.dump()}`,
        8000,
      );
      assert.equal(
        client.log.of("info").slice(before).filter((l) => l === answer).length,
        1,
        `${line} → ${answer}:\n${client.log.dump()}`,
      );
    }
    // Exactly one notice per command, plus "present:" on joining, and a's
    // notices of b joining and renaming twice, and b's of a's rename.
    await a.tap.until(() => a.tap.count("toClient", "notice") === 5 + 1 + 3, "a's notices");
    await b.tap.until(() => b.tap.count("toClient", "notice") === 12 + 1 + 1, "b's notices");
    // `//` escaping: sent as a chat line without its first slash.
    a.type("//shrug");
    a.type("///three");
    await b.log.waitFor(/^\[\+\] Alice: \/shrug$/);
    await b.log.waitFor(/^\[\+\] Alice: \/\/three$/);
    await serverLog.waitFor(/^\[\+\] Alice \(memory:1\): \/shrug$/);
    assert.equal(b.log.lines.filter((l) => /Alice: \/shrug/.test(l)).length, 1, b.log.dump());
    // Renames were announced to the other client; refusals were not.
    assert.deepEqual(
      a.log.of("info").filter((l) => / is now /.test(l)),
      ["guest2 is now " + "y".repeat(24), `${"y".repeat(24)} is now b.o-b_2`],
    );
    assert.deepEqual(b.log.of("info").filter((l) => / is now /.test(l)), ["guest1 is now Alice"]);
    a.end();
    b.end();
    assert.deepEqual(await Promise.all([exitOf(a), exitOf(b)]), [0, 0]);
  });
});

Deno.test("--name: /name goes right after the handshake and the answer is shown", async () => {
  await withRoom({ name: "op" }, async ({ server, serverLog, sink, open }) => {
    const carol = open({ name: "carol" });
    await carol.log.waitFor(/^\[\*\] you are now carol$/);
    assert.ok(
      carol.log.of("success").includes("The /name command acknowledged (seq 0)"),
      carol.log.dump(),
    );
    assert.deepEqual(sink.texts(), ["/name carol"]);
    assert.equal(sink.messages[0].seq, 0);
    await serverLog.waitFor(/^\[\*\] guest1 \(memory:1\) is now carol$/);
    // A taken name (the operator's, any case): the refusal is shown.
    const other = open({ name: "OP" });
    await other.log.waitFor(
      /^\[\*\] name "OP" is taken; you are guest2 \(choose another with \/name\)$/,
    );
    assert.deepEqual(server.members.map((m) => m.name), ["carol", "guest2"]);
    carol.type("hi");
    await serverLog.waitFor(/^\[\+\] carol \(memory:1\): hi$/);
    carol.end();
    assert.equal(await exitOf(carol), 0, carol.log.dump());
    // The first record the client sent was the /name msg.
    assert.deepEqual(carol.tap.types("toServer").slice(0, 2), ["key", "msg"]);
  });
});

Deno.test("operator line: reaches every client, each acks it; 'Sent to N clients'", async () => {
  await withRoom({}, async ({ server, serverLog, open }) => {
    server.operator("nobody hears this");
    await serverLog.waitFor(/^\[!\] No client in session: the line went nowhere$/);
    const clients = [open(), open(), open()];
    await serverLog.waitFor(/Session with memory:3/);
    assert.equal(server.members.length, 3);
    server.operator("to all of you");
    for (const client of clients) {
      await client.log.waitFor(/^\[\+\] server: to all of you$/);
      await client.tap.until(() => client.tap.count("toServer", "ack") === 1, "ack of the chat");
      assert.equal(client.tap.count("toClient", "chat"), 1, client.tap.dump());
    }
    assert.ok(serverLog.of("info").includes("Sent to 3 clients"), serverLog.dump());
    clients[2].end();
    await exitOf(clients[2]);
    await serverLog.waitFor(/guest3 \(memory:3\) disconnected$/);
    server.operator("//slash for two");
    for (const client of clients.slice(0, 2)) {
      await client.log.waitFor(/^\[\+\] server: \/slash for two$/);
    }
    assert.ok(serverLog.of("info").includes("Sent to 2 clients"), serverLog.dump());
    assert.ok(!clients[2].log.lines.some((l) => /slash for two/.test(l)));
    assert.ok(!serverLog.lines.some((l) => /no acknowledgement/.test(l)), serverLog.dump());
    for (const client of clients) client.end();
    assert.deepEqual(await Promise.all(clients.map((c) => exitOf(c))), [0, 0, 0]);
  });
});

Deno.test("operator line: a client that reads but never acks is dropped, in one log line; the others are not", async () => {
  await withRoom({ writeTimeoutMs: 1000 }, async ({ server, serverLog, open }) => {
    const live = open();
    await serverLog.waitFor(/Session with memory:1/);
    const { raw: peer, session } = await rawClientHandshake(server.connect());
    await serverLog.waitFor(/Session with memory:2 \(guest2\)/);
    const received = drain(peer); // reads everything, acks nothing
    for (let i = 0; i < 50; i++) server.operator(`please ack ${i}`);
    await live.log.waitFor(/^\[\+\] server: please ack 49$/);
    const overdue = await serverLog.waitFor(/no acknowledgement/);
    assert.equal(
      overdue,
      "[!] guest2 (memory:2): no acknowledgement of your line for 1 s (50 records waiting)",
    );
    const lines = await received; // the server closes the connection
    const records = lines.slice(0, -1).map((line) => session.open(line));
    assert.equal(records.filter((r) => r.type === "chat").length, 50);
    // The error frame tells the dropped client why.
    assert.deepEqual(JSON.parse(lines.at(-1)!), {
      type: "error",
      message: "no acknowledgement of your line for 1 s (50 records waiting)",
    });
    // One line for the episode, not one per unacknowledged line.
    assert.equal(serverLog.lines.filter((l) => /acknowledge/.test(l)).length, 1, serverLog.dump());
    assert.equal(live.tap.count("toServer", "ack"), 50, live.tap.dump());
    assert.deepEqual(server.members.map((m) => m.name), ["guest1"]);
    peer.close();
  });
});

Deno.test("/kick NAME: that session ends with an error frame; the client exits 1 saying so; one server line", async () => {
  await withRoom({}, async ({ server, serverLog, sink, open }) => {
    const mallory = open({ name: "mallory" });
    await mallory.log.waitFor(/you are now mallory/);
    const bystander = open();
    await serverLog.waitFor(/Session with memory:2/);
    server.operator("/kick nobody");
    await serverLog.waitFor(
      /^\[!\] Nobody here is called "nobody" or connects from it \(see \/who\)\.?$/,
    );
    server.operator("/kick");
    await serverLog.waitFor(/^\[!\] Usage: \/kick ADDRESS/);
    server.operator("/kick MALLORY");
    await serverLog.waitFor(/^\[\*\] Kicked mallory \(memory:1\)$/);
    await mallory.tap.until(() => mallory.tap.clientEnded, "the kicked client to close");
    mallory.end();
    assert.equal(await exitOf(mallory), 1, mallory.log.dump());
    const last = tryParse(mallory.tap.toClient.at(-1));
    assert.deepEqual(last, { type: "error", message: "You were removed by the server's operator" });
    assert.ok(
      mallory.log.of("error").some((e) => /You were removed by the server's operator/.test(e)),
      mallory.log.dump(),
    );
    // The server said it in one line: nothing more about mallory's end.
    await eventually(() => server.members.length === 1, "mallory gone");
    await sleep(200);
    assert.deepEqual(
      serverLog.lines.filter((l) => /mallory/.test(l) && /^\[[!*]\]/.test(l) && !/is now/.test(l)),
      [
        "[*] Kicked mallory (memory:1)",
      ],
    );
    assert.ok(!mallory.tap.types("toServer").includes("bye"), mallory.tap.dump());
    assert.deepEqual(server.members.map((m) => m.name), ["guest2"]);
    // The other client carries on.
    bystander.type("still here");
    await sink.waitForCount(2);
    bystander.end();
    assert.equal(await exitOf(bystander), 0, bystander.log.dump());
  });
});

// ───────────────────────────────────────────────────────────────────────────
// Keepalive and slow peers
// ───────────────────────────────────────────────────────────────────────────

Deno.test("keepalive: a live idle client answers ping after ping and stays", async () => {
  await withRoom({ keepaliveMs: 300 }, async ({ server, serverLog, sink, open }) => {
    const client = open();
    const pings = 6;
    await client.tap.until(() => client.tap.count("toClient", "ping") >= pings, `${pings} pings`);
    await client.tap.until(
      () => client.tap.count("toServer", "pong") >= pings,
      `${pings} pongs`,
    );
    assert.equal(server.members.length, 1);
    assert.deepEqual(serverLog.of("error"), [], serverLog.dump());
    client.type("still here");
    await sink.waitForCount(1);
    client.end();
    assert.equal(await exitOf(client), 0, client.log.dump());
    // Our client, whose own keepalive is the default 30 s, never pinged.
    assert.equal(client.tap.count("toServer", "ping"), 0);
  });
});

/** A room with a client that handshakes and then never reads, and two live clients. */
async function stuckRoom(
  body: (fixture: Fixture, alice: Client, bob: Client) => Promise<void>,
): Promise<void> {
  await withRoom(
    { room: true, maxQueuedBytes: 8192, writeTimeoutMs: 3000 },
    async (fixture) => {
      const alice = fixture.open({ name: "alice" });
      await alice.log.waitFor(/you are now alice/);
      const bob = fixture.open({ name: "bob" });
      await bob.log.waitFor(/you are now bob/);
      const { raw: peer } = await rawClientHandshake(fixture.server.connect()); // reads nothing more
      try {
        await bob.log.waitFor(/^\[\*\] guest3 joined$/);
        await body(fixture, alice, bob);
      } finally {
        peer.close();
      }
    },
  );
}

const LINES_FOR_THE_STUCK = 30;

Deno.test("a client that never reads is dropped at the queue bound; the others carry on", async () => {
  await stuckRoom(async ({ server, sink }, alice, bob) => {
    for (let i = 0; i < LINES_FOR_THE_STUCK; i++) alice.type(`${i} ${"x".repeat(400)}`);
    await bob.log.waitFor(/^\[\*\] guest3 left$/);
    await alice.log.waitFor(/^\[\*\] guest3 left$/);
    await sink.waitForCount(2 + LINES_FOR_THE_STUCK);
    assert.deepEqual(server.members.map((m) => m.name), ["alice", "bob"]);
    bob.type("after the drop");
    await alice.log.waitFor(/^\[\+\] bob: after the drop$/);
    alice.end();
    bob.end();
    assert.deepEqual(await Promise.all([exitOf(alice), exitOf(bob)]), [0, 0]);
    const relayed = bob.log.of("success").filter((l) => /^alice: \d+ x+$/.test(l));
    assert.equal(relayed.length, LINES_FOR_THE_STUCK, bob.log.dump().slice(-3000));
  });
});

Deno.test("a client that never reads: the server says why it dropped it ([!] line)", async () => {
  await stuckRoom(async ({ serverLog }, alice, bob) => {
    for (let i = 0; i < LINES_FOR_THE_STUCK; i++) alice.type(`${i} ${"x".repeat(400)}`);
    await bob.log.waitFor(/^\[\*\] guest3 left$/);
    const about = serverLog.lines.filter((l) => /guest3 \(memory:3\)/.test(l));
    // Over TCP the server prints "[!] guest3 (…): peer too far behind: …"; the same
    // drop over an in-memory connection must not pass for an ordinary disconnect.
    assert.ok(
      about.some((l) =>
        /^\[!\] guest3 \(memory:3\): (peer too far behind|write timed out)/.test(l)
      ),
      `no [!] line giving the reason; lines about guest3:\n${about.join("\n")}`,
    );
  });
});

// ───────────────────────────────────────────────────────────────────────────
// Revision 1 compatibility
// ───────────────────────────────────────────────────────────────────────────

Deno.test("a revision-1 client (msg and bye only) is served in default mode", async () => {
  await withRoom({}, async ({ server, serverLog, sink, open }) => {
    const { raw: peer, session } = await rawClientHandshake(server.connect());
    await serverLog.waitFor(/Session with memory:1 \(guest1\)/);
    // Its records are sealed independently (node:crypto), and so are the acks it expects.
    const mine = new IndependentRecords(session.keySchedule, "client");
    const theirs = new IndependentRecords(session.keySchedule, "server");
    const texts = ["rev1 one", "rev1 two", "rev1 three"];
    for (const [seq, text] of texts.entries()) await peer.writeLine(mine.seal("msg", seq, text));
    for (const seq of texts.keys()) {
      assert.equal(await peer.readLine(5000), theirs.seal("ack", seq, String(seq)));
    }
    // Another client comes, talks and goes: the rev-1 client hears nothing of it.
    const other = open();
    other.type("from a rev-2 client");
    other.end();
    assert.equal(await exitOf(other), 0, other.log.dump());
    await serverLog.waitFor(/guest2 \(memory:2\) disconnected$/);
    await peer.writeLine(mine.seal("msg", 3, "rev1 four"));
    assert.equal(await peer.readLine(5000), theirs.seal("ack", 3, "3"));
    await peer.writeLine(mine.seal("bye", 4, ""));
    assert.deepEqual(await peer.readToEof(5000), [], "anything after the acks");
    await serverLog.waitFor(/^\[\*\] guest1 \(memory:1\) disconnected$/);
    assert.deepEqual(
      sink.messages.filter((m) => m.peer === "memory:1").map((m) => m.text),
      [...texts, "rev1 four"],
    );
    assert.deepEqual(serverLog.of("error"), [], serverLog.dump());
  });
});

/**
 * A revision-1 server: acks each msg, ends on bye, and treats anything else
 * (a ping, an ack, a pong) as an error, as a revision-1 peer must.
 */
function revisionOneServer() {
  const received: string[] = [];
  const violations: string[] = [];
  const fake = scriptedServer(async (link, session) => {
    for (;;) {
      const line = await link.readLine();
      if (line === null) return;
      const record = session.open(line);
      received.push(record.type);
      if (record.type === "bye") return;
      if (record.type !== "msg") {
        violations.push(record.type);
        await link.fail(`unexpected record type ${record.type}`);
        return;
      }
      link.send(session.seal("ack", String(record.seq)));
    }
  });
  return { ...fake, received, violations };
}

Deno.test("our client against a revision-1 server: never pings it, even with a short keepalive", async () => {
  const fake = revisionOneServer();
  const { input, log, run } = typedClient({ connection: fake.connection, keepaliveMs: 20 });
  try {
    input.type("first");
    await log.waitFor(/Line 1 acknowledged/);
    // Silence for many keepalive intervals: a ping would end the session with an error.
    await sleep(400);
    input.type("second");
    await log.waitFor(/Line 2 acknowledged/);
    input.end();
    assert.equal(await within(run, 10_000, "client exit"), 0, log.dump());
    await within(fake.done, 5000, "fake server");
    assert.deepEqual(fake.violations, []);
    assert.deepEqual(fake.received, ["msg", "msg", "bye"]);
  } finally {
    input.end();
  }
});

// ───────────────────────────────────────────────────────────────────────────
// What the client prints
// ───────────────────────────────────────────────────────────────────────────

Deno.test("client output escapes ESC, BEL, C1 and bidi characters from chat, notices and names", async () => {
  const hostile = {
    from: "ev\u001b[2Jil\u202e",
    text: "bell\u0007 esc\u001b[31mred c1\u009b31m rlo\u202eevil",
  };
  const fake = scriptedServer(async (link, session) => {
    link.send(session.seal("chat", encodeChat(hostile)));
    link.send(
      session.seal("notice", "title\u001b]0;pwned\u0007 csi\u009b2J iso\u2066x\u2069 bidi\u202e"),
    );
    for (;;) {
      const line = await link.readLine();
      if (line === null) return;
      const record = session.open(line);
      if (record.type === "bye") return;
      if (record.type === "msg") link.send(session.seal("ack", String(record.seq)));
    }
  });
  const { log: screen, input, run } = typedClient(
    { connection: fake.connection },
    new PrintedLog(),
  );
  try {
    await screen.waitFor(/^\[\+\] ev/);
    await screen.waitFor(/^\[\*\] title/);
    input.end();
    assert.equal(await within(run, 10_000, "client exit"), 0, screen.texts().join("\n"));
  } finally {
    input.end();
  }
  const lines = screen.texts();
  assert.ok(
    lines.includes(
      "[+] ev\\u{1b}[2Jil\\u{202e}: bell\\u{7} esc\\u{1b}[31mred c1\\u{9b}31m rlo\\u{202e}evil",
    ),
    lines.join("\n"),
  );
  assert.ok(
    lines.includes(
      "[*] title\\u{1b}]0;pwned\\u{7} csi\\u{9b}2J iso\\u{2066}x\\u{2069} bidi\\u{202e}",
    ),
    lines.join("\n"),
  );
  assert.deepEqual(lines.filter((l) => unsafeCharacters(l).length > 0), []);
});

Deno.test("escaping through a real server: operator chat and an unknown-command notice; server side too", async () => {
  const serverScreen = new PrintedLog();
  const server: ServerHandle = startServer({ listen: false, logger: serverScreen });
  const { log: screen, input, run } = typedClient(
    { connection: server.connect() },
    new PrintedLog(),
  );
  try {
    await serverScreen.waitFor(/Session with memory:1/);
    server.operator("op \u001b[41mbg\u0007 \u009b \u202eevil");
    await screen.waitFor(/^\[\+\] server: op/);
    input.type("/x\u001b[2Jy");
    await screen.waitFor(/^\[\*\] unknown command/);
    input.type("client \u001b]0;t\u0007 \u202e");
    await serverScreen.waitFor(/^\[\+\] guest1 \(memory:1\): client/);
    input.end();
    assert.equal(await within(run, 10_000, "client exit"), 0, screen.texts().join("\n"));
  } finally {
    input.end();
    await server.close();
  }
  const lines = screen.texts();
  assert.ok(
    lines.includes("[+] server: op \\u{1b}[41mbg\\u{7} \\u{9b} \\u{202e}evil"),
    lines.join("\n"),
  );
  assert.ok(
    lines.some((l) => l.startsWith("[*] unknown command /x\\u{1b}[2Jy;")),
    lines.join("\n"),
  );
  assert.deepEqual(lines.filter((l) => unsafeCharacters(l).length > 0), []);
  const serverLines = serverScreen.texts();
  assert.ok(
    serverLines.includes("[+] guest1 (memory:1): client \\u{1b}]0;t\\u{7} \\u{202e}"),
    serverLines.join("\n"),
  );
  assert.deepEqual(serverLines.filter((l) => unsafeCharacters(l).length > 0), []);
});

// ───────────────────────────────────────────────────────────────────────────
// Client exit codes and input
// ───────────────────────────────────────────────────────────────────────────

/** One run of the stdin refusal test: what the client reads, and what must come of it. */
interface RefusalRun {
  readonly name: string;
  /** The client's line limit (its default where absent). */
  readonly maxLine?: number;
  /** The server's line limit (its default where absent). */
  readonly serverMaxLine?: number;
  /** The client's input, chunk by chunk. */
  readonly chunks: (string | Uint8Array)[];
  /** What the server receives, in order. */
  readonly sent: string[];
  /** Every `[!]` line the client prints, in order. */
  readonly errors: string[];
  /** [input line, seq] of every line sent: each is acknowledged under that number. */
  readonly acks: [line: number, seq: number][];
  /** Text that must not reach the server. */
  readonly absent?: string;
}

Deno.test("stdin lines too long for a record or not valid UTF-8 are refused one by one; the rest is sent; exit 1", async (t) => {
  const runs: RefusalRun[] = [];
  {
    const maxLine = 2048;
    const maxBytes = maxRecordText(maxLine);
    const limit = `a line may take at most ${maxBytes} bytes`;
    const exact = "e".repeat(maxBytes);
    const over = "o".repeat(maxBytes + 1);
    const multibyte = "é".repeat(Math.floor(maxBytes / 2) + 1); // short in characters, long in bytes
    runs.push({
      name: "over the record size, typed line by line (the client's --max-line only)",
      maxLine,
      chunks: ["before", over, exact, multibyte, "after"].map((line) => line + "\n"),
      sent: ["before", exact, "after"],
      errors: [
        `[!] Input line 2 not sent: line longer than ${maxBytes} bytes; ${limit}`,
        `[!] Input line 4 not sent: line longer than ${maxBytes} bytes; ${limit}`,
        "[!] 2 input lines refused and not sent",
      ],
      acks: [[1, 0], [3, 1], [5, 2]],
      absent: "o".repeat(100),
    });
  }
  {
    const limit = `a line may take at most ${maxRecordText(1_048_576)} bytes`;
    runs.push({
      name: "invalid UTF-8 sequences, in one chunk",
      chunks: [
        new Uint8Array([
          ...encoder.encode("good\n"),
          ...[0x62, 0xff, 0xfe, 0x61, 0x0a],
          ...encoder.encode("\xc3\n"), // U+00C3 in UTF-8: valid
          ...[0xc3, 0x28, 0x0a], // an invalid sequence
          ...encoder.encode("fine\n"),
        ]),
      ],
      sent: ["good", "\u00c3", "fine"],
      errors: [
        `[!] Input line 2 not sent: line is not valid UTF-8; ${limit}`,
        `[!] Input line 4 not sent: line is not valid UTF-8; ${limit}`,
        "[!] 2 input lines refused and not sent",
      ],
      acks: [[1, 0], [3, 1], [5, 2]],
    });
  }
  {
    // The review's item 8: both kinds in one input, client and server at 8192 (the longest
    // line that fits must also fit the server's limit).
    const maxLine = 8192;
    const maxBytes = maxRecordText(maxLine);
    const limit = `a line may take at most ${maxBytes} bytes`;
    const longest = "é".repeat(maxBytes / 2 - 1) + "zz"; // exactly maxBytes bytes of UTF-8
    assert.equal(encoder.encode(longest).length, maxBytes);
    runs.push({
      name: "one line of each kind, and the longest line that fits (item 8 of the review)",
      maxLine,
      serverMaxLine: maxLine,
      chunks: [
        new Uint8Array([
          ...encoder.encode("first\n"),
          ...[0x62, 0x61, 0x64, 0xc3, 0x28, 0x0a], // "bad" + an invalid UTF-8 sequence
          ...encoder.encode("x".repeat(maxBytes + 1) + "\n"),
          ...encoder.encode(longest + "\n"),
          ...encoder.encode("last\n"),
        ]),
      ],
      sent: ["first", longest, "last"],
      errors: [
        `[!] Input line 2 not sent: line is not valid UTF-8; ${limit}`,
        `[!] Input line 3 not sent: line longer than ${maxBytes} bytes; ${limit}`,
        "[!] 2 input lines refused and not sent",
      ],
      acks: [[1, 0], [4, 1], [5, 2]],
    });
  }
  for (const run of runs) {
    await t.step(run.name, async () => {
      await using srv = testServer({ maxLine: run.serverMaxLine });
      const log = new PrintedLog();
      const tap = new WireTap(srv.server.connect());
      const code = await within(
        runClient({
          connection: tap.conn,
          input: ReadableStream.from(
            run.chunks.map((chunk) => typeof chunk === "string" ? encoder.encode(chunk) : chunk),
          ),
          interactive: false,
          logger: log,
          ...(run.maxLine === undefined ? {} : { maxLine: run.maxLine }),
        }),
        10_000,
        () => log.text(),
      );
      assert.equal(code, 1, log.text());
      assert.deepEqual(srv.sink.texts(), run.sent, "the other lines were all sent");
      assert.deepEqual(log.errors, run.errors);
      for (const [line, seq] of run.acks) {
        assert.ok(log.texts().includes(`[+] Line ${line} acknowledged (seq ${seq})`), log.text());
      }
      // The server received nothing of the refused lines.
      assert.equal(tap.count("toServer", "msg"), run.sent.length, tap.dump());
      if (run.absent) assert.ok(!srv.sink.texts().some((text) => text.includes(run.absent!)));
    });
  }
});

Deno.test("piped, `exit` is a line like any other; /quit ends the session, never sent; lines after it: exit 1", async () => {
  await withRoom({}, async ({ serverLog, sink, open }) => {
    const client = open();
    for (const line of ["one", "exit", "two", "/quit", "three"]) client.type(line);
    // The input stays open: /quit alone must end the session.
    assert.equal(await exitOf(client), 1, client.log.dump());
    await serverLog.waitFor(/^\[\*\] guest1 \(memory:1\) disconnected$/);
    assert.deepEqual(sink.texts(), ["one", "exit", "two"]);
    assert.deepEqual(client.tap.types("toServer"), ["key", "msg", "msg", "msg", "bye"]);
    assert.ok(
      client.log.of("error").includes("1 input line after /quit not sent"),
      client.log.dump(),
    );
  });
  // /quit as the last line: nothing lost, exit 0. " exit", "exit " and "EXIT" are lines too.
  await withRoom({}, async ({ sink, open }) => {
    const client = open();
    for (const line of [" exit", "exit ", "EXIT", "/quit"]) client.type(line);
    client.end();
    assert.equal(await exitOf(client), 0, client.log.dump());
    assert.deepEqual(sink.texts(), [" exit", "exit ", "EXIT"]);
  });
});

Deno.test("at a terminal, `exit` alone ends the session; nothing after it is sent; exit 0", async () => {
  await withRoom({}, async ({ serverLog, sink, open }) => {
    const client = open({ interactive: true });
    client.type("one");
    client.type("exit");
    client.type("two");
    assert.equal(await exitOf(client), 0, client.log.dump());
    await serverLog.waitFor(/^\[\*\] guest1 \(memory:1\) disconnected$/);
    assert.deepEqual(sink.texts(), ["one"]);
    assert.deepEqual(client.tap.types("toServer"), ["key", "msg", "bye"]);
  });
});

/**
 * A server that holds back its acks until `release` is called, reading all
 * the while; `events` tells what happened in which order.
 */
function ackHoldingServer(expected: number) {
  const events: string[] = [];
  const { promise: released, resolve: release } = Promise.withResolvers<void>();
  const waiters = new Waiters();
  const fake = scriptedServer(async (link, session) => {
    const seqs: number[] = [];
    const reading = (async () => {
      for (;;) {
        const line = await link.readLine().catch(() => null);
        if (line === null) return;
        const record = session.open(line);
        events.push(`received ${record.type}`);
        if (record.type === "msg") seqs.push(record.seq);
        waiters.notify();
        if (record.type === "bye") return;
      }
    })();
    await waiters.until(() => seqs.length >= expected, 8000, `${expected} msgs`);
    await released;
    events.push("acks sent");
    for (const seq of seqs) link.send(session.seal("ack", String(seq)));
    await within(reading, 8000, "the client's bye");
  });
  const received = (type: string) => events.filter((e) => e === `received ${type}`).length;
  const until = (ready: () => boolean, what: string) =>
    waiters.until(ready, 8000, () => `${what}; events: ${events.join(", ")}`);
  return { ...fake, events, release, received, until };
}

/**
 * An interactive client (a stream as input: no prompt, but the "Waiting"
 * line) whose two lines the server holds unacknowledged, after its first
 * Ctrl-C (signal): it has said that it waits for the acks. `cleanup()` in a
 * finally ends its input and lets the server ack.
 */
async function leavingWithTwoUnacked(timeoutMs: number) {
  const fake = ackHoldingServer(2);
  const leave = new AbortController();
  const force = new AbortController();
  const { input, log, run } = typedClient({
    connection: fake.connection,
    interactive: true,
    timeoutMs,
    signal: leave.signal,
    forceSignal: force.signal,
  });
  const cleanup = () => {
    input.end();
    fake.release();
  };
  try {
    input.type("a");
    input.type("b");
    await fake.until(() => fake.received("msg") === 2, "two msgs");
    leave.abort();
    const seconds = timeoutMs / 1000;
    await log.waitFor(new RegExp(`^\\[\\*\\] Waiting up to ${seconds} s for 2 acknowledgements`));
  } catch (error) {
    cleanup();
    throw error;
  }
  return { fake, log, force, run, cleanup };
}

Deno.test("Ctrl-C (signal): waits for the acks, then bye; exit 0", async () => {
  const { fake, log, run, cleanup } = await leavingWithTwoUnacked(20_000);
  try {
    await sleep(20); // a client that would not wait has said bye by now
    fake.release();
    assert.equal(await within(run, 10_000, "client exit"), 0, log.dump());
    await within(fake.done, 5000, "fake server");
    assert.deepEqual(fake.events, ["received msg", "received msg", "acks sent", "received bye"]);
    assert.ok(log.of("info").includes("Session closed"), log.dump());
  } finally {
    cleanup();
  }
});

Deno.test("second Ctrl-C (forceSignal): leaves at once without the acks; exit 1", async () => {
  const { log, force, run, cleanup } = await leavingWithTwoUnacked(60_000); // must not wait this
  try {
    force.abort();
    assert.equal(await within(run, 10_000, "client exit"), 1, log.dump());
    assert.ok(
      log.of("error").includes("2 messages not acknowledged by the server (seq 0, 1)"),
      log.dump(),
    );
  } finally {
    cleanup();
  }
});

Deno.test("session: a client line of 1000 × € arrives whole, and so does the operator's answer", async () => {
  // 3 UTF-8 bytes per UTF-16 unit: the case a seal buffer sized too small cuts.
  const line = "€".repeat(1000);
  for (const options of [{}, { group: GROUPS.toy, cipher: TOY_CIPHER, privateKey: 3n }]) {
    await withServer(options, async ({ client, server, sink }) => {
      const c = client({ toy: options.cipher === TOY_CIPHER });
      c.type(line);
      await sink.waitForCount(1);
      assert.equal(sink.texts()[0].length, 1000);
      assert.equal(sink.texts()[0], line);
      server.operator("¥" + line);
      const shown = await c.log.waitFor(/^\[\+\] server: ¥/);
      assert.equal(shown, `[+] server: ¥${line}`);
      c.end();
      assert.equal(await within(c.run, 10_000, "the client's end"), 0, c.log.dump());
    });
  }
});
