/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes common/json_scan.c against jansson, both ways:
 *
 *   - what the reader accepts, jansson accepts too, with the same values
 *     (the reader's walk is rebuilt as a jansson tree and compared), unless
 *     the text repeats a member name or holds a number jansson refuses
 *     (the reader only steps over numbers);
 *   - what jansson accepts (nested at most JSON_SCAN_MAX_DEPTH deep), the
 *     reader accepts too;
 *   - every string the reader reads, written back by json_out_string(), is
 *     JSON that jansson reads as the same bytes.
 *
 * The Verify fast path in the daemon and the PAM module rely on the first
 * two: a message takes the fast path only when the reader accepts it, and
 * must then mean what it means to jansson.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "json_scan.h"
#include "fuzz.h"

#define INPUT_MAX (16 * 1024)

struct walk {
        bool duplicate;  /* a member name repeated in one object */
        bool odd_number; /* a number jansson would not take */
        char *strbuf;    /* room for the longest string */
        size_t strbuf_size;
};

static void check_written_back(const char *s, size_t len)
{
        char out[6 * INPUT_MAX + 3];
        struct json_out o;
        json_t *j;
        int n;

        json_out_init(&o, out, sizeof(out));
        json_out_string(&o, s);
        n = json_out_done(&o);
        CHECK(n >= 2);
        j = json_loadb(out, (size_t)n, JSON_DECODE_ANY, NULL);
        CHECK(json_is_string(j));
        CHECK(json_string_length(j) == len && memcmp(json_string_value(j), s, len) == 0);
        json_decref(j);
}

/* Read one value with the reader and build it as jansson would; NULL when it refuses. */
static json_t *walk_value(struct json_scan *s, struct walk *w)
{
        const char *start;
        json_t *v = NULL;
        size_t len;
        bool b;
        int r;

        switch (json_scan_peek(s)) {
        case JSON_SCAN_OBJECT:
                if (json_scan_object_begin(s) < 0)
                        return NULL;
                v = json_object();
                while ((r = json_scan_object_next(s, w->strbuf, w->strbuf_size)) > 0) {
                        char *name = strdup(w->strbuf);
                        json_t *m;

                        CHECK(name);
                        m = walk_value(s, w);
                        if (!m) {
                                free(name);
                                json_decref(v);
                                return NULL;
                        }
                        if (json_object_get(v, name))
                                w->duplicate = true;
                        json_object_set_new(v, name, m);
                        free(name);
                }
                CHECK(r != -ENOBUFS);
                if (r < 0) {
                        json_decref(v);
                        return NULL;
                }
                return v;
        case JSON_SCAN_ARRAY:
                if (json_scan_array_begin(s) < 0)
                        return NULL;
                v = json_array();
                while ((r = json_scan_array_next(s)) > 0) {
                        json_t *e = walk_value(s, w);
                        if (!e) {
                                json_decref(v);
                                return NULL;
                        }
                        json_array_append_new(v, e);
                }
                if (r < 0) {
                        json_decref(v);
                        return NULL;
                }
                return v;
        case JSON_SCAN_STRING:
                r = json_scan_string(s, w->strbuf, w->strbuf_size, &len);
                CHECK(r != -ENOBUFS);
                if (r < 0)
                        return NULL;
                CHECK(strlen(w->strbuf) == len); /* no NUL ever comes out */
                check_written_back(w->strbuf, len);
                return json_stringn(w->strbuf, len);
        case JSON_SCAN_NUMBER:
                start = s->p;
                if (json_scan_skip(s) < 0)
                        return NULL;
                v = json_loadb(start, (size_t)(s->p - start), JSON_DECODE_ANY, NULL);
                if (!v) {
                        w->odd_number = true;
                        v = json_null();
                }
                return v;
        case JSON_SCAN_TRUE:
        case JSON_SCAN_FALSE:
                return json_scan_bool(s, &b) < 0 ? NULL : json_boolean(b);
        case JSON_SCAN_NULL:
                return json_scan_null(s) < 0 ? NULL : json_null();
        default:
                return NULL;
        }
}

static size_t depth_of(json_t *j)
{
        size_t d = 0, i;
        const char *k;
        json_t *v;

        if (json_is_object(j)) {
                json_object_foreach(j, k, v)
                {
                        size_t e = depth_of(v);
                        d = e > d ? e : d;
                }
                return d + 1;
        }
        if (json_is_array(j)) {
                json_array_foreach(j, i, v)
                {
                        size_t e = depth_of(v);
                        d = e > d ? e : d;
                }
                return d + 1;
        }
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct walk w = {0};
        struct json_scan s;
        json_t *mine, *theirs;

        if (size > INPUT_MAX)
                size = INPUT_MAX;
        /* Messages never hold a NUL: the framing ends them there. */
        const uint8_t *nul = memchr(data, '\0', size);
        if (nul)
                size = (size_t)(nul - data);
        w.strbuf_size = size + 1;
        w.strbuf = malloc(w.strbuf_size);
        CHECK(w.strbuf);

        json_scan_init(&s, (const char *)data, size);
        mine = walk_value(&s, &w);
        if (mine && json_scan_finish(&s) < 0) {
                json_decref(mine);
                mine = NULL;
        }
        /* jansson takes a top-level value of any type here, as the reader does. */
        theirs =
            json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
        if (mine && !w.duplicate && !w.odd_number) {
                CHECK(theirs != NULL);
                CHECK(json_equal(mine, theirs));
        }
        if (theirs && depth_of(theirs) <= JSON_SCAN_MAX_DEPTH)
                CHECK(mine != NULL);
        json_decref(mine);
        json_decref(theirs);
        free(w.strbuf);
        return 0;
}
