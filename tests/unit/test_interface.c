/* SPDX-License-Identifier: MIT */
/*
 * The interface file is the API reference: every method it declares is one
 * the daemon dispatches, every method the daemon dispatches is declared,
 * and the daemon serves the file exactly as it is in the tree.  The C names
 * of the protocol (keys_proto.h) are the file's: every method and error
 * named there is declared (in io.apikeyd.Keys or org.varlink.service), every
 * method and error declared is named there, and Verify's codes are the
 * VerifyCode enum's, in its order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api.h"
#include "dispatch.h"
#include "keys_proto.h"

static char *read_source(const char *name)
{
        const char *dir = getenv("APIKEYD_SRCDIR");
        char path[4096];
        char *text = NULL;
        size_t len = 0;
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir ? dir : ".", name);
        f = fopen(path, "re");
        if (!f)
                fail_msg("cannot open %s (set APIKEYD_SRCDIR to the source tree)", path);
        assert_true(getdelim(&text, &len, '\0', f) > 0);
        fclose(f);
        return text;
}

static char *read_interface(void)
{
        return read_source("apikeyd/io.apikeyd.Keys.varlink");
}

/* "<iface>.<Name>" for each `<what> <Name>` line (what: "method", "error"). */
static char **declared_names(const char *text, const char *iface, const char *what, size_t *ret_n)
{
        char **v = calloc(64, sizeof(char *));
        char start[32];
        size_t n = 0;
        const char *p = text;

        assert_non_null(v);
        snprintf(start, sizeof(start), "\n%s ", what);
        while ((p = strstr(p, start))) {
                const char *name = p + strlen(start);
                size_t len = strcspn(name, "( \n");
                assert_true(n < 63);
                assert_true(asprintf(&v[n++], "%s.%.*s", iface, (int)len, name) > 0);
                p = name;
        }
        *ret_n = n;
        return v;
}

static char **declared_methods(const char *text, size_t *ret_n)
{
        return declared_names(text, KEYS_INTERFACE, "method", ret_n);
}

