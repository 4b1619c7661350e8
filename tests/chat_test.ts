/**
 * Integration tests of the dhx chat: `server.ts` and `client.ts` talking
 * DHX/1 over loopback TCP, both in-process (`startServer` / `runClient`) and
 * as real `deno run` processes, plus the client against fake servers written
 * here that break the protocol on purpose.
 *
 * Run from the project root: `deno test -P tests/chat_test.ts`.
 *
 * Every listener binds 127.0.0.1 port 0; every server, listener, connection
 * and child process is closed in a `finally` block.
 */

import assert from "node:assert/strict";
import {
  acceptKey,
  createOffer,
  customGroup,
  derivePublicKey,
  GROUPS,
  LineConnection,
  LineReader,
  type Logger,
  parseHello,
  respondToHello,
  SECURE_CIPHER,
  TOY_CIPHER,
} from "../dh.ts";
import { type ReceivedMessage, startServer } from "../server.ts";
import { runClient } from "../client.ts";

// ───────────────────────────────────────────────────────────────────────────
// Helpers
// ───────────────────────────────────────────────────────────────────────────

const ROOT = new URL("..", import.meta.url).pathname;
const SERVER_SCRIPT = new URL("../server.ts", import.meta.url).pathname;
const CLIENT_SCRIPT = new URL("../client.ts", import.meta.url).pathname;
const encoder = new TextEncoder();

/** The toy session's fingerprint (tests/dhx1-vectors.json, group toy). */
const TOY_FINGERPRINT = "90B9-A4D2-25F0-BE47";
const FINGERPRINT = /fingerprint ([0-9A-F]{4}(?:-[0-9A-F]{4}){3})\b/;

/** What a wait is for; a function is called at timeout, to show the state then. */
type Description = string | (() => string);

/** Rejects when `promise` has not settled within `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: Description): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const text = typeof what === "string" ? what : what();
      reject(new Error(`timed out after ${ms} ms: ${text}`));
    }, ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Calls the waiters whose condition became true; used by logs and processes. */
class Waiters {
  #waiters: { ready: () => boolean; resolve: () => void }[] = [];

  /** Resolves once `ready()` holds, checked now and after each `notify`. */
  until(ready: () => boolean, ms: number, what: Description): Promise<void> {
    if (ready()) return Promise.resolve();
    const waiter = { ready, resolve: () => {} };
    const reached = new Promise<void>((resolve) => waiter.resolve = resolve);
    this.#waiters.push(waiter);
    return within(reached, ms, what).finally(() => {
      this.#waiters = this.#waiters.filter((w) => w !== waiter);
    });
  }

  notify(): void {
    for (const waiter of this.#waiters) if (waiter.ready()) waiter.resolve();
  }
}

/** A Logger that records every line, by level. */
class CapturingLogger implements Logger {
  readonly infos: string[] = [];
  readonly successes: string[] = [];
  readonly notices: string[] = [];
  readonly errors: string[] = [];
  readonly lines: string[] = [];
  readonly #waiters = new Waiters();

  info = (m: string) => this.#push(this.infos, "[*]", m);
  success = (m: string) => this.#push(this.successes, "[+]", m);
  notice = (m: string) => this.#push(this.notices, "[*]", m);
  error = (m: string) => this.#push(this.errors, "[!]", m);

  #push(list: string[], prefix: string, message: string): void {
    list.push(message);
    this.lines.push(`${prefix} ${message}`);
    this.#waiters.notify();
  }

  /** Resolves when some line matches `pattern`. */
  waitFor(pattern: RegExp, ms = 5000): Promise<void> {
    return this.#waiters.until(
      () => this.lines.some((line) => pattern.test(line)),
      ms,
      () => `log line ${pattern} (log so far:\n${this.dump()})`,
    );
  }

  /** The fingerprint printed in a success line. */
  fingerprint(): string | undefined {
    for (const line of this.successes) {
      const match = FINGERPRINT.exec(line);
      if (match) return match[1];
    }
    return undefined;
  }

  dump(): string {
    return this.lines.join("\n");
  }
}

/** A stream holding `text` as the client's whole input. */
function inputOf(text: string): ReadableStream<Uint8Array> {
  return ReadableStream.from(text === "" ? [] : [encoder.encode(text)]);
}

/** Input the test types line by line; `end()` is Ctrl-D. */
function typedInput() {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const stream = new ReadableStream<Uint8Array>({ start: (c) => controller = c });
  return {
    stream,
    type(line: string) {
      controller.enqueue(encoder.encode(line + "\n"));
    },
    end() {
      try {
        controller.close();
      } catch {
        // the client already cancelled its input
      }
    },
  };
}

/** Collects the server's onMessage calls and lets a test await them. */
class MessageSink {
  readonly messages: ReceivedMessage[] = [];
  readonly #waiters = new Waiters();
  onMessage = (message: ReceivedMessage) => {
    this.messages.push(message);
    this.#waiters.notify();
  };

  texts(): string[] {
    return this.messages.map((m) => m.text);
  }

  waitForCount(count: number, ms = 5000): Promise<void> {
    return this.#waiters.until(
      () => this.messages.length >= count,
      ms,
      () => `${count} messages (got ${JSON.stringify(this.texts())})`,
    );
  }

  /** Texts grouped by the peer that sent them, in arrival order. */
  byPeer(): Map<string, string[]> {
    const peers = new Map<string, string[]>();
    for (const { peer, text } of this.messages) {
      peers.set(peer, [...peers.get(peer) ?? [], text]);
    }
    return peers;
  }
}

