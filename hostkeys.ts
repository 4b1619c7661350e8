/**
 * dhx host keys and known hosts (DHX/1 revision 3): where a server keeps its
 * Ed25519 host key, and where a client remembers the host keys it has seen.
 *
 * Both are a few lines of text in one {@link TextStore}, with three
 * implementations:
 * - {@link LocalStorageStore} — the default: Deno's `localStorage`, which
 *   needs no permission, so `deno run --allow-net server.ts` keeps working as
 *   typed and still keeps its key across restarts;
 * - {@link FileStore} — a text file (`--host-key-file`, `--known-hosts`);
 * - {@link MemoryStore} — nothing persists (tests, the library's default).
 *
 * Known-hosts format (a file given with `--known-hosts`, or the default
 * store's text): one host per line, `HOST:PORT SHA256:FINGERPRINT`, where
 * HOST:PORT is the address as dialled (an IPv6 host in brackets,
 * `[::1]:4444`) and the fingerprint is the host key's
 * ({@link hostKeyFingerprint}); blank lines and lines starting with `#` are
 * ignored and kept.
 *
 * Host key format: one line, `dhx-ed25519 BASE64`, the base64 of the 32-byte
 * Ed25519 seed (the private key). A file holding it must be readable by its
 * owner only (mode 0600), as ssh requires of its keys.
 *
 * @example A client's known hosts in memory
 * ```ts
 * import { KnownHosts, MemoryStore } from "./hostkeys.ts";
 *
 * const known = new KnownHosts(new MemoryStore());
 * known.remember("127.0.0.1:4444", "SHA256:ZbYGc9btiEvwHCwiLYKtoHQPKawzVdapJcgfF/R6J7g");
 * known.get("127.0.0.1:4444"); // "SHA256:ZbYG…"
 * known.forget("127.0.0.1:4444"); // the fingerprint it removed
 * ```
 *
 * @module
 */

import { HOST_KEY_LENGTH, HostKey } from "./dh.ts";

/** A small text that outlives the process (or not): the one storage interface. */
export interface TextStore {
  /** Where the text lives, for messages ("/home/me/.dhx_key", "the default store"). */
  readonly description: string;
  /**
   * The stored text, or undefined if there is none yet.
   *
   * @throws {Error} with a reason a user can act on (unreadable, unsafe permissions)
   */
  read(): string | undefined;
  /** Replaces the stored text. */
  write(text: string): void;
}

/** The part of the Web Storage API a {@link LocalStorageStore} uses. */
export type KeyValueStorage = Pick<Storage, "getItem" | "setItem">;

/** One item of Deno's `localStorage` (or of any storage with the same calls). */
export class LocalStorageStore implements TextStore {
  readonly description: string;
  readonly #key: string;
  readonly #storage: KeyValueStorage;

  /**
   * The item `key` of `storage`.
   *
   * @param key the item's name
   * @param storage the storage (default: `localStorage`, which needs no permission)
   */
  constructor(key: string, storage: KeyValueStorage = globalThis.localStorage) {
    this.#key = key;
    this.#storage = storage;
    this.description = "the default store";
  }

  /** The item's text, or undefined. */
  read(): string | undefined {
    return this.#storage.getItem(this.#key) ?? undefined;
  }

  /** Replaces the item. */
  write(text: string): void {
    this.#storage.setItem(this.#key, text);
  }
}

/** Options of a {@link FileStore}. */
export interface FileStoreOptions {
  /**
   * A secret (a private key): created with mode 0600, and refused when its
   * group or others may read it.
   */
  readonly secret?: boolean;
}

/** A text file. */
export class FileStore implements TextStore {
  readonly description: string;
  readonly #path: string;
  readonly #secret: boolean;

  /**
   * The file at `path` (read and written at each call, never cached).
   *
   * @param path the file
   * @param options whether it holds a secret
   */
  constructor(path: string, options: FileStoreOptions = {}) {
    this.#path = path;
    this.#secret = options.secret === true;
    this.description = path;
  }

