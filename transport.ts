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
  checkPasswordHello,
  checkProof,
  type CipherName,
  CONFIRM_TEXT,
  createOffer,
  type DhGroup,
  encodeError,
  encodeProof,
  type Hello,
  type HostKey,
  hostKeyFingerprint,
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
import type { KnownHosts } from "./hostkeys.ts";

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
 * The longest hello line a group can produce (its public key as long as p,
 * with the revision-3 host key and password members), or, without a group,
 * the longest any acceptable hello can be (a custom 8192-bit group whose g is
 * as long as p): the least line limit that works.
 */
export function longestHello(group?: DhGroup): number {
  const digits = group?.pDecimal.length ?? MAX_WIRE_DIGITS;
  const base64Of32Bytes = "x".repeat(44);
  return JSON.stringify({
    type: "hello",
    protocol: PROTOCOL,
    group: group?.name ?? "ffdhe8192",
    p: "9".repeat(digits),
    g: group ? group.g.toString() : "9".repeat(digits),
    publicKey: "9".repeat(digits),
    cipher: SECURE_CIPHER,
    hostKey: base64Of32Bytes,
    auth: "password",
    nonce: base64Of32Bytes,
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
 * A line whose text is made when its turn to be written comes (a record
 * sealed lazily, so that its sequence number follows everything written
 * before it, and a line queued for many connections is held only once).
 */
export interface DeferredLine {
  /** Its size as counted against the queue's bounds (UTF-16 units, LF included). */
  readonly units: number;
  /** Whether it may be written now (a full ack window says no). */
  ready(): boolean;
  /** Its text, made now (sealed); called once, when it is written. */
  render(): string;
  /** It will never be written (the connection ended, or an error frame went first). */
  discard(): void;
}

/** Most UTF-16 units handed to one write: bounds what a stuck write holds. */
const MAX_BATCH_UNITS = 64 * 1024;

/** After a write failed, how long the peer has to end its side (its error frame may come). */
const READ_AFTER_WRITE_FAILURE_MS = 1000;

/**
 * A DHX/1 connection: a {@link LineReader} on its input and two lanes on its
 * output. Lines made already (handshake lines, acks, pongs) wait in order in
 * one lane; {@link DeferredLine}s (records sealed when written) wait behind
 * them in the other, each only while it is `ready`. Lines queued in the
 * same turn of the event loop leave in one write of at most 64 KiB. The
 * queue is bounded in lines and bytes, and each write in time: a peer that
 * stops reading fails the connection instead of growing our memory.
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
  #queue: string[] = []; // lines made already, in order
  #queuedUnits = 0; // size of #queue: UTF-16 units plus one per LF (records are ASCII)
  #deferred: DeferredLine[] = []; // made when written, after #queue
  #deferredHead = 0; // entries before it were written
  #deferredUnits = 0;
  #inflightUnits = 0; // size of the batch being written
  #writing: Promise<void> | undefined;
  #sealed = false; // a last line (bye, error) was queued: nothing may follow
  #closed = false;
  #failure: ProtocolError | undefined;
  #writeLost: ProtocolError | undefined; // a write failed; reading goes on for the peer's error frame
  #lostTimer: ReturnType<typeof setTimeout> | undefined;
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
   * Queues `line` (LF added) behind every line made before it, ahead of the
   * deferred ones. Never blocks; a queue over its bounds fails the
   * connection. With `last`, nothing queued afterwards is sent (for `bye`
   * and `error`), and the deferred lines are dropped: it goes ahead of them.
   */
  send(line: string, last = false): void {
    if (this.#sealed || this.#closed) return;
    this.#onLine?.("sent", line);
    if (last) {
      this.#sealed = true;
      this.#discardDeferred();
    }
    this.#queue.push(line);
    this.#queuedUnits += line.length + 1;
    this.#checkBounds();
    this.#schedule();
  }

  /**
   * Queues a line made when its turn comes and it is `ready`; behind every
   * deferred line before it. Returns false (and discards it) if nothing may
   * be sent any more.
   */
  defer(line: DeferredLine): boolean {
    if (this.#sealed || this.#closed) {
      line.discard();
      return false;
    }
    this.#deferred.push(line);
    this.#deferredUnits += line.units;
    this.#checkBounds();
    this.#schedule();
    return true;
  }

  /** Deferred lines not yet written. */
  get deferredLines(): number {
    return this.#deferred.length - this.#deferredHead;
  }

  /** Lines queued and not yet written, deferred ones included. */
  get queuedLines(): number {
    return this.#queue.length + this.deferredLines;
  }

  /** Wakes the writer: a deferred line that was not ready may be now (an ack came). */
  resume(): void {
    if (this.deferredLines > 0) this.#schedule();
  }

  /** Bytes queued and not yet written (the write in flight included). */
  get queuedBytes(): number {
    return this.#queuedUnits + this.#deferredUnits + this.#inflightUnits;
  }

  /**
   * Resolves when everything that may be written now has been (deferred
   * lines that are not ready stay queued), or the connection failed.
   */
  async drain(): Promise<void> {
    while (this.#writing) await this.#writing;
  }

  /** Why the connection failed (write timeout, queue overflow, …), if it did. */
  get failure(): ProtocolError | undefined {
    return this.#failure;
  }

  /**
   * Best effort: sends an `error` frame ahead of the deferred lines, waits at
   * most 1 s for it to leave, then closes. Never throws.
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
    clearTimeout(this.#lostTimer);
    this.#queue = [];
    this.#queuedUnits = 0;
    this.#inflightUnits = 0;
    this.#discardDeferred();
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

  /** The pump starts after the current synchronous work: lines queued in one turn leave together. */
  #schedule(): void {
    this.#writing ??= Promise.resolve().then(() => this.#pump());
  }

  /** Over the bounds: the connection fails, its error frame ahead of the deferred lines. */
  #checkBounds(): void {
    const lines = this.queuedLines;
    if (lines <= this.#maxQueuedLines && this.queuedBytes <= this.#maxQueuedBytes) return;
    const reason = `peer too far behind: ${lines} lines (${this.queuedBytes} bytes) unsent`;
    this.#failure ??= new ProtocolError(reason);
    this.#discardDeferred();
    // Best effort: the error frame follows the write in flight, if that ever ends.
    this.#queue = [encodeError(reason)];
    this.#queuedUnits = this.#queue[0].length + 1;
    this.#sealed = true;
    bounded(this.drain(), { ms: 1000 }).catch(() => {}).finally(() => this.close());
  }

  #discardDeferred(): void {
    const deferred = this.#deferred;
    const head = this.#deferredHead;
    this.#deferred = [];
    this.#deferredHead = 0;
    this.#deferredUnits = 0;
    for (let i = head; i < deferred.length; i++) deferred[i].discard();
  }

  /** The next batch: lines made already, then deferred lines while ready, up to 64 KiB. */
  #nextBatch(): string[] {
    let batch: string[];
    let units = 0;
    if (this.#queuedUnits <= MAX_BATCH_UNITS) {
      batch = this.#queue;
      units = this.#queuedUnits;
      this.#queue = [];
      this.#queuedUnits = 0;
    } else {
      let n = 0;
      while (n < this.#queue.length && (n === 0 || units < MAX_BATCH_UNITS)) {
        units += this.#queue[n++].length + 1;
      }
      batch = this.#queue.splice(0, n);
      this.#queuedUnits -= units;
    }
    // Deferred lines come after every line made before them: made now, in order.
    while (
      this.#queue.length === 0 && this.#deferredHead < this.#deferred.length &&
      (batch.length === 0 || units < MAX_BATCH_UNITS)
    ) {
      const next = this.#deferred[this.#deferredHead];
      if (!next.ready()) break;
      this.#deferredHead++;
      this.#deferredUnits -= next.units;
      const line = next.render();
      this.#onLine?.("sent", line);
      batch.push(line);
      units += line.length + 1;
    }
    if (this.#deferredHead > 1024 && this.#deferredHead * 2 > this.#deferred.length) {
      this.#deferred.splice(0, this.#deferredHead);
      this.#deferredHead = 0;
    }
    this.#inflightUnits = units;
    return batch;
  }

  /** Writes batches until nothing queued may be written now. */
  async #pump(): Promise<void> {
    try {
      while (!this.#closed && !this.#writeLost) {
        const batch = this.#nextBatch();
        if (batch.length === 0) break;
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
      if (error instanceof ProtocolError || this.#closed) {
        // A stuck write cannot carry an error frame either: close at once.
        this.#failure ??= error instanceof ProtocolError
          ? error
          : new ProtocolError("connection lost while writing");
        this.close();
      } else {
        // The peer closed: it may have said why in an error frame we have not
        // read yet. Reading goes on, for a while, to find it.
        this.#writeLost = new ProtocolError("connection lost while writing");
        this.#sealed = true;
        this.#queue = [];
        this.#queuedUnits = 0;
        this.#inflightUnits = 0;
        this.#discardDeferred();
        this.#lostTimer = setTimeout(() => {
          this.#failure ??= this.#writeLost;
          this.close();
        }, READ_AFTER_WRITE_FAILURE_MS);
      }
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
      throw this.#failure ?? this.#writeLost ?? error;
    }
    // A failure closes the connection, which some connections report as a clean end.
    const failure = this.#failure ?? this.#writeLost;
    if (result === null && failure) throw failure;
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
  /** Time the client has to send its key (and its `confirm`), in ms. */
  readonly timeoutMs: number;
  /** The host key to announce, and to prove to clients that ask (revision 3). */
  readonly hostKey?: HostKey;
  /** The room password every client must prove it knows (revision 3). */
  readonly password?: string;
}

