/**
 * The TLS 1.3 baseline of bench/load.ts: the JSON-lines echo of
 * bench/plain_echo.ts inside TLS 1.3, in Node.js (OpenSSL), with the throwaway
 * bench/cert.pem and bench/key.pem (ECDSA P-256, for 127.0.0.1 and localhost).
 * One write (one TLS record) per ack, Nagle off. The server issues TLS 1.3
 * session tickets as Node does by default (part of a real TLS server's cost);
 * the load generator never resumes a session, so every handshake is a full one.
 *
 * ```sh
 * node bench/tls_echo.mjs --port 0
 * ```
 *
 * Prints `[*] Server listening on 127.0.0.1:PORT`, like server.ts.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import tls from "node:tls";
import { parseArgs } from "node:util";

const { values } = parseArgs({ options: { port: { type: "string", default: "0" } } });
const here = new URL(".", import.meta.url);

/** The answer to one line, or null to close the connection. */
function answer(line) {
  const frame = JSON.parse(line);
  if (frame.type === "bye") return null;
  if (frame.type !== "msg" || !Number.isInteger(frame.seq) || typeof frame.data !== "string") {
    throw new Error(`bad frame: ${line.slice(0, 80)}`);
  }
  return JSON.stringify({ type: "ack", seq: frame.seq });
}

/** Serves one TLS connection until bye, EOF or a bad line. */
function serve(socket) {
  socket.setNoDelay(true);
  let pending = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk) => {
    pending += chunk;
    let lf;
    try {
      while ((lf = pending.indexOf("\n")) >= 0) {
        const reply = answer(pending.slice(0, lf));
        pending = pending.slice(lf + 1);
        if (reply === null) {
          socket.end();
          return;
        }
        socket.write(reply + "\n");
      }
    } catch (error) {
      console.error(`[!] ${error.message}`);
      socket.end(JSON.stringify({ type: "error", message: error.message }) + "\n");
    }
  });
  // A client that resets after its bye is normal under load.
  socket.on("error", () => socket.destroy());
}

const server = tls.createServer({
  cert: readFileSync(new URL("cert.pem", here)),
  key: readFileSync(new URL("key.pem", here)),
  minVersion: "TLSv1.3",
}, serve);
server.on("tlsClientError", (error) => console.error(`[!] TLS: ${error.message}`));
server.listen(Number(values.port), "127.0.0.1", () => {
  console.log(`[*] Server listening on 127.0.0.1:${server.address().port}`);
});
