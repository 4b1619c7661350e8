/**
 * The two scripts as real processes: `deno run --allow-net server.ts` and
 * `client.ts`, talking over loopback TCP (every server on 127.0.0.1, port 0),
 * driven through their stdin, signals and flags.
 *
 * Needs running `deno` and the network: `deno test -P tests/process_test.ts`.
 * Plain `deno test` reports these tests as ignored.
 */

import assert from "node:assert/strict";
import denoJson from "../deno.json" with { type: "json" };
import { describeBigint } from "../console.ts";
import { GROUPS, hostKeyFingerprint, SECURE_GROUP_NAMES } from "../dh.ts";
import { longestHello } from "../transport.ts";
import {
  closedPort,
  DenoProcess,
  FINGERPRINT,
  lacks,
  linesOf,
  LONG_NUMBER,
  pipedClient,
  type ProcessResult,
  runToEnd,
  spawnServer,
  TOY_FINGERPRINT,
  within,
} from "./support.ts";

const ignore = lacks("net", "run");

/** A stack trace line. */
const STACK = /^\s+at /m;

/** A result for assertion messages. */
function show(what: string, result: ProcessResult | DenoProcess): string {
  return `${what}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
}

/** Sends `signal` to a process and waits for its end. */
async function stop(proc: DenoProcess, signal: Deno.Signal = "SIGINT"): Promise<ProcessResult> {
  proc.child.kill(signal);
  return await proc.finish();
}

/** A client process on `port` whose stdin stays open until closed. */
function openClient(port: number, args: string[] = []): DenoProcess {
  return new DenoProcess("client.ts", ["--port", String(port), ...args], "piped");
}

/** The first value captured by `pattern` in `text`; fails if absent. */
function captured(text: string, pattern: RegExp, what: string): string {
  const match = pattern.exec(text);
  assert.ok(match, `${what}: no ${pattern} in:\n${text}`);
  return match[1];
}

/** x^e mod m, square and multiply: an independent check of the printed math. */
function powMod(x: bigint, e: bigint, m: bigint): bigint {
  let result = 1n;
  for (x %= m; e > 0n; e >>= 1n, x = (x * x) % m) if (e & 1n) result = (result * x) % m;
  return result;
}

/** Runs processes at most `width` at a time (2 cores); results in order. */
async function inBatches<T>(jobs: (() => Promise<T>)[], width = 4): Promise<T[]> {
  const results: T[] = [];
  for (let i = 0; i < jobs.length; i += width) {
    results.push(...await Promise.all(jobs.slice(i, i + width).map((job) => job())));
  }
  return results;
}

/** Runs a script to its end with stdin from /dev/null. */
function runScript(script: string, args: string[]): Promise<ProcessResult> {
  return runToEnd(new DenoProcess(script, args));
}

/**
 * A test with a server process on a free port (its flags: `args`), which
 * ends with the test if it still runs.
 */
function serverProcessTest(
  name: string,
  args: string[],
  fn: (server: DenoProcess, port: number) => Promise<void>,
  stdin: "piped" | "null" = "null",
): void {
  Deno.test({
    name,
    ignore,
    async fn() {
      const { proc: server, port } = await spawnServer(args, stdin);
      await using _server = server;
      await fn(server, port);
    },
  });
}

// ───────────────────────────────────────────────────────────────────────────
// Sessions
// ───────────────────────────────────────────────────────────────────────────

serverProcessTest(
  "processes: secure server (stdin /dev/null) and piped clients exchange lines; no secret shown",
  [],
  async (server, port) => {
    const first = await pipedClient(port, [], "a\nGrüße 🙂\n");
    assert.equal(first.code, 0, show("client", first));
    assert.equal(first.stderr, "", show("client", first));
    assert.match(first.stdout, /^\[\+\] Line 1 acknowledged \(seq 0\)$/m);
    assert.match(first.stdout, /^\[\+\] Line 2 acknowledged \(seq 1\)$/m);
    assert.match(first.stdout, /^\[\*\] Session closed$/m);
    await server.waitFor(/^\[\*\] guest1 \(127\.0\.0\.1:\d+\) disconnected$/m);
    const a = server.stdout.search(/^\[\+\] guest1 \(127\.0\.0\.1:\d+\): a$/m);
    const b = server.stdout.search(/^\[\+\] guest1 \(127\.0\.0\.1:\d+\): Grüße 🙂$/m);
    assert.ok(a >= 0 && b > a, show("server", server));
    const fingerprint = FINGERPRINT.exec(first.stdout)?.[1];
    assert.ok(fingerprint, first.stdout);
    assert.equal(FINGERPRINT.exec(server.stdout)?.[1], fingerprint, server.stdout);
    assert.match(server.stdout, /^\[\*\] Group ffdhe2048 \(RFC 7919, 2048-bit p, g = 2\)$/m);

    // Its stdin ended at once (/dev/null): the server still serves.
    assert.equal(server.exited, false);
    const second = await pipedClient(port, [], "again\n");
    assert.equal(second.code, 0, show("second client", second));
    await server.waitFor(/^\[\+\] guest2 \(127\.0\.0\.1:\d+\): again$/m);

    const stopped = await stop(server);
    assert.equal(stopped.code, 0, show("server", stopped));
    assert.match(stopped.stdout, /^\[\*\] Server stopped$/m);
    assert.equal(stopped.stderr, "", show("server", stopped));
    // Secrets stay hidden: sizes and digests only, never a long number.
    for (const [who, result] of [["client", first], ["client 2", second], ["server", stopped]]) {
      const out = result as ProcessResult;
      assert.match(out.stdout, /Shared key calculated: \d+-bit number, sha256 [0-9a-f]{8}…$/m);
      assert.doesNotMatch(out.stdout + out.stderr, LONG_NUMBER, show(who as string, out));
    }
  },
);

serverProcessTest(
  "processes: --toy server and --toy client print the original's numbers",
  ["--toy"],
  async (server, port) => {
    await server.waitFor(
      /^\[\*\] Shared parameters: p = 23 \(a safe prime\), g = 5 \(insecure toy mode\)$/m,
    );
    const client = await pipedClient(port, ["--toy"], "hello\nexit?\n");
    assert.equal(client.code, 0, show("client", client));
    for (
      const line of [
        "[*] Server shares p = 23, g = 5 (toy, cipher xor8)",
        "[*] Received server public key: 10",
        "[*] Sending public key: 20",
        "[*] Shared key calculated: 19",
        "[+] Line 1 acknowledged (seq 0)",
        "[+] Line 2 acknowledged (seq 1)",
      ]
    ) assert.ok(linesOf(client.stdout).includes(line), `${line}\n${show("client", client)}`);
    // Since revision 3 the hello carries the host key: other bytes than vector 0's, so
    // another fingerprint, the same on both sides.
    const fingerprint = FINGERPRINT.exec(client.stdout)?.[1];
    assert.ok(fingerprint && fingerprint !== TOY_FINGERPRINT, show("client", client));
    assert.match(client.stderr, /^\[!\] Toy mode: these numbers can be broken by hand/m);
    await server.waitFor(/^\[\+\] guest1 \(127\.0\.0\.1:\d+\): exit\?$/m);
    for (
      const line of ["[*] Received client public key: 20", "[*] Shared key calculated: 19"]
    ) assert.ok(linesOf(server.stdout).includes(line), `${line}\n${show("server", server)}`);
    assert.equal(FINGERPRINT.exec(server.stdout)?.[1], fingerprint);
    const stopped = await stop(server);
    assert.equal(stopped.code, 0, show("server", stopped));
  },
);

serverProcessTest(
  "processes: --verbose shows the math on both sides, and the values agree",
  ["--verbose"],
  async (server, port) => {
    const client = await pipedClient(port, ["--verbose"], "math\n");
    assert.equal(client.code, 0, show("client", client));
    await server.waitFor(/^\[\+\] guest1 \(127\.0\.0\.1:\d+\): math$/m);
    const c = client.stdout;
    const s = server.stdout;
    const n = "(\\d+)";
    const S = String.raw`^\[\*\] 127\.0\.0\.1:\d+: `;
    const p = BigInt(captured(c, /^\[\*\] p = (\d+)$/m, "client p"));
    assert.equal(p, GROUPS.ffdhe2048.p);
    assert.equal(BigInt(captured(s, new RegExp(`${S}p = ${n}$`, "m"), "server p")), p);
    const a = BigInt(captured(c, /^\[\*\] private key a = (\d+)$/m, "client a"));
    const A = BigInt(captured(c, /^\[\*\] public key A = g\^a mod p = (\d+)$/m, "client A"));
    const clientB = BigInt(captured(c, /^\[\*\] peer public key B = (\d+)$/m, "client's B"));
    const clientZ = BigInt(captured(c, /^\[\*\] shared secret Z = B\^a mod p = (\d+)$/m, "Z"));
    const b = BigInt(captured(s, new RegExp(`${S}private key b = ${n}$`, "m"), "server b"));
    const B = BigInt(captured(s, new RegExp(`${S}public key B = g\\^b mod p = ${n}$`, "m"), "B"));
    const serverA = BigInt(captured(s, new RegExp(`${S}peer public key A = ${n}$`, "m"), "A"));
    const serverZ = BigInt(
      captured(s, new RegExp(`${S}shared secret Z = A\\^b mod p = ${n}$`, "m"), "server Z"),
    );
    // The two sides agree, and the numbers are what the math says.
    assert.equal(serverA, A);
    assert.equal(clientB, B);
    assert.equal(clientZ, serverZ);
    assert.equal(powMod(2n, a, p), A);
    assert.equal(powMod(2n, b, p), B);
    assert.equal(powMod(B, a, p), clientZ);
    assert.equal(powMod(A, b, p), serverZ);
    assert.ok(clientZ > 1n && clientZ < p - 1n);
    // Both sides print the full numbers in their key lines too.
    assert.equal(captured(c, /^\[\*\] Received server public key: (\d+)$/m, "c"), String(B));
    assert.equal(captured(c, /^\[\*\] Sending public key: (\d+)$/m, "c"), String(A));
    assert.equal(captured(c, /^\[\*\] Shared key calculated: (\d+)$/m, "c"), String(clientZ));
    assert.equal(captured(s, /^\[\*\] Received client public key: (\d+)$/m, "s"), String(A));
    assert.equal(captured(s, /^\[\*\] Shared key calculated: (\d+)$/m, "s"), String(serverZ));
    // The key schedule and fingerprint lines match line for line.
    for (const part of ["client→server encryption key", "server→client MAC key"]) {
      const hex = `(${part}\\s+[0-9a-f]{64})`;
      assert.equal(
        captured(c, new RegExp(`^\\[\\*\\]\\s+${hex}$`, "m"), `client ${part}`),
        captured(s, new RegExp(`${S}\\s+${hex}$`, "m"), `server ${part}`),
      );
    }
    const fingerprint = captured(c, /^\[\*\]\s+fingerprint = ([0-9A-F-]{19})$/m, "fingerprint");
    assert.equal(
      captured(s, new RegExp(`${S}\\s+fingerprint = ([0-9A-F-]{19})$`, "m"), "s"),
      fingerprint,
    );
    assert.equal(FINGERPRINT.exec(c)?.[1], fingerprint);
    assert.equal(FINGERPRINT.exec(s)?.[1], fingerprint);
    const stopped = await stop(server);
    assert.equal(stopped.code, 0, show("server", stopped));
  },
);

// ───────────────────────────────────────────────────────────────────────────
// Signals, stdin and exits
// ───────────────────────────────────────────────────────────────────────────

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  serverProcessTest(
    `processes: ${signal} stops the server (exit 0, "Server stopped"); an idle client gets bye`,
    [],
    async (server, port) => {
      // stdin stays open: the idle client can only end because of the server.
      await using client = openClient(port, ["--timeout", "1"]);
      await client.waitFor(/Session established/);
      await server.waitFor(/Session with 127\.0\.0\.1:\d+ \(guest1\)/);
      const stopped = await stop(server, signal);
      assert.equal(stopped.code, 0, show("server", stopped));
      assert.match(stopped.stdout, /^\[\*\] Server stopped$/m);
      assert.equal(stopped.stderr, "", show("server", stopped));
      // (Its exit code is the next test's business.)
      const result = await client.finish();
      assert.match(
        result.stderr,
        /^\[!\] The server ended the session before the end of the input$/m,
        show("client", result),
      );
      assert.doesNotMatch(result.stderr, /without bye|not acknowledged/, show("client", result));
    },
  );
}

serverProcessTest(
  "processes: a slow producer (a; pause; b) whose server ends the session during the pause: exit 1, and says so",
  [],
  async (server, port) => {
    // As `(echo a; sleep 3; echo b) | client.ts` with the server stopped during the sleep.
    await using client = openClient(port, ["--timeout", "2"]);
    await client.write("a\n");
    await client.waitFor(/^\[\+\] Line 1 acknowledged \(seq 0\)$/m);
    const stopped = await stop(server);
    assert.equal(stopped.code, 0, show("server", stopped));
    const result = await client.finish(); // "b" is never written: the pause outlasts the session
    assert.equal(result.code, 1, show("client", result));
    assert.equal(
      result.stderr,
      "[!] The server ended the session before the end of the input\n",
      show("client", result),
    );
    assert.match(stopped.stdout, /: a$/m);
  },
);

serverProcessTest(
  "processes: SIGINT to an idle client leaves with bye, exit 0",
  [],
  async (server, port) => {
    await using client = openClient(port);
    await client.write("hi\n");
    await client.waitFor(/^\[\+\] Line 1 acknowledged \(seq 0\)$/m);
    client.child.kill("SIGINT");
    const result = await client.finish();
    assert.equal(result.code, 0, show("client", result));
    assert.match(result.stdout, /^\[\*\] Session closed$/m);
    assert.equal(result.stderr, "", show("client", result));
    await server.waitFor(/^\[\*\] guest1 \(127\.0\.0\.1:\d+\) disconnected$/m);
    assert.doesNotMatch(server.stdout, /without bye/);
    assert.equal(server.stderr, "", show("server", server));
  },
);

serverProcessTest(
  "processes: piped `exit` is sent as text; /quit ends the client, unsent; a line after it: exit 1",
  [],
  async (server, port) => {
    await using client = openClient(port);
    await client.write("one\nexit\n/quit\ntwo\n"); // stdin stays open
    const result = await client.finish();
    assert.equal(result.code, 1, show("client", result));
    assert.equal(result.stderr, "[!] 1 input line after /quit not sent\n", show("client", result));
    await server.waitFor(/^\[\*\] guest1 \(127\.0\.0\.1:\d+\) disconnected$/m);
    assert.match(server.stdout, /^\[\+\] guest1 \(127\.0\.0\.1:\d+\): one$/m);
    assert.match(server.stdout, /^\[\+\] guest1 \(127\.0\.0\.1:\d+\): exit$/m);
    assert.doesNotMatch(server.stdout, /: (two|\/quit)$/m);
    // /quit last: nothing left unsent, exit 0.
    const last = await pipedClient(port, [], "three\n/quit\n");
    assert.equal(last.code, 0, show("client", last));
    await server.waitFor(/: three$/m);
  },
);

Deno.test({
  name: "processes: connection refused → exit 1 and exactly one [!] line, no stack trace",
  ignore,
  async fn() {
    const port = closedPort();
    const result = await runScript("client.ts", ["--port", String(port)]);
    assert.equal(result.code, 1, show("client", result));
    const lines = linesOf(result.stderr);
    assert.equal(lines.length, 1, show("client", result));
    assert.equal(
      lines[0],
      `[!] Cannot connect to 127.0.0.1:${port}: connection refused; is the server running?`,
    );
    assert.doesNotMatch(result.stdout + result.stderr, STACK);
  },
});

Deno.test({
  name: "processes: --help, unknown flags and bad values: exit 2 and one [!] line",
  ignore,
  async fn() {
    const serverLeast = longestHello(GROUPS.ffdhe2048);
    const clientLeast = Math.max(...SECURE_GROUP_NAMES.map((g) => longestHello(GROUPS[g])));
    const nameRule = "1 to 24 characters from A-Z a-z 0-9 _ - .";
    // deno-fmt-ignore -- a table: one case a line
    const cases: [script: string, args: string[], error: string][] = [
      ["server.ts", ["--bogus"], "Unknown option '--bogus'"],
      ["client.ts", ["--bogus"], "Unknown option '--bogus'"],
      ["server.ts", ["--port", "-1"], '--port must be a whole number from 0 to 65535, got "-1"'],
      ["server.ts", ["--port", "abc"], '--port must be a whole number from 0 to 65535, got "abc"'],
      ["client.ts", ["--port", "-1"], '--port must be a whole number from 1 to 65535, got "-1"'],
      ["client.ts", ["--port", "abc"], '--port must be a whole number from 1 to 65535, got "abc"'],
      ["client.ts", ["--timeout", "0.0001"], '--timeout must be a number of seconds from 0.001 to 86400, got "0.0001"'],
      ["server.ts", ["--max-line", "1024"], `--max-line 1024 cannot carry a ffdhe2048 hello: use at least ${serverLeast}`],
      ["client.ts", ["--max-line", "1024"], `--max-line 1024 cannot carry every hello this client accepts: use at least ${clientLeast}`],
      ["server.ts", ["--prime", "1000000", "--toy"], "Bad --prime/--generator: 1000000 is not a prime, so it does not make a DH group"],
      ["server.ts", ["--generator", "1", "--toy"], "Bad --prime/--generator: the generator must lie in 2 … p − 2 = 21"],
      ["server.ts", ["--name", "bad name"], `--name: a name is ${nameRule}`],
      ["client.ts", ["--name", "bad name"], `--name: a name is ${nameRule}`],
      ["server.ts", ["--prime", "23"], "--prime is a teaching flag and needs --toy"],
    ];
    const helps = [["server.ts", "--help"], ["client.ts", "--help"], ["server.ts", "-h"]];
    const results = await inBatches([
      ...cases.map(([script, args]) => () => runScript(script, args)),
      ...helps.map(([script, flag]) => () => runScript(script, [flag])),
    ]);
    assert.equal(results.length, cases.length + helps.length);
    cases.forEach(([script, args, error], i) => {
      const result = results[i];
      const what = show(`${script} ${args.join(" ")}`, result);
      assert.equal(result.code, 2, what);
      assert.equal(result.stdout, "", what);
      assert.deepEqual(linesOf(result.stderr), [`[!] ${error} (see --help)`], what);
    });
    helps.forEach(([script, flag], i) => {
      const result = results[cases.length + i];
      const what = show(`${script} ${flag}`, result);
      assert.equal(result.code, 0, what);
      assert.equal(result.stderr, "", what);
      assert.ok(result.stdout.startsWith(`Usage: deno run --allow-net ${script} [options]`), what);
      assert.match(result.stdout, /--port PORT/, what);
      assert.match(result.stdout, /--toy/, what);
      assert.match(result.stdout, /Exit codes: 0 ok, 1 failure/, what);
    });
  },
});

serverProcessTest(
  "processes: a secure client refuses a --toy server before sending its key",
  ["--toy"],
  async (server, port) => {
    const result = await pipedClient(port, [], "secret\n");
    assert.equal(result.code, 1, show("client", result));
    assert.deepEqual(linesOf(result.stderr), [
      "[!] Server offered the toy group (a 5-bit prime); rerun with --toy to accept insecure parameters",
    ]);
    assert.doesNotMatch(result.stdout, /Sending public key|Session established/);
    // The server hears the client's error frame, never a key or a message.
    await server.waitFor(/^\[!\] 127\.0\.0\.1:\d+: /m, 10_000, "stderr");
    const stopped = await stop(server);
    assert.equal(stopped.code, 0, show("server", stopped));
    assert.doesNotMatch(stopped.stdout, /Received client public key|secret/);
  },
);

serverProcessTest(
  "processes: a --toy client facing a secure server draws a random key and hides the secret",
  [],
  async (server, port) => {
    const result = await pipedClient(port, ["--toy"], "hi\n");
    assert.equal(result.code, 0, show("client", result));
    const sent = captured(result.stdout, /^\[\*\] Sending public key: (.+)$/m, "client key");
    assert.notEqual(sent, "32"); // 2^5: the teaching key a = 5 with g = 2
    assert.notEqual(sent, describeBigint(32n, false));
    assert.match(sent, /^\d+-bit number, sha256 [0-9a-f]{8}…$/);
    assert.match(result.stdout, /^\[\*\] Shared key calculated: \d+-bit number, sha256 /m);
    assert.doesNotMatch(result.stdout + result.stderr, LONG_NUMBER);
    // The server received exactly that key.
    await server.waitFor(/^\[\+\] guest1 \(127\.0\.0\.1:\d+\): hi$/m);
    assert.equal(captured(server.stdout, /^\[\*\] Received client public key: (.+)$/m, "s"), sent);
    assert.equal(FINGERPRINT.exec(server.stdout)?.[1], FINGERPRINT.exec(result.stdout)?.[1]);
  },
);

serverProcessTest(
  "processes: the server's stdin: lines go to clients (empty ones nowhere), /who lists them, EOF does not stop it",
  [],
  async (server, port) => {
    await using client = openClient(port);
    await client.waitFor(/Session established/);
    await server.waitFor(/Session with 127\.0\.0\.1:\d+ \(guest1\)/);
    // An empty line does nothing: not sent, no "Sent to" (the line after it is).
    await server.write("\n\nhi\n");
    await client.waitFor(/^\[\+\] server: hi$/m);
    await server.waitFor(/^\[\*\] Sent to 1 client$/m);
    await server.write("/who\n");
    await server.waitFor(/^\[\*\] 1 client in session: guest1 \(127\.0\.0\.1:\d+\)$/m);
    // (Printed in order: every line before /who's answer is in.)
    assert.equal(server.stdout.match(/Sent to/g)?.length, 1, show("server", server));
    assert.doesNotMatch(client.stdout, /^\[\+\] server: $/m, show("client", client));
    await server.closeStdin();
    await client.write("after the operator left\n");
    await server.waitFor(/^\[\+\] guest1 \(127\.0\.0\.1:\d+\): after the operator left$/m);
    await client.closeStdin();
    const result = await client.finish();
    assert.equal(result.code, 0, show("client", result));
    // The client acked the operator's chat: the server reported nothing overdue.
    await server.waitFor(/^\[\*\] guest1 \(127\.0\.0\.1:\d+\) disconnected$/m);
    assert.equal(server.exited, false);
    const stopped = await stop(server);
    assert.equal(stopped.code, 0, show("server", stopped));
    assert.equal(stopped.stderr, "", show("server", stopped));
  },
  "piped",
);

serverProcessTest(
  "processes: --room with three piped clients: names, relays and notices",
  ["--room"],
  async (server, port) => {
    await server.waitFor(/^\[\*\] Room mode/m);
    await using alice = openClient(port, ["--name", "alice"]);
    await alice.waitFor(/^\[\*\] you are now alice$/m);
    await using bob = openClient(port, ["--name", "bob"]);
    await bob.waitFor(/^\[\*\] you are now bob$/m);
    // Announced once named: "bob joined", never "guest2 joined" then "guest2 is now bob".
    await alice.waitFor(/^\[\*\] bob joined$/m);
    await bob.waitFor(/^\[\*\] present: server, alice$/m);
    await using carol = openClient(port, ["--name", "carol"]);
    await carol.waitFor(/^\[\*\] you are now carol$/m);
    await alice.waitFor(/^\[\*\] carol joined$/m);
    await bob.waitFor(/^\[\*\] carol joined$/m);
    await alice.write("hi from alice\n");
    await bob.waitFor(/^\[\+\] alice: hi from alice$/m);
    await carol.waitFor(/^\[\+\] alice: hi from alice$/m);
    await carol.write("hi from carol\n");
    await alice.waitFor(/^\[\+\] carol: hi from carol$/m);
    await bob.waitFor(/^\[\+\] carol: hi from carol$/m);
    await server.waitFor(/^\[\+\] alice \(127\.0\.0\.1:\d+\): hi from alice$/m);
    await server.waitFor(/^\[\+\] carol \(127\.0\.0\.1:\d+\): hi from carol$/m);
    await carol.closeStdin();
    assert.equal((await carol.finish()).code, 0, show("carol", carol));
    await alice.waitFor(/^\[\*\] carol left$/m);
    await bob.waitFor(/^\[\*\] carol left$/m);
    await alice.closeStdin();
    await bob.closeStdin();
    assert.equal((await alice.finish()).code, 0, show("alice", alice));
    assert.equal((await bob.finish()).code, 0, show("bob", bob));
    // Nobody saw their own line relayed.
    assert.doesNotMatch(alice.stdout, /^\[\+\] alice: /m);
    assert.doesNotMatch(carol.stdout, /^\[\+\] carol: /m);
    assert.equal(bob.stdout.match(/^\[\+\] (alice|carol): hi from/gm)?.length, 2, bob.stdout);
    assert.doesNotMatch(alice.stdout, /guest\d/, "nobody was seen under a guest name");
  },
);

serverProcessTest(
  "processes: --max-clients 1: the next client is told 'server full (1 client)'",
  ["--max-clients", "1"],
  async (server, port) => {
    await using first = openClient(port);
    await first.waitFor(/Session established/);
    const second = await pipedClient(port, [], "no room\n");
    assert.equal(second.code, 1, show("second client", second));
    assert.match(second.stderr, /server full \(1 client\); try again later/);
    assert.doesNotMatch(second.stderr, /1 clients/);
    assert.doesNotMatch(second.stdout + second.stderr, STACK);
    await server.waitFor(
      /^\[!\] 127\.0\.0\.1:\d+ refused: server full \(1 client\); try again later$/m,
      10_000,
      "stderr",
    );
    // The first client is still served.
    await first.write("still here\n");
    await server.waitFor(/^\[\+\] guest1 \(127\.0\.0\.1:\d+\): still here$/m);
    await first.closeStdin();
    assert.equal(
      (await within(first.finish(), 15_000, "first client")).code,
      0,
      show("first", first),
    );
    assert.doesNotMatch(server.stdout, /no room/);
  },
);

serverProcessTest(
  "processes: --toy --private-key 11 (public key 22 = p − 1) is refused by both scripts, with one message",
  ["--toy"],
  async (server, port) => {
    const reason = "annot use this private key: private key 11 gives the public key 22, " +
      "which every peer refuses";
    const refused = await runScript("server.ts", ["--toy", "--private-key", "11", "--port", "0"]);
    assert.equal(refused.code, 2, show("server --private-key 11", refused));
    assert.equal(refused.stdout, "", show("server --private-key 11", refused));
    assert.deepEqual(linesOf(refused.stderr), [`[!] C${reason} (see --help)`]);
    // The client learns the group from the hello, and refuses before sending its key.
    const client = await pipedClient(port, ["--toy", "--private-key", "11"], "never sent\n");
    assert.equal(client.code, 1, show("client --private-key 11", client));
    assert.deepEqual(linesOf(client.stderr), [`[!] C${reason}`], show("client", client));
    assert.doesNotMatch(client.stdout, /Sending public key|Session established/);
    await server.waitFor(/^\[!\] 127\.0\.0\.1:\d+: peer reported an error: /m, 10_000, "stderr");
    assert.doesNotMatch(server.stdout, /Received client public key|never sent/);
  },
);

/** `lines` holds `expected` in this order (others may come between). */
function inOrder(lines: string[], expected: string[], what: string): void {
  let at = 0;
  for (const line of expected) {
    const found = lines.indexOf(line, at);
    assert.ok(found >= 0, `${what}: missing, or out of order: ${line}\n${lines.join("\n")}`);
    at = found + 1;
  }
}

/** An xor8 record line as the protocol text defines it, built by hand. */
function xor8Frame(type: string, seq: number, text: string, key: number): string {
  const bytes = [...new TextEncoder().encode(text)].map((b) => b ^ key);
  return JSON.stringify({ type, seq, data: btoa(String.fromCharCode(...bytes)) });
}

/** Hex pairs of some bytes, by hand. */
function hexOf(bytes: number[]): string {
  return bytes.map((b) => b.toString(16).padStart(2, "0")).join(" ");
}

serverProcessTest(
  "processes: --toy --wire: worked steps in order on each side, and each line's XOR on the wire",
  ["--toy", "--wire"],
  async (server, port) => {
    const [p, g, a, b] = [23n, 5n, 5n, 3n];
    const [A, B] = [g ** a % p, g ** b % p];
    const Z = B ** a % p;
    const key = Number(Z % 256n);
    // Revision 3: the hello ends with the server's host key, whose fingerprint it printed;
    // the key frame asks for its proof.
    const serverHostKey = captured(server.stdout, /^\[\*\] Host key (SHA256:\S+)$/m, "host key");
    const keyFrame = JSON.stringify({ type: "key", publicKey: String(A), proof: true });
    const plain = [..."hello"].map((c) => c.charCodeAt(0));
    const cipher = plain.map((byte) => byte ^ key);
    const msg = xor8Frame("msg", 0, "hello", key);
    const ack = xor8Frame("ack", 0, "0", key);
    const client = await pipedClient(port, ["--toy", "--wire"], "hello\n");
    assert.equal(client.code, 0, show("client", client));
    const hostKey = captured(client.stdout, /"hostKey":"([A-Za-z0-9+/]{43}=)"/, "hello's hostKey");
    assert.equal(hostKeyFingerprint(Uint8Array.fromBase64(hostKey)), serverHostKey);
    const hello = JSON.stringify({
      type: "hello",
      protocol: "dhx/1",
      group: "toy",
      p: "23",
      g: "5",
      publicKey: String(B),
      cipher: "xor8",
      hostKey,
    });
    inOrder(linesOf(client.stdout), [
      `[*] received: ${hello}`,
      `[*] sent: ${keyFrame}`,
      "[*] Received server public key: 10",
      "[*] Private key a = 5",
      "[*] A = g^a mod p = 5^5 mod 23 = 3125 mod 23 = 20",
      "[*] Sending public key: 20",
      "[*] Z = B^a mod p = 10^5 mod 23 = 100000 mod 23 = 19",
      "[*] Shared key calculated: 19",
      `[*] sent: "hello" → bytes ${hexOf(plain)} → XOR ${key} → ${hexOf(cipher)} → ${msg}`,
      `[*] received: ${ack} → ${hexOf([0x30 ^ key])} → XOR ${key} → bytes 30 → "0"`,
      "[+] Line 1 acknowledged (seq 0)",
    ], "client");
    await server.waitFor(/^\[\*\] guest1 \(127\.0\.0\.1:\d+\) disconnected$/m);
    const peer = captured(server.stdout, /^\[\+\] Connection from (127\.0\.0\.1:\d+)$/m, "peer");
    inOrder(linesOf(server.stdout), [
      "[*] Shared parameters: p = 23 (a safe prime), g = 5 (insecure toy mode)",
      "[*] Private key b = 3",
      "[*] B = g^b mod p = 5^3 mod 23 = 125 mod 23 = 10",
      `[+] Connection from ${peer}`,
      `[*] sent to ${peer}: ${hello}`,
      `[*] received from ${peer}: ${keyFrame}`,
      "[*] Sending public key: 10",
      "[*] Received client public key: 20",
      "[*] Z = A^b mod p = 20^3 mod 23 = 8000 mod 23 = 19",
      "[*] Shared key calculated: 19",
      `[*] received from ${peer}: ${msg} → ${hexOf(cipher)} → XOR ${key} → bytes ${
        hexOf(plain)
      } → "hello"`,
      `[*] sent to ${peer}: "0" → bytes 30 → XOR ${key} → ${hexOf([0x30 ^ key])} → ${ack}`,
      `[+] guest1 (${peer}): hello`,
    ], "server");
    // The server's own key is worked out once, at start, not per client.
    assert.equal(server.stdout.match(/Private key b = /g)?.length, 1, show("server", server));
  },
);

Deno.test({
  name: "processes: --version on both scripts prints the installed name and deno.json's version",
  ignore,
  async fn() {
    for (const [script, name] of [["server.ts", "dhx-server"], ["client.ts", "dhx-client"]]) {
      const result = await runScript(script, ["--version"]);
      assert.equal(result.code, 0, show(`${script} --version`, result));
      assert.equal(result.stderr, "", show(`${script} --version`, result));
      assert.equal(
        result.stdout,
        `${name} ${denoJson.version} (protocol dhx/1, Deno ${Deno.version.deno})\n`,
      );
    }
  },
});
