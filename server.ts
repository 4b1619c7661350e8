/**
 * dhx chat server: agrees a key with each client over DHX/1, shows what they
 * write, sends what its operator types, and in room mode relays every line.
 *
 * ```sh
 * deno run --allow-net server.ts            # ffdhe2048, AES-256-CTR + HMAC
 * deno run --allow-net server.ts --room     # a chat room: clients see each other
 * deno run --allow-net server.ts --toy      # the original: p 23, g 5, b 3, xor8
 * ```
 *
 * Also a library: {@link startServer} runs a server in-process and returns a
 * handle; `handle.connect()` gives an in-memory connection to it.
 *
 * @module
 */

import { Admission, RefusalReports } from "./admission.ts";
import { checkName, DEFAULT_MAX_MESSAGE, type Member, OPERATOR_COMMANDS, Room } from "./chat.ts";
import {
  count,
  createLogger,
  describeError,
  describeHandshake,
  describeListenError,
  describeOwnKey,
  EXIT,
  explainPassword,
  explainProof,
  explainSession,
  type Flags,
  inputLines,
  type Logger,
  Output,
  type ParsedCommand,
  parseFlags,
  type PasswordSource,
  passwordSource,
  readCommand,
  readPassword,
  sentence,
  UsageError,
  WireView,
} from "./console.ts";
import {
  checkPrivateKey,
  type CipherName,
  customGroup,
  DEFAULT_GROUP,
  derivePasswordGenerator,
  type DhGroup,
  GROUPS,
  HostKey,
  isGroupName,
  isSafePrime,
  isTeachingGroup,
  ProtocolError,
  SECURE_CIPHER,
  SECURE_GROUP_NAMES,
  TOY_CIPHER,
} from "./dh.ts";
import {
  Channel,
  type ChannelEnd,
  type Connection,
  DEFAULT_HOST,
  DEFAULT_MAX_LINE,
  DEFAULT_PORT,
  type Duplex,
  formatAddress,
  LineConnection,
  longestHello,
  maxRecordText,
  memoryPipe,
  QueueBudget,
  SENDER_RATE_DEFAULTS,
  SenderPacer,
  type SenderRate,
  serverHandshake,
  WrongPasswordError,
} from "./transport.ts";
import { addressKey, PenaltyBox } from "./guard.ts";
import { FileStore, loadHostKey, LocalStorageStore, STORAGE_KEYS } from "./hostkeys.ts";

/** Options of {@link startServer}. */
export interface ServerOptions {
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Port (default 4444; 0 picks a free one). */
  port?: number;
  /** Listen on TCP (default true); false serves only {@link ServerHandle.connect} connections. */
  listen?: boolean;
  /** The group offered to every client (default ffdhe2048). */
  group?: DhGroup;
  /** The cipher offered (default aes-256-ctr+hmac-sha256). */
  cipher?: CipherName;
  /** A fixed private key (toy mode); a fresh random one per connection if unset. */
  privateKey?: bigint;
  /** Room mode: relay each client's line to the others, with join/leave/rename notices. */
  room?: boolean;
  /** The operator's name on lines typed at the server (default "server"). */
  name?: string;
  /** Most simultaneous clients, handshakes included (default 1000). */
  maxClients?: number;
  /**
   * Most connections in their handshake at once (default 64): when that
   * many wait, the oldest is dropped for a newcomer; sessions never are.
   */
  maxHandshakes?: number;
  /** Most simultaneous connections from one address, an IPv6 /64 counting as one (default 10). */
  maxPerAddress?: number;
  /**
   * How long an address whose connections keep ending without a handshake
   * ({@link SERVER_DEFAULTS}.penaltyStrikes within penaltyWindowMs) is
   * refused, in ms (default 60 s; 0: never).
   */
  penaltyMs?: number;
  /** Longest line accepted, in bytes (default 1 MiB). */
  maxLine?: number;
  /** Time a client has to send its key, and to finish any line it starts, in ms (default 10 s). */
  handshakeTimeoutMs?: number;
  /** Ping a client silent this long; drop it if silent as long again, in ms (default 30 s; 0: off). */
  keepaliveMs?: number;
  /** Time each write to a client may take, and after which a missing ack is reported, in ms (default 10 s). */
  writeTimeoutMs?: number;
  /** Most records queued for one client (default 4096). */
  maxQueuedRecords?: number;
  /** Most bytes queued for one client (default 8 MiB). */
  maxQueuedBytes?: number;
  /**
   * The host key announced and proved (revision 3); a fresh one, kept
   * nowhere, if unset; `null`: none at all, as a revision-2 server.
   */
  hostKey?: HostKey | null;
  /** The room password every client must know (revision 3); none if unset. */
  password?: string;
  /** Wrong passwords from one address, within `guessWindowMs`, before it is refused (default 5). */
  maxGuesses?: number;
  /** The window of `maxGuesses`, and how long an address is then refused, in ms (default 10 min). */
  guessWindowMs?: number;
  /** Longest line relayed to the room or sent by the operator, in bytes (default 64 KiB). */
  maxMessage?: number;
  /** Most bytes queued for all clients together, each relayed line counted once (default 64 MiB). */
  maxQueuedTotal?: number;
  /** Lines (records of any kind, pings too) read per second from one client; twice as many at once (default 1000). */
  linesPerSecond?: number;
  /** Bytes read per second from one client; four times as many at once (default 256 KiB). */
  bytesPerSecond?: number;
  /** Show every number (private keys, shared secrets) in full. */
  verbose?: boolean;
  /** Show every frame sent and received (`--wire`); in toy mode, each record's XOR step by step. */
  wire?: boolean;
  /** Print only errors, as `--quiet` does (default false); for a library use that shows its own output. */
  quiet?: boolean;
  /**
   * Where every line goes (default: stdout and stderr, see `quiet`). Any
   * object with the {@link Logger} methods receives each line instead: an
   * embedding's own log, a test's list, or nothing at all.
   */
  logger?: Logger;
  /** Called with each chat line a client sends (tests, embedding). */
  onMessage?: (message: ReceivedMessage) => void;
}

