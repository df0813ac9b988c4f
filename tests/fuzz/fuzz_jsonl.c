/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes jsonl_parse() (apikeyd/ctl/ctl_jsonl.c), which reads the file of
 * `apikeyctl create --from`: JSON lines, one object per key, each kept
 * with its line number.  Checks that an answer is either the objects with
 * line numbers that rise and lie within the input, or the number of a line
 * that is in the input with a reason, never both; and that reading the
 * input again gives the same answer.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "ctl_jsonl.h"
#include "fuzz.h"

static size_t count_lines(const uint8_t *data, size_t size)
{
        size_t n = size > 0 && data[size - 1] != '\n';

        for (size_t i = 0; i < size; i++)
                n += data[i] == '\n';
        return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct jsonl j, again;
        char why[JSONL_ERROR_MAX], why_again[JSONL_ERROR_MAX];
        size_t line, line_again, lines = count_lines(data, size);
        int r, r_again;

        r = jsonl_parse((const char *)data, size, &j, &line, why);
        CHECK(r == 0 || r == -EBADMSG || r == -ENOMEM);
        if (r == 0) {
                CHECK(line == 0 && why[0] == '\0');
                CHECK(j.objects && json_array_size(j.objects) == j.n);
                for (size_t i = 0; i < j.n; i++) {
                        CHECK(json_is_object(json_array_get(j.objects, i)));
                        CHECK(j.lines[i] >= 1 && j.lines[i] <= lines);
                        CHECK(i == 0 || j.lines[i] > j.lines[i - 1]);
                }
        } else {
                CHECK(!j.objects && !j.lines && j.n == 0);
                if (r == -EBADMSG)
                        CHECK(line >= 1 && line <= lines && why[0] != '\0' &&
                              strnlen(why, JSONL_ERROR_MAX) < JSONL_ERROR_MAX);
        }

        r_again = jsonl_parse((const char *)data, size, &again, &line_again, why_again);
        if (r != -ENOMEM && r_again != -ENOMEM) {
                CHECK(r == r_again && line == line_again && strcmp(why, why_again) == 0);
                CHECK(j.n == again.n);
                for (size_t i = 0; i < j.n; i++)
                        CHECK(j.lines[i] == again.lines[i] &&
                              json_equal(json_array_get(j.objects, i),
                                         json_array_get(again.objects, i)));
        }
        jsonl_done(&j);
        jsonl_done(&again);
        return 0;
}
