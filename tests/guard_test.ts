/**
 * Unit tests of guard.ts: address keys (IPv6 grouped per /64) and the penalty
 * box, on an injected clock. No I/O, no permissions.
 */

import assert from "node:assert/strict";
import { addressKey, PenaltyBox } from "../guard.ts";

Deno.test("addressKey: IPv4 and names are their own key", () => {
  assert.equal(addressKey("127.0.0.2"), "127.0.0.2");
  assert.equal(addressKey("memory-7"), "memory-7");
});

Deno.test("addressKey: IPv6 addresses of one /64 share a key, other /64s do not", () => {
  const a = addressKey("2001:db8:1:2:aaaa:bbbb:cccc:dddd");
  assert.equal(a, "2001:db8:1:2::/64");
  assert.equal(addressKey("2001:db8:1:2::1"), a);
  assert.equal(addressKey("2001:0DB8:0001:0002:0:0:0:ffff"), a);
  assert.equal(addressKey("[2001:db8:1:2::9]"), a);
  assert.equal(addressKey("fe80::1%eth0"), "fe80:0:0:0::/64");
  assert.notEqual(addressKey("2001:db8:1:3::1"), a);
  assert.equal(addressKey("::1"), "0:0:0:0::/64");
  assert.equal(addressKey("::"), "0:0:0:0::/64");
});

Deno.test("addressKey: IPv4-mapped IPv6 is the IPv4 address; malformed text is kept whole", () => {
  assert.equal(addressKey("::ffff:192.0.2.1"), "192.0.2.1");
  assert.equal(addressKey("::ffff:c000:0201"), "192.0.2.1");
  for (const bad of ["1::2::3", "1:2:3:4:5:6:7:8:9", "12345::", "::ffff:1.2.3.999", "1:2:3"]) {
    assert.equal(addressKey(bad), bad, bad);
  }
});

/** A clock the test moves by hand. */
function manualClock(): { now: () => number; advance: (ms: number) => void } {
  let time = 1_000_000;
  return { now: () => time, advance: (ms) => time += ms };
}

Deno.test("PenaltyBox: the Nth strike within the window penalizes for penaltyMs", () => {
  const clock = manualClock();
  const box = new PenaltyBox({ strikes: 3, windowMs: 1000, penaltyMs: 5000, now: clock.now });
  assert.equal(box.strike("a"), false);
  assert.equal(box.strike("a"), false);
  assert.equal(box.remaining("a"), 0);
  assert.equal(box.strike("a"), true);
  assert.equal(box.remaining("a"), 5000);
  assert.equal(box.remaining("b"), 0, "other keys are not affected");
  clock.advance(4999);
  assert.equal(box.remaining("a"), 1);
  assert.equal(box.strike("a"), true, "a strike while penalized still reports the penalty");
  clock.advance(1);
  assert.equal(box.remaining("a"), 0);
  assert.equal(box.strike("a"), false, "strikes start again after the penalty");
});

Deno.test("PenaltyBox: strikes older than the window do not count", () => {
  const clock = manualClock();
  const box = new PenaltyBox({ strikes: 2, windowMs: 1000, penaltyMs: 5000, now: clock.now });
  assert.equal(box.strike("a"), false);
  clock.advance(1000);
  assert.equal(box.strike("a"), false, "the first strike left the window");
  clock.advance(999);
  assert.equal(box.strike("a"), true);
});

Deno.test("PenaltyBox: ban, forgive, and the bound on remembered keys", () => {
  const clock = manualClock();
  const box = new PenaltyBox({
    strikes: 2,
    windowMs: 1000,
    penaltyMs: 5000,
    maxKeys: 3,
    now: clock.now,
  });
  box.ban("banned", 60_000);
  assert.equal(box.remaining("banned"), 60_000);
  box.forgive("banned");
  assert.equal(box.remaining("banned"), 0);
  box.ban("banned", 60_000);
  for (const key of ["k1", "k2", "k3", "k4", "k5"]) box.strike(key);
  assert.equal(box.size, 3);
  assert.equal(box.remaining("banned"), 60_000, "a penalized key outlives unpenalized ones");
  assert.throws(() => new PenaltyBox({ strikes: 0, windowMs: 1, penaltyMs: 1 }), RangeError);
});
