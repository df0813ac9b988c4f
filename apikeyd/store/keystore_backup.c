/* SPDX-License-Identifier: MIT */
/*
 * A compacted copy of the keystore taken while it serves (keystore.h,
 * keystore_backup()): LMDB copies one read transaction's snapshot, so the
 * copy holds every write committed before it began and nothing of one
 * committed after, while writes go on.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <lmdb.h>

#include "keystore_internal.h"

int keystore_backup(struct keystore *ks, const char *path, char **ret_error)
{
        _cleanup_close_ int fd = -1;
        MDB_txn *txn;
        int rc, r;

        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return fail_with(ret_error, -errno, "cannot create %s: %m", path);
        /* Held shared meanwhile, so the writer cannot resize the map under the copy. */
        r = read_begin(ks, &txn);
        if (r < 0)
                return fail_with(ret_error, r, "cannot read the keystore: %s", strerror(-r));
        rc = mdb_env_copyfd2(ks->env, fd, MDB_CP_COMPACT);
        read_end(ks);
        r = rc == MDB_SUCCESS ? 0 : mdb_to_errno(rc);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r < 0) {
                (void)unlink(path);
                return fail_with(ret_error, r, "cannot write a copy of the keystore to %s: %s",
                                 path, rc != MDB_SUCCESS ? mdb_strerror(rc) : strerror(-r));
        }
        return 0;
}
