/**
 * Flow control and bounded memory (issue 17 items 2, 4, 6, 7, 10): the token
 * bucket, the pacer that slows a sender's reading, lazy sealing in order,
 * one text held once for many queues, the server-wide bound, ack windows
 * that make senders wait instead of failing, and the error frame or bye
 * going ahead of a backlog. No timing bound is tight: waits are generous,
 * and rates are checked by counting, never by a clock.
 */

import assert from "node:assert/strict";
import { GROUPS, SECURE_CIPHER, type Session } from "../dh.ts";
import {
  AckTracker,
  Channel,
  type ChannelEnd,
  clientHandshake,
  LineConnection,
  type LineConnectionOptions,
  memoryPipe,
  QueueBudget,
  SenderPacer,
  serverHandshake,
  SHARED_REFERENCE_UNITS,
  SharedText,
  TokenBucket,
} from "../transport.ts";
import { runClient } from "../client.ts";
import { startServer } from "../server.ts";
import { CapturingLogger, eventually, HOST, lacks, sleep, within } from "./support.ts";

const encoder = new TextEncoder();

/** A clock the test moves by hand. */
class FakeClock {
  now = 1000;
  readonly read = () => this.now;
}

/** A server Channel and the client's raw link and session, over a memory pipe. */
async function serverChannel(
  options: ConstructorParameters<typeof Channel>[2] = {},
  linkOptions: LineConnectionOptions = {},
) {
  const [a, b] = memoryPipe();
  const serverLink = new LineConnection(a, linkOptions);
  const clientLink = new LineConnection(b);
  const [serverSession, { session: clientSession }] = await within(
    Promise.all([
      serverHandshake(serverLink, {
        group: GROUPS.ffdhe2048,
        cipher: SECURE_CIPHER,
        timeoutMs: 10_000,
      }),
      clientHandshake(clientLink, { insecure: false, timeoutMs: 10_000 }),
    ]),
    15_000,
    "handshake",
  );
  const channel = new Channel(serverLink, serverSession!, options);
  const received: string[] = [];
  const ended: Promise<ChannelEnd> = channel.run((event) => {
    if (event.type === "msg") received.push(event.text);
  });
  return { channel, clientLink, clientSession, received, ended };
}

/** Opens frames as the client: the record's type, seq and text; error frames as such. */
function open(session: Session, line: string): { type: string; seq?: number; text: string } {
  const frame = JSON.parse(line);
  if (frame.type === "error") return { type: "error", text: frame.message };
  const record = session.open(line);
  return { type: record.type, seq: record.seq, text: record.text };
}

// ───────────────────────────────────────────────────────────────────────────
// TokenBucket, SenderPacer, QueueBudget, SharedText
// ───────────────────────────────────────────────────────────────────────────

Deno.test("TokenBucket: a burst at once, then the rate; a debt is paid back by time", () => {
  const clock = new FakeClock();
  const bucket = new TokenBucket(100, 50, clock.read);
  assert.equal(bucket.level, 50, "starts full");
  bucket.take(50);
  assert.equal(bucket.wait(), 0, "the burst passes");
  bucket.take(10);
  assert.equal(bucket.level, -10);
  assert.equal(bucket.wait(), 100, "10 tokens at 100/s: 100 ms");
  clock.now += 100;
  assert.equal(bucket.wait(), 0);
  clock.now += 60_000;
  assert.equal(bucket.level, 50, "never more than the burst");
});

Deno.test("SenderPacer: every line counts, bytes count, and a full budget holds reading", () => {
  const clock = new FakeClock();
  const budget = new QueueBudget(1000);
  const pacer = new SenderPacer(
    { linesPerSecond: 10, lineBurst: 3, bytesPerSecond: 1000, byteBurst: 1000 },
    budget,
    clock.read,
  );
  for (let i = 0; i < 3; i++) pacer.charge(10);
  assert.equal(pacer.wait(), 0, "three lines: the burst");
  pacer.charge(10); // a ping counts as much as a chat line
  assert.equal(pacer.wait(), 100, "one line over at 10 lines/s");
  clock.now += 100;
  assert.equal(pacer.wait(), 0);
  pacer.charge(2000); // one long line: 1,000 bytes over at 1,000 bytes/s
  assert.equal(pacer.wait(), 1000);
  clock.now += 1000;
  assert.equal(pacer.wait(), 0);
  budget.add(1000);
  assert.equal(budget.full, true);
  assert.ok(pacer.wait() > 0, "the server's queues are full: reading waits");
  budget.remove(1);
  assert.equal(pacer.wait(), 0);
});

