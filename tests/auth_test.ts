/**
 * DHX/1 revision 3 end to end: host key stores, trust on first use, pinning,
 * downgrades, room passwords, a man in the middle, and the guess limit.
 *
 * No test reads or writes the real stores of the person running it: stores
 * are in memory, an injected localStorage stand-in, or files under
 * tests/.state; script processes get a DENO_DIR of their own (support.ts).
 */

import assert from "node:assert/strict";
import net from "node:net";
import {
  CONFIRM_TEXT,
  GROUPS,
  HostKey,
  ProtocolError,
  SECURE_CIPHER,
  type Session,
  TOY_CIPHER,
} from "../dh.ts";
import {
  FileStore,
  KnownHosts,
  loadHostKey,
  LocalStorageStore,
  MemoryStore,
  StoreError,
} from "../hostkeys.ts";
import {
  clientHandshake,
  type Duplex,
  formatAddress,
  HostKeyError,
  LineConnection,
  memoryPipe,
  SERVER_PASSWORD_FAILURE,
  serverHandshake,
  WrongPasswordError,
} from "../transport.ts";
import {
  CapturingLogger,
  HOST,
  lacks,
  OTHER_HOST,
  ROOT,
  runToEnd,
  TestProcess,
  testServer,
  typedClient,
  within,
} from "./support.ts";

const STATE = `${ROOT}tests/.state`;
const ADDRESS = formatAddress(HOST, 4444); // what runClient dials by default: the known-hosts key

/** A Storage stand-in for the default store: the real localStorage is never touched. */
class FakeStorage {
  readonly items = new Map<string, string>();
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }
}

/** Both handshakes over a memory pipe; the client's result or error, and the server's. */
async function handshakes(
  server: Parameters<typeof serverHandshake>[1],
  client: Parameters<typeof clientHandshake>[1],
) {
  const [a, b] = memoryPipe();
  const serverLink = new LineConnection(a);
  const clientLink = new LineConnection(b);
  // Each side ends as server.ts and client.ts end it: the server answers a wrong password
  // with its error frame, a client that refuses closes its connection.
  const serverSide = serverHandshake(serverLink, server).then(
    (session) => ({ session, error: undefined }),
    async (error: Error) => {
      if (error instanceof WrongPasswordError) await serverLink.fail(error.message);
      return { session: undefined, error };
    },
  );
  const clientSide = clientHandshake(clientLink, client).then(
    (result) => ({ result, error: undefined }),
    (error: Error) => {
      clientLink.close();
      return { result: undefined, error };
    },
  );
  const clientEnd = await within(clientSide, 10_000, "client handshake");
  const serverEnd = await within(serverSide, 10_000, "server handshake");
  serverLink.close();
  clientLink.close();
  return { client: clientEnd, server: serverEnd };
}

const SECURE = { group: GROUPS.ffdhe2048, cipher: SECURE_CIPHER, timeoutMs: 10_000 };
const CLIENT = { insecure: false, timeoutMs: 10_000, address: ADDRESS };

// ───────────────────────────────────────────────────────────────────────────
// Stores
// ───────────────────────────────────────────────────────────────────────────

