/* SPDX-License-Identifier: MIT */
/*
 * The one check of text a caller sends (Verify's service, user, rhost, tty
 * and ruser, a key's name, description, owner and scope, List's filters,
 * every other string parameter) and of the text a key record stores: such
 * text ends up on terminals, in log lines and in signed answers, where a
 * control character could forge a line or move the cursor.
 *
 * On top of it, the syntax of the names a key is bound to: its owner and
 * its scope entries are ASCII names, so that no two of them look alike.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

/*
 * `s` is well-formed UTF-8 (RFC 3629: shortest form, no surrogates, nothing
 * above U+10FFFF) of at most `max` bytes, with no C0 control (U+0000 to
 * U+001F), no DEL (U+007F) and no C1 control (U+0080 to U+009F).  NULL is
 * not; "" is.
 */
bool text_valid(const char *s, size_t max) _warn_unused_;

/*
 * A name (a scope entry): 1 to `max` bytes of ASCII letters, digits, '.',
 * '_' and '-', the first a letter, a digit or '_'.  No space, no other
 * punctuation, nothing outside ASCII.
 */
bool text_name_valid(const char *s, size_t max) _warn_unused_;

/*
 * A key owner: a name as text_name_valid() takes it, in which '@' may also
 * follow the first character (user names qualified with their domain, as
 * SSSD and winbind give them), optionally ending in '$' (as machine
 * accounts do), not made of digits alone (that reads as a uid).  Every
 * login name useradd accepts by default ([a-z_][a-z0-9_-]*[$]?) is one; so
 * are application names such as "billing-api" or "ci.example".
 */
bool text_owner_valid(const char *s, size_t max) _warn_unused_;
