/**
 * Load benchmark of the dhx server: C concurrent clients each do the DHX/1
 * handshake and then send M messages, waiting for every ack. The same
 * workload runs, in the same process and the same run, against two baselines:
 * a plain JSON-lines echo server (the ceiling) and a TLS 1.3 echo server.
 *
 * ```sh
 * deno task load                          # 200 clients × 100 messages, ffdhe2048
 * deno task load --clients 1000           # needs `ulimit -n` ≥ 2 × clients + 64
 * deno task load --host 127.0.0.1 --port 4444   # dhx row against an external server
 * ```
 *
 * The client driver is written here on dh.ts's primitives (LineConnection,
 * parseHello, respondToHello, sendRecord, Session.open), not runClient.
 * bench/cert.pem and bench/key.pem are a throwaway self-signed certificate for
 * the TLS baseline only.
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import {
  GROUPS,
  isGroupName,
  LineConnection,
  type Logger,
  parseHello,
  respondToHello,
  SECURE_GROUP_NAMES,
  withTimeout,
} from "../dh.ts";
import { startServer } from "../server.ts";

const USAGE = `Usage: deno task load [options]

Load benchmark: C concurrent clients each do the handshake, then send M
messages and wait for each ack, against the dhx server and two baselines
(plain JSON-lines echo, TLS 1.3 echo) in this same process.

Options:
  --clients C      concurrent clients (default 200)
  --messages M     messages per client (default 100)
  --group NAME     DH group of the in-process dhx server (default ffdhe2048)
  --window W       acks a client may wait for at once (default 10; 0 = send
                   all M, then collect the acks)
  --size BYTES     message size in bytes (default 64)
  --host HOST      with --port: benchmark an external dhx server instead of
                   the in-process one (baselines stay in-process; the task
                   allows 127.0.0.1 only; start it with --max-clients ≥ C)
  --port PORT      port of that external server
  --timeout SECS   bound on each client's handshake and on its whole message
                   phase (default 120)
  -h, --help       show this help

Each client opens one TCP connection; in-process that is two descriptors per
client (client end + server end), so \`ulimit -n\` must be at least
2 × C + 64 (1000 clients: 2064).`;

// ───────────────────────────────────────────────────────────────────────────
// Options
// ───────────────────────────────────────────────────────────────────────────

interface Options {
  clients: number;
  messages: number;
  group: string;
  window: number;
  size: number;
  host?: string;
  port?: number;
  timeoutMs: number;
}

class UsageError extends Error {}

function parseOptions(args: string[]): Options | "help" {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        clients: { type: "string" },
        messages: { type: "string" },
        group: { type: "string" },
        window: { type: "string" },
        size: { type: "string" },
        host: { type: "string" },
        port: { type: "string" },
        timeout: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) return "help";
  const int = (
    name: string,
    text: string | undefined,
    fallback: number,
    min: number,
    max: number,
  ) => {
    if (text === undefined) return fallback;
    if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
      throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got ${text}`);
    }
    return Number(text);
  };
  const group = values.group ?? "ffdhe2048";
  if (!isGroupName(group) || group === "toy") {
    throw new UsageError(
      `unknown group ${JSON.stringify(group)}; choose one of ${SECURE_GROUP_NAMES.join(", ")}`,
    );
  }
  if (values.host !== undefined && values.port === undefined) {
    throw new UsageError("--host needs --port (the external dhx server's port)");
  }
  return {
    clients: int("clients", values.clients, 200, 1, 100_000),
    messages: int("messages", values.messages, 100, 1, 1_000_000),
    group,
    window: int("window", values.window, 10, 0, 1_000_000),
    size: int("size", values.size, 64, 1, 65_536),
    host: values.port === undefined ? undefined : values.host ?? "127.0.0.1",
    port: values.port === undefined ? undefined : int("port", values.port, 0, 1, 65535),
    timeoutMs: int("timeout", values.timeout, 120, 1, 86_400) * 1000,
  };
}

// ───────────────────────────────────────────────────────────────────────────
// Client drivers: one per protocol, same shape
// ───────────────────────────────────────────────────────────────────────────

/** An established session as the load loop sees it. */
interface Channel {
  /** Queues message `seq` (in order); resolves when written. */
  send(seq: number, text: string): Promise<void>;
  /** The seq the next ack acknowledges. */
  receiveAck(): Promise<number>;
  /** Says goodbye and closes. */
  close(): Promise<void>;
}

