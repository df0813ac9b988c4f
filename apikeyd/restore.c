/* SPDX-License-Identifier: MIT */
/* Installing a backup, and the state directory's lock; see restore.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "fleet.h"
#include "keystore.h"
#include "log.h"
#include "restore.h"
#include "token_crypto.h"

/* The directory of the state directory where a backup is checked first. */
#define RESTORE_DIR "restore.tmp"

/* The lock handed down by the daemon (STATE_LOCK_FD_ENV), if it is `dir`'s. */
static int inherited_lock(const char *dir)
{
        const char *e = getenv(STATE_LOCK_FD_ENV);
        struct stat a, b;
        char *end;
        long fd;

        if (!e)
                return -1;
        errno = 0;
        fd = strtol(e, &end, 10);
        (void)unsetenv(STATE_LOCK_FD_ENV);
        if (errno || end == e || *end || fd < 3 || fd > INT_MAX)
                return -1;
        if (fstat((int)fd, &a) < 0 || stat(dir, &b) < 0 || !S_ISDIR(a.st_mode) ||
            a.st_dev != b.st_dev || a.st_ino != b.st_ino)
                return -1;
        /* Held through this very open file description: taking it again
         * succeeds; anyone else's lock makes it fail. */
        if (flock((int)fd, LOCK_EX | LOCK_NB) < 0)
                return -1;
        (void)fcntl((int)fd, F_SETFD, FD_CLOEXEC);
        return (int)fd;
}

int state_dir_lock(const char *dir, const char *who, int *ret_fd)
{
        int fd = inherited_lock(dir);

        if (fd >= 0) {
                *ret_fd = fd;
                return 0;
        }
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0) {
                log_error("cannot open state directory %s: %m", dir);
                return -errno;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                int r = errno == EWOULDBLOCK ? -EBUSY : -errno;
                if (r == -EBUSY)
                        log_error("state directory %s is in use by a running apikeyd or by "
                                  "apikeyd --restore; %s",
                                  dir, who);
                else
                        log_error("cannot lock state directory %s: %s", dir, strerror(-r));
                close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}

static void restore_dir_clean(const char *tmp)
{
        char path[PATH_MAX];

        snprintf(path, sizeof(path), "%s/%s", tmp, KEYSTORE_FILE);
        (void)unlink(path);
        snprintf(path, sizeof(path), "%s/%s-lock", tmp, KEYSTORE_FILE);
        (void)unlink(path);
        (void)rmdir(tmp);
}

/* `file` copied to `path` (new, 0600, owned as `dir` is), synced. */
static int copy_file(const char *file, const char *path, const struct stat *dir_st)
{
        _cleanup_close_ int in = -1, out = -1;
        char buf[65536];
        ssize_t n;

        in = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (in < 0) {
                fprintf(stderr, "apikeyd: cannot open the backup %s: %m\n", file);
                return -errno;
        }
        out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (out < 0) {
                fprintf(stderr, "apikeyd: cannot create %s: %m\n", path);
                return -errno;
        }
        while ((n = read(in, buf, sizeof(buf))) != 0) {
                if (n < 0 && errno == EINTR)
                        continue;
                for (ssize_t done = 0, w; n > 0 && done < n; done += w) {
                        w = write(out, buf + done, (size_t)(n - done));
                        if (w < 0 && errno == EINTR)
                                w = 0;
                        else if (w < 0)
                                n = -1;
                }
                if (n < 0) {
                        fprintf(stderr, "apikeyd: cannot copy %s to %s: %m\n", file, path);
                        return -errno;
                }
        }
        /* The daemon, running as the state directory's owner, must own it. */
        if (fchown(out, dir_st->st_uid, dir_st->st_gid) < 0 && errno != EPERM) {
                fprintf(stderr, "apikeyd: cannot give %s to the state directory's owner: %m\n",
                        path);
                return -errno;
        }
        if (fsync(out) < 0) {
                fprintf(stderr, "apikeyd: cannot write %s: %m\n", path);
                return -errno;
        }
        return 0;
}

/* The backup copied into `tmp`, checked: its keys and the fingerprint it keeps. */
static int check_backup(const char *file, const char *tmp, uint64_t *ret_keys, uint8_t *ret_fp,
                        bool *ret_has_fp)
{
        _cleanup_free_ char *err = NULL;
        struct keystore_options opts = {.flags = KEYSTORE_READONLY};
        struct keystore *ks = NULL;
        size_t len = 0;
        int r;

        r = keystore_open(tmp, &opts, &ks, &err);
        if (r < 0) {
                fprintf(stderr, "apikeyd: %s is not a keystore backup apikeyd can read: %s\n", file,
                        err ? err : strerror(-r));
                return r;
        }
        r = keystore_check_indexes(ks, &err);
        if (r < 0)
                fprintf(stderr, "apikeyd: the backup %s is damaged: %s\n", file,
                        err ? err : strerror(-r));
        if (r >= 0)
                r = keystore_n_keys(ks, ret_keys);
        if (r >= 0) {
                r = keystore_meta_get(ks, PEPPER_FINGERPRINT_META, ret_fp, PEPPER_FINGERPRINT_SIZE,
                                      &len);
                *ret_has_fp = r >= 0 && len == PEPPER_FINGERPRINT_SIZE;
                if (r == -ENOENT || r == -ENOBUFS)
                        r = 0;
                if (r < 0)
                        fprintf(stderr, "apikeyd: cannot read the backup %s: %s\n", file,
                                strerror(-r));
        }
        keystore_close(ks);
        return r;
}

