/**
 * Addresses over real TCP: the per-address connection count (which only a
 * socket can show: in memory a connection's name is its address), IPv6
 * loopback (::1; a server on :: is reached on ::1 only), and what a bind
 * that fails says.
 *
 * Needs the network: `deno test -P tests/address_test.ts`. Loopback only.
 */

import assert from "node:assert/strict";
import { parseClientArgs } from "../client.ts";
import { describeListenError } from "../console.ts";
import { parseServerArgs } from "../server.ts";
import { formatAddress } from "../transport.ts";
import {
  DenoProcess,
  eventually,
  lacks,
  linesOf,
  pipedClient,
  RawPeer,
  runToEnd,
  testServer,
  tryParse,
  typedClient,
  within,
} from "./support.ts";

Deno.test({
  name:
    "per address over TCP: --max-per-address 2, hold 2, close 1, open 2 more: the last is refused",
  ignore: lacks("net"),
  async fn() {
    await using served = testServer({ tcp: true, maxPerAddress: 2 });
    const { server, port } = served;
    const peers: RawPeer[] = [];
    /** Connects from 127.0.0.1 and reads the first frame: a hello, or the refusal. */
    const open = async () => {
      const peer = await RawPeer.connect(port);
      peers.push(peer);
      return tryParse(await peer.readLine(5000));
    };
    try {
      assert.equal((await open())?.type, "hello");
      assert.equal((await open())?.type, "hello");
      // Each connection has its own port: the count is kept per host, not per host:port.
      assert.notEqual(peers[0].local, peers[1].local);
      peers[0].close();
      await eventually(() => server.connections === 1, "the closed connection's end", 5000);
      assert.equal((await open())?.type, "hello", "a closed connection frees its place");
      const refused = await open();
      assert.equal(
        refused?.type,
        "error",
        `the third at once is refused, got a ${refused?.type} frame`,
      );
      assert.match(String(refused?.message), /too many connections from 127\.0\.0\.1/);
      assert.equal(server.connections, 2);
    } finally {
      for (const peer of peers) peer.close();
    }
  },
});

// ───────────────────────────────────────────────────────────────────────────
// IPv6 and the --host flag
// ───────────────────────────────────────────────────────────────────────────

Deno.test("addresses: IPv6 prints in brackets; --host takes ::1, [::1] and ::", () => {
  assert.equal(formatAddress("::1", 45142), "[::1]:45142");
  assert.equal(formatAddress("::ffff:127.0.0.1", 1), "[::ffff:127.0.0.1]:1");
  assert.equal(formatAddress("127.0.0.1", 45142), "127.0.0.1:45142");
  assert.equal(formatAddress("localhost", 80), "localhost:80");
  for (
    const [given, host] of [["::1", "::1"], ["[::1]", "::1"], ["::", "::"], ["0.0.0.0", "0.0.0.0"]]
  ) {
    assert.equal(parseServerArgs(["--host", given]).options.host, host, `server --host ${given}`);
    assert.equal(parseClientArgs(["--host", given]).options.host, host, `client --host ${given}`);
  }
  for (const bad of ["", "[]", "a b", "[::1"]) {
    assert.throws(
      () => parseServerArgs(["--host", bad]),
      /--host must be a host name or an address/,
    );
  }
});

Deno.test("addresses: a failed bind says what to do", () => {
  const cases: [Error, string, number, string][] = [
    [
      new Deno.errors.AddrNotAvailable("Cannot assign requested address (os error 99)"),
      "127.0.0.5",
      4444,
      "127.0.0.5 is not an address of this machine; use 0.0.0.0 to listen on all (:: for IPv6 too)",
    ],
    [
      new Error("Cannot assign requested address (os error 99)"),
      "192.0.2.1",
      4444,
      "192.0.2.1 is not an address of this machine; use 0.0.0.0 to listen on all (:: for IPv6 too)",
    ],
    [
      new Deno.errors.AddrInUse("Address already in use (os error 98)"),
      "127.0.0.1",
      4444,
      "port 4444 is already in use on 127.0.0.1 (another server?); choose another with --port, or --port 0 for any free one",
    ],
    [
      new Deno.errors.PermissionDenied("Permission denied (os error 13)"),
      "0.0.0.0",
      80,
      "port 80 is below 1024 and needs administrator rights; choose one from 1024 up with --port",
    ],
    [
      new Error("failed to lookup address information: Name or service not known"),
      "nosuchhost",
      4444,
      'no address found for "nosuchhost"; use an address of this machine (127.0.0.1, ::1, or 0.0.0.0 for all)',
    ],
  ];
  for (const [error, host, port, expected] of cases) {
    assert.equal(describeListenError(error, host, port), expected);
    assert.doesNotMatch(expected, /os error/);
  }
});

for (const host of ["::1", "::"]) {
  Deno.test({
    name: `addresses: a server on --host ${host} serves a client on ::1; both print [::1]:port`,
    ignore: lacks("net"),
    async fn() {
      await using served = testServer({ tcp: true, host });
      const { serverLog, sink, port } = served;
      const client = typedClient({ host: "::1", port });
      client.type("over IPv6");
      await sink.waitForCount(1);
      assert.deepEqual(sink.texts(), ["over IPv6"]);
      assert.match(sink.messages[0].peer, /^\[::1\]:\d+$/);
      await serverLog.waitFor(/^\[\+\] Connection from \[::1\]:\d+$/);
      client.end();
      assert.equal(await within(client.run, 10_000, "the client's end"), 0, client.log.dump());
      assert.ok(client.log.lines.includes(`[+] Connected to [::1]:${port}`), client.log.dump());
    },
  });
}

Deno.test({
  name: "addresses: server.ts --host ::1 prints [::1]:port; a port in use is refused with a reason",
  ignore: lacks("net", "run"),
  async fn() {
    await using server = new DenoProcess("server.ts", ["--host", "::1", "--port", "0"]);
    const match = await server.waitFor(/^\[\*\] Server listening on \[::1\]:(\d+)$/m);
    const port = Number(match[1]);
    const client = await pipedClient(port, ["--host", "::1"], "hi\n");
    assert.equal(client.code, 0, client.stderr);
    assert.match(client.stdout, new RegExp(`^\\[\\+\\] Connected to \\[::1\\]:${port}$`, "m"));
    await server.waitFor(/^\[\+\] guest1 \(\[::1\]:\d+\): hi$/m);
    // The same port again: in use.
    const again = await runToEnd(
      new DenoProcess("server.ts", ["--host", "::1", "--port", `${port}`]),
    );
    assert.equal(again.code, 1, again.stderr);
    assert.deepEqual(linesOf(again.stderr), [
      `[!] Cannot listen on [::1]:${port}: port ${port} is already in use on ::1 (another server?); choose another with --port, or --port 0 for any free one`,
    ]);
  },
});
