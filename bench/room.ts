/**
 * Room-mode benchmark: one dhx server started with `--room`, N clients (Node,
 * bench/loadgen.mjs) that each send a chat line at a steady rate; the server
 * relays every line as a `chat` record to the N − 1 others, which ack it
 * (DHX/1 revision 2, "Server modes"). One pass per rate, on the same sessions.
 *
 * Reports deliveries per second (one delivery = one relayed line received by
 * one member), server CPU per delivery, delivery latency (sender's send →
 * receiver's decrypt, one clock), the server's peak RSS and lost deliveries
 * (lines sent × (N − 1) − chats received).
 *
 * ```sh
 * deno run --allow-run=deno,node bench/room.ts                    # 100 clients, rates 0.25,0.5,1
 * deno run --allow-run=deno,node bench/room.ts --rates 2 --seconds 10
 * ```
 *
 * Until server.ts has `--room`, this stops with a message saying so.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  BENCH_DIR,
  benchmarkMain,
  commandLine,
  dhxServer,
  fmt,
  GeneratorPool,
  loadAverage,
  machineFacts,
  markdownTable,
  measured,
  memory,
  mib,
  openFileLimit,
  percentile,
  reportHeader,
  type RoomResult,
  serverFlags,
  ServerProcess,
  type ServerSpec,
  ServerStartError,
  type SettleResult,
  UsageError,
} from "./harness.ts";

const USAGE = `Usage: deno run --allow-run=deno,node bench/room.ts [options] [-- DHX_SERVER_FLAGS]

Starts \`deno run --allow-net server.ts --port 0 --quiet --room\` and N clients
that each send chat lines at a steady rate; the server relays each line to the
N − 1 others, which ack it.

Options (defaults):
  --clients N        members of the room (100)
  --rates LIST       lines per second per client, one pass each (0.25,0.5,1)
  --seconds S        sending time per pass (5)
  --size BYTES       chat line length (64)
  --generators N     load generator processes (cores / 2, at least 1)
  --server-dir DIR   where server.ts is (the repository root)
  --json             one JSON document instead of tables
  -h, --help         this help

Everything after -- goes to server.ts (e.g. -- --keepalive 5).`;

interface Options {
  clients: number;
  rates: number[];
  seconds: number;
  size: number;
  generators: number;
  serverDir: string;
  json: boolean;
  dhxFlags: string[];
}

function positive(name: string, text: string, integer: boolean): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new UsageError(`--${name} must be a positive ${integer ? "integer" : "number"}: ${text}`);
  }
  return value;
}

function parseOptions(args: string[]): Options | "help" {
  const dash = args.indexOf("--");
  let values;
  try {
    ({ values } = parseArgs({
      args: dash < 0 ? args : args.slice(0, dash),
      strict: true,
      allowPositionals: false,
      options: {
        clients: { type: "string", default: "100" },
        rates: { type: "string", default: "0.25,0.5,1" },
        seconds: { type: "string", default: "5" },
        size: { type: "string", default: "64" },
        generators: {
          type: "string",
          default: String(Math.max(1, Math.floor(navigator.hardwareConcurrency / 2))),
        },
        "server-dir": { type: "string", default: new URL("..", `file://${BENCH_DIR}`).pathname },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) return "help";
  const clients = positive("clients", values.clients, true);
  if (clients < 2) throw new UsageError("--clients must be at least 2 (someone must listen)");
  return {
    clients,
    rates: values.rates.split(",").map((rate) => positive("rates", rate, false)),
    seconds: positive("seconds", values.seconds, false),
    size: Math.max(24, positive("size", values.size, true)),
    generators: positive("generators", values.generators, true),
    serverDir: values["server-dir"],
    json: values.json,
    dhxFlags: dash < 0 ? [] : args.slice(dash + 1),
  };
}

/** The dhx server in room mode, with the flags it has set high. */
function roomServer(options: Options, supported: Set<string>): ServerSpec {
  const auto: [string, string][] = [
    ["--max-clients", String(options.clients + 64)],
    ["--max-per-address", "100000"],
  ];
  return dhxServer(options, supported, auto, ["--room"]);
}

/** One pass at one rate. */
interface Pass {
  rate: number;
  offeredLinesPerSec: number;
  linesSent: number;
  linesAcked: number;
  expected: number;
  delivered: number;
  lost: number;
  deliveriesPerSec: number;
  serverCpuUsPerDelivery: number;
  serverCpuPct: number;
  genCpuPct: number;
  /** CPU that other processes used during the pass, % of one core. */
  otherCpuPct: number;
  p50: number;
  p99: number;
  peakRss: number;
  errors: number;
  errorSamples: string[];
}

