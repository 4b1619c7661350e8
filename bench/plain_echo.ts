/**
 * The no-crypto ceiling of bench/load.ts: a JSON-lines echo server in Deno, the
 * runtime of the dhx server. Each line `{"type":"msg","seq":N,"data":…}` is
 * answered by `{"type":"ack","seq":N}`; `{"type":"bye"}` or EOF ends the
 * connection.
 *
 * It is written the way server.ts serves a session, so that the difference
 * between the two is the protocol's work, not the I/O style: one await-ed read
 * loop per connection, every line parsed as JSON, one write per ack (no
 * batching of acks), Nagle off.
 *
 * ```sh
 * deno run --allow-net=127.0.0.1 bench/plain_echo.ts --port 0
 * ```
 *
 * Prints `[*] Server listening on 127.0.0.1:PORT`, like server.ts.
 *
 * @module
 */

import { parseArgs } from "node:util";

const encoder = new TextEncoder();

/** Writes all of `bytes` (a socket write may be partial). */
async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.length;) {
    offset += await conn.write(bytes.subarray(offset));
  }
}

/** The answer to one line, or null to close the connection. */
function answer(line: string): string | null {
  const frame = JSON.parse(line);
  if (frame.type === "bye") return null;
  if (frame.type !== "msg" || !Number.isInteger(frame.seq) || typeof frame.data !== "string") {
    throw new Error(`bad frame: ${line.slice(0, 80)}`);
  }
  return JSON.stringify({ type: "ack", seq: frame.seq });
}

/** Serves one connection until bye, EOF or a bad line. */
async function serve(conn: Deno.TcpConn): Promise<void> {
  conn.setNoDelay(true);
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(16 * 1024);
  let pending = "";
  try {
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) return;
      pending += decoder.decode(buffer.subarray(0, n), { stream: true });
      let lf: number;
      while ((lf = pending.indexOf("\n")) >= 0) {
        const reply = answer(pending.slice(0, lf));
        pending = pending.slice(lf + 1);
        if (reply === null) return;
        await writeAll(conn, encoder.encode(reply + "\n"));
      }
    }
  } catch (error) {
    // A peer that resets after its bye is normal under load; anything else is worth a line.
    if (
      !(error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.BrokenPipe)
    ) {
      const message = JSON.stringify({ type: "error", message: String(error) });
      await writeAll(conn, encoder.encode(message + "\n")).catch(() => {});
      console.error(`[!] ${String(error)}`);
    }
  } finally {
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}

/** Listens on 127.0.0.1:`port` and serves every connection until killed. */
export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { port: { type: "string", default: "0" } } });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: Number(values.port) });
  console.log(`[*] Server listening on 127.0.0.1:${listener.addr.port}`);
  for (;;) {
    let conn: Deno.TcpConn;
    try {
      conn = await listener.accept();
    } catch (error) {
      // Out of descriptors: like server.ts, pause and go on rather than die.
      console.error(`[!] accept failed: ${String(error)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
      continue;
    }
    serve(conn);
  }
}

if (import.meta.main) await main(Deno.args);