/**
 * The client did not prove that it knows the room password: its `confirm`
 * did not open, or another record came first. The server answers with the
 * error frame {@link WrongPasswordError.FRAME_MESSAGE} and counts a guess.
 */
export class WrongPasswordError extends ProtocolError {
  /** The text of the `error` frame the server sends. */
  static readonly FRAME_MESSAGE = "wrong password";

  /** A wrong password from the client. */
  constructor() {
    super(WrongPasswordError.FRAME_MESSAGE);
    this.name = "WrongPasswordError";
  }
}

/**
 * Server side of the handshake: sends the hello, waits (bounded) for the
 * client's key line and derives the session. Revision 3: signs the proof if
 * the client asked for it; with a password, opens the client's `confirm` and
 * answers with its own before anything else.
 *
 * @returns the session, or `null` if the client left before its key (or its confirm)
 * @throws {WrongPasswordError} if the client does not know the password
 * @throws {ProtocolError} for a bad key frame, a timeout or a broken line
 */
export async function serverHandshake(
  link: LineConnection,
  options: ServerHandshakeOptions,
): Promise<Session | null> {
  const offer = createOffer(options.group, options.cipher, options.privateKey, {
    hostKey: options.hostKey,
    password: options.password,
  });
  link.send(offer.line);
  const keyLine = await bounded(link.readLine(), {
    ms: options.timeoutMs,
    timeout: `no key within ${options.timeoutMs / 1000} s (handshake timeout)`,
  });
  if (keyLine === null) return null;
  const session = acceptKey(offer, keyLine);
  if (session.proofRequested && options.hostKey) link.send(encodeProof(options.hostKey, session));
  if (session.passwordGenerator === undefined) return session;
  const confirmLine = await bounded(link.readLine(), {
    ms: options.timeoutMs,
    timeout: `no confirm within ${options.timeoutMs / 1000} s (handshake timeout)`,
  });
  if (confirmLine === null) return null;
  try {
    session.open(confirmLine); // record 0 of a password session opens only as a confirm
  } catch (error) {
    if (error instanceof ProtocolError && error.fromPeer) throw error;
    throw new WrongPasswordError();
  }
  link.send(session.seal("confirm", CONFIRM_TEXT));
  return session;
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
  /** Time the server has to send its hello (and its proof and confirm), in ms. */
  readonly timeoutMs: number;
  /** Ends the wait at once (Ctrl-C). */
  readonly signal?: AbortSignal;
  /**
   * Where host keys are remembered (trust on first use); without it nothing
   * is remembered and only `pin` is checked.
   */
  readonly knownHosts?: KnownHosts;
  /** The address dialled, `host:port`: the known-hosts key. */
  readonly address?: string;
  /** A host key fingerprint the server must have (`--host-key`), even on first contact. */
  readonly pin?: string;
  /** The room password (revision 3). */
  readonly password?: string;
}

