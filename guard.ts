/**
 * dhx per-address policy, with no I/O: which addresses count as one peer, and
 * a penalty box for the ones that misbehave (wrong passwords, connections
 * that never finish a handshake, an operator's `/ban`).
 *
 * OpenSSH's PerSourcePenalties are the model: a peer is known by its address,
 * and an IPv6 peer by its /64, because one host is routinely given a whole
 * /64 and could otherwise walk through 2^64 "different" addresses.
 *
 * @example Five strikes within ten minutes refuse an address for ten minutes
 * ```ts
 * import { addressKey, PenaltyBox } from "./guard.ts";
 *
 * const guesses = new PenaltyBox({ strikes: 5, windowMs: 600_000, penaltyMs: 600_000 });
 * const key = addressKey("2001:db8::1"); // "2001:db8:0:0::/64"
 * for (let i = 0; i < 5; i++) guesses.strike(key);
 * guesses.remaining(key) > 0; // true
 * ```
 *
 * @module
 */

/**
 * The key an address is counted under: an IPv4 address as it is, an IPv6
 * address as its /64 (`2001:db8:0:1::/64`), an IPv4-mapped IPv6 address
 * (`::ffff:192.0.2.1`) as the IPv4 address. Anything that is not an IP
 * address (an in-memory connection's name) is its own key.
 */
export function addressKey(hostname: string): string {
  const host = hostname.startsWith("[") && hostname.endsWith("]")
    ? hostname.slice(1, -1)
    : hostname;
  if (!host.includes(":")) return host;
  const groups = expandIpv6(host.split("%")[0]);
  if (groups === undefined) return host;
  const mapped = groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff;
  if (mapped) {
    return [groups[6] >> 8, groups[6] & 255, groups[7] >> 8, groups[7] & 255].join(".");
  }
  return `${groups.slice(0, 4).map((group) => group.toString(16)).join(":")}::/64`;
}

/** The eight 16-bit groups of an IPv6 address, or undefined if it is not one. */
function expandIpv6(address: string): number[] | undefined {
  const halves = address.split("::");
  if (halves.length > 2) return undefined;
  const parse = (part: string): number[] | undefined => {
    if (part === "") return [];
    const groups: number[] = [];
    for (const piece of part.split(":")) {
      if (/^\d+\.\d+\.\d+\.\d+$/.test(piece)) {
        const bytes = piece.split(".").map(Number);
        if (bytes.some((byte) => byte > 255)) return undefined;
        groups.push((bytes[0] << 8) | bytes[1], (bytes[2] << 8) | bytes[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(piece)) {
        groups.push(parseInt(piece, 16));
      } else {
        return undefined;
      }
    }
    return groups;
  };
  const head = parse(halves[0]);
  const tail = halves.length === 2 ? parse(halves[1]) : [];
  if (head === undefined || tail === undefined) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  return [...head, ...new Array(missing).fill(0), ...tail];
}

/** How a {@link PenaltyBox} judges. */
export interface PenaltyOptions {
  /** Strikes within `windowMs` that put a key in the box. */
  readonly strikes: number;
  /** How far back strikes count, in milliseconds. */
  readonly windowMs: number;
  /** How long a key stays in the box, in milliseconds. */
  readonly penaltyMs: number;
  /**
   * Most keys remembered (default 10,000): past it the oldest entry is
   * forgotten, so a peer with many addresses cannot grow the box without bound.
   */
  readonly maxKeys?: number;
  /** The clock, in milliseconds (tests pass their own). */
  readonly now?: () => number;
}

/** What the box knows of one key. */
interface PenaltyRecord {
  /** Times of the recent strikes, oldest first, at most `strikes` of them. */
  strikes: number[];
  /** When the penalty ends (0: none). */
  until: number;
}

/**
 * Counts strikes per key in a sliding window; a key with `strikes` strikes
 * within `windowMs` is penalized for `penaltyMs`. Memory is bounded by
 * `maxKeys`, each key holding at most `strikes` timestamps.
 */
export class PenaltyBox {
  readonly #options: Required<PenaltyOptions>;
  readonly #records = new Map<string, PenaltyRecord>();

  /** A box that judges by `options`. */
  constructor(options: PenaltyOptions) {
    if (!(options.strikes >= 1) || !(options.windowMs > 0) || !(options.penaltyMs > 0)) {
      throw new RangeError("strikes, windowMs and penaltyMs must be positive");
    }
    this.#options = { maxKeys: 10_000, now: Date.now, ...options };
  }

  /** Records one strike against `key`; true if `key` is now penalized. */
  strike(key: string): boolean {
    const now = this.#options.now();
    const record = this.#touch(key);
    if (record.until > now) return true;
    record.strikes = record.strikes.filter((time) => now - time < this.#options.windowMs);
    record.strikes.push(now);
    if (record.strikes.length >= this.#options.strikes) {
      record.strikes = [];
      record.until = now + this.#options.penaltyMs;
      return true;
    }
    return false;
  }

  /** Penalizes `key` at once for `ms` milliseconds (an operator's ban). */
  ban(key: string, ms: number): void {
    const record = this.#touch(key);
    record.until = Math.max(record.until, this.#options.now() + ms);
  }

  /** Milliseconds of penalty left for `key`; 0 if it is not penalized. */
  remaining(key: string): number {
    const record = this.#records.get(key);
    if (record === undefined) return 0;
    return Math.max(0, record.until - this.#options.now());
  }

  /** Forgets everything about `key` (a good login, an operator's pardon). */
  forgive(key: string): void {
    this.#records.delete(key);
  }

  /** How many keys the box remembers. */
  get size(): number {
    return this.#records.size;
  }

  /** The record of `key`, made most recent; the oldest key goes past `maxKeys`. */
  #touch(key: string): PenaltyRecord {
    let record = this.#records.get(key);
    if (record === undefined) {
      record = { strikes: [], until: 0 };
    } else {
      this.#records.delete(key);
    }
    this.#records.set(key, record);
    if (this.#records.size > this.#options.maxKeys) this.#evictOne();
    return record;
  }

  /** Drops the oldest key not in the box, or else the oldest key. */
  #evictOne(): void {
    const now = this.#options.now();
    let victim: string | undefined;
    for (const [key, record] of this.#records) {
      if (record.until <= now) {
        victim = key;
        break;
      }
      victim ??= key;
    }
    if (victim !== undefined) this.#records.delete(victim);
  }
}
