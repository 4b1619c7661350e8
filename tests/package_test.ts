/**
 * The package: `deno install` makes working commands of both scripts, and
 * deno.json's exports point at modules that exist.
 *
 * The install goes into `tests/.install/` (git-ignored): deno.json grants
 * running exactly its two shims, nothing wider.
 *
 * @module
 */

import assert from "node:assert/strict";
import denoJson from "../deno.json" with { type: "json" };
import { lacks, ROOT } from "./support.ts";
import * as admission from "../admission.ts";
import * as chat from "../chat.ts";
import * as client from "../client.ts";
import * as consoleModule from "../console.ts";
import * as dh from "../dh.ts";
import * as guard from "../guard.ts";
import * as hash from "../hash.ts";
import * as hostkeys from "../hostkeys.ts";
import * as server from "../server.ts";
import * as transport from "../transport.ts";

/** The package's modules, loaded statically (a dynamic import would need --allow-read). */
const MODULES: Record<string, Record<string, unknown>> = {
  "dh.ts": dh,
  "hash.ts": hash,
  "hostkeys.ts": hostkeys,
  "transport.ts": transport,
  "chat.ts": chat,
  "guard.ts": guard,
  "admission.ts": admission,
  "console.ts": consoleModule,
  "server.ts": server,
  "client.ts": client,
};

const INSTALL_ROOT = "tests/.install";
const decoder = new TextDecoder();

/** Runs a command in the repository; returns its exit code and output. */
async function run(command: string, args: string[]) {
  const { code, stdout, stderr } = await new Deno.Command(command, { args, cwd: ROOT }).output();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

Deno.test({
  name: "package: deno install -g -N makes dhx-server and dhx-client, whose --help runs",
  ignore: lacks("run"),
  async fn() {
    for (
      const [name, script, usage] of [
        ["dhx-server", "server.ts", /^Usage: deno run --allow-net server\.ts/],
        ["dhx-client", "client.ts", /^Usage: deno run --allow-net client\.ts/],
      ] as const
    ) {
      const install = await run("deno", [
        "install",
        "-g",
        "-f",
        "-N",
        "--root",
        INSTALL_ROOT,
        "-n",
        name,
        script,
      ]);
      assert.equal(install.code, 0, install.stderr);
      const shim = await run(`./${INSTALL_ROOT}/bin/${name}`, ["--help"]);
      assert.equal(shim.code, 0, shim.stderr);
      assert.match(shim.stdout, usage);
      const bad = await run(`./${INSTALL_ROOT}/bin/${name}`, ["--no-such-flag"]);
      assert.equal(bad.code, 2, "a usage error through the shim exits 2");
      assert.match(bad.stderr, /^\[!\] .*no-such-flag.*\(see --help\)\n$/);
    }
  },
});

Deno.test("package: deno.json has a scoped name, a semver version and exports that exist", () => {
  assert.match(denoJson.name, /^@[a-z0-9-]+\/[a-z0-9-]+$/);
  assert.match(denoJson.version, /^\d+\.\d+\.\d+$/);
  assert.equal(denoJson.exports["."], "./dh.ts", "the package's main export is the DH core");
  for (const [key, path] of Object.entries(denoJson.exports)) {
    const module = MODULES[path.replace("./", "")];
    assert.ok(module, `${key} → ${path} is a module of this list`);
    assert.ok(Object.keys(module).length > 0, `${key} → ${path} exports something`);
    assert.ok(denoJson.publish.include.includes(path.replace("./", "")), `${path} is published`);
  }
});

Deno.test({
  name: "package: every top-level module is exported under its own name, and nothing else",
  ignore: lacks("read"),
  async fn() {
    const modules: string[] = [];
    for await (const entry of Deno.readDir(new URL("..", import.meta.url))) {
      if (entry.isFile && /^[a-z]+\.ts$/.test(entry.name)) modules.push(entry.name);
    }
    const exported = Object.values(denoJson.exports).map((path) => path.replace("./", ""));
    assert.deepEqual(exported.sort(), modules.sort());
    for (const path of exported) {
      const name = path === "dh.ts" ? "." : `./${path.replace(".ts", "")}`;
      assert.equal(denoJson.exports[name as keyof typeof denoJson.exports], `./${path}`);
    }
  },
});
