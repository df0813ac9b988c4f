/* SPDX-License-Identifier: MIT */
/* apikeyctl's text tables; see ctl_table.h. */
#include <errno.h>
#include <langinfo.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <wchar.h>

#include "ctl_table.h"

/* Columns are never cut below this, so a cell keeps a recognisable start;
 * headers are cut too, as the rows matter more. */
#define MIN_FLEXIBLE_WIDTH 6
/* A column that is never left out is not cut below this while others can
 * be left out instead: a name cut to six cells helps nobody. */
#define MIN_KEPT_WIDTH 16
#define COLUMN_GAP     2

struct table {
        size_t n_columns;
        char **cells;  /* rows * n_columns, row 0 the headers */
        size_t n_rows; /* with the header row */
        size_t alloc_rows;
        bool *flexible;
        unsigned *drop_rank; /* 0: always shown; else the highest goes first */
};

/* Width of the next character at `s` (`*ret_len` bytes). */
static size_t char_width(const char *s, size_t avail, size_t *ret_len)
{
        mbstate_t st = {0};
        wchar_t wc;
        size_t n = mbrtowc(&wc, s, avail, &st);
        int w;

        if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
                *ret_len = 1;
                return 1;
        }
        *ret_len = n;
        w = wcwidth(wc);
        return w < 0 ? 1 : (size_t)w;
}

size_t text_width(const char *s)
{
        size_t width = 0, len = strlen(s);

        while (len > 0) {
                size_t n;
                width += char_width(s, len, &n);
                s += n;
                len -= n;
        }
        return width;
}

void text_sanitize(char *s)
{
        char *w = s;

        for (const char *r = s; *r; r++) {
                unsigned char ch = (unsigned char)*r;
                if (ch < 0x20 || ch == 0x7f)
                        *w++ = '?';
                else if (ch == 0xc2 && (unsigned char)r[1] >= 0x80 && (unsigned char)r[1] <= 0x9f) {
                        /* U+0080..U+009F: C1 controls, CSI among them. */
                        *w++ = '?';
                        r++;
                } else
                        *w++ = *r;
        }
        *w = '\0';
}

static const char *ellipsis(void)
{
        return STREQ(nl_langinfo(CODESET), "UTF-8") ? "\u2026" : "~";
}

int table_new(size_t n, const char *const *headers, struct table **ret)
{
        struct table *t;
        int r;

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->n_columns = n;
        t->flexible = calloc(n, sizeof(bool));
        t->drop_rank = calloc(n, sizeof(unsigned));
        if (!t->flexible || !t->drop_rank) {
                table_free(t);
                return -ENOMEM;
        }
        r = table_add_row(t, headers);
        if (r < 0) {
                table_free(t);
                return r;
        }
        *ret = t;
        return 0;
}

void table_free(struct table *t)
{
        if (!t)
                return;
        for (size_t i = 0; i < t->n_rows * t->n_columns; i++)
                free(t->cells[i]);
        free(t->cells);
        free(t->flexible);
        free(t->drop_rank);
        free(t);
}

void table_set_flexible(struct table *t, size_t col, bool flexible)
{
        if (col < t->n_columns)
                t->flexible[col] = flexible;
}

void table_set_drop_rank(struct table *t, size_t col, unsigned rank)
{
        if (col < t->n_columns)
                t->drop_rank[col] = rank;
}

int table_add_row(struct table *t, const char *const *cells)
{
        if (t->n_rows == t->alloc_rows) {
                size_t want = t->alloc_rows ? t->alloc_rows * 2 : 16;
                char **n = reallocarray(t->cells, want * t->n_columns, sizeof(char *));
                if (!n)
                        return -ENOMEM;
                t->cells = n;
                t->alloc_rows = want;
        }
        char **row = t->cells + t->n_rows * t->n_columns;
        for (size_t i = 0; i < t->n_columns; i++) {
                row[i] = strdup(cells[i] ? cells[i] : "");
                if (!row[i]) {
                        while (i > 0)
                                free(row[--i]);
                        return -ENOMEM;
                }
                text_sanitize(row[i]);
        }
        t->n_rows++;
        return 0;
}

size_t table_rows(const struct table *t)
{
        return t->n_rows - 1;
}