Deno.test("SharedText: held once whatever the number of queues, released by the last", () => {
  const budget = new QueueBudget(1 << 20);
  const text = new SharedText("x".repeat(1000), budget);
  for (let i = 0; i < 97; i++) text.hold();
  assert.equal(budget.used, 1000 + 97 * SHARED_REFERENCE_UNITS);
  for (let i = 0; i < 96; i++) text.release();
  assert.equal(budget.used, 1000 + SHARED_REFERENCE_UNITS);
  text.release();
  assert.equal(budget.used, 0);
  text.release(); // one release too many changes nothing
  assert.equal(budget.used, 0);
  assert.equal(budget.peak, 1000 + 97 * SHARED_REFERENCE_UNITS);
});

// ───────────────────────────────────────────────────────────────────────────
// Lazy sealing, windows, bounds
// ───────────────────────────────────────────────────────────────────────────

Deno.test("lazy sealing: records sealed when written keep one seq order with acks and pongs", async () => {
  const budget = new QueueBudget(1 << 20);
  const s = await serverChannel({ maxUnacked: 2 });
  try {
    const texts = Array.from({ length: 6 }, (_, i) => new SharedText(`line ${i}`, budget));
    for (const text of texts) s.channel.sendShared(text, "a line");
    s.channel.send("notice", "after the lines");
    assert.equal(s.channel.acks.pending, 0, "nothing sealed in the caller's turn");
    // The client sends a msg and a ping: their ack and pong are sealed at once,
    // ahead of records still waiting for the window.
    const client = s.clientSession;
    s.clientLink.send(client.seal("msg", "hello"));
    s.clientLink.send(client.seal("ping", "00000001"));
    const frames = [];
    let acked = 0;
    while (frames.length < 9) {
      const line = await within(s.clientLink.readLine(), 5000, "a frame");
      const frame = open(client, line!);
      frames.push(frame);
      if (frame.type === "chat") s.clientLink.send(client.seal("ack", String(frame.seq)));
      if (frame.type === "chat") acked++;
    }
    assert.deepEqual(frames.map((f) => f.seq), [0, 1, 2, 3, 4, 5, 6, 7, 8], "one order");
    const chats = frames.filter((f) => f.type === "chat").map((f) => f.text);
    assert.deepEqual(chats, texts.map((t) => t.text));
    assert.deepEqual(frames.filter((f) => f.type !== "chat").map((f) => f.type).sort(), [
      "ack",
      "notice",
      "pong",
    ]);
    assert.equal(frames.at(-1)?.type, "notice", "the notice stays behind the lines");
    assert.equal(acked, 6);
    await eventually(() => budget.used === 0, "every text released once written");
  } finally {
    s.clientLink.close();
    await within(s.ended, 5000, "end");
  }
});

Deno.test("one text queued for two channels is held once until both have written it", async () => {
  const budget = new QueueBudget(1 << 20);
  const [x, y] = [await serverChannel({ maxUnacked: 1 }), await serverChannel({ maxUnacked: 1 })];
  try {
    const first = new SharedText("first", budget);
    const second = new SharedText("y".repeat(500), budget);
    for (const s of [x, y]) {
      s.channel.sendShared(first);
      s.channel.sendShared(second); // waits: the window of 1 is taken by `first`
    }
    await eventually(() => first.holders === 0, "first written to both");
    assert.equal(second.holders, 2);
    assert.equal(budget.used, 500 + 2 * SHARED_REFERENCE_UNITS, "the long text counted once");
    // x acks: x writes `second`; y does not: `second` is still held, once.
    const line = await x.clientLink.readLine();
    x.clientLink.send(x.clientSession.seal("ack", String(open(x.clientSession, line!).seq)));
    await eventually(() => second.holders === 1, "second written to x");
    assert.equal(budget.used, 500 + SHARED_REFERENCE_UNITS);
  } finally {
    for (const s of [x, y]) {
      s.clientLink.close();
      await within(s.ended, 5000, "end");
    }
  }
  assert.equal(budget.used, 0, "a closed connection releases what it held");
});

