/**
 * What bench/load.ts and bench/room.ts share: the command-line entry (usage
 * errors, help, starting and stopping the helpers), starting and stopping
 * server processes, reading their CPU time and memory from /proc, measuring a
 * phase, driving the Node load generators (bench/loadgen.mjs), statistics,
 * markdown tables, the report's header and the facts of the machine.
 *
 * Only `deno` and `node` are run, and /proc is read through one of those
 * (bench/procfs.mjs), so the one permission is `--allow-run=deno,node`.
 * Nothing here opens a socket.
 *
 * @module
 */

import { parseArgs } from "node:util";

const encoder = new TextEncoder();

/** Kernel clock ticks per second in /proc/PID/stat (USER_HZ: 100 on every Linux port we run on). */
export const CLOCK_TICKS_PER_SECOND = 100;

/** The folder of this file, as a path. */
export const BENCH_DIR = new URL(".", import.meta.url).pathname;

// ───────────────────────────────────────────────────────────────────────────
// /proc, through bench/procfs.mjs
// ───────────────────────────────────────────────────────────────────────────

/**
 * The Node helper that reads /proc for us (Deno 2.9 wants --allow-all for any
 * /proc read). One per orchestrator: {@link startProcReader} before use,
 * {@link stopProcReader} at the end.
 */
let procReader: LineProcess | undefined;

/** Starts bench/procfs.mjs. */
export async function startProcReader(): Promise<void> {
  procReader ??= await LineProcess.start("node", [`${BENCH_DIR}procfs.mjs`], false);
}

/** Stops bench/procfs.mjs. */
export async function stopProcReader(): Promise<void> {
  await procReader?.stop();
  procReader = undefined;
}

/** The texts of /proc files (null where unreadable). */
async function readProc(...paths: string[]): Promise<(string | null)[]> {
  if (!procReader) throw new Error("startProcReader() first");
  const answer = await procReader.request({ paths });
  return answer.files as (string | null)[];
}

async function readProcFile(path: string): Promise<string> {
  const [text] = await readProc(path);
  if (text === null) throw new Error(`cannot read ${path} (has the process exited?)`);
  return text;
}

/** CPU time (user + system) that process `pid` has used so far, in ms; 10 ms resolution. */
export async function cpuMs(pid: number): Promise<number> {
  const stat = await readProcFile(`/proc/${pid}/stat`);
  // The command name (field 2) may hold spaces and parentheses: count fields after the last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1000) / CLOCK_TICKS_PER_SECOND;
}

/**
 * CPU time all processes on the machine have used so far, in ms (summed over
 * cores), from the first line of /proc/stat: user + nice + system + irq +
 * softirq + steal. Less the server's and the generator's share, it shows
 * whether anything else competed during a phase.
 */
export async function machineBusyMs(): Promise<number> {
  const stat = await readProcFile("/proc/stat");
  const [user, nice, system, _idle, _iowait, irq, softirq, steal] = stat.split("\n")[0]
    .trim().split(/\s+/).slice(1).map(Number);
  return ((user + nice + system + irq + softirq + (steal || 0)) * 1000) / CLOCK_TICKS_PER_SECOND;
}

/** Resident memory of process `pid`, in bytes: now (VmRSS) and its peak so far (VmHWM). */
export interface Memory {
  /** VmRSS. */
  rss: number;
  /** VmHWM: the peak RSS since the process started. */
  peak: number;
}

/** Reads {@link Memory} from /proc/PID/status. */
export async function memory(pid: number): Promise<Memory> {
  const status = await readProcFile(`/proc/${pid}/status`);
  const kib = (field: string) => {
    const match = status.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
    if (!match) throw new Error(`no ${field} in /proc/${pid}/status`);
    return Number(match[1]) * 1024;
  };
  return { rss: kib("VmRSS"), peak: kib("VmHWM") };
}

/**
 * The CPU time of `pid` once it has stopped rising (no new tick for `quietMs`,
 * at most `maxMs`): a server still closing the last connections of a phase
 * should be charged for them.
 */
export async function settledCpuMs(pid: number, quietMs = 60, maxMs = 2000): Promise<number> {
  const started = performance.now();
  let last = await cpuMs(pid);
  let lastChange = performance.now();
  while (performance.now() - lastChange < quietMs && performance.now() - started < maxMs) {
    await sleep(20);
    const now = await cpuMs(pid);
    if (now !== last) [last, lastChange] = [now, performance.now()];
  }
  return last;
}

