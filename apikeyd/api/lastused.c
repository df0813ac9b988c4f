/* SPDX-License-Identifier: MIT */
/* The in-memory batch of last-used times; see lastused.h. */
#include <errno.h>
#include <stdio.h>

#include "lastused.h"
#include "log.h"
#include "text_check.h"

void lastused_init(struct lastused *l)
{
        *l = (struct lastused){0};
}

void lastused_done(struct lastused *l)
{
        free(l->slots);
        free(l->taken);
        *l = (struct lastused){0};
}

static size_t slot_of(const char *id, size_t n_slots)
{
        /* Ids are random, so their first eight characters, mixed by one
         * multiplication (its high bits), hash well enough. */
        uint64_t w;

        _Static_assert(TOKEN_ID_LEN >= sizeof(w), "an id fills a word");
        memcpy(&w, id, sizeof(w));
        w *= 0x9e3779b97f4a7c15ull;
        return (size_t)((w ^ (w >> 32)) & (n_slots - 1));
}

static struct lastused_entry *probe(struct lastused_entry *slots, size_t n_slots, const char *id)
{
        size_t i = slot_of(id, n_slots);

        while (slots[i].id[0] && memcmp(slots[i].id, id, TOKEN_ID_LEN) != 0)
                i = (i + 1) & (n_slots - 1);
        return &slots[i];
}

static int grow(struct lastused *l)
{
        size_t n = l->n_slots ? l->n_slots * 2 : 64;
        struct lastused_entry *slots = calloc(n, sizeof(*slots));

        if (!slots)
                return -ENOMEM;
        for (size_t i = 0; i < l->n_slots; i++)
                if (l->slots[i].id[0])
                        *probe(slots, n, l->slots[i].id) = l->slots[i];
        free(l->slots);
        l->slots = slots;
        l->n_slots = n;
        return 0;
}

int lastused_note(struct lastused *l, const char *id, uint64_t at, const char *service,
                  const char *from)
{
        struct lastused_entry *e;

        if ((l->n_used + 1) * 2 > l->n_slots) {
                int r = grow(l);
                if (r < 0)
                        return r;
        }
        e = probe(l->slots, l->n_slots, id);
        if (!e->id[0]) {
                memcpy(e->id, id, TOKEN_ID_LEN);
                e->id[TOKEN_ID_LEN] = '\0';
                l->n_used++;
        }
        e->at = at;
        e->dropped = false;
        str_copy(e->service, sizeof(e->service), service);
        str_copy(e->from, sizeof(e->from), from);
        return 0;
}

static const struct lastused_entry *find_in(const struct lastused_entry *slots, size_t n_slots,
                                            const char *id)
{
        const struct lastused_entry *e;

        if (n_slots == 0)
                return NULL;
        e = probe((struct lastused_entry *)slots, n_slots, id);
        return e->id[0] && !e->dropped ? e : NULL;
}

const struct lastused_entry *lastused_find(const struct lastused *l, const char *id)
{
        const struct lastused_entry *e = l->n_used ? find_in(l->slots, l->n_slots, id) : NULL;

        if (!e && l->has_taken)
                e = find_in(l->taken, l->n_taken_slots, id);
        return e;
}

int lastused_take(struct lastused *l, struct last_used **ret, size_t *ret_n)
{
        struct last_used *batch;
        size_t n = 0;

        if (l->has_taken)
                return -EBUSY;
        *ret = NULL;
        *ret_n = 0;
        if (l->n_used == 0)
                return 0;
        batch = calloc(l->n_used, sizeof(*batch));
        if (!batch)
                return -ENOMEM;
        for (size_t i = 0; i < l->n_slots; i++) {
                struct lastused_entry *e = &l->slots[i];
                if (!e->id[0])
                        continue;
                /* A record cannot store it, and one such entry would fail the
                 * whole batch's transaction, every flush again. */
                if (!text_valid(e->service, KEY_FIELD_MAX) || !text_valid(e->from, KEY_FIELD_MAX)) {
                        log_warning("last use of key %s dropped: its %s is not plain text", e->id,
                                    text_valid(e->service, KEY_FIELD_MAX) ? "source" : "service");
                        e->dropped = true;
                        continue;
                }
                memcpy(batch[n].id, e->id, sizeof(batch[n].id));
                batch[n].at = e->at;
                batch[n].service = e->service[0] ? e->service : NULL;
                batch[n].from = e->from[0] ? e->from : NULL;
                n++;
        }
        l->taken = l->slots;
        l->n_taken_slots = l->n_slots;
        l->has_taken = true;
        l->slots = NULL;
        l->n_slots = l->n_used = 0;
        if (n == 0) {
                /* Every entry dropped: nothing is being written. */
                lastused_taken_done(l, true);
                free(batch);
                return 0;
        }
        *ret = batch;
        *ret_n = n;
        return 0;
}

void lastused_taken_done(struct lastused *l, bool written)
{
        if (!l->has_taken)
                return;
        /* Not written: noted again, unless a later use of the key came since. */
        for (size_t i = 0; !written && i < l->n_taken_slots; i++) {
                const struct lastused_entry *e = &l->taken[i], *now;

                if (!e->id[0] || e->dropped)
                        continue;
                now = l->n_used ? find_in(l->slots, l->n_slots, e->id) : NULL;
                /* Out of memory: this last use is lost, as a crash would lose it. */
                if ((!now || now->at < e->at) &&
                    lastused_note(l, e->id, e->at, e->service, e->from) < 0)
                        break;
        }
        free(l->taken);
        l->taken = NULL;
        l->n_taken_slots = 0;
        l->has_taken = false;
}
