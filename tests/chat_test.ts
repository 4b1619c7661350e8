/**
 * Unit tests of chat.ts: command parsing, name rules, and the Room with fake
 * member links that record everything they are sent. No I/O, no permissions.
 */

import assert from "node:assert/strict";
import {
  checkName,
  CLIENT_COMMANDS,
  type Member,
  type MemberLink,
  NAME_RULE,
  parseCommand,
  Room,
  type RoomOptions,
} from "../chat.ts";
import { type ChatLine, parseChat } from "../dh.ts";
import { QueueBudget, SharedText } from "../transport.ts";

const encoder = new TextEncoder();

/** A member link that records what it was sent. */
class FakeLink implements MemberLink {
  readonly chats: { line: ChatLine; note: string }[] = [];
  readonly notices: string[] = [];
  readonly disconnects: string[] = [];

  constructor(readonly address: string) {}

  readonly shared: SharedText[] = [];

  chat(payload: SharedText, note: string): void {
    this.shared.push(payload);
    this.chats.push({ line: parseChat(payload.text), note });
  }

  notice(text: string): void {
    this.notices.push(text);
  }

  disconnect(reason: string): void {
    this.disconnects.push(reason);
  }

  /** Everything sent so far. */
  get total(): number {
    return this.chats.length + this.notices.length + this.disconnects.length;
  }
}

/** A room and a way to let fake clients in. */
function setUp(options: Partial<RoomOptions> = {}) {
  const room = new Room({ operatorName: "server", relay: false, maxChatBytes: 4096, ...options });
  const links = new Map<Member, FakeLink>();
  let port = 50_000;
  return {
    room,
    join(): { member: Member; link: FakeLink } {
      const link = new FakeLink(`127.0.0.1:${port++}`);
      const member = room.join(link);
      links.set(member, link);
      return { member, link };
    },
    linkOf: (member: Member) => links.get(member)!,
  };
}

/** The bytes of a chat record's plaintext, computed here from the protocol text. */
function chatBytes(from: string, text: string): number {
  return encoder.encode(JSON.stringify({ from, text })).length;
}

// ───────────────────────────────────────────────────────────────────────────
// parseCommand
// ───────────────────────────────────────────────────────────────────────────

Deno.test("parseCommand: chat lines and the // escape", () => {
  // Lines that are not commands are chat as typed; a leading `//` stands for `/`.
  for (const line of ["hello", "", " /who", "hello /who"]) {
    assert.deepEqual(parseCommand(line), { kind: "chat", text: line }, line);
  }
  for (const line of ["//shrug", "//", "///x"]) {
    assert.deepEqual(parseCommand(line), { kind: "chat", text: line.slice(1) }, line);
  }
  assert.deepEqual(parseCommand("//who", true), { kind: "chat", text: "/who" });
});

Deno.test("parseCommand: /name with and without an argument", () => {
  // deno-fmt-ignore -- a table: [line, the name it asks for]
  const names: [line: string, name: string][] = [
    ["/name alice", "alice"], ["/name   bob  ", "bob"], ["/name\tcarol", "carol"],
    ["/name", ""], ["/name ", ""], ["/name two words", "two words"],
  ];
  for (const [line, name] of names) {
    assert.deepEqual(parseCommand(line), { kind: "name", name }, line);
  }
  assert.deepEqual(parseCommand("/name x", true), { kind: "unknown", word: "name" });
});

Deno.test("parseCommand: /who with arguments, and unknown words", () => {
  for (const line of ["/who", "/who is here"]) {
    assert.deepEqual(parseCommand(line), { kind: "who" }, line);
  }
  assert.deepEqual(parseCommand("/who", true), { kind: "who" });
  // deno-fmt-ignore -- a table: [line, its unknown word]
  const unknown: [line: string, word: string][] = [
    ["/WHO", "WHO"], ["/whoami", "whoami"], ["/names", "names"], ["/quit now", "quit"],
    ["/", ""], ["/ who", ""],
  ];
  for (const [line, word] of unknown) {
    assert.deepEqual(parseCommand(line), { kind: "unknown", word }, line);
  }
});