async function runPass(
  server: ServerProcess,
  gen: GeneratorPool,
  options: Options,
  rate: number,
): Promise<Pass> {
  const phase = await measured(
    server.pid,
    () => gen.held<RoomResult>({ cmd: "room", rate, seconds: options.seconds, size: options.size }),
  );
  const { result } = phase;
  const expected = result.linesSent * (options.clients - 1);
  return {
    rate,
    offeredLinesPerSec: options.clients * rate,
    linesSent: result.linesSent,
    linesAcked: result.linesAcked,
    expected,
    delivered: result.delivered,
    lost: expected - result.delivered,
    deliveriesPerSec: result.delivered / (result.deliveryMs / 1000),
    serverCpuUsPerDelivery: (1000 * phase.serverCpuMs) / result.delivered,
    serverCpuPct: phase.serverCpuPct,
    genCpuPct: result.genCpuPct,
    otherCpuPct: phase.otherCpuPct,
    p50: percentile(result.latencies, 50),
    p99: percentile(result.latencies, 99),
    peakRss: (await memory(server.pid)).peak,
    errors: result.errors.count,
    errorSamples: result.errors.samples,
  };
}

/** Starts the room server, or explains why room mode is not there. */
async function startRoomServer(spec: ServerSpec): Promise<ServerProcess> {
  try {
    return await ServerProcess.start(spec);
  } catch (error) {
    if (!(error instanceof ServerStartError)) throw error;
    const output = error.lines.join("\n");
    if (/room/i.test(output) || /unknown|unrecognized|usage/i.test(output)) {
      throw new Error(
        'server.ts rejected --room: room mode (docs/protocol.md, "Server modes") is ' +
          `not in this server.ts yet, so there is nothing to measure. It said:\n    ${
            error.lines.slice(-4).join("\n    ")
          }`,
      );
    }
    throw error;
  }
}

/** Opens the room and checks that the server behaves as a room. */
async function joinRoom(
  server: ServerProcess,
  gen: GeneratorPool,
  options: Options,
): Promise<{ joinMs: number; notices: number }> {
  const target = { kind: "dhx", port: server.port };
  const opened = await gen.open({ target, count: options.clients, concurrency: 16 });
  if (opened.opened < options.clients) {
    throw new Error(
      `only ${opened.opened} of ${options.clients} clients joined: ${
        opened.errors.samples.join("; ")
      }`,
    );
  }
  const settled = await gen.held<SettleResult>({ cmd: "settle", quietMs: 500 });
  return { joinMs: opened.wallMs, notices: settled.notices };
}

function passTable(passes: Pass[], clients: number): string {
  const rows = passes.map((p) => [
    fmt(p.rate),
    fmt(p.offeredLinesPerSec),
    fmt(p.offeredLinesPerSec * (clients - 1)),
    fmt(p.deliveriesPerSec),
    fmt(p.serverCpuUsPerDelivery, 1),
    fmt(p.serverCpuPct, 0),
    fmt(p.genCpuPct, 0),
    fmt(p.otherCpuPct, 0),
    fmt(p.p50),
    fmt(p.p99),
    `${fmt(p.lost, 0)} of ${fmt(p.expected, 0)}`,
    mib(p.peakRss),
  ]);
  return markdownTable([
    "lines/s per client",
    "lines/s offered",
    "deliveries/s offered",
    "deliveries/s",
    "server CPU µs/delivery",
    "server CPU %",
    "gen CPU %",
    "other CPU %",
    "p50 ms",
    "p99 ms",
    "lost",
    "peak RSS MiB",
  ], rows);
}

function passFindings(passes: Pass[]): string[] {
  const lines: string[] = [];
  for (const p of passes) {
    const at = `rate ${fmt(p.rate)}`;
    if (p.delivered === 0) {
      lines.push(`[!] ${at}: no chat was relayed: does this server's --room relay lines?`);
    }
    if (p.lost > 0) lines.push(`[!] ${at}: ${fmt(p.lost, 0)} deliveries lost`);
    if (p.otherCpuPct >= 25) {
      lines.push(`[!] ${at}: other processes used ${fmt(p.otherCpuPct, 0)}% of a core meanwhile`);
    }
    if (p.genCpuPct >= 85) {
      lines.push(`[!] ${at}: the load generator was saturated (${fmt(p.genCpuPct, 0)}%)`);
    }
    for (const sample of p.errorSamples.slice(0, 3)) lines.push(`    ${at}: ${sample}`);
  }
  return lines;
}

