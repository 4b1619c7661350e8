/**
 * dhx chat layer: names, commands and the room of a DHX/1 server, with no I/O.
 *
 * The server hands every client line and every operator line to a
 * {@link Room}; the room answers commands, relays lines and tells who joined,
 * left or changed name, through the {@link MemberLink} each client gives it.
 * What happened comes back as a {@link RoomEvent} for the server to print.
 *
 * @module
 */

import { type ChatLine, encodeChat } from "./dh.ts";
import { type QueueBudget, SharedText } from "./transport.ts";

const encoder = new TextEncoder();

/** Default longest chat line a room relays (`--max-message`), in UTF-8 bytes: 64 KiB. */
export const DEFAULT_MAX_MESSAGE = 64 * 1024;

/** A client or operator name: 1 to 24 characters from A–Z a–z 0–9 _ - . */
export const NAME_PATTERN: RegExp = /^[A-Za-z0-9_.-]{1,24}$/;

/** The rule of {@link NAME_PATTERN}, for messages. */
export const NAME_RULE = "1 to 24 characters from A-Z a-z 0-9 _ - .";

/** The commands a client may send, for the "unknown command" answer. */
export const CLIENT_COMMANDS =
  "/name NAME, /who (start a line with // to send one that begins with /)";

/** The commands of the server's operator. */
export const OPERATOR_COMMANDS =
  "/who, /kick ADDRESS|NAME, /ban ADDRESS [MINUTES] (start a line with // to send one that begins with /)";

/** What a bare `/kick` prints. */
export const KICK_USAGE = "usage: /kick ADDRESS (as /who shows it, or just the host) or /kick NAME";

/** What a bare `/ban` prints. */
export const BAN_USAGE =
  "usage: /ban ADDRESS [MINUTES] (default 60): removes everyone from that address and refuses it";

/** Minutes a `/ban` lasts when none are given. */
export const DEFAULT_BAN_MINUTES = 60;

/** The message a removed member's session ends with (its `error` frame). */
export const REMOVED_MESSAGE = "You were removed by the server's operator";

/** Time a new member's join notice waits for its first record (its `/name`), in ms. */
export const JOIN_HOLD_MS = 500;

/** Renames a member may make at once, and the time one more takes to come back, in ms. */
export const RENAME_BURST = 3;
/** See {@link RENAME_BURST}. */
export const RENAME_INTERVAL_MS = 10_000;

/** Join and leave notices sent one by one per {@link PRESENCE_WINDOW_MS}; past that, counted. */
export const PRESENCE_BURST = 5;
/** See {@link PRESENCE_BURST}. */
export const PRESENCE_WINDOW_MS = 1000;

/** A line typed by a client or the operator, read as the protocol says. */
export type Command =
  | { readonly kind: "chat"; readonly text: string }
  | { readonly kind: "name"; readonly name: string }
  | { readonly kind: "who" }
  | { readonly kind: "kick"; readonly target: string }
  | { readonly kind: "ban"; readonly target: string; readonly minutes: string }
  | { readonly kind: "unknown"; readonly word: string };

/**
 * Reads a line: `//…` is a chat line without its first `/`; `/name NAME`,
 * `/who` and (for the operator) `/kick TARGET` and `/ban TARGET [MINUTES]`
 * are commands; any other `/word` is an unknown command; everything else is
 * a chat line.
 */
export function parseCommand(text: string, operator = false): Command {
  if (!text.startsWith("/")) return { kind: "chat", text };
  if (text.startsWith("//")) return { kind: "chat", text: text.slice(1) };
  const [, word, rest] = text.match(/^\/(\S*)\s*(.*)$/s)!;
  if (word === "who") return { kind: "who" };
  if (word === "name" && !operator) return { kind: "name", name: rest.trim() };
  if (word === "kick" && operator) return { kind: "kick", target: rest.trim() };
  if (word === "ban" && operator) {
    const [target = "", minutes = ""] = rest.trim().split(/\s+/, 2);
    return { kind: "ban", target, minutes };
  }
  return { kind: "unknown", word };
}

/** Why `name` cannot be a name, or undefined if it can (uniqueness aside). */
export function checkName(name: string): string | undefined {
  if (name === "") return "a name is needed: /name NAME";
  if (!NAME_PATTERN.test(name)) return `a name is ${NAME_RULE}`;
  if (!/[A-Za-z0-9]/.test(name)) return "a name needs a letter or a digit";
  return undefined;
}