Deno.test("parseCommand: /kick is the operator's, unknown to clients", () => {
  for (const [line, name] of [["/kick bob", "bob"], ["/kick  bob ", "bob"], ["/kick", ""]]) {
    assert.deepEqual(parseCommand(line, true), { kind: "kick", name }, line);
  }
  assert.deepEqual(parseCommand("/kick bob"), { kind: "unknown", word: "kick" });
  assert.deepEqual(parseCommand("/kick bob", false), { kind: "unknown", word: "kick" });
});

// ───────────────────────────────────────────────────────────────────────────
// checkName
// ───────────────────────────────────────────────────────────────────────────

Deno.test("checkName: 1 to 24 characters from the allowed set", () => {
  for (const name of ["a", "Z", "0", "alice", "Bob_2", "x.y-z", "_", "-", ".", "a".repeat(24)]) {
    assert.equal(checkName(name), undefined, name);
  }
  assert.equal(checkName(""), "a name is needed: /name NAME");
  const rule = `a name is ${NAME_RULE}`;
  for (
    const name of ["a".repeat(25), "two words", "é", "名前", "a/b", "a:b", "tab\t", "🙂", "a\u202e"]
  ) {
    assert.equal(checkName(name), rule, JSON.stringify(name));
  }
  assert.match(NAME_RULE, /1 to 24/);
});

// ───────────────────────────────────────────────────────────────────────────
// Room: names
// ───────────────────────────────────────────────────────────────────────────

Deno.test("Room: guests are numbered, skipping names that are taken", () => {
  const { room, join } = setUp({ operatorName: "guest2" });
  const a = join();
  assert.equal(a.member.name, "guest1");
  const b = join();
  assert.equal(b.member.name, "guest3", "guest2 is the operator's name");
  room.receive(b.member, "/name GUEST4");
  const c = join();
  assert.equal(c.member.name, "guest5", "guest4 is taken, in any case");
  room.leave(a.member);
  const d = join();
  assert.equal(d.member.name, "guest6", "numbers are not reused");
  assert.deepEqual(room.members.map((m) => m.name), ["GUEST4", "guest5", "guest6"]);
  assert.equal(a.member.address, "127.0.0.1:50000");
});

Deno.test("Room: /name success says exactly 'you are now NAME'", () => {
  const { room, join } = setUp();
  const { member, link } = join();
  const event = room.receive(member, "/name alice");
  assert.deepEqual(event, { kind: "renamed", from: "guest1", to: "alice" });
  assert.deepEqual(link.notices, ["you are now alice"]);
  assert.equal(link.total, 1, "one notice, nothing else");
  assert.equal(member.name, "alice");
  assert.equal(room.find("ALICE"), member);
  assert.equal(room.find("guest1"), undefined);
});

Deno.test("Room: names clash without regard to case, the operator's too", () => {
  const { room, join } = setUp({ operatorName: "Server" });
  const alice = join();
  const bob = join();
  room.receive(alice.member, "/name alice");
  for (const wanted of ["alice", "ALICE", "Alice", "server", "SERVER"]) {
    const event = room.receive(bob.member, `/name ${wanted}`);
    assert.deepEqual(event, { kind: "refused", reason: `"${wanted}" is already taken` });
    assert.equal(bob.link.notices.at(-1), `name not changed: "${wanted}" is already taken`);
  }
  assert.equal(bob.link.notices.length, 5);
  assert.equal(bob.member.name, "guest2");
  // Changing one's own name's case is no clash.
  assert.deepEqual(room.receive(alice.member, "/name ALICE"), {
    kind: "renamed",
    from: "alice",
    to: "ALICE",
  });
  assert.equal(alice.link.notices.at(-1), "you are now ALICE");
});