/** A `deno run --allow-net SCRIPT ARGS` child with its output collected. */
class DenoProcess implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  exited = false;
  readonly status: Promise<Deno.CommandStatus>;
  readonly #pumps: Promise<void>[];
  readonly #stdin?: WritableStreamDefaultWriter<Uint8Array>;
  readonly #waiters = new Waiters();

  constructor(script: string, args: string[], stdin = false) {
    this.child = new Deno.Command("deno", {
      args: ["run", "--allow-net", script, ...args],
      cwd: ROOT,
      stdin: stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (stdin) this.#stdin = this.child.stdin.getWriter();
    this.#pumps = [
      this.#pump(this.child.stdout, (text) => this.stdout += text),
      this.#pump(this.child.stderr, (text) => this.stderr += text),
    ];
    this.status = this.child.status.then((status) => {
      this.exited = true;
      this.#waiters.notify();
      return status;
    });
  }

  async #pump(stream: ReadableStream<Uint8Array>, append: (text: string) => void) {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      append(decoder.decode(chunk, { stream: true }));
      this.#waiters.notify();
    }
    append(decoder.decode());
    this.#waiters.notify();
  }

  /** Resolves once stdout matches `pattern`; fails early if the process exits. */
  async waitForStdout(pattern: RegExp, ms = 10_000): Promise<RegExpExecArray> {
    await this.#waiters.until(
      () => pattern.test(this.stdout) || this.exited,
      ms,
      () => `stdout ${pattern}; stdout so far:\n${this.stdout}\nstderr:\n${this.stderr}`,
    );
    const match = pattern.exec(this.stdout);
    if (!match) {
      throw new Error(
        `process exited before printing ${pattern}\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`,
      );
    }
    return match;
  }

  async write(text: string): Promise<void> {
    await this.#stdin!.write(encoder.encode(text));
  }

  async closeStdin(): Promise<void> {
    await this.#stdin?.close().catch(() => {});
  }

  /** Waits for the exit (bounded) and for all output. */
  async finish(ms = 10_000): Promise<{ code: number; stdout: string; stderr: string }> {
    const status = await within(
      this.status,
      ms,
      () => `exit of pid ${this.child.pid}\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`,
    );
    await Promise.all(this.#pumps);
    return { code: status.code, stdout: this.stdout, stderr: this.stderr };
  }

  /** Kills the process if it still runs and releases every pipe. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.exited) {
      try {
        this.child.kill("SIGKILL");
      } catch {
        // exited meanwhile
      }
    }
    await this.closeStdin();
    await this.status;
    await Promise.all(this.#pumps);
  }
}

/** A server process on a free port; resolves once it printed where it listens. */
async function spawnServer(args: string[]): Promise<{ proc: DenoProcess; port: number }> {
  const proc = new DenoProcess(SERVER_SCRIPT, ["--port", "0", ...args]);
  try {
    const match = await proc.waitForStdout(/^\[\*\] Server listening on 127\.0\.0\.1:(\d+)$/m);
    const port = Number(match[1]);
    assert.ok(port > 0 && port !== 4444, `listening port ${port}`);
    return { proc, port };
  } catch (error) {
    await proc[Symbol.asyncDispose]();
    throw error;
  }
}

/** Stops a server process with SIGINT and returns how it ended. */
async function interrupt(proc: DenoProcess) {
  proc.child.kill("SIGINT");
  return await proc.finish();
}

/** Non-empty lines of some output. */
function linesOf(text: string): string[] {
  return text.split("\n").filter((line) => line.trim() !== "");
}

/** A port nothing listens on: bound, then released. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** JSON.parse that returns undefined for non-JSON. */
function tryParse(line: string): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(line);
    return typeof value === "object" && value !== null ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A fake DHX/1 server for one connection: runs `script` with the accepted
 * connection and the list where it records what the client sent.
 */
function fakeServer(
  script: (link: LineConnection, received: string[]) => Promise<void>,
) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const received: string[] = [];
  const done = (async () => {
    const conn = await listener.accept();
    const link = new LineConnection(conn);
    try {
      await script(link, received);
    } finally {
      link.close();
    }
  })();
  done.catch(() => {}); // awaited by the test; never unhandled
  return {
    port: (listener.addr as Deno.NetAddr).port,
    received,
    done,
    close: () => {
      try {
        listener.close();
      } catch {
        // already closed
      }
    },
  };
}

/** Records every line the client sends until it closes (bounded). */
async function drain(link: LineConnection, received: string[], ms = 5000): Promise<void> {
  await within(
    (async () => {
      for (;;) {
        let line: string | null;
        try {
          line = await link.readLine();
        } catch {
          return; // reset or cut mid-line: the client is gone either way
        }
        if (line === null) return;
        received.push(line);
      }
    })(),
    ms,
    "the client to close the connection",
  );
}

/** Runs the client in-process against `port` with `text` as its input. */
function clientRun(
  port: number,
  text: string,
  logger: CapturingLogger,
  extra: { toy?: boolean; timeoutMs?: number } = {},
): Promise<number> {
  return within(
    runClient({ port, input: inputOf(text), interactive: false, logger, ...extra }),
    10_000,
    () => `runClient; client log:\n${logger.dump()}`,
  );
}

// ───────────────────────────────────────────────────────────────────────────
// In-process: startServer + runClient
// ───────────────────────────────────────────────────────────────────────────