/** A generator phase with the server's CPU read before and after it. */
export interface Phase<T> {
  result: T;
  /** Wall time of the phase, ms. */
  wallMs: number;
  /** Server CPU ms over the phase, including the work it finishes after the last answer. */
  serverCpuMs: number;
  /** Server CPU / wall time of the phase, % of one core. */
  serverCpuPct: number;
  /** CPU that other processes used during the phase, % of one core (10 ms ticks: ±a few %). */
  otherCpuPct: number;
}

/**
 * Runs `work` (a generator phase) and measures what the server `pid` and the
 * rest of the machine spent on it meanwhile.
 */
export async function measured<T extends GenStats>(
  pid: number,
  work: () => Promise<T>,
): Promise<Phase<T>> {
  const [cpu0, busy0] = [await cpuMs(pid), await machineBusyMs()];
  const t0 = performance.now();
  const result = await work();
  const wallMs = performance.now() - t0;
  const [cpuAtAnswer, busy1] = [await cpuMs(pid), await machineBusyMs()];
  const cpu1 = await settledCpuMs(pid);
  // What neither the server nor the generators used: other processes (and this one).
  const otherMs = busy1 - busy0 - (cpuAtAnswer - cpu0) - result.genCpuMs;
  return {
    result,
    wallMs,
    serverCpuMs: cpu1 - cpu0,
    serverCpuPct: (100 * (cpuAtAnswer - cpu0)) / wallMs,
    otherCpuPct: Math.max(0, (100 * otherMs) / wallMs),
  };
}

/** The "Max open files" limits of process `pid`, from /proc/PID/limits. */
export async function openFileLimit(pid: number): Promise<{ soft: number; hard: number }> {
  const limits = await readProcFile(`/proc/${pid}/limits`);
  const match = limits.match(/^Max open files\s+(\S+)\s+(\S+)/m);
  const value = (text: string | undefined) =>
    text === undefined || text === "unlimited" ? Infinity : Number(text);
  return { soft: value(match?.[1]), hard: value(match?.[2]) };
}

/** The 1-, 5- and 15-minute load averages, from /proc/loadavg. */
export async function loadAverage(): Promise<string> {
  const [text] = await readProc("/proc/loadavg");
  return (text ?? "?").split(" ").slice(0, 3).join(" ");
}

