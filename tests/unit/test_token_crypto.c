/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of token generation, hashing, the pepper file and its
 * fingerprint, and the shared secret's file (apikeyd/store/token_crypto.c).
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "token_crypto.h"

static char tmpdir[64];

static int setup(void **state)
{
        strcpy(tmpdir, "/tmp/test-token-crypto.XXXXXX");
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
        char path[128];

        snprintf(path, sizeof(path), "%s/%s", tmpdir, PEPPER_FILE);
        (void)unlink(path);
        snprintf(path, sizeof(path), "%s/%s", tmpdir, SHARED_SECRET_FILE);
        (void)unlink(path);
        return rmdir(tmpdir);
}

static void parse_ok(const char *s, struct token *t)
{
        assert_int_equal(token_parse(s, strlen(s), "apk", t, NULL), 0);
}

static void test_generate_shape(void **state)
{
        char id[TOKEN_ID_LEN + 1], tok[TOKEN_MAX_LEN + 1], prev[TOKEN_MAX_LEN + 1] = "";
        struct token t;

        for (int i = 0; i < 1000; i++) {
                token_generate_id(id);
                assert_true(token_id_valid(id));
                assert_int_equal(token_generate("apk", id, tok), TOKEN_LEN(3));
                parse_ok(tok, &t);
                assert_string_equal(t.id, id);
                assert_string_not_equal(tok, prev);
                strcpy(prev, tok);
        }
        assert_int_equal(token_generate("APK", id, tok), -EINVAL);
        assert_int_equal(token_generate("apk", "nope", tok), -EINVAL);
}

static void test_secret_uses_whole_alphabet(void **state)
{
        /* Every base62 character shows up, none other does, and all equally
         * often: 172,000 characters put each within 10% of its share (about
         * six standard deviations), where taking random bytes modulo 62
         * without throwing the top eight values away would put '0'-'7' 25%
         * above it. */
        enum { TOKENS = 4000 };
        char id[TOKEN_ID_LEN + 1], tok[TOKEN_MAX_LEN + 1];
        unsigned seen[256] = {0}, total = 0;

        token_generate_id(id);
        for (int i = 0; i < TOKENS; i++) {
                assert_int_equal(token_generate("apk", id, tok), TOKEN_LEN(3));
                for (size_t k = 4 + TOKEN_ID_LEN + 1; k < 4 + TOKEN_ID_LEN + 1 + TOKEN_SECRET_LEN;
                     k++)
                        seen[(unsigned char)tok[k]]++;
        }
        for (size_t c = 0; c < 62; c++) {
                unsigned n = seen[(unsigned char)BASE62_ALPHABET[c]];
                double share = (double)TOKENS * TOKEN_SECRET_LEN / 62;

                assert_true(n > 0.9 * share && n < 1.1 * share);
                total += n;
        }
        assert_int_equal(total, TOKENS * TOKEN_SECRET_LEN);
}

static void test_hash_depends_on_pepper_and_token(void **state)
{
        uint8_t p1[PEPPER_SIZE], p2[PEPPER_SIZE], h1[KEY_HASH_SIZE], h2[KEY_HASH_SIZE],
            h3[KEY_HASH_SIZE];
        char id[TOKEN_ID_LEN + 1], a[TOKEN_MAX_LEN + 1], b[TOKEN_MAX_LEN + 1];
        struct token ta, tb;

        memset(p1, 1, sizeof(p1));
        memcpy(p2, p1, sizeof(p2));
        p2[31] ^= 1;
        token_generate_id(id);
        assert_true(token_generate("apk", id, a) > 0);
        assert_true(token_generate("apk", id, b) > 0);
        parse_ok(a, &ta);
        parse_ok(b, &tb);

        token_hash(p1, &ta, h1);
        token_hash(p1, &ta, h2);
        assert_true(token_hash_equal(h1, h2));
        token_hash(p2, &ta, h3);
        assert_false(token_hash_equal(h1, h3));
        token_hash(p1, &tb, h3);
        assert_false(token_hash_equal(h1, h3));
        /* A single bit apart, in any byte of any word, is not equal. */
        for (size_t i = 0; i < KEY_HASH_SIZE * 8; i++) {
                memcpy(h3, h1, KEY_HASH_SIZE);
                h3[i / 8] ^= (uint8_t)(1u << (i % 8));
                assert_false(token_hash_equal(h1, h3));
                assert_false(token_hash_equal(h3, h1));
        }
}

