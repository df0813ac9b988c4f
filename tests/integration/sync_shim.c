/* SPDX-License-Identifier: MIT */
/*
 * A test shim preloaded into the real daemon (LD_PRELOAD) by
 * test_durability.py.  It appends one line per call to the file named by
 * APIKEYD_SHIM_LOG:
 *
 *     SEQ CALL TARGET [RESULT] [dsync]
 *
 * for what makes data durable (fsync, fdatasync, msync), what changes files
 * (write, pwrite, writev on a file; rename, renameat, renameat2) and what
 * moves bytes on a socket (recv, read and send, write, writev, sendto,
 * sendmsg on a socket).  TARGET is the file's path (from /proc/self/fd, or
 * /proc/self/maps for msync) or "socket:[INODE]"; "dsync" marks a write to
 * a file opened O_DSYNC, which reaches the disk before it returns.
 *
 * SEQ is one counter for all threads, so the lines order the calls: it is
 * taken after a sync or a write returns (what is done is done) and before
 * a send starts (nothing can be answered before it).  A sync that ends
 * before a send starts has a smaller SEQ.
 *
 * Ways to make the daemon careless, to show that the test notices:
 *   APIKEYD_SHIM_MDB_FLAGS=nosync|nometasync  adds MDB_NOSYNC or
 *       MDB_NOMETASYNC to the flags the daemon opens its keystore with;
 *   APIKEYD_SHIM_SKIP_SYNC=SUFFIX  syncs of a path ending in SUFFIX return
 *       0 without reaching the kernel, and are not logged.
 *
 * A test tool only: it is built into the test directory, never installed.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <lmdb.h>

#define SHIM_PUBLIC __attribute__((visibility("default")))

static int log_fd = -1;
static uint64_t seq;
static const char *skip_suffix;
static unsigned mdb_extra_flags;

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_msync)(void *, size_t, int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_recv)(int, void *, size_t, int);
static ssize_t (*real_send)(int, const void *, size_t, int);
static ssize_t (*real_sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_renameat2)(int, const char *, int, const char *, unsigned);
static int (*real_mdb_env_open)(MDB_env *, const char *, unsigned, mdb_mode_t);

#define RESOLVE(name) (real_##name = (__typeof__(real_##name))dlsym(RTLD_NEXT, #name))

__attribute__((constructor)) static void shim_init(void)
{
        const char *path = getenv("APIKEYD_SHIM_LOG"), *flags = getenv("APIKEYD_SHIM_MDB_FLAGS");

        RESOLVE(fsync);
        RESOLVE(fdatasync);
        RESOLVE(msync);
        RESOLVE(write);
        RESOLVE(pwrite);
        RESOLVE(pwrite64);
        RESOLVE(writev);
        RESOLVE(read);
        RESOLVE(recv);
        RESOLVE(send);
        RESOLVE(sendto);
        RESOLVE(sendmsg);
        RESOLVE(rename);
        RESOLVE(renameat);
        RESOLVE(renameat2);
        RESOLVE(mdb_env_open);

        skip_suffix = getenv("APIKEYD_SHIM_SKIP_SYNC");
        if (skip_suffix && !*skip_suffix)
                skip_suffix = NULL;
        if (flags && strcmp(flags, "nosync") == 0)
                mdb_extra_flags = MDB_NOSYNC;
        else if (flags && strcmp(flags, "nometasync") == 0)
                mdb_extra_flags = MDB_NOMETASYNC;
        if (path)
                log_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
}

static void fd_target(int fd, char *buf, size_t size)
{
        char link[64];
        ssize_t n;

        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        n = readlink(link, buf, size - 1);
        if (n < 0)
                snprintf(buf, size, "fd:%d", fd);
        else
                buf[n] = '\0';
}

/* The path `name` names relative to `dirfd`. */
static void at_target(int dirfd, const char *name, char *buf, size_t size)
{
        char dir[PATH_MAX];

        int n;

        if (name[0] == '/' || dirfd == AT_FDCWD)
                n = snprintf(buf, size, "%s", name);
        else {
                fd_target(dirfd, dir, sizeof(dir));
                n = snprintf(buf, size, "%s/%s", dir, name);
        }
        if (n < 0 || (size_t)n >= size)
                snprintf(buf, size, "path-too-long");
}

