/**
 * Interoperability: our server and client against tests/peer.mjs, a DHX/1
 * revision-3 peer for Node.js written from the protocol text alone (its own
 * modpow; node:crypto for HKDF, AES-CTR, HMAC and Ed25519; CRLF line endings;
 * JSON fields in reverse order; strict about everything it receives).
 *
 * Both directions, secure and toy, default and room mode, the peer's
 * `--say`, `--ping` and `--name` paths, and its self-check on the vectors.
 * Needs Node.js and the network: `deno test -P tests/interop_test.ts`; without
 * Node.js they are ignored (one line says so), and fail with DHX_REQUIRE_TOOLS=1.
 */

import assert from "node:assert/strict";
import { GROUPS, TOY_CIPHER } from "../dh.ts";
import {
  CapturingLogger,
  checkNode,
  FINGERPRINT,
  lacks,
  linesOf,
  pipedClient,
  ROOT,
  runToEnd,
  spawnServer,
  TestProcess,
  TOY_FINGERPRINT,
  typedClient,
  within,
  withServer,
} from "./support.ts";

/** Node.js must be installed: Deno running itself for `node` would test Deno against Deno. */
const NODE = checkNode("the tests against tests/peer.mjs (tests/interop_test.ts)");
const ignore = lacks("net", "run") || NODE.ignore;

/** Deno.test for a test that runs tests/peer.mjs under Node.js: it fails if `node` is unusable. */
function nodeTest(definition: Deno.TestDefinition & { fn: (t: Deno.TestContext) => unknown }) {
  Deno.test({
    ...definition,
    async fn(t) {
      if (NODE.problem) assert.fail(NODE.problem);
      await definition.fn(t);
    },
  });
}
const PEER = "tests/peer.mjs";
const TOY_SERVER = { group: GROUPS.toy, cipher: TOY_CIPHER, privateKey: 3n };

/** What the peer client prints when it ends. */
interface PeerClientSummary {
  /** The server's host key fingerprint (revision 3), if it sent one. */
  hostKey?: string | null;
  /** Whether it asked for and checked the host key proof. */
  proofChecked?: boolean;
  /** Whether the server's confirm opened (a password session). */
  passwordConfirmed?: boolean;
  fingerprint: string | null;
  acked: number[];
  chats: { from: string; text: string }[];
  notices: string[];
  pongs: number;
  serverBye: boolean;
  error?: string;
}

/** One connection as the peer server reports it at its end. */
interface PeerSession {
  fingerprint: string | null;
  name: string | null;
  messages: string[];
  ackedChats: number;
  pongs: number;
  error?: string;
}

/** Runs the peer client to its end; returns its exit code and summary. */
async function peerClient(port: number, args: string[]) {
  const { code, stdout, stderr } = await runToEnd(
    new TestProcess("node", [PEER, "client", String(port), ...args]),
    20_000,
  );
  const last = linesOf(stdout).at(-1);
  assert.ok(last, `peer client printed nothing; stderr:\n${stderr}`);
  return { code, summary: JSON.parse(last) as PeerClientSummary, stderr };
}

/** The peer server as a child process; its stdin ending shuts it down. */
class PeerServer extends TestProcess {
  constructor(args: string[]) {
    super("node", [PEER, "server", ...args], "piped");
  }

  /** The port it listens on (its first stdout line). */
  async port(): Promise<number> {
    const [, first] = await this.waitFor(/^(.*)\n/);
    const port = JSON.parse(first).port;
    assert.ok(Number.isInteger(port) && port > 0, this.stdout);
    return port;
  }

  /** Its host key fingerprint (also in its first stdout line). */
  async hostKey(): Promise<string> {
    const [, first] = await this.waitFor(/^(.*)\n/);
    return JSON.parse(first).hostKey;
  }

  /** Resolves once its stderr (the lines it shows) matches. */
  async waitForShown(pattern: RegExp): Promise<void> {
    await this.waitFor(pattern, 10_000, "stderr");
  }

  /** Ends its stdin (it says bye to everyone and exits); returns its sessions. */
  async sessions(): Promise<PeerSession[]> {
    await this.closeStdin();
    const { code, stdout, stderr } = await this.finish(10_000);
    assert.equal(code, 0, `peer server:\n${stdout}\n${stderr}`);
    return JSON.parse(linesOf(stdout).at(-1)!).sessions;
  }
}

