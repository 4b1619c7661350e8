/**
 * dhx chat client: connects to a server, agrees a key over DHX/1 and sends
 * each line typed (or piped) as an encrypted message.
 *
 * ```sh
 * deno run --allow-net client.ts                     # secure by default
 * printf 'a\nb\n' | deno run --allow-net client.ts   # send two lines, then leave
 * deno run --allow-net client.ts --toy               # the original's numbers
 * ```
 *
 * Also a library: {@link runClient} runs one session in-process.
 *
 * @module
 */

import {
  checkAck,
  commonOptions,
  createLogger,
  DEFAULT_MAX_LINE,
  describeBigint,
  describeError,
  EXIT,
  explainSession,
  LineConnection,
  LineReader,
  type Logger,
  type ParsedCommand,
  parseFlags,
  parseHello,
  printable,
  ProtocolError,
  respondToHello,
  type Session,
  UsageError,
  withTimeout,
} from "./dh.ts";

/** Options of {@link runClient}. */
export interface ClientOptions {
  /** Server address (default 127.0.0.1). */
  host?: string;
  /** Server port (default 4444). */
  port?: number;
  /** Accept toy/custom groups and xor8 (`--toy`); private key 5 unless set. */
  toy?: boolean;
  /** A fixed private key (only with `toy`). */
  privateKey?: bigint;
  /** Bound on connect, handshake and waiting for acks, in ms (default 10 s). */
  timeoutMs?: number;
  /** Longest line accepted from the server or stdin (default 1 MiB). */
  maxLine?: number;
  /** Show every number, including secrets. */
  verbose?: boolean;
  /** Lines to send (default: stdin). */
  input?: ReadableStream<Uint8Array>;
  /** Print a prompt before each line (default: stdin is a terminal). */
  interactive?: boolean;
  /** Where to print (default: stdout/stderr). */
  logger?: Logger;
  /** Aborting ends the session like end of input (Ctrl-C). */
  signal?: AbortSignal;
}

/** Defaults of the flags, shown by `--help`. */
export const CLIENT_DEFAULTS = Object.freeze({
  host: "127.0.0.1",
  port: 4444,
  timeoutMs: 10_000,
  maxLine: DEFAULT_MAX_LINE,
});

/** The original's private key a. */
export const TOY_CLIENT_PRIVATE_KEY = 5n;

/** Shown before each line typed at a terminal. */
const PROMPT = new TextEncoder().encode("> ");

/** The word that ends a session when typed alone on a line. */
export const EXIT_COMMAND = "exit";

/**
 * Runs one chat session: connect, handshake, send every input line, wait for
 * the acks, say `bye`. Resolves with the exit code (0 when every message was
 * acknowledged) and never throws for network or protocol trouble: those are
 * printed as one `[!]` line.
 */
