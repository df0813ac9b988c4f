/* SPDX-License-Identifier: MIT */
/* Failure counting and lockout; see lockout.h. */
#include <endian.h>
#include <stdio.h>

#include "lockout.h"

#define LOCKOUT_BLOB_VERSION 1

void lockout_init(struct lockout *l, unsigned threshold, uint64_t window)
{
        *l = (struct lockout){.threshold = threshold, .window = window};
}

void lockout_done(struct lockout *l)
{
        free(l->slots);
        l->slots = NULL;
        l->n_slots = l->n_used = 0;
}

static size_t hash(const char *s, size_t n_slots)
{
        uint64_t h = 1469598103934665603ull;

        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ull;
        return (size_t)(h & (n_slots - 1));
}

static struct lockout_entry *probe(struct lockout_entry *slots, size_t n_slots, const char *name)
{
        size_t i = hash(name, n_slots);

        while (slots[i].name[0] && strcmp(slots[i].name, name) != 0)
                i = (i + 1) & (n_slots - 1);
        return &slots[i];
}

static const struct lockout_entry *find(const struct lockout *l, const char *name)
{
        const struct lockout_entry *e;

        if (l->n_used == 0)
                return NULL;
        e = probe(l->slots, l->n_slots, name);
        return e->name[0] ? e : NULL;
}

/* Rebuild the table with room to grow, dropping windows that have passed. */
static int rehash(struct lockout *l, uint64_t now)
{
        size_t n = l->n_slots ? l->n_slots : 64;
        size_t live = 0;
        struct lockout_entry *slots;

        for (size_t i = 0; i < l->n_slots; i++)
                live += l->slots[i].name[0] && now - l->slots[i].since < l->window;
        while ((live + 1) * 2 > n)
                n *= 2;
        if (n > 2 * LOCKOUT_MAX)
                return -ENOSPC;
        slots = calloc(n, sizeof(*slots));
        if (!slots)
                return -ENOMEM;
        for (size_t i = 0; i < l->n_slots; i++) {
                const struct lockout_entry *e = &l->slots[i];
                if (e->name[0] && now - e->since < l->window)
                        *probe(slots, n, e->name) = *e;
        }
        free(l->slots);
        l->slots = slots;
        l->n_slots = n;
        l->n_used = live;
        return 0;
}

bool lockout_locked(const struct lockout *l, const char *name, uint64_t now)
{
        const struct lockout_entry *e = find(l, name);

        return l->threshold && e && e->failures >= l->threshold && now - e->since < l->window;
}

bool lockout_fail(struct lockout *l, const char *name, uint64_t now)
{
        struct lockout_entry *e;

        if (!l->threshold || strlen(name) > LOCKOUT_NAME_MAX)
                return false;
        if ((l->n_used + 1) * 2 > l->n_slots && rehash(l, now) < 0)
                return false; /* full of live windows: count nothing new */
        e = probe(l->slots, l->n_slots, name);
        if (!e->name[0]) {
                str_copy(e->name, sizeof(e->name), name);
                l->n_used++;
        }
        if (e->failures == 0 || now - e->since >= l->window) {
                e->failures = 0;
                e->since = now;
        }
        e->failures++;
        l->dirty = true;
        return e->failures == l->threshold;
}

bool lockout_reset(struct lockout *l, const char *name)
{
        struct lockout_entry *e;

        if (l->n_used == 0 || strlen(name) > LOCKOUT_NAME_MAX)
                return false;
        e = probe(l->slots, l->n_slots, name);
        /* Keep the slot (open addressing needs it) but clear the count. */
        if (!e->name[0] || e->failures == 0)
                return false;
        e->failures = 0;
        l->dirty = true;
        return true;
}

void lockout_reset_all(struct lockout *l)
{
        lockout_done(l);
        l->dirty = true;
}

static bool live(const struct lockout *l, const struct lockout_entry *e, uint64_t now)
{
        return e->name[0] && e->failures > 0 && now - e->since < l->window;
}

int lockout_foreach(const struct lockout *l, uint64_t now, lockout_fn fn, void *userdata)
{
        for (size_t i = 0; i < l->n_slots; i++) {
                const struct lockout_entry *e = &l->slots[i];
                int r;

                if (!live(l, e, now))
                        continue;
                r = fn(e, l->threshold && e->failures >= l->threshold, userdata);
                if (r != 0)
                        return r;
        }
        return 0;
}

int lockout_save(struct lockout *l, uint64_t now, void **ret_buf, size_t *ret_len)
{
        size_t n = 0, len = 8;
        uint8_t *buf, *p;
        uint32_t u32;
        uint64_t u64;
        uint16_t u16;

        for (size_t i = 0; i < l->n_slots; i++)
                if (live(l, &l->slots[i], now)) {
                        n++;
                        len += 2 + strlen(l->slots[i].name) + 4 + 8;
                }
        buf = p = malloc(len);
        if (!buf)
                return -ENOMEM;
        u32 = htole32(LOCKOUT_BLOB_VERSION);
        memcpy(p, &u32, 4);
        u32 = htole32((uint32_t)n);
        memcpy(p + 4, &u32, 4);
        p += 8;
        for (size_t i = 0; i < l->n_slots; i++) {
                const struct lockout_entry *e = &l->slots[i];
                size_t nl;

                if (!live(l, e, now))
                        continue;
                nl = strlen(e->name);
                u16 = htole16((uint16_t)nl);
                memcpy(p, &u16, 2);
                memcpy(p + 2, e->name, nl);
                p += 2 + nl;
                u32 = htole32(e->failures);
                memcpy(p, &u32, 4);
                u64 = htole64(e->since);
                memcpy(p + 4, &u64, 8);
                p += 12;
        }
        l->dirty = false;
        *ret_buf = buf;
        *ret_len = len;
        return 0;
}

/* Walk a blob; with `l` NULL only check it. */
static int load_entries(struct lockout *l, const uint8_t *p, size_t len, uint64_t now)
{
        uint32_t version, count, failures;
        uint64_t since;
        uint16_t nl;
        char name[LOCKOUT_NAME_MAX + 1];

        if (len < 8)
                return -EBADMSG;
        memcpy(&version, p, 4);
        memcpy(&count, p + 4, 4);
        if (le32toh(version) != LOCKOUT_BLOB_VERSION)
                return -EBADMSG;
        p += 8;
        len -= 8;
        for (uint32_t i = 0; i < le32toh(count); i++) {
                if (len < 2)
                        return -EBADMSG;
                memcpy(&nl, p, 2);
                nl = le16toh(nl);
                if (nl == 0 || nl > LOCKOUT_NAME_MAX || len < 2u + nl + 12u ||
                    memchr(p + 2, '\0', nl))
                        return -EBADMSG;
                memcpy(name, p + 2, nl);
                name[nl] = '\0';
                memcpy(&failures, p + 2 + nl, 4);
                memcpy(&since, p + 2 + nl + 4, 8);
                p += 2u + nl + 12u;
                len -= 2u + nl + 12u;
                if (!l)
                        continue;
                for (uint32_t k = 0; k < le32toh(failures) && k < l->threshold; k++)
                        (void)lockout_fail(l, name, le64toh(since));
                (void)now;
        }
        return len == 0 ? 0 : -EBADMSG;
}

int lockout_load(struct lockout *l, const void *buf, size_t len, uint64_t now)
{
        int r = load_entries(NULL, buf, len, now);

        if (r < 0)
                return r;
        r = load_entries(l, buf, len, now);
        l->dirty = false;
        return r;
}