  /** The file's text, or undefined if it does not exist. */
  read(): string | undefined {
    let text: string;
    try {
      if (this.#secret) this.#checkPrivate();
      text = Deno.readTextFileSync(this.#path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw error instanceof StoreError
        ? error
        : new StoreError(`cannot read the file ${this.#path}: ${(error as Error).message}`);
    }
    return text;
  }

  /** Writes the file (a secret one with mode 0600). */
  write(text: string): void {
    try {
      Deno.writeTextFileSync(this.#path, text, this.#secret ? { mode: 0o600 } : {});
      if (this.#secret) Deno.chmodSync(this.#path, 0o600); // mode applies only when created
    } catch (error) {
      throw new StoreError(`cannot write the file ${this.#path}: ${(error as Error).message}`);
    }
  }

  /** Refuses a secret that others may read, as ssh does. */
  #checkPrivate(): void {
    const mode = Deno.statSync(this.#path).mode;
    if (mode !== null && (mode & 0o077) !== 0) {
      const octal = (mode & 0o777).toString(8).padStart(4, "0");
      throw new StoreError(
        `the key file ${this.#path} may be read by others (mode ${octal}): run chmod 600 ${this.#path}`,
      );
    }
  }
}

/** Text kept in memory only. */
export class MemoryStore implements TextStore {
  readonly description = "memory";
  #text: string | undefined;

  /**
   * A store in memory, optionally with some text already.
   *
   * @param text what it starts with
   */
  constructor(text?: string) {
    this.#text = text;
  }

  /** The text, or undefined. */
  read(): string | undefined {
    return this.#text;
  }

  /** Replaces the text. */
  write(text: string): void {
    this.#text = text;
  }
}

/** A store that cannot be used as it is: unreadable, unsafe, or not in our format. */
export class StoreError extends Error {
  /**
   * An unusable store, and what to do about it.
   *
   * @param message what is wrong and what to do
   */
  constructor(message: string) {
    super(message);
    this.name = "StoreError";
  }
}

/** Names of the default stores' localStorage items. */
export const STORAGE_KEYS: Readonly<{ hostKey: string; knownHosts: string }> = Object.freeze({
  hostKey: "dhx/1 host key",
  knownHosts: "dhx/1 known hosts",
});

/** The first word of a stored host key. */
const HOST_KEY_TAG = "dhx-ed25519";

/**
 * The server's host key from `store`, made and stored on first use.
 *
 * @returns the key, and whether it was just created
 * @throws {StoreError} if the store holds something that is not a host key
 */
export function loadHostKey(store: TextStore): { hostKey: HostKey; created: boolean } {
  const text = store.read();
  if (text === undefined || text.trim() === "") {
    const hostKey = HostKey.generate();
    store.write(`${HOST_KEY_TAG} ${hostKey.exportSeed().toBase64()}\n`);
    return { hostKey, created: true };
  }
  const [tag, seed] = text.trim().split(/\s+/);
  let bytes: Uint8Array | undefined;
  try {
    bytes = Uint8Array.fromBase64(seed ?? "");
  } catch {
    bytes = undefined;
  }
  if (tag !== HOST_KEY_TAG || bytes?.length !== HOST_KEY_LENGTH) {
    throw new StoreError(
      `${store.description} does not hold a dhx host key ("${HOST_KEY_TAG} BASE64")`,
    );
  }
  return { hostKey: new HostKey(bytes), created: false };
}

/** What a fingerprint looks like: `SHA256:` and 43 base64 characters. */
const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/;

/** Whether `text` is a host key fingerprint (`SHA256:` + 43 base64 characters). */
export function isHostKeyFingerprint(text: string): boolean {
  return FINGERPRINT.test(text);
}

/**
 * A client's known hosts: the host key fingerprint remembered for each
 * `host:port` dialled. Reads the store at every call, so two clients
 * running at once see each other's changes.
 */
export class KnownHosts {
  /** Where they are kept. */
  readonly store: TextStore;

  /**
   * Known hosts kept in `store`.
   *
   * @param store the text they live in
   */
  constructor(store: TextStore) {
    this.store = store;
  }

  /** The fingerprint remembered for `address` (`host:port`), if any. */
  get(address: string): string | undefined {
    for (const line of this.#lines()) {
      const [host, fingerprint] = line.trim().split(/\s+/);
      if (host === address && fingerprint && isHostKeyFingerprint(fingerprint)) return fingerprint;
    }
    return undefined;
  }

  /** Remembers `fingerprint` for `address`, replacing what was there. */
  remember(address: string, fingerprint: string): void {
    const kept = this.#lines().filter((line) => !this.#isEntryOf(line, address));
    this.store.write([...kept, `${address} ${fingerprint}`].join("\n") + "\n");
  }

  /** Removes `address`; returns the fingerprint removed, if there was one. */
  forget(address: string): string | undefined {
    const removed = this.get(address);
    const lines = this.#lines();
    const kept = lines.filter((line) => !this.#isEntryOf(line, address));
    if (kept.length !== lines.length) {
      this.store.write(kept.length === 0 ? "" : kept.join("\n") + "\n");
    }
    return removed;
  }

  #isEntryOf(line: string, address: string): boolean {
    return line.trim().split(/\s+/)[0] === address;
  }

  #lines(): string[] {
    const text = this.store.read() ?? "";
    return text.split("\n").filter((line) => line.trim() !== "");
  }
}
