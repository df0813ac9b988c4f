/* SPDX-License-Identifier: MIT */
/* Failure counting and lockout; see lockout.h. */
#include <stdio.h>

#include "lockout.h"

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
                snprintf(e->name, sizeof(e->name), "%s", name);
                l->n_used++;
        }
        if (e->failures == 0 || now - e->since >= l->window) {
                e->failures = 0;
                e->since = now;
        }
        e->failures++;
        return e->failures == l->threshold;
}

void lockout_reset(struct lockout *l, const char *name)
{
        struct lockout_entry *e;

        if (l->n_used == 0)
                return;
        e = probe(l->slots, l->n_slots, name);
        /* Keep the slot (open addressing needs it) but clear the count. */
        if (e->name[0])
                e->failures = 0;
}
