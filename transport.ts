/**
 * dhx transport: DHX/1 over a connection.
 *
 * Where `dh.ts` computes, this module moves bytes. In layers, each using only
 * what is above it:
 *
 * 1. connections — a TCP socket or any readable/writable pair
 *    ({@link memoryPipe} makes one in memory, for tests and embedding);
 * 2. framing — {@link LineReader}, the one bounded line reader (sockets and
 *    stdin alike), and {@link LineConnection}, which writes through one queue
 *    with bounds on its size and on the time each write may take;
 * 3. time — {@link bounded}: a deadline and a cancel signal on any wait;
 * 4. handshakes — {@link serverHandshake} and {@link clientHandshake};
 * 5. the channel — {@link Channel}: records after the handshake, with acks
 *    both ways ({@link AckTracker}), ping/pong, keepalive and `bye`.
 *
 * @module
 */

import {
  acceptKey,
  ACKED_TYPES,
  type ChatLine,
  type CipherName,
  createOffer,
  type DhGroup,
  encodeError,
  type Hello,
  isTeachingGroup,
  MAX_WIRE_DIGITS,
  parseChat,
  parseHello,
  PROTOCOL,
  ProtocolError,
  respondToHello,
  SECURE_CIPHER,
  type Session,
} from "./dh.ts";

const encoder = new TextEncoder();
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// ───────────────────────────────────────────────────────────────────────────
// 1. Connections
// ───────────────────────────────────────────────────────────────────────────

/** Any connection with a readable and a writable side (a TCP socket is one). */
export interface Duplex {
  /** Bytes from the peer. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Bytes to the peer. */
  readonly writable: WritableStream<Uint8Array>;
  /** Releases the connection, if it needs more than closing both streams. */
  close?(): void;
}

/** What the transport reads and writes: a Deno socket or any {@link Duplex}. */
export type Connection = Deno.Conn | Duplex;

/** Where the scripts meet by default: the original's address. */
export const DEFAULT_HOST = "127.0.0.1";

/** The original dhx's port. */
export const DEFAULT_PORT = 4444;

/**
 * "host:port" as people and URLs write it: an IPv6 address in brackets
 * (`[::1]:45142`), anything else as it is (`127.0.0.1:45142`).
 */
