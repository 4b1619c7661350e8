/**
 * Issue 17 item 3 (slot exhaustion) and item 8 (/ban) through a real
 * server: the handshake pool drops its oldest connection for a newcomer and
 * never a session, IPv6 peers count per /64, an address whose connections
 * end without a handshake is refused for a while, and a banned address is
 * refused at once. In-memory connections stand for addresses (their name is
 * their address), so no permission is needed; the attack over TCP from ten
 * addresses is in bench/slots.ts.
 */

import assert from "node:assert/strict";
import { REMOVED_MESSAGE } from "../chat.ts";
import { UsageError } from "../console.ts";
import { parseServerArgs, SERVER_DEFAULTS, type ServerHandle } from "../server.ts";
import {
  eventually,
  rawClientHandshake,
  RawPeer,
  sendAndExpectAck,
  testServer,
  tryParse,
} from "./support.ts";

/** Reads to EOF and returns the message of the last line, an error frame. */
async function errorMessage(raw: RawPeer): Promise<string> {
  const lines = await raw.readToEof(5000);
  raw.close();
  const last = tryParse(lines.at(-1));
  assert.equal(last?.type, "error", `expected an error frame, got ${JSON.stringify(lines)}`);
  return last!.message as string;
}

/** A bare connection from `address` that has read its hello and says nothing. */
async function bare(server: ServerHandle, address: string): Promise<RawPeer> {
  const raw = new RawPeer(server.connect(address));
  assert.equal(tryParse(await raw.readLine(5000))?.type, "hello", `hello to ${address}`);
  return raw;
}

const EVICTED = /^dropped: too many connections are waiting for their handshake; try again$/;

Deno.test("item 3: a full handshake pool drops its oldest connection for a newcomer; sessions stay", async () => {
  await using srv = testServer({ maxHandshakes: 3 });
  const { server, serverLog: log } = srv;
  const session = await rawClientHandshake(server.connect("10.0.0.1"));
  await eventually(() => server.members.length === 1, "the session established");
  const parked = [];
  for (let i = 0; i < 3; i++) parked.push(await bare(server, `10.0.1.${i}`));
  assert.equal(server.connections, 4);
  // Each newcomer takes the place of the oldest unfinished one, in order.
  for (let i = 3; i < 6; i++) {
    parked.push(await bare(server, `10.0.1.${i}`));
    assert.match(await errorMessage(parked[i - 3]), EVICTED);
  }
  assert.ok(parked.slice(3).every((raw) => !raw.eof), "the three newest still wait");
  await eventually(() => server.connections === 4, "one session and three handshakes");
  // The session was never displaced, and is still served.
  await sendAndExpectAck(session, "still here after three evictions");
  assert.deepEqual(server.members.map((m) => m.address), ["10.0.0.1"]);
  // One line per dropped connection, naming it.
  assert.deepEqual(
    log.of("error").filter((l) => / dropped: /.test(l)),
    [0, 1, 2].map((i) =>
      `10.0.1.${i} dropped: too many connections are waiting for their handshake; try again`
    ),
  );
  // A newcomer that finishes its handshake is a session: the pool cannot take it back.
  const good = await rawClientHandshake(server.connect("10.0.0.2"));
  await eventually(() => server.members.length === 2, "the second session");
  for (let i = 0; i < 4; i++) parked.push(await bare(server, `10.0.2.${i}`));
  await sendAndExpectAck(good, "a session is never dropped for a handshake");
  for (const raw of parked) raw.close();
  session.raw.close();
  good.raw.close();
});

Deno.test("item 3: IPv6 peers are counted per /64; IPv4-mapped ones as IPv4", async () => {
  await using srv = testServer({ maxPerAddress: 2 });
  const { server, serverLog: log } = srv;
  const held = [await bare(server, "2001:db8:1:2::1"), await bare(server, "2001:db8:1:2:ffff::9")];
  const third = new RawPeer(server.connect("2001:db8:1:2:abcd:ef01:2345:6789"));
  assert.equal(
    await errorMessage(third),
    "too many connections from 2001:db8:1:2::/64 (at most 2 per address)",
  );
  // Another /64 is another address.
  held.push(await bare(server, "2001:db8:1:3::1"));
  held.push(await bare(server, "::ffff:192.0.2.7"));
  held.push(await bare(server, "192.0.2.7"));
  assert.match(
    await errorMessage(new RawPeer(server.connect("192.0.2.7"))),
    /^too many connections from 192\.0\.2\.7 /,
  );
  assert.equal(log.of("error").filter((l) => / refused: too many connections/.test(l)).length, 2);
  for (const raw of held) raw.close();
});

