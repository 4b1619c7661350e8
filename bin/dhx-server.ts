/**
 * The `dhx-server` command: server.ts under its installed name, so that `--help`
 * and `--version` say `dhx-server`. From a checkout:
 *
 * ```sh
 * deno install -g -N -c deno.json bin/dhx-server.ts    # then: dhx-server --help
 * ```
 *
 * The installed command runs this file where it is: it breaks if the
 * checkout moves (install again from the new place).
 *
 * @module
 */

import { main } from "../server.ts";

// Exit explicitly: a read pending on stdin would otherwise keep the process alive.
Deno.exit(await main(Deno.args));