/** Digits read as the letters they look like, for {@link foldName}. */
const LOOK_ALIKE_DIGITS: Readonly<Record<string, string>> = {
  "0": "o",
  "1": "l",
  "3": "e",
  "5": "s",
};

/**
 * The form under which two names clash: lower case, the digits 0 1 3 5 read
 * as o l e s, trailing punctuation dropped. `serv3r`, `5erver`, `Server.`
 * and `server_` all fold to `server`.
 */
export function foldName(name: string): string {
  return name.toLowerCase().replace(/[0135]/g, (digit) => LOOK_ALIKE_DIGITS[digit]).replace(
    /[._-]+$/,
    "",
  );
}

/** The clock and timers of a {@link Room} (tests pass their own). */
export interface RoomClock {
  /** The time now, in ms. */
  now(): number;
  /** Calls `callback` once after `ms`; returns what `clear` takes. */
  setTimeout(callback: () => void, ms: number): unknown;
  /** Cancels a call set up by `setTimeout`. */
  clearTimeout(id: unknown): void;
}

/** The process's own clock and timers. */
const SYSTEM_CLOCK: RoomClock = {
  now: () => performance.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (id) => clearTimeout(id as number),
};

/**
 * A member's renames: {@link RENAME_BURST} at once, then one more per
 * {@link RENAME_INTERVAL_MS}, so that a member toggling its name cannot
 * fill everyone's screen with "is now" lines.
 */
export class RenameAllowance {
  #tokens = RENAME_BURST;
  #updated: number;
  /** Refusals since the last rename: the first of a run is reported, the rest only counted. */
  #refused = 0;
  readonly #clock: RoomClock;

  /** A full allowance, counted on `clock`. */
  constructor(clock: RoomClock) {
    this.#clock = clock;
    this.#updated = clock.now();
  }

  /**
   * Takes one rename; or, if none is left, returns the ms until the next one
   * and whether this is not the first refusal in a row.
   */
  take(): { ok: true } | { ok: false; waitMs: number; again: boolean } {
    const now = this.#clock.now();
    this.#tokens = Math.min(
      RENAME_BURST,
      this.#tokens + (now - this.#updated) / RENAME_INTERVAL_MS,
    );
    this.#updated = now;
    if (this.#tokens >= 1) {
      this.#tokens--;
      this.#refused = 0;
      return { ok: true };
    }
    return {
      ok: false,
      waitMs: (1 - this.#tokens) * RENAME_INTERVAL_MS,
      again: this.#refused++ > 0,
    };
  }
}

/**
 * Join and leave notices for the room: one by one while they come slowly
 * ({@link PRESENCE_BURST} per {@link PRESENCE_WINDOW_MS}); past that,
 * counted and told once at the end of the second ("5 joined, 3 left in the
 * last second"), so that churn costs each member one notice a second.
 */
export class PresenceNotices {
  readonly #clock: RoomClock;
  readonly #send: (text: string, about?: Member, joining?: boolean) => void;
  #windowStart = -Infinity;
  #told = 0;
  #joined = 0;
  #left = 0;
  /** The last notice held back, sent as it is if it turns out to be the only one. */
  #held: { text: string; about: Member; joining: boolean } | undefined;
  #timer: unknown;

  /**
   * Notices told through `send`, timed on `clock`.
   *
   * @param clock the room's clock
   * @param send sends a notice about `about` (joining or leaving) to those
   *   who should hear it; without `about` (a summary), to everyone
   */
  constructor(
    clock: RoomClock,
    send: (text: string, about?: Member, joining?: boolean) => void,
  ) {
    this.#clock = clock;
    this.#send = send;
  }

