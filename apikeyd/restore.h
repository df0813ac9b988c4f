/* SPDX-License-Identifier: MIT */
/*
 * apikeyd --restore (restore.c): a backup (io.apikeyd.Keys.Backup,
 * apikeyctl backup) installed as the keystore of a state directory while
 * no daemon uses it; and the lock on the state directory that keeps a
 * serving daemon and a restore apart.
 */
#pragma once

#include <stdbool.h>

/*
 * Take the state directory's lock (flock on the directory, without
 * waiting) into `*ret_fd`, held until it is closed.  -EBUSY, said in the
 * log, if a daemon serving from `dir` or a restore into it holds it.
 */
int state_dir_lock(const char *dir, const char *who, int *ret_fd);

/* A process the daemon runs on its own state directory (apikeyd
 * --fleet-push, for FleetPush) is handed the daemon's lock as the fd that
 * STATE_LOCK_FD_ENV (fleet.h) names: state_dir_lock() takes it when it is
 * the same directory and holds the lock, instead of refusing as it does a
 * second daemon. */

/*
 * Install the backup `file` as the keystore of `dir`: checked (a
 * keystore, consistent, its pepper fingerprint that of `dir`'s pepper,
 * unless `force`), then put in place in one rename; the keystore it
 * replaces is kept beside it (RESTORE_KEPT).  What it did, or why not,
 * on standard output and standard error.  0 or a negative errno.
 */
#define RESTORE_KEPT "keys.mdb.before-restore"
int restore_backup(const char *file, const char *dir, bool force);