Deno.test("Room: invalid names are refused with a reason", () => {
  const { room, join } = setUp({ relay: true });
  const { member, link } = join();
  const other = join();
  assert.deepEqual(link.notices.splice(0), ["guest2 joined"]);
  const cases: [string, string][] = [
    ["/name", "a name is needed: /name NAME"],
    ["/name    ", "a name is needed: /name NAME"],
    ["/name two words", `a name is ${NAME_RULE}`],
    [`/name ${"n".repeat(25)}`, `a name is ${NAME_RULE}`],
    ["/name \u202eevil", `a name is ${NAME_RULE}`],
  ];
  for (const [line, reason] of cases) {
    assert.deepEqual(room.receive(member, line), { kind: "refused", reason });
    assert.equal(link.notices.at(-1), `name not changed: ${reason}`);
  }
  assert.equal(link.notices.length, cases.length);
  assert.equal(member.name, "guest1");
  assert.equal(other.link.total, 0, "nobody else hears of a refused name");
});

Deno.test("Room: rename notices go to the others only in room mode", () => {
  for (const relay of [true, false]) {
    const { room, join } = setUp({ relay });
    const a = join();
    const b = join();
    const c = join();
    const before = [b.link.notices.length, c.link.notices.length];
    room.receive(a.member, "/name alice");
    assert.deepEqual(a.link.notices.at(-1), "you are now alice");
    const told = relay ? ["guest1 is now alice"] : [];
    assert.deepEqual(b.link.notices.slice(before[0]), told, `relay ${relay}`);
    assert.deepEqual(c.link.notices.slice(before[1]), told, `relay ${relay}`);
    assert.equal(a.link.notices.filter((n) => n.includes(" is now ")).length, 0);
    // The same name again: confirmed, but nobody else is told.
    room.receive(a.member, "/name alice");
    assert.deepEqual(a.link.notices.at(-1), "you are now alice");
    assert.deepEqual(b.link.notices.slice(before[0]), told);
  }
});

// ───────────────────────────────────────────────────────────────────────────
// Room: comings and goings, relaying, commands
// ───────────────────────────────────────────────────────────────────────────

Deno.test("Room: join and leave notices in room mode, to the others only", () => {
  const { room, join } = setUp({ relay: true });
  const a = join();
  assert.equal(a.link.total, 0, "the first member hears nothing of itself");
  const b = join();
  assert.deepEqual(a.link.notices, ["guest2 joined"]);
  assert.equal(b.link.total, 0);
  const c = join();
  assert.deepEqual(a.link.notices, ["guest2 joined", "guest3 joined"]);
  assert.deepEqual(b.link.notices, ["guest3 joined"]);
  assert.equal(c.link.total, 0);
  room.receive(b.member, "/name bob");
  room.leave(b.member);
  assert.deepEqual(a.link.notices.at(-1), "bob left");
  assert.deepEqual(c.link.notices.at(-1), "bob left");
  assert.equal(b.link.notices.filter((n) => n.endsWith(" left")).length, 0);
  const counts = [a.link.notices.length, c.link.notices.length];
  room.leave(b.member);
  assert.deepEqual([a.link.notices.length, c.link.notices.length], counts, "leaving twice");
  assert.deepEqual(room.members.map((m) => m.name), ["guest1", "guest3"]);
});

Deno.test("Room: no join or leave notices in the default mode", () => {
  const { room, join } = setUp({ relay: false });
  const a = join();
  const b = join();
  room.leave(b.member);
  join();
  assert.equal(a.link.total, 0);
  assert.equal(b.link.total, 0);
  assert.equal(room.members.length, 2);
});

Deno.test("Room: room mode relays a chat line to every other member", () => {
  const { room, join } = setUp({ relay: true });
  const a = join();
  const b = join();
  const c = join();
  room.receive(a.member, "/name alice");
  const event = room.receive(a.member, "hi all 👋");
  assert.deepEqual(event, { kind: "chat", text: "hi all 👋", relayedTo: 2 });
  for (const other of [b, c]) {
    assert.deepEqual(other.link.chats, [{
      line: { from: "alice", text: "hi all 👋" },
      note: "a line from alice",
    }]);
  }
  assert.equal(a.link.chats.length, 0, "not back to the sender");
  assert.deepEqual(room.receive(b.member, "//slash"), {
    kind: "chat",
    text: "/slash",
    relayedTo: 2,
  });
  assert.deepEqual(a.link.chats.map((c) => c.line), [{ from: "guest2", text: "/slash" }]);
  assert.deepEqual(c.link.chats.map((c) => c.line.text), ["hi all 👋", "/slash"]);
});