Deno.test("bye goes ahead of a backlog of unsealed records (SIGTERM)", async () => {
  const budget = new QueueBudget(1 << 20);
  const s = await serverChannel({ maxUnacked: 1 });
  for (let i = 0; i < 100; i++) s.channel.sendShared(new SharedText(`line ${i}`, budget));
  const frames = [open(s.clientSession, (await within(s.clientLink.readLine(), 5000, "line 0"))!)];
  const leaving = s.channel.bye(5000);
  for (;;) {
    const line = await within(s.clientLink.readLine(), 5000, "a frame");
    if (line === null) break;
    frames.push(open(s.clientSession, line));
  }
  assert.deepEqual(frames.map((f) => [f.type, f.seq]), [["chat", 0], ["bye", 1]]);
  await within(leaving, 5000, "bye()");
  assert.equal(budget.used, 0, "the backlog was dropped and released");
  await within(s.ended, 5000, "end");
  s.clientLink.close();
});

Deno.test("a queue over its bound: the error frame goes ahead of the backlog", async () => {
  const budget = new QueueBudget(1 << 20);
  const s = await serverChannel({ maxUnacked: 1 }, { maxQueuedLines: 10 });
  s.channel.sendShared(new SharedText("line 0", budget));
  const frames = [open(s.clientSession, (await within(s.clientLink.readLine(), 5000, "line 0"))!)];
  for (let i = 1; i < 12; i++) s.channel.sendShared(new SharedText(`line ${i}`, budget));
  for (;;) {
    const line = await within(s.clientLink.readLine().catch(() => null), 5000, "a frame");
    if (line === null) break;
    frames.push(open(s.clientSession, line));
  }
  assert.deepEqual(frames.map((f) => f.type), ["chat", "error"]);
  assert.match(frames[1].text, /^peer too far behind: 11 lines/);
  assert.equal(budget.used, 0);
  const end = await within(s.ended, 5000, "end");
  assert.equal(end.reason, "error");
  s.clientLink.close();
});

Deno.test("a sender over its rate is read more slowly, not dropped", async () => {
  const pacer = new SenderPacer({
    linesPerSecond: 20,
    lineBurst: 5,
    bytesPerSecond: 1 << 20,
    byteBurst: 1 << 20,
  });
  const s = await serverChannel({ pacer });
  try {
    void (async () => {
      while (await s.clientLink.readLine() !== null); // takes the acks
    })().catch(() => {});
    for (let i = 0; i < 25; i++) s.clientLink.send(s.clientSession.seal("msg", `m${i}`));
    await sleep(100);
    // 5 at once, then 20 a second: in 100 ms (or more, on a loaded machine) far from 25.
    assert.ok(s.received.length < 25, `${s.received.length} lines read at once`);
    await eventually(() => s.received.length === 25, "every line, in time", 20_000);
    assert.deepEqual(s.received, Array.from({ length: 25 }, (_, i) => `m${i}`));
    assert.equal(s.channel.stopped, false, "never dropped for sending fast");
  } finally {
    s.clientLink.close();
    await within(s.ended, 5000, "end");
  }
});

Deno.test("a full server-wide budget holds reading until queues drain", async () => {
  const budget = new QueueBudget(1000);
  const pacer = new SenderPacer({
    linesPerSecond: 1e6,
    lineBurst: 1e6,
    bytesPerSecond: 1 << 30,
    byteBurst: 1 << 30,
  }, budget);
  const s = await serverChannel({ pacer });
  try {
    budget.add(1000);
    s.clientLink.send(s.clientSession.seal("msg", "held"));
    await sleep(200);
    assert.deepEqual(s.received, [], "not read while the budget is full");
    budget.remove(500);
    await eventually(() => s.received.length === 1, "read once there is room");
  } finally {
    s.clientLink.close();
    await within(s.ended, 5000, "end");
  }
});

// ───────────────────────────────────────────────────────────────────────────
// The scripts: flow control end to end, the error frame before a close
// ───────────────────────────────────────────────────────────────────────────

