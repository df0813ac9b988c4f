/* SPDX-License-Identifier: MIT */
/*
 * apikeyctl backup FILE: the daemon's Backup, streamed into FILE.  The
 * file is written by apikeyctl, as the caller: a new file beside FILE
 * (0600), synced, then renamed over it, so FILE is either the old file or
 * the whole backup, never a part.  "-" writes it to standard output.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "ctl_call.h"
#include "ctl_commands.h"
#include "keys_proto.h"
#include "macro.h"

struct backup_out {
        int fd;
        uint64_t written;
        uint8_t *buf;
        size_t buf_size;
        json_t *last; /* the last reply: what the backup holds */
};

static int write_all(int fd, const uint8_t *p, size_t n)
{
        while (n > 0) {
                ssize_t w = write(fd, p, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -errno;
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

/* One reply: its `data` decoded and written; the last one kept. */
static int backup_piece(const json_t *p, bool continues, void *userdata)
{
        struct backup_out *o = userdata;
        const char *data = param_str(p, "data");
        size_t len, n;

        if (data) {
                len = strlen(data);
                if (len / 4 * 3 + 3 > o->buf_size) {
                        uint8_t *buf = realloc(o->buf, len / 4 * 3 + 3);
                        if (!buf)
                                return -ENOMEM;
                        o->buf = buf;
                        o->buf_size = len / 4 * 3 + 3;
                }
                if (sodium_base642bin(o->buf, o->buf_size, data, len, NULL, &n, NULL,
                                      sodium_base64_VARIANT_ORIGINAL) != 0)
                        return -EBADMSG;
                int r = write_all(o->fd, o->buf, n);
                if (r < 0)
                        return r;
                o->written += n;
        }
        if (!continues)
                o->last = json_deep_copy(p);
        return 0;
}

int cmd_backup(struct ctl *c, struct args *a)
{
        const char *file = a->pos[0];
        bool to_stdout = STREQ(file, "-");
        _cleanup_free_ char *copy = NULL, *tmp = NULL;
        _cleanup_close_ int dirfd = -1;
        struct backup_out o = {.fd = STDOUT_FILENO};
        json_int_t keys, size;
        const char *fp;
        int r;

        if (!to_stdout) {
                copy = strdup(file);
                if (!copy || asprintf(&tmp, "%s.XXXXXX", file) < 0)
                        return -ENOMEM;
                dirfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                /* mkostemp: a new file of its own, 0600, beside FILE. */
                o.fd = dirfd < 0 ? -1 : mkostemp(tmp, O_CLOEXEC);
                if (o.fd < 0) {
                        r = -errno;
                        err("cannot create a file beside %s: %s", file, strerror(-r));
                        return r;
                }
        }
        r = ctl_call_more(c, KEYS_METHOD_BACKUP, json_object(), backup_piece, &o);
        if (r == -EBADMSG)
                r = bad_reply(c, "Backup");
        else if (r < 0 && r != ERR_REFUSED && r != ERR_UNREACHABLE && r != -ENOMEM)
                err("cannot write the backup to %s: %s", to_stdout ? "standard output" : tmp,
                    strerror(-r));
        keys = json_integer_value(json_object_get(o.last, "keys"));
        size = json_integer_value(json_object_get(o.last, "size"));
        fp = param_str(o.last, "pepper_fingerprint");
        if (r >= 0 && (!o.last || !fp || (uint64_t)size != o.written))
                r = bad_reply(c, "Backup");
        if (r >= 0 && !to_stdout && fsync(o.fd) < 0) {
                r = -errno;
                err("cannot write the backup to %s: %s", tmp, strerror(-r));
        }
        if (!to_stdout) {
                close(o.fd);
                if (r >= 0 && rename(tmp, file) < 0) {
                        r = -errno;
                        err("cannot rename %s to %s: %s", tmp, file, strerror(-r));
                }
                if (r < 0)
                        (void)unlink(tmp);
                else
                        (void)fsync(dirfd);
        }
        free(o.buf);
        if (r < 0) {
                json_decref(o.last);
                return r;
        }
        if (c->json && !to_stdout) {
                json_object_set_new(o.last, "file", json_string(file));
                r = print_json(o.last);
        } else
                fprintf(to_stdout ? stderr : stdout,
                        "Backed up %lld key%s (%lld bytes) to %s.\n"
                        "Pepper fingerprint: %s\n",
                        (long long)keys, keys == 1 ? "" : "s", (long long)size,
                        to_stdout ? "standard output" : file, fp);
        fprintf(stderr, "Restoring it (apikeyd --restore) needs the pepper with this "
                        "fingerprint: keep the state directory's pepper, its shared-secret and "
                        "apikeyd.conf safe, apart from the backup.\n");
        json_decref(o.last);
        return r;
}