/** Our client, in-process over TCP, on typed input. */
function ourClient(
  port: number,
  options: { toy?: boolean; name?: string; password?: string; hostKey?: string } = {},
) {
  return typedClient({ port, timeoutMs: 8000, ...options });
}

/** Every fingerprint our server printed for a session. */
function serverFingerprints(log: CapturingLogger): string[] {
  return log.of("success").flatMap((line) => {
    const match = FINGERPRINT.exec(line);
    return match ? [match[1]] : [];
  });
}

// ───────────────────────────────────────────────────────────────────────────
// Default mode, both directions
// ───────────────────────────────────────────────────────────────────────────

for (const mode of ["secure", "toy"] as const) {
  const toy = mode === "toy";

  nodeTest({
    name: `interop (${mode}): our client → peer server`,
    ignore,
    async fn() {
      await using peer = new PeerServer(toy ? ["--toy"] : []);
      const port = await peer.port();
      const client = ourClient(port, { toy });
      try {
        const lines = ["one", "Grüße, 世界 🙂", "", "//slash", "/who"];
        for (const line of lines) client.input.type(line);
        await client.log.waitFor(/^\[\*\] present: server, guest1$/);
        client.input.end();
        assert.equal(await within(client.run, 10_000, "our client"), 0, client.log.dump());
      } finally {
        client.input.end();
      }
      await peer.waitForShown(/^<guest1> \/slash\r?$/m);
      const sessions = await peer.sessions();
      assert.equal(sessions.length, 1, JSON.stringify(sessions));
      const [session] = sessions;
      assert.equal(session.error, undefined, JSON.stringify(session));
      assert.deepEqual(session.messages, ["one", "Grüße, 世界 🙂", "", "//slash", "/who"]);
      assert.equal(session.fingerprint, client.log.fingerprint(), client.log.dump());
      for (let line = 1; line <= 5; line++) {
        assert.ok(
          client.log.of("success").includes(`Line ${line} acknowledged (seq ${line - 1})`),
          client.log.dump(),
        );
      }
      assert.match(peer.stderr, /^<guest1> Grüße, 世界 🙂\r?$/m);
      if (toy) {
        // The peer writes its frames' fields in reverse order: other transcript bytes, so
        // not the vector's fingerprint, but the same numbers.
        assert.notEqual(session.fingerprint, TOY_FINGERPRINT);
        assert.ok(client.log.of("info").includes("Received server public key: 10"));
        assert.ok(client.log.of("info").includes("Shared key calculated: 19"));
      }
    },
  });

  nodeTest({
    name: `interop (${mode}): peer client → our server`,
    ignore,
    async fn() {
      await withServer(
        { tcp: true, ...(toy ? TOY_SERVER : {}) },
        async ({ server, serverLog, sink }) => {
          const words = ["hello", "Grüße, 世界 🙂", "", "//slash", "/who", "last"];
          const { code, summary, stderr } = await peerClient(server.addr!.port, [
            ...(toy ? ["--toy"] : []),
            "--",
            ...words,
          ]);
          assert.equal(code, 0, `${JSON.stringify(summary)}\n${stderr}`);
          assert.equal(summary.error, undefined);
          assert.deepEqual(summary.acked, [0, 1, 2, 3, 4, 5]);
          assert.deepEqual(sink.texts(), words);
          assert.deepEqual(summary.notices, ["present: server, guest1"]);
          assert.deepEqual(summary.chats, []);
          assert.equal(summary.serverBye, false);
          assert.deepEqual(serverFingerprints(serverLog), [summary.fingerprint]);
          await serverLog.waitFor(/^\[\+\] guest1 \(127\.0\.0\.1:\d+\): \/slash$/);
          await serverLog.waitFor(/^\[\*\] guest1 \(127\.0\.0\.1:\d+\) disconnected$/);
          assert.deepEqual(serverLog.of("error"), [], serverLog.dump());
          if (toy) {
            assert.notEqual(summary.fingerprint, TOY_FINGERPRINT); // the peer's key line differs
            assert.ok(serverLog.of("info").includes("Received client public key: 20"));
            assert.ok(serverLog.of("info").includes("Shared key calculated: 19"));
          }
        },
      );
    },
  });
}

// ───────────────────────────────────────────────────────────────────────────
// --say, --ping, --name
// ───────────────────────────────────────────────────────────────────────────

