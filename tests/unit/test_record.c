/* SPDX-License-Identifier: MIT */
/* Unit tests of the key record: validation, the binary encoding, and the enum names
 * (apikeyd/store/record.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "record.h"

#define ID  "7Hq2LmX9aB3z"
#define NOW 1700000000000000ull

static const char *const full_scope[] = {"sshd", "sudo", "billing-api"};

static const char *const full_sources[] = {"10.0.0.0/8", "2001:db8::/32", "bastion.example"};

/* A record with every field of version 2 set. */
static void full_record_v2(struct key_record *rec)
{
        *rec = (struct key_record){
            .id = ID,
            .status = KEY_STATUS_DISABLED,
            .role = KEY_ROLE_CUSTOM,
            .permissions = KEY_PERM_READ | KEY_PERM_WRITE | KEY_PERM_INVITE,
            .flags = KEY_FLAG_NO_LOGIN | KEY_FLAG_ADMIN_DISABLED,
            .parent = "Zz9PaRenT0k1",
            .created_at = NOW,
            .expires_at = NOW + 86400000000ull,
            .last_used_at = NOW + 1000,
            .name = "deploy",
            .description = "CI deploys to production",
            .owner = "alice",
            .created_by = "uid=0",
            .last_used_service = "sshd",
            .last_used_from = "192.0.2.7",
            .n_scope = ELEMENTSOF(full_scope),
        };
        for (size_t i = 0; i < KEY_HASH_SIZE; i++)
                rec->hash[i] = (uint8_t)(0xa0 + i);
        for (size_t i = 0; i < ELEMENTSOF(full_scope); i++)
                rec->scope[i] = full_scope[i];
}

/* A record with every field set, the extensions of version 3 too. */
static void full_record(struct key_record *rec)
{
        full_record_v2(rec);
        rec->flags |= KEY_FLAG_RETIRE_ON_FIRST_USE;
        rec->not_before = NOW + 60000000ull;
        rec->n_sources = ELEMENTSOF(full_sources);
        for (size_t i = 0; i < ELEMENTSOF(full_sources); i++)
                rec->sources[i] = full_sources[i];
        rec->max_uses = 5;
        rec->uses = 2;
        rec->rate_limit_count = 100;
        rec->rate_limit_window = 60000000ull;
        memcpy(rec->replaces, "0ldKeY000001", TOKEN_ID_LEN + 1);
        memcpy(rec->replaced_by, "NewKeY000002", TOKEN_ID_LEN + 1);
        rec->disabled_reason = "unused";
}

/* The smallest valid record: only what is required. */
static void minimal_record(struct key_record *rec)
{
        *rec = (struct key_record){
            .id = ID,
            .status = KEY_STATUS_ENABLED,
            .role = KEY_ROLE_READONLY,
            .permissions = KEY_PERM_READ,
            .created_at = 1,
            .name = "n",
            .owner = "o",
        };
}

static void encode(const struct key_record *rec, uint8_t **ret, size_t *ret_len)
{
        void *buf = NULL;

        assert_int_equal(record_encode(rec, &buf, ret_len), 0);
        *ret = buf;
}

/* Decode from a heap copy of exactly `len` bytes, so a read past the end is caught by ASan. */
static int decode_exact(const void *buf, size_t len, struct key_record *ret)
{
        void *copy = malloc(len ? len : 1);
        struct key_record rec;
        int r;

        assert_non_null(copy);
        memcpy(copy, buf, len);
        r = record_decode(copy, len, &rec);
        free(copy);
        if (ret)
                *ret = rec;
        return r;
}

static void assert_opt_equal(const char *a, const char *b)
{
        if (!a || !*a)
                assert_null(b);
        else
                assert_string_equal(a, b);
}

static void assert_records_equal(const struct key_record *a, const struct key_record *b)
{
        assert_string_equal(a->id, b->id);
        assert_int_equal(a->status, b->status);
        assert_int_equal(a->role, b->role);
        assert_int_equal(a->permissions, b->permissions);
        assert_memory_equal(a->hash, b->hash, KEY_HASH_SIZE);
        assert_int_equal(a->created_at, b->created_at);
        assert_int_equal(a->expires_at, b->expires_at);
        assert_int_equal(a->last_used_at, b->last_used_at);
        assert_string_equal(a->name, b->name);
        assert_opt_equal(a->description, b->description);
        assert_string_equal(a->owner, b->owner);
        assert_opt_equal(a->created_by, b->created_by);
        assert_opt_equal(a->last_used_service, b->last_used_service);
        assert_opt_equal(a->last_used_from, b->last_used_from);
        assert_int_equal(a->n_scope, b->n_scope);
        for (size_t i = 0; i < a->n_scope; i++)
                assert_string_equal(a->scope[i], b->scope[i]);
        assert_int_equal(a->flags, b->flags);
        assert_string_equal(a->parent, b->parent);
        assert_int_equal(a->not_before, b->not_before);
        assert_int_equal(a->n_sources, b->n_sources);
        for (size_t i = 0; i < a->n_sources; i++)
                assert_string_equal(a->sources[i], b->sources[i]);
        assert_int_equal(a->max_uses, b->max_uses);
        assert_int_equal(a->uses, b->uses);
        assert_int_equal(a->rate_limit_count, b->rate_limit_count);
        assert_int_equal(a->rate_limit_window, b->rate_limit_window);
        assert_string_equal(a->replaces, b->replaces);
        assert_string_equal(a->replaced_by, b->replaced_by);
        assert_opt_equal(a->disabled_reason, b->disabled_reason);
}

