/* SPDX-License-Identifier: MIT */
/*
 * Small helpers every part of the tree shares: scope-bound cleanup
 * (`_cleanup_free_`, `_cleanup_close_`), array sizes, and the attributes we
 * put on functions whose result decides a security question.
 *
 * Cleanup style for the whole project: variables owning a resource carry a
 * `_cleanup_*_` attribute, so every return path releases them; functions
 * return 0 or a negative errno.
 */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f)   __attribute__((cleanup(f)))
#define _unused_       __attribute__((unused))
#define _warn_unused_  __attribute__((warn_unused_result))
#define _public_       __attribute__((visibility("default")))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define ELEMENTSOF(x)  (sizeof(x) / sizeof((x)[0]))
#define STRLEN(s)      (sizeof(s) - 1)
#define STREQ(a, b)    (strcmp((a), (b)) == 0)

static inline void freep(void *p)
{
        free(*(void **)p);
}

static inline void closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}

#define _cleanup_free_  _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

/* Hand ownership out of a cleanup-scoped variable: returns it and clears it. */
#define TAKE_PTR(p)                                                                                \
        ({                                                                                         \
                __typeof__(p) _taken = (p);                                                        \
                (p) = NULL;                                                                        \
                _taken;                                                                            \
        })
#define TAKE_FD(fd)                                                                                \
        ({                                                                                         \
                int _taken = (fd);                                                                 \
                (fd) = -1;                                                                         \
                _taken;                                                                            \
        })

/*
 * `src` (NULL as "") into `dst` of `size` > 0 bytes, cut to fit and always
 * NUL-terminated, as snprintf "%s" does at a fraction of its cost; the
 * length written.
 */
static inline size_t str_copy(char *dst, size_t size, const char *src)
{
        size_t n = src ? strlen(src) : 0;

        if (n > size - 1)
                n = size - 1;
        memcpy(dst, src ? src : "", n);
        dst[n] = '\0';
        return n;
}

/* Erase memory the compiler may not optimise away; for secrets. */
static inline void erase(void *p, size_t n)
{
        if (p && n)
                explicit_bzero(p, n);
}

/* Erase a NUL-terminated heap string, then free it. */
static inline void erase_and_free(char *s)
{
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
}

static inline void erase_and_freep(char **s)
{
        erase_and_free(*s);
}

#define _cleanup_erase_free_ _cleanup_(erase_and_freep)
