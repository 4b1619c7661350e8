/**
 * Interoperability: server.ts and client.ts against tests/peer.mjs, a DHX/1
 * peer written for Node.js from the README's protocol section alone (its own
 * modpow, node:crypto for HKDF/AES-CTR/HMAC, CRLF line endings, JSON fields in
 * another order). Both ends must agree on the fingerprint and every message.
 */

import assert from "node:assert/strict";
import { GROUPS, TOY_CIPHER } from "../dh.ts";
import { startServer } from "../server.ts";
import { runClient } from "../client.ts";
import { CapturingLogger } from "./support.ts";

const PEER = new URL("./peer.mjs", import.meta.url).pathname;

/** Runs the Node peer to completion and returns its last JSON line. */
async function peerClient(port: number, args: string[]): Promise<Record<string, unknown>> {
  const out = await new Deno.Command("node", {
    args: [PEER, "client", String(port), ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `peer client failed:\n${stderr}`);
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  return JSON.parse(lines.at(-1)!);
}

for (const mode of ["secure", "toy"] as const) {
  Deno.test(`interop (${mode}): independent Node client → server.ts`, async () => {
    const log = new CapturingLogger();
    const received: string[] = [];
    const server = startServer({
      port: 0,
      logger: log,
      onMessage: (m) => received.push(m.text),
      ...(mode === "toy"
        ? { group: GROUPS.toy, cipher: TOY_CIPHER, privateKey: 3n }
        : { group: GROUPS.modp2048 }), // the peer knows Node's modp14 = RFC 3526 group 14
    });
    try {
      const words = ["hello", "Grüße, 世界 🙂", "", "last"];
      const summary = await peerClient(server.addr.port, [
        ...(mode === "toy" ? ["--toy"] : []),
        ...words,
      ]);
      assert.deepEqual(summary.acked, ["0", "1", "2", "3"]);
      assert.deepEqual(received, words);
      assert.equal(summary.fingerprint, log.fingerprint(), log.dump());
      if (mode === "toy") assert.ok(log.infos.includes("Received client public key: 20"));
    } finally {
      await server.close();
    }
  });

  Deno.test(`interop (${mode}): client.ts → independent Node server`, async () => {
    const child = new Deno.Command("node", {
      args: [PEER, "server", ...(mode === "toy" ? ["--toy"] : [])],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    const nextJson = async (): Promise<Record<string, unknown>> => {
      while (!text.includes("\n")) {
        const { value, done } = await stdout.read();
        if (done) throw new Error(`peer server ended early; output so far: ${text}`);
        text += value;
      }
      const line = text.slice(0, text.indexOf("\n"));
      text = text.slice(text.indexOf("\n") + 1);
      return JSON.parse(line);
    };
    try {
      const { port } = await nextJson() as { port: number };
      const log = new CapturingLogger();
      const words = ["one", "two 🙂", "three"];
      const code = await runClient({
        port,
        toy: mode === "toy",
        input: ReadableStream.from([new TextEncoder().encode(words.join("\n") + "\n")]),
        interactive: false,
        logger: log,
        timeoutMs: 5000,
      });
      assert.equal(code, 0, log.dump());
      const summary = await nextJson();
      assert.deepEqual(summary.messages, words);
      assert.equal(summary.fingerprint, log.fingerprint(), log.dump());
      for (const seq of [0, 1, 2]) assert.ok(log.successes.includes(`Message ${seq} acknowledged`));
    } finally {
      await stdout.cancel();
      await child.stderr.cancel();
      try {
        child.kill();
      } catch {
        // already exited
      }
      await child.status;
    }
  });
}