nodeTest({
  name: "interop: peer server --say --ping --name: our client shows, acks and answers",
  ignore,
  async fn() {
    await using peer = new PeerServer([
      "--name",
      "op",
      "--say",
      "hello from node",
      "--say",
      "\u001b[31mred\u0007",
      "--ping",
    ]);
    const port = await peer.port();
    const client = ourClient(port, { name: "alice" });
    try {
      await client.log.waitFor(/^\[\+\] op: hello from node$/);
      await client.log.waitFor(/^\[\*\] you are now alice$/);
      client.input.type("/name OP");
      await client.log.waitFor(/^\[\*\] name refused: OP is already taken$/);
      client.input.type("/name Bob");
      await client.log.waitFor(/^\[\*\] you are now Bob$/);
      client.input.type("bye now");
      client.input.end();
      assert.equal(await within(client.run, 10_000, "our client"), 0, client.log.dump());
    } finally {
      client.input.end();
    }
    // Chats shown as written (CapturingLogger records before escaping).
    assert.ok(client.log.of("success").includes("op: \u001b[31mred\u0007"), client.log.dump());
    const [session, ...others] = await peer.sessions();
    assert.deepEqual(others, []);
    // The peer checks at our bye that both chats were acked and its ping answered.
    assert.equal(session.error, undefined, JSON.stringify(session));
    assert.equal(session.ackedChats, 2);
    assert.equal(session.pongs, 1);
    assert.equal(session.name, "Bob");
    assert.deepEqual(session.messages, ["/name alice", "/name OP", "/name Bob", "bye now"]);
    assert.equal(session.fingerprint, client.log.fingerprint());
    assert.match(peer.stderr, /^<Bob> bye now\r?$/m);
  },
});

nodeTest({
  name: "interop: peer client --name --ping: our server renames, pongs and acks",
  ignore,
  async fn() {
    await withServer({ tcp: true }, async ({ server, serverLog, sink }) => {
      const { code, summary, stderr } = await peerClient(server.addr!.port, [
        "--name",
        "node",
        "--ping",
        "--",
        "hi",
        "/name server",
      ]);
      assert.equal(code, 0, `${JSON.stringify(summary)}\n${stderr}`);
      assert.equal(summary.pongs, 1);
      assert.deepEqual(summary.acked, [0, 1, 2]);
      assert.deepEqual(summary.notices, [
        "you are now node",
        `name not changed: "server" is already taken`,
      ]);
      assert.deepEqual(sink.texts(), ["/name node", "hi", "/name server"]);
      await serverLog.waitFor(/^\[\+\] node \(127\.0\.0\.1:\d+\): hi$/);
      await serverLog.waitFor(/^\[\*\] node \(127\.0\.0\.1:\d+\) disconnected$/);
      assert.deepEqual(serverFingerprints(serverLog), [summary.fingerprint]);
    });
  },
});

// ───────────────────────────────────────────────────────────────────────────
// Room mode
// ───────────────────────────────────────────────────────────────────────────

