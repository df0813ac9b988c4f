/* SPDX-License-Identifier: MIT */
/* Token generation, hashing and the pepper file; see token_crypto.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "token_crypto.h"

int token_crypto_init(void)
{
        return sodium_init() < 0 ? -EIO : 0;
}

/*
 * n uniform base62 characters.  Random bytes are drawn in blocks, not one
 * call (one getrandom() system call) per character as randombytes_uniform()
 * would: a byte below 248 = 4 * 62 gives an unbiased character by its
 * remainder, a byte above is thrown away (3% of them).
 */
static void random_base62(char *ret, size_t n)
{
        unsigned char pool[64];
        size_t used = sizeof(pool);

        for (size_t i = 0; i < n;) {
                if (used == sizeof(pool)) {
                        randombytes_buf(pool, sizeof(pool));
                        used = 0;
                }
                unsigned char b = pool[used++];
                if (b < 248)
                        ret[i++] = BASE62_ALPHABET[b % 62];
        }
        sodium_memzero(pool, sizeof(pool));
}

void token_generate_id(char ret_id[TOKEN_ID_LEN + 1])
{
        random_base62(ret_id, TOKEN_ID_LEN);
        ret_id[TOKEN_ID_LEN] = '\0';
}

int token_generate(const char *prefix, const char *id, char ret_token[TOKEN_MAX_LEN + 1])
{
        char secret[TOKEN_SECRET_LEN + 1];
        int r;

        random_base62(secret, TOKEN_SECRET_LEN);
        secret[TOKEN_SECRET_LEN] = '\0';
        r = token_format(prefix, id, secret, ret_token, TOKEN_MAX_LEN + 1);
        sodium_memzero(secret, sizeof(secret));
        return r;
}

/*
 * The stack below the caller's frame, where libsodium's hash has just run,
 * erased: its compression function keeps words of the message block (the
 * secret) in locals it does not erase.  The hash of a token reaches about
 * 1.2 KiB below its caller here; 2 KiB leaves room for other builds.
 */
static __attribute__((noinline)) void erase_stack_below(void)
{
        char area[2048];

        explicit_bzero(area, sizeof(area));
        __asm__ volatile("" : : "r"(area) : "memory");
}

void token_hash(const uint8_t pepper[PEPPER_SIZE], const struct token *t,
                uint8_t ret_hash[KEY_HASH_SIZE])
{
        crypto_generichash(ret_hash, KEY_HASH_SIZE, (const unsigned char *)t->body, t->body_len,
                           pepper, PEPPER_SIZE);
        erase_stack_below();
}

bool token_hash_equal(const uint8_t a[KEY_HASH_SIZE], const uint8_t b[KEY_HASH_SIZE])
{
        uint64_t d = 0;

        /* In constant time, as sodium_memcmp() does, but a word at a time:
         * every word is read and folded in whatever the others hold, with
         * no branch on the bytes. */
        _Static_assert(KEY_HASH_SIZE % 8 == 0, "whole words");
        for (size_t i = 0; i < KEY_HASH_SIZE; i += 8) {
                uint64_t x, y;

                memcpy(&x, a + i, 8);
                memcpy(&y, b + i, 8);
                d |= x ^ y;
        }
        return d == 0;
}

_printf_(3, 4) static int pepper_fail(int r, char **ret_error, const char *fmt, ...)
{
        va_list ap;

        if (ret_error) {
                va_start(ap, fmt);
                if (vasprintf(ret_error, fmt, ap) < 0)
                        *ret_error = NULL;
                va_end(ap);
        }
        return r;
}

static int write_all(int fd, const void *buf, size_t n)
{
        const uint8_t *p = buf;

        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t)k;
        }
        return 0;
}

/*
 * A new secret file appears whole or not at all: written to NAME.new,
 * synced, then given its name and the directory synced.  A crash in
 * between leaves only the temporary file, which the next write replaces.
 * `replace`: rename over an existing file (a rotation); else linkat, so a
 * file that appeared meanwhile is never replaced (a first creation).
 */
static int secret_file_write(int dirfd, const char *dir, const char *name, const uint8_t *data,
                             size_t size, bool replace, char **ret_error)
{
        _cleanup_close_ int fd = -1;
        char tmp[64];
        int r;

        if ((size_t)snprintf(tmp, sizeof(tmp), "%s.new", name) >= sizeof(tmp))
                return pepper_fail(-EINVAL, ret_error, "%s/%s: name too long", dir, name);
        (void)unlinkat(dirfd, tmp, 0);
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return pepper_fail(-errno, ret_error, "cannot create %s/%s: %m", dir, name);
        r = write_all(fd, data, size);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && replace && renameat(dirfd, tmp, dirfd, name) < 0)
                r = -errno;
        if (r >= 0 && !replace && linkat(dirfd, tmp, dirfd, name, 0) < 0)
                r = -errno;
        (void)unlinkat(dirfd, tmp, 0);
        if (r >= 0 && fsync(dirfd) < 0)
                r = -errno;
        if (r < 0) {
                errno = -r;
                return pepper_fail(r, ret_error, "cannot write %s/%s: %m", dir, name);
        }
        return 0;
}