static void test_round_trip_every_field(void **state)
{
        struct key_record rec, out;
        uint8_t *buf;
        size_t len;

        full_record(&rec);
        encode(&rec, &buf, &len);
        assert_int_equal(record_decode(buf, len, &out), 0);
        assert_records_equal(&rec, &out);

        /* A view: the strings live in the buffer. */
        assert_true((const uint8_t *)out.name > buf && (const uint8_t *)out.name < buf + len);
        assert_true((const uint8_t *)out.scope[2] > buf &&
                    (const uint8_t *)out.scope[2] < buf + len);
        free(buf);
}

static void test_round_trip_minimal_and_maximal(void **state)
{
        char name[KEY_NAME_MAX + 1], owner[KEY_OWNER_MAX + 1], desc[KEY_DESCRIPTION_MAX + 1];
        char field[KEY_FIELD_MAX + 1], scope[KEY_SCOPE_MAX][KEY_SCOPE_ENTRY_MAX + 1];
        struct key_record rec, out;
        uint8_t *buf;
        size_t len;

        minimal_record(&rec);
        encode(&rec, &buf, &len);
        /* Six empty-or-one-byte strings after the fixed part. */
        assert_int_equal(len, RECORD_FIXED_SIZE + 2 * 4 + 4 * 3);
        assert_int_equal(record_decode(buf, len, &out), 0);
        assert_records_equal(&rec, &out);
        assert_null(out.description);
        assert_null(out.created_by);
        assert_null(out.last_used_service);
        assert_null(out.last_used_from);
        free(buf);

        /* Empty optional strings are stored as absent. */
        rec.description = "";
        rec.created_by = "";
        encode(&rec, &buf, &len);
        assert_int_equal(record_decode(buf, len, &out), 0);
        assert_null(out.description);
        assert_null(out.created_by);
        free(buf);

        memset(name, 'n', KEY_NAME_MAX);
        name[KEY_NAME_MAX] = '\0';
        memset(owner, 'o', KEY_OWNER_MAX);
        owner[KEY_OWNER_MAX] = '\0';
        memset(desc, 'd', KEY_DESCRIPTION_MAX);
        desc[KEY_DESCRIPTION_MAX] = '\0';
        memset(field, 'f', KEY_FIELD_MAX);
        field[KEY_FIELD_MAX] = '\0';
        full_record(&rec);
        rec.role = KEY_ROLE_ADMIN;
        rec.permissions = KEY_PERM_ALL;
        rec.status = KEY_STATUS_REVOKED;
        rec.expires_at = UINT64_MAX;
        rec.last_used_at = UINT64_MAX - 1;
        rec.name = name;
        rec.owner = owner;
        rec.description = desc;
        rec.created_by = rec.last_used_service = rec.last_used_from = field;
        rec.n_scope = KEY_SCOPE_MAX;
        for (size_t i = 0; i < KEY_SCOPE_MAX; i++) {
                memset(scope[i], 's', KEY_SCOPE_ENTRY_MAX);
                snprintf(scope[i], sizeof(scope[i]), "%02zu", i); /* distinct, then 's' */
                scope[i][2] = 's';
                scope[i][KEY_SCOPE_ENTRY_MAX] = '\0';
                rec.scope[i] = scope[i];
        }
        encode(&rec, &buf, &len);
        assert_int_equal(record_decode(buf, len, &out), 0);
        assert_records_equal(&rec, &out);
        free(buf);
}

static uint8_t full_record_flags_v2(void)
{
        struct key_record rec;

        full_record_v2(&rec);
        return rec.flags;
}

static uint64_t le64_at(const uint8_t *p)
{
        uint64_t v = 0;

        for (int i = 7; i >= 0; i--)
                v = v << 8 | p[i];
        return v;
}

