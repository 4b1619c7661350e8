/**
 * Record benchmarks: one `Session.seal` on the client plus the matching
 * `Session.open` on the server (AES-256-CTR + HMAC-SHA-256, DHX/1 framing) at
 * 16 B, 64 B, 1 KiB and 64 KiB of text, over a real ffdhe2048 handshake made
 * with createOffer / parseHello / respondToHello / acceptKey; and the
 * handshake's two halves.
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
const { keyLine, session: client } = respondToHello(hello);
const server = acceptKey(offer, keyLine);

for (
  const [label, size] of [["16 B", 16], ["64 B", 64], ["1 KiB", 1024], ["64 KiB", 65536]] as const
) {
  const text = "x".repeat(size);
  Deno.bench(`seal + open ${label}`, { group: "records" }, () => {
    const record = server.open(client.seal("msg", text));
    if (record.type !== "msg") throw new Error("unexpected record");
  });
}

Deno.bench("server: createOffer (keygen + hello)", { group: "handshake" }, () => {
  createOffer(GROUPS.ffdhe2048, SECURE_CIPHER);
});

Deno.bench("server: acceptKey (Z + key schedule)", { group: "handshake" }, () => {
  acceptKey(offer, keyLine);
});