Deno.test("in-process secure session: lines arrive in order, acks, same fingerprint", async () => {
  const serverLog = new CapturingLogger();
  const clientLog = new CapturingLogger();
  const sink = new MessageSink();
  const server = startServer({ port: 0, logger: serverLog, onMessage: sink.onMessage });
  try {
    assert.equal(server.addr.hostname, "127.0.0.1");
    assert.notEqual(server.addr.port, 0);
    const lines = ["hello", "second line", "ünïcödé ✓", "", "last"];
    const code = await clientRun(server.addr.port, lines.join("\n") + "\n", clientLog);
    assert.equal(code, 0, clientLog.dump());
    assert.deepEqual(sink.texts(), lines);
    assert.deepEqual(sink.messages.map((m) => m.seq), [0, 1, 2, 3, 4]);
    assert.equal(new Set(sink.messages.map((m) => m.peer)).size, 1);
    assert.match(sink.messages[0].peer, /^127\.0\.0\.1:\d+$/);
    for (let seq = 0; seq < lines.length; seq++) {
      assert.ok(
        clientLog.successes.includes(`Message ${seq} acknowledged`),
        `ack ${seq} in client log:\n${clientLog.dump()}`,
      );
    }
    assert.deepEqual(clientLog.errors, [], clientLog.dump());
    const fingerprint = clientLog.fingerprint();
    assert.ok(fingerprint, clientLog.dump());
    assert.equal(serverLog.fingerprint(), fingerprint, serverLog.dump());
    assert.notEqual(fingerprint, TOY_FINGERPRINT);
    // The server offers ffdhe2048 with the secure cipher by default.
    assert.ok(
      clientLog.infos.some((l) => l.includes("ffdhe2048") && l.includes(SECURE_CIPHER)),
      clientLog.dump(),
    );
    // Secrets of a secure session are never printed in full.
    assert.ok(
      serverLog.infos.some((l) => /^Shared key calculated: \d+-bit number, sha256 /.test(l)),
      serverLog.dump(),
    );
    assert.ok(!serverLog.lines.some((l) => /\d{100}/.test(l)), serverLog.dump());
    assert.ok(!clientLog.lines.some((l) => /\d{100}/.test(l)), clientLog.dump());
    await serverLog.waitFor(/disconnected$/); // the client's bye arrived
    assert.ok(!serverLog.lines.some((l) => l.includes("without bye")), serverLog.dump());
    assert.deepEqual(serverLog.errors, [], serverLog.dump());
  } finally {
    await server.close();
  }
  assert.equal(server.connections, 0);
});

Deno.test("in-process toy session: the original's numbers and the vector fingerprint", async () => {
  const serverLog = new CapturingLogger();
  const clientLog = new CapturingLogger();
  const sink = new MessageSink();
  const server = startServer({
    port: 0,
    group: GROUPS.toy,
    cipher: TOY_CIPHER,
    privateKey: 3n,
    logger: serverLog,
    onMessage: sink.onMessage,
  });
  try {
    const code = await clientRun(server.addr.port, "hello\nexit?\n", clientLog, { toy: true });
    assert.equal(code, 0, clientLog.dump());
    assert.deepEqual(sink.texts(), ["hello", "exit?"]);
    assert.ok(serverLog.infos.includes("Received client public key: 20"), serverLog.dump());
    assert.ok(serverLog.infos.includes("Shared key calculated: 19"), serverLog.dump());
    assert.ok(clientLog.infos.includes("Received server public key: 10"), clientLog.dump());
    assert.ok(clientLog.infos.includes("Sending public key: 20"), clientLog.dump());
    assert.ok(clientLog.infos.includes("Shared key calculated: 19"), clientLog.dump());
    assert.equal(serverLog.fingerprint(), TOY_FINGERPRINT, serverLog.dump());
    assert.equal(clientLog.fingerprint(), TOY_FINGERPRINT, clientLog.dump());
    assert.ok(clientLog.successes.includes("Message 0 acknowledged"), clientLog.dump());
    assert.ok(clientLog.successes.includes("Message 1 acknowledged"), clientLog.dump());
  } finally {
    await server.close();
  }
});

Deno.test("in-process: two clients at once each get their messages through", async () => {
  const serverLog = new CapturingLogger();
  const sink = new MessageSink();
  const server = startServer({ port: 0, logger: serverLog, onMessage: sink.onMessage });
  const logs = [new CapturingLogger(), new CapturingLogger()];
  const inputs = [typedInput(), typedInput()];
  try {
    const runs = inputs.map((input, i) =>
      runClient({
        port: server.addr.port,
        input: input.stream,
        interactive: false,
        logger: logs[i],
      })
    );
    // Interleave: A1, B1 — both sessions are open at the same time.
    inputs[0].type("A1");
    await sink.waitForCount(1);
    inputs[1].type("B1");
    await sink.waitForCount(2);
    assert.equal(server.connections, 2);
    inputs[1].type("B2");
    await sink.waitForCount(3);
    inputs[0].type("A2");
    inputs[0].type("A3");
    inputs[1].type("B3");
    for (const input of inputs) input.end();
    const codes = await within(Promise.all(runs), 10_000, "both clients");
    assert.deepEqual(codes, [0, 0], logs.map((l) => l.dump()).join("\n---\n"));
    const byPeer = [...sink.byPeer().values()].sort((a, b) => a[0].localeCompare(b[0]));
    assert.deepEqual(byPeer, [["A1", "A2", "A3"], ["B1", "B2", "B3"]]);
    for (const log of logs) {
      for (const seq of [0, 1, 2]) {
        assert.ok(log.successes.includes(`Message ${seq} acknowledged`), log.dump());
      }
    }
    // Two independent handshakes: two different fingerprints, each matched by the server.
    const fingerprints = logs.map((l) => l.fingerprint());
    assert.notEqual(fingerprints[0], fingerprints[1]);
    for (const fingerprint of fingerprints) {
      assert.ok(
        serverLog.successes.some((l) => l.endsWith(`fingerprint ${fingerprint}`)),
        serverLog.dump(),
      );
    }
  } finally {
    for (const input of inputs) input.end();
    await server.close();
  }
});

Deno.test("in-process: an `exit` line ends the session; later lines are not sent", async () => {
  const serverLog = new CapturingLogger();
  const clientLog = new CapturingLogger();
  const sink = new MessageSink();
  const server = startServer({ port: 0, logger: serverLog, onMessage: sink.onMessage });
  try {
    const code = await clientRun(server.addr.port, "a\nexit\nb\nc\n", clientLog);
    assert.equal(code, 0, clientLog.dump());
    await serverLog.waitFor(/disconnected$/); // bye processed: nothing more can come
    assert.deepEqual(sink.texts(), ["a"]);
    assert.ok(clientLog.successes.includes("Message 0 acknowledged"), clientLog.dump());
    assert.ok(!clientLog.lines.some((l) => /Message [1-9]/.test(l)), clientLog.dump());
  } finally {
    await server.close();
  }
});

