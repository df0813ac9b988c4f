/* SPDX-License-Identifier: MIT */
/*
 * The Verify fast path's decoder: reads a whole call message
 * {"method": "io.apikeyd.Keys.Verify", "parameters": {...}} with the
 * allocation-free JSON reader into fixed buffers, for the calls PAM
 * modules and scripts send all day.
 *
 * It accepts only the plain shape of such a call: string parameters of
 * bounded length, "permissions" as an array of known names, "brief" as a
 * boolean, no "auth", no
 * null, no member twice, no flags set.  Anything else is declined and goes
 * the general way (jansson, then the method table), which gives the same
 * answer or the right error; a fuzz target checks that what this decoder
 * accepts, the general decoder reads the same.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "record.h"
#include "token.h"

/* The parameters that are plain strings, in this order in verify_call.text. */
enum verify_text {
        VERIFY_SERVICE,
        VERIFY_USER,
        VERIFY_RHOST,
        VERIFY_TTY,
        VERIFY_RUSER,
        _VERIFY_TEXT_MAX,
};

extern const char *const verify_text_names[_VERIFY_TEXT_MAX];

struct verify_call {
        char token[TOKEN_MAX_LEN + 1]; /* a secret: verify_call_erase() when done */
        size_t token_len;
        char text[_VERIFY_TEXT_MAX][KEY_FIELD_MAX + 1];
        bool has_text[_VERIFY_TEXT_MAX];
        uint8_t text_plain;  /* bit i: text[i] came as printable ASCII, already valid text */
        uint8_t permissions; /* bits of enum key_perm required */
        bool brief;
};

/*
 * 1 if `msg` is a Verify call of the plain shape, decoded into `*ret`; 0
 * if not (declined: `*ret` holds nothing to use, but erase it anyway).
 */
int verify_call_parse(const char *msg, size_t len, struct verify_call *ret) _warn_unused_;
void verify_call_erase(struct verify_call *v);
