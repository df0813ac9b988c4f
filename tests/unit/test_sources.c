/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of a key's sources (apikeyd/store/sources.c): the syntax of an
 * entry and the problem named for each refusal, matching an rhost
 * (addresses, blocks, IPv4-mapped IPv6, host names, what matches nothing),
 * and whether one list of sources lies within another.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "sources.h"

static void parses(const char *s, int family, unsigned prefix, bool block)
{
        struct source_entry e;
        char problem[SOURCE_PROBLEM_MAX] = "";

        if (source_parse(s, &e, problem) < 0)
                fail_msg("'%s' refused: %s", s, problem);
        assert_int_equal(e.family, family);
        assert_int_equal(e.prefix, prefix);
        assert_int_equal(e.block, block);
        if (family == AF_UNSPEC)
                assert_ptr_equal(e.name, s);
}

static void refused(const char *s, const char *problem_start)
{
        struct source_entry e;
        char problem[SOURCE_PROBLEM_MAX] = "";

        if (source_parse(s, &e, problem) != -EINVAL)
                fail_msg("'%s' accepted", s);
        if (strncmp(problem, problem_start, strlen(problem_start)) != 0)
                fail_msg("'%s': '%s', expected it to start with '%s'", s, problem, problem_start);
        assert_int_equal(source_parse(s, &e, NULL), -EINVAL);
}

#define NOT_ANY "it is not an IPv4 or IPv6 address, a CIDR block or a host name"
#define PREFIX4 "its prefix length is not a number from 0 to 32"

static void test_syntax(void **state)
{
        parses("192.0.2.7", AF_INET, 32, false);
        parses("10.0.0.0/8", AF_INET, 8, true);
        parses("0.0.0.0/0", AF_INET, 0, true);
        parses("192.0.2.7/32", AF_INET, 32, true);
        parses("2001:db8::1", AF_INET6, 128, false);
        parses("2001:db8::/32", AF_INET6, 32, true);
        parses("::/0", AF_INET6, 0, true);
        parses("::1", AF_INET6, 128, false);
        parses("build.example.com", AF_UNSPEC, 0, false);
        parses("localhost", AF_UNSPEC, 0, false);
        parses("a-b.c9", AF_UNSPEC, 0, false);
        parses("1a.example", AF_UNSPEC, 0, false);

        refused("", "it is empty");
        refused("10.1.2.3/8", "its host bits are set (the block is 10.0.0.0/8;");
        refused("10.0.0.1/31", "its host bits are set (the block is 10.0.0.0/31;");
        refused("2001:db8::1/64", "its host bits are set (the block is 2001:db8::/64;");
        refused("10.0.0.0/33", PREFIX4);
        refused("10.0.0.0/", PREFIX4);
        refused("10.0.0.0/08", PREFIX4);
        refused("10.0.0.0/+8", PREFIX4);
        refused("10.0.0.0/8 ", PREFIX4);
        refused("10.0.0.0/1000", PREFIX4);
        refused("2001:db8::/129", "its prefix length is not a number from 0 to 128");
        refused("::ffff:10.0.0.1", "it is an IPv4-mapped IPv6 address");
        refused("::ffff:0.0.0.0/96", "it is an IPv4-mapped IPv6 address");
        refused("10.0.0.256", NOT_ANY);
        refused("010.0.0.1", NOT_ANY);
        refused("10.1", NOT_ANY);
        refused("1.2.3.4.5", NOT_ANY);
        refused("fe80::1%eth0", NOT_ANY);
        refused("[::1]", NOT_ANY);
        refused(" 10.0.0.1", NOT_ANY);
        refused("-a.example", NOT_ANY);
        refused("a-.example", NOT_ANY);
        refused("a..example", NOT_ANY);
        refused("example.com.", NOT_ANY);
        refused(".example.com", NOT_ANY);
        refused("under_score.example", NOT_ANY);
        refused("ex ample", NOT_ANY);
        refused("b\xc3\xa4r.example", NOT_ANY);
        refused("example.com/24", "it is not a CIDR block");
        refused("/8", "it is not a CIDR block");

        /* Labels up to 63 bytes, names up to 253. */
        char name[300];
        memset(name, 'a', 63);
        strcpy(name + 63, ".example");
        parses(name, AF_UNSPEC, 0, false);
        memset(name, 'a', 64);
        strcpy(name + 64, ".example");
        refused(name, NOT_ANY);
        for (size_t i = 0; i < 254; i++)
                name[i] = i % 2 ? '.' : 'a';
        name[253] = '\0';
        parses(name, AF_UNSPEC, 0, false);
        name[253] = 'a';
        name[254] = '\0';
        refused(name, NOT_ANY);
}

static void test_check_list(void **state)
{
        const char *ok[] = {"10.0.0.0/8", "10.0.0.0/16", "10.0.0.1", "a.example", "2001:db8::/32"};
        const char *twice_name[] = {"a.example", "A.Example"};
        const char *twice_addr[] = {"2001:db8::1", "192.0.2.1", "2001:DB8:0:0::1"};
        const char *bad_second[] = {"192.0.2.1", "192.0.2.1/24"};
        char problem[SOURCE_PROBLEM_MAX];
        size_t i = 99;

        assert_int_equal(sources_check(ok, 5, &i, problem), 0);
        assert_int_equal(sources_check(NULL, 0, &i, problem), 0);
        assert_int_equal(sources_check(twice_name, 2, &i, problem), -EINVAL);
        assert_int_equal(i, 1);
        assert_string_equal(problem, "it is given twice");
        assert_int_equal(sources_check(twice_addr, 3, &i, problem), -EINVAL);
        assert_int_equal(i, 2);
        assert_int_equal(sources_check(bad_second, 2, &i, problem), -EINVAL);
        assert_int_equal(i, 1);
        assert_true(strstr(problem, "host bits") != NULL);
        assert_int_equal(sources_check(bad_second, 2, NULL, NULL), -EINVAL);
}