/**
 * What the client knows of the server's host key after the handshake:
 * - `new`: first contact, the key was proved and is now remembered;
 * - `known`: it equals the key remembered;
 * - `pinned`: it equals the fingerprint given;
 * - `unverified`: the server has no host key (revision 1 or 2), nothing remembered.
 */
export type HostKeyStatus = "new" | "known" | "pinned" | "unverified";

/** What the client learns in the handshake. */
export interface ClientHandshake {
  /** The server's hello, as judged. */
  readonly hello: Hello;
  /** The established session. */
  readonly session: Session;
  /** The server's host key fingerprint, proved in this session (undefined: none sent). */
  readonly hostKeyFingerprint?: string;
  /** How the host key was judged. */
  readonly hostKeyStatus: HostKeyStatus;
}

/**
 * The server's host key is not the one expected (remembered or pinned), or
 * it sent none where one is expected (a downgrade). Refused before the
 * client sends its key.
 */
export class HostKeyError extends ProtocolError {
  /** The address dialled. */
  readonly address: string;
  /** The fingerprint expected. */
  readonly expected: string;
  /** The fingerprint the server presented (undefined: no host key at all). */
  readonly presented: string | undefined;
  /** Whether `expected` was given (`--host-key`) rather than remembered. */
  readonly pinned: boolean;

  /**
   * The refusal of the server at `address`.
   *
   * @param address the address dialled
   * @param expected the fingerprint expected
   * @param presented the server's, if it sent one
   * @param pinned given rather than remembered
   */
  constructor(address: string, expected: string, presented: string | undefined, pinned: boolean) {
    const source = pinned ? "the fingerprint given with --host-key" : "the one remembered";
    super(
      presented === undefined
        ? `the server at ${address} sent no host key, but ${source} is ${expected}: refusing (a downgrade, or someone in between)`
        : `the server at ${address} presented host key ${presented}, not ${source}, ${expected}: refusing (someone may sit in between, or the server's key changed)`,
    );
    this.name = "HostKeyError";
    this.address = address;
    this.expected = expected;
    this.presented = presented;
    this.pinned = pinned;
  }
}

