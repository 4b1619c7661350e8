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

Deno.test("package: deno.json has a scoped name, a semver version and exports that exist", async () => {
  assert.match(denoJson.name, /^@[a-z0-9-]+\/[a-z0-9-]+$/);
  assert.match(denoJson.version, /^\d+\.\d+\.\d+$/);
  const exports = Object.entries(denoJson.exports);
  assert.deepEqual(exports.map(([key]) => key).sort(), [
    ".",
    "./chat",
    "./client",
    "./console",
    "./guard",
    "./hash",
    "./hostkeys",
    "./server",
    "./transport",
  ]);
  for (const [key, path] of exports) {
    const module = await import(new URL(`../${path}`, import.meta.url).href);
    assert.ok(Object.keys(module).length > 0, `${key} → ${path} exports something`);
    assert.ok(denoJson.publish.include.includes(path.replace("./", "")), `${path} is published`);
  }
});
