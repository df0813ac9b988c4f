/* SPDX-License-Identifier: MIT */
/*
 * The key record: its rules (record_validate), its versioned binary encoding
 * (record_encode, record_decode; the layout is in record.h) and the names its
 * enums carry on the wire.
 *
 * record_decode reads bytes from disk that a crash, a bad disk or a hostile
 * copy may have mangled: it trusts nothing, and whatever it accepts also
 * passes record_validate, so no caller has to check a decoded record again.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "sources.h"
#include "text_check.h"

#define RECORD_N_STRINGS 6 /* name, description, owner, created_by, last_used_* */

/* A required string: 1..max bytes of text that passes text_valid(). */
static bool label_valid(const char *s, size_t max)
{
        return s && s[0] && text_valid(s, max);
}

/* An optional string: NULL, or at most max bytes that pass text_valid()
 * ("" counts as absent). */
static bool optional_valid(const char *s, size_t max)
{
        return !s || text_valid(s, max);
}

static int bad(const char *field, const char **ret_field)
{
        if (ret_field)
                *ret_field = field;
        return -EINVAL;
}

static bool id_or_none_valid(const char *id, const char *self)
{
        return !id[0] || (token_id_valid(id) && !STREQ(id, self));
}

static int check_extensions(const struct key_record *rec, const char **ret_field)
{
        if (rec->n_sources > KEY_SOURCES_MAX)
                return bad("sources", ret_field);
        for (size_t i = 0; i < rec->n_sources; i++) {
                if (!label_valid(rec->sources[i], KEY_SOURCE_ENTRY_MAX))
                        return bad("sources", ret_field);
                for (size_t j = 0; j < i; j++)
                        if (STREQ(rec->sources[i], rec->sources[j]))
                                return bad("sources", ret_field);
        }
        /* Uses are spent against a limit; none without one. */
        if (rec->uses > rec->max_uses)
                return bad("max_uses", ret_field);
        if ((rec->rate_limit_count == 0) != (rec->rate_limit_window == 0))
                return bad("rate_limit", ret_field);
        if (!id_or_none_valid(rec->replaces, rec->id))
                return bad("replaces", ret_field);
        if (!id_or_none_valid(rec->replaced_by, rec->id))
                return bad("replaced_by", ret_field);
        if ((rec->flags & KEY_FLAG_RETIRE_ON_FIRST_USE) && !rec->replaces[0])
                return bad("flags", ret_field);
        if (!optional_valid(rec->disabled_reason, KEY_REASON_MAX))
                return bad("disabled_reason", ret_field);
        return 0;
}

bool record_has_extensions(const struct key_record *rec)
{
        return rec->not_before != 0 || rec->n_sources > 0 || rec->max_uses != 0 ||
               rec->rate_limit_count != 0 || rec->replaces[0] || rec->replaced_by[0] ||
               (rec->disabled_reason && rec->disabled_reason[0]);
}

/* What every stored record meets, also one written before owners and
 * scope entries had a syntax: it stays readable, revocable, deletable. */
static int check_stored(const struct key_record *rec, const char **ret_field)
{
        if (!rec)
                return bad("record", ret_field);
        if (!token_id_valid(rec->id))
                return bad("id", ret_field);
        if (rec->status < KEY_STATUS_ENABLED || rec->status > KEY_STATUS_REVOKED)
                return bad("status", ret_field);
        if (rec->created_at == 0)
                return bad("created_at", ret_field);

        if (rec->permissions & ~KEY_PERM_ALL)
                return bad("permissions", ret_field);
        if (rec->flags & ~KEY_FLAGS_ALL)
                return bad("flags", ret_field);
        if (rec->parent[0] && (!token_id_valid(rec->parent) || STREQ(rec->parent, rec->id)))
                return bad("parent", ret_field);
        switch (rec->role) {
        case KEY_ROLE_ADMIN:
        case KEY_ROLE_READONLY:
                if (rec->permissions != key_role_permissions(rec->role))
                        return bad("permissions", ret_field);
                break;
        case KEY_ROLE_CUSTOM:
                if (rec->permissions == 0)
                        return bad("permissions", ret_field);
                break;
        default:
                return bad("role", ret_field);
        }

        if (!label_valid(rec->name, KEY_NAME_MAX))
                return bad("name", ret_field);
        if (!label_valid(rec->owner, KEY_OWNER_MAX))
                return bad("owner", ret_field);
        if (!optional_valid(rec->description, KEY_DESCRIPTION_MAX))
                return bad("description", ret_field);
        if (!optional_valid(rec->created_by, KEY_FIELD_MAX))
                return bad("created_by", ret_field);
        if (!optional_valid(rec->last_used_service, KEY_FIELD_MAX))
                return bad("last_used_service", ret_field);
        if (!optional_valid(rec->last_used_from, KEY_FIELD_MAX))
                return bad("last_used_from", ret_field);

        if (rec->n_scope > KEY_SCOPE_MAX)
                return bad("scope", ret_field);
        for (size_t i = 0; i < rec->n_scope; i++) {
                if (!label_valid(rec->scope[i], KEY_SCOPE_ENTRY_MAX))
                        return bad("scope", ret_field);
                /* A duplicate would make "remove this service" updates ambiguous. */
                for (size_t j = 0; j < i; j++)
                        if (STREQ(rec->scope[i], rec->scope[j]))
                                return bad("scope", ret_field);
        }
        return check_extensions(rec, ret_field);
}