/** The exact command line this process was started with (from /proc/PID/cmdline). */
export async function commandLine(): Promise<string> {
  const [text] = await readProc(`/proc/${Deno.pid}/cmdline`);
  const argv = (text ?? "").split("\0").filter((arg) => arg !== "");
  const quote = (arg: string) =>
    /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`;
  return argv.map(quote).join(" ");
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ───────────────────────────────────────────────────────────────────────────
// Server processes
// ───────────────────────────────────────────────────────────────────────────

/** How to start one server. */
export interface ServerSpec {
  /** Row name: dhx, plain or tls. */
  name: string;
  /** Executable: `deno` or `node`. */
  command: string;
  args: string[];
  /** Working directory. */
  cwd: string;
}

/** A started server: its pid, port, and what it printed. */
export class ServerProcess {
  /** The server's process id (for /proc). */
  readonly pid: number;
  /** The port it printed in its listening line. */
  readonly port: number;
  /** How it was started, for the report. */
  readonly spec: ServerSpec;
  readonly #child: Deno.ChildProcess;
  readonly #output: OutputTail;

  private constructor(
    spec: ServerSpec,
    child: Deno.ChildProcess,
    port: number,
    output: OutputTail,
  ) {
    this.spec = spec;
    this.#child = child;
    this.pid = child.pid;
    this.port = port;
    this.#output = output;
  }

  /**
   * Starts the server and waits for `[*] Server listening on 127.0.0.1:PORT`.
   *
   * @throws {Error} with the server's own last lines if it exits first or is
   *   silent for `timeoutMs`
   */
  static async start(spec: ServerSpec, timeoutMs = 15_000): Promise<ServerProcess> {
    const child = new Deno.Command(spec.command, {
      args: spec.args,
      cwd: spec.cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = new OutputTail();
    const listening = output.follow(child.stdout, /Server listening on 127\.0\.0\.1:(\d+)/);
    output.follow(child.stderr);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      listening.then((match) => ({ port: Number(match[1]) })),
      child.status.then((status) => ({ exited: status.code })),
      new Promise<{ timeout: true }>((resolve) => {
        timer = setTimeout(() => resolve({ timeout: true }), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if ("port" in outcome) return new ServerProcess(spec, child, outcome.port, output);
    if ("timeout" in outcome) {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
    }
    await output.done;
    const why = "exited" in outcome
      ? `exited with code ${outcome.exited}`
      : `printed no listening line within ${timeoutMs / 1000} s`;
    throw new ServerStartError(spec, why, output.lines);
  }

  /** Lines the server printed that look like errors (`[!]`, "error"). */
  get errorLines(): string[] {
    return this.#output.lines.filter((line) => /\[!\]|error/i.test(line));
  }

  /** Stops the server: SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 3000): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // already exited
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        try {
          this.#child.kill("SIGKILL");
        } catch { /* gone */ }
        resolve();
      }, graceMs);
    });
    await Promise.race([this.#child.status, killed]);
    await this.#child.status;
    clearTimeout(timer);
    await this.#output.done;
  }
}

/** A server that did not come up; `lines` is what it printed. */
export class ServerStartError extends Error {
  /** What the server printed (stdout and stderr, last lines). */
  readonly lines: string[];
  /** @param spec the server; @param why what happened; @param lines its output */
  constructor(spec: ServerSpec, why: string, lines: string[]) {
    super(
      `${spec.name} server (${spec.command} ${spec.args.join(" ")}) ${why}` +
        (lines.length ? `:\n    ${lines.slice(-8).join("\n    ")}` : ""),
    );
    this.name = "ServerStartError";
    this.lines = lines;
  }
}

/** Keeps the last lines of a process's output (ANSI colours removed), reading to the end. */
class OutputTail {
  readonly lines: string[] = [];
  #readers: Promise<void>[] = [];

  /** Reads `stream` to its end; resolves with the first match of `pattern`. */
  follow(stream: ReadableStream<Uint8Array>, pattern?: RegExp): Promise<RegExpMatchArray> {
    let found: (match: RegExpMatchArray) => void = () => {};
    const matched = new Promise<RegExpMatchArray>((resolve) => found = resolve);
    const reader = (async () => {
      let pending = "";
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        pending += text;
        let lf: number;
        while ((lf = pending.indexOf("\n")) >= 0) {
          // deno-lint-ignore no-control-regex
          const line = pending.slice(0, lf).replace(/\x1b\[[0-9;]*m/g, "").trimEnd();
          pending = pending.slice(lf + 1);
          this.lines.push(line);
          if (this.lines.length > 200) this.lines.splice(0, this.lines.length - 200);
          const match = pattern && line.match(pattern);
          if (match) found(match);
        }
      }
    })().catch(() => {});
    this.#readers.push(reader);
    return matched;
  }

  /** Resolves when every followed stream has ended. */
  get done(): Promise<void> {
    return Promise.all(this.#readers).then(() => {});
  }
}

/**
 * The flags `server.ts --help` lists (e.g. `--max-per-address` once it
 * exists), so the benchmark sets them only on a server that has them. A server
 * that does not answer --help within 10 s is stopped and taken to have none.
 */
export async function serverFlags(serverDir: string): Promise<Set<string>> {
  const child = new Deno.Command("deno", {
    args: ["run", "--allow-net", "server.ts", "--help"],
    cwd: serverDir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, 10_000);
  const { stdout, stderr } = await child.output();
  clearTimeout(timer);
  const help = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  return new Set(help.match(/--[a-z][a-z-]+/g) ?? []);
}

/**
 * The dhx server (`deno run --allow-net server.ts --port 0 --quiet …`) with
 * `args`, then the user's flags; `auto` flags are set only where this
 * server.ts has them (`supported`, from {@link serverFlags}) and the user did
 * not give them.
 */
export function dhxServer(
  options: { serverDir: string; dhxFlags: string[] },
  supported: Set<string>,
  auto: [flag: string, value: string][],
  args: string[] = [],
): ServerSpec {
  const given = new Set(options.dhxFlags.map((flag) => flag.split("=")[0]));
  return {
    name: "dhx",
    command: "deno",
    args: [
      "run",
      "--allow-net",
      "server.ts",
      "--port",
      "0",
      "--quiet",
      ...args,
      ...auto.filter(([flag]) => supported.has(flag) && !given.has(flag)).flat(),
      ...options.dhxFlags,
    ],
    cwd: options.serverDir,
  };
}

/** `deno --version`'s first line and V8's version. */
export async function denoVersion(): Promise<string> {
  const { stdout } = await new Deno.Command("deno", { args: ["--version"], stdin: "null" })
    .output();
  const lines = new TextDecoder().decode(stdout).split("\n");
  return `${lines[0]?.trim() ?? "?"}, ${lines[1]?.trim() ?? ""}`;
}

// ───────────────────────────────────────────────────────────────────────────
// Load generators
// ───────────────────────────────────────────────────────────────────────────

/** How many errors a generator saw, and the first few distinct messages. */
export interface GenErrors {
  count: number;
  samples: string[];
}

/** What every generator answer carries, merged over the generator processes. */
export interface GenStats {
  /** Longest wall time of the command across the generators, ms. */
  genWallMs: number;
  /** CPU time of all generators during the command, ms. */
  genCpuMs: number;
  /** Of which in the kernel, ms. */
  genSystemMs: number;
  /** The busiest generator's CPU time / wall time, % of one core (each is one JS thread). */
  genCpuPct: number;
  /** Latencies in ms (handshake, ack or delivery, depending on the command). */
  latencies: number[];
  errors: GenErrors;
}

/** Answer to `handshakes`. */
export interface HandshakesResult extends GenStats {
  completed: number;
  wallMs: number;
}

/** Answer to `open`. */
export interface OpenResult extends GenStats {
  opened: number;
  wallMs: number;
}

/** Answer to `traffic`. */
export interface TrafficResult extends GenStats {
  sessions: number;
  sent: number;
  acked: number;
  lost: number;
  wallMs: number;
  stalled: boolean;
}

/** Answer to `close`. */
export interface CloseResult extends GenStats {
  closed: number;
  /** `ping` records the server sent (and the generator answered). */
  pings: number;
  wallMs: number;
}

/** Answer to `room`. */
export interface RoomResult extends GenStats {
  members: number;
  linesSent: number;
  linesAcked: number;
  delivered: number;
  notices: number;
  sendMs: number;
  deliveryMs: number;
  wallMs: number;
}

/** Answer to `settle`. */
export interface SettleResult extends GenStats {
  notices: number;
  wallMs: number;
}

/** A generator command, as bench/loadgen.mjs reads it. */
export type GenCommand = { cmd: string } & Record<string, unknown>;

type Pending = { resolve: (value: Record<string, unknown>) => void; reject: (e: Error) => void };

/**
 * A child process that answers JSON-lines requests in order, matched by `id`:
 * bench/loadgen.mjs and bench/procfs.mjs. Closing its stdin ends it.
 */
class LineProcess {
  readonly pid: number;
  /** The first line it printed, when it prints one at start (loadgen: its versions). */
  hello: Record<string, unknown> = {};
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #pending = new Map<number, Pending>();
  readonly #name: string;
  #nextId = 1;
  #stderr: string[] = [];

  private constructor(child: Deno.ChildProcess, name: string) {
    this.#child = child;
    this.pid = child.pid;
    this.#name = name;
    this.#writer = child.stdin.getWriter();
  }

  /** Starts `command args`; waits for its hello line when `greets`. */
  static async start(command: string, args: string[], greets: boolean): Promise<LineProcess> {
    const child = new Deno.Command(command, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const process = new LineProcess(child, `${command} ${args.join(" ")}`);
    const lines = readLines(child.stdout);
    process.#keepStderr();
    if (greets) {
      const first = await lines.next();
      if (first.done) {
        await child.status;
        throw new Error(`${process.#name} did not start: ${process.#stderr.join(" | ")}`);
      }
      process.hello = JSON.parse(first.value).result ?? {};
    }
    process.#listen(lines);
    return process;
  }

  async #keepStderr(): Promise<void> {
    for await (const line of readLines(this.#child.stderr)) {
      this.#stderr.push(line);
      if (this.#stderr.length > 50) this.#stderr.shift();
    }
  }

  async #listen(lines: AsyncGenerator<string>): Promise<void> {
    for await (const line of lines) {
      const answer = JSON.parse(line);
      this.#pending.get(answer.id)?.resolve(answer);
      this.#pending.delete(answer.id);
    }
    const why = new Error(`${this.#name} exited: ${this.#stderr.slice(-5).join(" | ")}`);
    for (const pending of this.#pending.values()) pending.reject(why);
    this.#pending.clear();
  }

  /** Sends `body` (plus an id) and resolves with the answer line. */
  request(body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const id = this.#nextId++;
    const answer = new Promise<Record<string, unknown>>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
    });
    this.#writer.write(encoder.encode(JSON.stringify({ ...body, id }) + "\n")).catch(() => {});
    return answer;
  }

  /** Closes its stdin (it then exits by itself); SIGKILL after 3 s. */
  async stop(): Promise<void> {
    await this.#writer.close().catch(() => {});
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 3000);
    await this.#child.status;
    clearTimeout(timer);
  }
}

