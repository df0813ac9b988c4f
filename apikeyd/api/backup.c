/* SPDX-License-Identifier: MIT */
/*
 * Backup: a consistent, compacted copy of the keystore, taken while the
 * daemon serves, sent to the caller over the connection.  The daemon
 * writes the copy only in a directory of its own state directory, which
 * nobody else may write to, and unlinks it at once: it never writes to a
 * path a caller names.  The caller (apikeyctl backup FILE) writes the file
 * as itself.  The copy holds no pepper and no shared secret: they live in
 * files of their own, beside the keystore, not in it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "change.h"
#include "log.h"
#include "methods.h"

/* The directory of the state directory where the copy is taken. */
#define BACKUP_DIR "backup.tmp"
/* Bytes of the copy a reply carries (base64: 1 MiB). */
#define BACKUP_CHUNK (768u * 1024u)

struct backup {
        int fd; /* the copy, already unlinked */
        uint64_t n_keys, size;
        char fingerprint[PEPPER_FINGERPRINT_SIZE * 2 + 1]; /* hex */
};

static void backup_free(struct backup *b)
{
        if (!b)
                return;
        if (b->fd >= 0)
                close(b->fd);
        free(b);
}

/* What a failed or an earlier copy left in `dir`, removed. */
static void backup_dir_clean(const char *dir)
{
        char path[PATH_MAX];

        snprintf(path, sizeof(path), "%s/%s", dir, KEYSTORE_FILE);
        (void)unlink(path);
        snprintf(path, sizeof(path), "%s/%s-lock", dir, KEYSTORE_FILE);
        (void)unlink(path);
        (void)rmdir(dir);
}

/*
 * The copy taken into BACKUP_DIR, counted and its pepper fingerprint read
 * from it (not from the keystore, which may have changed since), opened
 * and unlinked: `b->fd` reads it.
 */
static int backup_take(struct api *a, struct backup *b, char **ret_error)
{
        _cleanup_free_ char *dir = NULL, *path = NULL;
        uint8_t fp[PEPPER_FINGERPRINT_SIZE];
        struct keystore *copy = NULL;
        struct keystore_options opts = {.flags = KEYSTORE_READONLY};
        struct stat st;
        size_t len = 0;
        int r;

        if (asprintf(&dir, "%s/%s", a->state_dir, BACKUP_DIR) < 0 ||
            asprintf(&path, "%s/%s", dir, KEYSTORE_FILE) < 0)
                return -ENOMEM;
        backup_dir_clean(dir);
        if (mkdir(dir, 0700) < 0) {
                r = -errno;
                if (asprintf(ret_error, "cannot create %s: %s", dir, strerror(-r)) < 0)
                        *ret_error = NULL;
                return r;
        }
        r = keystore_backup(a->ks, path, ret_error);
        if (r >= 0)
                r = keystore_open(dir, &opts, &copy, ret_error);
        if (r >= 0)
                r = keystore_n_keys(copy, &b->n_keys);
        if (r >= 0)
                r = keystore_meta_get(copy, PEPPER_FINGERPRINT_META, fp, sizeof(fp), &len);
        if (r >= 0 && len == sizeof(fp))
                sodium_bin2hex(b->fingerprint, sizeof(b->fingerprint), fp, sizeof(fp));
        else if (r >= 0 || r == -ENOENT)
                str_copy(b->fingerprint, sizeof(b->fingerprint), "none");
        if (r == -ENOENT)
                r = 0;
        keystore_close(copy);
        if (r >= 0) {
                b->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                if (b->fd < 0 || fstat(b->fd, &st) < 0)
                        r = -errno;
                else
                        b->size = (uint64_t)st.st_size;
        }
        backup_dir_clean(dir);
        return r;
}

/*
 * The copy in replies of BACKUP_CHUNK bytes (base64 in `data`), then what
 * it holds; without `more`, all of it in the one reply.
 */
static int backup_send(struct request *q, struct backup *b)
{
        bool more = connection_wants_more(q->conn);
        size_t chunk = more || b->size == 0 ? BACKUP_CHUNK : (size_t)b->size;
        size_t b64_size = sodium_base64_ENCODED_LEN(chunk, sodium_base64_VARIANT_ORIGINAL);
        _cleanup_free_ uint8_t *buf = malloc(chunk);
        _cleanup_free_ char *b64 = malloc(b64_size);
        uint64_t sent = 0;
        json_t *last;

        if (!buf || !b64)
                return -ENOMEM;
        b64[0] = '\0';
        while (sent < b->size) {
                ssize_t n = pread(b->fd, buf, chunk, (off_t)sent);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : -EIO;
                sodium_bin2base64(b64, b64_size, buf, (size_t)n, sodium_base64_VARIANT_ORIGINAL);
                sent += (uint64_t)n;
                if (more)
                        (void)connection_reply(q->conn, json_pack("{s:s}", "data", b64), true);
        }
        last = json_pack("{s:I, s:s, s:I}", "keys", (json_int_t)b->n_keys, "pepper_fingerprint",
                         b->fingerprint, "size", (json_int_t)b->size);
        if (last && !more)
                json_object_set_new(last, "data", json_string(b64));
        return api_reply(q, last);
}

static int backup_write(struct change *ch, struct keystore_tx *tx)
{
        return change_audit(ch, tx, NULL);
}

static int backup_answer(struct change *ch, int r)
{
        struct backup *b = ch->userdata;

        if (r >= 0) {
                log_info("%s: backup of the keystore: %" PRIu64 " keys, %" PRIu64
                         " bytes, pepper fingerprint %s",
                         ch->q.who.actor, b->n_keys, b->size, b->fingerprint);
                r = backup_send(&ch->q, b);
        }
        backup_free(b);
        ch->userdata = NULL;
        return r;
}

static int method_backup(struct request *q)
{
        static const struct param spec[] = {
            PARAM(auth, JSON_STRING, false),
            {NULL, 0, false, 0},
        };
        _cleanup_free_ char *error = NULL;
        struct method_params p;
        const char *reason;
        struct backup *b;
        struct change *ch;
        int r;

        if (api_decode_params(q, spec, &p) < 0)
                return 0;
        r = authz_check(&q->who, AUTHZ_BACKUP, NULL, &reason);
        if (r < 0)
                return api_reply_authz(q, r, reason);
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->fd = -1;
        r = backup_take(q->api, b, &error);
        if (r < 0) {
                log_error("backup of the keystore failed: %s", error ? error : strerror(-r));
                backup_free(b);
                return api_reply_reason(q, ERR_INTERNAL, "the copy of the keystore failed");
        }
        /* Audited, and answered once what was submitted before it is written. */
        ch = change_new(q, "backup", backup_write, backup_answer);
        if (!ch) {
                backup_free(b);
                return -ENOMEM;
        }
        snprintf(ch->detail_buf, sizeof(ch->detail_buf), "%" PRIu64 " keys, %" PRIu64 " bytes",
                 b->n_keys, b->size);
        ch->detail = ch->detail_buf;
        ch->userdata = b;
        return change_submit(ch);
}

const struct method backup_methods[] = {
    {KEYS_METHOD_BACKUP, method_backup, true, true},
    {NULL, NULL, false, false},
};