int record_check(const struct key_record *rec, const char **ret_field)
{
        int r = check_stored(rec, ret_field);

        if (r < 0)
                return r;
        /* The owner and the scope entries are names a login or a service is
         * matched against: one syntax, ASCII only, so none looks like another. */
        if (!text_owner_valid(rec->owner, KEY_OWNER_MAX))
                return bad("owner", ret_field);
        for (size_t i = 0; i < rec->n_scope; i++)
                if (!text_name_valid(rec->scope[i], KEY_SCOPE_ENTRY_MAX))
                        return bad("scope", ret_field);
        /* Addresses, blocks and host names, each meaning one thing (sources.h). */
        if (sources_check(rec->sources, rec->n_sources, NULL, NULL) < 0)
                return bad("sources", ret_field);
        /* A key whose start is not before its end would never be valid. */
        if (rec->not_before && rec->expires_at && rec->not_before >= rec->expires_at)
                return bad("not_before", ret_field);
        return 0;
}

int record_validate(const struct key_record *rec)
{
        return check_stored(rec, NULL);
}

static size_t opt_len(const char *s)
{
        return s ? strlen(s) : 0;
}

static uint8_t *put_string(uint8_t *p, const char *s)
{
        size_t n = opt_len(s);
        uint16_t le = htole16((uint16_t)n);

        memcpy(p, &le, sizeof(le));
        p += sizeof(le);
        if (n > 0)
                memcpy(p, s, n);
        p[n] = '\0';
        return p + n + 1;
}

static uint8_t *put_u64(uint8_t *p, uint64_t v)
{
        uint64_t le = htole64(v);

        memcpy(p, &le, sizeof(le));
        return p + sizeof(le);
}

enum {
        EXT_NOT_BEFORE = 1,
        EXT_SOURCES = 2,
        EXT_MAX_USES = 3,
        EXT_RATE_LIMIT = 4,
        EXT_REPLACES = 5,
        EXT_REPLACED_BY = 6,
        EXT_DISABLED_REASON = 7,
        _EXT_MAX,
};

/* The extensions' bytes at `p`, or only their length when `p` is NULL. */
static size_t put_extensions(uint8_t *p, const struct key_record *rec)
{
        size_t n = 0;

/* One extension of `len` bytes: its header, then `body` (which writes at q). */
#define EXT(tag, len, body)                                                                        \
        do {                                                                                       \
                size_t _l = (len);                                                                 \
                if (p) {                                                                           \
                        uint16_t _le = htole16((uint16_t)_l);                                      \
                        uint8_t *q = p + 3;                                                        \
                        p[0] = (tag);                                                              \
                        memcpy(p + 1, &_le, sizeof(_le));                                          \
                        body;                                                                      \
                        p += 3 + _l;                                                               \
                }                                                                                  \
                n += 3 + _l;                                                                       \
        } while (0)

        if (rec->not_before)
                EXT(EXT_NOT_BEFORE, 8, q = put_u64(q, rec->not_before));
        if (rec->n_sources > 0) {
                size_t l = 1;

                for (size_t i = 0; i < rec->n_sources; i++)
                        l += 2 + strlen(rec->sources[i]) + 1;
                EXT(EXT_SOURCES, l, {
                        *q++ = (uint8_t)rec->n_sources;
                        for (size_t i = 0; i < rec->n_sources; i++)
                                q = put_string(q, rec->sources[i]);
                });
        }
        if (rec->max_uses)
                EXT(EXT_MAX_USES, 16, {
                        q = put_u64(q, rec->max_uses);
                        q = put_u64(q, rec->uses);
                });
        if (rec->rate_limit_count)
                EXT(EXT_RATE_LIMIT, 12, {
                        uint32_t le = htole32(rec->rate_limit_count);
                        memcpy(q, &le, sizeof(le));
                        q = put_u64(q + sizeof(le), rec->rate_limit_window);
                });
        if (rec->replaces[0])
                EXT(EXT_REPLACES, TOKEN_ID_LEN, memcpy(q, rec->replaces, TOKEN_ID_LEN));
        if (rec->replaced_by[0])
                EXT(EXT_REPLACED_BY, TOKEN_ID_LEN, memcpy(q, rec->replaced_by, TOKEN_ID_LEN));
        if (rec->disabled_reason && rec->disabled_reason[0])
                EXT(EXT_DISABLED_REASON, 2 + strlen(rec->disabled_reason) + 1,
                    q = put_string(q, rec->disabled_reason));
#undef EXT
        return n;
}