export async function runClient(options: ClientOptions = {}): Promise<number> {
  const log = options.logger ?? createLogger();
  const host = options.host ?? CLIENT_DEFAULTS.host;
  const port = options.port ?? CLIENT_DEFAULTS.port;
  const timeoutMs = options.timeoutMs ?? CLIENT_DEFAULTS.timeoutMs;
  const toy = options.toy === true;
  const seconds = `${timeoutMs / 1000} s`;

  let conn: Deno.Conn;
  try {
    conn = await withTimeout(
      Deno.connect({ hostname: host, port }),
      timeoutMs,
      `timed out after ${seconds}`,
    );
  } catch (error) {
    const hint = error instanceof Deno.errors.ConnectionRefused ? "; is the server running?" : "";
    log.error(`Cannot connect to ${host}:${port}: ${describeError(error)}${hint}`);
    return EXIT.FAILURE;
  }
  const link = new LineConnection(conn, options.maxLine ?? CLIENT_DEFAULTS.maxLine);
  log.success(`Connected to ${host}:${port}`);

  let session: Session;
  try {
    const helloLine = await withTimeout(
      link.readLine(),
      timeoutMs,
      `no hello from the server within ${seconds}`,
    );
    if (helloLine === null) throw new ProtocolError("server closed the connection before hello");
    const hello = parseHello(helloLine, { insecure: toy });
    const reveal = options.verbose === true || toy;
    const { group } = hello;
    if (group.name === "toy" || group.name === "custom") {
      log.info(
        `Server shares p = ${group.p}, g = ${group.g} (${group.name}, cipher ${hello.cipher})`,
      );
    } else {
      log.info(
        `Server offers ${group.name} (${group.bits}-bit p, g = ${group.g}), ${hello.cipher}`,
      );
    }
    log.info(`Received server public key: ${await describeBigint(hello.publicKey, reveal)}`);
    const privateKey = options.privateKey ?? (toy ? TOY_CLIENT_PRIVATE_KEY : undefined);
    const response = await respondToHello(hello, privateKey).catch((error) => {
      if (!(error instanceof RangeError)) throw error; // only --private-key can be out of range
      throw new ProtocolError(`cannot use this private key: ${error.message}`);
    });
    session = response.session;
    log.info(`Sending public key: ${await describeBigint(session.publicKey, reveal)}`);
    await link.writeLine(response.keyLine);
    log.info(`Shared key calculated: ${await describeBigint(session.sharedSecret, reveal)}`);
    log.success(`Session established; fingerprint ${session.fingerprint}`);
    if (options.verbose) { for (const step of explainSession(session)) log.info(step); }
    if (toy) {
      log.error("Toy mode: these numbers can be broken by hand; do not send secrets");
    } else {
      log.info("Compare the fingerprint with the server's: equal means no one sits in between");
    }
  } catch (error) {
    log.error(describeError(error));
    if (error instanceof ProtocolError && !error.fromPeer) await link.fail(error.message);
    link.close();
    return EXIT.FAILURE;
  }
  return await chat(link, session, options, log, timeoutMs);
}

/** The message phase: stdin → `msg` records, `ack` records → confirmations. */
async function chat(
  link: LineConnection,
  session: Session,
  options: ClientOptions,
  log: Logger,
  timeoutMs: number,
): Promise<number> {
  const pending: number[] = []; // seqs sent and not yet acknowledged, oldest first
  let failure: string | undefined;
  let serverLeft = false;
  let allAcked: (() => void) | undefined;
  let stopInput: () => void = () => {};
  const inputStopped = new Promise<null>((resolve) => stopInput = () => resolve(null));

  const receiving = (async () => {
    try {
      for (;;) {
        const line = await link.readLine();
        if (line === null) {
          if (!link.closed) throw new ProtocolError("server closed the connection");
          return;
        }
        const frame = await session.open(line);
        if (frame.type === "error") throw new ProtocolError(frame.message, true);
        if (frame.type === "bye") {
          serverLeft = true;
          log.info("Server ended the session");
          return;
        }
        if (frame.type === "msg") {
          log.info(`Server says: ${printable(frame.text)}`);
          continue;
        }
        checkAck(frame.text, pending[0]);
        pending.shift();
        log.success(`Message ${frame.text} acknowledged`);
        if (pending.length === 0) allAcked?.();
      }
    } catch (error) {
      if (link.closed) return;
      failure = describeError(error);
      if (error instanceof ProtocolError && !error.fromPeer) await link.fail(failure);
    } finally {
      stopInput();
      allAcked?.();
    }
  })();

  /** Resolves when every sent message is acknowledged, the session failed, or the timeout passed. */
  const acksDrained = async () => {
    if (failure || serverLeft || pending.length === 0) return;
    const acked = new Promise<void>((resolve) => allAcked = resolve);
    await withTimeout(acked, timeoutMs, "ack timeout").catch(() => {});
  };
  const interactive = options.interactive ?? Deno.stdin.isTerminal();
  const input = new LineReader(options.input ?? Deno.stdin.readable, {
    maxLine: options.maxLine ?? CLIENT_DEFAULTS.maxLine,
    allowUnterminated: true,
  });
  const onAbort = () => stopInput();
  options.signal?.addEventListener("abort", onAbort);
  if (options.signal?.aborted) stopInput();
  if (interactive) log.info(`Type a message and press Enter; "exit" or Ctrl-D to leave.`);
  try {
    for (;;) {
      if (interactive) await Deno.stdout.write(PROMPT);
      const text = await Promise.race([input.readLine(), inputStopped]);
      if (text === null && interactive) console.log(); // end the prompt's line after Ctrl-D/C
      if (text === null || text === EXIT_COMMAND) break;
      pending.push(session.nextSendSeq);
      await link.sendRecord(session, "msg", text);
      // At a terminal, show the acknowledgement before the next prompt.
      if (interactive) await acksDrained();
    }
  } catch (error) {
    if (!failure && !serverLeft) failure = describeError(error);
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    input.cancel();
  }

  await acksDrained();
  if (!failure && !serverLeft) {
    await link.sendRecord(session, "bye", "").catch(() => {});
  }
  link.close();
  await receiving;
  if (failure) log.error(failure);
  if (pending.length > 0) {
    log.error(
      `${pending.length} message(s) not acknowledged by the server (seq ${pending.join(", ")})`,
    );
    return EXIT.FAILURE;
  }
  if (failure) return EXIT.FAILURE;
  log.info("Session closed");
  return EXIT.OK;
}