/** A line as the server received it. */
export interface ReceivedMessage {
  /** "host:port" of the client ("[::1]:port" for IPv6). */
  readonly peer: string;
  /** The client's name when it sent the line. */
  readonly name: string;
  /** Sequence number of the record. */
  readonly seq: number;
  /** The decrypted text (commands included). */
  readonly text: string;
}

/** A running server. */
export interface ServerHandle {
  /** Where it listens (the real port when 0 was asked); undefined with `listen: false`. */
  readonly addr: Deno.NetAddr | undefined;
  /** Number of connections being served now, handshakes included. */
  readonly connections: number;
  /** The host key it announces (undefined: none, as a revision-2 server). */
  readonly hostKey: HostKey | undefined;
  /** The clients in session, with their names. */
  readonly members: readonly Member[];
  /**
   * Handles a line typed by the operator: `/who`, `/kick ADDRESS|NAME`,
   * `/ban ADDRESS [MINUTES]`, or a line for every client. An empty line does
   * nothing (it is not sent).
   */
  operator(line: string): void;
  /** Serves one connection (any readable/writable pair); resolves when it ends. */
  serve(conn: Connection, peer?: string): Promise<void>;
  /** An in-memory connection to this server, for a client in the same process. */
  connect(peer?: string): Duplex;
  /**
   * Stops accepting, sends `bye` to every client in a session, closes all
   * connections and resolves when every handler has finished.
   */
  close(): Promise<void>;
  /** Resolves when the server has stopped. */
  readonly finished: Promise<void>;
  /**
   * Flow control for the operator's input: resolves once every client's
   * backlog is under half its ack window and the server's queued bytes are
   * under their bound (at once if they are).
   */
  whenWritable(): Promise<void>;
}

/** Defaults of the flags, shown by `--help`. */
export const SERVER_DEFAULTS: Readonly<{
  host: string;
  port: number;
  name: string;
  maxClients: number;
  maxHandshakes: number;
  maxPerAddress: number;
  penaltyMs: number;
  penaltyStrikes: number;
  penaltyWindowMs: number;
  maxLine: number;
  handshakeTimeoutMs: number;
  keepaliveMs: number;
  writeTimeoutMs: number;
  maxQueuedRecords: number;
  maxQueuedBytes: number;
  maxGuesses: number;
  guessWindowMs: number;
  maxMessage: number;
  maxQueuedTotal: number;
  linesPerSecond: number;
  bytesPerSecond: number;
}> = Object.freeze({
  host: DEFAULT_HOST,
  port: DEFAULT_PORT,
  name: "server",
  maxClients: 1000,
  maxHandshakes: 64,
  maxPerAddress: 10,
  penaltyMs: 60_000,
  penaltyStrikes: 10,
  penaltyWindowMs: 60_000,
  maxLine: DEFAULT_MAX_LINE,
  handshakeTimeoutMs: 10_000,
  keepaliveMs: 30_000,
  writeTimeoutMs: 10_000,
  maxQueuedRecords: 4096,
  maxQueuedBytes: 8 * 1024 * 1024,
  maxGuesses: 5,
  guessWindowMs: 10 * 60_000,
  maxMessage: DEFAULT_MAX_MESSAGE,
  maxQueuedTotal: 64 * 1024 * 1024,
  linesPerSecond: SENDER_RATE_DEFAULTS.linesPerSecond,
  bytesPerSecond: SENDER_RATE_DEFAULTS.bytesPerSecond,
});

/** Largest `--max-message`: a chat record of that text still fits a default client's line. */
const MAX_MESSAGE_LIMIT = 512 * 1024;

