
/*
 * Copyright (C) 2026 The snapcache authors
 * SPDX-License-Identifier: BSD-2-Clause
 */


/*
 * snapcache CLI: the subcommands implemented outside tools/snapcache.c.
 * Each takes argv with argv[0] set to the subcommand name.
 */

#ifndef SNAPCACHE_CLI_H
#define SNAPCACHE_CLI_H

int snapcache_cmd_inspect(int argc, char **argv);
int snapcache_cmd_purge(int argc, char **argv);
int snapcache_cmd_stats(int argc, char **argv);

#endif /* SNAPCACHE_CLI_H */