/** One bench/loadgen.mjs process. */
class Generator {
  readonly #process: LineProcess;

  private constructor(process: LineProcess) {
    this.#process = process;
  }

  static async start(): Promise<Generator> {
    return new Generator(await LineProcess.start("node", [`${BENCH_DIR}loadgen.mjs`], true));
  }

  get pid(): number {
    return this.#process.pid;
  }

  /** Node and OpenSSL versions it reported. */
  get versions(): { node: string; openssl: string } {
    const { node, openssl } = this.#process.hello as { node: string; openssl: string };
    return { node, openssl };
  }

  /** Runs `command` and resolves with its result. */
  async run(command: GenCommand): Promise<Record<string, unknown>> {
    const answer = await this.#process.request(command);
    if (!answer.ok) throw new Error(`load generator: ${answer.error}`);
    return answer.result as Record<string, unknown>;
  }

  stop(): Promise<void> {
    return this.#process.stop();
  }
}

async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let pending = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    pending += text;
    let lf: number;
    while ((lf = pending.indexOf("\n")) >= 0) {
      yield pending.slice(0, lf);
      pending = pending.slice(lf + 1);
    }
  }
}

/** Fields of generator answers that are spans of time: merged by max, not summed. */
const MAX_FIELDS = new Set(["wallMs", "genWallMs", "sendMs", "deliveryMs"]);