/** Ms between two looks at the queues while the operator's input waits for them. */
const OPERATOR_WAIT_MS = 20;

/** The original's private key b. */
export const TOY_SERVER_PRIVATE_KEY = 3n;

/** Pause after running out of file descriptors before accepting again. */
const DESCRIPTOR_RETRY_MS = 100;

/** At most one "out of file descriptors" line per this many ms. */
const DESCRIPTOR_LOG_INTERVAL_MS = 5000;

/** Whether an accept error means the process is out of descriptors (EMFILE, ENFILE). */
function isDescriptorExhaustion(error: unknown): boolean {
  return /os error 2[34]\b|too many open files/i.test(String((error as Error)?.message));
}

/** One connection being served, and once agreed, its channel. */
interface Connected {
  readonly link: LineConnection;
  channel?: Channel;
  /** Why the server dropped it before its handshake ended (already logged). */
  dropped?: string;
}

/** At most one line per this many ms about the refusals of one penalized address. */
const PENALTY_REPORT_INTERVAL_MS = 1000;

/** Why the oldest connection in its handshake was dropped. */
const EVICTED = "dropped: too many connections are waiting for their handshake; try again";

/**
 * Starts a DHX/1 server and returns at once with its handle.
 *
 * @example A server and a client in one process, over an in-memory connection, quietly
 * ```ts
 * import { startServer } from "./server.ts";
 * import { runClient } from "./client.ts";
 *
 * const server = startServer({ listen: false, quiet: true });
 * const input = ReadableStream.from([new TextEncoder().encode("hello\n")]);
 * const code = await runClient({ connection: server.connect(), input, quiet: true }); // 0: acknowledged
 * await server.close();
 * ```
 *
 * @example Every line the server would print, handed to a function of your own
 * ```ts
 * import type { Logger } from "./console.ts";
 * import { startServer } from "./server.ts";
 *
 * const say = (level: string) => (message: string) => console.error(`server ${level}: ${message}`);
 * const logger: Logger = {
 *   quiet: false,
 *   info: say("info"),
 *   success: say("success"),
 *   line: say("line"),
 *   notice: say("notice"),
 *   error: say("error"),
 * };
 * const server = startServer({ listen: false, logger });
 * await server.close();
 * ```
 *
 * @throws {Deno.errors.AddrInUse} and other listen errors
 */