int record_encode(const struct key_record *rec, void **ret_buf, size_t *ret_len)
{
        size_t ext_len;
        const char *strings[RECORD_N_STRINGS];
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len = RECORD_FIXED_SIZE;
        uint8_t *p;
        int r;

        if (!ret_buf || !ret_len)
                return -EINVAL;
        r = record_validate(rec);
        if (r < 0)
                return r;

        strings[0] = rec->name;
        strings[1] = rec->description;
        strings[2] = rec->owner;
        strings[3] = rec->created_by;
        strings[4] = rec->last_used_service;
        strings[5] = rec->last_used_from;

        /* Validation bounds every string far below UINT16_MAX, so the sum cannot overflow. */
        for (size_t i = 0; i < RECORD_N_STRINGS; i++)
                len += 2 + opt_len(strings[i]) + 1;
        for (size_t i = 0; i < rec->n_scope; i++)
                len += 2 + strlen(rec->scope[i]) + 1;
        /* The extensions, after their u16 length (a truncated record must
         * not read as one with fewer extensions). */
        ext_len = put_extensions(NULL, rec);
        if (ext_len > 0)
                ext_len += 2;
        len += ext_len;

        buf = malloc(len);
        if (!buf)
                return -ENOMEM;

        p = buf;
        *p++ = ext_len > 0 ? 3 : 2;
        *p++ = rec->status;
        *p++ = rec->role;
        *p++ = rec->permissions;
        memcpy(p, rec->id, TOKEN_ID_LEN);
        p += TOKEN_ID_LEN;
        memcpy(p, rec->hash, KEY_HASH_SIZE);
        p += KEY_HASH_SIZE;
        p = put_u64(p, rec->created_at);
        p = put_u64(p, rec->expires_at);
        p = put_u64(p, rec->last_used_at);
        *p++ = (uint8_t)rec->n_scope;
        *p++ = rec->flags;
        if (rec->parent[0])
                memcpy(p, rec->parent, TOKEN_ID_LEN);
        else
                memset(p, 0, TOKEN_ID_LEN);
        p += TOKEN_ID_LEN;
        for (size_t i = 0; i < RECORD_N_STRINGS; i++)
                p = put_string(p, strings[i]);
        for (size_t i = 0; i < rec->n_scope; i++)
                p = put_string(p, rec->scope[i]);
        if (ext_len > 0) {
                uint16_t le = htole16((uint16_t)(ext_len - 2));

                memcpy(p, &le, sizeof(le));
                p += sizeof(le);
                p += put_extensions(p, rec);
        }

        if ((size_t)(p - buf) != len)
                return -EINVAL; /* unreachable unless the length sum above is wrong */

        *ret_buf = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

static uint64_t get_u64(const uint8_t *p)
{
        uint64_t le;

        memcpy(&le, p, sizeof(le));
        return le64toh(le);
}

/*
 * Read one string at `*pos`; on success `*ret` points at its bytes in `buf`
 * (NULL when empty) and `*pos` is past its NUL.
 */
static int get_string(const uint8_t *buf, size_t len, size_t *pos, const char **ret)
{
        uint16_t le;
        size_t n;

        if (len - *pos < sizeof(le))
                return -EBADMSG;
        memcpy(&le, buf + *pos, sizeof(le));
        n = le16toh(le);
        *pos += sizeof(le);

        if (len - *pos < n + 1)
                return -EBADMSG;
        if (buf[*pos + n] != '\0' || memchr(buf + *pos, '\0', n))
                return -EBADMSG;

        *ret = n > 0 ? (const char *)buf + *pos : NULL;
        *pos += n + 1;
        return 0;
}

static int get_id(const uint8_t *b, size_t len, char ret[static TOKEN_ID_LEN + 1])
{
        if (len != TOKEN_ID_LEN || memchr(b, '\0', TOKEN_ID_LEN))
                return -EBADMSG;
        memcpy(ret, b, TOKEN_ID_LEN);
        ret[TOKEN_ID_LEN] = '\0';
        return 0;
}

/* The extensions from `pos` to the end of the buffer into `rec`. */
static int get_extensions(const uint8_t *b, size_t len, size_t pos, struct key_record *rec)
{
        unsigned last = 0;

        while (pos < len) {
                unsigned tag;
                uint16_t le;
                size_t n, end, q;
                int r;

                if (len - pos < 3)
                        return -EBADMSG;
                tag = b[pos];
                memcpy(&le, b + pos + 1, sizeof(le));
                n = le16toh(le);
                pos += 3;
                if (n == 0 || len - pos < n)
                        return -EBADMSG;
                if (tag >= _EXT_MAX)
                        return -EPROTONOSUPPORT; /* a newer daemon's field */
                if (tag <= last)
                        return -EBADMSG; /* out of order, or twice */
                last = tag;
                end = pos + n;

                switch (tag) {
                case EXT_NOT_BEFORE:
                        if (n != 8)
                                return -EBADMSG;
                        rec->not_before = get_u64(b + pos);
                        if (rec->not_before == 0)
                                return -EBADMSG;
                        break;
                case EXT_SOURCES:
                        rec->n_sources = b[pos];
                        if (rec->n_sources == 0 || rec->n_sources > KEY_SOURCES_MAX)
                                return -EBADMSG;
                        q = pos + 1;
                        for (size_t i = 0; i < rec->n_sources; i++) {
                                r = get_string(b, end, &q, &rec->sources[i]);
                                if (r < 0)
                                        return r;
                        }
                        if (q != end)
                                return -EBADMSG;
                        break;
                case EXT_MAX_USES:
                        if (n != 16)
                                return -EBADMSG;
                        rec->max_uses = get_u64(b + pos);
                        rec->uses = get_u64(b + pos + 8);
                        if (rec->max_uses == 0)
                                return -EBADMSG;
                        break;
                case EXT_RATE_LIMIT: {
                        uint32_t c;

                        if (n != 12)
                                return -EBADMSG;
                        memcpy(&c, b + pos, sizeof(c));
                        rec->rate_limit_count = le32toh(c);
                        rec->rate_limit_window = get_u64(b + pos + 4);
                        if (rec->rate_limit_count == 0)
                                return -EBADMSG;
                        break;
                }
                case EXT_REPLACES:
                        r = get_id(b + pos, n, rec->replaces);
                        if (r < 0)
                                return r;
                        break;
                case EXT_REPLACED_BY:
                        r = get_id(b + pos, n, rec->replaced_by);
                        if (r < 0)
                                return r;
                        break;
                case EXT_DISABLED_REASON:
                        q = pos;
                        r = get_string(b, end, &q, &rec->disabled_reason);
                        if (r < 0)
                                return r;
                        if (q != end || !rec->disabled_reason)
                                return -EBADMSG;
                        break;
                default:
                        return -EBADMSG; /* tag 0 */
                }
                pos = end;
        }
        return 0;
}

int record_decode(const void *buf, size_t len, struct key_record *ret)
{
        const uint8_t *b = buf;
        const char **strings[RECORD_N_STRINGS];
        /* Straight into `*ret` (which holds nothing to use on failure). */
        struct key_record tmp, *rec = ret ? ret : &tmp;
        size_t pos;
        int r;

        if (!b || len < 1)
                return -EBADMSG;
        /* Judge the version before the length: a newer format may be shorter. */
        if (b[0] > RECORD_VERSION)
                return -EPROTONOSUPPORT;
        if ((b[0] == 3 || b[0] == 2) && len >= RECORD_FIXED_SIZE)
                pos = RECORD_FIXED_SIZE;
        else if (b[0] == 1 && len >= RECORD_V1_FIXED_SIZE)
                pos = RECORD_V1_FIXED_SIZE;
        else
                return -EBADMSG;

        *rec = (struct key_record){0};
        rec->status = b[1];
        rec->role = b[2];
        rec->permissions = b[3];
        memcpy(rec->id, b + 4, TOKEN_ID_LEN);
        rec->id[TOKEN_ID_LEN] = '\0';
        memcpy(rec->hash, b + 16, KEY_HASH_SIZE);
        rec->created_at = get_u64(b + 48);
        rec->expires_at = get_u64(b + 56);
        rec->last_used_at = get_u64(b + 64);
        rec->n_scope = b[72];
        if (rec->n_scope > KEY_SCOPE_MAX)
                return -EBADMSG;
        if (pos == RECORD_FIXED_SIZE) {
                static const uint8_t none[TOKEN_ID_LEN];

                rec->flags = b[73];
                /* All zero is "no parent"; anything else must be an id
                 * (record_validate below checks its characters). */
                if (memcmp(b + 74, none, TOKEN_ID_LEN) != 0) {
                        memcpy(rec->parent, b + 74, TOKEN_ID_LEN);
                        rec->parent[TOKEN_ID_LEN] = '\0';
                        if (strlen(rec->parent) != TOKEN_ID_LEN)
                                return -EBADMSG;
                }
        }

        strings[0] = &rec->name;
        strings[1] = &rec->description;
        strings[2] = &rec->owner;
        strings[3] = &rec->created_by;
        strings[4] = &rec->last_used_service;
        strings[5] = &rec->last_used_from;

        for (size_t i = 0; i < RECORD_N_STRINGS; i++) {
                r = get_string(b, len, &pos, strings[i]);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < rec->n_scope; i++) {
                r = get_string(b, len, &pos, &rec->scope[i]);
                if (r < 0)
                        return r;
        }
        if (b[0] == 3) {
                /* Version 3 has at least one extension: without any it
                 * would have been written as version 2. */
                uint16_t le;

                if (len - pos < sizeof(le))
                        return -EBADMSG;
                memcpy(&le, b + pos, sizeof(le));
                pos += sizeof(le);
                if (le16toh(le) == 0 || len - pos != le16toh(le))
                        return -EBADMSG;
                r = get_extensions(b, len, pos, rec);
                if (r < 0)
                        return r;
        } else if (pos != len)
                return -EBADMSG;

        /* Field rules too: an id with a NUL, an empty name or a role that does
         * not match its permissions is as corrupt as a short buffer. */
        if (record_validate(rec) < 0)
                return -EBADMSG;
        return 0;
}

enum key_status record_effective_status(const struct key_record *rec, uint64_t now)
{
        if (rec->status == KEY_STATUS_REVOKED)
                return KEY_STATUS_REVOKED;
        if (rec->expires_at != 0 && now >= rec->expires_at)
                return KEY_STATUS_EXPIRED;
        if (rec->status == KEY_STATUS_DISABLED)
                return KEY_STATUS_DISABLED;
        return KEY_STATUS_ENABLED;
}

static const char *const status_names[] = {
    [KEY_STATUS_ENABLED] = "enabled",
    [KEY_STATUS_DISABLED] = "disabled",
    [KEY_STATUS_REVOKED] = "revoked",
    [KEY_STATUS_EXPIRED] = "expired",
};

static const char *const role_names[] = {
    [KEY_ROLE_ADMIN] = "admin",
    [KEY_ROLE_READONLY] = "readonly",
    [KEY_ROLE_CUSTOM] = "custom",
};

/* Indexed by bit number. */
static const char *const perm_names[] = {
    "create", "read", "write", "delete", "invite",
};

static int lookup(const char *const *table, size_t n, const char *s)
{
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (table[i] && STREQ(table[i], s))
                        return (int)i;
        return -EINVAL;
}

const char *key_status_to_string(enum key_status s)
{
        if ((size_t)s >= ELEMENTSOF(status_names))
                return NULL;
        return status_names[s];
}

int key_status_from_string(const char *s)
{
        return lookup(status_names, ELEMENTSOF(status_names), s);
}

const char *key_role_to_string(enum key_role r)
{
        if ((size_t)r >= ELEMENTSOF(role_names))
                return NULL;
        return role_names[r];
}

int key_role_from_string(const char *s)
{
        return lookup(role_names, ELEMENTSOF(role_names), s);
}

const char *key_perm_to_string(enum key_perm p)
{
        unsigned v = (unsigned)p;

        /* Exactly one known bit: a set has no single name. */
        if (v == 0 || (v & (v - 1)) != 0 || (v & ~(unsigned)KEY_PERM_ALL) != 0)
                return NULL;
        return perm_names[__builtin_ctz(v)];
}

int key_perm_from_string(const char *s)
{
        int r = lookup(perm_names, ELEMENTSOF(perm_names), s);

        return r < 0 ? r : 1 << r;
}

uint8_t key_role_permissions(enum key_role r)
{
        switch (r) {
        case KEY_ROLE_ADMIN:
                return KEY_PERM_ALL;
        case KEY_ROLE_READONLY:
                return KEY_PERM_READ;
        default:
                return 0;
        }
}