/** One field of two generator answers, merged. */
function mergeField(key: string, have: unknown, value: unknown): unknown {
  if (have === undefined) return Array.isArray(value) ? [...value] : value;
  if (typeof value === "number") {
    return MAX_FIELDS.has(key) ? Math.max(have as number, value) : (have as number) + value;
  }
  if (Array.isArray(value)) return (have as unknown[]).concat(value);
  if (typeof value === "boolean") return have === true || value;
  if (key === "errors") {
    const [a, b] = [have as GenErrors, value as GenErrors];
    return { count: a.count + b.count, samples: [...new Set([...a.samples, ...b.samples])] };
  }
  return value;
}

/** One answer from several generators: counts summed, times maxed, latencies pooled. */
function merge(parts: Record<string, unknown>[]): Record<string, unknown> {
  const merged: Record<string, unknown> = {};
  for (const part of parts) {
    for (const [key, value] of Object.entries(part)) {
      merged[key] = mergeField(key, merged[key], value);
    }
  }
  // Each generator is one JS thread: the busiest one is the one that may set the pace.
  const busiest = Math.max(
    ...parts.map((p) => (100 * (p.genCpuMs as number)) / (p.genWallMs as number)),
  );
  return { latencies: [], errors: { count: 0, samples: [] }, ...merged, genCpuPct: busiest };
}

/** Splits `total` into `parts` near-equal non-negative integers. */
function split(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor((total + i) / parts));
}

/**
 * The load generator processes (bench/loadgen.mjs under Node). Work that
 * divides (handshake loops, sessions) is spread over them; commands on held
 * sessions go to the generators that hold some.
 */
export class GeneratorPool {
  readonly #generators: Generator[];
  #holding: boolean[];

  private constructor(generators: Generator[]) {
    this.#generators = generators;
    this.#holding = generators.map(() => false);
  }

  /** Starts `count` generator processes. */
  static async start(count: number): Promise<GeneratorPool> {
    return new GeneratorPool(await Promise.all(Array.from({ length: count }, Generator.start)));
  }

  /** Process ids of the generators. */
  get pids(): number[] {
    return this.#generators.map((g) => g.pid);
  }

  /** Node and OpenSSL versions. */
  get versions(): { node: string; openssl: string } {
    return this.#generators[0].versions;
  }