type Connect = () => Promise<Channel>;

/**
 * A client TCP connection with Nagle's algorithm off: the driver must not add
 * delayed-ACK stalls of its own (LineConnection turns it off as well).
 */
async function tcpConnect(hostname: string, port: number): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname, port });
  conn.setNoDelay(true);
  return conn;
}

/** The dhx client: dh.ts's LineConnection + parseHello/respondToHello. */
function dhxConnect(host: string, port: number): Connect {
  return async () => {
    const link = new LineConnection(await tcpConnect(host, port));
    try {
      const helloLine = await link.readLine();
      if (helloLine === null) throw new Error("server closed the connection before hello");
      const { keyLine, session } = await respondToHello(parseHello(helloLine, { insecure: false }));
      await link.writeLine(keyLine);
      return {
        send: (_seq, text) => link.sendRecord(session, "msg", text),
        async receiveAck() {
          const line = await link.readLine();
          if (line === null) throw new Error("server closed the connection");
          const frame = await session.open(line);
          if (frame.type !== "ack") {
            throw new Error(frame.type === "error" ? frame.message : `got ${frame.type}, not ack`);
          }
          return Number(frame.text);
        },
        async close() {
          await link.sendRecord(session, "bye", "").catch(() => {});
          link.close();
        },
      };
    } catch (error) {
      link.close();
      throw error;
    }
  };
}

/** Baselines: the same line exchange (hello, key, msg/ack, bye) in clear JSON. */
function lineConnect(open: () => Promise<Deno.Conn>): Connect {
  return async () => {
    const link = new LineConnection(await open());
    try {
      const hello = await link.readLine();
      if (hello === null || JSON.parse(hello).type !== "hello") throw new Error("no hello");
      await link.writeLine(KEY_LINE);
      return {
        send: (seq, text) => link.writeLine(JSON.stringify({ type: "msg", seq, data: text })),
        async receiveAck() {
          const line = await link.readLine();
          if (line === null) throw new Error("server closed the connection");
          const frame = JSON.parse(line);
          if (frame.type !== "ack") throw new Error(`got ${frame.type}, not ack`);
          return frame.seq;
        },
        async close() {
          await link.writeLine(BYE_LINE).catch(() => {});
          link.close();
        },
      };
    } catch (error) {
      link.close();
      throw error;
    }
  };
}

// ───────────────────────────────────────────────────────────────────────────
// Servers
// ───────────────────────────────────────────────────────────────────────────

/** The backlog Deno.listen asks for (`ss -ltn`: Send-Q 511). */
const LISTEN_BACKLOG = 511;

const HELLO_LINE = JSON.stringify({ type: "hello", protocol: "plain/1" });
const KEY_LINE = JSON.stringify({ type: "key" });
const BYE_LINE = JSON.stringify({ type: "bye" });

/** A server under test, with what the benchmark needs to know of it. */
interface Target {
  name: "dhx" | "plain" | "tls";
  connect: Connect;
  /** Sessions the server side has established (undefined: cannot know). */
  sessions(): number | undefined;
  /** Connections the server still serves (undefined: cannot know). */
  connections(): number | undefined;
  /** Server-side errors seen so far. */
  errors: string[];
  /** Whether the server runs in this process. */
  inProcess: boolean;
  /** Rejects if the server stops accepting by itself (not by close()). */
  stopped: Promise<never>;
  close(): Promise<void>;
}

/** A promise that rejects with a reason once `finished` settles unless `closing()`. */
function unexpectedStop(finished: Promise<unknown>, closing: () => boolean, what: string) {
  const stopped = finished.then(
    () => {
      if (!closing()) throw new Error(what);
      return new Promise<never>(() => {});
    },
    (error) => {
      if (!closing()) throw error;
      return new Promise<never>(() => {});
    },
  );
  stopped.catch(() => {});
  return stopped;
}

