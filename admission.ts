/**
 * dhx admission, with no I/O: which connections a server takes, and which
 * it drops to make room, as OpenSSH does with MaxStartups and
 * PerSourcePenalties.
 *
 * - Connections still in their handshake have a pool of their own, smaller
 *   than the server's limit; when it is full, the oldest of them is dropped
 *   for the newcomer, so an attacker must open connections faster than a
 *   good client finishes its handshake. Sessions are never displaced.
 * - Connections from one address (an IPv6 address: its /64) are counted
 *   together, and bounded.
 * - An address whose connections keep ending without a handshake is
 *   refused for a while (a {@link PenaltyBox}); so is one the operator bans.
 *
 * @example A pool of two handshakes: the third connection drops the first
 * ```ts
 * import { Admission } from "./admission.ts";
 *
 * const admission = new Admission<string>({ maxClients: 10, maxHandshakes: 2, maxPerAddress: 5 });
 * admission.admit("a", "127.0.0.2");
 * admission.admit("b", "127.0.0.3");
 * const third = admission.admit("c", "127.0.0.4"); // ok, and third.drop is ["a"]
 * ```
 *
 * @module
 */

import { addressKey, PenaltyBox, type PenaltyOptions } from "./guard.ts";

export type { PenaltyOptions };

/** Limits of an {@link Admission}. */
export interface AdmissionOptions {
  /** Most connections at once, sessions and handshakes together. */
  readonly maxClients: number;
  /** Most connections in their handshake at once (the pool; at most `maxClients`). */
  readonly maxHandshakes: number;
  /** Most connections at once from one address key (see `addressKey`). */
  readonly maxPerAddress: number;
  /** When an address's unfinished connections get it refused; undefined: never (bans still work). */
  readonly penalty?: PenaltyOptions;
}

/** What {@link Admission.admit} decided. */
export type AdmitResult<C> =
  & (
    | {
      readonly ok: true;
      /** The address key the connection counts under. */
      readonly key: string;
    }
    | {
      readonly ok: false;
      readonly reason: string;
      /** The refused address key, if it is in the penalty box (its refusals come in floods). */
      readonly penalizedKey?: string;
    }
  )
  & {
    /**
     * Connections no longer held, for the caller to close: the oldest
     * unfinished one, dropped to make room, and if that got its address
     * refused, that address's other unfinished ones.
     */
    readonly drop: readonly C[];
    /** The address key that this admission put in the penalty box, if any. */
    readonly penalized?: string;
  };

/** What {@link Admission.release} found. */
export interface ReleaseResult<C> {
  /** The address key this release put in the penalty box, if any. */
  readonly penalized?: string;
  /** Its other unfinished connections, no longer held, for the caller to close. */
  readonly drop: readonly C[];
}

/** One admitted connection. */
interface Entry {
  readonly key: string;
  established: boolean;
}

/**
 * The connections a server holds, by address key and by stage (handshake
 * or session), and the penalty box of the addresses it refuses.
 */
export class Admission<C> {
  readonly #options: AdmissionOptions;
  readonly #entries = new Map<C, Entry>();
  /** Unfinished connections, oldest first (a Set keeps insertion order). */
  readonly #handshaking = new Set<C>();
  readonly #perKey = new Map<string, number>();
  /** Penalties for connections that end without a handshake. */
  readonly #penalties: PenaltyBox;
  /** The operator's bans (a box of its own, so that a refusal says which it is). */
  readonly #bans: PenaltyBox;
  readonly #striking: boolean;

  /** An empty admission with these limits. */
  constructor(options: AdmissionOptions) {
    this.#options = options;
    this.#striking = options.penalty !== undefined;
    // Without penalties the box is never struck; bans always work.
    const clock = options.penalty?.now ? { now: options.penalty.now } : {};
    const banOnly = { strikes: 1, windowMs: 1, penaltyMs: 1, ...clock };
    this.#penalties = new PenaltyBox(options.penalty ?? banOnly);
    this.#bans = new PenaltyBox(banOnly);
  }

  /** Connections held: sessions and handshakes. */
  get size(): number {
    return this.#entries.size;
  }

  /** Connections in their handshake. */
  get handshakes(): number {
    return this.#handshaking.size;
  }

