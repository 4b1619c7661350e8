/**
 * Unit tests of chat.ts: command parsing, name rules, and the Room with fake
 * member links that record everything they are sent. No I/O, no permissions.
 */

import assert from "node:assert/strict";
import {
  BAN_USAGE,
  checkName,
  CLIENT_COMMANDS,
  foldName,
  hostOf,
  JOIN_HOLD_MS,
  KICK_USAGE,
  type Member,
  type MemberLink,
  NAME_RULE,
  parseCommand,
  PRESENCE_BURST,
  PRESENCE_WINDOW_MS,
  PresenceNotices,
  REMOVED_MESSAGE,
  RENAME_BURST,
  RENAME_INTERVAL_MS,
  RenameAllowance,
  Room,
  type RoomClock,
  type RoomOptions,
} from "../chat.ts";
import { addressKey } from "../guard.ts";
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

/** A clock that moves only when told, running the timers that fall due. */
class ManualClock implements RoomClock {
  time = 0;
  readonly #timers = new Map<number, { at: number; callback: () => void }>();
  #next = 1;

  now(): number {
    return this.time;
  }

  setTimeout(callback: () => void, ms: number): number {
    this.#timers.set(this.#next, { at: this.time + ms, callback });
    return this.#next++;
  }

  clearTimeout(id: unknown): void {
    this.#timers.delete(id as number);
  }

  /** Moves the time on by `ms`, running each timer due, in order. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      const due = [...this.#timers].filter(([, t]) =>
        t.at <= end
      ).sort((x, y) => x[1].at - y[1].at)[0];
      if (!due) break;
      this.#timers.delete(due[0]);
      this.time = due[1].at;
      due[1].callback();
    }
    this.time = end;
  }

  /** Timers set and not yet run or cleared. */
  get pending(): number {
    return this.#timers.size;
  }
}

/**
 * A room and a way to let fake clients in. In room mode, `join` lets the
 * hold on the join notice run out and drops the newcomer's "present:"
 * notice, so that tests of other things see only what they test;
 * `joinHeld` does neither.
 */
