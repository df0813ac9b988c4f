/* SPDX-License-Identifier: MIT */
/*
 * JSON lines (ctl_jsonl.c), as `apikeyctl create --from FILE` reads them:
 * one JSON object per line, each remembered with its line number so that
 * a refusal can name it.  Standalone (jansson only), for its fuzz target.
 */
#pragma once

#include <stddef.h>

#include <jansson.h>

struct jsonl {
        json_t *objects; /* an array, in the order of the lines */
        size_t *lines;   /* the line number (from 1) of each object */
        size_t n;
};

/* Why a line was refused: "not JSON: ..." or "not a JSON object". */
#define JSONL_ERROR_MAX 256

/*
 * Read the `len` bytes at `buf` as lines ending in "\n" (the last may
 * lack it; a "\r" before it is dropped).  Lines holding only spaces and
 * tabs are skipped; every other line must be one JSON object.  0 and the
 * objects in `*ret`; -EBADMSG with the first bad line's number in
 * `*ret_line` and why in `ret_error` (nothing in `*ret`); -ENOMEM.
 */
int jsonl_parse(const char *buf, size_t len, struct jsonl *ret, size_t *ret_line,
                char ret_error[static JSONL_ERROR_MAX]);
void jsonl_done(struct jsonl *j);