/** The dhx server, in-process, with a logger that only counts. */
function dhxTarget(options: Options): Target {
  const errors: string[] = [];
  let sessions = 0;
  const logger: Logger = {
    info() {},
    notice() {},
    // "Session with PEER: fingerprint …" is the server's "handshake done".
    success(message) {
      if (message.startsWith("Session with ")) sessions++;
    },
    error(message) {
      errors.push(message);
    },
  };
  const server = startServer({
    host: "127.0.0.1",
    port: 0,
    group: GROUPS[options.group as keyof typeof GROUPS],
    maxClients: options.clients + 16,
    handshakeTimeoutMs: options.timeoutMs,
    logger,
  });
  let closing = false;
  return {
    name: "dhx",
    connect: dhxConnect("127.0.0.1", server.addr.port),
    sessions: () => sessions,
    connections: () => server.connections,
    errors,
    inProcess: true,
    // server.ts ends its accept loop on any accept error (EMFILE included).
    stopped: unexpectedStop(
      server.finished,
      () => closing,
      "the dhx server stopped accepting connections (an accept error such as EMFILE: " +
        "too many open files)",
    ),
    close: () => {
      closing = true;
      return server.close();
    },
  };
}

/** An echo server: hello, key, then one JSON ack line per msg line. */
function echoTarget(
  name: "plain" | "tls",
  listener: Deno.Listener,
  connect: Connect,
  tune?: (conn: Deno.Conn) => void,
): Target {
  const errors: string[] = [];
  const links = new Set<LineConnection>();
  const handlers = new Set<Promise<void>>();
  let sessions = 0;
  async function serve(link: LineConnection): Promise<void> {
    try {
      await link.writeLine(HELLO_LINE);
      const key = await link.readLine();
      if (key === null) return;
      if (JSON.parse(key).type !== "key") throw new Error("expected key");
      sessions++;
      for (;;) {
        const line = await link.readLine();
        if (line === null) return;
        const frame = JSON.parse(line);
        if (frame.type === "bye") return;
        if (frame.type !== "msg" || typeof frame.data !== "string") throw new Error("bad frame");
        await link.writeLine(JSON.stringify({ type: "ack", seq: frame.seq }));
      }
    } catch (error) {
      if (!link.closed) errors.push(`${link.peer}: ${(error as Error).message}`);
    } finally {
      link.close();
      links.delete(link);
    }
  }
  let closing = false;
  const accepting = (async () => {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (closing) return;
        throw new Error(`the ${name} server cannot accept: ${describe(error)}`);
      }
      tune?.(conn);
      const link = new LineConnection(conn);
      links.add(link);
      const handler = serve(link);
      handlers.add(handler);
      handler.finally(() => handlers.delete(handler));
    }
  })();
  return {
    name,
    connect,
    sessions: () => sessions,
    connections: () => links.size,
    errors,
    inProcess: true,
    stopped: unexpectedStop(accepting, () => closing, `the ${name} server stopped accepting`),
    async close() {
      closing = true;
      listener.close();
      await accepting.catch(() => {});
      for (const link of links) link.close();
      await Promise.all(handlers);
    },
  };
}

function plainTarget(): Target {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  // The ceiling turns Nagle off on its side too, like server.ts. The TLS
  // server cannot (a TlsConn has no setNoDelay): see the notes printed.
  return echoTarget(
    "plain",
    listener,
    lineConnect(() => tcpConnect("127.0.0.1", port)),
    (conn) => (conn as Deno.TcpConn).setNoDelay(true),
  );
}

function tlsTarget(cert: string, key: string): Target {
  const listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key });
  const { port } = listener.addr as Deno.NetAddr;
  return echoTarget(
    "tls",
    listener,
    // Deno.connectTls cannot turn Nagle off (a TlsConn has no setNoDelay);
    // startTls over a TCP connection that has it off is the same TLS client.
    lineConnect(async () =>
      Deno.startTls(await tcpConnect("127.0.0.1", port), {
        hostname: "127.0.0.1",
        caCerts: [cert],
      })
    ),
  );
}

function externalDhxTarget(host: string, port: number): Target {
  return {
    name: "dhx",
    connect: dhxConnect(host, port),
    sessions: () => undefined,
    connections: () => undefined,
    errors: [],
    inProcess: false,
    stopped: new Promise<never>(() => {}),
    close: () => Promise.resolve(),
  };
}

// ───────────────────────────────────────────────────────────────────────────
// The workload
// ───────────────────────────────────────────────────────────────────────────

