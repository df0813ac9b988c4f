/* SPDX-License-Identifier: MIT */
/*
 * The benchmark's keys, derived from a seed: key i has an id and a secret
 * computed from (seed, i), so the loader stores them and the load generator
 * rebuilds the same tokens without a file of secrets.  The seed file
 * (BENCH_SEED_FILE in the state directory) records the seed, the number of
 * keys and the token prefix.
 *
 * Keys whose index is 9 modulo 10 are decoys: the load generator sends them
 * only with a wrong secret, so the lockout they run into never touches the
 * keys it sends with their right secret.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "token.h"

#define BENCH_SEED_FILE "bench.seed"
#define BENCH_SEED_SIZE 32
#define BENCH_OWNERS    1000 /* keys are spread over this many owners */
#define BENCH_OWNER_MAX 32

struct bench_seed {
        uint8_t seed[BENCH_SEED_SIZE];
        uint64_t n_keys;
        char prefix[TOKEN_PREFIX_MAX + 1];
};

/* Whether key `i` is a decoy (sent only with a wrong secret). */
static inline bool bench_key_is_decoy(uint64_t i)
{
        return i % 10 == 9;
}

/* 0 or a negative errno. */
int bench_seed_write(const char *dir, const struct bench_seed *s);
int bench_seed_read(const char *dir, struct bench_seed *ret);

/* The id of key `i`. */
void bench_key_id(const struct bench_seed *s, uint64_t i, char ret[TOKEN_ID_LEN + 1]);

/* An id no stored key has (drawn from another domain of the seed). */
void bench_unknown_id(const struct bench_seed *s, uint64_t j, char ret[TOKEN_ID_LEN + 1]);

/*
 * The token of key `i` (`wrong`: the same id with another secret), written
 * into `ret` (TOKEN_MAX_LEN + 1 bytes).  Returns its length or -EINVAL.
 */
int bench_key_token(const struct bench_seed *s, uint64_t i, bool wrong,
                    char ret[TOKEN_MAX_LEN + 1]);

/* A well-formed token for id `id` with a secret drawn from (`s`, `j`). */
int bench_token_for_id(const struct bench_seed *s, const char *id, uint64_t j,
                       char ret[TOKEN_MAX_LEN + 1]);

/* The owner of key `i` ("bench" and a number below BENCH_OWNERS). */
void bench_key_owner(uint64_t i, char ret[BENCH_OWNER_MAX]);

/* splitmix64: the deterministic generator of the request mix. */
static inline uint64_t bench_rand(uint64_t *state)
{
        uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}
