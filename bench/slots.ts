/**
 * Slot-exhaustion benchmark (issue 17 item 3): ten loopback addresses
 * (127.0.0.2 … 127.0.0.11) hold bare connections to a server and open a new
 * one as soon as one is dropped (bench/slots_attacker.mjs, a Node process);
 * meanwhile a good client from 127.0.0.1 tries, again and again, to get a
 * line acknowledged. Each server runs as its own process with default flags
 * (plus `--port 0 --quiet`), the baseline in the same run.
 *
 * Reports, per server: tries served within the bound (2 s), the time to
 * service (connect → first line acknowledged) at p50 and worst, why the
 * others failed, the attacker's connections per second, the server's CPU
 * (from /proc) per attacker connection and its peak RSS.
 *
 * ```sh
 * deno run --allow-run=deno,node --allow-net=127.0.0.1 --allow-read bench/slots.ts \
 *   --baseline /tmp/base-adm
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
  GeneratorPool,
  machineFacts,
  markdownTable,
  memory,
  mib,
  parseCompareArgs,
  percentile,
  reportHeader,
  ServerProcess,
  UsageError,
} from "./harness.ts";

const USAGE =
  `Usage: deno run --allow-run=deno,node --allow-net=127.0.0.1 --allow-read bench/slots.ts [options] [-- DHX_SERVER_FLAGS]

Starts each server (\`deno run --allow-net server.ts --port 0 --quiet\`), lets
ten addresses (127.0.0.2 … 127.0.0.11) refill bare connections as fast as the
server drops them, and times a good client from 127.0.0.1 getting one line
acknowledged, try after try.

Options (defaults):
  --tries N          good-client tries per server (20)
  --bound MS         a try counts as served within this time (2000)
  --per N            bare connections each attacking address keeps open (10)
  --warmup MS        attack time before the first try (3000)
  --pause MS         time between tries (500)
  --server-dir DIR   where server.ts is (the repository root)
  --baseline DIR     another checkout to measure first, in the same run
  --json             one JSON document instead of tables
  -h, --help         this help

Everything after -- goes to server.ts (both servers).`;

/** The attacking addresses: ten, as the acceptance says. */
const ATTACKERS = Array.from({ length: 10 }, (_, i) => `127.0.0.${i + 2}`);

interface Options {
  /** Load generators for benchmarkMain: one, idle (it reports Node's version). */
  generators: number;
  tries: number;
  bound: number;
  per: number;
  warmup: number;
  pause: number;
  serverDirs: { name: string; dir: string }[];
  json: boolean;
  dhxFlags: string[];
}

function parse(args: string[]): Options | "help" {
  const parsed = parseCompareArgs(args, {
    tries: "20",
    bound: "2000",
    per: "10",
    warmup: "3000",
    pause: "500",
  });
  if (parsed === "help") return "help";
  const { values } = parsed;
  const number = (name: string, text: string) => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < 0) {
      throw new UsageError(`--${name} must be a whole number: ${text}`);
    }
    return value;
  };
  return {
    generators: 1,
    tries: number("tries", values.tries),
    bound: number("bound", values.bound),
    per: number("per", values.per),
    warmup: number("warmup", values.warmup),
    pause: number("pause", values.pause),
    serverDirs: parsed.serverDirs,
    json: parsed.json,
    dhxFlags: parsed.dhxFlags,
  };
}

/** A logger for runClient that notes when the first line is acknowledged, and the errors. */
class TryLog {
  quiet = false;
  acknowledgedAt: number | undefined;
  readonly errors: string[] = [];
  info(): void {}
  line(): void {}
  notice(): void {}
  success(message: string): void {
    if (/acknowledged/.test(message)) this.acknowledgedAt ??= performance.now();
  }
  error(message: string): void {
    this.errors.push(message);
  }
}

/** One good-client try: connect, handshake, one line acknowledged; ms, or why not. */
async function goodTry(
  runClient: (options: Record<string, unknown>) => Promise<number>,
  port: number,
  n: number,
  bound: number,
): Promise<{ ms: number; served: boolean; why?: string }> {
  const log = new TryLog();
  const started = performance.now();
  const input = ReadableStream.from([new TextEncoder().encode(`good try ${n}\n`)]);
  const code = await runClient({
    host: "127.0.0.1",
    port,
    input,
    interactive: false,
    logger: log,
    timeoutMs: 10_000,
  }).catch((error) => {
    log.errors.push(String(error));
    return 1;
  });
  const ms = (log.acknowledgedAt ?? performance.now()) - started;
  const served = code === 0 && log.acknowledgedAt !== undefined && ms <= bound;
  const why = served ? undefined : log.errors[0] ?? (code === 0 ? `took ${fmt(ms, 0)} ms` : "?");
  return { ms, served, why };
}

