/**
 * The `dhx-client` command: client.ts under its installed name, so that `--help`
 * and `--version` say `dhx-client`. From a checkout:
 *
 * ```sh
 * deno install -g -N -c deno.json bin/dhx-client.ts    # then: dhx-client --help
 * ```
 *
 * The installed command runs this file where it is: it breaks if the
 * checkout moves (install again from the new place).
 *
 * @module
 */

import { main } from "../client.ts";

// Exit explicitly: a read pending on stdin would otherwise keep the process alive.
Deno.exit(await main(Deno.args));
