/* SPDX-License-Identifier: MIT */
/*
 * A key's sources: where it may be used from.  Each entry is one of
 *
 *   an IPv4 or IPv6 address   192.0.2.7, 2001:db8::1   that address alone
 *   a CIDR block              10.0.0.0/8, 2001:db8::/32 every address in it
 *   a host name               build.example.com        that name alone
 *
 * and is matched against the `rhost` of a Verify (PAM_RHOST: the address
 * sshd saw, or a name when sshd's UseDNS is on).  The syntax is strict, so
 * that what an admin wrote means one thing:
 *
 *   - addresses as inet_pton() reads them (no leading zeros in IPv4, no
 *     zone index); an IPv4-mapped IPv6 address (::ffff:10.1.2.3) is refused:
 *     write the IPv4 address, which is what such an rhost matches;
 *   - a block's prefix length is decimal, 0 to 32 (IPv4) or 0 to 128
 *     (IPv6), without leading zeros, and its host bits are zero: 10.1.2.3/8
 *     is refused (and the message names 10.0.0.0/8), never read as one
 *     address nor widened to a subnet (CVE-2020-24359);
 *   - a host name is 1 to 253 bytes of dot-separated labels, each 1 to 63
 *     ASCII letters, digits and '-' (not first or last), without a trailing
 *     dot, its last label not digits alone (so 10.0.0.256 is no name).
 *
 * Matching: an rhost that is an address matches an address entry equal to
 * it or a block holding it (an IPv4-mapped IPv6 rhost as its IPv4
 * address); an rhost that is a host name matches only a name entry equal
 * to it, ASCII case ignored (DNS names are, RFC 4343).  Names are never
 * resolved.  An rhost that is absent, or neither, matches nothing.
 *
 * No allocation, no state: safe on the Verify path and from any thread.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/* Room for any problem source_parse() describes. */
#define SOURCE_PROBLEM_MAX 160

struct source_entry {
        int family;       /* AF_INET, AF_INET6, or AF_UNSPEC for a host name */
        uint8_t addr[16]; /* network byte order; the first 4 bytes for IPv4 */
        unsigned prefix;  /* the bits that must match: 32 or 128 for an address */
        bool block;       /* written with a prefix length */
        const char *name; /* a host name: the entry itself */
};

/*
 * Parse one entry.  0, or -EINVAL with what is wrong in `problem` (if
 * non-NULL, SOURCE_PROBLEM_MAX bytes): "its host bits are set (the block is
 * 10.0.0.0/8)", "it is not an IPv4 or IPv6 address, a CIDR block or a
 * host name", ...
 */
int source_parse(const char *s, struct source_entry *ret, char *problem) _warn_unused_;

/*
 * Check a list of entries as a key stores them: each parses, none twice
 * (names ASCII case ignored, addresses and blocks by their value).  0, or
 * -EINVAL with the index of the first wrong entry in `*ret_index` and its
 * problem in `problem` (both optional).
 */
int sources_check(const char *const *sources, size_t n, size_t *ret_index,
                  char *problem) _warn_unused_;

/* Whether `rhost` (NULL = absent) may use a key with these sources (n > 0). */
bool sources_allow(const char *const *sources, size_t n, const char *rhost);

/* Whether entry `inner` lets in no host that `outer` does not. */
bool source_within(const struct source_entry *inner, const struct source_entry *outer);

/*
 * Whether sources `a` (n_a entries; 0 = from anywhere) let in no host that
 * `b` (0 = anywhere) does not: every entry of `a` within some entry of `b`.
 * An entry that does not parse is within nothing.
 */
bool sources_within(const char *const *a, size_t n_a, const char *const *b, size_t n_b);