  /** `member` joined (it is not told of itself). */
  joined(member: Member): void {
    const text = `${member.name} joined`;
    if (this.#admit()) this.#send(text, member, true);
    else {
      this.#joined++;
      this.#held = { text, about: member, joining: true };
    }
  }

  /** `member` left, for a reason given in words (default "left"). */
  left(member: Member, how = "left"): void {
    const text = `${member.name} ${how}`;
    if (this.#admit()) this.#send(text, member, false);
    else {
      this.#left++;
      this.#held = { text, about: member, joining: false };
    }
  }

  /** Cancels the summary pending, if any (the server is closing). */
  close(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Whether a notice may go now; if not, the summary is scheduled. */
  #admit(): boolean {
    const now = this.#clock.now();
    if (this.#timer !== undefined && now - this.#windowStart >= PRESENCE_WINDOW_MS) {
      // The summary is due and its timer has not run (a busy event loop): tell it now.
      this.#clock.clearTimeout(this.#timer);
      this.#flush();
    }
    if (this.#timer === undefined && now - this.#windowStart >= PRESENCE_WINDOW_MS) {
      this.#windowStart = now;
      this.#told = 0;
    }
    if (this.#timer === undefined && this.#told < PRESENCE_BURST) {
      this.#told++;
      return true;
    }
    this.#timer ??= this.#clock.setTimeout(
      () => this.#flush(),
      Math.max(0, this.#windowStart + PRESENCE_WINDOW_MS - now),
    );
    return false;
  }

  /** Tells the counts of the second that ended; the next second is counted at once. */
  #flush(): void {
    this.#timer = undefined;
    const parts = [];
    if (this.#joined > 0) parts.push(`${this.#joined} joined`);
    if (this.#left > 0) parts.push(`${this.#left} left`);
    const single = this.#joined + this.#left === 1 ? this.#held : undefined;
    this.#joined = this.#left = 0;
    this.#held = undefined;
    // One alone reads better as itself.
    if (single) return this.#send(single.text, single.about, single.joining);
    if (parts.length === 0) return;
    const now = this.#clock.now();
    const seconds = Math.round((now - this.#windowStart) / 1000);
    this.#send(`${parts.join(", ")} in the last ${seconds <= 1 ? "second" : `${seconds} seconds`}`);
    // Still busy: the next second is summed up too, unless it stays quiet.
    this.#windowStart = now;
    this.#told = PRESENCE_BURST;
  }
}

/** What the room needs of a client's connection. */
export interface MemberLink {
  /** "host:port", for the operator's eyes. */
  readonly address: string;
  /**
   * Sends a `chat` record whose plaintext is `payload` (see `encodeChat`),
   * held once for all receivers and sealed when its turn comes; `note` says
   * what it was if its ack is overdue.
   */
  chat(payload: SharedText, note: string): void;
  /** Sends a `notice` record. */
  notice(text: string): void;
  /** Ends the session with an `error` frame. */
  disconnect(reason: string): void;
}

/** A client in the room. */
export interface Member extends MemberLink {
  /** The name the others see. */
  readonly name: string;
  /** Whether the operator removed it (`/kick`, `/ban`): its end needs no other report. */
  readonly removed: boolean;
}

/** What a line did, for the server's log. */
export type RoomEvent =
  | { readonly kind: "chat"; readonly text: string; readonly relayedTo: number }
  | { readonly kind: "renamed"; readonly from: string; readonly to: string }
  | {
    readonly kind: "refused";
    readonly reason: string;
    /** A rename refused for the rate again, in a run of them: not worth a log line each. */
    readonly again?: boolean;
  }
  | { readonly kind: "who"; readonly names: readonly string[] }
  | { readonly kind: "unknown"; readonly word: string };

/** What an operator line did. */
export type OperatorEvent =
  | { readonly kind: "chat"; readonly sentTo: number }
  | { readonly kind: "who"; readonly members: readonly Member[] }
  | { readonly kind: "kicked"; readonly members: readonly Member[] }
  | {
    readonly kind: "banned";
    /** The address key to refuse (see `addressKey` in guard.ts). */
    readonly key: string;
    readonly minutes: number;
    readonly members: readonly Member[];
  }
  | { readonly kind: "refused"; readonly reason: string }
  | { readonly kind: "unknown"; readonly word: string };

/** Options of {@link Room}. */
export interface RoomOptions {
  /** The operator's name (`--name`, default "server"). */
  readonly operatorName: string;
  /** Room mode: relay each client's line to the others, and tell them who comes and goes. */
  readonly relay: boolean;
  /** Longest `chat` plaintext a client can receive, in bytes (a relayed line must fit). */
  readonly maxChatBytes: number;
  /** Longest line relayed or sent by the operator, in UTF-8 bytes (default 64 KiB). */
  readonly maxMessage?: number;
  /** The server's bound on queued bytes: each relayed line counts once while queued. */
  readonly budget?: QueueBudget;
  /** The key a host is counted under, for `/kick` and `/ban` by address (default: the host). */
  readonly addressKey?: (host: string) => string;
  /** The clock for held join notices, rename limits and coalescing (default: the system's). */
  readonly clock?: RoomClock;
}

/** The host of a member's address: `host:port` or `[v6]:port` without the port. */
export function hostOf(address: string): string {
  const bracketed = address.match(/^\[(.*)\](?::\d+)?$/);
  if (bracketed) return bracketed[1];
  return address.replace(/:\d+$/, "");
}

/**
 * The host an operator's target names: `[v6]:port` and `v4:port` lose the
 * port; anything else (a bare IPv6 address) is taken as it is.
 */
function targetHost(target: string): string {
  return /^\[.*\](:\d+)?$|^[\d.]+:\d+$/.test(target) ? hostOf(target) : target;
}

/** Whether `text` is written as an IP address (v4, v6, bracketed), as `/ban` needs. */
function looksLikeAddress(text: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(text) || /^\[?[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]?$/.test(text);
}

class RoomMember implements Member {
  name: string;
  /** The guest name the server gave it, which it may take back. */
  readonly guestName: string;
  readonly renames: RenameAllowance;
  removed = false;
  /** Its place in the order of joining. */
  readonly order: number;
  readonly #link: MemberLink;

  constructor(link: MemberLink, name: string, clock: RoomClock, order: number) {
    this.order = order;
    this.#link = link;
    this.name = name;
    this.guestName = name;
    this.renames = new RenameAllowance(clock);
  }

  get address(): string {
    return this.#link.address;
  }

  chat(payload: SharedText, note: string): void {
    this.#link.chat(payload, note);
  }

  notice(text: string): void {
    this.#link.notice(text);
  }

  disconnect(reason: string): void {
    this.#link.disconnect(reason);
  }
}

/**
 * The clients in session with a server, their names, and what happens to
 * their lines: commands answered with one `notice`, chat lines relayed in
 * room mode, operator lines sent to everyone.
 */
export class Room {
  readonly #options: RoomOptions;
  readonly #members = new Set<RoomMember>();
  /** Members not announced yet, with the timer that will announce them. */
  readonly #held = new Map<RoomMember, unknown>();
  readonly #clock: RoomClock;
  readonly #presence: PresenceNotices;
  readonly #addressKey: (host: string) => string;
  #guests = 0;

  /**
   * Creates an empty room.
   *
   * @param options the operator's name, the mode and the size bound
   */
  constructor(options: RoomOptions) {
    this.#options = options;
    this.#clock = options.clock ?? SYSTEM_CLOCK;
    this.#addressKey = options.addressKey ?? ((host) => host);
    this.#presence = new PresenceNotices(this.#clock, (text, about, joining) => {
      if (!options.relay) return;
      for (const member of this.#members) {
        // Who joined after `about` saw it in its "present:" notice.
        if (member === about || (joining && member.order > (about as RoomMember).order)) continue;
        member.notice(text);
      }
    });
  }

  /** The clients present, in the order they joined. */
  get members(): readonly Member[] {
    return [...this.#members];
  }

  /**
   * Adds a client that finished its handshake, as `guest<N>`. In room mode
   * it is told who is present, and the others are told it joined at its
   * first record (its `/name`) or after {@link JOIN_HOLD_MS}, whichever
   * comes first, so that they see the name it chose.
   */
  join(link: MemberLink): Member {
    let name: string;
    do name = `guest${++this.#guests}`; while (this.#clash(name));
    const member = new RoomMember(link, name, this.#clock, this.#guests);
    if (this.#options.relay) {
      member.notice(`present: ${this.#names().join(", ")}`);
      this.#held.set(member, this.#clock.setTimeout(() => this.#announce(member), JOIN_HOLD_MS));
    }
    this.#members.add(member);
    return member;
  }

  /** Removes a client whose session ended. */
  leave(member: Member): void {
    const self = member as RoomMember;
    if (!this.#members.delete(self)) return;
    if (!this.#unhold(self)) this.#presence.left(self);
  }

  /** Cancels the timers of held notices (the server is closing). */
  close(): void {
    for (const member of [...this.#held.keys()]) this.#unhold(member);
    this.#presence.close();
  }

  /** The member called `name` (any case), if present. */
  find(name: string): Member | undefined {
    const key = name.toLowerCase();
    return [...this.#members].find((m) => m.name.toLowerCase() === key);
  }

  /** A line a client sent (its ack is already queued). */
  receive(member: Member, text: string): RoomEvent {
    const self = member as RoomMember;
    const command = parseCommand(text);
    if (this.#held.has(self)) {
      // Its first record: announce it, under the name it asks for if it gets it.
      if (command.kind !== "name") this.#announce(self);
      else {
        const event = this.#rename(self, command.name);
        this.#announce(self);
        return event;
      }
    }
    switch (command.kind) {
      case "chat":
        return { kind: "chat", text: command.text, relayedTo: this.#relay(self, command.text) };
      case "name":
        return this.#rename(self, command.name);
      case "who": {
        const names = this.#names();
        self.notice(`present: ${names.join(", ")}`);
        return { kind: "who", names };
      }
      default: {
        // parseCommand gives clients no "kick": anything else is unknown.
        const word = command.kind === "unknown" ? command.word : command.kind;
        self.notice(`unknown command /${word}; commands: ${CLIENT_COMMANDS}`);
        return { kind: "unknown", word };
      }
    }
  }

  /** A line the operator typed: a command, or a chat line for every client. */
  operator(text: string): OperatorEvent {
    const command = parseCommand(text, true);
    switch (command.kind) {
      case "chat": {
        const record = this.#encode({ from: this.#options.operatorName, text: command.text });
        if ("tooLong" in record) return { kind: "refused", reason: record.tooLong };
        for (const member of this.#members) member.chat(record.payload, "your line");
        return { kind: "chat", sentTo: this.#members.size };
      }
      case "who":
        return { kind: "who", members: this.members };
      case "kick": {
        if (command.target === "") return { kind: "refused", reason: KICK_USAGE };
        const members = this.#matching(command.target);
        if (members.length === 0) {
          return {
            kind: "refused",
            reason: `nobody here is called "${command.target}" or connects from it (see /who)`,
          };
        }
        for (const member of members) this.#remove(member);
        return { kind: "kicked", members };
      }
      case "ban":
        return this.#ban(command.target, command.minutes);
      default:
        return { kind: "unknown", word: command.kind === "unknown" ? command.word : command.kind };
    }
  }

  #rename(member: RoomMember, name: string): RoomEvent {
    const from = member.name;
    const refusal = this.#nameRefusal(member, name);
    const limited: ReturnType<RenameAllowance["take"]> = refusal === undefined && from !== name
      ? member.renames.take()
      : { ok: true };
    const reason = refusal?.reason ??
      (limited.ok
        ? undefined
        : `too many renames; try again in ${Math.ceil(limited.waitMs / 1000)} s`);
    if (reason) {
      // A member still under its guest name (a taken --name) learns who it is.
      member.notice(
        refusal?.short && from === member.guestName
          ? `name "${name}" ${refusal.short}; you are ${from} (choose another with /name)`
          : `name not changed: ${reason}`,
      );
      return limited.ok || !limited.again ? { kind: "refused", reason } : {
        kind: "refused",
        reason,
        again: true,
      };
    }
    member.name = name;
    member.notice(`you are now ${name}`);
    if (from !== name && !this.#held.has(member)) {
      this.#tellOthers(member, `${from} is now ${name}`);
    }
    return { kind: "renamed", from, to: name };
  }

  /**
   * Why `member` cannot be called `name`; for a name that belongs to
   * someone else, also the short form for "name "x" …".
   */
  #nameRefusal(member: RoomMember, name: string): { reason: string; short?: string } | undefined {
    const invalid = checkName(name);
    if (invalid) return { reason: invalid };
    if (/^guest\d+$/i.test(name) && name.toLowerCase() !== member.guestName) {
      const why = "guest names are given by the server";
      return { reason: `"${name}" is not yours: ${why}`, short: `is not yours (${why})` };
    }
    const clash = this.#clash(name, member);
    if (clash === undefined) return undefined;
    if (clash.toLowerCase() === name.toLowerCase()) {
      return { reason: `"${name}" is already taken`, short: "is taken" };
    }
    return { reason: `"${name}" is too like "${clash}"`, short: `is too like "${clash}"` };
  }

  /** Announces a held member to the others, once. */
  #announce(member: RoomMember): void {
    if (this.#unhold(member)) this.#presence.joined(member);
  }

  /** Stops holding `member`'s join notice; whether it was held. */
  #unhold(member: RoomMember): boolean {
    if (!this.#held.has(member)) return false;
    this.#clock.clearTimeout(this.#held.get(member));
    this.#held.delete(member);
    return true;
  }

  /** The operator removes `member`: its session ends, the others are told why. */
  #remove(member: RoomMember): void {
    member.removed = true;
    member.disconnect(REMOVED_MESSAGE);
    if (!this.#members.delete(member)) return;
    if (!this.#unhold(member)) this.#presence.left(member, "was removed by the operator");
  }

  /** The members `target` names: by address (`host:port`), by name, or all from a host. */
  #matching(target: string): RoomMember[] {
    const members = [...this.#members];
    const byAddress = members.filter((m) => m.address === target);
    if (byAddress.length > 0) return byAddress;
    // An address means the host, even if a member took it as its name.
    const key = this.#addressKey(targetHost(target));
    const byHost = members.filter((m) => this.#addressKey(hostOf(m.address)) === key);
    if (byHost.length > 0 && looksLikeAddress(target)) return byHost;
    const named = this.find(target) as RoomMember | undefined;
    return named ? [named] : byHost;
  }

  /** `/ban TARGET [MINUTES]`: removes everyone from the target's address, which the server refuses. */
  #ban(target: string, minutesText: string): OperatorEvent {
    if (target === "") return { kind: "refused", reason: BAN_USAGE };
    const minutes = minutesText === "" ? DEFAULT_BAN_MINUTES : Number(minutesText);
    if (!Number.isInteger(minutes) || minutes < 1 || minutes > 525_600) {
      return {
        kind: "refused",
        reason: `minutes must be a whole number from 1 to 525600; ${BAN_USAGE}`,
      };
    }
    const member = [...this.#members].find((m) => m.address === target);
    const named = this.find(target);
    let host: string;
    if (member) host = hostOf(member.address);
    else if (looksLikeAddress(target)) host = targetHost(target);
    else if (named) host = hostOf(named.address);
    else {
      return {
        kind: "refused",
        reason: `"${target}" is neither an address nor a name here; ${BAN_USAGE}`,
      };
    }
    const key = this.#addressKey(host);
    const members = [...this.#members].filter((m) => this.#addressKey(hostOf(m.address)) === key);
    for (const removed of members) this.#remove(removed);
    return { kind: "banned", key, minutes, members };
  }

  /** Room mode: the line goes to every other member; returns to how many. */
  #relay(sender: RoomMember, text: string): number {
    if (!this.#options.relay) return 0;
    const record = this.#encode({ from: sender.name, text });
    if ("tooLong" in record) {
      sender.notice(`not relayed: ${record.tooLong}`);
      return 0;
    }
    let sent = 0;
    for (const member of this.#members) {
      if (member === sender) continue;
      member.chat(record.payload, `a line from ${sender.name}`);
      sent++;
    }
    return sent;
  }

  /** Room mode: a notice to everyone but `member`. */
  #tellOthers(member: Member, text: string): void {
    if (!this.#options.relay) return;
    for (const other of this.#members) if (other !== member) other.notice(text);
  }

  #names(): string[] {
    return [this.#options.operatorName, ...[...this.#members].map((m) => m.name)];
  }

  /**
   * The name present (the operator's or another member's) that `name`
   * clashes with after {@link foldName}, if any.
   */
  #clash(name: string, except?: Member): string | undefined {
    const key = foldName(name);
    if (key === foldName(this.#options.operatorName)) return this.#options.operatorName;
    for (const member of this.#members) {
      if (member !== except && foldName(member.name) === key) return member.name;
    }
    return undefined;
  }

  /**
   * The plaintext of `line`'s chat record, held once for every receiver, or
   * why it is not sent: longer than `maxMessage`, or fitting no client's record.
   */
  #encode(line: ChatLine): { payload: SharedText } | { tooLong: string } {
    const maxMessage = this.#options.maxMessage ?? DEFAULT_MAX_MESSAGE;
    // Cheap tests first: no UTF-8 character takes more than 3 bytes per UTF-16 unit.
    if (line.text.length * 3 > maxMessage) {
      const bytes = encoder.encode(line.text).length;
      if (bytes > maxMessage) {
        return { tooLong: `the line takes ${bytes} bytes; at most ${maxMessage} go to the room` };
      }
    }
    const payload = encodeChat(line);
    const max = this.#options.maxChatBytes;
    const shared = () => ({ payload: new SharedText(payload, this.#options.budget) });
    if (payload.length * 3 <= max) return shared();
    const bytes = encoder.encode(payload).length;
    return bytes <= max
      ? shared()
      : { tooLong: `the line takes ${bytes} bytes as a chat record; at most ${max} fit` };
  }
}