Deno.test("in-process: empty input → handshake, bye, exit 0, no messages", async () => {
  const serverLog = new CapturingLogger();
  const clientLog = new CapturingLogger();
  const sink = new MessageSink();
  const server = startServer({ port: 0, logger: serverLog, onMessage: sink.onMessage });
  try {
    const code = await clientRun(server.addr.port, "", clientLog);
    assert.equal(code, 0, clientLog.dump());
    assert.ok(clientLog.fingerprint(), clientLog.dump());
    await serverLog.waitFor(/disconnected$/);
    assert.ok(!serverLog.lines.some((l) => l.includes("without bye")), serverLog.dump());
    assert.deepEqual(sink.messages, []);
    assert.deepEqual(clientLog.errors, []);
    assert.deepEqual(serverLog.errors, []);
  } finally {
    await server.close();
  }
});

Deno.test("in-process: server.close() sends bye; an idle client ends by itself with 0", async () => {
  const serverLog = new CapturingLogger();
  const clientLog = new CapturingLogger();
  const sink = new MessageSink();
  const server = startServer({ port: 0, logger: serverLog, onMessage: sink.onMessage });
  const input = typedInput();
  try {
    const run = runClient({
      port: server.addr.port,
      input: input.stream,
      interactive: false,
      logger: clientLog,
    });
    input.type("before close");
    await clientLog.waitFor(/Message 0 acknowledged/);
    await within(server.close(), 5000, "server.close()");
    // The input stays open: only the server's bye can end the session.
    const code = await within(run, 5000, () => `client after bye:\n${clientLog.dump()}`);
    assert.equal(code, 0, clientLog.dump());
    assert.ok(clientLog.infos.includes("Server ended the session"), clientLog.dump());
    assert.deepEqual(sink.texts(), ["before close"]);
    assert.equal(server.connections, 0);
  } finally {
    input.end();
    await server.close();
  }
});

Deno.test("in-process: 60 messages, whitespace, control characters and 200 KB arrive intact", async () => {
  const serverLog = new CapturingLogger();
  const clientLog = new CapturingLogger();
  const sink = new MessageSink();
  const server = startServer({ port: 0, logger: serverLog, onMessage: sink.onMessage });
  try {
    const lines = [
      "  leading spaces",
      "trailing spaces  ",
      "\ttab\t",
      "bell\u0007 and escape \u001b[31m",
      "x".repeat(200_000),
      ...Array.from({ length: 55 }, (_, i) => `line ${i}`),
    ];
    const code = await clientRun(server.addr.port, lines.join("\n") + "\n", clientLog);
    assert.equal(code, 0, clientLog.dump().slice(0, 2000));
    assert.equal(sink.messages.length, lines.length);
    assert.ok(sink.texts().every((text, i) => text === lines[i]), "texts differ");
    assert.deepEqual(sink.messages.map((m) => m.seq), lines.map((_, i) => i));
    assert.ok(clientLog.successes.includes(`Message ${lines.length - 1} acknowledged`));
    // The server's console never receives raw control characters from a peer.
    const shown = serverLog.successes.find((l) => l.includes("bell"));
    assert.ok(shown?.endsWith("bell\\u{7} and escape \\u{1b}[31m"), shown);
  } finally {
    await server.close();
  }
});

Deno.test("in-process: CRLF input and an unterminated last line are sent as typed", async () => {
  const clientLog = new CapturingLogger();
  const sink = new MessageSink();
  const server = startServer({ port: 0, logger: new CapturingLogger(), onMessage: sink.onMessage });
  try {
    const code = await clientRun(server.addr.port, "crlf\r\nplain\nno newline", clientLog);
    assert.equal(code, 0, clientLog.dump());
    assert.deepEqual(sink.texts(), ["crlf", "plain", "no newline"]);
  } finally {
    await server.close();
  }
});

Deno.test("in-process: a --toy client accepts custom parameters; both ends agree", async () => {
  const serverLog = new CapturingLogger();
  const clientLog = new CapturingLogger();
  const sink = new MessageSink();
  const server = startServer({
    port: 0,
    group: customGroup(467n, 2n),
    cipher: TOY_CIPHER,
    logger: serverLog,
    onMessage: sink.onMessage,
  });
  try {
    const code = await clientRun(server.addr.port, "custom\n", clientLog, { toy: true });
    assert.equal(code, 0, clientLog.dump());
    assert.deepEqual(sink.texts(), ["custom"]);
    assert.ok(clientLog.infos.some((l) => l.includes("p = 467, g = 2 (custom")), clientLog.dump());
    assert.equal(serverLog.fingerprint(), clientLog.fingerprint());
    // Z mod p agrees on both sides and is printed in full in toy mode.
    const shared = (log: CapturingLogger) =>
      log.infos.find((l) => l.startsWith("Shared key calculated: "));
    assert.match(shared(clientLog) ?? "", /^Shared key calculated: \d+$/);
    assert.equal(shared(serverLog), shared(clientLog));
  } finally {
    await server.close();
  }
});

Deno.test("in-process: a server at maxClients tells the next peer it is full", async () => {
  const serverLog = new CapturingLogger();
  const clientLog = new CapturingLogger();
  const sink = new MessageSink();
  const server = startServer({
    port: 0,
    maxClients: 1,
    logger: serverLog,
    onMessage: sink.onMessage,
  });
  const input = typedInput();
  let run: Promise<number> | undefined;
  try {
    run = runClient({
      port: server.addr.port,
      input: input.stream,
      interactive: false,
      logger: clientLog,
    });
    input.type("first");
    await sink.waitForCount(1);
    const extraLog = new CapturingLogger();
    const code = await clientRun(server.addr.port, "second\n", extraLog);
    assert.equal(code, 1, extraLog.dump());
    assert.ok(extraLog.errors.some((e) => /server full/.test(e)), extraLog.dump());
    assert.ok(serverLog.errors.some((e) => /server full/.test(e)), serverLog.dump());
    input.type("still here");
    await sink.waitForCount(2);
    input.end();
    assert.equal(await within(run, 5000, "first client"), 0, clientLog.dump());
    assert.deepEqual(sink.texts(), ["first", "still here"]);
  } finally {
    input.end();
    await server.close();
    await run?.catch(() => {});
  }
});