const USAGE = `Usage: deno run --allow-net client.ts [options]

A DHX/1 chat client: agrees a key with the server by Diffie-Hellman, then sends
each line you type (or pipe in) encrypted. "exit", Ctrl-D or Ctrl-C leaves.

Options:
  --host HOST          server address (default ${CLIENT_DEFAULTS.host})
  --port PORT          server port (default ${CLIENT_DEFAULTS.port})
  --toy                accept the insecure toy/custom groups and the one-byte
                       XOR cipher; private key a = 5 (the original's demo)
  --private-key A      with --toy: use private key A instead of 5
  --timeout SECS       bound on connecting, the handshake and waiting for
                       acknowledgements (default ${CLIENT_DEFAULTS.timeoutMs / 1000})
  --max-line BYTES     longest line accepted (default ${CLIENT_DEFAULTS.maxLine})
  --quiet              print only errors
  --verbose            show the math: every number, including secrets
  -h, --help           show this help

Exit codes: 0 ok, 1 failure (refused, unreachable, unacknowledged), 2 usage.`;

/** What `main` needs from the command line. */
export type ClientCommand = ParsedCommand<ClientOptions>;

/**
 * Turns the command line into client options.
 *
 * @throws {UsageError} for unknown flags, bad values and flag conflicts
 */
export function parseClientArgs(args: string[]): ClientCommand {
  const flags = parseFlags(args, {
    toy: { type: "boolean" },
    "private-key": { type: "string" },
    timeout: { type: "string" },
  });
  if (flags.has("private-key") && !flags.boolean("toy")) {
    throw new UsageError("--private-key is a teaching flag and needs --toy");
  }
  const options: ClientOptions = {
    ...commonOptions(flags, 1),
    toy: flags.boolean("toy"),
    privateKey: flags.bigint("private-key"),
    timeoutMs: flags.milliseconds("timeout"),
  };
  return { options, quiet: flags.boolean("quiet"), help: flags.boolean("help") };
}

/** The command-line entry point; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let command: ClientCommand;
  try {
    command = parseClientArgs(args);
  } catch (error) {
    createLogger().error(`${describeError(error)} (see --help)`);
    return EXIT.USAGE;
  }
  if (command.help) {
    console.log(USAGE);
    return EXIT.OK;
  }
  const controller = new AbortController();
  const abort = () => controller.abort();
  Deno.addSignalListener("SIGINT", abort);
  try {
    return await runClient({
      ...command.options,
      logger: createLogger({ quiet: command.quiet }),
      signal: controller.signal,
    });
  } finally {
    Deno.removeSignalListener("SIGINT", abort);
  }
}

// Exit explicitly: a read pending on stdin would otherwise keep the process alive.
if (import.meta.main) Deno.exit(await main(Deno.args));