interface Result {
  name: string;
  clients: number;
  /** Clients that completed the handshake. */
  ready: number;
  /** Duration of the handshake phase, ms. */
  handshakeMs: number;
  handshakeLatencies: Float64Array;
  /** Duration of the message phase, ms. */
  messageMs: number;
  ackLatencies: Float64Array;
  sent: number;
  acked: number;
  errors: string[];
  /** Whether the server's session count confirmed the handshake phase (undefined: unknown). */
  serverConfirmed: boolean | undefined;
  rss: { before: number; peak: number; after: number };
  heapPeak: number;
  /** CPU seconds of the whole process in each phase. */
  cpuHandshake: number;
  cpuMessages: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The 1, 5 and 15 minute load averages, or why they are unknown. */
function loadavg(): string {
  try {
    return Deno.loadavg().map((x) => x.toFixed(2)).join(" ");
  } catch {
    return "unknown (needs --allow-sys=loadavg)";
  }
}

function cpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

async function waitFor(condition: () => boolean, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) return false;
    await sleep(2);
  }
  return true;
}

/** C clients: all handshake at once; then, together, M messages each. */
async function runWorkload(
  target: Target,
  clients: number,
  messages: number,
  options: Options,
): Promise<Result> {
  const window = options.window === 0 ? messages : options.window;
  const text = "x".repeat(options.size);
  const timeoutMs = options.timeoutMs;
  const handshakeLatencies = new Float64Array(clients).fill(NaN);
  const ackLatencies = new Float64Array(clients * messages).fill(NaN);
  const errors: string[] = [];
  let sent = 0;
  let acked = 0;
  let settled = 0; // clients done with the handshake, either way
  let allSettled!: () => void;
  const handshakesSettled = new Promise<void>((resolve) => allSettled = resolve);
  let startMessages!: () => void;
  const messagesStart = new Promise<void>((resolve) => startMessages = resolve);
  const settle = () => {
    if (++settled === clients) allSettled();
  };
  // Running out of descriptors (or the server dying) ends the run at once
  // rather than after every client's timeout.
  let fail!: (error: Error) => void;
  const fatal = Promise.race([
    target.stopped,
    new Promise<never>((_, reject) => fail = reject),
  ]);
  fatal.catch(() => {});

  const memory = { before: Deno.memoryUsage().rss, peak: 0, after: 0 };
  let heapPeak = 0;
  const sample = () => {
    const usage = Deno.memoryUsage();
    memory.peak = Math.max(memory.peak, usage.rss);
    heapPeak = Math.max(heapPeak, usage.heapUsed);
  };
  sample();
  const sampler = setInterval(sample, 20);

  async function client(index: number): Promise<void> {
    const started = performance.now();
    let channel: Channel;
    try {
      channel = await Promise.race([
        withTimeout(target.connect(), timeoutMs, "handshake timed out"),
        fatal,
      ]);
      handshakeLatencies[index] = performance.now() - started;
    } catch (error) {
      errors.push(`client ${index} handshake: ${describe(error)}`);
      if (EMFILE.test(String(error))) fail(new Error(describe(error)));
      return settle();
    }
    settle();
    await messagesStart;
    const sentAt = new Float64Array(messages);
    let next = 0;
    let done = 0;
    let writeError: unknown;
    // One watchdog per client rather than a timer per ack (timers cost CPU
    // that would be charged to the server under test).
    let timedOut = false;
    const watchdog = setTimeout(() => {
      timedOut = true;
      channel.close();
    }, timeoutMs);
    const sendOne = () => {
      const seq = next++;
      sentAt[seq] = performance.now();
      sent++;
      channel.send(seq, text).catch((error) => writeError ??= error);
    };
    try {
      while (next < messages && next - done < window) sendOne();
      while (done < messages) {
        if (writeError) throw writeError;
        const seq = await channel.receiveAck();
        if (seq !== done) throw new Error(`ack for ${seq}, expected ${done}`);
        ackLatencies[index * messages + seq] = performance.now() - sentAt[seq];
        done++;
        acked++;
        while (next < messages && next - done < window) sendOne();
      }
    } catch (error) {
      const reason = timedOut ? `no progress within ${timeoutMs / 1000} s` : describe(error);
      errors.push(`client ${index} messages: ${reason}`);
    } finally {
      clearTimeout(watchdog);
      await channel.close();
    }
  }

  const cpu0 = cpuSeconds();
  const t0 = performance.now();
  const running = Array.from({ length: clients }, (_, i) => client(i));
  try {
    await Promise.race([handshakesSettled, fatal]);
  } catch (error) {
    clearInterval(sampler);
    throw error;
  }
  // The handshake ends when both sides hold the session: wait for the server's
  // own count too (in-process servers), so its share of the work is in it.
  let serverConfirmed: boolean | undefined;
  if (target.sessions() !== undefined) {
    const ready = clients - errors.length;
    // Give up after 5 s without progress (e.g. the server's log line changed).
    let last = -1;
    let lastChange = performance.now();
    serverConfirmed = await waitFor(() => {
      const count = target.sessions() ?? 0;
      if (count !== last) [last, lastChange] = [count, performance.now()];
      return count >= ready || performance.now() - lastChange > 5000;
    }, timeoutMs) && (target.sessions() ?? 0) >= ready;
  }
  const t1 = performance.now();
  const cpu1 = cpuSeconds();
  startMessages();
  try {
    await Promise.race([Promise.all(running), fatal]);
  } catch (error) {
    clearInterval(sampler);
    throw error;
  }
  const t2 = performance.now();
  const cpu2 = cpuSeconds();
  // Let the server see every bye and close before the next row starts.
  await waitFor(() => (target.connections() ?? 0) === 0, 10_000);
  clearInterval(sampler);
  sample();
  memory.after = Deno.memoryUsage().rss;
  return {
    name: target.name,
    clients,
    ready: handshakeLatencies.filter((x) => !Number.isNaN(x)).length,
    handshakeMs: t1 - t0,
    handshakeLatencies,
    messageMs: t2 - t1,
    ackLatencies,
    sent,
    acked,
    errors: [...errors, ...target.errors.splice(0).map((e) => `server: ${e}`)],
    serverConfirmed,
    rss: memory,
    heapPeak,
    cpuHandshake: cpu1 - cpu0,
    cpuMessages: cpu2 - cpu1,
  };
}