/** A raw TCP peer of the server, for breaking the protocol by hand. */
interface RawPeer {
  /** The server's hello line. */
  hello: string;
  /** Writes bytes exactly as given (no LF added). */
  write(text: string): Promise<void>;
}

Deno.test("in-process: the server drops broken peers and keeps serving a live client", async (t) => {
  const serverLog = new CapturingLogger();
  const clientLog = new CapturingLogger();
  const sink = new MessageSink();
  const server = startServer({
    port: 0,
    logger: serverLog,
    onMessage: sink.onMessage,
    maxLine: 1024,
    handshakeTimeoutMs: 8000, // generous: a raw peer's own ffdhe2048 math may be slow under load
  });
  const input = typedInput();
  let run: Promise<number> | undefined;
  try {
    run = runClient({
      port: server.addr.port,
      input: input.stream,
      interactive: false,
      logger: clientLog,
    });
    input.type("before");
    await sink.waitForCount(1);

    /** Runs `misbehave` on a fresh connection; returns the frames the server sent after it. */
    const misbehaving = async (
      misbehave: (peer: RawPeer) => Promise<void>,
      port = server.addr.port,
    ) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const reader = new LineReader(conn.readable);
      const after: (Record<string, unknown> | undefined)[] = [];
      try {
        const hello = await within(reader.readLine(), 5000, "hello");
        assert.equal(tryParse(hello!)?.type, "hello");
        await misbehave({
          hello: hello!,
          write: async (text) => {
            await conn.write(encoder.encode(text));
          },
        });
        await within(
          (async () => {
            for (;;) {
              const line = await reader.readLine().catch(() => null);
              if (line === null) return;
              after.push(tryParse(line));
            }
          })(),
          5000,
          "the server to close the connection",
        );
      } finally {
        try {
          conn.close();
        } catch {
          // the readable stream already closed it at end of input
        }
      }
      return after;
    };

    await t.step("garbage instead of a key → error frame, closed", async () => {
      const frames = await misbehaving((peer) => peer.write("GET / HTTP/1.1\r\n"));
      assert.deepEqual(frames.map((f) => f?.type), ["error"]);
      assert.match(String(frames[0]?.message), /JSON/);
    });

    await t.step("public key 1 → error frame, no session", async () => {
      const frames = await misbehaving((peer) =>
        peer.write(JSON.stringify({ type: "key", publicKey: "1" }) + "\n")
      );
      assert.deepEqual(frames.map((f) => f?.type), ["error"]);
      assert.match(String(frames[0]?.message), /public key/);
    });

    await t.step("silence → handshake timeout error frame", async () => {
      const impatientLog = new CapturingLogger();
      const impatient = startServer({ port: 0, logger: impatientLog, handshakeTimeoutMs: 300 });
      try {
        const started = performance.now();
        const frames = await misbehaving(() => Promise.resolve(), impatient.addr.port);
        assert.ok(performance.now() - started >= 250, "closed before the handshake timeout");
        assert.deepEqual(frames.map((f) => f?.type), ["error"]);
        assert.match(String(frames[0]?.message), /timeout/);
        assert.ok(impatientLog.errors.some((e) => /timeout/.test(e)), impatientLog.dump());
      } finally {
        await impatient.close();
      }
    });

    await t.step("an overlong line is refused before any LF arrives", async () => {
      // 4 KiB and no LF: the server must give up without waiting for the end of the line.
      const frames = await misbehaving((peer) => peer.write("x".repeat(4096)));
      assert.deepEqual(frames.map((f) => f?.type), ["error"]);
      assert.match(String(frames[0]?.message), /longer than 1024/);
    });

    await t.step("a msg with a flipped tag → authentication error, not delivered", async () => {
      const frames = await misbehaving(async (peer) => {
        const hello = parseHello(peer.hello, { insecure: false });
        const { keyLine, session } = await respondToHello(hello);
        const record = JSON.parse(await session.seal("msg", "forged"));
        const tag = Uint8Array.fromBase64(record.tag);
        tag[0] ^= 1;
        record.tag = tag.toBase64();
        await peer.write(`${keyLine}\n${JSON.stringify(record)}\n`);
      });
      assert.deepEqual(frames.map((f) => f?.type), ["error"]);
      assert.match(String(frames[0]?.message), /authentication/);
    });

    await t.step("a replayed msg (seq 0 twice) → sequence error; only one delivery", async () => {
      const frames = await misbehaving(async (peer) => {
        const hello = parseHello(peer.hello, { insecure: false });
        const { keyLine, session } = await respondToHello(hello);
        const record = await session.seal("msg", "replayed");
        await peer.write(`${keyLine}\n${record}\n${record}\n`);
      });
      assert.deepEqual(frames.map((f) => f?.type), ["ack", "error"]);
      assert.match(String(frames[1]?.message), /sequence/);
    });

    // The live client was never disturbed.
    input.type("after");
    await sink.waitForCount(3);
    assert.deepEqual(sink.texts(), ["before", "replayed", "after"]);
    input.end();
    assert.equal(await within(run, 5000, "live client"), 0, clientLog.dump());
    assert.equal(serverLog.errors.length, 5, serverLog.dump());
  } finally {
    input.end();
    await server.close();
    await run?.catch(() => {});
  }
});

// ───────────────────────────────────────────────────────────────────────────
// Real processes
// ───────────────────────────────────────────────────────────────────────────

