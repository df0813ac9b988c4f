/* SPDX-License-Identifier: MIT */
/*
 * The cryptographic half of the token, which only the daemon has: drawing
 * new ids and secrets, hashing a token with the pepper, comparing hashes in
 * constant time, and the pepper file itself.
 *
 * The stored hash is BLAKE2b-256(key = pepper, message = token without its
 * check digits).  The pepper (32 random bytes) lives in its own file in the
 * state directory, so a copy of the keystore alone verifies nothing.  The
 * keystore keeps the pepper's fingerprint, so a pepper lost or replaced is
 * noticed at start rather than failing every key.
 *
 * The shared secret, which signs Verify answers for integrations, lives in
 * a file of its own beside the pepper (not in the keystore: a copy of the
 * database must not be able to forge signed answers).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"
#include "record.h"
#include "token.h"

#define PEPPER_SIZE             32
#define PEPPER_FILE             "pepper"
#define PEPPER_FINGERPRINT_SIZE 32
/* The keystore's meta entry that keeps the fingerprint. */
#define PEPPER_FINGERPRINT_META "pepper_fingerprint"
#define SHARED_SECRET_SIZE      32
#define SHARED_SECRET_FILE      "shared-secret"

/* sodium_init(); 0 or -EIO.  Call once before anything below. */
int token_crypto_init(void) _warn_unused_;

/* Draw a fresh key id (TOKEN_ID_LEN base62 characters, NUL-terminated). */
void token_generate_id(char ret_id[TOKEN_ID_LEN + 1]);

/*
 * Draw a new secret for key `id` and write the whole token into `ret_token`
 * (TOKEN_MAX_LEN + 1 bytes; the caller erases it).  Returns the token's
 * length or -EINVAL (bad prefix or id).
 */
int token_generate(const char *prefix, const char *id,
                   char ret_token[TOKEN_MAX_LEN + 1]) _warn_unused_;

/* Hash a parsed token with the pepper. */
void token_hash(const uint8_t pepper[PEPPER_SIZE], const struct token *t,
                uint8_t ret_hash[KEY_HASH_SIZE]);

/* Constant-time comparison of two hashes. */
bool token_hash_equal(const uint8_t a[KEY_HASH_SIZE], const uint8_t b[KEY_HASH_SIZE]) _warn_unused_;

/*
 * Read the pepper from `dir`/pepper into `ret` (best kept in sodium_malloc'd
 * memory).  If the file does not exist and `create` is set, draw a new one
 * and write it with mode 0600, synced.  The file must be a regular file
 * owned by us, not readable or writable by group or others, and exactly
 * PEPPER_SIZE bytes: otherwise -EPERM / -EBADMSG with the reason in
 * `*ret_error` (malloc'd; may be NULL).
 */
int pepper_load(const char *dir, bool create, uint8_t ret[PEPPER_SIZE],
                char **ret_error) _warn_unused_;

/*
 * The pepper's fingerprint, kept in the keystore: BLAKE2b-256 keyed with
 * the pepper over nothing, personalised "apikeyd-pepperfp", so it is
 * domain-separated from every token hash and reveals nothing of the pepper.
 */
void pepper_fingerprint(const uint8_t pepper[PEPPER_SIZE], uint8_t ret[PEPPER_FINGERPRINT_SIZE]);
bool pepper_fingerprint_equal(const uint8_t a[PEPPER_FINGERPRINT_SIZE],
                              const uint8_t b[PEPPER_FINGERPRINT_SIZE]) _warn_unused_;

/*
 * Read the shared secret from `dir`/shared-secret, as pepper_load() reads
 * the pepper (same checks, same errors); with `create`, a missing file is
 * made with a new random secret.
 */
int shared_secret_load(const char *dir, bool create, uint8_t ret[SHARED_SECRET_SIZE],
                       char **ret_error) _warn_unused_;

/*
 * Replace `dir`/shared-secret durably: a temporary file written and
 * synced, renamed over it, the directory synced.  0 or a negative errno
 * with the reason in `*ret_error` (malloc'd; may be NULL).
 */
int shared_secret_store(const char *dir, const uint8_t secret[SHARED_SECRET_SIZE],
                        char **ret_error) _warn_unused_;