/** The human-readable report: header, one table, findings, notes. */
async function printRoomReport(
  header: string[],
  options: Options,
  passes: Pass[],
  findings: string[],
  join: { joinMs: number; notices: number },
): Promise<void> {
  const others = options.clients - 1;
  const joined = `${options.clients} clients joined in ${fmt(join.joinMs, 0)} ms`;
  const expectedNotices = (options.clients * others) / 2;
  console.log([
    ...header,
    `Load average after: ${await loadAverage()}`,
    "",
    `### Room: ${options.clients} clients, each sending ${options.size}-byte lines at a steady ` +
    `rate for ${options.seconds} s per pass; every line goes to the ${others} others`,
    "",
    passTable(passes, options.clients),
    "",
    ...(findings.length ? findings : ["No losses."]),
    "",
    "Notes:",
    "- A delivery is one relayed line received (and acked) by one member; deliveries/s counts them",
    "  from the first send to the last arrival. Server CPU (/proc/PID/stat, read once the server",
    "  has gone quiet) covers opening each line, sealing each chat and opening each ack.",
    "- Latency: the sender's send time → the receiver's decrypt, on this machine's one clock.",
    "- other CPU %: machine-wide busy time (/proc/stat) less the server's and the generators'.",
    `- ${joined}; ${join.notices} join notices received (${expectedNotices} if every join is`,
    "  announced to everyone already in the room).",
  ].join("\n"));
}

/** What a room run measured. */
interface RoomRun {
  join: { joinMs: number; notices: number };
  passes: Pass[];
}

/** Starts the room server, fills the room, runs one pass per rate, stops the server. */
async function measureRoom(
  spec: ServerSpec,
  gen: GeneratorPool,
  options: Options,
): Promise<RoomRun> {
  const server = await startRoomServer(spec);
  try {
    const join = await joinRoom(server, gen, options);
    console.error(`  ${options.clients} joined in ${fmt(join.joinMs, 0)} ms`);
    const passes: Pass[] = [];
    for (const rate of options.rates) {
      const pass = await runPass(server, gen, options, rate);
      passes.push(pass);
      console.error(
        `  rate ${rate}/s per client: ${fmt(pass.deliveriesPerSec)} deliveries/s, ` +
          `lost ${pass.lost}, server CPU ${fmt(pass.serverCpuPct, 0)}%`,
      );
      if (pass.delivered === 0) break; // not a room: more passes would say the same
    }
    await gen.held({ cmd: "close" });
    return { join, passes };
  } finally {
    await server.stop();
  }
}

async function benchmark(options: Options, gen: GeneratorPool): Promise<number> {
  const limit = (await openFileLimit(gen.pids[0])).soft;
  if (options.clients + 256 > limit) {
    console.error(
      `[!] ulimit -n is ${limit}: too low for ${options.clients} clients ` +
        `(run \`ulimit -n ${Math.max(4096, options.clients + 256)}\` first)`,
    );
    return 2;
  }
  const spec = roomServer(options, await serverFlags(options.serverDir));
  const facts = await machineFacts(gen.versions);
  const command = await commandLine();
  const header = reportHeader("dhx room benchmark", command, facts, [
    `Server: (cd ${spec.cwd} && ${spec.command} ${spec.args.join(" ")})`,
  ]);
  console.error(header.slice(2).join("\n"));
  const { join, passes } = await measureRoom(spec, gen, options);
  const findings = passFindings(passes);
  if (join.notices === 0) {
    findings.push("[!] no join notices arrived: the server may not be in room mode");
  }
  if (options.json) {
    const { clients, rates, seconds, size, generators } = options;
    const document = {
      command,
      machine: facts,
      settings: { clients, rates, seconds, size, generators },
      server: spec,
      join,
      passes,
      findings,
    };
    console.log(JSON.stringify(document, null, 2));
  } else {
    await printRoomReport(header, options, passes, findings, join);
  }
  const bad = passes.some((p) => p.lost > 0 || p.delivered === 0);
  return bad ? 1 : 0;
}

/** Runs the benchmark; an error ends it with one `[!]` line and exit code 1. */
async function benchmarkOrReport(options: Options, gen: GeneratorPool): Promise<number> {
  try {
    return await benchmark(options, gen);
  } catch (error) {
    console.error(`[!] ${(error as Error).message}`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await benchmarkMain(Deno.args, USAGE, parseOptions, benchmarkOrReport));
}