nodeTest({
  name: "interop: peer server --room with two of our clients and a peer client",
  ignore,
  async fn() {
    await using peer = new PeerServer(["--room"]);
    const port = await peer.port();
    const a = ourClient(port, { name: "deno_a" });
    const b = ourClient(port, { name: "deno_b" });
    try {
      await a.log.waitFor(/^\[\*\] you are now deno_a$/);
      await b.log.waitFor(/^\[\*\] you are now deno_b$/);
      await a.log.waitFor(/^\[\*\] guest2 is now deno_b$/);
      // The peer client says its line at once, then waits for two chats.
      const node = peerClient(port, ["--name", "node", "--expect-chats", "2", "--", "from node"]);
      await a.log.waitFor(/^\[\+\] node: from node$/);
      await b.log.waitFor(/^\[\+\] node: from node$/);
      a.input.type("from deno_a");
      await b.log.waitFor(/^\[\+\] deno_a: from deno_a$/);
      b.input.type("from deno_b");
      await a.log.waitFor(/^\[\+\] deno_b: from deno_b$/);
      const { code, summary, stderr } = await node;
      assert.equal(code, 0, `${JSON.stringify(summary)}\n${stderr}`);
      assert.deepEqual(summary.chats, [
        { from: "deno_a", text: "from deno_a" },
        { from: "deno_b", text: "from deno_b" },
      ]);
      assert.deepEqual(summary.notices, ["you are now node"]);
      await a.log.waitFor(/^\[\*\] node left$/);
      for (const client of [a, b]) {
        assert.ok(client.log.of("info").includes("guest3 joined"), client.log.dump());
        assert.ok(client.log.of("info").includes("guest3 is now node"), client.log.dump());
      }
      a.input.end();
      b.input.end();
      assert.equal(await within(a.run, 10_000, "client a"), 0, a.log.dump());
      assert.equal(await within(b.run, 10_000, "client b"), 0, b.log.dump());
      // Nobody saw their own line.
      assert.ok(!a.log.lines.some((l) => /deno_a: from deno_a/.test(l)), a.log.dump());
      assert.ok(!b.log.lines.some((l) => /deno_b: from deno_b/.test(l)), b.log.dump());
      const sessions = await peer.sessions();
      assert.deepEqual(sessions.map((s) => s.name), ["deno_a", "deno_b", "node"]);
      for (const session of sessions) assert.equal(session.error, undefined);
      assert.deepEqual(sessions.map((s) => s.fingerprint), [
        a.log.fingerprint(),
        b.log.fingerprint(),
        summary.fingerprint,
      ]);
    } finally {
      a.input.end();
      b.input.end();
      await Promise.allSettled([a.run, b.run]);
    }
  },
});

nodeTest({
  name: "interop: our server --room with two peer clients and one of ours",
  ignore,
  async fn() {
    await withServer({ tcp: true, room: true }, async ({ server, serverLog, client }) => {
      const port = server.addr!.port;
      const deno = client({ name: "deno" });
      await deno.log.waitFor(/^\[\*\] you are now deno$/);
      // p2 only listens: it waits for two chats, then leaves.
      const p2 = peerClient(port, ["--name", "p2", "--expect-chats", "2"]);
      await deno.log.waitFor(/^\[\*\] p2 joined$/);
      // p1 says its line at once, then waits for one chat.
      const p1 = peerClient(port, ["--name", "p1", "--expect-chats", "1", "--", "hello from p1"]);
      await deno.log.waitFor(/^\[\+\] p1: hello from p1$/);
      deno.type("hello from deno");
      const [one, two] = await Promise.all([p1, p2]);
      assert.equal(one.code, 0, `${JSON.stringify(one.summary)}\n${one.stderr}`);
      assert.equal(two.code, 0, `${JSON.stringify(two.summary)}\n${two.stderr}`);
      assert.deepEqual(one.summary.chats, [{ from: "deno", text: "hello from deno" }]);
      assert.deepEqual(two.summary.chats, [
        { from: "p1", text: "hello from p1" },
        { from: "deno", text: "hello from deno" },
      ]);
      assert.deepEqual(one.summary.acked, [0, 1]);
      assert.deepEqual(two.summary.acked, [0]);
      assert.deepEqual(one.summary.notices.slice(0, 2), [
        "present: server, deno, p2",
        "you are now p1",
      ]);
      assert.deepEqual(two.summary.notices.slice(0, 3), [
        "present: server, deno",
        "you are now p2",
        "p1 joined",
      ]);
      assert.ok(deno.log.of("info").includes("p1 joined"), deno.log.dump());
      await serverLog.waitFor(/^\[\*\] p1 \(127\.0\.0\.1:\d+\) disconnected$/);
      await serverLog.waitFor(/^\[\*\] p2 \(127\.0\.0\.1:\d+\) disconnected$/);
      assert.deepEqual(serverLog.of("error"), [], serverLog.dump());
      const fingerprints = serverFingerprints(serverLog);
      assert.equal(fingerprints.length, 3, serverLog.dump());
      assert.deepEqual(
        fingerprints.toSorted(),
        [deno.log.fingerprint(), one.summary.fingerprint, two.summary.fingerprint].toSorted(),
      );
      deno.end();
      assert.equal(await within(deno.run, 10_000, "our client"), 0, deno.log.dump());
    });
  },
});

// ───────────────────────────────────────────────────────────────────────────
// The scripts as processes, and the vectors
// ───────────────────────────────────────────────────────────────────────────