export function startServer(options: ServerOptions = {}): ServerHandle {
  const settings = { ...SERVER_DEFAULTS, ...definedOnly(options) };
  const group = options.group ?? GROUPS[DEFAULT_GROUP];
  const cipher = options.cipher ?? SECURE_CIPHER;
  const log = options.logger ?? createLogger({ quiet: options.quiet });
  // Toy numbers are the lesson: print them. Real secrets only with --verbose.
  const reveal = options.verbose === true || cipher === TOY_CIPHER;
  const listener = options.listen === false
    ? undefined
    : Deno.listen({ hostname: settings.host, port: settings.port });
  // One bound on what is queued for all clients; each sender has a rate.
  const budget = new QueueBudget(settings.maxQueuedTotal);
  const senderRate: SenderRate = {
    linesPerSecond: settings.linesPerSecond,
    lineBurst: 2 * settings.linesPerSecond,
    bytesPerSecond: settings.bytesPerSecond,
    byteBurst: 4 * settings.bytesPerSecond,
  };
  const room = new Room({
    operatorName: settings.name,
    relay: options.room === true,
    // A relayed record must fit every client's default line limit, whatever --max-line says.
    maxChatBytes: maxRecordText(Math.min(settings.maxLine, DEFAULT_MAX_LINE)),
    maxMessage: settings.maxMessage,
    budget,
    addressKey,
  });
  const hostKey = options.hostKey === undefined ? HostKey.generate() : options.hostKey ?? undefined;
  const guesses = new PenaltyBox({
    strikes: settings.maxGuesses,
    windowMs: settings.guessWindowMs,
    penaltyMs: settings.guessWindowMs,
  });
  const connections = new Set<Connected>();
  const admission = new Admission<Connected>({
    maxClients: settings.maxClients,
    maxHandshakes: Math.min(settings.maxHandshakes, settings.maxClients),
    maxPerAddress: settings.maxPerAddress,
    penalty: settings.penaltyMs > 0
      ? {
        strikes: settings.penaltyStrikes,
        windowMs: settings.penaltyWindowMs,
        penaltyMs: settings.penaltyMs,
      }
      : undefined,
  });
  const penaltyReports = new RefusalReports(PENALTY_REPORT_INTERVAL_MS);
  const handlers = new Set<Promise<void>>();
  let stopping = false;
  let memoryPeers = 0;

  /** Closes connections the admission let go of, with one line each, and says who is refused now. */
  function drop(dropped: readonly Connected[], why: string, penalized?: string): void {
    if (penalized) {
      log.error(
        `${penalized}: refused for ${settings.penaltyMs / 1000} s: ${
          count(settings.penaltyStrikes, "connection")
        } from it ended without a handshake within ${settings.penaltyWindowMs / 1000} s`,
      );
    }
    for (const connected of dropped) {
      if (connected.dropped) continue;
      connected.dropped = why;
      log.error(`${connected.link.peer} ${why}`);
      void connected.link.fail(why);
    }
  }

  async function serve(conn: Connection, peerName?: string): Promise<void> {
    const wire = options.wire ? new WireView(log) : undefined;
    const link = new LineConnection(conn, {
      peer: peerName,
      maxLine: settings.maxLine,
      lineTimeoutMs: settings.handshakeTimeoutMs,
      writeTimeoutMs: settings.writeTimeoutMs,
      maxQueuedLines: settings.maxQueuedRecords,
      maxQueuedBytes: settings.maxQueuedBytes,
      onLine: wire?.line,
    });
    const peer = link.peer;
    const guessing = options.password === undefined
      ? 0
      : guesses.remaining(addressKey(link.hostname));
    if (guessing > 0) {
      const reason = `too many wrong passwords from ${link.hostname}: refused for ${
        Math.ceil(guessing / 60_000)
      } more min`;
      log.error(`${peer} refused: ${reason}`);
      await link.fail(reason);
      return;
    }
    if (wire) wire.peer = peer;
    const connected: Connected = { link };
    const admitted = stopping
      ? { ok: false as const, reason: "server shutting down", drop: [] }
      : admission.admit(connected, link.hostname);
    drop(admitted.drop, EVICTED, admitted.penalized);
    if (!admitted.ok) {
      // A penalized address is refused in floods: one line a second says so.
      const report = admitted.penalizedKey === undefined
        ? { say: true, unsaid: 0 }
        : penaltyReports.report(admitted.penalizedKey);
      if (report.say) {
        const unsaid = report.unsaid > 0
          ? ` (${report.unsaid} more refused since the last line)`
          : "";
        log.error(`${peer} refused: ${admitted.reason}${unsaid}`);
      }
      await link.fail(admitted.reason);
      return;
    }
    connections.add(connected);
    log.success(`Connection from ${peer}`);
    try {
      const session = await serverHandshake(link, {
        group,
        cipher,
        privateKey: options.privateKey,
        timeoutMs: settings.handshakeTimeoutMs,
        hostKey,
        password: options.password,
      });
      if (connected.dropped) return; // already logged
      if (session === null) {
        log.info(`${peer} disconnected before the handshake`);
        return;
      }
      admission.established(connected);
      // Toy mode: a password's G first (the worked steps use it), the proof after.
      const toyPassword = reveal && !options.verbose ? explainPassword(session) : [];
      for (const step of toyPassword) log.info(`${peer}: ${step}`);
      if (!log.quiet) {
        // A fixed key (toy mode) was shown once at start, by main.
        const fixedKey = options.privateKey !== undefined;
        for (const step of describeHandshake(session, reveal, fixedKey)) log.info(step);
      }
      if (wire) wire.session = session;
      // The whole lesson with --verbose.
      const steps = options.verbose
        ? explainSession(session, hostKey?.fingerprint)
        : reveal
        ? explainProof(session, hostKey?.fingerprint)
        : [];
      for (const step of steps) log.info(`${peer}: ${step}`);
      const pacer = new SenderPacer(senderRate, budget);
      const channel = new Channel(link, session, {
        keepaliveMs: settings.keepaliveMs,
        ackTimeoutMs: settings.writeTimeoutMs,
        maxUnacked: settings.maxQueuedRecords,
        pacer,
        // A client that reads but stops acking is dropped: one line in the log, not one per record.
        onOverdue: (oldest, pending) =>
          void channel.fail(
            `no acknowledgement of ${oldest.note} for ${settings.writeTimeoutMs / 1000} s (${
              count(pending, "record")
            } waiting)`,
          ),
      });
      connected.channel = channel;
      const member = room.join({
        address: peer,
        chat: (payload, note) => channel.sendShared(payload, note),
        notice: (text) => channel.send("notice", text),
        disconnect: (reason) => void channel.fail(reason),
      });
      log.success(`Session with ${peer} (${member.name}): fingerprint ${session.fingerprint}`);
      if (stopping) await channel.bye();
      const end = await channel.run((event) => {
        if (event.type !== "msg") return;
        const name = member.name;
        const result = room.receive(member, event.text);
        if (result.kind === "chat" && result.relayedTo > 0) {
          pacer.chargeRelay(result.relayedTo, event.text.length);
        }
        options.onMessage?.({ peer, name, seq: event.seq, text: event.text });
        if (log.quiet) return;
        if (result.kind === "chat") log.success(`${name} (${peer}): ${result.text}`);
        else if (result.kind === "renamed") {
          log.info(`${result.from} (${peer}) is now ${result.to}`);
        } else if (result.kind === "refused") {
          if (!result.again) log.info(`${name} (${peer}): name refused: ${result.reason}`);
        } else log.info(`${name} (${peer}) sent /${result.kind === "who" ? "who" : result.word}`);
      });
      room.leave(member);
      // A removed member's end was told in the operator's one line.
      if (!member.removed) reportEnd(`${member.name} (${peer})`, end);
    } catch (error) {
      if ((link.closed && stopping) || connected.dropped) return; // closed by us: already told
      if (error instanceof WrongPasswordError) {
        const penalized = guesses.strike(addressKey(link.hostname));
        log.error(
          `${peer}: wrong password${
            penalized ? `; ${link.hostname} refused for ${settings.guessWindowMs / 60_000} min` : ""
          }`,
        );
        await link.fail(WrongPasswordError.FRAME_MESSAGE);
        return;
      }
      const reason = describeError(error);
      log.error(`${peer}: ${reason}`);
      if (error instanceof ProtocolError && !error.fromPeer) await link.fail(reason);
    } finally {
      link.close();
      connections.delete(connected);
      const released = admission.release(connected, !stopping);
      drop(released.drop, "dropped: its address is refused now", released.penalized);
    }
  }

  function reportEnd(who: string, end: ChannelEnd): void {
    if (end.reason === "bye") log.info(`${who} disconnected`);
    else if (end.reason === "closed") log.info(`${who} disconnected without bye`);
    else if (end.reason === "error") log.error(`${who}: ${describeError(end.error)}`);
  }

  function track(handler: Promise<void>): Promise<void> {
    handlers.add(handler);
    handler.finally(() => handlers.delete(handler));
    return handler;
  }

  async function acceptLoop(): Promise<void> {
    if (!listener) return;
    let lastDescriptorLog = -Infinity;
    let descriptorFailures = 0;
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (stopping || error instanceof Deno.errors.BadResource) return; // listener closed
        if (!isDescriptorExhaustion(error)) continue; // that connection failed (reset, aborted): next
        // Out of descriptors: give connections time to end; say so at most every few seconds.
        descriptorFailures++;
        if (performance.now() - lastDescriptorLog >= DESCRIPTOR_LOG_INTERVAL_MS) {
          log.error(
            `Accepting connections failed ${count(descriptorFailures, "time")}: ${
              describeError(error)
            }; retrying`,
          );
          lastDescriptorLog = performance.now();
          descriptorFailures = 0;
        }
        await new Promise((resolve) => setTimeout(resolve, DESCRIPTOR_RETRY_MS));
        continue;
      }
      track(serve(conn));
    }
  }

  function operator(line: string): void {
    if (line === "") return; // Enter alone: nothing to send, nothing to say
    const result = room.operator(line);
    switch (result.kind) {
      case "chat":
        if (result.sentTo === 0) log.error("No client in session: the line went nowhere");
        else log.info(`Sent to ${count(result.sentTo, "client")}`);
        return;
      case "who": {
        const list = result.members.map((m) => `${m.name} (${m.address})`).join(", ");
        log.info(`${count(result.members.length, "client")} in session${list ? `: ${list}` : ""}`);
        return;
      }
      case "kicked":
        log.info(`Kicked ${result.members.map((m) => `${m.name} (${m.address})`).join(", ")}`);
        return;
      case "banned": {
        const banned = admission.ban(result.key, result.minutes * 60_000);
        drop(banned.drop, "dropped: its address is banned");
        const removed = result.members.map((m) => `${m.name} (${m.address})`).join(", ");
        log.info(
          `Banned ${banned.key} for ${count(result.minutes, "minute")}${
            removed ? `; removed ${removed}` : ""
          }`,
        );
        return;
      }
      case "refused":
        log.error(sentence(result.reason));
        return;
      case "unknown":
        log.error(`Unknown command /${result.word}; commands: ${OPERATOR_COMMANDS}`);
        return;
    }
  }

  const accepting = acceptLoop();
  const { promise: finished, resolve: stopped } = Promise.withResolvers<void>();
  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= (async () => {
      stopping = true;
      listener?.close();
      await accepting;
      for (const { link, channel } of connections) {
        if (channel) channel.bye();
        else link.close();
      }
      await Promise.all(handlers);
      room.close();
      stopped();
    })();

  return {
    addr: listener?.addr as Deno.NetAddr | undefined,
    get connections() {
      return connections.size;
    },
    hostKey,
    get members() {
      return room.members;
    },
    operator,
    serve: (conn, peer) => track(serve(conn, peer)),
    connect(peer) {
      const [serverEnd, clientEnd] = memoryPipe();
      track(serve(serverEnd, peer ?? `memory:${++memoryPeers}`));
      return clientEnd;
    },
    close,
    finished,
    async whenWritable() {
      for (;;) {
        const behind = [...connections].find(({ channel }) =>
          channel && !channel.stopped && channel.backlog * 2 >= settings.maxQueuedRecords
        );
        if (!behind && !budget.full) return;
        if (behind?.channel && !budget.full) {
          const below = Math.ceil(settings.maxQueuedRecords / 2);
          await behind.channel.whenWritable({ ms: OPERATOR_WAIT_MS * 50 }, below);
        } else await new Promise((resolve) => setTimeout(resolve, OPERATOR_WAIT_MS));
      }
    },
  };
}