static void test_hash_known_answer(void **state)
{
        /* BLAKE2b-256 keyed with 32 bytes 0x00..0x1f over the body of a fixed
         * token; any implementation of the format must agree. */
        uint8_t pepper[PEPPER_SIZE], h[KEY_HASH_SIZE];
        char tok[TOKEN_MAX_LEN + 1], hex[2 * KEY_HASH_SIZE + 1];
        struct token t;

        for (int i = 0; i < PEPPER_SIZE; i++)
                pepper[i] = (uint8_t)i;
        assert_true(token_format("apk", "7Hq2LmX9aB3z",
                                 "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg", tok,
                                 sizeof(tok)) > 0);
        parse_ok(tok, &t);
        token_hash(pepper, &t, h);
        for (int i = 0; i < KEY_HASH_SIZE; i++)
                snprintf(hex + 2 * i, 3, "%02x", h[i]);
        assert_string_equal(hex,
                            "6e4a3786b51d1b22262ecd0919f5ca4b9c97f88a57edd18badcb374ffa4eea5a");
}

static void test_pepper_created_and_reloaded(void **state)
{
        uint8_t a[PEPPER_SIZE], b[PEPPER_SIZE], zero[PEPPER_SIZE] = {0};
        char path[128];
        struct stat st;
        char *err = NULL;

        assert_int_equal(pepper_load(tmpdir, false, a, &err), -ENOENT);
        assert_non_null(strstr(err, "cannot open"));
        free(err);
        err = NULL;

        assert_int_equal(pepper_load(tmpdir, true, a, &err), 0);
        assert_null(err);
        assert_memory_not_equal(a, zero, PEPPER_SIZE);
        snprintf(path, sizeof(path), "%s/%s", tmpdir, PEPPER_FILE);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(st.st_size, PEPPER_SIZE);

        assert_int_equal(pepper_load(tmpdir, true, b, &err), 0);
        assert_memory_equal(a, b, PEPPER_SIZE);
}

static void test_pepper_refused_mode(void **state)
{
        uint8_t a[PEPPER_SIZE];
        char path[128], want[256];
        char *err = NULL;

        assert_int_equal(pepper_load(tmpdir, true, a, NULL), 0);
        snprintf(path, sizeof(path), "%s/%s", tmpdir, PEPPER_FILE);
        assert_int_equal(chmod(path, 0644), 0);
        assert_int_equal(pepper_load(tmpdir, true, a, &err), -EPERM);
        snprintf(want, sizeof(want), "%s has mode 0644; it must be 0600 (chmod 0600 it)", path);
        assert_string_equal(err, want);
        free(err);
}

static void test_pepper_refused_size(void **state)
{
        uint8_t a[PEPPER_SIZE];
        char path[128], want[256];
        char *err = NULL;
        int fd;

        snprintf(path, sizeof(path), "%s/%s", tmpdir, PEPPER_FILE);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "short", 5), 5);
        close(fd);
        assert_int_equal(pepper_load(tmpdir, true, a, &err), -EBADMSG);
        snprintf(want, sizeof(want),
                 "%s is 5 bytes, not 32: it is damaged; restore it from a backup (without it no "
                 "existing key verifies)",
                 path);
        assert_string_equal(err, want);
        free(err);
}

static void test_pepper_refused_symlink(void **state)
{
        uint8_t a[PEPPER_SIZE];
        char path[128];
        char *err = NULL;

        snprintf(path, sizeof(path), "%s/%s", tmpdir, PEPPER_FILE);
        assert_int_equal(symlink("/etc/hostname", path), 0);
        assert_int_equal(pepper_load(tmpdir, true, a, &err), -ELOOP);
        assert_non_null(strstr(err, "cannot open"));
        free(err);
}

