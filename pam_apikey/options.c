/* SPDX-License-Identifier: MIT */
/*
 * pam_apikey's options: each argument checked and applied, and a conf= file
 * read only when root alone could have written it and every folder above it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <security/pam_modutil.h>

#include "macro.h"
#include "options.h"

static bool copy_value(char *dst, size_t size, const char *v)
{
        size_t n = strlen(v);

        if (n == 0 || n >= size)
                return false;
        memcpy(dst, v, n + 1);
        return true;
}

static bool parse_uint(const char *v, unsigned long max, unsigned long *ret)
{
        char *end;
        unsigned long n;

        if (!*v || *v == '-' || *v == '+')
                return false;
        errno = 0;
        n = strtoul(v, &end, 10);
        if (errno || *end || n > max)
                return false;
        *ret = n;
        return true;
}

/* Apply one option; false if it is unknown or its value malformed. */
static bool apply_option(pam_handle_t *pamh, struct options *o, const char *arg)
{
        const char *eq = strchr(arg, '=');
        size_t klen = eq ? (size_t)(eq - arg) : strlen(arg);
        const char *v = eq ? eq + 1 : NULL;
        unsigned long n;

#define IS(name) (klen == STRLEN(name) && strncmp(arg, name, klen) == 0)
        if (!v) {
                if (IS("use_first_pass"))
                        o->use_first_pass = true;
                else if (IS("try_first_pass"))
                        o->try_first_pass = true;
                else if (IS("debug"))
                        o->debug = true;
                else if (IS("quiet"))
                        o->quiet = true;
                else if (IS("ignore_authinfo_unavail"))
                        o->ignore_authinfo_unavail = true;
                else if (IS("nodelay"))
                        o->nodelay = true;
                else
                        return false;
                return true;
        }
        if (IS("socket"))
                return v[0] == '/' && copy_value(o->socket, sizeof(o->socket), v);
        if (IS("timeout")) {
                if (!parse_uint(v, 600000, &n) || n == 0)
                        return false;
                o->timeout_ms = (unsigned)n;
                return true;
        }
        if (IS("service"))
                return copy_value(o->service, sizeof(o->service), v);
        if (IS("prompt"))
                return copy_value(o->prompt, sizeof(o->prompt), v);
        if (IS("prefix"))
                return token_prefix_valid(v) && copy_value(o->prefix, sizeof(o->prefix), v);
        if (IS("minimum_uid")) {
                if (!parse_uint(v, UINT_MAX - 1, &n))
                        return false;
                o->minimum_uid = (uid_t)n;
                return true;
        }
        if (IS("daemon_user")) {
                struct passwd pw, *pwp = NULL;
                char buf[4096];
                if (getpwnam_r(v, &pw, buf, sizeof(buf), &pwp) != 0 || !pwp) {
                        pam_syslog(pamh, LOG_ERR, "daemon_user=%s: no such user", v);
                        return false;
                }
                o->daemon_uid = pw.pw_uid;
                o->daemon_uid_set = true;
                return true;
        }
        if (IS("expiry_warning")) {
                uint64_t d;
                if (strcmp(v, "0") == 0) {
                        o->expiry_warning = 0;
                        return true;
                }
                if (duration_parse(v, &d) < 0)
                        return false;
                o->expiry_warning = d;
                return true;
        }
#undef IS
        return false;
}

/*
 * Whether only root can change what `st` describes: the conf file itself
 * (dir_len < 0) or the directory that is the first dir_len bytes of its path.
 */
static bool owned_by_root_alone(pam_handle_t *pamh, const char *conf, int dir_len,
                                const struct stat *st)
{
        char what[PATH_MAX + 16];

        if (dir_len < 0)
                snprintf(what, sizeof(what), "conf file %s", conf);
        else
                snprintf(what, sizeof(what), "conf file %s: directory %.*s", conf, dir_len, conf);
        if (st->st_uid != 0) {
                pam_syslog(pamh, LOG_ERR, "%s is owned by uid %u, not root; refusing to use it",
                           what, (unsigned)st->st_uid);
                return false;
        }
        if (st->st_mode & 022) {
                /* A sticky directory (/tmp) still lets others add files. */
                pam_syslog(pamh, LOG_ERR, "%s is writable by %s (mode %04o); refusing to use it",
                           what,
                           (st->st_mode & 022) == 022 ? "its group and others"
                           : (st->st_mode & 020)      ? "its group"
                                                      : "others",
                           (unsigned)(st->st_mode & 07777));
                return false;
        }
        return true;
}

/*
 * Open conf=PATH for reading only if no one but root can have written what
 * it says, as sudo trusts sudoers: the file and every directory above it
 * owned by root and not writable by group or others, and no symbolic link
 * on the way.  Each directory is opened beneath the one checked before it
 * and checked on its own descriptor, so nothing can be swapped between the
 * check and the open.  The descriptor, or -1 once the reason is logged.
 */
