/**
 * Addresses over real TCP: the per-address connection count (which only a
 * socket can show: in memory a connection's name is its address), IPv6
 * loopback, and what a bind that fails says.
 *
 * Needs the network: `deno test -P tests/address_test.ts`. Loopback only.
 */

import assert from "node:assert/strict";
import { eventually, lacks, RawPeer, testServer, tryParse } from "./support.ts";

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
