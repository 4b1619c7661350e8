/**
 * dhx chat server: accepts clients, agrees a key with each over DHX/1 and
 * prints the messages they send.
 *
 * ```sh
 * deno run --allow-net server.ts            # ffdhe2048, AES-256-CTR + HMAC
 * deno run --allow-net server.ts --toy      # the original: p 23, g 5, b 3, xor8
 * ```
 *
 * Also a library: {@link startServer} runs a server in-process and returns a
 * handle (tests and the load benchmark use it).
 *
 * @module
 */

import {
  acceptKey,
  type CipherName,
  commonOptions,
  createLogger,
  createOffer,
  customGroup,
  DEFAULT_GROUP,
  DEFAULT_MAX_LINE,
  describeBigint,
  describeError,
  type DhGroup,
  EXIT,
  explainSession,
  GROUPS,
  isGroupName,
  LineConnection,
  type Logger,
  type ParsedCommand,
  parseFlags,
  printable,
  ProtocolError,
  SECURE_CIPHER,
  SECURE_GROUP_NAMES,
  type Session,
  TOY_CIPHER,
  UsageError,
  withTimeout,
} from "./dh.ts";

/** Options of {@link startServer}. */
export interface ServerOptions {
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Port (default 4444; 0 picks a free one). */
  port?: number;
  /** The group offered to every client (default ffdhe2048). */
  group?: DhGroup;
  /** The cipher offered (default aes-256-ctr+hmac-sha256). */
  cipher?: CipherName;
  /** A fixed private key (toy mode); a fresh random one per connection if unset. */
  privateKey?: bigint;
  /** Most simultaneous clients; one more is told so and closed (default 100). */
  maxClients?: number;
  /** Longest line accepted, in bytes (default 1 MiB). */
  maxLine?: number;
  /** Time a client has to send its key, in ms (default 10 s). */
  handshakeTimeoutMs?: number;
  /** Show every number (private keys, shared secrets) in full. */
  verbose?: boolean;
  /** Where to print (default: stdout/stderr). */
  logger?: Logger;
  /** Called with each decrypted message (tests, embedding). */
  onMessage?: (message: ReceivedMessage) => void;
}

/** A chat line as the server received it. */
export interface ReceivedMessage {
  /** "host:port" of the client. */
  readonly peer: string;
  /** Sequence number of the record. */
  readonly seq: number;
  /** The decrypted text. */
  readonly text: string;
}

/** A running server. */
export interface ServerHandle {
  /** Where it listens (the real port when 0 was asked). */
  readonly addr: Deno.NetAddr;
  /** Number of connections being served now. */
  readonly connections: number;
  /**
   * Stops accepting, sends `bye` to every client in a session, closes all
   * connections and resolves when every handler has finished.
   */
  close(): Promise<void>;
  /** Resolves when the server has stopped. */
  readonly finished: Promise<void>;
}

/** Defaults of the flags, shown by `--help`. */
export const SERVER_DEFAULTS = Object.freeze({
  host: "127.0.0.1",
  port: 4444,
  maxClients: 100,
  maxLine: DEFAULT_MAX_LINE,
  handshakeTimeoutMs: 10_000,
});

/** Pause after a failed accept (e.g. out of file descriptors) before trying again. */
const ACCEPT_RETRY_MS = 100;

/** The original's private key b. */
export const TOY_SERVER_PRIVATE_KEY = 3n;

/** One client connection and, once agreed, its session. */
interface Client {
  readonly link: LineConnection;
  session?: Session;
}

/**
 * Starts a DHX/1 server and returns at once with its handle.
 *
 * @throws {Deno.errors.AddrInUse} and other listen errors
 */