/* The byte layout is the one record.h documents, field by field. */
static void test_layout(void **state)
{
        struct key_record rec;
        uint8_t *buf;
        size_t len;

        /* Without extensions: version 2, which a daemon of that version reads. */
        full_record_v2(&rec);
        assert_false(record_has_extensions(&rec));
        encode(&rec, &buf, &len);
        assert_int_equal(buf[0], 2);
        assert_int_equal(buf[1], KEY_STATUS_DISABLED);
        assert_int_equal(buf[2], KEY_ROLE_CUSTOM);
        assert_int_equal(buf[3], rec.permissions);
        assert_memory_equal(buf + 4, ID, 12);
        assert_memory_equal(buf + 16, rec.hash, 32);
        assert_int_equal(le64_at(buf + 48), rec.created_at);
        assert_int_equal(le64_at(buf + 56), rec.expires_at);
        assert_int_equal(le64_at(buf + 64), rec.last_used_at);
        assert_int_equal(buf[72], 3);
        assert_int_equal(buf[73], rec.flags);
        assert_memory_equal(buf + 74, rec.parent, 12);
        /* name: u16 LE length, bytes, NUL */
        assert_int_equal(buf[86], 6);
        assert_int_equal(buf[87], 0);
        assert_memory_equal(buf + 88, "deploy", 7);
        /* description follows */
        assert_int_equal(buf[95], strlen(rec.description));
        /* the last scope entry ends the buffer */
        assert_memory_equal(buf + len - 12, "billing-api", 12);
        assert_int_equal(buf[len - 14], 11);
        free(buf);
}

/* The extensions follow the scope: tag, u16 length, bytes; tags ascending. */
static void test_layout_extensions(void **state)
{
        struct key_record rec;
        uint8_t *buf, *v2;
        size_t len, v2_len, p;

        full_record_v2(&rec);
        encode(&rec, &v2, &v2_len);
        full_record(&rec);
        assert_true(record_has_extensions(&rec));
        rec.flags = full_record_flags_v2(); /* the same fixed part as the v2 record */
        encode(&rec, &buf, &len);
        assert_int_equal(buf[0], RECORD_VERSION);
        assert_memory_equal(buf + 1, v2 + 1, v2_len - 1);

        p = v2_len;
        assert_int_equal(buf[p] | buf[p + 1] << 8, len - v2_len - 2); /* their length */
        p += 2;
        assert_int_equal(buf[p], 1); /* not_before */
        assert_int_equal(buf[p + 1] | buf[p + 2] << 8, 8);
        assert_int_equal(le64_at(buf + p + 3), rec.not_before);
        p += 3 + 8;
        assert_int_equal(buf[p], 2); /* sources: a count, then strings */
        assert_int_equal(buf[p + 3], 3);
        assert_int_equal(buf[p + 4], strlen("10.0.0.0/8"));
        assert_memory_equal(buf + p + 6, "10.0.0.0/8", 11);
        p += 3 + (buf[p + 1] | buf[p + 2] << 8);
        assert_int_equal(buf[p], 3); /* max_uses, uses */
        assert_int_equal(le64_at(buf + p + 3), 5);
        assert_int_equal(le64_at(buf + p + 11), 2);
        p += 3 + 16;
        assert_int_equal(buf[p], 4); /* rate_limit: u32 count, u64 window */
        assert_int_equal(buf[p + 3], 100);
        assert_int_equal(le64_at(buf + p + 7), 60000000ull);
        p += 3 + 12;
        assert_int_equal(buf[p], 5);
        assert_memory_equal(buf + p + 3, "0ldKeY000001", 12);
        p += 3 + 12;
        assert_int_equal(buf[p], 6);
        assert_memory_equal(buf + p + 3, "NewKeY000002", 12);
        p += 3 + 12;
        assert_int_equal(buf[p], 7); /* disabled_reason: a string */
        assert_memory_equal(buf + p + 5, "unused", 7);
        assert_int_equal(p + 3 + 2 + 7, len);
        free(buf);
        free(v2);
}