  /** Case a: `concurrency` handshake loops for `seconds`, spread over the generators. */
  async handshakes(
    command: Record<string, unknown> & { concurrency: number },
  ): Promise<HandshakesResult> {
    const shares = split(command.concurrency, this.#generators.length);
    const parts = await Promise.all(
      this.#generators.flatMap((g, i) =>
        shares[i] > 0 ? [g.run({ ...command, cmd: "handshakes", concurrency: shares[i] })] : []
      ),
    );
    return merge(parts) as unknown as HandshakesResult;
  }

  /** Opens `count` sessions, spread over the generators, and holds them. */
  async open(
    command: Record<string, unknown> & { count: number; concurrency: number },
  ): Promise<OpenResult> {
    const counts = split(command.count, this.#generators.length);
    const concurrencies = split(command.concurrency, this.#generators.length);
    const parts = await Promise.all(this.#generators.map((g, i) => {
      if (counts[i] === 0) return null;
      this.#holding[i] = true;
      return g.run({
        ...command,
        cmd: "open",
        count: counts[i],
        concurrency: Math.max(1, concurrencies[i]),
      });
    }));
    return merge(parts.filter((p) => p !== null)) as unknown as OpenResult;
  }

  /** A command on the held sessions (traffic, room, settle, close). */
  async held<T>(command: GenCommand): Promise<T> {
    const parts = await Promise.all(
      this.#generators.filter((_, i) => this.#holding[i]).map((g) => g.run(command)),
    );
    if (command.cmd === "close") this.#holding = this.#holding.map(() => false);
    if (parts.length === 0) throw new Error(`${command.cmd}: no generator holds sessions`);
    return merge(parts) as unknown as T;
  }

  /** Stops every generator. */
  async stop(): Promise<void> {
    await Promise.all(this.#generators.map((g) => g.stop()));
  }
}

// ───────────────────────────────────────────────────────────────────────────
// Statistics and tables
// ───────────────────────────────────────────────────────────────────────────

/** Nearest-rank percentile `p` (0–100) of `values`; NaN when empty. */
export function percentile(values: ArrayLike<number>, p: number): number {
  const sorted = Float64Array.from(values).sort();
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Median, min and max of the rounds' values of one metric. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

/** The {@link Spread} of `values` (NaN when empty). */
export function spread(values: number[]): Spread {
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return { median: NaN, min: NaN, max: NaN };
  const sorted = [...finite].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1] };
}

/** A number for a table: thousands separators, digits that suit its size. */
export function fmt(x: number, digits?: number): string {
  if (!Number.isFinite(x)) return "n/a";
  const d = digits ?? (Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : 2);
  return x.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
}

/** "median (min–max)", or just the value when all rounds agree or there is one round. */
export function fmtSpread(s: Spread, digits?: number): string {
  const median = fmt(s.median, digits);
  const [min, max] = [fmt(s.min, digits), fmt(s.max, digits)];
  return min === max ? median : `${median} (${min}–${max})`;
}

/** A markdown table; numbers (and "n/a") are right-aligned. */
export function markdownTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(3, h.length, ...rows.map((r) => r[i].length)));
  const right = header.map((_, i) => i > 0);
  const line = (cells: string[]) =>
    `| ${
      cells.map((c, i) => right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i])).join(" | ")
    } |`;
  const rule = `| ${
    widths.map((w, i) => right[i] ? "-".repeat(w - 1) + ":" : "-".repeat(w)).join(" | ")
  } |`;
  return [line(header), rule, ...rows.map(line)].join("\n");
}

/** MiB with one decimal. */
export const mib = (bytes: number): string => fmt(bytes / 1048576, 1);

// ───────────────────────────────────────────────────────────────────────────
// Machine facts
// ───────────────────────────────────────────────────────────────────────────

/** What a reader needs to compare two runs. */
export interface MachineFacts {
  cores: number;
  cpuModel: string;
  memTotalGiB: number;
  kernel: string;
  deno: string;
  node: string;
  openssl: string;
  loadAverageBefore: string;
}