export function formatAddress(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

/** The three operations the framing needs, whatever the connection. */
interface ByteChannel {
  read(): Promise<Uint8Array | null>;
  write(bytes: Uint8Array): Promise<void>;
  close(): void;
}

/**
 * Bytes asked for per socket read: little while a connection idles (an idle
 * session holds its buffer for ever, in a pending read), much once reads
 * fill the little buffer (pipelined records, long lines).
 */
const SOCKET_READ_IDLE = 2048;
const SOCKET_READ_BUSY = 65_536;

function isSocket(conn: Connection): conn is Deno.Conn {
  return typeof (conn as Deno.Conn).read === "function";
}

/**
 * A socket is read with `conn.read` rather than `conn.readable`: the stream
 * closes the socket at the peer's end of input, and a peer that half-closes
 * (`nc -N`) must still receive our `error` frame.
 */
function socketChannel(conn: Deno.Conn): ByteChannel {
  let buffer = new Uint8Array(SOCKET_READ_IDLE);
  return {
    async read() {
      const n = await conn.read(buffer);
      if (n === null) return null;
      const chunk = buffer.slice(0, n);
      if (n === buffer.length && n < SOCKET_READ_BUSY) buffer = new Uint8Array(SOCKET_READ_BUSY);
      else if (n < SOCKET_READ_IDLE && buffer.length > SOCKET_READ_IDLE) {
        buffer = new Uint8Array(SOCKET_READ_IDLE);
      }
      return chunk;
    },
    async write(bytes) {
      for (let done = 0; done < bytes.length;) done += await conn.write(bytes.subarray(done));
    },
    close: () => conn.close(),
  };
}

function duplexChannel(duplex: Duplex): ByteChannel {
  const reader = duplex.readable.getReader();
  const writer = duplex.writable.getWriter();
  return {
    async read() {
      const { value, done } = await reader.read();
      return done ? null : value;
    },
    write: (bytes) => writer.write(bytes),
    close() {
      writer.close().catch(() => {});
      reader.cancel().catch(() => {});
      duplex.close?.();
    },
  };
}

/**
 * Two connected in-memory {@link Duplex} ends: what one writes, the other
 * reads. Writes wait until the other end reads (no buffering), as a socket
 * whose peer stops reading eventually does. Closing an end ends the other's
 * input.
 */
export function memoryPipe(): [Duplex, Duplex] {
  const aToB = new TransformStream<Uint8Array, Uint8Array>();
  const bToA = new TransformStream<Uint8Array, Uint8Array>();
  return [
    { readable: bToA.readable, writable: aToB.writable },
    { readable: aToB.readable, writable: bToA.writable },
  ];
}

// ───────────────────────────────────────────────────────────────────────────
// 2. Framing
// ───────────────────────────────────────────────────────────────────────────

/** Default longest line, LF excluded: 1 MiB. */
export const DEFAULT_MAX_LINE = 1_048_576;

/**
 * The longest hello line a group can produce (its public key as long as p),
 * or, without a group, the longest any acceptable hello can be (a custom
 * 8192-bit group whose g is as long as p): the least line limit that works.
 */
export function longestHello(group?: DhGroup): number {
  const digits = group?.pDecimal.length ?? MAX_WIRE_DIGITS;
  return JSON.stringify({
    type: "hello",
    protocol: PROTOCOL,
    group: group?.name ?? "ffdhe8192",
    p: "9".repeat(digits),
    g: group ? group.g.toString() : "9".repeat(digits),
    publicKey: "9".repeat(digits),
    cipher: SECURE_CIPHER,
  }).length;
}

/**
 * The longest text whose record still fits a line of `maxLine` bytes (the
 * receiver's limit): base64 grows data by 4/3, and the JSON around it, with
 * a tag and a seq of up to 16 digits, takes the rest.
 */
export function maxRecordText(maxLine: number): number {
  const frame = JSON.stringify({ type: "notice", seq: 1e15, data: "", tag: "x".repeat(44) });
  return Math.max(0, Math.floor((maxLine - frame.length) / 4) * 3);
}

/**
 * A line that was refused on its own: too long, or not UTF-8. From a socket
 * it ends the connection; from stdin (`skipBadLines`) only that line is lost.
 */
export class LineError extends ProtocolError {
  /**
   * Creates the error.
   *
   * @param message why the line was refused
   */
  constructor(message: string) {
    super(message);
    this.name = "LineError";
  }
}

/** Options of {@link LineReader}. */
export interface LineReaderOptions {
  /** Longest line in bytes, LF (and a CR before it) excluded (default 1 MiB). */
  readonly maxLine?: number;
  /**
   * Whether bytes after the last LF at end of input form a final line (stdin:
   * yes) or a protocol error (a socket: the peer vanished mid-frame).
   */
  readonly allowUnterminated?: boolean;
  /**
   * Stdin: an overlong or non-UTF-8 line throws a {@link LineError} and is
   * skipped (an overlong one is discarded as it arrives, never buffered);
   * the next call goes on with the next line. Otherwise every error is final.
   */
  readonly skipBadLines?: boolean;
  /** A line that has begun must end within this many ms (default: no bound). */
  readonly lineTimeoutMs?: number;
}

const EMPTY = new Uint8Array(0);

/**
 * Reads LF-terminated UTF-8 lines from a byte source: a socket's, or
 * `Deno.stdin.readable`. Lines come without LF and without a CR right before
 * it. A line over `maxLine` bytes fails as soon as the excess arrives: the
 * reader never holds more than `maxLine` + 1 bytes of a line plus the chunk
 * being scanned.
 */
export class LineReader {
  readonly #read: () => Promise<Uint8Array | null>;
  readonly #cancel: () => void;
  readonly #maxLine: number;
  readonly #allowUnterminated: boolean;
  readonly #skipBadLines: boolean;
  readonly #lineTimeoutMs: number;
  #chunk: Uint8Array = EMPTY;
  #partial: Uint8Array[] = []; // the start of a line whose LF has not arrived
  #partialLength = 0;
  #partialSince = 0; // when the partial line began (performance.now())
  #discarding = false; // skipping the rest of an overlong line (skipBadLines)
  #done = false;
  #error: unknown = undefined;

  /**
   * Creates a reader.
   *
   * @param source a byte stream, or a function returning the next chunk (null at the end)
   * @param options limits and the stdin behaviour
   */
  constructor(
    source: ReadableStream<Uint8Array> | (() => Promise<Uint8Array | null>),
    options: LineReaderOptions = {},
  ) {
    if (typeof source === "function") {
      this.#read = source;
      this.#cancel = () => {};
    } else {
      const reader = source.getReader();
      this.#read = async () => {
        const { value, done } = await reader.read();
        return done ? null : value;
      };
      this.#cancel = () => void reader.cancel().catch(() => {});
    }
    this.#maxLine = options.maxLine ?? DEFAULT_MAX_LINE;
    this.#allowUnterminated = options.allowUnterminated ?? false;
    this.#skipBadLines = options.skipBadLines ?? false;
    this.#lineTimeoutMs = options.lineTimeoutMs ?? 0;
  }

  /**
   * The next line, or `null` at the end of input.
   *
   * @throws {ProtocolError} for an overlong line, invalid UTF-8, a line not
   *   finished in time, or input that ends mid-line (unless
   *   `allowUnterminated`). Such an error is final unless it is a
   *   {@link LineError} and `skipBadLines` is set.
   */
  async readLine(): Promise<string | null> {
    for (;;) {
      const lines = await this.#next(1);
      if (lines === null || lines.length > 0) return lines?.[0] ?? null;
    }
  }

  /**
   * Every complete line available now (at least one), or `null` at the end of
   * input. A socket's reader hands out a whole chunk's lines at once, so that
   * their answers can leave in one write.
   *
   * @throws {ProtocolError} as {@link readLine} does
   */
  async readLines(): Promise<string[] | null> {
    for (;;) {
      const lines = await this.#next(Infinity);
      if (lines === null || lines.length > 0) return lines;
    }
  }

  /** Stops reading and releases the source. */
  cancel(): void {
    this.#done = true;
    this.#cancel();
  }

  /** Up to `limit` lines from what is buffered, reading once if there are none. */
  async #next(limit: number): Promise<string[] | null> {
    if (this.#error) throw this.#error;
    try {
      const lines: string[] = [];
      while (lines.length < limit) {
        const line = this.#take();
        if (line === undefined) break;
        lines.push(line);
      }
      if (lines.length > 0) return lines;
      if (this.#done) return this.#finish();
      const chunk = await this.#fill();
      if (chunk === null) this.#done = true;
      else this.#chunk = chunk;
      return lines;
    } catch (error) {
      if (!(this.#skipBadLines && error instanceof LineError)) this.#error = error;
      throw error;
    }
  }

  /** The next complete line in the buffer, or undefined if it has none. */
  #take(): string | undefined {
    const lf = this.#chunk.indexOf(0x0a);
    if (lf < 0) {
      this.#keep(this.#chunk);
      this.#chunk = EMPTY;
      return undefined;
    }
    const tail = this.#chunk.subarray(0, lf);
    this.#chunk = this.#chunk.subarray(lf + 1);
    if (this.#discarding) {
      this.#discarding = false;
      throw new LineError(`line longer than ${this.#maxLine} bytes`);
    }
    return this.#decode(tail);
  }

  /** The line made of the partial start plus `tail`, checked and decoded. */
  #decode(tail: Uint8Array): string {
    let bytes = tail;
    if (this.#partialLength > 0) {
      this.#keep(tail);
      if (this.#discarding) {
        // The tail made the line too long (skipBadLines): it ends here.
        this.#discarding = false;
        throw new LineError(`line longer than ${this.#maxLine} bytes`);
      }
      bytes = new Uint8Array(this.#partialLength);
      let offset = 0;
      for (const part of this.#partial) {
        bytes.set(part, offset);
        offset += part.length;
      }
      this.#partial = [];
      this.#partialLength = 0;
    }
    if (bytes.at(-1) === 0x0d) bytes = bytes.subarray(0, -1);
    if (bytes.length > this.#maxLine) {
      throw new LineError(`line longer than ${this.#maxLine} bytes`);
    }
    try {
      return utf8.decode(bytes);
    } catch {
      throw new LineError("line is not valid UTF-8");
    }
  }

  /** Keeps the start of an unfinished line, refusing it once it is too long. */
  #keep(part: Uint8Array): void {
    if (part.length === 0 || this.#discarding) return;
    if (this.#partialLength === 0) this.#partialSince = performance.now();
    // One byte of slack: a CR that may still turn out to precede the LF.
    if (this.#partialLength + part.length > this.#maxLine + 1) {
      this.#partial = [];
      this.#partialLength = 0;
      if (this.#skipBadLines) {
        this.#discarding = true;
        return;
      }
      this.#chunk = EMPTY;
      throw new LineError(`line longer than ${this.#maxLine} bytes`);
    }
    this.#partial.push(part.slice());
    this.#partialLength += part.length;
  }

  /** The next chunk; a started line must be finished within `lineTimeoutMs`. */
  #fill(): Promise<Uint8Array | null> {
    const read = this.#read();
    if (this.#lineTimeoutMs <= 0 || this.#partialLength === 0) return read;
    const left = this.#partialSince + this.#lineTimeoutMs - performance.now();
    return bounded(read, {
      ms: Math.max(0, left),
      timeout: `line not finished within ${this.#lineTimeoutMs / 1000} s`,
    });
  }

  /** At the end of input: the unterminated last line, or null. */
  #finish(): string[] | null {
    if (this.#discarding) {
      this.#discarding = false;
      throw new LineError(`line longer than ${this.#maxLine} bytes`);
    }
    if (this.#partialLength === 0) return null;
    if (!this.#allowUnterminated) {
      this.#partial = [];
      this.#partialLength = 0;
      throw new ProtocolError("connection closed in the middle of a line");
    }
    return [this.#decode(EMPTY)];
  }
}

/** Options of {@link LineConnection}. */
export interface LineConnectionOptions {
  /** Longest incoming line (default 1 MiB). */
  readonly maxLine?: number;
  /** A started incoming line must end within this many ms (default: no bound). */
  readonly lineTimeoutMs?: number;
  /** Each write must finish within this many ms, or the connection fails (default 10 s). */
  readonly writeTimeoutMs?: number;
  /** Most lines waiting to be written (default 4096). */
  readonly maxQueuedLines?: number;
  /** Most bytes waiting to be written, the one in flight included (default 8 MiB). */
  readonly maxQueuedBytes?: number;
  /** How to name the peer in messages (default: the socket's remote "host:port"). */
  readonly peer?: string;
  /** Called with every line queued to be sent and every line read (the `--wire` view). */
  readonly onLine?: (direction: "sent" | "received", line: string) => void;
}

/** Defaults of {@link LineConnectionOptions}. */
export const LINK_DEFAULTS: Readonly<
  { writeTimeoutMs: number; maxQueuedLines: number; maxQueuedBytes: number }
> = Object.freeze({
  writeTimeoutMs: 10_000,
  maxQueuedLines: 4096,
  maxQueuedBytes: 8 * 1024 * 1024,
});

/**
 * A DHX/1 connection: a {@link LineReader} on its input and one queue on its
 * output. Lines queued in the same turn of the event loop (all the acks for a
 * chunk of pipelined messages, say) leave in one write. The queue is bounded
 * in lines and bytes, and each write in time: a peer that stops reading
 * fails the connection instead of growing our memory.
 */
export class LineConnection {
  /** How the peer is named in messages: "host:port" ("[::1]:port" for IPv6). */
  readonly peer: string;
  /** The peer's address without the port (for an in-memory pipe: its name, or "memory"). */
  readonly hostname: string;
  readonly #io: ByteChannel;
  readonly #reader: LineReader;
  readonly #writeTimeoutMs: number;
  readonly #maxQueuedLines: number;
  readonly #maxQueuedBytes: number;
  #queue: string[] = [];
  #queuedUnits = 0; // size of #queue: UTF-16 units plus one per LF (records are ASCII)
  #inflightUnits = 0; // size of the batch being written
  #writing: Promise<void> | undefined;
  #sealed = false; // a last line (bye, error) was queued: nothing may follow
  #closed = false;
  #failure: ProtocolError | undefined;
  readonly #onLine: LineConnectionOptions["onLine"];

  /**
   * Wraps a connection.
   *
   * @param conn an accepted or connected socket, or any {@link Duplex}
   * @param options limits and the peer's name
   */
  constructor(conn: Connection, options: LineConnectionOptions = {}) {
    if (isSocket(conn)) {
      const tcp = conn as Deno.TcpConn;
      // Records are small and answered one by one: Nagle's delay only hurts.
      tcp.setNoDelay?.(true);
      // Lets the kernel notice a peer that vanished without a word.
      tcp.setKeepAlive?.(true);
      const addr = conn.remoteAddr as Deno.NetAddr;
      this.hostname = addr.hostname;
      this.peer = options.peer ?? formatAddress(addr.hostname, addr.port);
      this.#io = socketChannel(conn);
    } else {
      // An in-memory connection has no address: its name stands for one.
      this.hostname = options.peer ?? "memory";
      this.peer = options.peer ?? "memory";
      this.#io = duplexChannel(conn);
    }
    this.#reader = new LineReader(() => this.#io.read(), {
      maxLine: options.maxLine,
      lineTimeoutMs: options.lineTimeoutMs,
    });
    this.#writeTimeoutMs = options.writeTimeoutMs ?? LINK_DEFAULTS.writeTimeoutMs;
    this.#maxQueuedLines = options.maxQueuedLines ?? LINK_DEFAULTS.maxQueuedLines;
    this.#maxQueuedBytes = options.maxQueuedBytes ?? LINK_DEFAULTS.maxQueuedBytes;
    this.#onLine = options.onLine;
  }

  /** The next line from the peer, or `null` when it closed cleanly. */
  async readLine(): Promise<string | null> {
    const line = await this.#guard(this.#reader.readLine());
    if (line !== null) this.#onLine?.("received", line);
    return line;
  }

  /** Every line that arrived together (at least one), or `null` at the end. */
  async readLines(): Promise<string[] | null> {
    const lines = await this.#guard(this.#reader.readLines());
    if (lines !== null && this.#onLine) {
      for (const line of lines) {
        this.#onLine("received", line);
      }
    }
    return lines;
  }

  /**
   * Queues `line` (LF added) behind everything queued before it. Never
   * blocks; a queue over its bounds fails the connection. With `last`,
   * nothing queued afterwards is sent (for `bye` and `error`).
   */
  send(line: string, last = false): void {
    if (this.#sealed || this.#closed) return;
    this.#onLine?.("sent", line);
    this.#sealed = last;
    this.#queue.push(line);
    this.#queuedUnits += line.length + 1;
    if (this.#queue.length > this.#maxQueuedLines || this.queuedBytes > this.#maxQueuedBytes) {
      const reason =
        `peer too far behind: ${this.#queue.length} lines (${this.queuedBytes} bytes) unsent`;
      this.#failure ??= new ProtocolError(reason);
      // Best effort: the error frame follows the write in flight, if that ever ends.
      this.#queue = [encodeError(reason)];
      this.#queuedUnits = this.#queue[0].length + 1;
      this.#sealed = true;
      bounded(this.drain(), { ms: 1000 }).catch(() => {}).finally(() => this.close());
    }
    // Lines queued in one turn leave together: the pump starts after the
    // current synchronous work.
    this.#writing ??= Promise.resolve().then(() => this.#pump());
  }

  /** Bytes queued and not yet written (the write in flight included). */
  get queuedBytes(): number {
    return this.#queuedUnits + this.#inflightUnits;
  }

  /** Resolves when everything queued so far has been written (or the connection failed). */
  async drain(): Promise<void> {
    while (this.#writing) await this.#writing;
  }

  /** Why the connection failed (write timeout, queue overflow, …), if it did. */
  get failure(): ProtocolError | undefined {
    return this.#failure;
  }

  /**
   * Best effort: sends an `error` frame after what is queued, waits at most
   * 1 s for it to leave, then closes. Never throws.
   */
  async fail(message: string): Promise<void> {
    if (this.#closed) return;
    this.send(encodeError(message), true);
    await bounded(this.drain(), { ms: 1000 }).catch(() => {});
    this.close();
  }

  /** Closes the connection (idempotent): pending reads end, queued lines are dropped. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    this.#queuedUnits = 0;
    this.#inflightUnits = 0;
    try {
      this.#io.close();
    } catch {
      // already closed by the peer
    }
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Writes the queue, a batch per write, until it is empty. */
  async #pump(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const batch = this.#queue;
        this.#queue = [];
        this.#inflightUnits = this.#queuedUnits;
        this.#queuedUnits = 0;
        const bytes = encoder.encode(
          batch.length === 1 ? batch[0] + "\n" : batch.join("\n") + "\n",
        );
        await bounded(this.#io.write(bytes), {
          ms: this.#writeTimeoutMs,
          timeout: `write timed out after ${
            this.#writeTimeoutMs / 1000
          } s: the peer is not reading`,
        });
        this.#inflightUnits = 0;
      }
    } catch (error) {
      // A stuck write cannot carry an error frame either: close at once.
      const reason = error instanceof ProtocolError
        ? error.message
        : "connection lost while writing";
      this.#failure ??= new ProtocolError(reason);
      this.close();
    } finally {
      this.#writing = undefined;
    }
  }

  /** A read that reports our own failure rather than the socket error it caused. */
  async #guard<T>(read: Promise<T | null>): Promise<T | null> {
    let result: T | null;
    try {
      result = await read;
    } catch (error) {
      throw this.#failure ?? error;
    }
    // A failure closes the connection, which some connections report as a clean end.
    if (result === null && this.#failure) throw this.#failure;
    return result;
  }
}

// ───────────────────────────────────────────────────────────────────────────
// 3. Time
// ───────────────────────────────────────────────────────────────────────────

/** Limits of {@link bounded}. */
export interface Bounds {
  /** Deadline in ms (none if undefined). */
  readonly ms?: number;
  /** Message of the {@link ProtocolError} thrown at the deadline. */
  readonly timeout?: string;
  /** A signal that ends the wait at once. */
  readonly signal?: AbortSignal;
  /** Message of the {@link ProtocolError} thrown when `signal` aborts. */
  readonly aborted?: string;
}

/**
 * `promise`, unless the deadline passes or the signal aborts first; then a
 * {@link ProtocolError} with the given message. The loser's late failure is
 * swallowed.
 *
 * @throws {ProtocolError} at the deadline or on abort
 */
export function bounded<T>(promise: Promise<T>, bounds: Bounds): Promise<T> {
  const { ms, signal } = bounds;
  if (ms === undefined && signal === undefined) return promise;
  promise.catch(() => {});
  return new Promise<T>((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stop = (message: string) => () => {
      cleanup();
      reject(new ProtocolError(message));
    };
    const onAbort = stop(bounds.aborted ?? "interrupted");
    const cleanup = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    if (ms !== undefined) timer = setTimeout(stop(bounds.timeout ?? "timed out"), ms);
    promise.then(
      (value) => (cleanup(), resolve(value)),
      (error) => (cleanup(), reject(error)),
    );
  });
}

// ───────────────────────────────────────────────────────────────────────────
// 4. Handshakes
// ───────────────────────────────────────────────────────────────────────────

/** Options of {@link serverHandshake}. */
export interface ServerHandshakeOptions {
  /** The group offered. */
  readonly group: DhGroup;
  /** The cipher offered. */
  readonly cipher: CipherName;
  /** A fixed private key (toy mode); fresh and random when omitted. */
  readonly privateKey?: bigint;
  /** Time the client has to send its key, in ms. */
  readonly timeoutMs: number;
}

/**
 * Server side of the handshake: sends the hello, waits (bounded) for the
 * client's key line and derives the session.
 *
 * @returns the session, or `null` if the client left before sending its key
 * @throws {ProtocolError} for a bad key frame, a timeout or a broken line
 */
export async function serverHandshake(
  link: LineConnection,
  options: ServerHandshakeOptions,
): Promise<Session | null> {
  const offer = createOffer(options.group, options.cipher, options.privateKey);
  link.send(offer.line);
  const keyLine = await bounded(link.readLine(), {
    ms: options.timeoutMs,
    timeout: `no key within ${options.timeoutMs / 1000} s (handshake timeout)`,
  });
  return keyLine === null ? null : acceptKey(offer, keyLine);
}

/** Options of {@link clientHandshake}. */
export interface ClientHandshakeOptions {
  /** Accept toy and custom groups and xor8 (`--toy`). */
  readonly insecure: boolean;
  /** A private key given explicitly (`--private-key`): used whatever the group. */
  readonly privateKey?: bigint;
  /**
   * The teaching key (the original's a = 5): used only when the server offers
   * a toy or custom group, so that a `--toy` client facing a real group still
   * draws a fresh random key.
   */
  readonly teachingKey?: bigint;
  /** Time the server has to send its hello, in ms. */
  readonly timeoutMs: number;
  /** Ends the wait at once (Ctrl-C). */
  readonly signal?: AbortSignal;
}

/** What the client learns in the handshake. */
export interface ClientHandshake {
  /** The server's hello, as judged. */
  readonly hello: Hello;
  /** The established session. */
  readonly session: Session;
}

/**
 * Client side of the handshake: waits (bounded, abortable) for the hello,
 * judges it ({@link parseHello} refuses before any key is sent), then sends
 * the key line.
 *
 * @throws {ProtocolError} with a reason a user can act on
 */
export async function clientHandshake(
  link: LineConnection,
  options: ClientHandshakeOptions,
): Promise<ClientHandshake> {
  const helloLine = await bounded(link.readLine(), {
    ms: options.timeoutMs,
    timeout: `no hello from the server within ${options.timeoutMs / 1000} s`,
    signal: options.signal,
    aborted: "interrupted while waiting for the server's hello",
  });
  if (helloLine === null) {
    throw new ProtocolError("server closed the connection before its hello");
  }
  const hello = parseHello(helloLine, { insecure: options.insecure });
  const privateKey = options.privateKey ??
    (isTeachingGroup(hello.group) ? options.teachingKey : undefined);
  let response: ReturnType<typeof respondToHello>;
  try {
    response = respondToHello(hello, privateKey);
  } catch (error) {
    // Only a key given by hand can be out of range for the offered group.
    throw new ProtocolError(`cannot use this private key: ${(error as Error).message}`);
  }
  link.send(response.keyLine);
  return { hello, session: response.session };
}

// ───────────────────────────────────────────────────────────────────────────
// 5. The channel
// ───────────────────────────────────────────────────────────────────────────

/** One sent `msg`/`chat` waiting for its ack. */
export interface PendingAck {
  /** Its sequence number. */
  readonly seq: number;
  /** When it was sent (`performance.now()`). */
  readonly sentAt: number;
  /** What it was, for reports (e.g. the first words of the line). */
  readonly note: string;
}

/**
 * The `msg`/`chat` records sent and not yet acknowledged, oldest first. Acks
 * arrive one per record, in order: anything else is a protocol error. Records
 * older than `timeoutMs` are reported once each through `onOverdue`.
 */
export class AckTracker {
  readonly #pending: PendingAck[] = [];
  #head = 0; // acknowledged entries before #head are dropped lazily
  #overdueReported = -1; // highest seq reported overdue
  #timer: ReturnType<typeof setTimeout> | undefined;
  #waiters: (() => void)[] = [];
  #stopped = false;
  readonly #timeoutMs: number;
  readonly #onOverdue: ((entry: PendingAck) => void) | undefined;

  /**
   * Creates a tracker.
   *
   * @param timeoutMs after how long an unacknowledged record is overdue (0: never)
   * @param onOverdue called once per overdue record
   */
  constructor(timeoutMs = 0, onOverdue?: (entry: PendingAck) => void) {
    this.#timeoutMs = timeoutMs;
    this.#onOverdue = onOverdue;
  }

  /** Number of records waiting for their ack. */
  get pending(): number {
    return this.#pending.length - this.#head;
  }

  /** The sequence numbers waiting, oldest first. */
  pendingSeqs(): number[] {
    return this.#pending.slice(this.#head).map((entry) => entry.seq);
  }

  /** Records that `seq` was sent and awaits its ack. */
  track(seq: number, note = ""): void {
    this.#pending.push({ seq, sentAt: performance.now(), note });
    if (this.#timer === undefined) this.#arm();
  }

  /**
   * Checks an ack's plaintext against the oldest waiting record and drops it.
   *
   * @returns the acknowledged record
   * @throws {ProtocolError} for an ack of anything else
   */
  acknowledge(text: string): PendingAck {
    const oldest = this.#pending[this.#head];
    if (oldest === undefined) {
      throw new ProtocolError(`peer acknowledged record ${text}, which was never sent`);
    }
    if (text !== String(oldest.seq)) {
      throw new ProtocolError(`peer acknowledged record ${text}, expected ${oldest.seq}`);
    }
    this.#head++;
    if (this.#head > 1024 && this.#head * 2 > this.#pending.length) {
      this.#pending.splice(0, this.#head);
      this.#head = 0;
    }
    if (this.pending === 0) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      for (const wake of this.#waiters.splice(0)) wake();
    }
    return oldest;
  }

  /**
   * Resolves true once nothing waits for an ack, false if `bounds` end first
   * (deadline or abort).
   */
  async drained(bounds: Bounds = {}): Promise<boolean> {
    if (this.pending === 0) return true;
    if (this.#stopped) return false; // the session is over: no ack can come
    const empty = new Promise<void>((resolve) => this.#waiters.push(resolve));
    return await bounded(empty, bounds).then(() => true, () => false);
  }

  /** Stops the overdue timer and releases waiters (the session is over). */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** Arms the timer for the oldest record that is not yet reported. */
  #arm(): void {
    if (this.#timeoutMs <= 0 || !this.#onOverdue) return;
    const next = this.#pending.slice(this.#head).find((e) => e.seq > this.#overdueReported);
    if (!next) return;
    const wait = Math.max(0, next.sentAt + this.#timeoutMs - performance.now());
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const now = performance.now();
      for (let i = this.#head; i < this.#pending.length; i++) {
        const entry = this.#pending[i];
        if (entry.seq <= this.#overdueReported) continue;
        if (now - entry.sentAt < this.#timeoutMs) break;
        this.#overdueReported = entry.seq;
        this.#onOverdue?.(entry);
      }
      this.#arm();
    }, wait);
  }
}

/** What a {@link Channel} hands to its owner. */
export type ChannelEvent =
  | { readonly type: "msg"; readonly seq: number; readonly text: string }
  | { readonly type: "chat"; readonly seq: number; readonly line: ChatLine }
  | { readonly type: "notice"; readonly text: string }
  | { readonly type: "ack"; readonly acked: PendingAck };

/** How a {@link Channel}'s session ended. */
export type ChannelEnd =
  | { readonly reason: "bye" }
  | { readonly reason: "closed" }
  | { readonly reason: "local" }
  | { readonly reason: "error"; readonly error: ProtocolError | Error };

/** Options of {@link Channel}. */
export interface ChannelOptions {
  /**
   * Keepalive: after this many ms with nothing from the peer, ping it; if it
   * then stays silent for as long again, end the session (0: off).
   */
  readonly keepaliveMs?: number;
  /**
   * Whether the peer is known to speak revision 2 (a server always pings its
   * clients). Otherwise pings start only once the peer has shown it knows
   * them: a revision-1 server would refuse a ping.
   */
  readonly peerKnowsPing?: boolean;
  /** After how long an unacknowledged `msg`/`chat` is reported (0: never). */
  readonly ackTimeoutMs?: number;
  /** Called once per record overdue for its ack. */
  readonly onOverdue?: (entry: PendingAck) => void;
  /** Most records unacknowledged at once before the peer counts as too far behind. */
  readonly maxUnacked?: number;
}

/** Lines handled between two writes of their answers. */
const ANSWER_SLICE = 8;

/** How long what is queued may take to leave when a session ends. */
const DRAIN_ON_CLOSE_MS = 1000;

/** Default bound on unacknowledged records per peer. */
export const DEFAULT_MAX_UNACKED = 4096;

/**
 * A session in progress over a connection: sends records, receives and
 * answers them (acks for `msg`/`chat`, pongs for pings), keeps the link alive
 * and says `bye`. One object per connection; the application sees only
 * {@link ChannelEvent}s.
 *
 * @example A client and a server channel over an in-memory pipe
 * ```ts
 * import { GROUPS, SECURE_CIPHER } from "./dh.ts";
 * import { Channel, clientHandshake, LineConnection, memoryPipe, serverHandshake } from "./transport.ts";
 *
 * const [a, b] = memoryPipe();
 * const serverLink = new LineConnection(a), clientLink = new LineConnection(b);
 * const [serverSession, { session }] = await Promise.all([
 *   serverHandshake(serverLink, { group: GROUPS.ffdhe2048, cipher: SECURE_CIPHER, timeoutMs: 5000 }),
 *   clientHandshake(clientLink, { insecure: false, timeoutMs: 5000 }),
 * ]);
 * const server = new Channel(serverLink, serverSession!);
 * const client = new Channel(clientLink, session);
 * server.run((event) => console.log(event)); // { type: "msg", seq: 0, text: "hi" }
 * client.run(() => {});
 * client.send("msg", "hi");
 * await client.acks.drained();
 * await client.bye();
 * ```
 */
export class Channel {
  /** The connection. */
  readonly link: LineConnection;
  /** The session's keys and sequence numbers. */
  readonly session: Session;
  /** Our `msg`/`chat` records waiting for the peer's ack. */
  readonly acks: AckTracker;
  readonly #keepaliveMs: number;
  readonly #maxUnacked: number;
  #peerKnowsPing: boolean;
  #lastHeard = performance.now();
  #pingSentAt: number | undefined;
  #pingCount = 0;
  readonly #pingsOut: string[] = [];
  #keepaliveTimer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false; // we are leaving: nothing more is delivered or sent
  #end: ChannelEnd | undefined;
  #failing: Promise<void> | undefined; // our error frame on its way out
  #leaving: Promise<void> | undefined; // our bye on its way out

  /**
   * Starts a channel on an established session.
   *
   * @param link the connection the handshake ran on
   * @param session the handshake's result
   * @param options keepalive, ack reporting and bounds
   */
  constructor(link: LineConnection, session: Session, options: ChannelOptions = {}) {
    this.link = link;
    this.session = session;
    this.acks = new AckTracker(options.ackTimeoutMs, options.onOverdue);
    this.#keepaliveMs = options.keepaliveMs ?? 0;
    this.#maxUnacked = options.maxUnacked ?? DEFAULT_MAX_UNACKED;
    this.#peerKnowsPing = options.peerKnowsPing ?? session.role === "server";
  }

  /** Whether the peer has shown (or is known) to understand revision-2 records. */
  get peerKnowsPing(): boolean {
    return this.#peerKnowsPing;
  }

  /** Whether the channel stopped: we said bye, failed, or the peer left. */
  get stopped(): boolean {
    return this.#stopped || this.link.closed;
  }

  /**
   * Seals and queues a record. A `msg` or `chat` is tracked until its ack.
   *
   * @param note what to say about it if its ack is overdue
   * @returns its sequence number, or -1 if the channel has stopped
   */
  send(type: "msg" | "chat" | "notice", text: string, note = ""): number {
    if (this.stopped) return -1;
    const seq = this.session.nextSendSeq;
    this.link.send(this.session.seal(type, text));
    if (ACKED_TYPES.includes(type)) {
      this.acks.track(seq, note);
      if (this.acks.pending > this.#maxUnacked) {
        this.#abort(`peer too far behind: ${this.acks.pending} records unacknowledged`);
      }
    }
    return seq;
  }

  /**
   * Receives until the session ends, handing `msg`, `chat`, `notice` and
   * `ack` events to `onEvent` (synchronously, in order). Acks and pongs are
   * sent here, the ack before `onEvent` sees its record. Never throws: a
   * protocol error, the peer's `error` frame or a lost connection is the
   * returned end; an `error` frame is sent to the peer for our own refusals.
   */
  async run(onEvent: (event: ChannelEvent) => void): Promise<ChannelEnd> {
    this.#armKeepalive();
    try {
      while (!this.#end) {
        const lines = await this.link.readLines();
        if (lines === null) {
          const failure = this.link.failure;
          this.#end ??= failure
            ? { reason: "error", error: failure }
            : this.#stopped
            ? { reason: "local" }
            : { reason: "closed" };
          break;
        }
        for (let i = 0; i < lines.length && !this.#end && !this.#stopped; i++) {
          this.#receive(lines[i], onEvent);
          // The answers to each slice of lines leave before the next slice is
          // worked on: a socket write completes at once, so the peer reads
          // them while we go on, instead of waiting for the whole chunk.
          if ((i + 1) % ANSWER_SLICE === 0) await this.link.drain();
        }
        if (this.#stopped) this.#end ??= { reason: "local" };
      }
    } catch (error) {
      if (!this.#end) {
        this.#end = this.#endFor(error);
        const end = this.#end;
        if (end.reason === "error" && end.error instanceof ProtocolError && !end.error.fromPeer) {
          this.#failing = this.link.fail(end.error.message);
        }
      }
    } finally {
      this.#stopped = true;
      clearTimeout(this.#keepaliveTimer);
      this.acks.stop();
      // Our error frame, bye or last acks get their bounded chance to leave; then close.
      await (this.#failing ?? this.#leaving ??
        bounded(this.link.drain(), { ms: DRAIN_ON_CLOSE_MS }).catch(() => {}));
      this.link.close();
    }
    return this.#end;
  }

  /**
   * Leaves: nothing more is delivered, `bye` goes out after everything
   * queued, and the connection closes once it is written (at most
   * `timeoutMs`) or at once if `signal` aborts. Never throws.
   */
  bye(timeoutMs = 1000, signal?: AbortSignal): Promise<void> {
    if (!this.stopped) {
      this.#stopped = true;
      this.link.send(this.session.seal("bye", ""), true);
      this.#leaving = bounded(this.link.drain(), { ms: timeoutMs, signal })
        .catch(() => {})
        .finally(() => this.link.close());
    }
    return this.#leaving ?? Promise.resolve(this.link.close());
  }

  /** Ends the session with an `error` frame saying `reason` (e.g. `/kick`). */
  async fail(reason: string): Promise<void> {
    this.#abort(reason);
    await this.#failing;
  }

  /** Handles one line: open it, answer it, hand it on. */
  #receive(line: string, onEvent: (event: ChannelEvent) => void): void {
    if (this.link.failure) throw this.link.failure;
    const record = this.session.open(line);
    this.#lastHeard = performance.now();
    this.#pingSentAt = undefined;
    switch (record.type) {
      case "msg":
        this.link.send(this.session.seal("ack", String(record.seq)));
        onEvent({ type: "msg", seq: record.seq, text: record.text });
        return;
      case "chat": {
        const chat = parseChat(record.text);
        this.#peerKnowsPing = true;
        this.link.send(this.session.seal("ack", String(record.seq)));
        onEvent({ type: "chat", seq: record.seq, line: chat });
        return;
      }
      case "notice":
        this.#peerKnowsPing = true;
        onEvent({ type: "notice", text: record.text });
        return;
      case "ack":
        onEvent({ type: "ack", acked: this.acks.acknowledge(record.text) });
        return;
      case "ping":
        this.#peerKnowsPing = true;
        this.link.send(this.session.seal("pong", record.text));
        return;
      case "pong":
        if (this.#pingsOut[0] !== record.text) {
          throw new ProtocolError("pong does not answer the oldest ping sent");
        }
        this.#pingsOut.shift();
        return;
      case "bye":
        this.#end = { reason: "bye" };
        return;
    }
  }

  /** Keepalive: one timer per channel, re-armed lazily from the last time we heard. */
  #armKeepalive(delay = this.#keepaliveMs): void {
    if (this.#keepaliveMs <= 0 || this.stopped) return;
    this.#keepaliveTimer = setTimeout(() => this.#checkKeepalive(), delay);
  }

  #checkKeepalive(): void {
    const now = performance.now();
    const interval = this.#keepaliveMs;
    const idle = now - this.#lastHeard;
    if (idle < interval) return this.#armKeepalive(interval - idle);
    if (this.#pingSentAt === undefined) {
      if (this.#peerKnowsPing) {
        const payload = (++this.#pingCount).toString(16).padStart(8, "0");
        this.#pingsOut.push(payload);
        this.link.send(this.session.seal("ping", payload));
        this.#pingSentAt = now;
      }
      return this.#armKeepalive(interval);
    }
    if (now - this.#pingSentAt < interval) {
      return this.#armKeepalive(interval - (now - this.#pingSentAt));
    }
    const seconds = Math.round(idle / 100) / 10;
    this.#abort(`no answer to keepalive ping: silent for ${seconds} s`);
  }

  /**
   * Stops the channel with our own error, which `run` returns; the peer gets
   * an `error` frame (best effort, at most 1 s) and the connection closes.
   */
  #abort(reason: string): void {
    if (this.#end) return;
    this.#end = { reason: "error", error: new ProtocolError(reason) };
    this.#stopped = true;
    this.#failing = this.link.fail(reason);
  }

  /** The end a thrown error means. */
  #endFor(error: unknown): ChannelEnd {
    if (this.link.failure) return { reason: "error", error: this.link.failure };
    if (this.#stopped && !(error instanceof ProtocolError)) return { reason: "local" };
    return { reason: "error", error: error instanceof Error ? error : new Error(String(error)) };
  }
}