Deno.test("client: 10,000 piped lines (past its ack window) are all sent and acknowledged", async () => {
  let received = 0;
  const server = startServer({
    listen: false,
    linesPerSecond: 50_000, // the client's flow control is under test, not the server's rate
    logger: new CapturingLogger(true),
    onMessage: () => received++,
  });
  try {
    const lines = Array.from({ length: 10_000 }, (_, i) => `${i + 1}\n`).join("");
    const log = new CapturingLogger(true);
    const code = await within(
      runClient({
        connection: server.connect(),
        input: ReadableStream.from([encoder.encode(lines)]),
        interactive: false,
        logger: log,
      }),
      120_000,
      "the client",
    );
    assert.equal(code, 0, log.lines.join("\n"));
    assert.equal(received, 10_000);
    assert.deepEqual(log.lines.filter((l) => l.startsWith("[!]")), []);
  } finally {
    await server.close();
  }
});

Deno.test("operator: a 10,000-line paste reaches every live client, read no faster than they take it", async () => {
  const server = startServer({ listen: false, room: true, logger: new CapturingLogger(true) });
  const clients = [];
  try {
    for (let i = 0; i < 2; i++) {
      const link = new LineConnection(server.connect());
      const { session } = await within(
        clientHandshake(link, { insecure: false, timeoutMs: 10_000 }),
        15_000,
        "handshake",
      );
      const channel = new Channel(link, session);
      const chats: string[] = [];
      const ended = channel.run((event) => {
        if (event.type === "chat") chats.push(event.line.text);
      });
      clients.push({ channel, chats, ended });
    }
    await eventually(() => server.members.length === 2, "both in the room");
    let waits = 0;
    for (let i = 0; i < 10_000; i++) {
      server.operator(`paste ${i}`);
      const writable = server.whenWritable();
      waits++;
      await writable;
    }
    for (const client of clients) {
      await eventually(() => client.chats.length === 10_000, "the whole paste", 60_000);
      assert.equal(client.chats[9_999], "paste 9999");
      assert.equal(client.channel.stopped, false);
    }
    assert.equal(waits, 10_000);
    assert.equal(server.members.length, 2, "nobody dropped");
  } finally {
    for (const client of clients) void client.channel.bye();
    await server.close();
  }
});

Deno.test({
  name: 'a dropped client reads the error frame, not "connection lost while writing"',
  ignore: lacks("net"),
  async fn() {
    const listener = Deno.listen({ hostname: HOST, port: 0 });
    const accepted = listener.accept();
    const conn = await Deno.connect({ hostname: HOST, port: (listener.addr as Deno.NetAddr).port });
    const serverSide = new LineConnection(await accepted);
    const client = new LineConnection(conn, { writeTimeoutMs: 10_000 });
    listener.close();
    // The client floods; the server never reads, and drops it.
    const chunk = "x".repeat(60_000);
    for (let i = 0; i < 100; i++) client.send(chunk);
    await sleep(50);
    await serverSide.fail("too far behind");
    const line = await within(client.readLine(), 5000, "the error frame");
    assert.deepEqual(JSON.parse(line!), { type: "error", message: "too far behind" });
    client.close();
  },
});

Deno.test("AckTracker: a handler that puts a report off is asked again, then reports once", async () => {
  let asked = 0;
  let reported = 0;
  let putOff = true;
  const acks = new AckTracker(50, () => {
    asked++;
    if (putOff) return false;
    reported++;
  });
  acks.track(0);
  await eventually(() => asked >= 2, "asked again after putting off");
  assert.equal(reported, 0);
  putOff = false;
  await eventually(() => reported === 1, "reported once allowed");
  await sleep(300);
  assert.equal(reported, 1, "once per episode");
  acks.stop();
});

Deno.test("AckTracker: a peer that acks slowly but steadily is behind, not overdue", async () => {
  let reports = 0;
  const acks = new AckTracker(150, () => void reports++);
  for (let seq = 0; seq < 12; seq++) acks.track(seq);
  for (let seq = 0; seq < 12; seq++) {
    await sleep(50); // each record waits up to 600 ms, far past 150 ms; acks keep coming
    acks.acknowledge(String(seq));
  }
  assert.equal(reports, 0);
  acks.track(12);
  await eventually(() => reports === 1, "silence is reported");
  acks.stop();
});