static void test_allow(void **state)
{
        const char *v4[] = {"10.0.0.0/8"};
        const char *exact[] = {"192.0.2.7"};
        const char *v6[] = {"2001:db8::/32"};
        const char *names[] = {"build.example.com"};
        const char *mixed[] = {"10.0.0.0/8", "2001:db8::7", "host.example"};
        const char *odd[] = {"10.0.0.0/9"};
        const char *broken[] = {"10.1.2.3/8", "not valid!"};

        assert_true(sources_allow(v4, 1, "10.0.0.0"));
        assert_true(sources_allow(v4, 1, "10.255.255.255"));
        assert_false(sources_allow(v4, 1, "11.0.0.0"));
        assert_false(sources_allow(v4, 1, "9.255.255.255"));
        assert_true(sources_allow(v4, 1, "::ffff:10.1.2.3"));
        assert_false(sources_allow(v4, 1, "::ffff:11.1.2.3"));
        assert_false(sources_allow(v4, 1, "::10.1.2.3")); /* compatible, not mapped */
        assert_false(sources_allow(v4, 1, "::ffff:a01:203:1"));
        assert_true(sources_allow(odd, 1, "10.127.255.255"));
        assert_false(sources_allow(odd, 1, "10.128.0.0"));

        /* One address is that address (CVE-2020-24359). */
        assert_true(sources_allow(exact, 1, "192.0.2.7"));
        assert_true(sources_allow(exact, 1, "::ffff:192.0.2.7"));
        assert_false(sources_allow(exact, 1, "192.0.2.6"));
        assert_false(sources_allow(exact, 1, "192.0.2.8"));
        assert_false(sources_allow(exact, 1, "192.0.2.0"));

        assert_true(sources_allow(v6, 1, "2001:db8::1"));
        assert_true(sources_allow(v6, 1, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
        assert_false(sources_allow(v6, 1, "2001:db9::"));
        assert_false(sources_allow(v6, 1, "10.0.0.1"));

        assert_true(sources_allow(names, 1, "build.example.com"));
        assert_true(sources_allow(names, 1, "Build.EXAMPLE.com"));
        assert_false(sources_allow(names, 1, "build.example.co"));
        assert_false(sources_allow(names, 1, "xbuild.example.com"));
        assert_false(sources_allow(names, 1, "build.example.com."));

        assert_true(sources_allow(mixed, 3, "10.9.8.7"));
        assert_true(sources_allow(mixed, 3, "2001:db8::7"));
        assert_false(sources_allow(mixed, 3, "2001:db8::8"));
        assert_true(sources_allow(mixed, 3, "HOST.example"));
        assert_false(sources_allow(mixed, 3, "other.example"));

        /* Nothing, or no host: no match. */
        assert_false(sources_allow(v4, 1, NULL));
        assert_false(sources_allow(v4, 1, ""));
        assert_false(sources_allow(v4, 1, "10.0.0.1 "));
        assert_false(sources_allow(v4, 1, "10.0.0.1/8"));
        assert_false(sources_allow(v4, 1, "fe80::1%eth0"));
        /* Entries that do not parse let nobody in, not even what they look like. */
        assert_false(sources_allow(broken, 2, "10.1.2.3"));
        assert_false(sources_allow(broken, 2, "10.200.0.1"));
}

static void test_within(void **state)
{
        const char *parent[] = {"10.0.0.0/8", "2001:db8::/32", "build.example.com"};
        const char *inside[] = {"10.1.0.0/16", "10.2.3.4", "2001:db8:1::/48", "BUILD.example.com"};
        const char *wider[] = {"10.0.0.0/7"};
        const char *beside[] = {"11.0.0.0/8"};
        const char *name[] = {"other.example.com"};
        const char *mapped_v4[] = {"10.0.0.1"};
        const char *v6_all[] = {"::/0"};
        const char *broken[] = {"10.0.0.1/8"};

        assert_true(sources_within(inside, 4, parent, 3));
        assert_true(sources_within(parent, 3, parent, 3));
        assert_false(sources_within(wider, 1, parent, 3));
        assert_false(sources_within(beside, 1, parent, 3));
        assert_false(sources_within(name, 1, parent, 3));
        assert_false(sources_within(v6_all, 1, parent, 3));
        /* None is from anywhere: within nothing but none. */
        assert_false(sources_within(NULL, 0, parent, 3));
        assert_true(sources_within(NULL, 0, NULL, 0));
        assert_true(sources_within(wider, 1, NULL, 0));
        assert_true(sources_within(mapped_v4, 1, parent, 3));
        assert_false(sources_within(broken, 1, parent, 3));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_syntax),
            cmocka_unit_test(test_check_list),
            cmocka_unit_test(test_allow),
            cmocka_unit_test(test_within),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
