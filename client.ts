/**
 * dhx chat client: connects to a server, agrees a key over DHX/1, sends each
 * line typed (or piped) as an encrypted message and shows what others write.
 *
 * ```sh
 * deno run --allow-net client.ts                     # secure by default
 * deno run --allow-net client.ts --name alice        # choose the name others see
 * printf 'a\nb\n' | deno run --allow-net client.ts   # send two lines, then leave
 * deno run --allow-net client.ts --toy               # the original's numbers
 * ```
 *
 * Also a library: {@link runClient} runs one session in-process.
 *
 * @module
 */

import { checkName } from "./chat.ts";
import {
  commandName,
  count,
  createLogger,
  describeError,
  describeHandshake,
  EXIT,
  explainPassword,
  explainProof,
  explainSession,
  type InputLine,
  inputLines,
  type LineSource,
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
import { GROUPS, isTeachingGroup, ProtocolError, SECURE_CIPHER, SECURE_GROUP_NAMES } from "./dh.ts";
import {
  bounded,
  Channel,
  type ChannelEnd,
  type ChannelEvent,
  clientHandshake,
  type Connection,
  DEFAULT_HOST,
  DEFAULT_MAX_LINE,
  DEFAULT_PORT,
  formatAddress,
  HostKeyError,
  LineConnection,
  longestHello,
  maxRecordText,
} from "./transport.ts";
import {
  FileStore,
  isHostKeyFingerprint,
  KnownHosts,
  LocalStorageStore,
  MemoryStore,
  STORAGE_KEYS,
} from "./hostkeys.ts";

/** Options of {@link runClient}. */
export interface ClientOptions {
  /** Server address (default 127.0.0.1). */
  host?: string;
  /** Server port (default 4444). */
  port?: number;
  /** An open connection to use instead of connecting (e.g. `server.connect()`). */
  connection?: Connection;
  /** Accept toy/custom groups and xor8 (`--toy`); private key 5 on those groups. */
  toy?: boolean;
  /** A fixed private key (only with `toy`), used whatever the group. */
  privateKey?: bigint;
  /** Send `/name NAME` right after the handshake. */
  name?: string;
  /** Bound on connecting, the handshake, each write, an ack, and leaving, in ms (default 10 s). */
  timeoutMs?: number;
  /** Ping a server silent this long (once it has shown it knows pings); 0: off (default 30 s). */
  keepaliveMs?: number;
  /** Longest line accepted from the server; also what a line typed may take (default 1 MiB). */
  maxLine?: number;
  /** Show every number, including secrets. */
  verbose?: boolean;
  /**
   * Where server host keys are remembered, by `host:port` (trust on first
   * use). Default: memory, so nothing outlives the call; the script uses
   * Deno's localStorage or `--known-hosts FILE`.
   */
  knownHosts?: KnownHosts;
  /** The host key fingerprint the server must have (`--host-key SHA256:…`), even on first contact. */
  hostKey?: string;
  /** The room password (revision 3). */
  password?: string;
  /** Show every frame sent and received (`--wire`); in toy mode, each record's XOR step by step. */
  wire?: boolean;
  /** Lines to send (default: stdin). */
  input?: LineSource | ReadableStream<Uint8Array>;
  /** At a terminal: a prompt, line editing, acks shown only when late (default: stdin is a terminal). */
  interactive?: boolean;
  /** Print only errors and what others write, as `--quiet` does (default false). */
  quiet?: boolean;
  /**
   * Where every line goes (default: stdout and stderr, see `quiet`). Any
   * object with the {@link Logger} methods receives each line instead.
   */
  logger?: Logger;
  /** Buffered output the prompt stays below (default: a new one). */
  output?: Output;
  /** Aborting ends the session like the end of input (the first Ctrl-C). */
  signal?: AbortSignal;
  /** Aborting leaves at once, without waiting for acks (a second Ctrl-C). */
  forceSignal?: AbortSignal;
  /** Called for Ctrl-C typed at the prompt (default: it ends the input). */
  onInterrupt?: () => void;
}

/** Defaults of the flags, shown by `--help`. */
export const CLIENT_DEFAULTS: Readonly<{
  host: string;
  port: number;
  timeoutMs: number;
  keepaliveMs: number;
  maxLine: number;
}> = Object.freeze({
  host: DEFAULT_HOST,
  port: DEFAULT_PORT,
  timeoutMs: 10_000,
  keepaliveMs: 30_000,
  maxLine: DEFAULT_MAX_LINE,
});

/** The original's private key a (used only on toy and custom groups). */
export const TOY_CLIENT_PRIVATE_KEY = 5n;

/** The word that ends a session when typed alone on a line at a terminal; piped, it is text. */
export const EXIT_COMMAND = "exit";

/** The command that ends a session, typed or piped; never sent. */
export const QUIT_COMMAND = "/quit";

/** After the session ends, an input quiet this long has nothing more queued to lose. */
const UNSENT_QUIET_MS = 200;

/** Above this many unsent bytes, reading input waits for the connection to catch up. */
const SEND_HIGH_WATER = 1024 * 1024;

/**
 * Runs one chat session: connect, handshake, send every input line while
 * showing what arrives, wait for the acks, say `bye`. Resolves with the exit
 * code (0 when every line was sent and acknowledged) and never throws for
 * network or protocol trouble: those are printed as one `[!]` line.
 *
 * @example Two lines to a server in the same process
 * ```ts
 * import { startServer } from "./server.ts";
 * import { runClient } from "./client.ts";
 *
 * const server = startServer({ listen: false, quiet: true });
 * const input = ReadableStream.from([new TextEncoder().encode("hello\nworld\n")]);
 * console.log(await runClient({ connection: server.connect(), input, quiet: true })); // 0
 * await server.close();
 * ```
 */
export async function runClient(options: ClientOptions = {}): Promise<number> {
  const log = options.logger ?? createLogger({ output: options.output, quiet: options.quiet });
  const host = options.host ?? CLIENT_DEFAULTS.host;
  const port = options.port ?? CLIENT_DEFAULTS.port;
  const timeoutMs = options.timeoutMs ?? CLIENT_DEFAULTS.timeoutMs;
  const maxLine = options.maxLine ?? CLIENT_DEFAULTS.maxLine;
  const toy = options.toy === true;
  const seconds = `${timeoutMs / 1000} s`;

  let conn: Connection;
  try {
    conn = options.connection ?? await connect(host, port, timeoutMs, options.signal);
  } catch (error) {
    const hint = error instanceof Deno.errors.ConnectionRefused ? "; is the server running?" : "";
    log.error(`Cannot connect to ${formatAddress(host, port)}: ${describeError(error)}${hint}`);
    return EXIT.FAILURE;
  }
  const wire = options.wire ? new WireView(log) : undefined;
  const link = new LineConnection(conn, {
    maxLine,
    writeTimeoutMs: timeoutMs,
    lineTimeoutMs: timeoutMs,
    onLine: wire?.line,
  });
  log.success(`Connected to ${options.connection ? "the server" : formatAddress(host, port)}`);

  let channel: Channel;
  const address = formatAddress(host, port);
  const knownHosts = options.knownHosts ?? new KnownHosts(new MemoryStore());
  try {
    const { hello, session, hostKeyFingerprint, hostKeyStatus } = await clientHandshake(link, {
      insecure: toy,
      privateKey: options.privateKey,
      teachingKey: toy ? TOY_CLIENT_PRIVATE_KEY : undefined,
      timeoutMs,
      signal: options.signal,
      knownHosts,
      address,
      pin: options.hostKey,
      password: options.password,
    });
    // The toy numbers are the lesson; a real group's secrets only with --verbose.
    const reveal = options.verbose === true || isTeachingGroup(hello.group);
    const { group } = hello;
    if (isTeachingGroup(group)) {
      log.info(
        `Server shares p = ${group.p}, g = ${group.g} (${group.name}, cipher ${hello.cipher})`,
      );
    } else {
      log.info(
        `Server offers ${group.name} (${group.bits}-bit p, g = ${group.g}), ${hello.cipher}`,
      );
    }
    // Toy mode: a password's G first (the worked steps use it), the proof after.
    if (reveal && !options.verbose) { for (const step of explainPassword(session)) log.info(step); }
    if (!log.quiet) { for (const step of describeHandshake(session, reveal)) log.info(step); }
    if (wire) wire.session = session;
    log.success(`Session established; fingerprint ${session.fingerprint}`);
    // The whole lesson with --verbose.
    const steps = options.verbose
      ? explainSession(session, hostKeyFingerprint)
      : reveal
      ? explainProof(session, hostKeyFingerprint)
      : [];
    for (const step of steps) log.info(step);
    switch (hostKeyStatus) {
      case "new":
        log.success(
          `First contact with ${address}: remembered its host key ${hostKeyFingerprint}; compare it with the "Host key" line the server printed`,
        );
        break;
      case "known":
        log.success(`Host key ${hostKeyFingerprint} verified (as remembered for ${address})`);
        break;
      case "pinned":
        log.success(`Host key ${hostKeyFingerprint} verified (as given with --host-key)`);
        break;
      case "unverified":
        log.error(
          "The server sent no host key (an older server): it cannot be verified; nothing remembered",
        );
    }
    if (session.passwordGenerator) {
      log.success("Both sides proved that they know the room password");
    }
    if (isTeachingGroup(group) || hello.cipher !== SECURE_CIPHER) {
      log.error("Toy mode: these numbers can be broken by hand; do not send secrets");
    } else if (
      !session.passwordGenerator && (hostKeyStatus === "new" || hostKeyStatus === "unverified")
    ) {
      // A host key already known, or a password, rules out someone in between.
      log.info("Compare the fingerprint with the server's: equal means no one sits in between");
    }
    channel = new Channel(link, session, {
      keepaliveMs: options.keepaliveMs ?? CLIENT_DEFAULTS.keepaliveMs,
      ackTimeoutMs: timeoutMs,
      // One line per episode: a server that stopped acking is not reported once per line.
      onOverdue: (oldest, pending) =>
        log.error(
          `${oldest.note}${
            pending > 1 ? ` and ${count(pending - 1, "more line")}` : ""
          } not acknowledged after ${seconds}`,
        ),
    });
  } catch (error) {
    log.error(sentence(describeError(error)));
    if (error instanceof HostKeyError && !error.pinned && error.presented !== undefined) {
      const file = knownHosts.store instanceof FileStore
        ? ` --known-hosts ${knownHosts.store.description}`
        : "";
      log.error(
        `If you know that the server's key changed, forget the old one with: ${
          commandName("client.ts")
        }${file} --forget-host ${error.address}`,
      );
    }
    if (error instanceof ProtocolError && !error.fromPeer) await link.fail(error.message);
    link.close();
    return EXIT.FAILURE;
  }
  const interactive = options.interactive ?? Deno.stdin.isTerminal();
  const maxBytes = maxRecordText(maxLine);
  const input = options.input instanceof ReadableStream || options.input === undefined
    ? inputLines({
      maxBytes,
      stream: options.input,
      prompt: interactive && options.input === undefined ? "> " : undefined,
      output: options.output,
      onInterrupt: options.onInterrupt,
    })
    : options.input;
  const conversation = new Conversation(channel, input, log, {
    interactive,
    timeoutMs,
    maxBytes,
    name: options.name,
    signal: options.signal,
    forceSignal: options.forceSignal,
  });
  return await conversation.run();
}

/** Connects, bounded by the timeout and abortable. */
async function connect(
  hostname: string,
  port: number,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Deno.Conn> {
  const connecting = Deno.connect({ hostname, port });
  try {
    return await bounded(connecting, {
      ms: timeoutMs,
      timeout: `timed out after ${timeoutMs / 1000} s`,
      signal,
      aborted: "interrupted",
    });
  } catch (error) {
    connecting.then((conn) => conn.close(), () => {});
    throw error;
  }
}

/** Settings of a {@link Conversation}. */
interface ConversationSettings {
  readonly interactive: boolean;
  readonly timeoutMs: number;
  readonly maxBytes: number;
  readonly name?: string;
  readonly signal?: AbortSignal;
  readonly forceSignal?: AbortSignal;
}

/** Why the input side stopped. */
type InputEnd = "end" | "exit" | "interrupted" | "session-ended";

/**
 * The message phase of one client: input lines become `msg` records while
 * what the server sends is shown; then the leaving, bounded in time. The
 * channel keeps the acks in flight; this object keeps the counts the exit
 * code depends on.
 */
class Conversation {
  readonly #channel: Channel;
  readonly #input: LineSource;
  readonly #log: Logger;
  readonly #settings: ConversationSettings;
  /** Input lines read so far (sent, refused or `exit`). */
  #linesRead = 0;
  /** Input lines refused (too long, not UTF-8): not sent. */
  #refused = 0;
  /** Input lines never sent because the session ended first. */
  #unsent = 0;
  /** Whether the unsent count is a lower bound (input still open at the deadline). */
  #unsentAtLeast = false;
  /** What left the unsent lines unsent: the session's end, or `/quit`. */
  #unsentAfter: "session" | "quit" = "session";
  /** Whether piped input was read to its end (or to `/quit`) after sending stopped. */
  #inputEnded = false;
  /** The read of the next input line under way (a read is never started twice). */
  #reading: Promise<InputLine | null> | undefined;

  constructor(channel: Channel, input: LineSource, log: Logger, settings: ConversationSettings) {
    this.#channel = channel;
    this.#input = input;
    this.#log = log;
    this.#settings = settings;
  }

  /** Runs the conversation to its end; resolves with the exit code. */
  async run(): Promise<number> {
    const { interactive, timeoutMs, forceSignal } = this.#settings;
    const log = this.#log;
    if (interactive) log.info(`Type a line and press Enter; /quit, "exit" or Ctrl-D to leave.`);
    const receiving = this.#channel.run((event) => this.#show(event));
    if (this.#settings.name !== undefined) {
      this.#channel.send("msg", `/name ${this.#settings.name}`, "The /name command");
    }
    const inputEnd = await this.#send(receiving);
    this.#input.close();
    if (inputEnd !== "session-ended") {
      // Leaving: acks, then bye, within one --timeout, counted from the
      // last ack (acks still coming in mean a server that is slow, not
      // gone); a second Ctrl-C cuts it short.
      const backlog = this.#channel.backlog;
      if (backlog > 0 && interactive) {
        log.info(
          `Waiting up to ${timeoutMs / 1000} s for ${
            count(backlog, "acknowledgement")
          } (Ctrl-C again to leave now)`,
        );
      }
      // Ctrl-C now (not the one that ended the input) means: leave at once.
      const { signal } = this.#settings;
      const cut = signal && !signal.aborted && forceSignal
        ? AbortSignal.any([signal, forceSignal])
        : forceSignal;
      const acks = this.#channel.acks;
      const started = performance.now();
      const left = () =>
        Math.max(0, Math.max(started, acks.lastAckAt) + timeoutMs - performance.now());
      while (!await this.#channel.settled({ ms: left(), signal: cut })) {
        if (cut?.aborted || this.#channel.stopped || left() === 0) break;
      }
      await this.#channel.bye(left(), cut);
    }
    const end = await receiving;
    return this.#report(end, inputEnd);
  }

  /** Reads input and sends it until it ends, `exit`, Ctrl-C or the session ends. */
  async #send(receiving: Promise<ChannelEnd>): Promise<InputEnd> {
    const ended = receiving.then(() => "session-ended" as const);
    const interrupted = Promise.race([
      abortPromise(this.#settings.signal),
      abortPromise(this.#settings.forceSignal),
    ]);
    const link = this.#channel.link;
    for (;;) {
      const next = await Promise.race([this.#nextLine(), ended, interrupted]);
      if (next === "session-ended") {
        await this.#countUnsent();
        return next;
      }
      if (next === "interrupted") return next;
      if (next === null) return "end";
      this.#linesRead++;
      if ("refused" in next) {
        this.#refused++;
        this.#log.error(
          `Input line ${this.#linesRead} not sent: ${next.refused}; a line may take at most ${this.#settings.maxBytes} bytes`,
        );
        continue;
      }
      // Piped, `exit` is a line like any other: only a person at a terminal means "leave" by it.
      if (
        next.text === QUIT_COMMAND || (this.#settings.interactive && next.text === EXIT_COMMAND)
      ) {
        this.#unsentAfter = "quit";
        await this.#countUnsent();
        return "exit";
      }
      if (!this.#channel.send("msg", next.text, `Line ${this.#linesRead}`)) {
        this.#unsent++;
        continue;
      }
      // Flow control: input is read no faster than the server acknowledges
      // (a full ack window) or reads (many unsent bytes).
      if (!this.#channel.windowOpen || link.queuedBytes > SEND_HIGH_WATER) {
        const drained = this.#channel.whenWritable()
          .then(() => link.queuedBytes > SEND_HIGH_WATER ? link.drain() : undefined)
          .then(() => "drained" as const);
        const caughtUp = await Promise.race([drained, ended, interrupted]);
        if (caughtUp === "interrupted") return caughtUp;
        if (caughtUp === "session-ended") {
          await this.#countUnsent();
          return caughtUp;
        }
      }
    }
  }

  /**
   * After the server ended the session, or after `/quit`: how many input
   * lines were left (piped input only). Reads on while lines keep coming, up
   * to the end of the input (or another `/quit`) or `--timeout`; an input
   * that stays quiet for a moment (an open but idle stdin) is not waited for.
   */
  async #countUnsent(): Promise<void> {
    if (this.#settings.interactive) return;
    const stop = performance.now() + this.#settings.timeoutMs;
    for (;;) {
      const left = Math.min(UNSENT_QUIET_MS, stop - performance.now());
      const next = await bounded(this.#nextLine(), { ms: Math.max(0, left) }).catch(() =>
        undefined
      );
      if (next === undefined) {
        // Still open: more lines may come that we cannot send.
        this.#unsentAtLeast = performance.now() >= stop;
        return;
      }
      if (next === null || ("text" in next && next.text === QUIT_COMMAND)) {
        this.#inputEnded = true;
        return;
      }
      this.#unsent++;
    }
  }

  /** The next input line; a read left pending by a race is picked up, not doubled. */
  #nextLine(): Promise<InputLine | null> {
    this.#reading ??= this.#input.next()
      .catch((error) => {
        this.#log.error(`Reading input failed: ${describeError(error)}`);
        return null;
      })
      .finally(() => this.#reading = undefined);
    return this.#reading;
  }

  /** Shows what the server sent. */
  #show(event: ChannelEvent): void {
    const log = this.#log;
    switch (event.type) {
      case "chat":
        log.line(`${event.line.from}: ${event.line.text}`);
        return;
      case "notice":
        log.info(event.text);
        return;
      case "ack":
        if (!this.#settings.interactive) {
          log.success(`${event.acked.note} acknowledged (seq ${event.acked.seq})`);
        }
        return;
    }
  }

  /** Says how the session ended and what was lost; returns the exit code. */
  #report(end: ChannelEnd, inputEnd: InputEnd): number {
    const log = this.#log;
    let failed = false;
    if (end.reason === "error") {
      const error = end.error;
      const said = error instanceof ProtocolError && error.fromPeer
        ? error.message.replace(/^peer reported an error: (peer )?/, "")
        : undefined;
      // A message the server addressed to the user ("You were removed …") is
      // shown as it is; any other reason is the server's, and says so.
      log.error(
        said === undefined
          ? sentence(describeError(error))
          : said.startsWith("You ")
          ? said
          : `The server dropped this session: ${said}`,
      );
      failed = true;
    } else if (end.reason === "closed") {
      log.error("Server closed the connection without bye");
      failed = true;
    } else if (end.reason === "bye" && inputEnd === "session-ended") {
      if (this.#settings.interactive || this.#inputEnded) {
        log.info("Server ended the session");
      } else {
        // A pipe still open: what it would have sent next was never sent.
        log.error("The server ended the session before the end of the input");
        failed = true;
      }
    }
    const pending = this.#channel.acks.pendingSeqs();
    if (pending.length > 0) {
      log.error(
        `${count(pending.length, "message")} not acknowledged by the server (seq ${
          pending.length <= 10
            ? pending.join(", ")
            : `${pending.slice(0, 9).join(", ")}, … ${pending.at(-1)}`
        })`,
      );
      failed = true;
    }
    this.#unsent += this.#channel.unsent;
    if (this.#unsent > 0) {
      const n = `${this.#unsentAtLeast ? "at least " : ""}${count(this.#unsent, "input line")}`;
      log.error(
        this.#unsentAfter === "quit"
          ? `${sentence(n)} after ${QUIT_COMMAND} not sent`
          : `${sentence(n)} not sent: the session ended first`,
      );
      failed = true;
    }
    if (this.#refused > 0) {
      log.error(`${count(this.#refused, "input line")} refused and not sent`);
      failed = true;
    }
    if (failed) return EXIT.FAILURE;
    log.info("Session closed");
    return EXIT.OK;
  }
}

/** Resolves with "interrupted" when `signal` aborts (never, without one). */
function abortPromise(signal?: AbortSignal): Promise<"interrupted"> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve("interrupted");
    signal?.addEventListener("abort", () => resolve("interrupted"), { once: true });
  });
}

/** The `--help` text, for the command that was run (`dhx-client` or `deno run --allow-net client.ts`). */
const usage = (command: string) =>
  `Usage: ${command} [options]

A DHX/1 chat client: agrees a key with the server by Diffie-Hellman, then sends
each line you type (or pipe in) encrypted, and shows what the others write.
/quit leaves, typed or piped (piped lines after it are not sent). At a
terminal "exit", Ctrl-D, or Ctrl-C on an empty line leave too (Ctrl-C twice: at
once); Ctrl-C on a half-typed line drops it. Piped, "exit" is an ordinary line.

Options:
  --host HOST          server address (default ${CLIENT_DEFAULTS.host}; IPv6 as ::1 or [::1])
  --port PORT          server port (default ${CLIENT_DEFAULTS.port})
  --name NAME          the name others see (sent as /name NAME after the handshake)
  --toy                accept the insecure toy/custom groups and the one-byte
                       XOR cipher; on those, private key a = 5 (the original's)
  --private-key A      with --toy: use private key A instead (on any group)
  --timeout SECS       bound on connecting, the handshake, each write, each
                       acknowledgement, and on leaving (default ${CLIENT_DEFAULTS.timeoutMs / 1000})
  --keepalive SECS     ping a server silent this long (once it has shown it
                       knows pings), leave if it stays silent as long again
                       (default ${CLIENT_DEFAULTS.keepaliveMs / 1000}; 0 turns it off)
  --max-line BYTES     longest line accepted from the server (default ${CLIENT_DEFAULTS.maxLine})
  --host-key SHA256:…  require exactly this server host key, even on first contact
  --known-hosts FILE   remember server host keys in FILE (lines "HOST:PORT
                       SHA256:…") instead of the default store (localStorage)
  --forget-host HOST:PORT
                       forget the host key remembered for HOST:PORT, and exit
  --password           the room's password, asked here (hidden)
  --password-file FILE the room's password: the first line of FILE
  --quiet              print only errors and what others write
  --verbose            show the math: every number, including secrets
  --wire               show every frame sent and received (what an eavesdropper
                       sees); with --toy, each line's XOR encryption step by step
  --version            print the version
  -h, --help           show this help

Commands (sent to the server): /name NAME, /who; start a line with // to send
one that begins with /. /quit is the client's own, never sent.

Exit codes: 0 ok, 1 failure (refused, unreachable, a line not sent or not
acknowledged, piped input the server ended the session before the end of),
2 usage error.`;

/** What `main` needs from the command line. */
export type ClientCommand = ParsedCommand<ClientOptions> & {
  /** `--known-hosts FILE`: host keys in FILE instead of the default store. */
  readonly knownHostsFile?: string;
  /** `--forget-host HOST:PORT`: only forget that entry. */
  readonly forgetHost?: string;
  /** `--password` / `--password-file`. */
  readonly password?: PasswordSource;
};

/**
 * Turns the command line into client options.
 *
 * @throws {UsageError} for unknown flags, bad values and flag conflicts
 */
export function parseClientArgs(args: string[]): ClientCommand {
  const flags = parseFlags(args, {
    timeout: { type: "string" },
    "host-key": { type: "string" },
    "known-hosts": { type: "string" },
    "forget-host": { type: "string" },
  });
  const pin = flags.string("host-key");
  if (pin !== undefined && !isHostKeyFingerprint(pin)) {
    throw new UsageError(
      `--host-key wants a fingerprint like SHA256:ZbYGc9btiEvwHCwiLYKtoHQPKawzVdapJcgfF/R6J7g, got ${
        JSON.stringify(pin)
      }`,
    );
  }
  const toy = flags.boolean("toy");
  if (flags.has("private-key") && !toy) {
    throw new UsageError("--private-key is a teaching flag and needs --toy");
  }
  const name = flags.string("name");
  const badName = name === undefined ? undefined : checkName(name);
  if (badName) throw new UsageError(`--name: ${badName}`);
  // The server's hello must fit: the longest of any group this client would accept.
  const least = toy
    ? longestHello()
    : Math.max(...SECURE_GROUP_NAMES.map((group) => longestHello(GROUPS[group])));
  const maxLine = flags.integer("max-line", 1, 64 * 1024 * 1024);
  if (maxLine !== undefined && maxLine < least) {
    throw new UsageError(
      `--max-line ${maxLine} cannot carry every hello this client accepts: use at least ${least}`,
    );
  }
  const options: ClientOptions = {
    host: flags.host("host"),
    port: flags.integer("port", 1, 65535),
    toy,
    name,
    privateKey: flags.bigint("private-key"),
    timeoutMs: flags.milliseconds("timeout"),
    keepaliveMs: flags.milliseconds("keepalive", true),
    maxLine,
    verbose: flags.boolean("verbose"),
    hostKey: pin,
    wire: flags.boolean("wire"),
  };
  return {
    options,
    quiet: flags.boolean("quiet"),
    help: flags.boolean("help"),
    knownHostsFile: flags.string("known-hosts"),
    forgetHost: flags.string("forget-host"),
    password: passwordSource(flags),
    version: flags.boolean("version"),
  };
}

/** The command-line entry point; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const output = new Output();
  const command = readCommand(args, parseClientArgs, usage, output, "client.ts");
  if (typeof command === "number") {
    await output.settle();
    return command;
  }
  const log = createLogger({ quiet: command.quiet, output });
  const knownHosts = new KnownHosts(
    command.knownHostsFile === undefined
      ? new LocalStorageStore(STORAGE_KEYS.knownHosts)
      : new FileStore(command.knownHostsFile),
  );
  let password: string | undefined;
  try {
    if (command.forgetHost !== undefined) {
      const removed = knownHosts.forget(command.forgetHost);
      if (removed) {
        log.success(
          `Forgot host key ${removed} of ${command.forgetHost} (in ${knownHosts.store.description})`,
        );
      } else {
        log.info(
          `No host key was remembered for ${command.forgetHost} in ${knownHosts.store.description}`,
        );
      }
      await output.settle();
      return EXIT.OK;
    }
    if (command.password) password = await readPassword(command.password, false);
  } catch (error) {
    log.error(
      sentence(describeError(error)) + (error instanceof UsageError ? " (see --help)" : ""),
    );
    await output.settle();
    return error instanceof UsageError ? EXIT.USAGE : EXIT.FAILURE;
  }
  // First Ctrl-C: leave as at the end of input; second: leave now.
  const leave = new AbortController();
  const force = new AbortController();
  const interrupt = () => (leave.signal.aborted ? force : leave).abort();
  Deno.addSignalListener("SIGINT", interrupt);
  try {
    return await runClient({
      ...command.options,
      knownHosts,
      password,
      logger: log,
      output,
      signal: leave.signal,
      forceSignal: force.signal,
      onInterrupt: interrupt,
    });
  } finally {
    Deno.removeSignalListener("SIGINT", interrupt);
    // Bounded: stdout that nobody reads (a pager) does not keep the client from ending.
    await output.settle();
  }
}

// Exit explicitly: a read pending on stdin would otherwise keep the process alive.
if (import.meta.main) Deno.exit(await main(Deno.args));