interface Row {
  server: string;
  tries: number;
  served: number;
  p50Ms: number;
  worstMs: number;
  failures: Record<string, number>;
  attackPerSecond: number;
  serverCpuPct: number;
  serverCpuUsPerAttack: number;
  peakRssMiB: number;
}

async function measure(
  options: Options,
  name: string,
  dir: string,
): Promise<Row> {
  const server = await ServerProcess.start(
    dhxServer({ serverDir: dir, dhxFlags: options.dhxFlags }, new Set(), []),
  );
  const { runClient } = await import(new URL(`file://${dir}/client.ts`).href);
  const attacker = new Deno.Command("node", {
    args: [
      `${BENCH_DIR}slots_attacker.mjs`,
      String(server.port),
      ATTACKERS.join(","),
      String(
        options.per,
      ),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    await new Promise((resolve) => setTimeout(resolve, options.warmup));
    const cpu0 = await cpuMs(server.pid);
    const t0 = performance.now();
    const results = [];
    for (let n = 0; n < options.tries; n++) {
      results.push(await goodTry(runClient, server.port, n, options.bound));
      await new Promise((resolve) => setTimeout(resolve, options.pause));
    }
    const wallMs = performance.now() - t0;
    const cpu1 = await cpuMs(server.pid);
    const peak = (await memory(server.pid)).peak;
    await attacker.stdin.close();
    const { stdout } = await attacker.output();
    const stats = JSON.parse(new TextDecoder().decode(stdout).trim() || "{}");
    const opened = Number(stats.opened ?? 0);
    const seconds = Number(stats.seconds ?? 1);
    const failures: Record<string, number> = {};
    for (const r of results) {
      if (r.served) continue;
      const why = (r.why ?? "?").replace(/\d+/g, "N");
      failures[why] = (failures[why] ?? 0) + 1;
    }
    const times = results.map((r) => r.ms);
    return {
      server: name,
      tries: results.length,
      served: results.filter((r) => r.served).length,
      p50Ms: percentile(times, 50),
      worstMs: Math.max(...times),
      failures,
      attackPerSecond: opened / seconds,
      serverCpuPct: (100 * (cpu1 - cpu0)) / wallMs,
      serverCpuUsPerAttack: ((cpu1 - cpu0) * 1000) /
        Math.max(1, (opened * wallMs) / 1000 / seconds),
      peakRssMiB: peak / 1048576,
    };
  } finally {
    try {
      attacker.kill("SIGTERM");
    } catch { /* gone */ }
    await attacker.status;
    await server.stop();
  }
}

/** Measures each server in turn and prints the report. */
async function benchmark(options: Options, gen: GeneratorPool): Promise<number> {
  const rows: Row[] = [];
  const command = await commandLine();
  const facts = await machineFacts(gen.versions);
  for (const { name, dir } of options.serverDirs) rows.push(await measure(options, name, dir));
  if (options.json) {
    console.log(JSON.stringify({ command, facts, options, rows }, null, 2));
    return 0;
  }
  const lines = reportHeader(
    "Slot exhaustion: 10 addresses refilling bare connections",
    command,
    facts,
    [
      "",
      `Each attacking address keeps ${options.per} bare connections open (no key, no DH), ` +
      `reopening each as soon as it is dropped; ${options.warmup} ms of attack before the first try. ` +
      `A try is served when its one line is acknowledged within ${options.bound} ms of its connect.`,
      "",
    ],
  );
  lines.push(markdownTable(
    [
      "server",
      "served",
      "p50 ms",
      "worst ms",
      "attack conn/s",
      "server CPU %",
      "CPU µs / attack conn",
      "peak RSS MiB",
      "failures",
    ],
    rows.map((r) => [
      r.server,
      `${r.served}/${r.tries}`,
      fmt(r.p50Ms, 0),
      fmt(r.worstMs, 0),
      fmt(r.attackPerSecond, 0),
      fmt(r.serverCpuPct, 0),
      fmt(r.serverCpuUsPerAttack, 0),
      mib(r.peakRssMiB * 1048576),
      Object.entries(r.failures).map(([why, n]) => `${n}× ${why}`).join("; ") || "none",
    ]),
  ));
  console.log(lines.join("\n"));
  return 0;
}

if (import.meta.main) {
  Deno.exit(await benchmarkMain(Deno.args, USAGE, parse, benchmark));
}
