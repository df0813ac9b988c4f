/* SPDX-License-Identifier: MIT */
/* A key's sources: their syntax and matching; see sources.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "sources.h"

#define HOST_NAME_MAX_LEN  253
#define HOST_LABEL_MAX_LEN 63

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static int fail(char *problem, const char *what)
{
        if (problem)
                snprintf(problem, SOURCE_PROBLEM_MAX, "%s", what);
        return -EINVAL;
}

static bool is_digit(char c)
{
        return c >= '0' && c <= '9';
}

static bool is_alnum(char c)
{
        return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* A host name as sources.h describes it. */
static bool host_name_valid(const char *s)
{
        size_t n = strlen(s), label = 0;
        bool digits_only = true;

        if (n == 0 || n > HOST_NAME_MAX_LEN)
                return false;
        for (size_t i = 0; i <= n; i++) {
                char c = s[i];

                if (c == '.' || c == '\0') {
                        if (label == 0 || s[i - 1] == '-')
                                return false;
                        if (c == '\0')
                                break;
                        label = 0;
                        digits_only = true;
                        continue;
                }
                if (!is_alnum(c) && !(c == '-' && label > 0))
                        return false;
                if (++label > HOST_LABEL_MAX_LEN)
                        return false;
                digits_only = digits_only && is_digit(c);
        }
        /* The last label: digits alone would be an address that is not one. */
        return !digits_only;
}

/* An address of either family into `e` (prefix: all of it); false if none.
 * Only IPv6 addresses hold a ':', so one inet_pton() decides. */
static bool address_parse(const char *s, struct source_entry *e)
{
        memset(e->addr, 0, sizeof(e->addr));
        if (!strchr(s, ':')) {
                if (inet_pton(AF_INET, s, e->addr) != 1)
                        return false;
                e->family = AF_INET;
                e->prefix = 32;
                return true;
        }
        if (inet_pton(AF_INET6, s, e->addr) == 1) {
                e->family = AF_INET6;
                e->prefix = 128;
                return true;
        }
        return false;
}

static bool bits_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
        unsigned bytes = bits / 8, rest = bits % 8;

        if (memcmp(a, b, bytes) != 0)
                return false;
        if (rest == 0)
                return true;
        uint8_t mask = (uint8_t)(0xff << (8 - rest));
        return (a[bytes] & mask) == (b[bytes] & mask);
}

/* `addr` with every bit after the first `bits` cleared. */
static void mask_bits(uint8_t addr[16], unsigned bits)
{
        if (bits % 8)
                addr[bits / 8] &= (uint8_t)(0xff << (8 - bits % 8));
        for (unsigned i = (bits + 7) / 8; i < 16; i++)
                addr[i] = 0;
}

int source_parse(const char *s, struct source_entry *ret, char *problem)
{
        char addr[INET6_ADDRSTRLEN + 1];
        const char *slash;
        size_t n;

        if (!s || !s[0])
                return fail(problem, "it is empty");
        *ret = (struct source_entry){.family = AF_UNSPEC};
        slash = strchr(s, '/');
        n = slash ? (size_t)(slash - s) : strlen(s);
        if (n < sizeof(addr)) {
                memcpy(addr, s, n);
                addr[n] = '\0';
        } else
                addr[0] = '\0';

        if (!addr[0] || !address_parse(addr, ret)) {
                if (!slash && host_name_valid(s)) {
                        ret->name = s;
                        return 0;
                }
                return fail(problem, slash ? "it is not a CIDR block: an IPv4 or IPv6 address, "
                                             "'/' and a prefix length"
                                           : "it is not an IPv4 or IPv6 address, a CIDR block "
                                             "or a host name");
        }
        if (ret->family == AF_INET6 && memcmp(ret->addr, v4_mapped_prefix, 12) == 0)
                return fail(problem, "it is an IPv4-mapped IPv6 address: write the IPv4 "
                                     "address or block instead, which such an rhost matches");
        if (slash) {
                const char *p = slash + 1;
                unsigned total = ret->prefix, bits = 0;
                size_t digits = strspn(p, "0123456789");

                for (size_t i = 0; i < digits && i < 3; i++)
                        bits = bits * 10 + (unsigned)(p[i] - '0');
                if (digits == 0 || digits > 3 || p[digits] || (p[0] == '0' && digits > 1) ||
                    bits > total) {
                        char what[SOURCE_PROBLEM_MAX];
                        snprintf(what, sizeof(what),
                                 "its prefix length is not a number from 0 to %u", total);
                        return fail(problem, what);
                }
                uint8_t net[16];
                memcpy(net, ret->addr, sizeof(net));
                mask_bits(net, bits);
                if (memcmp(net, ret->addr, sizeof(net)) != 0) {
                        char what[SOURCE_PROBLEM_MAX], text[INET6_ADDRSTRLEN];
                        if (!inet_ntop(ret->family, net, text, sizeof(text)))
                                text[0] = '\0';
                        snprintf(what, sizeof(what),
                                 "its host bits are set (the block is %s/%u; an address alone "
                                 "is written without a prefix length)",
                                 text, bits);
                        return fail(problem, what);
                }
                ret->prefix = bits;
                ret->block = true;
        }
        return 0;
}