Deno.test("Room: the default mode relays nothing", () => {
  const { room, join } = setUp({ relay: false });
  const a = join();
  const b = join();
  assert.deepEqual(room.receive(a.member, "hello"), { kind: "chat", text: "hello", relayedTo: 0 });
  assert.deepEqual(room.receive(a.member, "x".repeat(10_000)).kind, "chat");
  assert.equal(a.link.total, 0);
  assert.equal(b.link.total, 0);
});

Deno.test("Room: /who lists the operator first", () => {
  const { room, join } = setUp({ operatorName: "op" });
  const a = join();
  const b = join();
  room.receive(b.member, "/name bob");
  const event = room.receive(a.member, "/who");
  assert.deepEqual(event, { kind: "who", names: ["op", "guest1", "bob"] });
  assert.deepEqual(a.link.notices, ["present: op, guest1, bob"]);
  assert.equal(b.link.notices.length, 1, "only the asker is answered");
  room.receive(a.member, "/who else");
  assert.equal(a.link.notices.at(-1), "present: op, guest1, bob");
});

Deno.test("Room: an unknown command is answered with the list of commands", () => {
  const { room, join } = setUp({ relay: true });
  const a = join();
  const b = join();
  const before = b.link.total;
  for (const [line, word] of [["/foo bar", "foo"], ["/kick guest2", "kick"], ["/", ""]]) {
    assert.deepEqual(room.receive(a.member, line), { kind: "unknown", word });
    assert.equal(a.link.notices.at(-1), `unknown command /${word}; commands: ${CLIENT_COMMANDS}`);
  }
  assert.match(CLIENT_COMMANDS, /\/name NAME/);
  assert.match(CLIENT_COMMANDS, /\/who/);
  assert.match(CLIENT_COMMANDS, /\/\//);
  assert.equal(b.link.total, before, "nothing relayed, nobody kicked");
  assert.equal(b.link.disconnects.length, 0);
});

Deno.test("Room: operator lines go to every member, in both modes", () => {
  for (const relay of [false, true]) {
    const { room, join } = setUp({ relay, operatorName: "op" });
    const members = [join(), join(), join()];
    assert.deepEqual(room.operator("hello everyone"), { kind: "chat", sentTo: 3 });
    assert.deepEqual(room.operator("//not a command"), { kind: "chat", sentTo: 3 });
    for (const { link } of members) {
      assert.deepEqual(link.chats, [
        { line: { from: "op", text: "hello everyone" }, note: "your line" },
        { line: { from: "op", text: "/not a command" }, note: "your line" },
      ]);
    }
    assert.deepEqual(new Room({ operatorName: "op", relay, maxChatBytes: 100 }).operator("hi"), {
      kind: "chat",
      sentTo: 0,
    });
  }
});

Deno.test("Room: operator /who, unknown words and /name", () => {
  const { room, join } = setUp();
  const a = join();
  const b = join();
  const event = room.operator("/who");
  assert.equal(event.kind, "who");
  assert.deepEqual(
    (event as { members: readonly Member[] }).members.map((m) => [m.name, m.address]),
    [["guest1", a.member.address], ["guest2", b.member.address]],
  );
  assert.deepEqual(room.operator("/name boss"), { kind: "unknown", word: "name" });
  assert.deepEqual(room.operator("/foo"), { kind: "unknown", word: "foo" });
  assert.equal(a.link.total + b.link.total, 0, "operator commands send nothing to clients");
});

Deno.test("Room: /kick disconnects the member named, in any case", () => {
  const { room, join } = setUp({ relay: true });
  const a = join();
  const b = join();
  room.receive(b.member, "/name Bob");
  const event = room.operator("/kick BOB");
  assert.deepEqual(event, { kind: "kicked", member: b.member });
  assert.deepEqual(b.link.disconnects, ["kicked by the server's operator"]);
  assert.equal(a.link.disconnects.length, 0);
  assert.deepEqual(room.operator("/kick nobody"), {
    kind: "refused",
    reason: 'nobody called "nobody" is here',
  });
  assert.deepEqual(room.operator("/kick"), { kind: "refused", reason: 'nobody called "" is here' });
  assert.equal(a.link.disconnects.length + b.link.disconnects.length, 1);
});

Deno.test("Room: a relayed line too long for a chat record is refused with a notice", () => {
  const maxChatBytes = 60;
  const { room, join } = setUp({ relay: true, maxChatBytes });
  const a = join();
  const b = join();
  assert.deepEqual(a.link.notices.splice(0), ["guest2 joined"]);
  // Longest text that fits, in ASCII and in 3-byte characters.
  const room0 = maxChatBytes - chatBytes("guest1", "");
  const fits = "x".repeat(room0);
  assert.equal(chatBytes("guest1", fits), maxChatBytes);
  assert.deepEqual(room.receive(a.member, fits), { kind: "chat", text: fits, relayedTo: 1 });
  const wide = "€".repeat(room0 / 3);
  assert.equal(chatBytes("guest1", wide) <= maxChatBytes, true);
  assert.equal(room.receive(a.member, wide).kind, "chat");
  assert.equal(b.link.chats.length, 2);
  assert.equal(a.link.notices.length, 0);

  for (const text of [fits + "x", "€".repeat(room0 / 3 + 1), "\u0001".repeat(room0)]) {
    const bytes = chatBytes("guest1", text);
    assert.ok(bytes > maxChatBytes);
    assert.deepEqual(room.receive(a.member, text), { kind: "chat", text, relayedTo: 0 });
    assert.equal(
      a.link.notices.at(-1),
      `not relayed: the line takes ${bytes} bytes as a chat record; at most ${maxChatBytes} fit`,
    );
  }
  assert.equal(a.link.notices.length, 3);
  assert.equal(b.link.chats.length, 2, "nothing too long was relayed");

  // The operator's line is bounded the same way.
  const opLong = "y".repeat(maxChatBytes);
  const event = room.operator(opLong);
  assert.deepEqual(event, {
    kind: "refused",
    reason: `the line takes ${
      chatBytes("server", opLong)
    } bytes as a chat record; at most ${maxChatBytes} fit`,
  });
  assert.equal(a.link.chats.length + b.link.chats.length, 2);
});

Deno.test("Room: a relayed line is held once for every receiver and counted once in the budget", () => {
  const budget = new QueueBudget(1024 * 1024);
  const { room, join } = setUp({ relay: true, maxChatBytes: 4096, budget });
  const [alice, bob, carol, dave] = [join(), join(), join(), join()];
  room.receive(alice.member, "one line for three");
  const shared = [bob, carol, dave].map((m) => m.link.shared.at(-1)!);
  assert.ok(shared[0] === shared[1] && shared[1] === shared[2], "one object for all");
  assert.equal(alice.link.shared.length, 0, "not to its sender");
  // The fake links hold no reference: a queue takes one when it defers the record.
  for (const text of shared) text.hold();
  assert.equal(budget.used, shared[0].units + 3 * 64, "the text once, plus a reference each");
  for (const text of shared) text.release();
  assert.equal(budget.used, 0, "all released: nothing held");
});

Deno.test("Room: a line longer than maxMessage is refused to its sender, relayed to nobody", () => {
  const { room, join } = setUp({ relay: true, maxChatBytes: 1024 * 1024, maxMessage: 100 });
  const [alice, bob] = [join(), join()];
  const long = "é".repeat(51); // 102 bytes, 51 UTF-16 units
  const event = room.receive(alice.member, long);
  assert.deepEqual(event, { kind: "chat", text: long, relayedTo: 0 });
  assert.deepEqual(
    alice.link.notices.at(-1),
    "not relayed: the line takes 102 bytes; at most 100 go to the room",
  );
  assert.equal(bob.link.chats.length, 0);
  room.receive(alice.member, "x".repeat(100));
  assert.equal(bob.link.chats.length, 1, "100 bytes pass");
  assert.deepEqual(room.operator("y".repeat(101)), {
    kind: "refused",
    reason: "the line takes 101 bytes; at most 100 go to the room",
  });
});