/** `options` without its undefined members, so that they do not hide defaults. */
function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<
    T
  >;
}

/** The `--help` text, for the command that was run (`dhx-server` or `deno run --allow-net server.ts`). */
const usage = (command: string) =>
  `Usage: ${command} [options]

A DHX/1 chat server: agrees a key with each client by Diffie-Hellman, shows
what they write, and sends every line typed here to all of them.

Options:
  --host HOST               address to listen on (default ${SERVER_DEFAULTS.host}):
                            0.0.0.0 listens on every IPv4 address, :: on
                            every address (IPv6 too), ::1 on IPv6 loopback
  --port PORT               port to listen on (default ${SERVER_DEFAULTS.port}; 0 picks a free one)
  --room                    chat room: relay each client's line to the others,
                            and tell them who joins, leaves or changes name
  --name NAME               your name on the lines you type (default ${SERVER_DEFAULTS.name})
  --group NAME              group to offer (default ${DEFAULT_GROUP}): ffdhe2048,
                            ffdhe3072, ffdhe4096, ffdhe6144, ffdhe8192 (RFC 7919),
                            modp2048, modp3072, modp4096 (RFC 3526)
  --toy                     the original's insecure demo: p = 23, g = 5,
                            private key b = 3, one-byte XOR cipher (xor8)
  --prime P                 with --toy: use prime P instead of 23
  --generator G             with --toy: use generator G (2 … p − 2) instead of 5
  --private-key B           with --toy: use private key B instead of 3
  --max-clients N           most simultaneous clients, handshakes included
                            (default ${SERVER_DEFAULTS.maxClients})
  --max-handshakes N        most connections still in their handshake; when
                            full, the oldest is dropped for a newcomer
                            (default ${SERVER_DEFAULTS.maxHandshakes})
  --max-per-address N       most simultaneous connections from one address, an
                            IPv6 /64 counting as one (default ${SERVER_DEFAULTS.maxPerAddress})
  --penalty SECS            refuse an address this long once ${SERVER_DEFAULTS.penaltyStrikes} of its
                            connections end without a handshake within ${
    SERVER_DEFAULTS.penaltyWindowMs / 1000
  } s
                            (default ${SERVER_DEFAULTS.penaltyMs / 1000}; 0 turns it off)
  --max-line BYTES          longest line accepted (default ${SERVER_DEFAULTS.maxLine})
  --handshake-timeout SECS  time a client has to send its key, and to finish
                            any line it starts (default ${
    SERVER_DEFAULTS.handshakeTimeoutMs / 1000
  })
  --keepalive SECS          ping a client silent this long, drop it if it stays
                            silent as long again (default ${
    SERVER_DEFAULTS.keepaliveMs / 1000
  }; 0 turns it off)
  --write-timeout SECS      time a write to a client may take before it is
                            dropped; a client that leaves a line unacknowledged
                            this long is dropped too (default ${
    SERVER_DEFAULTS.writeTimeoutMs / 1000
  })
  --host-key-file FILE      keep the host key in FILE (created with mode 0600;
                            refused if others may read it) instead of the
                            default store (Deno's localStorage)
  --password                require a room password, asked here (hidden, twice)
  --password-file FILE      require the room password in the first line of FILE
  --max-message BYTES       longest line relayed to the room or sent by you
                            (default ${SERVER_DEFAULTS.maxMessage}; at most ${MAX_MESSAGE_LIMIT})
  --rate LINES              lines read per second from one client, pings
                            included; twice as many at once; in a room, a
                            line counts once more per 4 members it goes to
                            (default ${SERVER_DEFAULTS.linesPerSecond})
  --byte-rate BYTES         bytes read per second from one client; four times
                            as many at once (default ${SERVER_DEFAULTS.bytesPerSecond}). A client
                            past its rate is read more slowly, never dropped
  --max-queued BYTES        most bytes queued for all clients together, a
                            relayed line counted once (default ${SERVER_DEFAULTS.maxQueuedTotal});
                            when reached, clients are read more slowly
  --quiet                   print only errors, the host key and the
                            listening/stopped lines
  --verbose                 show the math: every number, including secrets
  --wire                    show every frame sent and received (what an
                            eavesdropper sees); with --toy, each line's XOR
                            encryption step by step
  --version                 print the version
  -h, --help                show this help

Type a line to send it to every client (an empty line sends nothing). Commands:
/who lists the clients, /kick ADDRESS (or NAME) ends their sessions,
/ban ADDRESS [MINUTES] (default 60) also refuses that address; start a line
with // to send one beginning with /.

Exit codes: 0 ok, 1 failure, 2 usage error.`;

