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
  customGroup,
  GROUPS,
  parseHello,
  respondToHello,
  SECURE_CIPHER,
  type Session,
  TOY_CIPHER,
} from "../dh.ts";
import { type ServerHandle, type ServerOptions, startServer } from "../server.ts";
import { runClient } from "../client.ts";
import {
  CapturingLogger,
  type FakeServer,
  fakeServer,
  FINGERPRINT,
  flipBit,
  helloWith,
  MessageSink,
  RawPeer,
  serveHandshake,
  textStream,
  tryParse,
  typedInput,
  Waiters,
  withFields,
  within,
} from "./support.ts";

// ───────────────────────────────────────────────────────────────────────────
// Helpers
// ───────────────────────────────────────────────────────────────────────────

const ROOT = new URL("..", import.meta.url).pathname;
const SERVER_SCRIPT = new URL("../server.ts", import.meta.url).pathname;
const CLIENT_SCRIPT = new URL("../client.ts", import.meta.url).pathname;
const encoder = new TextEncoder();

/** The toy session's fingerprint (tests/dhx1-vectors.json, group toy). */
const TOY_FINGERPRINT = "90B9-A4D2-25F0-BE47";

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

/** Runs a client process against `port` with `text` piped to its stdin; returns how it ended. */
async function pipedClient(port: number, args: string[], text: string) {
  await using client = new DenoProcess(CLIENT_SCRIPT, ["--port", String(port), ...args], true);
  await client.write(text);
  await client.closeStdin();
  return await client.finish();
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

/** Runs the client in-process against `port` with `text` as its input. */
function clientRun(
  port: number,
  text: string,
  logger: CapturingLogger,
  extra: { toy?: boolean; timeoutMs?: number } = {},
): Promise<number> {
  return within(
    runClient({ port, input: textStream(text), interactive: false, logger, ...extra }),
    10_000,
    () => `runClient; client log:\n${logger.dump()}`,
  );
}

/** An in-process client reading {@link typedInput}; see {@link ServerFixture.typedClient}. */
interface TypedClient {
  /** Sends `line` and an LF. */
  type(line: string): void;
  /** Ends the input (Ctrl-D). */
  end(): void;
  /** runClient's exit code. */
  readonly run: Promise<number>;
}

/** What {@link withServer} hands its body. */
interface ServerFixture {
  readonly server: ServerHandle;
  readonly serverLog: CapturingLogger;
  /** A log for the test's client. */
  readonly clientLog: CapturingLogger;
  /** The server's onMessage calls. */
  readonly sink: MessageSink;
  /** Starts runClient against the server on input the test types (log: `clientLog`). */
  typedClient(logger?: CapturingLogger): TypedClient;
}

/**
 * Starts a server on port 0 (logging to `serverLog`, messages to `sink`),
 * runs `body`, then always ends the typed clients' input, closes the server
 * and waits for those clients. Returns the fixture, for checks after close.
 */
async function withServer(
  options: Omit<ServerOptions, "port" | "logger" | "onMessage">,
  body: (fixture: ServerFixture) => Promise<void>,
): Promise<ServerFixture> {
  const serverLog = new CapturingLogger();
  const sink = new MessageSink();
  const server = startServer({ ...options, port: 0, logger: serverLog, onMessage: sink.onMessage });
  const clients: TypedClient[] = [];
  const fixture: ServerFixture = {
    server,
    serverLog,
    clientLog: new CapturingLogger(),
    sink,
    typedClient(logger = fixture.clientLog) {
      const input = typedInput();
      const run = runClient({
        port: server.addr.port,
        input: input.stream,
        interactive: false,
        logger,
      });
      const client = { type: input.type, end: input.end, run };
      clients.push(client);
      return client;
    },
  };
  try {
    await body(fixture);
  } finally {
    for (const client of clients) client.end();
    await server.close();
    for (const client of clients) await client.run.catch(() => {});
  }
  return fixture;
}

// ───────────────────────────────────────────────────────────────────────────
// In-process: startServer + runClient
// ───────────────────────────────────────────────────────────────────────────

Deno.test("in-process secure session: lines arrive in order, acks, same fingerprint", async () => {
  const { server } = await withServer({}, async ({ server, serverLog, clientLog, sink }) => {
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
  });
  assert.equal(server.connections, 0);
});

Deno.test("in-process toy session: the original's numbers and the vector fingerprint", async () => {
  const toy = { group: GROUPS.toy, cipher: TOY_CIPHER, privateKey: 3n };
  await withServer(toy, async ({ server, serverLog, clientLog, sink }) => {
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
  });
});

Deno.test("in-process: two clients at once each get their messages through", async () => {
  await withServer({}, async ({ server, serverLog, sink, typedClient }) => {
    const logs = [new CapturingLogger(), new CapturingLogger()];
    const [clientA, clientB] = logs.map((log) => typedClient(log));
    // Interleave: A1, B1 — both sessions are open at the same time.
    clientA.type("A1");
    await sink.waitForCount(1);
    clientB.type("B1");
    await sink.waitForCount(2);
    assert.equal(server.connections, 2);
    clientB.type("B2");
    await sink.waitForCount(3);
    clientA.type("A2");
    clientA.type("A3");
    clientB.type("B3");
    clientA.end();
    clientB.end();
    const codes = await within(Promise.all([clientA.run, clientB.run]), 10_000, "both clients");
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
  });
});

Deno.test("in-process: an `exit` line ends the session; later lines are not sent", async () => {
  await withServer({}, async ({ server, serverLog, clientLog, sink }) => {
    const code = await clientRun(server.addr.port, "a\nexit\nb\nc\n", clientLog);
    assert.equal(code, 0, clientLog.dump());
    await serverLog.waitFor(/disconnected$/); // bye processed: nothing more can come
    assert.deepEqual(sink.texts(), ["a"]);
    assert.ok(clientLog.successes.includes("Message 0 acknowledged"), clientLog.dump());
    assert.ok(!clientLog.lines.some((l) => /Message [1-9]/.test(l)), clientLog.dump());
  });
});

Deno.test("in-process: empty input → handshake, bye, exit 0, no messages", async () => {
  await withServer({}, async ({ server, serverLog, clientLog, sink }) => {
    const code = await clientRun(server.addr.port, "", clientLog);
    assert.equal(code, 0, clientLog.dump());
    assert.ok(clientLog.fingerprint(), clientLog.dump());
    await serverLog.waitFor(/disconnected$/);
    assert.ok(!serverLog.lines.some((l) => l.includes("without bye")), serverLog.dump());
    assert.deepEqual(sink.messages, []);
    assert.deepEqual(clientLog.errors, []);
    assert.deepEqual(serverLog.errors, []);
  });
});

Deno.test("in-process: server.close() sends bye; an idle client ends by itself with 0", async () => {
  await withServer({}, async ({ server, clientLog, sink, typedClient }) => {
    const client = typedClient();
    client.type("before close");
    await clientLog.waitFor(/Message 0 acknowledged/);
    await within(server.close(), 5000, "server.close()");
    // The input stays open: only the server's bye can end the session.
    const code = await within(client.run, 5000, () => `client after bye:\n${clientLog.dump()}`);
    assert.equal(code, 0, clientLog.dump());
    assert.ok(clientLog.infos.includes("Server ended the session"), clientLog.dump());
    assert.deepEqual(sink.texts(), ["before close"]);
    assert.equal(server.connections, 0);
  });
});

Deno.test("in-process: 60 messages, whitespace, control characters and 200 KB arrive intact", async () => {
  await withServer({}, async ({ server, serverLog, clientLog, sink }) => {
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
  });
});

Deno.test("in-process: CRLF input and an unterminated last line are sent as typed", async () => {
  await withServer({}, async ({ server, clientLog, sink }) => {
    const code = await clientRun(server.addr.port, "crlf\r\nplain\nno newline", clientLog);
    assert.equal(code, 0, clientLog.dump());
    assert.deepEqual(sink.texts(), ["crlf", "plain", "no newline"]);
  });
});

Deno.test("in-process: a --toy client accepts custom parameters; both ends agree", async () => {
  const custom = { group: customGroup(467n, 2n), cipher: TOY_CIPHER };
  await withServer(custom, async ({ server, serverLog, clientLog, sink }) => {
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
  });
});

Deno.test("in-process: a server at maxClients tells the next peer it is full", async () => {
  await withServer(
    { maxClients: 1 },
    async ({ server, serverLog, clientLog, sink, typedClient }) => {
      const client = typedClient();
      client.type("first");
      await sink.waitForCount(1);
      const extraLog = new CapturingLogger();
      const code = await clientRun(server.addr.port, "second\n", extraLog);
      assert.equal(code, 1, extraLog.dump());
      assert.ok(extraLog.errors.some((e) => /server full/.test(e)), extraLog.dump());
      assert.ok(serverLog.errors.some((e) => /server full/.test(e)), serverLog.dump());
      client.type("still here");
      await sink.waitForCount(2);
      client.end();
      assert.equal(await within(client.run, 5000, "first client"), 0, clientLog.dump());
      assert.deepEqual(sink.texts(), ["first", "still here"]);
    },
  );
});

Deno.test("in-process: the server drops broken peers and keeps serving a live client", async (t) => {
  const options = {
    maxLine: 1024,
    handshakeTimeoutMs: 8000, // generous: a raw peer's own ffdhe2048 math may be slow under load
  };
  await withServer(options, async ({ server, serverLog, clientLog, sink, typedClient }) => {
    const client = typedClient();
    client.type("before");
    await sink.waitForCount(1);

    /**
     * Runs `misbehave` on a fresh connection (after the server's hello);
     * returns the frames the server sent after it.
     */
    const misbehaving = async (
      misbehave: (peer: RawPeer, hello: string) => Promise<void>,
      port = server.addr.port,
    ) => {
      const peer = await RawPeer.connect(port);
      try {
        const hello = await peer.readLine(5000);
        assert.equal(tryParse(hello!)?.type, "hello");
        await misbehave(peer, hello!);
        return (await peer.readToEof(5000)).map(tryParse);
      } finally {
        peer.close();
      }
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
      await withServer({ handshakeTimeoutMs: 300 }, async (impatient) => {
        const started = performance.now();
        const frames = await misbehaving(() => Promise.resolve(), impatient.server.addr.port);
        assert.ok(performance.now() - started >= 250, "closed before the handshake timeout");
        assert.deepEqual(frames.map((f) => f?.type), ["error"]);
        assert.match(String(frames[0]?.message), /timeout/);
        const impatientLog = impatient.serverLog;
        assert.ok(impatientLog.errors.some((e) => /timeout/.test(e)), impatientLog.dump());
      });
    });

    await t.step("an overlong line is refused before any LF arrives", async () => {
      // 4 KiB and no LF: the server must give up without waiting for the end of the line.
      const frames = await misbehaving((peer) => peer.write("x".repeat(4096)));
      assert.deepEqual(frames.map((f) => f?.type), ["error"]);
      assert.match(String(frames[0]?.message), /longer than 1024/);
    });

    await t.step("a msg with a flipped tag → authentication error, not delivered", async () => {
      const frames = await misbehaving(async (peer, helloLine) => {
        const hello = parseHello(helloLine, { insecure: false });
        const { keyLine, session } = await respondToHello(hello);
        const record = await session.seal("msg", "forged");
        const forged = withFields(record, { tag: flipBit(JSON.parse(record).tag, 0) });
        await peer.write(`${keyLine}\n${forged}\n`);
      });
      assert.deepEqual(frames.map((f) => f?.type), ["error"]);
      assert.match(String(frames[0]?.message), /authentication/);
    });

    await t.step("a replayed msg (seq 0 twice) → sequence error; only one delivery", async () => {
      const frames = await misbehaving(async (peer, helloLine) => {
        const hello = parseHello(helloLine, { insecure: false });
        const { keyLine, session } = await respondToHello(hello);
        const record = await session.seal("msg", "replayed");
        await peer.write(`${keyLine}\n${record}\n${record}\n`);
      });
      assert.deepEqual(frames.map((f) => f?.type), ["ack", "error"]);
      assert.match(String(frames[1]?.message), /sequence/);
    });

    // The live client was never disturbed.
    client.type("after");
    await sink.waitForCount(3);
    assert.deepEqual(sink.texts(), ["before", "replayed", "after"]);
    client.end();
    assert.equal(await within(client.run, 5000, "live client"), 0, clientLog.dump());
    assert.equal(serverLog.errors.length, 5, serverLog.dump());
  });
});