Deno.test("processes: secure server and piped client exchange two lines", async () => {
  const { proc: server, port } = await spawnServer([]);
  await using _server = server;
  await using client = new DenoProcess(CLIENT_SCRIPT, ["--port", String(port)], true);
  await client.write("a\nb\n");
  await client.closeStdin();
  const result = await client.finish();
  assert.equal(result.code, 0, `client stdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
  assert.equal(result.stderr, "");
  assert.match(result.stdout, /^\[\+\] Message 0 acknowledged$/m);
  assert.match(result.stdout, /^\[\+\] Message 1 acknowledged$/m);
  await server.waitForStdout(/Message from 127\.0\.0\.1:\d+: b$/m);
  assert.match(server.stdout, /^\[\+\] Message from 127\.0\.0\.1:\d+: a$/m);
  assert.ok(server.stdout.indexOf(": a\n") < server.stdout.indexOf(": b\n"), server.stdout);
  const clientFingerprint = FINGERPRINT.exec(result.stdout)?.[1];
  assert.ok(clientFingerprint, result.stdout);
  assert.equal(FINGERPRINT.exec(server.stdout)?.[1], clientFingerprint, server.stdout);
  const stopped = await interrupt(server);
  assert.equal(stopped.code, 0, stopped.stderr);
  assert.match(stopped.stdout, /^\[\*\] Server stopped$/m);
});

Deno.test("processes: --toy server and --toy client print the original's numbers", async () => {
  const { proc: server, port } = await spawnServer(["--toy"]);
  await using _server = server;
  await server.waitForStdout(/^\[\*\] Shared parameters: p = 23, g = 5 /m);
  await using client = new DenoProcess(CLIENT_SCRIPT, ["--port", String(port), "--toy"], true);
  await client.write("hello\n");
  await client.closeStdin();
  const result = await client.finish();
  assert.equal(result.code, 0, `client stdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
  assert.match(result.stdout, /^\[\*\] Received server public key: 10$/m);
  assert.match(result.stdout, /^\[\*\] Shared key calculated: 19$/m);
  assert.match(result.stdout, /^\[\+\] Message 0 acknowledged$/m);
  assert.equal(FINGERPRINT.exec(result.stdout)?.[1], TOY_FINGERPRINT);
  await server.waitForStdout(/Message from 127\.0\.0\.1:\d+: hello$/m);
  assert.match(server.stdout, /^\[\*\] Received client public key: 20$/m);
  assert.match(server.stdout, /^\[\*\] Shared key calculated: 19$/m);
  assert.equal(FINGERPRINT.exec(server.stdout)?.[1], TOY_FINGERPRINT);
  const stopped = await interrupt(server);
  assert.equal(stopped.code, 0, stopped.stderr);
});

Deno.test("processes: SIGINT stops the server; a connected idle client exits 0 on bye", async () => {
  const { proc: server, port } = await spawnServer([]);
  await using _server = server;
  // stdin stays open: the client is idle and can only end because of the server.
  await using client = new DenoProcess(CLIENT_SCRIPT, ["--port", String(port)], true);
  await server.waitForStdout(/Session with 127\.0\.0\.1:\d+: fingerprint/);
  await client.waitForStdout(/Session established/);
  const stopped = await interrupt(server);
  assert.equal(stopped.code, 0, `server stderr:\n${stopped.stderr}`);
  assert.match(stopped.stdout, /^\[\*\] Server stopped$/m);
  assert.equal(stopped.stderr, "");
  const result = await client.finish(5000);
  assert.equal(result.code, 0, `client stdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
  assert.match(result.stdout, /Server ended the session/);
  assert.equal(result.stderr, "");
});

Deno.test("processes: SIGINT to an idle client ends its session with bye and exit 0", async () => {
  const { proc: server, port } = await spawnServer([]);
  await using _server = server;
  await using client = new DenoProcess(CLIENT_SCRIPT, ["--port", String(port)], true);
  await client.write("hi\n");
  await client.waitForStdout(/Message 0 acknowledged/);
  client.child.kill("SIGINT");
  const result = await client.finish(5000);
  assert.equal(result.code, 0, `client stdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
  assert.match(result.stdout, /Session closed/);
  await server.waitForStdout(/^\[\*\] 127\.0\.0\.1:\d+ disconnected$/m);
  assert.doesNotMatch(server.stdout, /without bye/);
  // SIGTERM stops the server as cleanly as SIGINT.
  server.child.kill("SIGTERM");
  const stopped = await server.finish();
  assert.equal(stopped.code, 0, stopped.stderr);
  assert.match(stopped.stdout, /^\[\*\] Server stopped$/m);
  assert.equal(stopped.stderr, "");
});

Deno.test("processes: `exit` on stdin ends the client; the rest is not sent", async () => {
  const { proc: server, port } = await spawnServer(["--toy"]);
  await using _server = server;
  await using client = new DenoProcess(CLIENT_SCRIPT, ["--port", String(port), "--toy"], true);
  // stdin stays open after `exit`: the word alone must end the session.
  await client.write("one\nexit\ntwo\n");
  const result = await client.finish(5000);
  assert.equal(result.code, 0, `client stdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
  await server.waitForStdout(/^\[\*\] 127\.0\.0\.1:\d+ disconnected$/m);
  assert.match(server.stdout, /Message from 127\.0\.0\.1:\d+: one$/m);
  assert.doesNotMatch(server.stdout, /: two$|: exit$/m);
  const stopped = await interrupt(server);
  assert.equal(stopped.code, 0);
});

Deno.test("processes: client to a closed port → exit 1, one [!] line, no stack trace", async () => {
  const port = closedPort();
  await using client = new DenoProcess(CLIENT_SCRIPT, ["--port", String(port)]);
  const result = await client.finish();
  assert.equal(result.code, 1);
  const lines = linesOf(result.stderr);
  assert.equal(lines.length, 1, result.stderr);
  assert.match(lines[0], /^\[!\] /);
  assert.match(lines[0], /refused/i);
  assert.ok(!/^\s*at /m.test(result.stderr + result.stdout), result.stderr);
});

Deno.test("processes: --help, unknown flags and bad values", async () => {
  const cases: { script: string; args: string[]; code: number; name: string }[] = [
    { name: "server --help", script: SERVER_SCRIPT, args: ["--help"], code: 0 },
    { name: "client --help", script: CLIENT_SCRIPT, args: ["--help"], code: 0 },
    { name: "server -h", script: SERVER_SCRIPT, args: ["-h"], code: 0 },
    { name: "server --bogus", script: SERVER_SCRIPT, args: ["--bogus"], code: 2 },
    { name: "client --bogus", script: CLIENT_SCRIPT, args: ["--bogus"], code: 2 },
    { name: "server --port 99999", script: SERVER_SCRIPT, args: ["--port", "99999"], code: 2 },
    { name: "client --port 99999", script: CLIENT_SCRIPT, args: ["--port", "99999"], code: 2 },
    { name: "server --prime 7", script: SERVER_SCRIPT, args: ["--prime", "7"], code: 2 },
    {
      name: "client --private-key 5",
      script: CLIENT_SCRIPT,
      args: ["--private-key", "5"],
      code: 2,
    },
  ];
  const procs = cases.map((c) => new DenoProcess(c.script, c.args));
  try {
    const results = await Promise.all(procs.map((p) => p.finish()));
    results.forEach((result, i) => {
      const { name, code } = cases[i];
      const context = `${name}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
      assert.equal(result.code, code, context);
      if (code === 0) {
        assert.match(result.stdout, /^Usage: deno run --allow-net (server|client)\.ts/, context);
        assert.match(result.stdout, /--port PORT/, context);
        assert.match(result.stdout, /--toy/, context);
        assert.equal(result.stderr, "", context);
      } else {
        const lines = linesOf(result.stderr);
        assert.equal(lines.length, 1, context);
        assert.match(lines[0], /^\[!\] \S/, context);
        assert.equal(result.stdout, "", context);
      }
    });
    const byName = (name: string) => results[cases.findIndex((c) => c.name === name)].stderr;
    assert.match(byName("server --bogus"), /bogus/);
    assert.match(byName("server --port 99999"), /--port/);
    assert.match(byName("client --port 99999"), /--port/);
    assert.match(byName("server --prime 7"), /--toy/);
    assert.match(byName("client --private-key 5"), /--toy/);
  } finally {
    for (const proc of procs) await proc[Symbol.asyncDispose]();
  }
});