/** Cores, CPU model, memory, kernel, Deno/Node/OpenSSL versions and the load average. */
export async function machineFacts(
  versions: { node: string; openssl: string },
): Promise<MachineFacts> {
  const [cpuinfo, meminfo, osrelease] = (await readProc(
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/sys/kernel/osrelease",
  )).map((text) => text ?? "");
  return {
    cores: navigator.hardwareConcurrency,
    cpuModel: cpuinfo.match(/^model name\s*:\s*(.*)$/m)?.[1].trim() ?? "unknown",
    memTotalGiB: Number(meminfo.match(/^MemTotal:\s+(\d+)/m)?.[1] ?? NaN) / 1048576,
    kernel: osrelease.trim(),
    deno: await denoVersion(),
    node: `v${versions.node}`,
    openssl: versions.openssl,
    loadAverageBefore: await loadAverage(),
  };
}

/** The facts as two lines of text. */
export function describeMachine(facts: MachineFacts): string {
  return [
    `Machine: ${facts.cores} cores, ${facts.cpuModel}, ${
      fmt(facts.memTotalGiB, 1)
    } GiB, Linux ${facts.kernel}`,
    `Runtimes: ${facts.deno}; Node ${facts.node} (OpenSSL ${facts.openssl}); load average before: ${facts.loadAverageBefore}`,
  ].join("\n");
}

/** The first lines of a report: its title, the command, the machine, then `more`. */
export function reportHeader(
  title: string,
  command: string,
  facts: MachineFacts,
  more: string[],
): string[] {
  return [`# ${title}`, ``, `Command: ${command}`, describeMachine(facts), ...more];
}

// ───────────────────────────────────────────────────────────────────────────
// The command line
// ───────────────────────────────────────────────────────────────────────────

/** A bad command line: printed as one `[!]` line, exit code 2. */
export class UsageError extends Error {}

/** The servers a comparing benchmark measures, baseline first. */
export type ServerDirs = { name: string; dir: string }[];

/** What {@link parseCompareArgs} reads besides a benchmark's own options. */
export interface CompareArgs<V> {
  /** The benchmark's own options, as node:util parseArgs gives them. */
  values: V;
  /** `--baseline DIR` (if given) then this checkout (or `--server-dir`). */
  serverDirs: ServerDirs;
  /** `--json`. */
  json: boolean;
  /** Everything after `--`: flags for server.ts. */
  dhxFlags: string[];
}

/** One option of node:util parseArgs. */
type ArgSpec = { type: "string" | "boolean"; default?: string | boolean; short?: string };

/**
 * Parses a comparing benchmark's command line: its own string options
 * (`own`, each with a default), plus `--server-dir`, `--baseline`, `--json`,
 * `-h/--help`, and server.ts flags after `--`.
 *
 * @throws {UsageError} for an unknown or malformed option
 */
export function parseCompareArgs<K extends string>(
  args: string[],
  own: Record<K, string>,
): CompareArgs<Record<K, string>> | "help" {
  const dash = args.indexOf("--");
  const options: Record<string, ArgSpec> = {
    "server-dir": { type: "string", default: new URL("..", import.meta.url).pathname },
    baseline: { type: "string" },
    json: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  };
  for (const [name, value] of Object.entries<string>(own)) {
    options[name] = { type: "string", default: value };
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: dash < 0 ? args : args.slice(0, dash), options }).values;
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) return "help";
  const serverDirs: ServerDirs = [{ name: "this checkout", dir: String(values["server-dir"]) }];
  if (values.baseline) serverDirs.unshift({ name: "baseline", dir: String(values.baseline) });
  const mine = Object.fromEntries(Object.keys(own).map((name) => [name, String(values[name])]));
  return {
    values: mine as Record<K, string>,
    serverDirs,
    json: values.json === true,
    dhxFlags: dash < 0 ? [] : args.slice(dash + 1),
  };
}

/**
 * The entry point of a benchmark: parses `args` (printing `usage` for --help,
 * one line and exit 2 for a {@link UsageError}), starts the /proc reader and
 * the load generators, runs `benchmark`, and always stops them again.
 * Returns the exit code.
 */
export async function benchmarkMain<O extends { generators: number }>(
  args: string[],
  usage: string,
  parse: (args: string[]) => O | "help",
  benchmark: (options: O, gen: GeneratorPool) => Promise<number>,
): Promise<number> {
  let options: O;
  try {
    const parsed = parse(args);
    if (parsed === "help") {
      console.log(usage);
      return 0;
    }
    options = parsed;
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`[!] ${error.message} (see --help)`);
    return 2;
  }
  await startProcReader();
  const gen = await GeneratorPool.start(options.generators);
  try {
    return await benchmark(options, gen);
  } finally {
    await gen.stop();
    await stopProcReader();
  }
}
