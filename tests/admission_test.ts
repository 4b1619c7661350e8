/**
 * Unit tests of admission.ts: the handshake pool (eviction of the oldest),
 * sessions never displaced, per-address counting with IPv6 per /64, and
 * penalties for addresses whose connections end without a handshake. No
 * I/O, no permissions: the clock is the test's.
 */

import assert from "node:assert/strict";
import { Admission, type AdmissionOptions, RefusalReports } from "../admission.ts";

/** A clock the test moves. */
function manualClock() {
  const clock = { time: 0, now: () => clock.time };
  return clock;
}

function setUp(options: Partial<AdmissionOptions> = {}) {
  const clock = manualClock();
  const admission = new Admission<string>({
    maxClients: 10,
    maxHandshakes: 3,
    maxPerAddress: 5,
    penalty: { strikes: 3, windowMs: 10_000, penaltyMs: 60_000, now: clock.now },
    ...options,
  });
  return { admission, clock };
}

Deno.test("Admission: a full pool drops its oldest unfinished connection, in order", () => {
  const { admission } = setUp({ penalty: undefined });
  for (const [i, conn] of ["a", "b", "c"].entries()) {
    assert.deepEqual(admission.admit(conn, `127.0.0.${i + 2}`), {
      ok: true,
      key: `127.0.0.${i + 2}`,
      drop: [],
      penalized: undefined,
    });
  }
  assert.equal(admission.handshakes, 3);
  // Each newcomer drops the oldest still unfinished: a, then b, then c, then d.
  const dropped = ["d", "e", "f", "g"].map((conn) => admission.admit(conn, "127.0.0.9").drop);
  assert.deepEqual(dropped, [["a"], ["b"], ["c"], ["d"]]);
  assert.equal(admission.handshakes, 3);
  assert.equal(admission.size, 3);
  // A dropped connection that ends later changes nothing.
  assert.deepEqual(admission.release("a"), { drop: [] });
  assert.equal(admission.size, 3);
});

Deno.test("Admission: established sessions are never displaced; a server of sessions is full", () => {
  const { admission } = setUp({ maxClients: 4, penalty: undefined });
  for (const conn of ["s1", "s2", "s3"]) {
    assert.equal(admission.admit(conn, conn).ok, true);
    admission.established(conn);
  }
  assert.equal(admission.handshakes, 0);
  // One slot left: a handshake takes it; the next one drops it, never a session.
  assert.equal(admission.admit("h1", "x").ok, true);
  assert.deepEqual(admission.admit("h2", "y").drop, ["h1"]);
  admission.established("h2");
  const full = admission.admit("h3", "z");
  assert.deepEqual(full, {
    ok: false,
    reason: "server full (4 clients); try again later",
    drop: [],
  });
  assert.equal(admission.size, 4);
  admission.release("s1");
  assert.equal(admission.admit("h3", "z").ok, true, "a freed slot is reused");
});

Deno.test("Admission: IPv6 addresses count per /64, IPv4-mapped as IPv4", () => {
  const { admission } = setUp({ maxHandshakes: 100, maxClients: 100, penalty: undefined });
  for (let i = 0; i < 5; i++) {
    const result = admission.admit(`v6-${i}`, `2001:db8:1:2::${(i * 4099).toString(16)}`);
    assert.equal(result.ok, true);
    assert.equal(result.ok && result.key, "2001:db8:1:2::/64");
  }
  assert.deepEqual(admission.admit("v6-5", "2001:db8:1:2:ffff:ffff:ffff:ffff"), {
    ok: false,
    reason: "too many connections from 2001:db8:1:2::/64 (at most 5 per address)",
    drop: [],
  });
  // The neighbouring /64 is another address.
  assert.equal(admission.admit("other", "2001:db8:1:3::1").ok, true);
  for (let i = 0; i < 5; i++) assert.equal(admission.admit(`m${i}`, "::ffff:192.0.2.7").ok, true);
  assert.match(
    (admission.admit("m5", "192.0.2.7") as { reason: string }).reason,
    /^too many connections from 192\.0\.2\.7 /,
  );
  admission.release("v6-0");
  assert.equal(admission.admit("v6-5", "2001:db8:1:2::beef").ok, true, "a slot of the /64 freed");
});