export function startServer(options: ServerOptions = {}): ServerHandle {
  const group = options.group ?? GROUPS[DEFAULT_GROUP];
  const cipher = options.cipher ?? SECURE_CIPHER;
  const maxClients = options.maxClients ?? SERVER_DEFAULTS.maxClients;
  const maxLine = options.maxLine ?? SERVER_DEFAULTS.maxLine;
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? SERVER_DEFAULTS.handshakeTimeoutMs;
  const log = options.logger ?? createLogger();
  // Toy numbers are the lesson: print them. Real secrets only with --verbose.
  const reveal = options.verbose === true || cipher === TOY_CIPHER;
  const listener = Deno.listen({
    hostname: options.host ?? SERVER_DEFAULTS.host,
    port: options.port ?? SERVER_DEFAULTS.port,
  });
  const clients = new Set<Client>();
  const handlers = new Set<Promise<void>>();
  let stopping = false;

  async function serve(client: Client): Promise<void> {
    const { link } = client;
    const peer = link.peer;
    try {
      const offer = createOffer(group, cipher, options.privateKey);
      await link.writeLine(offer.line);
      const keyLine = await withTimeout(
        link.readLine(),
        handshakeTimeoutMs,
        `no key within ${handshakeTimeoutMs / 1000} s (handshake timeout)`,
      );
      if (keyLine === null) {
        log.info(`${peer} disconnected before the handshake`);
        return;
      }
      const session = await acceptKey(offer, keyLine);
      client.session = session;
      if (!log.quiet) {
        const [clientKey, sharedKey] = await Promise.all([
          describeBigint(session.peerPublicKey, reveal),
          describeBigint(session.sharedSecret, reveal),
        ]);
        log.info(`Received client public key: ${clientKey}`);
        log.info(`Shared key calculated: ${sharedKey}`);
      }
      log.success(`Session with ${peer}: fingerprint ${session.fingerprint}`);
      if (options.verbose) {
        for (const step of explainSession(session)) log.info(`${peer}: ${step}`);
      }
      for (;;) {
        const line = await link.readLine();
        if (line === null) {
          if (!stopping) log.info(`${peer} disconnected without bye`);
          return;
        }
        const frame = await session.open(line);
        if (frame.type === "error") {
          log.error(`${peer}: ${frame.message}`);
          return;
        }
        if (frame.type === "bye") {
          log.info(`${peer} disconnected`);
          return;
        }
        log.success(`Message from ${peer}: ${printable(frame.text)}`);
        options.onMessage?.({ peer, seq: frame.seq, text: frame.text });
        await link.sendRecord(session, "ack", String(frame.seq));
      }
    } catch (error) {
      if (link.closed) return; // closed by us (shutdown): not the client's fault
      const reason = describeError(error);
      log.error(`${peer}: ${reason}`);
      if (error instanceof ProtocolError && !error.fromPeer) await link.fail(reason);
    } finally {
      link.close();
      clients.delete(client);
    }
  }

  async function acceptLoop(): Promise<void> {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (stopping || error instanceof Deno.errors.BadResource) return; // listener closed
        // E.g. out of file descriptors: say so, give connections time to end, go on.
        log.error(`Accepting a connection failed: ${describeError(error)}; retrying`);
        await new Promise((resolve) => setTimeout(resolve, ACCEPT_RETRY_MS));
        continue;
      }
      const link = new LineConnection(conn, maxLine);
      if (clients.size >= maxClients) {
        log.error(`${link.peer} refused: server full (${maxClients} clients)`);
        link.fail(`server full (${maxClients} clients); try again later`);
        continue;
      }
      log.success(`Connection from ${link.peer}`);
      const client: Client = { link };
      clients.add(client);
      const handler = serve(client);
      handlers.add(handler);
      handler.finally(() => handlers.delete(handler));
    }
  }

  const accepting = acceptLoop();
  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= (async () => {
      stopping = true;
      listener.close();
      await accepting;
      await Promise.all([...clients].map(async ({ link, session }) => {
        if (session) {
          await withTimeout(link.sendRecord(session, "bye", ""), 1000, "bye timed out")
            .catch(() => {});
        }
        link.close();
      }));
      await Promise.all(handlers);
    })();

  return {
    addr: listener.addr as Deno.NetAddr,
    get connections() {
      return clients.size;
    },
    close,
    get finished() {
      return accepting.then(() => closing ?? Promise.resolve());
    },
  };
}

const USAGE = `Usage: deno run --allow-net server.ts [options]

A DHX/1 chat server: agrees a key with each client by Diffie-Hellman and
prints what they send.

Options:
  --host HOST               address to listen on (default ${SERVER_DEFAULTS.host})
  --port PORT               port to listen on (default ${SERVER_DEFAULTS.port})
  --group NAME              group to offer (default ${DEFAULT_GROUP}): ffdhe2048,
                            ffdhe3072, ffdhe4096, ffdhe6144, ffdhe8192 (RFC 7919),
                            modp2048, modp3072, modp4096 (RFC 3526)
  --toy                     the original's insecure demo: p = 23, g = 5,
                            private key b = 3, one-byte XOR cipher (xor8)
  --prime P                 with --toy: use prime P instead of 23
  --generator G             with --toy: use generator G instead of 5
  --private-key B           with --toy: use private key B instead of 3
  --max-clients N           most simultaneous clients (default ${SERVER_DEFAULTS.maxClients})
  --max-line BYTES          longest line accepted (default ${SERVER_DEFAULTS.maxLine})
  --handshake-timeout SECS  time a client has to send its key (default ${
  SERVER_DEFAULTS.handshakeTimeoutMs / 1000
})
  --quiet                   print only errors and the listening line
  --verbose                 show the math: every number, including secrets
  -h, --help                show this help

Exit codes: 0 ok, 1 failure, 2 usage error.`;

