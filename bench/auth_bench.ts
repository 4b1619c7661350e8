/**
 * Revision-3 handshake costs, in process, next to the plain handshake's parts
 * (ffdhe2048): what the host key proof adds (the hostKey member, one Ed25519
 * signature) and what a room password adds (the password generator's HKDF,
 * and G^b by a plain modpow, since G is new with every nonce and the
 * fixed-base comb of g cannot serve it). bench/load.ts measures the same as
 * server CPU per handshake, from /proc, over TCP.
 *
 * ```sh
 * deno bench bench/auth_bench.ts
 * ```
 *
 * @module
 */

import {
  acceptKey,
  createOffer,
  derivePasswordGenerator,
  derivePublicKey,
  encodeProof,
  generatePrivateKey,
  GROUPS,
  HostKey,
  modpow,
  parseHello,
  respondToHello,
  SECURE_CIPHER,
} from "../dh.ts";

const group = GROUPS.ffdhe2048;
const hostKey = HostKey.generate();
const nonce = crypto.getRandomValues(new Uint8Array(32));
const privateKey = generatePrivateKey(group);
const generator = derivePasswordGenerator(group, "a room password", nonce).generator;
const offer = createOffer(group, SECURE_CIPHER, undefined, { hostKey });
const { keyLine } = respondToHello(parseHello(offer.line, { insecure: false }), undefined, {
  proof: true,
});
const session = acceptKey(offer, keyLine);

Deno.bench("hello: createOffer (g^b by the comb)", { group: "hello", baseline: true }, () => {
  createOffer(group, SECURE_CIPHER);
});
Deno.bench("hello: createOffer with hostKey", { group: "hello" }, () => {
  createOffer(group, SECURE_CIPHER, undefined, { hostKey });
});
Deno.bench("hello: createOffer with hostKey and password", { group: "hello" }, () => {
  createOffer(group, SECURE_CIPHER, undefined, { hostKey, password: "a room password" });
});
Deno.bench("B: g^b, fixed-base comb", { group: "B", baseline: true }, () => {
  derivePublicKey(group, privateKey);
});
Deno.bench("B: G^b, plain modpow (password generator)", { group: "B" }, () => {
  modpow(generator, privateKey, group.p);
});
Deno.bench("password generator: HKDF, h² mod p", () => {
  derivePasswordGenerator(group, "a room password", nonce);
});
Deno.bench("acceptKey: Z = A^b, th, key schedule", () => {
  acceptKey(offer, keyLine);
});
Deno.bench("proof: Ed25519 signature of th", () => {
  encodeProof(hostKey, session);
});