Deno.test("Admission: an address whose connections end without a handshake is refused for a while", () => {
  const { admission, clock } = setUp({ maxHandshakes: 10 });
  // Two ended unfinished: no penalty yet. A session that ends is no strike.
  for (const conn of ["a1", "a2"]) {
    admission.admit(conn, "127.0.0.2");
    assert.deepEqual(admission.release(conn), { drop: [] });
  }
  admission.admit("good", "127.0.0.2");
  admission.established("good");
  assert.deepEqual(admission.release("good"), { drop: [] });
  // Two more parked; the third strike refuses the address and drops the parked ones.
  admission.admit("p1", "127.0.0.2");
  admission.admit("p2", "127.0.0.2");
  admission.admit("a3", "127.0.0.2");
  assert.deepEqual(admission.release("a3"), { penalized: "127.0.0.2", drop: ["p1", "p2"] });
  assert.equal(admission.handshakes, 0);
  const refused = admission.admit("a4", "127.0.0.2");
  assert.equal(refused.ok, false);
  assert.equal(
    (refused as { reason: string }).reason,
    "127.0.0.2 is refused for 60 s more: too many connections from it ended without a handshake",
  );
  // Others are not affected.
  assert.equal(admission.admit("b", "127.0.0.3").ok, true);
  // The penalty runs out.
  clock.time += 59_000;
  assert.match((admission.admit("a5", "127.0.0.2") as { reason: string }).reason, /for 1 s more/);
  clock.time += 1000;
  assert.equal(admission.admit("a6", "127.0.0.2").ok, true);
  // Strikes outside the window do not add up.
  const { admission: slow, clock: slowClock } = setUp();
  for (let i = 0; i < 10; i++) {
    slow.admit(`s${i}`, "127.0.0.4");
    assert.deepEqual(slow.release(`s${i}`), { drop: [] }, `strike ${i}`);
    slowClock.time += 5000;
  }
  // Released while the server closes: no strike.
  const { admission: closing } = setUp();
  for (let i = 0; i < 5; i++) {
    closing.admit(`c${i}`, "127.0.0.5");
    closing.release(`c${i}`, false);
  }
  assert.equal(closing.admit("c", "127.0.0.5").ok, true);
});

Deno.test("Admission: connections dropped to make room are strikes against their address", () => {
  const { admission } = setUp({ maxHandshakes: 2 });
  admission.admit("x1", "127.0.0.2");
  admission.admit("x2", "127.0.0.2");
  assert.deepEqual(admission.admit("x3", "127.0.0.2").drop, ["x1"]);
  assert.deepEqual(admission.admit("x4", "127.0.0.2").drop, ["x2"]);
  // Third strike: the oldest (x3) is dropped, the address refused, and with it
  // its other unfinished one (x4) and the newcomer.
  const third = admission.admit("x5", "127.0.0.2");
  assert.equal(third.ok, false);
  assert.deepEqual(third.drop, ["x3", "x4"]);
  assert.equal(third.penalized, "127.0.0.2");
  assert.equal(admission.handshakes, 0);
  // A good client from another address gets the whole pool.
  assert.deepEqual(admission.admit("good", "127.0.0.1"), {
    ok: true,
    key: "127.0.0.1",
    drop: [],
    penalized: undefined,
  });
});

Deno.test("Admission: a ban refuses the /64 at once and drops its unfinished connections", () => {
  const { admission } = setUp({ penalty: undefined, maxHandshakes: 10 });
  admission.admit("v1", "2001:db8::1");
  admission.admit("s1", "2001:db8::2");
  admission.established("s1");
  const banned = admission.ban("2001:db8::99", 5 * 60_000);
  assert.deepEqual(banned, { key: "2001:db8:0:0::/64", drop: ["v1"] });
  assert.equal(admission.size, 1, "the session stays (the room removes members)");
  assert.match(
    (admission.admit("v2", "2001:db8::3") as { reason: string }).reason,
    /^2001:db8:0:0::\/64 is banned by the server's operator \(5 min more\)$/,
  );
  // Without penalties, unfinished connections are no strikes, but bans hold.
  for (let i = 0; i < 20; i++) {
    admission.admit(`n${i}`, "127.0.0.8");
    admission.release(`n${i}`);
  }
  assert.equal(admission.admit("n", "127.0.0.8").ok, true);
});

Deno.test("RefusalReports: one line per key per interval, with the count left unsaid", () => {
  const clock = manualClock();
  const reports = new RefusalReports(1000, clock.now);
  assert.deepEqual(reports.report("a"), { say: true, unsaid: 0 });
  for (let i = 0; i < 500; i++) assert.deepEqual(reports.report("a"), { say: false });
  assert.deepEqual(reports.report("b"), { say: true, unsaid: 0 }, "another key: its own line");
  clock.time += 999;
  assert.deepEqual(reports.report("a"), { say: false });
  clock.time += 1;
  assert.deepEqual(reports.report("a"), { say: true, unsaid: 501 });
  assert.deepEqual(reports.report("a"), { say: false });
});