/* A tag this code does not know may narrow the key: never skipped. */
static void test_extension_refusals(void **state)
{
        struct key_record rec;
        uint8_t *buf, *more;
        size_t len;

        minimal_record(&rec);
        rec.not_before = NOW;
        encode(&rec, &buf, &len);
        assert_int_equal(buf[0], 3);
        assert_int_equal(buf[len - 11], 1);

        /* an unknown (newer) tag */
        buf[len - 11] = 8;
        assert_int_equal(decode_exact(buf, len, NULL), -EPROTONOSUPPORT);
        buf[len - 11] = 0xff;
        assert_int_equal(decode_exact(buf, len, NULL), -EPROTONOSUPPORT);
        /* tag 0, a wrong length, a zero value */
        buf[len - 11] = 0;
        assert_int_equal(decode_exact(buf, len, NULL), -EBADMSG);
        buf[len - 11] = 1;
        buf[len - 10] = 7;
        assert_int_equal(decode_exact(buf, len, NULL), -EBADMSG);
        buf[len - 10] = 8;
        memset(buf + len - 8, 0, 8);
        assert_int_equal(decode_exact(buf, len, NULL), -EBADMSG);
        /* version 3 with no extension at all, or a length that is not theirs */
        assert_int_equal(decode_exact(buf, len - 11, NULL), -EBADMSG);
        assert_int_equal(decode_exact(buf, len - 13, NULL), -EBADMSG);
        buf[len - 13] = 10;
        assert_int_equal(decode_exact(buf, len, NULL), -EBADMSG);
        buf[len - 13] = 11;
        free(buf);

        /* the same tag twice, or out of order */
        minimal_record(&rec);
        rec.not_before = NOW;
        encode(&rec, &buf, &len);
        more = malloc(len + 11);
        assert_non_null(more);
        memcpy(more, buf, len);
        memcpy(more + len, buf + len - 11, 11);
        more[len - 13] = 22;
        assert_int_equal(decode_exact(more, len + 11, NULL), -EBADMSG);
        free(more);
        free(buf);

        minimal_record(&rec);
        rec.max_uses = 1;
        rec.not_before = NOW;
        encode(&rec, &buf, &len);
        /* swap the two: max_uses (19 bytes) before not_before (11) */
        more = malloc(len);
        assert_non_null(more);
        memcpy(more, buf, len - 30);
        memcpy(more + len - 30, buf + len - 19, 19);
        memcpy(more + len - 11, buf + len - 30, 11);
        assert_int_equal(decode_exact(more, len, NULL), -EBADMSG);
        free(more);
        /* more uses spent than allowed */
        buf[len - 8] = 2;
        assert_int_equal(decode_exact(buf, len, NULL), -EBADMSG);
        free(buf);
}

static void test_every_truncation_rejected(void **state)
{
        struct key_record rec;
        uint8_t *buf;
        size_t len;

        full_record(&rec);
        encode(&rec, &buf, &len);
        for (size_t n = 0; n < len; n++)
                assert_int_equal(decode_exact(buf, n, NULL), -EBADMSG);
        assert_int_equal(record_decode(NULL, 0, NULL), -EBADMSG);
        free(buf);

        minimal_record(&rec);
        encode(&rec, &buf, &len);
        for (size_t n = 0; n < len; n++)
                assert_int_equal(decode_exact(buf, n, NULL), -EBADMSG);
        free(buf);
}

static void test_trailing_bytes_rejected(void **state)
{
        struct key_record rec;
        uint8_t *buf, *longer;
        size_t len;

        full_record(&rec);
        encode(&rec, &buf, &len);
        longer = malloc(len + 3);
        assert_non_null(longer);
        memcpy(longer, buf, len);
        memset(longer + len, 0, 3);
        for (size_t extra = 1; extra <= 3; extra++)
                assert_int_equal(decode_exact(longer, len + extra, NULL), -EBADMSG);
        free(longer);
        free(buf);
}

/* Whatever is accepted is valid and encodes back to the very same bytes. */
static void check_mutant(const uint8_t *buf, size_t len)
{
        struct key_record out;
        int r = decode_exact(buf, len, &out);

        assert_true(r == 0 || r == -EBADMSG || r == -EPROTONOSUPPORT);
        if (r == 0) {
                void *again;
                size_t again_len;
                /* `out` points into a freed copy: decode in place to re-encode. */
                assert_int_equal(record_decode(buf, len, &out), 0);
                assert_int_equal(record_validate(&out), 0);
                assert_int_equal(record_encode(&out, &again, &again_len), 0);
                assert_int_equal(again_len, len);
                assert_memory_equal(again, buf, len);
                free(again);
        }
}

static void test_byte_flips(void **state)
{
        struct key_record rec;
        uint8_t *buf;
        size_t len;

        full_record(&rec);
        encode(&rec, &buf, &len);
        for (size_t pos = 0; pos < len; pos++) {
                uint8_t saved = buf[pos];

                for (unsigned v = 0; v < 256; v++) {
                        buf[pos] = (uint8_t)v;
                        check_mutant(buf, len);
                }
                buf[pos] = saved;
        }
        free(buf);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
        /* xorshift64*: a fixed seed, so a failure reproduces */
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 0x2545f4914f6cdd1dull;
}

static void test_random_mutations(void **state)
{
        struct key_record rec;
        uint8_t *orig, *buf;
        size_t len;

        full_record(&rec);
        encode(&rec, &orig, &len);
        buf = calloc(1, len + 16);
        assert_non_null(buf);

        for (int round = 0; round < 100000; round++) {
                size_t n = len;
                int edits = 1 + (int)(rng() % 6);

                memcpy(buf, orig, len);
                for (int e = 0; e < edits; e++) {
                        switch (rng() % 3) {
                        case 0: /* overwrite */
                                buf[rng() % n] = (uint8_t)rng();
                                break;
                        case 1: /* a small length, where lengths live */
                                buf[RECORD_FIXED_SIZE + rng() % (n - RECORD_FIXED_SIZE)] =
                                    (uint8_t)(rng() % 8);
                                break;
                        default: /* shorten or lengthen */
                                n = len - 8 + (size_t)(rng() % 17);
                                break;
                        }
                }
                check_mutant(buf, n);
        }

        /* And pure noise of every small length. */
        for (int round = 0; round < 20000; round++) {
                size_t n = (size_t)(rng() % (len + 16));

                for (size_t i = 0; i < n; i++)
                        buf[i] = (uint8_t)rng();
                if (n > 0 && rng() % 2)
                        buf[0] = RECORD_VERSION;
                check_mutant(buf, n);
        }
        free(buf);
        free(orig);
}