/** What the client says when the server's confirm does not open. */
export const SERVER_PASSWORD_FAILURE =
  "the server could not prove that it knows the password (wrong password, or someone in between)";

/**
 * Client side of the handshake: waits (bounded, abortable) for the hello,
 * judges it ({@link parseHello} refuses before any key is sent), then sends
 * the key line. Revision 3, in this order: a host key other than the one
 * expected, a missing one where one is expected, or a password that the
 * hello does not match is refused before the key; the key asks for a proof
 * of any host key announced, which is checked before anything else is sent; with a password, our
 * `confirm` goes out and the server's must open. Only then is a first
 * contact's host key remembered.
 *
 * @throws {HostKeyError} for a host key other than the one expected, or none
 * @throws {ProtocolError} with a reason a user can act on
 */
export async function clientHandshake(
  link: LineConnection,
  options: ClientHandshakeOptions,
): Promise<ClientHandshake> {
  const read = (what: string) =>
    bounded(link.readLine(), {
      ms: options.timeoutMs,
      timeout: `no ${what} from the server within ${options.timeoutMs / 1000} s`,
      signal: options.signal,
      aborted: `interrupted while waiting for the server's ${what}`,
    });
  const helloLine = await read("hello");
  if (helloLine === null) {
    throw new ProtocolError("server closed the connection before its hello");
  }
  const hello = parseHello(helloLine, { insecure: options.insecure });
  const address = options.address ?? "the server";
  const presented = hello.hostKey && hostKeyFingerprint(hello.hostKey);
  const remembered = options.knownHosts?.get(address);
  const expected = options.pin ?? remembered;
  if (expected !== undefined && presented !== expected) {
    throw new HostKeyError(address, expected, presented, options.pin !== undefined);
  }
  checkPasswordHello(hello, options.password);
  const privateKey = options.privateKey ??
    (isTeachingGroup(hello.group) ? options.teachingKey : undefined);
  let response: ReturnType<typeof respondToHello>;
  try {
    // A proof is asked of every server that has a host key to prove (and only then: a
    // revision-2 server sees the key line it always saw).
    response = respondToHello(hello, privateKey, {
      proof: hello.hostKey !== undefined,
      password: options.password,
    });
  } catch (error) {
    // Only a key given by hand can be out of range for the offered group.
    throw new ProtocolError(`cannot use this private key: ${(error as Error).message}`);
  }
  const { session } = response;
  link.send(response.keyLine);
  if (hello.hostKey) {
    const proofLine = await read("host key proof");
    if (proofLine === null) {
      throw new ProtocolError("server closed the connection instead of proving its host key");
    }
    checkProof(hello.hostKey, session, proofLine);
  }
  if (session.passwordGenerator !== undefined) {
    link.send(session.seal("confirm", CONFIRM_TEXT));
    const confirmLine = await read("confirm");
    if (confirmLine === null) throw new ProtocolError(SERVER_PASSWORD_FAILURE);
    try {
      session.open(confirmLine);
    } catch (error) {
      if (!(error instanceof ProtocolError && error.fromPeer)) {
        throw new ProtocolError(SERVER_PASSWORD_FAILURE);
      }
      const said = error.message.replace(/^peer reported an error: /, "");
      throw new ProtocolError(
        said === WrongPasswordError.FRAME_MESSAGE
          ? "wrong password (the server refused it)"
          : error.message,
        true,
      );
    }
  }
  let hostKeyStatus: HostKeyStatus = "unverified";
  if (presented !== undefined) {
    hostKeyStatus = options.pin !== undefined ? "pinned" : remembered ? "known" : "new";
    if (remembered === undefined) options.knownHosts?.remember(address, presented);
  }
  return { hello, session, hostKeyFingerprint: presented, hostKeyStatus };
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
 * Called when the oldest record waiting is overdue, with it and the count
 * waiting; returning false puts the report off (asked again a little later).
 */
export type OverdueHandler = (oldest: PendingAck, pending: number) => boolean | void;

/**
 * The `msg`/`chat` records sent and not yet acknowledged, oldest first. Acks
 * arrive one per record, in order: anything else is a protocol error. When
 * the oldest record waits longer than `timeoutMs` and no ack at all came for
 * as long (a peer that acks, however slowly, is behind, not silent),
 * `onOverdue` is called once for the whole episode: not again until every
 * record is acknowledged (one report, not one per record).
 */
export class AckTracker {
  readonly #pending: PendingAck[] = [];
  #head = 0; // acknowledged entries before #head are dropped lazily
  #episode = false; // an overdue episode was reported and has not ended
  #lastAckAt = -Infinity;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #waiters: (() => void)[] = [];
  #stopped = false;
  readonly #timeoutMs: number;
  readonly #onOverdue: OverdueHandler | undefined;
  readonly #afterConfirm: boolean;

  /**
   * Creates a tracker.
   *
   * @param timeoutMs after how long an unacknowledged record is overdue (0: never)
   * @param onOverdue called once per overdue episode, with the oldest record
   *   and the count waiting; if it returns false, it is asked again later
   * @param afterConfirm the session began with `confirm` records (a room
   *   password): an ack may then also name the seq one below the record's
   */
  constructor(timeoutMs = 0, onOverdue?: OverdueHandler, afterConfirm = false) {
    this.#timeoutMs = timeoutMs;
    this.#onOverdue = onOverdue;
    this.#afterConfirm = afterConfirm;
  }

  /** Number of records waiting for their ack. */
  get pending(): number {
    return this.#pending.length - this.#head;
  }

  /** When the last ack came (`performance.now()`; -Infinity before the first). */
  get lastAckAt(): number {
    return this.#lastAckAt;
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
    // The text says an ack names the record's seq; the known-answer vectors 6
    // and 7 of revision 3 ack the first msg after `confirm` (seq 1) with "0".
    // After a confirm no msg or chat has seq 0 and acks come in order, so
    // seq − 1 cannot name any other record: accept both, send the text's.
    const named = text === String(oldest.seq) ||
      (this.#afterConfirm && text === String(oldest.seq - 1));
    if (!named) {
      throw new ProtocolError(`peer acknowledged record ${text}, expected ${oldest.seq}`);
    }
    this.#head++;
    this.#lastAckAt = performance.now();
    if (this.#head > 1024 && this.#head * 2 > this.#pending.length) {
      this.#pending.splice(0, this.#head);
      this.#head = 0;
    }
    if (this.pending === 0) {
      this.#episode = false;
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

  /**
   * Arms the timer for the oldest record (or, when the handler put a report
   * off, for `delay`), unless its episode was reported.
   */
  #arm(delay?: number): void {
    if (this.#timeoutMs <= 0 || !this.#onOverdue || this.#episode || this.#stopped) return;
    const oldest = this.#pending[this.#head];
    if (!oldest) return;
    const wait = delay ?? Math.max(0, oldest.sentAt + this.#timeoutMs - performance.now());
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const now = this.#pending[this.#head];
      const time = performance.now();
      if (now && time - now.sentAt >= this.#timeoutMs) {
        // Acks still coming in: a slow peer, not a silent one.
        const silent = time - this.#lastAckAt >= this.#timeoutMs;
        if (!silent || this.#onOverdue?.(now, this.pending) === false) {
          return this.#arm(Math.max(100, this.#timeoutMs / 4)); // put off: ask again
        }
        this.#episode = true;
      } else this.#arm(); // acks came meanwhile: wait for the new oldest
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
  /**
   * Called once per overdue episode (see {@link AckTracker}). Not while the
   * pacer slows our reading of the peer: its acks may wait behind its lines.
   */
  readonly onOverdue?: OverdueHandler;
  /**
   * The ack window: most `msg`/`chat` records unacknowledged at once. Past
   * it, records wait unsealed in the connection's queue until acks come back
   * (flow control); the queue's own bounds decide when a peer is too far
   * behind.
   */
  readonly maxUnacked?: number;
  /**
   * Paces reading: each line received is charged to it, and reading waits
   * while it asks to (a sender over its rate is slowed by TCP, not dropped).
   */
  readonly pacer?: ReadPacer;
}

/** Lines handled between two writes of their answers. */
const ANSWER_SLICE = 8;

/** How long what is queued may take to leave when a session ends. */
const DRAIN_ON_CLOSE_MS = 1000;

/** Default ack window: most records unacknowledged at once per peer. */
export const DEFAULT_MAX_UNACKED = 4096;

/** How an `ack` record's line starts, as sealed (a frame written otherwise is charged). */
const ACK_PREFIX = '{"type":"ack",';

/** Resolves in the next turn of the event loop (after I/O callbacks). */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Longest single pause of reading while a pacer holds it: stops are noticed this soon. */
const PACE_SLICE_MS = 100;

/** Promises woken together (acks that open a window, the end of a session). */
class Wakeup {
  #waiters: (() => void)[] = [];

  /** A promise resolved at the next {@link wake}. */
  wait(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Resolves every promise given out so far. */
  wake(): void {
    for (const resolve of this.#waiters.splice(0)) resolve();
  }
}

/**
 * A `msg`, `chat` or `notice` record waiting in a connection's queue, sealed
 * when its turn to be written comes (so its seq follows every record written
 * before it). A `msg`/`chat` waits while the ack window is full.
 */
class ChannelRecord implements DeferredLine {
  readonly units: number;
  readonly #channel: Channel;
  readonly #type: "msg" | "chat" | "notice";
  readonly #text: string | SharedText;
  readonly #note: string;

  constructor(
    channel: Channel,
    type: "msg" | "chat" | "notice",
    text: string | SharedText,
    note: string,
  ) {
    this.#channel = channel;
    this.#type = type;
    this.#text = text;
    this.#note = note;
    this.units = recordUnits(typeof text === "string" ? text.length : text.units);
    if (text instanceof SharedText) text.hold();
  }

  ready(): boolean {
    return !ACKED_TYPES.includes(this.#type) || this.#channel.windowOpen;
  }

  render(): string {
    const text = this.#text;
    const line = this.#channel.seal(
      this.#type,
      typeof text === "string" ? text : text.text,
      this.#note,
    );
    if (text instanceof SharedText) text.release();
    return line;
  }

  discard(): void {
    if (this.#text instanceof SharedText) this.#text.release();
    if (ACKED_TYPES.includes(this.#type)) this.#channel.countUnsent();
  }
}

/**
 * About how many UTF-16 units the record of a plaintext of `length` units
 * takes (ASCII text: base64 makes 4 of 3; the JSON, seq and tag about 100).
 */
function recordUnits(length: number): number {
  return Math.ceil(length / 3) * 4 + 100;
}

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
  readonly #pacer: ReadPacer | undefined;
  readonly #acked = new Wakeup(); // an ack came, or the session ended
  #unsent = 0; // msg/chat records dropped unsent
  #pacedAt = -Infinity; // when the pacer last held our reading
  #turn: Promise<void> | undefined; // the next turn of the event loop, while awaited
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
    const onOverdue = options.onOverdue;
    const ackTimeoutMs = options.ackTimeoutMs ?? 0;
    this.acks = new AckTracker(
      ackTimeoutMs,
      onOverdue &&
        ((oldest, pending) =>
          performance.now() - this.#pacedAt < ackTimeoutMs ? false : onOverdue(oldest, pending)),
      session.passwordGenerator !== undefined,
    );
    this.#keepaliveMs = options.keepaliveMs ?? 0;
    this.#maxUnacked = options.maxUnacked ?? DEFAULT_MAX_UNACKED;
    this.#pacer = options.pacer;
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
   * Queues a record. It is sealed at once if nothing waits before it and the
   * ack window allows; otherwise when its turn comes. A `msg` or `chat` is
   * tracked from its sealing until its ack. Never blocks: a caller that
   * produces records (stdin, a relay) waits for {@link whenWritable}.
   *
   * @param note what to say about it if its ack is overdue
   * @returns false if the channel has stopped (nothing is sent)
   */
  send(type: "msg" | "chat" | "notice", text: string, note = ""): boolean {
    if (this.stopped) return false;
    const acked = ACKED_TYPES.includes(type);
    if (this.link.deferredLines === 0 && (!acked || this.windowOpen)) {
      this.link.send(this.seal(type, text, note));
      return true;
    }
    return this.link.defer(new ChannelRecord(this, type, text, note));
  }

  /**
   * Queues a `chat` record whose plaintext is held once for every channel
   * that sends it (a room's relayed line); sealed when its turn comes.
   *
   * @returns false if the channel has stopped (nothing is sent)
   */
  sendShared(text: SharedText, note = ""): boolean {
    if (this.stopped) return false;
    return this.link.defer(new ChannelRecord(this, "chat", text, note));
  }

  /** Seals a record now (its seq is the next one) and tracks its ack if it has one. */
  seal(type: "msg" | "chat" | "notice", text: string, note = ""): string {
    const seq = this.session.nextSendSeq;
    const line = this.session.seal(type, text);
    if (ACKED_TYPES.includes(type)) this.acks.track(seq, note);
    return line;
  }

  /** Whether one more `msg`/`chat` may be sealed now (the ack window has room). */
  get windowOpen(): boolean {
    return this.acks.pending < this.#maxUnacked;
  }

  /** Records sent and not acknowledged, plus those queued and not yet sealed. */
  get backlog(): number {
    return this.acks.pending + this.link.deferredLines;
  }

  /** `msg`/`chat` records dropped unsent (the session ended first). */
  get unsent(): number {
    return this.#unsent;
  }

  /** Counts a `msg`/`chat` dropped unsent (called by the queue). */
  countUnsent(): void {
    this.#unsent++;
  }

  /**
   * Flow control: resolves true once the backlog is under `below` (by
   * default the ack window: one more record will not wait), false if the
   * channel stops or `bounds` end first.
   */
  async whenWritable(bounds: Bounds = {}, below: number = this.#maxUnacked): Promise<boolean> {
    while (this.backlog >= below) {
      if (this.stopped) return false;
      const ok = await bounded(this.#acked.wait(), bounds).then(() => true, () => false);
      if (!ok) return false;
    }
    return !this.stopped;
  }

  /**
   * Resolves true once every record queued was sealed, sent and
   * acknowledged; false if the channel stops or `bounds` end first.
   */
  async settled(bounds: Bounds = {}): Promise<boolean> {
    while (this.backlog > 0) {
      if (this.stopped) return false;
      const ok = await bounded(this.#acked.wait(), bounds).then(() => true, () => false);
      if (!ok) return false;
    }
    return true;
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
          // Acks are not charged: a peer can ack no more than we sent.
          const pacer = this.#pacer;
          if (pacer && !lines[i].startsWith(ACK_PREFIX) && pacer.charge(lines[i].length + 1) > 0) {
            await this.#paced(pacer);
            if (this.#end || this.stopped) break;
          }
          this.#receive(lines[i], onEvent);
          // The answers to each slice of lines start to leave before the next
          // slice is worked on: a socket write completes at once, so the peer
          // reads them while we go on. A write that does not complete at once
          // is not waited for: a peer that writes to us while not reading
          // (its own writes stuck) must not stop us reading, or both wait.
          if ((i + 1) % ANSWER_SLICE === 0) {
            // One timer at a time serves every slice until it fires.
            this.#turn ??= nextTurn().then(() => this.#turn = undefined);
            await Promise.race([this.link.drain(), this.#turn]);
          }
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
      this.#acked.wake();
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
      case "ack": {
        const acked = this.acks.acknowledge(record.text);
        this.link.resume(); // the window has room: waiting records may go
        this.#acked.wake();
        onEvent({ type: "ack", acked });
        return;
      }
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

  /**
   * Waits while the pacer says so (in slices, so that a stop is noticed).
   * The time spent waiting is not the peer's silence: we were not reading.
   */
  async #paced(pacer: ReadPacer): Promise<void> {
    for (let ms = pacer.wait(); ms > 0 && !this.stopped; ms = pacer.wait()) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(ms, PACE_SLICE_MS)));
    }
    this.#lastHeard = this.#pacedAt = performance.now();
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

// ───────────────────────────────────────────────────────────────────────────
// 6. Flow control
// ───────────────────────────────────────────────────────────────────────────

/**
 * A token bucket: `rate` tokens a second, at most `burst` saved up. Taking
 * more than is there leaves a debt, paid back by time: {@link wait} says how
 * long.
 */
export class TokenBucket {
  /** Tokens added per second. */
  readonly rate: number;
  /** Most tokens held (and the level it starts full at). */
  readonly burst: number;
  readonly #now: () => number;
  #level: number;
  #at: number;

  /**
   * Creates a full bucket.
   *
   * @param rate tokens per second (> 0)
   * @param burst most tokens held
   * @param now the clock in ms (default `performance.now`; tests inject one)
   */
  constructor(rate: number, burst: number, now: () => number = () => performance.now()) {
    this.rate = rate;
    this.burst = burst;
    this.#now = now;
    this.#level = burst;
    this.#at = now();
  }

  /** Tokens there now (negative: a debt). */
  get level(): number {
    this.#refill();
    return this.#level;
  }

  /**
   * Takes `amount` tokens, going into debt if there are not enough.
   *
   * @param now the clock's reading, if the caller has one
   * @returns ms until the level is back to zero (0 if there is no debt)
   */
  take(amount: number, now: number = this.#now()): number {
    this.#refill(now);
    this.#level -= amount;
    return this.#debtMs();
  }

  /**
   * Ms until the level is back to zero (0 if there is no debt).
   *
   * @param now the clock's reading, if the caller has one
   */
  wait(now: number = this.#now()): number {
    this.#refill(now);
    return this.#debtMs();
  }

  #debtMs(): number {
    return this.#level >= 0 ? 0 : Math.ceil((-this.#level / this.rate) * 1000);
  }

  #refill(now = this.#now()): void {
    this.#level = Math.min(this.burst, this.#level + ((now - this.#at) / 1000) * this.rate);
    this.#at = now;
  }
}

/**
 * One bound on the bytes queued for sending across a whole server: every
 * {@link SharedText} held by some queue counts once, plus a little per queue
 * holding it. Past `limit` it is {@link full}, and pacers stop reading from
 * senders until queues drain.
 */
export class QueueBudget {
  /** The bound, in UTF-16 units (bytes, for ASCII records). */
  readonly limit: number;
  #used = 0;
  #peak = 0;

  /**
   * Creates an empty budget.
   *
   * @param limit the bound in bytes
   */
  constructor(limit: number) {
    this.limit = limit;
  }

  /** Units held now. */
  get used(): number {
    return this.#used;
  }

  /** The most units ever held at once. */
  get peak(): number {
    return this.#peak;
  }

  /** Whether the bound is reached: no more may be read from senders. */
  get full(): boolean {
    return this.#used >= this.limit;
  }

  /** Counts `units` more held. */
  add(units: number): void {
    this.#used += units;
    if (this.#used > this.#peak) this.#peak = this.#used;
  }

  /** Counts `units` released. */
  remove(units: number): void {
    this.#used = Math.max(0, this.#used - units);
  }
}

/** What each queue holding a {@link SharedText} costs the budget (the reference, its record). */
export const SHARED_REFERENCE_UNITS = 64;

/**
 * A text queued for many connections but held once (a room's relayed line):
 * each queue holds a reference, and the text counts against a
 * {@link QueueBudget} while any does.
 */
export class SharedText {
  /** The text (a `chat` plaintext). */
  readonly text: string;
  /** Its size in UTF-16 units. */
  readonly units: number;
  readonly #budget: QueueBudget | undefined;
  #holders = 0;

  /**
   * Wraps a text.
   *
   * @param text the plaintext
   * @param budget what it counts against while held
   */
  constructor(text: string, budget?: QueueBudget) {
    this.text = text;
    this.units = text.length;
    this.#budget = budget;
  }

  /** Queues holding it now. */
  get holders(): number {
    return this.#holders;
  }

  /** One more queue holds it. */
  hold(): void {
    if (this.#holders++ === 0) this.#budget?.add(this.units);
    this.#budget?.add(SHARED_REFERENCE_UNITS);
  }

  /** A queue let it go (written or dropped). */
  release(): void {
    if (this.#holders === 0) return;
    this.#budget?.remove(SHARED_REFERENCE_UNITS);
    if (--this.#holders === 0) this.#budget?.remove(this.units);
  }
}

/** Paces the reading of one peer (see {@link ChannelOptions.pacer}). */
export interface ReadPacer {
  /** Counts a line of `bytes` received; returns {@link wait}'s answer. */
  charge(bytes: number): number;
  /** Ms to wait before reading on (0: go on). */
  wait(): number;
}

/** Limits of a {@link SenderPacer}. */
export interface SenderRate {
  /** Lines (records of any type) per second. */
  readonly linesPerSecond: number;
  /** Lines that may come at once after a quiet time. */
  readonly lineBurst: number;
  /** Bytes per second. */
  readonly bytesPerSecond: number;
  /** Bytes that may come at once after a quiet time. */
  readonly byteBurst: number;
}

/** Defaults of {@link SenderRate}: a human paste of 2,000 lines or 1 MiB passes at once. */
export const SENDER_RATE_DEFAULTS: SenderRate = Object.freeze({
  linesPerSecond: 1000,
  lineBurst: 2000,
  bytesPerSecond: 256 * 1024,
  byteBurst: 1024 * 1024,
});

/** Recipients of a relayed line that cost its sender as much as one more line read. */
export const RELAY_COST_DIVISOR = 4;

/** Ms a pacer waits before it looks again at a full {@link QueueBudget}. */
const BUDGET_RETRY_MS = 50;

/**
 * The pacer of one sender: a {@link TokenBucket} of lines and one of bytes
 * (every record counts, pings too), and the server's {@link QueueBudget}.
 * Past either rate, or while the budget is full, its reading waits.
 */
export class SenderPacer implements ReadPacer {
  /** Lines. */
  readonly lines: TokenBucket;
  /** Bytes. */
  readonly bytes: TokenBucket;
  readonly #budget: QueueBudget | undefined;
  readonly #now: () => number;

  /**
   * Creates a pacer with full buckets.
   *
   * @param rate the rates and bursts
   * @param budget the server-wide bound on queued bytes, if any
   * @param now the clock in ms (tests inject one)
   */
  constructor(rate: SenderRate, budget?: QueueBudget, now?: () => number) {
    this.#now = now ?? (() => performance.now());
    this.lines = new TokenBucket(rate.linesPerSecond, rate.lineBurst, this.#now);
    this.bytes = new TokenBucket(rate.bytesPerSecond, rate.byteBurst, this.#now);
    this.#budget = budget;
  }

  charge(bytes: number): number {
    const now = this.#now(); // one clock reading per line: this runs for every record
    const debt = Math.max(this.lines.take(1, now), this.bytes.take(bytes, now));
    return debt > 0 ? debt : this.#budget?.full ? BUDGET_RETRY_MS : 0;
  }

  /**
   * Charges what relaying a line of `bytes` to `recipients` costs the server
   * (a record sealed and an ack opened for each): a quarter of a line and of
   * its bytes per recipient, so that a room's size slows its senders, not
   * its server.
   */
  chargeRelay(recipients: number, bytes: number): void {
    this.lines.take(recipients / RELAY_COST_DIVISOR);
    this.bytes.take((bytes * recipients) / RELAY_COST_DIVISOR);
  }

  wait(): number {
    const now = this.#now();
    const debt = Math.max(this.lines.wait(now), this.bytes.wait(now));
    return debt > 0 ? debt : this.#budget?.full ? BUDGET_RETRY_MS : 0;
  }
}