Deno.test({
  name: "client: a paste the server reads at its rate, past --timeout, leaves with exit 0",
  ignore: lacks("net"),
  async fn() {
    let received = 0;
    const server = startServer({
      host: HOST,
      port: 0,
      linesPerSecond: 300, // 600 at once, then 300 a second: 1,500 lines take about 3 s
      logger: new CapturingLogger(true),
      onMessage: () => received++,
    });
    try {
      const lines = Array.from({ length: 1500 }, (_, i) => `${i + 1}\n`).join("");
      const log = new CapturingLogger(true);
      const code = await within(
        runClient({
          host: HOST,
          port: server.addr!.port,
          input: ReadableStream.from([encoder.encode(lines)]),
          interactive: false,
          logger: log,
          timeoutMs: 1000, // far below the time the paste takes
        }),
        120_000,
        "the client",
      );
      assert.equal(code, 0, log.lines.join("\n"));
      assert.equal(received, 1500);
      assert.deepEqual(log.lines.filter((l) => l.startsWith("[!]")), [], "nothing reported late");
    } finally {
      await server.close();
    }
  },
});

Deno.test("room: with --max-line 4 MiB, a relayed record still fits a default client's 1 MiB line", async () => {
  const server = startServer({
    listen: false,
    room: true,
    maxLine: 4 * 1024 * 1024,
    maxMessage: 512 * 1024,
    linesPerSecond: 1e6,
    bytesPerSecond: 1 << 30,
    logger: new CapturingLogger(true),
  });
  const members = [];
  try {
    for (let i = 0; i < 2; i++) {
      const link = new LineConnection(server.connect(), { maxLine: 4 * 1024 * 1024 });
      const { session } = await within(
        clientHandshake(link, { insecure: false, timeoutMs: 10_000 }),
        15_000,
        "handshake",
      );
      const channel = new Channel(link, session);
      const chats: string[] = [];
      const notices: string[] = [];
      const ended = channel.run((event) => {
        if (event.type === "chat") chats.push(event.line.text);
        if (event.type === "notice") notices.push(event.text);
      });
      members.push({ channel, chats, notices, ended });
    }
    await eventually(() => server.members.length === 2, "both in the room");
    const [sender, receiver] = members;
    // 200,000 bytes of text, under --max-message, but six times longer as JSON
    // (\u0001): its record would not fit a default client's line.
    sender.channel.send("msg", "\x01".repeat(200_000));
    await eventually(
      () => sender.notices.some((n) => n.startsWith("not relayed:")),
      "the sender told",
    );
    assert.match(sender.notices.at(-1)!, /as a chat record; at most \d+ fit$/);
    sender.channel.send("msg", "after");
    await eventually(() => receiver.chats.includes("after"), "the next line relayed");
    assert.deepEqual(receiver.chats, ["after"], "the long one was not");
  } finally {
    for (const member of members) void member.channel.bye();
    await server.close();
  }
});

Deno.test("server close (SIGTERM): a member with a backlog gets bye ahead of it", async () => {
  const server = startServer({
    listen: false,
    room: true,
    maxQueuedRecords: 100, // the ack window and the queue's bound
    logger: new CapturingLogger(true),
  });
  const link = new LineConnection(server.connect());
  const { session } = await within(
    clientHandshake(link, { insecure: false, timeoutMs: 10_000 }),
    15_000,
    "handshake",
  );
  const types: string[] = [];
  const reading = (async () => {
    for (;;) {
      const line = await link.readLine().catch(() => null);
      if (line === null) return;
      types.push(open(session, line).type); // read, never acked
    }
  })();
  await eventually(() => server.members.length === 1, "in the room");
  for (let i = 0; i < 100; i++) server.operator(`line ${i}`);
  await eventually(() => types.filter((t) => t === "chat").length === 100, "the window's worth");
  for (let i = 100; i < 150; i++) server.operator(`line ${i}`); // these wait unsealed
  const closing = server.close();
  await within(reading, 5000, "the end of the connection");
  await within(closing, 10_000, "the server's close");
  assert.equal(types.filter((t) => t === "chat").length, 100, types.join(" "));
  assert.equal(types.at(-1), "bye", "then bye, ahead of the 50 waiting");
  link.close();
});
