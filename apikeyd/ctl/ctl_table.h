/* SPDX-License-Identifier: MIT */
/*
 * apikeyctl's text tables: columns sized to their widest cell, shrunk to
 * fit the terminal by cutting the cells of the columns marked flexible,
 * and by leaving out the columns that matter least when that is not enough.
 * Widths are counted in terminal cells (wcwidth), so names in any script
 * line up.  Used by apikeyctl only.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "macro.h"

struct table;

/* A table with `n` columns and these headers.  0 or -ENOMEM. */
int table_new(size_t n, const char *const *headers, struct table **ret) _warn_unused_;
void table_free(struct table *t);

static inline void table_freep(struct table **t)
{
        table_free(*t);
}
#define _cleanup_table_ _cleanup_(table_freep)

/* Let column `col` be cut (with an ellipsis) when the table is too wide. */
void table_set_flexible(struct table *t, size_t col, bool flexible);

/*
 * Let column `col` be left out when cutting the flexible columns is not
 * enough to fit the width: the column of the highest `rank` goes first.
 * 0, the default: always shown.
 */
void table_set_drop_rank(struct table *t, size_t col, unsigned rank);

/* Append a row of `n` cells (copied; NULL is an empty cell). */
int table_add_row(struct table *t, const char *const *cells) _warn_unused_;

size_t table_rows(const struct table *t);

/*
 * Print to `f`, at most `width` cells wide (0: no limit): the flexible
 * columns cut, then columns left out by their drop rank, and as a last
 * resort each line cut at the width, so that no line wraps.
 */
int table_print(const struct table *t, FILE *f, size_t width);

/*
 * The width to fit tables to, as systemd's tools take it: $COLUMNS when it
 * is a number, else the terminal's when standard output is one, else 0 (no
 * limit: a pipe or a file gets every cell whole).
 */
size_t terminal_columns(void);

/*
 * Replace control characters (C0, DEL, C1) in `s` with '?', in place: text
 * from the daemon (a key's description, say) must not move the cursor or
 * send escape sequences to the terminal of whoever lists it.
 */
void text_sanitize(char *s);

/* Terminal cells `s` takes; invalid bytes count one each. */
size_t text_width(const char *s);