static void test_pepper_missing_dir(void **state)
{
        uint8_t a[PEPPER_SIZE];
        char *err = NULL;

        assert_int_equal(pepper_load("/nonexistent/apikeyd-state", true, a, &err), -ENOENT);
        assert_string_equal(err, "cannot open state directory /nonexistent/apikeyd-state: No such "
                                 "file or directory");
        free(err);
}

static void test_pepper_fingerprint(void **state)
{
        uint8_t pepper[PEPPER_SIZE], other[PEPPER_SIZE], a[PEPPER_FINGERPRINT_SIZE],
            b[PEPPER_FINGERPRINT_SIZE];

        for (int i = 0; i < PEPPER_SIZE; i++)
                pepper[i] = (uint8_t)i;
        memcpy(other, pepper, sizeof(other));
        other[PEPPER_SIZE - 1] ^= 1;
        pepper_fingerprint(pepper, a);
        pepper_fingerprint(pepper, b);
        assert_true(pepper_fingerprint_equal(a, b));
        pepper_fingerprint(other, b);
        assert_false(pepper_fingerprint_equal(a, b));
        /* Never the pepper itself, nor what token_hash() (unpersonalised) gives. */
        assert_memory_not_equal(a, pepper, PEPPER_SIZE);
        crypto_generichash(b, sizeof(b), NULL, 0, pepper, PEPPER_SIZE);
        assert_memory_not_equal(a, b, sizeof(b));
}

static void test_shared_secret_file(void **state)
{
        uint8_t a[SHARED_SECRET_SIZE], b[SHARED_SECRET_SIZE], zero[SHARED_SECRET_SIZE] = {0};
        char path[128], tmp[160], want[256];
        struct stat st;
        char *err = NULL;

        assert_int_equal(shared_secret_load(tmpdir, false, a, &err), -ENOENT);
        free(err);
        err = NULL;
        assert_int_equal(shared_secret_load(tmpdir, true, a, &err), 0);
        assert_memory_not_equal(a, zero, sizeof(a));
        snprintf(path, sizeof(path), "%s/%s", tmpdir, SHARED_SECRET_FILE);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(st.st_size, SHARED_SECRET_SIZE);

        /* A rotation replaces it whole; no temporary file is left. */
        memset(b, 0x5a, sizeof(b));
        assert_int_equal(shared_secret_store(tmpdir, b, &err), 0);
        assert_null(err);
        assert_int_equal(shared_secret_load(tmpdir, true, a, &err), 0);
        assert_memory_equal(a, b, sizeof(a));
        snprintf(tmp, sizeof(tmp), "%s.new", path);
        assert_int_equal(access(tmp, F_OK), -1);

        assert_int_equal(chmod(path, 0604), 0);
        assert_int_equal(shared_secret_load(tmpdir, true, a, &err), -EPERM);
        snprintf(want, sizeof(want), "%s has mode 0604; it must be 0600 (chmod 0600 it)", path);
        assert_string_equal(err, want);
        free(err);
        err = NULL;

        assert_int_equal(truncate(path, 31), 0);
        assert_int_equal(chmod(path, 0600), 0);
        assert_int_equal(shared_secret_load(tmpdir, true, a, &err), -EBADMSG);
        assert_non_null(strstr(err, "is 31 bytes, not 32: it is damaged"));
        free(err);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_generate_shape),
            cmocka_unit_test(test_secret_uses_whole_alphabet),
            cmocka_unit_test(test_hash_depends_on_pepper_and_token),
            cmocka_unit_test(test_hash_known_answer),
            cmocka_unit_test_setup_teardown(test_pepper_created_and_reloaded, setup, teardown),
            cmocka_unit_test_setup_teardown(test_pepper_refused_mode, setup, teardown),
            cmocka_unit_test_setup_teardown(test_pepper_refused_size, setup, teardown),
            cmocka_unit_test_setup_teardown(test_pepper_refused_symlink, setup, teardown),
            cmocka_unit_test_setup_teardown(test_pepper_missing_dir, setup, teardown),
            cmocka_unit_test(test_pepper_fingerprint),
            cmocka_unit_test_setup_teardown(test_shared_secret_file, setup, teardown),
        };

        if (token_crypto_init() < 0)
                return 1;
        return cmocka_run_group_tests_name("token_crypto", tests, NULL, NULL);
}
