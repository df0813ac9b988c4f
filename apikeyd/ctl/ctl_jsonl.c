/* SPDX-License-Identifier: MIT */
/* JSON lines, one object each, with their line numbers; see ctl_jsonl.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_jsonl.h"

void jsonl_done(struct jsonl *j)
{
        json_decref(j->objects);
        free(j->lines);
        *j = (struct jsonl){.objects = NULL};
}

static bool blank(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (s[i] != ' ' && s[i] != '\t')
                        return false;
        return true;
}

int jsonl_parse(const char *buf, size_t len, struct jsonl *ret, size_t *ret_line,
                char ret_error[static JSONL_ERROR_MAX])
{
        struct jsonl j = {.objects = json_array()};
        size_t alloc = 0, line = 0;
        int r = 0;

        *ret = (struct jsonl){.objects = NULL};
        *ret_line = 0;
        ret_error[0] = '\0';
        if (!j.objects)
                return -ENOMEM;
        for (size_t start = 0; start < len;) {
                const char *nl = memchr(buf + start, '\n', len - start);
                size_t end = nl ? (size_t)(nl - buf) : len, n = end - start;
                json_error_t e;
                json_t *o;

                line++;
                if (n > 0 && buf[start + n - 1] == '\r')
                        n--;
                if (blank(buf + start, n)) {
                        start = end + 1;
                        continue;
                }
                o = json_loadb(buf + start, n, JSON_REJECT_DUPLICATES, &e);
                if (!o || !json_is_object(o)) {
                        if (o)
                                snprintf(ret_error, JSONL_ERROR_MAX, "not a JSON object");
                        else
                                snprintf(ret_error, JSONL_ERROR_MAX, "not JSON: %s", e.text);
                        json_decref(o);
                        *ret_line = line;
                        r = -EBADMSG;
                        break;
                }
                if (j.n == alloc) {
                        size_t *lines;
                        alloc = alloc ? alloc * 2 : 64;
                        lines = reallocarray(j.lines, alloc, sizeof(*lines));
                        if (!lines) {
                                json_decref(o);
                                r = -ENOMEM;
                                break;
                        }
                        j.lines = lines;
                }
                if (json_array_append_new(j.objects, o) < 0) {
                        r = -ENOMEM;
                        break;
                }
                j.lines[j.n++] = line;
                start = end + 1;
        }
        if (r < 0) {
                jsonl_done(&j);
                return r;
        }
        *ret = j;
        return 0;
}
