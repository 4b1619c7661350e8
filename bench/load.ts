/**
 * Load benchmark of the dhx server against two baselines, each server in its own
 * process and the load from separate Node processes (bench/loadgen.mjs):
 *
 * - `dhx`: `deno run --allow-net server.ts --port 0 --quiet …` (DHX/1, ffdhe2048
 *   unless told otherwise);
 * - `plain`: bench/plain_echo.ts, a JSON-lines echo in Deno: the no-crypto ceiling
 *   in the dhx server's runtime;
 * - `tls`: bench/tls_echo.mjs, the same echo inside TLS 1.3 in Node (OpenSSL).
 *
 * Cases (each on a freshly started server after a short warm-up, the three
 * servers interleaved round by round; tables give the median and min–max):
 *
 * - a `handshakes`: C loops of connect → handshake → one msg/ack → bye;
 * - b `pipeline`: one session, N messages of 64 bytes, 32 unacked at most;
 * - c `many`: K sessions opened, then each sends M messages (window W);
 * - d `idle`: the server's memory with K idle sessions open.
 *
 * Server CPU comes from /proc/PID/stat before and after each phase, memory from
 * /proc/PID/status (read by bench/procfs.mjs: Deno wants --allow-all for /proc);
 * the generators report their own CPU so a reader can tell a saturated
 * generator from a saturated server.
 *
 * Permissions: `--allow-run=deno,node` and nothing else (the orchestrator opens
 * no socket and reads no file itself; its children are unsandboxed processes,
 * so this is a statement of intent rather than a sandbox).
 *
 * ```sh
 * deno run --allow-run=deno,node bench/load.ts            # ~2.5 min
 * deno run --allow-run=deno,node bench/load.ts --quick    # ~35 s
 * deno run --allow-run=deno,node bench/load.ts --json > load.json
 * deno run --allow-run=deno,node bench/load.ts -- --keepalive 5
 * ```
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
  fmtSpread,
  GeneratorPool,
  type GenStats,
  loadAverage,
  machineFacts,
  markdownTable,
  measured as measuredPhase,
  memory,
  openFileLimit,
  percentile,
  type Phase,
  reportHeader,
  serverFlags,
  ServerProcess,
  type ServerSpec,
  ServerStartError,
  spread,
  type TrafficResult,
  UsageError,
} from "./harness.ts";

const USAGE = `Usage: deno run --allow-run=deno,node bench/load.ts [options] [-- DHX_SERVER_FLAGS]

Benchmarks server.ts (dhx) against a plain JSON-lines echo (Deno) and a TLS 1.3
echo (Node), each in its own process, driven by bench/loadgen.mjs (Node).

Options (defaults; --quick ones in brackets):
  --quick                  a short run, ~35 s instead of ~2.5 min [see brackets]
  --rounds N               rounds per case, servers interleaved (3) [2]
  --cases LIST             any of handshakes,pipeline,many,idle (all); a,b,c,d also work
  --servers LIST           any of dhx,dhx-proof,dhx-password,plain,tls (all; the
                           revision-3 handshakes dhx-proof, dhx-password: case a only)
  --hs-concurrency C       case a: concurrent handshake loops (16)
  --hs-seconds S           case a: seconds per run (2) [1]
  --pipeline N             case b: messages on one session (20000) [5000]
  --pipeline-window W      case b: unacked messages at most (32)
  --clients N              case c: sessions (1000) [200]
  --messages N             case c: messages per session (50) [20]
  --window W               case c: unacked messages per session (10)
  --idle N                 case d: idle sessions held (1000) [200]
  --size BYTES             message size (64)
  --generators N           load generator processes (cores / 2, at least 1)
  --server-dir DIR         where server.ts is (the repository root)
  --json                   print one JSON document instead of tables
  -h, --help               this help

Everything after -- goes to server.ts, e.g. -- --keepalive 5 --group ffdhe3072.
--max-clients and --max-per-address are set high automatically when
\`server.ts --help\` lists them (unless given after --).

Cases c and d hold N connections in the server and in the generator: each
process needs \`ulimit -n\` ≥ N + 256 (1000 sessions: run \`ulimit -n 4096\` first).`;

// ───────────────────────────────────────────────────────────────────────────
// Options
// ───────────────────────────────────────────────────────────────────────────

const SERVER_NAMES = ["dhx", "dhx-proof", "dhx-password", "plain", "tls"] as const;
type ServerName = typeof SERVER_NAMES[number];

/**
 * The revision-3 variants of dhx: the same server, with clients that ask for
 * the host key proof, or that answer a room password. They differ from dhx
 * only in the handshake, so they run in case a only.
 */