function setUp(options: Partial<RoomOptions> = {}) {
  const clock = new ManualClock();
  const room = new Room({
    operatorName: "server",
    relay: false,
    maxChatBytes: 4096,
    clock,
    ...options,
  });
  const links = new Map<Member, FakeLink>();
  let port = 50_000;
  const joinHeld = (host = "127.0.0.1"): { member: Member; link: FakeLink } => {
    const link = new FakeLink(`${host.includes(":") ? `[${host}]` : host}:${port++}`);
    const member = room.join(link);
    links.set(member, link);
    return { member, link };
  };
  return {
    room,
    clock,
    joinHeld,
    join(host?: string): { member: Member; link: FakeLink } {
      const joined = joinHeld(host);
      if (options.relay) {
        assert.match(joined.link.notices.shift() ?? "", /^present: /);
        // Spread out, so that no test but the coalescing one sees coalescing.
        clock.advance(2 * PRESENCE_WINDOW_MS);
      }
      return joined;
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

Deno.test("parseCommand: /kick and /ban are the operator's, unknown to clients", () => {
  for (const [line, target] of [["/kick bob", "bob"], ["/kick  bob ", "bob"], ["/kick", ""]]) {
    assert.deepEqual(parseCommand(line, true), { kind: "kick", target }, line);
  }
  // deno-fmt-ignore -- a table: [line, target, minutes]
  const bans: [string, string, string][] = [
    ["/ban 127.0.0.2", "127.0.0.2", ""], ["/ban  ::1  5 ", "::1", "5"], ["/ban", "", ""],
    ["/ban bob x", "bob", "x"],
  ];
  for (const [line, target, minutes] of bans) {
    assert.deepEqual(parseCommand(line, true), { kind: "ban", target, minutes }, line);
  }
  assert.deepEqual(parseCommand("/kick bob"), { kind: "unknown", word: "kick" });
  assert.deepEqual(parseCommand("/kick bob", false), { kind: "unknown", word: "kick" });
  assert.deepEqual(parseCommand("/ban bob"), { kind: "unknown", word: "ban" });
});

// ───────────────────────────────────────────────────────────────────────────
// checkName
// ───────────────────────────────────────────────────────────────────────────

Deno.test("checkName: 1 to 24 characters from the allowed set", () => {
  for (const name of ["a", "Z", "0", "alice", "Bob_2", "x.y-z", "_a", "a-", "a".repeat(24)]) {
    assert.equal(checkName(name), undefined, name);
  }
  for (const name of ["-", ".", "..", "_", "-._"]) {
    assert.equal(checkName(name), "a name needs a letter or a digit", name);
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
  room.receive(b.member, "/name gue5t4");
  const c = join();
  assert.equal(c.member.name, "guest5", "guest4 is taken, as a look-alike");
  room.leave(a.member);
  const d = join();
  assert.equal(d.member.name, "guest6", "numbers are not reused");
  assert.deepEqual(room.members.map((m) => m.name), ["gue5t4", "guest5", "guest6"]);
  assert.equal(a.member.address, "127.0.0.1:50000");
});

Deno.test("Room: guest<N> only for the N the server gave that member", () => {
  const { room, join } = setUp();
  const a = join();
  const b = join();
  room.leave(join().member); // guest3 came and went
  for (const wanted of ["guest2", "guest3", "guest9", "GUEST1000", "guest01"]) {
    const event = room.receive(a.member, `/name ${wanted}`);
    assert.deepEqual(event, {
      kind: "refused",
      reason: `"${wanted}" is not yours: guest names are given by the server`,
    }, wanted);
  }
  assert.equal(
    a.link.notices.at(-1),
    'name "guest01" is not yours (guest names are given by the server); you are guest1 (choose another with /name)',
  );
  assert.equal(room.receive(a.member, "/name alice").kind, "renamed");
  assert.deepEqual(room.receive(a.member, "/name Guest1"), {
    kind: "renamed",
    from: "alice",
    to: "Guest1",
  });
  assert.equal(room.receive(b.member, "/name guest").kind, "renamed", "no number: any name");
});

Deno.test("foldName: case, look-alike digits and trailing punctuation", () => {
  // deno-fmt-ignore -- a table: [name, folded]
  const cases: [string, string][] = [
    ["server", "server"], ["SERVER", "server"], ["server.", "server"], ["server_", "server"],
    ["serv3r", "server"], ["5erver", "server"], ["S3RV3R-._", "server"], ["b0b1", "bobl"],
    ["x2468", "x2468"], ["_server", "_server"], ["se.rver", "se.rver"],
  ];
  for (const [name, folded] of cases) assert.equal(foldName(name), folded, name);
});

Deno.test("Room: look-alikes of the operator and of members present are refused", () => {
  const { room, join } = setUp({ relay: true });
  const alice = join();
  const b = join();
  room.receive(alice.member, "/name alice");
  const notices = b.link.notices.length;
  for (const wanted of ["server.", "server_", "serv3r", "5erver", "SERVER", "a1ice", "ALICE."]) {
    const event = room.receive(b.member, `/name ${wanted}`);
    assert.equal(event.kind, "refused", wanted);
    assert.match(
      b.link.notices.at(-1)!,
      new RegExp(
        `^name "${wanted.replace(".", "\\.")}" is (taken|too like "(server|alice)"); ` +
          "you are guest2 \\(choose another with /name\\)$",
      ),
    );
  }
  assert.equal(b.link.notices.length, notices + 7, "one notice per refusal");
  assert.equal(alice.link.notices.filter((n) => n.includes(" is now ")).length, 0);
  // Once it has a name, a refusal says the name is unchanged.
  room.receive(b.member, "/name bob");
  assert.deepEqual(room.receive(b.member, "/name 5erver."), {
    kind: "refused",
    reason: '"5erver." is too like "server"',
  });
  assert.equal(b.link.notices.at(-1), 'name not changed: "5erver." is too like "server"');
  // After alice leaves, her look-alike is free.
  room.leave(alice.member);
  assert.equal(room.receive(b.member, "/name a1ice").kind, "renamed");
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
    // Still under its guest name: told who it is.
    assert.equal(
      bob.link.notices.at(-1),
      `name "${wanted}" is taken; you are guest2 (choose another with /name)`,
    );
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
  // Once named, a refusal says the name is unchanged.
  room.receive(bob.member, "/name bob");
  room.receive(bob.member, "/name Alice");
  assert.equal(bob.link.notices.at(-1), `name not changed: "Alice" is already taken`);
});

Deno.test("Room: invalid names are refused with a reason", () => {
  const { room, join } = setUp({ relay: true });
  const { member, link } = join();
  const other = join();
  assert.deepEqual(link.notices.splice(0), ["guest2 joined"]);
  const cases: [string, string][] = [
    ["/name ..", "a name needs a letter or a digit"],
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
    const { room, join, clock } = setUp({ relay });
    const a = join();
    const b = join();
    const c = join();
    clock.advance(RENAME_INTERVAL_MS);
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
  assert.equal(a.link.total, 0, "the first member hears nothing of itself but who is present");
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

Deno.test("Room: /kick NAME removes the member named, in any case; the others are told why", () => {
  const { room, join } = setUp({ relay: true });
  const a = join();
  const b = join();
  room.receive(b.member, "/name Bob");
  const event = room.operator("/kick BOB");
  assert.deepEqual(event, { kind: "kicked", members: [b.member] });
  assert.deepEqual(b.link.disconnects, [REMOVED_MESSAGE]);
  assert.equal(REMOVED_MESSAGE, "You were removed by the server's operator");
  assert.equal(b.member.removed, true);
  assert.equal(a.link.notices.at(-1), "Bob was removed by the operator");
  // Its session's end, reported by the server later, says nothing more.
  const notices = a.link.notices.length;
  room.leave(b.member);
  assert.equal(a.link.notices.length, notices, "no 'Bob left' after the removal");
  assert.equal(a.link.disconnects.length, 0);
  assert.deepEqual(room.operator("/kick nobody"), {
    kind: "refused",
    reason: 'nobody here is called "nobody" or connects from it (see /who)',
  });
  assert.deepEqual(room.operator("/kick"), { kind: "refused", reason: KICK_USAGE });
  assert.match(KICK_USAGE, /^usage: \/kick ADDRESS/);
  assert.equal(a.link.disconnects.length + b.link.disconnects.length, 1);
});

Deno.test("Room: /kick ADDRESS wins over a rename; a host removes everyone from it", () => {
  const { room, join } = setUp({ relay: true, addressKey });
  const a = join("127.0.0.2");
  const b = join("127.0.0.2");
  const c = join("127.0.0.3");
  const v6 = join("2001:db8:1:2::10");
  const v6b = join("2001:db8:1:2::99");
  // A rename just before the kick does not save it: the address is stable.
  room.receive(a.member, "/name alice2");
  assert.deepEqual(room.operator(`/kick ${a.member.address}`), {
    kind: "kicked",
    members: [a.member],
  });
  assert.deepEqual(room.operator("/kick 127.0.0.2"), { kind: "kicked", members: [b.member] });
  // An IPv6 host stands for its /64.
  assert.deepEqual(room.operator("/kick 2001:db8:1:2::1"), {
    kind: "kicked",
    members: [v6.member, v6b.member],
  });
  assert.deepEqual(room.members, [c.member]);
  assert.deepEqual(c.link.notices.slice(-4), [
    "alice2 was removed by the operator",
    "guest2 was removed by the operator",
    "guest4 was removed by the operator",
    "guest5 was removed by the operator",
  ]);
  // A member named like a host does not shield that host.
  const decoy = join("127.0.0.4");
  room.receive(decoy.member, "/name 127.0.0.3");
  assert.deepEqual(room.operator("/kick 127.0.0.3"), { kind: "kicked", members: [c.member] });
  assert.deepEqual(room.operator("/kick 127.0.0.3"), { kind: "kicked", members: [decoy.member] });
  assert.equal(hostOf("[2001:db8::1]:4444"), "2001:db8::1");
  assert.equal(hostOf("127.0.0.1:4444"), "127.0.0.1");
});

Deno.test("Room: /ban removes everyone from the address and names its key and minutes", () => {
  const { room, join } = setUp({ relay: true, addressKey });
  const a = join("127.0.0.2");
  const b = join("127.0.0.3");
  room.receive(a.member, "/name mallory");
  assert.deepEqual(room.operator("/ban mallory"), {
    kind: "banned",
    key: "127.0.0.2",
    minutes: 60,
    members: [a.member],
  });
  assert.deepEqual(a.link.disconnects, [REMOVED_MESSAGE]);
  assert.deepEqual(room.operator("/ban 2001:db8::5 15"), {
    kind: "banned",
    key: "2001:db8:0:0::/64",
    minutes: 15,
    members: [],
  });
  assert.deepEqual(room.operator("/ban"), { kind: "refused", reason: BAN_USAGE });
  for (const minutes of ["0", "1.5", "x", "-3", "999999"]) {
    assert.equal(room.operator(`/ban 127.0.0.9 ${minutes}`).kind, "refused", minutes);
  }
  assert.match(
    (room.operator("/ban nosuchname") as { reason: string }).reason,
    /^"nosuchname" is neither an address nor a name here/,
  );
  assert.deepEqual(room.members, [b.member]);
  assert.equal(b.link.disconnects.length, 0);
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

// ───────────────────────────────────────────────────────────────────────────
// Room: notices that read well (held joins, "present:", coalescing, rename limit)
// ───────────────────────────────────────────────────────────────────────────

Deno.test("Room: a join is announced at the first record, under the name it asks for", () => {
  const { room, join, joinHeld, clock } = setUp({ relay: true });
  const alice = join();
  room.receive(alice.member, "/name alice");
  clock.advance(PRESENCE_WINDOW_MS);
  const bob = joinHeld();
  assert.deepEqual(bob.link.notices, ["present: server, alice"]);
  assert.deepEqual(alice.link.notices, ["you are now alice"], "nothing yet: bob is held");
  clock.advance(JOIN_HOLD_MS / 2);
  assert.deepEqual(room.receive(bob.member, "/name bob"), {
    kind: "renamed",
    from: "guest2",
    to: "bob",
  });
  assert.deepEqual(alice.link.notices.slice(1), ["bob joined"], "no 'guest2 is now bob'");
  assert.deepEqual(bob.link.notices, ["present: server, alice", "you are now bob"]);
  clock.advance(JOIN_HOLD_MS * 4);
  assert.deepEqual(alice.link.notices.slice(1), ["bob joined"], "announced once");
  assert.equal(clock.pending, 0, "no timer left");
});

Deno.test("Room: a silent newcomer is announced after the hold; a chat line announces it first", () => {
  const { room, join, joinHeld, clock } = setUp({ relay: true });
  const a = join();
  const quiet = joinHeld();
  clock.advance(JOIN_HOLD_MS - 1);
  assert.deepEqual(a.link.notices, []);
  clock.advance(1);
  assert.deepEqual(a.link.notices, ["guest2 joined"]);
  clock.advance(PRESENCE_WINDOW_MS);
  const talker = joinHeld();
  room.receive(talker.member, "hi");
  assert.deepEqual(a.link.notices.slice(1), ["guest3 joined"]);
  assert.deepEqual(a.link.chats.map((c) => c.line), [{ from: "guest3", text: "hi" }]);
  // Who joined after a newcomer learned of it from "present:", not from "joined".
  assert.deepEqual(quiet.link.notices, ["present: server, guest1", "guest3 joined"]);
  assert.deepEqual(talker.link.notices, ["present: server, guest1, guest2"]);
  // A taken --name: the newcomer learns who it is; the others see it join once.
  clock.advance(PRESENCE_WINDOW_MS);
  const clash = joinHeld();
  room.receive(clash.member, "/name guest1");
  assert.equal(
    clash.link.notices.at(-1),
    'name "guest1" is not yours (guest names are given by the server); you are guest4 (choose another with /name)',
  );
  assert.equal(a.link.notices.at(-1), "guest4 joined");
});

Deno.test("Room: one that leaves before it is announced is never mentioned", () => {
  const { room, join, joinHeld, clock } = setUp({ relay: true });
  const a = join();
  const ghost = joinHeld();
  clock.advance(JOIN_HOLD_MS / 2);
  room.leave(ghost.member);
  clock.advance(JOIN_HOLD_MS * 4);
  assert.deepEqual(a.link.notices, []);
  assert.equal(clock.pending, 0);
  // close() cancels the holds of those still waiting.
  joinHeld();
  assert.equal(clock.pending, 1);
  room.close();
  assert.equal(clock.pending, 0);
});

Deno.test("Room: joins and leaves that come fast are counted, one summary a second", () => {
  const { room, join, joinHeld, clock } = setUp({ relay: true });
  const watcher = join();
  const churn = 8;
  // Eight come and are announced by their first record, and go, all in one second.
  for (let i = 0; i < churn; i++) {
    const { member } = joinHeld(`127.0.0.${i + 2}`);
    room.receive(member, `/name n${i}`);
    room.leave(member);
  }
  // The first PRESENCE_BURST notices go one by one; the rest wait for the second's end.
  assert.equal(watcher.link.notices.length, PRESENCE_BURST);
  clock.advance(PRESENCE_WINDOW_MS);
  const summary = watcher.link.notices.at(-1)!;
  const joined = churn - Math.ceil(PRESENCE_BURST / 2);
  const left = churn - Math.floor(PRESENCE_BURST / 2);
  assert.equal(summary, `${joined} joined, ${left} left in the last second`);
  assert.equal(watcher.link.notices.length, PRESENCE_BURST + 1);
  // Still busy: the next second is summed up at once, in one notice.
  for (let i = 0; i < 20; i++) {
    const { member } = joinHeld();
    room.receive(member, "x");
    room.leave(member);
  }
  assert.equal(watcher.link.notices.length, PRESENCE_BURST + 1);
  clock.advance(PRESENCE_WINDOW_MS);
  assert.deepEqual(watcher.link.notices.slice(PRESENCE_BURST + 1), [
    "20 joined, 20 left in the last second",
  ]);
  // Quiet for a second: single notices again, as they happen.
  clock.advance(PRESENCE_WINDOW_MS * 2);
  const late = joinHeld();
  room.receive(late.member, "/name late");
  assert.equal(watcher.link.notices.at(-1), "late joined");
  assert.equal(clock.pending, 0);
});

Deno.test("PresenceNotices: a lone held notice is sent as itself, not as '1 left'", () => {
  const clock = new ManualClock();
  const sent: string[] = [];
  const notices = new PresenceNotices(clock, (text) => void sent.push(text));
  const member = { name: "m" } as Member;
  for (let i = 0; i < PRESENCE_BURST; i++) notices.joined(member);
  notices.left(member, "was removed by the operator");
  assert.equal(sent.length, PRESENCE_BURST);
  clock.advance(PRESENCE_WINDOW_MS);
  assert.equal(sent.at(-1), "m was removed by the operator");
  notices.close();
  assert.equal(clock.pending, 0);
});

Deno.test("Room: renames are limited per member; others see at most the burst", () => {
  const { room, join, clock } = setUp({ relay: true });
  const toggler = join();
  const other = join();
  const pipelined = 200;
  let refused = 0;
  let reported = 0;
  for (let i = 0; i < pipelined; i++) {
    const event = room.receive(toggler.member, `/name t${i}`);
    if (event.kind === "refused") refused++;
    if (event.kind === "refused" && !event.again) reported++;
  }
  assert.equal(reported, 1, "one refusal of the run is worth a log line");
  const isNow = () => other.link.notices.filter((n) => n.includes(" is now ")).length;
  assert.equal(isNow(), RENAME_BURST);
  assert.equal(refused, pipelined - RENAME_BURST);
  assert.match(
    toggler.link.notices.at(-1)!,
    /^name not changed: too many renames; try again in \d+ s$/,
  );
  // The allowance comes back with time, one rename per interval.
  clock.advance(RENAME_INTERVAL_MS);
  assert.equal(room.receive(toggler.member, "/name again").kind, "renamed");
  assert.equal(room.receive(toggler.member, "/name again2").kind, "refused");
  assert.equal(isNow(), RENAME_BURST + 1);
  // Another member's allowance is its own.
  assert.equal(room.receive(other.member, "/name free").kind, "renamed");
});

Deno.test("RenameAllowance: a burst, then one per interval, never more than the burst saved", () => {
  const clock = new ManualClock();
  const allowance = new RenameAllowance(clock);
  for (let i = 0; i < RENAME_BURST; i++) assert.deepEqual(allowance.take(), { ok: true });
  assert.deepEqual(allowance.take(), { ok: false, waitMs: RENAME_INTERVAL_MS, again: false });
  clock.advance(RENAME_INTERVAL_MS / 2);
  assert.deepEqual(allowance.take(), { ok: false, waitMs: RENAME_INTERVAL_MS / 2, again: true });
  clock.advance(RENAME_INTERVAL_MS * 100);
  for (let i = 0; i < RENAME_BURST; i++) assert.deepEqual(allowance.take(), { ok: true });
  assert.equal(allowance.take().ok, false);
});

Deno.test("PresenceNotices: a summary whose timer is late (a busy loop) goes with the next notice", () => {
  const clock = new ManualClock();
  const sent: string[] = [];
  const notices = new PresenceNotices(clock, (text) => void sent.push(text));
  const member = { name: "m" } as Member;
  for (let i = 0; i < PRESENCE_BURST + 4; i++) notices.joined(member);
  assert.equal(sent.length, PRESENCE_BURST);
  // The timer does not run (the clock jumps without advance()): the next event flushes.
  clock.time += 2.4 * PRESENCE_WINDOW_MS;
  notices.left(member);
  assert.deepEqual(sent.slice(PRESENCE_BURST), ["4 joined in the last 2 seconds"]);
  // …and that next event is counted in the next summary.
  clock.advance(PRESENCE_WINDOW_MS);
  assert.equal(sent.at(-1), "m left");
  notices.close();
});
