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
  "/who, /kick NAME (start a line with // to send one that begins with /)";

/** A line typed by a client or the operator, read as the protocol says. */
export type Command =
  | { readonly kind: "chat"; readonly text: string }
  | { readonly kind: "name"; readonly name: string }
  | { readonly kind: "who" }
  | { readonly kind: "kick"; readonly name: string }
  | { readonly kind: "unknown"; readonly word: string };

/**
 * Reads a line: `//…` is a chat line without its first `/`; `/name NAME`,
 * `/who` and (for the operator) `/kick NAME` are commands; any other `/word`
 * is an unknown command; everything else is a chat line.
 */
export function parseCommand(text: string, operator = false): Command {
  if (!text.startsWith("/")) return { kind: "chat", text };
  if (text.startsWith("//")) return { kind: "chat", text: text.slice(1) };
  const [, word, rest] = text.match(/^\/(\S*)\s*(.*)$/s)!;
  if (word === "who") return { kind: "who" };
  if (word === "name" && !operator) return { kind: "name", name: rest.trim() };
  if (word === "kick" && operator) return { kind: "kick", name: rest.trim() };
  return { kind: "unknown", word };
}

/** Why `name` cannot be a name, or undefined if it can (uniqueness aside). */
export function checkName(name: string): string | undefined {
  if (name === "") return "a name is needed: /name NAME";
  if (!NAME_PATTERN.test(name)) return `a name is ${NAME_RULE}`;
  return undefined;
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
}

/** What a line did, for the server's log. */
export type RoomEvent =
  | { readonly kind: "chat"; readonly text: string; readonly relayedTo: number }
  | { readonly kind: "renamed"; readonly from: string; readonly to: string }
  | { readonly kind: "refused"; readonly reason: string }
  | { readonly kind: "who"; readonly names: readonly string[] }
  | { readonly kind: "unknown"; readonly word: string };

/** What an operator line did. */
export type OperatorEvent =
  | { readonly kind: "chat"; readonly sentTo: number }
  | { readonly kind: "who"; readonly members: readonly Member[] }
  | { readonly kind: "kicked"; readonly member: Member }
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
}

class RoomMember implements Member {
  name: string;
  readonly #link: MemberLink;

  constructor(link: MemberLink, name: string) {
    this.#link = link;
    this.name = name;
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
  #guests = 0;

  /**
   * Creates an empty room.
   *
   * @param options the operator's name, the mode and the size bound
   */
  constructor(options: RoomOptions) {
    this.#options = options;
  }

  /** The clients present, in the order they joined. */
  get members(): readonly Member[] {
    return [...this.#members];
  }

  /** Adds a client that finished its handshake, as `guest<N>`. */
  join(link: MemberLink): Member {
    let name: string;
    do name = `guest${++this.#guests}`; while (this.#taken(name));
    const member = new RoomMember(link, name);
    this.#tellOthers(member, `${name} joined`);
    this.#members.add(member);
    return member;
  }

  /** Removes a client whose session ended. */
  leave(member: Member): void {
    if (this.#members.delete(member as RoomMember)) this.#tellOthers(member, `${member.name} left`);
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
        const member = this.find(command.name);
        if (!member) return { kind: "refused", reason: `nobody called "${command.name}" is here` };
        member.disconnect(`kicked by the server's operator`);
        return { kind: "kicked", member };
      }
      default:
        return { kind: "unknown", word: command.kind === "unknown" ? command.word : command.kind };
    }
  }

  #rename(member: RoomMember, name: string): RoomEvent {
    const invalid = checkName(name);
    const reason = invalid ??
      (this.#taken(name, member) ? `"${name}" is already taken` : undefined);
    if (reason) {
      member.notice(`name not changed: ${reason}`);
      return { kind: "refused", reason };
    }
    const from = member.name;
    member.name = name;
    member.notice(`you are now ${name}`);
    if (from !== name) this.#tellOthers(member, `${from} is now ${name}`);
    return { kind: "renamed", from, to: name };
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

  /** Whether `name` is the operator's or another member's (any case). */
  #taken(name: string, except?: Member): boolean {
    const key = name.toLowerCase();
    if (key === this.#options.operatorName.toLowerCase()) return true;
    for (const member of this.#members) {
      if (member !== except && member.name.toLowerCase() === key) return true;
    }
    return false;
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