Deno.test("stores: known hosts remember, replace, forget, keep comments; IPv6 in brackets", () => {
  const store = new MemoryStore("# my hosts\n\nother:1 SHA256:" + "A".repeat(43) + "\n");
  const known = new KnownHosts(store);
  const one = HostKey.generate().fingerprint, two = HostKey.generate().fingerprint;
  assert.equal(known.get("127.0.0.1:4444"), undefined);
  known.remember("127.0.0.1:4444", one);
  assert.equal(known.get("127.0.0.1:4444"), one);
  known.remember("127.0.0.1:4444", two);
  assert.equal(known.get("127.0.0.1:4444"), two);
  assert.equal(known.get("127.0.0.1:4445"), undefined, "keyed by host:port");
  assert.match(store.read()!, /^# my hosts\nother:1 SHA256:A{43}\n127\.0\.0\.1:4444 SHA256:/);
  assert.equal(store.read()!.split("\n").filter((l) => l.startsWith("127.")).length, 1);
  assert.equal(known.forget("127.0.0.1:4444"), two);
  assert.equal(known.forget("127.0.0.1:4444"), undefined);
  assert.equal(known.get("other:1"), "SHA256:" + "A".repeat(43));
});

Deno.test("stores: the host key is made once and kept (memory, and the default store through an injected storage)", () => {
  const memory = new MemoryStore();
  const first = loadHostKey(memory);
  assert.equal(first.created, true);
  const again = loadHostKey(memory);
  assert.equal(again.created, false);
  assert.equal(again.hostKey.fingerprint, first.hostKey.fingerprint);

  const storage = new FakeStorage();
  const started = loadHostKey(new LocalStorageStore("dhx/1 host key", storage));
  // A restart: a new store object over the same storage.
  const restarted = loadHostKey(new LocalStorageStore("dhx/1 host key", storage));
  assert.equal(started.created, true);
  assert.equal(restarted.created, false);
  assert.equal(restarted.hostKey.fingerprint, started.hostKey.fingerprint);
  assert.equal([...storage.items.keys()].join(), "dhx/1 host key");

  assert.throws(() => loadHostKey(new MemoryStore("garbage")), StoreError);
  assert.throws(() => loadHostKey(new MemoryStore("dhx-ed25519 AAAA")), StoreError);
});

// ───────────────────────────────────────────────────────────────────────────
// Host key: trust on first use, pinning, downgrades
// ───────────────────────────────────────────────────────────────────────────

Deno.test("host key: first contact remembers after the proof; then known; a changed key is refused before the key line", async () => {
  const hostKey = HostKey.generate();
  const knownHosts = new KnownHosts(new MemoryStore());
  const first = await handshakes({ ...SECURE, hostKey }, { ...CLIENT, knownHosts });
  assert.equal(first.client.error, undefined, String(first.client.error));
  assert.equal(first.client.result!.hostKeyStatus, "new");
  assert.equal(first.server.session!.proofRequested, true);
  assert.equal(knownHosts.get(ADDRESS), hostKey.fingerprint);

  const second = await handshakes({ ...SECURE, hostKey }, { ...CLIENT, knownHosts });
  assert.equal(second.client.result!.hostKeyStatus, "known");

  const impostor = HostKey.generate();
  const changed = await handshakes({ ...SECURE, hostKey: impostor }, { ...CLIENT, knownHosts });
  assert.ok(changed.client.error instanceof HostKeyError, String(changed.client.error));
  assert.match(
    changed.client.error.message,
    new RegExp(impostor.fingerprint.replace(/[+/]/g, ".")),
  );
  assert.match(changed.client.error.message, new RegExp(hostKey.fingerprint.replace(/[+/]/g, ".")));
  assert.equal(changed.server.session, null, "the client left before sending its key");
  assert.equal(knownHosts.get(ADDRESS), hostKey.fingerprint, "the old key is kept");
});

Deno.test("host key: --host-key pins even on first contact; no host key where one is expected is a downgrade", async () => {
  const hostKey = HostKey.generate();
  const pinned = await handshakes({ ...SECURE, hostKey }, { ...CLIENT, pin: hostKey.fingerprint });
  assert.equal(pinned.client.result!.hostKeyStatus, "pinned");
  const wrongPin = await handshakes({ ...SECURE, hostKey }, {
    ...CLIENT,
    pin: HostKey.generate().fingerprint,
  });
  assert.ok(wrongPin.client.error instanceof HostKeyError);
  assert.equal(wrongPin.client.error.pinned, true);
  assert.equal(wrongPin.server.session, null);

  // A revision-2 server (no host key): refused when one is remembered or pinned.
  const knownHosts = new KnownHosts(new MemoryStore(`${ADDRESS} ${hostKey.fingerprint}\n`));
  const downgrade = await handshakes(SECURE, { ...CLIENT, knownHosts });
  assert.ok(downgrade.client.error instanceof HostKeyError);
  assert.match(downgrade.client.error.message, /sent no host key.*downgrade/);
  const pinnedDowngrade = await handshakes(SECURE, { ...CLIENT, pin: hostKey.fingerprint });
  assert.ok(pinnedDowngrade.client.error instanceof HostKeyError);
  // … and unverified, remembering nothing, from an unknown host.
  const empty = new KnownHosts(new MemoryStore());
  const unknown = await handshakes(SECURE, { ...CLIENT, knownHosts: empty });
  assert.equal(unknown.client.result!.hostKeyStatus, "unverified");
  assert.equal(empty.get(ADDRESS), undefined);
});

Deno.test("host key: a forged proof is refused, and the client sends nothing after it", async () => {
  const hostKey = HostKey.generate();
  const [a, b] = memoryPipe();
  const serverLink = new LineConnection(a);
  const knownHosts = new KnownHosts(new MemoryStore());
  const clientLink = new LineConnection(b);
  const client = clientHandshake(clientLink, { ...CLIENT, knownHosts });
  client.catch(() => clientLink.close()); // as runClient does
  // A server that announces one key and signs with another.
  const { createOffer, acceptKey, encodeProof } = await import("../dh.ts");
  const offer = createOffer(GROUPS.ffdhe2048, SECURE_CIPHER, undefined, { hostKey });
  serverLink.send(offer.line);
  const session = acceptKey(offer, (await serverLink.readLine())!);
  serverLink.send(encodeProof(HostKey.generate(), session));
  await assert.rejects(client, (e: Error) => /host key proof does not verify/.test(e.message));
  assert.equal(knownHosts.get(ADDRESS), undefined, "nothing remembered");
  const next = await within(serverLink.readLine(), 5000, "what the client sent next");
  assert.ok(
    next === null || JSON.parse(next).type === "error",
    `no record after a bad proof: ${next}`,
  );
  serverLink.close();
});

// ───────────────────────────────────────────────────────────────────────────
// Room password
// ───────────────────────────────────────────────────────────────────────────

for (
  const [mode, group, cipher, insecure] of [
    ["ffdhe2048", GROUPS.ffdhe2048, SECURE_CIPHER, false],
    ["toy", GROUPS.toy, TOY_CIPHER, true],
  ] as const
) {
  Deno.test(`password (${mode}): both sides confirm; a wrong password is refused with "wrong password"`, async () => {
    const server = { ...SECURE, group, cipher, hostKey: HostKey.generate(), password: "Grüße 🔑" };
    const client = { ...CLIENT, insecure };
    const good = await handshakes(server, { ...client, password: "Gru\u0308ße 🔑" }); // NFD
    assert.equal(good.client.error, undefined, String(good.client.error));
    assert.ok(good.client.result!.session.passwordGenerator);
    assert.equal(good.server.session!.fingerprint, good.client.result!.session.fingerprint);
    // The first msg of a password session has seq 1.
    const line = good.client.result!.session.seal("msg", "hi");
    assert.equal(JSON.parse(line).seq, 1);
    assert.equal(good.server.session!.open(line).text, "hi");

    // A wrong password. With xor8 the check is the plaintext alone and Z has ~10 values in
    // the toy group, so a wrong password passes now and then: "as weak as everything else in
    // toy mode". Refused on the secure cipher always; in toy mode, in most of 20 tries.
    let refused = 0;
    for (let attempt = 0; attempt < (insecure ? 20 : 1); attempt++) {
      const bad = await handshakes(server, { ...client, password: "grüße 🔑" });
      if (bad.server.error === undefined) continue;
      assert.ok(bad.server.error instanceof WrongPasswordError, String(bad.server.error));
      assert.match(String(bad.client.error?.message), /^wrong password/);
      refused++;
    }
    assert.ok(insecure ? refused >= 10 : refused === 1, `${refused} refused`);
  });
}

Deno.test("password: a client with one refuses a server without; a client without one stops before its key", async () => {
  const hostKey = HostKey.generate();
  const downgrade = await handshakes({ ...SECURE, hostKey }, { ...CLIENT, password: "pw" });
  assert.match(String(downgrade.client.error?.message), /did not ask for the room password/);
  assert.equal(downgrade.server.session, null, "no key was sent");
  const missing = await handshakes({ ...SECURE, hostKey, password: "pw" }, CLIENT);
  assert.match(String(missing.client.error?.message), /rerun with --password/);
  assert.equal(missing.server.session, null, "no key was sent");
});

Deno.test("password: a server whose confirm does not open is reported as unable to prove it knows the password", async () => {
  const [a, b] = memoryPipe();
  const serverLink = new LineConnection(a);
  const client = clientHandshake(new LineConnection(b), { ...CLIENT, password: "right" });
  const { createOffer, acceptKey } = await import("../dh.ts");
  // This server uses another password: its G differs, so its keys differ.
  const offer = createOffer(GROUPS.ffdhe2048, SECURE_CIPHER, undefined, { password: "wrong" });
  serverLink.send(offer.line);
  const session = acceptKey(offer, (await serverLink.readLine())!);
  await serverLink.readLine(); // the client's confirm, which it cannot open: it answers anyway
  serverLink.send(session.seal("confirm", CONFIRM_TEXT));
  await assert.rejects(client, (e: Error) => e.message === SERVER_PASSWORD_FAILURE);
  serverLink.close();
});

// ───────────────────────────────────────────────────────────────────────────
// A man in the middle
// ───────────────────────────────────────────────────────────────────────────

/**
 * An active man in the middle with its own host key: one handshake with the
 * client (as a server), one with the real server (as a client), then relays
 * every record, re-sealed. With `password` it guesses that password on both sides.
 */
function manInTheMiddle(upstream: Duplex, password?: string) {
  const [toClient, clientEnd] = memoryPipe();
  const clientLink = new LineConnection(toClient);
  const serverLink = new LineConnection(upstream);
  const mitmKey = HostKey.generate();
  const done = (async () => {
    const [towardClient, towardServer] = await Promise.allSettled([
      serverHandshake(clientLink, { ...SECURE, hostKey: mitmKey, password }),
      clientHandshake(serverLink, { ...CLIENT, password }),
    ]);
    if (towardClient.status === "rejected" || towardServer.status === "rejected") {
      const failures = [towardClient, towardServer].flatMap((side) =>
        side.status === "rejected" ? [side.reason as Error] : []
      );
      if (failures[0] instanceof WrongPasswordError) await clientLink.fail(failures[0].message);
      clientLink.close();
      serverLink.close();
      return failures.map((error) => error.message).join("; ");
    }
    const inner = towardClient.value, outer = towardServer.value.session;
    if (!inner) return "client left";
    // Both directions, each record opened with one session and sealed with the other.
    const relay = async (
      from: LineConnection,
      to: LineConnection,
      open: Session,
      seal: Session,
    ) => {
      for (let line = await from.readLine(); line !== null; line = await from.readLine()) {
        const record = open.open(line);
        to.send(seal.seal(record.type, record.text));
      }
      to.close();
    };
    await Promise.allSettled([
      relay(clientLink, serverLink, inner, outer),
      relay(serverLink, clientLink, outer, inner),
    ]);
    return "relayed";
  })();
  return { connection: clientEnd, mitmKey, done };
}

Deno.test("man in the middle: refused by a client that remembers the real key, and by one given --host-key", async () => {
  await using served = testServer({});
  const real = served.server.hostKey!;
  for (const how of ["remembered", "pinned"] as const) {
    const mitm = manInTheMiddle(served.server.connect());
    const knownHosts = new KnownHosts(
      new MemoryStore(how === "remembered" ? `${ADDRESS} ${real.fingerprint}\n` : ""),
    );
    const log = new CapturingLogger();
    const client = typedClient({
      connection: mitm.connection,
      knownHosts,
      hostKey: how === "pinned" ? real.fingerprint : undefined,
    }, log);
    client.type("secret line");
    client.end();
    assert.equal(await within(client.run, 10_000, "client"), 1, log.dump());
    const refusal = log.of("error").join("\n");
    assert.ok(refusal.includes(mitm.mitmKey.fingerprint), log.dump());
    assert.ok(refusal.includes(real.fingerprint), log.dump());
    if (how === "remembered") assert.match(refusal, /--forget-host 127\.0\.0\.1:4444/);
    assert.equal(served.sink.texts().length, 0, "nothing reached the server");
    await within(mitm.done, 10_000, "the relay");
  }
  // Without either, on first contact, the relay works: that is what a fingerprint comparison is for.
  const mitm = manInTheMiddle(served.server.connect());
  const log = new CapturingLogger();
  const client = typedClient({ connection: mitm.connection }, log);
  client.type("readable by the relay");
  client.end();
  assert.equal(await within(client.run, 10_000, "client"), 0, log.dump());
  assert.ok(
    log.lines.some((l) => l.includes(`remembered its host key ${mitm.mitmKey.fingerprint}`)),
  );
});

Deno.test("man in the middle: with a room password it fails on both sides, even on first contact", async () => {
  await using served = testServer({ password: "correct horse" });
  for (const guess of ["wrong guess", undefined]) {
    const mitm = manInTheMiddle(served.server.connect(), guess);
    const log = new CapturingLogger();
    const client = typedClient({ connection: mitm.connection, password: "correct horse" }, log);
    client.type("secret line");
    client.end();
    assert.equal(await within(client.run, 10_000, "client"), 1, log.dump());
    assert.match(
      log.of("error").join("\n"),
      guess ? /wrong password/i : /did not ask for the room password/,
      log.dump(),
    );
    assert.ok(!log.lines.some((l) => l.includes("remembered its host key")), "nothing remembered");
    const relay = await within(mitm.done, 10_000, "the relay");
    if (guess) {
      // The real server refused the relay's guess too.
      assert.match(relay, /wrong password|the server requires a room password/);
      await served.serverLog.waitFor(/^\[!\] .*wrong password/);
    }
  }
  assert.equal(served.sink.texts().length, 0, "nothing reached the server");
});

// ───────────────────────────────────────────────────────────────────────────
// Guess limit, over TCP from 127.0.0.2
// ───────────────────────────────────────────────────────────────────────────

/** A node:net connection from `localAddress` as a {@link Duplex}. */
function connectFrom(port: number, localAddress: string): Promise<Duplex> {
  const socket = net.connect({ host: HOST, port, localAddress });
  return within(
    new Promise<Duplex>((resolve, reject) => {
      socket.once("error", reject);
      socket.once("connect", () =>
        resolve({
          readable: new ReadableStream<Uint8Array>({
            start(controller) {
              // After the reader cancels, the controller refuses both: ignore what comes late.
              const safely = (f: () => void) => {
                try {
                  f();
                } catch { /* cancelled */ }
              };
              const end = () => safely(() => controller.close());
              socket.on("data", (chunk: Uint8Array) =>
                safely(() => controller.enqueue(new Uint8Array(chunk))));
              socket.on("end", end);
              socket.on("error", end);
              socket.on("close", end);
            },
            cancel: () =>
              void socket.destroy(),
          }),
          writable: new WritableStream<Uint8Array>({
            write: (chunk) => new Promise((done) => socket.write(chunk, () => done())),
            close: () => void socket.end(),
          }),
          close: () => socket.destroy(),
        }));
    }),
    5000,
    `connect from ${localAddress}`,
  );
}

Deno.test({
  name:
    "guess limit: 5 wrong passwords from 127.0.0.2 refuse it for 10 min; a good client from 127.0.0.1 is served",
  ignore: lacks("net"),
  async fn() {
    await using served = testServer({ tcp: true, password: "the password" });
    const guess = async () => {
      const link = new LineConnection(await connectFrom(served.port, OTHER_HOST));
      try {
        await clientHandshake(link, { ...CLIENT, password: "a guess" });
        return "accepted";
      } catch (error) {
        return (error as ProtocolError).message;
      } finally {
        link.close();
      }
    };
    for (let i = 1; i <= 5; i++) assert.match(await guess(), /^wrong password/, `guess ${i}`);
    const refused = await guess();
    assert.match(refused, /too many wrong passwords from 127\.0\.0\.2: refused for 10 more min/);
    const wrongLines = served.serverLog.of("error").filter((l) => /: wrong password/.test(l));
    assert.equal(wrongLines.length, 5, served.serverLog.dump());
    assert.ok(wrongLines.every((l) => l.startsWith("127.0.0.2:")), served.serverLog.dump());
    assert.match(wrongLines[4], /127\.0\.0\.2 refused for 10 min/);

    const log = new CapturingLogger();
    const good = typedClient({ port: served.port, password: "the password" }, log);
    good.type("still served");
    good.end();
    assert.equal(await within(good.run, 10_000, "good client"), 0, log.dump());
    assert.deepEqual(served.sink.texts(), ["still served"]);
  },
});

// ───────────────────────────────────────────────────────────────────────────
// The scripts: a host key file, kept across restarts
// ───────────────────────────────────────────────────────────────────────────

Deno.test({
  name:
    "scripts: --host-key-file is created 0600, kept across restarts, refused when others may read it; --quiet still prints it",
  ignore: lacks("run", "read") || !canWrite(),
  async fn() {
    await Deno.mkdir(STATE, { recursive: true });
    const dir = await Deno.makeTempDir({ dir: STATE, prefix: "hostkey-" });
    const file = `${dir}/host_key`;
    const serve = () =>
      scriptWithFiles(
        dir,
        "server.ts",
        ["--port", "0", "--quiet", "--host-key-file", file],
        "piped",
      );
    const printed: string[] = [];
    try {
      for (let run = 0; run < 2; run++) {
        await using server = serve();
        const [, fingerprint] = await server.waitFor(/^\[\*\] Host key (SHA256:\S+)$/m);
        printed.push(fingerprint);
        assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
      }
      assert.equal(printed[0], printed[1], "the same key after a restart");
      const stored = loadHostKey(new FileStore(file, { secret: true }));
      assert.equal(stored.hostKey.fingerprint, printed[0]);
      await Deno.chmod(file, 0o644);
      const { code, stderr } = await runToEnd(serve());
      assert.equal(code, 1);
      assert.match(
        stderr,
        /^\[!\] The key file .* may be read by others \(mode 0644\): run chmod 600 /m,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "scripts: --password without a terminal is a usage error naming --password-file; --forget-host says what it removed",
  ignore: lacks("run", "read") || !canWrite(),
  async fn() {
    for (const script of ["server.ts", "client.ts"]) {
      const { code, stderr } = await runToEnd(
        new TestProcess("deno", ["run", "--allow-net", script, "--port", "1", "--password"]),
      );
      assert.equal(code, 2, `${script}: ${stderr}`);
      assert.match(stderr, /--password-file FILE/);
    }
    await Deno.mkdir(STATE, { recursive: true });
    const dir = await Deno.makeTempDir({ dir: STATE, prefix: "known-" });
    const file = `${dir}/known_hosts`;
    const fingerprint = HostKey.generate().fingerprint;
    await Deno.writeTextFile(file, `127.0.0.1:4444 ${fingerprint}\n`);
    try {
      const forget = () =>
        runToEnd(
          scriptWithFiles(dir, "client.ts", [
            "--known-hosts",
            file,
            "--forget-host",
            "127.0.0.1:4444",
          ]),
        );
      const first = await forget();
      assert.equal(first.code, 0, first.stderr);
      assert.ok(
        first.stdout.includes(`Forgot host key ${fingerprint} of 127.0.0.1:4444`),
        first.stdout,
      );
      assert.equal(await Deno.readTextFile(file), "");
      const second = await forget();
      assert.equal(second.code, 0);
      assert.match(second.stdout, /No host key was remembered for 127\.0\.0\.1:4444/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** `deno run --allow-net` of a script that may also read and write the files in `dir`. */
function scriptWithFiles(
  dir: string,
  script: string,
  args: string[],
  stdin: "piped" | "null" = "null",
): TestProcess {
  const allow = ["--allow-net", `--allow-read=${dir}`, `--allow-write=${dir}`];
  return new TestProcess("deno", ["run", ...allow, script, ...args], stdin);
}

/** Whether this run may write under tests/.state (deno.json grants it to `deno test -P`). */
function canWrite(): boolean {
  return Deno.permissions.querySync({ name: "write", path: STATE }).state === "granted";
}

// ───────────────────────────────────────────────────────────────────────────
// Teaching output
// ───────────────────────────────────────────────────────────────────────────

Deno.test("teaching: in toy mode both sides show h, G = h² mod p replacing g, and the proof made and checked", async () => {
  await using served = testServer({
    group: GROUPS.toy,
    cipher: TOY_CIPHER,
    privateKey: 3n,
    password: "swordfish",
  });
  const log = new CapturingLogger();
  const client = typedClient({
    connection: served.server.connect(),
    toy: true,
    password: "swordfish",
  }, log);
  client.type("hi");
  client.end();
  assert.equal(await within(client.run, 10_000, "client"), 0, log.dump());
  const hostKey = served.server.hostKey!.fingerprint;
  for (const [who, lines] of [["client", log.lines], ["server", served.serverLog.lines]] as const) {
    const text = lines.join("\n");
    const h =
      /room password: h = HKDF-SHA-256\(password, nonce, "dhx\/1 password generator" ‖ 0 ‖ p ‖ (\d+)\) mod p = (\d+)/
        .exec(text);
    assert.ok(h, `${who}: h\n${text}`);
    const G = (BigInt(h[2]) ** 2n) % 23n;
    assert.ok(
      text.includes(`G = h² mod p = ${G}: the password's G replaces g`),
      `${who}: G\n${text}`,
    );
    const [x, X, key] = who === "client" ? ["a", "A", 5n] : ["b", "B", 3n];
    const power = G ** key;
    assert.ok(
      text.includes(`${X} = G^${x} mod p = ${G}^${key} mod 23 = ${power} mod 23 = ${power % 23n}`),
      `${who}: ${X} from G\n${text}`,
    );
    const made = who === "server" ? "made and sent" : "checked";
    assert.ok(text.includes(`with host key ${hostKey}: ${made}`), `${who}: proof\n${text}`);
  }
});

Deno.test({
  name:
    "scripts: first contact remembered in --known-hosts; a changed key refused with exit 1, both fingerprints and the forget command",
  ignore: lacks("run", "read", "net") || !canWrite(),
  async fn() {
    await Deno.mkdir(STATE, { recursive: true });
    const dir = await Deno.makeTempDir({ dir: STATE, prefix: "tofu-" });
    const knownHosts = `${dir}/known_hosts`;
    const client = (port: number, ...args: string[]) =>
      runToEnd(
        scriptWithFiles(dir, "client.ts", [
          "--port",
          String(port),
          "--known-hosts",
          knownHosts,
          ...args,
        ]),
      );
    try {
      await using served = testServer({ tcp: true });
      const real = served.server.hostKey!.fingerprint;
      const first = await client(served.port);
      assert.equal(first.code, 0, first.stderr);
      assert.ok(
        first.stdout.includes(
          `First contact with 127.0.0.1:${served.port}: remembered its host key ${real}`,
        ),
        first.stdout,
      );
      assert.equal(await Deno.readTextFile(knownHosts), `127.0.0.1:${served.port} ${real}\n`);
      const second = await client(served.port);
      assert.ok(second.stdout.includes(`Host key ${real} verified (as remembered`), second.stdout);

      // Another server claims that address: its key is not the one remembered.
      await using impostor = testServer({ tcp: true });
      await Deno.writeTextFile(knownHosts, `127.0.0.1:${impostor.port} ${real}\n`);
      const refused = await client(impostor.port);
      assert.equal(refused.code, 1, refused.stdout);
      const lines = refused.stderr.split("\n").filter((line) => line !== "");
      assert.equal(lines.length, 2, refused.stderr);
      assert.ok(lines[0].includes(impostor.server.hostKey!.fingerprint) && lines[0].includes(real));
      assert.ok(
        lines[1].endsWith(
          `deno run --allow-net client.ts --known-hosts ${knownHosts} --forget-host 127.0.0.1:${impostor.port}`,
        ),
        lines[1],
      );
      assert.equal(impostor.sink.texts().length, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("stores: the library's defaults (startServer, runClient) never touch localStorage", async () => {
  const original = Object.getOwnPropertyDescriptor(globalThis, "localStorage");
  let touched = 0;
  Object.defineProperty(globalThis, "localStorage", {
    configurable: true,
    get() {
      touched++;
      throw new Error("localStorage touched");
    },
  });
  try {
    await using served = testServer({ password: "pw" });
    const log = new CapturingLogger();
    const client = typedClient({ connection: served.server.connect(), password: "pw" }, log);
    client.type("no store");
    client.end();
    assert.equal(await within(client.run, 10_000, "client"), 0, log.dump());
    assert.ok(log.lines.some((line) => line.includes("First contact")), log.dump());
  } finally {
    if (original) Object.defineProperty(globalThis, "localStorage", original);
    else delete (globalThis as { localStorage?: Storage }).localStorage;
  }
  assert.equal(touched, 0);
});