// ───────────────────────────────────────────────────────────────────────────
// Real processes
// ───────────────────────────────────────────────────────────────────────────

Deno.test("processes: secure server and piped client exchange two lines", async () => {
  const { proc: server, port } = await spawnServer([]);
  await using _server = server;
  const result = await pipedClient(port, [], "a\nb\n");
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
  const result = await pipedClient(port, ["--toy"], "hello\n");
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
  const result = await pipedClient(port, [], "secret\n");
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

Deno.test("client refuses unacceptable hellos before it sends a key", async (t) => {
  const cases: { name: string; hello: string; reason: RegExp }[] = [
    {
      name: "toy group with xor8",
      hello: helloWith({ group: "toy", p: "23", g: "5", publicKey: "10", cipher: "xor8" }),
      reason: /toy.*--toy/,
    },
    {
      name: "toy group with the secure cipher",
      hello: helloWith({ group: "toy", p: "23", g: "5", publicKey: "10" }),
      reason: /toy.*--toy/,
    },
    {
      name: "custom group",
      hello: helloWith({ group: "custom", p: String(2n ** 127n - 1n), g: "3", publicKey: "12345" }),
      reason: /custom/,
    },
    {
      name: "custom name with ffdhe2048's own p and g",
      hello: helloWith({ group: "custom" }),
      reason: /custom/,
    },
    {
      name: "ffdhe2048 name with a different p (modp2048's)",
      hello: helloWith({ p: GROUPS.modp2048.p.toString() }),
      reason: /differ/,
    },
    {
      name: "ffdhe2048 name with p - 2",
      hello: helloWith({ p: (FF.p - 2n).toString() }),
      reason: /differ/,
    },
    { name: "g = 5 with ffdhe2048's p", hello: helloWith({ g: "5" }), reason: /differ/ },
    { name: "xor8 with ffdhe2048", hello: helloWith({ cipher: "xor8" }), reason: /xor8/ },
    { name: "unknown cipher", hello: helloWith({ cipher: "rot13" }), reason: /cipher/ },
    { name: "protocol dhx/2", hello: helloWith({ protocol: "dhx/2" }), reason: /dhx\/2/ },
    { name: "protocol missing", hello: helloWith({ protocol: undefined }), reason: /protocol/ },
    { name: "public key 0", hello: helloWith({ publicKey: "0" }), reason: /public key/ },
    { name: "public key 1", hello: helloWith({ publicKey: "1" }), reason: /public key/ },
    {
      name: "public key p - 1",
      hello: helloWith({ publicKey: (FF.p - 1n).toString() }),
      reason: /public key/,
    },
    {
      name: "public key p",
      hello: helloWith({ publicKey: FF.p.toString() }),
      reason: /public key/,
    },
    {
      name: "public key as a JSON number",
      hello: helloWith({ publicKey: 5 }),
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
      const fake = fakeServer(async (peer) => {
        await peer.writeLine(hello);
        await peer.readToEof(5000); // everything the client sends until it closes
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
  reply: (line: string, session: Session) => Promise<string[]>,
): FakeServer {
  return fakeServer(async (peer) => {
    const session = await serveHandshake(peer);
    await within(
      (async () => {
        for (;;) {
          let line: string | null;
          try {
            line = await peer.readLine(8000);
          } catch {
            return;
          }
          if (line === null) return;
          const frame = tryParse(line);
          if (frame?.type !== "msg") continue;
          await session.open(line);
          for (const out of await reply(line, session)) await peer.writeLine(out);
        }
      })(),
      8000,
      "the client to finish",
    );
  });
}

async function expectClientFailure(
  fake: FakeServer,
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
    const ack = await session.seal("ack", "0");
    return [withFields(ack, { tag: flipBit(JSON.parse(ack).tag, 7, 4) })];
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