/* The file mapped at `addr`, from /proc/self/maps. */
static void map_target(const void *addr, char *buf, size_t size)
{
        uintptr_t a = (uintptr_t)addr;
        char line[PATH_MAX + 128];
        FILE *f = fopen("/proc/self/maps", "re");

        snprintf(buf, size, "map:%p", addr);
        if (!f)
                return;
        while (fgets(line, sizeof(line), f)) {
                unsigned long lo, hi;
                int off = 0;

                if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &off) < 2 || off == 0)
                        continue;
                if (a < lo || a >= hi)
                        continue;
                line[strcspn(line, "\n")] = '\0';
                snprintf(buf, size, "%s", line + off);
                break;
        }
        fclose(f);
}

static void log_line(const char *call, const char *target, const char *result, bool dsync)
{
        char line[PATH_MAX + 256];
        uint64_t n = __atomic_add_fetch(&seq, 1, __ATOMIC_SEQ_CST);
        int len;

        if (log_fd < 0)
                return;
        len = snprintf(line, sizeof(line), "%llu %s %s %s%s\n", (unsigned long long)n, call, target,
                       result, dsync ? " dsync" : "");
        if (len > 0 && (size_t)len < sizeof(line))
                (void)real_write(log_fd, line, (size_t)len);
}

static void log_result(char *buf, size_t size, long r, int err)
{
        if (r < 0)
                snprintf(buf, size, "-1:%s", strerrorname_np(err) ? strerrorname_np(err) : "?");
        else
                snprintf(buf, size, "%ld", r);
}

static bool is_socket(int fd)
{
        struct stat st;

        return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

static bool skipped(const char *target)
{
        size_t n, m;

        if (!skip_suffix)
                return false;
        n = strlen(target);
        m = strlen(skip_suffix);
        return n >= m && strcmp(target + n - m, skip_suffix) == 0;
}

static int sync_call(const char *call, int fd, int (*fn)(int))
{
        char target[PATH_MAX], result[64];
        int r, err;

        if (fd == log_fd)
                return fn(fd);
        fd_target(fd, target, sizeof(target));
        if (skipped(target))
                return 0;
        r = fn(fd);
        err = errno;
        log_result(result, sizeof(result), r, err);
        log_line(call, target, result, false);
        errno = err;
        return r;
}

SHIM_PUBLIC int fsync(int fd)
{
        return sync_call("fsync", fd, real_fsync);
}

SHIM_PUBLIC int fdatasync(int fd)
{
        return sync_call("fdatasync", fd, real_fdatasync);
}

SHIM_PUBLIC int msync(void *addr, size_t len, int flags)
{
        char target[PATH_MAX], result[64];
        int r, err;

        map_target(addr, target, sizeof(target));
        if (skipped(target))
                return 0;
        r = real_msync(addr, len, flags);
        err = errno;
        log_result(result, sizeof(result), r, err);
        log_line((flags & MS_SYNC) ? "msync" : "msync-async", target, result, false);
        errno = err;
        return r;
}

/* A socket's bytes are logged before they go, a file's after they are written. */
static void before_send(const char *call, int fd, size_t len)
{
        char target[PATH_MAX], result[64];

        fd_target(fd, target, sizeof(target));
        snprintf(result, sizeof(result), "%zu", len);
        log_line(call, target, result, false);
}

static void after_file_write(const char *call, int fd, ssize_t r, int err)
{
        char target[PATH_MAX], result[64];
        int fl = fcntl(fd, F_GETFL);

        fd_target(fd, target, sizeof(target));
        log_result(result, sizeof(result), r, err);
        log_line(call, target, result, fl >= 0 && (fl & O_DSYNC) == O_DSYNC);
}

static size_t iov_len(const struct iovec *iov, int n)
{
        size_t len = 0;

        for (int i = 0; i < n; i++)
                len += iov[i].iov_len;
        return len;
}

SHIM_PUBLIC ssize_t write(int fd, const void *buf, size_t n)
{
        ssize_t r;
        int err;

        if (fd == log_fd || log_fd < 0)
                return real_write(fd, buf, n);
        if (is_socket(fd)) {
                before_send("send", fd, n);
                return real_write(fd, buf, n);
        }
        r = real_write(fd, buf, n);
        err = errno;
        after_file_write("write", fd, r, err);
        errno = err;
        return r;
}

static ssize_t file_pwrite(ssize_t (*fn)(int, const void *, size_t, off_t), int fd, const void *buf,
                           size_t n, off_t off)
{
        ssize_t r;
        int err;

        if (log_fd < 0)
                return fn(fd, buf, n, off);
        r = fn(fd, buf, n, off);
        err = errno;
        after_file_write("pwrite", fd, r, err);
        errno = err;
        return r;
}

SHIM_PUBLIC ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
        return file_pwrite(real_pwrite, fd, buf, n, off);
}

