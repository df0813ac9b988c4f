/* SPDX-License-Identifier: MIT */
/*
 * Failure counting and lockout; see lockout.h.  A chained hash table over a
 * packed array of entries (removal moves the last entry into the hole),
 * with a doubly linked list in the order of each name's latest failure, so
 * the least recently failed is found at once when the table is full.
 */
#include <endian.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "lockout.h"

#define LOCKOUT_BLOB_VERSION 2
#define NIL                  UINT32_MAX
/* A full table drops the windows that have passed at most this often (µs);
 * in between it evicts the least recently failed. */
#define PURGE_EVERY 1000000ull

void lockout_init(struct lockout *l, unsigned threshold, uint64_t window)
{
        uint64_t seed = 0;

        if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed))
                seed = 0;
        *l = (struct lockout){.threshold = threshold,
                              .window = window,
                              .max = LOCKOUT_MAX,
                              .seed = seed,
                              .oldest = NIL,
                              .newest = NIL};
}

void lockout_done(struct lockout *l)
{
        free(l->entries);
        free(l->buckets);
        l->entries = NULL;
        l->buckets = NULL;
        l->n_used = l->n_alloc = l->n_buckets = 0;
        l->oldest = l->newest = NIL;
}

/*
 * The seeded hash of a name, eight bytes at a time (a multiply and a shift
 * per word, as in the finalisers of MurmurHash3 and wyhash): a name is
 * hashed once per call and kept with its entry.
 */
uint64_t lockout_hash(const struct lockout *l, const char *name, size_t n)
{
        static const uint64_t K = 0x9e3779b97f4a7c15ull;
        uint64_t h = l->seed ^ (n * K), w;

        for (; n >= 8; n -= 8, name += 8) {
                memcpy(&w, name, 8);
                h = (h ^ w) * K;
                h ^= h >> 32;
        }
        w = 0;
        memcpy(&w, name, n);
        h = (h ^ w) * K;
        h ^= h >> 29;
        h *= 0xbf58476d1ce4e5b9ull;
        return h ^ (h >> 32);
}

static size_t bucket_of(const struct lockout *l, uint64_t hash)
{
        return (size_t)(hash & (l->n_buckets - 1));
}

static uint32_t find(const struct lockout *l, const char *name, uint64_t hash)
{
        if (l->n_used == 0)
                return NIL;
        for (uint32_t i = l->buckets[bucket_of(l, hash)]; i != NIL; i = l->entries[i].next)
                if (l->entries[i].hash == hash && STREQ(l->entries[i].name, name))
                        return i;
        return NIL;
}

static bool live(const struct lockout *l, const struct lockout_entry *e, uint64_t now)
{
        return e->failures > 0 && now - e->since < l->window;
}

/* Take `i` out of the order of latest failures. */
static void unlink_order(struct lockout *l, uint32_t i)
{
        struct lockout_entry *e = &l->entries[i];

        if (e->older != NIL)
                l->entries[e->older].newer = e->newer;
        else
                l->oldest = e->newer;
        if (e->newer != NIL)
                l->entries[e->newer].older = e->older;
        else
                l->newest = e->older;
}

static void link_newest(struct lockout *l, uint32_t i)
{
        struct lockout_entry *e = &l->entries[i];

        e->older = l->newest;
        e->newer = NIL;
        if (l->newest != NIL)
                l->entries[l->newest].newer = i;
        else
                l->oldest = i;
        l->newest = i;
}

/* The link that points at `i` in its bucket's chain. */
static uint32_t *chain_link(struct lockout *l, uint32_t i)
{
        uint32_t *p = &l->buckets[bucket_of(l, l->entries[i].hash)];

        while (*p != i)
                p = &l->entries[*p].next;
        return p;
}

static void remove_entry(struct lockout *l, uint32_t i)
{
        uint32_t last = (uint32_t)l->n_used - 1;

        *chain_link(l, i) = l->entries[i].next;
        unlink_order(l, i);
        if (i != last) {
                /* The last entry moves into the hole: what pointed at it points here. */
                struct lockout_entry *m = &l->entries[last];
                *chain_link(l, last) = i;
                if (m->older != NIL)
                        l->entries[m->older].newer = i;
                else
                        l->oldest = i;
                if (m->newer != NIL)
                        l->entries[m->newer].older = i;
                else
                        l->newest = i;
                l->entries[i] = *m;
        }
        l->n_used--;
}

