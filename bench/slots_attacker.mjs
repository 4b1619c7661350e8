/**
 * The attacker of bench/slots.ts: from each of several loopback addresses,
 * keeps `per` bare TCP connections open to a server (connect, read, never
 * send a key), opening a new one as soon as one is closed or refused. No DH
 * work at all: the cheapest way to hold a server's slots.
 *
 * ```sh
 * node bench/slots_attacker.mjs PORT 127.0.0.2,127.0.0.3 10
 * ```
 *
 * Runs until stdin ends or SIGTERM; then prints one JSON line to stdout:
 * `{"opened":N,"closedByServer":N,"errors":N,"seconds":S}`.
 *
 * @module
 */

import net from "node:net";

const [portText, addressList, perText] = process.argv.slice(2);
const port = Number(portText);
const addresses = (addressList ?? "").split(",").filter(Boolean);
const per = Number(perText ?? 10);
if (!(port > 0) || addresses.length === 0 || !(per > 0)) {
  console.error("usage: node bench/slots_attacker.mjs PORT ADDR[,ADDR…] PER_ADDRESS");
  process.exit(2);
}

const stats = { opened: 0, closedByServer: 0, errors: 0, seconds: 0 };
const started = performance.now();
let stopping = false;
const sockets = new Set();

/** Opens one bare connection from `address`; its end opens the next. */
function open(address) {
  if (stopping) return;
  stats.opened++;
  const socket = net.connect({ host: "127.0.0.1", port, localAddress: address });
  sockets.add(socket);
  socket.on("data", () => {}); // read what comes (the hello, an error frame), answer nothing
  socket.on("error", () => stats.errors++);
  socket.on("close", () => {
    sockets.delete(socket);
    if (stopping) return;
    stats.closedByServer++;
    // As fast as they are dropped, but through the event loop: the other
    // addresses' sockets get their turn.
    setImmediate(() => open(address));
  });
}

for (const address of addresses) for (let i = 0; i < per; i++) open(address);

function stop() {
  if (stopping) return;
  stopping = true;
  stats.seconds = (performance.now() - started) / 1000;
  for (const socket of sockets) socket.destroy();
  process.stdout.write(JSON.stringify(stats) + "\n", () => process.exit(0));
}

process.stdin.on("end", stop);
process.stdin.resume();
process.on("SIGTERM", stop);