nodeTest({
  name:
    "interop: client.ts --toy process → peer server --toy; peer clients → server.ts --room process",
  ignore,
  async fn() {
    {
      await using peer = new PeerServer(["--toy", "--say", "hi from node"]);
      const port = await peer.port();
      const result = await pipedClient(port, ["--toy", "--name", "script"], "from the script\n");
      assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
      assert.match(result.stdout, /^\[\+\] server: hi from node$/m);
      assert.match(result.stdout, /^\[\*\] you are now script$/m);
      assert.match(result.stdout, /^\[\*\] Shared key calculated: 19$/m);
      const [session] = await peer.sessions();
      assert.equal(session.error, undefined, JSON.stringify(session));
      assert.deepEqual(session.messages, ["/name script", "from the script"]);
      assert.equal(session.ackedChats, 1);
      assert.equal(FINGERPRINT.exec(result.stdout)?.[1], session.fingerprint);
    }
    {
      const { proc: server, port } = await spawnServer(["--room"]);
      await using _server = server;
      const listener = peerClient(port, ["--name", "listener", "--expect-chats", "1"]);
      await server.waitFor(/^\[\*\] guest1 \(127\.0\.0\.1:\d+\) is now listener$/m);
      const { code, summary } = await peerClient(port, ["--name", "talker", "--", "relayed"]);
      assert.equal(code, 0, JSON.stringify(summary));
      const heard = await listener;
      assert.equal(heard.code, 0, `${JSON.stringify(heard.summary)}\n${heard.stderr}`);
      assert.deepEqual(heard.summary.chats, [{ from: "talker", text: "relayed" }]);
      await server.waitFor(/^\[\+\] talker \(127\.0\.0\.1:\d+\): relayed$/m);
      const printed = [...server.stdout.matchAll(new RegExp(FINGERPRINT, "g"))].map((m) => m[1]);
      assert.deepEqual(
        printed.toSorted(),
        [heard.summary.fingerprint, summary.fingerprint].toSorted(),
      );
      server.child.kill("SIGINT");
      assert.equal((await server.finish()).code, 0, server.stderr);
    }
  },
});

nodeTest({
  name: "interop: the peer's own check of tests/dhx1-vectors.json passes",
  ignore: lacks("run", "read") || NODE.ignore,
  async fn() {
    const vectors = JSON.parse(await Deno.readTextFile(`${ROOT}tests/dhx1-vectors.json`));
    assert.ok(Array.isArray(vectors) && vectors.length >= 4, "vectors");
    const out = await runToEnd(
      new TestProcess("node", [PEER, "vectors", "tests/dhx1-vectors.json"]),
    );
    const stdout = out.stdout;
    assert.equal(out.code, 0, `${stdout}\n${out.stderr}`);
    const lines = linesOf(stdout);
    assert.equal(lines.length, vectors.length + 1, stdout);
    for (const line of lines.slice(0, -1)) assert.match(line, /: \d+ records, ok$/);
    const summary = /^(\d+) vectors, (\d+) checks, (\d+) failed$/.exec(lines.at(-1)!);
    assert.ok(summary, stdout);
    assert.equal(Number(summary[1]), vectors.length);
    assert.ok(Number(summary[2]) >= 20 * vectors.length, stdout);
    assert.equal(summary[3], "0");
    // The toy vector's fingerprint is the one both scripts print in --toy mode.
    assert.match(lines[0], new RegExp(`^#0 toy/xor8 ${TOY_FINGERPRINT}: `));
  },
});

// ───────────────────────────────────────────────────────────────────────────
// Revision 3: host key proof and room password, both directions
// ───────────────────────────────────────────────────────────────────────────

