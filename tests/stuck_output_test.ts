/**
 * The two scripts with a stdout that nobody reads (a paused terminal, a full
 * pipe, a pager left alone): they must go on serving, keep their timeouts,
 * and end on a signal. Real processes over loopback TCP.
 *
 * Needs running `deno` and the network: `deno test -P tests/stuck_output_test.ts`.
 */

import assert from "node:assert/strict";
import { DenoProcess, lacks, pipedClient, ROOT, within } from "./support.ts";

const ignore = lacks("net", "run");
const decoder = new TextDecoder();

/**
 * A script whose stdout is read only until `ready` appears in it (then left
 * unread: the pipe fills), and whose stderr is collected.
 */
class UnreadStdout implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  stderr = "";
  readonly #stdin?: WritableStreamDefaultWriter<Uint8Array>;
  readonly #stderrPump: Promise<void>;
  #stdoutReader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  #exited = false;
  readonly status: Promise<Deno.CommandStatus>;

  constructor(script: string, args: string[], stdin: "piped" | "null") {
    this.child = new Deno.Command("deno", {
      args: ["run", "--allow-net", script, ...args],
      cwd: ROOT,
      stdin,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (stdin === "piped") this.#stdin = this.child.stdin.getWriter();
    const stderr = this.child.stderr;
    this.#stderrPump = (async () => {
      for await (const chunk of stderr) this.stderr += decoder.decode(chunk);
    })();
    this.status = this.child.status.then((status) => {
      this.#exited = true;
      return status;
    });
  }

  /** Reads stdout until `pattern` matches what was read; then stops reading it. */
  async readUntil(pattern: RegExp, ms = 20_000): Promise<RegExpExecArray> {
    this.#stdoutReader ??= this.child.stdout.getReader();
    let text = "";
    return await within(
      (async () => {
        for (;;) {
          const match = pattern.exec(text);
          if (match) return match;
          const { value, done } = await this.#stdoutReader!.read();
          if (done) throw new Error(`stdout ended before ${pattern}:\n${text}\n${this.stderr}`);
          text += decoder.decode(value, { stream: true });
        }
      })(),
      ms,
      () => `stdout ${pattern}; read so far:\n${text}\nstderr:\n${this.stderr}`,
    );
  }

  /** Writes to stdin. */
  async write(text: string): Promise<void> {
    await this.#stdin!.write(new TextEncoder().encode(text));
  }

  /** Waits for the exit, bounded. */
  async exit(ms: number): Promise<Deno.CommandStatus> {
    return await within(this.status, ms, () => `exit; stderr:\n${this.stderr}`);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#exited) {
      try {
        this.child.kill("SIGKILL");
      } catch {
        // exited meanwhile
      }
    }
    await this.#stdin?.close().catch(() => {});
    await this.status;
    if (this.#stdoutReader) await this.#stdoutReader.cancel();
    else await this.child.stdout.cancel();
    await this.#stderrPump;
  }
}

/**
 * Reads the server's stdout up to where it listens, then never again, and
 * has a client send 1,500 lines of 1,500 characters: about 2.3 MB of log,
 * far past the pipe and the queue. The flooding client must still be served.
 * Returns the port.
 */
async function floodUnread(server: UnreadStdout): Promise<number> {
  const listening = /^\[\*\] Server listening on 127\.0\.0\.1:(\d+)$/m;
  const port = Number((await server.readUntil(listening))[1]);
  const flood = Array.from({ length: 1500 }, (_, i) => `${i} ${"y".repeat(1500)}`).join("\n");
  const flooder = await pipedClient(port, ["--quiet"], flood + "\n");
  assert.equal(flooder.code, 0, `flooding client:\n${flooder.stderr}`);
  return port;
}

Deno.test({
  name:
    "stuck stdout: a server whose stdout nobody reads serves a flood and a good client, and ends on SIGTERM",
  ignore,
  async fn() {
    await using server = new UnreadStdout("server.ts", ["--port", "0"], "null");
    const port = await floodUnread(server);
    // A line far longer than a log line is cut, not printed whole.
    const huge = await pipedClient(port, ["--quiet"], "\x01".repeat(786_300) + "\n");
    assert.equal(huge.code, 0, `huge-line client:\n${huge.stderr}`);
    // A good client is still served: handshake, line acknowledged, bye.
    const good = await pipedClient(port, [], "hello\n");
    assert.equal(good.code, 0, `good client:\n${good.stdout}\n${good.stderr}`);
    assert.match(good.stdout, /^\[\+\] Line 1 acknowledged \(seq 0\)$/m);
    // SIGTERM ends it while its output is still stuck.
    const signalled = performance.now();
    server.child.kill("SIGTERM");
    const status = await server.exit(20_000);
    const took = performance.now() - signalled;
    assert.equal(status.code, 0, server.stderr);
    // The output gets a short grace period (2 s) to drain; 20 s is the failure.
    assert.ok(took < 15_000, `ended ${took.toFixed(0)} ms after SIGTERM`);
  },
});

Deno.test({
  name:
    "stuck stdout: a server's output drains once read again, and says how many log lines it dropped",
  ignore,
  async fn() {
    await using server = new UnreadStdout("server.ts", ["--port", "0"], "null");
    await floodUnread(server);
    // Reading again: the queue drains, and one line counts what was lost.
    const reading = server.readUntil(/never printed/, 60_000);
    const match = /^\[!\] ([\d,]+) log lines dropped: the terminal is too slow$/m;
    await within(
      (async () => {
        while (!match.test(server.stderr)) await new Promise((r) => setTimeout(r, 50));
      })(),
      20_000,
      () => `no dropped-lines line; stderr:\n${server.stderr}`,
    );
    const dropped = Number(match.exec(server.stderr)![1].replaceAll(",", ""));
    assert.ok(dropped > 0 && dropped < 1500, `${dropped} dropped`);
    server.child.kill("SIGTERM");
    await reading.catch(() => {}); // stdout ends with the server
    assert.equal((await server.exit(20_000)).code, 0, server.stderr);
  },
});

Deno.test({
  name:
    "stuck stdout: a client whose stdout nobody reads (a pager) sends every line; Ctrl-C leaves with exit 0",
  ignore,
  async fn() {
    await using server = new DenoProcess("server.ts", ["--port", "0"]);
    const port = Number(
      (await server.waitFor(/^\[\*\] Server listening on 127\.0\.0\.1:(\d+)$/m, 20_000))[1],
    );
    // 3,000 acks of about 35 bytes each: far more than a pipe holds.
    await using client = new UnreadStdout("client.ts", ["--port", String(port)], "piped");
    await client.readUntil(/^\[\+\] Session established/m);
    const lines = Array.from({ length: 3000 }, (_, i) => `line ${i}`).join("\n") + "\n";
    await client.write(lines);
    await server.waitFor(/: line 2999$/m, 60_000);
    // Ctrl-C (SIGINT) leaves, acks or not, while stdout is stuck.
    client.child.kill("SIGINT");
    const status = await client.exit(30_000);
    assert.equal(status.code, 0, client.stderr);
    await server.waitFor(/disconnected$/m, 20_000);
  },
});