/* Room for one more name: windows that have passed go, then the least recently failed. */
static void make_room(struct lockout *l, uint64_t now)
{
        if (l->purged_at == 0 || now < l->purged_at || now - l->purged_at >= PURGE_EVERY) {
                l->purged_at = now;
                for (size_t i = l->n_used; i-- > 0;)
                        if (!live(l, &l->entries[i], now))
                                remove_entry(l, (uint32_t)i);
        }
        while (l->n_used >= l->max && l->oldest != NIL) {
                if (live(l, &l->entries[l->oldest], now))
                        l->evicted++;
                remove_entry(l, l->oldest);
        }
}

static uint32_t insert(struct lockout *l, const char *name, uint64_t hash, uint64_t now)
{
        struct lockout_entry *e;
        uint32_t i;
        size_t b;

        if (l->max == 0)
                return NIL;
        if (!l->buckets) {
                size_t n = 2;
                while (n < 2 * l->max)
                        n *= 2;
                l->buckets = malloc(n * sizeof(*l->buckets));
                if (!l->buckets)
                        return NIL;
                memset(l->buckets, 0xff, n * sizeof(*l->buckets)); /* NIL */
                l->n_buckets = n;
        }
        if (l->n_used >= l->max)
                make_room(l, now);
        if (l->n_used == l->n_alloc) {
                size_t n = l->n_alloc ? 2 * l->n_alloc : 64;
                if (n > l->max)
                        n = l->max;
                e = realloc(l->entries, n * sizeof(*e));
                if (!e)
                        return NIL;
                l->entries = e;
                l->n_alloc = n;
        }
        i = (uint32_t)l->n_used++;
        e = &l->entries[i];
        *e = (struct lockout_entry){.since = now, .last = now, .hash = hash};
        str_copy(e->name, sizeof(e->name), name);
        b = bucket_of(l, hash);
        e->next = l->buckets[b];
        l->buckets[b] = i;
        link_newest(l, i);
        return i;
}

bool lockout_locked_hashed(const struct lockout *l, const char *name, uint64_t hash, uint64_t now)
{
        uint32_t i = find(l, name, hash);

        return l->threshold && i != NIL && l->entries[i].failures >= l->threshold &&
               now - l->entries[i].since < l->window;
}

bool lockout_locked(const struct lockout *l, const char *name, uint64_t now)
{
        return lockout_locked_hashed(l, name, lockout_hash(l, name, strlen(name)), now);
}

bool lockout_fail_hashed(struct lockout *l, const char *name, uint64_t hash, uint64_t now)
{
        struct lockout_entry *e;
        uint32_t i;

        if (!l->threshold || !name[0] || strlen(name) > LOCKOUT_NAME_MAX)
                return false;
        i = find(l, name, hash);
        if (i == NIL)
                i = insert(l, name, hash, now);
        if (i == NIL)
                return false; /* out of memory */
        e = &l->entries[i];
        if (e->failures == 0 || now - e->since >= l->window) {
                e->failures = 0;
                e->since = now;
        }
        e->failures++;
        e->last = now;
        unlink_order(l, i);
        link_newest(l, i);
        l->dirty = true;
        return e->failures == l->threshold;
}

bool lockout_fail(struct lockout *l, const char *name, uint64_t now)
{
        return lockout_fail_hashed(l, name, lockout_hash(l, name, strlen(name)), now);
}

void lockout_touch_hashed(struct lockout *l, const char *name, uint64_t hash, uint64_t now)
{
        uint32_t i = find(l, name, hash);

        if (i == NIL)
                return;
        l->entries[i].last = now;
        unlink_order(l, i);
        link_newest(l, i);
}

void lockout_touch(struct lockout *l, const char *name, uint64_t now)
{
        lockout_touch_hashed(l, name, lockout_hash(l, name, strlen(name)), now);
}

bool lockout_reset_hashed(struct lockout *l, const char *name, uint64_t hash)
{
        uint32_t i = find(l, name, hash);
        bool had;

        if (i == NIL)
                return false;
        had = l->entries[i].failures > 0;
        remove_entry(l, i);
        l->dirty = true;
        return had;
}

bool lockout_reset(struct lockout *l, const char *name)
{
        return lockout_reset_hashed(l, name, lockout_hash(l, name, strlen(name)));
}

size_t lockout_reset_if(struct lockout *l, lockout_match_fn match, void *userdata)
{
        size_t had = 0;

        for (size_t i = l->n_used; i-- > 0;)
                if (match(l->entries[i].name, userdata)) {
                        had += l->entries[i].failures > 0;
                        remove_entry(l, (uint32_t)i);
                        l->dirty = true;
                }
        return had;
}

