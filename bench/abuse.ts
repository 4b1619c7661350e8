/**
 * Flood benchmark (issue 17 items 2, 4 and 7): one member of a `--room`
 * server sends as fast as the server reads it, while a good pair talks,
 * honest members read at 1 MB/s, and (in one case) 97 members never read.
 * Each server runs as its own process (`deno run --allow-net server.ts
 * --room --port 0 --quiet`), the baseline first, in the same run; the load
 * is one Node process (bench/abuse_load.mjs, node:crypto).
 *
 * Reports per server and case: the flooder's lines read by the server per
 * second, the good pair's line latency (p50, p99), honest and good members
 * dropped, the server's CPU (from /proc) per flooder line read and its peak
 * RSS (VmHWM, from /proc).
 *
 * ```sh
 * git worktree add /tmp/base 6de0a54
 * deno run --allow-run=deno,node --allow-read bench/abuse.ts --baseline /tmp/base
 * ```
 *
 * @module
 */

import {
  BENCH_DIR,
  benchmarkMain,
  commandLine,
  cpuMs,
  dhxServer,
  fmt,
  type GeneratorPool,
  machineFacts,
  markdownTable,
  memory,
  mib,
  parseCompareArgs,
  percentile,
  reportHeader,
  type ServerDirs,
  ServerProcess,
  UsageError,
} from "./harness.ts";

const USAGE =
  `Usage: deno run --allow-run=deno,node --allow-read bench/abuse.ts [options] [-- DHX_SERVER_FLAGS]

Starts each server (\`deno run --allow-net server.ts --room --port 0 --quiet\`)
once per case, floods it from one member for --seconds, and measures a good
pair's latency, who was dropped, the server's CPU and its peak RSS.

Cases: short (100-byte lines, 5 members reading at 1 MB/s), long (60,000-byte
lines, the same), deaf (60,000-byte lines, 97 members that never read), ping
(pings instead of lines, 5 members reading at 1 MB/s).

Options (defaults):
  --seconds N        flood time per case (10)
  --cases LIST       which cases, comma-separated (short,long,deaf,ping)
  --server-dir DIR   where server.ts is (the repository root)
  --baseline DIR     another checkout to measure first, in the same run
  --json             one JSON document instead of tables
  -h, --help         this help

Everything after -- goes to server.ts (both servers).`;

/** The cases: line size, honest readers at 1 MB/s, members that never read. */
const CASES: Record<
  string,
  { size: number; honest: number; deaf: number; ping?: boolean; what: string }
> = {
  short: { size: 100, honest: 5, deaf: 0, what: "100-byte lines; 5 members read at 1 MB/s" },
  long: { size: 60_000, honest: 5, deaf: 0, what: "60,000-byte lines; 5 members read at 1 MB/s" },
  deaf: { size: 60_000, honest: 0, deaf: 97, what: "60,000-byte lines; 97 members never read" },
  ping: { size: 0, honest: 5, deaf: 0, ping: true, what: "pings; 5 members read at 1 MB/s" },
};

interface Options {
  /** Load generators for benchmarkMain: one, idle (it reports Node's version). */
  generators: number;
  seconds: number;
  cases: string[];
  serverDirs: ServerDirs;
  json: boolean;
  dhxFlags: string[];
}

function parse(args: string[]): Options | "help" {
  const parsed = parseCompareArgs(args, { seconds: "10", cases: "short,long,deaf,ping" });
  if (parsed === "help") return "help";
  const { values } = parsed;
  const seconds = Number(values.seconds);
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 600) {
    throw new UsageError(`--seconds must be a whole number from 1 to 600: ${values.seconds}`);
  }
  const cases = values.cases.split(",").filter(Boolean);
  for (const name of cases) {
    if (!(name in CASES)) {
      throw new UsageError(`unknown case ${name}; cases: ${Object.keys(CASES).join(", ")}`);
    }
  }
  const { serverDirs, json, dhxFlags } = parsed;
  return { generators: 1, seconds, cases, serverDirs, json, dhxFlags };
}

/** What bench/abuse_load.mjs prints. */
interface LoadResult {
  loadCpuPct: number;
  floodMs: number;
  linesSent: number;
  flooderAcks: number;
  pairSent: number;
  pairReceived: number;
  latencies: number[];
  honestBytes: number[];
  drops: Record<string, { count: number; samples: string[] }>;
}

interface Row {
  server: string;
  case: string;
  linesReadPerSecond: number;
  pairP50Ms: number;
  pairP99Ms: number;
  pairReceived: string;
  honestDropped: number;
  honestMBps: number;
  pairDropped: number;
  flooderDropped: number;
  serverCpuPct: number;
  cpuUsPerLine: number;
  peakRssMiB: number;
  loadCpuPct: number;
  dropReasons: string[];
}