/** What `main` needs from the command line. */
export type ServerCommand = ParsedCommand<ServerOptions> & {
  /** `--host-key-file`: where the host key is kept instead of the default store. */
  readonly hostKeyFile?: string;
  /** `--password` / `--password-file`. */
  readonly password?: PasswordSource;
};

/**
 * Turns the command line into server options.
 *
 * @throws {UsageError} for unknown flags, bad values and flag conflicts
 */
export function parseServerArgs(args: string[]): ServerCommand {
  const flags = parseFlags(args, {
    room: { type: "boolean" },
    group: { type: "string" },
    prime: { type: "string" },
    generator: { type: "string" },
    "max-clients": { type: "string" },
    "max-per-address": { type: "string" },
    "max-handshakes": { type: "string" },
    penalty: { type: "string" },
    "handshake-timeout": { type: "string" },
    "write-timeout": { type: "string" },
    "host-key-file": { type: "string" },
    "max-message": { type: "string" },
    "max-queued": { type: "string" },
    rate: { type: "string" },
    "byte-rate": { type: "string" },
  });
  const toy = flags.boolean("toy");
  for (const name of ["prime", "generator", "private-key"]) {
    if (flags.has(name) && !toy) {
      throw new UsageError(`--${name} is a teaching flag and needs --toy`);
    }
  }
  const name = flags.string("name");
  const badName = name === undefined ? undefined : checkName(name);
  if (badName) throw new UsageError(`--name: ${badName}`);
  const options: ServerOptions = {
    host: flags.host("host"),
    port: flags.integer("port", 0, 65535),
    room: flags.boolean("room"),
    name,
    maxClients: flags.integer("max-clients", 1, 100_000),
    maxPerAddress: flags.integer("max-per-address", 1, 100_000),
    maxHandshakes: flags.integer("max-handshakes", 1, 100_000),
    penaltyMs: flags.milliseconds("penalty", true),
    handshakeTimeoutMs: flags.milliseconds("handshake-timeout"),
    keepaliveMs: flags.milliseconds("keepalive", true),
    writeTimeoutMs: flags.milliseconds("write-timeout"),
    // A relayed record must fit a default client's 1 MiB line: its text at most 3/4 of it.
    maxMessage: flags.integer("max-message", 1, MAX_MESSAGE_LIMIT),
    maxQueuedTotal: flags.integer("max-queued", 1024 * 1024, 2 ** 40),
    linesPerSecond: flags.integer("rate", 1, 1_000_000),
    bytesPerSecond: flags.integer("byte-rate", 1024, 2 ** 40),
    verbose: flags.boolean("verbose"),
    wire: flags.boolean("wire"),
    ...groupOptions(flags, toy),
  };
  options.maxLine = maxLineFor(flags, options.group ?? GROUPS[DEFAULT_GROUP]);
  return {
    options,
    quiet: flags.boolean("quiet"),
    help: flags.boolean("help"),
    hostKeyFile: flags.string("host-key-file"),
    password: passwordSource(flags),
    version: flags.boolean("version"),
  };
}

