/**
 * Record benchmarks: one `Session.seal` on the client plus the matching
 * `Session.open` on the server (AES-256-CTR + HMAC-SHA-256, DHX/1 framing) at
 * 16 B, 1 KiB and 64 KiB of text, over a real ffdhe2048 handshake made with
 * createOffer / parseHello / respondToHello / acceptKey.
 *
 * ```sh
 * deno task bench
 * ```
 *
 * @module
 */

import {
  acceptKey,
  createOffer,
  GROUPS,
  parseHello,
  respondToHello,
  SECURE_CIPHER,
} from "../dh.ts";

const offer = createOffer(GROUPS.ffdhe2048, SECURE_CIPHER);
const hello = parseHello(offer.line, { insecure: false });
const { keyLine, session: client } = await respondToHello(hello);
const server = await acceptKey(offer, keyLine);

for (const [label, size] of [["16 B", 16], ["1 KiB", 1024], ["64 KiB", 65536]] as const) {
  const text = "x".repeat(size);
  Deno.bench(`seal + open ${label}`, { group: "records" }, async () => {
    const line = await client.seal("msg", text);
    const frame = await server.open(line);
    if (frame.type !== "msg") throw new Error("unexpected frame");
  });
}