const HANDSHAKE_ONLY: readonly ServerName[] = ["dhx-proof", "dhx-password"];

/** The room password of `dhx-password` (bench/password.txt, committed like bench/key.pem). */
const BENCH_PASSWORD = "bench password";
const CASE_NAMES = ["handshakes", "pipeline", "many", "idle"] as const;
type CaseName = typeof CASE_NAMES[number];

/** Descriptors a process needs beyond one per session (listeners, pipes, V8, slack). */
const FD_SLACK = 256;

interface Options {
  quick: boolean;
  rounds: number;
  cases: CaseName[];
  servers: ServerName[];
  hsConcurrency: number;
  hsSeconds: number;
  pipeline: number;
  pipelineWindow: number;
  clients: number;
  messages: number;
  window: number;
  idle: number;
  size: number;
  generators: number;
  serverDir: string;
  json: boolean;
  /** Flags for server.ts given after `--`. */
  dhxFlags: string[];
  /** Which of clients/idle the user set (a too-low fd limit is then an error, not a cut). */
  explicit: Set<string>;
}

function positiveInt(name: string, text: string | undefined, fallback: number, min = 1): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text) || Number(text) < min) {
    throw new UsageError(`--${name} must be an integer ≥ ${min}, got ${JSON.stringify(text)}`);
  }
  return Number(text);
}

function positiveNumber(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new UsageError(`--${name} must be a positive number, got ${JSON.stringify(text)}`);
  }
  return value;
}

function list<T extends string>(
  name: string,
  text: string | undefined,
  all: readonly T[],
  aliases: Record<string, T> = {},
): T[] {
  if (text === undefined) return [...all];
  const chosen = text.split(",").map((word) => aliases[word.trim()] ?? word.trim());
  for (const word of chosen) {
    if (!all.includes(word as T)) {
      throw new UsageError(
        `--${name}: unknown ${JSON.stringify(word)}; choose from ${all.join(",")}`,
      );
    }
  }
  return all.filter((item) => chosen.includes(item));
}