/** One client at a time: the handshake latency without any queueing. */
async function unloadedHandshake(target: Target, runs: number): Promise<number[]> {
  const latencies: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    const channel = await Promise.race([
      withTimeout(target.connect(), 10_000, `${target.name}: unloaded handshake timed out`),
      target.stopped,
    ]);
    latencies.push(performance.now() - started);
    await channel.close();
    await waitFor(() => (target.connections() ?? 0) === 0, 5000);
  }
  return latencies;
}

// ───────────────────────────────────────────────────────────────────────────
// Report
// ───────────────────────────────────────────────────────────────────────────

const EMFILE = /too many open files/i;

function describe(error: unknown): string {
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return EMFILE.test(message) && !message.includes("ulimit")
    ? `${message} (raise the limit: ulimit -n ≥ 2 × clients + 64)`
    : message;
}

/** Nearest-rank percentile of the finite values. */
function percentile(values: ArrayLike<number>, p: number): number {
  const sorted = Float64Array.from(values).filter((x) => !Number.isNaN(x)).sort();
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

const fmt = (x: number, digits = 0) =>
  Number.isFinite(x)
    ? x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : "n/a";
const ms = (x: number) => fmt(x, x < 10 ? 2 : x < 100 ? 1 : 0);
const mib = (bytes: number) => fmt(bytes / 1048576, 1);

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join("  ");
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

const sessionsPerSecond = (r: Result) => r.ready / (r.handshakeMs / 1000);
const messagesPerSecond = (r: Result) => r.acked / (r.messageMs / 1000);

function report(results: Result[], options: Options, unloaded: Map<string, number[]>): boolean {
  const plain = results.find((r) => r.name === "plain");
  const rows = results.map((r) => {
    const ratio = (mine: number, theirs: number | undefined) =>
      theirs === undefined ? "n/a" : `${fmt((100 * mine) / theirs)}%`;
    return [
      r.name,
      fmt(sessionsPerSecond(r)),
      ms(percentile(r.handshakeLatencies, 50)),
      ms(percentile(r.handshakeLatencies, 99)),
      fmt(messagesPerSecond(r)),
      ms(percentile(r.ackLatencies, 50)),
      ms(percentile(r.ackLatencies, 99)),
      fmt(r.sent - r.acked),
      ratio(sessionsPerSecond(r), plain && sessionsPerSecond(plain)),
      ratio(messagesPerSecond(r), plain && messagesPerSecond(plain)),
    ];
  });
  console.log(table([
    "row",
    "sessions/s",
    "hs p50 ms",
    "hs p99 ms",
    "msgs/s",
    "ack p50 ms",
    "ack p99 ms",
    "lost",
    "sess/s vs plain",
    "msgs/s vs plain",
  ], rows));

  console.log(
    "\nProcess memory (Deno.memoryUsage().rss of the whole process: server AND all clients;" +
      " an external server's own memory is not measured here)",
  );
  console.log(table(
    [
      "row",
      "rss before MiB",
      "rss peak MiB",
      "rss after MiB",
      "heap peak MiB",
      "cpu% hs",
      "cpu ms/hs",
      "cpu% msgs",
      "cpu µs/msg",
    ],
    results.map((r) => [
      r.name === "dhx" && options.port !== undefined ? "dhx (clients only)" : r.name,
      mib(r.rss.before),
      mib(r.rss.peak),
      mib(r.rss.after),
      mib(r.heapPeak),
      `${fmt((100 * r.cpuHandshake) / (r.handshakeMs / 1000))}%`,
      ms((1000 * r.cpuHandshake) / r.ready),
      `${fmt((100 * r.cpuMessages) / (r.messageMs / 1000))}%`,
      fmt((1e6 * r.cpuMessages) / r.acked),
    ]),
  ));
  console.log(
    "(cpu%: process CPU time / wall time of the phase, 100% = one of the 2 cores; cpu per " +
      "handshake and per message: process CPU time of the phase / count, client and server " +
      "together in-process, less sensitive to other load than the rates)",
  );

  console.log("\nUnloaded handshake (one client at a time; connect → session ready, client view)");
  console.log(table(
    ["row", "runs", "p50 ms", "min ms"],
    [...unloaded].map((
      [name, l],
    ) => [name, String(l.length), ms(percentile(l, 50)), ms(Math.min(...l))]),
  ));

  let ok = true;
  for (const r of results) {
    const lost = r.sent - r.acked;
    const failed = r.clients - r.ready;
    if (lost !== 0 || failed !== 0 || r.errors.length > 0) ok = false;
    if (failed > 0) console.log(`\n[!] ${r.name}: ${failed} of ${r.clients} handshakes failed`);
    if (lost > 0) console.log(`[!] ${r.name}: ${lost} messages sent and never acked`);
    if (r.acked !== r.clients * options.messages) {
      console.log(`[!] ${r.name}: ${r.acked} of ${r.clients * options.messages} messages acked`);
      ok = false;
    }
    for (const e of r.errors.slice(0, 5)) console.log(`[!] ${r.name}: ${e}`);
    if (r.errors.length > 5) console.log(`[!] ${r.name}: … ${r.errors.length - 5} more errors`);
    if (r.serverConfirmed === false) {
      console.log(
        `[!] ${r.name}: the server never confirmed every session (phase end: client view)`,
      );
    }
  }

  console.log(`
Notes:
  - window ${
    options.window === 0
      ? "0: each client sends all its messages, then collects the acks"
      : `${options.window}: each client keeps at most ${options.window} messages unacked`
  };
    ack latency = send call → ack opened, so it includes the client's own sealing and opening.
  - handshake latency = connect → client session ready (key line written). The handshake phase
    ends when the server holds every session too (in-process: counted from the server's own
    "Session with" log line), so sessions/s includes both sides' work.
  - plain/tls do the same exchange (hello line, key line, msg/ack lines, bye) in clear JSON
    (tls: over TLS 1.3), with the same LineConnection framing as dhx.
  - Nagle: off on every plain TCP socket (LineConnection sets TCP_NODELAY: dhx and plain, both
    ends); the tls server cannot turn it off (Deno's TlsConn has no setNoDelay: one delayed-ACK
    stall, ~40 ms, per TLS handshake, apparently behind the TLS 1.3 session tickets).
  - One process, one JS thread for servers and clients: the dhx client's own modpows and WebCrypto
    calls compete with the server's. At saturation Deno serves connections unevenly (it does not
    complete queued async operations, WebCrypto calls included, in order), so some connections
    wait seconds while others finish: that is the long ack p99 tail (plain shows it too, dhx
    more), not lost messages.
  - rss is the whole process and only grows across rows (dhx runs first, then plain, then tls).`);
  if (options.clients > LISTEN_BACKLOG) {
    console.log(
      `  - ${options.clients} simultaneous connects overflow the listen backlog (Deno uses ${LISTEN_BACKLOG}):
    the kernel drops the excess SYNs and the clients retry after 1 s (then 3 s), which is most of
    the handshake p99 at this size.`,
    );
  }
  if (options.port !== undefined) {
    console.log(
      `  - dhx row: the external server ${options.host}:${options.port} runs in its own process,
    so only its clients share this process; its ratios compare it with baselines that share
    one thread with their clients. Measure that server's memory and CPU from outside.`,
    );
  }

  const dhx = results.find((r) => r.name === "dhx");
  if (dhx && plain) {
    const hs50 = percentile(dhx.handshakeLatencies, 50);
    const idle50 = percentile(unloaded.get("dhx") ?? [], 50);
    const share = messagesPerSecond(dhx) / messagesPerSecond(plain);
    const verdict = (pass: boolean) => pass ? "met" : "NOT met";
    console.log(`\nTargets (group ${options.group}; they are stated for ffdhe2048):`);
    console.log(
      `  handshake p50 ≤ 3 ms:    ${ms(hs50)} ms with ${dhx.clients} clients at once, ` +
        `${ms(idle50)} ms unloaded → ${verdict(hs50 <= 3)} (loaded), ${
          verdict(idle50 <= 3)
        } (unloaded)`,
    );
    console.log(
      `  ≥ 500 handshakes/s:      ${fmt(sessionsPerSecond(dhx))}/s → ${
        verdict(sessionsPerSecond(dhx) >= 500)
      }`,
    );
    console.log(
      `  msgs/s ≥ 50% of plain:   ${fmt(messagesPerSecond(dhx))} vs ${
        fmt(messagesPerSecond(plain))
      } = ${fmt(share * 100)}% → ${verdict(share >= 0.5)}`,
    );
  }
  return ok;
}

// ───────────────────────────────────────────────────────────────────────────
// Main
// ───────────────────────────────────────────────────────────────────────────

async function main(args: string[]): Promise<number> {
  let options: Options;
  try {
    const parsed = parseOptions(args);
    if (parsed === "help") {
      console.log(USAGE);
      return 0;
    }
    options = parsed;
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`[!] ${error.message} (see --help)`);
    return 2;
  }
  const benchDir = new URL(".", import.meta.url);
  const cert = await Deno.readTextFile(new URL("cert.pem", benchDir));
  const key = await Deno.readTextFile(new URL("key.pem", benchDir));
  const external = options.port !== undefined;

  console.log(
    `dhx load benchmark: ${options.clients} clients × ${options.messages} messages of ` +
      `${options.size} bytes, window ${
        options.window === 0 ? "unbounded (send all, then collect acks)" : options.window
      } unacked per client, group ${options.group}`,
  );
  console.log(
    `Deno ${Deno.version.deno} (V8 ${Deno.version.v8}), ${navigator.hardwareConcurrency} cores. ` +
      (external
        ? `dhx row: external server ${options.host}:${options.port}; baselines in-process.`
        : "Servers and clients share ONE process and ONE JS thread (plus Deno's crypto/IO " +
          "threads): every dhx handshake costs the server's 2 modpows AND the client's 2 on " +
          "that thread, so these are lower bounds for a server running alone."),
  );
  console.log(`Load average before: ${loadavg()} (other processes on the machine skew results)`);
  console.log(
    `Needs ulimit -n ≥ ${
      2 * options.clients + 64
    } (2 descriptors per in-process client + slack). Phases: all clients handshake at once; ` +
      "when both sides hold every session, all clients send together.\n",
  );

  const targets: Target[] = [
    external ? externalDhxTarget(options.host!, options.port!) : dhxTarget(options),
    plainTarget(),
    tlsTarget(cert, key),
  ];
  const results: Result[] = [];
  const unloaded = new Map<string, number[]>();
  try {
    for (const target of targets) {
      // Warm-up (JIT, TLS session caches, thread pools): not measured.
      const warm = await runWorkload(target, Math.min(20, options.clients), 10, options);
      if (warm.errors.length > 0) {
        throw new Error(`${target.name} warm-up failed: ${warm.errors[0]}`);
      }
      unloaded.set(target.name, await unloadedHandshake(target, 25));
      results.push(await runWorkload(target, options.clients, options.messages, options));
    }
  } catch (error) {
    console.error(`[!] ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  } finally {
    await Promise.all(targets.map((t) => t.close()));
  }
  const order = ["dhx", "plain", "tls"];
  results.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
  const ok = report(results, options, unloaded);
  console.log(`\nLoad average after: ${loadavg()}`);
  return ok ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