static int secret_file_load(const char *dir, const char *name, size_t size, const char *damaged,
                            bool create, uint8_t *ret, char **ret_error)
{
        _cleanup_close_ int dirfd = -1, fd = -1;
        struct stat st;
        ssize_t n;
        int r;

        dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
                return pepper_fail(-errno, ret_error, "cannot open state directory %s: %m", dir);

        fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT && create) {
                randombytes_buf(ret, size);
                r = secret_file_write(dirfd, dir, name, ret, size, false, ret_error);
                if (r < 0)
                        sodium_memzero(ret, size);
                return r;
        }
        if (fd < 0)
                return pepper_fail(-errno, ret_error, "cannot open %s/%s: %m", dir, name);

        if (fstat(fd, &st) < 0)
                return pepper_fail(-errno, ret_error, "cannot stat %s/%s: %m", dir, name);
        if (!S_ISREG(st.st_mode))
                return pepper_fail(-EPERM, ret_error, "%s/%s is not a regular file", dir, name);
        if (st.st_uid != geteuid())
                return pepper_fail(-EPERM, ret_error,
                                   "%s/%s is owned by uid %u, not by this daemon (uid %u)", dir,
                                   name, (unsigned)st.st_uid, (unsigned)geteuid());
        if (st.st_mode & 077)
                return pepper_fail(-EPERM, ret_error,
                                   "%s/%s has mode %04o; it must be 0600 (chmod 0600 it)", dir,
                                   name, (unsigned)(st.st_mode & 07777));
        if (st.st_size != (off_t)size)
                return pepper_fail(-EBADMSG, ret_error, "%s/%s is %lld bytes, not %zu: %s", dir,
                                   name, (long long)st.st_size, size, damaged);

        n = pread(fd, ret, size, 0);
        if (n != (ssize_t)size) {
                sodium_memzero(ret, size);
                if (n >= 0)
                        errno = EIO;
                return pepper_fail(-errno, ret_error, "cannot read %s/%s: %m", dir, name);
        }
        return 0;
}

int pepper_load(const char *dir, bool create, uint8_t ret[PEPPER_SIZE], char **ret_error)
{
        return secret_file_load(dir, PEPPER_FILE, PEPPER_SIZE,
                                "it is damaged; restore it from a backup (without it no existing "
                                "key verifies)",
                                create, ret, ret_error);
}

void pepper_fingerprint(const uint8_t pepper[PEPPER_SIZE], uint8_t ret[PEPPER_FINGERPRINT_SIZE])
{
        /* BLAKE2b keyed with the pepper, personalised: no token hash can equal it. */
        static const unsigned char personal[crypto_generichash_blake2b_PERSONALBYTES] =
            "apikeyd-pepperfp";

        (void)crypto_generichash_blake2b_salt_personal(ret, PEPPER_FINGERPRINT_SIZE, NULL, 0,
                                                       pepper, PEPPER_SIZE, NULL, personal);
}

bool pepper_fingerprint_equal(const uint8_t a[PEPPER_FINGERPRINT_SIZE],
                              const uint8_t b[PEPPER_FINGERPRINT_SIZE])
{
        return sodium_memcmp(a, b, PEPPER_FINGERPRINT_SIZE) == 0;
}

int shared_secret_load(const char *dir, bool create, uint8_t ret[SHARED_SECRET_SIZE],
                       char **ret_error)
{
        return secret_file_load(dir, SHARED_SECRET_FILE, SHARED_SECRET_SIZE,
                                "it is damaged; restore it from the backup taken with keys.mdb, or "
                                " remove it to have a new one made (integrations then need "
                                "the new secret)",
                                create, ret, ret_error);
}

int shared_secret_store(const char *dir, const uint8_t secret[SHARED_SECRET_SIZE], char **ret_error)
{
        _cleanup_close_ int dirfd = -1;

        dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
                return pepper_fail(-errno, ret_error, "cannot open state directory %s: %m", dir);
        return secret_file_write(dirfd, dir, SHARED_SECRET_FILE, secret, SHARED_SECRET_SIZE, true,
                                 ret_error);
}