static int conf_open(pam_handle_t *pamh, const char *path, struct stat *ret_st)
{
        _cleanup_close_ int dir = -1, fd = -1;
        const char *name = path;
        struct stat st;

        if (path[0] != '/' || strlen(path) >= PATH_MAX) {
                pam_syslog(pamh, LOG_ERR,
                           "conf file %s: not an absolute path under PATH_MAX; refusing to use it",
                           path);
                return -1;
        }
        dir = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dir < 0 || fstat(dir, &st) < 0) {
                pam_syslog(pamh, LOG_ERR, "conf file %s: cannot open /: %m", path);
                return -1;
        }
        if (!owned_by_root_alone(pamh, path, 1, &st))
                return -1;
        for (;;) {
                char part[NAME_MAX + 1];
                const char *end;
                size_t len;
                int sub, e;

                while (*name == '/')
                        name++;
                end = name + strcspn(name, "/");
                len = (size_t)(end - name);
                if (len == 0 || len > NAME_MAX) {
                        pam_syslog(pamh, LOG_ERR,
                                   "conf file %s: not the name of a file; refusing to use it",
                                   path);
                        return -1;
                }
                memcpy(part, name, len);
                part[len] = '\0';
                if (*end == '\0')
                        break; /* the file's own name */
                sub = openat(dir, part, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0) {
                        e = errno;
                        if (fstatat(dir, part, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                            S_ISLNK(st.st_mode))
                                pam_syslog(pamh, LOG_ERR,
                                           "conf file %s: %.*s is a symbolic link; refusing to "
                                           "use it (name the file by its real path)",
                                           path, (int)(end - path), path);
                        else
                                pam_syslog(pamh, LOG_ERR,
                                           "conf file %s: cannot open directory %.*s: %s", path,
                                           (int)(end - path), path, strerror(e));
                        return -1;
                }
                close(dir);
                dir = sub;
                if (fstat(dir, &st) < 0) {
                        pam_syslog(pamh, LOG_ERR, "conf file %s: cannot read directory %.*s: %m",
                                   path, (int)(end - path), path);
                        return -1;
                }
                if (!owned_by_root_alone(pamh, path, (int)(end - path), &st))
                        return -1;
                name = end;
        }
        /* O_NONBLOCK: a FIFO put in its place must not hang the login. */
        fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0 && errno == ELOOP) {
                pam_syslog(pamh, LOG_ERR,
                           "conf file %s is a symbolic link; refusing to use it (name the file "
                           "by its real path)",
                           path);
                return -1;
        }
        if (fd < 0 || fstat(fd, &st) < 0) {
                pam_syslog(pamh, LOG_ERR, "cannot read conf file %s: %m", path);
                return -1;
        }
        if (!S_ISREG(st.st_mode) || st.st_size > OPTIONS_FILE_MAX) {
                pam_syslog(pamh, LOG_ERR,
                           "conf file %s is not a regular file under 64 KiB; refusing to use it",
                           path);
                return -1;
        }
        if (!owned_by_root_alone(pamh, path, -1, &st))
                return -1;
        *ret_st = st;
        return TAKE_FD(fd);
}

/* Options from conf=FILE: the same words as module arguments, separated by
 * white space, with # comments to the end of a line. */
static int read_conf(pam_handle_t *pamh, struct options *o, const char *path)
{
        _cleanup_free_ char *text = NULL;
        _cleanup_close_ int fd = -1;
        struct stat st;
        ssize_t n;
        char *p, *word;

        fd = conf_open(pamh, path, &st);
        if (fd < 0)
                return -1;
        text = malloc((size_t)st.st_size + 1);
        if (!text)
                return -1;
        n = read(fd, text, (size_t)st.st_size);
        if (n != st.st_size) {
                pam_syslog(pamh, LOG_ERR, "cannot read conf=%s", path);
                return -1;
        }
        text[n] = '\0';
        for (p = text; *p;) {
                if (*p == '#') {
                        p += strcspn(p, "\n");
                        continue;
                }
                if (strchr(" \t\r\n", *p)) {
                        p++;
                        continue;
                }
                word = p;
                p += strcspn(p, " \t\r\n");
                if (*p)
                        *p++ = '\0';
                if (strncmp(word, "conf=", 5) == 0 || !apply_option(pamh, o, word)) {
                        pam_syslog(pamh, LOG_ERR, "conf=%s: unknown or malformed option '%s'", path,
                                   word);
                        return -1;
                }
        }
        return 0;
}

int parse_options(pam_handle_t *pamh, int argc, const char **argv, struct options *o)
{
        *o = (struct options){
            .socket = DEFAULT_SOCKET,
            .timeout_ms = DEFAULT_TIMEOUT_MS,
            .prompt = DEFAULT_PROMPT,
            .expiry_warning = DEFAULT_EXPIRY_WARNING,
        };
        /* conf= first, so the arguments override what it says. */
        for (int i = 0; i < argc; i++)
                if (strncmp(argv[i], "conf=", 5) == 0 && read_conf(pamh, o, argv[i] + 5) < 0)
                        return PAM_SERVICE_ERR;
        for (int i = 0; i < argc; i++) {
                if (strncmp(argv[i], "conf=", 5) == 0)
                        continue;
                if (!apply_option(pamh, o, argv[i])) {
                        /* A misspelt option must not quietly weaken anything. */
                        pam_syslog(pamh, LOG_ERR, "unknown or malformed option '%s'", argv[i]);
                        return PAM_SERVICE_ERR;
                }
        }
        return PAM_SUCCESS;
}