void lockout_reset_all(struct lockout *l)
{
        lockout_done(l);
        l->dirty = true;
}

bool lockout_eviction_news(struct lockout *l, uint64_t *ret_evicted)
{
        if (!l->evicted || l->evicted_told)
                return false;
        l->evicted_told = true;
        *ret_evicted = l->evicted;
        return true;
}

int lockout_foreach(const struct lockout *l, uint64_t now, lockout_fn fn, void *userdata)
{
        for (uint32_t i = l->newest; i != NIL; i = l->entries[i].older) {
                const struct lockout_entry *e = &l->entries[i];
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

        for (uint32_t i = l->oldest; i != NIL; i = l->entries[i].newer)
                if (live(l, &l->entries[i], now)) {
                        n++;
                        len += 2 + strlen(l->entries[i].name) + 4 + 8 + 8;
                }
        buf = p = malloc(len);
        if (!buf)
                return -ENOMEM;
        u32 = htole32(LOCKOUT_BLOB_VERSION);
        memcpy(p, &u32, 4);
        u32 = htole32((uint32_t)n);
        memcpy(p + 4, &u32, 4);
        p += 8;
        for (uint32_t i = l->oldest; i != NIL; i = l->entries[i].newer) {
                const struct lockout_entry *e = &l->entries[i];
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
                u64 = htole64(e->last);
                memcpy(p + 12, &u64, 8);
                p += 20;
        }
        l->dirty = false;
        *ret_buf = buf;
        *ret_len = len;
        return 0;
}

/* Add one loaded entry: the count as saved (up to the threshold), latest last. */
static void load_entry(struct lockout *l, const char *name, unsigned failures, uint64_t since,
                       uint64_t last, uint64_t now)
{
        struct lockout_entry *e;
        uint64_t hash;
        uint32_t i;

        if (!l->threshold || failures == 0 || now - since >= l->window)
                return;
        hash = lockout_hash(l, name, strlen(name));
        i = find(l, name, hash);
        if (i == NIL)
                i = insert(l, name, hash, now);
        if (i == NIL)
                return;
        e = &l->entries[i];
        e->failures = failures < l->threshold ? failures : l->threshold;
        e->since = since;
        e->last = last > since ? last : since;
        unlink_order(l, i);
        link_newest(l, i);
}

/* Walk a blob; with `l` NULL only check it. */
static int load_entries(struct lockout *l, const uint8_t *p, size_t len, uint64_t now,
                        lockout_match_fn keep, void *userdata)
{
        uint32_t version, count, failures;
        uint64_t since, last;
        uint16_t nl;
        size_t tail;
        char name[LOCKOUT_NAME_MAX + 1];

        if (len < 8)
                return -EBADMSG;
        memcpy(&version, p, 4);
        memcpy(&count, p + 4, 4);
        version = le32toh(version);
        if (version != 1 && version != LOCKOUT_BLOB_VERSION)
                return -EBADMSG;
        tail = version == 1 ? 12 : 20; /* failures, since (, last) */
        p += 8;
        len -= 8;
        for (uint32_t i = 0; i < le32toh(count); i++) {
                if (len < 2)
                        return -EBADMSG;
                memcpy(&nl, p, 2);
                nl = le16toh(nl);
                if (nl == 0 || nl > LOCKOUT_NAME_MAX || len < 2u + nl + tail ||
                    memchr(p + 2, '\0', nl))
                        return -EBADMSG;
                memcpy(name, p + 2, nl);
                name[nl] = '\0';
                memcpy(&failures, p + 2 + nl, 4);
                memcpy(&since, p + 2 + nl + 4, 8);
                last = since;
                if (version >= 2)
                        memcpy(&last, p + 2 + nl + 12, 8);
                p += 2u + nl + tail;
                len -= 2u + nl + tail;
                if (!l || (keep && !keep(name, userdata)))
                        continue;
                load_entry(l, name, le32toh(failures), le64toh(since), le64toh(last), now);
        }
        return len == 0 ? 0 : -EBADMSG;
}

int lockout_load(struct lockout *l, const void *buf, size_t len, uint64_t now,
                 lockout_match_fn keep, void *userdata)
{
        int r = load_entries(NULL, buf, len, now, NULL, NULL);

        if (r < 0)
                return r;
        r = load_entries(l, buf, len, now, keep, userdata);
        l->dirty = false;
        return r;
}
