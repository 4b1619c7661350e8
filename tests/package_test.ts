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
import * as primes from "../primes.ts";
import * as server from "../server.ts";
import * as transport from "../transport.ts";

/** The package's modules, loaded statically (a dynamic import would need --allow-read). */
const MODULES: Record<string, Record<string, unknown>> = {
  "dh.ts": dh,
  "hash.ts": hash,
  "hostkeys.ts": hostkeys,
  "primes.ts": primes,
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
  name:
    "package: deno install -g -N -c deno.json bin/dhx-server.ts (and bin/dhx-client.ts): --help and --version name the command",
  ignore: lacks("run"),
  async fn() {
    for (const name of ["dhx-server", "dhx-client"]) {
      // The README's command: the name comes from the file, -c keeps Deno from warning.
      const install = await run("deno", [
        "install",
        "-g",
        "-f",
        "-N",
        "-c",
        "deno.json",
        "--root",
        INSTALL_ROOT,
        `bin/${name}.ts`,
      ]);
      assert.equal(install.code, 0, install.stderr);
      assert.doesNotMatch(install.stderr, /Warning/, install.stderr);
      const shim = await run(`./${INSTALL_ROOT}/bin/${name}`, ["--help"]);
      assert.equal(shim.code, 0, shim.stderr);
      assert.match(shim.stdout, new RegExp(`^Usage: ${name} \\[options\\]\n`));
      const version = await run(`./${INSTALL_ROOT}/bin/${name}`, ["--version"]);
      assert.equal(version.code, 0, version.stderr);
      assert.equal(
        version.stdout,
        `${name} ${denoJson.version} (protocol dhx/1, Deno ${Deno.version.deno})\n`,
      );
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

Deno.test({
  name: "package: the in-process library example prints nothing but its result with quiet: true",
  ignore: lacks("run"),
  async fn() {
    const example = (quiet: string) => `
      import { startServer } from "./server.ts";
      import { runClient } from "./client.ts";
      const server = startServer({ listen: false${quiet} });
      const input = ReadableStream.from([new TextEncoder().encode("hello\\nworld\\n")]);
      console.log(await runClient({ connection: server.connect(), input${quiet} }));
      await server.close();`;
    const quiet = await run("deno", ["eval", example(", quiet: true")]);
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.equal(quiet.stdout, "0\n");
    assert.equal(quiet.stderr, "");
    // Without it, the same example tells its story (the lines the option hides).
    const loud = await run("deno", ["eval", example("")]);
    assert.equal(loud.code, 0, loud.stderr);
    assert.match(loud.stdout, /^\[\+\] guest1 \(memory:1\): world$/m);
    assert.match(loud.stdout, /^0$/m);
  },
});