static bool same_entry(const struct source_entry *a, const struct source_entry *b)
{
        if (a->family != b->family)
                return false;
        if (a->family == AF_UNSPEC)
                return strcasecmp(a->name, b->name) == 0;
        return a->prefix == b->prefix && memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

int sources_check(const char *const *sources, size_t n, size_t *ret_index, char *problem)
{
        for (size_t i = 0; i < n; i++) {
                struct source_entry e;
                int r = source_parse(sources[i], &e, problem);

                for (size_t j = 0; r == 0 && j < i; j++) {
                        struct source_entry o;
                        if (source_parse(sources[j], &o, NULL) == 0 && same_entry(&e, &o))
                                r = fail(problem, "it is given twice");
                }
                if (r < 0) {
                        if (ret_index)
                                *ret_index = i;
                        return r;
                }
        }
        return 0;
}

/* The host an rhost names: an address (a mapped IPv6 one as IPv4) or a host name. */
static bool host_parse(const char *rhost, struct source_entry *ret)
{
        *ret = (struct source_entry){.family = AF_UNSPEC};
        if (!rhost || !rhost[0])
                return false;
        if (address_parse(rhost, ret)) {
                if (ret->family == AF_INET6 && memcmp(ret->addr, v4_mapped_prefix, 12) == 0) {
                        memmove(ret->addr, ret->addr + 12, 4);
                        memset(ret->addr + 4, 0, 12);
                        ret->family = AF_INET;
                        ret->prefix = 32;
                }
                return true;
        }
        if (strlen(rhost) > HOST_NAME_MAX_LEN || !host_name_valid(rhost))
                return false;
        ret->name = rhost;
        return true;
}

bool source_within(const struct source_entry *inner, const struct source_entry *outer)
{
        if (inner->family != outer->family)
                return false;
        if (inner->family == AF_UNSPEC)
                return strcasecmp(inner->name, outer->name) == 0;
        return inner->prefix >= outer->prefix &&
               bits_equal(inner->addr, outer->addr, outer->prefix);
}

bool sources_allow(const char *const *sources, size_t n, const char *rhost)
{
        struct source_entry host;

        if (!host_parse(rhost, &host))
                return false;
        for (size_t i = 0; i < n; i++) {
                struct source_entry e;
                bool v6 = strchr(sources[i], ':');

                /* On the Verify path: entries of the other kind are passed
                 * over unparsed, and a host name is only compared, as it is
                 * itself a valid name (an equal entry is one too). */
                if (host.family == AF_UNSPEC) {
                        if (strcasecmp(sources[i], host.name) == 0)
                                return true;
                        continue;
                }
                if (v6 != (host.family == AF_INET6))
                        continue;
                /* An entry that does not parse (written before the syntax was
                 * checked, or damaged) lets nobody in. */
                if (source_parse(sources[i], &e, NULL) == 0 && source_within(&host, &e))
                        return true;
        }
        return false;
}

bool sources_within(const char *const *a, size_t n_a, const char *const *b, size_t n_b)
{
        if (n_b == 0)
                return true;
        if (n_a == 0)
                return false;
        for (size_t i = 0; i < n_a; i++) {
                struct source_entry e;
                bool found = false;

                if (source_parse(a[i], &e, NULL) < 0)
                        return false;
                for (size_t j = 0; j < n_b && !found; j++) {
                        struct source_entry o;
                        found = source_parse(b[j], &o, NULL) == 0 && source_within(&e, &o);
                }
                if (!found)
                        return false;
        }
        return true;
}