/** What `main` needs from the command line. */
export type ServerCommand = ParsedCommand<ServerOptions>;

/**
 * Turns the command line into server options.
 *
 * @throws {UsageError} for unknown flags, bad values and flag conflicts
 */
export function parseServerArgs(args: string[]): ServerCommand {
  const flags = parseFlags(args, {
    group: { type: "string" },
    toy: { type: "boolean" },
    prime: { type: "string" },
    generator: { type: "string" },
    "private-key": { type: "string" },
    "max-clients": { type: "string" },
    "handshake-timeout": { type: "string" },
  });
  const toy = flags.boolean("toy");
  for (const name of ["prime", "generator", "private-key"]) {
    if (flags.has(name) && !toy) {
      throw new UsageError(`--${name} is a teaching flag and needs --toy`);
    }
  }
  const options: ServerOptions = {
    ...commonOptions(flags, 0),
    maxClients: flags.integer("max-clients", 1, 100_000),
    handshakeTimeoutMs: flags.milliseconds("handshake-timeout"),
  };
  if (toy) {
    if (flags.has("group")) {
      throw new UsageError("--group and --toy exclude each other (--toy uses p = 23, g = 5)");
    }
    try {
      options.group = customGroup(
        flags.bigint("prime") ?? GROUPS.toy.p,
        flags.bigint("generator") ?? GROUPS.toy.g,
      );
    } catch (error) {
      if (error instanceof UsageError) throw error;
      throw new UsageError(`bad --prime/--generator: ${(error as Error).message}`);
    }
    options.cipher = TOY_CIPHER;
    options.privateKey = flags.bigint("private-key") ?? TOY_SERVER_PRIVATE_KEY;
    if (options.privateKey < 1n || options.privateKey > options.group.p - 2n) {
      throw new UsageError(`--private-key must be from 1 to p - 2 = ${options.group.p - 2n}`);
    }
  } else if (flags.has("group")) {
    const name = flags.string("group")!;
    if (!isGroupName(name) || name === "toy") {
      throw new UsageError(
        `unknown group ${JSON.stringify(name)}; choose one of ${SECURE_GROUP_NAMES.join(", ")}${
          name === "toy" ? " (or --toy)" : ""
        }`,
      );
    }
    options.group = GROUPS[name];
  }
  return { options, quiet: flags.boolean("quiet"), help: flags.boolean("help") };
}

/** The command-line entry point; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const log0 = createLogger();
  let command: ServerCommand;
  try {
    command = parseServerArgs(args);
  } catch (error) {
    log0.error(`${describeError(error)} (see --help)`);
    return EXIT.USAGE;
  }
  if (command.help) {
    console.log(USAGE);
    return EXIT.OK;
  }
  const log = createLogger({ quiet: command.quiet });
  const group = command.options.group ?? GROUPS[DEFAULT_GROUP];
  let server: ServerHandle;
  try {
    server = startServer({ ...command.options, logger: log });
  } catch (error) {
    const where = `${command.options.host ?? SERVER_DEFAULTS.host}:${
      command.options.port ?? SERVER_DEFAULTS.port
    }`;
    log.error(`Cannot listen on ${where}: ${describeError(error)}`);
    return EXIT.FAILURE;
  }
  log.notice(`Server listening on ${server.addr.hostname}:${server.addr.port}`);
  if (group.name === "toy" || group.name === "custom") {
    log.info(`Shared parameters: p = ${group.p}, g = ${group.g} (insecure toy mode)`);
  } else {
    log.info(`Group ${group.name} (${group.source}, ${group.bits}-bit p, g = ${group.g})`);
  }
  const stop = () => {
    server.close();
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await server.finished;
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  log.notice("Server stopped");
  return EXIT.OK;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