/* With --force, the backup made to keep this pepper's fingerprint. */
static int adopt_fingerprint(const char *tmp, const uint8_t *fp)
{
        _cleanup_free_ char *err = NULL;
        struct keystore *ks = NULL;
        int r = keystore_open(tmp, NULL, &ks, &err);

        if (r >= 0)
                r = keystore_meta_put(ks, PEPPER_FINGERPRINT_META, fp, PEPPER_FINGERPRINT_SIZE);
        if (r < 0)
                fprintf(stderr, "apikeyd: cannot write to the copy of the backup: %s\n",
                        err ? err : strerror(-r));
        keystore_close(ks);
        return r;
}

int restore_backup(const char *file, const char *dir, bool force)
{
        _cleanup_free_ char *tmp = NULL, *tmp_store = NULL, *store = NULL, *kept = NULL,
                            *lock = NULL, *err = NULL;
        _cleanup_close_ int lock_fd = -1, dir_fd = -1;
        uint8_t backup_fp[PEPPER_FINGERPRINT_SIZE], fp[PEPPER_FINGERPRINT_SIZE];
        char backup_hex[PEPPER_FINGERPRINT_SIZE * 2 + 1], hex[PEPPER_FINGERPRINT_SIZE * 2 + 1];
        uint8_t *pepper = NULL;
        bool has_fp = false, replaced;
        uint64_t n_keys = 0;
        struct stat st;
        int r;

        if (asprintf(&tmp, "%s/%s", dir, RESTORE_DIR) < 0 ||
            asprintf(&tmp_store, "%s/%s", tmp, KEYSTORE_FILE) < 0 ||
            asprintf(&store, "%s/%s", dir, KEYSTORE_FILE) < 0 ||
            asprintf(&kept, "%s/%s", dir, RESTORE_KEPT) < 0 ||
            asprintf(&lock, "%s/%s-lock", dir, KEYSTORE_FILE) < 0)
                return -ENOMEM;
        if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
                fprintf(stderr,
                        "apikeyd: %s is not a directory: create the state directory (mode 0700, "
                        "owned by the daemon's user) and put the pepper the backup was made with "
                        "in it\n",
                        dir);
                return -ENOTDIR;
        }
        r = state_dir_lock(dir, "stop it first (systemctl stop apikeyd.socket apikeyd.service)",
                           &lock_fd);
        if (r < 0)
                return r;

        restore_dir_clean(tmp);
        if (mkdir(tmp, 0700) < 0) {
                fprintf(stderr, "apikeyd: cannot create %s: %m\n", tmp);
                return -errno;
        }
        r = copy_file(file, tmp_store, &st);
        if (r >= 0)
                r = check_backup(file, tmp, &n_keys, backup_fp, &has_fp);
        if (r < 0)
                goto out;
        if (has_fp)
                sodium_bin2hex(backup_hex, sizeof(backup_hex), backup_fp, sizeof(backup_fp));
        else
                snprintf(backup_hex, sizeof(backup_hex), "none");

        pepper = sodium_malloc(PEPPER_SIZE);
        if (!pepper) {
                r = -ENOMEM;
                goto out;
        }
        r = pepper_load(dir, false, pepper, &err);
        if (r == -ENOENT) {
                fprintf(stderr,
                        "apikeyd: %s/%s is missing: put the pepper the backup %s was made with "
                        "there (its fingerprint is %s), then restore again\n",
                        dir, PEPPER_FILE, file, backup_hex);
                goto out;
        }
        if (r < 0) {
                fprintf(stderr, "apikeyd: %s\n", err ? err : strerror(-r));
                goto out;
        }
        pepper_fingerprint(pepper, fp);
        sodium_bin2hex(hex, sizeof(hex), fp, sizeof(fp));
        if (has_fp && !pepper_fingerprint_equal(backup_fp, fp)) {
                if (!force) {
                        fprintf(stderr,
                                "apikeyd: the backup %s was made with another pepper than %s/%s "
                                "(the backup's fingerprint is %s, this pepper's %s): its keys "
                                "would never verify with it. Put the pepper it was made with in "
                                "%s/%s, or give --force to install it all the same\n",
                                file, dir, PEPPER_FILE, backup_hex, hex, dir, PEPPER_FILE);
                        r = -EBADMSG;
                        goto out;
                }
                r = adopt_fingerprint(tmp, fp);
                if (r < 0)
                        goto out;
                fprintf(stderr,
                        "apikeyd: warning: --force: the %llu keys of %s were made with another "
                        "pepper (fingerprint %s) and will not verify with %s/%s; they can be "
                        "listed, revoked and deleted\n",
                        (unsigned long long)n_keys, file, backup_hex, dir, PEPPER_FILE);
        } else if (!has_fp && n_keys > 0) {
                fprintf(stderr,
                        "apikeyd: the backup %s keeps no pepper fingerprint: it is not one "
                        "apikeyd's Backup made\n",
                        file);
                r = -EBADMSG;
                goto out;
        }

        /* In place: the keystore it replaces kept beside it, the new one in one rename. */
        replaced = access(store, F_OK) == 0;
        if (replaced && rename(store, kept) < 0) {
                r = -errno;
                fprintf(stderr, "apikeyd: cannot move %s aside to %s: %m\n", store, kept);
                goto out;
        }
        (void)unlink(lock);
        if (rename(tmp_store, store) < 0) {
                r = -errno;
                fprintf(stderr, "apikeyd: cannot install %s: %m\n", store);
                if (replaced)
                        (void)rename(kept, store);
                goto out;
        }
        dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd >= 0)
                (void)fsync(dir_fd);
        printf("Restored %llu key%s from %s into %s (pepper fingerprint %s).\n",
               (unsigned long long)n_keys, n_keys == 1 ? "" : "s", file, dir, hex);
        if (replaced)
                printf("The keystore it replaced is kept as %s.\n", kept);
        r = 0;
out:
        restore_dir_clean(tmp);
        sodium_free(pepper);
        return r;
}