/* Print `s` in exactly `width` cells: cut with an ellipsis, or padded. */
static void print_cell(FILE *f, const char *s, size_t width, bool pad)
{
        size_t w = text_width(s);

        if (w > width) {
                const char *e = ellipsis();
                size_t room = width - text_width(e), used = 0, len = strlen(s);

                while (len > 0) {
                        size_t n, cw = char_width(s, len, &n);
                        if (used + cw > room)
                                break;
                        fwrite(s, 1, n, f);
                        used += cw;
                        s += n;
                        len -= n;
                }
                fputs(e, f);
                w = used + text_width(e);
        } else
                fputs(s, f);
        if (pad)
                for (; w < width; w++)
                        fputc(' ', f);
}

/*
 * Widths for the columns in `shown` within `width` (0: no limit): each as
 * wide as its widest cell, then a cell at a time taken from the widest
 * flexible column, so the columns that are cut end up about as wide as
 * each other; while `may_drop`, the columns never left out keep
 * MIN_KEPT_WIDTH.  Returns the table's width.
 */
static size_t fit_columns(const struct table *t, const size_t *natural, const bool *shown,
                          size_t width, bool may_drop, size_t *w)
{
        size_t total = 0, n_shown = 0;

        for (size_t c = 0; c < t->n_columns; c++) {
                w[c] = shown[c] ? natural[c] : 0;
                if (shown[c]) {
                        total += w[c] + (n_shown > 0 ? COLUMN_GAP : 0);
                        n_shown++;
                }
        }
        while (width > 0 && total > width) {
                size_t widest = t->n_columns;
                for (size_t c = 0; c < t->n_columns; c++) {
                        size_t min =
                            may_drop && t->drop_rank[c] == 0 ? MIN_KEPT_WIDTH : MIN_FLEXIBLE_WIDTH;
                        if (shown[c] && t->flexible[c] && w[c] > min &&
                            (widest == t->n_columns || w[c] > w[widest]))
                                widest = c;
                }
                if (widest == t->n_columns)
                        break; /* as narrow as it goes */
                w[widest]--;
                total--;
        }
        return total;
}

int table_print(const struct table *t, FILE *f, size_t width)
{
        _cleanup_free_ size_t *natural = calloc(t->n_columns, sizeof(size_t));
        _cleanup_free_ size_t *w = calloc(t->n_columns, sizeof(size_t));
        _cleanup_free_ bool *shown = calloc(t->n_columns, sizeof(bool));

        if (!natural || !w || !shown)
                return -ENOMEM;
        for (size_t c = 0; c < t->n_columns; c++)
                shown[c] = true;
        for (size_t r = 0; r < t->n_rows; r++)
                for (size_t c = 0; c < t->n_columns; c++) {
                        size_t cw = text_width(t->cells[r * t->n_columns + c]);
                        if (cw > natural[c])
                                natural[c] = cw;
                }

        /* Cut first; when cutting is not enough, leave out the column that
         * matters least and try again with the others at their full width.
         * Still too wide with none left to leave out: the lines are cut. */
        for (;;) {
                size_t drop = t->n_columns;
                for (size_t c = 0; c < t->n_columns; c++)
                        if (shown[c] && t->drop_rank[c] > 0 &&
                            (drop == t->n_columns || t->drop_rank[c] > t->drop_rank[drop]))
                                drop = c;
                if (fit_columns(t, natural, shown, width, drop < t->n_columns, w) <= width ||
                    width == 0 || drop == t->n_columns)
                        break;
                shown[drop] = false;
        }

        for (size_t r = 0; r < t->n_rows; r++) {
                char **row = t->cells + r * t->n_columns;
                size_t last = 0, used = 0; /* no padding after it: no trailing blanks */
                bool first = true;

                for (size_t c = 0; c < t->n_columns; c++)
                        if (shown[c] && row[c][0])
                                last = c;
                for (size_t c = 0; c <= last; c++) {
                        size_t gap = first ? 0 : COLUMN_GAP, cw = w[c];
                        if (!shown[c])
                                continue;
                        /* Never wider than the terminal: a wrapped line
                         * would break the columns of every line after it. */
                        if (width > 0 && used + gap + cw > width) {
                                if (used + gap + text_width(ellipsis()) > width)
                                        break;
                                cw = width - used - gap;
                        }
                        fprintf(f, "%*s", (int)gap, "");
                        print_cell(f, row[c], cw, c < last && cw == w[c]);
                        used += gap + cw;
                        first = false;
                        if (cw < w[c])
                                break;
                }
                fputc('\n', f);
        }
        return 0;
}

size_t terminal_columns(void)
{
        const char *env = getenv("COLUMNS");
        struct winsize ws;

        if (env && *env) {
                char *end;
                unsigned long v = strtoul(env, &end, 10);
                if (*end == '\0' && v > 0 && v < 100000)
                        return v;
        }
        if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
                return ws.ws_col;
        return 0;
}