static void test_version(void **state)
{
        struct key_record rec;
        uint8_t *buf;
        size_t len;

        full_record(&rec);
        encode(&rec, &buf, &len);
        for (unsigned v = RECORD_VERSION + 1; v < 256; v++) {
                buf[0] = (uint8_t)v;
                assert_int_equal(decode_exact(buf, len, NULL), -EPROTONOSUPPORT);
                /* A newer format may be laid out differently: any length is "newer". */
                assert_int_equal(decode_exact(buf, 1, NULL), -EPROTONOSUPPORT);
                assert_int_equal(decode_exact(buf, 20, NULL), -EPROTONOSUPPORT);
        }
        buf[0] = 0;
        assert_int_equal(decode_exact(buf, len, NULL), -EBADMSG);
        free(buf);
}

/* Change one byte of a valid encoding and expect it refused. */
static void expect_corrupt_at(size_t pos, uint8_t value)
{
        struct key_record rec;
        uint8_t *buf;
        size_t len;

        full_record(&rec);
        encode(&rec, &buf, &len);
        assert_true(pos < len);
        buf[pos] = value;
        assert_int_equal(decode_exact(buf, len, NULL), -EBADMSG);
        free(buf);
}

static void test_specific_corruptions(void **state)
{
        /* enums out of range */
        expect_corrupt_at(1, 0);
        expect_corrupt_at(1, KEY_STATUS_EXPIRED); /* derived, never stored */
        expect_corrupt_at(1, 9);
        expect_corrupt_at(2, 0);
        expect_corrupt_at(2, 4);
        expect_corrupt_at(3, 0x20 | KEY_PERM_READ);
        /* a custom role with no permissions */
        expect_corrupt_at(3, 0);
        /* id: not base62, or a NUL inside */
        expect_corrupt_at(4, '_');
        expect_corrupt_at(10, '\0');
        /* created_at of 0 */
        {
                struct key_record rec;
                uint8_t *buf;
                size_t len;

                full_record(&rec);
                encode(&rec, &buf, &len);
                memset(buf + 48, 0, 8);
                assert_int_equal(decode_exact(buf, len, NULL), -EBADMSG);
                free(buf);
        }
        /* n_scope above the maximum */
        expect_corrupt_at(72, KEY_SCOPE_MAX + 1);
        expect_corrupt_at(72, 0xff);
        /* flags: an unknown bit */
        expect_corrupt_at(73, 0x8 | KEY_FLAG_NO_LOGIN);
        /* parent: not base62, a NUL inside, or the key itself */
        expect_corrupt_at(74, '_');
        expect_corrupt_at(80, '\0');
        {
                struct key_record rec;
                uint8_t *buf;
                size_t len;

                full_record(&rec);
                encode(&rec, &buf, &len);
                memcpy(buf + 74, ID, 12);
                assert_int_equal(decode_exact(buf, len, NULL), -EBADMSG);
                free(buf);
        }
        /* name: empty, a NUL inside, no terminating NUL, length past the end */
        expect_corrupt_at(86, 0);
        expect_corrupt_at(89, '\0');
        expect_corrupt_at(94, 'x');
        expect_corrupt_at(87, 0xff);
        /* a control character in the name */
        expect_corrupt_at(89, '\n');
}

/* A version 1 record (no flags, no parent) still decodes: stores written
 * before version 2 keep working. */
static void test_version_1(void **state)
{
        struct key_record rec, out;
        uint8_t *buf, *v1;
        size_t len;

        full_record_v2(&rec);
        encode(&rec, &buf, &len);
        v1 = malloc(len - 13);
        assert_non_null(v1);
        memcpy(v1, buf, RECORD_V1_FIXED_SIZE);
        memcpy(v1 + RECORD_V1_FIXED_SIZE, buf + RECORD_FIXED_SIZE, len - RECORD_FIXED_SIZE);
        v1[0] = 1;
        assert_int_equal(record_decode(v1, len - 13, &out), 0);
        assert_int_equal(out.flags, 0);
        assert_string_equal(out.parent, "");
        assert_string_equal(out.name, "deploy");
        assert_string_equal(out.scope[2], "billing-api");
        /* As version 2 it is too short. */
        v1[0] = 2;
        assert_int_equal(record_decode(v1, len - 13, NULL), -EBADMSG);
        free(v1);
        free(buf);
}

