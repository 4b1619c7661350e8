/**
 * The load of bench/abuse.ts: one Node process that plays every client of a
 * flood against a `--room` server, on loopback only. DHX/1 is spoken by the
 * Client of bench/loadgen.mjs (node:crypto: far cheaper per record than the
 * server under test).
 *
 * Roles, each from its own loopback address (so that per-address limits do
 * not get in the way):
 *
 * - a flooder (127.0.0.2) sends lines of `size` bytes (or, with `ping`,
 *   pings) as fast as the server reads them (it writes whenever its socket
 *   is not full) and acks what it is sent;
 * - a good pair (127.0.0.3): A sends a line every `pairIntervalMs` carrying
 *   its send time; B, reading at full speed, notes each one's latency;
 * - `honest` members (127.0.0.4) that read at `honestRate` bytes/s (a slow
 *   terminal) and ack everything;
 * - `deaf` members (127.0.0.5 and up, ten per address) that finish the
 *   handshake, then never read again.
 *
 * ```sh
 * node bench/abuse_load.mjs '{"port":4444,"seconds":10,"size":100,"honest":5,"deaf":0}'
 * ```
 *
 * Runs `seconds` of flood, waits `drainMs`, and prints one JSON line.
 *
 * @module
 */

import { Client } from "./loadgen.mjs";

const config = {
  port: 4444,
  seconds: 10,
  size: 100,
  honest: 5,
  honestRate: 1_000_000,
  deaf: 0,
  pairIntervalMs: 50,
  drainMs: 2000,
  ...JSON.parse(process.argv[2] ?? "{}"),
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const wallClock = () => performance.timeOrigin + performance.now();

/** Resolves at the socket's next `drain`, or after `ms` (its listener removed either way). */
function drainedOrLater(socket, ms) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      socket.off("drain", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    socket.on("drain", done);
  });
}

/** Drops of one role: how many, and the first distinct reasons. */
class Drops {
  count = 0;
  samples = [];
  add(error) {
    this.count++;
    const text = String(error?.message ?? error).replace(/\d+/g, "N");
    if (this.samples.length < 3 && !this.samples.includes(text)) this.samples.push(text);
  }
}

/** A connected, handshaken client from `localAddress`. */
async function connect(localAddress, drops) {
  const client = new Client("dhx", { host: "127.0.0.1", port: config.port, localAddress });
  client.onError = (error) => drops.add(error);
  await client.ready;
  return client;
}

/** Reads no faster than `rate` bytes a second: pauses the socket while over budget. */
function throttle(socket, rate) {
  let allowance = rate / 10;
  let last = performance.now();
  socket.on("data", (chunk) => {
    const now = performance.now();
    allowance = Math.min(rate / 10, allowance + ((now - last) / 1000) * rate);
    last = now;
    allowance -= chunk.length;
    if (allowance < 0) {
      socket.pause();
      setTimeout(() => socket.resume(), (-allowance / rate) * 1000);
    }
  });
}

const cpu0 = process.cpuUsage();
const t0 = performance.now();
const drops = { flooder: new Drops(), pair: new Drops(), honest: new Drops(), deaf: new Drops() };
const pairA = await connect("127.0.0.3", drops.pair);
const pairB = await connect("127.0.0.3", drops.pair);
const honest = [];
for (let i = 0; i < config.honest; i++) {
  const client = await connect("127.0.0.4", drops.honest);
  throttle(client.socket, config.honestRate);
  client.received = 0;
  client.onChat = (text) => client.received += text.length;
  honest.push(client);
}
const deaf = [];
for (let i = 0; i < config.deaf; i++) {
  const client = await connect(`127.0.0.${5 + Math.floor(i / 10)}`, drops.deaf);
  client.socket.pause(); // never reads again
  deaf.push(client);
}
const flooder = await connect("127.0.0.2", drops.flooder);
await sleep(500); // join notices settle

// The good pair: A's lines carry their send time; B notes the latency.
const latencies = [];
let pairSent = 0;
pairB.onChat = (text) => {
  const match = text.match(/^good (\d+\.\d+)$/);
  if (match) latencies.push(wallClock() - Number(match[1]));
};
const pairTimer = setInterval(() => {
  pairA.send(`good ${wallClock().toFixed(3)}`);
  pairSent++;
}, config.pairIntervalMs);

// The flooder: writes whenever its socket has room, for `seconds`.
let flooderAcks = 0;
flooder.onAck = () => flooderAcks++;
let linesSent = 0;
const line = "f".repeat(config.size);
const started = performance.now();
const deadline = started + config.seconds * 1000;
while (performance.now() < deadline && !flooder.socket.destroyed) {
  if (flooder.socket.writableNeedDrain) {
    await drainedOrLater(flooder.socket, 100);
    continue;
  }
  if (config.ping) flooder.ping((linesSent & 0xffffffff).toString(16).padStart(8, "0"));
  else flooder.send(line);
  if (++linesSent % 64 === 0) await new Promise((resolve) => setImmediate(resolve));
}
const floodMs = performance.now() - started;
clearInterval(pairTimer);
await sleep(config.drainMs);

const cpu = process.cpuUsage(cpu0);
const result = {
  loadCpuPct: (100 * (cpu.user + cpu.system) / 1000) / (performance.now() - t0),
  floodMs,
  linesSent,
  flooderAcks: config.ping ? flooder.pongs : flooderAcks,
  pairSent,
  pairReceived: latencies.length,
  latencies: latencies.map((v) => Math.round(v * 1000) / 1000),
  honestBytes: honest.map((c) => c.received),
  drops: Object.fromEntries(Object.entries(drops).map(([role, d]) => [role, { ...d }])),
};
for (const client of [pairA, pairB, flooder, ...honest, ...deaf]) client.destroy();
process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(0));