/** The group, cipher and private key the flags choose. */
function groupOptions(flags: Flags, toy: boolean): Partial<ServerOptions> {
  if (!toy) {
    const name = flags.string("group") ?? DEFAULT_GROUP;
    if (!isGroupName(name) || name === "toy") {
      throw new UsageError(
        `unknown group ${JSON.stringify(name)}; choose one of ${SECURE_GROUP_NAMES.join(", ")}${
          name === "toy" ? " (or --toy)" : ""
        }`,
      );
    }
    return { group: GROUPS[name] };
  }
  if (flags.has("group")) {
    throw new UsageError("--group and --toy exclude each other (--toy uses p = 23, g = 5)");
  }
  let group: DhGroup;
  try {
    group = customGroup(
      flags.bigint("prime") ?? GROUPS.toy.p,
      flags.bigint("generator") ?? GROUPS.toy.g,
    );
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`bad --prime/--generator: ${(error as Error).message}`);
  }
  const privateKey = flags.bigint("private-key") ?? TOY_SERVER_PRIVATE_KEY;
  try {
    checkPrivateKey(group, privateKey);
  } catch (error) {
    // The client's words for the same refusal (transport.ts, clientHandshake).
    throw new UsageError(`cannot use this private key: ${(error as Error).message}`);
  }
  return { group, cipher: TOY_CIPHER, privateKey };
}