static void free_list(char **v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

/*
 * The values of keys_proto.h's `#define <PREFIX>...  "<value>"` lines
 * (PREFIX: "KEYS_ERROR_", "VARLINK_METHOD_", ...), read from the header
 * itself so that a name added to it is checked without being listed here.
 */
static char **header_names(const char *header, const char *prefix, size_t *ret_n)
{
        char **v = calloc(64, sizeof(char *));
        char start[64];
        size_t n = 0;
        const char *p = header;

        assert_non_null(v);
        snprintf(start, sizeof(start), "\n#define %s", prefix);
        while ((p = strstr(p, start))) {
                const char *q = p + strlen(start), *value, *end;
                q += strcspn(q, " \n");
                q += strspn(q, " ");
                if (*q != '"')
                        fail_msg("keys_proto.h: %.40s is not one string literal", p + 9);
                value = q + 1;
                end = strchr(value, '"');
                assert_non_null(end);
                assert_true(n < 63);
                v[n++] = strndup(value, (size_t)(end - value));
                p = end;
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

/* Every method keys_proto.h names is declared, and every one declared is named there. */
static void test_header_methods_are_declared(void **state)
{
        char *text = read_interface(), *header = read_source("common/keys_proto.h");
        size_t n_decl, n_svc, n_keys, n_varlink;
        char **decl = declared_methods(text, &n_decl);
        char **svc =
            declared_names(api_service_description, VARLINK_SERVICE_INTERFACE, "method", &n_svc);
        char **keys = header_names(header, "KEYS_METHOD_", &n_keys);
        char **varlink = header_names(header, "VARLINK_METHOD_", &n_varlink);

        assert_true(n_decl >= 12);
        for (size_t i = 0; i < n_keys; i++)
                if (!in_list(decl, n_decl, keys[i]))
                        fail_msg("keys_proto.h names %s, which the interface does not declare",
                                 keys[i]);
        for (size_t i = 0; i < n_decl; i++)
                if (!in_list(keys, n_keys, decl[i]))
                        fail_msg("the interface declares %s, which keys_proto.h does not name",
                                 decl[i]);
        assert_int_equal(n_keys, n_decl);
        assert_true(n_varlink >= 2);
        for (size_t i = 0; i < n_varlink; i++)
                if (!in_list(svc, n_svc, varlink[i]))
                        fail_msg("keys_proto.h names %s, which org.varlink.service does not "
                                 "declare",
                                 varlink[i]);
        free_list(decl, n_decl);
        free_list(svc, n_svc);
        free_list(keys, n_keys);
        free_list(varlink, n_varlink);
        free(header);
        free(text);
}

/*
 * Every error keys_proto.h names is declared where its name says (the
 * interface file, or the org.varlink.service description the daemon
 * serves), and every error the interface file declares is named there.
 */
static void test_header_errors_are_declared(void **state)
{
        char *text = read_interface(), *header = read_source("common/keys_proto.h");
        size_t n_decl, n_svc, n_keys, n_varlink;
        char **decl = declared_names(text, KEYS_INTERFACE, "error", &n_decl);
        char **svc =
            declared_names(api_service_description, VARLINK_SERVICE_INTERFACE, "error", &n_svc);
        char **keys = header_names(header, "KEYS_ERROR_", &n_keys);
        char **varlink = header_names(header, "VARLINK_ERROR_", &n_varlink);

        assert_true(n_decl >= 8);
        assert_true(n_svc >= 6);
        for (size_t i = 0; i < n_keys; i++)
                if (!in_list(decl, n_decl, keys[i]))
                        fail_msg("keys_proto.h names %s, which the interface does not declare",
                                 keys[i]);
        for (size_t i = 0; i < n_decl; i++)
                if (!in_list(keys, n_keys, decl[i]))
                        fail_msg("the interface declares %s, which keys_proto.h does not name",
                                 decl[i]);
        assert_true(n_varlink >= 3);
        for (size_t i = 0; i < n_varlink; i++)
                if (!in_list(svc, n_svc, varlink[i]))
                        fail_msg("keys_proto.h names %s, which org.varlink.service does not "
                                 "declare",
                                 varlink[i]);
        free_list(decl, n_decl);
        free_list(svc, n_svc);
        free_list(keys, n_keys);
        free_list(varlink, n_varlink);
        free(header);
        free(text);
}

/* The VerifyCode enum of the interface file is enum verify_code, name for name, in order. */
static void test_verify_codes_are_the_interface_enum(void **state)
{
        static const char start[] = "\ntype VerifyCode (";
        char *text = read_interface();
        const char *p = strstr(text, start), *end;
        size_t i = 0;

        assert_non_null(p);
        p += STRLEN(start);
        end = strchr(p, ')');
        assert_non_null(end);
        for (;;) {
                p += strspn(p, ", \n");
                if (p >= end)
                        break;
                size_t len = strcspn(p, ", \n)");
                const char *c = verify_code_to_string((enum verify_code)i);
                if (!c)
                        fail_msg("the interface's VerifyCode has %.*s, past the C enum's last",
                                 (int)len, p);
                if (strlen(c) != len || strncmp(c, p, len) != 0)
                        fail_msg("VerifyCode's value %zu is %.*s in the interface, %s in C", i,
                                 (int)len, p, c);
                i++;
                p += len;
        }
        if (i != _VERIFY_CODE_MAX)
                fail_msg("the interface's VerifyCode lacks %s (and any after it)",
                         verify_code_to_string((enum verify_code)i));
        free(text);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_declared_equals_dispatched),
            cmocka_unit_test(test_served_text_is_the_file),
            cmocka_unit_test(test_canonical_form),
            cmocka_unit_test(test_header_methods_are_declared),
            cmocka_unit_test(test_header_errors_are_declared),
            cmocka_unit_test(test_verify_codes_are_the_interface_enum),
        };
        return cmocka_run_group_tests_name("interface", tests, NULL, NULL);
}