  /**
   * Takes `conn` from `hostname` into the handshake pool, dropping the
   * oldest unfinished connection if the pool or the server is full; or says
   * why it is refused.
   */
  admit(conn: C, hostname: string): AdmitResult<C> {
    const key = addressKey(hostname);
    const refused = this.#refusal(key);
    if (refused) return { ok: false, reason: refused, drop: [], ...this.#penaltyOf(key) };
    const { maxClients, maxHandshakes } = this.#options;
    let drop: C[] = [];
    let penalized: string | undefined;
    if (this.#handshaking.size >= maxHandshakes || this.#entries.size >= maxClients) {
      const oldest: C | undefined = this.#handshaking.values().next().value;
      if (oldest === undefined) {
        const reason = `server full (${maxClients} ${maxClients === 1 ? "client" : "clients"}); ` +
          "try again later";
        return { ok: false, reason, drop: [] };
      }
      const oldestKey = this.#entries.get(oldest)!.key;
      this.#forget(oldest);
      const struck = this.#strike(oldestKey);
      drop = [oldest, ...struck.drop];
      penalized = struck.penalized;
      // The newcomer's own address may be the one just refused.
      const now = this.#refusal(key);
      if (now) return { ok: false, reason: now, drop, penalized, ...this.#penaltyOf(key) };
    }
    this.#entries.set(conn, { key, established: false });
    this.#handshaking.add(conn);
    this.#perKey.set(key, (this.#perKey.get(key) ?? 0) + 1);
    return { ok: true, key, drop, penalized };
  }

  /** `conn` finished its handshake: it leaves the pool and is never dropped for a newcomer. */
  established(conn: C): void {
    const entry = this.#entries.get(conn);
    if (!entry) return;
    entry.established = true;
    this.#handshaking.delete(conn);
  }

  /**
   * `conn` ended. One that ended before its handshake (closed, timed out,
   * refused by the protocol) is a strike against its address unless
   * `strike` is false (the server is closing). Releasing a connection no
   * longer held (dropped) does nothing.
   */
  release(conn: C, strike = true): ReleaseResult<C> {
    const entry = this.#entries.get(conn);
    if (!entry) return { drop: [] };
    this.#forget(conn);
    if (entry.established || !strike) return { drop: [] };
    return this.#strike(entry.key);
  }

  /**
   * Refuses `hostname`'s address key for `ms` (an operator's `/ban`);
   * returns the key and its unfinished connections, no longer held, to close.
   */
  ban(hostname: string, ms: number): { key: string; drop: readonly C[] } {
    const key = addressKey(hostname);
    this.#bans.ban(key, ms);
    return { key, drop: this.#dropUnfinished(key) };
  }

  /** `{ penalizedKey: key }` if `key` is in the penalty box. */
  #penaltyOf(key: string): { penalizedKey?: string } {
    return this.#penalties.remaining(key) > 0 || this.#bans.remaining(key) > 0
      ? { penalizedKey: key }
      : {};
  }

  /** Why connections from `key` are refused now, if they are. */
  #refusal(key: string): string | undefined {
    const ban = this.#bans.remaining(key);
    if (ban > 0) {
      const left = ban > 60_000 ? `${Math.ceil(ban / 60_000)} min` : `${Math.ceil(ban / 1000)} s`;
      return `${key} is banned by the server's operator (${left} more)`;
    }
    const penalty = this.#penalties.remaining(key);
    if (penalty > 0) {
      return `${key} is refused for ${Math.ceil(penalty / 1000)} s more: ` +
        "too many connections from it ended without a handshake";
    }
    const max = this.#options.maxPerAddress;
    if ((this.#perKey.get(key) ?? 0) >= max) {
      return `too many connections from ${key} (at most ${max} per address)`;
    }
    return undefined;
  }

  /** One strike against `key`; if that refuses it, its unfinished connections go. */
  #strike(key: string): ReleaseResult<C> {
    if (!this.#striking || this.#penalties.remaining(key) > 0) return { drop: [] };
    if (!this.#penalties.strike(key)) return { drop: [] };
    return { penalized: key, drop: this.#dropUnfinished(key) };
  }

  /** Forgets `key`'s unfinished connections and returns them, oldest first. */
  #dropUnfinished(key: string): C[] {
    const drop = [...this.#handshaking].filter((conn) => this.#entries.get(conn)?.key === key);
    for (const conn of drop) this.#forget(conn);
    return drop;
  }

  #forget(conn: C): void {
    const entry = this.#entries.get(conn);
    if (!entry) return;
    this.#entries.delete(conn);
    this.#handshaking.delete(conn);
    const left = (this.#perKey.get(entry.key) ?? 1) - 1;
    if (left > 0) this.#perKey.set(entry.key, left);
    else this.#perKey.delete(entry.key);
  }
}

/** Most address keys a {@link RefusalReports} remembers. */
const MAX_REPORTED_KEYS = 10_000;

/**
 * Lines about refusals of one address key, at most one per `intervalMs`,
 * each saying how many were left unsaid since the last: an address refused
 * thousands of times a second costs the log one line a second.
 */
export class RefusalReports {
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #last = new Map<string, { at: number; unsaid: number }>();

  /**
   * Reports at most one line per key per `intervalMs`.
   *
   * @param intervalMs the least time between two lines about one key
   * @param now the clock, in ms
   */
  constructor(intervalMs: number, now: () => number = () => performance.now()) {
    this.#intervalMs = intervalMs;
    this.#now = now;
  }

  /**
   * Whether a refusal of `key` gets a line now; if it does, how many
   * refusals of it went unsaid before it.
   */
  report(key: string): { say: true; unsaid: number } | { say: false } {
    const now = this.#now();
    const last = this.#last.get(key);
    if (last && now - last.at < this.#intervalMs) {
      last.unsaid++;
      return { say: false };
    }
    if (this.#last.size >= MAX_REPORTED_KEYS) this.#forgetOld(now);
    this.#last.set(key, { at: now, unsaid: 0 });
    return { say: true, unsaid: last?.unsaid ?? 0 };
  }

  /**
   * Forgets keys not reported within the interval (their unsaid counts are
   * lost), and if all are recent, the oldest: memory stays bounded.
   */
  #forgetOld(now: number): void {
    for (const [key, last] of this.#last) {
      if (now - last.at >= this.#intervalMs) this.#last.delete(key);
    }
    if (this.#last.size >= MAX_REPORTED_KEYS) this.#last.delete(this.#last.keys().next().value!);
  }
}