/** `--max-line`, which must at least carry the group's hello. */
function maxLineFor(flags: Flags, group: DhGroup): number | undefined {
  const least = longestHello(group);
  const maxLine = flags.integer("max-line", 1, 64 * 1024 * 1024);
  if (maxLine !== undefined && maxLine < least) {
    throw new UsageError(
      `--max-line ${maxLine} cannot carry a ${group.name} hello: use at least ${least}`,
    );
  }
  return maxLine;
}

/**
 * A room password needs a group with a usable password generator: every RFC
 * group and every safe prime has one, a tiny custom `--prime` may not.
 *
 * @throws {UsageError} otherwise
 */
function checkPasswordGroup(group: DhGroup): void {
  try {
    derivePasswordGenerator(group, "any password", new Uint8Array(32));
  } catch (error) {
    throw new UsageError(`--password: ${(error as Error).message}; choose another --prime`);
  }
}

/** The command-line entry point; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const output = new Output();
  try {
    return await serve(args, output);
  } finally {
    // Bounded: a terminal that stays stuck does not keep the server from ending.
    await output.settle();
  }
}

/** `main` with its output: runs the server until a signal or the operator stops it. */
async function serve(args: string[], output: Output): Promise<number> {
  const command = readCommand(args, parseServerArgs, usage, output, "server.ts");
  if (typeof command === "number") return command;
  const log = createLogger({ quiet: command.quiet, output });
  const options = command.options;
  let hostKey: HostKey;
  let password: string | undefined;
  try {
    const store = command.hostKeyFile === undefined
      ? new LocalStorageStore(STORAGE_KEYS.hostKey)
      : new FileStore(command.hostKeyFile, { secret: true });
    const loaded = loadHostKey(store);
    hostKey = loaded.hostKey;
    if (loaded.created) log.info(`Created a new host key in ${store.description}`);
    if (command.password) password = await readPassword(command.password, true);
    if (password !== undefined) checkPasswordGroup(options.group ?? GROUPS[DEFAULT_GROUP]);
  } catch (error) {
    log.error(
      sentence(describeError(error)) + (error instanceof UsageError ? " (see --help)" : ""),
    );
    output.flush();
    return error instanceof UsageError ? EXIT.USAGE : EXIT.FAILURE;
  }
  let server: ServerHandle;
  try {
    server = startServer({ ...options, hostKey, password, logger: log });
  } catch (error) {
    const [host, port] = [
      options.host ?? SERVER_DEFAULTS.host,
      options.port ?? SERVER_DEFAULTS.port,
    ];
    log.error(
      `Cannot listen on ${formatAddress(host, port)}: ${describeListenError(error, host, port)}`,
    );
    return EXIT.FAILURE;
  }
  log.notice(`Server listening on ${formatAddress(server.addr!.hostname, server.addr!.port)}`);
  log.notice(`Host key ${hostKey.fingerprint}`);
  if (password !== undefined) log.info("Room password required: clients need --password");
  const group = options.group!;
  if (isTeachingGroup(group)) {
    const safe = isSafePrime(group.p) ? "a safe prime" : "a prime, but not a safe prime";
    log.info(`Shared parameters: p = ${group.p} (${safe}), g = ${group.g} (insecure toy mode)`);
    // The toy key is fixed: its worked steps once, here, rather than per client
    // (with a password, B = G^b changes with every client's G: shown per client).
    if (options.privateKey !== undefined && password === undefined) {
      for (const step of describeOwnKey("server", group, options.privateKey, true)) log.info(step);
    }
  } else {
    log.info(`Group ${group.name} (${group.source}, ${group.bits}-bit p, g = ${group.g})`);
  }
  if (options.room) log.info("Room mode: every client's line goes to all the others");
  const stop = () => void server.close();
  const operator = readOperator(server, options.maxLine ?? DEFAULT_MAX_LINE, log, output, stop);
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await server.finished;
  operator.close();
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  log.notice("Server stopped");
  return EXIT.OK;
}

/**
 * Reads the operator's lines from stdin, in the background. The end of
 * stdin (a pipe, /dev/null) ends only the reading; at a terminal the lines
 * are edited with a prompt kept below the log.
 */
function readOperator(
  server: ServerHandle,
  maxLine: number,
  log: Logger,
  output: Output,
  stop: () => void,
) {
  const interactive = Deno.stdin.isTerminal() && Deno.stdout.isTerminal();
  const input = inputLines({
    maxBytes: maxRecordText(maxLine),
    prompt: interactive ? "> " : undefined,
    output,
    onInterrupt: stop,
  });
  (async () => {
    for (;;) {
      const line = await input.next().catch(() => null);
      if (line === null) return;
      if ("refused" in line) log.error(`Line not sent: ${line.refused}`);
      else {
        server.operator(line.text);
        // Flow control: a paste is read no faster than the clients take it.
        await server.whenWritable();
      }
    }
  })();
  return input;
}

// Exit explicitly: a read pending on stdin would otherwise keep the process alive.
if (import.meta.main) Deno.exit(await main(Deno.args));