Deno.test("processes: a secure client refuses a --toy server before sending its key", async () => {
  const { proc: server, port } = await spawnServer(["--toy"]);
  await using _server = server;
  await using client = new DenoProcess(CLIENT_SCRIPT, ["--port", String(port)], true);
  await client.write("secret\n");
  await client.closeStdin();
  const result = await client.finish();
  assert.equal(result.code, 1, `client stdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
  assert.match(result.stderr, /^\[!\] .*toy/m);
  assert.match(result.stderr, /--toy/);
  assert.ok(!/^\s*at /m.test(result.stderr), result.stderr);
  assert.doesNotMatch(result.stdout, /Session established|Sending public key/);
  const stopped = await interrupt(server);
  assert.equal(stopped.code, 0);
  assert.doesNotMatch(stopped.stdout, /Received client public key/);
  assert.doesNotMatch(stopped.stdout, /Message from/);
});

// ───────────────────────────────────────────────────────────────────────────
// The client against fake servers
// ───────────────────────────────────────────────────────────────────────────

const FF = GROUPS.ffdhe2048;
const FF_PUBLIC = derivePublicKey(FF, 0xC0FFEEn).toString();

/** A hello offering ffdhe2048 + the secure cipher, with `changes` applied. */
function helloLine(changes: Record<string, unknown> = {}): string {
  return JSON.stringify({
    type: "hello",
    protocol: "dhx/1",
    group: "ffdhe2048",
    p: FF.p.toString(),
    g: "2",
    publicKey: FF_PUBLIC,
    cipher: SECURE_CIPHER,
    ...changes,
  });
}

Deno.test("client refuses unacceptable hellos before it sends a key", async (t) => {
  const cases: { name: string; hello: string; reason: RegExp }[] = [
    {
      name: "toy group with xor8",
      hello: helloLine({ group: "toy", p: "23", g: "5", publicKey: "10", cipher: "xor8" }),
      reason: /toy.*--toy/,
    },
    {
      name: "toy group with the secure cipher",
      hello: helloLine({ group: "toy", p: "23", g: "5", publicKey: "10" }),
      reason: /toy.*--toy/,
    },
    {
      name: "custom group",
      hello: helloLine({ group: "custom", p: String(2n ** 127n - 1n), g: "3", publicKey: "12345" }),
      reason: /custom/,
    },
    {
      name: "custom name with ffdhe2048's own p and g",
      hello: helloLine({ group: "custom" }),
      reason: /custom/,
    },
    {
      name: "ffdhe2048 name with a different p (modp2048's)",
      hello: helloLine({ p: GROUPS.modp2048.p.toString() }),
      reason: /differ/,
    },
    {
      name: "ffdhe2048 name with p - 2",
      hello: helloLine({ p: (FF.p - 2n).toString() }),
      reason: /differ/,
    },
    { name: "g = 5 with ffdhe2048's p", hello: helloLine({ g: "5" }), reason: /differ/ },
    { name: "xor8 with ffdhe2048", hello: helloLine({ cipher: "xor8" }), reason: /xor8/ },
    { name: "unknown cipher", hello: helloLine({ cipher: "rot13" }), reason: /cipher/ },
    { name: "protocol dhx/2", hello: helloLine({ protocol: "dhx/2" }), reason: /dhx\/2/ },
    { name: "protocol missing", hello: helloLine({ protocol: undefined }), reason: /protocol/ },
    { name: "public key 0", hello: helloLine({ publicKey: "0" }), reason: /public key/ },
    { name: "public key 1", hello: helloLine({ publicKey: "1" }), reason: /public key/ },
    {
      name: "public key p - 1",
      hello: helloLine({ publicKey: (FF.p - 1n).toString() }),
      reason: /public key/,
    },
    {
      name: "public key p",
      hello: helloLine({ publicKey: FF.p.toString() }),
      reason: /public key/,
    },
    {
      name: "public key as a JSON number",
      hello: helloLine({ publicKey: 5 }),
      reason: /publicKey/,
    },
    { name: "garbage line", hello: "HTTP/1.1 400 Bad Request", reason: /JSON/ },
    {
      name: "a key frame instead of hello",
      hello: '{"type":"key","publicKey":"5"}',
      reason: /hello/,
    },
  ];
  for (const { name, hello, reason } of cases) {
    await t.step(name, async () => {
      const fake = fakeServer(async (link, received) => {
        await link.writeLine(hello);
        await drain(link, received);
      });
      const log = new CapturingLogger();
      try {
        const code = await clientRun(fake.port, "must not be sent\n", log);
        await within(fake.done, 5000, "fake server");
        assert.equal(code, 1, log.dump());
        const frames = fake.received.map(tryParse);
        assert.ok(
          !frames.some((f) => f?.type === "key"),
          `the client sent its key: ${fake.received.join("\n")}`,
        );
        assert.ok(
          frames.every((f) => f?.type === "error"),
          `only an error frame may follow a refused hello: ${fake.received.join("\n")}`,
        );
        assert.ok(log.errors.length >= 1, log.dump());
        assert.ok(log.errors.some((e) => reason.test(e)), `${reason} in:\n${log.dump()}`);
        assert.ok(!log.lines.some((l) => l.includes("Session established")), log.dump());
      } finally {
        fake.close();
        await fake.done.catch(() => {});
      }
    });
  }
});

/**
 * A fake server that really completes the handshake (ffdhe2048, secure
 * cipher) with dh.ts, then answers each of the client's records through
 * `reply`, and records everything the client sent.
 */
function handshakingServer(
  reply: (line: string, session: Awaited<ReturnType<typeof acceptKey>>) => Promise<string[]>,
) {
  return fakeServer(async (link, received) => {
    const offer = createOffer(FF, SECURE_CIPHER);
    await link.writeLine(offer.line);
    const keyLine = await within(link.readLine(), 5000, "key line");
    assert.ok(keyLine !== null);
    received.push(keyLine);
    const session = await acceptKey(offer, keyLine);
    await within(
      (async () => {
        for (;;) {
          let line: string | null;
          try {
            line = await link.readLine();
          } catch {
            return;
          }
          if (line === null) return;
          received.push(line);
          const frame = tryParse(line);
          if (frame?.type !== "msg") continue;
          await session.open(line);
          for (const out of await reply(line, session)) await link.writeLine(out);
        }
      })(),
      8000,
      "the client to finish",
    );
  });
}

async function expectClientFailure(
  fake: ReturnType<typeof fakeServer>,
  input: string,
  reason: RegExp,
  extra: { timeoutMs?: number } = {},
): Promise<CapturingLogger> {
  const log = new CapturingLogger();
  try {
    const code = await clientRun(fake.port, input, log, extra);
    await within(fake.done, 8000, "fake server");
    assert.equal(code, 1, log.dump());
    assert.ok(log.errors.some((e) => reason.test(e)), `${reason} in:\n${log.dump()}`);
    return log;
  } finally {
    fake.close();
    await fake.done.catch(() => {});
  }
}

Deno.test("client: an ack with one bit of its tag flipped → authentication error, exit 1", async () => {
  const fake = handshakingServer(async (_line, session) => {
    const ack = JSON.parse(await session.seal("ack", "0"));
    const tag = Uint8Array.fromBase64(ack.tag);
    tag[7] ^= 0x10;
    ack.tag = tag.toBase64();
    return [JSON.stringify(ack)];
  });
  const log = await expectClientFailure(fake, "tamper me\n", /authentication/);
  assert.ok(!log.successes.includes("Message 0 acknowledged"), log.dump());
  // The client reported the failure with an error frame and did not say bye.
  const types = fake.received.map((l) => tryParse(l)?.type);
  assert.deepEqual(types, ["key", "msg", "error"], fake.received.join("\n"));
});

Deno.test("client: an ack for the wrong message (properly sealed) → exit 1", async () => {
  const fake = handshakingServer(async (_line, session) => [await session.seal("ack", "1")]);
  const log = await expectClientFailure(fake, "first\n", /acknowledged message 1, expected 0/);
  assert.ok(!log.successes.includes("Message 0 acknowledged"), log.dump());
});

Deno.test("client: a replayed ack (same sealed line twice) → exit 1", async () => {
  let firstAck: string | undefined;
  const fake = handshakingServer(async (_line, session) => {
    firstAck ??= await session.seal("ack", "0");
    return [firstAck];
  });
  const log = await expectClientFailure(fake, "one\ntwo\n", /sequence/);
  assert.ok(log.successes.includes("Message 0 acknowledged"), log.dump());
  assert.ok(!log.successes.includes("Message 1 acknowledged"), log.dump());
});

Deno.test("client: messages never acknowledged → exit 1 after its timeout", async () => {
  const fake = handshakingServer(() => Promise.resolve([]));
  const started = performance.now();
  const log = await expectClientFailure(fake, "hello?\nanyone?\n", /not acknowledged/, {
    timeoutMs: 500,
  });
  const elapsed = performance.now() - started;
  assert.ok(elapsed >= 450, `gave up after ${elapsed} ms, before its 500 ms timeout`);
  assert.ok(elapsed < 5000, `took ${elapsed} ms`);
  assert.ok(log.errors.some((e) => /2 message\(s\)/.test(e) && /0, 1/.test(e)), log.dump());
  const types = fake.received.map((l) => tryParse(l)?.type);
  assert.deepEqual(types.slice(0, 3), ["key", "msg", "msg"], fake.received.join("\n"));
});