/** Runs one case against one server; the load's bounds end it by themselves. */
async function measure(options: Options, name: string, dir: string, caseName: string) {
  const spec = CASES[caseName];
  const server = await ServerProcess.start(
    dhxServer({ serverDir: dir, dhxFlags: options.dhxFlags }, new Set(), [], ["--room"]),
  );
  try {
    const cpu0 = await cpuMs(server.pid);
    const t0 = performance.now();
    const config = { port: server.port, seconds: options.seconds, ...spec };
    const load = new Deno.Command("node", {
      args: [`${BENCH_DIR}abuse_load.mjs`, JSON.stringify(config)],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    // The load stops by itself after --seconds; this only guards against a hang.
    const guard = setTimeout(() => {
      try {
        load.kill("SIGKILL");
      } catch { /* gone */ }
    }, (options.seconds + 120) * 1000);
    const { stdout } = await load.output();
    clearTimeout(guard);
    const wallMs = performance.now() - t0;
    const cpu1 = await cpuMs(server.pid);
    const peak = (await memory(server.pid)).peak;
    const result = JSON.parse(new TextDecoder().decode(stdout).trim()) as LoadResult;
    const seconds = result.floodMs / 1000;
    const reasons = Object.entries(result.drops).flatMap(([role, d]) =>
      d.samples.map((s) => `${role}: ${s}`)
    );
    return {
      server: name,
      case: caseName,
      linesReadPerSecond: result.flooderAcks / seconds,
      pairP50Ms: percentile(result.latencies, 50),
      pairP99Ms: percentile(result.latencies, 99),
      pairReceived: `${result.pairReceived}/${result.pairSent}`,
      honestDropped: result.drops.honest.count,
      honestMBps: result.honestBytes.length
        ? result.honestBytes.reduce((a, b) => a + b, 0) / result.honestBytes.length / 1e6 /
          seconds
        : NaN,
      pairDropped: result.drops.pair.count,
      flooderDropped: result.drops.flooder.count,
      serverCpuPct: (100 * (cpu1 - cpu0)) / wallMs,
      cpuUsPerLine: ((cpu1 - cpu0) * 1000) / Math.max(1, result.flooderAcks + result.pairSent),
      peakRssMiB: peak / 1048576,
      loadCpuPct: result.loadCpuPct,
      dropReasons: reasons,
    } satisfies Row;
  } finally {
    await server.stop();
  }
}

/** Measures each server on each case and prints the report. */
async function benchmark(options: Options, gen: GeneratorPool): Promise<number> {
  const rows: Row[] = [];
  const command = await commandLine();
  const facts = await machineFacts(gen.versions);
  for (const caseName of options.cases) {
    for (const { name, dir } of options.serverDirs) {
      rows.push(await measure(options, name, dir, caseName));
    }
  }
  if (options.json) {
    console.log(JSON.stringify({ command, facts, options, rows }, null, 2));
    return 0;
  }
  const lines = reportHeader("Flood: one member sending as fast as it is read", command, facts, [
    "",
    `Each case floods for ${options.seconds} s. Cases: ` +
    options.cases.map((c) => `${c} (${CASES[c].what})`).join("; ") +
    ". A good pair sends a line every 50 ms; its latency is A's send to B's receipt. " +
    "CPU µs per line: the server's CPU over the case divided by the lines it read " +
    "from the flooder and the pair. Load CPU %: the Node process playing every client " +
    "(under 100: it was not the bottleneck).",
    "",
  ]);
  lines.push(markdownTable(
    [
      "case",
      "server",
      "flood lines read/s",
      "pair p50 ms",
      "pair p99 ms",
      "pair lines",
      "honest dropped",
      "honest MB/s",
      "server CPU %",
      "CPU µs / line",
      "peak RSS MiB",
      "load CPU %",
      "drops",
    ],
    rows.map((r) => [
      r.case,
      r.server,
      fmt(r.linesReadPerSecond, 0),
      fmt(r.pairP50Ms, 1),
      fmt(r.pairP99Ms, 1),
      r.pairReceived,
      String(r.honestDropped),
      Number.isNaN(r.honestMBps) ? "-" : fmt(r.honestMBps, 2),
      fmt(r.serverCpuPct, 0),
      fmt(r.cpuUsPerLine, 0),
      mib(r.peakRssMiB * 1048576),
      fmt(r.loadCpuPct, 0),
      r.dropReasons.join("; ") || "none",
    ]),
  ));
  console.log(lines.join("\n"));
  return 0;
}

if (import.meta.main) {
  Deno.exit(await benchmarkMain(Deno.args, USAGE, parse, benchmark));
}
