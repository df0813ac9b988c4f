/* SPDX-License-Identifier: MIT */
/* The in-memory batch of last-used times; see lastused.h. */
#include <errno.h>
#include <stdio.h>

#include "lastused.h"

void lastused_init(struct lastused *l)
{
        *l = (struct lastused){0};
}

void lastused_done(struct lastused *l)
{
        free(l->slots);
        *l = (struct lastused){0};
}

static size_t slot_of(const char *id, size_t n_slots)
{
        /* Ids are random, so a few of their characters hash well enough. */
        uint64_t h = 1469598103934665603ull;

        for (size_t i = 0; i < TOKEN_ID_LEN; i++)
                h = (h ^ (unsigned char)id[i]) * 1099511628211ull;
        return (size_t)(h & (n_slots - 1));
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
        snprintf(e->service, sizeof(e->service), "%s", service ? service : "");
        snprintf(e->from, sizeof(e->from), "%s", from ? from : "");
        return 0;
}

const struct lastused_entry *lastused_find(const struct lastused *l, const char *id)
{
        const struct lastused_entry *e;

        if (l->n_used == 0)
                return NULL;
        e = probe(l->slots, l->n_slots, id);
        return e->id[0] ? e : NULL;
}

int lastused_flush(struct lastused *l, struct keystore *ks)
{
        _cleanup_free_ struct last_used *batch = NULL;
        size_t n = 0;
        int r;

        if (l->n_used == 0)
                return 0;
        batch = calloc(l->n_used, sizeof(*batch));
        if (!batch)
                return -ENOMEM;
        for (size_t i = 0; i < l->n_slots; i++) {
                const struct lastused_entry *e = &l->slots[i];
                if (!e->id[0])
                        continue;
                memcpy(batch[n].id, e->id, sizeof(batch[n].id));
                batch[n].at = e->at;
                batch[n].service = e->service[0] ? e->service : NULL;
                batch[n].from = e->from[0] ? e->from : NULL;
                n++;
        }
        r = keystore_record_last_used(ks, batch, n);
        if (r < 0)
                return r; /* keep the batch: the next flush tries again */
        memset(l->slots, 0, l->n_slots * sizeof(*l->slots));
        l->n_used = 0;
        return 0;
}
