/* SPDX-License-Identifier: MIT */
/*
 * The PAM module's reading of apikeyd's answer to Verify.
 *
 * The answer is read in place with json_scan.h: no allocation and no JSON
 * library inside sshd or sudo.  It takes the replies jansson took on the
 * module's earlier path (JSON_REJECT_DUPLICATES, then the checks below) and
 * gives the same fields; a fuzz target holds the two side by side.
 *
 * A reply is a JSON object: an optional "parameters" object, an optional
 * "error" string, an optional "continues" boolean, and any other members,
 * which are skipped.  Members come in any order, and no object at any depth
 * may name a member twice.  Without "error", the parameters must hold
 * "valid" (a boolean) and "code" (a string); "key", when it is an object,
 * gives "id" and "expires_at" when they are strings, and where it gives
 * none or an empty one, the parameters' own "key_id" and "expires_at" (the
 * brief answer) do, when they are strings.  Other members of the
 * parameters and the key, and these ones with other types, are skipped.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"
#include "timeutil.h"
#include "token.h"

/*
 * Limits beyond jansson's, far above what the daemon sends: a reply past
 * them is refused.  Nesting counts objects and arrays, the reply itself
 * included; a name's length is in bytes once unescaped, without its NUL.
 * Numbers are skipped, but only those jansson reads: integers that fit in
 * 64 bits, and other numbers below 1e308 in magnitude (jansson takes those
 * up to the largest double).
 */
#define VERIFY_REPLY_MAX_DEPTH   16
#define VERIFY_REPLY_MAX_MEMBERS 64
#define VERIFY_REPLY_MAX_NAME    255

struct verify_reply {
        bool error; /* the daemon refused the call; nothing below but its name is set */
        char error_name[128];
        bool valid;
        char code[32];
        char key_id[TOKEN_ID_LEN + 1];
        char expires_at[TIMESTAMP_MAX];
};

/*
 * Decode one reply message (`len` bytes without the framing NUL; untrusted).
 * 0 with `*ret` filled, or -EBADMSG for anything described above as refused
 * (`*ret` is then left alone).  A string longer than its field is cut after
 * the last whole character that fits: a code cut so is an unknown code, an
 * error name cut so still an error.
 */
int verify_reply_decode(const char *msg, size_t len, struct verify_reply *ret) _warn_unused_;

/*
 * The answer to a call whose success carries nothing the module reads
 * (OpenSession, CloseSession): 0 with `error` holding the error's name
 * ("" for success), cut to `size` bytes at a character boundary; -EBADMSG
 * for a message that is not one JSON object, or whose "error" member is
 * not a string.  Other members are skipped.
 */
int call_reply_decode(const char *msg, size_t len, char *error, size_t size) _warn_unused_;
