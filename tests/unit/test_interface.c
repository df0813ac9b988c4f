/* SPDX-License-Identifier: MIT */
/*
 * The interface file is the API reference: every method it declares is one
 * the daemon dispatches, every method the daemon dispatches is declared,
 * and the daemon serves the file exactly as it is in the tree.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api_keys.h"
#include "keys_proto.h"

static char *read_interface(void)
{
        const char *dir = getenv("APIKEYD_SRCDIR");
        char path[4096];
        char *text = NULL;
        size_t len = 0;
        FILE *f;

        snprintf(path, sizeof(path), "%s/apikeyd/io.apikeyd.Keys.varlink", dir ? dir : ".");
        f = fopen(path, "re");
        assert_non_null(f);
        assert_true(getdelim(&text, &len, '\0', f) > 0);
        fclose(f);
        return text;
}

/* "io.apikeyd.Keys.<Name>" for each `method <Name>(` line, NULL-terminated. */
static char **declared_methods(const char *text, size_t *ret_n)
{
        char **v = calloc(64, sizeof(char *));
        size_t n = 0;
        const char *p = text;

        assert_non_null(v);
        while ((p = strstr(p, "\nmethod "))) {
                const char *name = p + STRLEN("\nmethod ");
                size_t len = strcspn(name, "( \n");
                assert_true(n < 63);
                assert_true(asprintf(&v[n++], KEYS_INTERFACE ".%.*s", (int)len, name) > 0);
                p = name;
        }
        *ret_n = n;
        return v;
}

static bool in_list(char **v, size_t n, const char *name)
{
        for (size_t i = 0; i < n; i++)
                if (STREQ(v[i], name))
                        return true;
        return false;
}

static void test_declared_equals_dispatched(void **state)
{
        char *text = read_interface();
        size_t n, n_dispatched = 0;
        char **declared = declared_methods(text, &n);

        assert_true(n >= 12);
        for (size_t i = 0; i < n; i++) {
                bool found = false;
                for (size_t k = 0; api_method_name(k); k++)
                        found = found || STREQ(api_method_name(k), declared[i]);
                if (!found)
                        fail_msg("%s is declared but not dispatched", declared[i]);
        }
        for (size_t k = 0; api_method_name(k); k++) {
                const char *m = api_method_name(k);
                if (strncmp(m, "org.varlink.service.", 20) == 0)
                        continue;
                n_dispatched++;
                if (!in_list(declared, n, m))
                        fail_msg("%s is dispatched but not declared", m);
        }
        assert_int_equal(n_dispatched, n);
        for (size_t i = 0; i < n; i++)
                free(declared[i]);
        free(declared);
        free(text);
}

static void test_served_text_is_the_file(void **state)
{
        char *text = read_interface();

        assert_string_equal(apikeyd_interface_description, text);
        assert_non_null(strstr(text, "\ninterface " KEYS_INTERFACE "\n"));
        free(text);
}

static void test_canonical_form(void **state)
{
        char buf[512];
        int n = api_verify_canonical(buf, sizeof(buf), "2027-01-31T12:00:00Z", true, "VALID",
                                     "7Hq2LmX9aB3z", "alice", "sshd", NULL, "10.0.0.1");

        assert_int_equal(n, (int)strlen(buf));
        assert_string_equal(buf, "apikeyd-verify-v1\n"
                                 "signed_at=2027-01-31T12:00:00Z\n"
                                 "valid=true\n"
                                 "code=VALID\n"
                                 "id=7Hq2LmX9aB3z\n"
                                 "owner=alice\n"
                                 "service=sshd\n"
                                 "user=\n"
                                 "rhost=10.0.0.1\n");
        assert_int_equal(
            api_verify_canonical(buf, 16, "x", false, "NOT_FOUND", NULL, NULL, NULL, NULL, NULL),
            -ENOBUFS);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_declared_equals_dispatched),
            cmocka_unit_test(test_served_text_is_the_file),
            cmocka_unit_test(test_canonical_form),
        };
        return cmocka_run_group_tests_name("interface", tests, NULL, NULL);
}