static void test_duplicate_scope_in_encoding(void **state)
{
        struct key_record rec;
        uint8_t *buf;
        size_t len;

        /* Two scope entries of the same length: make the second equal the first. */
        static const char *const two[] = {"aaaa", "bbbb"};
        full_record_v2(&rec);
        rec.n_scope = 2;
        rec.scope[0] = two[0];
        rec.scope[1] = two[1];
        encode(&rec, &buf, &len);
        memcpy(buf + len - 5, "aaaa", 4);
        assert_int_equal(decode_exact(buf, len, NULL), -EBADMSG);
        free(buf);
}

static void expect_invalid(const struct key_record *rec)
{
        void *buf = NULL;
        size_t len = 0;

        assert_int_equal(record_validate(rec), -EINVAL);
        assert_int_equal(record_encode(rec, &buf, &len), -EINVAL);
        assert_null(buf);
}

static void test_validate_refusals(void **state)
{
        char long_name[KEY_NAME_MAX + 2], long_owner[KEY_OWNER_MAX + 2];
        char long_desc[KEY_DESCRIPTION_MAX + 2], long_field[KEY_FIELD_MAX + 2];
        char long_scope[KEY_SCOPE_ENTRY_MAX + 2];
        static char many[KEY_SCOPE_MAX + 1][8];
        struct key_record rec;

        memset(long_name, 'n', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = '\0';
        memset(long_owner, 'o', sizeof(long_owner) - 1);
        long_owner[sizeof(long_owner) - 1] = '\0';
        memset(long_desc, 'd', sizeof(long_desc) - 1);
        long_desc[sizeof(long_desc) - 1] = '\0';
        memset(long_field, 'f', sizeof(long_field) - 1);
        long_field[sizeof(long_field) - 1] = '\0';
        memset(long_scope, 's', sizeof(long_scope) - 1);
        long_scope[sizeof(long_scope) - 1] = '\0';

        full_record(&rec);
        assert_int_equal(record_validate(&rec), 0);
        assert_int_equal(record_validate(NULL), -EINVAL);

#define REFUSE(stmt)                                                                               \
        do {                                                                                       \
                full_record(&rec);                                                                 \
                stmt;                                                                              \
                expect_invalid(&rec);                                                              \
        } while (0)

        REFUSE(rec.id[0] = '\0');
        REFUSE(rec.id[3] = '-');
        REFUSE(rec.id[11] = '\0');
        REFUSE(rec.status = 0);
        REFUSE(rec.status = KEY_STATUS_EXPIRED);
        REFUSE(rec.role = 0);
        REFUSE(rec.role = 4);
        REFUSE(rec.created_at = 0);

        /* role and permissions must agree */
        REFUSE((rec.role = KEY_ROLE_ADMIN, rec.permissions = KEY_PERM_READ));
        REFUSE((rec.role = KEY_ROLE_ADMIN, rec.permissions = 0));
        REFUSE((rec.role = KEY_ROLE_READONLY, rec.permissions = KEY_PERM_ALL));
        REFUSE((rec.role = KEY_ROLE_READONLY, rec.permissions = KEY_PERM_READ | KEY_PERM_WRITE));
        REFUSE((rec.role = KEY_ROLE_CUSTOM, rec.permissions = 0));
        REFUSE((rec.role = KEY_ROLE_CUSTOM, rec.permissions = 0x20 | KEY_PERM_READ));

        REFUSE(rec.name = NULL);
        REFUSE(rec.name = "");
        REFUSE(rec.name = long_name);
        REFUSE(rec.name = "tab\there");
        REFUSE(rec.name = "del\x7f");
        REFUSE(rec.owner = NULL);
        REFUSE(rec.owner = "");
        REFUSE(rec.owner = long_owner);
        REFUSE(rec.owner = "a\nb");
        REFUSE(rec.description = long_desc);
        REFUSE(rec.created_by = long_field);
        REFUSE(rec.last_used_service = long_field);
        REFUSE(rec.last_used_from = long_field);

        REFUSE(rec.scope[1] = "");
        REFUSE(rec.scope[1] = NULL);
        REFUSE(rec.scope[1] = long_scope);
        REFUSE(rec.scope[1] = "bad\x01");
        REFUSE(rec.scope[2] = "sshd");
        REFUSE(rec.n_scope = KEY_SCOPE_MAX + 1);

        REFUSE(rec.sources[1] = "");
        REFUSE(rec.sources[1] = NULL);
        REFUSE(rec.sources[2] = "10.0.0.0/8");
        REFUSE(rec.sources[0] = "a\nb");
        REFUSE(rec.n_sources = KEY_SOURCES_MAX + 1);
        REFUSE(rec.uses = 6);
        REFUSE((rec.max_uses = 0, rec.uses = 1));
        REFUSE(rec.rate_limit_window = 0);
        REFUSE(rec.rate_limit_count = 0);
        REFUSE(memcpy(rec.replaces, ID, TOKEN_ID_LEN));
        REFUSE(memcpy(rec.replaced_by, ID, TOKEN_ID_LEN));
        REFUSE(rec.replaces[4] = '-');
        REFUSE(rec.replaces[0] = '\0'); /* retire on first use needs a key to retire */
        REFUSE(rec.flags = 0x8);
        REFUSE(rec.disabled_reason = long_scope);
#undef REFUSE

        /* KEY_SCOPE_MAX distinct entries are fine, one more is not. */
        full_record(&rec);
        for (size_t i = 0; i < KEY_SCOPE_MAX; i++) {
                snprintf(many[i], sizeof(many[i]), "s%zu", i);
                rec.scope[i] = many[i];
        }
        rec.n_scope = KEY_SCOPE_MAX;
        assert_int_equal(record_validate(&rec), 0);

        /* The bounds themselves are allowed. */
        full_record(&rec);
        long_name[KEY_NAME_MAX] = '\0';
        long_owner[KEY_OWNER_MAX] = '\0';
        long_desc[KEY_DESCRIPTION_MAX] = '\0';
        long_field[KEY_FIELD_MAX] = '\0';
        long_scope[KEY_SCOPE_ENTRY_MAX] = '\0';
        rec.name = long_name;
        rec.owner = long_owner;
        rec.description = long_desc;
        rec.created_by = long_field;
        rec.scope[0] = long_scope;
        assert_int_equal(record_validate(&rec), 0);
        /* No control characters in free text either: C0, DEL, or C1 such as CSI. */
        const char *field = NULL;
        rec.description = "line one\nline two";
        assert_int_equal(record_check(&rec, &field), -EINVAL);
        assert_string_equal(field, "description");
        rec.description = "csi \xc2\x9b"
                          "31m";
        assert_int_equal(record_check(&rec, &field), -EINVAL);
        rec.description = "bell \x07";
        assert_int_equal(record_check(&rec, &field), -EINVAL);
        rec.description = "fine: \xc2\xa9 \xc3\xa9";
        assert_int_equal(record_check(&rec, &field), 0);
        rec.created_by = "x\x1b[2J";
        assert_int_equal(record_check(&rec, &field), -EINVAL);
        assert_string_equal(field, "created_by");
        rec.created_by = long_field;
        /* UTF-8 is not a control character */
        rec.name = "clé";
        rec.owner = "jürgen";
        assert_int_equal(record_validate(&rec), 0);

        /* Each role with the permissions it implies. */
        rec.role = KEY_ROLE_ADMIN;
        rec.permissions = KEY_PERM_ALL;
        assert_int_equal(record_validate(&rec), 0);
        rec.role = KEY_ROLE_READONLY;
        rec.permissions = KEY_PERM_READ;
        assert_int_equal(record_validate(&rec), 0);
        rec.role = KEY_ROLE_CUSTOM;
        rec.permissions = KEY_PERM_ALL;
        assert_int_equal(record_validate(&rec), 0);
}

/* Owners and scope entries have a syntax that every write checks; a record
 * stored before it stays readable (decode), revocable and deletable (encode). */
static void test_check_name_syntax(void **state)
{
        static const char *const owners[] = {"root ", "bad owner!", "j\xc3\xbcrgen", "1000",
                                             "r\xd0\xbe\xd0\xbet"};
        static const char *const scopes[] = {"ssh d",
                                             "s\xc3\xbc"
                                             "do",
                                             "-x", "a,b"};
        const char *field = NULL;
        struct key_record rec, back;
        uint8_t *buf;
        size_t len;

        full_record(&rec);
        assert_int_equal(record_check(&rec, &field), 0);
        for (size_t i = 0; i < ELEMENTSOF(owners); i++) {
                full_record(&rec);
                rec.owner = owners[i];
                field = NULL;
                assert_int_equal(record_check(&rec, &field), -EINVAL);
                assert_string_equal(field, "owner");
                assert_int_equal(record_validate(&rec), 0);
                encode(&rec, &buf, &len);
                assert_int_equal(decode_exact(buf, len, &back), 0);
                free(buf);
        }
        for (size_t i = 0; i < ELEMENTSOF(scopes); i++) {
                full_record(&rec);
                rec.scope[1] = scopes[i];
                field = NULL;
                assert_int_equal(record_check(&rec, &field), -EINVAL);
                assert_string_equal(field, "scope");
                assert_int_equal(record_validate(&rec), 0);
        }
        /* Malformed UTF-8 and C1 controls are refused everywhere, stored or not. */
        full_record(&rec);
        rec.last_used_from = "192.0.2.7\xc2\x85";
        assert_int_equal(record_validate(&rec), -EINVAL);
        rec.last_used_from = "192.0.2.7";
        rec.description = "caf\xc3";
        assert_int_equal(record_check(&rec, &field), -EINVAL);
        assert_string_equal(field, "description");
        assert_int_equal(record_validate(&rec), -EINVAL);
}

static void test_effective_status(void **state)
{
        struct key_record rec;

        full_record(&rec);
        rec.expires_at = 0;
        rec.status = KEY_STATUS_ENABLED;
        assert_int_equal(record_effective_status(&rec, UINT64_MAX), KEY_STATUS_ENABLED);
        rec.status = KEY_STATUS_DISABLED;
        assert_int_equal(record_effective_status(&rec, NOW), KEY_STATUS_DISABLED);

        rec.expires_at = NOW;
        rec.status = KEY_STATUS_ENABLED;
        assert_int_equal(record_effective_status(&rec, NOW - 1), KEY_STATUS_ENABLED);
        assert_int_equal(record_effective_status(&rec, NOW), KEY_STATUS_EXPIRED);
        assert_int_equal(record_effective_status(&rec, NOW + 1), KEY_STATUS_EXPIRED);
        /* expired outranks disabled, revoked outranks everything */
        rec.status = KEY_STATUS_DISABLED;
        assert_int_equal(record_effective_status(&rec, NOW - 1), KEY_STATUS_DISABLED);
        assert_int_equal(record_effective_status(&rec, NOW), KEY_STATUS_EXPIRED);
        rec.status = KEY_STATUS_REVOKED;
        assert_int_equal(record_effective_status(&rec, NOW - 1), KEY_STATUS_REVOKED);
        assert_int_equal(record_effective_status(&rec, NOW), KEY_STATUS_REVOKED);
}

static void test_names(void **state)
{
        static const char *const statuses[] = {NULL, "enabled", "disabled", "revoked", "expired"};
        static const char *const roles[] = {NULL, "admin", "readonly", "custom"};
        static const char *const perms[] = {"create", "read", "write", "delete", "invite"};

        for (int s = 1; s <= 4; s++) {
                assert_string_equal(key_status_to_string(s), statuses[s]);
                assert_int_equal(key_status_from_string(statuses[s]), s);
        }
        for (int r = 1; r <= 3; r++) {
                assert_string_equal(key_role_to_string(r), roles[r]);
                assert_int_equal(key_role_from_string(roles[r]), r);
        }
        for (int b = 0; b < 5; b++) {
                assert_string_equal(key_perm_to_string(1 << b), perms[b]);
                assert_int_equal(key_perm_from_string(perms[b]), 1 << b);
        }

        assert_null(key_status_to_string(0));
        assert_null(key_status_to_string(5));
        assert_null(key_status_to_string(-1));
        assert_null(key_role_to_string(0));
        assert_null(key_role_to_string(4));
        assert_null(key_perm_to_string(0));
        assert_null(key_perm_to_string(KEY_PERM_READ | KEY_PERM_WRITE));
        assert_null(key_perm_to_string(1 << 5));
        assert_null(key_perm_to_string(KEY_PERM_ALL));

        assert_int_equal(key_status_from_string(NULL), -EINVAL);
        assert_int_equal(key_status_from_string(""), -EINVAL);
        assert_int_equal(key_status_from_string("Enabled"), -EINVAL);
        assert_int_equal(key_role_from_string("root"), -EINVAL);
        assert_int_equal(key_role_from_string(NULL), -EINVAL);
        assert_int_equal(key_perm_from_string("all"), -EINVAL);
        assert_int_equal(key_perm_from_string("read "), -EINVAL);
        assert_int_equal(key_perm_from_string(NULL), -EINVAL);

        assert_int_equal(key_role_permissions(KEY_ROLE_ADMIN), KEY_PERM_ALL);
        assert_int_equal(key_role_permissions(KEY_ROLE_READONLY), KEY_PERM_READ);
        assert_int_equal(key_role_permissions(KEY_ROLE_CUSTOM), 0);
        assert_int_equal(key_role_permissions(0), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_round_trip_every_field),
            cmocka_unit_test(test_round_trip_minimal_and_maximal),
            cmocka_unit_test(test_layout),
            cmocka_unit_test(test_layout_extensions),
            cmocka_unit_test(test_extension_refusals),
            cmocka_unit_test(test_every_truncation_rejected),
            cmocka_unit_test(test_trailing_bytes_rejected),
            cmocka_unit_test(test_byte_flips),
            cmocka_unit_test(test_random_mutations),
            cmocka_unit_test(test_version),
            cmocka_unit_test(test_version_1),
            cmocka_unit_test(test_specific_corruptions),
            cmocka_unit_test(test_duplicate_scope_in_encoding),
            cmocka_unit_test(test_validate_refusals),
            cmocka_unit_test(test_check_name_syntax),
            cmocka_unit_test(test_effective_status),
            cmocka_unit_test(test_names),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