Deno.test("item 3: an address whose connections end without a handshake is refused for a while", async () => {
  await using srv = testServer({});
  const { server, serverLog: log } = srv;
  const strikes = SERVER_DEFAULTS.penaltyStrikes;
  // Connections that leave before sending a key, one after the other.
  for (let i = 0; i < strikes; i++) {
    const raw = await bare(server, "10.9.9.9");
    raw.close();
    await eventually(() => server.connections === 0, `connection ${i} gone`);
  }
  const penalty = SERVER_DEFAULTS.penaltyMs / 1000;
  assert.deepEqual(log.of("error").filter((l) => /^10\.9\.9\.9: refused for/.test(l)), [
    `10.9.9.9: refused for ${penalty} s: ${strikes} connections from it ended without a handshake within ${
      SERVER_DEFAULTS.penaltyWindowMs / 1000
    } s`,
  ]);
  // Refused at once, with no hello (no DH work), and the reason.
  const refusing = performance.now();
  for (let i = 0; i < 5; i++) {
    const raw = new RawPeer(server.connect("10.9.9.9"));
    const message = await errorMessage(raw);
    assert.match(message, /^10\.9\.9\.9 is refused for \d+ s more: too many connections/);
    assert.equal(raw.received.length, 1, "nothing but the error frame");
  }
  // A flood of refusals costs the log one line a second, not one line each.
  const seconds = (performance.now() - refusing) / 1000;
  const refusalLines = log.of("error").filter((l) => /^10\.9\.9\.9 refused: /.test(l));
  assert.ok(
    refusalLines.length >= 1 && refusalLines.length <= 1 + Math.ceil(seconds),
    `${refusalLines.length} lines in ${seconds.toFixed(1)} s:\n${refusalLines.join("\n")}`,
  );
  // Another address is served as if nothing happened.
  const good = await rawClientHandshake(server.connect("10.9.9.10"));
  await sendAndExpectAck(good, "served");
  good.raw.close();
});

Deno.test("item 3: the default pool is smaller than --max-clients, which memory allows to be large", () => {
  assert.ok(SERVER_DEFAULTS.maxHandshakes < SERVER_DEFAULTS.maxClients);
  assert.ok(SERVER_DEFAULTS.maxClients >= 1000);
  // Ten addresses at the per-address limit overfill the pool: the oldest go first.
  assert.ok(10 * SERVER_DEFAULTS.maxPerAddress > SERVER_DEFAULTS.maxHandshakes);
});

Deno.test("item 8: /ban removes the address's members, refuses it, and prints one line", async () => {
  await using srv = testServer({});
  const { server, serverLog: log } = srv;
  const mallory = await rawClientHandshake(server.connect("10.7.7.7"));
  const parked = await bare(server, "10.7.7.7");
  const bystander = await rawClientHandshake(server.connect("10.0.0.5"));
  await eventually(() => server.members.length === 2, "two members");
  server.operator("/ban 10.7.7.7 5");
  // The member gets the error frame; the parked handshake is dropped.
  const lines = await mallory.raw.readToEof(5000);
  assert.deepEqual(tryParse(lines.at(-1)), { type: "error", message: REMOVED_MESSAGE });
  assert.equal(await errorMessage(parked), "dropped: its address is banned");
  const refused = await errorMessage(new RawPeer(server.connect("10.7.7.7")));
  assert.equal(refused, "10.7.7.7 is banned by the server's operator (5 min more)");
  await eventually(() => server.members.length === 1, "mallory gone");
  assert.deepEqual(
    log.lines.filter((l) => /guest1/.test(l) && !/^\[\+\] Session with/.test(l)),
    ["[*] Banned 10.7.7.7 for 5 minutes; removed guest1 (10.7.7.7)"],
    "one line about the banned member, none about its session's end",
  );
  await sendAndExpectAck(bystander, "still served");
  server.operator("/ban");
  assert.match(log.lines.at(-1)!, /^\[!\] Usage: \/ban ADDRESS \[MINUTES\]/);
  bystander.raw.close();
});

Deno.test("item 3: --max-handshakes and --penalty on the command line", () => {
  const { options } = parseServerArgs(["--max-handshakes", "5", "--penalty", "0"]);
  assert.equal(options.maxHandshakes, 5);
  assert.equal(options.penaltyMs, 0);
  assert.equal(parseServerArgs(["--penalty", "90"]).options.penaltyMs, 90_000);
  for (const args of [["--max-handshakes", "0"], ["--max-handshakes", "x"], ["--penalty", "-1"]]) {
    assert.throws(() => parseServerArgs(args), UsageError, args.join(" "));
  }
  const defaults = parseServerArgs([]).options;
  assert.equal(defaults.maxHandshakes, undefined, "unset: SERVER_DEFAULTS applies");
  assert.equal(SERVER_DEFAULTS.maxHandshakes, 64);
  assert.equal(SERVER_DEFAULTS.maxClients, 1000);
});