for (const mode of ["secure", "toy"] as const) {
  const toy = mode === "toy";

  Deno.test({
    name: `interop rev 3 (${mode}): our client → peer server with a password, its host key pinned`,
    ignore,
    async fn() {
      await using peer = new PeerServer([...(toy ? ["--toy"] : []), "--password", "Grüße 🔑"]);
      const port = await peer.port();
      const hostKey = await peer.hostKey();
      // The password typed in NFD: both sides normalize to NFC.
      const client = ourClient(port, { toy, password: "Gru\u0308ße 🔑", hostKey });
      try {
        client.input.type("through the password");
        client.input.end();
        assert.equal(await within(client.run, 10_000, "our client"), 0, client.log.dump());
      } finally {
        client.input.end();
      }
      assert.ok(
        client.log.of("success").includes(
          `Host key ${hostKey} verified (as given with --host-key)`,
        ),
        client.log.dump(),
      );
      assert.ok(
        client.log.of("success").includes("Both sides proved that they know the room password"),
      );
      const [session] = await peer.sessions();
      assert.equal(session.error, undefined, JSON.stringify(session));
      assert.deepEqual(session.messages, ["through the password"]);
      assert.equal(session.fingerprint, client.log.fingerprint());
      assert.ok(
        client.log.of("success").includes("Line 1 acknowledged (seq 1)"),
        client.log.dump(),
      );

      // A wrong password: the peer refuses it, and our client says so. (Secure cipher only:
      // with xor8 a wrong password passes now and then, as the protocol page says.)
      if (toy) return;
      await using again = new PeerServer([...(toy ? ["--toy"] : []), "--password", "right"]);
      const wrong = ourClient(await again.port(), { toy, password: "wrong" });
      wrong.input.end();
      assert.equal(await within(wrong.run, 10_000, "our client"), 1);
      assert.ok(
        wrong.log.of("error").includes("Wrong password (the server refused it)"),
        wrong.log.dump(),
      );
    },
  });

  Deno.test({
    name: `interop rev 3 (${mode}): peer client → our server: proof checked, password both ways`,
    ignore,
    async fn() {
      await withServer(
        { tcp: true, password: "swordfish", ...(toy ? TOY_SERVER : {}) },
        async ({ server, serverLog, sink }) => {
          const port = server.addr!.port;
          const hostKey = server.hostKey!.fingerprint;
          const ok = await peerClient(port, [
            ...(toy ? ["--toy"] : []),
            "--password",
            "swordfish",
            "--host-key",
            hostKey,
            "--",
            "first",
            "second",
          ]);
          assert.equal(ok.code, 0, `${JSON.stringify(ok.summary)}\n${ok.stderr}`);
          const { summary } = ok;
          assert.equal(summary.proofChecked, true);
          assert.equal(summary.passwordConfirmed, true);
          assert.equal(summary.hostKey, hostKey);
          assert.deepEqual(summary.acked, [1, 2], "the first msg of a password session has seq 1");
          assert.deepEqual(sink.texts(), ["first", "second"]);
          assert.deepEqual(serverFingerprints(serverLog), [summary.fingerprint]);

          if (!toy) { // with xor8 a wrong password passes now and then (see above)
            const wrong = await peerClient(port, ["--password", "sardine"]);
            assert.equal(wrong.code, 1);
            assert.match(wrong.summary.error ?? "", /wrong password/);
            await serverLog.waitFor(/^\[!\] 127\.0\.0\.1:\d+: wrong password$/);
          }

          // Without asking for a proof (a revision-2 style key frame), no proof is sent.
          const noProof = await peerClient(port, [
            ...(toy ? ["--toy"] : []),
            "--no-proof",
            "--password",
            "swordfish",
            "--",
            "third",
          ]);
          assert.equal(noProof.code, 0, `${JSON.stringify(noProof.summary)}\n${noProof.stderr}`);
          assert.equal(noProof.summary.proofChecked, undefined);
          assert.deepEqual(sink.texts(), ["first", "second", "third"]);
        },
      );
    },
  });
}

Deno.test({
  name: "vectors: tests/dhx1-vectors.json equals the protocol's shared copy, byte for byte",
  ignore,
  async fn() {
    // The shared copy lives beside the repository (../shared, or ../../shared from a
    // worktree); this run may read only the repository, so node reads it.
    const candidates = [
      `${ROOT}../shared/dhx1-vectors.json`,
      `${ROOT}../../shared/dhx1-vectors.json`,
    ];
    const script = `const fs = require("fs");
      const file = ${JSON.stringify(candidates)}.find((path) => fs.existsSync(path));
      process.stdout.write(file ? fs.readFileSync(file).toString("base64") : "");`;
    const { code, stdout } = await new Deno.Command("node", { args: ["-e", script] }).output();
    assert.equal(code, 0);
    const shared = new TextDecoder().decode(stdout);
    if (shared === "") {
      console.log("[*] no shared copy of the vectors beside the repository: nothing to compare");
      return;
    }
    const ours = await Deno.readFile(`${ROOT}tests/dhx1-vectors.json`);
    assert.equal(ours.toBase64(), shared, "tests/dhx1-vectors.json differs from the shared copy");
  },
});