function parseOptions(args: string[]): Options | "help" {
  const dash = args.indexOf("--");
  const own = dash < 0 ? args : args.slice(0, dash);
  let values;
  try {
    ({ values } = parseArgs({
      args: own,
      strict: true,
      allowPositionals: false,
      options: Object.fromEntries([
        ...[
          "rounds",
          "cases",
          "servers",
          "hs-concurrency",
          "hs-seconds",
          "pipeline",
          "pipeline-window",
          "clients",
          "messages",
          "window",
          "idle",
          "size",
          "generators",
          "server-dir",
        ].map((name) => [name, { type: "string" as const }]),
        ["quick", { type: "boolean" as const }],
        ["json", { type: "boolean" as const }],
        ["help", { type: "boolean" as const, short: "h" }],
      ]),
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const flags = values as Record<string, string | boolean | undefined>;
  if (flags.help === true) return "help";
  const v = flags as Record<string, string | undefined>;
  const quick = flags.quick === true;
  return {
    quick,
    rounds: positiveInt("rounds", v.rounds, quick ? 2 : 3),
    cases: list("cases", v.cases, CASE_NAMES, {
      a: "handshakes",
      b: "pipeline",
      c: "many",
      d: "idle",
    }),
    servers: list("servers", v.servers, SERVER_NAMES),
    hsConcurrency: positiveInt("hs-concurrency", v["hs-concurrency"], 16),
    hsSeconds: positiveNumber("hs-seconds", v["hs-seconds"], quick ? 1 : 2),
    pipeline: positiveInt("pipeline", v.pipeline, quick ? 5000 : 20_000),
    pipelineWindow: positiveInt("pipeline-window", v["pipeline-window"], 32),
    clients: positiveInt("clients", v.clients, quick ? 200 : 1000),
    messages: positiveInt("messages", v.messages, quick ? 20 : 50),
    window: positiveInt("window", v.window, 10),
    idle: positiveInt("idle", v.idle, quick ? 200 : 1000),
    size: positiveInt("size", v.size, 64, 24),
    generators: positiveInt(
      "generators",
      v.generators,
      Math.max(1, Math.floor(navigator.hardwareConcurrency / 2)),
    ),
    serverDir: v["server-dir"] ?? new URL("..", `file://${BENCH_DIR}`).pathname,
    json: flags.json === true,
    dhxFlags: dash < 0 ? [] : args.slice(dash + 1),
    explicit: new Set(["clients", "idle"].filter((name) => v[name] !== undefined)),
  };
}

/**
 * Fits cases c and d to the open-file limit: a default is cut to fit, with a
 * warning; a number the user chose is an error.
 */
async function fitToFileLimit(
  options: Options,
  childPid: number,
  warn: (line: string) => void,
): Promise<void> {
  // What a child process gets: Node and Deno raise their soft limit to the hard one.
  const hard = (await openFileLimit(childPid)).soft;
  for (const name of ["clients", "idle"] as const) {
    const wanted = options[name];
    if (wanted + FD_SLACK <= hard) continue;
    const advice = `raise it first: ulimit -n ${Math.max(4096, wanted + FD_SLACK)}`;
    if (options.explicit.has(name)) {
      throw new UsageError(
        `--${name} ${wanted} needs ${wanted + FD_SLACK} open files per process, ` +
          `but the limit (ulimit -n) is ${hard}; ${advice}`,
      );
    }
    options[name] = Math.max(10, hard - FD_SLACK);
    warn(
      `[!] open-file limit (ulimit -n) is ${hard}: too low for ${wanted} sessions; ` +
        `using --${name} ${options[name]} (${advice})`,
    );
  }
}

// ───────────────────────────────────────────────────────────────────────────
// Servers
// ───────────────────────────────────────────────────────────────────────────

/** The three servers; dhx with the flags it has (`supported`) set high. */
function serverSpecs(options: Options, supported: Set<string>): Record<ServerName, ServerSpec> {
  const sessions = Math.max(options.clients, options.idle, options.hsConcurrency) + 64;
  const auto: [string, string][] = [
    ["--max-clients", String(Math.min(100_000, sessions))],
    ["--max-per-address", "100000"],
    // Every client here sends as fast as it can on purpose: the throughput is
    // the server's, not the per-client rate a real server keeps (see abuse.ts).
    ["--rate", "1000000"],
    ["--byte-rate", "1099511627776"],
  ];
  const dhx = dhxServer(options, supported, auto);
  const password = dhxServer(options, supported, auto, ["--password-file", "bench/password.txt"]);
  // The password file is all the password server may read.
  password.args.splice(1, 0, `--allow-read=${BENCH_DIR}password.txt`);
  password.args[password.args.indexOf("bench/password.txt")] = `${BENCH_DIR}password.txt`;
  return {
    dhx,
    "dhx-proof": { ...dhx, name: "dhx-proof" },
    "dhx-password": { ...password, name: "dhx-password" },
    plain: {
      name: "plain",
      command: "deno",
      args: ["run", "--allow-net=127.0.0.1", "plain_echo.ts", "--port", "0"],
      cwd: BENCH_DIR,
    },
    tls: { name: "tls", command: "node", args: ["tls_echo.mjs", "--port", "0"], cwd: BENCH_DIR },
  };
}

// ───────────────────────────────────────────────────────────────────────────
// Measuring
// ───────────────────────────────────────────────────────────────────────────

/** What one case measured in one round against one server. */
type Metrics = Record<string, number>;

/** What the load generator connects to, and how (bench/loadgen.mjs's target). */
interface Target {
  kind: "dhx" | "plain" | "tls";
  port: number;
  /** dhx: ask for the host key proof. */
  proof?: boolean;
  /** dhx: the room password. */
  password?: string;
}

/** The generator's target for a server of ours. */
function targetOf(name: ServerName, port: number): Target {
  if (name === "dhx-proof") return { kind: "dhx", port, proof: true };
  if (name === "dhx-password") return { kind: "dhx", port, password: BENCH_PASSWORD };
  return { kind: name, port };
}

/** Everything a case needs for one run. */
interface Run {
  server: ServerProcess;
  gen: GeneratorPool;
  target: Target;
  options: Options;
  /** Error messages seen (generator and server side). */
  problems: string[];
}

/** A measured phase of `run` (harness's `measured`); its errors go to the run's problems. */
async function measured<T extends GenStats>(run: Run, work: () => Promise<T>): Promise<Phase<T>> {
  const phase = await measuredPhase(run.server.pid, work);
  for (const sample of phase.result.errors.samples) run.problems.push(sample);
  return phase;
}

/** JIT, group tables, TLS contexts: a few sessions and messages before measuring. */
async function warmUp(run: Run): Promise<void> {
  const { gen, target } = run;
  const hs = await gen.handshakes({ target, concurrency: 4, seconds: 0.3 });
  if (hs.completed === 0) {
    throw new Error(`warm-up: no session completed: ${hs.errors.samples.join("; ")}`);
  }
  await gen.open({ target, count: 1, concurrency: 1 });
  await gen.held({ cmd: "traffic", messages: 300, window: 32, size: run.options.size });
  await gen.held({ cmd: "close" });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The CPU shares and latencies of a phase. */
function phaseMetrics(phase: Phase<GenStats>): Metrics {
  return {
    serverCpuPct: phase.serverCpuPct,
    genCpuPct: phase.result.genCpuPct,
    otherCpuPct: phase.otherCpuPct,
    p50: percentile(phase.result.latencies, 50),
    p99: percentile(phase.result.latencies, 99),
  };
}

/** A measured traffic phase on the sessions open: `messages` each, at most `window` unacked. */
function measuredTraffic(
  run: Run,
  messages: number,
  window: number,
): Promise<Phase<TrafficResult>> {
  return measured(
    run,
    () => run.gen.held<TrafficResult>({ cmd: "traffic", messages, window, size: run.options.size }),
  );
}

/** Case a: handshake loops. */
async function caseHandshakes(run: Run): Promise<Metrics> {
  const { target, options } = run;
  const phase = await measured(run, () =>
    run.gen.handshakes({
      target,
      concurrency: options.hsConcurrency,
      seconds: options.hsSeconds,
      size: options.size,
    }));
  const { completed, wallMs, errors } = phase.result;
  return {
    sessions: completed,
    sessionsPerSec: completed / (wallMs / 1000),
    serverCpuMsPerSession: phase.serverCpuMs / completed,
    ...phaseMetrics(phase),
    failed: errors.count,
  };
}

/** Case b: one session, pipelined. */
async function casePipeline(run: Run): Promise<Metrics> {
  const { gen, target, options } = run;
  await gen.open({ target, count: 1, concurrency: 1 });
  const phase = await measuredTraffic(run, options.pipeline, options.pipelineWindow);
  await gen.held({ cmd: "close" });
  return trafficMetrics(phase);
}

function trafficMetrics(phase: Phase<TrafficResult>): Metrics {
  const { acked, lost, wallMs } = phase.result;
  return {
    msgsPerSec: acked / (wallMs / 1000),
    serverCpuUsPerMsg: (1000 * phase.serverCpuMs) / acked,
    ...phaseMetrics(phase),
    lost,
    stalled: phase.result.stalled ? 1 : 0,
  };
}

/** Case c: many sessions opened, then all of them send at once. */
async function caseMany(run: Run): Promise<Metrics> {
  const { gen, target, options } = run;
  const opening = await measured(
    run,
    () => gen.open({ target, count: options.clients, concurrency: 64, size: options.size }),
  );
  const phase = await measuredTraffic(run, options.messages, options.window);
  const peak = (await memory(run.server.pid)).peak;
  await gen.held({ cmd: "close" });
  const { opened, wallMs } = opening.result;
  const traffic = trafficMetrics(phase);
  return {
    opened,
    sessionsPerSec: opened / (wallMs / 1000),
    serverCpuMsPerSession: opening.serverCpuMs / opened,
    ...traffic,
    genCpuPct: Math.max(opening.result.genCpuPct, phase.result.genCpuPct),
    otherCpuPct: Math.max(opening.otherCpuPct, phase.otherCpuPct),
    failed: opening.result.errors.count,
    peakRss: peak,
  };
}

/** Case d: the memory that idle sessions hold. */
async function caseIdle(run: Run): Promise<Metrics> {
  const { gen, target, options } = run;
  await sleep(300);
  const before = await memory(run.server.pid);
  // Gently (16 at a time): this case is about memory, not about the handshake rate.
  const opening = await gen.open({ target, count: options.idle, concurrency: 16 });
  await sleep(1000);
  const held = await memory(run.server.pid);
  const closed = await gen.held<{ pings: number } & GenStats>({ cmd: "close" });
  for (const sample of opening.errors.samples) run.problems.push(sample);
  return {
    opened: opening.opened,
    rssBefore: before.rss,
    rssWith: held.rss,
    bytesPerSession: (held.rss - before.rss) / opening.opened,
    peakRss: held.peak,
    pings: closed.pings,
    failed: opening.errors.count,
  };
}

const CASES: Record<CaseName, { letter: string; run: (run: Run) => Promise<Metrics> }> = {
  handshakes: { letter: "a", run: caseHandshakes },
  pipeline: { letter: "b", run: casePipeline },
  many: { letter: "c", run: caseMany },
  idle: { letter: "d", run: caseIdle },
};

// ───────────────────────────────────────────────────────────────────────────
// Running
// ───────────────────────────────────────────────────────────────────────────

/** One case against one server in one round. */
interface Sample {
  case: CaseName;
  round: number;
  server: ServerName;
  metrics: Metrics;
  problems: string[];
}

/** Starts a fresh server, warms it up, runs the case, stops the server. */
async function runOnce(
  caseName: CaseName,
  spec: ServerSpec,
  gen: GeneratorPool,
  options: Options,
): Promise<{ metrics: Metrics; problems: string[] }> {
  const server = await ServerProcess.start(spec);
  const run: Run = {
    server,
    gen,
    target: targetOf(spec.name as ServerName, server.port),
    options,
    problems: [],
  };
  try {
    await checkServerFileLimit(server, caseName, options);
    await warmUp(run);
    const metrics = await CASES[caseName].run(run);
    return { metrics, problems: [...new Set([...run.problems, ...server.errorLines])].slice(0, 8) };
  } finally {
    await server.stop();
  }
}

async function checkServerFileLimit(
  server: ServerProcess,
  caseName: CaseName,
  options: Options,
): Promise<void> {
  const sessions = caseName === "many" ? options.clients : caseName === "idle" ? options.idle : 0;
  const { soft } = await openFileLimit(server.pid);
  if (sessions + FD_SLACK > soft) {
    throw new Error(
      `the ${server.spec.name} server may open only ${soft} files, too few for ${sessions} ` +
        `sessions: run \`ulimit -n ${Math.max(4096, sessions + FD_SLACK)}\` first`,
    );
  }
}

/** One progress line on stderr. */
function progressLine(sample: Sample): string {
  const m = sample.metrics;
  const main = {
    handshakes: () => `${fmt(m.sessionsPerSec)} sessions/s`,
    pipeline: () => `${fmt(m.msgsPerSec)} msgs/s`,
    many: () => `${fmt(m.sessionsPerSec)} sessions/s, ${fmt(m.msgsPerSec)} msgs/s`,
    idle: () => `${fmt(m.bytesPerSession)} B/session`,
  }[sample.case]();
  const cpu = m.serverCpuPct === undefined
    ? ""
    : `, CPU: server ${fmt(m.serverCpuPct, 0)}%, generator ${fmt(m.genCpuPct, 0)}%, ` +
      `other ${fmt(m.otherCpuPct, 0)}%`;
  return `  ${
    CASES[sample.case].letter
  }. ${sample.case} round ${sample.round} ${sample.server}: ${main}${cpu}`;
}

async function runAll(
  options: Options,
  specs: Record<ServerName, ServerSpec>,
  gen: GeneratorPool,
): Promise<Sample[]> {
  const samples: Sample[] = [];
  for (const caseName of options.cases) {
    for (let round = 1; round <= options.rounds; round++) {
      for (const server of options.servers) {
        if (caseName !== "handshakes" && HANDSHAKE_ONLY.includes(server)) continue;
        const { metrics, problems } = await runOnce(caseName, specs[server], gen, options);
        const sample = { case: caseName, round, server, metrics, problems };
        samples.push(sample);
        console.error(progressLine(sample));
      }
    }
  }
  return samples;
}

// ───────────────────────────────────────────────────────────────────────────
// Report
// ───────────────────────────────────────────────────────────────────────────

/** A generator this busy (% of its one JS thread) may be what limits the rate. */
const SATURATED_PCT = 85;

/** Other processes using this much CPU (% of one core) during a phase disturb it. */
const DISTURBED_PCT = 25;

interface Column {
  header: string;
  metric: string;
  /** Turns the metric's unit into the column's (e.g. bytes → MiB). */
  scale?: number;
  digits?: number;
}

const MIB = 1 / 1048576;
const SESSION_RATE: Column = { header: "sessions/s", metric: "sessionsPerSec" };
const MESSAGE_RATE: Column[] = [
  { header: "msgs/s", metric: "msgsPerSec" },
  { header: "server CPU µs/msg", metric: "serverCpuUsPerMsg", digits: 1 },
];
const CPU_SHARES: Column[] = [
  { header: "server CPU %", metric: "serverCpuPct", digits: 0 },
  { header: "gen CPU %", metric: "genCpuPct", digits: 0 },
  { header: "other CPU %", metric: "otherCpuPct", digits: 0 },
];
/** p50 and p99 latency, of sessions ("") or of acks ("ack "). */
const latency = (of: "" | "ack "): Column[] => [
  { header: `${of}p50 ms`, metric: "p50" },
  { header: `${of}p99 ms`, metric: "p99" },
];
const LOST: Column = { header: "lost", metric: "lost", digits: 0 };
const FAILED: Column = { header: "failed", metric: "failed", digits: 0 };
const PEAK_RSS: Column = { header: "peak RSS MiB", metric: "peakRss", scale: MIB, digits: 1 };

const COLUMNS: Record<CaseName, Column[]> = {
  handshakes: [
    SESSION_RATE,
    { header: "server CPU ms/session", metric: "serverCpuMsPerSession", digits: 3 },
    ...CPU_SHARES,
    ...latency(""),
    FAILED,
  ],
  pipeline: [...MESSAGE_RATE, ...CPU_SHARES, ...latency("ack "), LOST],
  many: [SESSION_RATE, ...MESSAGE_RATE, ...CPU_SHARES, ...latency("ack "), LOST, FAILED, PEAK_RSS],
  idle: [
    { header: "sessions", metric: "opened", digits: 0 },
    { header: "RSS before MiB", metric: "rssBefore", scale: MIB, digits: 1 },
    { header: "RSS with MiB", metric: "rssWith", scale: MIB, digits: 1 },
    { header: "bytes/session", metric: "bytesPerSession", digits: 0 },
    PEAK_RSS,
  ],
};

function caseTitle(name: CaseName, options: Options): string {
  const rounds = `median (min–max) of ${options.rounds} round${options.rounds > 1 ? "s" : ""}`;
  const size = `${options.size}-byte messages`;
  return {
    handshakes:
      `a. Handshakes: ${options.hsConcurrency} concurrent loops of connect → handshake → one msg/ack → bye, ${options.hsSeconds} s each; ${rounds}`,
    pipeline: `b. One session, pipelined: ${
      fmt(options.pipeline, 0)
    } ${size}, at most ${options.pipelineWindow} unacked; ${rounds}`,
    many:
      `c. Many clients: ${options.clients} sessions opened (64 handshakes at a time), then each sends ${options.messages} ${size}, window ${options.window}, all at once; ${rounds}`,
    idle:
      `d. Idle memory: server RSS before and with ${options.idle} idle sessions (handshake + one msg/ack done); ${rounds}`,
  }[name];
}

function caseTable(name: CaseName, samples: Sample[], options: Options): string {
  const rows = options.servers.map((server) => {
    const mine = samples.filter((s) => s.case === name && s.server === server);
    return [
      server,
      ...COLUMNS[name].map((column) => {
        const values = mine.map((s) => (s.metrics[column.metric] ?? NaN) * (column.scale ?? 1));
        return fmtSpread(spread(values), column.digits);
      }),
    ];
  });
  return markdownTable(["server", ...COLUMNS[name].map((c) => c.header)], rows);
}

/** Warnings a reader must see: saturated generator, losses, failures, server errors. */
function findings(samples: Sample[]): string[] {
  const lines: string[] = [];
  const groups = new Map<string, Sample[]>();
  for (const s of samples) {
    const key = `${CASES[s.case].letter}. ${s.case} / ${s.server}`;
    groups.set(key, [...(groups.get(key) ?? []), s]);
  }
  for (const [key, group] of groups) {
    const worst = (metric: string) => Math.max(...group.map((s) => s.metrics[metric] ?? 0));
    const other = worst("otherCpuPct");
    if (other >= DISTURBED_PCT) {
      lines.push(
        `[!] ${key}: other processes used up to ${fmt(other, 0)}% of a core during a round: ` +
          `that round competed for the ${navigator.hardwareConcurrency} cores; rerun on a quiet machine.`,
      );
    }
    const gen = worst("genCpuPct");
    if (gen >= SATURATED_PCT) {
      lines.push(
        `[!] ${key}: the load generator was saturated (up to ${fmt(gen, 0)}% of its core): ` +
          `the rate is a floor for this server, not its limit; its CPU per operation still holds.`,
      );
    }
    if (worst("lost") > 0) {
      lines.push(`[!] ${key}: ${fmt(worst("lost"), 0)} messages lost in a round`);
    }
    if (worst("failed") > 0) {
      lines.push(`[!] ${key}: up to ${fmt(worst("failed"), 0)} sessions failed in a round`);
    }
    if (worst("stalled") > 0) lines.push(`[!] ${key}: a round stalled (no ack for 30 s)`);
    if (worst("pings") > 0) {
      lines.push(
        `    ${key}: the server sent up to ${fmt(worst("pings"), 0)} pings (all answered)`,
      );
    }
    const problems = [...new Set(group.flatMap((s) => s.problems))];
    for (const problem of problems.slice(0, 3)) lines.push(`    ${key}: ${problem}`);
  }
  return lines;
}

const NOTES = `Notes:
- Each (case, round, server) runs on a freshly started server process, after a warm-up of
  0.3 s of handshakes and 300 messages; the three servers take turns within each round.
- Server CPU: utime + stime from /proc/PID/stat (10 ms ticks), before the phase and after it once
  the server has gone quiet (so the closes it finishes after the last answer count); "server CPU %"
  is CPU over the phase's wall time (100% = one core; dhx can pass 100%: Deno runs WebCrypto on
  worker threads). On loopback the kernel charges part of each packet's delivery to the sender, so
  both sides' CPU includes some TCP work for the other.
- other CPU %: machine-wide busy time (/proc/stat) less the server's and the generators' during the
  phase, i.e. everything else (this orchestrator included, ~1%); more than ${DISTURBED_PCT}% flags the
  round as disturbed.
- gen CPU %: the busiest load generator process, CPU over wall time; each is one Node thread, so
  near 100% it, not the server, sets the pace. dhx client work is cheap by design: OpenSSL's DH with
  one key pair reused by every connection (one modpow per handshake), node:crypto for HKDF,
  AES-256-CTR and HMAC.
- A "session" ends with one msg → ack round trip for every server: for dhx that ack proves the
  server derived the same keys; for tls it follows a full TLS 1.3 handshake (ECDHE, ECDSA P-256
  certificate, no resumption); plain is TCP connect + one line each way. Latencies are measured by
  the generator: connect → that ack (a), or msg written → its ack (b, c). 1000 / (server CPU
  ms/session) is the session rate one fully busy server core would sustain, whoever set the pace.
- Writes: plain (like server.ts) makes one send syscall per ack; Node's TLS socket hands all the
  records written in one event-loop turn to the kernel at once (strace: 1,400 writes for 20,000
  acks in b), which is why tls can out-run plain when messages are pipelined.
- Memory: VmRSS/VmHWM from /proc/PID/status. RSS includes garbage the V8 heap has not yet
  collected, so bytes/session is an upper bound for live state.`;

function printReport(
  samples: Sample[],
  options: Options,
  header: string[],
): void {
  console.log(header.join("\n"));
  for (const name of options.cases) {
    console.log(`\n### ${caseTitle(name, options)}\n`);
    console.log(caseTable(name, samples, options));
  }
  const lines = findings(samples);
  console.log(
    lines.length ? `\n${lines.join("\n")}` : "\nNo losses, no failures, no saturated generator.",
  );
  console.log(`\n${NOTES}`);
}

// ───────────────────────────────────────────────────────────────────────────
// Main
// ───────────────────────────────────────────────────────────────────────────

function summaries(samples: Sample[], options: Options) {
  return Object.fromEntries(options.cases.map((name) => [
    name,
    Object.fromEntries(options.servers.map((server) => {
      const mine = samples.filter((s) => s.case === name && s.server === server);
      const metrics = Object.keys(mine[0]?.metrics ?? {});
      return [
        server,
        Object.fromEntries(metrics.map((m) => [m, spread(mine.map((s) => s.metrics[m]))])),
      ];
    })),
  ]));
}

/** Runs the cases and prints the report; returns the exit code. */
async function benchmark(options: Options, gen: GeneratorPool): Promise<number> {
  const started = performance.now();
  const warnings: string[] = [];
  try {
    await fitToFileLimit(options, gen.pids[0], (line) => warnings.push(line));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`[!] ${error.message}`);
    return 2;
  }
  const specs = serverSpecs(options, await serverFlags(options.serverDir));
  const facts = await machineFacts(gen.versions);
  const command = await commandLine();
  const header = reportHeader("dhx load benchmark", command, facts, [
    `Load generators: ${options.generators} × node bench/loadgen.mjs`,
    ...options.servers.map((s) =>
      `Server ${s}: (cd ${specs[s].cwd} && ${specs[s].command} ${specs[s].args.join(" ")})`
    ),
  ]);
  header.push(...warnings);
  console.error(header.slice(2).join("\n"));
  let samples: Sample[];
  try {
    samples = await runAll(options, specs, gen);
  } catch (error) {
    console.error(
      `[!] ${error instanceof ServerStartError ? error.message : (error as Error).stack}`,
    );
    return 1;
  }
  const elapsed = (performance.now() - started) / 1000;
  header.push(`Run time: ${fmt(elapsed, 0)} s; load average after: ${await loadAverage()}`);
  if (options.json) {
    const { explicit: _, ...settings } = options;
    const summary = summaries(samples, options);
    const document = {
      command,
      machine: facts,
      settings,
      servers: specs,
      elapsedSeconds: elapsed,
      summary,
      findings: [...warnings, ...findings(samples)],
      samples,
    };
    console.log(JSON.stringify(document, null, 2));
  } else {
    printReport(samples, options, header);
  }
  const bad = samples.some((s) => (s.metrics.lost ?? 0) > 0 || (s.metrics.failed ?? 0) > 0);
  return bad ? 1 : 0;
}

// Exit codes: 1 losses or failures, 2 usage.
if (import.meta.main) Deno.exit(await benchmarkMain(Deno.args, USAGE, parseOptions, benchmark));
