/**
 * Reads /proc files for bench/harness.ts. Deno 2.9 wants `--allow-all` for any
 * read under /proc, so the orchestrators (which already run `node` for the load
 * generator) ask this Node process instead and keep `--allow-run=deno,node` as
 * their only permission.
 *
 * One JSON request per stdin line, `{"id":N,"paths":["/proc/…",…]}`; one answer
 * per stdout line, `{"id":N,"files":[TEXT or null,…]}` (null: unreadable or
 * not under /proc/).
 *
 * @module
 */

import { readFileSync } from "node:fs";
import readline from "node:readline";

/** The text of `path` if it is a readable file under /proc/, else null. */
function read(path) {
  if (typeof path !== "string" || !path.startsWith("/proc/") || path.includes("..")) return null;
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

for await (const line of readline.createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  if (line.trim() === "") continue;
  const { id, paths } = JSON.parse(line);
  process.stdout.write(JSON.stringify({ id, files: paths.map(read) }) + "\n");
}