SHIM_PUBLIC ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
        return file_pwrite(real_pwrite64, fd, buf, n, off);
}

SHIM_PUBLIC ssize_t writev(int fd, const struct iovec *iov, int n)
{
        ssize_t r;
        int err;

        if (log_fd < 0)
                return real_writev(fd, iov, n);
        if (is_socket(fd)) {
                before_send("send", fd, iov_len(iov, n));
                return real_writev(fd, iov, n);
        }
        r = real_writev(fd, iov, n);
        err = errno;
        after_file_write("writev", fd, r, err);
        errno = err;
        return r;
}

SHIM_PUBLIC ssize_t send(int fd, const void *buf, size_t n, int flags)
{
        if (log_fd >= 0)
                before_send("send", fd, n);
        return real_send(fd, buf, n, flags);
}

SHIM_PUBLIC ssize_t sendto(int fd, const void *buf, size_t n, int flags,
                           const struct sockaddr *addr, socklen_t addrlen)
{
        if (log_fd >= 0)
                before_send("send", fd, n);
        return real_sendto(fd, buf, n, flags, addr, addrlen);
}

SHIM_PUBLIC ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
        if (log_fd >= 0)
                before_send("send", fd, iov_len(msg->msg_iov, (int)msg->msg_iovlen));
        return real_sendmsg(fd, msg, flags);
}

/* What a socket brought: logged only when it brought something. */
static void after_recv(int fd, ssize_t r)
{
        char target[PATH_MAX], result[64];

        if (r <= 0)
                return;
        fd_target(fd, target, sizeof(target));
        snprintf(result, sizeof(result), "%zd", r);
        log_line("recv", target, result, false);
}

SHIM_PUBLIC ssize_t recv(int fd, void *buf, size_t n, int flags)
{
        ssize_t r = real_recv(fd, buf, n, flags);
        int err = errno;

        if (log_fd >= 0)
                after_recv(fd, r);
        errno = err;
        return r;
}

SHIM_PUBLIC ssize_t read(int fd, void *buf, size_t n)
{
        ssize_t r = real_read(fd, buf, n);
        int err = errno;

        if (log_fd >= 0 && r > 0 && is_socket(fd))
                after_recv(fd, r);
        errno = err;
        return r;
}

static void log_rename(const char *call, const char *from, const char *to, int r, int err)
{
        char target[2 * PATH_MAX + 8], result[64];

        snprintf(target, sizeof(target), "%s -> %s", from, to);
        log_result(result, sizeof(result), r, err);
        log_line(call, target, result, false);
}

SHIM_PUBLIC int rename(const char *from, const char *to)
{
        int r = real_rename(from, to), err = errno;

        if (log_fd >= 0)
                log_rename("rename", from, to, r, err);
        errno = err;
        return r;
}

SHIM_PUBLIC int renameat(int fromfd, const char *from, int tofd, const char *to)
{
        char a[PATH_MAX], b[PATH_MAX];
        int r = real_renameat(fromfd, from, tofd, to), err = errno;

        if (log_fd >= 0) {
                at_target(fromfd, from, a, sizeof(a));
                at_target(tofd, to, b, sizeof(b));
                log_rename("rename", a, b, r, err);
        }
        errno = err;
        return r;
}

SHIM_PUBLIC int renameat2(int fromfd, const char *from, int tofd, const char *to, unsigned flags)
{
        char a[PATH_MAX], b[PATH_MAX];
        int r = real_renameat2(fromfd, from, tofd, to, flags), err = errno;

        if (log_fd >= 0) {
                at_target(fromfd, from, a, sizeof(a));
                at_target(tofd, to, b, sizeof(b));
                log_rename("rename", a, b, r, err);
        }
        errno = err;
        return r;
}

SHIM_PUBLIC int mdb_env_open(MDB_env *env, const char *path, unsigned flags, mdb_mode_t mode)
{
        if (!(flags & MDB_RDONLY))
                flags |= mdb_extra_flags;
        return real_mdb_env_open(env, path, flags, mode);
}
