/* SPDX-License-Identifier: MIT */
/* Verify's codes as text; see keys_proto.h. */
#include <string.h>

#include "keys_proto.h"
#include "macro.h"

struct code_text {
        const char *text;
        size_t len;
};

/* Each name typed once: its text and its length come from the same token. */
#define CODE(name) [VERIFY_CODE_##name] = {#name, STRLEN(#name)}

static const struct code_text verify_codes[] = {
    CODE(VALID),         CODE(BAD_FORMAT),    CODE(NOT_FOUND),
    CODE(DISABLED),      CODE(REVOKED),       CODE(EXPIRED),
    CODE(WRONG_USER),    CODE(OUT_OF_SCOPE),  CODE(INSUFFICIENT_PERMISSIONS),
    CODE(RATE_LIMITED),  CODE(NOT_FOR_LOGIN), CODE(USAGE_EXCEEDED),
    CODE(NOT_YET_VALID), CODE(SOURCE_DENIED), CODE(UNAVAILABLE),
};

#undef CODE

/* A code left out at the end shortens the table; one left out elsewhere
 * is a NULL that test_keys_proto finds. */
_Static_assert(ELEMENTSOF(verify_codes) == _VERIFY_CODE_MAX, "a Verify code without its text");

const char *verify_code_to_string_len(enum verify_code code, size_t *ret_len)
{
        if (code < 0 || code >= _VERIFY_CODE_MAX || !verify_codes[code].text) {
                *ret_len = 0;
                return NULL;
        }
        *ret_len = verify_codes[code].len;
        return verify_codes[code].text;
}

const char *verify_code_to_string(enum verify_code code)
{
        size_t len;

        return verify_code_to_string_len(code, &len);
}

enum verify_code verify_code_from_string(const char *s)
{
        if (!s)
                return _VERIFY_CODE_INVALID;
        for (size_t i = 0; i < ELEMENTSOF(verify_codes); i++)
                if (verify_codes[i].text && STREQ(verify_codes[i].text, s))
                        return (enum verify_code)i;
        return _VERIFY_CODE_INVALID;
}
